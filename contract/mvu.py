"""Golden functions of the binary matrix-vector unit (``hw/blocks/binary_mvu/binary_mvu.sv``), written from the math.

A binarised fully connected layer, or a convolution lowered to a matrix (im2col, ``MW = K*K*Cin``), computes for
every output channel ``o`` of ``MH`` the integer dot product of a weight row with the input vector, both bipolar
(INSTA-BNN Sec. 3; XNOR-Net / FINN):

.. math::  \\mathrm{acc}_o = \\sum_{k=0}^{MW-1} w_{o,k}\\, x_k
           = 2\\,\\mathrm{popcount}(\\overline{w_o \\oplus x}) - MW
           \\in [-MW, MW],\\quad \\mathrm{acc}_o \\equiv MW \\pmod 2,

where the second form holds on the bit encoding of ``instabnn.contract.packing`` (``-1 <-> 0``, ``+1 <-> 1``). A
following threshold stage (batch norm + sign folded into integers, FINN's MultiThreshold) outputs, per channel,
how many of the channel's thresholds the accumulator reaches:

.. math::  y_o = \\#\\{\\, n : \\mathrm{acc}_o \\ge T_{o,n} \\,\\}.

With one threshold per channel ``y_o`` is a bit, and it is the next layer's bipolar activation under the same
encoding (``1 <-> +1``).

Everything here is numpy int64 and exact; nothing is derived from the RTL.

Example::

    >>> w = np.array([[+1, -1, +1], [-1, +1, -1]])
    >>> acc = binary_matvec(w, np.array([+1, +1, -1]))
    >>> acc
    array([-1,  1])
    >>> threshold_compare(acc, np.array([[0], [1]]))
    array([0, 1])
"""

from __future__ import annotations

import numpy as np

from instabnn.contract.fixed_point import signed_bits

__all__ = [
    "binary_matvec",
    "threshold_compare",
    "accumulator_bits",
    "integer_range",
    "integer_matvec",
    "integer_accumulator_range",
    "integer_accumulator_bits",
]


def _bipolar(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if not np.all((a == 1) | (a == -1)):
        raise ValueError(f"{name} must be bipolar (-1 or +1)")
    return a.astype(np.int64)


def binary_matvec(weights, x) -> np.ndarray:
    """Exact bipolar matrix-vector products ``acc[..., o] = sum_k weights[o, k] * x[..., k]`` (int64).

    ``weights``: shape ``(MH, MW)`` in {-1, +1}; ``x``: shape ``(..., MW)`` in {-1, +1}. Returns ``(..., MH)``,
    every entry in ``[-MW, MW]`` with the parity of ``MW``; it equals ``2 * popcount(xnor(w_o, x)) - MW``.
    """
    w = _bipolar(weights, "weights")
    v = _bipolar(x, "x")
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D (MH, MW), got shape {w.shape}")
    if v.ndim < 1 or v.shape[-1] != w.shape[1]:
        raise ValueError(f"x must have shape (..., {w.shape[1]}), got {v.shape}")
    # integer matmul: exact (|acc| <= MW, far from int64 overflow)
    return v @ w.T


def threshold_compare(acc, thresholds) -> np.ndarray:
    """Per output channel, the number of thresholds reached: ``y[..., o] = sum_n (acc[..., o] >= thr[o, n])``.

    FINN's MultiThreshold convention (without its output scale and bias). ``acc``: integers of shape ``(..., MH)``.
    ``thresholds``: shape ``(MH, N)`` (``N`` thresholds per channel), ``(1, N)`` (shared by all channels) or
    ``(MH,)`` (one per channel, the same as ``(MH, 1)``). Thresholds may be non-integer and may lie outside the
    accumulator range (then a channel's output is constant). Returns int64 of shape ``(..., MH)`` in ``[0, N]``;
    with one threshold per channel this is the output bit (``1 <-> +1``).
    """
    a = np.asarray(acc)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"acc must be integer, got {a.dtype}")
    t = np.asarray(thresholds)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(f"thresholds must have shape (MH, N), (1, N) or (MH,), got {np.shape(thresholds)}")
    mh = a.shape[-1]
    if t.shape[0] not in (1, mh):
        raise ValueError(f"thresholds have {t.shape[0]} rows for {mh} channels")
    t = np.broadcast_to(t, (mh, t.shape[1]))
    return np.sum(a[..., :, None] >= t, axis=-1, dtype=np.int64)


def accumulator_bits(mw: int) -> int:
    """Width of the smallest two's-complement integer that holds every accumulator value ``[-MW, MW]``.

    >>> [accumulator_bits(n) for n in (1, 2, 3, 4, 15, 16, 18, 288)]
    [2, 3, 3, 4, 5, 6, 6, 10]
    """
    mw = int(mw)
    if mw < 1:
        raise ValueError(f"MW must be >= 1, got {mw}")
    return signed_bits(-mw, mw)


# ----------------------------------------------------------------------------------------------------------------
# Integer matrix-vector unit (hw/blocks/int_mvu/int_mvu.sv): the 8-bit first convolution, the real 1x1 downsampling
# convolutions and the classifier
# ----------------------------------------------------------------------------------------------------------------


def integer_range(bits: int, signed: bool = True) -> tuple[int, int]:
    """``(lo, hi)`` of a ``bits``-bit integer: ``[-2^(bits-1), 2^(bits-1) - 1]`` signed, ``[0, 2^bits - 1]`` unsigned.

    >>> integer_range(8), integer_range(8, signed=False), integer_range(0)
    ((-128, 127), (0, 255), (0, 0))

    ``bits = 0`` is the empty field (the value 0): used for "no bias".
    """
    bits = int(bits)
    if bits < 0:
        raise ValueError(f"bits must be >= 0, got {bits}")
    if bits == 0:
        return 0, 0
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _check_in_range(a: np.ndarray, bits: int, signed: bool, name: str):
    lo, hi = integer_range(bits, signed)
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{name} must be {'signed' if signed else 'unsigned'} {bits}-bit integers in [{lo}, {hi}]")


def integer_matvec(weights, x, bias=None) -> np.ndarray:
    """Exact integer matrix-vector products ``acc[..., o] = bias[o] + sum_k weights[o, k] * x[..., k]`` (int64).

    The integer MVU's math (INSTA-BNN keeps the first convolution, the real-valued 1x1 downsampling shortcuts and
    the classifier in fixed point; their integer codes meet here). ``weights``: integers of shape ``(MH, MW)``;
    ``x``: integers of shape ``(..., MW)``; ``bias``: ``None`` or integers of shape ``(MH,)``. Returns ``(..., MH)``.
    The result is exact: an error is raised where a worst-case sum could leave int64.

    >>> integer_matvec(np.array([[1, -2], [3, 4]]), np.array([5, 6]), bias=np.array([10, -1]))
    array([ 3, 38])
    """
    w = np.asarray(weights)
    v = np.asarray(x)
    for a, name in ((w, "weights"), (v, "x")):
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be integer, got {a.dtype}")
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D (MH, MW), got shape {w.shape}")
    if v.ndim < 1 or v.shape[-1] != w.shape[1]:
        raise ValueError(f"x must have shape (..., {w.shape[1]}), got {v.shape}")
    b = np.zeros(w.shape[0], dtype=np.int64)
    if bias is not None:
        b = np.asarray(bias)
        if not np.issubdtype(b.dtype, np.integer) or b.shape != (w.shape[0],):
            raise ValueError(f"bias must be integers of shape ({w.shape[0]},), got {b.dtype} {b.shape}")
    wmax = int(np.abs(w.astype(object)).max()) if w.size else 0
    xmax = int(np.abs(v.astype(object)).max()) if v.size else 0
    bmax = int(np.abs(b.astype(object)).max()) if b.size else 0
    if w.shape[1] * wmax * xmax + bmax >= 1 << 62:
        raise ValueError("integer_matvec: the worst-case sum does not fit in int64")
    # numpy's integer matmul is exact (no BLAS, no floating point)
    return v.astype(np.int64) @ w.astype(np.int64).T + b.astype(np.int64)


def integer_accumulator_range(
    mw: int, weight_bits: int, input_bits: int, input_signed: bool = True, bias_bits: int = 0
) -> tuple[int, int]:
    """Worst-case ``(lo, hi)`` of :func:`integer_matvec` over all signed ``weight_bits``-bit weights, ``input_bits``-bit
    inputs (signed or unsigned) and signed ``bias_bits``-bit biases (0: no bias):

    .. math::  [\,MW \min_{w,x} w x + b_{lo},\; MW \max_{w,x} w x + b_{hi}\,],

    the extreme products being products of the ends of the two ranges.

    >>> integer_accumulator_range(1, 8, 8)            # -128 * -128 = 16384; -128 * 127 = -16256
    (-16256, 16384)
    >>> integer_accumulator_range(27, 8, 8, input_signed=False)
    (-881280, 874395)
    """
    mw = int(mw)
    if mw < 1:
        raise ValueError(f"MW must be >= 1, got {mw}")
    if weight_bits < 2:
        raise ValueError(f"weight_bits must be >= 2 (signed), got {weight_bits}")
    if input_bits < (2 if input_signed else 1):
        raise ValueError(f"input_bits must be >= {2 if input_signed else 1}, got {input_bits}")
    wlo, whi = integer_range(weight_bits, True)
    xlo, xhi = integer_range(input_bits, bool(input_signed))
    blo, bhi = integer_range(bias_bits, True)
    products = [wlo * xlo, wlo * xhi, whi * xlo, whi * xhi]
    return mw * min(products) + blo, mw * max(products) + bhi


def integer_accumulator_bits(
    mw: int, weight_bits: int, input_bits: int, input_signed: bool = True, bias_bits: int = 0
) -> int:
    """Signed accumulator width of the integer MVU: the smallest two's-complement width holding
    :func:`integer_accumulator_range` (the RTL derives the same number from the same parameters).

    >>> integer_accumulator_bits(27, 8, 8, input_signed=False)   # 3x3x3 first convolution on uint8 pixels
    21
    >>> integer_accumulator_bits(64, 8, 8, bias_bits=16)          # a 64-input classifier with 16-bit biases
    22
    """
    return signed_bits(*integer_accumulator_range(mw, weight_bits, input_bits, input_signed, bias_bits))
