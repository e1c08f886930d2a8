"""Frozen specs of the streaming blocks that have no memory-init files: the sliding-window generator
(``hw/rtl/sliding_window.sv``) and the stream utilities (``stream_fifo.sv``, ``stream_duplicate.sv``,
``width_converter.sv``).

Each spec is the one source of truth for its block: RTL parameters, stream widths, beats per frame, the analytic
cycle count and the latency are derived from it (the RTL derives the same numbers from the same parameters and
states them in its header; the testbenches measure them).

Example::

    sw = SlidingWindowShape(channels=16, height=32, width=32, kernel=3, stride=1, pad=1, simd=16, elem_bits=1)
    sw.mw               # 144: the MW of the MVU it feeds (K*K*C)
    sw.cycles_per_frame # 9216 = max(input beats 1024, output beats 9216)
    sw.rtl_parameters() # {"C": 16, "H": 32, ...}
"""

from __future__ import annotations

from dataclasses import dataclass

from instabnn.hw.reference.window import conv_output_dim

__all__ = [
    "SlidingWindowShape",
    "SLIDING_WINDOW_LATENCY",
    "StreamFifoShape",
    "StreamDuplicateShape",
    "WidthConverterShape",
]

SLIDING_WINDOW_LATENCY = 4
"""Clock edges from the ``s_axis`` handshake that completes the last input row an output row needs (while the
generator waits for it) to the earliest ``m_axis`` handshake of that output row's first beat: issue at ``t+1``
(the complete-row count is a register), address at ``t+1``, RAM read at ``t+2``, output FIFO at ``t+3``, handshake
at ``t+4``."""


@dataclass(frozen=True)
class SlidingWindowShape:
    """A ``channels x height x width`` feature map, ``kernel x kernel`` windows with ``stride`` and ``pad`` (pad
    element code ``pad_value``), ``simd`` channels of ``elem_bits`` bits per beat."""

    channels: int
    height: int
    width: int
    kernel: int
    stride: int = 1
    pad: int = 0
    simd: int = 1
    elem_bits: int = 1
    pad_value: int = 0  # the pad element's code: 0 for bipolar -1 (binary) and for integer 0

    def __post_init__(self):
        for name in ("channels", "height", "width", "kernel", "stride", "simd"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.channels % self.simd:
            raise ValueError(f"SIMD ({self.simd}) must divide C ({self.channels})")
        if not 0 <= self.pad < self.kernel:
            raise ValueError(f"PAD ({self.pad}) must be in [0, K-1] = [0, {self.kernel - 1}]")
        if min(self.height, self.width) + 2 * self.pad < self.kernel:
            raise ValueError(f"the {self.kernel}x{self.kernel} kernel does not fit the padded map")
        if not 1 <= self.elem_bits <= 30:
            raise ValueError(f"ELEM_BITS ({self.elem_bits}) must be in [1, 30]")
        if not 0 <= self.pad_value < 1 << self.elem_bits:
            raise ValueError(f"PAD_VALUE ({self.pad_value}) must be an ELEM_BITS-bit code")

    @property
    def cf(self) -> int:
        """Channel folds: beats per pixel, ``C / SIMD``."""
        return self.channels // self.simd

    @property
    def out_height(self) -> int:
        return conv_output_dim(self.height, self.kernel, self.stride, self.pad)

    @property
    def out_width(self) -> int:
        return conv_output_dim(self.width, self.kernel, self.stride, self.pad)

    @property
    def mw(self) -> int:
        """Window vector length, the ``MW`` of the MVU it feeds: ``K*K*C``."""
        return self.kernel * self.kernel * self.channels

    @property
    def data_width(self) -> int:
        """``s_axis_tdata`` and ``m_axis_tdata`` width: ``SIMD * ELEM_BITS``."""
        return self.simd * self.elem_bits

    @property
    def in_beats(self) -> int:
        """Input beats per frame: ``H * W * C / SIMD``."""
        return self.height * self.width * self.cf

    @property
    def out_beats(self) -> int:
        """Output beats per frame: ``OH * OW * K * K * C / SIMD``."""
        return self.out_height * self.out_width * self.kernel * self.kernel * self.cf

    @property
    def buffer_rows(self) -> int:
        """Input rows in the line buffer: ``max(K + S + 1, H - LO_LAST + K - P + 1)``, with ``LO_LAST`` the first
        input row of the last output row (see the RTL header)."""
        lo_last = max(0, (self.out_height - 1) * self.stride - self.pad)
        return max(self.kernel + self.stride + 1, self.height - lo_last + self.kernel - self.pad + 1)

    @property
    def buffer_bits(self) -> int:
        """Line-buffer RAM size: ``ROWS * W * C * ELEM_BITS``."""
        return self.buffer_rows * self.width * self.channels * self.elem_bits

    @property
    def cycles_per_frame(self) -> int:
        """Steady-state clock cycles per frame at full rate: ``max(input beats, output beats)``."""
        return max(self.in_beats, self.out_beats)

    @property
    def latency(self) -> int:
        """See :data:`SLIDING_WINDOW_LATENCY`."""
        return SLIDING_WINDOW_LATENCY

    @property
    def name(self) -> str:
        return (f"c{self.channels}_h{self.height}_w{self.width}_k{self.kernel}_s{self.stride}_p{self.pad}"
                f"_simd{self.simd}_e{self.elem_bits}_pv{self.pad_value}")

    def rtl_parameters(self) -> dict:
        """Parameters of ``sliding_window``."""
        return {"C": self.channels, "H": self.height, "W": self.width, "K": self.kernel, "STRIDE": self.stride,
                "PAD": self.pad, "SIMD": self.simd, "ELEM_BITS": self.elem_bits, "PAD_VALUE": self.pad_value}


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

    def rtl_parameters(self) -> dict:
        return {"IN_W": self.in_width, "OUT_W": self.out_width}
