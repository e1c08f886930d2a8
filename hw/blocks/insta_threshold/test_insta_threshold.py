"""Testbench of the INSTA-Th unit (``insta_threshold.sv``; ``SE = 1``: INSTA-Th+) against the golden functions
``instabnn.contract.insta`` (INSTA-Th, static thresholds) and ``instabnn.contract.layers.ThresholdPlus``
(INSTA-Th+: ``thresholds`` / ``binarize``): lint, illegal parameters, synthesis, cocotb.

One testbench drives both forms of the module; the spec in the case says which (an
:class:`~instabnn.hw.blocks.insta_threshold.spec.InstaThresholdSpec`, or an
:class:`~instabnn.hw.blocks.insta_threshold.spec_plus.InstaThresholdPlusSpec` with ``"se": 1``). Each simulation
case builds the unit with Verilator (cocotb's Python runner) for one folding and runs the ``@cocotb.test()``s of this
file in one simulation (the case reaches them through :func:`~instabnn.hw.blocks.common.axis_tb.run_bench`),
comparing every output bit with the golden function exactly. All output goes to pytest's tmp directories.

* INSTA-Th (:func:`prepare_case`): random constants (instance-aware or static) as the coefficient file. The default
  tier runs three foldings with tens of frames; ``-m slow`` sweeps seven more (random C, PE, N, input bits; static
  and instance-aware; with and without the shortcut output) with over 1000 frames in all.
* INSTA-Th+ (:func:`prepare_plus_case`): a realistic random unit (:func:`random_unit`: ``threshold_plus`` with an SE
  MLP from ``ptq_int8`` + ``se_mlp_fixed``, as the lowering builds it, random SE weights and bias) as the six memory
  files; the case holds the generator's arguments and seed, and the testbench rebuilds the same unit from them. The
  default tier runs four foldings (full rate at the boundary ``FRAME_BEATS = COMPUTE_EDGES + 2``, full rate with the
  shortcut output, computation-bound, four SE multipliers) with tens of frames; ``-m slow`` sweeps eight more
  parameter sets (C, PE, N, input bits, hidden units, g) with over 1000 frames in all.

cocotb tests (each starts with a reset):

* ``stream_full_rate``: source always valid, sinks always ready. Every output bit equals the reference exactly;
  the clocks per frame (input side and output side) are within 2 % of ``spec.cycles_per_frame`` (``N*C/PE`` at
  full rate); at full rate every beat leaves exactly ``spec.beat_latency`` edges after it entered, and each
  frame's first output follows its last input by ``spec.latency`` edges.
* ``stream_idle_backpressure``: random idle cycles on ``s_axis`` and random backpressure on ``m_axis`` (and on
  ``m_axis_q``, independently); every output exact, no beat lost or added.
* ``reset_mid_frame``: a single-cycle reset at many points (inside a frame's input, during the threshold
  computation, in each phase of the INSTA-Th+ SE computation, during the readout), the stream continuing through
  it; afterwards no stale beat and every later frame exact.

Every test also checks the stream protocol on the outputs (a beat offered without ``tready`` stays offered, with
the same data, until taken) and, with ``SHORTCUT = 1``, that ``m_axis_q`` returns exactly the input ``q`` in order.
With INSTA-Th+ (RTL, not a netlist) the full-rate and idle tests also check every write of ``s_c``, ``h_k`` and
``t_fx`` inside the computation against the golden function's intermediate values.

Structure (cocotb's matrix-multiplier example): a cycle monitor records every handshake with its clock cycle; the
scoreboard unpacks the input words the DUT actually sampled into frames, computes the expected bits with the golden
function (the single definition of the math; nothing is modelled here) and compares in order. A mismatch names the
test, frame, pixel and channel, with q, the reference threshold, expected and got. Parameters are read back from
the DUT where the simulator exposes them and must agree with the spec.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pytest

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from instabnn.hw.blocks.common.memfile import read_memh
from instabnn.hw.blocks.common.axis_tb import (CLOCK_PERIOD_NS, CYCLE_TOLERANCE, StreamWatch, dut_int, random_pause,
                                               read_case, reset_mid_stream, run_full_rate_bench, write_result)
from instabnn.hw.blocks.insta_threshold import spec_plus
from instabnn.hw.compile.folding import cheapest, with_chosen_limbs
from instabnn.hw.blocks.insta_threshold.spec import (InstaThresholdSpec, bits_from_words, coeff_words, frame_words,
                                                     frames_from_words, read_coeff_file, write_coeff_file)
from instabnn.hw.blocks.insta_threshold.spec_plus import (G_ENTRIES, InstaThresholdPlusSpec, const_words,
                                                          write_memory_files)
from instabnn.contract.insta import (InstaThConstants, frame_thresholds, insta_th_constants,
                                         insta_threshold_compare, static_threshold_constants)
from instabnn.contract.layers import (G_IN_FRAC, SE_H_FRAC, ThresholdPlus, binarize, g_lookup, g_table, ptq_int8,
                                          se_input, se_mlp_fixed, shift_round, threshold_plus)
from instabnn.hw.blocks.rtl_library import rtl_paths
from instabnn.hw.blocks.common.rtl_runner import verilator_lint, yosys_synth


# ----------------------------------------------------------------------------------------------------------------
# cocotb testbench (runs in the simulator); one for INSTA-Th and INSTA-Th+
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


def random_frames(rng: np.random.Generator, channels: int, pixels: int, input_bits: int, n: int) -> np.ndarray:
    """``n`` frames (n, C, N): mostly skewed clouds around the channel means (the third moment varies from frame to
    frame), some uniform over the whole range; frames 1 and 2 sit at q_min and q_max (the widest power sums)."""
    qmin, qmax = _q_range(input_bits)
    c = channels
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
    """INSTA-Th: random constants for the folding; writes the coefficient file into ``directory``.
    ``limbs`` None: folding's choice for the unit's fastest rate (``hw/compile/folding.py`` ``with_chosen_limbs``);
    ``power_table`` None: the spec's default. Returns ``(spec, rtl_parameters, case)`` for the runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    consts = random_constants(rng, channels, pixels, input_bits, static)
    spec = InstaThresholdSpec.from_constants(consts, pe, static=static, shortcut=shortcut, power_table=power_table)
    spec = with_chosen_limbs(spec) if limbs is None else replace(spec, limbs=limbs)
    coeff_file = write_coeff_file(directory / "coeffs.mem", consts, spec)
    case = {"spec": asdict(spec), "constants": consts.to_dict(), "seed": seed, "n_frames": n_frames}
    return spec, spec.rtl_parameters(coeff_file), case


def spec_from_dict(d: dict) -> InstaThresholdSpec:
    d = dict(d)
    d["coeff_bits"], d["fracs"] = tuple(d["coeff_bits"]), tuple(d["fracs"])
    return InstaThresholdSpec(**d)


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
    s = se_input(unit.poly, random_frames(rng, channels, pixels, input_bits, 8)[..., None])
    z = (unit.se(s) - (unit.se.b >> (unit.se.mult_frac2 + SE_H_FRAC - G_IN_FRAC))[None, :]) / 2.0 ** G_IN_FRAC
    typical = float(np.median(np.abs(z)))
    return build(w2 * (target / typical if typical > 1e-3 else 1.0))


def unit_from_case(case: dict) -> ThresholdPlus:
    g = case["generator"]
    return random_unit(np.random.default_rng(g["seed"]), g["channels"], g["pixels"], g["input_bits"], g["hidden"],
                       g["g"])


def prepare_plus_case(channels: int, pe: int, pixels: int, input_bits: int, hidden: int, shortcut: int, seed: int,
                      n_frames: int, directory: Path, g: str = "tanh3",
                      se_simd: int | None = 1) -> tuple[InstaThresholdPlusSpec, dict, dict]:
    """INSTA-Th+: a random unit for the folding; writes the memory files into ``directory``.
    Returns ``(spec, rtl_parameters, case)`` for the runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generator = {"seed": seed, "channels": channels, "pixels": pixels, "input_bits": input_bits, "hidden": hidden,
                 "g": g}
    case = {"se": 1, "generator": generator, "seed": seed, "n_frames": n_frames}
    unit = unit_from_case(case)
    spec = InstaThresholdPlusSpec.from_constants(unit, pe, shortcut=shortcut, se_simd=se_simd)
    files = write_memory_files(directory, unit, spec)
    case["spec"] = asdict(spec)
    return spec, spec.rtl_parameters(**files), case


# ----------------------------------------------------------------------------------------------------------------
# Testbench
# ----------------------------------------------------------------------------------------------------------------


class _Probes:
    """Records the writes of s_c (phase A), h_k (phase B) and t_fx (phase C) inside the computation, in order."""

    def __init__(self, dut):
        self.s, self.h, self.t = [], [], []
        try:
            plus, se = dut.g_insta.g_plus, dut.g_insta.g_plus.se_inst
            self.sigs = (se.a3_valid_reg, se.s_value, se.b4_valid_reg, se.h_value, plus.c7_valid_reg, plus.c7_t_reg)
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
        case, self.case_dir = read_case()
        self.se = bool(case.get("se", 0))
        if self.se:  # INSTA-Th+: the unit rebuilt from the generator's arguments
            self.spec = InstaThresholdPlusSpec.from_dict(case["spec"])
            self.golden = unit_from_case(case)
        else:
            self.spec = spec_from_dict(case["spec"])
            self.golden = InstaThConstants.from_dict(case["constants"])
        self.spec.check_constants(self.golden)
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
        self.out = StreamWatch(dut, "m_axis")
        self.out_q = StreamWatch(dut, "m_axis_q")
        self.probes = _Probes(dut) if self.se else None
        self.frames_checked = 0
        cocotb.start_soon(self._monitor())
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()

    def _check_parameters(self):
        s, dut = self.spec, self.dut
        p1, p2, p3 = s.power_sum_bits
        expected = {
            "CHANNELS": s.channels, "PE": s.pe, "PIXELS": s.pixels, "INPUT_BITS": s.input_bits,
            "SHORTCUT": s.shortcut, "CF": s.cf, "FRAME_BEATS": s.frame_beats, "P1_BITS": p1, "P2_BITS": p2,
            "P3_BITS": p3, "LATENCY": s.latency, "ISSUE_LATENCY": s.issue_latency,
        }
        if self.se:
            expected.update({"HIDDEN": s.hidden, "COMPUTE_EDGES": s.compute_edges, "BUF_DEPTH": s.buffer_depth})
        else:
            expected["STATIC"] = s.static
            if not s.static:
                expected["BUF_DEPTH"] = s.buffer_depth
        read = {name: dut_int(dut, name) for name in expected}
        self.log.info("DUT parameters %s (None: not exposed by the simulator)", read)
        for name, value in read.items():
            assert value is None or value == expected[name], f"DUT {name}={value}, the spec says {expected[name]}"
        if not self.se:
            assert s.power_sum_bits == self.golden.power_sum_bits
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
            if self.probes is not None:
                self.probes.sample()

    def clear_records(self):
        self.in_beats.clear()
        self.out.clear()
        self.out_q.clear()
        if self.probes is not None:
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
        s = self.spec
        return random_frames(self.rng, s.channels, s.pixels, s.input_bits, n)

    async def send(self, frames: np.ndarray):
        for words in frame_words(frames, self.spec):
            await self.source.send(AxiStreamFrame(words))

    async def send_tail(self, beats: int):
        """The last ``beats`` beats of one random frame (completes an interrupted frame)."""
        await self.source.send(AxiStreamFrame(frame_words(self.random_frames(1), self.spec)[0][-beats:]))

    async def wait_sources(self):
        await self.source.wait()  # returns at the clock edge that accepted the last beat
        await RisingEdge(self.dut.clk)

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
        """INSTA-Th+: white-box check of the computation (every write of s_c, h_k and t_fx, in order) against the golden
        function's intermediate values, so that an error of one LSB anywhere in the chain is seen even where it does
        not move an integer threshold."""
        if not self.se:
            return
        if not self.probes.available:
            self.log.warning("%s: internal probes not accessible; outputs checked only", tag)
            return
        unit, se = self.golden, self.golden.se
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
        expected = self.reference_bits(q4)[..., 0]
        got = bits_from_words([w for _, w in self.out.beats], s)
        bad = np.argwhere(got != expected)
        if len(bad):
            t = self.reference_thresholds(q4)
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

    def reference_bits(self, q4: np.ndarray) -> np.ndarray:
        return binarize(q4, self.golden) if self.se else insta_threshold_compare(q4, self.golden)

    def reference_thresholds(self, q4: np.ndarray) -> np.ndarray:
        return self.golden.thresholds(q4) if self.se else frame_thresholds(q4, self.golden)


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
    # steady state: skip the first frames (the unit fills up; matters only where the computation sets the pace;
    # INSTA-Th+ takes four)
    skip = 0 if s.full_rate else (min(4, n - 3) if tb.se else min(2, n - 2))
    measured = (in_starts[-1] - in_starts[skip]) / (n - 1 - skip)
    out_measured = (out_starts[-1] - out_starts[skip]) / (n - 1 - skip)
    periods = np.diff(in_starts)
    beat_latencies = sorted(set((out_cycles - in_cycles).tolist()))
    # INSTA-Th(+): from a frame's last input beat to its first output beat; static: from beat to beat
    static = not tb.se and s.static
    frame_latencies = sorted(set((out_starts - (in_starts if static else in_cycles[fb - 1 :: fb])).tolist()))
    analytic = s.cycles_per_frame
    tb.log.info(
        "%s: cycles per frame measured %.3f (input, min %d max %d), %.3f (output), analytic %.3f (N*C/PE = %d, "
        "full rate %s); last-in -> first-out latency %s, stated %d; per-beat latency %s, stated %d (frame %d)",
        s.name, measured, periods.min(), periods.max(), out_measured, analytic, fb, s.full_rate, frame_latencies,
        s.latency, beat_latencies[:4], s.beat_latency, fb,
    )
    write_result(
        tb.case_dir,
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
            "internals_checked": tb.probes is not None and tb.probes.available,
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
    write_result(tb.case_dir, "stream_idle_backpressure", {"n_frames": n, "total_cycles": cycles,
                                                  "frames_checked": tb.frames_checked})
    tb.set_idle_backpressure(None)


def reset_delays(spec: InstaThresholdSpec | InstaThresholdPlusSpec) -> list[int]:
    """Clock offsets (from the first input handshake) for the resets: inside the first frame's input, at its end,
    during its threshold computation (INSTA-Th+: in each phase of the SE computation), during its readout, and with
    the next frame half in."""
    fb, lat = spec.frame_beats, spec.latency
    se = isinstance(spec, InstaThresholdPlusSpec)
    points = [0, 1, 2, fb // 2, fb - 1, fb, fb + 1, fb + 3]
    if se or not spec.static:
        points += [fb + lat // 2, fb + lat - 3, fb + lat - 1, fb + lat, fb + lat + 1, fb + lat + fb // 2,
                   2 * fb + lat + 2]
    if se:
        points += [fb + 3 * spec.channels + 7, fb + 3 * spec.channels + spec.mac_steps // 2 + 9]
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

    async def wait_outputs(tag: str, n: int):
        await tb.wait_outputs(n * s.frame_beats, timeout_cycles=tb.timeout(n, slowdown=8))
        for _ in range(2 * s.latency + 10):  # nothing extra comes out
            await RisingEdge(dut.clk)

    checked = await reset_mid_stream(
        tb, "reset_mid_frame", delays, frame_beats=s.frame_beats, input_beats=lambda: len(tb.in_beats),
        send_frames=lambda n: tb.send(tb.random_frames(n)), wait_outputs=wait_outputs,
        check_outputs=lambda tag, n: tb.check_outputs(tag, n, check_internals=False), outputs=("m_axis", "m_axis_q"),
        frames_after_last=max(2, tb.n_frames // 4))
    write_result(tb.case_dir, "reset_mid_frame", {"delays": delays, "frames_checked": checked})


# ----------------------------------------------------------------------------------------------------------------
# pytest runner, INSTA-Th (builds the block, runs the testbench above)
# ----------------------------------------------------------------------------------------------------------------

SOURCES = rtl_paths("insta_threshold")
TOPLEVEL = "insta_threshold"


@dataclass(frozen=True)
class Folding:
    """The test's choice of folding; the constants (and so the full spec) are drawn per case."""

    channels: int
    pe: int
    pixels: int
    input_bits: int
    static: int = 0
    shortcut: int = 0
    limbs: int | None = None  # None: folding's choice (sequencer_limbs where the rate allows)
    power_table: int | None = None  # None: the spec's choice (tables up to 8-bit inputs)

    @property
    def name(self) -> str:
        return (f"{'static' if self.static else 'insta'}_c{self.channels}_pe{self.pe}_n{self.pixels}"
                f"_b{self.input_bits}{'_sc' if self.shortcut else ''}"
                f"{'' if self.limbs is None else f'_l{self.limbs}'}"
                f"{'' if self.power_table is None else f'_pt{self.power_table}'}")

    def case(self, seed: int, n_frames: int, directory: Path):
        return prepare_case(self.channels, self.pe, self.pixels, self.input_bits, self.static, self.shortcut, seed,
                            n_frames, directory, limbs=self.limbs, power_table=self.power_table)


FAST_FOLDINGS = [
    Folding(8, 4, 16, 8, static=0, shortcut=1),  # N*C/PE = 32 >= S + 7: full rate
    Folding(12, 4, 9, 5, static=1, shortcut=0),  # 3x3 frames, static
    Folding(16, 4, 25, 6, static=0, shortcut=0),
    Folding(4, 2, 36, 7, static=0, shortcut=1, limbs=3, power_table=0),  # limb-serial multiplier, multipliers
]
FAST_FRAMES = 24


def _sweep_foldings(n: int = 7, seed: int = 2024) -> list[Folding]:
    """Random foldings for the slow sweep (seeded, so the list is stable): C, PE | C, N = H*W, input bits 4..8."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pe = int(rng.choice([1, 2, 3, 4, 8]))
        channels = pe * int(rng.integers(1, 7))
        side = int(rng.integers(2, 11))
        pixels = side * int(rng.integers(max(2, side - 2), side + 3))
        out.append(Folding(channels, pe, pixels, int(rng.integers(4, 9)), static=int(i % 3 == 2),
                           shortcut=int(i % 2 == 1)))
    return out


SLOW_FOLDINGS = _sweep_foldings() + [
    Folding(64, 16, 64, 8, static=0, shortcut=1),  # ResNet-20 stage 3 (8x8 x 64 channels)
    Folding(6, 6, 4, 4, static=0, shortcut=1),  # CF = 1, tiny frames: the computation sets the pace
    Folding(5, 1, 1, 8, static=0, shortcut=0),  # N = 1: single-pixel frames, PE = 1
    Folding(32, 1, 64, 8, static=0, shortcut=1),  # PE = 1 as in ResNet-20: two limbs (default), power tables
    Folding(6, 2, 9, 6, static=0, shortcut=0, limbs=5, power_table=1),  # limbs set the pace
]
SLOW_FRAMES = 150

LINT_FOLDINGS = FAST_FOLDINGS + SLOW_FOLDINGS + [Folding(1, 1, 1, 2), Folding(1, 1, 1, 2, static=1)]

def _seed(folding: Folding) -> int:
    return zlib.crc32(folding.name.encode())


def run_insta_threshold(folding: Folding, n_frames: int, directory: Path, seed: int | None = None) -> dict:
    """Build and simulate one folding; returns the full-rate measurements (plus the frames checked by all tests)."""
    seed = _seed(folding) if seed is None else seed
    case_dir = directory / "case"
    spec, parameters, case = folding.case(seed, n_frames, case_dir)
    result = run_full_rate_bench(__file__, case, sources=SOURCES, toplevel=TOPLEVEL, parameters=parameters,
                                 directory=case_dir, seed=seed)
    result["spec_name"] = spec.name
    return result


def _check_measurements(result: dict):
    analytic = result["cycles_per_frame_analytic"]
    assert abs(result["cycles_per_frame_measured"] - analytic) <= 0.02 * analytic
    if result["full_rate"]:
        assert result["cycles_per_frame_analytic"] == result["frame_beats"]
        assert result["latency_measured"] == [result["latency_stated"]]
        assert result["beat_latency_measured"] == [result["beat_latency_stated"]]


@pytest.mark.parametrize("folding", FAST_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_sim(folding, verilator_path, tmp_path):
    result = run_insta_threshold(folding, FAST_FRAMES, tmp_path)
    _check_measurements(result)
    assert result["full_rate"]


@pytest.mark.slow
@pytest.mark.parametrize("folding", SLOW_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_sim_sweep(folding, verilator_path, tmp_path):
    result = run_insta_threshold(folding, SLOW_FRAMES, tmp_path)
    _check_measurements(result)
    # 12 foldings x >= 2 * SLOW_FRAMES frames each: well over 1000 frames in the sweep
    assert result["frames_checked_all_tests"] >= 2 * SLOW_FRAMES


def test_sweep_is_wide_enough():
    """The slow sweep covers >= 5 foldings with random C, PE, N and 4..8 input bits, both kinds, >= 1000 frames."""
    assert len(SLOW_FOLDINGS) >= 5 and len(SLOW_FOLDINGS) * 2 * SLOW_FRAMES >= 1000
    assert {f.static for f in SLOW_FOLDINGS} == {0, 1} and {f.shortcut for f in SLOW_FOLDINGS} == {0, 1}
    assert all(4 <= f.input_bits <= 8 for f in SLOW_FOLDINGS)
    assert len({(f.channels, f.pe, f.pixels) for f in SLOW_FOLDINGS}) == len(SLOW_FOLDINGS)


def _lint(folding: Folding, verilator_path: Path, **overrides) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        _, params, _ = folding.case(0, 1, Path(tmp))
    params.update(overrides)
    return verilator_lint(SOURCES, TOPLEVEL, params, verilator_path)


@pytest.mark.parametrize("folding", LINT_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_lint_clean(folding, verilator_path):
    proc = _lint(folding, verilator_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "%Warning" not in output and "%Error" not in output, output


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"PE": 3}, "PE (3) must divide CHANNELS (8)"),
        ({"PE": 0}, "CHANNELS, PE and PIXELS must be >= 1"),
        ({"PIXELS": 0}, "CHANNELS, PE and PIXELS must be >= 1"),
        ({"INPUT_BITS": 1}, "INPUT_BITS (1) must be in 2 .. 16"),
        ({"INPUT_BITS": 17}, "INPUT_BITS (17) must be in 2 .. 16"),
        ({"STATIC": 2}, "STATIC (2) must be 0 or 1"),
        ({"SHORTCUT": 3}, "SHORTCUT (3) must be 0 or 1"),
        ({"COEFF_BITS_2": 0}, "COEFF_BITS_0..3 must be >= 1"),
        ({"FRAC_1": -1}, "FRAC_0..3 must be >= 0"),
        ({"TACC_BITS": 20}, "TACC_BITS (20) narrower than P3"),
        ({"COEFF_FILE": '""'}, "COEFF_FILE must name"),
        ({"LIMBS": 0}, "LIMBS (0) must lie in 1 .. "),
    ],
)
def test_insta_threshold_rejects_illegal_parameters(overrides, message, verilator_path):
    proc = _lint(FAST_FOLDINGS[0], verilator_path, **overrides)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_spec_matches_the_reference_and_the_files(tmp_path):
    """The spec's widths are the golden function's; the coefficient file and the stream packing round-trip."""

    rng = np.random.default_rng(5)
    for folding in FAST_FOLDINGS + SLOW_FOLDINGS:
        consts = random_constants(rng, folding.channels, folding.pixels, folding.input_bits, folding.static)
        spec = InstaThresholdSpec.from_constants(consts, folding.pe, static=folding.static)
        assert spec.power_sum_bits == consts.power_sum_bits
        assert spec.tacc_bits == consts.threshold_accumulator_bits and spec.coeff_bits == consts.coeff_bits
        assert InstaThresholdSpec.from_constants(consts, folding.pe).static == folding.static
        path = write_coeff_file(tmp_path / f"{spec.name}.mem", consts, spec)
        assert read_coeff_file(path, spec) == list(zip(*consts.coeffs))
        q = random_frames(rng, consts.channels, consts.pixels, consts.input_bits, 3)
        words = frame_words(q, spec)
        assert len(words) == 3 and all(len(w) == spec.frame_beats for w in words)
        assert np.array_equal(frames_from_words([w for f in words for w in f], spec), q)
        bits = (q >= 0).astype(np.uint8)
        bit_words = [int(sum(int(b) << i for i, b in enumerate(bits[f, c0 : c0 + spec.pe, p])))
                     for f in range(3) for p in range(spec.pixels) for c0 in range(0, spec.channels, spec.pe)]
        assert np.array_equal(bits_from_words(bit_words, spec), bits)
        if spec.static:
            assert spec.latency == 2 and spec.buffer_depth == 0
        else:
            assert spec.compute_steps == 3 * spec.channels * spec.limbs
            assert spec.latency == spec.compute_steps + 15
            assert spec.buffer_depth == spec.frame_beats + spec.compute_steps + 12
            assert spec.beat_latency == spec.frame_beats - 1 + spec.latency


def test_spec_refuses_mismatched_constants():
    insta = insta_th_constants([0.5, -1.0], [1.0, 2.0], [1.0, -0.5], [0.2, 0.1], 2.0 ** -3, 16, 6)
    static = static_threshold_constants([0.5, -1.0], 2.0 ** -3, 16, 6)
    assert InstaThresholdSpec.from_constants(static, 2).static == 1
    with pytest.raises(ValueError, match="C1 = C2 = C3 = 0"):
        coeff_words(insta, InstaThresholdSpec.from_constants(insta, 2, static=1))
    with pytest.raises(ValueError, match="PE"):
        InstaThresholdSpec.from_constants(insta, 3)
    narrow = InstaThresholdSpec.from_constants(insta, 2)
    wider = insta_th_constants([0.5, -1.0], [1.0, 2.0], [100.0, -0.5], [0.2, 0.1], 2.0 ** -3, 16, 6)
    with pytest.raises(ValueError, match="bits"):
        coeff_words(wider, narrow)


needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")


# small foldings: generic synth turns the memories into flip-flops and the multipliers into gates
YOSYS_FOLDINGS = [Folding(4, 2, 6, 4, static=0, shortcut=1), Folding(6, 3, 4, 5, static=1, shortcut=1)]


@needs_yosys
@pytest.mark.parametrize("folding", YOSYS_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_yosys_synth(folding, tmp_path):
    """Yosys reads and synthesises the RTL (generic synth; the ROM initialised from the generated file)."""
    _, parameters, _ = folding.case(0, 1, tmp_path)
    log = yosys_synth(SOURCES, TOPLEVEL, parameters, tmp_path / "synth")
    assert "Number of cells" in log


def test_synth_table_rows_for_threshold_units():
    """The synth-blocks table lists INSTA-Th beside the static unit of the same folding (format only, no Yosys)."""
    from instabnn.hw.synth import DEFAULT_THRESHOLD_UNITS, threshold_units_markdown

    foldings = {(c, pe, n, b) for c, pe, n, b, _, _ in DEFAULT_THRESHOLD_UNITS}
    for folding in foldings:
        kinds = {s for c, pe, n, b, s, _ in DEFAULT_THRESHOLD_UNITS if (c, pe, n, b) == folding}
        assert kinds == {0, 1}, f"{folding}: static and INSTA-Th rows expected"
    res = {"lut": 10, "ff": 20, "carry4": 1, "lutram": 0, "bram36": 0.5, "dsp": 2,
           "utilisation_xc7z020_pct": {"lut": 0.02}}
    rows = [{"kind": k, "shortcut": 0, "channels": 64, "pe": 16, "pixels": 64, "input_bits": 8,
             "cycles_per_frame": 256.0, "latency": 2, "buffer_bits": 0, **res} for k in ("static", "insta")]
    lines = threshold_units_markdown(rows)
    assert len(lines) == 4 and "static (RSign)" in lines[2] and "INSTA-Th" in lines[3]


@pytest.mark.slow
@needs_yosys
def test_synth_xilinx_insta_costs_more_than_static(tmp_path):
    """synth_xilinx: the frame buffer is block RAM, the power sums distributed RAM; the static unit has neither."""
    from instabnn.hw.synth import synth_insta_threshold

    _, static = synth_insta_threshold(32, 8, 64, 8, 1, tmp_path / "static")
    spec, insta = synth_insta_threshold(32, 8, 64, 8, 0, tmp_path / "insta")
    assert spec.buffer_bits > 0 and insta["bram36"] >= 1 and insta["lutram"] > 0
    assert static["bram36"] == 0 and 0 < static["lut"] < insta["lut"]


# ----------------------------------------------------------------------------------------------------------------
# pytest runner, INSTA-Th+ (SE = 1)
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlusFolding:
    channels: int
    pe: int
    pixels: int
    input_bits: int
    hidden: int
    shortcut: int = 0
    g: str = "tanh3"
    se_simd: int = 1

    @property
    def name(self) -> str:
        return (f"plus_c{self.channels}_pe{self.pe}_n{self.pixels}_b{self.input_bits}_h{self.hidden}_{self.g}"
                f"{f'_s{self.se_simd}' if self.se_simd > 1 else ''}{'_sc' if self.shortcut else ''}")

    def spec(self, seed: int = 0) -> InstaThresholdPlusSpec:
        unit = random_unit(np.random.default_rng(seed), self.channels, self.pixels, self.input_bits, self.hidden,
                           self.g)
        return InstaThresholdPlusSpec.from_constants(unit, self.pe, self.shortcut, self.se_simd)


PLUS_FAST_FOLDINGS = [
    PlusFolding(4, 1, 11, 6, 2),  # FRAME_BEATS = 44 = COMPUTE_EDGES + 1: just below full rate (PE = 1)
    PlusFolding(8, 2, 36, 8, 2, shortcut=1),  # 6x6 frames, full rate, shortcut output
    PlusFolding(16, 4, 25, 6, 4),  # 5x5 frames: the computation (2*4*16 MACs on one multiplier) sets the pace
    PlusFolding(16, 4, 64, 7, 4, shortcut=1, se_simd=4),  # 8x8: 4 SE multipliers (2*4*16/4 MAC steps) keep full rate
]
PLUS_FAST_FRAMES = 20

PLUS_SLOW_FOLDINGS = [
    PlusFolding(4, 4, 45, 5, 2, shortcut=1),  # FRAME_BEATS = 45 = COMPUTE_EDGES + 2: full rate just holds
    PlusFolding(12, 3, 49, 7, 3, g="sigmoid"),  # 7x7, full rate
    PlusFolding(16, 8, 64, 8, 4, shortcut=1, g="tanh"),  # computation-bound
    PlusFolding(6, 6, 4, 4, 1),  # CF = 1, tiny frames
    PlusFolding(5, 1, 1, 8, 5),  # N = 1, single-pixel frames, hidden = C
    PlusFolding(32, 2, 64, 8, 8, shortcut=1),  # 8x8 x 32 channels, C/r = 8: full rate (FRAME_BEATS 1024 >= 626)
    PlusFolding(64, 16, 64, 8, 16, shortcut=1, se_simd=16),  # ResNet-20 stage 3, PE = 16, 16 SE multipliers: 330 clk
    PlusFolding(12, 4, 16, 6, 6, g="sigmoid", se_simd=3),  # SE_SIMD = 3 (not a power of two), computation-bound
]
PLUS_SLOW_FRAMES = 100

PLUS_LINT_FOLDINGS = PLUS_FAST_FOLDINGS + PLUS_SLOW_FOLDINGS + [
    PlusFolding(1, 1, 1, 2, 1), PlusFolding(64, 16, 64, 8, 16, shortcut=1), PlusFolding(4, 2, 8, 4, 4, se_simd=4),
    PlusFolding(6, 3, 9, 5, 2, se_simd=2)]


def _plus_seed(folding: PlusFolding) -> int:
    return zlib.crc32(folding.name.encode())


def run_insta_threshold_plus(folding: PlusFolding, n_frames: int, directory: Path, seed: int | None = None,
                             yosys_netlist: bool = False) -> dict:
    """Build and simulate one folding (the RTL, or its Yosys netlist); returns the full-rate measurements (plus the
    frames checked by all tests)."""
    seed = _plus_seed(folding) if seed is None else seed
    case_dir = directory / "case"
    spec, parameters, case = prepare_plus_case(folding.channels, folding.pe, folding.pixels, folding.input_bits,
                                               folding.hidden, folding.shortcut, seed, n_frames, case_dir, folding.g,
                                               folding.se_simd)
    # a netlist has no internal probes: the testbench then checks the outputs only
    result = run_full_rate_bench(__file__, case, sources=SOURCES, toplevel=TOPLEVEL, parameters=parameters,
                                 directory=case_dir, seed=seed, yosys_netlist=yosys_netlist)
    result["spec_name"] = spec.name
    return result


def _check_plus_measurements(result: dict):
    analytic = result["cycles_per_frame_analytic"]
    assert abs(result["cycles_per_frame_measured"] - analytic) <= 0.02 * analytic
    assert min(result["latency_measured"]) == result["latency_stated"]
    if result["full_rate"]:
        assert result["cycles_per_frame_analytic"] == result["frame_beats"]
        assert result["latency_measured"] == [result["latency_stated"]]
        assert result["beat_latency_measured"] == [result["beat_latency_stated"]]


@pytest.mark.parametrize("folding", PLUS_FAST_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_plus_sim(folding, verilator_path, tmp_path):
    result = run_insta_threshold_plus(folding, PLUS_FAST_FRAMES, tmp_path)
    _check_plus_measurements(result)
    assert result["internals_checked"], "the s, h and t_fx probes were not reachable: outputs checked only"
    assert result["full_rate"] == folding.spec(_plus_seed(folding)).full_rate


@pytest.mark.slow
@pytest.mark.parametrize("folding", PLUS_SLOW_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_plus_sim_sweep(folding, verilator_path, tmp_path):
    result = run_insta_threshold_plus(folding, PLUS_SLOW_FRAMES, tmp_path)
    _check_plus_measurements(result)
    assert result["frames_checked_all_tests"] >= 2 * PLUS_SLOW_FRAMES


def test_plus_sweep_is_wide_enough():
    """The slow sweep: >= 5 parameter sets, >= 1000 frames, both shortcut settings, every g, full rate and not."""
    assert len(PLUS_SLOW_FOLDINGS) >= 5 and len(PLUS_SLOW_FOLDINGS) * 2 * PLUS_SLOW_FRAMES >= 1000
    assert {f.shortcut for f in PLUS_SLOW_FOLDINGS} == {0, 1}
    assert {f.g for f in PLUS_SLOW_FOLDINGS} == {"tanh3", "tanh", "sigmoid"}
    assert {f.spec().full_rate for f in PLUS_SLOW_FOLDINGS + PLUS_FAST_FOLDINGS} == {True, False}


def _plus_params(folding: PlusFolding, directory: Path, **overrides) -> dict:
    _, params, _ = prepare_plus_case(folding.channels, folding.pe, folding.pixels, folding.input_bits, folding.hidden,
                                     folding.shortcut, 0, 1, directory, folding.g, folding.se_simd)
    params.update(overrides)
    return params


def _plus_lint(folding: PlusFolding, verilator_path: Path, **overrides) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        params = _plus_params(folding, Path(tmp), **overrides)
        return verilator_lint(SOURCES, TOPLEVEL, params, verilator_path)


@pytest.mark.parametrize("folding", PLUS_LINT_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_plus_lint_clean(folding, verilator_path):
    proc = _plus_lint(folding, verilator_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "%Warning" not in output and "%Error" not in output, output


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"PE": 3}, "PE (3) must divide CHANNELS (4)"),
        ({"HIDDEN": 0}, "and HIDDEN (0) must be >= 1"),
        ({"LIMBS": 2}, "SE = 1 takes STATIC = 0 and LIMBS = 1"),
        ({"INPUT_BITS": 17}, "INPUT_BITS (17) must be in 2 .. 16"),
        ({"SHORTCUT": 2}, "SHORTCUT (2) must be 0 or 1"),
        ({"TACC_BITS": 10}, "TACC_BITS (10) narrower than P3"),
        ({"Z_SHIFT": 0}, "S_SHIFT, H_SHIFT and Z_SHIFT must be >= 1"),
        ({"SE_SIMD": 3}, "SE_SIMD (3) must divide CHANNELS (4) and HIDDEN (2)"),
        ({"G_FILE": '""'}, "must name $readmemh files"),
    ],
)
def test_insta_threshold_plus_rejects_illegal_parameters(overrides, message, verilator_path):
    proc = _plus_lint(PLUS_FAST_FOLDINGS[0], verilator_path, **overrides)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_plus_spec_matches_the_reference_and_the_files(tmp_path):
    """Widths hold the reference's values on random frames; the files and the stream packing round-trip."""

    rng = np.random.default_rng(7)
    for folding in PLUS_FAST_FOLDINGS + PLUS_SLOW_FOLDINGS:
        unit = random_unit(rng, folding.channels, folding.pixels, folding.input_bits, folding.hidden, folding.g)
        spec = InstaThresholdPlusSpec.from_constants(unit, folding.pe, folding.shortcut, folding.se_simd)
        assert spec.tacc_bits == unit.poly.accumulator_bits()
        assert spec.compute_edges == 3 * spec.channels + 2 * spec.hidden * spec.channels // spec.se_simd + 16
        assert spec.latency == spec.compute_edges + 10
        assert spec.buffer_depth == spec.frame_beats + spec.compute_edges + 7
        assert spec.full_rate == (spec.frame_beats >= spec.compute_edges + 2)
        q = random_frames(rng, unit.poly.channels, unit.poly.pixels, unit.input_bits, 6)
        s = se_input(unit.poly, q[..., None])
        se = unit.se
        a1 = s @ se.w1.T
        h = np.clip((se.m1[None, :] * a1 + (1 << (spec.h_shift - 1))) >> spec.h_shift, 0, 65535)
        a2 = h @ se.w2.T
        y2 = se.m2[None, :] * a2 + se.b[None, :]
        assert np.array_equal((y2 + (1 << (spec.z_shift - 1))) >> spec.z_shift, se(s))
        assert spec.z_shift == se.mult_frac2 + SE_H_FRAC - G_IN_FRAC
        for values, bits in ((a1, spec.acc1_bits), (se.m1[None, :] * a1, spec.y1_bits), (a2, spec.acc2_bits),
                             (y2, spec.y2_bits)):
            assert values.min() >= -(1 << (bits - 1)) and values.max() < (1 << (bits - 1))
        files = write_memory_files(tmp_path / spec.name, unit, spec)
        assert read_memh(files["coeff_file"], spec.coeff_word_bits) == spec_plus.coeff_words(unit, spec)
        assert read_memh(files["const_file"], spec.const_word_bits) == const_words(unit, spec)
        w1 = read_memh(files["w1_file"], spec.w1_bits * spec.se_simd)
        assert len(w1) == spec.hidden * spec.channels // spec.se_simd
        lanes = spec.se_simd
        k, grp, lane = spec.hidden - 1, spec.channels // lanes - 1, lanes - 1
        word = w1[k * (spec.channels // lanes) + grp] >> (lane * spec.w1_bits) & ((1 << spec.w1_bits) - 1)
        assert word == unit.se.w1[k, grp * lanes + lane] % (1 << spec.w1_bits)
        g = read_memh(files["g_file"], spec.g_word_bits)
        assert len(g) == G_ENTRIES and (g[5] & ((1 << spec.g_bits) - 1)) == g_table(folding.g)[5] % (1 << spec.g_bits)
        words = spec_plus.frame_words(q, spec)
        assert len(words) == 6 and all(len(w) == spec.frame_beats for w in words)
        assert np.array_equal(spec_plus.frames_from_words([w for f in words for w in f], spec), q)
        bits = (q >= 0).astype(np.uint8)
        bit_words = [int(sum(int(b) << i for i, b in enumerate(bits[f, c0 : c0 + spec.pe, p])))
                     for f in range(6) for p in range(spec.pixels) for c0 in range(0, spec.channels, spec.pe)]
        assert np.array_equal(spec_plus.bits_from_words(bit_words, spec), bits)
        params = spec.rtl_parameters(**files)
        assert params["HIDDEN"] == spec.hidden and params["T_FRAC"] == unit.frac + 14


def test_plus_spec_refuses_mismatched_constants():
    small = random_unit(np.random.default_rng(1), 4, 16, 6, 2)
    spec = InstaThresholdPlusSpec.from_constants(small, 2)
    other = random_unit(np.random.default_rng(2), 4, 16, 6, 3)
    with pytest.raises(ValueError, match="hidden"):
        spec_plus.coeff_words(other, spec)
    with pytest.raises(ValueError, match="PE"):
        InstaThresholdPlusSpec.from_constants(small, 3)
    with pytest.raises(ValueError, match="se_simd"):
        InstaThresholdPlusSpec.from_constants(small, 2, se_simd=4)


def test_folding_chooses_se_simd():
    """Folding's SE_SIMD rule (``hw/compile/folding.py`` ``cheapest``): the fewest SE multipliers that keep the unit
    within the target, else (or with target 0) at its fastest, the fewest full-rate ones where it can keep up."""
    unit = random_unit(np.random.default_rng(3), 16, 36, 6, 4)
    options = [1, 2, 4]  # the divisors of gcd(C = 16, HIDDEN = 4)

    def cycles(pe):
        return lambda d: InstaThresholdPlusSpec.from_constants(unit, pe, se_simd=d).cycles_per_frame

    assert cheapest(options, cycles(4)) == 2  # FRAME_BEATS 144 >= 48 + 128/2 + 16 + 2, < 48 + 128 + 16 + 2
    assert InstaThresholdPlusSpec.from_constants(unit, 4, se_simd=2).full_rate
    assert cheapest(options, cycles(1)) == 1  # 576 beats: one multiplier keeps up
    assert cheapest(options, cycles(4), target_cycles=200) == 1  # 48 + 128 + 9 = 185 <= 200: slower, in time
    assert cheapest(options, cycles(8)) == 4  # 72 beats: no setting keeps up, all four multipliers
    with pytest.raises(ValueError, match="se_simd"):
        InstaThresholdPlusSpec.from_constants(unit, 4, se_simd=3)


@needs_yosys
@pytest.mark.slow
def test_insta_threshold_plus_yosys_synth(tmp_path):
    """Yosys reads and synthesises the RTL (generic synth; the ROMs initialised from the generated files)."""
    params = _plus_params(PlusFolding(4, 2, 6, 4, 2, shortcut=1), tmp_path)
    log = yosys_synth(SOURCES, TOPLEVEL, params, tmp_path / "synth")
    assert "Number of cells" in log


@pytest.mark.slow
@needs_yosys
def test_insta_threshold_plus_yosys_netlist_sim(verilator_path, tmp_path):
    """Yosys reads the RTL as Verilator does: its synthesised netlist passes the same cocotb tests, cycle for cycle
    (the memory contents baked in)."""
    result = run_insta_threshold_plus(PlusFolding(4, 1, 11, 5, 2), 6, tmp_path, yosys_netlist=True)
    _check_plus_measurements(result)
