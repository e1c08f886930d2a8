"""The shared terms of the blocks' resource estimates (LUT, BRAM36, DSP48E1 on xc7): each block spec's
``resources()`` adds these to its own few terms.

An analytic model, as FINN's per-layer estimates are, with coefficients fitted to Yosys ``synth_xilinx -family xc7``
of the blocks (``make synth-blocks``) and checked on whole accelerators (``make estimate-check``). It exists to
compare foldings and to check a folding against a part before anything is synthesised; it is not a synthesis
result.

Memories: a memory of ``depth x width`` bits becomes block RAM when it holds at least :data:`BRAM_MIN_BITS` bits
(BRAM36 = ceil(width / 72) x ceil(depth / 512) in the 512 x 72 shape, or fewer in deeper shapes), else LUT RAM /
ROM at one LUT per 64 bits (LUT6 as 64 x 1).
"""

from __future__ import annotations

import math

__all__ = ["BRAM_MIN_BITS", "memory", "multiplier_dsp", "moment_poly_sequencer", "estimate", "total"]

BRAM_MIN_BITS = 16 * 1024


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
    best = min(math.ceil(width / w) * math.ceil(depth / d)
               for d, w in ((512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1)))
    return {"lut": 0, "bram36": float(best)}


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


def estimate(block: str, lut: float = 0.0, dsp: int = 0, memories: tuple[tuple[int, int], ...] = ()) -> dict:
    """{lut, bram36, dsp} of a block: its logic (``lut``, ``dsp``) and its ``memories`` (``(depth, width)`` each,
    mapped by :func:`memory`; an empty one costs nothing). A width that is missing raises, naming ``block``."""
    out = {"lut": float(lut), "bram36": 0.0, "dsp": int(dsp)}
    for depth, width in memories:
        if depth is None or width is None or depth < 0 or width < 0:
            raise ValueError(f"{block}: memory of depth {depth!r} x width {width!r}: both are needed for its "
                             f"resource estimate")
        if depth * width > 0:
            m = memory(depth, width)
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
