"""cocotb testbench of ``hw/blocks/insta_threshold/insta_threshold.sv`` against the golden function ``instabnn.contract.insta``.

The pytest entry ``tests/test_rtl_insta_threshold.py`` builds the unit with Verilator for one
:class:`~instabnn.hw.blocks.insta_threshold.spec.InstaThresholdSpec`, writes random constants (coefficient file) and a case file
with :func:`prepare_case`, and runs the cocotb tests below in one simulation; the case file is named by the
environment variable ``INSTABNN_INSTA_CASE``.

Tests (each starts with a reset):

* ``stream_full_rate``: source always valid, sinks always ready. Every output bit equals the reference exactly;
  the clocks per frame (input side and output side) are within 2 % of ``spec.cycles_per_frame`` (``N*C/PE`` at
  full rate); at full rate every beat leaves exactly ``spec.beat_latency`` edges after it entered, and each
  frame's first output follows its last input by ``spec.latency`` edges.
* ``stream_idle_backpressure``: random idle cycles on ``s_axis`` and random backpressure on ``m_axis`` (and on
  ``m_axis_q``, independently); every output exact, no beat lost or added.
* ``reset_mid_frame``: a single-cycle reset at many points (inside a frame's input, during the threshold
  computation, during the readout), the stream continuing through it; afterwards no stale beat and every later
  frame exact.

Every test also checks the stream protocol on the outputs (a beat offered without ``tready`` stays offered, with
the same data, until taken) and, with ``SHORTCUT = 1``, that ``m_axis_q`` returns exactly the input ``q`` in order.

Structure (cocotb's matrix-multiplier example): a cycle monitor records every handshake with its clock cycle; the
scoreboard unpacks the input words the DUT actually sampled into frames, computes the expected bits with
``insta_threshold_compare`` (the single definition of the math; nothing is modelled here) and compares in order.
A mismatch names the test, frame, pixel and channel, with q, the reference threshold, expected and got.
Parameters are read back from the DUT where the simulator exposes them and must agree with the spec.
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

from instabnn.hw.blocks.insta_threshold.spec import (InstaThresholdSpec, bits_from_words, frame_words, frames_from_words,
                                     write_coeff_file)
from instabnn.contract.insta import (InstaThConstants, frame_thresholds, insta_th_constants,
                                         insta_threshold_compare, static_threshold_constants)

CASE_ENV = "INSTABNN_INSTA_CASE"
CLOCK_PERIOD_NS = 10
CYCLE_TOLERANCE = 0.02


# ----------------------------------------------------------------------------------------------------------------
# Case preparation (runs in pytest, before the simulator starts: the coefficient ROM is loaded at time 0)
# ----------------------------------------------------------------------------------------------------------------


def _q_range(input_bits: int) -> tuple[int, int]:
    return -(1 << (input_bits - 1)), (1 << (input_bits - 1)) - 1


def random_constants(rng: np.random.Generator, channels: int, pixels: int, input_bits: int,
                     static: int) -> InstaThConstants:
    """Random constants in the q domain (scale S = 2^e, random e). About a quarter of the channels put the
    threshold at or beyond the ends of the input range (so the clamp to [q_min, q_max + 1] is exercised), the rest
    spread it over the range where the comparisons are mixed."""
    qmin, qmax = _q_range(input_bits)
    span = qmax - qmin + 1
    scale = 2.0 ** int(rng.integers(-6, 2))
    ends = np.array([qmin - 3.0, qmin - 0.5, qmin, qmin + 0.25, qmax - 0.5, qmax, qmax + 0.5, qmax + 1.0,
                     qmax + 4.0])
    at_end = rng.random(channels) < 0.25
    if static:
        tau_q = rng.uniform(qmin - 1, qmax + 1, channels)
        integer = rng.random(channels) < 0.3  # integer thresholds: q == t must give +1
        tau_q[integer] = np.round(tau_q[integer])
        tau_q[at_end] = rng.choice(ends, int(at_end.sum()))
        return static_threshold_constants(tau_q * scale, scale, pixels, input_bits)
    m = rng.uniform(qmin / 2, qmax / 2, channels)  # mean of q
    k = rng.uniform(max(span / 24, 0.5), span / 3, channels)  # standard deviation of q
    alpha = rng.normal(0, 1, channels)
    beta = rng.normal(0, 0.6, channels)
    # channels pinned near an end: T ~ target + small frame-dependent part
    alpha[at_end] *= 0.02
    beta[at_end] = (rng.choice(ends, int(at_end.sum())) - m[at_end]) / k[at_end]
    return insta_th_constants(m * scale, k * scale, alpha, beta, scale, pixels, input_bits)


def random_frames(rng: np.random.Generator, consts: InstaThConstants, n: int) -> np.ndarray:
    """``n`` frames (n, C, N): mostly skewed clouds around the channel means (the third moment varies from frame to
    frame), some uniform over the whole range; frames 1 and 2 sit at q_min and q_max (the widest power sums)."""
    qmin, qmax = _q_range(consts.input_bits)
    c, pixels = consts.channels, consts.pixels
    span = qmax - qmin + 1
    out = np.empty((n, c, pixels), dtype=np.int64)
    for f in range(n):
        kind = rng.random()
        if kind < 0.15:
            q = rng.integers(qmin, qmax + 1, size=(c, pixels))
        else:
            centre = rng.uniform(qmin, qmax, size=(c, 1)) * 0.6
            width = rng.uniform(0.03, 0.35, size=(c, 1)) * span
            skew = rng.gamma(rng.uniform(0.5, 4.0), 1.0, size=(c, pixels)) * rng.choice([-1, 1], size=(c, 1))
            q = np.round(centre + width * (skew - skew.mean(axis=1, keepdims=True)) / (skew.std() + 1e-9))
        out[f] = np.clip(q, qmin, qmax)
    for f, value in ((1, qmin), (2, qmax)):
        if f < n:
            out[f] = value
    return out


def prepare_case(channels: int, pe: int, pixels: int, input_bits: int, static: int, shortcut: int, seed: int,
                 n_frames: int, directory: Path, limbs: int | None = None,
                 power_table: int | None = None) -> tuple[InstaThresholdSpec, dict, dict]:
    """Random constants for the folding; writes the coefficient file and ``case.json`` into ``directory``.
    ``limbs`` / ``power_table`` None: the spec's defaults. Returns ``(spec, rtl_parameters, extra_env)`` for the
    runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    consts = random_constants(rng, channels, pixels, input_bits, static)
    spec = InstaThresholdSpec.from_constants(consts, pe, static=static, shortcut=shortcut, limbs=limbs,
                                            power_table=power_table)
    coeff_file = write_coeff_file(directory / "coeffs.mem", consts, spec)
    case = {"spec": asdict(spec), "constants": consts.to_dict(), "seed": seed, "n_frames": n_frames}
    (directory / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    return spec, spec.rtl_parameters(coeff_file), {CASE_ENV: str(directory / "case.json")}


def spec_from_dict(d: dict) -> InstaThresholdSpec:
    d = dict(d)
    d["coeff_bits"], d["fracs"] = tuple(d["coeff_bits"]), tuple(d["fracs"])
    return InstaThresholdSpec(**d)


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


class _StreamWatch:
    """Records the handshakes of one output stream and checks that an offered beat stays offered, unchanged."""

    def __init__(self, dut, prefix: str):
        self.valid = getattr(dut, f"{prefix}_tvalid")
        self.ready = getattr(dut, f"{prefix}_tready")
        self.data = getattr(dut, f"{prefix}_tdata")
        self.prefix = prefix
        self.beats: list[tuple[int, int]] = []
        self.violations: list[str] = []
        self.pending: int | None = None  # tdata of a beat offered and not taken at the last edge

    def sample(self, cycle: int):
        valid = bool(self.valid.value)
        data = int(self.data.value) if valid else None
        if self.pending is not None and (not valid or data != self.pending):
            self.violations.append(f"{self.prefix}: cycle {cycle}: beat {self.pending:#x} withdrawn or changed "
                                   f"before its handshake (tvalid={int(valid)}, tdata={data})")
        if valid and self.ready.value:
            self.beats.append((cycle, data))
            self.pending = None
        else:
            self.pending = data if valid else None

    def clear(self):
        self.beats.clear()
        self.pending = None


class TB:
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        self.dut = dut
        self.log = dut._log
        case_path = os.environ.get(CASE_ENV)
        if not case_path:
            raise RuntimeError(f"{CASE_ENV} is not set: run this testbench through tests/test_rtl_insta_threshold.py")
        case = json.loads(Path(case_path).read_text())
        self.spec = spec_from_dict(case["spec"])
        self.consts = InstaThConstants.from_dict(case["constants"])
        self.spec.check_constants(self.consts)
        self.case_dir = Path(case_path).parent
        self.n_frames = int(case["n_frames"])
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        self._check_parameters()

        reset = dut.rst if drivers_follow_reset else None
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, reset, byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, reset, byte_lanes=1)
        self.q_sink = None
        if self.spec.shortcut:
            self.q_sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_q"), dut.clk, reset, byte_lanes=1)
        else:
            dut.m_axis_q_tready.value = 0
        for port in (self.source, self.sink, self.q_sink):
            if port is not None:
                port.log.setLevel("WARNING")

        self.cycle = 0
        self.in_beats: list[tuple[int, int]] = []
        self.out = _StreamWatch(dut, "m_axis")
        self.out_q = _StreamWatch(dut, "m_axis_q")
        self.frames_checked = 0
        cocotb.start_soon(self._monitor())
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()

    def _check_parameters(self):
        s, dut = self.spec, self.dut
        p1, p2, p3 = s.power_sum_bits
        expected = {
            "CHANNELS": s.channels, "PE": s.pe, "PIXELS": s.pixels, "INPUT_BITS": s.input_bits, "STATIC": s.static,
            "SHORTCUT": s.shortcut, "CF": s.cf, "FRAME_BEATS": s.frame_beats, "P1_BITS": p1, "P2_BITS": p2,
            "P3_BITS": p3, "LATENCY": s.latency, "ISSUE_LATENCY": s.issue_latency,
        }
        if not s.static:
            expected["BUF_DEPTH"] = s.buffer_depth
        read = {name: _dut_int(dut, name) for name in expected}
        self.log.info("DUT parameters %s (None: not exposed by the simulator)", read)
        for name, value in read.items():
            assert value is None or value == expected[name], f"DUT {name}={value}, the spec says {expected[name]}"
        assert s.power_sum_bits == self.consts.power_sum_bits
        for port, width in (("s_axis_tdata", s.in_width), ("m_axis_tdata", s.out_width),
                            ("m_axis_q_tdata", s.in_width)):
            got = len(getattr(dut, port))
            assert got == width, f"{port} is {got} bits, expected {width}"

    async def _monitor(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            self.cycle += 1
            if dut.rst.value:
                self.out.pending = self.out_q.pending = None  # a reset may withdraw an offered beat
                continue
            if dut.s_axis_tvalid.value and dut.s_axis_tready.value:
                self.in_beats.append((self.cycle, int(dut.s_axis_tdata.value)))
            self.out.sample(self.cycle)
            self.out_q.sample(self.cycle)

    def clear_records(self):
        self.in_beats.clear()
        self.out.clear()
        self.out_q.clear()

    def set_idle_backpressure(self, seed: int | None, idle: float = 0.3, backpressure: float = 0.5):
        sinks = [s for s in (self.sink, self.q_sink) if s is not None]
        if seed is None:
            self.source.clear_pause_generator()
            self.source.pause = False
            for sink in sinks:
                sink.clear_pause_generator()
                sink.pause = False
        else:
            self.source.set_pause_generator(random_pause(seed, idle))
            for i, sink in enumerate(sinks):
                sink.set_pause_generator(random_pause(seed + 1 + i, backpressure))

    async def reset(self, cycles: int = 3):
        """Hold rst high for ``cycles`` clock edges. Returns right after the last reset edge, with the records
        cleared: the next edge is the first one at which the DUT (and the monitor) may see a handshake."""
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.sink.clear()
        if self.q_sink is not None:
            self.q_sink.clear()
        self.clear_records()

    def random_frames(self, n: int) -> np.ndarray:
        return random_frames(self.rng, self.consts, n)

    async def send(self, frames: np.ndarray):
        for words in frame_words(frames, self.spec):
            await self.source.send(AxiStreamFrame(words))

    async def send_words(self, words: list[int]):
        if words:
            await self.source.send(AxiStreamFrame(words))

    async def wait_outputs(self, n_beats: int, timeout_cycles: int):
        start = self.cycle
        watches = [self.out] + ([self.out_q] if self.spec.shortcut else [])
        while any(len(w.beats) < n_beats for w in watches):
            assert self.cycle - start < timeout_cycles, (
                f"timeout: {[len(w.beats) for w in watches]} of {n_beats} output beats after {timeout_cycles} cycles"
            )
            await RisingEdge(self.dut.clk)

    def timeout(self, n_frames: int, slowdown: float = 1.0) -> int:
        s = self.spec
        return int((n_frames + 2) * (s.cycles_per_frame + s.frame_beats) * slowdown + 4 * s.latency + 200)

    def check_outputs(self, tag: str, n_frames: int) -> np.ndarray:
        """Scoreboard: the recorded input words (as the DUT sampled them) against the recorded output beats."""
        s = self.spec
        n_beats = n_frames * s.frame_beats
        watches = [("input", self.in_beats), ("output", self.out.beats)]
        if s.shortcut:
            watches.append(("shortcut", self.out_q.beats))
        for what, beats in watches:
            assert len(beats) == n_beats, f"{tag}: {len(beats)} {what} beats, expected {n_beats} ({n_frames} frames)"
        violations = self.out.violations + self.out_q.violations
        assert not violations, f"{tag}: stream protocol: " + "; ".join(violations[:5])
        if not s.shortcut:
            assert not self.out_q.beats, f"{tag}: m_axis_q produced beats with SHORTCUT = 0"
        in_words = [w for _, w in self.in_beats]
        sampled = frames_from_words(in_words, s)
        q4 = sampled[..., None]  # (F, C, N, 1): H*W = N
        expected = insta_threshold_compare(q4, self.consts)[..., 0]
        got = bits_from_words([w for _, w in self.out.beats], s)
        bad = np.argwhere(got != expected)
        if len(bad):
            t = frame_thresholds(q4, self.consts)
            for f, c, p in bad[:10]:
                self.log.error("%s: frame %d pixel %d channel %d: q=%d, t=%d, expected %d, got %d", tag, f, p, c,
                               sampled[f, c, p], t[f, c], expected[f, c, p], got[f, c, p])
            f, c, p = bad[0]
            raise AssertionError(f"{tag}: {len(bad)} mismatches; first at frame {f}, pixel {p}, channel {c}: "
                                 f"q={sampled[f, c, p]}, t={t[f, c]}, expected {expected[f, c, p]}, "
                                 f"got {got[f, c, p]}")
        if s.shortcut:
            q_words = [w for _, w in self.out_q.beats]
            if q_words != in_words:
                i = next(i for i, (a, b) in enumerate(zip(q_words, in_words)) if a != b)
                frame, beat = divmod(i, s.frame_beats)
                raise AssertionError(f"{tag}: m_axis_q beat {i} (frame {frame}, pixel {beat // s.cf}, channels "
                                     f"{(beat % s.cf) * s.pe}..): {q_words[i]:#x}, input was {in_words[i]:#x}")
        self.frames_checked += n_frames
        return sampled

    def write_result(self, name: str, result: dict):
        path = self.case_dir / f"result_{name}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, clocks per frame and latency."""
    tb = TB(dut, test_seed=1)
    s = tb.spec
    tb.set_idle_backpressure(None)
    await tb.reset()
    n = max(tb.n_frames, 4)
    frames = tb.random_frames(n)
    await tb.send(frames)  # all queued: the source stays valid from the first beat to the last
    await tb.wait_outputs(n * s.frame_beats, timeout_cycles=tb.timeout(n))
    sampled = tb.check_outputs("stream_full_rate", n)
    assert np.array_equal(sampled, frames), "the monitored input differs from what the source sent"

    fb = s.frame_beats
    in_cycles = np.array([c for c, _ in tb.in_beats])
    out_cycles = np.array([c for c, _ in tb.out.beats])
    in_starts, out_starts = in_cycles[::fb], out_cycles[::fb]
    # steady state: skip the first two frames (the unit fills up; matters only where the computation sets the pace)
    skip = 0 if s.full_rate else min(2, n - 2)
    measured = (in_starts[-1] - in_starts[skip]) / (n - 1 - skip)
    out_measured = (out_starts[-1] - out_starts[skip]) / (n - 1 - skip)
    periods = np.diff(in_starts)
    beat_latencies = sorted(set((out_cycles - in_cycles).tolist()))
    # INSTA-Th: from a frame's last input beat to its first output beat; static: from beat to beat
    frame_latencies = sorted(set((out_starts - (in_starts if s.static else in_cycles[fb - 1 :: fb])).tolist()))
    analytic = s.cycles_per_frame
    tb.log.info(
        "%s: cycles per frame measured %.3f (input, min %d max %d), %.3f (output), analytic %.3f (N*C/PE = %d, "
        "full rate %s); last-in -> first-out latency %s, stated %d; per-beat latency %s, stated %d (frame %d)",
        s.name, measured, periods.min(), periods.max(), out_measured, analytic, fb, s.full_rate, frame_latencies,
        s.latency, beat_latencies[:4], s.beat_latency, fb,
    )
    tb.write_result(
        "stream_full_rate",
        {
            "spec": asdict(s),
            "n_frames": n,
            "frame_beats": fb,
            "full_rate": s.full_rate,
            "cycles_per_frame_measured": measured,
            "cycles_per_frame_measured_output": out_measured,
            "cycles_per_frame_min": int(periods.min()),
            "cycles_per_frame_max": int(periods.max()),
            "cycles_per_frame_analytic": analytic,
            "latency_measured": frame_latencies,
            "latency_stated": s.latency,
            "beat_latency_measured": beat_latencies,
            "beat_latency_stated": s.beat_latency,
            "buffer_depth": s.buffer_depth,
            "buffer_bits": s.buffer_bits,
            "total_cycles": int(out_cycles[-1] - in_cycles[0] + 1),
            "frames_checked": tb.frames_checked,
        },
    )
    assert abs(measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{measured} cycles per frame, analytic {analytic}"
    assert abs(out_measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{out_measured} cycles per frame at the output"
    if s.full_rate:
        assert periods.min() == periods.max() == fb, f"input frame periods {periods.min()}..{periods.max()}, not {fb}"
        assert frame_latencies == [s.latency], f"last-in -> first-out latencies {frame_latencies}, stated {s.latency}"
        assert beat_latencies == [s.beat_latency], f"per-beat latencies {beat_latencies}, stated {s.beat_latency}"
    else:
        assert min(frame_latencies) == s.latency, f"unloaded latency {min(frame_latencies)}, stated {s.latency}"


@cocotb.test()
async def stream_idle_backpressure(dut):
    """Random idle on s_axis and random backpressure on the outputs: exact outputs, nothing lost or added."""
    tb = TB(dut, test_seed=2)
    s = tb.spec
    await tb.reset()
    tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
    n = tb.n_frames
    frames = tb.random_frames(n)
    await tb.send(frames)
    await tb.wait_outputs(n * s.frame_beats, timeout_cycles=tb.timeout(n, slowdown=8))
    for _ in range(2 * s.latency + 10):  # nothing extra comes out
        await RisingEdge(dut.clk)
    sampled = tb.check_outputs("stream_idle_backpressure", n)
    assert np.array_equal(sampled, frames), "the monitored input differs from what the source sent"
    cycles = tb.out.beats[-1][0] - tb.in_beats[0][0] + 1
    tb.log.info("%d frames in %d cycles with idle and backpressure (%.1f per frame)", n, cycles, cycles / n)
    tb.write_result("stream_idle_backpressure", {"n_frames": n, "total_cycles": cycles,
                                                  "frames_checked": tb.frames_checked})
    tb.set_idle_backpressure(None)


def reset_delays(spec: InstaThresholdSpec) -> list[int]:
    """Clock offsets (from the first input handshake) for the resets: inside the first frame's input, at its end,
    during its threshold computation, during its readout, and with the next frame half in."""
    fb, lat = spec.frame_beats, spec.latency
    points = [0, 1, 2, fb // 2, fb - 1, fb, fb + 1, fb + 3]
    if not spec.static:
        points += [fb + lat // 2, fb + lat - 3, fb + lat - 1, fb + lat, fb + lat + 1, fb + lat + fb // 2,
                   2 * fb + lat + 2]
    return sorted(set(p for p in points if p >= 0))


@cocotb.test()
async def reset_mid_frame(dut):
    """Reset in the middle of a frame (and of the computation, and of the readout), then correct operation.

    The source is not tied to the reset, so s_axis_tvalid may be high at the reset edge and the stream goes on
    right after it: the unit must start a fresh frame with the first beat accepted after the reset. Alternately
    with idle and backpressure.
    """
    tb = TB(dut, test_seed=3, drivers_follow_reset=False)
    s = tb.spec
    delays = reset_delays(s)
    checked = 0
    for i, delay in enumerate(delays):
        tag = f"reset_mid_frame[delay={delay}]"
        tb.set_idle_backpressure(None)
        await tb.reset()
        if i % 2:
            tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
        await tb.send(tb.random_frames(3))
        while not tb.in_beats:
            await RisingEdge(dut.clk)
        for _ in range(delay):
            await RisingEdge(dut.clk)
        seen = (len(tb.in_beats), len(tb.out.beats))
        await tb.reset(cycles=1)  # a single-cycle reset must be enough
        await RisingEdge(dut.clk)  # values seen at this edge are the state the reset left
        assert not dut.m_axis_tvalid.value, f"{tag}: m_axis_tvalid high right after reset"
        assert not dut.m_axis_q_tvalid.value, f"{tag}: m_axis_q_tvalid high right after reset"
        # the rest of the interrupted stream is the start of new frames: complete the last one, then more
        await tb.source.wait()  # returns at the clock edge that accepted the last beat
        await RisingEdge(dut.clk)
        pad = (-len(tb.in_beats)) % s.frame_beats
        if pad:
            await tb.send_words(frame_words(tb.random_frames(1), s)[0][-pad:])
        more = max(2, tb.n_frames // 4) if delay == delays[-1] else 2
        await tb.send(tb.random_frames(more))
        await tb.source.wait()
        await RisingEdge(dut.clk)
        assert len(tb.in_beats) % s.frame_beats == 0, f"{tag}: {len(tb.in_beats)} input beats after the reset"
        total = len(tb.in_beats) // s.frame_beats
        await tb.wait_outputs(total * s.frame_beats, timeout_cycles=tb.timeout(total, slowdown=8))
        for _ in range(2 * s.latency + 10):  # nothing extra comes out
            await RisingEdge(dut.clk)
        tb.check_outputs(tag, total)
        tb.log.debug("%s: reset after %d input / %d output beats; %d frames after it exact", tag, *seen, total)
        checked += total
    tb.log.info("reset at %d offsets, %d frames after the resets exact", len(delays), checked)
    tb.write_result("reset_mid_frame", {"delays": delays, "frames_checked": checked})
    tb.set_idle_backpressure(None)
