"""FINN stream order of a feature map (pixel-major, channel-minor) against the reference's NCHW flattening."""

from __future__ import annotations

import numpy as np

__all__ = ["stream_order_columns"]


def stream_order_columns(channels: int, height: int, width: int) -> np.ndarray:
    """Column permutation of a dense layer that follows a C x H x W frame: the reference flattens NCHW (input
    element c*H*W + p), the stream delivers pixel-major, channel-minor (element p*C + c). ``perm[j]`` is the NCHW
    index of stream element j, so ``weight[:, perm]`` is the weight matrix in stream order."""
    c, p = np.meshgrid(np.arange(channels), np.arange(height * width), indexing="xy")
    return (c * height * width + p).reshape(-1)
