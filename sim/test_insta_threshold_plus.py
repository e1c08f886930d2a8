"""cocotb testbench of ``hw/blocks/insta_threshold/insta_threshold.sv`` with ``SE = 1`` (INSTA-Th+) against the golden function
``instabnn.contract.layers.ThresholdPlus`` (``thresholds`` / ``binarize``).

The pytest entry ``tests/test_rtl_insta_threshold_plus.py`` draws a realistic random unit for one folding with
:func:`random_unit` (``threshold_plus`` with an SE MLP from ``ptq_int8`` + ``se_mlp_fixed``, as the lowering builds
it, random SE weights and bias), writes the six memory files and a case file with :func:`prepare_case`, and runs the
cocotb tests below in one simulation; the case file (named by ``INSTABNN_INSTA_PLUS_CASE``) holds the generator's
arguments and seed, and the testbench rebuilds the same unit from them.

Tests (each starts with a reset), as for the INSTA-Th unit:

* ``stream_full_rate``: source always valid, sinks always ready: every output bit exact; the clocks per frame equal
  ``spec.cycles_per_frame`` (within 2 %; exactly ``N*C/PE`` at full rate, where every beat also leaves exactly
  ``spec.beat_latency`` edges after it entered and each frame's first output follows its last input by
  ``spec.latency`` edges).
* ``stream_idle_backpressure``: random idle on ``s_axis``, random backpressure on ``m_axis`` and ``m_axis_q``.
* ``reset_mid_frame``: single-cycle resets inside a frame's input, in each phase of the computation, during the
  readout; afterwards no stale beat and every later frame exact.

Every test checks the stream protocol on the outputs and, with ``SHORTCUT = 1``, that ``m_axis_q`` returns the
input ``q`` in order. A mismatch names the frame, pixel and channel with q, the reference threshold, expected and got.
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

from instabnn.hw.blocks.insta_threshold.spec_plus import (InstaThresholdPlusSpec, bits_from_words, frame_words, frames_from_words,
                                          write_memory_files)
from instabnn.contract.layers import (G_IN_FRAC, SE_H_FRAC, ThresholdPlus, binarize, g_lookup, ptq_int8,
                                          se_input, se_mlp_fixed, shift_round, threshold_plus)

CASE_ENV = "INSTABNN_INSTA_PLUS_CASE"
CLOCK_PERIOD_NS = 10
CYCLE_TOLERANCE = 0.02


# ----------------------------------------------------------------------------------------------------------------
# Case preparation (runs in pytest, before the simulator starts: the ROMs are loaded at time 0)
# ----------------------------------------------------------------------------------------------------------------


def _q_range(input_bits: int) -> tuple[int, int]:
    return -(1 << (input_bits - 1)), (1 << (input_bits - 1)) - 1


def random_unit(rng: np.random.Generator, channels: int, pixels: int, input_bits: int, hidden: int,
                g: str = "tanh3") -> ThresholdPlus:
    """A random INSTA-Th+ unit built as the lowering builds one (``threshold_plus`` with ``se_mlp_fixed`` of
    ``ptq_int8`` weights), in the q domain of a random power-of-two scale 2^e. The statistic's mean and sigma spread
    over the input range (a few channels with a tiny sigma, so s hits its 16-bit clamp); the SE weights are random
    (real, then 8-bit per-row quantized), with a random bias and a random output gain, so that z covers the g table's
    range and some channels pass its +-16 clamp; beta and a few extreme means push some thresholds to the ends of
    the input range (the clamp of t)."""
    qmin, qmax = _q_range(input_bits)
    span = qmax - qmin + 1
    e = int(rng.integers(-6, 2))
    m = rng.uniform(qmin / 2, qmax / 2, channels)
    k = rng.uniform(max(span / 32, 0.5), span / 8, channels)
    tiny = rng.random(channels) < 0.15
    k[tiny] = rng.uniform(0.05, 0.3, int(tiny.sum()))
    beta = rng.normal(0, 0.5, channels)
    far = rng.random(channels) < 0.15
    beta[far] = rng.choice([-1, 1], int(far.sum())) * rng.uniform(2, 8, int(far.sum())) * span / k[far]
    w1 = rng.normal(0, 1, (hidden, channels)) / np.sqrt(channels)
    w2 = rng.normal(0, 1, (channels, hidden)) / np.sqrt(hidden)
    w1[rng.random(w1.shape) < 0.1] = 0.0
    bias = rng.normal(0, 1.5, channels)
    target = rng.uniform(1.0, 4.0)  # typical |SE output| before the bias

    def build(w2_real):
        w1_int, step1 = ptq_int8(w1)
        w2_int, step2 = ptq_int8(w2_real)
        se = se_mlp_fixed(w1_int, step1, w2_int, step2, bias)
        return threshold_plus(m * 2.0 ** e, k * 2.0 ** e, beta, e, pixels, input_bits, se, g)

    # calibrate W2 on sample frames so that z spreads over the table (some channels still pass its +-16 clamp)
    unit = build(w2)
    s = se_input(unit.poly, random_frames(rng, unit, 8)[..., None])
    z = (unit.se(s) - (unit.se.b >> (unit.se.mult_frac2 + SE_H_FRAC - G_IN_FRAC))[None, :]) / 2.0 ** G_IN_FRAC
    typical = float(np.median(np.abs(z)))
    return build(w2 * (target / typical if typical > 1e-3 else 1.0))


def random_frames(rng: np.random.Generator, unit: ThresholdPlus, n: int) -> np.ndarray:
    """``n`` frames (n, C, N): mostly skewed clouds (the third moment varies from frame to frame), some uniform over
    the whole range; frames 1 and 2 sit at q_min and q_max (the widest power sums)."""
    qmin, qmax = _q_range(unit.input_bits)
    c, pixels = unit.poly.channels, unit.poly.pixels
    span = qmax - qmin + 1
    out = np.empty((n, c, pixels), dtype=np.int64)
    for f in range(n):
        if rng.random() < 0.15:
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


def unit_from_case(case: dict) -> ThresholdPlus:
    g = case["generator"]
    return random_unit(np.random.default_rng(g["seed"]), g["channels"], g["pixels"], g["input_bits"], g["hidden"],
                       g["g"])


def prepare_case(channels: int, pe: int, pixels: int, input_bits: int, hidden: int, shortcut: int, seed: int,
                 n_frames: int, directory: Path, g: str = "tanh3",
                 se_simd: int | None = 1) -> tuple[InstaThresholdPlusSpec, dict, dict]:
    """A random unit for the folding; writes the memory files and ``case.json`` into ``directory``.
    Returns ``(spec, rtl_parameters, extra_env)`` for the runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generator = {"seed": seed, "channels": channels, "pixels": pixels, "input_bits": input_bits, "hidden": hidden,
                 "g": g}
    case = {"generator": generator, "seed": seed, "n_frames": n_frames}
    unit = unit_from_case(case)
    spec = InstaThresholdPlusSpec.from_constants(unit, pe, shortcut=shortcut, se_simd=se_simd)
    files = write_memory_files(directory, unit, spec)
    case["spec"] = asdict(spec)
    (directory / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    return spec, spec.rtl_parameters(**files), {CASE_ENV: str(directory / "case.json")}


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


class _Probes:
    """Records the writes of s_c (phase A), h_k (phase B) and t_fx (phase C) inside the computation, in order."""

    def __init__(self, dut):
        self.s, self.h, self.t = [], [], []
        try:
            c = dut.g_insta.g_plus.compute_inst
            self.sigs = (c.a3_valid_reg, c.s_value, c.b4_valid_reg, c.h_value, c.c7_valid_reg, c.c7_t_reg)
            self.available = True
        except AttributeError:
            self.available = False

    def sample(self):
        if not self.available:
            return
        a_valid, s_value, b_valid, h_value, c_valid, t_value = self.sigs
        if a_valid.value:
            self.s.append(s_value.value.to_signed())
        if b_valid.value:
            self.h.append(int(h_value.value))
        if c_valid.value:
            self.t.append(t_value.value.to_signed())

    def clear(self):
        self.s.clear()
        self.h.clear()
        self.t.clear()


class TB:
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        self.dut = dut
        self.log = dut._log
        case_path = os.environ.get(CASE_ENV)
        if not case_path:
            raise RuntimeError(f"{CASE_ENV} is not set: run this testbench through "
                               "tests/test_rtl_insta_threshold_plus.py")
        case = json.loads(Path(case_path).read_text())
        self.spec = InstaThresholdPlusSpec.from_dict(case["spec"])
        self.unit = unit_from_case(case)
        self.spec.check_constants(self.unit)
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
        self.probes = _Probes(dut)
        self.frames_checked = 0
        cocotb.start_soon(self._monitor())
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()

    def _check_parameters(self):
        s, dut = self.spec, self.dut
        p1, p2, p3 = s.power_sum_bits
        expected = {
            "CHANNELS": s.channels, "PE": s.pe, "PIXELS": s.pixels, "INPUT_BITS": s.input_bits, "HIDDEN": s.hidden,
            "SHORTCUT": s.shortcut, "CF": s.cf, "FRAME_BEATS": s.frame_beats, "P1_BITS": p1, "P2_BITS": p2,
            "P3_BITS": p3, "LATENCY": s.latency, "ISSUE_LATENCY": s.issue_latency,
            "COMPUTE_EDGES": s.compute_edges, "BUF_DEPTH": s.buffer_depth,
        }
        read = {name: _dut_int(dut, name) for name in expected}
        self.log.info("DUT parameters %s (None: not exposed by the simulator)", read)
        for name, value in read.items():
            assert value is None or value == expected[name], f"DUT {name}={value}, the spec says {expected[name]}"
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
            self.probes.sample()

    def clear_records(self):
        self.in_beats.clear()
        self.out.clear()
        self.out_q.clear()
        self.probes.clear()

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
        return random_frames(self.rng, self.unit, n)

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

    def check_internals(self, tag: str, q4: np.ndarray, n_frames: int):
        """White-box check of the computation (every write of s_c, h_k and t_fx, in order) against the golden
        function's intermediate values, so that an error of one LSB anywhere in the chain is seen even where it does
        not move an integer threshold."""
        if not self.probes.available:
            self.log.warning("%s: internal probes not accessible; outputs checked only", tag)
            return
        unit, se = self.unit, self.unit.se
        s = se_input(unit.poly, q4)
        h = np.clip(shift_round(se.m1[None, :] * (s @ se.w1.T), self.spec.h_shift), 0, (1 << 16) - 1)
        g = g_lookup(unit.g, se(s), G_IN_FRAC)
        t_fx = unit.offset[None, :].astype(object) * (1 << 14) + unit.gain[None, :].astype(object) * g
        for name, ref, got in (("s", s, self.probes.s), ("h", h, self.probes.h), ("t_fx", t_fx, self.probes.t)):
            want = [int(v) for v in np.asarray(ref).reshape(-1)]
            assert len(got) == len(want), f"{tag}: {len(got)} {name} writes, expected {len(want)} ({n_frames} frames)"
            bad = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
            if bad:
                frame, index = divmod(bad[0], np.asarray(ref).shape[1])
                raise AssertionError(f"{tag}: {len(bad)} wrong {name} values; first frame {frame}, index {index}: "
                                     f"got {got[bad[0]]}, expected {want[bad[0]]}")
        self.log.info("%s: internals exact: %d s, %d h, %d t_fx values", tag, len(self.probes.s), len(self.probes.h),
                      len(self.probes.t))

    def check_outputs(self, tag: str, n_frames: int, check_internals: bool = True) -> np.ndarray:
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
        expected = binarize(q4, self.unit)[..., 0]
        got = bits_from_words([w for _, w in self.out.beats], s)
        bad = np.argwhere(got != expected)
        if len(bad):
            t = self.unit.thresholds(q4)
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
        if check_internals:
            self.check_internals(tag, q4, n_frames)
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
    # steady state: skip the first frames (the unit fills up; matters only where the computation sets the pace)
    skip = 0 if s.full_rate else min(4, n - 3)
    measured = (in_starts[-1] - in_starts[skip]) / (n - 1 - skip)
    out_measured = (out_starts[-1] - out_starts[skip]) / (n - 1 - skip)
    periods = np.diff(in_starts)
    beat_latencies = sorted(set((out_cycles - in_cycles).tolist()))
    # from a frame's last input beat to its first output beat
    frame_latencies = sorted(set((out_starts - in_cycles[fb - 1 :: fb]).tolist()))
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


def reset_delays(spec: InstaThresholdPlusSpec) -> list[int]:
    """Clock offsets (from the first input handshake) for the resets: inside the first frame's input, at its end,
    during its threshold computation, during its readout, and with the next frame half in."""
    fb, lat = spec.frame_beats, spec.latency
    points = [0, 1, 2, fb // 2, fb - 1, fb, fb + 1, fb + 3]
    points += [fb + lat // 2, fb + lat - 3, fb + lat - 1, fb + lat, fb + lat + 1, fb + lat + fb // 2,
               2 * fb + lat + 2, fb + 3 * spec.channels + 7, fb + 3 * spec.channels + spec.mac_steps // 2 + 9]
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
        tb.check_outputs(tag, total, check_internals=False)
        tb.log.debug("%s: reset after %d input / %d output beats; %d frames after it exact", tag, *seen, total)
        checked += total
    tb.log.info("reset at %d offsets, %d frames after the resets exact", len(delays), checked)
    tb.write_result("reset_mid_frame", {"delays": delays, "frames_checked": checked})
    tb.set_idle_backpressure(None)
