"""Command-line pieces shared by the project's tools: argument types that refuse what the tool cannot use (a count
of 0 or -3, ``abc`` for a shard, an infinite clock) and a parser whose errors are one line.

    >>> positive_int("3")
    3
    >>> shard("2/4")
    (2, 4)
"""

from __future__ import annotations

import argparse
import math


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``prog: error: argument -n: ...``) instead of the usage text, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the arguments)\n")


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of images, a PE): ``0``, ``-3`` and ``abc`` are refused."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a clock, a frame rate): ``0``, ``-1``, ``nan`` and ``inf`` are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite positive number")
    return value


def shard(text: str) -> tuple[int, int]:
    """``k/n``: the k-th of n slices, 1 <= k <= n."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not k/n (e.g. 1/4)")
    k, n = int(parts[0]), int(parts[1])
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: k must be in 1 .. n")
    return k, n
