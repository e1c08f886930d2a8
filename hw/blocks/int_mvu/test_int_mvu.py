"""Testbench of the integer matrix-vector unit (``int_mvu.sv``) against
``instabnn.contract.mvu.integer_matvec``: golden functions, memory files, lint, illegal parameters, Yosys
synthesis, cocotb simulation.

Each simulation case builds the unit with Verilator for one :class:`IntMvuShape`, writes random weights / biases
as memory-init files (:func:`prepare_case`), and runs the ``@cocotb.test()``s of this file in one simulation (the
case reaches them through :func:`~instabnn.hw.blocks.common.axis_tb.run_bench`), comparing every output with
``integer_matvec`` exactly. The default tier runs two shapes; ``-m slow`` sweeps more shapes with over 1000
vectors, and simulates a Yosys netlist.

cocotb tests (each starts with a reset):

* ``stream_full_rate``: source always valid, sink always ready. Every output equals the reference exactly; the
  cycles per vector (steady state, input and output side) are within 2 % of ``(MW/SIMD) * (MH/PE)``; every output
  beat appears exactly ``INT_PIPELINE_LATENCY`` cycles after the issue of its fold's last step.
* ``stream_idle_backpressure``: random idle on ``s_axis`` and random backpressure on ``m_axis`` (seeded pause
  generators); every output exact, no beat lost or added.
* ``reset_mid_vector``: single-cycle resets at every offset within a vector (input fold, re-read folds, pipeline
  draining), with the source driving through the reset; then exact operation, no stale beat.

The weights and inputs include the extremes (rows of all-minimum / all-maximum weights, vectors of all-minimum /
all-maximum inputs, extreme biases), so the worst-case accumulator values of the stated width are exercised. A
mismatch names the test, vector, output channel, expected and got. The reference sees the input words as the DUT
sampled them. Parameters are read back from the DUT where exposed (``ACC_BITS`` etc.) and the port widths checked.
"""

from __future__ import annotations

import shutil
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import cocotb

from instabnn.hw.blocks.common import mvu_bench
from instabnn.hw.blocks.common.axis_tb import run_full_rate_bench
from instabnn.hw.blocks.common.memfile import read_memh
from instabnn.hw.blocks.common.mvu_bench import MvuBench, check_measurements
from instabnn.hw.blocks.int_mvu.spec import (
    IntMvuShape,
    bias_words,
    int_weight_words,
    int_weights_from_words,
    write_bias_file,
    write_int_weight_file,
)
from instabnn.contract.packing import pack_fields, unpack_fields
from instabnn.contract.mvu import integer_accumulator_bits, integer_accumulator_range, integer_matvec
from instabnn.hw.blocks.rtl_library import rtl_paths
from instabnn.hw.blocks.common.rtl_runner import lint_output_clean, verilator_lint, yosys_synth


# ----------------------------------------------------------------------------------------------------------------
# cocotb testbench (runs in the simulator)
# ----------------------------------------------------------------------------------------------------------------

def random_weights(rng: np.random.Generator, shape: IntMvuShape) -> np.ndarray:
    """Uniform weights over the full range; row 0 all minimum, row 1 all maximum (the accumulator's extremes)."""
    lo, hi = shape.weight_range
    w = rng.integers(lo, hi + 1, size=(shape.mh, shape.mw), dtype=np.int64)
    w[0] = lo
    if shape.mh > 1:
        w[1] = hi
    return w


def random_bias(rng: np.random.Generator, shape: IntMvuShape) -> np.ndarray:
    lo, hi = shape.bias_range
    b = rng.integers(lo, hi + 1, size=shape.mh, dtype=np.int64)
    b[0] = hi if shape.input_signed else lo  # with row 0 = minimum weights: the most positive / negative sums
    if shape.mh > 1:
        b[1] = lo if shape.input_signed else hi
    return b


def prepare_case(shape: IntMvuShape, seed: int, n_vectors: int, directory: Path) -> tuple[dict, dict]:
    """Random weights (and biases) for ``shape``; writes the memory files and ``case.npz`` into
    ``directory``. Returns ``(rtl_parameters, case)`` for the runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {"weights": random_weights(rng, shape)}
    weight_file = write_int_weight_file(directory / "weights.mem", arrays["weights"], shape)
    bias_file = None
    if shape.bias_bits:
        arrays["bias"] = random_bias(rng, shape)
        bias_file = write_bias_file(directory / "bias.mem", arrays["bias"], shape)
    np.savez(directory / "case.npz", **arrays)
    case = {"shape": asdict(shape), "seed": seed, "n_vectors": n_vectors, "arrays": str(directory / "case.npz")}
    return shape.rtl_parameters(weight_file, bias_file), case


# ----------------------------------------------------------------------------------------------------------------
# Testbench
# ----------------------------------------------------------------------------------------------------------------


class TB(MvuBench):
    shape_type = IntMvuShape

    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        super().__init__(dut, test_seed, drivers_follow_reset)
        self.bias = self.arrays["bias"].astype(np.int64) if self.shape.bias_bits else None

    def expected_parameters(self) -> dict:
        s = self.shape
        return {
            "MW": s.mw, "MH": s.mh, "SIMD": s.simd, "PE": s.pe, "WEIGHT_BITS": s.weight_bits,
            "INPUT_BITS": s.input_bits, "INPUT_SIGNED": s.input_signed, "BIAS_BITS": s.bias_bits,
            "ACC_BITS": s.acc_bits,
        }

    def random_vectors(self, n: int) -> np.ndarray:
        """``n`` input vectors, uniform over the input range; vectors 1 and 2 all-minimum and all-maximum."""
        lo, hi = self.shape.input_range
        x = self.rng.integers(lo, hi + 1, size=(n, self.shape.mw), dtype=np.int64)
        for i, v in enumerate([lo, hi][: max(0, n - 1)]):
            x[i + 1] = v  # vector 0 stays random (the latency check wants an ordinary one)
        return x

    def words(self, vectors: np.ndarray) -> list[int]:
        s = self.shape
        return [
            pack_fields(v[sf * s.simd : (sf + 1) * s.simd], s.input_bits, signed=bool(s.input_signed))
            for v in vectors
            for sf in range(s.sf)
        ]

    def unpack_inputs(self, words: list[int], n_vectors: int) -> np.ndarray:
        s = self.shape
        elems = [unpack_fields(w, s.input_bits, s.simd, signed=bool(s.input_signed)) for w in words]
        return np.concatenate(elems).reshape(n_vectors, s.mw) if elems else np.zeros((0, s.mw), np.int64)

    def expected(self, vectors: np.ndarray) -> np.ndarray:
        return integer_matvec(self.weights, vectors, self.bias)

    def output_lanes(self, tdata: int) -> np.ndarray:
        return unpack_fields(tdata, self.shape.acc_bits, self.shape.pe, signed=True)


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, cycles per vector and latency."""
    await mvu_bench.stream_full_rate(TB(dut, test_seed=1))


@cocotb.test()
async def stream_idle_backpressure(dut):
    """Random idle on s_axis and random backpressure on m_axis: exact outputs, nothing lost or added."""
    await mvu_bench.stream_idle_backpressure(TB(dut, test_seed=2))


@cocotb.test()
async def reset_mid_vector(dut):
    """Reset in the middle of a vector at every offset, then exact outputs (the source keeps driving through it)."""
    await mvu_bench.reset_mid_vector(TB(dut, test_seed=3, drivers_follow_reset=False))


# ----------------------------------------------------------------------------------------------------------------
# pytest runner (builds the block, runs the testbench above)
# ----------------------------------------------------------------------------------------------------------------

SOURCES = rtl_paths("int_mvu")
TOPLEVEL = "int_mvu"

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
    seed = _seed(shape) if seed is None else seed
    case_dir = directory / "case"
    parameters, case = prepare_case(shape, seed, n_vectors, case_dir)
    return run_full_rate_bench(__file__, case, sources=SOURCES, toplevel=TOPLEVEL, parameters=parameters,
                               directory=case_dir, seed=seed, yosys_netlist=yosys_netlist)


@pytest.mark.parametrize("shape", FAST_SHAPES, ids=lambda s: s.name)
def test_int_mvu_sim(shape, verilator_path, tmp_path):
    check_measurements(shape, run_int_mvu(shape, FAST_VECTORS, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("shape", SLOW_SHAPES, ids=lambda s: s.name)
def test_int_mvu_sim_sweep(shape, verilator_path, tmp_path):
    check_measurements(shape, run_int_mvu(shape, SLOW_VECTORS, tmp_path))


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
    parameters, _ = prepare_case(SYNTH_SHAPE, 0, 1, tmp_path)
    log = yosys_synth(SOURCES, TOPLEVEL, parameters, tmp_path)
    assert "Number of cells" in log


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("shape", [SYNTH_SHAPE, SLOW_SHAPES[2]], ids=lambda s: s.name)
def test_int_mvu_yosys_netlist_sim(shape, verilator_path, tmp_path):
    """Yosys reads the RTL as Verilator does: its synthesised netlist passes the same cocotb tests, cycle for cycle."""
    check_measurements(shape, run_int_mvu(shape, FAST_VECTORS, tmp_path, yosys_netlist=True))
