"""Resource estimates (LUT, BRAM36, DSP48E1 on xc7) of the RTL library's blocks from their parameters.

An analytic model, as FINN's per-layer estimates are: a few terms per block, with coefficients fitted by hand to
Yosys ``synth_xilinx -family xc7`` of the blocks (``make synth-blocks``). It exists to compare foldings and to
check a folding against a part before anything is synthesised; it is not a synthesis result. The measured
figures of a whole accelerator come from ``make bitstream`` (Yosys where Vivado is missing), and the compile
report puts both side by side when a synthesis report is given.

Memories: a memory of ``depth x width`` bits becomes block RAM when it holds at least :data:`BRAM_MIN_BITS` bits
(BRAM36 = ceil(width / 72) x ceil(depth / 512) in the 512 x 72 shape, or fewer in deeper shapes), else LUT RAM /
ROM at one LUT per 64 bits (LUT6 as 64 x 1).
"""

from __future__ import annotations

import math

BRAM_MIN_BITS = 16 * 1024


def memory(depth: int, width: int) -> dict:
    bits = depth * width
    if bits < BRAM_MIN_BITS:
        return {"lut": math.ceil(bits / 64), "bram36": 0.0}
    # the cheapest of the xc7 BRAM36 aspect ratios (depth x width): 512x72, 1Kx36, 2Kx18, 4Kx9, 8Kx4, 16Kx2, 32Kx1
    best = min(math.ceil(width / w) * math.ceil(depth / d)
               for d, w in ((512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1)))
    return {"lut": 0, "bram36": float(best)}


def _acc_bits(params: dict) -> int:
    return int(params.get("_acc_bits", 16))


def multiplier_dsp(a_bits: int, b_bits: int) -> int:
    """DSP48E1 of a signed ``a_bits x b_bits`` multiplier as Yosys maps it: the wider operand on the 25-bit port,
    each operand cut into 24- / 17-bit slices where it does not fit its port (25 / 18 bits)."""
    a, b = max(a_bits, b_bits), min(a_bits, b_bits)
    return (1 if a <= 25 else math.ceil(a / 24)) * (1 if b <= 18 else math.ceil(b / 17))


def _sequencer(p: dict, input_bits: int, pixels: int) -> dict:
    """``moment_poly``'s multiplier (coefficient x power-sum limb) and the power sums' squares and cubes."""
    from instabnn.contract.insta import power_sum_bits

    pw, limbs, pe = max(power_sum_bits(input_bits, pixels)), int(p.get("LIMBS", 1)), p["PE"]
    cw = max(p[f"COEFF_BITS_{j}"] for j in (1, 2, 3))
    op = -(-pw // limbs) + 1 if limbs > 1 else pw
    table = int(p.get("POWER_TABLE", 0))
    # Yosys, C = 64, PE = 1, 8-bit q, 64 pixels: tables +90 LUT and -2 DSP a lane; two limbs +85 LUT, 4 -> 1 DSP
    return {"lut": (90 * pe if table else 0) + (85 if limbs > 1 else 0),
            "dsp": (0 if table else 2 * pe) + multiplier_dsp(cw, op)}


def block(module: str, params: dict) -> dict:
    """{lut, bram36, dsp} of one instance; ``params`` are its RTL parameters plus the ``_``-prefixed facts the
    compiler adds (memory depths and widths, accumulator widths)."""
    p = params
    est = {"lut": 0.0, "bram36": 0.0, "dsp": 0}

    def add(lut=0.0, bram36=0.0, dsp=0, mem: tuple[int, int] | None = None):
        est["lut"] += lut
        est["bram36"] += bram36
        est["dsp"] += dsp
        if mem is not None and mem[0] * mem[1] > 0:
            m = memory(*mem)
            est["lut"] += m["lut"]
            est["bram36"] += m["bram36"]

    if module == "binary_mvu":
        pe, simd = p["PE"], p["SIMD"]
        add(lut=40 + 1.3 * pe * simd + 3 * pe * _acc_bits(p), mem=(p["MW"] * p["MH"] // (pe * simd), pe * simd))
    elif module == "int_mvu":
        pe, simd = p["PE"], p["SIMD"]
        add(lut=40 + 1.2 * pe * simd * _acc_bits(p) / 2, dsp=pe * simd,
            mem=(p["MW"] * p["MH"] // (pe * simd), pe * simd * p["WEIGHT_BITS"]))
    elif module == "sliding_window":
        add(lut=80 + 3 * p["SIMD"] * p["ELEM_BITS"], mem=(p["_buffer_words"], p["SIMD"] * p["ELEM_BITS"]))
    elif module == "insta_threshold" and p.get("SE", 0):  # INSTA-Th+
        # Yosys at C=64, PE=16: 3,389 LUT / 45 DSP (SE_SIMD 1), 3,475 / 60 (16)
        pe, simd = p["PE"], p["SE_SIMD"]
        table = int(p.get("POWER_TABLE", 0))  # the power sums' squares and cubes: 2 DSP a lane or about 90 LUT
        add(lut=1300 + (125 + 90 * table) * pe + 6 * simd, dsp=(0 if table else 2 * pe) + 12 + simd,
            mem=(p["_buffer_depth"], pe * p["INPUT_BITS"]))
    elif module == "insta_threshold":
        pe = p["PE"]
        if p["STATIC"]:
            add(lut=20 + 14 * pe, mem=(p["CHANNELS"] // pe, pe * (p["INPUT_BITS"] + 1)))
        else:  # Yosys at C = 64, PE = 1, N = 64: 574 LUT / 6 DSP; with tables and two limbs 750 LUT / 1 DSP
            seq = _sequencer(p, p["INPUT_BITS"], p["PIXELS"])
            add(lut=495 + 89 * pe + seq["lut"], dsp=seq["dsp"], mem=(p["_buffer_depth"], pe * p["INPUT_BITS"]))
    elif module == "residual_tail":
        pe = p["PE"]
        proj = p.get("SHORTCUT_PROJ", 0)
        add(lut=(175 if proj else 130) * pe, dsp=(5 if proj else 3) * pe)
    elif module == "channel_affine":
        pe = p["PE"]
        wide = p["MULT_BITS"] > 18 or p["IN_BITS"] > 25
        add(lut=20 + 2 * pe * p["OUT_BITS"], dsp=(2 if wide else 1) * pe)
    elif module in ("pool_sum", "global_sum"):
        add(lut=20 + 12 * p["PE"] * p["IN_BITS"] / 8)
    elif module == "maxpool_bits":
        pe = p["PE"]
        add(lut=40 + 3 * pe, mem=((p["WIDTH"] // p["K"]) * (p["CHANNELS"] // pe), pe))
    elif module == "stream_fifo":
        add(lut=30, mem=(p["DEPTH"], p["WIDTH"]))
    elif module == "stream_duplicate":
        add(lut=10 + p["WIDTH"])
    elif module == "width_converter":
        add(lut=10 + max(p["IN_W"], p["OUT_W"]) / 2)
    elif module == "insta_tail":
        pe = p["PE"]
        if p.get("SE", 0):  # the SE-like MLP's multipliers and weights (as in INSTA-Th+)
            add(lut=400 + 6 * p["SE_SIMD"], dsp=p["SE_SIMD"] + 2)
        # per lane MULT * acc, SLOPE * D (and SHORTCUT_MULT * sc); the polynomial (SE = 0: moment_poly), the g
        # interpolation and the gain; Yosys at C = 64, PE = 1, reuse: 894 LUT / 11 DSP, tables + two limbs 1,079 / 7
        lane = (multiplier_dsp(p["MULT_BITS"], p["ACC_BITS"]) + multiplier_dsp(p["SLOPE_BITS"], p["D_BITS"])
                + (multiplier_dsp(p["SHORTCUT_MULT_BITS"], p["SC_BITS"]) if p.get("SHORTCUT_PROJ") else 0))
        seq = _sequencer(p, p["STAT_BITS"], p["STAT_PIXELS"])  # SE: LIMBS = 1, the same full-width multiplier
        add(lut=seq["lut"], dsp=pe * lane + seq["dsp"] + 2)
        if p["STAT_REUSE"]:  # Yosys (multipliers, one limb): 894 LUT at PE = 1, 3,294 at PE = 16
            add(lut=734 + 160 * pe)
        else:
            add(lut=1065 + 165 * pe, mem=(p["_buffer_depth"], pe * p["_buffer_width"]))
    else:
        raise ValueError(f"no resource model for block {module!r}")
    est["lut"] = int(round(est["lut"]))
    return est


def total(estimates) -> dict:
    out = {"lut": 0, "bram36": 0.0, "dsp": 0}
    for e in estimates:
        for k in out:
            out[k] += e[k]
    return out
