"""The shared terms of the blocks' resource estimates (LUT, BRAM36, DSP48E1 on xc7): each block spec's
``resources()`` adds these to its own few terms.

An analytic model, as FINN's per-layer estimates are, with coefficients fitted to Yosys ``synth_xilinx -family xc7``
of the blocks (``make synth-blocks``, hierarchical runs of whole accelerators) and checked on whole accelerators
(``make estimate-check``, docs/hardware.md). It exists to compare foldings and to check a folding against a part
before anything is synthesised; it is not a synthesis result. LUT counts are LUT sites: logic LUTs (Yosys' LUT1..LUT6)
and the LUTs small RAMs take (:func:`memory`, :func:`lut_ram`), as Vivado's "Slice LUTs" counts them and as
``make estimate-check`` compares them.

RAMs (:func:`memory`): block RAM from :data:`BRAM_MIN_BITS`, else LUT RAM at one LUT per 64 bits.
ROMs (:func:`rom`, the constant memories of ``$readmemh``): Yosys' ``memory_libmap`` weighs a ROM in logic
(1/16 per bit) against the block RAMs it needs; in the syntheses a ROM stays in logic unless it fills its RAMB18s to
at least :data:`ROM_BRAM_MIN_FILL` on average, so the shallow, wide weight memories of fast foldings become LUTs
(about ``ceil(depth / 64)`` LUT6 per output bit, the MUXF7 / MUXF8 that join them being free).
"""

from __future__ import annotations

import math
from functools import lru_cache

__all__ = ["BRAM_MIN_BITS", "ROM_BRAM_MIN_FILL", "RAM_STYLES", "memory", "rom", "lut_ram", "power_sum_memories",
           "popcount_luts", "multiplier_dsp", "moment_poly_sequencer", "estimate", "total"]

BRAM_MIN_BITS = 16 * 1024

ROM_BRAM_MIN_FILL = 0.45
"""A ROM becomes block RAM when its bits fill the RAMB18s it needs to at least this fraction (Yosys xc7: 4096 x 1
and 36 x 1024 stay in logic, 3584 x 14 becomes block RAM; between 0.22 and 0.66 all syntheses agree)."""

_RAMB18_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))
_RAMB36_SHAPES = ((512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1))


def _width(block: str, what: str, value) -> int:
    """``value`` as a positive integer width or count; a missing or non-positive one names the block."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int,)) or value < 1:
        raise ValueError(f"{block}: {what} is {value!r}, a positive integer is needed for its resource estimate")
    return value


def memory(depth: int, width: int) -> dict:
    """{lut, bram36} of a ``depth x width`` RAM or ROM."""
    bits = depth * width
    if bits < BRAM_MIN_BITS:
        return {"lut": math.ceil(bits / 64), "bram36": 0.0}
    # the cheapest of the xc7 BRAM36 aspect ratios (depth x width): 512x72, 1Kx36, 2Kx18, 4Kx9, 8Kx4, 16Kx2, 32Kx1
    return {"lut": 0, "bram36": _bram36(depth, width)}


def _bram36(depth: int, width: int) -> float:
    """BRAM36 of a ``depth x width`` block memory: the cheapest of the RAMB36 aspect ratios, or RAMB18s (0.5 each)."""
    b36 = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in _RAMB36_SHAPES)
    b18 = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in _RAMB18_SHAPES)
    return float(min(b36, b18 / 2))


RAM_STYLES = ("auto", "block")
"""Weight memory styles (FINN's ``ram_style``): ``auto`` is the synthesis tool's choice (:func:`rom`'s rule),
``block`` asks for block RAM (the ``rom_style`` / ``ram_style`` attributes)."""


def rom(depth: int, width: int, extra_inputs: int = 0, style: str = "auto") -> dict:
    """{lut, bram36} of a ``depth x width`` constant memory read by address; ``extra_inputs``: further signals
    each output bit is combined with in the same LUTs (the binary MVU's XNOR with the input bit: 1). In logic a
    bit is a function of ``ceil(log2 depth) + extra_inputs`` inputs: nothing up to two (it folds into the LUTs that
    read it), one LUT6 up to 6 inputs, else
    ``ceil(depth / 64)`` LUT6 plus one for the extra inputs. In block RAM the extra inputs cost a LUT a bit (PE 4 x SIMD 128 binary MVU at 288 words: 7.5 BRAM36 and
    1,633 LUT in Yosys). ``style`` (:data:`RAM_STYLES`): ``auto``, block RAM where the ROM fills its RAMB18s to
    :data:`ROM_BRAM_MIN_FILL`, as Yosys decides; ``block``, block RAM at any size."""
    if style not in RAM_STYLES:
        raise ValueError(f"ROM style {style!r}: one of {', '.join(RAM_STYLES)} expected")
    if depth * width == 0:
        return {"lut": 0, "bram36": 0.0}
    b18 = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in _RAMB18_SHAPES)
    if style == "block" or depth * width >= ROM_BRAM_MIN_FILL * b18 * 18 * 1024:
        return {"lut": width * extra_inputs, "bram36": _bram36(depth, width)}
    inputs = max(depth - 1, 1).bit_length() + extra_inputs if depth > 1 else 0
    # up to two inputs a bit folds into the LUTs that read it
    per_bit = 0 if inputs <= 2 else 1 if inputs <= 6 else math.ceil(depth / 64) + (1 if extra_inputs else 0)
    return {"lut": width * per_bit, "bram36": 0.0}


def lut_ram(depth: int, width: int) -> int:
    """LUT sites (and read-mux LUTs) of a ``depth x width`` distributed RAM with one asynchronous read port as Yosys
    maps it on xc7: up to 32 words, RAM32M (6 bits of 32 words in 4 sites); else per 64 words RAM64M (3 bits in 4
    sites), with a 2:1 mux LUT a bit for each further 64 words. (The INSTA units' power sums, threshold and T
    memories: 32 x 76 -> 52, 64 x 76 -> 104, 128 x 70 -> 192 sites and 70 LUTs, as synthesised.)"""
    if depth * width == 0:
        return 0
    if depth <= 32:
        return 4 * math.ceil(width / 6)
    pages = math.ceil(depth / 64)
    return pages * 4 * math.ceil(width / 3) + (pages - 1) * width


def power_sum_memories(pe: int, folds: int, sum_bits: int) -> int:
    """LUT sites of ``stats_accumulate``'s two distributed RAMs: the accumulator (one word of ``pe`` lanes of
    ``sum_bits`` per fold) and the two banks of sums (:func:`lut_ram` each; depths rounded up to powers of two as the
    RTL declares them)."""
    depth = 1 << max(folds - 1, 1).bit_length()
    return lut_ram(depth, pe * sum_bits) + lut_ram(2 * depth, pe * sum_bits)


@lru_cache(maxsize=None)
def popcount_luts(width: int, leaf: int = 6) -> int:
    """LUTs of ``popcount.sv`` over ``width`` bits as built: a leaf of up to ``leaf`` bits is one LUT per count
    bit, a wider word two halves and an adder of the count's width (one LUT a bit on the carry chain)."""
    out = width.bit_length()
    if width <= leaf:
        return out
    return popcount_luts(width // 2, leaf) + popcount_luts(width - width // 2, leaf) + out


def multiplier_dsp(a_bits: int, b_bits: int) -> int:
    """DSP48E1 of a signed ``a_bits x b_bits`` multiplier as Yosys maps it: the wider operand on the 25-bit port,
    each operand cut into 24- / 17-bit slices where it does not fit its port (25 / 18 bits)."""
    a, b = max(a_bits, b_bits), min(a_bits, b_bits)
    return (1 if a <= 25 else math.ceil(a / 24)) * (1 if b <= 18 else math.ceil(b / 17))


def moment_poly_sequencer(block: str, input_bits: int, pixels: int, pe: int, limbs: int,
                          coeff_bits: tuple[int, ...], power_table: int) -> dict:
    """{lut, dsp} of ``moment_poly``'s multiplier (coefficient x power-sum limb) and the power sums' squares and
    cubes (``pe`` lanes; ``coeff_bits``: the widths of C1 .. C3)."""
    from instabnn.contract.insta import power_sum_bits

    pw = max(power_sum_bits(_width(block, "the input width", input_bits), _width(block, "PIXELS", pixels)))
    limbs = _width(block, "LIMBS", limbs)
    cw = max(_width(block, "a coefficient width", b) for b in coeff_bits)
    op = -(-pw // limbs) + 1 if limbs > 1 else pw
    # Yosys, C = 64, PE = 1, 8-bit q, 64 pixels: tables +90 LUT and -2 DSP a lane; two limbs +85 LUT, 4 -> 1 DSP
    return {"lut": (90 * pe if power_table else 0) + (85 if limbs > 1 else 0),
            "dsp": (0 if power_table else 2 * pe) + multiplier_dsp(cw, op)}


def estimate(block: str, lut: float = 0.0, dsp: int = 0, memories: tuple[tuple[int, int], ...] = (),
             roms: tuple[tuple[int, int], ...] = ()) -> dict:
    """{lut, bram36, dsp} of a block: its logic (``lut``, ``dsp``), its RAMs ``memories`` (:func:`memory`) and its
    constant memories ``roms`` (:func:`rom`; ``(depth, width)``, ``(depth, width, extra_inputs)`` or
    ``(depth, width, extra_inputs, style)`` each; an empty one costs nothing). A width that is missing raises, naming
    ``block``."""
    out = {"lut": float(lut), "bram36": 0.0, "dsp": int(dsp)}
    for kind, shapes in (("memory", memories), ("ROM", roms)):
        for depth, width, *extra in shapes:
            if depth is None or width is None or depth < 0 or width < 0:
                raise ValueError(f"{block}: {kind} of depth {depth!r} x width {width!r}: both are needed for its "
                                 f"resource estimate")
            if depth * width > 0:
                m = memory(depth, width) if kind == "memory" else rom(depth, width, *extra)
                out["lut"] += m["lut"]
                out["bram36"] += m["bram36"]
    out["lut"] = int(round(out["lut"]))
    return out


def total(estimates) -> dict:
    """The sum of block estimates ({lut, bram36, dsp} each)."""
    out = {"lut": 0, "bram36": 0.0, "dsp": 0}
    for e in estimates:
        for k in out:
            out[k] += e[k]
    return out
