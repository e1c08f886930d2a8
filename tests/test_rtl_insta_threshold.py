"""RTL tests of the INSTA-Th unit (``hw/blocks/insta_threshold/insta_threshold.sv``): lint, illegal parameters, synthesis, cocotb.

Each simulation case builds the unit with Verilator (cocotb's Python runner) for one folding, writes random
constants (instance-aware or static) as the coefficient file, and runs the cocotb tests of
``instabnn.sim.test_insta_threshold`` (full rate with the cycle and latency checks, random idle and backpressure,
resets inside frames), comparing every output bit with ``instabnn.contract.insta`` exactly. All output goes to
pytest's tmp directories. The default tier runs three foldings with tens of frames; ``-m slow`` sweeps seven more
(random C, PE, N, input bits; static and instance-aware; with and without the shortcut output) with over 1000
frames in all.
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

from instabnn.hw.blocks.insta_threshold.spec import (InstaThresholdSpec, bits_from_words, coeff_words, frame_words,
                                     frames_from_words, read_coeff_file, write_coeff_file)
from instabnn.contract.insta import insta_th_constants, static_threshold_constants
from instabnn.hw.rtl_library import rtl_paths
from instabnn.sim.rtl_runner import run_cocotb, verilator_lint, yosys_synth

SOURCES = rtl_paths("insta_threshold")
TOPLEVEL = "insta_threshold"
TEST_MODULE = "instabnn.sim.test_insta_threshold"


@dataclass(frozen=True)
class Folding:
    """The test's choice of folding; the constants (and so the full spec) are drawn per case."""

    channels: int
    pe: int
    pixels: int
    input_bits: int
    static: int = 0
    shortcut: int = 0
    limbs: int | None = None  # None: the spec's choice (sequencer_limbs where the rate allows)
    power_table: int | None = None  # None: the spec's choice (tables up to 8-bit inputs)

    @property
    def name(self) -> str:
        return (f"{'static' if self.static else 'insta'}_c{self.channels}_pe{self.pe}_n{self.pixels}"
                f"_b{self.input_bits}{'_sc' if self.shortcut else ''}"
                f"{'' if self.limbs is None else f'_l{self.limbs}'}"
                f"{'' if self.power_table is None else f'_pt{self.power_table}'}")

    def case(self, seed: int, n_frames: int, directory: Path):
        from instabnn.sim.test_insta_threshold import prepare_case

        return prepare_case(self.channels, self.pe, self.pixels, self.input_bits, self.static, self.shortcut, seed,
                            n_frames, directory, limbs=self.limbs, power_table=self.power_table)


FAST_FOLDINGS = [
    Folding(8, 4, 16, 8, static=0, shortcut=1),  # N*C/PE = 32 = 3C + 8: full rate just holds
    Folding(12, 4, 9, 5, static=1, shortcut=0),  # 3x3 frames, static
    Folding(16, 4, 25, 6, static=0, shortcut=0),
    Folding(4, 2, 36, 7, static=0, shortcut=1, limbs=3, power_table=0),  # limb-serial multiplier, multipliers
]
FAST_FRAMES = 24


def _sweep_foldings(n: int = 7, seed: int = 2024) -> list[Folding]:
    """Random foldings for the slow sweep (seeded, so the list is stable): C, PE | C, N = H*W, input bits 4..8."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pe = int(rng.choice([1, 2, 3, 4, 8]))
        channels = pe * int(rng.integers(1, 7))
        side = int(rng.integers(2, 11))
        pixels = side * int(rng.integers(max(2, side - 2), side + 3))
        out.append(Folding(channels, pe, pixels, int(rng.integers(4, 9)), static=int(i % 3 == 2),
                           shortcut=int(i % 2 == 1)))
    return out


SLOW_FOLDINGS = _sweep_foldings() + [
    Folding(64, 16, 64, 8, static=0, shortcut=1),  # ResNet-20 stage 3 (8x8 x 64 channels)
    Folding(6, 6, 4, 4, static=0, shortcut=1),  # CF = 1, tiny frames: the computation sets the pace
    Folding(5, 1, 1, 8, static=0, shortcut=0),  # N = 1: single-pixel frames, PE = 1
    Folding(32, 1, 64, 8, static=0, shortcut=1),  # PE = 1 as in ResNet-20: two limbs (default), power tables
    Folding(6, 2, 9, 6, static=0, shortcut=0, limbs=5, power_table=1),  # limbs set the pace
]
SLOW_FRAMES = 150

LINT_FOLDINGS = FAST_FOLDINGS + SLOW_FOLDINGS + [Folding(1, 1, 1, 2), Folding(1, 1, 1, 2, static=1)]

def _seed(folding: Folding) -> int:
    return zlib.crc32(folding.name.encode())


def run_insta_threshold(folding: Folding, n_frames: int, directory: Path, seed: int | None = None) -> dict:
    """Build and simulate one folding; returns the full-rate measurements (plus the frames checked by all tests)."""
    seed = _seed(folding) if seed is None else seed
    case_dir = directory / "case"
    spec, parameters, extra_env = folding.case(seed, n_frames, case_dir)
    run_cocotb(sources=SOURCES, toplevel=TOPLEVEL, test_module=TEST_MODULE, parameters=parameters,
               directory=directory, test_dir=case_dir, extra_env=extra_env, seed=seed)
    result = json.loads((case_dir / "result_stream_full_rate.json").read_text())
    result["frames_checked_all_tests"] = sum(
        json.loads(p.read_text())["frames_checked"] for p in case_dir.glob("result_*.json")
    )
    result["spec_name"] = spec.name
    return result


def _check_measurements(result: dict):
    analytic = result["cycles_per_frame_analytic"]
    assert abs(result["cycles_per_frame_measured"] - analytic) <= 0.02 * analytic
    if result["full_rate"]:
        assert result["cycles_per_frame_analytic"] == result["frame_beats"]
        assert result["latency_measured"] == [result["latency_stated"]]
        assert result["beat_latency_measured"] == [result["beat_latency_stated"]]


@pytest.mark.parametrize("folding", FAST_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_sim(folding, verilator_path, tmp_path):
    result = run_insta_threshold(folding, FAST_FRAMES, tmp_path)
    _check_measurements(result)
    assert result["full_rate"]


@pytest.mark.slow
@pytest.mark.parametrize("folding", SLOW_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_sim_sweep(folding, verilator_path, tmp_path):
    result = run_insta_threshold(folding, SLOW_FRAMES, tmp_path)
    _check_measurements(result)
    # 12 foldings x >= 2 * SLOW_FRAMES frames each: well over 1000 frames in the sweep
    assert result["frames_checked_all_tests"] >= 2 * SLOW_FRAMES


def test_sweep_is_wide_enough():
    """The slow sweep covers >= 5 foldings with random C, PE, N and 4..8 input bits, both kinds, >= 1000 frames."""
    assert len(SLOW_FOLDINGS) >= 5 and len(SLOW_FOLDINGS) * 2 * SLOW_FRAMES >= 1000
    assert {f.static for f in SLOW_FOLDINGS} == {0, 1} and {f.shortcut for f in SLOW_FOLDINGS} == {0, 1}
    assert all(4 <= f.input_bits <= 8 for f in SLOW_FOLDINGS)
    assert len({(f.channels, f.pe, f.pixels) for f in SLOW_FOLDINGS}) == len(SLOW_FOLDINGS)


def _lint(folding: Folding, verilator_path: Path, **overrides) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        _, params, _ = folding.case(0, 1, Path(tmp))
    params.update(overrides)
    return verilator_lint(SOURCES, TOPLEVEL, params, verilator_path)


@pytest.mark.parametrize("folding", LINT_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_lint_clean(folding, verilator_path):
    proc = _lint(folding, verilator_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "%Warning" not in output and "%Error" not in output, output


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"PE": 3}, "PE (3) must divide CHANNELS (8)"),
        ({"PE": 0}, "CHANNELS, PE and PIXELS must be >= 1"),
        ({"PIXELS": 0}, "CHANNELS, PE and PIXELS must be >= 1"),
        ({"INPUT_BITS": 1}, "INPUT_BITS (1) must be in 2 .. 16"),
        ({"INPUT_BITS": 17}, "INPUT_BITS (17) must be in 2 .. 16"),
        ({"STATIC": 2}, "STATIC (2) must be 0 or 1"),
        ({"SHORTCUT": 3}, "SHORTCUT (3) must be 0 or 1"),
        ({"COEFF_BITS_2": 0}, "COEFF_BITS_0..3 must be >= 1"),
        ({"FRAC_1": -1}, "FRAC_0..3 must be >= 0"),
        ({"TACC_BITS": 20}, "TACC_BITS (20) narrower than P3"),
        ({"COEFF_FILE": '""'}, "COEFF_FILE must name"),
        ({"LIMBS": 0}, "LIMBS (0) must lie in 1 .. "),
    ],
)
def test_insta_threshold_rejects_illegal_parameters(overrides, message, verilator_path):
    proc = _lint(FAST_FOLDINGS[0], verilator_path, **overrides)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_spec_matches_the_reference_and_the_files(tmp_path):
    """The spec's widths are the golden function's; the coefficient file and the stream packing round-trip."""
    from instabnn.sim.test_insta_threshold import random_constants, random_frames

    rng = np.random.default_rng(5)
    for folding in FAST_FOLDINGS + SLOW_FOLDINGS:
        consts = random_constants(rng, folding.channels, folding.pixels, folding.input_bits, folding.static)
        spec = InstaThresholdSpec.from_constants(consts, folding.pe, static=folding.static)
        assert spec.power_sum_bits == consts.power_sum_bits
        assert spec.tacc_bits == consts.threshold_accumulator_bits and spec.coeff_bits == consts.coeff_bits
        assert InstaThresholdSpec.from_constants(consts, folding.pe).static == folding.static
        path = write_coeff_file(tmp_path / f"{spec.name}.mem", consts, spec)
        assert read_coeff_file(path, spec) == list(zip(*consts.coeffs))
        q = random_frames(rng, consts, 3)
        words = frame_words(q, spec)
        assert len(words) == 3 and all(len(w) == spec.frame_beats for w in words)
        assert np.array_equal(frames_from_words([w for f in words for w in f], spec), q)
        bits = (q >= 0).astype(np.uint8)
        bit_words = [int(sum(int(b) << i for i, b in enumerate(bits[f, c0 : c0 + spec.pe, p])))
                     for f in range(3) for p in range(spec.pixels) for c0 in range(0, spec.channels, spec.pe)]
        assert np.array_equal(bits_from_words(bit_words, spec), bits)
        if spec.static:
            assert spec.latency == 2 and spec.buffer_depth == 0
        else:
            assert spec.compute_steps == 3 * spec.channels * spec.limbs
            assert spec.latency == spec.compute_steps + 12
            assert spec.buffer_depth == spec.frame_beats + spec.compute_steps + 10
            assert spec.beat_latency == spec.frame_beats - 1 + spec.latency


def test_spec_refuses_mismatched_constants():
    insta = insta_th_constants([0.5, -1.0], [1.0, 2.0], [1.0, -0.5], [0.2, 0.1], 2.0 ** -3, 16, 6)
    static = static_threshold_constants([0.5, -1.0], 2.0 ** -3, 16, 6)
    assert InstaThresholdSpec.from_constants(static, 2).static == 1
    with pytest.raises(ValueError, match="C1 = C2 = C3 = 0"):
        coeff_words(insta, InstaThresholdSpec.from_constants(insta, 2, static=1))
    with pytest.raises(ValueError, match="PE"):
        InstaThresholdSpec.from_constants(insta, 3)
    narrow = InstaThresholdSpec.from_constants(insta, 2)
    wider = insta_th_constants([0.5, -1.0], [1.0, 2.0], [100.0, -0.5], [0.2, 0.1], 2.0 ** -3, 16, 6)
    with pytest.raises(ValueError, match="bits"):
        coeff_words(wider, narrow)


needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")


# small foldings: generic synth turns the memories into flip-flops and the multipliers into gates
YOSYS_FOLDINGS = [Folding(4, 2, 6, 4, static=0, shortcut=1), Folding(6, 3, 4, 5, static=1, shortcut=1)]


@needs_yosys
@pytest.mark.parametrize("folding", YOSYS_FOLDINGS, ids=lambda f: f.name)
def test_insta_threshold_yosys_synth(folding, tmp_path):
    """Yosys reads and synthesises the RTL (generic synth; the ROM initialised from the generated file)."""
    _, parameters, _ = folding.case(0, 1, tmp_path)
    log = yosys_synth(SOURCES, TOPLEVEL, parameters, tmp_path / "synth")
    assert "Number of cells" in log


def test_synth_table_rows_for_threshold_units():
    """The synth-blocks table lists INSTA-Th beside the static unit of the same folding (format only, no Yosys)."""
    from instabnn.hw.synth import DEFAULT_THRESHOLD_UNITS, threshold_units_markdown

    foldings = {(c, pe, n, b) for c, pe, n, b, _, _ in DEFAULT_THRESHOLD_UNITS}
    for folding in foldings:
        kinds = {s for c, pe, n, b, s, _ in DEFAULT_THRESHOLD_UNITS if (c, pe, n, b) == folding}
        assert kinds == {0, 1}, f"{folding}: static and INSTA-Th rows expected"
    res = {"lut": 10, "ff": 20, "carry4": 1, "lutram": 0, "bram36": 0.5, "dsp": 2,
           "utilisation_xc7z020_pct": {"lut": 0.02}}
    rows = [{"kind": k, "shortcut": 0, "channels": 64, "pe": 16, "pixels": 64, "input_bits": 8,
             "cycles_per_frame": 256.0, "latency": 2, "buffer_bits": 0, **res} for k in ("static", "insta")]
    lines = threshold_units_markdown(rows)
    assert len(lines) == 4 and "static (RSign)" in lines[2] and "INSTA-Th" in lines[3]


@pytest.mark.slow
@needs_yosys
def test_synth_xilinx_insta_costs_more_than_static(tmp_path):
    """synth_xilinx: the frame buffer is block RAM, the power sums distributed RAM; the static unit has neither."""
    from instabnn.hw.synth import synth_insta_threshold

    _, static = synth_insta_threshold(32, 8, 64, 8, 1, tmp_path / "static")
    spec, insta = synth_insta_threshold(32, 8, 64, 8, 0, tmp_path / "insta")
    assert spec.buffer_bits > 0 and insta["bram36"] >= 1 and insta["lutram"] > 0
    assert static["bram36"] == 0 and 0 < static["lut"] < insta["lut"]
