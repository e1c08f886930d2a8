"""cocotb testbench of the bit max-pool ``hw/rtl/maxpool_bits.sv`` (golden: the pool of
:class:`instabnn.contract.network.ChainStage`, :func:`instabnn.hw.chain_files.maxpool_bits`).

The pytest entry ``tests/test_rtl_maxpool_bits.py`` builds the unit with Verilator for one
:class:`~instabnn.hw.chain_files.MaxPoolBitsSpec`, writes a case file with :func:`prepare_case` and runs the cocotb
tests below in one simulation; the case file is named by the environment variable ``INSTABNN_MAXPOOL_CASE``.

Tests (each starts with a reset):

* ``stream_full_rate``: source always valid, sink always ready. Every output equals the reference exactly; clocks
  per frame (input and output side) within 2 % of ``spec.cycles_per_frame`` (``H*W*C/PE``); the input taken at one
  beat per clock; every output beat leaves exactly ``spec.latency`` edges after the input beat that completes its
  window (``spec.completing_beats``). Results in ``result_stream_full_rate.json``.
* ``stream_idle_backpressure``: random idle on ``s_axis`` and random backpressure on ``m_axis``; exact, nothing lost
  or added.
* ``reset_mid_frame``: single-cycle resets at several points inside frames with the stream continuing through
  them; afterwards no stale beat and every later frame exact.

Every test checks the output protocol (an offered beat stays offered, unchanged, until taken). The scoreboard
unpacks the input words the DUT actually sampled, calls the golden function and compares in order; a mismatch
names the test, frame, output pixel and channel.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import RisingEdge

from instabnn.hw.chain_files import MaxPoolBitsSpec, bit_frame_words, bit_frames_from_words
from instabnn.hw.blocks.common.axis_tb import CYCLE_TOLERANCE, AxisHarness, case_from_env, dut_int

CASE_ENV = "INSTABNN_MAXPOOL_CASE"


def prepare_case(spec: MaxPoolBitsSpec, seed: int, n_frames: int, directory: Path) -> dict:
    """Writes ``case.json`` into ``directory``; returns the extra environment for the runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    case = {"spec": asdict(spec), "seed": seed, "n_frames": n_frames}
    (directory / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    return {CASE_ENV: str(directory / "case.json")}


def random_inputs(rng: np.random.Generator, spec: MaxPoolBitsSpec, n: int) -> np.ndarray:
    """``n`` bit frames ``(n, C, H, W)``: frame 1 all ones, frame 2 all zeros, the others with a random density
    per frame (sparse frames make single set bits decide a window: the OR must see every beat)."""
    q = np.zeros((n, spec.channels, spec.height, spec.width), np.int64)
    for f in range(n):
        if f == 1:
            q[f] = 1
        elif f != 2:
            q[f] = rng.random(q.shape[1:]) < rng.choice([0.05, 0.2, 0.5, 0.8])
    return q


class _OutputWatch:
    """Checks, edge by edge outside reset, that an offered ``m_axis`` beat stays offered, unchanged, until taken."""

    def __init__(self, dut):
        self.dut = dut
        self.violations: list[str] = []
        self.pending: int | None = None
        cocotb.start_soon(self._run())

    async def _run(self):
        dut = self.dut
        cycle = 0
        while True:
            await RisingEdge(dut.clk)
            cycle += 1
            if dut.rst.value:
                self.pending = None
                continue
            valid = bool(dut.m_axis_tvalid.value)
            data = int(dut.m_axis_tdata.value) if valid else None
            if self.pending is not None and (not valid or data != self.pending):
                self.violations.append(f"cycle {cycle}: beat {self.pending:#x} withdrawn or changed before its "
                                       f"handshake (tvalid={int(valid)}, tdata={data})")
            self.pending = data if valid and not dut.m_axis_tready.value else None


class TB:
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        self.dut = dut
        self.log = dut._log
        case, self.case_dir = case_from_env(CASE_ENV, "tests/test_rtl_maxpool_bits.py")
        self.spec = MaxPoolBitsSpec(**case["spec"])
        self.n_frames = int(case["n_frames"])
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        s = self.spec
        expected = {"CHANNELS": s.channels, "PE": s.pe, "HEIGHT": s.height, "WIDTH": s.width, "K": s.k, "CF": s.cf,
                    "OUT_HEIGHT": s.out_height, "OUT_WIDTH": s.out_width_px, "LATENCY": s.latency}
        for name, value in expected.items():
            got = dut_int(dut, name)
            assert got is None or got == value, f"DUT {name}={got}, the spec says {value}"
        for port in ("s_axis_tdata", "m_axis_tdata"):
            assert len(getattr(dut, port)) == s.pe, f"{port} is {len(getattr(dut, port))} bits, expected {s.pe}"
        self.axis = AxisHarness(dut, ["s_axis"], ["m_axis"], drivers_follow_reset=drivers_follow_reset)
        self.watch = _OutputWatch(dut)
        self.frames_checked = 0

    @property
    def in_beats(self):
        return self.axis.beats("s_axis")

    @property
    def out_beats(self):
        return self.axis.beats("m_axis")

    async def reset(self, cycles: int = 3):
        await self.axis.reset(cycles)
        self.watch.pending = None

    def random_inputs(self, n: int) -> np.ndarray:
        return random_inputs(self.rng, self.spec, n)

    async def send(self, q: np.ndarray):
        for words in bit_frame_words(q, self.spec.channels, self.spec.pe):
            await self.axis.send("s_axis", words)

    async def send_tail(self, beats: int):
        s = self.spec
        await self.axis.send("s_axis", bit_frame_words(self.random_inputs(1), s.channels, s.pe)[0][-beats:])

    async def wait_sources(self):
        await self.axis.sources["s_axis"].wait()
        await RisingEdge(self.dut.clk)

    async def wait_outputs(self, n_frames: int, slowdown: float = 1.0):
        s = self.spec
        timeout = int((n_frames + 2) * s.frame_beats * 2 * slowdown + 4 * s.latency + 200)
        await self.axis.wait_beats("m_axis", n_frames * s.out_frame_beats, timeout)
        # cropped rows after the last window: the frame's input goes on after its last output
        await self.axis.wait_beats("s_axis", n_frames * s.frame_beats, timeout)
        await self.axis.idle_cycles(2 * s.latency + 10)  # nothing extra comes out

    def check_outputs(self, tag: str, n_frames: int) -> np.ndarray:
        s = self.spec
        for what, beats, per_frame in (("input", self.in_beats, s.frame_beats),
                                       ("output", self.out_beats, s.out_frame_beats)):
            assert len(beats) == n_frames * per_frame, (
                f"{tag}: {len(beats)} {what} beats, expected {n_frames * per_frame} ({n_frames} frames)")
        assert not self.watch.violations, f"{tag}: stream protocol: " + "; ".join(self.watch.violations[:5])
        a = bit_frames_from_words([w for _, w in self.in_beats], (s.channels, s.height, s.width), s.pe)
        expected = s.reference(a)
        got = bit_frames_from_words([w for _, w in self.out_beats], s.out_shape, s.pe)
        bad = np.argwhere(got != expected)
        if len(bad):
            for f, c, y, x in bad[:10]:
                self.log.error("%s: frame %d output pixel (%d, %d) channel %d: expected %d, got %d", tag, f, y, x, c,
                               expected[f, c, y, x], got[f, c, y, x])
            f, c, y, x = bad[0]
            raise AssertionError(f"{tag}: {len(bad)} mismatches; first at frame {f}, output pixel (row {y}, column "
                                 f"{x}), channel {c}: expected {expected[f, c, y, x]}, got {got[f, c, y, x]}")
        self.frames_checked += n_frames
        return a

    def write_result(self, name: str, result: dict):
        (self.case_dir / f"result_{name}.json").write_text(json.dumps(result, indent=2) + "\n")


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, clocks per frame and latency."""
    tb = TB(dut, test_seed=1)
    s = tb.spec
    await tb.reset()
    n = max(tb.n_frames, 4)
    q = tb.random_inputs(n)
    await tb.send(q)
    await tb.wait_outputs(n)
    got_q = tb.check_outputs("stream_full_rate", n)
    assert np.array_equal(got_q, q), "the monitored inputs differ from the sent"
    in_cycles = np.array([c for c, _ in tb.in_beats])
    out_cycles = np.array([c for c, _ in tb.out_beats])
    in_starts, out_starts = in_cycles[::s.frame_beats], out_cycles[::s.out_frame_beats]
    measured = (in_starts[-1] - in_starts[0]) / (n - 1)
    out_measured = (out_starts[-1] - out_starts[0]) / (n - 1)
    completing = (np.arange(n)[:, None] * s.frame_beats + s.completing_beats()[None, :]).reshape(-1)
    beat_latencies = sorted(set((out_cycles - in_cycles[completing]).tolist()))
    analytic = s.cycles_per_frame
    tb.log.info("%s: cycles per frame measured %.3f (input), %.3f (output), analytic %.3f; per-beat latency %s",
                s.name, measured, out_measured, analytic, beat_latencies)
    tb.write_result("stream_full_rate", {
        "spec": asdict(s), "n_frames": n, "frame_beats": s.frame_beats, "out_frame_beats": s.out_frame_beats,
        "cycles_per_frame_measured": measured, "cycles_per_frame_measured_output": out_measured,
        "cycles_per_frame_analytic": analytic, "latency_measured": beat_latencies, "latency_stated": s.latency,
        "frames_checked": tb.frames_checked,
    })
    assert abs(measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{measured} cycles per frame, analytic {analytic}"
    assert abs(out_measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{out_measured} cycles per frame at the output"
    assert np.all(np.diff(in_cycles) == 1), "the input was not taken at one beat per clock"
    assert beat_latencies == [s.latency], f"per-beat latencies {beat_latencies}, stated {s.latency}"


@cocotb.test()
async def stream_idle_backpressure(dut):
    """Random idle on the input, random backpressure on the output: exact, nothing lost."""
    tb = TB(dut, test_seed=2)
    await tb.reset()
    tb.axis.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
    n = tb.n_frames
    q = tb.random_inputs(n)
    await tb.send(q)
    await tb.wait_outputs(n, slowdown=8)
    got_q = tb.check_outputs("stream_idle_backpressure", n)
    assert np.array_equal(got_q, q), "the monitored inputs differ from the sent"
    tb.write_result("stream_idle_backpressure", {"n_frames": n, "frames_checked": tb.frames_checked})
    tb.axis.set_idle_backpressure(None)


def reset_delays(spec: MaxPoolBitsSpec) -> list[int]:
    """Clock offsets (from the first input handshake) for the resets: inside the first frame, with a result in the
    pipeline and in the output FIFO, at the frame's end, inside the second frame."""
    fb, lat = spec.frame_beats, spec.latency
    first_out = int(spec.completing_beats()[0])
    points = [0, 1, 2, first_out, first_out + 1, first_out + lat, fb // 2, fb - 1, fb, fb + 1, fb + lat + 1,
              fb + fb // 2 + 1]
    return sorted(set(p for p in points if p >= 0))


@cocotb.test()
async def reset_mid_frame(dut):
    """Reset in the middle of a frame (source not tied to the reset, so the stream goes on right after it): the unit
    starts a fresh frame with the first beat taken after the reset. Alternately with idle and backpressure."""
    tb = TB(dut, test_seed=3, drivers_follow_reset=False)
    s = tb.spec
    delays = reset_delays(s)
    checked = 0
    for i, delay in enumerate(delays):
        tag = f"reset_mid_frame[delay={delay}]"
        tb.axis.set_idle_backpressure(None)
        await tb.reset()
        if i % 2:
            tb.axis.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
        await tb.send(tb.random_inputs(3))
        while not tb.in_beats:
            await RisingEdge(dut.clk)
        for _ in range(delay):
            await RisingEdge(dut.clk)
        await tb.reset(cycles=1)
        await RisingEdge(dut.clk)
        assert not dut.m_axis_tvalid.value, f"{tag}: m_axis_tvalid high right after reset"
        await tb.wait_sources()
        pad = (-len(tb.in_beats)) % s.frame_beats
        if pad:
            await tb.send_tail(pad)
        more = max(2, tb.n_frames // 4) if delay == delays[-1] else 2
        await tb.send(tb.random_inputs(more))
        await tb.wait_sources()
        assert len(tb.in_beats) % s.frame_beats == 0, f"{tag}: {len(tb.in_beats)} input beats after the reset"
        total = len(tb.in_beats) // s.frame_beats
        await tb.wait_outputs(total, slowdown=8)
        tb.check_outputs(tag, total)
        checked += total
    tb.log.info("reset at %d offsets, %d frames after the resets exact", len(delays), checked)
    tb.write_result("reset_mid_frame", {"delays": delays, "frames_checked": checked})
    tb.axis.set_idle_backpressure(None)
