"""RTL tests of the residual block tail with INSTA-PReLU (``hw/blocks/insta_tail/insta_tail.sv``): spec and files, lint,
illegal parameters, synthesis, cocotb.

Each simulation case draws random float parameters for a block tail, fixes them with the contract's constructor
(:func:`instabnn.hw.reference.layers.residual_activation`, activation kind "insta"), builds the unit with Verilator
(cocotb's Python runner) and runs the cocotb tests of ``instabnn.sim.test_insta_tail`` (full rate with the cycle
and latency checks, random idle on every input and backpressure, resets inside frames), comparing every output
with the ``ResidualActivation`` object exactly. All output goes to pytest's tmp directories. The default tier runs
four foldings with tens of frames (own and reused statistics, shift and projection shortcuts, one folding below
full rate); ``-m slow`` sweeps more (random C, PE, N, output bits, identity or pooled shortcut, own or reuse, plus
projection foldings) with over 1000 frames in all. INSTA-PReLU+ (SE = 1, ``insta_shift_plus_compute``): three
default foldings (own at full rate, own below full rate, reuse + projection) and the Yosys read; three more foldings
and a Yosys-netlist simulation in the slow tier.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from instabnn.hw.blocks.insta_tail.spec import (CONST_FIELDS, G_ENTRIES, PROJ_CONST_FIELDS, InstaTailSpec, coeff_words,
                                          const_words, frame_words, frames_from_words, read_coeff_file,
                                          read_const_file, read_g_file, write_memory_files)
from instabnn.hw.rtl_library import rtl_paths
from instabnn.sim.rtl_runner import VERILATOR_BUILD_ARGS, run_cocotb, verilator_lint, yosys_synth

SOURCES = rtl_paths("insta_tail")
TOPLEVEL = "insta_tail"
TEST_MODULE = "instabnn.sim.test_insta_tail"


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
    limbs: int | None = None  # None: the spec's choice (sequencer_limbs where the rate allows)
    power_table: int | None = None  # None: the spec's choice (tables for statistics of up to 8 bits)

    @property
    def name(self) -> str:
        return (f"c{self.channels}_pe{self.pe}_n{self.pixels}_b{self.out_bits}{'_pool' if self.pooled else ''}"
                f"{'_proj' if self.proj else ''}{'_reuse' if self.reuse else '_own'}"
                f"{f'_se{self.hidden}x{self.se_simd}' if self.hidden else ''}"
                f"{'' if self.limbs is None else f'_l{self.limbs}'}"
                f"{'' if self.power_table is None else f'_pt{self.power_table}'}")


FAST_FOLDINGS = [
    Folding(4, 2, 16, 8),  # own, identity: FRAME_BEATS = 32 >= 3C + 10, full rate
    Folding(8, 4, 9, 6, pooled=True),  # own, below full rate (the shift computation sets the pace)
    Folding(4, 2, 4, 8, pooled=True, reuse=True),  # reuse, stride 2: 16 statistic pixels per 4 output pixels
    Folding(4, 4, 9, 8, proj=True, reuse=True),  # reuse with the projection shortcut (stride 2)
    Folding(4, 1, 16, 6, limbs=3, power_table=1),  # own: limb-serial multiplier, power tables (6-bit statistic)
    Folding(4, 2, 25, 8, reuse=True, limbs=2, power_table=0),  # reuse: two limbs, multipliers
]
FAST_FRAMES = 12

SE_FAST_FOLDINGS = [
    Folding(4, 2, 25, 8, hidden=2),  # INSTA-PReLU+, own: FRAME_BEATS = 50 >= 3C + 2 HIDDEN C + 16, full rate
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
    from instabnn.sim.test_insta_tail import prepare_case

    return prepare_case(folding.channels, folding.pe, folding.pixels, folding.out_bits, folding.pooled, seed,
                        n_frames, directory, proj=folding.proj, reuse=folding.reuse, hidden=folding.hidden,
                        se_simd=folding.se_simd, limbs=folding.limbs, power_table=folding.power_table)


def run_insta_tail(folding: Folding, n_frames: int, directory: Path, seed: int | None = None,
                   yosys_netlist: bool = False) -> dict:
    """Build and simulate one folding (the RTL, or its Yosys netlist); returns the full-rate measurements (plus the
    frames checked by all tests)."""
    seed = _seed(folding) if seed is None else seed
    case_dir = directory / "case"
    spec, parameters, extra_env = _prepare(folding, seed, n_frames, case_dir)
    sources, build_args = SOURCES, VERILATOR_BUILD_ARGS
    if yosys_netlist:
        netlist = directory / "netlist.v"
        yosys_synth(SOURCES, TOPLEVEL, parameters, case_dir / "synth", netlist)
        # parameters and memory contents are baked in; a bit-level netlist has false combinational loops for
        # Verilator
        sources, parameters, build_args = [netlist], {}, VERILATOR_BUILD_ARGS + ["-Wno-UNOPTFLAT"]
    run_cocotb(sources=sources, toplevel=TOPLEVEL, test_module=TEST_MODULE, parameters=parameters,
               directory=directory, test_dir=case_dir, extra_env=extra_env, seed=seed, build_args=build_args)
    result = json.loads((case_dir / "result_stream_full_rate.json").read_text())
    result["frames_checked_all_tests"] = sum(
        json.loads(p.read_text())["frames_checked"] for p in case_dir.glob("result_*.json")
    )
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
                                   + 2 * folding.hidden * folding.channels // folding.se_simd + 16
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
    ],
)
def test_insta_tail_se_rejects_illegal_parameters(overrides, message, verilator_path):
    proc = _lint(SE_FAST_FOLDINGS[0], verilator_path, **overrides)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_spec_matches_the_reference_and_the_files(tmp_path):
    """The spec's widths are the golden object's; the memory files and the stream packing round-trip; Y, D and T
    at the worst-case inputs fit their widths."""
    from instabnn.hw.reference.fixed_point import signed_bits
    from instabnn.hw.reference.insta import power_sum_bits
    from instabnn.hw.reference.layers import STAT_EXTRA_BITS, g_table
    from instabnn.sim.test_insta_tail import activation_from_parameters, random_inputs, random_parameters

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
            assert spec.buffer_depth == 0 and spec.latency == 6
        else:
            assert not spec.stat_reuse and spec.stat_bits == folding.out_bits + STAT_EXTRA_BITS
            assert spec.stat_pixels == folding.pixels and spec.buffer_depth == spec.frame_beats + spec.issue_latency
            assert spec.latency == 3 * folding.channels + 24 + (spec.compute_edges - 3 * folding.channels - 8)
        assert spec.const_fields == (PROJ_CONST_FIELDS if folding.proj else CONST_FIELDS)
        se_files = ("s.mem", "m1.mem", "w1.mem", "w2.mem") if spec.se else ()
        params = spec.rtl_parameters("c.mem", "k.mem", "g.mem", *se_files)
        assert params["STAT_REUSE"] == int(folding.reuse) and params["SHORTCUT_PROJ"] == int(folding.proj)
        assert ("SE" in params) == spec.se and ("M1_FILE" in params) == spec.se
        if spec.se:
            assert params["HIDDEN"] == folding.hidden and params["S_SHIFT"] == spec.frac - 8 >= 1
            assert spec.compute_edges == 3 * spec.channels + 2 * spec.hidden * spec.channels // spec.se_simd + 14
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
    from instabnn.hw.reference.layers import residual_activation
    from instabnn.sim.test_insta_tail import activation_from_parameters, random_parameters

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
    from instabnn.sim.test_insta_tail import activation_from_parameters, random_parameters

    rng = np.random.default_rng(7)
    p = random_parameters(rng, 8, 9, 8, False, hidden=4)
    act = activation_from_parameters(p)
    spec = InstaTailSpec.from_activation(act, p["acc_bound"], p["sc_bits"], 4, 9, se_simd=2)
    assert spec.se and spec.hidden == 4 and spec.mac_steps == 2 * 4 * 8 // 2
    assert spec.compute_busy == 3 * 8 + spec.mac_steps + 8 and spec.compute_edges == spec.compute_busy + 6
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
    """Full rate from FRAME_BEATS >= 3C + 10 (own); reuse runs at the slower of the two streams."""
    from instabnn.sim.test_insta_tail import activation_from_parameters, random_parameters

    rng = np.random.default_rng(5)
    p = random_parameters(rng, 8, 17, 8, False)
    spec = InstaTailSpec.from_activation(activation_from_parameters(p), p["acc_bound"], p["sc_bits"], 4, 17)
    assert spec.frame_beats == 34 == 3 * 8 + 10 and spec.full_rate and spec.cycles_per_frame == 34
    assert replace(spec, pixels=16, stat_pixels=16).cycles_per_frame == (24 + 32 + 10) / 2
    pr = random_parameters(rng, 8, 16, 8, True, reuse=True)
    rspec = InstaTailSpec.from_activation(activation_from_parameters(pr), pr["acc_bound"], pr["sc_bits"], 4, 16)
    assert rspec.stat_beats == 4 * rspec.frame_beats and rspec.cycles_per_frame == rspec.stat_beats


needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")


@needs_yosys
@pytest.mark.parametrize("folding", [
    Folding(2, 1, 2, 4, pooled=True),
    Folding(2, 1, 2, 4, pooled=True, hidden=2),
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
