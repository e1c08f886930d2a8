"""Spec, RTL parameters, stream packing and memory files of the INSTA-Th+ unit (``insta_threshold.sv`` with
``SE = 1``, its computation ``se_mlp.sv`` and the threshold map in ``insta_threshold.sv``).

:class:`InstaThresholdPlusSpec` is the one source of truth for the unit: its folding (channels, PE, pixels, input
bits, hidden units, shortcut output) and the fixed-point format of its constants, every width derived from a
worst-case bound with the actual constants of a :class:`~instabnn.contract.layers.ThresholdPlus` (as
``MomentPolynomial.accumulator_bits`` does for the statistic). The RTL derives the same timing numbers from the same
parameters and the testbench checks that they agree.

Streams: exactly those of the INSTA-Th unit (:mod:`instabnn.hw.blocks.insta_threshold.spec`: FINN order, lane
``pe`` of beat ``pixel*CF + f`` = channel ``f*PE + pe``); :func:`frame_words`, :func:`frames_from_words` and
:func:`bits_from_words` take this spec.

Memory-init files (``$readmemh``; the first line is a ``//`` comment saying they are generated)
----------------------------------------------------------------------------------------------
* ``COEFF_FILE``: ``C`` lines, line c = ``C0 | C1 | C2 | C3`` from the LSB (signed ``coeff_bits``): the statistic's
  polynomial (the layout of the INSTA-Th unit's file).
* ``CONST_FILE``: ``C`` lines, line c = ``M2 | B | OFFSET | GAIN`` from the LSB (signed ``m2_bits``, ``b_bits``,
  ``offset_bits``, ``gain_bits``).
* ``M1_FILE``: ``HIDDEN`` lines, line k = ``M1[k]``.
* ``W1_FILE``: ``HIDDEN*C/SE_SIMD`` lines, line ``k*(C/SE_SIMD) + g`` holds ``W1[k, g*SE_SIMD + l]`` in lane ``l``
  (bits ``[l*w1_bits, (l+1)*w1_bits)``); ``W2_FILE``: ``C*HIDDEN/SE_SIMD`` lines, line ``c*(HIDDEN/SE_SIMD) + g``
  holds ``W2[c, g*SE_SIMD + l]`` in lane ``l`` (signed ``w1_bits``, ``w2_bits``). SE_SIMD = 1: one weight a line.
* ``G_FILE``: 257 lines ``BASE | DELTA`` (the layout of ``insta_tail``'s G_FILE).

Timing (s_axis always valid, outputs always ready)
--------------------------------------------------
The computation takes ``COMPUTE_EDGES = 3C + 2*HIDDEN*C/SE_SIMD + 16`` edges from its start to its last threshold
write (phase A: 3C steps for s; phases B and C: ``HIDDEN*C`` multiply-accumulates each on ``SE_SIMD`` multipliers;
waits and pipelines). ``latency = COMPUTE_EDGES + 10`` edges from a frame's last input handshake to its first output
handshake; the frame buffer holds ``FRAME_BEATS + COMPUTE_EDGES + 7`` beats. Full rate (``FRAME_BEATS = N*C/PE``
clocks per frame) iff ``FRAME_BEATS >= COMPUTE_EDGES + 2``: frame ``n+1``'s computation may start only once frame
``n-1``'s readout has ended (two threshold banks). Below that, :attr:`InstaThresholdPlusSpec.cycles_per_frame`.

Example (the compiler)::

    spec = InstaThresholdPlusSpec.from_constants(unit, pe=16, shortcut=1, se_simd=4)  # SE_SIMD: folding.json
    files = write_memory_files(build / "th_plus0", unit, spec)
    params = spec.rtl_parameters(**files)         # -> insta_threshold parameters (SE = 1)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from instabnn.hw.blocks.common.resources import estimate
from instabnn.hw.blocks.insta_threshold import spec as threshold_spec
from instabnn.hw.blocks.insta_threshold.spec import POWER_TABLE_MAX_BITS
from instabnn.hw.blocks.common.lanes import pack_mixed
from instabnn.hw.blocks.common.memfile import write_memh
from instabnn.hw.blocks.common.stream_shape import ChannelFolding, LaneWidth
from instabnn.contract.fixed_point import signed_bits
from instabnn.contract.insta import power_sum_bits
from instabnn.contract.layers import (G_IN_FRAC, G_OUT_FRAC, SE_H_BITS, SE_H_FRAC, SE_S_BITS, SE_S_FRAC,
                                          ContractError, ThresholdPlus, g_table)

__all__ = [
    "STATS_LATENCY",
    "G_ENTRIES",
    "InstaThresholdPlusSpec",
    "frame_words",
    "frames_from_words",
    "bits_from_words",
    "coeff_words",
    "const_words",
    "m1_words",
    "w1_words",
    "w2_words",
    "g_words",
    "write_coeff_file",
    "write_const_file",
    "write_m1_file",
    "write_w1_file",
    "write_w2_file",
    "write_g_file",
    "write_memory_files",
]

STATS_LATENCY = 3
"""Edges from a frame's last ``s_axis`` handshake to the pulse saying its power sums are complete."""

G_ENTRIES = 257
_COMPUTE_FIXED = 16
"""COMPUTE_EDGES = 3C + 2 HIDDEN C / SE_SIMD + 16: the 3C + 2 HIDDEN C / SE_SIMD issue edges after the start edge,
4 + 4 wait edges between the phases, and 8 pipeline edges after the last phase-C issue (W*h, accumulate, M2*o+B,
g ROM, ROM word register, DELTA*r, G and t_fx, ceil/clamp and write)."""
_BUSY_FIXED = 9
"""Start-to-start minimum of the computation: 3C + 2 HIDDEN C / SE_SIMD + 9 edges."""
_TOKEN_EDGES = 2
_OUTPUT_EDGES = 3


def _bits(values) -> int:
    v = [int(x) for x in np.asarray(values).reshape(-1)] or [0]
    return signed_bits(min(v), max(v))


def _range_product(lo_a: int, hi_a: int, lo_b: int, hi_b: int) -> tuple[int, int]:
    p = [lo_a * lo_b, lo_a * hi_b, hi_a * lo_b, hi_a * hi_b]
    return min(p), max(p)


def _dot_range(weights_row, lo: int, hi: int) -> tuple[int, int]:
    """[min, max] of sum_i w_i v_i over v_i in [lo, hi] (every partial sum lies in it too, as each term's range
    holds 0 where lo <= 0 <= hi)."""
    a = b = 0
    for w in weights_row:
        p0, p1 = int(w) * lo, int(w) * hi
        a += min(p0, p1)
        b += max(p0, p1)
    return a, b


@dataclass(frozen=True)
class InstaThresholdPlusSpec(ChannelFolding):
    """One INSTA-Th+ unit: folding and constant format; see the module docstring."""

    channels: int
    pe: int
    pixels: int
    input_bits: int
    hidden: int
    coeff_bits: tuple[int, int, int, int]
    fracs: tuple[int, int, int, int]
    tacc_bits: int
    w1_bits: int
    w2_bits: int
    m1_bits: int
    m2_bits: int
    b_bits: int
    acc1_bits: int
    y1_bits: int
    acc2_bits: int
    y2_bits: int
    z_bits: int
    h_shift: int
    z_shift: int
    g: str
    g_bits: int
    g_delta_bits: int
    offset_bits: int
    gain_bits: int
    tplus_bits: int
    t_frac: int
    shortcut: int = 0
    se_simd: int = 1  # multipliers of the SE MLP (products per clock); divides channels and hidden
    power_table: int = 0  # 1: q^2 and q^3 of the power sums from constant tables instead of multipliers

    def __post_init__(self):
        self.check_folding("pixels", "hidden")
        if not 2 <= self.input_bits <= 16:
            raise ValueError(f"input_bits must be in 2 .. 16, got {self.input_bits}")
        if self.shortcut not in (0, 1):
            raise ValueError(f"shortcut must be 0 or 1, got {self.shortcut}")
        if self.power_table not in (0, 1) or (self.power_table and self.input_bits > POWER_TABLE_MAX_BITS):
            raise ValueError(f"power_table must be 0 or 1 (1 for input_bits <= {POWER_TABLE_MAX_BITS}), got "
                             f"{self.power_table}")
        if self.se_simd < 1 or self.channels % self.se_simd or self.hidden % self.se_simd:
            raise ValueError(f"se_simd ({self.se_simd}) must divide the channels ({self.channels}) and the hidden "
                             f"units ({self.hidden})")
        if self.s_shift < 1 or self.h_shift < 1 or self.z_shift < 1:
            raise ContractError(f"INSTA-Th+: requantization shifts (s {self.s_shift}, h {self.h_shift}, "
                                f"z {self.z_shift}) must be >= 1")
        if self.tacc_bits < self.power_sum_bits[2]:
            raise ValueError(f"tacc_bits ({self.tacc_bits}) narrower than P3 ({self.power_sum_bits[2]} bits)")

    @classmethod
    def from_constants(cls, unit: ThresholdPlus, pe: int, shortcut: int = 0, se_simd: int = 1,
                       power_table: int | None = None) -> InstaThresholdPlusSpec:
        """The spec of a unit for ``unit`` folded by ``pe``; every width from the worst case over all inputs.
        ``se_simd``: the SE MLP's multipliers (a folding knob, chosen by ``hw/compile/folding.py``);
        ``power_table=None``: tables for inputs of at most
        :data:`~instabnn.hw.blocks.insta_threshold.spec.POWER_TABLE_MAX_BITS` bits."""
        poly, se = unit.poly, unit.se
        if poly.out_frac != SE_S_FRAC:
            raise ContractError(f"INSTA-Th+: the statistic must have out_frac = SE_S_FRAC, got {poly.out_frac}")
        w1, w2 = np.asarray(se.w1, np.int64), np.asarray(se.w2, np.int64)
        hidden, channels = w1.shape
        if w2.shape != (channels, hidden) or poly.channels != channels:
            raise ValueError(f"INSTA-Th+: W1 {w1.shape}, W2 {w2.shape} and {poly.channels} statistic channels "
                             "do not agree")
        smin, smax = -(1 << (SE_S_BITS - 1)), (1 << (SE_S_BITS - 1)) - 1
        hmax = (1 << SE_H_BITS) - 1
        acc1 = [_dot_range(w1[k], smin, smax) for k in range(hidden)]
        y1 = [_range_product(int(se.m1[k]), int(se.m1[k]), *acc1[k]) for k in range(hidden)]
        acc2 = [_dot_range(w2[c], 0, hmax) for c in range(channels)]
        y2 = [tuple(v + int(se.b[c]) for v in _range_product(int(se.m2[c]), int(se.m2[c]), *acc2[c]))
              for c in range(channels)]
        z_shift = se.mult_frac2 + SE_H_FRAC - G_IN_FRAC
        z = [((lo + (1 << (z_shift - 1))) >> z_shift, (hi + (1 << (z_shift - 1))) >> z_shift) if z_shift >= 1
             else (lo, hi) for lo, hi in y2]
        table = g_table(unit.g)
        deltas = [table[min(i + 1, G_ENTRIES - 1)] - table[i] for i in range(G_ENTRIES)]
        gmin, gmax = min(table), max(table)
        t = []
        for c in range(channels):
            lo, hi = _range_product(int(unit.gain[c]), int(unit.gain[c]), gmin, gmax)
            base = int(unit.offset[c]) << G_OUT_FRAC
            t.append((base + lo, base + hi))

        def span(ranges):
            return signed_bits(min(r[0] for r in ranges), max(r[1] for r in ranges))

        return cls(channels=channels, pe=pe, pixels=poly.pixels, input_bits=unit.input_bits, hidden=hidden,
                   coeff_bits=tuple(_bits(c) for c in poly.coeffs), fracs=tuple(poly.fracs),
                   tacc_bits=poly.accumulator_bits(), w1_bits=_bits(w1), w2_bits=_bits(w2), m1_bits=_bits(se.m1),
                   m2_bits=_bits(se.m2), b_bits=_bits(se.b), acc1_bits=span(acc1), y1_bits=span(y1),
                   acc2_bits=span(acc2), y2_bits=span(y2), z_bits=span(z),
                   h_shift=se.mult_frac1 + SE_S_FRAC - SE_H_FRAC, z_shift=z_shift, g=unit.g,
                   g_bits=_bits(table), g_delta_bits=_bits(deltas), offset_bits=_bits(unit.offset),
                   gain_bits=_bits(unit.gain), tplus_bits=span(t), t_frac=unit.frac + G_OUT_FRAC,
                   shortcut=shortcut, se_simd=se_simd,
                   power_table=int(unit.input_bits <= POWER_TABLE_MAX_BITS) if power_table is None else power_table)

    def check_constants(self, unit: ThresholdPlus) -> None:
        """Refuse constants this unit cannot hold exactly (any width or format differing from the spec's)."""
        other = InstaThresholdPlusSpec.from_constants(unit, self.pe, self.shortcut, self.se_simd, self.power_table)
        mine, theirs = asdict(self), asdict(other)
        fixed = ("channels", "pixels", "input_bits", "hidden", "fracs", "h_shift", "z_shift", "g", "t_frac")
        for name in fixed:
            if mine[name] != theirs[name]:
                raise ValueError(f"constants have {name} = {theirs[name]}, the unit has {mine[name]}")
        for name, have in mine.items():
            if name.endswith("_bits") and name != "input_bits":
                need = theirs[name]
                pairs = zip(need, have) if isinstance(have, tuple) else [(need, have)]
                if any(n > h for n, h in pairs):
                    raise ValueError(f"constants need {name} = {need}, the unit has {have}")

    # ---- folding and widths ----------------------------------------------------------------------------------

    in_width = LaneWidth("input_bits")

    @property
    def out_width(self) -> int:
        return self.pe

    @property
    def power_sum_bits(self) -> tuple[int, int, int]:
        return power_sum_bits(self.input_bits, self.pixels)

    @property
    def s_shift(self) -> int:
        """``FRAC - SE_S_FRAC``: the rounding shift from the polynomial to s."""
        return max(self.fracs) - SE_S_FRAC

    @property
    def threshold_bits(self) -> int:
        return self.input_bits + 1

    @property
    def coeff_word_bits(self) -> int:
        return sum(self.coeff_bits)

    @property
    def const_word_bits(self) -> int:
        return self.m2_bits + self.b_bits + self.offset_bits + self.gain_bits

    @property
    def g_word_bits(self) -> int:
        return self.g_bits + self.g_delta_bits

    @property
    def constant_bits(self) -> int:
        """Bits of the six constant memories (COEFF, CONST, M1, W1, W2, G)."""
        c, h = self.channels, self.hidden
        return (c * (self.coeff_word_bits + self.const_word_bits) + h * self.m1_bits
                + h * c * (self.w1_bits + self.w2_bits) + G_ENTRIES * self.g_word_bits)

    @property
    def memory_bits(self) -> int:
        """Frame buffer plus constant memories (the compiler's ``layer.memory_bits``)."""
        return self.buffer_bits + self.constant_bits

    # ---- timing ---------------------------------------------------------------------------------------------

    @property
    def macs_per_frame(self) -> int:
        """Multiply-accumulates of the SE MLP per frame (both layers): ``2 * HIDDEN * C``."""
        return 2 * self.hidden * self.channels

    @property
    def mac_steps(self) -> int:
        """Clocks of the SE MLP per frame, ``SE_SIMD`` multiplies each: ``2 * HIDDEN * C / SE_SIMD``."""
        return self.macs_per_frame // self.se_simd

    @property
    def compute_edges(self) -> int:
        """Edges from the start of a frame's computation to the write of its last threshold word."""
        return 3 * self.channels + self.mac_steps + _COMPUTE_FIXED

    @property
    def compute_busy(self) -> int:
        """Minimum edges between two computation starts."""
        return 3 * self.channels + self.mac_steps + _BUSY_FIXED

    @property
    def issue_latency(self) -> int:
        """Edges from the handshake of a frame's last beat to the issue of its first readout."""
        return STATS_LATENCY + _TOKEN_EDGES + self.compute_edges + _TOKEN_EDGES

    @property
    def latency(self) -> int:
        """Edges from the handshake of a frame's last ``s_axis`` beat to the earliest ``m_axis`` handshake of its
        first beat: ``COMPUTE_EDGES + 10``."""
        return self.issue_latency + _OUTPUT_EDGES

    @property
    def beat_latency(self) -> int:
        """At full rate: edges from a beat's ``s_axis`` handshake to its ``m_axis`` handshake."""
        return self.frame_beats - 1 + self.latency

    @property
    def buffer_depth(self) -> int:
        """Frame buffer depth in beats: the occupancy at full rate."""
        return self.frame_beats + self.issue_latency

    @property
    def buffer_bits(self) -> int:
        return self.buffer_depth * self.in_width

    @property
    def full_rate(self) -> bool:
        """True where the unit takes one beat per clock indefinitely: ``FRAME_BEATS >= COMPUTE_EDGES + 2``."""
        return self.frame_beats >= self.compute_edges + 2

    @property
    def cycles_per_frame(self) -> float:
        """Clocks per frame in steady state (s_axis always valid, outputs always ready).

        With S_n the start of frame n's computation, its readout ends at S_n + COMPUTE_EDGES + FRAME_BEATS + 1, and
        frame n+2's computation may start one edge later (two threshold banks); a computation also needs the
        previous one to have ended (``compute_busy``). Period ``P = max(FRAME_BEATS, compute_busy,
        (COMPUTE_EDGES + FRAME_BEATS + 2) / 2)``; at full rate it is ``FRAME_BEATS``.
        """
        if self.full_rate:
            return float(self.frame_beats)
        return float(max(self.frame_beats, self.compute_busy, (self.compute_edges + self.frame_beats + 2) / 2))

    @property
    def name(self) -> str:
        return (f"plus_c{self.channels}_pe{self.pe}_n{self.pixels}_b{self.input_bits}_h{self.hidden}"
                + (f"_s{self.se_simd}" if self.se_simd > 1 else "") + ("_sc" if self.shortcut else "")
                + ("_pt" if self.power_table else ""))

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate (Yosys at C = 64, PE = 16: 3,389 LUT / 45 DSP with SE_SIMD 1, 3,475 / 60 with
        16): the SE-like MLP's multipliers, the power sums' squares and cubes (2 DSP a lane, or about 90 LUT from
        tables) and the frame buffer."""
        pe, simd, table = self.pe, self.se_simd, self.power_table
        return estimate(f"insta_threshold {self.name}", lut=1300 + (125 + 90 * table) * pe + 6 * simd,
                        dsp=(0 if table else 2 * pe) + 12 + simd,
                        memories=((self.buffer_depth, pe * self.input_bits),))

    def rtl_parameters(self, coeff_file, const_file, m1_file, w1_file, w2_file, g_file) -> dict:
        """Parameters of ``insta_threshold`` with ``SE = 1`` (file names quoted for Verilator's ``-G``)."""
        params = {"CHANNELS": self.channels, "PE": self.pe, "PIXELS": self.pixels, "INPUT_BITS": self.input_bits,
                  "STATIC": 0, "SE": 1, "HIDDEN": self.hidden, "SE_SIMD": self.se_simd, "SHORTCUT": self.shortcut,
                  "POWER_TABLE": self.power_table}
        for j in range(4):
            params[f"COEFF_BITS_{j}"] = self.coeff_bits[j]
        for j in range(4):
            params[f"FRAC_{j}"] = self.fracs[j]
        params.update({"TACC_BITS": self.tacc_bits, "W1_BITS": self.w1_bits,
                       "W2_BITS": self.w2_bits, "M1_BITS": self.m1_bits, "M2_BITS": self.m2_bits,
                       "B_BITS": self.b_bits, "ACC1_BITS": self.acc1_bits, "Y1_BITS": self.y1_bits,
                       "ACC2_BITS": self.acc2_bits, "Y2_BITS": self.y2_bits, "H_SHIFT": self.h_shift,
                       "Z_SHIFT": self.z_shift, "G_BITS": self.g_bits, "G_DELTA_BITS": self.g_delta_bits,
                       "OFFSET_BITS": self.offset_bits, "GAIN_BITS": self.gain_bits, "TPLUS_BITS": self.tplus_bits,
                       "T_FRAC": self.t_frac})
        for name, path in (("COEFF_FILE", coeff_file), ("CONST_FILE", const_file), ("M1_FILE", m1_file),
                           ("W1_FILE", w1_file), ("W2_FILE", w2_file), ("G_FILE", g_file)):
            params[name] = f'"{Path(path)}"'
        return params

    @classmethod
    def from_dict(cls, d: dict) -> InstaThresholdPlusSpec:
        d = dict(d)
        d["coeff_bits"], d["fracs"] = tuple(d["coeff_bits"]), tuple(d["fracs"])
        return cls(**d)


# ---- streams (the INSTA-Th unit's) -------------------------------------------------------------------------------


def frame_words(q, spec: InstaThresholdPlusSpec) -> list[list[int]]:
    return threshold_spec.frame_words(q, spec)


def frames_from_words(words, spec: InstaThresholdPlusSpec) -> np.ndarray:
    return threshold_spec.frames_from_words(words, spec)


def bits_from_words(words, spec: InstaThresholdPlusSpec) -> np.ndarray:
    return threshold_spec.bits_from_words(words, spec)


# ---- memory files -----------------------------------------------------------------------------------------------


def coeff_words(unit: ThresholdPlus, spec: InstaThresholdPlusSpec) -> list[int]:
    """COEFF_FILE: ``C0 | C1 | C2 | C3`` per channel."""
    spec.check_constants(unit)
    return [pack_mixed([unit.poly.coeffs[j][c] for j in range(4)], spec.coeff_bits) for c in range(spec.channels)]


def const_widths(spec: InstaThresholdPlusSpec) -> list[int]:
    return [spec.m2_bits, spec.b_bits, spec.offset_bits, spec.gain_bits]


def const_words(unit: ThresholdPlus, spec: InstaThresholdPlusSpec) -> list[int]:
    """CONST_FILE: ``M2 | B | OFFSET | GAIN`` per channel."""
    spec.check_constants(unit)
    se = unit.se
    return [pack_mixed([se.m2[c], se.b[c], unit.offset[c], unit.gain[c]], const_widths(spec))
            for c in range(spec.channels)]


def m1_words(unit: ThresholdPlus, spec: InstaThresholdPlusSpec) -> list[int]:
    """M1_FILE: line k = ``M1[k]``."""
    spec.check_constants(unit)
    return [pack_mixed([m], [spec.m1_bits]) for m in unit.se.m1]


def _lane_words(matrix, bits: int, lanes: int) -> list[int]:
    flat = [int(w) for w in np.asarray(matrix).reshape(-1)]
    return [pack_mixed(flat[i : i + lanes], [bits] * lanes) for i in range(0, len(flat), lanes)]


def w1_words(unit: ThresholdPlus, spec: InstaThresholdPlusSpec) -> list[int]:
    """W1_FILE: line ``k*(C/SE_SIMD) + g``, lane ``l`` = ``W1[k, g*SE_SIMD + l]``."""
    spec.check_constants(unit)
    return _lane_words(unit.se.w1, spec.w1_bits, spec.se_simd)


def w2_words(unit: ThresholdPlus, spec: InstaThresholdPlusSpec) -> list[int]:
    """W2_FILE: line ``c*(HIDDEN/SE_SIMD) + g``, lane ``l`` = ``W2[c, g*SE_SIMD + l]``."""
    spec.check_constants(unit)
    return _lane_words(unit.se.w2, spec.w2_bits, spec.se_simd)


def g_words(spec: InstaThresholdPlusSpec) -> list[int]:
    """G_FILE: ``BASE | DELTA`` per table entry."""
    table = list(g_table(spec.g))
    return [pack_mixed([table[i], table[min(i + 1, G_ENTRIES - 1)] - table[i]], [spec.g_bits, spec.g_delta_bits])
            for i in range(G_ENTRIES)]


def write_coeff_file(path, unit: ThresholdPlus, spec: InstaThresholdPlusSpec) -> Path:
    return write_memh(path,
                      coeff_words(unit, spec),
                      spec.coeff_word_bits,
                      f"insta_threshold (SE = 1) COEFF_FILE {spec.name}: line c = C0|C1|C2|C3 from the LSB, signed "
                      f"{'/'.join(map(str, spec.coeff_bits))} bits")


def write_const_file(path, unit: ThresholdPlus, spec: InstaThresholdPlusSpec) -> Path:
    return write_memh(path,
                      const_words(unit, spec),
                      spec.const_word_bits,
                      f"insta_threshold (SE = 1) CONST_FILE {spec.name}: line c = M2|B|OFFSET|GAIN from the LSB, "
                      f"signed {'/'.join(map(str, const_widths(spec)))} bits")


def write_m1_file(path, unit: ThresholdPlus, spec: InstaThresholdPlusSpec) -> Path:
    return write_memh(path,
                      m1_words(unit, spec),
                      spec.m1_bits,
                      f"insta_threshold (SE = 1) M1_FILE {spec.name}: line k = M1[k], signed {spec.m1_bits} bits")


def write_w1_file(path, unit: ThresholdPlus, spec: InstaThresholdPlusSpec) -> Path:
    return write_memh(path,
                      w1_words(unit, spec),
                      spec.w1_bits * spec.se_simd,
                      f"insta_threshold (SE = 1) W1_FILE {spec.name}: line k*(C/SE_SIMD)+g, lane l = "
                      f"W1[k,g*SE_SIMD+l], signed {spec.w1_bits} bits, SE_SIMD = {spec.se_simd}")


def write_w2_file(path, unit: ThresholdPlus, spec: InstaThresholdPlusSpec) -> Path:
    return write_memh(path,
                      w2_words(unit, spec),
                      spec.w2_bits * spec.se_simd,
                      f"insta_threshold (SE = 1) W2_FILE {spec.name}: line c*(HIDDEN/SE_SIMD)+g, lane l = "
                      f"W2[c,g*SE_SIMD+l], signed {spec.w2_bits} bits, SE_SIMD = {spec.se_simd}")


def write_g_file(path, spec: InstaThresholdPlusSpec) -> Path:
    return write_memh(path,
                      g_words(spec),
                      spec.g_word_bits,
                      f"insta_threshold (SE = 1) G_FILE g={spec.g}: line i = BASE|DELTA from the LSB, signed "
                      f"{spec.g_bits}/{spec.g_delta_bits} bits")


def write_memory_files(directory, unit: ThresholdPlus, spec: InstaThresholdPlusSpec,
                       prefix: str = "") -> dict[str, Path]:
    """Write the six files of the unit into ``directory`` (names ``{prefix}coeffs.mem`` ...); returns the keyword
    arguments of :meth:`InstaThresholdPlusSpec.rtl_parameters`."""
    d = Path(directory)
    return {"coeff_file": write_coeff_file(d / f"{prefix}coeffs.mem", unit, spec),
            "const_file": write_const_file(d / f"{prefix}consts.mem", unit, spec),
            "m1_file": write_m1_file(d / f"{prefix}m1.mem", unit, spec),
            "w1_file": write_w1_file(d / f"{prefix}w1.mem", unit, spec),
            "w2_file": write_w2_file(d / f"{prefix}w2.mem", unit, spec),
            "g_file": write_g_file(d / f"{prefix}g_{spec.g}.mem", spec)}
