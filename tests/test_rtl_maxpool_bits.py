"""RTL tests of the bit max-pool (``hw/rtl/maxpool_bits.sv``: OR of K x K windows at stride K of a bit frame, the
pool of a plain W1A1 layer): spec and packing, lint, illegal parameters, cocotb.

Each simulation case builds the unit with Verilator (cocotb's Python runner) for one
:class:`~instabnn.hw.chain_files.MaxPoolBitsSpec` and runs the cocotb tests of ``instabnn.sim.test_maxpool_bits``
(full rate with the cycle and latency checks, random idle and backpressure, resets inside frames), comparing every
output with the golden function exactly (``ChainStage``'s pool, cropping sizes that are not multiples of K). The
default tier runs two foldings with tens of frames; ``-m slow`` sweeps six more (random C, PE, H, W, K, odd sizes
included) with over 1000 frames in all.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from instabnn.hw.chain_files import MaxPoolBitsSpec, bit_frame_words, bit_frames_from_words, maxpool_bits
from instabnn.contract.network import ChainStage
from instabnn.hw.rtl_library import rtl_paths
from instabnn.sim.rtl_runner import run_cocotb, verilator_lint

SOURCES = rtl_paths("maxpool_bits")
TEST_MODULE = "instabnn.sim.test_maxpool_bits"

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
    from instabnn.sim.test_maxpool_bits import prepare_case

    seed = zlib.crc32(spec.name.encode())
    case_dir = directory / "case"
    extra_env = prepare_case(spec, seed, n_frames, case_dir)
    run_cocotb(sources=SOURCES, toplevel="maxpool_bits", test_module=TEST_MODULE, parameters=spec.rtl_parameters(),
               directory=directory, test_dir=case_dir, extra_env=extra_env, seed=seed)
    result = json.loads((case_dir / "result_stream_full_rate.json").read_text())
    result["frames_checked_all_tests"] = sum(
        json.loads(p.read_text())["frames_checked"] for p in case_dir.glob("result_*.json"))
    return result


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
