"""RTL tests of the binary matrix-vector unit (``hw/blocks/binary_mvu/binary_mvu.sv``): lint, synthesis check, cocotb simulation.

Each simulation case builds the unit with Verilator (cocotb's Python runner) for one :class:`BinaryMvuShape`,
writes random weights / thresholds as memory-init files, and runs the cocotb tests of
``instabnn.sim.test_binary_mvu`` (full rate with the cycle and latency checks, random idle and backpressure, reset
mid-vector), comparing every output with ``instabnn.hw.reference.mvu`` exactly. All output goes to pytest's tmp
directories. The default tier runs three shapes; ``-m slow`` sweeps more shapes with over 1000 vectors.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from instabnn.hw.blocks.binary_mvu.spec import BinaryMvuShape
from instabnn.hw.rtl_library import rtl_paths
from instabnn.sim.rtl_runner import VERILATOR_BUILD_ARGS, run_cocotb, verilator_lint, yosys_synth

SOURCES = rtl_paths("binary_mvu")
TOPLEVEL = "binary_mvu"
TEST_MODULE = "instabnn.sim.test_binary_mvu"

FAST_SHAPES = [
    BinaryMvuShape(mw=18, mh=4, simd=9, pe=2, thresholds=0),
    BinaryMvuShape(mw=64, mh=8, simd=16, pe=4, thresholds=1),
    BinaryMvuShape(mw=288, mh=16, simd=32, pe=8, thresholds=0),  # 80-bit m_axis_tdata
]
FAST_VECTORS = 32

SLOW_SHAPES = [
    BinaryMvuShape(mw=1, mh=1, simd=1, pe=1, thresholds=1),  # degenerate: SF = NF = 1, one-bit everything
    BinaryMvuShape(mw=16, mh=4, simd=16, pe=4, thresholds=0),  # SF = NF = 1: one beat in, one beat out
    BinaryMvuShape(mw=7, mh=3, simd=1, pe=1, thresholds=0),  # SIMD = PE = 1, odd MW
    BinaryMvuShape(mw=27, mh=6, simd=9, pe=3, thresholds=1),  # 3x3x3 convolution, non-power-of-two folds
    BinaryMvuShape(mw=100, mh=5, simd=4, pe=5, thresholds=0),  # NF = 1, SF = 25
    BinaryMvuShape(mw=288, mh=16, simd=32, pe=8, thresholds=1),
    BinaryMvuShape(mw=576, mh=64, simd=64, pe=16, thresholds=1),  # 3x3x64 convolution, 64-bit s_axis_tdata
]
SLOW_VECTORS = 200

LINT_SHAPES = FAST_SHAPES + SLOW_SHAPES

def _seed(shape: BinaryMvuShape) -> int:
    return zlib.crc32(shape.name.encode())


def run_binary_mvu(
    shape: BinaryMvuShape, n_vectors: int, directory: Path, seed: int | None = None, yosys_netlist: bool = False
) -> dict:
    """Build and simulate one shape (the RTL, or its Yosys netlist); returns the full-rate measurements the
    testbench wrote."""
    from instabnn.sim.test_binary_mvu import prepare_case

    seed = _seed(shape) if seed is None else seed
    case_dir = directory / "case"
    parameters, extra_env = prepare_case(shape, seed, n_vectors, case_dir)
    sources, build_args = SOURCES, VERILATOR_BUILD_ARGS
    if yosys_netlist:
        netlist = directory / "netlist.v"
        yosys_synth(SOURCES, TOPLEVEL, parameters, case_dir / "synth", netlist)
        # parameters and weights are baked in; a bit-level netlist has false combinational loops for Verilator
        sources, parameters, build_args = [netlist], {}, VERILATOR_BUILD_ARGS + ["-Wno-UNOPTFLAT"]
    run_cocotb(sources=sources, toplevel=TOPLEVEL, test_module=TEST_MODULE, parameters=parameters,
               directory=directory, test_dir=case_dir, extra_env=extra_env, seed=seed, build_args=build_args)
    return json.loads((case_dir / "result_stream_full_rate.json").read_text())


def _check_measurements(shape: BinaryMvuShape, result: dict):
    analytic = shape.cycles_per_vector
    assert result["cycles_per_vector_analytic"] == analytic
    assert abs(result["cycles_per_vector_measured"] - analytic) <= 0.02 * analytic
    assert result["latency_measured"] == [shape.latency]


@pytest.mark.parametrize("shape", FAST_SHAPES, ids=lambda s: s.name)
def test_binary_mvu_sim(shape, verilator_path, tmp_path):
    result = run_binary_mvu(shape, FAST_VECTORS, tmp_path)
    _check_measurements(shape, result)


@pytest.mark.slow
@pytest.mark.parametrize("shape", SLOW_SHAPES, ids=lambda s: s.name)
def test_binary_mvu_sim_sweep(shape, verilator_path, tmp_path):
    result = run_binary_mvu(shape, SLOW_VECTORS, tmp_path)
    _check_measurements(shape, result)


def _lint(shape: BinaryMvuShape, verilator_path: Path, **overrides) -> subprocess.CompletedProcess:
    params = shape.rtl_parameters("weights.mem", "thresholds.mem")  # lint does not read the files
    params.update(overrides)
    return verilator_lint(SOURCES, TOPLEVEL, params, verilator_path)


@pytest.mark.parametrize("shape", LINT_SHAPES, ids=lambda s: s.name)
def test_binary_mvu_lint_clean(shape, verilator_path):
    proc = _lint(shape, verilator_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "%Warning" not in output and "%Error" not in output, output


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"SIMD": 4}, "SIMD (4) must divide MW (18)"),
        ({"PE": 3}, "PE (3) must divide MH (4)"),
        ({"THRESHOLDS": 2}, "THRESHOLDS (2) must be 0 or 1"),
        ({"WEIGHT_FILE": '""'}, "WEIGHT_FILE must name"),
    ],
)
def test_binary_mvu_rejects_illegal_parameters(overrides, message, verilator_path):
    proc = _lint(FAST_SHAPES[0], verilator_path, **overrides)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")


@needs_yosys
def test_binary_mvu_yosys_synth(tmp_path):
    """Yosys reads and synthesises the RTL (generic synth; memories initialised from generated files)."""
    from instabnn.sim.test_binary_mvu import prepare_case

    shape = FAST_SHAPES[1]
    parameters, _ = prepare_case(shape, 0, 1, tmp_path)
    log = yosys_synth(SOURCES, TOPLEVEL, parameters, tmp_path / "synth")
    assert "Number of cells" in log


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("shape", [FAST_SHAPES[0], SLOW_SHAPES[3]], ids=lambda s: s.name)
def test_binary_mvu_yosys_netlist_sim(shape, verilator_path, tmp_path):
    """Yosys reads the RTL as Verilator does: its synthesised netlist passes the same cocotb tests, cycle for cycle."""
    result = run_binary_mvu(shape, FAST_VECTORS, tmp_path, yosys_netlist=True)
    _check_measurements(shape, result)
