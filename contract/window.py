"""Golden functions of the sliding-window generator (``hw/blocks/sliding_window/sliding_window.sv``): im2col in the stream order
that feeds a matrix-vector unit, with a pad value.

A K x K convolution with stride S and padding P of a feature map x (H x W pixels, C channels) is, per output pixel
(oy, ox), a matrix-vector product of the weight matrix with the pixel's window vector (FINN's
ConvolutionInputGenerator + MVAU lowering):

.. math::  \\mathrm{win}_{oy,ox}[(k_y K + k_x) C + c] = \\tilde x[oy\\,S + k_y - P,\\; ox\\,S + k_x - P,\\; c],
           \\qquad y[oy, ox, o] = \\sum_j M[o, j]\\, \\mathrm{win}_{oy,ox}[j],

where :math:`\\tilde x` is x with every position outside the map equal to the pad value, and the weight matrix
``M`` (``MH = Cout`` rows, ``MW = K*K*C`` columns) is the convolution kernel ``w[o, c, ky, kx]`` (PyTorch layout)
reordered so that **column** ``(ky*K + kx)*C + c`` **of row** ``o`` **holds** ``w[o, c, ky, kx]``
(:func:`conv_weight_matrix`). Output size: ``OH = floor((H + 2P - K) / S) + 1`` (and ``OW`` alike).

Stream order (FINN): the input is pixel-major, row by row, channels minor (``x[h, w, c]``, NHWC without N), in beats
of ``SIMD`` channels; the output is, for each output pixel (row by row), for each kernel position ``(ky, kx)``
(``ky`` major), the ``C`` channels in beats of ``SIMD``: exactly the window vectors one after the other, split into
``MW / SIMD`` beats, which is what a matrix-vector unit with ``MW = K*K*C`` and that ``SIMD`` consumes.

Pad values: the binary network pads with -1 (bit 0 under the packing contract, ``instabnn.contract.packing``), the
integer network with 0. These functions move values and never look at them, so they apply equally to values and
to their bit codes (with the pad value's code).

Example::

    >>> x = np.arange(2 * 2 * 1).reshape(2, 2, 1)        # H = W = 2, C = 1: [[0, 1], [2, 3]]
    >>> im2col(x, k=3, stride=1, pad=1, pad_value=-1)[0, 0]   # the window around pixel (0, 0)
    array([-1, -1, -1, -1,  0,  1, -1,  2,  3])
"""

from __future__ import annotations

import numpy as np

__all__ = ["conv_output_dim", "im2col", "window_beats", "feature_map_beats", "conv_weight_matrix"]


def conv_output_dim(size: int, k: int, stride: int = 1, pad: int = 0) -> int:
    """``floor((size + 2*pad - k) / stride) + 1``; an error where no window fits."""
    if k < 1 or stride < 1 or pad < 0:
        raise ValueError(f"kernel ({k}) and stride ({stride}) must be >= 1, pad ({pad}) >= 0")
    if size + 2 * pad < k:
        raise ValueError(f"a {k}-wide kernel does not fit {size} + 2*{pad}")
    return (size + 2 * pad - k) // stride + 1


def im2col(x, k: int, stride: int = 1, pad: int = 0, pad_value: int = 0) -> np.ndarray:
    """The window vectors of ``x`` (shape ``(H, W, C)``): an array ``(OH, OW, K*K*C)`` with
    ``out[oy, ox, (ky*K + kx)*C + c] = x[oy*S + ky - P, ox*S + kx - P, c]``, or ``pad_value`` outside the map.
    Same dtype as ``x`` (the pad value must fit it)."""
    a = np.asarray(x)
    if a.ndim != 3:
        raise ValueError(f"x must have shape (H, W, C), got {a.shape}")
    h, w, c = a.shape
    oh, ow = conv_output_dim(h, k, stride, pad), conv_output_dim(w, k, stride, pad)
    if np.issubdtype(a.dtype, np.integer) and not np.iinfo(a.dtype).min <= pad_value <= np.iinfo(a.dtype).max:
        raise ValueError(f"pad value {pad_value} does not fit dtype {a.dtype}")
    padded = np.full((h + 2 * pad + stride, w + 2 * pad + stride, c), pad_value, dtype=a.dtype)
    padded[pad : pad + h, pad : pad + w] = a
    out = np.empty((oh, ow, k, k, c), dtype=a.dtype)
    for ky in range(k):
        for kx in range(k):
            out[:, :, ky, kx, :] = padded[ky : ky + oh * stride : stride, kx : kx + ow * stride : stride]
    return out.reshape(oh, ow, k * k * c)


def feature_map_beats(x, simd: int) -> np.ndarray:
    """The input stream of a feature map ``x`` (shape ``(H, W, C)``): ``(H*W*C/SIMD, SIMD)``, beat ``(h*W + w)*CF
    + cf`` holding channels ``cf*SIMD .. cf*SIMD + SIMD - 1`` of pixel ``(h, w)`` (``CF = C / SIMD``)."""
    a = np.asarray(x)
    if a.ndim != 3 or simd < 1 or a.shape[2] % simd:
        raise ValueError(f"x must have shape (H, W, C) with SIMD ({simd}) dividing C, got {a.shape}")
    return a.reshape(-1, simd)


def window_beats(x, k: int, stride: int, pad: int, pad_value: int, simd: int) -> np.ndarray:
    """The output stream of the sliding-window generator for ``x`` (shape ``(H, W, C)``):
    ``(OH*OW*K*K*C/SIMD, SIMD)``, the window vectors of :func:`im2col` in output-pixel order, ``SIMD`` elements per
    beat. Beat ``((oy*OW + ox)*K*K + ky*K + kx)*CF + cf`` holds channels ``cf*SIMD ..`` of kernel position
    ``(ky, kx)`` of output pixel ``(oy, ox)``."""
    a = np.asarray(x)
    if a.ndim != 3 or simd < 1 or a.shape[2] % simd:
        raise ValueError(f"x must have shape (H, W, C) with SIMD ({simd}) dividing C, got {a.shape}")
    return im2col(a, k, stride, pad, pad_value).reshape(-1, simd)


def conv_weight_matrix(w) -> np.ndarray:
    """The matrix-vector unit's weight matrix of a convolution kernel ``w`` of shape ``(Cout, C, K, K)`` (PyTorch):
    ``M[o, (ky*K + kx)*C + c] = w[o, c, ky, kx]``, shape ``(Cout, K*K*C)``."""
    a = np.asarray(w)
    if a.ndim != 4 or a.shape[2] != a.shape[3]:
        raise ValueError(f"w must have shape (Cout, C, K, K), got {a.shape}")
    return a.transpose(0, 2, 3, 1).reshape(a.shape[0], -1)
