"""Golden functions of the stream utilities (``hw/blocks/stream/stream_fifo.sv``, ``stream_duplicate.sv``,
``width_converter.sv``): what comes out, as a function of what went in.

A FIFO and a duplicator move beats without changing them or their order; a width converter regroups the bits of a
stream under the packing contract of ``instabnn.contract.packing`` (little-endian: the first beat, and the first element
of a beat, is the least significant):

.. math::  \\text{up } (w_o = N w_i):\\; o_j = \\sum_{i<N} i_{Nj+i}\\, 2^{i w_i},\\qquad
           \\text{down } (w_i = N w_o):\\; o_{Nj+i} = \\lfloor i_j / 2^{i w_o} \\rfloor \\bmod 2^{w_o}.

So a vector packed into ``w_i``-bit words and converted is the same vector packed into ``w_o``-bit words
(``pack_words(x, a)`` converted to ``b`` bits equals ``pack_words(x, b)`` for bipolar ``x``).

Example::

    >>> convert_width([0x1, 0x2, 0x3, 0x4], 4, 8)
    [33, 67]
    >>> [hex(w) for w in convert_width([0x4321], 16, 4)]
    ['0x1', '0x2', '0x3', '0x4']
"""

from __future__ import annotations

from collections.abc import Sequence

from instabnn.contract.packing import pack_fields, unpack_fields

__all__ = ["fifo", "duplicate", "convert_width"]


def fifo(words: Sequence[int]) -> list[int]:
    """A FIFO's output stream: the input stream, unchanged and in order."""
    return [int(w) for w in words]


def duplicate(words: Sequence[int]) -> tuple[list[int], list[int]]:
    """The two output streams of a duplicator: each the input stream, unchanged and in order."""
    return fifo(words), fifo(words)


def convert_width(words: Sequence[int], in_w: int, out_w: int) -> list[int]:
    """The output stream of a width converter from ``in_w``-bit to ``out_w``-bit beats (one divides the other).

    Up-conversion needs a multiple of ``out_w / in_w`` input beats (a converter holds back an incomplete group).
    """
    if in_w < 1 or out_w < 1 or (out_w % in_w and in_w % out_w):
        raise ValueError(f"one of in_w ({in_w}) and out_w ({out_w}) must divide the other")
    for w in words:
        if not 0 <= int(w) < 1 << in_w:
            raise ValueError(f"word {int(w):#x} does not fit {in_w} bits")
    if out_w >= in_w:
        n = out_w // in_w
        if len(words) % n:
            raise ValueError(f"{len(words)} input beats are not a multiple of {n}")
        return [pack_fields(words[j : j + n], in_w, signed=False) for j in range(0, len(words), n)]
    n = in_w // out_w
    return [int(p) for w in words for p in unpack_fields(int(w), out_w, n)]
