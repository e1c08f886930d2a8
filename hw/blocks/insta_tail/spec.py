"""Spec, RTL parameters, stream packing and memory files of the INSTA-PReLU block tail (``insta_tail.sv``).

The unit computes :class:`~instabnn.contract.layers.ResidualActivation` with ``act = "insta"`` (INSTA-PReLU,
``se is None``; or INSTA-PReLU+, ``se`` an :class:`~instabnn.contract.layers.SeMlpFixed`: RTL parameter
``SE = 1``), shortcut ``"shift"`` or ``"proj"``, statistics ``"own"`` or ``"reuse"``::

    Y = MULT[c] acc + BIAS[c] + SC        SC = sc << SHORTCUT_SHIFT (shift) or SHORTCUT_MULT[c] sc (proj)
    own:   v = clamp(round_half_up(Y / 2^OUT_SHIFT), STAT_BITS)     (STAT_BITS = out_bits + STAT_EXTRA_BITS)
    reuse: v = the block input q (a third stream, STAT_PIXELS pixels per frame, STAT_BITS = its width)
    Z = C0 2^(F-F0) + sum_j C_j P_j 2^(F-F_j), P_j = sum over the frame's pixels of v^j     (MomentPolynomial)
    G = g table at Z (g_lookup: round to G_IN_FRAC bits, clamp, linear interpolation between 1/8-grid entries)
    SE = 1: s = clamp(round(Z / 2^(F - SE_S_FRAC)), SE_S_BITS) (se_input), z = SE(s) (SeMlpFixed), G = g table at z
    T[frame, c] = MEAN[c] + round_half_up(GAIN[c] G / 2^G_OUT_FRAC)
    D = Y - T,   P = D (D >= 0) or floor(SLOPE[c] D / 2^16),   q = clamp(round_half_up(P / 2^OUT_SHIFT), out_bits)

:class:`InstaTailSpec` is the one source of truth: built from a ``ResidualActivation`` (the contract's constants),
an accumulator bound and the shortcut's width, it gives every RTL parameter (constant widths from the constants'
ranges, ``D_BITS`` from :meth:`ResidualActivation.pre_activation_bits`, ``Y_BITS`` from the same bound without the
shift, the power-sum widths, ``ZACC_BITS`` from :meth:`MomentPolynomial.accumulator_bits`, the g-table field widths
from :func:`~instabnn.contract.layers.g_table`, ``T_BITS`` from the bound of T), the stream widths, the frame
buffer depth, cycles and latency.

Timing (both inputs always valid, the output always ready)
-----------------------------------------------------------
own: a beat's Y reaches the frame buffer and the power sums :data:`FRONT_LATENCY` edges after its handshake; the
sums are complete :data:`STATS_LATENCY` edges later, the shift computation starts 2 edges after that (``3*C``
steps, one multiplier for the polynomial), its last T word is written :data:`COMPUTE_PIPELINE` edges after its last
step, and the readout of the frame issues its first beat 2 edges later: ``issue_latency = 3*C + FRONT_LATENCY +
STATS_LATENCY + COMPUTE_PIPELINE + 4`` edges after the frame's last input handshake. The readout pipeline (buffer
read and its register, subtract, slope product in two stages, round, clamp into the output FIFO) adds :data:`OUTPUT_EDGES` edges to the first
output handshake: :attr:`InstaTailSpec.latency`. At full rate every beat leaves ``FRAME_BEATS - 1 + latency`` edges
after its handshake. The frame buffer holds ``FRAME_BEATS + issue_latency`` beats of Y (the occupancy at full rate).

reuse: no frame buffer. The statistic stream's frame ``n`` is summed as it arrives; the acc/sc beats of frame ``n``
are taken once its T exist (``3*C + STATS_LATENCY + COMPUTE_PIPELINE + 4`` edges after the last statistic beat:
:attr:`InstaTailSpec.stat_latency`); each then leaves :data:`REUSE_LATENCY` = 8 edges after its handshake.

Steady state (:attr:`InstaTailSpec.cycles_per_frame`): the bank tokens (two stats banks, two T banks) and the one
multiplier give the period ``P = max(FRAME_BEATS, 3C + 1, (3C + FRAME_BEATS + FRONT_LATENCY + 6) / 2,
(3C + FRAME_BEATS + COMPUTE_PIPELINE + 2) / 2)`` (own) and ``P = max(FRAME_BEATS, STAT_BEATS, 3C + 1,
(3C + STAT_BEATS + 6) / 2, (3C + FRAME_BEATS + COMPUTE_PIPELINE + 2) / 2)`` (reuse; ``STAT_BEATS`` = the statistic
frame's beats, four times ``FRAME_BEATS`` after a stride-2 convolution).

INSTA-PReLU+ (``se``): the shift computation (``se_mlp`` and the shift map in ``insta_tail.sv``) adds the SE MLP's
``2 HIDDEN C / SE_SIMD`` steps: :attr:`InstaTailSpec.compute_edges` = ``3C + 2 HIDDEN C / SE_SIMD + 16`` edges from
its start to its last T word (plain: ``3C + COMPUTE_PIPELINE``) and :attr:`InstaTailSpec.compute_busy` =
``3C + 2 HIDDEN C / SE_SIMD + 9`` edges between starts (plain: ``3C + 1``); both replace the plain numbers in the
latencies and the period ``P = max(FRAME_BEATS, compute_busy, (compute_edges + FRAME_BEATS + 2) / 2, own or reuse
stats-bank bound as above)``. Full rate (own) iff ``FRAME_BEATS >= 3C + 2 HIDDEN C / SE_SIMD + 18``.

Memory-init files (``$readmemh``; the first line is a ``//`` comment saying they are generated)
------------------------------------------------------------------------------------------------
* ``CONST_FILE``: ``C/PE`` lines; line f, lane pe at bits ``[pe*CONST_W +: CONST_W]`` = channel ``f*PE + pe``'s
  ``MULT | BIAS | SLOPE`` from the LSB (signed ``MULT_BITS``, ``BIAS_BITS``, ``SLOPE_BITS``), in proj mode followed
  by ``SHORTCUT_MULT`` (``SHORTCUT_MULT_BITS``).
* ``COEFF_FILE``: ``C`` lines; line c = channel c's ``C0 | C1 | C2 | C3 | MEAN | GAIN`` from the LSB (signed
  ``COEFF_BITS_0..3``, ``MEAN_BITS``, ``GAIN_BITS``): the polynomial's coefficients, ``shift_mean`` and
  ``shift_gain``.
* ``G_FILE``: ``G_ENTRIES = 2 G_RANGE 2^G_GRID_FRAC + 1`` (257) lines; line i = ``BASE | DELTA`` from the LSB,
  BASE = ``g_table[i]`` (signed ``G_BITS``), DELTA = ``g_table[min(i+1, 256)] - g_table[i]`` (signed
  ``G_DELTA_BITS``): one registered read gives both interpolation end points.
* SE only: ``SE_CONST_FILE`` (``C`` lines ``M2 | B``), ``M1_FILE`` (``HIDDEN`` lines), ``W1_FILE`` and ``W2_FILE``
  (``SE_SIMD`` weights a line), the layouts of :mod:`instabnn.hw.blocks.insta_threshold.spec_plus`.

Example::

    act = residual_activation(a, b, 576, "shift", -6, None, {"kind": "insta", "mu": mu, "sigma": sigma, "beta": beta,
                              "g": "tanh3", "slope": slope, "alpha": alpha, "se": None}, -6, 8, 64, "b0")
    spec = InstaTailSpec.from_activation(act, acc_bound=576, sc_bits=8, pe=16, pixels=64)
    files = write_memory_files(build, act, spec)      # CONST_FILE, COEFF_FILE, G_FILE
    params = spec.rtl_parameters(**files)              # -> Verilator -G / runner parameters
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from instabnn.hw.blocks.common.resources import (estimate, lut_ram, memory, moment_poly_sequencer, multiplier_dsp,
                                                  power_sum_memories)
from instabnn.hw.blocks.insta_threshold.spec import POWER_TABLE_MAX_BITS
from instabnn.hw.blocks.common import frames
from instabnn.hw.blocks.common.lanes import pack_mixed, unpack_mixed
from instabnn.hw.blocks.common.memfile import read_memh, write_memh
from instabnn.hw.blocks.common.stream_shape import ChannelFolding, LaneWidth
from instabnn.contract.fixed_point import signed_bits
from instabnn.contract.insta import power_sum_bits
from instabnn.contract.layers import (G_GRID_FRAC, G_IN_FRAC, G_OUT_FRAC, G_RANGE, SE_H_BITS, SE_H_FRAC, SE_S_BITS,
                                          SE_S_FRAC, SLOPE_FRAC, STAT_EXTRA_BITS, ResidualActivation, SeMlpFixed,
                                          g_table)

__all__ = [
    "FRONT_LATENCY",
    "STATS_LATENCY",
    "COMPUTE_PIPELINE",
    "OUTPUT_EDGES",
    "REUSE_LATENCY",
    "G_ENTRIES",
    "G_BRAM_MAX_BUFFER_BRAM36",
    "CONST_FIELDS",
    "PROJ_CONST_FIELDS",
    "COEFF_FIELDS",
    "InstaTailSpec",
    "frame_words",
    "frames_from_words",
    "const_words",
    "coeff_words",
    "g_words",
    "write_const_file",
    "write_coeff_file",
    "write_g_file",
    "write_memory_files",
    "SE_COMPUTE_FIXED",
    "SE_BUSY_FIXED",
    "SE_CONST_FIELDS",
    "se_widths",
    "se_const_words",
    "m1_words",
    "w1_words",
    "w2_words",
    "write_se_const_file",
    "write_m1_file",
    "write_w1_file",
    "write_w2_file",
    "read_const_file",
    "read_coeff_file",
    "read_g_file",
]

FRONT_LATENCY = 5
"""own: edges from a beat's input handshake to the edge that writes its Y into the frame buffer and its v into the
power sums (constant read, chunk products, products, add, round)."""

STATS_LATENCY = 3
"""Edges from the entry of a frame's last statistic value into ``stats_accumulate`` to its ``done`` pulse."""

COMPUTE_PIPELINE = 12
"""Edges from the issue of the shift computation's last step to the write of its last T word (chunk products,
product, accumulate, round/clamp/index, g ROM, ROM word register, interpolation product, G, gain chunk products, gain
product, T, write)."""

OUTPUT_EDGES = 7
"""own: edges from a readout issue to the beat's earliest ``m_axis`` handshake (buffer read, its register, D, slope
chunk products, slope product, round, clamp into the output FIFO)."""

REUSE_LATENCY = 8
"""reuse: edges from an acc/sc handshake to the beat's earliest ``m_axis`` handshake."""

SE_COMPUTE_FIXED = 16
"""SE (INSTA-PReLU+, ``se_mlp``): the shift computation takes ``3C + 2 HIDDEN C / SE_SIMD +
SE_COMPUTE_FIXED`` edges from its start to its last T word (phase A, 4 wait edges, phase B, 4 wait edges, phase C,
8 pipeline edges after its last issue), instead of ``3C + COMPUTE_PIPELINE``."""

SE_BUSY_FIXED = 9
"""SE: minimum edges between two starts of the shift computation, ``3C + 2 HIDDEN C / SE_SIMD + SE_BUSY_FIXED``
(plain: ``3C + 1``)."""

SE_CONST_FIELDS = ("m2", "b")

_TOKEN_EDGES = 2
"""Each hand-over between the units goes through a registered frame counter and a registered start: 2 edges."""

G_ENTRIES = 2 * G_RANGE * (1 << G_GRID_FRAC) + 1
"""Entries of the g table (257)."""

G_TABLE_LUTS = 100
"""LUTs of the g table in logic (257 x 29 bits, tanh3; Yosys xc7: g_table_interp 143 LUT, 43 with the table in a
RAMB18)."""

_OWN_LUT = 700
"""The own-statistic unit's LUTs besides the per-lane terms, the sequencer, the g table and the memories: fitted to
Yosys, see ``resources``."""

_REUSE_LUT = 600
"""The same for reused statistics."""

G_BRAM_MAX_BUFFER_BRAM36 = 4.0
"""The g table goes into block RAM (half a BRAM36 for about 100 LUTs, Yosys xc7) in units whose frame buffer takes
at most this many BRAM36: small maps, where the unit's logic outweighs its memory (the digits network's tails,
1.5 - 2.5 BRAM36). Units with larger frame buffers (ResNet-20's, where block RAM is the scarce resource), with
reused statistics or with the SE-like MLP keep it in logic."""

CONST_FIELDS = ("mult", "bias", "slope")
PROJ_CONST_FIELDS = CONST_FIELDS + ("shortcut_mult",)
COEFF_FIELDS = ("c0", "c1", "c2", "c3", "mean", "gain")


def _array_bits(values) -> int:
    v = np.asarray(values, dtype=np.int64)
    return signed_bits(int(v.min()), int(v.max()))


def _y_bound(act: ResidualActivation, acc_bound: int, sc_bound: int) -> int:
    """max |Y| for |acc| <= acc_bound and |shortcut| <= sc_bound (the bound of pre_activation_bits, shift left out)."""
    y = int(np.abs(act.mult).max()) * acc_bound + int(np.abs(act.bias).max())
    return y + (int(np.abs(act.shortcut_mult).max()) * sc_bound if act.shortcut == "proj"
                else sc_bound << act.shortcut_shift)


def _t_bound(mean, gain, g_abs: int) -> int:
    """max |T| = max |MEAN + round(GAIN G / 2^G_OUT_FRAC)| for |G| <= g_abs (G stays between two table entries)."""
    return int(np.abs(mean).max()) + ((int(np.abs(gain).max()) * g_abs) >> G_OUT_FRAC) + 1


def se_widths(se: SeMlpFixed, channels: int) -> dict:
    """The SE MLP's widths from the worst case over all inputs (s over its SE_S_BITS range, h over SE_H_BITS),
    as :class:`~instabnn.hw.blocks.insta_threshold.spec_plus.InstaThresholdPlusSpec` derives them."""
    from instabnn.hw.blocks.insta_threshold.spec_plus import _bits, _dot_range, _range_product

    w1, w2 = np.asarray(se.w1, np.int64), np.asarray(se.w2, np.int64)
    hidden = w1.shape[0]
    if w1.shape != (hidden, channels) or w2.shape != (channels, hidden):
        raise ValueError(f"SE: W1 {w1.shape} and W2 {w2.shape} do not fit {channels} channels")
    smin, smax = -(1 << (SE_S_BITS - 1)), (1 << (SE_S_BITS - 1)) - 1
    acc1 = [_dot_range(w1[k], smin, smax) for k in range(hidden)]
    y1 = [_range_product(int(se.m1[k]), int(se.m1[k]), *acc1[k]) for k in range(hidden)]
    acc2 = [_dot_range(w2[c], 0, (1 << SE_H_BITS) - 1) for c in range(channels)]
    y2 = [tuple(v + int(se.b[c]) for v in _range_product(int(se.m2[c]), int(se.m2[c]), *acc2[c]))
          for c in range(channels)]

    def span(ranges):
        return signed_bits(min(r[0] for r in ranges), max(r[1] for r in ranges))

    return {"hidden": hidden, "w1_bits": _bits(w1), "w2_bits": _bits(w2), "m1_bits": _bits(se.m1),
            "m2_bits": _bits(se.m2), "b_bits": _bits(se.b), "acc1_bits": span(acc1), "y1_bits": span(y1),
            "acc2_bits": span(acc2), "y2_bits": span(y2), "h_shift": se.mult_frac1 + SE_S_FRAC - SE_H_FRAC,
            "z_shift": se.mult_frac2 + SE_H_FRAC - G_IN_FRAC}


@dataclass(frozen=True)
class InstaTailSpec(ChannelFolding):
    """One INSTA-PReLU tail unit: folding, lane widths, constant widths, shifts; see the module docstring."""

    channels: int  # C
    pe: int  # channels per beat, divides C
    pixels: int  # H*W of the output frame
    acc_bits: int  # signed width of acc
    sc_bits: int  # signed width of the shortcut integer (proj: of acc_p)
    out_bits: int  # signed width of q
    mult_bits: int
    bias_bits: int
    slope_bits: int
    shortcut_shift: int  # F + e_shortcut >= 0 (0 in proj mode)
    out_shift: int  # F + e_out >= 1
    d_bits: int  # signed width of D (and of Y, T), ResidualActivation.pre_activation_bits
    y_bits: int  # signed width of Y alone (the frame buffer's lanes)
    stat_reuse: bool  # False: own statistic (from Y); True: a third stream (the block input)
    stat_pixels: int  # pixels of a statistic frame (own: = pixels)
    stat_bits: int  # signed width of the statistic values v (own: out_bits + STAT_EXTRA_BITS)
    coeff_bits: tuple[int, int, int, int]  # signed widths of C0 .. C3
    fracs: tuple[int, int, int, int]  # fraction bits F0 .. F3
    zacc_bits: int  # signed width of Z (MomentPolynomial.accumulator_bits)
    mean_bits: int
    gain_bits: int
    g_bits: int  # signed width of the g table entries
    g_delta_bits: int  # signed width of the differences of neighbouring entries
    t_bits: int  # signed width of T
    g: str = "tanh3"  # the nonlinearity (names G_FILE)
    shortcut_proj: bool = False
    shortcut_mult_bits: int = 0
    # INSTA-PReLU+ (se = True): the SE-like MLP between the statistic s and the g table (se_mlp);
    # the fields below are 0 / unused without it
    se: bool = False
    hidden: int = 0  # hidden units of the SE MLP
    se_simd: int = 1  # multipliers of the SE MLP; divides channels and hidden
    w1_bits: int = 0
    w2_bits: int = 0
    m1_bits: int = 0
    m2_bits: int = 0
    b_bits: int = 0
    acc1_bits: int = 0  # a_k = W1 s
    y1_bits: int = 0  # M1 a_k
    acc2_bits: int = 0  # o_c = W2 h
    y2_bits: int = 0  # M2 o_c + B
    h_shift: int = 0  # mult_frac1 + SE_S_FRAC - SE_H_FRAC
    z_shift: int = 0  # mult_frac2 + SE_H_FRAC - G_IN_FRAC
    limbs: int = 1  # limbs of the power sums in the shift computation's multiplier (moment_poly; 1 with SE)
    power_table: int = 0  # 1: v^2 and v^3 from constant tables in logic instead of multipliers

    def __post_init__(self):
        self.check_folding("pixels", "stat_pixels")
        for name in ("acc_bits", "sc_bits", "out_bits"):
            if not 2 <= getattr(self, name) <= 32:
                raise ValueError(f"{name} must be in 2 .. 32, got {getattr(self, name)}")
        if not 2 <= self.stat_bits <= 16:
            raise ValueError(f"stat_bits must be in 2 .. 16, got {self.stat_bits}")
        for name in self.const_fields + ("mean", "gain"):
            if not 1 <= getattr(self, f"{name}_bits") <= 48:
                raise ValueError(f"{name}_bits must be in 1 .. 48, got {getattr(self, f'{name}_bits')}")
        if len(self.coeff_bits) != 4 or len(self.fracs) != 4 or min(self.coeff_bits) < 1 or min(self.fracs) < 0:
            raise ValueError(f"four coefficient widths >= 1 and fractions >= 0 expected, got {self.coeff_bits}, "
                             f"{self.fracs}")
        if self.se:
            if self.hidden < 1 or self.se_simd < 1 or self.channels % self.se_simd or self.hidden % self.se_simd:
                raise ValueError(f"se_simd ({self.se_simd}) must divide the channels ({self.channels}) and the hidden "
                                 f"units ({self.hidden} >= 1)")
            if self.frac - SE_S_FRAC < 1 or self.h_shift < 1 or self.z_shift < 1:
                raise ValueError(f"SE: requantization shifts (s {self.frac - SE_S_FRAC}, h {self.h_shift}, "
                                 f"z {self.z_shift}) must be >= 1")
        elif self.frac - G_IN_FRAC < 1:
            raise ValueError(f"the polynomial's fraction ({self.frac}) must exceed G_IN_FRAC ({G_IN_FRAC})")
        if not 1 <= self.limbs <= max(self.power_sum_bits) or (self.se and self.limbs != 1):
            raise ValueError(f"limbs must lie in 1 .. {max(self.power_sum_bits)} (1 with SE), got {self.limbs}")
        if self.power_table not in (0, 1) or (self.power_table and self.stat_bits > POWER_TABLE_MAX_BITS):
            raise ValueError(f"power_table must be 0 or 1 (1 for stat_bits <= {POWER_TABLE_MAX_BITS}), got "
                             f"{self.power_table} with stat_bits {self.stat_bits}")
        if not self.power_sum_bits[2] <= self.zacc_bits <= 128:
            raise ValueError(f"zacc_bits ({self.zacc_bits}) must be in P3's width ({self.power_sum_bits[2]}) .. 128")
        if self.shortcut_shift < 0:
            raise ValueError(f"shortcut_shift must be >= 0, got {self.shortcut_shift}")
        if self.out_shift < 1:
            raise ValueError(f"out_shift must be >= 1, got {self.out_shift}")
        if not 1 <= self.g_bits <= 24 or not 1 <= self.g_delta_bits <= 24:
            raise ValueError(f"g_bits ({self.g_bits}) and g_delta_bits ({self.g_delta_bits}) must be in 1 .. 24")
        low = self.sc_bits + self.shortcut_shift if not self.shortcut_proj else 2
        if not low <= self.y_bits <= self.d_bits <= 64:
            raise ValueError(f"need {low} <= y_bits ({self.y_bits}) <= d_bits ({self.d_bits}) <= 64")
        if not 1 <= self.t_bits <= self.d_bits:
            raise ValueError(f"t_bits ({self.t_bits}) must be in 1 .. d_bits ({self.d_bits})")
        if not self.stat_reuse and (self.stat_pixels != self.pixels or
                                    self.stat_bits != self.out_bits + STAT_EXTRA_BITS):
            raise ValueError("own statistics: stat_pixels must equal pixels and stat_bits out_bits + "
                             f"{STAT_EXTRA_BITS}")

    @classmethod
    def from_activation(cls, act: ResidualActivation, acc_bound: int, sc_bits: int, pe: int,
                        pixels: int, stat_channels: int | None = None, se_simd: int = 1,
                        limbs: int = 1, power_table: int | None = None) -> InstaTailSpec:
        """The unit for ``act`` (INSTA-PReLU, shift or proj shortcut, own or reused statistics) with
        |acc| <= ``acc_bound`` and a ``sc_bits``-bit shortcut (proj: the projection accumulator's width), folded by
        ``pe``, ``pixels`` output pixels per frame. ``stat_channels``: reuse only, the block input's channels (the
        statistic stream shares the output's folding, so they must equal C; the reference's polynomial needs that
        too). ``se_simd``: INSTA-PReLU+ only, the SE MLP's multipliers (a divisor of C and the hidden units).
        ``limbs``: limbs of the power sums in the multiplier (1 with SE). ``se_simd`` and ``limbs`` are folding
        knobs, chosen by ``hw/compile/folding.py``; ``power_table=None``: tables for statistics of at most
        :data:`~instabnn.hw.blocks.insta_threshold.spec.POWER_TABLE_MAX_BITS` bits."""
        if act.act != "insta" or act.shortcut not in ("shift", "proj"):
            raise ValueError(f"insta_tail computes act='insta', shortcut='shift' or 'proj'; got {act.act!r}, "
                             f"{act.shortcut!r} (RPReLU: residual_tail)")
        if act.stat_source not in ("own", "reuse"):
            raise ValueError(f"stat_source must be 'own' or 'reuse', got {act.stat_source!r}")
        poly = act.poly
        channels = len(act.mult)
        if poly is None or poly.channels != channels:
            raise ValueError(f"the statistic polynomial must have the tail's {channels} channels (reuse: the block "
                             f"input must have as many channels as the output), got "
                             f"{None if poly is None else poly.channels}")
        if act.se is None and poly.out_frac != G_IN_FRAC:
            raise ValueError(f"the polynomial must give z with G_IN_FRAC = {G_IN_FRAC} fraction bits, got "
                             f"{poly.out_frac}")
        if act.se is not None and poly.out_frac != SE_S_FRAC:
            raise ValueError(f"INSTA-PReLU+: the polynomial must give s with SE_S_FRAC = {SE_S_FRAC} fraction bits, "
                             f"got {poly.out_frac}")
        reuse = act.stat_source == "reuse"
        if reuse and stat_channels is not None and stat_channels != channels:
            raise ValueError(f"reused statistics of a {stat_channels}-channel block input cannot shift {channels} "
                             f"output channels (the statistic stream has the output's channels and folding)")
        if not reuse and (poly.pixels != pixels or poly.input_bits != act.stat_bits):
            raise ValueError(f"own statistics over {poly.pixels} pixels of {poly.input_bits} bits; the tail has "
                             f"{pixels} pixels and stat_bits {act.stat_bits}")
        proj = act.shortcut == "proj"
        extra = {"shortcut_proj": True, "shortcut_mult_bits": _array_bits(act.shortcut_mult)} if proj else {}
        if act.se is not None:
            extra.update(se=True, se_simd=se_simd, **se_widths(act.se, channels))
        table = np.asarray(g_table(act.g), dtype=np.int64)
        delta = np.append(table[1:], table[-1]) - table
        g_abs = int(np.abs(table).max())
        sc_bound = 1 << (sc_bits - 1)
        if power_table is None:
            power_table = int(poly.input_bits <= POWER_TABLE_MAX_BITS)
        return cls(
            channels=channels, pe=pe, pixels=pixels, acc_bits=signed_bits(-acc_bound, acc_bound), sc_bits=sc_bits,
            out_bits=act.out_bits, **{f"{name}_bits": _array_bits(getattr(act, name)) for name in CONST_FIELDS},
            shortcut_shift=0 if proj else act.shortcut_shift, out_shift=act.frac + act.out_exp,
            d_bits=act.pre_activation_bits(acc_bound, sc_bound),
            y_bits=signed_bits(-_y_bound(act, acc_bound, sc_bound), _y_bound(act, acc_bound, sc_bound)),
            stat_reuse=reuse, stat_pixels=poly.pixels, stat_bits=poly.input_bits,
            coeff_bits=tuple(_array_bits(c) for c in poly.coeffs), fracs=tuple(poly.fracs),
            zacc_bits=poly.accumulator_bits(), mean_bits=_array_bits(act.shift_mean),
            gain_bits=_array_bits(act.shift_gain), g_bits=_array_bits(table), g_delta_bits=_array_bits(delta),
            t_bits=signed_bits(-_t_bound(act.shift_mean, act.shift_gain, g_abs),
                               _t_bound(act.shift_mean, act.shift_gain, g_abs)),
            g=act.g, power_table=power_table, limbs=limbs, **extra,
        )

    def check_activation(self, act: ResidualActivation) -> None:
        """Refuse constants this unit cannot hold exactly (shape, shifts, statistic format, wider constants)."""
        shortcut_shift = 0 if act.shortcut == "proj" else act.shortcut_shift
        poly = act.poly
        got = (len(act.mult), act.out_bits, shortcut_shift, act.frac + act.out_exp, act.act, act.shortcut,
               act.stat_source, act.se is not None, act.g, None if poly is None else (poly.pixels, poly.input_bits,
                                                                                   tuple(poly.fracs)))
        want = (self.channels, self.out_bits, self.shortcut_shift, self.out_shift, "insta",
                "proj" if self.shortcut_proj else "shift", "reuse" if self.stat_reuse else "own", self.se, self.g,
                (self.stat_pixels, self.stat_bits, tuple(self.fracs)))
        if got != want:
            raise ValueError(f"(C, out_bits, shortcut_shift, out_shift, act, shortcut, stat_source, se, g, "
                             f"statistic) = {got}, unit has {want}")
        for name in self.const_fields + ("mean", "gain"):
            values = getattr(act, {"mean": "shift_mean", "gain": "shift_gain"}.get(name, name))
            need, have = _array_bits(values), getattr(self, f"{name}_bits")
            if need > have:
                raise ValueError(f"{name} needs {need} bits, the unit has {have}")
        for j, (have, c) in enumerate(zip(self.coeff_bits, poly.coeffs)):
            if _array_bits(c) > have:
                raise ValueError(f"coefficient C{j} needs {_array_bits(c)} bits, the unit has {have}")
        if poly.accumulator_bits() > self.zacc_bits:
            raise ValueError(f"Z needs {poly.accumulator_bits()} bits, the unit has {self.zacc_bits}")
        g_abs = int(np.abs(np.asarray(g_table(act.g))).max())
        if signed_bits(-_t_bound(act.shift_mean, act.shift_gain, g_abs),
                       _t_bound(act.shift_mean, act.shift_gain, g_abs)) > self.t_bits:
            raise ValueError(f"T needs more than the unit's {self.t_bits} bits")
        if self.se:
            if act.se is None:
                raise ValueError("the unit computes INSTA-PReLU+ (an SE MLP); the constants have none")
            need = se_widths(act.se, self.channels)
            for name, value in need.items():
                have = getattr(self, name)
                if name.endswith("_shift") or name == "hidden":
                    if value != have:
                        raise ValueError(f"SE constants have {name} = {value}, the unit has {have}")
                elif value > have:
                    raise ValueError(f"SE constants need {name} = {value}, the unit has {have}")

    # ---- folding and widths ----------------------------------------------------------------------------------

    @property
    def const_fields(self) -> tuple[str, ...]:
        return PROJ_CONST_FIELDS if self.shortcut_proj else CONST_FIELDS

    @property
    def stat_beats(self) -> int:
        """Beats per statistic frame (reuse: the block input's; own: = frame_beats)."""
        return self.stat_pixels * self.cf

    acc_width = LaneWidth("acc_bits")
    sc_width = LaneWidth("sc_bits")
    stat_width = LaneWidth("stat_bits")
    out_width = LaneWidth("out_bits")

    @property
    def const_lane_bits(self) -> int:
        return sum(getattr(self, f"{name}_bits") for name in self.const_fields)

    @property
    def const_word_bits(self) -> int:
        return self.pe * self.const_lane_bits

    @property
    def coeff_word_bits(self) -> int:
        return sum(self.coeff_bits) + self.mean_bits + self.gain_bits

    @property
    def g_word_bits(self) -> int:
        return self.g_bits + self.g_delta_bits

    @property
    def frac(self) -> int:
        """The polynomial's common fraction F = max F_j."""
        return max(self.fracs)

    @property
    def power_sum_bits(self) -> tuple[int, int, int]:
        return power_sum_bits(self.stat_bits, self.stat_pixels)

    @property
    def p_bits(self) -> int:
        """Signed width of P: D, or the slope product shifted by SLOPE_FRAC."""
        return max(self.d_bits, self.slope_bits + self.d_bits - SLOPE_FRAC)

    @property
    def o_bits(self) -> int:
        """Signed width of P + 2^(OUT_SHIFT-1)."""
        return max(self.p_bits, self.out_shift) + 2

    # ---- timing ---------------------------------------------------------------------------------------------

    @property
    def compute_steps(self) -> int:
        """Steps of the polynomial (one multiply each) per frame, ``3 * C * limbs``."""
        return 3 * self.channels * self.limbs

    @property
    def mac_steps(self) -> int:
        """SE: clocks of the SE MLP per frame, ``2 HIDDEN C / SE_SIMD`` (0 without SE)."""
        return 2 * self.hidden * self.channels // self.se_simd if self.se else 0

    @property
    def compute_edges(self) -> int:
        """Edges from the start of a frame's shift computation to the write of its last T word."""
        if self.se:
            return self.compute_steps + self.mac_steps + SE_COMPUTE_FIXED
        return self.compute_steps + COMPUTE_PIPELINE

    @property
    def compute_busy(self) -> int:
        """Minimum edges between two starts of the shift computation."""
        return self.compute_steps + self.mac_steps + SE_BUSY_FIXED if self.se else self.compute_steps + 1

    @property
    def issue_latency(self) -> int:
        """own: edges from a frame's last input handshake to its first readout issue; reuse: from the last statistic
        handshake to the first edge at which the frame's acc/sc beats may be taken."""
        front = 0 if self.stat_reuse else FRONT_LATENCY
        return front + STATS_LATENCY + _TOKEN_EDGES + self.compute_edges + _TOKEN_EDGES

    @property
    def latency(self) -> int:
        """own: edges from a frame's last input handshake to its first output handshake; reuse: from a beat's
        acc/sc handshake to its output handshake (REUSE_LATENCY)."""
        return REUSE_LATENCY if self.stat_reuse else self.issue_latency + OUTPUT_EDGES

    @property
    def beat_latency(self) -> int:
        """At full rate: edges from a beat's acc/sc handshake to its output handshake."""
        return REUSE_LATENCY if self.stat_reuse else self.frame_beats - 1 + self.latency

    @property
    def stat_latency(self) -> int:
        """reuse: edges from a frame's last statistic handshake to the earliest acc/sc handshake of that frame."""
        return self.issue_latency

    @property
    def buffer_depth(self) -> int:
        """own: frame buffer depth in beats of Y (the occupancy at full rate); reuse: 0."""
        return 0 if self.stat_reuse else self.frame_beats + self.issue_latency

    @property
    def buffer_bits(self) -> int:
        return self.buffer_depth * self.pe * self.y_bits

    @property
    def g_bram(self) -> bool:
        """The g table (257 x (G_BITS + G_DELTA_BITS) ROM) in a RAMB18 instead of logic (RTL ``G_BRAM``): for a
        plain unit with its own statistic whose frame buffer takes at most :data:`G_BRAM_MAX_BUFFER_BRAM36`."""
        return (not self.se and not self.stat_reuse
                and memory(self.buffer_depth, self.pe * self.y_bits)["bram36"] <= G_BRAM_MAX_BUFFER_BRAM36)

    @property
    def cycles_per_frame(self) -> float:
        """Clocks per frame in steady state with every input always valid and the output always ready (see the
        module docstring): the slowest of the streams, the multiplier and the two token cycles."""
        c3, fb = self.compute_steps, self.frame_beats
        bounds = [fb, self.compute_busy, (self.compute_edges + fb + 2) / 2]
        if self.stat_reuse:
            bounds += [self.stat_beats, (c3 + self.stat_beats + 6) / 2]
        else:
            bounds += [(c3 + fb + FRONT_LATENCY + 6) / 2]
        return float(max(bounds))

    @property
    def full_rate(self) -> bool:
        """True where acc/sc are taken at one beat per clock in steady state."""
        return self.cycles_per_frame == self.frame_beats

    @property
    def name(self) -> str:
        return (f"itail_c{self.channels}_pe{self.pe}_n{self.pixels}_a{self.acc_bits}_s{self.sc_bits}"
                f"_o{self.out_bits}_d{self.d_bits}{'_proj' if self.shortcut_proj else ''}"
                f"{f'_reuse{self.stat_pixels}' if self.stat_reuse else '_own'}"
                f"{f'_se{self.hidden}x{self.se_simd}' if self.se else ''}"
                f"{f'_l{self.limbs}' if self.limbs > 1 else ''}{'_pt' if self.power_table else ''}")

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate (LUT sites: logic and LUT RAM): per lane MULT * acc, SLOPE * D (and
        SHORTCUT_MULT * sc); the polynomial (without SE: moment_poly), the g table (:data:`G_TABLE_LUTS`, or half a
        BRAM36 with :attr:`g_bram`), its interpolation and the gain; the SE-like MLP; the power sums' two LUT RAMs,
        the two-bank T memory; the frame buffer of Y with its own statistic. The constants fitted to hierarchical
        Yosys syntheses of the digits network's four own-statistic units (C = 32 / 64, PE = 1, two limbs: 924 - 1,174
        logic LUTs and 192 - 392 LUT-RAM sites, docs/hardware.md); reuse shifted by the same memory terms from its
        earlier fit (Yosys at C = 64, PE = 1: 894 LUT / 11 DSP)."""
        block = f"insta_tail {self.name}"
        pe = self.pe
        lane = (multiplier_dsp(self.mult_bits, self.acc_bits) + multiplier_dsp(self.slope_bits, self.d_bits)
                + (multiplier_dsp(self.shortcut_mult_bits, self.sc_bits) if self.shortcut_proj else 0))
        seq = moment_poly_sequencer(block, self.stat_bits, self.stat_pixels, pe, self.limbs, self.coeff_bits[1:],
                                    self.power_table)  # SE: LIMBS = 1, the same full-width multiplier
        folds = 1 << max(self.cf - 1, 1).bit_length()  # the RTL's memory depths: powers of two
        stores = (power_sum_memories(pe, self.cf, sum(self.power_sum_bits)) + lut_ram(2 * folds, pe * self.t_bits)
                  + (0 if self.g_bram else G_TABLE_LUTS))
        lut, dsp = seq["lut"] + stores, pe * lane + seq["dsp"] + 2
        if self.se:
            lut, dsp = lut + 400 + 6 * self.se_simd, dsp + self.se_simd + 2
        if self.stat_reuse:
            return estimate(block, lut=lut + _REUSE_LUT + 160 * pe, dsp=dsp)
        out = estimate(block, lut=lut + _OWN_LUT + 165 * pe, dsp=dsp, memories=((self.buffer_depth, pe * self.y_bits),))
        return {**out, "bram36": out["bram36"] + (0.5 if self.g_bram else 0.0)}

    def rtl_parameters(self, const_file: str | PathLike, coeff_file: str | PathLike,
                       g_file: str | PathLike, se_const_file: str | PathLike | None = None,
                       m1_file: str | PathLike | None = None, w1_file: str | PathLike | None = None,
                       w2_file: str | PathLike | None = None) -> dict:
        """Parameters of ``insta_tail`` (the string parameters quoted for Verilator's ``-G``); with SE the SE
        parameters and the four SE files (required then) follow, without SE the set is unchanged."""
        params = {"CHANNELS": self.channels, "PE": self.pe, "PIXELS": self.pixels, "ACC_BITS": self.acc_bits,
                  "SC_BITS": self.sc_bits, "OUT_BITS": self.out_bits}
        for name in CONST_FIELDS:
            params[f"{name.upper()}_BITS"] = getattr(self, f"{name}_bits")
        params.update({"SHORTCUT_SHIFT": self.shortcut_shift, "OUT_SHIFT": self.out_shift, "D_BITS": self.d_bits,
                       "Y_BITS": self.y_bits, "STAT_REUSE": int(self.stat_reuse), "STAT_PIXELS": self.stat_pixels,
                       "STAT_BITS": self.stat_bits, "LIMBS": self.limbs, "POWER_TABLE": self.power_table})
        for j in range(4):
            params[f"COEFF_BITS_{j}"] = self.coeff_bits[j]
        for j in range(4):
            params[f"FRAC_{j}"] = self.fracs[j]
        params.update({"ZACC_BITS": self.zacc_bits, "MEAN_BITS": self.mean_bits, "GAIN_BITS": self.gain_bits,
                       "G_BITS": self.g_bits, "G_DELTA_BITS": self.g_delta_bits, "T_BITS": self.t_bits,
                       "SHORTCUT_PROJ": int(self.shortcut_proj),
                       "SHORTCUT_MULT_BITS": self.shortcut_mult_bits if self.shortcut_proj else 1,
                       "G_BRAM": int(self.g_bram),
                       "CONST_FILE": f'"{Path(const_file)}"', "COEFF_FILE": f'"{Path(coeff_file)}"',
                       "G_FILE": f'"{Path(g_file)}"'})
        if self.se:
            files = {"SE_CONST_FILE": se_const_file, "M1_FILE": m1_file, "W1_FILE": w1_file, "W2_FILE": w2_file}
            if any(v is None for v in files.values()):
                raise ValueError("an SE unit needs se_const_file, m1_file, w1_file and w2_file")
            params.update({"SE": 1, "HIDDEN": self.hidden, "SE_SIMD": self.se_simd, "W1_BITS": self.w1_bits,
                           "W2_BITS": self.w2_bits, "M1_BITS": self.m1_bits, "M2_BITS": self.m2_bits,
                           "B_BITS": self.b_bits, "ACC1_BITS": self.acc1_bits, "Y1_BITS": self.y1_bits,
                           "ACC2_BITS": self.acc2_bits, "Y2_BITS": self.y2_bits, "H_SHIFT": self.h_shift,
                           "Z_SHIFT": self.z_shift})
            params.update({k: f'"{Path(v)}"' for k, v in files.items()})
        return params


# ---- streams ----------------------------------------------------------------------------------------------------


def frame_words(x, spec: InstaTailSpec, bits: int, pixels: int | None = None) -> list[list[int]]:
    """The stream words of frames ``x`` (``(F, C, N)`` or ``(F, C, H, W)``) with ``bits``-bit signed lanes, one
    list per frame; ``pixels`` defaults to ``spec.pixels`` (``spec.stat_pixels`` for the statistic stream)."""
    pixels = spec.pixels if pixels is None else pixels
    return frames.frame_words(x, spec.channels, spec.pe, bits, pixels=pixels)


def frames_from_words(words, spec: InstaTailSpec, bits: int, pixels: int | None = None) -> np.ndarray:
    """Inverse of :func:`frame_words` on a flat word list (whole frames): ``(F, C, N)`` int64."""
    pixels = spec.pixels if pixels is None else pixels
    return frames.frames_from_words(words, spec.channels, spec.pe, pixels, bits)


# ---- memory files -----------------------------------------------------------------------------------------------


def const_words(act: ResidualActivation, spec: InstaTailSpec) -> list[int]:
    """The ``C/PE`` CONST_FILE words in file order (checked against the spec)."""
    spec.check_activation(act)
    widths = [getattr(spec, f"{n}_bits") for n in spec.const_fields]
    words = []
    for f in range(spec.cf):
        word = 0
        for pe in range(spec.pe):
            c = f * spec.pe + pe
            word |= pack_mixed([getattr(act, n)[c] for n in spec.const_fields], widths) << (pe * spec.const_lane_bits)
        words.append(word)
    return words


def _coeff_widths(spec: InstaTailSpec) -> list[int]:
    return list(spec.coeff_bits) + [spec.mean_bits, spec.gain_bits]


def coeff_words(act: ResidualActivation, spec: InstaTailSpec) -> list[int]:
    """The ``C`` COEFF_FILE words ``C0 | C1 | C2 | C3 | MEAN | GAIN`` in file order."""
    spec.check_activation(act)
    widths = _coeff_widths(spec)
    return [pack_mixed([act.poly.coeffs[j][c] for j in range(4)] + [act.shift_mean[c], act.shift_gain[c]], widths)
            for c in range(spec.channels)]


def g_words(spec: InstaTailSpec) -> list[int]:
    """The G_ENTRIES G_FILE words ``BASE | DELTA``."""
    table = list(g_table(spec.g))
    return [pack_mixed([table[i], table[min(i + 1, G_ENTRIES - 1)] - table[i]], [spec.g_bits, spec.g_delta_bits])
            for i in range(G_ENTRIES)]


def write_const_file(path, act: ResidualActivation, spec: InstaTailSpec) -> Path:
    fields = "|".join(n.upper() for n in spec.const_fields)
    widths = "/".join(str(getattr(spec, f"{n}_bits")) for n in spec.const_fields)
    return write_memh(path,
                      const_words(act, spec),
                      spec.const_word_bits,
                      f"insta_tail CONST_FILE {spec.name}: line f, lane pe at bits [pe*{spec.const_lane_bits} +: "
                      f"{spec.const_lane_bits}] = channel f*PE+pe's {fields} from the LSB, signed {widths} bits")


def write_coeff_file(path, act: ResidualActivation, spec: InstaTailSpec) -> Path:
    widths = "/".join(map(str, _coeff_widths(spec)))
    return write_memh(path,
                      coeff_words(act, spec),
                      spec.coeff_word_bits,
                      f"insta_tail COEFF_FILE {spec.name}: line c = C0|C1|C2|C3|MEAN|GAIN from the LSB, signed "
                      f"{widths} bits")


def write_g_file(path, spec: InstaTailSpec) -> Path:
    return write_memh(path,
                      g_words(spec),
                      spec.g_word_bits,
                      f"insta_tail G_FILE g={spec.g}: line i = BASE|DELTA from the LSB, signed {spec.g_bits}/"
                      f"{spec.g_delta_bits} bits, BASE = g_table[i], DELTA = g_table[min(i+1, {G_ENTRIES - 1})] - "
                      f"g_table[i]")


def se_const_words(act: ResidualActivation, spec: InstaTailSpec) -> list[int]:
    """SE: the ``C`` SE_CONST_FILE words ``M2 | B``."""
    spec.check_activation(act)
    return [pack_mixed([act.se.m2[c], act.se.b[c]], [spec.m2_bits, spec.b_bits]) for c in range(spec.channels)]


def m1_words(act: ResidualActivation, spec: InstaTailSpec) -> list[int]:
    """SE: the ``HIDDEN`` M1_FILE words."""
    spec.check_activation(act)
    return [pack_mixed([m], [spec.m1_bits]) for m in act.se.m1]


def _lane_words(matrix, bits: int, lanes: int) -> list[int]:
    flat = [int(w) for w in np.asarray(matrix).reshape(-1)]
    return [pack_mixed(flat[i : i + lanes], [bits] * lanes) for i in range(0, len(flat), lanes)]


def w1_words(act: ResidualActivation, spec: InstaTailSpec) -> list[int]:
    """SE: W1_FILE, line ``k*(C/SE_SIMD) + g``, lane ``l`` = ``W1[k, g*SE_SIMD + l]``."""
    spec.check_activation(act)
    return _lane_words(act.se.w1, spec.w1_bits, spec.se_simd)


def w2_words(act: ResidualActivation, spec: InstaTailSpec) -> list[int]:
    """SE: W2_FILE, line ``c*(HIDDEN/SE_SIMD) + g``, lane ``l`` = ``W2[c, g*SE_SIMD + l]``."""
    spec.check_activation(act)
    return _lane_words(act.se.w2, spec.w2_bits, spec.se_simd)


def write_se_const_file(path, act: ResidualActivation, spec: InstaTailSpec) -> Path:
    return write_memh(path,
                      se_const_words(act, spec),
                      spec.m2_bits + spec.b_bits,
                      f"insta_tail SE_CONST_FILE {spec.name}: line c = M2|B from the LSB, signed "
                      f"{spec.m2_bits}/{spec.b_bits} bits")


def write_m1_file(path, act: ResidualActivation, spec: InstaTailSpec) -> Path:
    return write_memh(path,
                      m1_words(act, spec),
                      spec.m1_bits,
                      f"insta_tail M1_FILE {spec.name}: line k = M1[k], signed {spec.m1_bits} bits")


def write_w1_file(path, act: ResidualActivation, spec: InstaTailSpec) -> Path:
    return write_memh(path,
                      w1_words(act, spec),
                      spec.w1_bits * spec.se_simd,
                      f"insta_tail W1_FILE {spec.name}: line k*(C/SE_SIMD)+g, lane l = W1[k,g*SE_SIMD+l], signed "
                      f"{spec.w1_bits} bits, SE_SIMD = {spec.se_simd}")


def write_w2_file(path, act: ResidualActivation, spec: InstaTailSpec) -> Path:
    return write_memh(path,
                      w2_words(act, spec),
                      spec.w2_bits * spec.se_simd,
                      f"insta_tail W2_FILE {spec.name}: line c*(HIDDEN/SE_SIMD)+g, lane l = W2[c,g*SE_SIMD+l], "
                      f"signed {spec.w2_bits} bits, SE_SIMD = {spec.se_simd}")


def write_memory_files(directory, act: ResidualActivation, spec: InstaTailSpec) -> dict[str, Path]:
    """Write the three files (with SE seven) into ``directory``; returns the keyword arguments of
    :meth:`InstaTailSpec.rtl_parameters`."""
    directory = Path(directory)
    files = {"const_file": write_const_file(directory / "consts.mem", act, spec),
             "coeff_file": write_coeff_file(directory / "coeffs.mem", act, spec),
             "g_file": write_g_file(directory / f"g_{spec.g}.mem", spec)}
    if spec.se:
        files.update({"se_const_file": write_se_const_file(directory / "se_consts.mem", act, spec),
                      "m1_file": write_m1_file(directory / "m1.mem", act, spec),
                      "w1_file": write_w1_file(directory / "w1.mem", act, spec),
                      "w2_file": write_w2_file(directory / "w2.mem", act, spec)})
    return files


def read_const_file(path, spec: InstaTailSpec) -> dict[str, np.ndarray]:
    """``{mult, bias, slope}`` (proj: and ``shortcut_mult``) per channel from a CONST_FILE."""
    words = read_memh(path,
                      spec.const_word_bits)
    if len(words) != spec.cf:
        raise ValueError(f"{path}: {len(words)} lines, expected {spec.cf}")
    widths = [getattr(spec, f"{n}_bits") for n in spec.const_fields]
    out = {n: np.zeros(spec.channels, dtype=np.int64) for n in spec.const_fields}
    for f, word in enumerate(words):
        for pe in range(spec.pe):
            lane = (word >> (pe * spec.const_lane_bits)) & ((1 << spec.const_lane_bits) - 1)
            for n, v in zip(spec.const_fields, unpack_mixed(lane, widths)):
                out[n][f * spec.pe + pe] = v
    return out


def read_coeff_file(path, spec: InstaTailSpec) -> dict[str, np.ndarray]:
    """``{c0, c1, c2, c3, mean, gain}`` per channel from a COEFF_FILE."""
    words = read_memh(path,
                      spec.coeff_word_bits)
    if len(words) != spec.channels:
        raise ValueError(f"{path}: {len(words)} lines, expected {spec.channels}")
    rows = np.array([unpack_mixed(w, _coeff_widths(spec)) for w in words], dtype=object)
    return {n: rows[:, i] for i, n in enumerate(COEFF_FIELDS)}


def read_g_file(path, spec: InstaTailSpec) -> list[tuple[int, int]]:
    """``(BASE, DELTA)`` of every entry from a G_FILE."""
    words = read_memh(path,
                      spec.g_word_bits)
    if len(words) != G_ENTRIES:
        raise ValueError(f"{path}: {len(words)} lines, expected {G_ENTRIES}")
    return [tuple(unpack_mixed(w, [spec.g_bits, spec.g_delta_bits])) for w in words]
