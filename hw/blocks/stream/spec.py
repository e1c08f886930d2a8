"""Frozen specs of the stream utilities (``stream_fifo.sv``, ``stream_duplicate.sv``, ``width_converter.sv``
beside this file).

Each spec is the one source of truth for its block: RTL parameters, stream widths, beats per frame, the analytic
cycle count and the latency are derived from it (the RTL derives the same numbers from the same parameters and
states them in its header; the testbenches measure them).
"""

from __future__ import annotations

from dataclasses import dataclass

from instabnn.hw.blocks.common.resources import estimate

__all__ = ["StreamFifoShape", "StreamDuplicateShape", "WidthConverterShape"]


@dataclass(frozen=True)
class StreamFifoShape:
    """``stream_fifo``: ``depth`` RAM words of ``width`` bits (it holds ``depth + 1`` beats)."""

    width: int
    depth: int

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"WIDTH ({self.width}) must be >= 1")
        if self.depth < 2:
            raise ValueError(f"DEPTH ({self.depth}) must be >= 2")

    @property
    def capacity(self) -> int:
        """Beats held with the output stalled: ``DEPTH + 1``."""
        return self.depth + 1

    @property
    def latency(self) -> int:
        """Input handshake at edge t into an empty FIFO -> earliest output handshake at edge t + 2."""
        return 2

    def cycles(self, beats: int) -> int:
        """Steady-state cycles for ``beats`` beats at full rate: one per clock."""
        return beats

    @property
    def name(self) -> str:
        return f"fifo_w{self.width}_d{self.depth}"

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate: pointers and the RAM."""
        return estimate(f"stream_fifo {self.name}", lut=30, memories=((self.depth, self.width),))

    def rtl_parameters(self) -> dict:
        return {"WIDTH": self.width, "DEPTH": self.depth}


@dataclass(frozen=True)
class StreamDuplicateShape:
    """``stream_duplicate``: ``width``-bit beats to two outputs, a 2-entry FIFO each."""

    width: int

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"WIDTH ({self.width}) must be >= 1")

    @property
    def skid(self) -> int:
        """Beats one output may fall behind the other before the input stops: 2."""
        return 2

    @property
    def latency(self) -> int:
        """Input handshake at edge t -> earliest output handshakes at edge t + 1."""
        return 1

    def cycles(self, beats: int) -> int:
        return beats

    @property
    def name(self) -> str:
        return f"dup_w{self.width}"

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate: the two outputs' registers."""
        return estimate(f"stream_duplicate {self.name}", lut=10 + self.width)

    def rtl_parameters(self) -> dict:
        return {"WIDTH": self.width}


@dataclass(frozen=True)
class WidthConverterShape:
    """``width_converter`` from ``in_width``- to ``out_width``-bit beats (one divides the other)."""

    in_width: int
    out_width: int

    def __post_init__(self):
        if self.in_width < 1 or self.out_width < 1:
            raise ValueError("IN_W and OUT_W must be >= 1")
        if self.out_width % self.in_width and self.in_width % self.out_width:
            raise ValueError(f"one of IN_W ({self.in_width}) and OUT_W ({self.out_width}) must divide the other")

    @property
    def ratio(self) -> int:
        """``N``: narrow beats per wide beat."""
        return max(self.in_width, self.out_width) // min(self.in_width, self.out_width)

    @property
    def group(self) -> int:
        """Input beats that make whole output beats: ``N`` up, 1 otherwise."""
        return self.ratio if self.out_width > self.in_width else 1

    def out_beats(self, in_beats: int) -> int:
        if self.out_width >= self.in_width:
            return in_beats // self.ratio
        return in_beats * self.ratio

    def cycles(self, in_beats: int) -> int:
        """Steady-state cycles at full rate: one narrow-side beat per clock, ``max(in beats, out beats)``."""
        return max(in_beats, self.out_beats(in_beats))

    @property
    def latency(self) -> int:
        """Up: the last input beat of a group at edge t -> output handshake at t + 1; down: input handshake at t ->
        first piece at t + 2; equal widths: wires (0)."""
        if self.out_width > self.in_width:
            return 1
        return 2 if self.in_width > self.out_width else 0

    @property
    def name(self) -> str:
        return f"wc_{self.in_width}to{self.out_width}"

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate. Up: registers with enables, a counter. Down: the piece select, which Yosys
        builds as a shifter by ``cnt * OUT_W`` (about ``0.215 IN_W log2 IN_W`` LUTs: 784 -> 14 bits, 1,689 LUT and a
        DSP for the product where ``OUT_W`` is not a power of two)."""
        block = f"width_converter {self.name}"
        if self.in_width <= self.out_width:
            return estimate(block, lut=10 if self.out_width > self.in_width else 0)
        odd = self.out_width & (self.out_width - 1) and self.ratio > 2
        return estimate(block, lut=10 + 0.215 * self.in_width * (self.in_width - 1).bit_length(), dsp=int(bool(odd)))

    def rtl_parameters(self) -> dict:
        return {"IN_W": self.in_width, "OUT_W": self.out_width}
