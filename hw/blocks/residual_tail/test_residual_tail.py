"""Testbench of the residual block tail with RPReLU (``residual_tail.sv``) against the golden function
``instabnn.contract.layers.ResidualActivation`` (RPReLU, shift or 1x1-projection shortcut): spec and files,
lint, illegal parameters, synthesis, cocotb.

Each simulation case draws random float parameters for a block tail, fixes them with the contract's constructor
(:func:`instabnn.contract.layers.residual_activation`), writes the constant file (:func:`prepare_case`), builds
the unit with Verilator (cocotb's Python runner) and runs the ``@cocotb.test()``s of this file in one simulation (the
case reaches them through :func:`~instabnn.hw.blocks.common.axis_tb.run_bench`). The testbench rebuilds the same
``ResidualActivation`` from the stored float parameters (the constructor is deterministic) and checks it against
the constant file. All output goes to pytest's tmp directories. The default tier runs three foldings with tens of
frames (two shift-mode shortcuts and one 1x1 projection, ``SHORTCUT_PROJ = 1``); ``-m slow`` sweeps more (random
C, PE, N, output bits, identity or pooled shortcut, plus projection foldings) with over 1000 frames in all.

cocotb tests (each starts with a reset):

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
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pytest

import cocotb

from instabnn.hw.blocks.common.axis_tb import (CYCLE_TOLERANCE, AxisHarness, check_dut_parameters, idle_backpressure,
                                               read_case, reset_mid_stream, run_full_rate_bench, write_result)
from instabnn.hw.blocks.residual_tail.spec import (CONST_FIELDS, PROJ_CONST_FIELDS, ResidualTailSpec, const_words,
                                                   frame_words, frames_from_words, read_const_file, write_const_file)
from instabnn.contract.fixed_point import signed_bits
from instabnn.contract.layers import ResidualActivation, residual_activation
from instabnn.hw.blocks.rtl_library import rtl_paths
from instabnn.hw.blocks.common.rtl_runner import verilator_lint, yosys_synth


# ----------------------------------------------------------------------------------------------------------------
# cocotb testbench (runs in the simulator)
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
    """Random parameters for the folding; writes the constant file into ``directory``.
    Returns ``(spec, rtl_parameters, case)`` for the runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    params = random_parameters(rng, channels, pixels, out_bits, pooled, proj)
    act = activation_from_parameters(params)
    spec = ResidualTailSpec.from_activation(act, params["acc_bound"], params["sc_bits"], pe, pixels)
    const_file = write_const_file(directory / "consts.mem", act, spec)
    case = {"spec": asdict(spec), "parameters": params, "seed": seed, "n_frames": n_frames}
    return spec, spec.rtl_parameters(const_file), case


# ----------------------------------------------------------------------------------------------------------------
# Testbench
# ----------------------------------------------------------------------------------------------------------------


class TB(AxisHarness):
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        case, self.case_dir = read_case()
        d = dict(case["spec"])
        self.spec = ResidualTailSpec(**d)
        self.params = case["parameters"]
        self.act = activation_from_parameters(self.params)
        self.spec.check_activation(self.act)
        consts = read_const_file(self.case_dir / "consts.mem", self.spec)
        for name in self.spec.const_fields:
            assert np.array_equal(consts[name], getattr(self.act, name)), f"constant file: {name} differs"
        self.n_frames = int(case["n_frames"])
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        super().__init__(dut, ["s_axis_acc", "s_axis_sc"], ["m_axis"], drivers_follow_reset, check_held=True,
                         joined_sources=True)
        self.log = dut._log
        self._check_parameters()
        self.frames_checked = 0

    @property
    def in_beats(self) -> list[tuple[int, int, int]]:
        """``(cycle, acc word, sc word)`` of the edges at which both inputs were taken."""
        sc_at = dict(self.beats("s_axis_sc"))
        return [(c, acc, sc_at[c]) for c, acc in self.beats("s_axis_acc") if c in sc_at]

    def _check_parameters(self):
        s = self.spec
        expected = {
            "CHANNELS": s.channels, "PE": s.pe, "ACC_BITS": s.acc_bits, "SC_BITS": s.sc_bits,
            "OUT_BITS": s.out_bits, "D_BITS": s.d_bits, "SHORTCUT_SHIFT": s.shortcut_shift,
            "OUT_SHIFT": s.out_shift, "CF": s.cf, "P_BITS": s.p_bits, "O_BITS": s.o_bits,
            "CONST_W": s.const_lane_bits, "LATENCY": s.latency,
            **{f"{n.upper()}_BITS": getattr(s, f"{n}_bits") for n in s.const_fields},
            "SHORTCUT_PROJ": int(s.shortcut_proj),
        }
        check_dut_parameters(self.dut, expected, {"s_axis_acc_tdata": s.acc_width, "s_axis_sc_tdata": s.sc_width,
                                                  "m_axis_tdata": s.out_width})

    def random_inputs(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        proj = self.params.get("proj")
        return random_inputs(self.rng, self.spec, self.params["acc_bound"], n,
                             None if proj is None else int(proj["bound"]))

    async def send_frames(self, acc: np.ndarray, sc: np.ndarray):
        s = self.spec
        for acc_words, sc_words in zip(frame_words(acc, s, s.acc_bits), frame_words(sc, s, s.sc_bits)):
            await self.send("s_axis_acc", acc_words)
            await self.send("s_axis_sc", sc_words)

    async def send_tail(self, beats: int):
        """The last ``beats`` beats of one random frame on both inputs (completes an interrupted frame)."""
        s = self.spec
        acc, sc = self.random_inputs(1)
        await self.send("s_axis_acc", frame_words(acc, s, s.acc_bits)[0][-beats:])
        await self.send("s_axis_sc", frame_words(sc, s, s.sc_bits)[0][-beats:])

    def timeout(self, n_frames: int, slowdown: float = 1.0) -> int:
        return int((n_frames + 2) * self.spec.frame_beats * 2 * slowdown + 4 * self.spec.latency + 200)

    async def wait_outputs(self, tag: str, n_frames: int):
        """Until the outputs of ``n_frames`` frames are out (with idle and backpressure), then long enough that
        anything extra would be seen."""
        timeout = self.timeout(n_frames, slowdown=8)
        await self.wait_beats("m_axis", n_frames * self.spec.frame_beats, timeout_cycles=timeout, what=f"{tag}: ")
        await self.idle_cycles(2 * self.spec.latency + 10)  # nothing extra comes out

    def check_outputs(self, tag: str, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Scoreboard: the recorded input words (as the DUT sampled them) against the recorded output beats."""
        s = self.spec
        n_beats = n_frames * s.frame_beats
        for what, beats in (("input", self.in_beats), ("output", self.beats("m_axis"))):
            assert len(beats) == n_beats, f"{tag}: {len(beats)} {what} beats, expected {n_beats} ({n_frames} frames)"
        violations = self.protocol_violations
        assert not violations, f"{tag}: stream protocol: " + "; ".join(violations[:5])
        acc = frames_from_words([a for _, a, _ in self.in_beats], s, s.acc_bits)
        sc = frames_from_words([b for _, _, b in self.in_beats], s, s.sc_bits)
        expected = self.act(acc[..., None], sc[..., None])[..., 0]  # (F, C, N, 1): H*W = N
        got = frames_from_words([w for _, w in self.beats("m_axis")], s, s.out_bits)
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


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, clocks per frame and latency."""
    tb = TB(dut, test_seed=1)
    s = tb.spec
    tb.set_idle_backpressure(None)
    await tb.reset()
    n = max(tb.n_frames, 4)
    acc, sc = tb.random_inputs(n)
    await tb.send_frames(acc, sc)  # all queued: the sources stay valid from the first beat to the last
    await tb.wait_beats("m_axis", n * s.frame_beats, timeout_cycles=tb.timeout(n))
    got_acc, got_sc = tb.check_outputs("stream_full_rate", n)
    assert np.array_equal(got_acc, acc) and np.array_equal(got_sc, sc), "the monitored inputs differ from the sent"

    fb = s.frame_beats
    in_cycles = np.array([c for c, _, _ in tb.in_beats])
    out_cycles = np.array([c for c, _ in tb.beats("m_axis")])
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
    write_result(tb.case_dir, "stream_full_rate", {
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
    await idle_backpressure(tb, int(tb.rng.integers(1 << 30)), tb.n_frames, random_frames=tb.random_inputs,
                            send_frames=lambda inputs: tb.send_frames(*inputs), wait_outputs=tb.wait_outputs,
                            check_outputs=tb.check_outputs, result_dir=tb.case_dir, count_frames=True)


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
    checked = await reset_mid_stream(tb, "reset_mid_frame", delays, frame_beats=s.frame_beats,
                                     input_beats=lambda: len(tb.in_beats),
                                     send_frames=lambda n: tb.send_frames(*tb.random_inputs(n)),
                                     wait_outputs=tb.wait_outputs, frames_after_last=max(2, tb.n_frames // 4))
    write_result(tb.case_dir, "reset_mid_frame", {"delays": delays, "frames_checked": checked})


# ----------------------------------------------------------------------------------------------------------------
# pytest runner (builds the block, runs the testbench above)
# ----------------------------------------------------------------------------------------------------------------

SOURCES = rtl_paths("residual_tail")
TOPLEVEL = "residual_tail"


@dataclass(frozen=True)
class Folding:
    """The test's choice of folding; the constants (and so the full spec) are drawn per case."""

    channels: int
    pe: int
    pixels: int
    out_bits: int = 8
    pooled: bool = False  # shortcut = 2x2 average-pool sum (out_bits + 2 bits) instead of identity
    proj: bool = False  # shortcut = 1x1 int8 projection (SHORTCUT_PROJ = 1); pooled is ignored

    @property
    def name(self) -> str:
        return (f"c{self.channels}_pe{self.pe}_n{self.pixels}_b{self.out_bits}{'_pool' if self.pooled else ''}"
                f"{'_proj' if self.proj else ''}")


FAST_FOLDINGS = [
    Folding(16, 4, 9, 8, pooled=False),
    Folding(6, 3, 10, 6, pooled=True),
    Folding(8, 4, 6, 8, proj=True),
]
FAST_FRAMES = 16


def _sweep_foldings(n: int = 6, seed: int = 7) -> list[Folding]:
    """Random foldings for the slow sweep (seeded, so the list is stable): C, PE | C, N, output bits 4..8."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pe = int(rng.choice([1, 2, 4, 8, 16]))
        channels = pe * int(rng.integers(1, 5))
        pixels = int(rng.integers(2, 26))
        out.append(Folding(channels, pe, pixels, int(rng.integers(4, 9)), pooled=bool(i % 2)))
    return out


PROJ_SLOW_FOLDINGS = [Folding(32, 8, 7, 6, proj=True), Folding(12, 2, 5, 8, proj=True),
                      Folding(64, 16, 12, 8, proj=True)]
SLOW_FOLDINGS = _sweep_foldings() + [Folding(64, 16, 16, 8, pooled=False)] + PROJ_SLOW_FOLDINGS
SLOW_FRAMES = 100

LINT_FOLDINGS = FAST_FOLDINGS + [Folding(1, 1, 1, 2), Folding(64, 16, 4, 8, pooled=True),
                                 Folding(1, 1, 1, 2, proj=True), Folding(64, 16, 4, 8, proj=True)]

def _seed(folding: Folding) -> int:
    return zlib.crc32(folding.name.encode())


def _prepare(folding: Folding, seed: int, n_frames: int, directory: Path):
    return prepare_case(folding.channels, folding.pe, folding.pixels, folding.out_bits, folding.pooled, seed,
                        n_frames, directory, proj=folding.proj)


def run_residual_tail(folding: Folding, n_frames: int, directory: Path, seed: int | None = None) -> dict:
    """Build and simulate one folding; returns the full-rate measurements (plus the frames checked by all tests)."""
    seed = _seed(folding) if seed is None else seed
    case_dir = directory / "case"
    spec, parameters, case = _prepare(folding, seed, n_frames, case_dir)
    result = run_full_rate_bench(__file__, case, sources=SOURCES, toplevel=TOPLEVEL, parameters=parameters,
                                 directory=case_dir, seed=seed)
    result["spec_name"] = spec.name
    (directory / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _check_measurements(result: dict):
    analytic = result["cycles_per_frame_analytic"]
    assert analytic == result["frame_beats"]
    assert abs(result["cycles_per_frame_measured"] - analytic) <= 0.02 * analytic
    assert abs(result["cycles_per_frame_measured_output"] - analytic) <= 0.02 * analytic
    assert result["latency_measured"] == [result["latency_stated"]]
    # realistic constants: the outputs are neither all clamped nor all inside the range
    assert 0.0 < result["clamped_fraction"] < 0.9


@pytest.mark.parametrize("folding", FAST_FOLDINGS, ids=lambda f: f.name)
def test_residual_tail_sim(folding, verilator_path, tmp_path):
    result = run_residual_tail(folding, FAST_FRAMES, tmp_path)
    _check_measurements(result)


@pytest.mark.slow
@pytest.mark.parametrize("folding", SLOW_FOLDINGS, ids=lambda f: f.name)
def test_residual_tail_sim_sweep(folding, verilator_path, tmp_path):
    result = run_residual_tail(folding, SLOW_FRAMES, tmp_path)
    _check_measurements(result)
    assert result["frames_checked_all_tests"] >= 2 * SLOW_FRAMES


def test_sweep_is_wide_enough():
    """The slow sweep covers >= 5 distinct foldings, all shortcut kinds (>= 2 projection foldings), >= 1000
    frames."""
    assert len(SLOW_FOLDINGS) >= 5 and len(SLOW_FOLDINGS) * 2 * SLOW_FRAMES >= 1000
    assert {f.pooled for f in SLOW_FOLDINGS if not f.proj} == {False, True}
    assert sum(f.proj for f in SLOW_FOLDINGS) >= 2 and any(f.proj for f in FAST_FOLDINGS)
    assert len({(f.channels, f.pe, f.pixels) for f in SLOW_FOLDINGS}) == len(SLOW_FOLDINGS)


def _lint(folding: Folding, verilator_path: Path, **overrides) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        _, params, _ = _prepare(folding, 0, 1, Path(tmp))
        params.update(overrides)
        return verilator_lint(SOURCES, TOPLEVEL, params, verilator_path)


@pytest.mark.parametrize("folding", LINT_FOLDINGS, ids=lambda f: f.name)
def test_residual_tail_lint_clean(folding, verilator_path):
    proc = _lint(folding, verilator_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "%Warning" not in output and "%Error" not in output, output


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"PE": 3}, "PE (3) must divide CHANNELS (16)"),
        ({"PE": 0}, "CHANNELS and PE must be >= 1"),
        ({"ACC_BITS": 1}, "ACC_BITS (1), SC_BITS"),
        ({"OUT_BITS": 33}, "must be in 2 .. 32"),
        ({"SLOPE_BITS": 0}, "SLOPE_BITS must be in 1 .. 48"),
        ({"SHORTCUT_SHIFT": -1}, "SHORTCUT_SHIFT (-1) must be >= 0"),
        ({"OUT_SHIFT": 0}, "OUT_SHIFT (0) must be >= 1"),
        ({"D_BITS": 65}, "D_BITS (65) must be in"),
        ({"D_BITS": 4}, "D_BITS (4) must be in"),
        ({"CONST_FILE": '""'}, "CONST_FILE must name"),
        ({"SHORTCUT_PROJ": 2}, "SHORTCUT_PROJ (2) must be 0 or 1"),
        ({"SHORTCUT_PROJ": 1, "SHORTCUT_MULT_BITS": 49}, "SHORTCUT_MULT_BITS (49) must be in 1 .. 48"),
        ({"SHORTCUT_PROJ": 1, "D_BITS": 65}, "D_BITS (65) must be in 2 .. 64"),
    ],
)
def test_residual_tail_rejects_illegal_parameters(overrides, message, verilator_path):
    proc = _lint(FAST_FOLDINGS[0], verilator_path, **overrides)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_spec_matches_the_reference_and_the_files(tmp_path):
    """The spec's widths are the golden object's; the constant file and the stream packing round-trip; Y and D
    at the worst-case inputs fit D_BITS, and the slope product's shifted value fits P_BITS."""
    from instabnn.contract.fixed_point import signed_bits
    from instabnn.contract.layers import SLOPE_FRAC

    rng = np.random.default_rng(11)
    for folding in FAST_FOLDINGS + SLOW_FOLDINGS:
        p = random_parameters(rng, folding.channels, folding.pixels, folding.out_bits, folding.pooled, folding.proj)
        act = activation_from_parameters(p)
        spec = ResidualTailSpec.from_activation(act, p["acc_bound"], p["sc_bits"], folding.pe, folding.pixels)
        assert spec.d_bits == act.pre_activation_bits(p["acc_bound"], 1 << (p["sc_bits"] - 1))
        assert spec.out_shift == act.frac + act.out_exp >= 1
        if folding.proj:
            assert act.shortcut == "proj" and spec.shortcut_proj and spec.shortcut_shift == 0
            assert spec.const_fields == PROJ_CONST_FIELDS
            assert spec.sc_bits == signed_bits(-p["proj"]["bound"], p["proj"]["bound"])
            assert spec.const_lane_bits == sum(spec.__dict__[f"{n}_bits"] for n in PROJ_CONST_FIELDS)
            params = spec.rtl_parameters("x.mem")
            assert params["SHORTCUT_PROJ"] == 1 and params["SHORTCUT_MULT_BITS"] == spec.shortcut_mult_bits
        else:
            assert act.shortcut == "shift" and spec.shortcut_shift == act.shortcut_shift
            assert spec.const_fields == CONST_FIELDS and "SHORTCUT_PROJ" not in spec.rtl_parameters("x.mem")
        for name in spec.const_fields:
            v = getattr(act, name)
            assert spec.__dict__[f"{name}_bits"] == signed_bits(int(v.min()), int(v.max()))
        path = write_const_file(tmp_path / f"{spec.name}.mem", act, spec)
        consts = read_const_file(path, spec)
        assert set(consts) == set(spec.const_fields)
        assert all(np.array_equal(consts[n], getattr(act, n)) for n in spec.const_fields)
        acc, sc = random_inputs(rng, spec, p["acc_bound"], 3, p["proj"]["bound"] if folding.proj else None)
        for x, bits in ((acc, spec.acc_bits), (sc, spec.sc_bits)):
            words = frame_words(x, spec, bits)
            assert len(words) == 3 and all(len(w) == spec.frame_beats for w in words)
            assert np.array_equal(frames_from_words([w for f in words for w in f], spec, bits), x)
        # worst-case corners of Y and D per channel
        k, s_lo, s_hi = p["acc_bound"], -(1 << (spec.sc_bits - 1)), (1 << (spec.sc_bits - 1)) - 1
        corners_acc = np.array([-k, k])[:, None, None, None] * np.ones((1, spec.channels, 1, 1), np.int64)
        for sv in (s_lo, s_hi):
            y = act.pre_activation(corners_acc, np.full_like(corners_acc, sv))
            d = y - act.gamma[None, :, None, None]
            lim = 1 << (spec.d_bits - 1)
            assert -lim <= y.min() and y.max() < lim and -lim <= d.min() and d.max() < lim
            pn = (act.slope[None, :, None, None] * d) >> SLOPE_FRAC
            assert -(1 << (spec.p_bits - 1)) <= pn.min() and pn.max() < (1 << (spec.p_bits - 1))
        assert spec.cycles_per_frame == spec.pixels * spec.channels / spec.pe and spec.latency == 8


def test_spec_refuses_mismatched_constants():

    rng = np.random.default_rng(3)
    p = random_parameters(rng, 8, 4, 8, False)
    act = activation_from_parameters(p)
    spec = ResidualTailSpec.from_activation(act, p["acc_bound"], p["sc_bits"], 4, 4)
    with pytest.raises(ValueError, match="PE"):
        ResidualTailSpec.from_activation(act, p["acc_bound"], p["sc_bits"], 3, 4)
    with pytest.raises(ValueError, match="bits"):
        const_words(act, replace(spec, mult_bits=2))
    with pytest.raises(ValueError, match="out_shift"):
        const_words(act, replace(spec, out_shift=spec.out_shift + 1))
    # a proj activation needs a proj unit and the other way round; SHORTCUT_MULT must fit its field
    pp = random_parameters(rng, 8, 4, 8, False, proj=True)
    pact = activation_from_parameters(pp)
    pspec = ResidualTailSpec.from_activation(pact, pp["acc_bound"], pp["sc_bits"], 4, 4)
    with pytest.raises(ValueError, match="shortcut"):
        const_words(pact, replace(pspec, shortcut_proj=False, shortcut_mult_bits=0, shortcut_shift=0))
    with pytest.raises(ValueError, match="shortcut"):
        const_words(act, replace(spec, shortcut_proj=True, shortcut_mult_bits=16))
    with pytest.raises(ValueError, match="shortcut_mult needs"):
        const_words(pact, replace(pspec, shortcut_mult_bits=2))
    with pytest.raises(ValueError, match="shortcut_mult_bits must be in 1 .. 48"):
        replace(pspec, shortcut_mult_bits=0)


needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")


@needs_yosys
def test_residual_tail_yosys_synth(tmp_path):
    """Yosys reads and synthesises the RTL (generic synth, small folding; the ROM from the generated file)."""
    _, parameters, _ = _prepare(Folding(4, 2, 4, 6, pooled=True), 0, 1, tmp_path)
    log = yosys_synth(SOURCES, TOPLEVEL, parameters, tmp_path / "synth")
    assert "Number of cells" in log


@needs_yosys
def test_residual_tail_yosys_synth_proj(tmp_path):
    """The same in proj mode (SHORTCUT_PROJ = 1: the projection multiplier and the sixth constant field)."""
    _, parameters, _ = _prepare(Folding(4, 2, 4, 6, proj=True), 0, 1, tmp_path)
    assert parameters["SHORTCUT_PROJ"] == 1
    log = yosys_synth(SOURCES, TOPLEVEL, parameters, tmp_path / "synth")
    assert "Number of cells" in log


@pytest.mark.slow
@needs_yosys
def test_residual_tail_synth_xilinx(tmp_path):
    """synth_xilinx (xc7) of C = 64, PE = 16: the multipliers map to DSP slices (one per lane for MULT * acc, at
    least one for SLOPE * D), the rest is a few thousand LUTs at most."""
    from instabnn.hw.synth import parse_stat

    spec, parameters, _ = _prepare(Folding(64, 16, 64, 8), 1234, 1, tmp_path)
    log = yosys_synth(SOURCES, TOPLEVEL, parameters, tmp_path / "synth", xilinx=True)
    res = parse_stat(log)
    (tmp_path / "synth.json").write_text(json.dumps({"spec": spec.name, **res}, indent=2) + "\n")
    assert 2 * spec.pe <= res["dsp"] <= 4 * spec.pe, res
    assert 0 < res["lut"] < 4000 and res["ff"] > 0, res
