"""RTL tests of the residual block tail with RPReLU (``hw/blocks/residual_tail/residual_tail.sv``): spec and files, lint, illegal
parameters, synthesis, cocotb.

Each simulation case draws random float parameters for a block tail, fixes them with the contract's constructor
(:func:`instabnn.hw.reference.layers.residual_activation`), builds the unit with Verilator (cocotb's Python runner)
and runs the cocotb tests of ``instabnn.sim.test_residual_tail`` (full rate with the cycle and latency checks,
random idle on both inputs and backpressure, resets inside frames), comparing every output with the
``ResidualActivation`` object exactly. All output goes to pytest's tmp directories. The default tier runs three
foldings with tens of frames (two shift-mode shortcuts and one 1x1 projection, ``SHORTCUT_PROJ = 1``); ``-m slow``
sweeps more (random C, PE, N, output bits, identity or pooled shortcut, plus projection foldings) with over 1000
frames in all.
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

from instabnn.hw.blocks.residual_tail.spec import (CONST_FIELDS, PROJ_CONST_FIELDS, ResidualTailSpec, const_words, frame_words,
                                        frames_from_words, read_const_file, write_const_file)
from instabnn.hw.rtl_library import rtl_paths
from instabnn.sim.rtl_runner import run_cocotb, verilator_lint, yosys_synth

SOURCES = rtl_paths("residual_tail")
TOPLEVEL = "residual_tail"
TEST_MODULE = "instabnn.sim.test_residual_tail"


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
    from instabnn.sim.test_residual_tail import prepare_case

    return prepare_case(folding.channels, folding.pe, folding.pixels, folding.out_bits, folding.pooled, seed,
                        n_frames, directory, proj=folding.proj)


def run_residual_tail(folding: Folding, n_frames: int, directory: Path, seed: int | None = None) -> dict:
    """Build and simulate one folding; returns the full-rate measurements (plus the frames checked by all tests)."""
    seed = _seed(folding) if seed is None else seed
    case_dir = directory / "case"
    spec, parameters, extra_env = _prepare(folding, seed, n_frames, case_dir)
    run_cocotb(sources=SOURCES, toplevel=TOPLEVEL, test_module=TEST_MODULE, parameters=parameters,
               directory=directory, test_dir=case_dir, extra_env=extra_env, seed=seed)
    result = json.loads((case_dir / "result_stream_full_rate.json").read_text())
    result["frames_checked_all_tests"] = sum(
        json.loads(p.read_text())["frames_checked"] for p in case_dir.glob("result_*.json")
    )
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
    from instabnn.hw.reference.fixed_point import signed_bits
    from instabnn.hw.reference.layers import SLOPE_FRAC
    from instabnn.sim.test_residual_tail import activation_from_parameters, random_inputs, random_parameters

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
        assert spec.cycles_per_frame == spec.pixels * spec.channels / spec.pe and spec.latency == 6


def test_spec_refuses_mismatched_constants():
    from instabnn.sim.test_residual_tail import activation_from_parameters, random_parameters

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
