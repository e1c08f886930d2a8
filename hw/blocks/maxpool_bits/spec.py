"""Spec of the bit max-pool (``maxpool_bits.sv`` beside this file), a block of the plain W1A1 chains.

* :class:`MaxPoolBitsSpec`: OR of K x K windows at stride K of a bit frame (golden: the pool of
  :class:`instabnn.contract.network.ChainStage`; rows and columns past ``(H // K) * K`` are cropped)::

      b[f, c, oy, ox] = max_{ky, kx < K} a[f, c, K oy + ky, K ox + kx]

  RTL parameters, beats per frame on each side, cycles per frame (one input beat per clock: ``H*W*C/PE``) and
  :data:`LATENCY` (2 edges from the input beat completing a window to its output handshake).

Streams are in FINN order (pixel-major, channel-minor, ``C/PE`` beats per pixel, lane pe = channel f*PE + pe at
bit pe): :func:`bit_frame_words` and :func:`bit_frames_from_words`.

Example::

    spec = MaxPoolBitsSpec(channels=64, pe=16, height=28, width=28, k=2)
    params = spec.rtl_parameters()
    words = bit_frame_words(a, 64, 16)        # a: (F, 64, 28, 28) in {0, 1}
    expected = spec.reference(a)              # (F, 64, 14, 14)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instabnn.hw.blocks.common.resources import estimate
from instabnn.hw.blocks.common import frames
from instabnn.hw.blocks.common.stream_shape import ChannelFolding

__all__ = ["LATENCY", "MaxPoolBitsSpec", "maxpool_bits", "bit_frame_words", "bit_frames_from_words"]

LATENCY = 2
"""Edges from the input beat that completes a window to its earliest ``m_axis`` handshake (see the RTL header)."""


def maxpool_bits(bits: np.ndarray, k: int) -> np.ndarray:
    """The golden function, exactly as ``ChainStage`` pools: crop to multiples of k, then the max (OR) of each
    k x k window. ``bits`` (F, C, H, W) in {0, 1}."""
    bits = np.asarray(bits, np.int64)
    f, c, h, w = bits.shape
    return bits[:, :, :h // k * k, :w // k * k].reshape(f, c, h // k, k, w // k, k).max(axis=(3, 5))


@dataclass(frozen=True)
class MaxPoolBitsSpec(ChannelFolding):
    """One ``maxpool_bits`` unit; see the module docstring."""

    channels: int  # C
    pe: int  # channels per beat, divides C
    height: int  # H >= K
    width: int  # W >= K
    k: int = 2  # window and stride, 2 .. 8

    def __post_init__(self):
        self.check_folding("height", "width")
        if not 2 <= self.k <= 8:
            raise ValueError(f"k must be in 2 .. 8, got {self.k}")
        if self.height < self.k or self.width < self.k:
            raise ValueError(f"H ({self.height}) and W ({self.width}) must be >= k ({self.k})")

    @property
    def out_height(self) -> int:
        return self.height // self.k

    @property
    def out_width_px(self) -> int:
        return self.width // self.k

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def out_pixels(self) -> int:
        return self.out_height * self.out_width_px

    @property
    def out_frame_beats(self) -> int:
        return self.out_pixels * self.cf

    @property
    def in_width(self) -> int:
        return self.pe

    @property
    def out_width(self) -> int:
        return self.pe

    @property
    def latency(self) -> int:
        return LATENCY

    @property
    def cycles_per_frame(self) -> float:
        return float(self.frame_beats)

    @property
    def row_buffer_bits(self) -> int:
        return self.out_width_px * self.channels

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.out_height, self.out_width_px)

    def completing_beats(self) -> np.ndarray:
        """For each output beat of a frame (stream order), the index of the input beat that completes it."""
        oy, ox = np.meshgrid(np.arange(self.out_height), np.arange(self.out_width_px), indexing="ij")
        pix = ((oy * self.k + self.k - 1) * self.width + ox * self.k + self.k - 1).reshape(-1)
        return (pix[:, None] * self.cf + np.arange(self.cf)[None, :]).reshape(-1)

    def reference(self, bits) -> np.ndarray:
        return maxpool_bits(bits, self.k)

    @property
    def name(self) -> str:
        return f"maxpool_c{self.channels}_pe{self.pe}_{self.height}x{self.width}_k{self.k}"

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate: the OR lanes and the row buffer of partial maxima."""
        return estimate(f"maxpool_bits {self.name}", lut=40 + 3 * self.pe,
                        memories=((self.width // self.k * self.cf, self.pe),))

    def rtl_parameters(self) -> dict:
        return {"CHANNELS": self.channels, "PE": self.pe, "HEIGHT": self.height, "WIDTH": self.width, "K": self.k}


def bit_frame_words(bits, channels: int, pe: int) -> list[list[int]]:
    """Stream words of bit frames (F, C, H, W), one list per frame; lane pe at bit pe."""
    a = np.asarray(bits, np.int64)
    if a.ndim != 4 or a.shape[1] != channels:
        raise ValueError(f"frames of shape (F, {channels}, H, W) expected, got {a.shape}")
    if a.size and (a.min() < 0 or a.max() > 1):
        raise ValueError("bit frames take values 0 and 1 only")
    return frames.frame_words(a, channels, pe, 1, signed=False)


def bit_frames_from_words(words, shape: tuple[int, int, int], pe: int) -> np.ndarray:
    """Inverse of :func:`bit_frame_words` on a flat list of whole frames: (F, C, H, W) int64."""
    channels, h, w = shape
    return frames.frames_from_words(words, channels, pe, h * w, 1, signed=False).reshape(-1, channels, h, w)
