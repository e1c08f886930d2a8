"""Testbench of the bit max-pool (``maxpool_bits.sv``: OR of K x K windows at stride K of a bit frame, the pool of
a plain W1A1 layer; golden: the pool of :class:`instabnn.contract.network.ChainStage`,
:func:`~instabnn.hw.blocks.maxpool_bits.spec.maxpool_bits`): spec and packing, lint, illegal parameters, cocotb.

Each simulation case builds the unit with Verilator (cocotb's Python runner) for one
:class:`~instabnn.hw.blocks.maxpool_bits.spec.MaxPoolBitsSpec` and runs the ``@cocotb.test()``s of this file in one
simulation (the case, :func:`make_case`, reaches them through :func:`~instabnn.hw.blocks.common.axis_tb.run_bench`),
comparing every output with the golden function exactly (cropping sizes that are not multiples of K). The default
tier runs two foldings with tens of frames; ``-m slow`` sweeps six more (random C, PE, H, W, K, odd sizes included)
with over 1000 frames in all.

cocotb tests (each starts with a reset):

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

import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import cocotb
from cocotb.triggers import RisingEdge

from instabnn.hw.blocks.common.axis_tb import (CYCLE_TOLERANCE, AxisHarness, dut_int, read_case, reset_mid_stream,
                                               run_full_rate_bench, write_result)
from instabnn.hw.blocks.maxpool_bits.spec import MaxPoolBitsSpec, bit_frame_words, bit_frames_from_words, maxpool_bits
from instabnn.contract.network import ChainStage
from instabnn.hw.blocks.rtl_library import rtl_paths
from instabnn.hw.blocks.common.rtl_runner import verilator_lint


# ----------------------------------------------------------------------------------------------------------------
# cocotb testbench (runs in the simulator)
# ----------------------------------------------------------------------------------------------------------------

def make_case(spec: MaxPoolBitsSpec, seed: int, n_frames: int) -> dict:
    """The case the cocotb side reads (:func:`~instabnn.hw.blocks.common.axis_tb.read_case`)."""
    return {"spec": asdict(spec), "seed": seed, "n_frames": n_frames}


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


class TB:
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        self.dut = dut
        self.log = dut._log
        case, self.case_dir = read_case()
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
        self.axis = AxisHarness(dut, ["s_axis"], ["m_axis"], drivers_follow_reset=drivers_follow_reset,
                                check_held=True)
        self.frames_checked = 0

    @property
    def in_beats(self):
        return self.axis.beats("s_axis")

    @property
    def out_beats(self):
        return self.axis.beats("m_axis")

    async def reset(self, cycles: int = 3):
        await self.axis.reset(cycles)

    def set_idle_backpressure(self, seed: int | None):
        self.axis.set_idle_backpressure(seed)

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
        violations = self.axis.protocol_violations
        assert not violations, f"{tag}: stream protocol: " + "; ".join(violations[:5])
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
    write_result(tb.case_dir, "stream_full_rate", {
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
    write_result(tb.case_dir, "stream_idle_backpressure", {"n_frames": n, "frames_checked": tb.frames_checked})
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
    delays = reset_delays(tb.spec)
    checked = await reset_mid_stream(tb, "reset_mid_frame", delays, frame_beats=tb.spec.frame_beats,
                                     input_beats=lambda: len(tb.in_beats),
                                     send_frames=lambda n: tb.send(tb.random_inputs(n)),
                                     wait_outputs=lambda tag, n: tb.wait_outputs(n, slowdown=8),
                                     frames_after_last=max(2, tb.n_frames // 4))
    write_result(tb.case_dir, "reset_mid_frame", {"delays": delays, "frames_checked": checked})


# ----------------------------------------------------------------------------------------------------------------
# pytest runner (builds the block, runs the testbench above)
# ----------------------------------------------------------------------------------------------------------------

SOURCES = rtl_paths("maxpool_bits")

FAST_SPECS = [
    MaxPoolBitsSpec(channels=8, pe=4, height=4, width=6, k=2),
    MaxPoolBitsSpec(channels=3, pe=3, height=7, width=5, k=3),  # CF = 1 (forwarding), cropped row and columns
]
FAST_FRAMES = 12


def _sweep_specs(n: int = 5, seed: int = 11) -> list[MaxPoolBitsSpec]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pe = int(rng.choice([1, 2, 4, 8]))
        k = int(rng.choice([2, 2, 3, 4]))
        out.append(MaxPoolBitsSpec(channels=pe * int(rng.integers(1, 4)), pe=pe, height=int(rng.integers(k, 3 * k + 2)),
                                   width=int(rng.integers(k, 3 * k + 2)), k=k))
    return out


SLOW_SPECS = _sweep_specs() + [MaxPoolBitsSpec(channels=64, pe=16, height=10, width=10, k=2)]
SLOW_FRAMES = 100

LINT_SPECS = FAST_SPECS + [
    MaxPoolBitsSpec(channels=1, pe=1, height=2, width=2, k=2),
    MaxPoolBitsSpec(channels=64, pe=16, height=28, width=28, k=2),
    MaxPoolBitsSpec(channels=128, pe=32, height=5, width=5, k=2),
    MaxPoolBitsSpec(channels=8, pe=8, height=8, width=9, k=8),
]


def run_maxpool(spec: MaxPoolBitsSpec, n_frames: int, directory: Path) -> dict:
    seed = zlib.crc32(spec.name.encode())
    case_dir = directory / "case"
    return run_full_rate_bench(__file__, make_case(spec, seed, n_frames), sources=SOURCES, toplevel="maxpool_bits",
                               parameters=spec.rtl_parameters(), directory=case_dir, seed=seed)


def _check_measurements(result: dict):
    analytic = result["cycles_per_frame_analytic"]
    assert analytic == result["frame_beats"]
    assert abs(result["cycles_per_frame_measured"] - analytic) <= 0.02 * analytic
    assert abs(result["cycles_per_frame_measured_output"] - analytic) <= 0.02 * analytic
    assert result["latency_measured"] == [result["latency_stated"]]


@pytest.mark.parametrize("spec", FAST_SPECS, ids=lambda s: s.name)
def test_maxpool_bits_sim(spec, verilator_path, tmp_path):
    _check_measurements(run_maxpool(spec, FAST_FRAMES, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("spec", SLOW_SPECS, ids=lambda s: s.name)
def test_maxpool_bits_sim_sweep(spec, verilator_path, tmp_path):
    result = run_maxpool(spec, SLOW_FRAMES, tmp_path)
    _check_measurements(result)
    assert result["frames_checked_all_tests"] >= 2 * SLOW_FRAMES


def test_sweep_is_wide_enough():
    """>= 5 distinct foldings, K in {2, 3+}, odd (cropped) sizes, >= 1000 frames over the sweep."""
    assert len(set(SLOW_SPECS)) == len(SLOW_SPECS) >= 5
    assert len(SLOW_SPECS) * 2 * SLOW_FRAMES >= 1000
    assert {s.k for s in SLOW_SPECS} >= {2, 3} or {s.k for s in SLOW_SPECS} >= {2, 4}
    assert any(s.height % s.k or s.width % s.k for s in SLOW_SPECS)


@pytest.mark.parametrize("spec", LINT_SPECS, ids=lambda s: s.name)
def test_maxpool_bits_lint_clean(spec, verilator_path):
    proc = verilator_lint(SOURCES, "maxpool_bits", spec.rtl_parameters(), verilator_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "%Warning" not in output and "%Error" not in output, output


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"PE": 3}, "PE (3) must divide CHANNELS (8)"),
        ({"PE": 0}, "CHANNELS and PE must be >= 1"),
        ({"K": 1}, "K (1) must be in 2 .. 8"),
        ({"K": 9}, "K (9) must be in 2 .. 8"),
        ({"WIDTH": 1}, "HEIGHT (4) and WIDTH (1) must be >= K (2)"),
        ({"HEIGHT": 0}, "must be >= K"),
    ],
)
def test_maxpool_bits_rejects_illegal_parameters(overrides, message, verilator_path):
    params = {**FAST_SPECS[0].rtl_parameters(), **overrides}
    proc = verilator_lint(SOURCES, "maxpool_bits", params, verilator_path)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_spec_matches_chain_stage_and_packing():
    """The spec's golden function is ChainStage's pool (crop included); the packing round-trips; the completing
    beats are the last beats of the windows."""
    rng = np.random.default_rng(4)
    for spec in FAST_SPECS + SLOW_SPECS + LINT_SPECS:
        a = (rng.random((3, spec.channels, spec.height, spec.width)) < 0.3).astype(np.int64)
        # one channel at a time through a ChainStage whose 1x1 conv with weight +1 gives acc = +-1 and threshold 0
        # returns the bit itself: its pool (crop included) is the reference
        stage = ChainStage("s", np.ones((1, 1, 1, 1), np.uint8), 1, np.zeros(1, np.int64), spec.k)
        pooled = np.concatenate([stage(a[:, c:c + 1], integer_input=False) for c in range(spec.channels)], axis=1)
        assert np.array_equal(pooled, spec.reference(a))
        assert np.array_equal(spec.reference(a), maxpool_bits(a, spec.k))
        assert spec.reference(a).shape[1:] == spec.out_shape
        words = bit_frame_words(a, spec.channels, spec.pe)
        assert all(len(w) == spec.frame_beats for w in words)
        flat = [w for f in words for w in f]
        assert np.array_equal(bit_frames_from_words(flat, (spec.channels, spec.height, spec.width), spec.pe), a)
        comp = spec.completing_beats()
        assert len(comp) == spec.out_frame_beats and np.all(np.diff(comp) > 0)
        assert spec.cycles_per_frame == spec.height * spec.width * spec.channels / spec.pe


def test_spec_refuses_illegal_foldings():
    with pytest.raises(ValueError, match="PE"):
        MaxPoolBitsSpec(channels=8, pe=3, height=4, width=4)
    with pytest.raises(ValueError, match="k must be"):
        MaxPoolBitsSpec(channels=8, pe=4, height=4, width=4, k=1)
    with pytest.raises(ValueError, match=">= k"):
        MaxPoolBitsSpec(channels=8, pe=4, height=4, width=3, k=4)
