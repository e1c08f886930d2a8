"""Folding, RTL parameters, widths, timing and stream packing of the sum-pooling units (``pool_sum.sv``,
``global_sum.sv``).

* :class:`PoolSumSpec`: sums of K x K windows at stride K (golden :func:`instabnn.contract.layers.pool_sum`),
  ``OUT_BITS = IN_BITS + 2 log2 K``::

      s[f, c, oy, ox] = sum_{ky, kx < K} q[f, c, K oy + ky, K ox + kx]

* :class:`GlobalSumSpec`: per-channel sums over all N = H*W pixels (the first step of
  :class:`instabnn.contract.layers.Classifier`, golden :func:`instabnn.contract.layers.global_sum`), ``OUT_BITS = IN_BITS +
  ceil(log2 N)``::

      s[f, c] = sum_{h, w} q[f, c, h, w]

Both are the one source of truth of their unit: RTL parameters, lane and stream widths, beats per frame on each
side, cycles per frame (one input beat per clock: ``H*W*C/PE``) and :data:`LATENCY` (2 edges from the input beat
that completes a sum to its output handshake: registered read of the partial sum, add + write into the output
FIFO, handshake). :meth:`completing_beats` names, for each output beat of a frame, the input beat that completes
it (the testbench measures the latency from it).

Streams are in FINN order (pixel-major, channel-minor, ``C/PE`` beats per pixel, lane pe = channel f*PE + pe at
bits ``[pe*bits +: bits]``, two's complement): :func:`frame_words` and :func:`frames_from_words`.

Example::

    spec = PoolSumSpec(channels=64, pe=16, height=32, width=32, k=2, in_bits=10)
    params = spec.rtl_parameters()             # -> Verilator -G / runner parameters
    words = frame_words(q, spec.channels, spec.pe, spec.in_bits)   # q: (F, 64, 32, 32)
    expected = spec.reference(q)               # layers.pool_sum(q, 2): (F, 64, 16, 16)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from instabnn.hw.blocks.common.resources import estimate
from instabnn.hw.blocks.common import frames
from instabnn.hw.blocks.common.stream_shape import ChannelFolding, LaneWidth
from instabnn.contract.layers import global_sum, pool_sum

__all__ = ["LATENCY", "PoolSumSpec", "GlobalSumSpec", "frame_words", "frames_from_words"]

LATENCY = 2
"""Edges from the input beat that completes a sum to its earliest ``m_axis`` handshake (see the RTL headers)."""


@dataclass(frozen=True)
class _SumSpec(ChannelFolding):
    channels: int  # C
    pe: int  # channels per beat, divides C
    height: int  # H
    width: int  # W
    in_bits: int  # signed width of q

    def __post_init__(self):
        self.check_folding("height", "width")
        if not 2 <= self.in_bits <= 32:
            raise ValueError(f"in_bits must be in 2 .. 32, got {self.in_bits}")

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def out_frame_beats(self) -> int:
        return self.out_pixels * self.cf

    in_width = LaneWidth("in_bits")
    out_width = LaneWidth("out_bits")

    @property
    def latency(self) -> int:
        return LATENCY

    @property
    def cycles_per_frame(self) -> float:
        """Clocks per frame with the input always valid and the output always ready: ``FRAME_BEATS``."""
        return float(self.frame_beats)

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate: the lanes' adders and partial sums."""
        return estimate(self.name, lut=20 + 12 * self.pe * self.in_bits / 8)

    def completing_beats(self) -> np.ndarray:
        """For each output beat of a frame (in stream order), the index of the input beat that completes it."""
        pix = self._completing_pixels()
        return (pix[:, None] * self.cf + np.arange(self.cf)[None, :]).reshape(-1)


@dataclass(frozen=True)
class PoolSumSpec(_SumSpec):
    """One ``pool_sum`` unit: K x K windows at stride K; see the module docstring."""

    k: int = 2  # window and stride: 2 or 4

    def __post_init__(self):
        super().__post_init__()
        if self.k not in (2, 4):
            raise ValueError(f"k must be 2 or 4, got {self.k}")
        if self.height % self.k or self.width % self.k:
            raise ValueError(f"H ({self.height}) and W ({self.width}) must be multiples of k ({self.k})")

    @property
    def out_bits(self) -> int:
        """``IN_BITS + 2 log2 K``: |s| <= K^2 2^(IN_BITS-1)."""
        return self.in_bits + 2 * (self.k.bit_length() - 1)

    @property
    def out_height(self) -> int:
        return self.height // self.k

    @property
    def out_width_px(self) -> int:
        return self.width // self.k

    @property
    def out_pixels(self) -> int:
        return self.out_height * self.out_width_px

    @property
    def row_buffer_entries(self) -> int:
        """Partial-sum entries of ``PE*OUT_BITS`` bits: one output row, ``(W/K) * C/PE``."""
        return self.out_width_px * self.cf

    def _completing_pixels(self) -> np.ndarray:
        oy, ox = np.meshgrid(np.arange(self.out_height), np.arange(self.out_width_px), indexing="ij")
        return ((oy * self.k + self.k - 1) * self.width + ox * self.k + self.k - 1).reshape(-1)

    def reference(self, q) -> np.ndarray:
        """The golden function: ``layers.pool_sum(q, k)``, ``(F, C, H/K, W/K)``."""
        return pool_sum(np.asarray(q, np.int64), self.k)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.out_height, self.out_width_px)

    @property
    def name(self) -> str:
        return f"pool_c{self.channels}_pe{self.pe}_{self.height}x{self.width}_k{self.k}_b{self.in_bits}"

    def rtl_parameters(self) -> dict:
        return {"CHANNELS": self.channels, "PE": self.pe, "HEIGHT": self.height, "WIDTH": self.width, "K": self.k,
                "IN_BITS": self.in_bits}


@dataclass(frozen=True)
class GlobalSumSpec(_SumSpec):
    """One ``global_sum`` unit: per-channel sums over the frame; see the module docstring."""

    @property
    def out_bits(self) -> int:
        """``IN_BITS + ceil(log2 N)``: |s| <= N 2^(IN_BITS-1)."""
        return self.in_bits + math.ceil(math.log2(self.pixels)) if self.pixels > 1 else self.in_bits

    @property
    def out_pixels(self) -> int:
        return 1

    def _completing_pixels(self) -> np.ndarray:
        return np.array([self.pixels - 1])

    def reference(self, q) -> np.ndarray:
        """The golden function :func:`global_sum` as a one-pixel frame ``(F, C, 1, 1)``."""
        return global_sum(q)[:, :, None, None]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.channels, 1, 1)

    @property
    def name(self) -> str:
        return f"gsum_c{self.channels}_pe{self.pe}_{self.height}x{self.width}_b{self.in_bits}"

    def rtl_parameters(self) -> dict:
        return {"CHANNELS": self.channels, "PE": self.pe, "HEIGHT": self.height, "WIDTH": self.width,
                "IN_BITS": self.in_bits}


# ---- streams ----------------------------------------------------------------------------------------------------


def frame_words(x, channels: int, pe: int, bits: int) -> list[list[int]]:
    """The stream words of frames ``x`` ``(F, C, H, W)`` with ``bits``-bit signed lanes, one list per frame."""
    if np.ndim(x) != 4:
        raise ValueError(f"frames of shape (F, {channels}, H, W) expected, got {np.shape(x)}")
    return frames.frame_words(x, channels, pe, bits)


def frames_from_words(words, shape: tuple[int, int, int], pe: int, bits: int) -> np.ndarray:
    """Inverse of :func:`frame_words` on a flat word list of whole frames of ``shape`` = ``(C, H, W)``:
    ``(F, C, H, W)`` int64."""
    channels, h, w = shape
    return frames.frames_from_words(words, channels, pe, h * w, bits).reshape(-1, channels, h, w)
