"""Mixed-width lanes: several signed fields of different widths in one word, the first from the LSB.

The constant and coefficient words of the INSTA and tail units hold a channel's constants side by side
(``C0 | C1 | C2 | C3``, ``MULT | BIAS | ... | SLOPE``), each a two's-complement field of its own width::

    word = pack_mixed([3, -1], [4, 3])      # 0b111_0011
    unpack_mixed(word, [4, 3])              # [3, -1]

A value outside its field's signed range is an error (:func:`instabnn.contract.packing.pack_fields` checks it).
"""

from __future__ import annotations

from instabnn.contract.packing import pack_fields, unpack_fields

__all__ = ["pack_mixed", "unpack_mixed"]


def pack_mixed(values, widths) -> int:
    """``values[i]`` as a signed ``widths[i]``-bit field, field 0 at the LSB."""
    values, widths = list(values), list(widths)
    if len(values) != len(widths):
        raise ValueError(f"{len(values)} values for {len(widths)} fields")
    word, offset = 0, 0
    for v, bits in zip(values, widths):
        word |= pack_fields([int(v)], bits, signed=True) << offset
        offset += bits
    return word


def unpack_mixed(word: int, widths) -> list[int]:
    """Inverse of :func:`pack_mixed`: the signed fields of ``word``, field 0 from the LSB."""
    out = []
    for bits in widths:
        out.append(int(unpack_fields(word & ((1 << bits) - 1), bits, 1, signed=True)[0]))
        word >>= bits
    return out
