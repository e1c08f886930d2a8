"""cocotb testbench of ``hw/blocks/binary_mvu/binary_mvu.sv`` against the golden functions of ``instabnn.hw.reference.mvu``.

The pytest entry ``tests/test_rtl_binary_mvu.py`` builds the unit with Verilator for one :class:`BinaryMvuShape`,
writes its memory-init files and a case file with :func:`prepare_case`, and runs the cocotb tests below in one
simulation; the case file is named by the environment variable ``INSTABNN_MVU_CASE``.

Tests (each starts with a reset):

* ``stream_full_rate``: source always valid, sink always ready. Every output equals the reference exactly; the
  cycles per vector (steady state, from the input handshakes) are within 2 % of ``(MW/SIMD) * (MH/PE)``; every
  output beat appears exactly ``PIPELINE_LATENCY`` cycles after the issue of its fold's last step.
* ``stream_idle_backpressure``: random idle cycles on ``s_axis`` and random backpressure on ``m_axis`` (seeded
  pause generators); every output equals the reference exactly and no beat is lost or added.
* ``reset_mid_vector``: a reset in the middle of a vector (once during the input fold, once after the first output
  beat), then correct operation: no stale beat, every later output exact.

Structure (cocotb's matrix-multiplier example): a cycle monitor records every handshake on both streams with its
clock cycle; the scoreboard maps output beat ``j`` to (vector ``j // NF``, fold ``j % NF``) and compares its PE
lanes with the reference, in order. A mismatch names the test, vector index, output channel, expected and got.
The reference sees the input words as the DUT sampled them (unpacked from the monitored ``s_axis_tdata``).
Parameters are read back from the DUT (``MW``, ``MH``, ``SIMD``, ``PE``, ``THRESHOLDS``, ``ACC_BITS``, where the
simulator exposes them, and the port widths) and must agree with the case file.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from instabnn.hw.blocks.binary_mvu.spec import BinaryMvuShape, write_threshold_file, write_weight_file
from instabnn.hw.packing import pack_words, unpack_fields, unpack_words
from instabnn.hw.reference.mvu import binary_matvec, threshold_compare

CASE_ENV = "INSTABNN_MVU_CASE"
CLOCK_PERIOD_NS = 10
CYCLE_TOLERANCE = 0.02


# ----------------------------------------------------------------------------------------------------------------
# Case preparation (runs in pytest, before the simulator starts: the memories are loaded at time 0)
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
    """Random weights (and thresholds) for ``shape``; writes the memory files, ``case.npz`` and ``case.json`` into
    ``directory``. Returns ``(rtl_parameters, extra_env)`` for the runner."""
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
    (directory / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    return shape.rtl_parameters(weight_file, thresh_file), {CASE_ENV: str(directory / "case.json")}


# ----------------------------------------------------------------------------------------------------------------
# Testbench
# ----------------------------------------------------------------------------------------------------------------


def _dut_int(dut, name: str) -> int | None:
    """A parameter read back from the DUT, or None where the simulator does not expose it."""
    try:
        return int(getattr(dut, name).value)
    except (AttributeError, TypeError, ValueError):
        return None


def random_pause(seed: int, probability: float):
    """Seeded pause generator: True (pause) with the given probability each cycle, in random-length runs."""
    rnd = random.Random(seed)
    while True:
        run = rnd.randint(1, 4)
        pause = rnd.random() < probability
        for _ in range(run):
            yield pause


class TB:
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        self.dut = dut
        self.log = dut._log
        case_path = os.environ.get(CASE_ENV)
        if not case_path:
            raise RuntimeError(f"{CASE_ENV} is not set: run this testbench through tests/test_rtl_binary_mvu.py")
        case = json.loads(Path(case_path).read_text())
        self.shape = BinaryMvuShape(**case["shape"])
        self.case_dir = Path(case_path).parent
        self.n_vectors = int(case["n_vectors"])
        arrays = np.load(case["arrays"])
        self.weights = arrays["weights"].astype(np.int64)
        self.thresholds = arrays["thresholds"] if self.shape.thresholds else None
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        self._check_parameters()

        # drivers_follow_reset=False: the source keeps driving through a reset (tvalid may be high at the reset edge)
        reset = dut.rst if drivers_follow_reset else None
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, reset, byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, reset, byte_lanes=1)
        for name in ("source", "sink"):
            logger = getattr(self, name).log
            logger.setLevel("WARNING")

        # monitor records: (cycle, tdata) of every handshake, since the last clear
        self.cycle = 0
        self.in_beats: list[tuple[int, int]] = []
        self.out_beats: list[tuple[int, int]] = []
        cocotb.start_soon(self._monitor())
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()

    def _check_parameters(self):
        s, dut = self.shape, self.dut
        expected = {
            "MW": s.mw, "MH": s.mh, "SIMD": s.simd, "PE": s.pe, "THRESHOLDS": s.thresholds, "ACC_BITS": s.acc_bits
        }
        read = {name: _dut_int(dut, name) for name in expected}
        self.log.info("DUT parameters %s (None: not exposed by the simulator)", read)
        for name, value in read.items():
            assert value is None or value == expected[name], f"DUT {name}={value}, case file says {expected[name]}"
        for port, width in (("s_axis_tdata", s.in_width), ("m_axis_tdata", s.out_width)):
            got = len(getattr(dut, port))
            assert got == width, f"{port} is {got} bits, expected {width}"

    async def _monitor(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            self.cycle += 1
            if dut.rst.value:
                continue
            if dut.s_axis_tvalid.value and dut.s_axis_tready.value:
                self.in_beats.append((self.cycle, int(dut.s_axis_tdata.value)))
            if dut.m_axis_tvalid.value and dut.m_axis_tready.value:
                self.out_beats.append((self.cycle, int(dut.m_axis_tdata.value)))

    def clear_records(self):
        self.in_beats.clear()
        self.out_beats.clear()

    def set_idle_backpressure(self, seed: int | None, idle: float = 0.3, backpressure: float = 0.5):
        if seed is None:
            self.source.clear_pause_generator()
            self.sink.clear_pause_generator()
            self.source.pause = False
            self.sink.pause = False
        else:
            self.source.set_pause_generator(random_pause(seed, idle))
            self.sink.set_pause_generator(random_pause(seed + 1, backpressure))

    async def reset(self, cycles: int = 3):
        """Hold rst high for ``cycles`` clock edges. Returns right after the last reset edge, with the records
        cleared: the next edge is the first one at which the DUT (and the monitor) may see a handshake."""
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.sink.clear()
        self.clear_records()

    def random_vectors(self, n: int) -> np.ndarray:
        """``n`` bipolar input vectors; the first ones hit the ends of the accumulator range."""
        x = self.rng.choice(np.array([-1, 1]), size=(n, self.shape.mw))
        special = [self.weights[0], -self.weights[0], np.ones(self.shape.mw, np.int64)]
        for i, v in enumerate(special[: max(0, n - 1)]):
            x[i + 1] = v  # vector 0 stays random (the latency check wants an ordinary one)
        return x.astype(np.int64)

    async def send(self, vectors: np.ndarray):
        for v in vectors:
            await self.source.send(AxiStreamFrame(pack_words(v, self.shape.simd)))

    async def wait_outputs(self, n_beats: int, timeout_cycles: int):
        start = self.cycle
        while len(self.out_beats) < n_beats:
            assert self.cycle - start < timeout_cycles, (
                f"timeout: {len(self.out_beats)} of {n_beats} output beats after {timeout_cycles} cycles"
            )
            await RisingEdge(self.dut.clk)

    def expected(self, vectors: np.ndarray) -> np.ndarray:
        acc = binary_matvec(self.weights, vectors)
        return threshold_compare(acc, self.thresholds) if self.shape.thresholds else acc

    def check_outputs(self, tag: str, n_vectors: int):
        """Scoreboard: the recorded input words (as the DUT sampled them) against the recorded output beats."""
        s = self.shape
        for what, beats, per_vector in (("input", self.in_beats, s.sf), ("output", self.out_beats, s.nf)):
            assert len(beats) == n_vectors * per_vector, (
                f"{tag}: {len(beats)} {what} beats, expected {n_vectors * per_vector}"
            )
        words = [w for _, w in self.in_beats]
        sampled = np.stack([unpack_words(words[v * s.sf : (v + 1) * s.sf], s.simd) for v in range(n_vectors)])
        expected = self.expected(sampled)
        got = np.empty_like(expected)
        for j, (_, tdata) in enumerate(self.out_beats):
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

    def write_result(self, name: str, result: dict):
        path = self.case_dir / f"result_{name}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, cycles per vector and latency."""
    tb = TB(dut, test_seed=1)
    s = tb.shape
    tb.set_idle_backpressure(None)
    await tb.reset()
    n = max(tb.n_vectors, 3)
    vectors = tb.random_vectors(n)
    await tb.send(vectors)  # all queued: the source stays valid from the first beat to the last
    await tb.wait_outputs(n * s.nf, timeout_cycles=n * s.cycles_per_vector * 2 + 100)
    tb.check_outputs("stream_full_rate", n)

    in_cycles = [c for c, _ in tb.in_beats]
    out_cycles = [c for c, _ in tb.out_beats]
    starts = in_cycles[:: s.sf]
    periods = np.diff(starts)
    measured = (starts[-1] - starts[0]) / (n - 1)
    out_measured = (out_cycles[(n - 1) * s.nf] - out_cycles[0]) / (n - 1)
    analytic = s.cycles_per_vector
    # latency: output beat of (vector v, fold nf) vs. the issue of step (nf, SF-1) = last input handshake + nf*SF
    latencies = [
        out_cycles[v * s.nf + nf] - (in_cycles[v * s.sf + s.sf - 1] + nf * s.sf) for v in range(n) for nf in range(s.nf)
    ]
    tb.log.info(
        "cycles per vector: measured %.3f (input side, min %d max %d), %.3f (output side), analytic %d; "
        "latency %s, stated %d",
        measured, periods.min(), periods.max(), out_measured, analytic, sorted(set(latencies)), s.latency,
    )
    tb.write_result(
        "stream_full_rate",
        {
            "shape": asdict(s),
            "n_vectors": n,
            "cycles_per_vector_measured": measured,
            "cycles_per_vector_measured_output": out_measured,
            "cycles_per_vector_min": int(periods.min()),
            "cycles_per_vector_max": int(periods.max()),
            "cycles_per_vector_analytic": analytic,
            "latency_measured": sorted(set(latencies)),
            "latency_stated": s.latency,
            "total_cycles": out_cycles[-1] - in_cycles[0] + 1,
        },
    )
    assert abs(measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{measured} cycles per vector, analytic {analytic}"
    assert abs(out_measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{out_measured} cycles per vector at the output"
    assert set(latencies) == {s.latency}, f"latencies {sorted(set(latencies))}, stated {s.latency}"


@cocotb.test()
async def stream_idle_backpressure(dut):
    """Random idle on s_axis and random backpressure on m_axis: exact outputs, nothing lost or added."""
    tb = TB(dut, test_seed=2)
    s = tb.shape
    await tb.reset()
    tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
    n = tb.n_vectors
    vectors = tb.random_vectors(n)
    await tb.send(vectors)
    await tb.wait_outputs(n * s.nf, timeout_cycles=n * (s.cycles_per_vector + s.sf + s.nf) * 8 + 200)
    for _ in range(3 * s.latency):  # nothing extra comes out
        await RisingEdge(dut.clk)
    sampled = tb.check_outputs("stream_idle_backpressure", n)
    assert np.array_equal(sampled, vectors), "the monitored input differs from what the source sent"
    cycles = tb.out_beats[-1][0] - tb.in_beats[0][0] + 1
    tb.log.info("%d vectors in %d cycles with idle and backpressure (%.2f per vector)", n, cycles, cycles / n)
    tb.write_result("stream_idle_backpressure", {"n_vectors": n, "total_cycles": cycles})
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
        await tb.send(tb.random_vectors(3))
        while not tb.in_beats:
            await RisingEdge(dut.clk)
        for _ in range(delay):
            await RisingEdge(dut.clk)
        seen = (len(tb.in_beats), len(tb.out_beats))
        await tb.reset(cycles=1)  # a single-cycle reset must be enough
        await RisingEdge(dut.clk)  # values seen at this edge are the state the reset left
        assert not dut.m_axis_tvalid.value, f"{tag}: m_axis_tvalid high right after reset"
        # the rest of the interrupted stream is the start of new vectors: complete the last one, then more
        await tb.source.wait()  # returns at the clock edge that accepted the last beat
        await RisingEdge(dut.clk)
        pad = (-len(tb.in_beats)) % s.sf
        if pad:
            await tb.source.send(AxiStreamFrame(pack_words(tb.random_vectors(1)[0][: pad * s.simd], s.simd)))
        await tb.send(tb.random_vectors(tb.n_vectors // 2 if delay == delays[-1] else 2))
        await tb.source.wait()
        await RisingEdge(dut.clk)
        assert len(tb.in_beats) % s.sf == 0, f"{tag}: {len(tb.in_beats)} input beats after the reset"
        total = len(tb.in_beats) // s.sf
        await tb.wait_outputs(total * s.nf, timeout_cycles=total * (s.cycles_per_vector + s.sf + s.nf) * 8 + 200)
        for _ in range(2 * s.latency):  # nothing extra comes out
            await RisingEdge(dut.clk)
        tb.check_outputs(tag, total)
        tb.log.debug("%s: reset after %d input / %d output beats; %d vectors after it exact", tag, *seen, total)
        checked += total
    tb.log.info("reset at %d offsets, %d vectors after the resets exact", len(delays), checked)
    tb.set_idle_backpressure(None)
