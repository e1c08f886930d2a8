"""FINN-order frame packing of the blocks' streams.

A frame of ``C`` channels and ``N`` pixels goes out pixel-major, channel-minor, ``CF = C / PE`` beats per pixel:
beat ``p * CF + f`` carries channels ``f*PE .. f*PE + PE - 1`` of pixel ``p``, channel ``f*PE + pe`` in lane ``pe``
(bits ``[pe*BITS, (pe+1)*BITS)``, two's complement where ``signed``)::

    words = frame_words(x, channels=8, pe=4, bits=6)        # x: (F, 8, N) or (F, 8, H, W)
    frames_from_words(sum(words, []), 8, 4, x.shape[2], 6)  # (F, 8, N), equal to x
"""

from __future__ import annotations

import numpy as np

from instabnn.contract.packing import pack_fields, unpack_fields

__all__ = ["as_frames", "frame_words", "frames_from_words"]


def as_frames(x, channels: int, pixels: int | None = None) -> np.ndarray:
    """Frames ``(F, C, N)`` from ``(F, C, N)`` or ``(F, C, H, W)`` (``N = H*W``); ``pixels`` None: any N."""
    a = np.asarray(x)
    if a.ndim == 4:
        a = a.reshape(a.shape[0], a.shape[1], -1)
    if a.ndim != 3 or a.shape[1] != channels or (pixels is not None and a.shape[2] != pixels):
        raise ValueError(f"frames of shape (F, {channels}, {'N' if pixels is None else pixels}) or (F, C, H, W) "
                         f"expected, got {np.shape(x)}")
    return a


def _folds(channels: int, pe: int) -> int:
    if pe < 1 or channels % pe:
        raise ValueError(f"PE ({pe}) must divide the channels ({channels})")
    return channels // pe


def frame_words(x, channels: int, pe: int, bits: int, signed: bool = True,
                pixels: int | None = None) -> list[list[int]]:
    """The stream words of frames ``x`` (``(F, C, N)`` or ``(F, C, H, W)``), one list per frame."""
    a = as_frames(x, channels, pixels)
    cf = _folds(channels, pe)
    return [[pack_fields(frame[f * pe : (f + 1) * pe, p], bits, signed=signed)
             for p in range(a.shape[2]) for f in range(cf)] for frame in a]


def frames_from_words(words, channels: int, pe: int, pixels: int, bits: int, signed: bool = True,
                      dtype=np.int64) -> np.ndarray:
    """Inverse of :func:`frame_words` on a flat list of whole frames: ``(F, C, N)``."""
    words = list(words)
    cf = _folds(channels, pe)
    beats = pixels * cf
    if len(words) % beats:
        raise ValueError(f"{len(words)} words are not whole frames of {beats} beats")
    out = np.empty((len(words) // beats, channels, pixels), dtype=dtype)
    for i, word in enumerate(words):
        frame, beat = divmod(i, beats)
        p, f = divmod(beat, cf)
        out[frame, f * pe : (f + 1) * pe, p] = unpack_fields(word, bits, pe, signed=signed)
    return out
