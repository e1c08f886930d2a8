"""Golden functions of the binary matrix-vector unit (instabnn.contract.mvu) against the definitions."""

from __future__ import annotations

import numpy as np
import pytest

from instabnn.contract.packing import pack_bipolar
from instabnn.contract.mvu import accumulator_bits, binary_matvec, threshold_compare


def test_matvec_is_the_dot_product():
    rng = np.random.default_rng(0)
    w = rng.choice([-1, 1], size=(5, 13))
    x = rng.choice([-1, 1], size=(4, 13))
    acc = binary_matvec(w, x)
    assert acc.dtype == np.int64 and acc.shape == (4, 5)
    for b in range(4):
        for o in range(5):
            assert acc[b, o] == sum(int(w[o, k]) * int(x[b, k]) for k in range(13))


def test_matvec_equals_xnor_popcount_and_range():
    rng = np.random.default_rng(1)
    mw = 37
    w = rng.choice([-1, 1], size=(6, mw))
    x = rng.choice([-1, 1], size=(20, mw))
    acc = binary_matvec(w, x)
    mask = (1 << mw) - 1
    for b in range(20):
        for o in range(6):
            pc = bin(~(pack_bipolar(w[o]) ^ pack_bipolar(x[b])) & mask).count("1")
            assert acc[b, o] == 2 * pc - mw
    assert np.all(np.abs(acc) <= mw) and np.all((acc - mw) % 2 == 0)
    assert binary_matvec(w, w[2])[2] == mw and binary_matvec(w, -w[2])[2] == -mw


def test_matvec_rejects_non_bipolar_and_bad_shapes():
    with pytest.raises(ValueError):
        binary_matvec(np.zeros((2, 3)), np.ones(3))
    with pytest.raises(ValueError):
        binary_matvec(np.ones((2, 3)), np.ones(4))
    with pytest.raises(ValueError):
        binary_matvec(np.ones(3), np.ones(3))


def test_threshold_compare_counts_reached_thresholds():
    acc = np.array([[-3, 0, 5], [4, -8, 1]])
    thr = np.array([[-3, 0], [1, 2], [5, 6]])
    np.testing.assert_array_equal(threshold_compare(acc, thr), [[1, 0, 1], [2, 0, 0]])
    # one threshold per channel: the output bit (acc >= T)
    np.testing.assert_array_equal(threshold_compare(acc, np.array([0, 0, 1])), (acc >= [0, 0, 1]).astype(int))
    # (1, N): shared by all channels; non-integer thresholds
    np.testing.assert_array_equal(threshold_compare(acc, np.array([[-0.5, 4.5]])), [[0, 1, 2], [1, 0, 1]])
    with pytest.raises(ValueError):
        threshold_compare(acc, np.zeros((2, 1)))
    with pytest.raises(ValueError):
        threshold_compare(acc.astype(float), np.zeros(3))


@pytest.mark.parametrize("mw", [1, 2, 3, 7, 8, 15, 16, 17, 18, 64, 288, 4608])
def test_accumulator_bits_is_minimal(mw):
    b = accumulator_bits(mw)
    assert -(1 << (b - 1)) <= -mw and mw <= (1 << (b - 1)) - 1  # holds [-MW, MW]
    assert not (mw <= (1 << (b - 2)) - 1) if b > 1 else True  # one bit fewer does not
    assert b == mw.bit_length() + 1
