"""The arithmetic contract of every hardware layer: integer constants fixed from float parameters, and the exact
integer function each layer computes. ``docs/arithmetic.md`` states the same contract in prose.

This module is the single definition of what the accelerator computes. The lowering (:mod:`instabnn.hw.lower`)
fixes the constants from an exported QONNX graph, the hardware-exact PyTorch mode
(:mod:`instabnn.model.hardware_exact`) fixes them from the PyTorch modules, and both call the functions below;
the RTL blocks are compared with them bit for bit.

Conventions
-----------
* A residual-stream tensor is an integer ``q`` of ``bits`` signed bits with real value ``x = 2^e * q``.
* A fixed-point value ``V`` with ``F`` fraction bits stands for ``V * 2^-F``. ``fix(v, F)`` rounds half away from
  zero; run-time rounding (:func:`shift_round`) is round-half-up, ``(V + 2^(s-1)) >> s``, one adder in hardware.
* Every width is computed from a worst-case bound (:func:`~instabnn.contract.fixed_point.signed_bits`).
* Per-frame statistics are exact power sums ``P_j = sum_{h,w} v^j`` (:mod:`instabnn.contract.insta`); anything
  a frame statistic feeds is a polynomial ``Z = sum_j C_j P_j 2^(F - F_j)`` (:class:`MomentPolynomial`) evaluated
  in Python integers (no overflow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from instabnn.contract.fixed_point import signed_bits
from instabnn.contract.insta import (InstaThConstants, frame_thresholds, polynomial_bits, power_sum_ranges,
                                         power_sums)

GUARD_BITS = 8
"""Fraction bits beyond the output's last bit in every fixed affine map: rounding error <= 2^-(GUARD_BITS+1) LSB."""
SLOPE_FRAC = 16
"""Fraction bits of PReLU slopes."""
G_IN_FRAC = 12
"""Fraction bits of z where it enters g (the SE output, the INSTA-PReLU polynomial's output)."""
G_GRID_FRAC, G_RANGE = 3, 16
"""The g table: entries on a 1/8 grid over [-16, 16], linearly interpolated; z is clamped to that range."""
G_OUT_FRAC = 14
"""Fraction bits of the g table's entries (|g| <= 3: 17-bit signed entries)."""
SE_S_FRAC, SE_S_BITS = 8, 16
"""The SE-like MLP reads s with 8 fraction bits, clamped to 16 signed bits."""
SE_H_FRAC, SE_H_BITS = 8, 16
"""Its hidden layer (after ReLU): 8 fraction bits, clamped to 16 unsigned bits."""
MULT_BITS = 16
"""Signed width of the per-channel real multipliers (LSQ step sizes) of the SE-like MLP."""
STAT_EXTRA_BITS = 2
"""The INSTA-PReLU statistic reads the pre-activation on the output grid with this many more integer bits."""


class ContractError(ValueError):
    """Parameters the contract cannot represent (the message names the layer and the parameter)."""


# ------------------------------------------------------------------------------------------ fixed point


def fix(value, frac: int) -> np.ndarray:
    """round(value * 2^frac), halves away from zero, as int64 (|result| < 2^62 is checked)."""
    v = np.asarray(value, dtype=np.float64) * (2.0 ** frac)
    if not np.all(np.isfinite(v)) or np.any(np.abs(v) >= 2.0 ** 62):
        raise ContractError(f"a constant does not fit 62 bits at {frac} fraction bits")
    return (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int64)


def shift_round(v, s: int):
    """round(v / 2^s), halves up, for integer arrays (int64 or Python-int object arrays); s <= 0 shifts left."""
    if s <= 0:
        return v * (1 << -s)
    return (v + (1 << (s - 1))) >> s


def clamp_signed(v, bits: int):
    return np.clip(v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def ceil_shift(v, s: int):
    """ceil(v / 2^s) on integers."""
    return -((-v) >> s)


def quantize_int(w, scale, bits: int, narrow: bool) -> np.ndarray:
    """The integers of a QONNX ``Quant`` / Brevitas weight quantizer: clamp(round_half_even(w / scale)).

    ``scale`` broadcasts against ``w`` (per output channel along axis 0)."""
    w = np.asarray(w, dtype=np.float32)
    scale = np.asarray(scale, dtype=np.float32)
    q = np.round(w / scale)  # float32 division and half-even rounding, as torch and onnxruntime do
    lo = -(1 << (bits - 1)) + (1 if narrow else 0)
    return np.clip(q, lo, (1 << (bits - 1)) - 1).astype(np.int64)


def pow2_exponent(scale, what: str) -> np.ndarray:
    """The integer exponents e of power-of-two scales 2^e (an error naming ``what`` otherwise)."""
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    e = np.round(np.log2(s))
    if np.any(s <= 0) or np.any(2.0 ** e != s):
        raise ContractError(f"{what}: scale {s.tolist()[:4]} is not a power of two")
    return e.astype(np.int64)


def fold_batchnorm(weight, bias, mean, var, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm at inference as y = a * v + b (float64 from the stored float32 parameters)."""
    inv = np.asarray(weight, np.float64) / np.sqrt(np.asarray(var, np.float64) + float(eps))
    return inv, np.asarray(bias, np.float64) - np.asarray(mean, np.float64) * inv


# ------------------------------------------------------------------------------------------ statistics


@dataclass(frozen=True)
class MomentPolynomial:
    """z = a_c * mean_{h,w}(((v - m_c) / k_c)^3) + b_c as a polynomial in the exact power sums of v.

    With N = H*W: c3 = a/(N k^3), c2 = -3 m c3, c1 = 3 m^2 c3, c0 = b - N m^3 c3, and z = sum_j c_j P_j.
    C_j = fix(c_j, F_j), F_j = out_frac + guard + 1 + ceil(log2 max|P_j|), so each term errs by at most
    2^-(out_frac+guard+2). ``evaluate`` returns the exact Z = sum_j C_j P_j 2^(F - F_j), F = max F_j,
    as Python ints (frames x channels); Z * 2^-F approximates z within 2^-(out_frac+guard).
    """

    input_bits: int
    pixels: int
    coeffs: tuple[tuple[int, ...], ...]
    fracs: tuple[int, ...]
    out_frac: int

    @property
    def frac(self) -> int:
        return max(self.fracs)

    @property
    def channels(self) -> int:
        return len(self.coeffs[0])

    def accumulator_bits(self) -> int:
        return polynomial_bits(self.coeffs, self.fracs, self.input_bits, self.pixels)

    def evaluate(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.int64)
        check_range(v, self.input_bits, "statistic input")
        p = [np.asarray(pj, dtype=object) for pj in power_sums(v)]
        z = np.array(self.coeffs[0], dtype=object)[None, :] * (1 << (self.frac - self.fracs[0]))
        for j in (1, 2, 3):
            z = z + np.array(self.coeffs[j], dtype=object)[None, :] * p[j - 1] * (1 << (self.frac - self.fracs[j]))
        return z

    def to_dict(self) -> dict:
        return {"input_bits": self.input_bits, "pixels": self.pixels, "fracs": list(self.fracs),
                "out_frac": self.out_frac, "accumulator_bits": self.accumulator_bits()}


def moment_polynomial(m, k, a, b, pixels: int, input_bits: int, out_frac: int,
                      guard: int = GUARD_BITS) -> MomentPolynomial:
    m, k, a, b = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (m, k, a, b))
    if np.any(k <= 0):
        raise ContractError("statistic: sigma must be positive in every channel")
    c3 = a / (pixels * k ** 3)
    c = [b - pixels * m ** 3 * c3, 3 * m * m * c3, -3 * m * c3, c3]
    ranges = power_sum_ranges(input_bits, pixels)
    fracs = tuple(out_frac + guard + 1 + math.ceil(math.log2(max(abs(lo), abs(hi), 1))) for lo, hi in ranges)
    coeffs = tuple(tuple(int(x) for x in fix(cj, f)) for cj, f in zip(c, fracs))
    return MomentPolynomial(input_bits, pixels, coeffs, fracs, out_frac)


def check_range(v: np.ndarray, bits: int, what: str, signed: bool = True):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if v.size and (v.min() < lo or v.max() > hi):
        raise ContractError(f"{what}: values [{v.min()}, {v.max()}] exceed the {bits}-bit contract range")


# ------------------------------------------------------------------------------------------ g table


G_FUNCTIONS = {
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "tanh3": lambda z: 3.0 * np.tanh(z / 3.0),
}


@lru_cache(maxsize=None)
def g_table(name: str) -> tuple[int, ...]:
    """Entries G[i] = fix(g(z_i), G_OUT_FRAC) at z_i = -G_RANGE + i / 2^G_GRID_FRAC, i = 0 .. 2 G_RANGE 2^G_GRID_FRAC."""
    if name not in G_FUNCTIONS:
        raise ContractError(f"unknown nonlinearity g={name!r}")
    z = np.arange(2 * G_RANGE * (1 << G_GRID_FRAC) + 1) / 2.0 ** G_GRID_FRAC - G_RANGE
    return tuple(int(x) for x in fix(G_FUNCTIONS[name](z), G_OUT_FRAC))


def g_lookup(name: str, z_fx, frac: int) -> np.ndarray:
    """g(z) with G_OUT_FRAC fraction bits for Z with ``frac`` fraction bits: Z is rounded to G_IN_FRAC bits and
    clamped to [-G_RANGE, G_RANGE]; with i = floor(z 2^G_GRID_FRAC) and r the remaining
    G_IN_FRAC - G_GRID_FRAC bits, G = T[i] + round((T[i+1] - T[i]) r / 2^(G_IN_FRAC - G_GRID_FRAC))."""
    table = np.asarray(g_table(name), dtype=np.int64)
    z = np.asarray(shift_round(np.asarray(z_fx, dtype=object), frac - G_IN_FRAC), dtype=object)
    top = G_RANGE << G_IN_FRAC
    z = np.asarray(np.clip(z, -top, top).astype(np.int64)) + top  # >= 0
    low_bits = G_IN_FRAC - G_GRID_FRAC
    i, r = z >> low_bits, z & ((1 << low_bits) - 1)
    upper = np.minimum(i + 1, len(table) - 1)
    return table[i] + shift_round((table[upper] - table[i]) * r, low_bits)


# ------------------------------------------------------------------------------------------ SE-like MLP


@dataclass(frozen=True)
class SeMlpFixed:
    """z = sigma2 * W2 ReLU(sigma1 * W1 s) + b with 8-bit integer weights W1, W2 and real per-channel steps.

    s enters with SE_S_FRAC fraction bits (SE_S_BITS signed); the hidden layer is requantized to SE_H_FRAC bits
    (SE_H_BITS unsigned, after ReLU); the output Z has G_IN_FRAC fraction bits (the g table's grid).
    M1 = fix(sigma1, mult_frac1), M2 = fix(sigma2, mult_frac2), B = fix(b, mult_frac2 + SE_H_FRAC).
    """

    w1: np.ndarray = field(compare=False)  # (hidden, C) int
    m1: np.ndarray = field(compare=False)  # (hidden,)
    mult_frac1: int
    w2: np.ndarray = field(compare=False)  # (C, hidden)
    m2: np.ndarray = field(compare=False)  # (C,)
    b: np.ndarray = field(compare=False)  # (C,)
    mult_frac2: int

    def __call__(self, s_int: np.ndarray) -> np.ndarray:
        h_acc = np.asarray(s_int, np.int64) @ self.w1.T
        h = np.clip(shift_round(self.m1[None, :] * h_acc, self.mult_frac1 + SE_S_FRAC - SE_H_FRAC),
                    0, (1 << SE_H_BITS) - 1)
        o_acc = h @ self.w2.T
        return shift_round(self.m2[None, :] * o_acc + self.b[None, :], self.mult_frac2 + SE_H_FRAC - G_IN_FRAC)

    def arrays(self) -> dict:
        return {"w1": self.w1, "m1": self.m1, "w2": self.w2, "m2": self.m2, "b": self.b}


def mult_frac_for(values) -> int:
    """Fraction bits giving the largest |value| MULT_BITS-1 significant bits."""
    top = float(np.max(np.abs(values))) if np.size(values) else 0.0
    if top == 0.0:
        return MULT_BITS - 1
    return MULT_BITS - 1 - math.floor(math.log2(top)) - 1


def se_mlp_fixed(w1, step1, w2, step2, b) -> SeMlpFixed:
    """From integer weights (hidden x C, C x hidden), their real per-output-channel steps, and a real bias."""
    f1, f2 = mult_frac_for(step1), mult_frac_for(step2)
    return SeMlpFixed(np.asarray(w1, np.int64), fix(step1, f1), f1, np.asarray(w2, np.int64), fix(step2, f2),
                      fix(b, f2 + SE_H_FRAC), f2)


def se_input(poly: MomentPolynomial, v: np.ndarray) -> np.ndarray:
    """The statistic s on the SE's input grid (SE_S_FRAC bits, SE_S_BITS signed) from a polynomial with
    out_frac = SE_S_FRAC."""
    z = shift_round(poly.evaluate(v), poly.frac - SE_S_FRAC)
    return clamp_signed(np.asarray(z, dtype=np.int64), SE_S_BITS)


# ------------------------------------------------------------------------------------------ binarizers


@dataclass(frozen=True)
class ThresholdPlus:
    """INSTA-Th+: T = m + k (g(SE(s)) + beta) in the input's integer units; b = 1 iff q >= ceil(T)."""

    poly: MomentPolynomial  # s with out_frac = SE_S_FRAC
    se: SeMlpFixed
    g: str
    offset: np.ndarray = field(compare=False)  # fix(m + k beta, frac)
    gain: np.ndarray = field(compare=False)  # fix(k, frac)
    frac: int
    input_bits: int

    def thresholds(self, q: np.ndarray) -> np.ndarray:
        z = self.se(se_input(self.poly, q))
        g = g_lookup(self.g, z, G_IN_FRAC)
        t_fx = self.offset[None, :].astype(object) * (1 << G_OUT_FRAC) + self.gain[None, :].astype(object) * g
        t = np.asarray(ceil_shift(t_fx, self.frac + G_OUT_FRAC), dtype=np.int64)
        return np.clip(t, -(1 << (self.input_bits - 1)), 1 << (self.input_bits - 1))


def threshold_plus(mu, sigma, beta, scale_exp: int, pixels: int, input_bits: int, se: SeMlpFixed,
                   g: str) -> ThresholdPlus:
    m, k = np.asarray(mu, np.float64) * 2.0 ** -scale_exp, np.asarray(sigma, np.float64) * 2.0 ** -scale_exp
    frac = GUARD_BITS + 2
    poly = moment_polynomial(m, k, np.ones_like(m), np.zeros_like(m), pixels, input_bits, SE_S_FRAC)
    return ThresholdPlus(poly, se, g, fix(m + k * np.asarray(beta, np.float64), frac), fix(k, frac), frac,
                         input_bits)


def binarize(q: np.ndarray, unit: InstaThConstants | ThresholdPlus) -> np.ndarray:
    """Bits (F, C, H, W) of a threshold unit: 1 (bipolar +1) where q >= t[frame, channel]."""
    q = np.asarray(q, dtype=np.int64)
    t = frame_thresholds(q, unit) if isinstance(unit, InstaThConstants) else unit.thresholds(q)
    return (q >= t[:, :, None, None]).astype(np.uint8)


# ------------------------------------------------------------------------------------------ convolutions


def im2col(x: np.ndarray, kernel: int, stride: int, pad: int, pad_value: int) -> np.ndarray:
    """(F, C, H, W) -> (F, Ho, Wo, K*K*C) windows, column index (ky*K + kx)*C + c."""
    f, c, h, w = x.shape
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=pad_value)
    ho, wo = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    cols = np.empty((f, ho, wo, kernel * kernel * c), dtype=x.dtype)
    for ky in range(kernel):
        for kx in range(kernel):
            patch = x[:, :, ky:ky + stride * ho:stride, kx:kx + stride * wo:stride]  # F, C, Ho, Wo
            cols[..., (ky * kernel + kx) * c:(ky * kernel + kx + 1) * c] = patch.transpose(0, 2, 3, 1)
    return cols


def weight_matrix(w: np.ndarray) -> np.ndarray:
    """(Cout, Cin, K, K) -> (Cout, K*K*Cin) in the im2col column order."""
    return np.asarray(w).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


def binary_conv(bits: np.ndarray, weight_bits: np.ndarray, kernel: int, stride: int, pad: int) -> np.ndarray:
    """XNOR-popcount convolution of bit frames (1 <-> +1, padding with -1 = bit 0): acc (F, Cout, Ho, Wo)."""
    x = 2 * im2col(np.asarray(bits, np.int64), kernel, stride, pad, 0) - 1
    w = 2 * weight_matrix(np.asarray(weight_bits, np.int64)) - 1
    return (x @ w.T).transpose(0, 3, 1, 2)


def int_conv(q: np.ndarray, w_int: np.ndarray, kernel: int, stride: int, pad: int) -> np.ndarray:
    """Integer convolution, zero padding: acc (F, Cout, Ho, Wo) = sum w * q (exact int64)."""
    x = im2col(np.asarray(q, np.int64), kernel, stride, pad, 0)
    return (x @ weight_matrix(np.asarray(w_int, np.int64)).T).transpose(0, 3, 1, 2)


def global_sum(q: np.ndarray) -> np.ndarray:
    """Per-channel sums over the frame (F, C): the global average pool without the division (the classifier's
    common scale takes 1/N)."""
    return np.asarray(q, np.int64).sum(axis=(2, 3))


def pool_sum(q: np.ndarray, k: int) -> np.ndarray:
    """Sums of k x k windows at stride k (average pooling without the division: the scale takes 1/k^2)."""
    f, c, h, w = q.shape
    return np.asarray(q, np.int64).reshape(f, c, h // k, k, w // k, k).sum(axis=(3, 5))


# ------------------------------------------------------------------------------------------ affine + requant


@dataclass(frozen=True)
class AffineRequant:
    """q_out = clamp(round((A acc + B) / 2^(F + e_out)), out_bits): a per-channel real affine map of an integer
    accumulator (the stem's BN, or a 1x1 shortcut's) requantized to the residual stream."""

    mult: np.ndarray = field(compare=False)
    bias: np.ndarray = field(compare=False)
    frac: int
    out_exp: int
    out_bits: int

    def __call__(self, acc):
        y = self.mult[None, :, None, None] * np.asarray(acc, np.int64) + self.bias[None, :, None, None]
        return clamp_signed(shift_round(y, self.frac + self.out_exp), self.out_bits)


def affine_frac(out_exp: int, acc_bound: int) -> int:
    return -out_exp + GUARD_BITS + 1 + math.ceil(math.log2(max(acc_bound, 1)))


def affine_requant(a, b, acc_exp, acc_bound: int, out_exp: int, out_bits: int) -> AffineRequant:
    """y = a * 2^acc_exp * acc + b (acc_exp per channel or scalar) -> residual stream (out_exp, out_bits)."""
    frac = affine_frac(out_exp, acc_bound)
    a = np.asarray(a, np.float64) * 2.0 ** np.asarray(acc_exp, np.float64)
    return AffineRequant(fix(a, frac), fix(b, frac), frac, out_exp, out_bits)


# ------------------------------------------------------------------------------------------ block tail


@dataclass(frozen=True)
class ResidualActivation:
    """The tail of a binary block: y = a acc + b + shortcut, then RPReLU or INSTA-PReLU(+), then requant.

    Y = A acc + B + SC with F fraction bits; SC = v << (F + e_v) for an integer shortcut v = 2^e_v v (identity,
    average-pool sum, option A), or SC = A_p acc_p for a 1x1 projection (its BN shift is in B).
    RPReLU: D = Y - Gamma, P = D if D >= 0 else floor(K D / 2^SLOPE_FRAC), O = P + Zeta.
    INSTA-PReLU: D = Y - T[frame, c] with T = M + round(Sg * G / 2^G_OUT_FRAC), G = g table at the index of
    z = alpha s + beta (s from the own pre-activation v = clamp(round(Y / 2^(F+e_out)), out_bits+STAT_EXTRA_BITS),
    or reused from the block's INSTA-Th input); INSTA-PReLU+: z = SE(s) + beta. O = P.
    q_out = clamp(round(O / 2^(F + e_out)), out_bits).
    """

    frac: int
    out_exp: int
    out_bits: int
    mult: np.ndarray = field(compare=False)
    bias: np.ndarray = field(compare=False)
    shortcut: str  # "shift" | "proj"
    shortcut_shift: int
    shortcut_mult: np.ndarray | None = field(compare=False)
    slope: np.ndarray = field(compare=False)
    act: str  # "rprelu" | "insta"
    gamma: np.ndarray | None = field(compare=False, default=None)
    zeta: np.ndarray | None = field(compare=False, default=None)
    shift_mean: np.ndarray | None = field(compare=False, default=None)
    shift_gain: np.ndarray | None = field(compare=False, default=None)
    g: str = "tanh3"
    stat_source: str = "own"  # "own" | "reuse"
    poly: MomentPolynomial | None = None  # z (plain) or s (with se) from the statistic input
    se: SeMlpFixed | None = None

    @property
    def stat_bits(self) -> int:
        return self.out_bits + STAT_EXTRA_BITS

    def pre_activation_bits(self, acc_bound: int, sc_bound: int) -> int:
        """Signed width of Y (and of D, the shifted value) for |acc| <= acc_bound, |shortcut| <= sc_bound."""
        y = int(np.abs(self.mult).max()) * acc_bound + int(np.abs(self.bias).max())
        y += (int(np.abs(self.shortcut_mult).max()) * sc_bound if self.shortcut == "proj"
              else sc_bound << self.shortcut_shift)
        shift = (int(np.abs(self.gamma).max()) if self.act == "rprelu"
                 else int(np.abs(self.shift_mean).max()) + (int(np.abs(self.shift_gain).max()) * 3 + 1))
        return signed_bits(-(y + shift), y + shift)

    def pre_activation(self, acc, sc):
        c = (None, slice(None), None, None)
        y = self.mult[c] * np.asarray(acc, np.int64) + self.bias[c]
        if self.shortcut == "proj":
            return y + self.shortcut_mult[c] * np.asarray(sc, np.int64)
        return y + shift_round(np.asarray(sc, np.int64), -self.shortcut_shift)

    def shift(self, y, stat_input) -> np.ndarray:
        """T (frames x channels), in Y's fixed point."""
        if self.stat_source == "own":
            stat_input = clamp_signed(shift_round(y, self.frac + self.out_exp), self.stat_bits)
        if self.se is not None:
            z = self.se(se_input(self.poly, stat_input))
            zfrac = G_IN_FRAC
        else:
            z, zfrac = self.poly.evaluate(stat_input), self.poly.frac
        g = g_lookup(self.g, z, zfrac)
        return self.shift_mean[None, :] + shift_round(self.shift_gain[None, :] * g, G_OUT_FRAC)

    def __call__(self, acc, sc, stat_input=None):
        y = self.pre_activation(acc, sc)
        c = (None, slice(None), None, None)
        if self.act == "rprelu":
            d = y - self.gamma[c]
        else:
            d = y - self.shift(y, stat_input)[:, :, None, None]
        p = np.where(d >= 0, d, (self.slope[c] * d) >> SLOPE_FRAC)
        if self.act == "rprelu":
            p = p + self.zeta[c]
        return clamp_signed(shift_round(p, self.frac + self.out_exp), self.out_bits)


def residual_frac(out_exp: int, acc_bound: int, shortcut_exp: int | None) -> int:
    frac = affine_frac(out_exp, acc_bound)
    return max(frac, -shortcut_exp) if shortcut_exp is not None else frac


# ------------------------------------------------------------------------------------------ classifier


@dataclass(frozen=True)
class Classifier:
    """Integer logits L = (W (sum_{h,w} q)) << shift_o + B_o: the global average pool (its 1/N in the common
    scale) and the 8-bit classifier with per-class power-of-two weight scales brought to the smallest one.
    The real logit is L * ``lsb``; argmax L is the class."""

    weight: np.ndarray = field(compare=False)  # (classes, C) int
    shift: np.ndarray = field(compare=False)  # (classes,)
    bias: np.ndarray = field(compare=False)
    lsb: float

    def __call__(self, q):
        acc = global_sum(q) @ self.weight.T
        return (acc << self.shift[None, :]) + self.bias[None, :]


LOGIT_FRAC = 8


def classifier(w_int, w_exp, bias, in_exp: int, pixels: int) -> Classifier:
    w_exp = np.asarray(w_exp, np.int64).reshape(-1)
    base = int(w_exp.min())
    lsb = 2.0 ** (in_exp + base - LOGIT_FRAC) / pixels
    return Classifier(np.asarray(w_int, np.int64), w_exp - base + LOGIT_FRAC,
                      fix(np.asarray(bias, np.float64) / lsb, 0), lsb)


def ptq_int8(w) -> tuple[np.ndarray, np.ndarray]:
    """8-bit per-output-channel max-abs quantization of real weights (SE layers trained without LSQ):
    step = max|w_o| / 127, integers clamp(round_half_even(w / step), -128, 127)."""
    w = np.asarray(w, np.float32)
    step = (np.abs(w).max(axis=1) / np.float32(127.0)).astype(np.float32)
    step[step == 0] = 1.0
    return quantize_int(w, step[:, None], 8, narrow=False), step


def residual_activation(a, b, acc_bound: int, shortcut_kind: str, shortcut_exp: int, proj, act: dict,
                        out_exp: int, out_bits: int, pixels: int, name: str) -> ResidualActivation:
    """Fix a block tail from its float parameters.

    ``a``, ``b``: y = a * acc + b (BN folded with the XNOR weight scale); ``proj``: None or (real multiplier per
    channel of acc_p, real BN shift, bound of |acc_p|); ``act``: {"kind": "rprelu", gamma, zeta, slope} or
    {"kind": "insta", mu, sigma, beta, g, slope, alpha | None, se: None | (bias -> SeMlpFixed),
    reuse: None | {mu, sigma, u, v, exp, bits, pixels}} (the INSTA-Th statistics of the block input).
    """
    bound = acc_bound if proj is None else max(acc_bound, proj[2])
    frac = residual_frac(out_exp, bound, None if proj is not None else shortcut_exp)
    bias = np.asarray(b, np.float64) + (np.asarray(proj[1], np.float64) if proj is not None else 0.0)
    common = dict(frac=frac, out_exp=out_exp, out_bits=out_bits, mult=fix(a, frac), bias=fix(bias, frac),
                  shortcut="proj" if proj is not None else "shift", shortcut_shift=frac + shortcut_exp,
                  shortcut_mult=fix(proj[0], frac) if proj is not None else None,
                  slope=fix(act["slope"], SLOPE_FRAC))
    if common["shortcut"] == "shift" and common["shortcut_shift"] < 0:
        raise ContractError(f"block {name}: shortcut exponent {shortcut_exp} below the tail's grid 2^-{frac}")
    if act["kind"] == "rprelu":
        return ResidualActivation(act="rprelu", gamma=fix(act["gamma"], frac), zeta=fix(act["zeta"], frac),
                                  **common)
    if act["kind"] != "insta":
        raise ContractError(f"block {name}: activation {act['kind']!r} has no hardware form")
    beta = np.asarray(act["beta"], np.float64)
    reuse = act.get("reuse")
    if reuse is not None:
        exp, bits, stat_pixels = reuse["exp"], reuse["bits"], reuse["pixels"]
        mu, sigma = reuse["mu"], reuse["sigma"]
        u, v = np.asarray(reuse["u"], np.float64), np.asarray(reuse["v"], np.float64)
    else:
        exp, bits, stat_pixels = out_exp, out_bits + STAT_EXTRA_BITS, pixels
        mu, sigma = act["mu"], act["sigma"]
        u, v = np.ones_like(beta), np.zeros_like(beta)
    m = np.asarray(mu, np.float64) * 2.0 ** -exp
    k = np.asarray(sigma, np.float64) * 2.0 ** -exp
    se = None
    if act.get("se") is not None:  # z = SE(u s + v) + beta
        poly = moment_polynomial(m, k, u, v, stat_pixels, bits, SE_S_FRAC)
        se = act["se"](beta)
    else:  # z = alpha (u s + v) + beta
        alpha = np.asarray(act["alpha"], np.float64)
        poly = moment_polynomial(m, k, alpha * u, alpha * v + beta, stat_pixels, bits, G_IN_FRAC)
    return ResidualActivation(act="insta", shift_mean=fix(act["mu"], frac), shift_gain=fix(act["sigma"], frac),
                              g=act["g"], stat_source="reuse" if reuse is not None else "own", poly=poly, se=se,
                              **common)


# ------------------------------------------------------------------------------------------ plain W1A1 chains


def sign_thresholds(a, b, acc_bound: int) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm + sign on an integer accumulator, bit = (a acc + b >= 0), as integer thresholds.

    Returns (t, flip): bit = (s acc >= t) with s = -1 where ``flip`` (a < 0; the lowering negates those weight
    rows so the hardware only compares acc >= t), t = ceil(-b / |a|) clamped to [-acc_bound, acc_bound + 1];
    a = 0 gives a constant bit (t at either end). FINN's BatchNorm-to-thresholds, for one threshold."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.ceil(-b / np.abs(a))
    t = np.where(a == 0, np.where(b >= 0, -acc_bound, acc_bound + 1), t)
    return np.clip(t, -acc_bound, acc_bound + 1).astype(np.int64), a < 0


@dataclass(frozen=True)
class AffineLogits:
    """Integer logits L = A acc + B of the last layer's accumulator (A = fix(a, F), B = fix(b, F)); the real
    logit is L 2^-F."""

    mult: np.ndarray = field(compare=False)
    bias: np.ndarray = field(compare=False)
    frac: int

    def __call__(self, acc):
        acc = np.asarray(acc, np.int64).reshape(len(acc), -1)
        return self.mult[None, :] * acc + self.bias[None, :]


def affine_logits(a, b, channels: int) -> AffineLogits:
    a = np.broadcast_to(np.asarray(a, np.float64), (channels,))
    b = np.broadcast_to(np.asarray(b, np.float64), (channels,))
    frac = mult_frac_for(a) + 8
    return AffineLogits(fix(a, frac), fix(b, frac), frac)
