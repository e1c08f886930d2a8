"""Integer widths and rounding shared by every golden function (one definition of each)."""

from __future__ import annotations

import math


def signed_bits(lo: int, hi: int) -> int:
    """The smallest two's-complement width holding every integer in [lo, hi]."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def round_half_away(x: float) -> int:
    """Round to the nearest integer, halves away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)
