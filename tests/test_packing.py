"""The bit-level packing contract (instabnn.contract.packing) and the binary MVU memory files (instabnn.hw.blocks.binary_mvu.spec):
round trips, the documented bit positions, and the file layout the RTL reads."""

from __future__ import annotations

import numpy as np
import pytest

from instabnn.hw.blocks.binary_mvu.spec import (
    BinaryMvuShape,
    hardware_thresholds,
    threshold_words,
    weight_words,
    weights_from_words,
    write_threshold_file,
    write_weight_file,
)
from instabnn.hw.blocks.common.memfile import read_memh
from instabnn.contract.packing import (
    bipolar_to_bits,
    bits_to_bipolar,
    hex_digits,
    pack_bipolar,
    pack_bits,
    pack_fields,
    pack_words,
    to_hex,
    unpack_bipolar,
    unpack_bits,
    unpack_fields,
    unpack_words,
)


def test_bipolar_bit_encoding():
    assert bipolar_to_bits([-1, 1, 1, -1]).tolist() == [0, 1, 1, 0]
    assert bits_to_bipolar([0, 1]).tolist() == [-1, 1]
    with pytest.raises(ValueError):
        bipolar_to_bits([0, 1])
    with pytest.raises(ValueError):
        bits_to_bipolar([2])


def test_little_endian_element_order():
    # element i at bit i: only element 2 is +1 -> 0b100
    assert pack_bipolar(np.array([-1, -1, 1, -1])) == 0b0100
    assert pack_bits([1, 0, 0, 0, 0, 0, 0, 0, 1]) == 0x101
    assert unpack_bipolar(0b0100, 4).tolist() == [-1, -1, 1, -1]


@pytest.mark.parametrize("n", [1, 7, 8, 9, 64, 65, 288])
def test_bipolar_round_trip(n):
    rng = np.random.default_rng(n)
    x = rng.choice([-1, 1], size=n)
    value = pack_bipolar(x)
    assert 0 <= value < 1 << n
    np.testing.assert_array_equal(unpack_bipolar(value, n), x)
    np.testing.assert_array_equal(bits_to_bipolar(unpack_bits(value, n)), x)


def test_xnor_popcount_identity():
    """sum_k w_k x_k = 2 popcount(xnor(w, x)) - n on the packed words."""
    rng = np.random.default_rng(0)
    for n in (1, 5, 32, 100):
        w, x = rng.choice([-1, 1], size=(2, n))
        xnor = ~(pack_bipolar(w) ^ pack_bipolar(x)) & ((1 << n) - 1)
        assert int(w @ x) == 2 * bin(xnor).count("1") - n


@pytest.mark.parametrize("width, signed", [(1, False), (4, True), (6, True), (10, False), (33, True)])
def test_fields_round_trip(width, signed):
    rng = np.random.default_rng(width)
    lo, hi = (-(1 << (width - 1)), 1 << (width - 1)) if signed else (0, 1 << width)
    values = rng.integers(lo, hi, size=7)
    packed = pack_fields(values, width, signed=signed)
    np.testing.assert_array_equal(unpack_fields(packed, width, 7, signed=signed), values)


@pytest.mark.parametrize("width", [63, 64, 65, 128])
def test_fields_round_trip_wide_unsigned_words(width):
    """Lanes of 64 bits and more (SIMD = 64 weight words): exact, whatever their top bit (no float rounding)."""
    rng = np.random.default_rng(width)
    lanes = [int.from_bytes(rng.bytes(width // 8 + 1), "little") % (1 << width) for _ in range(5)]
    lanes[0] = (1 << width) - 1
    packed = pack_fields(lanes, width, signed=False)
    assert [(packed >> (p * width)) & ((1 << width) - 1) for p in range(5)] == lanes
    assert unpack_fields(packed, width, 5).tolist() == lanes
    with pytest.raises(TypeError):
        pack_fields([1.0], width)


def test_fields_lane_positions_and_range():
    assert pack_fields([-1, 2], width=4) == 0x2F  # lane 0 at the low bits, two's complement
    assert unpack_fields(0x2F, 4, 2, signed=True).tolist() == [-1, 2]
    with pytest.raises(ValueError):
        pack_fields([8], width=4, signed=True)
    with pytest.raises(ValueError):
        pack_fields([-1], width=4, signed=False)
    with pytest.raises(ValueError):
        unpack_fields(1 << 8, 4, 2)


def test_words_round_trip_and_order():
    x = np.array([1, -1, 1, 1, -1, -1])
    assert pack_words(x, 2) == [0b01, 0b11, 0b00]  # word j = elements 2j, 2j+1
    np.testing.assert_array_equal(unpack_words(pack_words(x, 3), 3), x)
    batch = np.random.default_rng(1).choice([-1, 1], size=(4, 5, 12))
    words = pack_words(batch, 4)
    assert words.shape == (4, 5, 3)
    np.testing.assert_array_equal(unpack_words(list(words[2, 3]), 4), batch[2, 3])
    with pytest.raises(ValueError):
        pack_words(x, 4)


def test_hex():
    assert hex_digits(1) == 1 and hex_digits(4) == 1 and hex_digits(5) == 2 and hex_digits(18) == 5
    assert to_hex(0x2F, 9) == "02f"
    with pytest.raises(ValueError):
        to_hex(0x200, 9)


# ---- binary MVU memory files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        BinaryMvuShape(18, 4, 9, 2),
        BinaryMvuShape(64, 8, 16, 4, 1),
        BinaryMvuShape(7, 3, 1, 1),
        BinaryMvuShape(1, 1, 1, 1),
        BinaryMvuShape(128, 8, 64, 4),  # 64-bit lanes: words above 2**63 must stay exact
    ],
    ids=lambda s: s.name,
)
def test_weight_file_round_trip(shape, tmp_path):
    w = np.random.default_rng(shape.mw).choice([-1, 1], size=(shape.mh, shape.mw))
    path = write_weight_file(tmp_path / "w.mem", w, shape)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("// generated")
    assert len(lines) == 1 + shape.nf * shape.sf
    assert all(len(line) == hex_digits(shape.pe * shape.simd) for line in lines[1:])
    words = read_memh(path, shape.pe * shape.simd)
    assert words == weight_words(w, shape)
    np.testing.assert_array_equal(weights_from_words(words, shape), w)


def test_weight_word_layout():
    """Line f = nf*SF + sf; lane pe at bits [pe*SIMD +: SIMD] = W[nf*PE + pe, sf*SIMD : (sf+1)*SIMD]."""
    shape = BinaryMvuShape(mw=4, mh=4, simd=2, pe=2)
    w = -np.ones((4, 4), dtype=int)
    w[3, 2] = 1  # channel 3 = nf 1, lane 1; element 2 = sf 1, bit 0
    words = weight_words(w, shape)
    assert words == [0, 0, 0, 1 << 2]  # f = 1*2 + 1 = 3, lane 1 starts at bit 2


def test_thresholds_hardware_form():
    mw = 5
    t = np.array([-9.0, -5.0, -0.5, 0.0, 2.5, 5.0, 6.0, 100.0])
    hw = hardware_thresholds(t, mw)
    assert hw.tolist() == [-5, -5, 0, 0, 3, 5, 6, 6]
    acc = np.arange(-mw, mw + 1)[:, None]
    np.testing.assert_array_equal(acc >= t, acc >= hw)  # no comparison changes
    assert hardware_thresholds(np.array([[3], [-7]]), mw).tolist() == [3, -5]
    with pytest.raises(ValueError):
        hardware_thresholds(np.zeros((2, 2)), mw)


def test_threshold_file_round_trip(tmp_path):
    shape = BinaryMvuShape(mw=64, mh=8, simd=16, pe=4, thresholds=1)
    t = np.array([-64, -3, 0, 7, 64, 65, 200, -1000])
    path = write_threshold_file(tmp_path / "t.mem", t, shape)
    words = read_memh(path, shape.pe * shape.thresh_bits)
    assert words == threshold_words(t, shape)
    lanes = np.concatenate([unpack_fields(wd, shape.thresh_bits, shape.pe, signed=True) for wd in words])
    np.testing.assert_array_equal(lanes, hardware_thresholds(t, shape.mw))


def test_shape_derived_values():
    s = BinaryMvuShape(mw=288, mh=16, simd=32, pe=8)
    assert (s.sf, s.nf, s.acc_bits, s.out_width, s.cycles_per_vector) == (9, 2, 10, 80, 18)
    assert BinaryMvuShape(64, 8, 16, 4, 1).out_width == 4
    bad_shapes = [
        dict(mw=18, mh=4, simd=4, pe=2),
        dict(mw=18, mh=4, simd=9, pe=3),
        dict(mw=8, mh=2, simd=8, pe=1, thresholds=2),
    ]
    for bad in bad_shapes:
        with pytest.raises(ValueError):
            BinaryMvuShape(**bad)
    params = BinaryMvuShape(64, 8, 16, 4, 1).rtl_parameters("w.mem", "t.mem")
    assert params == {
        "MW": 64, "MH": 8, "SIMD": 16, "PE": 4, "THRESHOLDS": 1, "RAM_STYLE": '"auto"', "WEIGHT_FILE": '"w.mem"',
        "THRESH_FILE": '"t.mem"'
    }
    block = BinaryMvuShape(64, 8, 16, 4, 1, ram_style="block").rtl_parameters("w.mem", "t.mem")
    assert block["RAM_STYLE"] == '"block"'
