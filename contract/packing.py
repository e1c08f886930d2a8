"""The one bit-level packing contract between numpy arrays and hardware words.

Every stream word, memory-init line and testbench transaction in ``instabnn.hw`` / ``instabnn.sim`` is built and
taken apart with the functions here, so that the contract is written down (and tested) exactly once.

The contract
------------
1. **Bipolar values** (binary weights and activations, INSTA-BNN Sec. 3): ``-1 <-> bit 0`` and ``+1 <-> bit 1``,
   i.e. ``bit = (x + 1) / 2`` and ``x = 2*bit - 1``. With this encoding the product of two bipolar values is the
   XNOR of their bits, so that for vectors of length ``n``

   .. math::  \\sum_k w_k x_k = 2\\,\\mathrm{popcount}(\\overline{w \\oplus x}) - n .

2. **Element order is little-endian**: element ``i`` of a vector of ``n`` elements sits at bit ``i`` of the packed
   word (element 0 is the least significant bit). A vector of ``SIMD`` bipolar elements is one ``SIMD``-bit word.
3. **Multi-bit lanes** (``PE`` accumulators of ``ACC_BITS`` bits, ``PE`` thresholds, ``PE`` weight words of ``SIMD``
   bits) are packed the same way: lane ``p`` occupies bits ``[p*width, (p+1)*width)``; signed values are two's
   complement within their lane.
4. **Long vectors are split into words in order**: word ``j`` of a vector split into ``width``-element words holds
   elements ``j*width .. j*width + width - 1`` (element ``j*width + i`` at bit ``i`` of word ``j``). On a stream,
   word 0 is the first beat.
5. **Hex text** (``$readmemh`` lines) is the word in lower-case hexadecimal, zero-padded to
   ``ceil(bits / 4)`` digits, most significant digit first.

Example::

    >>> pack_bipolar(np.array([+1, -1, -1, +1]))      # bits 1,0,0,1 at positions 0..3
    9
    >>> unpack_bipolar(9, 4)
    array([ 1, -1, -1,  1])
    >>> pack_fields([-1, 2], width=4)                 # lane 0 = 0xf (-1), lane 1 = 0x2
    47
    >>> pack_words(np.array([+1, -1, +1, +1]), width=2)
    [1, 3]

Python ``int`` is used for packed words (arbitrary width, as wide as any RTL bus); arrays of words are lists of
``int`` (or object arrays for batched vectors).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "bipolar_to_bits",
    "bits_to_bipolar",
    "pack_bits",
    "unpack_bits",
    "pack_bipolar",
    "unpack_bipolar",
    "pack_fields",
    "unpack_fields",
    "pack_words",
    "unpack_words",
    "hex_digits",
    "to_hex",
]


def bipolar_to_bits(x) -> np.ndarray:
    """Map bipolar values to bits: ``-1 -> 0``, ``+1 -> 1`` (uint8, same shape). Anything else is an error."""
    a = np.asarray(x)
    if not np.all((a == 1) | (a == -1)):
        bad = np.unique(a[(a != 1) & (a != -1)])[:5]
        raise ValueError(f"bipolar values must be -1 or +1, got {bad.tolist()}")
    return (a > 0).astype(np.uint8)


def bits_to_bipolar(bits) -> np.ndarray:
    """Map bits to bipolar values: ``0 -> -1``, ``1 -> +1`` (int64, same shape)."""
    b = np.asarray(bits)
    if not np.all((b == 0) | (b == 1)):
        raise ValueError("bits must be 0 or 1")
    return b.astype(np.int64) * 2 - 1


def pack_bits(bits) -> int:
    """Pack a 1-D array of bits into an int, element ``i`` at bit ``i``."""
    b = np.asarray(bits)
    if b.ndim != 1:
        raise ValueError(f"pack_bits takes a 1-D array, got shape {b.shape}")
    if not np.all((b == 0) | (b == 1)):
        raise ValueError("bits must be 0 or 1")
    value = 0
    for i in np.flatnonzero(b):
        value |= 1 << int(i)
    return value


def unpack_bits(value: int, n: int) -> np.ndarray:
    """Unpack the low ``n`` bits of ``value`` into a uint8 array, bit ``i`` -> element ``i``."""
    value = int(value)
    if value < 0 or value >> n:
        raise ValueError(f"value {value:#x} does not fit in {n} bits")
    return np.array([(value >> i) & 1 for i in range(n)], dtype=np.uint8)


def pack_bipolar(x) -> int:
    """Pack a 1-D bipolar vector into an int (``+1`` -> 1, ``-1`` -> 0, element ``i`` at bit ``i``)."""
    return pack_bits(bipolar_to_bits(x))


def unpack_bipolar(value: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bipolar`: the low ``n`` bits of ``value`` as an int64 bipolar vector."""
    return bits_to_bipolar(unpack_bits(value, n))


def pack_fields(values: Iterable[int], width: int, signed: bool | None = None) -> int:
    """Pack integers into ``width``-bit lanes, lane ``p`` at bits ``[p*width, (p+1)*width)``.

    ``signed=None`` accepts any value that fits either as unsigned or as two's complement; ``True`` / ``False``
    restrict the range to ``[-2^(w-1), 2^(w-1))`` / ``[0, 2^w)``. Out-of-range values are an error, never wrapped.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    lo = -(1 << (width - 1)) if signed in (None, True) else 0
    hi = (1 << width) - 1 if signed in (None, False) else (1 << (width - 1)) - 1
    mask = (1 << width) - 1
    # Python ints throughout: numpy would turn a list of 64-bit words above 2**63 into float64
    vals = values.ravel().tolist() if isinstance(values, np.ndarray) else list(values)
    value = 0
    for p, v in enumerate(vals):
        if isinstance(v, (float, np.floating)):
            raise TypeError(f"lane {p}: {v!r} is not an integer")
        v = int(v)
        if not lo <= v <= hi:
            raise ValueError(f"lane {p}: value {v} does not fit in {width} bits (signed={signed})")
        value |= (v & mask) << (p * width)
    return value


def unpack_fields(value: int, width: int, n: int, signed: bool = False) -> np.ndarray:
    """Inverse of :func:`pack_fields`: ``n`` lanes of ``width`` bits (two's complement if ``signed``).

    int64 where every lane value fits (``width <= 63``, or ``64`` signed), else an object array of Python ints.
    """
    value = int(value)
    if value < 0 or value >> (n * width):
        raise ValueError(f"value {value:#x} does not fit in {n} lanes of {width} bits")
    mask = (1 << width) - 1
    out = np.empty(n, dtype=np.int64 if width < 64 or (signed and width == 64) else object)
    for p in range(n):
        v = (value >> (p * width)) & mask
        if signed and v >> (width - 1):
            v -= 1 << width
        out[p] = v
    return out


def pack_words(x, width: int) -> list[int] | np.ndarray:
    """Split bipolar vectors of length ``n`` (last axis) into ``n / width`` words of ``width`` bits each.

    Word ``j`` holds elements ``j*width .. j*width+width-1`` (element ``j*width + i`` at bit ``i``). A 1-D input gives
    a ``list[int]``; an input of shape ``(..., n)`` gives an object array of shape ``(..., n / width)``.
    """
    a = np.asarray(x)
    n = a.shape[-1]
    if width < 1 or n % width:
        raise ValueError(f"word width {width} must divide the vector length {n}")
    bits = bipolar_to_bits(a).reshape(*a.shape[:-1], n // width, width)
    weights = [1 << i for i in range(width)]
    words = np.empty(bits.shape[:-1], dtype=object)
    for idx in np.ndindex(words.shape):
        words[idx] = sum(w for w, b in zip(weights, bits[idx]) if b)
    return words.tolist() if a.ndim == 1 else words


def unpack_words(words: Sequence[int], width: int) -> np.ndarray:
    """Inverse of :func:`pack_words` for one vector: ``len(words) * width`` bipolar elements (int64)."""
    return np.concatenate([unpack_bipolar(w, width) for w in words]) if len(words) else np.zeros(0, np.int64)


def hex_digits(bits: int) -> int:
    """Hex digits of a ``bits``-wide word: ``ceil(bits / 4)``."""
    return max(1, -(-bits // 4))


def to_hex(value: int, bits: int) -> str:
    """``value`` as zero-padded lower-case hex of :func:`hex_digits` digits (a ``$readmemh`` line)."""
    value = int(value)
    if value < 0 or value >> bits:
        raise ValueError(f"value {value:#x} does not fit in {bits} bits")
    return format(value, f"0{hex_digits(bits)}x")
