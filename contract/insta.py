"""Integer golden function of the INSTA-Th unit: exact power sums, the per-frame threshold, the compare.

The block input reaches the hardware as integers q with x = S * q (S = 2^e, the residual stream's scale) and
``input_bits`` signed bits. With m = mu / S, k = sigma / S and N = H * W pixels per channel and frame, INSTA-Th's
threshold in the q domain is a polynomial in the exact power sums P_j = sum_{h,w} q^j
(the project's algorithm note, Sec. 6):

    T = c0 + c1 P1 + c2 P2 + c3 P3,   c3 = alpha / (N k^2),  c2 = -3 m c3,  c1 = 3 m^2 c3,
                                      c0 = m + k beta - N m^3 c3,
    b = +1  iff  q >= T.

Fixed point (chosen at export, from worst-case bounds, never guessed):

- P1, P2, P3 are exact signed integers; their widths come from the extreme values of q (see
  :func:`power_sum_ranges`).
- c_j is stored as the integer C_j = round(c_j * 2^F_j) (round half away from zero), with
  F_j = guard_bits + 1 + ceil(log2(max |P_j|)) (P_0 = 1), so that each term's rounding error
  |c_j - C_j 2^-F_j| * |P_j| <= 2^-(guard_bits + 2) and the threshold's total error is below 2^-guard_bits.
- The per-frame threshold is computed exactly in the common fraction F = max F_j,
  T_fx = sum_j C_j * P_j * 2^(F - F_j), and reduced to the integer t = ceil(T_fx / 2^F), clamped to
  [q_min, q_max + 1]; then for integer q:  q >= t  <=>  q * 2^F >= T_fx. The comparator per pixel is
  ``input_bits + 1`` bits wide.

Static thresholds (RSign) are the special case c1 = c2 = c3 = 0: t = ceil(tau / S).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from instabnn.contract.fixed_point import round_half_away, signed_bits


def power_sum_ranges(input_bits: int, pixels: int) -> list[tuple[int, int]]:
    """[(lo, hi)] of P0 = N, P1, P2, P3 for ``pixels`` values of ``input_bits``-bit signed integers."""
    qmin, qmax = -(1 << (input_bits - 1)), (1 << (input_bits - 1)) - 1
    ranges = [(pixels, pixels)]
    for j in (1, 2, 3):
        values = [qmin ** j, qmax ** j] + ([0] if j % 2 == 0 else [])
        ranges.append((pixels * min(values), pixels * max(values)))
    return ranges


def power_sum_bits(input_bits: int, pixels: int) -> tuple[int, int, int]:
    """Signed widths of the exact P1, P2, P3 over ``pixels`` values of ``input_bits``-bit signed integers."""
    r = power_sum_ranges(input_bits, pixels)
    return tuple(signed_bits(*r[j]) for j in (1, 2, 3))


def polynomial_bits(coeffs, fracs, input_bits: int, pixels: int) -> int:
    """Width of T_fx = sum_j C_j P_j 2^(F - F_j), F = max F_j, over the worst case of every P_j and C_j."""
    ranges = power_sum_ranges(input_bits, pixels)
    frac = max(fracs)
    lo = hi = 0
    for j, cs in enumerate(coeffs):
        shift = 1 << (frac - fracs[j])
        products = [c * p * shift for c in (min(cs), max(cs)) for p in ranges[j]]
        lo, hi = lo + min(products + [0]), hi + max(products + [0])
    return signed_bits(lo, hi)


@dataclass(frozen=True)
class InstaThConstants:
    """The frozen integer constants of one INSTA-Th layer (or a static threshold layer)."""

    input_bits: int
    pixels: int
    coeffs: tuple[tuple[int, ...], ...]  # coeffs[j][c] = C_j of channel c, j = 0..3
    fracs: tuple[int, ...]  # F_j
    guard_bits: int

    @property
    def channels(self) -> int:
        return len(self.coeffs[0])

    @property
    def frac(self) -> int:
        return max(self.fracs)

    @property
    def power_sum_bits(self) -> tuple[int, int, int]:
        return power_sum_bits(self.input_bits, self.pixels)

    @property
    def coeff_bits(self) -> tuple[int, ...]:
        return tuple(signed_bits(min(c), max(c)) for c in self.coeffs)

    @property
    def threshold_accumulator_bits(self) -> int:
        return polynomial_bits(self.coeffs, self.fracs, self.input_bits, self.pixels)

    @property
    def threshold_bits(self) -> int:
        return self.input_bits + 1

    @classmethod
    def from_dict(cls, d: dict) -> "InstaThConstants":
        """Inverse of :meth:`to_dict` (the derived widths there are ignored; they follow from the rest)."""
        return cls(int(d["input_bits"]), int(d["pixels"]), tuple(tuple(int(v) for v in c) for c in d["coeffs"]),
                   tuple(int(f) for f in d["fracs"]), int(d["guard_bits"]))

    def to_dict(self) -> dict:
        return {"input_bits": self.input_bits, "pixels": self.pixels, "fracs": list(self.fracs),
                "guard_bits": self.guard_bits, "coeffs": [list(c) for c in self.coeffs],
                "power_sum_bits": list(self.power_sum_bits), "coeff_bits": list(self.coeff_bits),
                "threshold_accumulator_bits": self.threshold_accumulator_bits,
                "threshold_bits": self.threshold_bits}


def insta_th_constants(mu, sigma, alpha, beta, scale: float, pixels: int, input_bits: int,
                       guard_bits: int = 8) -> InstaThConstants:
    """Fix the constants of an INSTA-Th layer (float per-channel parameters, S = ``scale``) at export."""
    mu, sigma, alpha, beta = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (mu, sigma, alpha, beta))
    if scale <= 0 or math.log2(scale) != round(math.log2(scale)):
        raise ValueError(f"INSTA-Th: the input scale {scale!r} must be a positive power of two")
    if np.any(sigma <= 0):
        raise ValueError("INSTA-Th: sigma must be positive in every channel")
    m, k = mu / scale, sigma / scale
    c3 = alpha / (pixels * k * k)
    c = [m + k * beta - pixels * m ** 3 * c3, 3 * m * m * c3, -3 * m * c3, c3]
    ranges = power_sum_ranges(input_bits, pixels)
    fracs = tuple(guard_bits + 1 + math.ceil(math.log2(max(abs(lo), abs(hi), 1))) for lo, hi in ranges)
    coeffs = tuple(tuple(round_half_away(float(v) * 2.0 ** f) for v in cj) for cj, f in zip(c, fracs))
    return InstaThConstants(input_bits, pixels, coeffs, fracs, guard_bits)


def static_threshold_constants(tau, scale: float, pixels: int, input_bits: int,
                               guard_bits: int = 8) -> InstaThConstants:
    """RSign as the same unit: T = tau / S, c1 = c2 = c3 = 0."""
    tau = np.asarray(tau, dtype=np.float64).reshape(-1)
    zeros = np.zeros_like(tau)
    return insta_th_constants(tau, np.ones_like(tau) * scale, zeros, zeros, scale, pixels, input_bits,
                              guard_bits)


def power_sums(q: np.ndarray) -> tuple[list[list[int]], ...]:
    """Exact P1, P2, P3 per (frame, channel) of integer frames q (F, C, H, W), as Python ints."""
    q = np.asarray(q, dtype=np.int64)
    p1 = q.sum(axis=(2, 3))
    p2 = (q * q).sum(axis=(2, 3))
    p3 = (q * q * q).sum(axis=(2, 3))  # |q^3 * N| < 2^63 for the widths in use; checked by the caller
    return tuple([[int(v) for v in row] for row in p] for p in (p1, p2, p3))


def frame_thresholds(q: np.ndarray, consts: InstaThConstants) -> np.ndarray:
    """The integer thresholds t (F, C) of each frame and channel: b = 1 iff q >= t."""
    q = np.asarray(q)
    if q.ndim != 4 or q.shape[1] != consts.channels or q.shape[2] * q.shape[3] != consts.pixels:
        raise ValueError(f"INSTA-Th: frames of shape (F, {consts.channels}, H, W) with H*W = {consts.pixels} "
                         f"expected, got {q.shape}")
    qmin, qmax = -(1 << (consts.input_bits - 1)), (1 << (consts.input_bits - 1)) - 1
    if q.min() < qmin or q.max() > qmax:
        raise ValueError(f"INSTA-Th: input outside the {consts.input_bits}-bit signed range")
    if consts.power_sum_bits[2] > 63:
        raise ValueError("INSTA-Th: P3 exceeds 63 bits; frames too large for the int64 power sums")
    p = power_sums(q)
    frac = consts.frac
    out = np.empty(q.shape[:2], dtype=np.int64)
    for f in range(q.shape[0]):
        for c in range(consts.channels):
            t_fx = consts.coeffs[0][c] << (frac - consts.fracs[0])
            for j in (1, 2, 3):
                t_fx += consts.coeffs[j][c] * p[j - 1][f][c] << (frac - consts.fracs[j])
            t = -((-t_fx) >> frac)  # ceil(T_fx / 2^F), exact on Python ints
            out[f, c] = min(max(t, qmin), qmax + 1)
    return out


def insta_threshold_compare(q: np.ndarray, consts: InstaThConstants) -> np.ndarray:
    """The unit's output bits (F, C, H, W): 1 where q >= t (bipolar +1), 0 elsewhere (bipolar -1)."""
    t = frame_thresholds(q, consts)
    return (np.asarray(q, dtype=np.int64) >= t[:, :, None, None]).astype(np.uint8)
