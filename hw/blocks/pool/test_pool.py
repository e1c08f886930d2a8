"""Testbench of the sum-pooling units ``pool_sum.sv`` (K x K windows at stride K; golden
:func:`instabnn.contract.layers.pool_sum`) and ``global_sum.sv`` (per-channel sums over the frame; golden
:func:`instabnn.contract.layers.global_sum`, the first step of ``Classifier``): spec and packing, lint, illegal
parameters, synthesis, cocotb.

Each simulation case builds one unit with Verilator (cocotb's Python runner) for one
:class:`~instabnn.hw.blocks.pool.spec.PoolSumSpec` or :class:`~instabnn.hw.blocks.pool.spec.GlobalSumSpec` and runs
the ``@cocotb.test()``s of this file in one simulation; the case (:func:`make_case`) reaches them through
:func:`~instabnn.hw.blocks.common.axis_tb.run_bench`. Both units have the same ports and timing contract, so one
testbench serves both; only the spec (and through it the golden function and the output frame shape) differs. All
output goes to pytest's tmp directories. The default tier runs two foldings of each unit with tens of frames;
``-m slow`` sweeps five more of each (random C, PE, H, W, K, input bits) with over 1000 frames per unit.

cocotb tests (each starts with a reset):

* ``stream_full_rate``: the source always valid, the sink always ready. Every output equals the reference exactly;
  clocks per frame (input and output side) within 2 % of ``spec.cycles_per_frame`` (``H*W*C/PE``); the input is
  taken at one beat per clock; every output beat leaves exactly ``spec.latency`` edges after the input beat that
  completes it (``spec.completing_beats``). Results in ``result_stream_full_rate.json``.
* ``stream_idle_backpressure``: random idle on ``s_axis`` and random backpressure on ``m_axis``; every output
  exact, nothing lost or added.
* ``reset_mid_frame``: single-cycle resets at several points inside frames, the stream continuing through them;
  afterwards no stale beat and every later frame exact (the unit restarts at the first pixel).

Every test checks the protocol on the output (an offered beat stays offered, unchanged, until taken). The
scoreboard unpacks the input words the DUT actually sampled, calls the golden function and compares in order; a
mismatch names the test, frame, output pixel (row, column) and channel with expected and got.

The test bodies, the scoreboard and the harness are :mod:`~instabnn.hw.blocks.common.pool_bench`, shared by the
pooling benches (``pool``, ``maxpool_bits``); this file gives the spec, the parameters, the stimulus and the packing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import cocotb

from instabnn.hw.blocks.common import pool_bench
from instabnn.hw.blocks.common.axis_tb import run_full_rate_bench
from instabnn.hw.blocks.common.pool_bench import PoolBench, check_measurements
from instabnn.hw.blocks.pool.spec import GlobalSumSpec, PoolSumSpec, frame_words, frames_from_words
from instabnn.contract.layers import Classifier, global_sum, pool_sum
from instabnn.hw.blocks.rtl_library import rtl_paths
from instabnn.hw.blocks.common.rtl_runner import verilator_lint, yosys_synth


# ----------------------------------------------------------------------------------------------------------------
# cocotb testbench (runs in the simulator)
# ----------------------------------------------------------------------------------------------------------------

SPECS = {"pool_sum": PoolSumSpec, "global_sum": GlobalSumSpec}


# ----------------------------------------------------------------------------------------------------------------
# Case preparation (runs in pytest, before the simulator starts)
# ----------------------------------------------------------------------------------------------------------------


def make_case(spec: PoolSumSpec | GlobalSumSpec, seed: int, n_frames: int) -> dict:
    """The case the cocotb side reads (:func:`~instabnn.hw.blocks.common.axis_tb.read_case`)."""
    top = "pool_sum" if isinstance(spec, PoolSumSpec) else "global_sum"
    return {"top": top, "spec": asdict(spec), "seed": seed, "n_frames": n_frames}


def random_inputs(rng: np.random.Generator, spec, n: int) -> np.ndarray:
    """``n`` frames ``(n, C, H, W)``: uniform over the ``in_bits`` range; frame 1 all at the maximum and frame 2 all
    at the minimum (the widest sums); some frames narrow (values near 0, as a trained stream has them)."""
    lo, hi = -(1 << (spec.in_bits - 1)), (1 << (spec.in_bits - 1)) - 1
    q = rng.integers(lo, hi + 1, size=(n, spec.channels, spec.height, spec.width))
    for f in range(n):
        if f == 1:
            q[f] = hi
        elif f == 2:
            q[f] = lo
        elif rng.random() < 0.3:
            q[f] = np.clip(np.round(rng.normal(0, 2, size=q.shape[1:])), lo, hi)
    return q


# ----------------------------------------------------------------------------------------------------------------
# Testbench
# ----------------------------------------------------------------------------------------------------------------


class TB(PoolBench):
    def spec_from_case(self, case: dict) -> PoolSumSpec | GlobalSumSpec:
        return SPECS[case["top"]](**case["spec"])

    def expected_parameters(self) -> dict:
        s = self.spec
        expected = {"CHANNELS": s.channels, "PE": s.pe, "HEIGHT": s.height, "WIDTH": s.width, "IN_BITS": s.in_bits,
                    "OUT_BITS": s.out_bits, "CF": s.cf, "LATENCY": s.latency}
        if isinstance(s, PoolSumSpec):
            expected.update({"K": s.k, "OUT_WIDTH": s.out_width_px})
        return expected

    def random_inputs(self, n: int) -> np.ndarray:
        return random_inputs(self.rng, self.spec, n)

    def frame_words(self, q: np.ndarray) -> list[list[int]]:
        s = self.spec
        return frame_words(q, s.channels, s.pe, s.in_bits)

    def input_frames(self, words: list[int]) -> np.ndarray:
        s = self.spec
        return frames_from_words(words, (s.channels, s.height, s.width), s.pe, s.in_bits)

    def output_frames(self, words: list[int]) -> np.ndarray:
        s = self.spec
        return frames_from_words(words, s.out_shape, s.pe, s.out_bits)


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

SOURCES = {"pool_sum": rtl_paths("pool_sum"), "global_sum": rtl_paths("global_sum")}


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
    seed = _seed(spec)
    case_dir = directory / "case"
    result = run_full_rate_bench(__file__, make_case(spec, seed, n_frames), sources=SOURCES[_top(spec)],
                                 toplevel=_top(spec), parameters=spec.rtl_parameters(), directory=case_dir, seed=seed)
    (directory / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


@pytest.mark.parametrize("spec", FAST_SPECS, ids=lambda s: s.name)
def test_pool_sim(spec, verilator_path, tmp_path):
    result = run_pool(spec, FAST_FRAMES, tmp_path)
    check_measurements(result)


@pytest.mark.slow
@pytest.mark.parametrize("spec", SLOW_SPECS, ids=lambda s: s.name)
def test_pool_sim_sweep(spec, verilator_path, tmp_path):
    result = run_pool(spec, SLOW_FRAMES, tmp_path)
    check_measurements(result)
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
