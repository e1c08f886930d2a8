"""Folding, RTL parameters, stream packing and the constant file of the residual block tail with RPReLU
(``residual_tail.sv``).

The unit computes :class:`~instabnn.contract.layers.ResidualActivation` for ``act == "rprelu"`` and
``shortcut == "shift"`` (identity or average-pool shortcut) or ``shortcut == "proj"`` (1x1 projection shortcut,
RTL ``SHORTCUT_PROJ = 1``), per channel c::

    Y = MULT[c] acc + BIAS[c] + SC,                       D = Y - GAMMA[c]
    SC = sc << SHORTCUT_SHIFT (shift) or SHORTCUT_MULT[c] sc (proj: sc = acc_p, its BN shift in BIAS)
    P = D (D >= 0) or floor(SLOPE[c] D / 2^16),           O = P + ZETA[c]
    q = clamp(round_half_up(O / 2^OUT_SHIFT), OUT_BITS), OUT_SHIFT = F + e_out

:class:`ResidualTailSpec` is the one source of truth: built from a ``ResidualActivation`` (the contract's
constants), an accumulator bound and the shortcut's width, it gives every RTL parameter (constant widths from the
constants' ranges, ``D_BITS`` from :meth:`ResidualActivation.pre_activation_bits`), the derived internal widths,
the stream widths, cycles and latency.

Timing: one beat per clock, ``FRAME_BEATS = H*W*C/PE`` clocks per frame; a beat leaves :data:`LATENCY` = 8 edges
after its input handshake (constant read, chunk products, products, add, slope chunk products, slope product,
select + offset + round, shift + clamp into the output FIFO, handshake).

``CONST_FILE``: ``C/PE`` lines; line f, lane pe at bits ``[pe*CONST_W +: CONST_W]`` = channel ``f*PE + pe``'s
``MULT | BIAS | GAMMA | ZETA | SLOPE`` (from the LSB, signed ``MULT_BITS .. SLOPE_BITS``), in proj mode followed by
``SHORTCUT_MULT`` (``SHORTCUT_MULT_BITS``) above SLOPE. The proj unit's shortcut width is the projection
accumulator's, ``signed_bits(-proj_bound, proj_bound)``; ``SHORTCUT_SHIFT`` is 0 (unused) there.

Example::

    act = residual_activation(a, b, 576, "shift", -6, None, {"kind": "rprelu", ...}, -6, 8, 64, "b0")
    spec = ResidualTailSpec.from_activation(act, acc_bound=576, sc_bits=8, pe=16, pixels=64)
    const_file = write_const_file(build / "consts.mem", act, spec)
    params = spec.rtl_parameters(const_file)      # -> Verilator -G / runner parameters

    # 1x1 projection shortcut (Cin = 32 input channels, |acc_p| <= 127 * 32 * 128 * 4)
    kp = 127 * 32 * 128 * 4
    act = residual_activation(a, b, 576, "proj", -6, (a_p, bn_shift_p, kp), {"kind": "rprelu", ...}, -6, 8, 64, "b1")
    spec = ResidualTailSpec.from_activation(act, acc_bound=576, sc_bits=signed_bits(-kp, kp), pe=16, pixels=64)
    # spec.shortcut_proj is True: rtl_parameters adds SHORTCUT_PROJ = 1 and SHORTCUT_MULT_BITS
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from instabnn.hw.blocks.common.resources import estimate
from instabnn.hw.blocks.common import frames
from instabnn.hw.blocks.common.lanes import pack_mixed, unpack_mixed
from instabnn.hw.blocks.common.memfile import read_memh, write_memh
from instabnn.hw.blocks.common.stream_shape import ChannelFolding, LaneWidth
from instabnn.contract.fixed_point import signed_bits
from instabnn.contract.layers import SLOPE_FRAC, ResidualActivation

__all__ = [
    "LATENCY",
    "CONST_FIELDS",
    "PROJ_CONST_FIELDS",
    "ResidualTailSpec",
    "frame_words",
    "frames_from_words",
    "const_words",
    "write_const_file",
    "read_const_file",
]

LATENCY = 8
"""Edges from a beat's input handshake to its earliest ``m_axis`` handshake (see the RTL header)."""

CONST_FIELDS = ("mult", "bias", "gamma", "zeta", "slope")
"""The per-channel constants in the order of a constant lane, from the least significant bit (shift mode)."""

PROJ_CONST_FIELDS = CONST_FIELDS + ("shortcut_mult",)
"""The same in proj mode: ``SHORTCUT_MULT`` above ``SLOPE``."""


def _array_bits(values) -> int:
    v = np.asarray(values, dtype=np.int64)
    return signed_bits(int(v.min()), int(v.max()))


@dataclass(frozen=True)
class ResidualTailSpec(ChannelFolding):
    """One residual tail unit: folding, lane widths, constant widths, shifts; see the module docstring."""

    channels: int  # C
    pe: int  # channels per beat, divides C
    pixels: int  # H*W (sets only the frame length)
    acc_bits: int  # signed width of acc
    sc_bits: int  # signed width of the shortcut integer
    out_bits: int  # signed width of q
    mult_bits: int
    bias_bits: int
    gamma_bits: int
    zeta_bits: int
    slope_bits: int
    shortcut_shift: int  # F + e_shortcut >= 0
    out_shift: int  # F + e_out >= 1
    d_bits: int  # signed width of Y and D
    shortcut_proj: bool = False  # shortcut == "proj": SC = SHORTCUT_MULT[c] * sc
    shortcut_mult_bits: int = 0  # signed width of SHORTCUT_MULT (proj only)

    def __post_init__(self):
        self.check_folding("pixels")
        for name in ("acc_bits", "sc_bits", "out_bits"):
            if not 2 <= getattr(self, name) <= 32:
                raise ValueError(f"{name} must be in 2 .. 32, got {getattr(self, name)}")
        for name in self.const_fields:
            if not 1 <= getattr(self, f"{name}_bits") <= 48:
                raise ValueError(f"{name}_bits must be in 1 .. 48, got {getattr(self, f'{name}_bits')}")
        if self.shortcut_shift < 0:
            raise ValueError(f"shortcut_shift must be >= 0, got {self.shortcut_shift}")
        if self.out_shift < 1:
            raise ValueError(f"out_shift must be >= 1, got {self.out_shift}")
        if self.shortcut_proj:
            if not 2 <= self.d_bits <= 64:
                raise ValueError(f"d_bits ({self.d_bits}) must be in 2 .. 64")
        elif not self.sc_bits + self.shortcut_shift <= self.d_bits <= 64:
            raise ValueError(f"d_bits ({self.d_bits}) must be in sc_bits + shortcut_shift .. 64")

    @classmethod
    def from_activation(cls, act: ResidualActivation, acc_bound: int, sc_bits: int, pe: int,
                        pixels: int) -> ResidualTailSpec:
        """The unit for ``act`` (RPReLU, shift or proj shortcut) with |acc| <= ``acc_bound`` and a ``sc_bits``-bit
        shortcut (proj: the projection accumulator's width), folded by ``pe``."""
        if act.act != "rprelu" or act.shortcut not in ("shift", "proj"):
            raise ValueError(f"residual_tail computes act='rprelu', shortcut='shift' or 'proj'; got {act.act!r}, "
                             f"{act.shortcut!r}")
        proj = act.shortcut == "proj"
        extra = {"shortcut_proj": True, "shortcut_mult_bits": _array_bits(act.shortcut_mult)} if proj else {}
        return cls(
            channels=len(act.mult), pe=pe, pixels=pixels, acc_bits=signed_bits(-acc_bound, acc_bound),
            sc_bits=sc_bits, out_bits=act.out_bits,
            **{f"{name}_bits": _array_bits(getattr(act, name)) for name in CONST_FIELDS},
            shortcut_shift=0 if proj else act.shortcut_shift, out_shift=act.frac + act.out_exp,
            d_bits=act.pre_activation_bits(acc_bound, 1 << (sc_bits - 1)), **extra,
        )

    def check_activation(self, act: ResidualActivation) -> None:
        """Refuse constants this unit cannot hold exactly (shape, shifts, wider constants)."""
        shortcut_shift = 0 if act.shortcut == "proj" else act.shortcut_shift
        got = (len(act.mult), act.out_bits, shortcut_shift, act.frac + act.out_exp, act.act, act.shortcut)
        want = (self.channels, self.out_bits, self.shortcut_shift, self.out_shift, "rprelu",
                "proj" if self.shortcut_proj else "shift")
        if got != want:
            raise ValueError(f"(C, out_bits, shortcut_shift, out_shift, act, shortcut) = {got}, unit has {want}")
        for name in self.const_fields:
            need, have = _array_bits(getattr(act, name)), getattr(self, f"{name}_bits")
            if need > have:
                raise ValueError(f"{name} needs {need} bits, the unit has {have}")

    # ---- folding and widths ----------------------------------------------------------------------------------

    @property
    def const_fields(self) -> tuple[str, ...]:
        """The fields of a constant lane from the LSB: :data:`CONST_FIELDS`, or :data:`PROJ_CONST_FIELDS`."""
        return PROJ_CONST_FIELDS if self.shortcut_proj else CONST_FIELDS

    acc_width = LaneWidth("acc_bits")
    sc_width = LaneWidth("sc_bits")
    out_width = LaneWidth("out_bits")

    @property
    def const_lane_bits(self) -> int:
        """``CONST_W``: one lane of a constant line."""
        return sum(getattr(self, f"{name}_bits") for name in self.const_fields)

    @property
    def const_word_bits(self) -> int:
        return self.pe * self.const_lane_bits

    @property
    def p_bits(self) -> int:
        """Signed width of P: D, or the slope product shifted by SLOPE_FRAC."""
        return max(self.d_bits, self.slope_bits + self.d_bits - SLOPE_FRAC)

    @property
    def o_bits(self) -> int:
        """Signed width of O + 2^(OUT_SHIFT-1)."""
        return max(self.p_bits, self.zeta_bits, self.out_shift) + 2

    # ---- timing ---------------------------------------------------------------------------------------------

    @property
    def latency(self) -> int:
        return LATENCY

    @property
    def cycles_per_frame(self) -> float:
        """Clocks per frame with both inputs always valid and the output always ready: ``FRAME_BEATS``."""
        return float(self.frame_beats)

    @property
    def name(self) -> str:
        return (f"rtail_c{self.channels}_pe{self.pe}_n{self.pixels}_a{self.acc_bits}_s{self.sc_bits}"
                f"_o{self.out_bits}_d{self.d_bits}{'_proj' if self.shortcut_proj else ''}")

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate per lane: the affine, RPReLU and shortcut multipliers and the requantiser."""
        proj = self.shortcut_proj
        return estimate(f"residual_tail {self.name}", lut=(175 if proj else 130) * self.pe,
                        dsp=(5 if proj else 3) * self.pe)

    def rtl_parameters(self, const_file: str | PathLike) -> dict:
        """Parameters of ``residual_tail`` (the string parameter quoted for Verilator's ``-G``)."""
        params = {"CHANNELS": self.channels, "PE": self.pe, "ACC_BITS": self.acc_bits, "SC_BITS": self.sc_bits,
                  "OUT_BITS": self.out_bits}
        for name in CONST_FIELDS:
            params[f"{name.upper()}_BITS"] = getattr(self, f"{name}_bits")
        params.update({"SHORTCUT_SHIFT": self.shortcut_shift, "OUT_SHIFT": self.out_shift, "D_BITS": self.d_bits,
                       "CONST_FILE": f'"{Path(const_file)}"'})
        if self.shortcut_proj:  # shift mode keeps the RTL defaults (SHORTCUT_PROJ = 0)
            params.update({"SHORTCUT_PROJ": 1, "SHORTCUT_MULT_BITS": self.shortcut_mult_bits})
        return params


# ---- streams ----------------------------------------------------------------------------------------------------


def frame_words(x, spec: ResidualTailSpec, bits: int) -> list[list[int]]:
    """The stream words of frames ``x`` (``(F, C, N)`` or ``(F, C, H, W)``) with ``bits``-bit signed lanes, one
    list per frame (``bits`` = ``spec.acc_bits``, ``spec.sc_bits`` or ``spec.out_bits``)."""
    return frames.frame_words(x, spec.channels, spec.pe, bits, pixels=spec.pixels)


def frames_from_words(words, spec: ResidualTailSpec, bits: int) -> np.ndarray:
    """Inverse of :func:`frame_words` on a flat word list (whole frames): ``(F, C, N)`` int64."""
    return frames.frames_from_words(words, spec.channels, spec.pe, spec.pixels, bits)


# ---- constant file ----------------------------------------------------------------------------------------------


def const_words(act: ResidualActivation, spec: ResidualTailSpec) -> list[int]:
    """The ``C/PE`` constant words in file order (checked against the spec)."""
    spec.check_activation(act)
    lane_bits = spec.const_lane_bits
    widths = [getattr(spec, f"{name}_bits") for name in spec.const_fields]
    words = []
    for f in range(spec.cf):
        word = 0
        for pe in range(spec.pe):
            c = f * spec.pe + pe
            lane = pack_mixed([getattr(act, name)[c] for name in spec.const_fields], widths)
            word |= lane << (pe * lane_bits)
        words.append(word)
    return words


def write_const_file(path: str | PathLike, act: ResidualActivation, spec: ResidualTailSpec) -> Path:
    """Write ``CONST_FILE`` of ``spec`` for ``act``."""
    widths = "/".join(str(getattr(spec, f"{n}_bits")) for n in spec.const_fields)
    fields = "|".join(n.upper() for n in spec.const_fields)
    return write_memh(path, const_words(act, spec), spec.const_word_bits,
                      f"residual_tail CONST_FILE {spec.name}: line f, lane pe at bits [pe*{spec.const_lane_bits} +: "
                      f"{spec.const_lane_bits}] = channel f*PE+pe's {fields} from the LSB, signed {widths} bits")


def read_const_file(path: str | PathLike, spec: ResidualTailSpec) -> dict[str, np.ndarray]:
    """The per-channel constants ``{mult, bias, gamma, zeta, slope}`` (proj: and ``shortcut_mult``) from a file
    written by :func:`write_const_file`."""
    out = {name: np.zeros(spec.channels, dtype=np.int64) for name in spec.const_fields}
    words = read_memh(path, spec.const_word_bits)
    if len(words) != spec.cf:
        raise ValueError(f"{path}: {len(words)} lines, expected {spec.cf}")
    widths = [getattr(spec, f"{name}_bits") for name in spec.const_fields]
    for f, word in enumerate(words):
        for pe in range(spec.pe):
            lane = (word >> (pe * spec.const_lane_bits)) & ((1 << spec.const_lane_bits) - 1)
            for name, value in zip(spec.const_fields, unpack_mixed(lane, widths)):
                out[name][f * spec.pe + pe] = value
    return out
