"""Frozen spec of the sliding-window generator (``sliding_window.sv`` beside this file).

The spec is the one source of truth for the block: RTL parameters, stream widths, beats per frame, the analytic
cycle count and the latency are derived from it (the RTL derives the same numbers from the same parameters and
states them in its header; the testbench measures them).

Example::

    sw = SlidingWindowShape(channels=16, height=32, width=32, kernel=3, stride=1, pad=1, simd=16, elem_bits=1)
    sw.mw               # 144: the MW of the MVU it feeds (K*K*C)
    sw.cycles_per_frame # 9216 = max(input beats 1024, output beats 9216)
    sw.rtl_parameters() # {"C": 16, "H": 32, ...}
"""

from __future__ import annotations

from dataclasses import dataclass

from instabnn.hw.blocks.common.resources import estimate
from instabnn.contract.window import conv_output_dim

__all__ = ["SlidingWindowShape", "SLIDING_WINDOW_LATENCY"]

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

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate: address logic, output registers and the line buffer."""
        return estimate(f"sliding_window {self.name}", lut=80 + 3 * self.data_width,
                        memories=((self.buffer_rows * self.width * self.cf, self.data_width),))

    def rtl_parameters(self) -> dict:
        """Parameters of ``sliding_window``."""
        return {"C": self.channels, "H": self.height, "W": self.width, "K": self.kernel, "STRIDE": self.stride,
                "PAD": self.pad, "SIMD": self.simd, "ELEM_BITS": self.elem_bits, "PAD_VALUE": self.pad_value}
