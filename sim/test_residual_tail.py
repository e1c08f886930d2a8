"""cocotb testbench of ``hw/blocks/residual_tail/residual_tail.sv`` against the golden function
``instabnn.hw.reference.layers.ResidualActivation`` (RPReLU, shift or 1x1-projection shortcut).

The pytest entry ``tests/test_rtl_residual_tail.py`` builds the unit with Verilator for one
:class:`~instabnn.hw.blocks.residual_tail.spec.ResidualTailSpec`, draws random float parameters, fixes them with the contract's
own constructor (:func:`~instabnn.hw.reference.layers.residual_activation`), writes the constant file and a case
file with :func:`prepare_case`, and runs the cocotb tests below in one simulation; the case file is named by the
environment variable ``INSTABNN_RTAIL_CASE``. The testbench rebuilds the same ``ResidualActivation`` from the
stored float parameters (the constructor is deterministic) and checks it against the constant file.

Tests (each starts with a reset):

* ``stream_full_rate``: both sources always valid, the sink always ready. Every output equals the reference
  exactly; clocks per frame (input and output side) within 2 % of ``spec.cycles_per_frame`` (``H*W*C/PE``); every
  beat leaves exactly ``spec.latency`` edges after it entered. Results in ``result_stream_full_rate.json``.
* ``stream_idle_backpressure``: independent random idle cycles on ``s_axis_acc`` and ``s_axis_sc`` (the join must
  wait for both) and random backpressure on ``m_axis``; every output exact, nothing lost or added.
* ``reset_mid_frame``: single-cycle resets at several points inside frames, the stream continuing through them;
  afterwards no stale beat and every later frame exact (the channel fold restarts at 0).

Every test checks the protocol on the output (an offered beat stays offered, unchanged, until taken) and that the
two inputs are only ever taken together. The scoreboard unpacks the input words the DUT actually sampled, calls the
``ResidualActivation`` object (nothing is modelled here) and compares in order; a mismatch names the test, frame,
pixel and channel with acc, sc, expected and got.
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

from instabnn.hw.reference.fixed_point import signed_bits
from instabnn.hw.reference.layers import ResidualActivation, residual_activation
from instabnn.hw.blocks.residual_tail.spec import (ResidualTailSpec, frame_words, frames_from_words, read_const_file,
                                        write_const_file)

CASE_ENV = "INSTABNN_RTAIL_CASE"
CLOCK_PERIOD_NS = 10
CYCLE_TOLERANCE = 0.02


# ----------------------------------------------------------------------------------------------------------------
# Case preparation (runs in pytest, before the simulator starts: the constant ROM is loaded at time 0)
# ----------------------------------------------------------------------------------------------------------------


def proj_bound(in_channels: int) -> int:
    """|acc_p| bound of the 1x1 int8 projection over 2x2 average-pool sums of an 8-bit stream:
    127 * Cin * 128 * 4."""
    return 127 * in_channels * 128 * 4


def random_parameters(rng: np.random.Generator, channels: int, pixels: int, out_bits: int, pooled: bool,
                      proj: bool = False) -> dict:
    """Float parameters of a block tail as a trained network has them: y = a acc + b with a ~ U(-0.05, 0.05),
    b, gamma, zeta ~ N(0, 0.3), slopes ~ U(-0.5, 1), output scale 2^e with e in -6 .. -3; the shortcut is the
    block input (identity: out_bits, scale 2^e) or its 2x2 average-pool sum (out_bits + 2 bits, scale 2^(e-2)).
    The accumulator is a 3x3 binary convolution over ``channels`` inputs: |acc| <= 9 C.

    ``proj``: the shortcut is a 1x1 int8 projection of the pooled block input (Cin = max(1, C/2) channels, the
    ResNet downsampling block): SC = a_p acc_p with the real multiplier a_p ~ U(-1, 1) 2^-12 / Cin per channel,
    its BN shift ~ N(0, 0.3) (folded into the bias by the constructor), |acc_p| <= :func:`proj_bound` (Cin); the
    shortcut lanes are that bound's signed width (``pooled`` is ignored)."""
    out_exp = int(rng.integers(-6, -2))
    p = {
        "a": rng.uniform(-0.05, 0.05, channels).tolist(),
        "b": rng.normal(0, 0.3, channels).tolist(),
        "gamma": rng.normal(0, 0.3, channels).tolist(),
        "zeta": rng.normal(0, 0.3, channels).tolist(),
        "slope": rng.uniform(-0.5, 1.0, channels).tolist(),
        "acc_bound": 9 * channels,
        "shortcut_exp": out_exp - 2 if pooled else out_exp,
        "sc_bits": out_bits + 2 if pooled else out_bits,
        "out_exp": out_exp,
        "out_bits": out_bits,
        "pixels": pixels,
    }
    if proj:
        in_channels = max(1, channels // 2)
        bound = proj_bound(in_channels)
        p["proj"] = {"mult": (rng.uniform(-1, 1, channels) * 2.0 ** -12 / in_channels).tolist(),
                     "shift": rng.normal(0, 0.3, channels).tolist(), "bound": bound}
        p["sc_bits"] = signed_bits(-bound, bound)
    return p


def activation_from_parameters(p: dict) -> ResidualActivation:
    """The contract's constructor on the stored float parameters."""
    act = {"kind": "rprelu", "gamma": np.asarray(p["gamma"]), "zeta": np.asarray(p["zeta"]),
           "slope": np.asarray(p["slope"])}
    proj = p.get("proj")
    kind, proj_args = "shift", None
    if proj is not None:
        kind, proj_args = "proj", (np.asarray(proj["mult"]), np.asarray(proj["shift"]), int(proj["bound"]))
    return residual_activation(np.asarray(p["a"]), np.asarray(p["b"]), p["acc_bound"], kind, p["shortcut_exp"],
                               proj_args, act, p["out_exp"], p["out_bits"], p["pixels"], "test")


def random_inputs(rng: np.random.Generator, spec: ResidualTailSpec, acc_bound: int, n: int,
                  sc_bound: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` frames of (acc, sc), each (n, C, N). Mostly acc ~ N(0, 3 sqrt(K)) (popcount sums of a trained layer
    concentrate well inside [-K, K]) and sc uniform over its range; some frames uniform over [-K, K]; frames 1 and 2
    at the corners (acc = +-K with sc at its extremes: the widest Y and D).

    Proj mode (``spec.shortcut_proj``; ``sc_bound`` = the projection bound Kp): sc = acc_p mostly ~ N(0, Kp / 32),
    in the frames with uniform acc uniform over [-Kp, Kp]; the corner frames take the extremes of the full
    ``sc_bits`` range."""
    c, pixels = spec.channels, spec.pixels
    lo, hi = -(1 << (spec.sc_bits - 1)), (1 << (spec.sc_bits - 1)) - 1
    acc = np.empty((n, c, pixels), dtype=np.int64)
    if spec.shortcut_proj:
        kp = hi if sc_bound is None else int(sc_bound)
        sc = np.empty((n, c, pixels), dtype=np.int64)
        for f in range(n):
            if rng.random() < 0.2:
                acc[f] = rng.integers(-acc_bound, acc_bound + 1, size=(c, pixels))
                sc[f] = rng.integers(-kp, kp + 1, size=(c, pixels))
            else:
                acc[f] = np.round(rng.normal(0, 3 * np.sqrt(acc_bound), size=(c, pixels)))
                sc[f] = np.clip(np.round(rng.normal(0, kp / 32, size=(c, pixels))), -kp, kp)
    else:
        sc = rng.integers(lo, hi + 1, size=(n, c, pixels))
        for f in range(n):
            if rng.random() < 0.2:
                acc[f] = rng.integers(-acc_bound, acc_bound + 1, size=(c, pixels))
            else:
                acc[f] = np.round(rng.normal(0, 3 * np.sqrt(acc_bound), size=(c, pixels)))
    for f, sign in ((1, 1), (2, -1)):
        if f < n:
            acc[f] = sign * acc_bound * rng.choice([-1, 1], size=(c, pixels))
            sc[f] = np.where(rng.random((c, pixels)) < 0.5, lo, hi)
    return np.clip(acc, -acc_bound, acc_bound), sc


def prepare_case(channels: int, pe: int, pixels: int, out_bits: int, pooled: bool, seed: int, n_frames: int,
                 directory: Path, proj: bool = False) -> tuple[ResidualTailSpec, dict, dict]:
    """Random parameters for the folding; writes the constant file and ``case.json`` into ``directory``.
    Returns ``(spec, rtl_parameters, extra_env)`` for the runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    params = random_parameters(rng, channels, pixels, out_bits, pooled, proj)
    act = activation_from_parameters(params)
    spec = ResidualTailSpec.from_activation(act, params["acc_bound"], params["sc_bits"], pe, pixels)
    const_file = write_const_file(directory / "consts.mem", act, spec)
    case = {"spec": asdict(spec), "parameters": params, "seed": seed, "n_frames": n_frames}
    (directory / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    return spec, spec.rtl_parameters(const_file), {CASE_ENV: str(directory / "case.json")}


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
        case_path = os.environ.get(CASE_ENV)
        if not case_path:
            raise RuntimeError(f"{CASE_ENV} is not set: run this testbench through tests/test_rtl_residual_tail.py")
        case = json.loads(Path(case_path).read_text())
        d = dict(case["spec"])
        self.spec = ResidualTailSpec(**d)
        self.params = case["parameters"]
        self.act = activation_from_parameters(self.params)
        self.spec.check_activation(self.act)
        self.case_dir = Path(case_path).parent
        consts = read_const_file(self.case_dir / "consts.mem", self.spec)
        for name in self.spec.const_fields:
            assert np.array_equal(consts[name], getattr(self.act, name)), f"constant file: {name} differs"
        self.n_frames = int(case["n_frames"])
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        self._check_parameters()

        reset = dut.rst if drivers_follow_reset else None
        self.acc_source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_acc"), dut.clk, reset,
                                          byte_lanes=1)
        self.sc_source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_sc"), dut.clk, reset, byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, reset, byte_lanes=1)
        for port in (self.acc_source, self.sc_source, self.sink):
            port.log.setLevel("WARNING")

        self.cycle = 0
        self.in_beats: list[tuple[int, int, int]] = []  # (cycle, acc word, sc word)
        self.join_violations: list[str] = []
        self.out = _StreamWatch(dut, "m_axis")
        self.frames_checked = 0
        cocotb.start_soon(self._monitor())
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()

    def _check_parameters(self):
        s, dut = self.spec, self.dut
        expected = {
            "CHANNELS": s.channels, "PE": s.pe, "ACC_BITS": s.acc_bits, "SC_BITS": s.sc_bits,
            "OUT_BITS": s.out_bits, "D_BITS": s.d_bits, "SHORTCUT_SHIFT": s.shortcut_shift,
            "OUT_SHIFT": s.out_shift, "CF": s.cf, "P_BITS": s.p_bits, "O_BITS": s.o_bits,
            "CONST_W": s.const_lane_bits, "LATENCY": s.latency,
            **{f"{n.upper()}_BITS": getattr(s, f"{n}_bits") for n in s.const_fields},
            "SHORTCUT_PROJ": int(s.shortcut_proj),
        }
        read = {name: _dut_int(dut, name) for name in expected}
        self.log.info("DUT parameters %s (None: not exposed by the simulator)", read)
        for name, value in read.items():
            assert value is None or value == expected[name], f"DUT {name}={value}, the spec says {expected[name]}"
        for port, width in (("s_axis_acc_tdata", s.acc_width), ("s_axis_sc_tdata", s.sc_width),
                            ("m_axis_tdata", s.out_width)):
            got = len(getattr(dut, port))
            assert got == width, f"{port} is {got} bits, expected {width}"

    async def _monitor(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            self.cycle += 1
            if dut.rst.value:
                self.out.pending = None  # a reset may withdraw an offered beat
                continue
            acc_hs = bool(dut.s_axis_acc_tvalid.value and dut.s_axis_acc_tready.value)
            sc_hs = bool(dut.s_axis_sc_tvalid.value and dut.s_axis_sc_tready.value)
            if acc_hs != sc_hs:
                self.join_violations.append(f"cycle {self.cycle}: acc handshake {acc_hs}, sc handshake {sc_hs}")
            if acc_hs and sc_hs:
                self.in_beats.append((self.cycle, int(dut.s_axis_acc_tdata.value), int(dut.s_axis_sc_tdata.value)))
            self.out.sample(self.cycle)

    def clear_records(self):
        self.in_beats.clear()
        self.out.clear()

    def set_idle_backpressure(self, seed: int | None, idle: float = 0.3, backpressure: float = 0.5):
        sources = (self.acc_source, self.sc_source)
        if seed is None:
            for port in sources + (self.sink,):
                port.clear_pause_generator()
                port.pause = False
        else:
            for i, port in enumerate(sources):
                port.set_pause_generator(random_pause(seed + i, idle))
            self.sink.set_pause_generator(random_pause(seed + 2, backpressure))

    async def reset(self, cycles: int = 3):
        """Hold rst high for ``cycles`` clock edges; returns right after the last reset edge, records cleared."""
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.sink.clear()
        self.clear_records()

    def random_inputs(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        proj = self.params.get("proj")
        return random_inputs(self.rng, self.spec, self.params["acc_bound"], n,
                             None if proj is None else int(proj["bound"]))

    async def send(self, acc: np.ndarray, sc: np.ndarray):
        s = self.spec
        for acc_words, sc_words in zip(frame_words(acc, s, s.acc_bits), frame_words(sc, s, s.sc_bits)):
            await self.acc_source.send(AxiStreamFrame(acc_words))
            await self.sc_source.send(AxiStreamFrame(sc_words))

    async def send_tail(self, beats: int):
        """The last ``beats`` beats of one random frame on both inputs (completes an interrupted frame)."""
        s = self.spec
        acc, sc = self.random_inputs(1)
        await self.acc_source.send(AxiStreamFrame(frame_words(acc, s, s.acc_bits)[0][-beats:]))
        await self.sc_source.send(AxiStreamFrame(frame_words(sc, s, s.sc_bits)[0][-beats:]))

    async def wait_sources(self):
        await self.acc_source.wait()
        await self.sc_source.wait()
        await RisingEdge(self.dut.clk)

    async def wait_outputs(self, n_beats: int, timeout_cycles: int):
        start = self.cycle
        while len(self.out.beats) < n_beats:
            assert self.cycle - start < timeout_cycles, (
                f"timeout: {len(self.out.beats)} of {n_beats} output beats after {timeout_cycles} cycles")
            await RisingEdge(self.dut.clk)

    def timeout(self, n_frames: int, slowdown: float = 1.0) -> int:
        return int((n_frames + 2) * self.spec.frame_beats * 2 * slowdown + 4 * self.spec.latency + 200)

    def check_outputs(self, tag: str, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Scoreboard: the recorded input words (as the DUT sampled them) against the recorded output beats."""
        s = self.spec
        n_beats = n_frames * s.frame_beats
        for what, beats in (("input", self.in_beats), ("output", self.out.beats)):
            assert len(beats) == n_beats, f"{tag}: {len(beats)} {what} beats, expected {n_beats} ({n_frames} frames)"
        violations = self.out.violations + self.join_violations
        assert not violations, f"{tag}: stream protocol: " + "; ".join(violations[:5])
        acc = frames_from_words([a for _, a, _ in self.in_beats], s, s.acc_bits)
        sc = frames_from_words([b for _, _, b in self.in_beats], s, s.sc_bits)
        expected = self.act(acc[..., None], sc[..., None])[..., 0]  # (F, C, N, 1): H*W = N
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
        return acc, sc

    def write_result(self, name: str, result: dict):
        (self.case_dir / f"result_{name}.json").write_text(json.dumps(result, indent=2) + "\n")


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, clocks per frame and latency."""
    tb = TB(dut, test_seed=1)
    s = tb.spec
    tb.set_idle_backpressure(None)
    await tb.reset()
    n = max(tb.n_frames, 4)
    acc, sc = tb.random_inputs(n)
    await tb.send(acc, sc)  # all queued: the sources stay valid from the first beat to the last
    await tb.wait_outputs(n * s.frame_beats, timeout_cycles=tb.timeout(n))
    got_acc, got_sc = tb.check_outputs("stream_full_rate", n)
    assert np.array_equal(got_acc, acc) and np.array_equal(got_sc, sc), "the monitored inputs differ from the sent"

    fb = s.frame_beats
    in_cycles = np.array([c for c, _, _ in tb.in_beats])
    out_cycles = np.array([c for c, _ in tb.out.beats])
    in_starts, out_starts = in_cycles[::fb], out_cycles[::fb]
    measured = (in_starts[-1] - in_starts[0]) / (n - 1)
    out_measured = (out_starts[-1] - out_starts[0]) / (n - 1)
    beat_latencies = sorted(set((out_cycles - in_cycles).tolist()))
    analytic = s.cycles_per_frame
    outputs = tb.act(acc[..., None], sc[..., None])
    qmax = (1 << (s.out_bits - 1)) - 1
    clamped = float(np.mean((outputs == qmax) | (outputs == -qmax - 1)))
    tb.log.info("%s: cycles per frame measured %.3f (input), %.3f (output), analytic %.3f; per-beat latency %s, "
                "stated %d; %.1f %% of outputs at the clamp", s.name, measured, out_measured, analytic,
                beat_latencies, s.latency, 100 * clamped)
    tb.write_result("stream_full_rate", {
        "spec": asdict(s), "n_frames": n, "frame_beats": fb,
        "cycles_per_frame_measured": measured, "cycles_per_frame_measured_output": out_measured,
        "cycles_per_frame_analytic": analytic, "latency_measured": beat_latencies, "latency_stated": s.latency,
        "clamped_fraction": clamped, "total_cycles": int(out_cycles[-1] - in_cycles[0] + 1),
        "frames_checked": tb.frames_checked,
    })
    assert abs(measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{measured} cycles per frame, analytic {analytic}"
    assert abs(out_measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{out_measured} cycles per frame at the output"
    assert np.all(np.diff(in_cycles) == 1), "the input was not taken at one beat per clock"
    assert beat_latencies == [s.latency], f"per-beat latencies {beat_latencies}, stated {s.latency}"


@cocotb.test()
async def stream_idle_backpressure(dut):
    """Independent random idle on the two inputs, random backpressure on the output: exact, nothing lost."""
    tb = TB(dut, test_seed=2)
    s = tb.spec
    await tb.reset()
    tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
    n = tb.n_frames
    acc, sc = tb.random_inputs(n)
    await tb.send(acc, sc)
    await tb.wait_outputs(n * s.frame_beats, timeout_cycles=tb.timeout(n, slowdown=8))
    for _ in range(2 * s.latency + 10):  # nothing extra comes out
        await RisingEdge(dut.clk)
    got_acc, got_sc = tb.check_outputs("stream_idle_backpressure", n)
    assert np.array_equal(got_acc, acc) and np.array_equal(got_sc, sc), "the monitored inputs differ from the sent"
    cycles = tb.out.beats[-1][0] - tb.in_beats[0][0] + 1
    tb.log.info("%d frames in %d cycles with idle and backpressure (%.1f per frame)", n, cycles, cycles / n)
    tb.write_result("stream_idle_backpressure", {"n_frames": n, "total_cycles": cycles,
                                                  "frames_checked": tb.frames_checked})
    tb.set_idle_backpressure(None)


def reset_delays(spec: ResidualTailSpec) -> list[int]:
    """Clock offsets (from the first input handshake) for the resets: inside the first frame, at its end, with
    beats in the pipeline and in the output FIFO, inside the second frame."""
    fb, lat = spec.frame_beats, spec.latency
    points = [0, 1, 2, lat - 1, lat, fb // 2, fb - 1, fb, fb + 1, fb + lat // 2, fb + lat + 1, fb + fb // 2 + 1]
    return sorted(set(p for p in points if p >= 0))


@cocotb.test()
async def reset_mid_frame(dut):
    """Reset in the middle of a frame, then correct operation.

    The sources are not tied to the reset, so the inputs may be valid at the reset edge and the stream goes on
    right after it: the unit must start a fresh frame (channel fold 0) with the first beat taken after the reset.
    Alternately with idle and backpressure.
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
        while not tb.in_beats:
            await RisingEdge(dut.clk)
        for _ in range(delay):
            await RisingEdge(dut.clk)
        await tb.reset(cycles=1)  # a single-cycle reset must be enough
        await RisingEdge(dut.clk)  # values seen at this edge are the state the reset left
        assert not dut.m_axis_tvalid.value, f"{tag}: m_axis_tvalid high right after reset"
        # the rest of the interrupted stream is the start of new frames: complete the last one, then more
        await tb.wait_sources()
        pad = (-len(tb.in_beats)) % s.frame_beats
        if pad:
            await tb.send_tail(pad)
        more = max(2, tb.n_frames // 4) if delay == delays[-1] else 2
        await tb.send(*tb.random_inputs(more))
        await tb.wait_sources()
        assert len(tb.in_beats) % s.frame_beats == 0, f"{tag}: {len(tb.in_beats)} input beats after the reset"
        total = len(tb.in_beats) // s.frame_beats
        await tb.wait_outputs(total * s.frame_beats, timeout_cycles=tb.timeout(total, slowdown=8))
        for _ in range(2 * s.latency + 10):  # nothing extra comes out
            await RisingEdge(dut.clk)
        tb.check_outputs(tag, total)
        checked += total
    tb.log.info("reset at %d offsets, %d frames after the resets exact", len(delays), checked)
    tb.write_result("reset_mid_frame", {"delays": delays, "frames_checked": checked})
    tb.set_idle_backpressure(None)
