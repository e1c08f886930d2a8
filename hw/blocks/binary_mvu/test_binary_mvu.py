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
from cocotb.triggers import RisingEdge

from instabnn.hw.blocks.binary_mvu.spec import BinaryMvuShape, write_threshold_file, write_weight_file
from instabnn.hw.blocks.common.axis_tb import (AxisHarness, dut_int, read_case, run_full_rate_bench,
                                               write_result)
from instabnn.hw.blocks.common.mvu_bench import check_full_rate, check_measurements
from instabnn.contract.packing import pack_words, unpack_fields, unpack_words
from instabnn.contract.mvu import binary_matvec, threshold_compare
from instabnn.hw.rtl_library import rtl_paths
from instabnn.sim.rtl_runner import verilator_lint, yosys_synth


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


class TB(AxisHarness):
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        case, self.case_dir = read_case()
        self.shape = BinaryMvuShape(**case["shape"])
        self.n_vectors = int(case["n_vectors"])
        arrays = np.load(case["arrays"])
        self.weights = arrays["weights"].astype(np.int64)
        self.thresholds = arrays["thresholds"] if self.shape.thresholds else None
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        # drivers_follow_reset=False: the source keeps driving through a reset (tvalid may be high at the reset edge)
        super().__init__(dut, ["s_axis"], ["m_axis"], drivers_follow_reset)
        self.log = dut._log
        self._check_parameters()

    def _check_parameters(self):
        s, dut = self.shape, self.dut
        expected = {
            "MW": s.mw, "MH": s.mh, "SIMD": s.simd, "PE": s.pe, "THRESHOLDS": s.thresholds, "ACC_BITS": s.acc_bits
        }
        read = {name: dut_int(dut, name) for name in expected}
        self.log.info("DUT parameters %s (None: not exposed by the simulator)", read)
        for name, value in read.items():
            assert value is None or value == expected[name], f"DUT {name}={value}, case file says {expected[name]}"
        for port, width in (("s_axis_tdata", s.in_width), ("m_axis_tdata", s.out_width)):
            got = len(getattr(dut, port))
            assert got == width, f"{port} is {got} bits, expected {width}"

    def random_vectors(self, n: int) -> np.ndarray:
        """``n`` bipolar input vectors; the first ones hit the ends of the accumulator range."""
        x = self.rng.choice(np.array([-1, 1]), size=(n, self.shape.mw))
        special = [self.weights[0], -self.weights[0], np.ones(self.shape.mw, np.int64)]
        for i, v in enumerate(special[: max(0, n - 1)]):
            x[i + 1] = v  # vector 0 stays random (the latency check wants an ordinary one)
        return x.astype(np.int64)

    async def send_vectors(self, vectors: np.ndarray):
        for v in vectors:
            await self.send("s_axis", pack_words(v, self.shape.simd))

    def expected(self, vectors: np.ndarray) -> np.ndarray:
        acc = binary_matvec(self.weights, vectors)
        return threshold_compare(acc, self.thresholds) if self.shape.thresholds else acc

    def check_outputs(self, tag: str, n_vectors: int):
        """Scoreboard: the recorded input words (as the DUT sampled them) against the recorded output beats."""
        s = self.shape
        in_beats, out_beats = self.beats("s_axis"), self.beats("m_axis")
        for what, beats, per_vector in (("input", in_beats, s.sf), ("output", out_beats, s.nf)):
            assert len(beats) == n_vectors * per_vector, (
                f"{tag}: {len(beats)} {what} beats, expected {n_vectors * per_vector}"
            )
        words = [w for _, w in in_beats]
        sampled = np.stack([unpack_words(words[v * s.sf : (v + 1) * s.sf], s.simd) for v in range(n_vectors)])
        expected = self.expected(sampled)
        got = np.empty_like(expected)
        for j, (_, tdata) in enumerate(out_beats):
            v, nf = divmod(j, s.nf)
            got[v, nf * s.pe : (nf + 1) * s.pe] = unpack_fields(tdata, s.out_lane_bits, s.pe, signed=not s.thresholds)
        bad = np.argwhere(got != expected)
        for v, o in bad[:10]:
            self.log.error("%s: vector %d channel %d: expected %d, got %d", tag, v, o, expected[v, o], got[v, o])
        assert not len(bad), (
            f"{tag}: {len(bad)} mismatches; first at vector {bad[0][0]}, output channel {bad[0][1]}: "
            f"expected {expected[tuple(bad[0])]}, got {got[tuple(bad[0])]}"
        )
        return sampled


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, cycles per vector and latency."""
    tb = TB(dut, test_seed=1)
    s = tb.shape
    tb.set_idle_backpressure(None)
    await tb.reset()
    n = max(tb.n_vectors, 3)
    vectors = tb.random_vectors(n)
    await tb.send_vectors(vectors)  # all queued: the source stays valid from the first beat to the last
    await tb.wait_beats("m_axis", n * s.nf, timeout_cycles=n * s.cycles_per_vector * 2 + 100)
    tb.check_outputs("stream_full_rate", n)

    check_full_rate(tb, n)


@cocotb.test()
async def stream_idle_backpressure(dut):
    """Random idle on s_axis and random backpressure on m_axis: exact outputs, nothing lost or added."""
    tb = TB(dut, test_seed=2)
    s = tb.shape
    await tb.reset()
    tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
    n = tb.n_vectors
    vectors = tb.random_vectors(n)
    await tb.send_vectors(vectors)
    await tb.wait_beats("m_axis", n * s.nf, timeout_cycles=n * (s.cycles_per_vector + s.sf + s.nf) * 8 + 200)
    for _ in range(3 * s.latency):  # nothing extra comes out
        await RisingEdge(dut.clk)
    sampled = tb.check_outputs("stream_idle_backpressure", n)
    assert np.array_equal(sampled, vectors), "the monitored input differs from what the source sent"
    cycles = tb.beats("m_axis")[-1][0] - tb.beats("s_axis")[0][0] + 1
    tb.log.info("%d vectors in %d cycles with idle and backpressure (%.2f per vector)", n, cycles, cycles / n)
    write_result(tb.case_dir, "stream_idle_backpressure", {"n_vectors": n, "total_cycles": cycles})
    tb.set_idle_backpressure(None)


@cocotb.test()
async def reset_mid_vector(dut):
    """Reset in the middle of a vector, then correct operation (no stale beats, exact outputs).

    The source is not tied to the reset, so s_axis_tvalid may be high at the reset edge and the stream goes on
    right after it: the unit must start a fresh vector with the first beat accepted after the reset. A single-cycle
    reset is applied at every cycle offset from the first input handshake up to one vector plus the pipeline
    latency (input fold, re-read folds, pipeline draining), alternately with idle and backpressure.
    """
    tb = TB(dut, test_seed=3, drivers_follow_reset=False)
    s = tb.shape
    delays = list(range(min(s.cycles_per_vector + s.latency + 2, 24)))
    checked = 0
    for i, delay in enumerate(delays):
        tag = f"reset_mid_vector[delay={delay}]"
        tb.set_idle_backpressure(None)
        await tb.reset()
        if i % 2:
            tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
        await tb.send_vectors(tb.random_vectors(3))
        while not tb.beats("s_axis"):
            await RisingEdge(dut.clk)
        for _ in range(delay):
            await RisingEdge(dut.clk)
        seen = (len(tb.beats("s_axis")), len(tb.beats("m_axis")))
        await tb.reset(cycles=1)  # a single-cycle reset must be enough
        await RisingEdge(dut.clk)  # values seen at this edge are the state the reset left
        assert not dut.m_axis_tvalid.value, f"{tag}: m_axis_tvalid high right after reset"
        # the rest of the interrupted stream is the start of new vectors: complete the last one, then more
        await tb.sources["s_axis"].wait()  # returns at the clock edge that accepted the last beat
        await RisingEdge(dut.clk)
        pad = (-len(tb.beats("s_axis"))) % s.sf
        if pad:
            await tb.send("s_axis", pack_words(tb.random_vectors(1)[0][: pad * s.simd], s.simd))
        await tb.send_vectors(tb.random_vectors(tb.n_vectors // 2 if delay == delays[-1] else 2))
        await tb.sources["s_axis"].wait()
        await RisingEdge(dut.clk)
        assert len(tb.beats("s_axis")) % s.sf == 0, f"{tag}: {len(tb.beats('s_axis'))} input beats after the reset"
        total = len(tb.beats("s_axis")) // s.sf
        await tb.wait_beats("m_axis", total * s.nf,
                            timeout_cycles=total * (s.cycles_per_vector + s.sf + s.nf) * 8 + 200)
        for _ in range(2 * s.latency):  # nothing extra comes out
            await RisingEdge(dut.clk)
        tb.check_outputs(tag, total)
        tb.log.debug("%s: reset after %d input / %d output beats; %d vectors after it exact", tag, *seen, total)
        checked += total
    tb.log.info("reset at %d offsets, %d vectors after the resets exact", len(delays), checked)
    tb.set_idle_backpressure(None)


# ----------------------------------------------------------------------------------------------------------------
# pytest runner (builds the block, runs the testbench above)
# ----------------------------------------------------------------------------------------------------------------

SOURCES = rtl_paths("binary_mvu")
TOPLEVEL = "binary_mvu"

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
@pytest.mark.parametrize("shape", [FAST_SHAPES[0], SLOW_SHAPES[3]], ids=lambda s: s.name)
def test_binary_mvu_yosys_netlist_sim(shape, verilator_path, tmp_path):
    """Yosys reads the RTL as Verilator does: its synthesised netlist passes the same cocotb tests, cycle for cycle."""
    result = run_binary_mvu(shape, FAST_VECTORS, tmp_path, yosys_netlist=True)
    check_measurements(shape, result)
