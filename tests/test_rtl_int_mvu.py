"""The integer matrix-vector unit: golden functions, memory files, and the RTL (``hw/blocks/int_mvu/int_mvu.sv``): lint,
illegal parameters, Yosys synthesis, cocotb simulation.

Each simulation case builds the unit with Verilator for one :class:`IntMvuShape`, writes random weights / biases
as memory-init files, and runs the cocotb tests of ``instabnn.sim.test_int_mvu`` (full rate with the cycle and
latency checks, random idle and backpressure, reset mid-vector), comparing every output with
``instabnn.hw.reference.mvu.integer_matvec`` exactly. The default tier runs two shapes; ``-m slow`` sweeps more
shapes with over 1000 vectors, and simulates a Yosys netlist.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from instabnn.hw.blocks.common.memfile import read_memh
from instabnn.hw.blocks.int_mvu.spec import (
    IntMvuShape,
    bias_words,
    int_weight_words,
    int_weights_from_words,
    write_bias_file,
    write_int_weight_file,
)
from instabnn.hw.packing import unpack_fields
from instabnn.hw.reference.mvu import integer_accumulator_bits, integer_accumulator_range, integer_matvec
from instabnn.hw.rtl_library import rtl_paths
from instabnn.sim.rtl_runner import (
    VERILATOR_BUILD_ARGS,
    lint_output_clean,
    run_cocotb,
    verilator_lint,
    yosys_synth,
)

SOURCES = rtl_paths("int_mvu")
TOPLEVEL = "int_mvu"
TEST_MODULE = "instabnn.sim.test_int_mvu"

FAST_SHAPES = [
    IntMvuShape(mw=27, mh=8, simd=9, pe=4, weight_bits=8, input_bits=8, input_signed=0),  # first conv, uint8 pixels
    IntMvuShape(mw=16, mh=10, simd=8, pe=5, weight_bits=8, input_bits=8, input_signed=1, bias_bits=16),  # classifier
]
FAST_VECTORS = 24

SLOW_SHAPES = [
    IntMvuShape(mw=1, mh=1, simd=1, pe=1, weight_bits=2, input_bits=1, input_signed=0),  # degenerate everything
    IntMvuShape(mw=27, mh=16, simd=27, pe=16, weight_bits=8, input_bits=8, input_signed=0),  # SF = NF = 1
    IntMvuShape(mw=7, mh=3, simd=1, pe=1, weight_bits=4, input_bits=6, input_signed=1, bias_bits=5),  # odd, tiny
    IntMvuShape(mw=16, mh=32, simd=4, pe=8, weight_bits=8, input_bits=8, input_signed=1),  # 1x1 downsampling 16->32
    IntMvuShape(mw=64, mh=10, simd=16, pe=2, weight_bits=8, input_bits=8, input_signed=1, bias_bits=20),  # classifier
    IntMvuShape(mw=48, mh=6, simd=12, pe=3, weight_bits=12, input_bits=10, input_signed=0, bias_bits=8),
]
SLOW_VECTORS = 200

LINT_SHAPES = FAST_SHAPES + SLOW_SHAPES

# small enough for Yosys' generic synthesis (its $mul mapping is slow): 4 multipliers, unsigned inputs, bias
SYNTH_SHAPE = IntMvuShape(mw=6, mh=4, simd=3, pe=2, weight_bits=5, input_bits=4, input_signed=0, bias_bits=6)


def _seed(shape: IntMvuShape) -> int:
    return zlib.crc32(shape.name.encode())


# ----------------------------------------------------------------------------------------------------------------
# Golden functions and memory files (no simulator)
# ----------------------------------------------------------------------------------------------------------------


def test_integer_matvec_is_the_dot_product_plus_bias():
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, size=(5, 13))
    x = rng.integers(0, 256, size=(4, 13))
    b = rng.integers(-1000, 1000, size=5)
    acc = integer_matvec(w, x, b)
    assert acc.dtype == np.int64 and acc.shape == (4, 5)
    for n in range(4):
        for o in range(5):
            assert acc[n, o] == int(b[o]) + sum(int(w[o, k]) * int(x[n, k]) for k in range(13))
    np.testing.assert_array_equal(integer_matvec(w, x), acc - b)


def test_integer_matvec_is_a_convolution():
    """A 1x1 convolution (the downsampling shortcut) is integer_matvec per pixel (torch, float64: exact here)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, size=(8, 4))
    x = rng.integers(-128, 128, size=(1, 4, 5, 5))
    ref = torch.nn.functional.conv2d(torch.tensor(x, dtype=torch.float64), torch.tensor(w[:, :, None, None],
                                     dtype=torch.float64), stride=2).numpy()
    got = integer_matvec(w, x[0, :, ::2, ::2].transpose(1, 2, 0))  # (3, 3, 8)
    np.testing.assert_array_equal(got.transpose(2, 0, 1), ref[0].astype(np.int64))


def test_integer_matvec_rejects_bad_inputs():
    with pytest.raises(ValueError):
        integer_matvec(np.ones((2, 3)), np.ones(3, dtype=np.int64))  # float weights
    with pytest.raises(ValueError):
        integer_matvec(np.ones((2, 3), dtype=np.int64), np.ones(4, dtype=np.int64))
    with pytest.raises(ValueError):
        integer_matvec(np.ones((2, 3), dtype=np.int64), np.ones(3, dtype=np.int64), bias=np.ones(3, dtype=np.int64))


@pytest.mark.parametrize("mw, wb, xb, signed, bb", [(1, 2, 1, False, 0), (27, 8, 8, False, 0), (16, 8, 8, True, 16),
                                                    (7, 4, 6, True, 5), (48, 12, 10, False, 8)])
def test_accumulator_range_is_attained_and_width_is_tight(mw, wb, xb, signed, bb):
    lo, hi = integer_accumulator_range(mw, wb, xb, signed, bb)
    wlo, whi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
    xlo, xhi = (-(1 << (xb - 1)), (1 << (xb - 1)) - 1) if signed else (0, (1 << xb) - 1)
    blo, bhi = (-(1 << (bb - 1)), (1 << (bb - 1)) - 1) if bb else (0, 0)
    corners = [(w, x) for w in (wlo, whi) for x in (xlo, xhi)]
    sums = [integer_matvec(np.full((1, mw), w), np.full(mw, x), np.array([b]))[0]
            for w, x in corners for b in (blo, bhi)]
    assert min(sums) == lo and max(sums) == hi
    bits = integer_accumulator_bits(mw, wb, xb, signed, bb)
    assert -(1 << (bits - 1)) <= lo and hi < (1 << (bits - 1))
    assert lo < -(1 << (bits - 2)) or hi >= (1 << (bits - 2))  # one bit less would not do


def test_int_weight_file_layout_and_round_trip(tmp_path):
    shape = IntMvuShape(mw=6, mh=4, simd=3, pe=2, weight_bits=4, input_bits=8, bias_bits=6)
    rng = np.random.default_rng(2)
    w = rng.integers(-8, 8, size=(4, 6))
    words = int_weight_words(w, shape)
    assert len(words) == shape.nf * shape.sf
    # word nf*SF + sf, lane pe, element i = W[nf*PE + pe, sf*SIMD + i]
    for f, word in enumerate(words):
        nf, sf = divmod(f, shape.sf)
        fields = unpack_fields(word, 4, 6, signed=True)
        for pe in range(2):
            for i in range(3):
                assert fields[pe * 3 + i] == w[nf * 2 + pe, sf * 3 + i]
    np.testing.assert_array_equal(int_weights_from_words(words, shape), w)
    path = write_int_weight_file(tmp_path / "w.mem", w, shape)
    assert read_memh(path, shape.pe * shape.simd * shape.weight_bits) == words
    b = np.array([-32, 31, 0, -1])
    bw = bias_words(b, shape)
    assert [list(unpack_fields(x, 6, 2, signed=True)) for x in bw] == [[-32, 31], [0, -1]]
    assert read_memh(write_bias_file(tmp_path / "b.mem", b, shape), 12) == bw
    with pytest.raises(ValueError):
        int_weight_words(np.full((4, 6), 8), shape)  # out of the 4-bit range


@pytest.mark.parametrize("kwargs, message", [
    (dict(mw=6, mh=4, simd=4, pe=2), "SIMD (4) must divide MW (6)"),
    (dict(mw=6, mh=4, simd=3, pe=3), "PE (3) must divide MH (4)"),
    (dict(mw=6, mh=4, simd=3, pe=2, weight_bits=1), "WEIGHT_BITS"),
    (dict(mw=6, mh=4, simd=3, pe=2, input_bits=1, input_signed=1), "INPUT_BITS"),
    (dict(mw=6, mh=4, simd=3, pe=2, input_signed=2), "INPUT_SIGNED"),
])
def test_int_mvu_shape_rejects_illegal(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        IntMvuShape(**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# RTL
# ----------------------------------------------------------------------------------------------------------------


def run_int_mvu(shape: IntMvuShape, n_vectors: int, directory: Path, seed: int | None = None,
                yosys_netlist: bool = False) -> dict:
    """Build and simulate one shape (the RTL, or its Yosys netlist); returns the full-rate measurements."""
    from instabnn.sim.test_int_mvu import prepare_case

    seed = _seed(shape) if seed is None else seed
    case_dir = directory / "case"
    parameters, extra_env = prepare_case(shape, seed, n_vectors, case_dir)
    sources, build_args = SOURCES, VERILATOR_BUILD_ARGS
    if yosys_netlist:
        netlist = directory / "netlist.v"
        yosys_synth(SOURCES, TOPLEVEL, parameters, case_dir / "synth", netlist)
        sources, parameters, build_args = [netlist], {}, VERILATOR_BUILD_ARGS + ["-Wno-UNOPTFLAT"]
    run_cocotb(sources=sources, toplevel=TOPLEVEL, test_module=TEST_MODULE, parameters=parameters,
               directory=directory, test_dir=case_dir, extra_env=extra_env, seed=seed, build_args=build_args)
    return json.loads((case_dir / "result_stream_full_rate.json").read_text())


def _check_measurements(shape: IntMvuShape, result: dict):
    analytic = shape.cycles_per_vector
    assert result["cycles_per_vector_analytic"] == analytic
    assert abs(result["cycles_per_vector_measured"] - analytic) <= 0.02 * analytic
    assert result["latency_measured"] == [shape.latency]


@pytest.mark.parametrize("shape", FAST_SHAPES, ids=lambda s: s.name)
def test_int_mvu_sim(shape, verilator_path, tmp_path):
    _check_measurements(shape, run_int_mvu(shape, FAST_VECTORS, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("shape", SLOW_SHAPES, ids=lambda s: s.name)
def test_int_mvu_sim_sweep(shape, verilator_path, tmp_path):
    _check_measurements(shape, run_int_mvu(shape, SLOW_VECTORS, tmp_path))


def _lint(shape: IntMvuShape, vbin: Path, **overrides):
    params = shape.rtl_parameters("weights.mem", "bias.mem")  # lint does not read the files
    params.update(overrides)
    return verilator_lint(SOURCES, TOPLEVEL, params, vbin)


@pytest.mark.parametrize("shape", LINT_SHAPES, ids=lambda s: s.name)
def test_int_mvu_lint_clean(shape, verilator_path):
    ok, output = lint_output_clean(_lint(shape, verilator_path))
    assert ok, output


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"SIMD": 4}, "SIMD (4) must divide MW (27)"),
        ({"PE": 3}, "PE (3) must divide MH (8)"),
        ({"INPUT_SIGNED": 2}, "INPUT_SIGNED (2) must be 0 or 1"),
        ({"WEIGHT_BITS": 1}, "WEIGHT_BITS (1) must be in [2, 24]"),
        ({"INPUT_BITS": 1, "INPUT_SIGNED": 1}, "INPUT_BITS (1) must be in [2, 24]"),
        ({"BIAS_BITS": 8}, "BIAS_BITS > 0 needs a BIAS_FILE"),
        ({"WEIGHT_FILE": '""'}, "WEIGHT_FILE must name"),
    ],
)
def test_int_mvu_rejects_illegal_parameters(overrides, message, verilator_path):
    shape = FAST_SHAPES[0]
    params = shape.rtl_parameters("weights.mem")
    params.update(overrides)
    proc = verilator_lint(SOURCES, TOPLEVEL, params, verilator_path)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")


@needs_yosys
def test_int_mvu_yosys_synth(tmp_path):
    """Yosys reads and synthesises the RTL (generic synth; memories initialised from generated files)."""
    from instabnn.sim.test_int_mvu import prepare_case

    parameters, _ = prepare_case(SYNTH_SHAPE, 0, 1, tmp_path)
    log = yosys_synth(SOURCES, TOPLEVEL, parameters, tmp_path)
    assert "Number of cells" in log


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("shape", [SYNTH_SHAPE, SLOW_SHAPES[2]], ids=lambda s: s.name)
def test_int_mvu_yosys_netlist_sim(shape, verilator_path, tmp_path):
    """Yosys reads the RTL as Verilator does: its synthesised netlist passes the same cocotb tests, cycle for cycle."""
    _check_measurements(shape, run_int_mvu(shape, FAST_VECTORS, tmp_path, yosys_netlist=True))
