"""Golden functions of the binary matrix-vector unit (``hw/rtl/binary_mvu.sv``), written from the math.

A binarised fully connected layer, or a convolution lowered to a matrix (im2col, ``MW = K*K*Cin``), computes for
every output channel ``o`` of ``MH`` the integer dot product of a weight row with the input vector, both bipolar
(INSTA-BNN Sec. 3; XNOR-Net / FINN):

.. math::  \\mathrm{acc}_o = \\sum_{k=0}^{MW-1} w_{o,k}\\, x_k
           = 2\\,\\mathrm{popcount}(\\overline{w_o \\oplus x}) - MW
           \\in [-MW, MW],\\quad \\mathrm{acc}_o \\equiv MW \\pmod 2,

where the second form holds on the bit encoding of ``instabnn.hw.packing`` (``-1 <-> 0``, ``+1 <-> 1``). A
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

from instabnn.hw.reference.fixed_point import signed_bits

__all__ = ["binary_matvec", "threshold_compare", "accumulator_bits"]


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
