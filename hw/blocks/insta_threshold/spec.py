"""Spec, RTL parameters, stream packing and coefficient file of the INSTA-Th unit (``insta_threshold.sv``).

:class:`InstaThresholdSpec` is the one source of truth for the unit: its folding (channels, PE, pixels, input
bits, static or instance-aware, shortcut output) and the fixed-point format of its constants (coefficient widths,
fraction bits, threshold accumulator width, all from :class:`~instabnn.contract.insta.InstaThConstants`). The
RTL parameters, stream widths, power-sum widths, buffer depth, cycle count and latency are derived from it; the RTL
derives the same numbers from the same parameters and the testbench checks that they agree.

Streams (FINN order: pixel-major, channel-minor)
------------------------------------------------
Beat ``i = pixel*CF + f`` of a frame (``CF = C/PE``) carries channels ``f*PE .. f*PE + PE - 1`` of one pixel, lane
``pe`` = channel ``f*PE + pe``. ``s_axis`` and ``m_axis_q``: lane ``pe`` at bits ``[pe*INPUT_BITS, (pe+1)*INPUT_BITS)``,
two's complement. ``m_axis``: lane ``pe`` at bit ``pe``, 1 <-> +1 (``q >= t``). Pixel ``p`` of an ``H x W`` frame is
``p = h*W + w``. :func:`frame_words` / :func:`frames_from_words` / :func:`bits_from_words` implement this with
:mod:`instabnn.contract.packing`.

Coefficient file ``COEFF_FILE`` (``$readmemh``, generated; the first line is a ``//`` comment saying so)
-----------------------------------------------------------------------------------------------------
``C`` lines, line ``c`` = channel ``c``'s coefficients ``C0 | C1 | C2 | C3`` from the least significant bit, field
``j`` the two's-complement integer ``coeffs[j][c]`` in ``COEFF_BITS_j = coeff_bits[j]`` bits. A static unit reads
``C0`` only (and its constants have ``C1 = C2 = C3 = 0``).

Timing (s_axis always valid, outputs always ready)
--------------------------------------------------
INSTA-Th (``static = 0``): the sums of a frame are complete :data:`STATS_LATENCY` edges after its last beat is
accepted; two edges later the threshold computation starts (``S = 3*C*limbs`` steps on one multiplier), its last
threshold word is written :data:`COMPUTE_PIPELINE` edges after the last step, and two edges later the readout of the
frame issues its first beat; the compare reaches ``m_axis`` three edges after that. Hence
:attr:`InstaThresholdSpec.latency` ``= S + 15`` edges from the last input handshake of a frame to its first output
handshake, and at full rate each beat leaves ``FRAME_BEATS - 1 + latency`` edges after it entered (one frame plus
``S + 14``). The frame buffer holds ``FRAME_BEATS + S + 12`` beats, the occupancy at full rate. Full rate
(``FRAME_BEATS`` clocks per frame) needs ``FRAME_BEATS >= S + 7``; below that the threshold computation sets the pace
(:attr:`InstaThresholdSpec.cycles_per_frame`). Static (``static = 1``): 2 edges, no buffer, ``FRAME_BEATS`` clocks
per frame.

Example::

    consts = insta_th_constants(mu, sigma, alpha, beta, 2.0 ** -4, pixels=64, input_bits=8)
    spec = InstaThresholdSpec.from_constants(consts, pe=16)
    coeff_file = write_coeff_file(build / "coeffs.mem", consts, spec)
    params = spec.rtl_parameters(coeff_file)      # -> Verilator -G / runner parameters
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from instabnn.hw.blocks.common.resources import estimate, lut_ram, moment_poly_sequencer, power_sum_memories
from instabnn.hw.blocks.common import frames
from instabnn.hw.blocks.common.lanes import pack_mixed, unpack_mixed
from instabnn.hw.blocks.common.memfile import read_memh, write_memh
from instabnn.hw.blocks.common.stream_shape import ChannelFolding, LaneWidth
from instabnn.contract.insta import InstaThConstants, power_sum_bits

__all__ = [
    "STATS_LATENCY",
    "COMPUTE_PIPELINE",
    "STATIC_LATENCY",
    "POWER_TABLE_MAX_BITS",
    "sequencer_limbs",
    "limbs_by_cost",
    "InstaThresholdSpec",
    "frame_words",
    "frames_from_words",
    "bits_from_words",
    "coeff_words",
    "write_coeff_file",
    "read_coeff_file",
]

STATS_LATENCY = 3
"""Edges from the handshake of a frame's last ``s_axis`` beat to the pulse saying its power sums are complete
(``stats_accumulate``: sample, square, cube, add)."""

COMPUTE_PIPELINE = 5
"""Edges from the issue of the threshold computation's last step to the write of its last threshold word
(``insta_threshold_compute``: chunk products, product, accumulate, ceil/clamp, write)."""

STATIC_LATENCY = 2
"""Static unit: edges from an ``s_axis`` handshake to the earliest ``m_axis`` handshake of the same beat (register
``q`` and ``t``, compare into the output FIFO, handshake)."""

POWER_TABLE_MAX_BITS = 8
"""Widest input whose q^2 and q^3 the power sums can take from constant tables (``stats_accumulate``
``POWER_TABLE``), and do by default: 256 entries cost about 90 LUTs a lane on xc7 (Yosys), against two DSP48E1
for the multipliers."""

DSP_B_BITS = 18
"""Signed width of the DSP48E1's narrower multiplier port; a limb of :data:`DSP_B_BITS` - 1 unsigned bits fits it."""


def sequencer_limbs(power_sum_bits) -> int:
    """Limbs of the power sums (``moment_poly``) that put the sequencer's multiplier on one DSP48E1 for
    coefficients of up to 25 bits: 1 where the widest sum fits the 18-bit port, else ``ceil(PW / 17)``."""
    pw = max(power_sum_bits)
    return 1 if pw <= DSP_B_BITS else -(-pw // (DSP_B_BITS - 1))


def limbs_by_cost(power_sum_bits) -> list[int]:
    """The LIMBS folding chooses from (``hw/compile/folding.py``), cheapest first: :func:`sequencer_limbs` (one DSP48E1,
    ``3*C*limbs`` steps), then 1 (a wider multiplier, ``3*C`` steps)."""
    return list(dict.fromkeys((sequencer_limbs(power_sum_bits), 1)))


_INSTA_LUT = 378
"""INSTA-Th's LUTs besides the per-lane terms, the sequencer and the memories (counters, tokens, the coefficient ROM,
the accumulator, ceil and clamp, the output FIFOs): fitted to Yosys, see ``resources``."""

_TOKEN_EDGES = 2
"""Each hand-over between the units goes through a registered frame counter and a registered start: 2 edges."""

_OUTPUT_EDGES = 3
"""Readout issue (block RAM read) -> its register -> output FIFO -> handshake."""

_BANK_MARGIN = max(6, COMPUTE_PIPELINE + 2)
"""Full rate needs ``FRAME_BEATS >= S + _BANK_MARGIN`` (``S`` the computation's steps). With frame ``n``'s last
beat accepted at edge ``e``, its computation issues its last step at ``e + 5 + S`` and frees the stats bank at
``e + 6 + S``; frame ``n+2``'s first beat wants edge ``e + FRAME_BEATS + 1`` and needs the freed bank one edge
earlier: ``FRAME_BEATS >= S + 6``. The threshold bank of frame ``n-1`` is freed as frame ``n``'s readout starts
(``e + S + COMPUTE_PIPELINE + 7``) and frame ``n+1``'s computation takes it at ``e + FRAME_BEATS + 5``:
``FRAME_BEATS >= S + COMPUTE_PIPELINE + 2``, the binding one of the two from ``COMPUTE_PIPELINE = 5`` on (the
slow bench sweep's 6-channel 4 x 2 frames, 24 beats for 18 steps, sit between the two)."""


@dataclass(frozen=True)
class InstaThresholdSpec(ChannelFolding):
    """One INSTA-Th (or static threshold) unit: folding and constant format; see the module docstring."""

    channels: int  # C
    pe: int  # channels per beat, divides C
    pixels: int  # N = H*W
    input_bits: int  # signed width of q, 2 .. 16
    coeff_bits: tuple[int, int, int, int]  # signed widths of C0 .. C3
    fracs: tuple[int, int, int, int]  # fraction bits F0 .. F3
    tacc_bits: int  # signed width of T_fx
    static: int = 0  # 1: static thresholds (RSign), C1..C3 unused
    shortcut: int = 0  # 1: m_axis_q carries the buffered q for the residual shortcut
    limbs: int = 1  # limbs of the power sums in the threshold computation's multiplier (moment_poly)
    power_table: int = 0  # 1: q^2 and q^3 from constant tables in logic instead of multipliers

    def __post_init__(self):
        self.check_folding("pixels")
        if not 2 <= self.input_bits <= 16:
            raise ValueError(f"input_bits must be in 2 .. 16, got {self.input_bits}")
        if len(self.coeff_bits) != 4 or len(self.fracs) != 4 or min(self.coeff_bits) < 1 or min(self.fracs) < 0:
            raise ValueError(f"four coefficient widths >= 1 and fractions >= 0 expected, got {self.coeff_bits}, "
                             f"{self.fracs}")
        if self.static not in (0, 1) or self.shortcut not in (0, 1) or self.power_table not in (0, 1):
            raise ValueError(f"static, shortcut and power_table must be 0 or 1, got {self.static}, {self.shortcut}, "
                             f"{self.power_table}")
        if self.power_table and self.input_bits > POWER_TABLE_MAX_BITS:
            raise ValueError(f"power_table takes input_bits <= {POWER_TABLE_MAX_BITS}, got {self.input_bits}")
        if not 1 <= self.limbs <= max(self.power_sum_bits):
            raise ValueError(f"limbs must lie in 1 .. {max(self.power_sum_bits)}, got {self.limbs}")
        if not self.static and self.tacc_bits < self.power_sum_bits[2]:
            raise ValueError(f"tacc_bits ({self.tacc_bits}) narrower than P3 ({self.power_sum_bits[2]} bits)")

    @classmethod
    def from_constants(cls, consts: InstaThConstants, pe: int, static: int | None = None,
                       shortcut: int = 0, limbs: int = 1,
                       power_table: int | None = None) -> InstaThresholdSpec:
        """The spec of a unit for ``consts`` folded by ``pe`` with ``limbs`` (a folding knob, chosen by
        ``hw/compile/folding.py``). ``static=None``: static iff ``C1 = C2 = C3 = 0``; ``power_table=None``: tables for
        inputs of at most :data:`POWER_TABLE_MAX_BITS` bits."""
        if static is None:
            static = int(not any(any(c) for c in consts.coeffs[1:]))
        if power_table is None:
            power_table = int(not static and consts.input_bits <= POWER_TABLE_MAX_BITS)
        return cls(consts.channels, pe, consts.pixels, consts.input_bits, tuple(consts.coeff_bits),
                   tuple(consts.fracs), consts.threshold_accumulator_bits, static, shortcut, limbs, power_table)

    def check_constants(self, consts: InstaThConstants) -> None:
        """Refuse constants this unit cannot hold exactly (wrong shape, wider coefficients or accumulator)."""
        got = (consts.channels, consts.pixels, consts.input_bits, tuple(consts.fracs))
        want = (self.channels, self.pixels, self.input_bits, tuple(self.fracs))
        if got != want:
            raise ValueError(f"constants (C, N, input bits, fracs) = {got}, unit has {want}")
        for j, (have, need) in enumerate(zip(self.coeff_bits, consts.coeff_bits)):
            if need > have:
                raise ValueError(f"coefficient C{j} needs {need} bits, the unit has {have}")
        if self.static:
            if any(any(c) for c in consts.coeffs[1:]):
                raise ValueError("a static unit takes constants with C1 = C2 = C3 = 0 "
                                 "(static_threshold_constants)")
        elif consts.threshold_accumulator_bits > self.tacc_bits:
            raise ValueError(f"T_fx needs {consts.threshold_accumulator_bits} bits, the unit has {self.tacc_bits}")

    # ---- folding and widths ----------------------------------------------------------------------------------

    in_width = LaneWidth("input_bits")  # s_axis_tdata and m_axis_q_tdata

    @property
    def out_width(self) -> int:
        """``m_axis_tdata`` width: ``PE`` bits."""
        return self.pe

    @property
    def power_sum_bits(self) -> tuple[int, int, int]:
        """Exact widths of P1, P2, P3 (the golden function's, :func:`power_sum_bits`)."""
        return power_sum_bits(self.input_bits, self.pixels)

    @property
    def threshold_bits(self) -> int:
        """Signed width of ``t`` (and of each comparator): ``INPUT_BITS + 1``."""
        return self.input_bits + 1

    @property
    def coeff_word_bits(self) -> int:
        """Width of one coefficient file line: ``sum(coeff_bits)``."""
        return sum(self.coeff_bits)

    # ---- timing ---------------------------------------------------------------------------------------------

    @property
    def compute_steps(self) -> int:
        """Threshold computation: steps (one multiply each) per frame, ``3 * C * limbs``."""
        return 3 * self.channels * self.limbs

    @property
    def issue_latency(self) -> int:
        """INSTA-Th: edges from the handshake of a frame's last beat to the issue of its first readout."""
        return STATS_LATENCY + _TOKEN_EDGES + self.compute_steps + COMPUTE_PIPELINE + _TOKEN_EDGES

    @property
    def latency(self) -> int:
        """Edges from the handshake of a frame's last ``s_axis`` beat (static: of any beat) to the earliest
        ``m_axis`` handshake of the frame's first beat (static: of the same beat)."""
        return STATIC_LATENCY if self.static else self.issue_latency + _OUTPUT_EDGES

    @property
    def beat_latency(self) -> int:
        """At full rate: edges from a beat's ``s_axis`` handshake to its ``m_axis`` handshake (one frame + ...)."""
        return STATIC_LATENCY if self.static else self.frame_beats - 1 + self.latency

    @property
    def buffer_depth(self) -> int:
        """Frame buffer depth in beats (0 for a static unit): the occupancy at full rate."""
        return 0 if self.static else self.frame_beats + self.issue_latency

    @property
    def buffer_bits(self) -> int:
        return self.buffer_depth * self.in_width

    @property
    def full_rate(self) -> bool:
        """True where the unit takes one beat per clock indefinitely (the threshold computation keeps up)."""
        return bool(self.static) or self.frame_beats >= self.compute_steps + _BANK_MARGIN

    @property
    def cycles_per_frame(self) -> float:
        """Clocks per frame in steady state with ``s_axis`` always valid and the outputs always ready.

        Full rate: ``FRAME_BEATS``. Otherwise the banks set the period: the stats bank of frame ``n`` is released
        ``S + 1`` edges after the computation of frame ``n`` starts, and frame ``n+2`` may start at the input one
        edge later; the computation of frame ``n+1`` starts when frame ``n+1`` has been received (or when frame
        ``n``'s ends), and once the threshold bank of frame ``n-1`` is free (``_BANK_MARGIN``). In steady state
        that gives period ``P`` with ``2P = S + max(FRAME_BEATS + _BANK_MARGIN, P + 1)``.
        """
        if self.full_rate:
            return float(self.frame_beats)
        p = self.compute_steps + 1
        if p + 1 >= self.frame_beats + _BANK_MARGIN:
            return float(p)
        return (self.compute_steps + self.frame_beats + _BANK_MARGIN) / 2.0

    @property
    def name(self) -> str:
        kind = "static" if self.static else "insta"
        return (f"{kind}_c{self.channels}_pe{self.pe}_n{self.pixels}_b{self.input_bits}"
                + ("_sc" if self.shortcut else "") + (f"_l{self.limbs}" if self.limbs > 1 else "")
                + ("_pt" if self.power_table else ""))

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate (LUT sites: logic and LUT RAM). Static: compare lanes and the threshold
        memory. INSTA-Th: the power sums' adders and their two LUT RAMs, the moment polynomial's sequencer, the
        two-bank threshold memory and the frame buffer; the constant fitted to hierarchical Yosys syntheses of the
        digits network's four units (C = 32 / 64, PE = 1, tables, two limbs: 634 - 683 logic LUTs and 144 - 264
        LUT-RAM sites, docs/hardware.md)."""
        block = f"insta_threshold {self.name}"
        if self.static:
            return estimate(block, lut=20 + 14 * self.pe,
                            memories=((self.channels // self.pe, self.pe * (self.input_bits + 1)),))
        seq = moment_poly_sequencer(block, self.input_bits, self.pixels, self.pe, self.limbs, self.coeff_bits[1:],
                                    self.power_table)
        folds = 1 << max(self.cf - 1, 1).bit_length()  # the RTL's memory depths: powers of two
        stores = (power_sum_memories(self.pe, self.cf, sum(self.power_sum_bits))
                  + lut_ram(2 * folds, self.pe * (self.input_bits + 1)))
        return estimate(block, lut=_INSTA_LUT + 89 * self.pe + seq["lut"] + stores, dsp=seq["dsp"],
                        memories=((self.buffer_depth, self.pe * self.input_bits),))

    def rtl_parameters(self, coeff_file: str | PathLike) -> dict:
        """Parameters of ``insta_threshold`` (the string parameter quoted for Verilator's ``-G``)."""
        params = {"CHANNELS": self.channels, "PE": self.pe, "PIXELS": self.pixels, "INPUT_BITS": self.input_bits,
                  "STATIC": self.static, "SHORTCUT": self.shortcut, "LIMBS": self.limbs,
                  "POWER_TABLE": self.power_table}
        for j in range(4):
            params[f"COEFF_BITS_{j}"] = self.coeff_bits[j]
        for j in range(4):
            params[f"FRAC_{j}"] = self.fracs[j]
        params["TACC_BITS"] = self.tacc_bits
        params["COEFF_FILE"] = f'"{Path(coeff_file)}"'
        return params


# ---- streams ----------------------------------------------------------------------------------------------------


def frame_words(q, spec: InstaThresholdSpec) -> list[list[int]]:
    """The ``s_axis`` words of frames ``q`` (shape ``(F, C, N)`` or ``(F, C, H, W)``): one list per frame."""
    return frames.frame_words(q, spec.channels, spec.pe, spec.input_bits, pixels=spec.pixels)


def frames_from_words(words, spec: InstaThresholdSpec) -> np.ndarray:
    """Inverse of :func:`frame_words` on a flat word list: frames ``(F, C, N)`` of int64."""
    return frames.frames_from_words(words, spec.channels, spec.pe, spec.pixels, spec.input_bits)


def bits_from_words(words, spec: InstaThresholdSpec) -> np.ndarray:
    """``m_axis`` words (flat list, whole frames) as bits ``(F, C, N)`` (uint8, 1 <-> +1)."""
    return frames.frames_from_words(words, spec.channels, spec.pe, spec.pixels, 1, signed=False, dtype=np.uint8)


# ---- coefficient file -------------------------------------------------------------------------------------------


def coeff_words(consts: InstaThConstants, spec: InstaThresholdSpec) -> list[int]:
    """The ``C`` coefficient words (``C0 | C1 | C2 | C3`` from the LSB) in file order."""
    spec.check_constants(consts)
    return [pack_mixed([consts.coeffs[j][c] for j in range(len(spec.coeff_bits))], spec.coeff_bits)
            for c in range(spec.channels)]


def write_coeff_file(path: str | PathLike, consts: InstaThConstants, spec: InstaThresholdSpec) -> Path:
    """Write ``COEFF_FILE`` of ``spec`` for ``consts`` (checked against the spec)."""
    return write_memh(path, coeff_words(consts, spec), spec.coeff_word_bits,
                      f"insta_threshold COEFF_FILE {spec.name}: line c = C0|C1|C2|C3 from the LSB, signed "
                      f"{'/'.join(map(str, spec.coeff_bits))} bits")


def read_coeff_file(path: str | PathLike, spec: InstaThresholdSpec) -> list[tuple[int, int, int, int]]:
    """The ``(C0, C1, C2, C3)`` of every channel from a file written by :func:`write_coeff_file`."""
    return [tuple(unpack_mixed(word, spec.coeff_bits)) for word in read_memh(path, spec.coeff_word_bits)]
