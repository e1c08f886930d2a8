"""RTL tests of the INSTA-Th+ unit (``hw/blocks/insta_threshold/insta_threshold.sv``, ``SE = 1``): lint, illegal parameters, synthesis,
cocotb.

Each simulation case draws a realistic random unit for one folding (``threshold_plus`` with an SE MLP from
``ptq_int8`` / ``se_mlp_fixed``, random SE weights and bias; ``instabnn.sim.test_insta_threshold_plus.random_unit``),
writes its six memory files, builds the unit with Verilator and runs the cocotb tests of
``instabnn.sim.test_insta_threshold_plus`` (full rate with the cycle and latency checks, random idle and
backpressure, resets inside frames and in every phase of the computation), comparing every output bit with
``ThresholdPlus.thresholds`` / ``binarize`` exactly. The default tier runs three foldings (full rate at the boundary
``FRAME_BEATS = COMPUTE_EDGES + 2``, full rate with the shortcut output, computation-bound) with tens of frames;
``-m slow`` sweeps six more parameter sets (C, PE, N, input bits, hidden units, g) with over 1000 frames in all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from instabnn.hw.blocks.insta_threshold.spec_plus import (G_ENTRIES, InstaThresholdPlusSpec, bits_from_words, coeff_words,
                                          const_words, frame_words, frames_from_words, read_words,
                                          write_memory_files)
from instabnn.contract.layers import g_table
from instabnn.hw.rtl_library import rtl_paths
from instabnn.sim.rtl_runner import VERILATOR_BUILD_ARGS, run_cocotb, verilator_lint, yosys_synth

SOURCES = rtl_paths("insta_threshold")
TOPLEVEL = "insta_threshold"  # with SE = 1
TEST_MODULE = "instabnn.sim.test_insta_threshold_plus"


@dataclass(frozen=True)
class Folding:
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
        from instabnn.sim.test_insta_threshold_plus import random_unit

        unit = random_unit(np.random.default_rng(seed), self.channels, self.pixels, self.input_bits, self.hidden,
                           self.g)
        return InstaThresholdPlusSpec.from_constants(unit, self.pe, self.shortcut, self.se_simd)


FAST_FOLDINGS = [
    Folding(4, 1, 11, 6, 2),  # FRAME_BEATS = 44 = COMPUTE_EDGES + 2: full rate just holds (PE = 1)
    Folding(8, 2, 36, 8, 2, shortcut=1),  # 6x6 frames, full rate, shortcut output
    Folding(16, 4, 25, 6, 4),  # 5x5 frames: the computation (2*4*16 MACs on one multiplier) sets the pace
    Folding(16, 4, 64, 7, 4, shortcut=1, se_simd=4),  # 8x8: 4 SE multipliers (2*4*16/4 MAC steps) keep full rate
]
FAST_FRAMES = 20

SLOW_FOLDINGS = [
    Folding(4, 4, 43, 5, 2, shortcut=1),  # FRAME_BEATS = COMPUTE_EDGES + 1: just below full rate
    Folding(12, 3, 49, 7, 3, g="sigmoid"),  # 7x7, full rate
    Folding(16, 8, 64, 8, 4, shortcut=1, g="tanh"),  # computation-bound
    Folding(6, 6, 4, 4, 1),  # CF = 1, tiny frames
    Folding(5, 1, 1, 8, 5),  # N = 1, single-pixel frames, hidden = C
    Folding(32, 2, 64, 8, 8, shortcut=1),  # 8x8 x 32 channels, C/r = 8: full rate (FRAME_BEATS 1024 >= 626)
    Folding(64, 16, 64, 8, 16, shortcut=1, se_simd=16),  # ResNet-20 stage 3, PE = 16, 16 SE multipliers: 330 clk
    Folding(12, 4, 16, 6, 6, g="sigmoid", se_simd=3),  # SE_SIMD = 3 (not a power of two), computation-bound
]
SLOW_FRAMES = 100

LINT_FOLDINGS = FAST_FOLDINGS + SLOW_FOLDINGS + [Folding(1, 1, 1, 2, 1), Folding(64, 16, 64, 8, 16, shortcut=1),
                                                 Folding(4, 2, 8, 4, 4, se_simd=4), Folding(6, 3, 9, 5, 2, se_simd=2)]


def _seed(folding: Folding) -> int:
    return zlib.crc32(folding.name.encode())


def run_insta_threshold_plus(folding: Folding, n_frames: int, directory: Path, seed: int | None = None,
                             yosys_netlist: bool = False) -> dict:
    """Build and simulate one folding (the RTL, or its Yosys netlist); returns the full-rate measurements (plus the
    frames checked by all tests)."""
    from instabnn.sim.test_insta_threshold_plus import prepare_case

    seed = _seed(folding) if seed is None else seed
    case_dir = directory / "case"
    spec, parameters, extra_env = prepare_case(folding.channels, folding.pe, folding.pixels, folding.input_bits,
                                               folding.hidden, folding.shortcut, seed, n_frames, case_dir, folding.g,
                                               folding.se_simd)
    sources, build_args = SOURCES, VERILATOR_BUILD_ARGS
    if yosys_netlist:
        netlist = directory / "netlist.v"
        yosys_synth(SOURCES, TOPLEVEL, parameters, case_dir / "synth", netlist)
        # parameters and memory contents are baked in; a bit-level netlist has false combinational loops for
        # Verilator; the internal probes are gone (the testbench then checks the outputs only)
        sources, parameters, build_args = [netlist], {}, VERILATOR_BUILD_ARGS + ["-Wno-UNOPTFLAT"]
    run_cocotb(sources=sources, toplevel=TOPLEVEL, test_module=TEST_MODULE, parameters=parameters,
               directory=directory, test_dir=case_dir, extra_env=extra_env, seed=seed, build_args=build_args)
    result = json.loads((case_dir / "result_stream_full_rate.json").read_text())
    result["frames_checked_all_tests"] = sum(
        json.loads(p.read_text())["frames_checked"] for p in case_dir.glob("result_*.json")
    )
    result["spec_name"] = spec.name
    return result


def _check_measurements(result: dict):
    analytic = result["cycles_per_frame_analytic"]
    assert abs(result["cycles_per_frame_measured"] - analytic) <= 0.02 * analytic
    assert min(result["latency_measured"]) == result["latency_stated"]
    if result["full_rate"]:
        assert result["cycles_per_frame_analytic"] == result["frame_beats"]
        assert result["latency_measured"] == [result["latency_stated"]]
        assert result["beat_latency_measured"] == [result["beat_latency_stated"]]


@pytest.mark.parametrize("folding", FAST_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_plus_sim(folding, verilator_path, tmp_path):
    result = run_insta_threshold_plus(folding, FAST_FRAMES, tmp_path)
    _check_measurements(result)
    assert result["full_rate"] == folding.spec(_seed(folding)).full_rate


@pytest.mark.slow
@pytest.mark.parametrize("folding", SLOW_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_plus_sim_sweep(folding, verilator_path, tmp_path):
    result = run_insta_threshold_plus(folding, SLOW_FRAMES, tmp_path)
    _check_measurements(result)
    assert result["frames_checked_all_tests"] >= 2 * SLOW_FRAMES


def test_sweep_is_wide_enough():
    """The slow sweep: >= 5 parameter sets, >= 1000 frames, both shortcut settings, every g, full rate and not."""
    assert len(SLOW_FOLDINGS) >= 5 and len(SLOW_FOLDINGS) * 2 * SLOW_FRAMES >= 1000
    assert {f.shortcut for f in SLOW_FOLDINGS} == {0, 1}
    assert {f.g for f in SLOW_FOLDINGS} == {"tanh3", "tanh", "sigmoid"}
    assert {f.spec().full_rate for f in SLOW_FOLDINGS + FAST_FOLDINGS} == {True, False}


def _params(folding: Folding, directory: Path, **overrides) -> dict:
    from instabnn.sim.test_insta_threshold_plus import prepare_case

    _, params, _ = prepare_case(folding.channels, folding.pe, folding.pixels, folding.input_bits, folding.hidden,
                                folding.shortcut, 0, 1, directory, folding.g, folding.se_simd)
    params.update(overrides)
    return params


def _lint(folding: Folding, verilator_path: Path, **overrides) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        params = _params(folding, Path(tmp), **overrides)
        return verilator_lint(SOURCES, TOPLEVEL, params, verilator_path)


@pytest.mark.parametrize("folding", LINT_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_plus_lint_clean(folding, verilator_path):
    proc = _lint(folding, verilator_path)
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
    proc = _lint(FAST_FOLDINGS[0], verilator_path, **overrides)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_spec_matches_the_reference_and_the_files(tmp_path):
    """Widths hold the reference's values on random frames; the files and the stream packing round-trip."""
    from instabnn.contract.layers import G_IN_FRAC, SE_H_FRAC, se_input
    from instabnn.sim.test_insta_threshold_plus import random_frames, random_unit

    rng = np.random.default_rng(7)
    for folding in FAST_FOLDINGS + SLOW_FOLDINGS:
        unit = random_unit(rng, folding.channels, folding.pixels, folding.input_bits, folding.hidden, folding.g)
        spec = InstaThresholdPlusSpec.from_constants(unit, folding.pe, folding.shortcut, folding.se_simd)
        assert spec.tacc_bits == unit.poly.accumulator_bits()
        assert spec.compute_edges == 3 * spec.channels + 2 * spec.hidden * spec.channels // spec.se_simd + 14
        assert spec.latency == spec.compute_edges + 9
        assert spec.buffer_depth == spec.frame_beats + spec.compute_edges + 7
        assert spec.full_rate == (spec.frame_beats >= spec.compute_edges + 2)
        q = random_frames(rng, unit, 6)
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
        assert read_words(files["coeff_file"], spec.coeff_word_bits) == coeff_words(unit, spec)
        assert read_words(files["const_file"], spec.const_word_bits) == const_words(unit, spec)
        w1 = read_words(files["w1_file"], spec.w1_bits * spec.se_simd)
        assert len(w1) == spec.hidden * spec.channels // spec.se_simd
        lanes = spec.se_simd
        k, grp, lane = spec.hidden - 1, spec.channels // lanes - 1, lanes - 1
        word = w1[k * (spec.channels // lanes) + grp] >> (lane * spec.w1_bits) & ((1 << spec.w1_bits) - 1)
        assert word == unit.se.w1[k, grp * lanes + lane] % (1 << spec.w1_bits)
        g = read_words(files["g_file"], spec.g_word_bits)
        assert len(g) == G_ENTRIES and (g[5] & ((1 << spec.g_bits) - 1)) == g_table(folding.g)[5] % (1 << spec.g_bits)
        words = frame_words(q, spec)
        assert len(words) == 6 and all(len(w) == spec.frame_beats for w in words)
        assert np.array_equal(frames_from_words([w for f in words for w in f], spec), q)
        bits = (q >= 0).astype(np.uint8)
        bit_words = [int(sum(int(b) << i for i, b in enumerate(bits[f, c0 : c0 + spec.pe, p])))
                     for f in range(6) for p in range(spec.pixels) for c0 in range(0, spec.channels, spec.pe)]
        assert np.array_equal(bits_from_words(bit_words, spec), bits)
        params = spec.rtl_parameters(**files)
        assert params["HIDDEN"] == spec.hidden and params["T_FRAC"] == unit.frac + 14


def test_spec_refuses_mismatched_constants():
    from instabnn.sim.test_insta_threshold_plus import random_unit

    small = random_unit(np.random.default_rng(1), 4, 16, 6, 2)
    spec = InstaThresholdPlusSpec.from_constants(small, 2)
    other = random_unit(np.random.default_rng(2), 4, 16, 6, 3)
    with pytest.raises(ValueError, match="hidden"):
        coeff_words(other, spec)
    with pytest.raises(ValueError, match="PE"):
        InstaThresholdPlusSpec.from_constants(small, 3)
    with pytest.raises(ValueError, match="se_simd"):
        InstaThresholdPlusSpec.from_constants(small, 2, se_simd=4)


def test_full_rate_se_simd():
    """se_simd=None picks the fewest SE multipliers that keep up with the stream (or all of gcd(C, HIDDEN))."""
    f = InstaThresholdPlusSpec.full_rate_se_simd
    assert f(64, 16, 64 * 64 // 16) == 16  # ResNet-20 stage 3 at PE = 16: 192 + 2048/16 + 16 = 336 > 256: all 16
    assert f(64, 16, 64 * 64 // 4) == 4  # PE = 4: 192 + 2048/4 + 16 = 720 <= 1024 < 192 + 1024 + 16
    assert f(64, 16, 64 * 64) == 1
    assert f(16, 4, 256) == 1 and f(16, 4, 128) == 2 and f(16, 4, 64) == 4
    from instabnn.sim.test_insta_threshold_plus import random_unit

    unit = random_unit(np.random.default_rng(3), 16, 32, 6, 4)
    spec = InstaThresholdPlusSpec.from_constants(unit, 4, se_simd=None)
    assert spec.full_rate and spec.se_simd == 2  # FRAME_BEATS 128 = 48 + 128/2 + 16 < 48 + 128 + 16


needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")


@needs_yosys
def test_insta_threshold_plus_yosys_synth(tmp_path):
    """Yosys reads and synthesises the RTL (generic synth; the ROMs initialised from the generated files)."""
    params = _params(Folding(4, 2, 6, 4, 2, shortcut=1), tmp_path)
    log = yosys_synth(SOURCES, TOPLEVEL, params, tmp_path / "synth")
    assert "Number of cells" in log


@pytest.mark.slow
@needs_yosys
def test_insta_threshold_plus_yosys_netlist_sim(verilator_path, tmp_path):
    """Yosys reads the RTL as Verilator does: its synthesised netlist passes the same cocotb tests, cycle for cycle
    (the memory contents baked in)."""
    result = run_insta_threshold_plus(Folding(4, 1, 11, 5, 2), 6, tmp_path, yosys_netlist=True)
    _check_measurements(result)
