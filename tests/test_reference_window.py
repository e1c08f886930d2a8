"""The sliding-window golden functions (instabnn.contract.window) against torch: the window order paired with
the documented weight layout is a convolution (torch.nn.functional.conv2d), with zero and with -1 padding, and
the windows are torch.nn.functional.unfold's columns in another order."""

from __future__ import annotations

import numpy as np
import pytest

from instabnn.contract.mvu import binary_matvec, integer_matvec
from instabnn.contract.window import (
    conv_output_dim,
    conv_weight_matrix,
    feature_map_beats,
    im2col,
    window_beats,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional

CASES = [  # (C, H, W, K, S, P)
    (3, 8, 8, 3, 1, 1),  # the first convolution
    (4, 7, 5, 3, 2, 1),  # a downsampling 3x3 block, odd sizes
    (5, 6, 6, 1, 2, 0),  # the 1x1 stride-2 shortcut
    (2, 5, 6, 3, 1, 0),
    (3, 4, 5, 2, 2, 1),
    (1, 3, 3, 3, 1, 1),
]


def _ids(case):
    return "c{}_h{}_w{}_k{}_s{}_p{}".format(*case)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_windows_times_weight_matrix_is_conv2d(case):
    c, h, w, k, s, p = case
    rng = np.random.default_rng(sum(case))
    x = rng.integers(-128, 128, size=(h, w, c))
    kernel = rng.integers(-128, 128, size=(6, c, k, k))
    ref = F.conv2d(torch.tensor(x.transpose(2, 0, 1)[None], dtype=torch.float64),
                   torch.tensor(kernel, dtype=torch.float64), stride=s, padding=p)[0].numpy()
    got = integer_matvec(conv_weight_matrix(kernel), im2col(x, k, s, p, pad_value=0))  # (OH, OW, 6)
    assert got.shape[:2] == (conv_output_dim(h, k, s, p), conv_output_dim(w, k, s, p))
    np.testing.assert_array_equal(got.transpose(2, 0, 1), ref.astype(np.int64))


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_binary_windows_pad_with_minus_one(case):
    """The binary network pads with -1: conv2d of the input padded with -1 (F.pad), no padding in conv2d."""
    c, h, w, k, s, p = case
    rng = np.random.default_rng(sum(case) + 1)
    x = rng.choice([-1, 1], size=(h, w, c))
    kernel = rng.choice([-1, 1], size=(4, c, k, k))
    xt = F.pad(torch.tensor(x.transpose(2, 0, 1)[None], dtype=torch.float64), (p, p, p, p), value=-1.0)
    ref = F.conv2d(xt, torch.tensor(kernel, dtype=torch.float64), stride=s)[0].numpy()
    got = binary_matvec(conv_weight_matrix(kernel), im2col(x, k, s, p, pad_value=-1))
    np.testing.assert_array_equal(got.transpose(2, 0, 1), ref.astype(np.int64))


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_windows_are_unfold_columns_reordered(case):
    """F.unfold orders a window c-major ((c*K + ky)*K + kx); im2col orders it (ky*K + kx)*C + c."""
    c, h, w, k, s, p = case
    x = np.random.default_rng(sum(case) + 2).integers(-9, 10, size=(h, w, c))
    cols = F.unfold(torch.tensor(x.transpose(2, 0, 1)[None], dtype=torch.float64), k, padding=p, stride=s)[0].numpy()
    oh, ow = conv_output_dim(h, k, s, p), conv_output_dim(w, k, s, p)
    ref = cols.reshape(c, k, k, oh, ow).transpose(3, 4, 1, 2, 0).reshape(oh, ow, k * k * c)
    np.testing.assert_array_equal(im2col(x, k, s, p, pad_value=0), ref.astype(np.int64))


def test_stream_order_by_index():
    """Beat ((oy*OW + ox)*K*K + ky*K + kx)*CF + cf of the output holds channels cf*SIMD.. of input pixel
    (oy*S + ky - P, ox*S + kx - P) or the pad value; the input beats are pixel-major, channels minor."""
    c, h, w, k, s, p, simd = 4, 5, 4, 3, 2, 1, 2
    cf = c // simd
    x = np.arange(h * w * c).reshape(h, w, c)
    inp = feature_map_beats(x, simd)
    assert inp.shape == (h * w * cf, simd)
    assert inp[(2 * w + 3) * cf + 1].tolist() == x[2, 3, 2:4].tolist()
    beats = window_beats(x, k, s, p, -7, simd)
    oh, ow = conv_output_dim(h, k, s, p), conv_output_dim(w, k, s, p)
    assert beats.shape == (oh * ow * k * k * cf, simd)
    for oy in range(oh):
        for ox in range(ow):
            for ky in range(k):
                for kx in range(k):
                    for f in range(cf):
                        beat = beats[((oy * ow + ox) * k * k + ky * k + kx) * cf + f]
                        iy, ix = oy * s + ky - p, ox * s + kx - p
                        if 0 <= iy < h and 0 <= ix < w:
                            assert beat.tolist() == x[iy, ix, f * simd : (f + 1) * simd].tolist()
                        else:
                            assert beat.tolist() == [-7] * simd


def test_docstring_example_and_errors():
    x = np.arange(4).reshape(2, 2, 1)
    assert im2col(x, 3, 1, 1, -1)[0, 0].tolist() == [-1, -1, -1, -1, 0, 1, -1, 2, 3]
    assert conv_output_dim(32, 3, 2, 1) == 16 and conv_output_dim(32, 1, 2, 0) == 16
    with pytest.raises(ValueError):
        conv_output_dim(1, 3, 1, 0)
    with pytest.raises(ValueError):
        im2col(np.zeros((2, 2)), 1)
    with pytest.raises(ValueError):
        window_beats(np.zeros((2, 2, 3)), 1, 1, 0, 0, simd=2)
    with pytest.raises(ValueError):
        im2col(np.zeros((2, 2, 1), dtype=np.uint8), 3, 1, 1, pad_value=-1)
