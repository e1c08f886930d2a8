"""cocotb testbench of ``hw/blocks/insta_tail/insta_tail.sv`` against the golden function
``instabnn.hw.reference.layers.ResidualActivation`` (INSTA-PReLU or INSTA-PReLU+ with the SE MLP, shift or
1x1-projection shortcut, own or reused statistics).

The pytest entry ``tests/test_rtl_insta_tail.py`` builds the unit with Verilator for one
:class:`~instabnn.hw.blocks.insta_tail.spec.InstaTailSpec`, draws random float parameters, fixes them with the
contract's own constructor (:func:`~instabnn.hw.reference.layers.residual_activation`, activation kind "insta"),
writes the three memory files and a case file with :func:`prepare_case`, and runs the cocotb tests below in one
simulation; the case file is named by the environment variable ``INSTABNN_ITAIL_CASE``. The testbench rebuilds the
same ``ResidualActivation`` from the stored float parameters (the constructor is deterministic) and checks it
against the memory files.

Tests (each starts with a reset):

* ``stream_full_rate``: every source always valid, the sink always ready. Every output equals the reference
  exactly; clocks per frame in steady state (second half of the frames; input and output side) within 2 % of
  ``spec.cycles_per_frame``; own: the first frame's output starts exactly ``spec.latency`` edges after its last
  input beat, every frame at least that, and at full rate every beat leaves exactly ``spec.beat_latency`` edges
  after it entered; reuse: every beat leaves exactly ``spec.latency`` = 6 edges after its acc/sc handshake, the
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
from dataclasses import asdict
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from instabnn.hw.blocks.insta_tail.spec import (InstaTailSpec, frame_words, frames_from_words, g_words, m1_words,
                                          read_coeff_file, read_const_file, read_g_file, se_const_words, w1_words,
                                          w2_words, write_memory_files)
from instabnn.hw.reference.fixed_point import signed_bits
from instabnn.hw.reference.layers import (G_IN_FRAC, SE_H_FRAC, ResidualActivation, clamp_signed, ptq_int8,
                                          residual_activation, se_input, se_mlp_fixed, shift_round)
from instabnn.hw.blocks.common.axis_tb import CLOCK_PERIOD_NS, CYCLE_TOLERANCE, case_from_env, dut_int, random_pause

CASE_ENV = "INSTABNN_ITAIL_CASE"
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
    the memory files and ``case.json`` into ``directory``. ``limbs`` / ``power_table`` None: the spec's defaults.
    Returns ``(spec, rtl_parameters, extra_env)`` for the runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    params = random_parameters(rng, channels, pixels, out_bits, pooled, proj, reuse, hidden)
    act = activation_from_parameters(params)
    choice = {"se_simd": se_simd, "limbs": limbs, "power_table": power_table}
    spec = InstaTailSpec.from_activation(act, params["acc_bound"], params["sc_bits"], pe, pixels, **choice)
    if hidden:
        params = calibrate_se(rng, params, act, spec)
        act = activation_from_parameters(params)
        spec = InstaTailSpec.from_activation(act, params["acc_bound"], params["sc_bits"], pe, pixels, **choice)
    files = write_memory_files(directory, act, spec)
    case = {"spec": asdict(spec), "parameters": params, "seed": seed, "n_frames": n_frames}
    (directory / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    return spec, spec.rtl_parameters(**files), {CASE_ENV: str(directory / "case.json")}


def spec_from_dict(d: dict) -> InstaTailSpec:
    d = dict(d)
    d["coeff_bits"], d["fracs"] = tuple(d["coeff_bits"]), tuple(d["fracs"])
    return InstaTailSpec(**d)


# ----------------------------------------------------------------------------------------------------------------
# Testbench
# ----------------------------------------------------------------------------------------------------------------


class _StreamWatch:
    """Records the handshakes of the output stream and checks that an offered beat stays offered, unchanged."""

    def __init__(self, dut, prefix: str):
        self.valid = getattr(dut, f"{prefix}_tvalid")
        self.ready = getattr(dut, f"{prefix}_tready")
        self.data = getattr(dut, f"{prefix}_tdata")
        self.prefix = prefix
        self.beats: list[tuple[int, int]] = []
        self.violations: list[str] = []
        self.pending: int | None = None

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
        case, self.case_dir = case_from_env(CASE_ENV, "tests/test_rtl_insta_tail.py")
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
        self.out = _StreamWatch(dut, "m_axis")
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

    def write_result(self, name: str, result: dict):
        (self.case_dir / f"result_{name}.json").write_text(json.dumps(result, indent=2) + "\n")


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
    tb.write_result("stream_full_rate", {
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
    tb.write_result("stream_idle_backpressure", {"n_frames": n, "total_cycles": cycles,
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
    checked = 0
    for i, delay in enumerate(delays):
        tag = f"reset_mid_frame[delay={delay}]"
        tb.set_idle_backpressure(None)
        await tb.reset()
        if i % 2:
            tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
        await tb.send(*tb.random_inputs(3))
        while not (tb.in_beats or tb.stat_beats):
            await RisingEdge(dut.clk)
        for _ in range(delay):
            await RisingEdge(dut.clk)
        await tb.reset(cycles=1)  # a single-cycle reset must be enough
        await RisingEdge(dut.clk)  # values seen at this edge are the state the reset left
        assert not dut.m_axis_tvalid.value, f"{tag}: m_axis_tvalid high right after reset"
        # the rest of the interrupted streams are the start of new frames: complete them, balance the frame counts
        # of acc/sc and the statistic (reuse: acc/sc frame k takes statistic frame k), then more
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
        more = max(2, tb.n_frames // 4) if delay == delays[-1] else 2
        await tb.send(*tb.random_inputs(more))
        await tb.wait_sources()
        assert len(tb.in_beats) % s.frame_beats == 0, f"{tag}: {len(tb.in_beats)} input beats after the reset"
        total = len(tb.in_beats) // s.frame_beats
        if s.stat_reuse:
            assert len(tb.stat_beats) == total * s.stat_beats, f"{tag}: {len(tb.stat_beats)} statistic beats"
        await tb.wait_outputs(total * s.frame_beats, timeout_cycles=tb.timeout(total, slowdown=8))
        for _ in range(2 * s.latency + 10):  # nothing extra comes out
            await RisingEdge(dut.clk)
        tb.check_outputs(tag, total)
        checked += total
    tb.log.info("reset at %d offsets, %d frames after the resets exact", len(delays), checked)
    tb.write_result("reset_mid_frame", {"delays": delays, "frames_checked": checked})
    tb.set_idle_backpressure(None)
