"""RTL tests of the sum-pooling units (``hw/blocks/pool/pool_sum.sv``: K x K windows at stride K; ``hw/blocks/pool/global_sum.sv``:
per-channel sums over the frame): spec and packing, lint, illegal parameters, synthesis, cocotb.

Each simulation case builds one unit with Verilator (cocotb's Python runner) for one
:class:`~instabnn.hw.blocks.pool.spec.PoolSumSpec` or :class:`~instabnn.hw.blocks.pool.spec.GlobalSumSpec` and runs the cocotb
tests of ``instabnn.sim.test_pool`` (full rate with the cycle and latency checks, random idle and backpressure,
resets inside frames), comparing every output with the golden function exactly (``layers.pool_sum``; for the
global sum ``layers.global_sum``, the first step of ``Classifier``). All output goes to pytest's tmp
directories. The default tier runs two foldings of each unit with tens of frames; ``-m slow`` sweeps five more of
each (random C, PE, H, W, K, input bits) with over 1000 frames per unit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from instabnn.hw.blocks.pool.spec import GlobalSumSpec, PoolSumSpec, frame_words, frames_from_words
from instabnn.hw.reference.layers import global_sum
from instabnn.hw.reference.layers import Classifier, pool_sum
from instabnn.hw.rtl_library import rtl_paths
from instabnn.sim.rtl_runner import run_cocotb, verilator_lint, yosys_synth

ROOT = Path(__file__).resolve().parents[1]
RTL = ROOT / "hw" / "rtl"
SOURCES = {"pool_sum": rtl_paths("pool_sum"), "global_sum": rtl_paths("global_sum")}
TEST_MODULE = "instabnn.sim.test_pool"


def _top(spec) -> str:
    return "pool_sum" if isinstance(spec, PoolSumSpec) else "global_sum"


FAST_SPECS = [
    PoolSumSpec(channels=8, pe=4, height=4, width=6, in_bits=8, k=2),
    PoolSumSpec(channels=4, pe=4, height=8, width=8, in_bits=5, k=4),  # CF = 1: partial sums forwarded
    GlobalSumSpec(channels=8, pe=4, height=3, width=5, in_bits=8),
    GlobalSumSpec(channels=3, pe=3, height=4, width=4, in_bits=6),  # CF = 1: partial sums forwarded
]
FAST_FRAMES = 12


def _sweep_specs(n: int = 5, seed: int = 5) -> list:
    """Random foldings for the slow sweep (seeded, so the list is stable): C, PE | C, H, W (multiples of K for the
    window sum), input bits 2 .. 12; plus the sizes of the synthesis reports."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pe = int(rng.choice([1, 2, 4, 8]))
        channels, in_bits = pe * int(rng.integers(1, 4)), int(rng.integers(2, 13))
        k = int(rng.choice([2, 4]))
        out.append(PoolSumSpec(channels=channels, pe=pe, height=k * int(rng.integers(1, 4)),
                               width=k * int(rng.integers(1, 4)), in_bits=in_bits, k=k))
        out.append(GlobalSumSpec(channels=channels, pe=pe, height=int(rng.integers(1, 7)),
                                 width=int(rng.integers(1, 7)), in_bits=in_bits))
    return out


SLOW_SPECS = _sweep_specs() + [
    PoolSumSpec(channels=64, pe=16, height=8, width=8, in_bits=8, k=2),
    GlobalSumSpec(channels=64, pe=16, height=8, width=8, in_bits=8),
]
SLOW_FRAMES = 120

LINT_SPECS = FAST_SPECS + [
    PoolSumSpec(channels=1, pe=1, height=2, width=2, in_bits=2, k=2),
    PoolSumSpec(channels=64, pe=16, height=32, width=32, in_bits=8, k=2),
    GlobalSumSpec(channels=1, pe=1, height=1, width=1, in_bits=2),
    GlobalSumSpec(channels=64, pe=16, height=8, width=8, in_bits=8),
]


def _seed(spec) -> int:
    return zlib.crc32(spec.name.encode())


def run_pool(spec, n_frames: int, directory: Path) -> dict:
    """Build and simulate one unit; returns the full-rate measurements (plus the frames checked by all tests)."""
    from instabnn.sim.test_pool import prepare_case

    seed = _seed(spec)
    case_dir = directory / "case"
    extra_env = prepare_case(spec, seed, n_frames, case_dir)
    run_cocotb(sources=SOURCES[_top(spec)], toplevel=_top(spec), test_module=TEST_MODULE,
               parameters=spec.rtl_parameters(), directory=directory, test_dir=case_dir, extra_env=extra_env,
               seed=seed)
    result = json.loads((case_dir / "result_stream_full_rate.json").read_text())
    result["frames_checked_all_tests"] = sum(
        json.loads(p.read_text())["frames_checked"] for p in case_dir.glob("result_*.json"))
    (directory / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _check_measurements(result: dict):
    analytic = result["cycles_per_frame_analytic"]
    assert analytic == result["frame_beats"]
    assert abs(result["cycles_per_frame_measured"] - analytic) <= 0.02 * analytic
    assert abs(result["cycles_per_frame_measured_output"] - analytic) <= 0.02 * analytic
    assert result["latency_measured"] == [result["latency_stated"]]


@pytest.mark.parametrize("spec", FAST_SPECS, ids=lambda s: s.name)
def test_pool_sim(spec, verilator_path, tmp_path):
    result = run_pool(spec, FAST_FRAMES, tmp_path)
    _check_measurements(result)


@pytest.mark.slow
@pytest.mark.parametrize("spec", SLOW_SPECS, ids=lambda s: s.name)
def test_pool_sim_sweep(spec, verilator_path, tmp_path):
    result = run_pool(spec, SLOW_FRAMES, tmp_path)
    _check_measurements(result)
    assert result["frames_checked_all_tests"] >= 2 * SLOW_FRAMES


def test_sweep_is_wide_enough():
    """The slow sweep covers >= 5 distinct foldings of each unit, both K, >= 1000 frames per unit."""
    for kind in (PoolSumSpec, GlobalSumSpec):
        specs = [s for s in SLOW_SPECS if type(s) is kind]
        assert len(set(specs)) == len(specs) >= 5 and len(specs) * 2 * SLOW_FRAMES >= 1000
    assert {s.k for s in SLOW_SPECS if isinstance(s, PoolSumSpec)} == {2, 4}


def _lint(spec, verilator_path: Path, **overrides) -> subprocess.CompletedProcess:
    params = {**spec.rtl_parameters(), **overrides}
    return verilator_lint(SOURCES[_top(spec)], _top(spec), params, verilator_path)


@pytest.mark.parametrize("spec", LINT_SPECS, ids=lambda s: s.name)
def test_pool_lint_clean(spec, verilator_path):
    proc = _lint(spec, verilator_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "%Warning" not in output and "%Error" not in output, output


@pytest.mark.parametrize(
    "spec, overrides, message",
    [
        (FAST_SPECS[0], {"PE": 3}, "PE (3) must divide CHANNELS (8)"),
        (FAST_SPECS[0], {"PE": 0}, "CHANNELS and PE must be >= 1"),
        (FAST_SPECS[0], {"K": 3}, "K (3) must be 2 or 4"),
        (FAST_SPECS[0], {"K": 1}, "K (1) must be 2 or 4"),
        (FAST_SPECS[0], {"WIDTH": 5}, "HEIGHT (4) and WIDTH (5) must be positive multiples of K (2)"),
        (FAST_SPECS[0], {"HEIGHT": 0}, "must be positive multiples of K"),
        (FAST_SPECS[0], {"IN_BITS": 1}, "IN_BITS (1) must be in 2 .. 32"),
        (FAST_SPECS[0], {"IN_BITS": 33}, "IN_BITS (33) must be in 2 .. 32"),
        (FAST_SPECS[2], {"PE": 3}, "PE (3) must divide CHANNELS (8)"),
        (FAST_SPECS[2], {"CHANNELS": 0}, "CHANNELS and PE must be >= 1"),
        (FAST_SPECS[2], {"HEIGHT": 0}, "HEIGHT (0) and WIDTH (5) must be >= 1"),
        (FAST_SPECS[2], {"IN_BITS": 40}, "IN_BITS (40) must be in 2 .. 32"),
    ],
    ids=lambda x: x.name if hasattr(x, "name") else None,
)
def test_pool_rejects_illegal_parameters(spec, overrides, message, verilator_path):
    proc = _lint(spec, verilator_path, **overrides)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_specs_match_the_reference_and_the_packing():
    """Widths hold the worst-case sums exactly (and one bit less would not); the stream packing round-trips;
    completing beats are the last beats of the windows; the global sum is Classifier's first step."""
    rng = np.random.default_rng(3)
    for spec in FAST_SPECS + SLOW_SPECS + LINT_SPECS:
        lo, hi = -(1 << (spec.in_bits - 1)), (1 << (spec.in_bits - 1)) - 1
        corners = np.stack([np.full((spec.channels, spec.height, spec.width), v) for v in (lo, hi)])
        s = spec.reference(corners)
        assert s.shape[1:] == spec.out_shape
        assert -(1 << (spec.out_bits - 1)) <= s.min() and s.max() < (1 << (spec.out_bits - 1))
        if spec.out_bits > spec.in_bits:  # tight: the most negative sum needs every bit
            assert s.min() < -(1 << (spec.out_bits - 2))
        q = rng.integers(lo, hi + 1, size=(3, spec.channels, spec.height, spec.width))
        words = frame_words(q, spec.channels, spec.pe, spec.in_bits)
        assert len(words) == 3 and all(len(w) == spec.frame_beats for w in words)
        flat = [w for f in words for w in f]
        assert np.array_equal(frames_from_words(flat, (spec.channels, spec.height, spec.width), spec.pe,
                                                spec.in_bits), q)
        # the beat completing each output: every input pixel of that output's windows comes no later
        comp = spec.completing_beats()
        assert len(comp) == spec.out_frame_beats and np.all(np.diff(comp) > 0) and comp[-1] == spec.frame_beats - 1
        assert spec.cycles_per_frame == spec.height * spec.width * spec.channels / spec.pe
        assert spec.latency == 2
        if isinstance(spec, PoolSumSpec):
            assert np.array_equal(spec.reference(q), pool_sum(q, spec.k))
        else:
            cls = Classifier(weight=np.eye(spec.channels, dtype=np.int64), shift=np.zeros(spec.channels, np.int64),
                             bias=np.zeros(spec.channels, np.int64), lsb=1.0)
            assert np.array_equal(global_sum(q), cls(q))
            assert np.array_equal(spec.reference(q)[:, :, 0, 0], global_sum(q))


def test_specs_refuse_illegal_foldings():
    with pytest.raises(ValueError, match="PE"):
        PoolSumSpec(channels=8, pe=3, height=4, width=4, in_bits=8, k=2)
    with pytest.raises(ValueError, match="k must be"):
        PoolSumSpec(channels=8, pe=4, height=6, width=6, in_bits=8, k=3)
    with pytest.raises(ValueError, match="multiples"):
        PoolSumSpec(channels=8, pe=4, height=4, width=6, in_bits=8, k=4)
    with pytest.raises(ValueError, match="in_bits"):
        GlobalSumSpec(channels=8, pe=4, height=4, width=4, in_bits=1)
    with pytest.raises(ValueError, match="height"):
        GlobalSumSpec(channels=8, pe=4, height=0, width=4, in_bits=8)


needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")


@needs_yosys
@pytest.mark.parametrize("spec", [FAST_SPECS[0], FAST_SPECS[2]], ids=lambda s: s.name)
def test_pool_yosys_synth(spec, tmp_path):
    """Yosys reads and synthesises the RTL (generic synth, small folding)."""
    log = yosys_synth(SOURCES[_top(spec)], _top(spec), spec.rtl_parameters(), tmp_path / "synth")
    assert "Number of cells" in log


SYNTH_SPECS = [
    PoolSumSpec(channels=64, pe=16, height=32, width=32, in_bits=8, k=2),
    GlobalSumSpec(channels=64, pe=16, height=8, width=8, in_bits=8),
]


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("spec", SYNTH_SPECS, ids=lambda s: s.name)
def test_pool_synth_xilinx(spec, tmp_path):
    """synth_xilinx (xc7) of C = 64, PE = 16: adders and small memories only (no DSP), a few hundred LUTs per
    16 lanes."""
    from instabnn.hw.synth import parse_stat

    log = yosys_synth(SOURCES[_top(spec)], _top(spec), spec.rtl_parameters(), tmp_path / "synth", xilinx=True)
    res = parse_stat(log)
    (tmp_path / "synth.json").write_text(json.dumps({"spec": spec.name, **res}, indent=2) + "\n")
    assert res["dsp"] == 0 and 0 < res["lut"] < 3000 and res["ff"] > 0, res
