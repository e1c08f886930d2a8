"""Folding, RTL parameters and the constant file of the per-channel affine unit (``channel_affine.sv``).

The unit computes, per channel c, ``q = clamp(shift_round(MULT[c] x + BIAS[c], SHIFT), OUT_BITS)`` (round half
up; ``SHIFT = 0``: no rounding). Two layers of the arithmetic contract are this map:

* the stem's :class:`~instabnn.contract.layers.AffineRequant` (``MULT = A``, ``BIAS = B``,
  ``SHIFT = F + e_out``): :meth:`ChannelAffineSpec.from_requant`;
* the classifier's logit scale ``L = (acc << shift_o) + B_o`` of
  :class:`~instabnn.contract.layers.Classifier` (``MULT = 2^shift_o``, ``BIAS = B_o``, ``SHIFT = 0``, an
  ``OUT_BITS`` from the worst case so that the clamp never acts): :meth:`ChannelAffineSpec.from_classifier`.

:meth:`ChannelAffineSpec.reference` is the golden function in the unit's own terms; it calls the contract's
``shift_round`` and ``clamp_signed``, so it equals the layer it was built from (a test checks both).

Timing: one beat per clock, ``FRAME_BEATS = N*C/PE`` clocks per frame of N pixels; a beat leaves :data:`LATENCY`
= 5 edges after its input handshake.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from instabnn.hw.blocks.common.resources import estimate
from instabnn.hw.blocks.common.memfile import write_memh
from instabnn.contract.packing import pack_fields
from instabnn.contract.fixed_point import signed_bits
from instabnn.contract.layers import AffineRequant, Classifier, clamp_signed, shift_round

__all__ = ["LATENCY", "ChannelAffineSpec", "const_words", "write_const_file"]

LATENCY = 5
"""Edges from a beat's input handshake to its earliest ``m_axis`` handshake (see the RTL header)."""


def _bits(values) -> int:
    v = np.asarray(values, dtype=np.int64)
    return signed_bits(int(v.min()), int(v.max())) if v.size else 1


@dataclass(frozen=True)
class ChannelAffineSpec:
    """One ``channel_affine`` unit with its constants (``mult``, ``bias``: one per channel)."""

    channels: int
    pe: int
    in_bits: int
    out_bits: int
    shift: int
    mult: tuple[int, ...]
    bias: tuple[int, ...]

    def __post_init__(self):
        if self.channels < 1 or self.pe < 1 or self.channels % self.pe:
            raise ValueError(f"PE ({self.pe}) must divide the channels ({self.channels})")
        if len(self.mult) != self.channels or len(self.bias) != self.channels:
            raise ValueError(f"{self.channels} channels but {len(self.mult)} multipliers, {len(self.bias)} biases")
        if not 2 <= self.in_bits <= 48 or not 2 <= self.out_bits <= 64:
            raise ValueError(f"in_bits {self.in_bits} must be in 2 .. 48, out_bits {self.out_bits} in 2 .. 64")
        if not 0 <= self.shift <= 62:
            raise ValueError(f"shift {self.shift} must be in 0 .. 62")
        if self.mult_bits > 48 or self.bias_bits > 48:
            raise ValueError(f"constants need {self.mult_bits} / {self.bias_bits} bits, the unit takes 48")

    @classmethod
    def from_requant(cls, requant: AffineRequant, in_bits: int, pe: int) -> ChannelAffineSpec:
        return cls(len(requant.mult), pe, in_bits, requant.out_bits, requant.frac + requant.out_exp,
                   tuple(int(v) for v in requant.mult), tuple(int(v) for v in requant.bias))

    @classmethod
    def from_classifier(cls, head: Classifier, in_bits: int, pe: int) -> ChannelAffineSpec:
        """The logit scale of ``head`` for accumulators of ``in_bits`` bits; ``out_bits`` holds every logit."""
        shift = np.asarray(head.shift, np.int64)
        if shift.min() < 0:
            raise ValueError(f"classifier shifts {shift.tolist()} must be >= 0")
        mult = [1 << int(s) for s in shift]
        bias = np.asarray(head.bias, np.int64)
        bound = (1 << (in_bits - 1)) * max(mult) + int(np.abs(bias).max())
        return cls(len(mult), pe, in_bits, signed_bits(-bound, bound), 0, tuple(mult), tuple(int(b) for b in bias))

    @property
    def mult_bits(self) -> int:
        return _bits(self.mult)

    @property
    def bias_bits(self) -> int:
        return _bits(self.bias)

    @property
    def cf(self) -> int:
        return self.channels // self.pe

    @property
    def in_width(self) -> int:
        return self.pe * self.in_bits

    @property
    def out_width(self) -> int:
        return self.pe * self.out_bits

    @property
    def latency(self) -> int:
        return LATENCY

    def cycles_per_frame(self, pixels: int) -> int:
        return pixels * self.cf

    def reference(self, x) -> np.ndarray:
        """The golden function on ``x`` of shape ``(F, C, ...)``."""
        x = np.asarray(x, np.int64)
        c = (None, slice(None)) + (None,) * (x.ndim - 2)
        y = np.asarray(self.mult, np.int64)[c] * x + np.asarray(self.bias, np.int64)[c]
        return clamp_signed(shift_round(y, self.shift), self.out_bits)

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate: a multiplier a lane (two DSPs where the operands outgrow one), rounding and
        clamping."""
        wide = self.mult_bits > 18 or self.in_bits > 25
        return estimate(f"channel_affine c{self.channels}_pe{self.pe}", lut=20 + 2 * self.pe * self.out_bits,
                        dsp=(2 if wide else 1) * self.pe)

    def rtl_parameters(self, const_file: str | PathLike) -> dict:
        return {"CHANNELS": self.channels, "PE": self.pe, "IN_BITS": self.in_bits, "OUT_BITS": self.out_bits,
                "MULT_BITS": self.mult_bits, "BIAS_BITS": self.bias_bits, "SHIFT": self.shift,
                "CONST_FILE": f'"{Path(const_file)}"'}


def const_words(spec: ChannelAffineSpec) -> list[int]:
    """The ``C/PE`` constant words: lane pe of word f = channel f*PE + pe, ``MULT | BIAS`` from the LSB."""
    lane_bits = spec.mult_bits + spec.bias_bits
    words = []
    for f in range(spec.cf):
        lanes = []
        for pe in range(spec.pe):
            ch = f * spec.pe + pe
            lanes.append(pack_fields([spec.mult[ch]], spec.mult_bits, signed=True)
                         | pack_fields([spec.bias[ch]], spec.bias_bits, signed=True) << spec.mult_bits)
        words.append(pack_fields(lanes, lane_bits, signed=False))
    return words


def write_const_file(path: str | PathLike, spec: ChannelAffineSpec) -> Path:
    return write_memh(path, const_words(spec), spec.pe * (spec.mult_bits + spec.bias_bits),
                      f"channel_affine CONST_FILE c{spec.channels}_pe{spec.pe}: line f, lane pe = MULT | BIAS")
