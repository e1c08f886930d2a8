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

The test bodies, the scoreboard and the harness are :mod:`~instabnn.hw.blocks.common.pool_bench`, shared by the
pooling benches (``pool``, ``maxpool_bits``); this file gives the spec, the parameters, the stimulus and the packing.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import cocotb

from instabnn.hw.blocks.common import pool_bench
from instabnn.hw.blocks.common.axis_tb import run_full_rate_bench
from instabnn.hw.blocks.common.pool_bench import PoolBench, check_measurements
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


class TB(PoolBench):
    def spec_from_case(self, case: dict) -> MaxPoolBitsSpec:
        return MaxPoolBitsSpec(**case["spec"])

    def expected_parameters(self) -> dict:
        s = self.spec
        return {"CHANNELS": s.channels, "PE": s.pe, "HEIGHT": s.height, "WIDTH": s.width, "K": s.k, "CF": s.cf,
                "OUT_HEIGHT": s.out_height, "OUT_WIDTH": s.out_width_px, "LATENCY": s.latency}

    def random_inputs(self, n: int) -> np.ndarray:
        return random_inputs(self.rng, self.spec, n)

    def frame_words(self, a: np.ndarray) -> list[list[int]]:
        return bit_frame_words(a, self.spec.channels, self.spec.pe)

    def input_frames(self, words: list[int]) -> np.ndarray:
        s = self.spec
        return bit_frames_from_words(words, (s.channels, s.height, s.width), s.pe)

    def output_frames(self, words: list[int]) -> np.ndarray:
        return bit_frames_from_words(words, self.spec.out_shape, self.spec.pe)


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, clocks per frame and latency."""
    await pool_bench.stream_full_rate(TB(dut, test_seed=1))


@cocotb.test()
async def stream_idle_backpressure(dut):
    """Random idle on the input, random backpressure on the output: exact, nothing lost."""
    await pool_bench.stream_idle_backpressure(TB(dut, test_seed=2))


@cocotb.test()
async def reset_mid_frame(dut):
    """Reset in the middle of a frame (the source drives through it), then exact operation."""
    await pool_bench.reset_mid_frame(TB(dut, test_seed=3, drivers_follow_reset=False))


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


@pytest.mark.parametrize("spec", FAST_SPECS, ids=lambda s: s.name)
def test_maxpool_bits_sim(spec, verilator_path, tmp_path):
    check_measurements(run_maxpool(spec, FAST_FRAMES, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("spec", SLOW_SPECS, ids=lambda s: s.name)
def test_maxpool_bits_sim_sweep(spec, verilator_path, tmp_path):
    result = run_maxpool(spec, SLOW_FRAMES, tmp_path)
    check_measurements(result)
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
