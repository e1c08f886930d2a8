"""Testbench of the binary matrix-vector unit (``binary_mvu.sv``) against the golden functions of
``instabnn.contract.mvu``: lint, synthesis check, cocotb simulation.

Each simulation case builds the unit with Verilator (cocotb's Python runner) for one :class:`BinaryMvuShape`,
writes random weights / thresholds as memory-init files (:func:`prepare_case`), and runs the ``@cocotb.test()``s of
this file in one simulation (the case reaches them through :func:`~instabnn.hw.blocks.common.axis_tb.run_bench`),
comparing every output with ``instabnn.contract.mvu`` exactly. All output goes to pytest's tmp directories.
The default tier runs three shapes; ``-m slow`` sweeps more shapes with over 1000 vectors.

cocotb tests (each starts with a reset):

* ``stream_full_rate``: source always valid, sink always ready. Every output equals the reference exactly; the
  cycles per vector (steady state, from the input handshakes) are within 2 % of ``(MW/SIMD) * (MH/PE)``; every
  output beat appears exactly ``PIPELINE_LATENCY`` cycles after the issue of its fold's last step.
* ``stream_idle_backpressure``: random idle cycles on ``s_axis`` and random backpressure on ``m_axis`` (seeded
  pause generators); every output equals the reference exactly and no beat is lost or added.
* ``reset_mid_vector``: a reset in the middle of a vector (once during the input fold, once after the first output
  beat), then correct operation: no stale beat, every later output exact.

Structure (cocotb's matrix-multiplier example): the shared handshake monitor
(:class:`~instabnn.hw.blocks.common.axis_tb.AxisHarness`) records every handshake on both streams with its clock
cycle; the scoreboard maps output beat ``j`` to (vector ``j // NF``, fold ``j % NF``) and compares its PE lanes with
the reference, in order. A mismatch names the test, vector index, output channel, expected and got. The reference
sees the input words as the DUT sampled them (unpacked from the monitored ``s_axis_tdata``). Parameters are read
back from the DUT (``MW``, ``MH``, ``SIMD``, ``PE``, ``THRESHOLDS``, ``ACC_BITS``, where the simulator exposes them,
and the port widths) and must agree with the case file.
"""

from __future__ import annotations

import shutil
import subprocess
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import cocotb

from instabnn.hw.blocks.binary_mvu.spec import BinaryMvuShape, write_threshold_file, write_weight_file
from instabnn.hw.blocks.common import mvu_bench
from instabnn.hw.blocks.common.axis_tb import run_full_rate_bench
from instabnn.hw.blocks.common.mvu_bench import MvuBench, check_measurements
from instabnn.contract.packing import pack_words, unpack_fields, unpack_words
from instabnn.contract.mvu import binary_matvec, threshold_compare
from instabnn.hw.blocks.rtl_library import rtl_paths
from instabnn.hw.blocks.common.rtl_runner import verilator_lint, yosys_synth


# ----------------------------------------------------------------------------------------------------------------
# cocotb testbench (runs in the simulator)
# ----------------------------------------------------------------------------------------------------------------

def random_thresholds(rng: np.random.Generator, shape: BinaryMvuShape) -> np.ndarray:
    """Thresholds that exercise the compare: mostly inside the accumulator range (integers of both parities and
    half-integers), a few outside it (channels that are constantly +1 or -1)."""
    mw = shape.mw
    t = rng.integers(-mw // 2 - 1, mw // 2 + 2, size=shape.mh).astype(np.float64)
    half = rng.random(shape.mh) < 0.25
    t[half] += 0.5
    outside = rng.random(shape.mh) < 0.1
    t[outside] = rng.choice([-mw - 3.0, -mw, mw + 1.0, mw + 7.5], size=int(outside.sum()))
    return t


def prepare_case(shape: BinaryMvuShape, seed: int, n_vectors: int, directory: Path) -> tuple[dict, dict]:
    """Random weights (and thresholds) for ``shape``; writes the memory files and ``case.npz`` into
    ``directory``. Returns ``(rtl_parameters, case)`` for the runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = rng.choice(np.array([-1, 1], dtype=np.int8), size=(shape.mh, shape.mw))
    arrays = {"weights": weights}
    weight_file = write_weight_file(directory / "weights.mem", weights, shape)
    thresh_file = None
    if shape.thresholds:
        arrays["thresholds"] = random_thresholds(rng, shape)
        thresh_file = write_threshold_file(directory / "thresholds.mem", arrays["thresholds"], shape)
    np.savez(directory / "case.npz", **arrays)
    case = {"shape": asdict(shape), "seed": seed, "n_vectors": n_vectors, "arrays": str(directory / "case.npz")}
    return shape.rtl_parameters(weight_file, thresh_file), case


# ----------------------------------------------------------------------------------------------------------------
# Testbench
# ----------------------------------------------------------------------------------------------------------------


class TB(MvuBench):
    shape_type = BinaryMvuShape

    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        super().__init__(dut, test_seed, drivers_follow_reset)
        self.thresholds = self.arrays["thresholds"] if self.shape.thresholds else None

    def expected_parameters(self) -> dict:
        s = self.shape
        return {"MW": s.mw, "MH": s.mh, "SIMD": s.simd, "PE": s.pe, "THRESHOLDS": s.thresholds, "ACC_BITS": s.acc_bits}

    def random_vectors(self, n: int) -> np.ndarray:
        """``n`` bipolar input vectors; the first ones hit the ends of the accumulator range."""
        x = self.rng.choice(np.array([-1, 1]), size=(n, self.shape.mw))
        special = [self.weights[0], -self.weights[0], np.ones(self.shape.mw, np.int64)]
        for i, v in enumerate(special[: max(0, n - 1)]):
            x[i + 1] = v  # vector 0 stays random (the latency check wants an ordinary one)
        return x.astype(np.int64)

    def words(self, vectors: np.ndarray) -> list[int]:
        return [w for v in vectors for w in pack_words(v, self.shape.simd)]

    def unpack_inputs(self, words: list[int], n_vectors: int) -> np.ndarray:
        s = self.shape
        return np.stack([unpack_words(words[v * s.sf : (v + 1) * s.sf], s.simd) for v in range(n_vectors)])

    def expected(self, vectors: np.ndarray) -> np.ndarray:
        acc = binary_matvec(self.weights, vectors)
        return threshold_compare(acc, self.thresholds) if self.shape.thresholds else acc

    def output_lanes(self, tdata: int) -> np.ndarray:
        s = self.shape
        return unpack_fields(tdata, s.out_lane_bits, s.pe, signed=not s.thresholds)


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, cycles per vector and latency."""
    await mvu_bench.stream_full_rate(TB(dut, test_seed=1))


@cocotb.test()
async def stream_idle_backpressure(dut):
    """Random idle on s_axis and random backpressure on m_axis: exact outputs, nothing lost or added."""
    await mvu_bench.stream_idle_backpressure(TB(dut, test_seed=2))


@cocotb.test()
async def reset_mid_vector(dut):
    """Reset in the middle of a vector at every offset, then exact outputs (the source keeps driving through it)."""
    await mvu_bench.reset_mid_vector(TB(dut, test_seed=3, drivers_follow_reset=False))


# ----------------------------------------------------------------------------------------------------------------
# pytest runner (builds the block, runs the testbench above)
# ----------------------------------------------------------------------------------------------------------------

SOURCES = rtl_paths("binary_mvu")
TOPLEVEL = "binary_mvu"

FAST_SHAPES = [
    BinaryMvuShape(mw=18, mh=4, simd=9, pe=2, thresholds=0),
    BinaryMvuShape(mw=64, mh=8, simd=16, pe=4, thresholds=1, ram_style="block"),  # weights in block RAM
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
    seed = _seed(shape) if seed is None else seed
    case_dir = directory / "case"
    parameters, case = prepare_case(shape, seed, n_vectors, case_dir)
    return run_full_rate_bench(__file__, case, sources=SOURCES, toplevel=TOPLEVEL, parameters=parameters,
                               directory=case_dir, seed=seed, yosys_netlist=yosys_netlist)


@pytest.mark.parametrize("shape", FAST_SHAPES, ids=lambda s: s.name)
def test_binary_mvu_sim(shape, verilator_path, tmp_path):
    result = run_binary_mvu(shape, FAST_VECTORS, tmp_path)
    check_measurements(shape, result)


@pytest.mark.slow
@pytest.mark.parametrize("shape", SLOW_SHAPES, ids=lambda s: s.name)
def test_binary_mvu_sim_sweep(shape, verilator_path, tmp_path):
    result = run_binary_mvu(shape, SLOW_VECTORS, tmp_path)
    check_measurements(shape, result)


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
        ({"RAM_STYLE": '"ultra"'}, 'WEIGHT_RAM_STYLE must be "auto" or "block"'),
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
    shape = FAST_SHAPES[1]
    parameters, _ = prepare_case(shape, 0, 1, tmp_path)
    log = yosys_synth(SOURCES, TOPLEVEL, parameters, tmp_path / "synth")
    assert "Number of cells" in log


@pytest.mark.slow
@needs_yosys
def test_binary_mvu_ram_style_places_the_weights(tmp_path):
    """Yosys synth_xilinx keeps a shallow weight ROM in LUTs with RAM_STYLE "auto" and puts it in block RAM with
    "block", as the estimate says (the estimate's BRAM36 and its LUTs within 25 %)."""
    from instabnn.hw.synth import synth_binary_mvu

    for style in ("auto", "block"):
        shape = BinaryMvuShape(mw=64, mh=8, simd=16, pe=4, thresholds=1, ram_style=style)
        res, est = synth_binary_mvu(shape, tmp_path / style), shape.resources()
        assert res["bram36"] == est["bram36"] and (res["bram36"] > 0) == (style == "block"), (style, res, est)
        assert abs(res["lut"] / est["lut"] - 1) < 0.25, (style, res, est)


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("shape", [FAST_SHAPES[0], SLOW_SHAPES[3]], ids=lambda s: s.name)
def test_binary_mvu_yosys_netlist_sim(shape, verilator_path, tmp_path):
    """Yosys reads the RTL as Verilator does: its synthesised netlist passes the same cocotb tests, cycle for cycle."""
    result = run_binary_mvu(shape, FAST_VECTORS, tmp_path, yosys_netlist=True)
    check_measurements(shape, result)
