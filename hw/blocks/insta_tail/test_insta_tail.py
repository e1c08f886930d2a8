"""Testbench of the residual block tail with INSTA-PReLU (``insta_tail.sv``) against the golden function
``instabnn.contract.layers.ResidualActivation`` (INSTA-PReLU or INSTA-PReLU+ with the SE MLP, shift or
1x1-projection shortcut, own or reused statistics): spec and files, lint, illegal parameters, synthesis, cocotb.

Each simulation case draws random float parameters for a block tail, fixes them with the contract's constructor
(:func:`instabnn.contract.layers.residual_activation`, activation kind "insta"), writes the memory files
(:func:`prepare_case`), builds the unit with Verilator (cocotb's Python runner) and runs the ``@cocotb.test()``s of
this file in one simulation (the case reaches them through :func:`~instabnn.hw.blocks.common.axis_tb.run_bench`).
The testbench rebuilds the same ``ResidualActivation`` from the stored float parameters (the constructor is
deterministic) and checks it against the memory files. All output goes to pytest's tmp directories. The default
tier runs four foldings with tens of frames (own and reused statistics, shift and projection shortcuts, one folding
below full rate); ``-m slow`` sweeps more (random C, PE, N, output bits, identity or pooled shortcut, own or reuse,
plus projection foldings) with over 1000 frames in all. INSTA-PReLU+ (SE = 1, ``se_mlp``): three
default foldings (own at full rate, own below full rate, reuse + projection) and the Yosys read; three more foldings
and a Yosys-netlist simulation in the slow tier.

cocotb tests (each starts with a reset):

* ``stream_full_rate``: every source always valid, the sink always ready. Every output equals the reference
  exactly; clocks per frame in steady state (second half of the frames; input and output side) within 2 % of
  ``spec.cycles_per_frame``; own: the first frame's output starts exactly ``spec.latency`` edges after its last
  input beat, every frame at least that, and at full rate every beat leaves exactly ``spec.beat_latency`` edges
  after it entered; reuse: every beat leaves exactly ``spec.latency`` = 8 edges after its acc/sc handshake, the
  first frame's first acc/sc beat is taken exactly ``spec.stat_latency`` edges after its last statistic beat.
* ``stream_idle_backpressure``: independent random idle on every input and random backpressure on ``m_axis``;
  every output exact, nothing lost or added.
* ``reset_mid_frame``: single-cycle resets at several points (inside the first frame, at its end, while the shift
  computation runs, during the readout, inside the second frame), the streams continuing through them; afterwards
  no stale beat and every later frame exact.

Every test checks the protocol on the output (an offered beat stays offered, unchanged, until taken) and that acc
and sc are only ever taken together. The scoreboard unpacks the input words the DUT actually sampled, calls the
``ResidualActivation`` object (nothing is modelled here) and compares in order; a mismatch names the test, frame,
pixel and channel with acc, sc, expected and got.
"""

from __future__ import annotations

import json
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

from instabnn.hw.blocks.common.axis_tb import (CLOCK_PERIOD_NS, CYCLE_TOLERANCE, StreamWatch, dut_int, random_pause,
                                               read_case, reset_mid_stream, run_full_rate_bench, write_result)
from instabnn.hw.compile.folding import with_chosen_limbs
from instabnn.hw.blocks.insta_tail.spec import (CONST_FIELDS, G_ENTRIES, PROJ_CONST_FIELDS, InstaTailSpec,
                                                coeff_words, const_words, frame_words, frames_from_words, g_words,
                                                m1_words, read_coeff_file, read_const_file, read_g_file,
                                                se_const_words, w1_words, w2_words, write_memory_files)
from instabnn.contract.fixed_point import signed_bits
from instabnn.contract.layers import (G_IN_FRAC, SE_H_FRAC, ResidualActivation, clamp_signed, ptq_int8,
                                          residual_activation, se_input, se_mlp_fixed, shift_round)
from instabnn.hw.blocks.rtl_library import rtl_paths
from instabnn.hw.blocks.common.rtl_runner import verilator_lint, yosys_synth


# ----------------------------------------------------------------------------------------------------------------
# cocotb testbench (runs in the simulator)
# ----------------------------------------------------------------------------------------------------------------

G_NAMES = ("tanh3", "tanh", "sigmoid")


# ----------------------------------------------------------------------------------------------------------------
# Case preparation (runs in pytest, before the simulator starts: the ROMs are loaded at time 0)
# ----------------------------------------------------------------------------------------------------------------


def proj_bound(in_channels: int) -> int:
    """|acc_p| bound of the 1x1 int8 projection over 2x2 average-pool sums of an 8-bit stream: 127 Cin 128 4."""
    return 127 * in_channels * 128 * 4


def random_parameters(rng: np.random.Generator, channels: int, pixels: int, out_bits: int, pooled: bool,
                      proj: bool = False, reuse: bool = False, hidden: int = 0) -> dict:
    """Float parameters of an INSTA-PReLU block tail as a trained network has them.

    y = a acc + b with a ~ U(-0.05, 0.05), b ~ N(0, 0.3), slopes ~ U(-0.5, 1), output scale 2^e, e in -6 .. -3;
    the shift T = mu + sigma g(z) with mu ~ N(0, 0.3), sigma ~ U(0.2, 1.5) (the pre-activation's statistics),
    z = alpha s + beta, alpha ~ U(-1.5, 1.5), beta ~ N(0, 0.5), g one of tanh3, tanh, sigmoid. The shortcut is the
    block input (identity: out_bits, scale 2^e) or its 2x2 average-pool sum (out_bits + 2 bits, scale 2^(e-2)); the
    accumulator is a 3x3 binary convolution over ``channels`` inputs: |acc| <= 9 C.

    ``proj``: SC = a_p acc_p of a 1x1 int8 projection of the pooled block input with Cin channels (C/2; C with
    ``reuse``), a_p ~ U(-1, 1) 2^-12 / Cin, BN shift ~ N(0, 0.3), |acc_p| <= :func:`proj_bound` (Cin).

    ``reuse``: z = alpha (u s_th + v) + beta from the block input's statistics (INSTA-Th's mu_th ~ N(0, 0.5),
    sigma_th ~ U(0.5, 1.5), u ~ N(1, 0.2), v ~ N(0, 0.2)), the block input of out_bits bits at scale 2^e with
    ``pixels`` pixels (stride 1, identity shortcut) or 4 ``pixels`` (stride 2: pooled or projection shortcut).

    ``hidden`` > 0: INSTA-PReLU+, z = SE(s) + beta with an SE MLP of ``hidden`` units built as the lowering builds
    it (real weights W1 (hidden x C) ~ N(0, 1/C) with 10 % zeros, W2 (C x hidden) ~ N(0, g2^2/hidden) with a random
    gain g2 ~ U(2, 6), both through ``ptq_int8``, then ``se_mlp_fixed`` with the bias beta).
    """
    out_exp = int(rng.integers(-6, -2))
    p = {
        "a": rng.uniform(-0.05, 0.05, channels).tolist(),
        "b": rng.normal(0, 0.3, channels).tolist(),
        "slope": rng.uniform(-0.5, 1.0, channels).tolist(),
        "mu": rng.normal(0, 0.3, channels).tolist(),
        "sigma": rng.uniform(0.2, 1.5, channels).tolist(),
        "alpha": rng.uniform(-1.5, 1.5, channels).tolist(),
        "beta": rng.normal(0, 0.5, channels).tolist(),
        "g": G_NAMES[int(rng.integers(len(G_NAMES)))],
        "acc_bound": 9 * channels,
        "shortcut_exp": out_exp - 2 if pooled else out_exp,
        "sc_bits": out_bits + 2 if pooled else out_bits,
        "out_exp": out_exp,
        "out_bits": out_bits,
        "pixels": pixels,
    }
    if proj:
        in_channels = channels if reuse else max(1, channels // 2)
        bound = proj_bound(in_channels)
        p["proj"] = {"mult": (rng.uniform(-1, 1, channels) * 2.0 ** -12 / in_channels).tolist(),
                     "shift": rng.normal(0, 0.3, channels).tolist(), "bound": bound}
        p["sc_bits"] = signed_bits(-bound, bound)
    if hidden:
        w1 = rng.normal(0, 1, (hidden, channels)) / np.sqrt(channels)
        w1[rng.random(w1.shape) < 0.1] = 0.0
        w2 = rng.normal(0, 1, (channels, hidden)) * rng.uniform(2, 6) / np.sqrt(hidden)
        p["se"] = {"w1": w1.tolist(), "w2": w2.tolist()}
    if reuse:
        p["reuse"] = {"mu": rng.normal(0, 0.5, channels).tolist(), "sigma": rng.uniform(0.5, 1.5, channels).tolist(),
                      "u": rng.normal(1, 0.2, channels).tolist(), "v": rng.normal(0, 0.2, channels).tolist(),
                      "exp": out_exp, "bits": out_bits,
                      "pixels": 4 * pixels if (pooled or proj) else pixels}
    return p


def activation_from_parameters(p: dict) -> ResidualActivation:
    """The contract's constructor on the stored float parameters."""
    act = {"kind": "insta", "mu": np.asarray(p["mu"]), "sigma": np.asarray(p["sigma"]),
           "beta": np.asarray(p["beta"]), "g": p["g"], "slope": np.asarray(p["slope"]),
           "alpha": np.asarray(p["alpha"]), "se": None}
    if p.get("se") is not None:  # as instabnn.hw.lower builds INSTA-PReLU+
        w1_int, step1 = ptq_int8(np.asarray(p["se"]["w1"]))
        w2_int, step2 = ptq_int8(np.asarray(p["se"]["w2"]))
        act["se"] = lambda bias: se_mlp_fixed(w1_int, step1, w2_int, step2, bias)
    if p.get("reuse") is not None:
        r = p["reuse"]
        act["reuse"] = {"mu": np.asarray(r["mu"]), "sigma": np.asarray(r["sigma"]), "u": np.asarray(r["u"]),
                        "v": np.asarray(r["v"]), "exp": r["exp"], "bits": r["bits"], "pixels": r["pixels"]}
    proj = p.get("proj")
    kind, proj_args = "shift", None
    if proj is not None:
        kind, proj_args = "proj", (np.asarray(proj["mult"]), np.asarray(proj["shift"]), int(proj["bound"]))
    return residual_activation(np.asarray(p["a"]), np.asarray(p["b"]), p["acc_bound"], kind, p["shortcut_exp"],
                               proj_args, act, p["out_exp"], p["out_bits"], p["pixels"], "test")


def random_inputs(rng: np.random.Generator, spec: InstaTailSpec, acc_bound: int, n: int,
                  sc_bound: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``n`` frames of (acc, sc, stat): acc and sc (n, C, N), stat (n, C, STAT_N) or None (own statistics).

    Mostly acc ~ N(0, 3 sqrt(K)) with a random per-frame offset (so that the frame statistics vary), sc uniform over
    its range (proj: ~ N(0, Kp / 32)), the statistic input ~ N(mean, 2^(bits-3)) with a random per-frame mean and
    spread; some frames uniform over the whole ranges; frames 1 and 2 at the corners (acc = +-K with sc and the
    statistic at their extremes: the widest Y and D, the largest power sums)."""
    c, pixels = spec.channels, spec.pixels
    lo, hi = -(1 << (spec.sc_bits - 1)), (1 << (spec.sc_bits - 1)) - 1
    slo, shi = -(1 << (spec.stat_bits - 1)), (1 << (spec.stat_bits - 1)) - 1
    kp = hi if sc_bound is None else int(sc_bound)
    acc = np.empty((n, c, pixels), dtype=np.int64)
    sc = np.empty((n, c, pixels), dtype=np.int64)
    stat = np.empty((n, c, spec.stat_pixels), dtype=np.int64) if spec.stat_reuse else None
    for f in range(n):
        uniform = rng.random() < 0.2
        if uniform:
            acc[f] = rng.integers(-acc_bound, acc_bound + 1, size=(c, pixels))
        else:
            shift = rng.normal(0, acc_bound / 4, size=(c, 1))
            acc[f] = np.round(shift + rng.normal(0, 3 * np.sqrt(acc_bound), size=(c, pixels)))
        if spec.shortcut_proj:
            sc[f] = (rng.integers(-kp, kp + 1, size=(c, pixels)) if uniform
                     else np.clip(np.round(rng.normal(0, kp / 32, size=(c, pixels))), -kp, kp))
        else:
            sc[f] = rng.integers(lo, hi + 1, size=(c, pixels))
        if stat is not None:
            if uniform:
                stat[f] = rng.integers(slo, shi + 1, size=(c, spec.stat_pixels))
            else:
                spread = 2.0 ** (spec.stat_bits - 3) * rng.uniform(0.2, 1.5)
                mean = rng.normal(0, 2.0 ** (spec.stat_bits - 3), size=(c, 1))
                stat[f] = np.round(mean + rng.gamma(2.0, spread, size=(c, spec.stat_pixels)) * rng.choice([-1, 1]))
    for f, sign in ((1, 1), (2, -1)):
        if f < n:
            acc[f] = sign * acc_bound * rng.choice([-1, 1], size=(c, pixels))
            sc[f] = np.where(rng.random((c, pixels)) < 0.5, lo, hi)
            if stat is not None:
                stat[f] = np.where(rng.random((c, spec.stat_pixels)) < 0.8, slo if sign < 0 else shi,
                                   shi if sign < 0 else slo)
    if stat is not None:
        stat = np.clip(stat, slo, shi)
    return np.clip(acc, -acc_bound, acc_bound), sc, stat


def calibrate_se(rng: np.random.Generator, p: dict, act: ResidualActivation, spec: InstaTailSpec) -> dict:
    """INSTA-PReLU+: rescale the real W2 so that the SE output without its bias, on sample frames, has a typical
    magnitude U(1, 4) (z spreads over the g table; some channels still pass its +-16 clamp). Returns new
    parameters (stored in the case file, so the testbench rebuilds the same constants)."""
    proj = p.get("proj")
    acc, sc, stat = random_inputs(rng, spec, p["acc_bound"], 8, None if proj is None else int(proj["bound"]))
    y = act.pre_activation(acc[..., None], sc[..., None])
    if act.stat_source == "own":
        v = clamp_signed(shift_round(y, act.frac + act.out_exp), act.stat_bits)
    else:
        v = stat[..., None]
    se = act.se
    z = se(se_input(act.poly, v)) - shift_round(se.b, se.mult_frac2 + SE_H_FRAC - G_IN_FRAC)[None, :]
    typical = float(np.median(np.abs(z))) / 2.0 ** G_IN_FRAC
    scale = rng.uniform(1.0, 4.0) / typical if typical > 1e-3 else 1.0
    out = dict(p)
    out["se"] = {"w1": p["se"]["w1"], "w2": (np.asarray(p["se"]["w2"]) * scale).tolist()}
    return out


def prepare_case(channels: int, pe: int, pixels: int, out_bits: int, pooled: bool, seed: int, n_frames: int,
                 directory: Path, proj: bool = False, reuse: bool = False, hidden: int = 0,
                 se_simd: int = 1, limbs: int | None = None,
                 power_table: int | None = None) -> tuple[InstaTailSpec, dict, dict]:
    """Random parameters for the folding (``hidden`` > 0: INSTA-PReLU+ with ``se_simd`` SE multipliers); writes
    the memory files into ``directory``. ``limbs`` None: folding's choice for the unit's fastest rate
    (``hw/compile/folding.py`` ``with_chosen_limbs``; 1 with SE); ``power_table`` None: the spec's default.
    Returns ``(spec, rtl_parameters, case)`` for the runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    params = random_parameters(rng, channels, pixels, out_bits, pooled, proj, reuse, hidden)
    act = activation_from_parameters(params)
    choice = {"se_simd": se_simd, "power_table": power_table}
    spec = InstaTailSpec.from_activation(act, params["acc_bound"], params["sc_bits"], pe, pixels, **choice)
    spec = with_chosen_limbs(spec) if limbs is None else replace(spec, limbs=limbs)
    choice["limbs"] = spec.limbs
    if hidden:
        params = calibrate_se(rng, params, act, spec)
        act = activation_from_parameters(params)
        spec = InstaTailSpec.from_activation(act, params["acc_bound"], params["sc_bits"], pe, pixels, **choice)
    files = write_memory_files(directory, act, spec)
    case = {"spec": asdict(spec), "parameters": params, "seed": seed, "n_frames": n_frames}
    return spec, spec.rtl_parameters(**files), case


def spec_from_dict(d: dict) -> InstaTailSpec:
    d = dict(d)
    d["coeff_bits"], d["fracs"] = tuple(d["coeff_bits"]), tuple(d["fracs"])
    return InstaTailSpec(**d)


# ----------------------------------------------------------------------------------------------------------------
# Testbench
# ----------------------------------------------------------------------------------------------------------------


class TB:
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        self.dut = dut
        self.log = dut._log
        case, self.case_dir = read_case()
        self.spec = spec_from_dict(case["spec"])
        self.params = case["parameters"]
        self.act = activation_from_parameters(self.params)
        self.spec.check_activation(self.act)
        self._check_files()
        self.n_frames = int(case["n_frames"])
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        self._check_parameters()

        reset = dut.rst if drivers_follow_reset else None
        names = ["s_axis_acc", "s_axis_sc"] + (["s_axis_stat"] if self.spec.stat_reuse else [])
        self.sources = {n: AxiStreamSource(AxiStreamBus.from_prefix(dut, n), dut.clk, reset, byte_lanes=1)
                        for n in names}
        if not self.spec.stat_reuse:
            dut.s_axis_stat_tvalid.value = 0
            dut.s_axis_stat_tdata.value = 0
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, reset, byte_lanes=1)
        for port in (*self.sources.values(), self.sink):
            port.log.setLevel("WARNING")

        self.cycle = 0
        self.in_beats: list[tuple[int, int, int]] = []  # (cycle, acc word, sc word)
        self.stat_beats: list[tuple[int, int]] = []
        # beats queued on each source, and handshakes seen by each source at every edge (reset edges included)
        self.sent = {n: 0 for n in names}
        self.raw_taken = {n: 0 for n in names}
        self.join_violations: list[str] = []
        self.out = StreamWatch(dut, "m_axis")
        self.frames_checked = 0
        cocotb.start_soon(self._monitor())
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()

    def _check_files(self):
        s, act = self.spec, self.act
        consts = read_const_file(self.case_dir / "consts.mem", s)
        for name in s.const_fields:
            assert np.array_equal(consts[name], getattr(act, name)), f"constant file: {name} differs"
        coeffs = read_coeff_file(self.case_dir / "coeffs.mem", s)
        for j in range(4):
            assert list(coeffs[f"c{j}"]) == list(act.poly.coeffs[j]), f"coefficient file: C{j} differs"
        assert list(coeffs["mean"]) == list(act.shift_mean) and list(coeffs["gain"]) == list(act.shift_gain)
        assert len(read_g_file(self.case_dir / f"g_{s.g}.mem", s)) == len(g_words(s))
        if s.se:
            for name, words in (("se_consts", se_const_words(act, s)), ("m1", m1_words(act, s)),
                                ("w1", w1_words(act, s)), ("w2", w2_words(act, s))):
                lines = [ln for ln in (self.case_dir / f"{name}.mem").read_text().splitlines()
                         if not ln.startswith("//")]
                assert [int(ln, 16) for ln in lines] == words, f"{name}.mem differs"

    def _check_parameters(self):
        s, dut = self.spec, self.dut
        expected = {
            "CHANNELS": s.channels, "PE": s.pe, "PIXELS": s.pixels, "ACC_BITS": s.acc_bits, "SC_BITS": s.sc_bits,
            "OUT_BITS": s.out_bits, "D_BITS": s.d_bits, "Y_BITS": s.y_bits, "SHORTCUT_SHIFT": s.shortcut_shift,
            "OUT_SHIFT": s.out_shift, "CF": s.cf, "P_BITS": s.p_bits, "O_BITS": s.o_bits,
            "CONST_W": s.const_lane_bits, "LATENCY": s.latency, "STAT_LATENCY": s.stat_latency,
            "FRAME_BEATS": s.frame_beats, "STAT_BEATS": s.stat_beats, "STAT_REUSE": int(s.stat_reuse),
            "STAT_PIXELS": s.stat_pixels, "STAT_BITS": s.stat_bits, "ZACC_BITS": s.zacc_bits,
            "P1_BITS": s.power_sum_bits[0], "P2_BITS": s.power_sum_bits[1], "P3_BITS": s.power_sum_bits[2],
            "ISSUE_LATENCY": s.issue_latency, "BUF_DEPTH": max(s.buffer_depth, 1),
            "SHORTCUT_PROJ": int(s.shortcut_proj), "T_BITS": s.t_bits, "SE": int(s.se),
            "COMPUTE_EDGES": s.compute_edges,
        }
        if s.se:
            expected.update({"HIDDEN": s.hidden, "SE_SIMD": s.se_simd, "Y2_BITS": s.y2_bits, "Z_SHIFT": s.z_shift})
        read = {name: dut_int(dut, name) for name in expected}
        self.log.info("DUT parameters %s (None: not exposed by the simulator)", read)
        for name, value in read.items():
            assert value is None or value == expected[name], f"DUT {name}={value}, the spec says {expected[name]}"
        for port, width in (("s_axis_acc_tdata", s.acc_width), ("s_axis_sc_tdata", s.sc_width),
                            ("s_axis_stat_tdata", s.stat_width), ("m_axis_tdata", s.out_width)):
            got = len(getattr(dut, port))
            assert got == width, f"{port} is {got} bits, expected {width}"

    async def _monitor(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            self.cycle += 1
            acc_hs = bool(dut.s_axis_acc_tvalid.value and dut.s_axis_acc_tready.value)
            sc_hs = bool(dut.s_axis_sc_tvalid.value and dut.s_axis_sc_tready.value)
            stat_hs = bool(dut.s_axis_stat_tvalid.value and dut.s_axis_stat_tready.value)
            self.raw_taken["s_axis_acc"] += acc_hs
            self.raw_taken["s_axis_sc"] += sc_hs
            if "s_axis_stat" in self.raw_taken:
                self.raw_taken["s_axis_stat"] += stat_hs
            if dut.rst.value:
                self.out.pending = None  # a reset may withdraw an offered beat
                continue
            if acc_hs != sc_hs:
                self.join_violations.append(f"cycle {self.cycle}: acc handshake {acc_hs}, sc handshake {sc_hs}")
            if acc_hs and sc_hs:
                self.in_beats.append((self.cycle, int(dut.s_axis_acc_tdata.value), int(dut.s_axis_sc_tdata.value)))
            if dut.s_axis_stat_tready.value:
                if not self.spec.stat_reuse:
                    self.join_violations.append(f"cycle {self.cycle}: s_axis_stat_tready high with own statistics")
                elif dut.s_axis_stat_tvalid.value:
                    self.stat_beats.append((self.cycle, int(dut.s_axis_stat_tdata.value)))
            self.out.sample(self.cycle)

    def clear_records(self):
        self.in_beats.clear()
        self.stat_beats.clear()
        self.out.clear()

    def set_idle_backpressure(self, seed: int | None, idle: float = 0.3, backpressure: float = 0.5):
        for i, port in enumerate((*self.sources.values(), self.sink)):
            port.clear_pause_generator()
            port.pause = False
            if seed is not None:
                port.set_pause_generator(random_pause(seed + i, backpressure if port is self.sink else idle))

    async def reset(self, cycles: int = 3):
        """Hold rst high for ``cycles`` clock edges; returns right after the last reset edge, records cleared."""
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.sink.clear()
        self.clear_records()

    def random_inputs(self, n: int):
        proj = self.params.get("proj")
        return random_inputs(self.rng, self.spec, self.params["acc_bound"], n,
                             None if proj is None else int(proj["bound"]))

    async def _queue(self, name: str, words: list[int]):
        if words:
            self.sent[name] += len(words)
            await self.sources[name].send(AxiStreamFrame(words))

    async def send(self, acc: np.ndarray | None, sc: np.ndarray | None, stat: np.ndarray | None):
        """Queue frames: acc and sc (both or neither), the statistic (reuse; None: none)."""
        s = self.spec
        if acc is not None:
            for acc_words, sc_words in zip(frame_words(acc, s, s.acc_bits), frame_words(sc, s, s.sc_bits)):
                await self._queue("s_axis_acc", acc_words)
                await self._queue("s_axis_sc", sc_words)
        if s.stat_reuse and stat is not None:
            for words in frame_words(stat, s, s.stat_bits, s.stat_pixels):
                await self._queue("s_axis_stat", words)

    async def send_tails(self, acc_beats: int, stat_beats: int):
        """The last beats of one random frame on acc/sc and on the statistic stream (completes interrupted
        frames)."""
        s = self.spec
        acc, sc, stat = self.random_inputs(1)
        if acc_beats:
            await self._queue("s_axis_acc", frame_words(acc, s, s.acc_bits)[0][-acc_beats:])
            await self._queue("s_axis_sc", frame_words(sc, s, s.sc_bits)[0][-acc_beats:])
        if stat_beats:
            await self._queue("s_axis_stat", frame_words(stat, s, s.stat_bits, s.stat_pixels)[0][-stat_beats:])

    def beats_after_reset(self, name: str, recorded: int) -> int:
        """Beats the DUT sees on source ``name`` after the last reset: queued, minus taken up to the reset edge."""
        return self.sent[name] - (self.raw_taken[name] - recorded)

    async def wait_sources(self):
        for port in self.sources.values():
            await port.wait()
        await RisingEdge(self.dut.clk)

    async def wait_outputs(self, n_beats: int, timeout_cycles: int):
        start = self.cycle
        while len(self.out.beats) < n_beats:
            assert self.cycle - start < timeout_cycles, (
                f"timeout: {len(self.out.beats)} of {n_beats} output beats after {timeout_cycles} cycles")
            await RisingEdge(self.dut.clk)

    def timeout(self, n_frames: int, slowdown: float = 1.0) -> int:
        s = self.spec
        period = max(s.cycles_per_frame, s.stat_beats)
        return int((n_frames + 3) * period * 2 * slowdown + 4 * (s.latency + s.issue_latency) + 200)

    def expected(self, acc, sc, stat):
        stat4 = None if stat is None else stat[..., None]
        return self.act(acc[..., None], sc[..., None], stat4)[..., 0]  # (F, C, N, 1): H*W = N

    def check_outputs(self, tag: str, n_frames: int):
        """Scoreboard: the recorded input words (as the DUT sampled them) against the recorded output beats."""
        s = self.spec
        n_beats = n_frames * s.frame_beats
        for what, beats in (("input", self.in_beats), ("output", self.out.beats)):
            assert len(beats) == n_beats, f"{tag}: {len(beats)} {what} beats, expected {n_beats} ({n_frames} frames)"
        violations = self.out.violations + self.join_violations
        assert not violations, f"{tag}: stream protocol: " + "; ".join(violations[:5])
        acc = frames_from_words([a for _, a, _ in self.in_beats], s, s.acc_bits)
        sc = frames_from_words([b for _, _, b in self.in_beats], s, s.sc_bits)
        stat = None
        if s.stat_reuse:
            assert len(self.stat_beats) >= n_frames * s.stat_beats, f"{tag}: too few statistic beats"
            words = [w for _, w in self.stat_beats[: n_frames * s.stat_beats]]
            stat = frames_from_words(words, s, s.stat_bits, s.stat_pixels)
        expected = self.expected(acc, sc, stat)
        got = frames_from_words([w for _, w in self.out.beats], s, s.out_bits)
        bad = np.argwhere(got != expected)
        if len(bad):
            for f, c, p in bad[:10]:
                self.log.error("%s: frame %d pixel %d channel %d: acc=%d, sc=%d, expected %d, got %d", tag, f, p, c,
                               acc[f, c, p], sc[f, c, p], expected[f, c, p], got[f, c, p])
            f, c, p = bad[0]
            raise AssertionError(f"{tag}: {len(bad)} mismatches; first at frame {f}, pixel {p}, channel {c}: "
                                 f"acc={acc[f, c, p]}, sc={sc[f, c, p]}, expected {expected[f, c, p]}, "
                                 f"got {got[f, c, p]}")
        self.frames_checked += n_frames
        return acc, sc, stat


def _steady_period(starts: np.ndarray) -> float:
    """Mean frame period over the second half of the frames (an even number of periods: some regimes alternate)."""
    n = len(starts)
    k = n // 2
    if (n - 1 - k) % 2:
        k -= 1
    k = max(k, 0)
    return float(starts[-1] - starts[k]) / (n - 1 - k)


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, clocks per frame and latency."""
    tb = TB(dut, test_seed=1)
    s = tb.spec
    tb.set_idle_backpressure(None)
    await tb.reset()
    n = max(tb.n_frames, 8)
    acc, sc, stat = tb.random_inputs(n)
    await tb.send(acc, sc, stat)  # all queued: the sources stay valid from the first beat to the last
    await tb.wait_outputs(n * s.frame_beats, timeout_cycles=tb.timeout(n))
    got_acc, got_sc, got_stat = tb.check_outputs("stream_full_rate", n)
    assert np.array_equal(got_acc, acc) and np.array_equal(got_sc, sc), "the monitored inputs differ from the sent"
    assert stat is None or np.array_equal(got_stat, stat), "the monitored statistic differs from the sent"

    fb = s.frame_beats
    in_cycles = np.array([c for c, _, _ in tb.in_beats])
    out_cycles = np.array([c for c, _ in tb.out.beats])
    in_starts, out_starts = in_cycles[::fb], out_cycles[::fb]
    measured, out_measured = _steady_period(in_starts), _steady_period(out_starts)
    beat_latencies = sorted(set((out_cycles - in_cycles).tolist()))
    frame_latencies = (out_starts - in_cycles[fb - 1::fb]).tolist()
    stat_latencies = []
    if s.stat_reuse:
        stat_cycles = np.array([c for c, _ in tb.stat_beats])
        stat_latencies = (in_starts - stat_cycles[s.stat_beats - 1::s.stat_beats][:n]).tolist()
    analytic = s.cycles_per_frame
    outputs = tb.expected(acc, sc, stat)
    qmax = (1 << (s.out_bits - 1)) - 1
    clamped = float(np.mean((outputs == qmax) | (outputs == -qmax - 1)))
    y = tb.act.pre_activation(acc[..., None], sc[..., None])
    shifts = tb.act.shift(y, None if stat is None else stat[..., None])  # (frames, C)
    t_distinct = int(min(len(set(shifts[:, c].tolist())) for c in range(s.channels)))
    tb.log.info("%s: cycles per frame measured %.3f (input), %.3f (output), analytic %.3f; per-beat latency %s, "
                "frame latency %s, stated %d (beat %d); statistic-to-input %s, stated %d; %.1f %% of outputs at "
                "the clamp", s.name, measured, out_measured, analytic, beat_latencies[:6], frame_latencies[:4],
                s.latency, s.beat_latency, stat_latencies[:4], s.stat_latency, 100 * clamped)
    write_result(tb.case_dir, "stream_full_rate", {
        "spec": asdict(s), "n_frames": n, "frame_beats": fb, "stat_beats": s.stat_beats,
        "cycles_per_frame_measured": measured, "cycles_per_frame_measured_output": out_measured,
        "cycles_per_frame_analytic": analytic, "full_rate": s.full_rate,
        "beat_latency_measured": beat_latencies, "beat_latency_stated": s.beat_latency,
        "frame_latency_measured": frame_latencies, "latency_stated": s.latency,
        "stat_latency_measured": stat_latencies, "stat_latency_stated": s.stat_latency,
        "clamped_fraction": clamped, "t_distinct_min": t_distinct,
        "total_cycles": int(out_cycles[-1] - in_cycles[0] + 1),
        "frames_checked": tb.frames_checked,
    })
    assert abs(measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{measured} cycles per frame, analytic {analytic}"
    assert abs(out_measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{out_measured} cycles per frame at the output"
    if s.stat_reuse:
        assert beat_latencies == [s.latency], f"per-beat latencies {beat_latencies}, stated {s.latency}"
        assert stat_latencies[0] == s.stat_latency and min(stat_latencies) >= s.stat_latency, stat_latencies
    else:
        assert frame_latencies[0] == s.latency and min(frame_latencies) >= s.latency, frame_latencies
        if s.full_rate:
            assert np.all(np.diff(in_cycles) == 1), "the input was not taken at one beat per clock"
            assert beat_latencies == [s.beat_latency], f"per-beat latencies {beat_latencies}, stated {s.beat_latency}"


@cocotb.test()
async def stream_idle_backpressure(dut):
    """Independent random idle on every input, random backpressure on the output: exact, nothing lost."""
    tb = TB(dut, test_seed=2)
    s = tb.spec
    await tb.reset()
    tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
    n = tb.n_frames
    acc, sc, stat = tb.random_inputs(n)
    await tb.send(acc, sc, stat)
    await tb.wait_outputs(n * s.frame_beats, timeout_cycles=tb.timeout(n, slowdown=8))
    for _ in range(2 * s.latency + 10):  # nothing extra comes out
        await RisingEdge(dut.clk)
    got_acc, got_sc, got_stat = tb.check_outputs("stream_idle_backpressure", n)
    assert np.array_equal(got_acc, acc) and np.array_equal(got_sc, sc), "the monitored inputs differ from the sent"
    assert stat is None or np.array_equal(got_stat, stat), "the monitored statistic differs from the sent"
    cycles = tb.out.beats[-1][0] - tb.in_beats[0][0] + 1
    tb.log.info("%d frames in %d cycles with idle and backpressure (%.1f per frame)", n, cycles, cycles / n)
    write_result(tb.case_dir, "stream_idle_backpressure", {"n_frames": n, "total_cycles": cycles,
                                                  "frames_checked": tb.frames_checked})
    tb.set_idle_backpressure(None)


def reset_delays(spec: InstaTailSpec) -> list[int]:
    """Clock offsets (from the first input handshake) for the resets: inside the first frame, at its end, while the
    sums complete and the shift computation runs, during the readout, inside the second frame."""
    fb = max(spec.frame_beats, spec.stat_beats)
    il = spec.issue_latency
    points = [0, 1, 3, fb // 2, fb - 1, fb, fb + 2, fb + 5, fb + il // 2, fb + il - 1, fb + il + 2,
              fb + il + spec.frame_beats // 2 + 1, 2 * fb + il + 3]
    return sorted(set(p for p in points if p >= 0))


@cocotb.test()
async def reset_mid_frame(dut):
    """Reset in the middle of a frame, then correct operation.

    The sources are not tied to the reset, so the inputs may be valid at the reset edge and the streams go on
    right after it: the unit must start fresh frames with the first beats taken after the reset. Alternately with
    idle and backpressure.
    """
    tb = TB(dut, test_seed=3, drivers_follow_reset=False)
    s = tb.spec
    delays = reset_delays(s)

    async def complete_frames(tag: str):
        """Complete the interrupted streams and balance the frame counts of acc/sc and the statistic (reuse: acc/sc
        frame k takes statistic frame k)."""
        acc_total = tb.beats_after_reset("s_axis_acc", len(tb.in_beats))
        assert acc_total == tb.beats_after_reset("s_axis_sc", len(tb.in_beats)), f"{tag}: acc and sc out of step"
        acc_pad = (-acc_total) % s.frame_beats
        acc_frames = (acc_total + acc_pad) // s.frame_beats
        stat_pad = stat_frames = 0
        if s.stat_reuse:
            stat_total = tb.beats_after_reset("s_axis_stat", len(tb.stat_beats))
            stat_pad = (-stat_total) % s.stat_beats
            stat_frames = (stat_total + stat_pad) // s.stat_beats
        await tb.send_tails(acc_pad, stat_pad)
        if s.stat_reuse:
            acc, sc, stat = tb.random_inputs(abs(acc_frames - stat_frames))
            if stat_frames < acc_frames:
                await tb.send(None, None, stat)
            elif acc_frames < stat_frames:
                await tb.send(acc, sc, None)

    async def wait_outputs(tag: str, n: int):
        if s.stat_reuse:
            assert len(tb.stat_beats) == n * s.stat_beats, f"{tag}: {len(tb.stat_beats)} statistic beats"
        await tb.wait_outputs(n * s.frame_beats, timeout_cycles=tb.timeout(n, slowdown=8))
        for _ in range(2 * s.latency + 10):  # nothing extra comes out
            await RisingEdge(dut.clk)

    checked = await reset_mid_stream(
        tb, "reset_mid_frame", delays, frame_beats=s.frame_beats, input_beats=lambda: len(tb.in_beats),
        send_frames=lambda n: tb.send(*tb.random_inputs(n)), wait_outputs=wait_outputs,
        frames_after_last=max(2, tb.n_frames // 4), started=lambda: bool(tb.in_beats or tb.stat_beats),
        complete_frames=complete_frames)
    write_result(tb.case_dir, "reset_mid_frame", {"delays": delays, "frames_checked": checked})


# ----------------------------------------------------------------------------------------------------------------
# pytest runner (builds the block, runs the testbench above)
# ----------------------------------------------------------------------------------------------------------------

SOURCES = rtl_paths("insta_tail")
TOPLEVEL = "insta_tail"


@dataclass(frozen=True)
class Folding:
    """The test's choice of folding; the constants (and so the full spec) are drawn per case."""

    channels: int
    pe: int
    pixels: int
    out_bits: int = 8
    pooled: bool = False  # shortcut = 2x2 average-pool sum (out_bits + 2 bits) instead of identity
    proj: bool = False  # shortcut = 1x1 int8 projection (SHORTCUT_PROJ = 1); pooled is ignored
    reuse: bool = False  # statistics of the block input (STAT_REUSE = 1; stride 2 with pooled or proj)
    hidden: int = 0  # > 0: INSTA-PReLU+ (SE = 1) with an SE MLP of this many hidden units
    se_simd: int = 1  # SE multipliers (SE = 1 only)
    limbs: int | None = None  # None: folding's choice (sequencer_limbs where the rate allows)
    power_table: int | None = None  # None: the spec's choice (tables for statistics of up to 8 bits)

    @property
    def name(self) -> str:
        return (f"c{self.channels}_pe{self.pe}_n{self.pixels}_b{self.out_bits}{'_pool' if self.pooled else ''}"
                f"{'_proj' if self.proj else ''}{'_reuse' if self.reuse else '_own'}"
                f"{f'_se{self.hidden}x{self.se_simd}' if self.hidden else ''}"
                f"{'' if self.limbs is None else f'_l{self.limbs}'}"
                f"{'' if self.power_table is None else f'_pt{self.power_table}'}")


FAST_FOLDINGS = [
    Folding(4, 2, 16, 8),  # own, identity: FRAME_BEATS = 32 >= 3C + 14, full rate
    Folding(8, 4, 9, 6, pooled=True),  # own, below full rate (the shift computation sets the pace)
    Folding(4, 2, 4, 8, pooled=True, reuse=True),  # reuse, stride 2: 16 statistic pixels per 4 output pixels
    Folding(4, 4, 9, 8, proj=True, reuse=True),  # reuse with the projection shortcut (stride 2)
    Folding(4, 1, 16, 6, limbs=3, power_table=1),  # own: limb-serial multiplier, power tables (6-bit statistic)
    Folding(4, 2, 25, 8, reuse=True, limbs=2, power_table=0),  # reuse: two limbs, multipliers
]
FAST_FRAMES = 12

SE_FAST_FOLDINGS = [
    Folding(4, 2, 25, 8, hidden=2),  # INSTA-PReLU+, own: FRAME_BEATS = 50 >= 3C + 2 HIDDEN C + 18, full rate
    Folding(8, 4, 9, 6, pooled=True, hidden=4),  # own, below full rate: the SE MLP (one multiplier) sets the pace
    Folding(4, 4, 9, 8, proj=True, reuse=True, hidden=4, se_simd=2),  # reuse + projection, two SE multipliers
]


def _sweep_foldings(n: int = 6, seed: int = 11) -> list[Folding]:
    """Random foldings for the slow sweep (seeded, so the list is stable): C, PE | C, N, output bits 4..8."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pe = int(rng.choice([1, 2, 4, 8]))
        channels = pe * int(rng.integers(1, 4))
        pixels = int(rng.integers(2, 26))
        out.append(Folding(channels, pe, pixels, int(rng.integers(4, 9)), pooled=bool(i % 2), reuse=bool(i % 3 == 1)))
    return out


PROJ_SLOW_FOLDINGS = [Folding(16, 8, 7, 6, proj=True), Folding(8, 2, 5, 8, proj=True, reuse=True)]
SLOW_FOLDINGS = _sweep_foldings() + [Folding(16, 16, 64, 8), Folding(16, 4, 16, 8, reuse=True)] + PROJ_SLOW_FOLDINGS + [
    Folding(32, 1, 64, 8, reuse=True),  # PE = 1 as in ResNet-20: two limbs and power tables by default
    Folding(6, 3, 12, 5, limbs=4, power_table=1),  # own, 7-bit statistic: the limbs set the pace
]
SLOW_FRAMES = 60
SE_SLOW_FOLDINGS = [
    Folding(8, 2, 40, 8, hidden=4, se_simd=2),  # INSTA-PReLU+, own, full rate (FRAME_BEATS = 160)
    Folding(16, 8, 16, 8, hidden=8, se_simd=4),  # own, below full rate
    Folding(8, 4, 8, 8, pooled=True, reuse=True, hidden=8, se_simd=8),  # reuse, stride 2, eight SE multipliers
]

LINT_FOLDINGS = FAST_FOLDINGS + SE_FAST_FOLDINGS + [
    Folding(1, 1, 1, 2), Folding(1, 1, 1, 2, reuse=True), Folding(64, 16, 4, 8, pooled=True),
    Folding(64, 16, 4, 8, proj=True), Folding(8, 8, 4, 8, proj=True, reuse=True),
    Folding(1, 1, 1, 2, hidden=1), Folding(16, 8, 4, 8, proj=True, hidden=8, se_simd=4),
]


def _seed(folding: Folding) -> int:
    return zlib.crc32(folding.name.encode())


def _prepare(folding: Folding, seed: int, n_frames: int, directory: Path):
    return prepare_case(folding.channels, folding.pe, folding.pixels, folding.out_bits, folding.pooled, seed,
                        n_frames, directory, proj=folding.proj, reuse=folding.reuse, hidden=folding.hidden,
                        se_simd=folding.se_simd, limbs=folding.limbs, power_table=folding.power_table)


def run_insta_tail(folding: Folding, n_frames: int, directory: Path, seed: int | None = None,
                   yosys_netlist: bool = False) -> dict:
    """Build and simulate one folding (the RTL, or its Yosys netlist); returns the full-rate measurements (plus the
    frames checked by all tests)."""
    seed = _seed(folding) if seed is None else seed
    case_dir = directory / "case"
    spec, parameters, case = _prepare(folding, seed, n_frames, case_dir)
    result = run_full_rate_bench(__file__, case, sources=SOURCES, toplevel=TOPLEVEL, parameters=parameters,
                                 directory=case_dir, seed=seed, yosys_netlist=yosys_netlist)
    result["spec_name"] = spec.name
    (directory / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _check_measurements(result: dict):
    analytic = result["cycles_per_frame_analytic"]
    assert abs(result["cycles_per_frame_measured"] - analytic) <= 0.02 * analytic
    assert abs(result["cycles_per_frame_measured_output"] - analytic) <= 0.02 * analytic
    assert result["frame_latency_measured"][0] == result["latency_stated"] or result["spec"]["stat_reuse"]
    if result["spec"]["stat_reuse"]:
        assert result["beat_latency_measured"] == [result["latency_stated"]]
        assert result["stat_latency_measured"][0] == result["stat_latency_stated"]
    elif result["full_rate"]:
        assert result["beat_latency_measured"] == [result["beat_latency_stated"]]
    # realistic constants: the outputs are neither all clamped nor all inside the range
    assert 0.0 < result["clamped_fraction"] < 0.9


@pytest.mark.parametrize("folding", FAST_FOLDINGS, ids=lambda f: f.name)
def test_insta_tail_sim(folding, verilator_path, tmp_path):
    result = run_insta_tail(folding, FAST_FRAMES, tmp_path)
    _check_measurements(result)


@pytest.mark.parametrize("folding", SE_FAST_FOLDINGS, ids=lambda f: f.name)
def test_insta_tail_se_sim(folding, verilator_path, tmp_path):
    """INSTA-PReLU+ (SE = 1): bit-exact against ResidualActivation with the SE MLP (full rate, idle and
    backpressure, resets), cycles per frame as the spec's analytic count, the shift varying from frame to frame."""
    result = run_insta_tail(folding, FAST_FRAMES, tmp_path)
    _check_measurements(result)
    spec = result["spec"]
    assert spec["se"] and spec["hidden"] == folding.hidden and spec["se_simd"] == folding.se_simd
    assert result["cycles_per_frame_measured"] == result["cycles_per_frame_analytic"]
    assert result["full_rate"] == (result["frame_beats"] >= 3 * folding.channels
                                   + 2 * folding.hidden * folding.channels // folding.se_simd + 18
                                   and (not folding.reuse or result["stat_beats"] <= result["frame_beats"]))
    assert result["t_distinct_min"] >= 3  # the SE path is live: T differs between frames in every channel


@pytest.mark.slow
@pytest.mark.parametrize("folding", SLOW_FOLDINGS, ids=lambda f: f.name)
def test_insta_tail_sim_sweep(folding, verilator_path, tmp_path):
    result = run_insta_tail(folding, SLOW_FRAMES, tmp_path)
    _check_measurements(result)
    assert result["frames_checked_all_tests"] >= 2 * SLOW_FRAMES


@pytest.mark.slow
@pytest.mark.parametrize("folding", SE_SLOW_FOLDINGS, ids=lambda f: f.name)
def test_insta_tail_se_sim_sweep(folding, verilator_path, tmp_path):
    result = run_insta_tail(folding, SLOW_FRAMES, tmp_path)
    _check_measurements(result)
    assert result["cycles_per_frame_measured"] == result["cycles_per_frame_analytic"]
    assert result["frames_checked_all_tests"] >= 2 * SLOW_FRAMES and result["t_distinct_min"] >= 3


def test_sweep_is_wide_enough():
    """The slow sweep covers >= 5 distinct foldings, own and reuse, shift and proj shortcuts, >= 1000 frames."""
    assert len(SLOW_FOLDINGS) >= 5 and len(SLOW_FOLDINGS) * 2 * SLOW_FRAMES >= 1000
    assert {f.reuse for f in SLOW_FOLDINGS} == {False, True} and {f.reuse for f in FAST_FOLDINGS} == {False, True}
    assert {f.pooled for f in SLOW_FOLDINGS if not f.proj} == {False, True}
    assert {f.reuse for f in SLOW_FOLDINGS if f.proj} == {False, True} and any(f.proj for f in FAST_FOLDINGS)
    assert len({(f.channels, f.pe, f.pixels) for f in SLOW_FOLDINGS}) == len(SLOW_FOLDINGS)


def _lint(folding: Folding, verilator_path: Path, **overrides) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        _, params, _ = _prepare(folding, 0, 1, Path(tmp))
        params.update(overrides)
        return verilator_lint(SOURCES, TOPLEVEL, params, verilator_path)


@pytest.mark.parametrize("folding", LINT_FOLDINGS, ids=lambda f: f.name)
def test_insta_tail_lint_clean(folding, verilator_path):
    proc = _lint(folding, verilator_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "%Warning" not in output and "%Error" not in output, output


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"PE": 3}, "PE (3) must divide CHANNELS (4)"),
        ({"PE": 0}, "CHANNELS, PE, PIXELS and STAT_PIXELS must be >= 1"),
        ({"ACC_BITS": 1}, "ACC_BITS (1), SC_BITS"),
        ({"OUT_BITS": 33}, "must be in 2 .. 32"),
        ({"SLOPE_BITS": 0}, "MULT_BITS, BIAS_BITS, SLOPE_BITS must be in 1 .. 48"),
        ({"SHORTCUT_SHIFT": -1}, "SHORTCUT_SHIFT (-1) must be >= 0"),
        ({"OUT_SHIFT": 0}, "OUT_SHIFT (0) must be >= 1"),
        ({"D_BITS": 65}, "<= D_BITS (65) <= 64"),
        ({"Y_BITS": 3}, "<= Y_BITS (3) <= D_BITS"),
        ({"STAT_REUSE": 2}, "STAT_REUSE (2) must be 0 or 1"),
        ({"STAT_BITS": 17}, "STAT_BITS (17) must be in 2 .. 16"),
        ({"STAT_PIXELS": 5}, "own statistics need STAT_PIXELS (5) = PIXELS (16)"),
        ({"ZACC_BITS": 8}, "ZACC_BITS (8) must be in P3's width"),
        ({"T_BITS": 0}, "T_BITS (0) must be in 1 .. D_BITS"),
        ({"FRAC_0": 3, "FRAC_1": 3, "FRAC_2": 3, "FRAC_3": 3}, "> G_IN_FRAC (12)"),
        ({"CONST_FILE": '""'}, "CONST_FILE must name"),
        ({"G_FILE": '""'}, "COEFF_FILE and G_FILE must name"),
        ({"SHORTCUT_PROJ": 2}, "SHORTCUT_PROJ (2) must be 0 or 1"),
        ({"SHORTCUT_PROJ": 1, "SHORTCUT_MULT_BITS": 49}, "SHORTCUT_MULT_BITS (49) must be in 1 .. 48"),
        ({"G_BRAM": 2}, "G_BRAM (2) must be 0, or 1 with SE = 0"),
    ],
)
def test_insta_tail_rejects_illegal_parameters(overrides, message, verilator_path):
    proc = _lint(FAST_FOLDINGS[0], verilator_path, **overrides)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"SE": 2}, "SE (2) must be 0 or 1"),
        ({"SE_SIMD": 3}, "SE_SIMD (3) must divide CHANNELS (4) and HIDDEN (2)"),
        ({"Z_SHIFT": 0}, "S_SHIFT, H_SHIFT and Z_SHIFT must be >= 1"),
        ({"W2_FILE": '""'}, "M1/W1/W2_FILE and G_FILE must name"),
        ({"G_BRAM": 1}, "G_BRAM (1) must be 0, or 1 with SE = 0"),
    ],
)
def test_insta_tail_se_rejects_illegal_parameters(overrides, message, verilator_path):
    proc = _lint(SE_FAST_FOLDINGS[0], verilator_path, **overrides)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_spec_matches_the_reference_and_the_files(tmp_path):
    """The spec's widths are the golden object's; the memory files and the stream packing round-trip; Y, D and T
    at the worst-case inputs fit their widths."""
    from instabnn.contract.fixed_point import signed_bits
    from instabnn.contract.insta import power_sum_bits
    from instabnn.contract.layers import STAT_EXTRA_BITS, g_table
    from instabnn.hw.blocks.common.resources import memory
    from instabnn.hw.blocks.insta_tail.spec import G_BRAM_MAX_BUFFER_BRAM36

    rng = np.random.default_rng(11)
    for folding in FAST_FOLDINGS + SLOW_FOLDINGS + SE_FAST_FOLDINGS:
        p = random_parameters(rng, folding.channels, folding.pixels, folding.out_bits, folding.pooled, folding.proj,
                              folding.reuse, folding.hidden)
        act = activation_from_parameters(p)
        spec = InstaTailSpec.from_activation(act, p["acc_bound"], p["sc_bits"], folding.pe, folding.pixels,
                                             se_simd=folding.se_simd)
        assert spec.se == bool(folding.hidden) and (act.se is not None) == spec.se
        sc_bound = 1 << (p["sc_bits"] - 1)
        assert spec.d_bits == act.pre_activation_bits(p["acc_bound"], sc_bound) >= max(spec.y_bits, spec.t_bits)
        assert spec.out_shift == act.frac + act.out_exp >= 1
        assert spec.zacc_bits == act.poly.accumulator_bits()
        assert spec.power_sum_bits == power_sum_bits(act.poly.input_bits, act.poly.pixels)
        if folding.reuse:
            assert spec.stat_reuse and spec.stat_bits == p["reuse"]["bits"]
            assert spec.stat_pixels == p["reuse"]["pixels"] == (4 if (folding.pooled or folding.proj) else 1) * \
                folding.pixels
            assert spec.buffer_depth == 0 and spec.latency == 8
        else:
            assert not spec.stat_reuse and spec.stat_bits == folding.out_bits + STAT_EXTRA_BITS
            assert spec.stat_pixels == folding.pixels and spec.buffer_depth == spec.frame_beats + spec.issue_latency
            assert spec.latency == 3 * folding.channels + 31 + (spec.compute_edges - 3 * folding.channels - 12)
        assert spec.const_fields == (PROJ_CONST_FIELDS if folding.proj else CONST_FIELDS)
        se_files = ("s.mem", "m1.mem", "w1.mem", "w2.mem") if spec.se else ()
        params = spec.rtl_parameters("c.mem", "k.mem", "g.mem", *se_files)
        assert params["STAT_REUSE"] == int(folding.reuse) and params["SHORTCUT_PROJ"] == int(folding.proj)
        assert ("SE" in params) == spec.se and ("M1_FILE" in params) == spec.se
        # the g table in block RAM for plain own-statistic units with small frame buffers (the fast foldings')
        small_buffer = memory(spec.buffer_depth, spec.pe * spec.y_bits)["bram36"] <= G_BRAM_MAX_BUFFER_BRAM36
        assert params["G_BRAM"] == int(not spec.se and not folding.reuse and small_buffer)
        assert small_buffer or folding not in FAST_FOLDINGS
        if spec.se:
            # the RTL rounds P to s by S_SHIFT = max FRAC_j - SE_S_FRAC, from the FRAC_j parameters
            assert params["HIDDEN"] == folding.hidden and max(params[f"FRAC_{j}"] for j in range(4)) - 8 >= 1
            assert spec.compute_edges == 3 * spec.channels + 2 * spec.hidden * spec.channels // spec.se_simd + 16
            assert spec.hidden == act.se.w1.shape[0] and spec.h_shift == act.se.mult_frac1
            assert spec.z_shift == act.se.mult_frac2 - 4
        for name in spec.const_fields:
            v = getattr(act, name)
            assert getattr(spec, f"{name}_bits") == signed_bits(int(v.min()), int(v.max()))
        files = write_memory_files(tmp_path / spec.name, act, spec)
        consts = read_const_file(files["const_file"], spec)
        assert all(np.array_equal(consts[n], getattr(act, n)) for n in spec.const_fields)
        coeffs = read_coeff_file(files["coeff_file"], spec)
        assert all(list(coeffs[f"c{j}"]) == list(act.poly.coeffs[j]) for j in range(4))
        assert list(coeffs["mean"]) == list(act.shift_mean) and list(coeffs["gain"]) == list(act.shift_gain)
        table = g_table(act.g)
        entries = read_g_file(files["g_file"], spec)
        assert [b for b, _ in entries] == list(table) and len(entries) == G_ENTRIES
        assert [b + d for b, d in entries] == list(table[1:]) + [table[-1]]
        acc, sc, stat = random_inputs(rng, spec, p["acc_bound"], 3, p["proj"]["bound"] if folding.proj else None)
        for x, bits in ((acc, spec.acc_bits), (sc, spec.sc_bits)):
            words = frame_words(x, spec, bits)
            assert len(words) == 3 and all(len(w) == spec.frame_beats for w in words)
            assert np.array_equal(frames_from_words([w for f in words for w in f], spec, bits), x)
        if stat is not None:
            words = frame_words(stat, spec, spec.stat_bits, spec.stat_pixels)
            assert all(len(w) == spec.stat_beats for w in words)
            assert np.array_equal(frames_from_words([w for f in words for w in f], spec, spec.stat_bits,
                                                    spec.stat_pixels), stat)
        # worst-case corners of Y, T and D per channel
        k, s_lo, s_hi = p["acc_bound"], -sc_bound, sc_bound - 1
        corners_acc = np.array([-k, k])[:, None, None, None] * np.ones((1, spec.channels, 1, 1), np.int64)
        g_abs = max(abs(x) for x in table)
        t_max = np.abs(act.shift_mean) + (np.abs(act.shift_gain) * g_abs + (1 << 13) >> 14)
        assert t_max.max() < 1 << (spec.t_bits - 1)
        for sv in (s_lo, s_hi):
            y = act.pre_activation(corners_acc, np.full_like(corners_acc, sv))
            assert -(1 << (spec.y_bits - 1)) <= y.min() and y.max() < 1 << (spec.y_bits - 1)
            d = np.abs(y) + t_max[None, :, None, None]
            assert d.max() < 1 << (spec.d_bits - 1)


def test_spec_refuses_unsupported_and_mismatched_constants():
    from instabnn.contract.layers import residual_activation

    rng = np.random.default_rng(3)
    p = random_parameters(rng, 8, 4, 8, False)
    act = activation_from_parameters(p)
    spec = InstaTailSpec.from_activation(act, p["acc_bound"], p["sc_bits"], 4, 4)
    with pytest.raises(ValueError, match="PE"):
        InstaTailSpec.from_activation(act, p["acc_bound"], p["sc_bits"], 3, 4)
    with pytest.raises(ValueError, match="own statistics over 4 pixels"):
        InstaTailSpec.from_activation(act, p["acc_bound"], p["sc_bits"], 4, 5)
    with pytest.raises(ValueError, match="mult needs"):
        const_words(act, replace(spec, mult_bits=2))
    with pytest.raises(ValueError, match="coefficient C3 needs"):
        coeff_words(act, replace(spec, coeff_bits=spec.coeff_bits[:3] + (2,)))
    with pytest.raises(ValueError, match="stat_source"):
        const_words(act, replace(spec, stat_reuse=True))
    # RPReLU belongs to residual_tail; INSTA-PReLU+ needs the statistic polynomial on the SE's input grid
    rp = residual_activation(np.asarray(p["a"]), np.asarray(p["b"]), p["acc_bound"], "shift", p["shortcut_exp"], None,
                             {"kind": "rprelu", "gamma": np.zeros(8), "zeta": np.zeros(8), "slope": np.ones(8)},
                             p["out_exp"], 8, 4, "t")
    with pytest.raises(ValueError, match="residual_tail"):
        InstaTailSpec.from_activation(rp, p["acc_bound"], p["sc_bits"], 4, 4)
    with pytest.raises(ValueError, match="INSTA-PReLU\\+"):
        InstaTailSpec.from_activation(replace(act, se=object()), p["acc_bound"], p["sc_bits"], 4, 4)
    # reused statistics must come from a block input with the output's channels
    pr = random_parameters(rng, 8, 4, 8, True, reuse=True)
    ract = activation_from_parameters(pr)
    rspec = InstaTailSpec.from_activation(ract, pr["acc_bound"], pr["sc_bits"], 4, 4, stat_channels=8)
    assert rspec.stat_pixels == 16 and rspec.stat_beats == 32
    with pytest.raises(ValueError, match="4-channel block input cannot shift 8"):
        InstaTailSpec.from_activation(ract, pr["acc_bound"], pr["sc_bits"], 4, 4, stat_channels=4)


def test_spec_se_refuses_mismatched_constants():
    """INSTA-PReLU+: the SE unit refuses plain constants and the other way round, narrower SE widths, a missing SE
    file, an se_simd that does not divide C and HIDDEN."""
    from instabnn.hw.blocks.insta_tail.spec import m1_words, w2_words

    rng = np.random.default_rng(7)
    p = random_parameters(rng, 8, 9, 8, False, hidden=4)
    act = activation_from_parameters(p)
    spec = InstaTailSpec.from_activation(act, p["acc_bound"], p["sc_bits"], 4, 9, se_simd=2)
    assert spec.se and spec.hidden == 4 and spec.mac_steps == 2 * 4 * 8 // 2
    assert spec.compute_busy == 3 * 8 + spec.mac_steps + 9 and spec.compute_edges == spec.compute_busy + 7
    assert len(w2_words(act, spec)) == 8 * 4 // 2 and len(m1_words(act, spec)) == 4
    plain = activation_from_parameters(random_parameters(rng, 8, 9, 8, False))
    with pytest.raises(ValueError, match="stat_source, se"):
        const_words(plain, spec)
    with pytest.raises(ValueError, match="stat_source, se"):
        const_words(act, replace(spec, se=False))
    with pytest.raises(ValueError, match="w2_bits"):
        w2_words(act, replace(spec, w2_bits=2))
    with pytest.raises(ValueError, match="se_const_file"):
        spec.rtl_parameters("c.mem", "k.mem", "g.mem")
    with pytest.raises(ValueError, match="se_simd"):
        InstaTailSpec.from_activation(act, p["acc_bound"], p["sc_bits"], 4, 9, se_simd=3)
    # SE = 0 keeps the parameter set of INSTA-PReLU
    pspec = InstaTailSpec.from_activation(plain, p["acc_bound"], p["sc_bits"], 4, 9)
    assert not any(k in pspec.rtl_parameters("c", "k", "g") for k in ("SE", "HIDDEN", "M1_FILE"))


def test_cycle_model():
    """Full rate from FRAME_BEATS >= 3C + 14 (own); reuse runs at the slower of the two streams."""

    rng = np.random.default_rng(5)
    p = random_parameters(rng, 8, 19, 8, False)
    spec = InstaTailSpec.from_activation(activation_from_parameters(p), p["acc_bound"], p["sc_bits"], 4, 19)
    assert spec.frame_beats == 38 == 3 * 8 + 14 and spec.full_rate and spec.cycles_per_frame == 38
    assert replace(spec, pixels=16, stat_pixels=16).cycles_per_frame == (24 + 32 + 14) / 2
    pr = random_parameters(rng, 8, 16, 8, True, reuse=True)
    rspec = InstaTailSpec.from_activation(activation_from_parameters(pr), pr["acc_bound"], pr["sc_bits"], 4, 16)
    assert rspec.stat_beats == 4 * rspec.frame_beats and rspec.cycles_per_frame == rspec.stat_beats


needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")


@needs_yosys
@pytest.mark.parametrize("folding", [
    Folding(2, 1, 2, 4, pooled=True),
    pytest.param(Folding(2, 1, 2, 4, pooled=True, hidden=2), marks=pytest.mark.slow),
    pytest.param(Folding(4, 2, 4, 6, proj=True, reuse=True), marks=pytest.mark.slow),
], ids=lambda f: f.name)
def test_insta_tail_yosys_synth(folding, tmp_path):
    """Yosys reads and synthesises the RTL (generic synth, small folding; the ROMs from the generated files). The
    default tier synthesises the own-statistics unit, INSTA-PReLU and INSTA-PReLU+ (SE = 1); the reuse + projection
    one is in the slow tier."""
    _, parameters, _ = _prepare(folding, 0, 1, tmp_path)
    log = yosys_synth(SOURCES, TOPLEVEL, parameters, tmp_path / "synth")
    assert "Number of cells" in log


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("folding", [Folding(2, 1, 3, 4, pooled=True), Folding(2, 2, 2, 4, proj=True, reuse=True),
                                     Folding(2, 2, 3, 4, pooled=True, hidden=2, se_simd=2)],
                         ids=lambda f: f.name)
def test_insta_tail_yosys_netlist_sim(folding, verilator_path, tmp_path):
    """Yosys reads the RTL as Verilator does: its synthesised netlist passes the same cocotb tests, cycle for
    cycle (own and reused statistics; the ROM contents baked in)."""
    result = run_insta_tail(folding, 6, tmp_path, yosys_netlist=True)
    _check_measurements(result)


@pytest.mark.slow
@needs_yosys
def test_insta_tail_synth_xilinx(tmp_path):
    """synth_xilinx (xc7) of C = 64, PE = 16, N = 64, own statistics: DSPs for the lanes' multipliers, the frame
    buffer in block RAM."""
    from instabnn.hw.synth import parse_stat

    spec, parameters, _ = _prepare(Folding(64, 16, 64, 8), 1234, 1, tmp_path)
    log = yosys_synth(SOURCES, TOPLEVEL, parameters, tmp_path / "synth", xilinx=True)
    res = parse_stat(log)
    (tmp_path / "synth.json").write_text(json.dumps({"spec": spec.name, **res}, indent=2) + "\n")
    assert 2 * spec.pe <= res["dsp"] and res["bram36"] > 0, res
    assert 0 < res["lut"] and res["ff"] > 0, res
