"""Per-block resource figures: Yosys ``synth_xilinx -family xc7`` of the RTL blocks for a few foldings.

``python -m instabnn.hw.synth --out reports/synth_blocks.json`` (``make synth-blocks``) synthesises each block with
random weights (seeded; the weights are ROM contents, so they shape the logic) and writes a JSON report and a
Markdown table (``.md`` beside it) of LUT, FF, CARRY4, LUTRAM, BRAM36 (RAMB18 counted as 0.5) and DSP48E1, with each
figure also as a percentage of the PYNQ-Z2's xc7z020 (53,200 LUT, 106,400 FF, 140 BRAM36, 220 DSP48E1).
Yosys' xc7 mapping is not Vivado's: these are open-tool figures for the same RTL, to compare foldings and blocks.

Blocks: the binary matrix-vector unit (``binary_mvu``) and the threshold unit (``insta_threshold``), the latter as
INSTA-Th (per-frame thresholds from the frame's power sums: accumulators, threshold computation, frame buffer)
beside the static-threshold unit (RSign) of the same folding, so that the table shows what instance-aware
thresholds cost. The threshold units get seeded, trained-like constants (mu, sigma, alpha, beta per channel).
The residual block tail with RPReLU (``residual_tail``) is synthesised with the shift shortcut (identity) beside
the 1x1-projection shortcut (``SHORTCUT_PROJ = 1``) of the same folding, with seeded, trained-like constants fixed
by the contract's constructor. The block tail with INSTA-PReLU (``insta_tail``) is synthesised for the same block
with its own statistic (frame buffer of Y) beside statistics reused from the block input (``STAT_REUSE = 1``).

``python -m instabnn.hw.synth --rtl RTL_DIR --instances a,b --out X.json`` synthesises block instances of a compiled
accelerator instead (each instance's module with its parameters from ``instabnn_top.sv`` and its memory files,
hierarchically: ``synth_xilinx`` without ``-flatten``), and reports logic LUTs, LUT-RAM sites, FF, BRAM36 and
DSP48E1 per submodule (JSON, and a Markdown table beside it).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from instabnn.hw.blocks.insta_threshold.spec import InstaThresholdSpec, write_coeff_file
from instabnn.hw.blocks.binary_mvu.spec import BinaryMvuShape, write_threshold_file, write_weight_file
from instabnn.hw.blocks.int_mvu.spec import IntMvuShape, write_bias_file, write_int_weight_file
from instabnn.hw.blocks.pool.spec import GlobalSumSpec, PoolSumSpec
from instabnn.hw.blocks.sliding_window.spec import SlidingWindowShape
from instabnn.hw.compile.folding import with_chosen_limbs
from instabnn.hw.blocks.stream.spec import StreamDuplicateShape, StreamFifoShape, WidthConverterShape
from instabnn.contract.insta import InstaThConstants, insta_th_constants, static_threshold_constants
from instabnn.contract.fixed_point import signed_bits
from instabnn.contract.layers import ResidualActivation, residual_activation
from instabnn.hw.blocks.residual_tail.spec import ResidualTailSpec
from instabnn.hw.blocks.residual_tail.spec import write_const_file as write_residual_const_file
from instabnn.hw.blocks.insta_tail.spec import InstaTailSpec
from instabnn.hw.blocks.insta_tail.spec import write_memory_files as write_insta_tail_memory_files
from instabnn.hw.blocks.rtl_library import rtl_paths

XC7Z020 = {"lut": 53_200, "ff": 106_400, "bram36": 140, "dsp": 220}

# A ResNet-20 stage-1 binary 3x3 convolution (16 -> 16 channels: MW = 3*3*16 = 144, MH = 16) at three foldings,
# with accumulator and with threshold output, and a stage-3 one (64 -> 64: MW = 576).
DEFAULT_SHAPES = [
    BinaryMvuShape(144, 16, 16, 4, 0), BinaryMvuShape(144, 16, 16, 4, 1), BinaryMvuShape(144, 16, 48, 8, 1),
    BinaryMvuShape(144, 16, 144, 16, 1), BinaryMvuShape(576, 64, 64, 16, 1),
]

# The threshold unit of a ResNet-20 stage-3 block input (64 channels, 8 x 8 pixels) and of a 16 x 16 map with 64
# channels, 8-bit residual stream, 16 channels per beat: INSTA-Th beside static (RSign), and INSTA-Th with the
# shortcut output. (channels, pe, pixels, input_bits, static, shortcut)
DEFAULT_THRESHOLD_UNITS = [
    (64, 16, 64, 8, 1, 0), (64, 16, 64, 8, 0, 0), (64, 16, 64, 8, 0, 1),
    (64, 16, 256, 8, 1, 0), (64, 16, 256, 8, 0, 0),
]

# The residual block tail with RPReLU of a ResNet-20 stage-3 block (64 channels, 8 x 8 pixels, 8-bit residual
# stream, 16 channels per beat): identity (shift) shortcut beside the 1x1 projection shortcut (the downsampling
# block, Cin = 32). (channels, pe, pixels, out_bits, shortcut)
DEFAULT_RESIDUAL_TAILS = [(64, 16, 64, 8, "shift"), (64, 16, 64, 8, "proj")]

# The residual block tail with INSTA-PReLU of the same block (64 channels, 8 x 8 pixels, 8-bit residual stream,
# 16 channels per beat, identity shortcut): own statistic (frame buffer of Y) beside statistics reused from the
# block input (a third stream, no frame buffer). (channels, pe, pixels, out_bits, shortcut, stat_source)
DEFAULT_INSTA_TAILS = [(64, 16, 64, 8, "shift", "own"), (64, 16, 64, 8, "shift", "reuse")]


# The integer MVU: the first convolution (3x3x3 -> 16 on uint8 pixels) at two foldings, a 1x1 downsampling
# shortcut (16 -> 32) and the classifier (64 -> 10, 16-bit bias); all 8-bit weights.
DEFAULT_INT_MVU_SHAPES = [
    IntMvuShape(27, 16, 9, 4, 8, 8, 0), IntMvuShape(27, 16, 27, 4, 8, 8, 0),
    IntMvuShape(16, 32, 16, 4, 8, 8, 1), IntMvuShape(64, 10, 16, 2, 8, 8, 1, 16),
]

# Sliding windows of ResNet-20 at CIFAR-10 shape (binary stage-1 3x3 at stride 1 and 2, the 8-bit first
# convolution, the 8-bit 1x1 stride-2 shortcut) and the stream utilities: (top, shape).
DEFAULT_STREAM_BLOCKS = [
    ("sliding_window", SlidingWindowShape(16, 32, 32, 3, 1, 1, 16, 1)),
    ("sliding_window", SlidingWindowShape(16, 32, 32, 3, 2, 1, 16, 1)),
    ("sliding_window", SlidingWindowShape(3, 32, 32, 3, 1, 1, 3, 8)),
    ("sliding_window", SlidingWindowShape(16, 32, 32, 1, 2, 0, 16, 8)),
    ("stream_fifo", StreamFifoShape(8, 32)), ("stream_fifo", StreamFifoShape(128, 1024)),
    ("stream_duplicate", StreamDuplicateShape(128)),
    ("width_converter", WidthConverterShape(16, 64)), ("width_converter", WidthConverterShape(128, 16)),
    ("pool_sum", PoolSumSpec(64, 16, 32, 32, 8, 2)), ("global_sum", GlobalSumSpec(64, 16, 8, 8, 8)),
]


class SynthError(RuntimeError):
    """Yosys is missing or failed; the message names the block and the log."""


LUTRAM_SITES = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32X1S": 1,
                "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4}
"""LUT sites of the xc7 LUT RAM primitives Yosys maps small memories to (as Vivado counts "LUT as Memory")."""


def parse_stat(log: str) -> dict:
    """Cell counts from the last ``stat`` of a Yosys log, grouped into xc7 resource classes."""
    start = log.rfind("Number of cells:")
    if start < 0:
        raise SynthError("no 'stat' output in the Yosys log")
    cells = {name: int(n) for name, n in re.findall(r"^\s+(\S+)\s+(\d+)\s*$", log[start:], re.M)}
    lut = sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6]", c))
    ff = sum(n for c, n in cells.items() if re.fullmatch(r"FD[RSCP]E(_1)?", c))
    lutram = sum(n for c, n in cells.items() if re.fullmatch(r"RAM(16|32|64|128|256)[XMS].*", c))
    bram36 = cells.get("RAMB36E1", 0) + 0.5 * cells.get("RAMB18E1", 0)
    return {"lut": lut, "ff": ff, "carry4": cells.get("CARRY4", 0), "lutram": lutram, "bram36": bram36,
            "dsp": cells.get("DSP48E1", 0), "cells": cells}


def instance_parameters(top_sv: str | Path, instance: str) -> tuple[str, dict[str, str]]:
    """The module and parameters of ``instance`` in a compiled accelerator's top (``instabnn_top.sv``), as
    written there (strings, quotes kept); SynthError naming the file when the instance is not in it."""
    text = Path(top_sv).read_text()
    end = re.search(rf"^\) {re.escape(instance)} \(", text, re.M)
    heads = list(re.finditer(r"^(\w+) #\($", text[:end.start()] if end else "", re.M))
    if end is None or not heads:
        raise SynthError(f"{top_sv}: no instance {instance} with parameters")
    return heads[-1].group(1), dict(re.findall(r"\.(\w+)\(([^()]*)\)", text[heads[-1].end():end.start()]))


def parse_hierarchy(log: str) -> dict[str, dict]:
    """Per module of a hierarchical ``stat`` (``synth_xilinx`` without ``-flatten``), and ``total`` for the design
    hierarchy: logic LUTs, LUT-RAM sites (:data:`LUTRAM_SITES`), FF, BRAM36, DSP48E1; parameterised modules under
    their plain names (instances of one module with different parameters summed)."""
    start = log.rfind("Printing statistics")
    if start < 0:
        raise SynthError("no 'stat' output in the Yosys log")
    parts = re.split(r"^=== (.*?) ===$", log[start:], flags=re.M)
    out: dict[str, dict] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        cells = {c: int(n) for c, n in re.findall(r"^\s+(\S+)\s+(\d+)\s*$", body, re.M)}
        key = "total" if name == "design hierarchy" else re.sub(r"^\$paramod(\$[0-9a-f]+)?\\", "", name).split("\\")[0]
        res = parse_stat("Number of cells:\n" + "".join(f"     {c} {n}\n" for c, n in cells.items()))
        res["lutram_sites"] = sum(LUTRAM_SITES.get(c, 0) * n for c, n in cells.items())
        if key in out and key != "total":
            res = {k: out[key][k] + res[k] for k in ("lut", "lutram_sites", "ff", "bram36", "dsp")}
        out[key] = {k: res[k] for k in ("lut", "lutram_sites", "ff", "bram36", "dsp")}
    return out


def synth_instance(rtl_dir: str | Path, instance: str, workdir: Path) -> dict[str, dict]:
    """Hierarchical ``synth_xilinx -family xc7`` of one block instance of a compiled accelerator (its module with the
    instance's parameters from the top; the folder's sources and memory files, as compiled): :func:`parse_hierarchy`
    of it."""
    if shutil.which("yosys") is None:
        raise SynthError("yosys not found (make setup installs it from apt as root; or apt-get install yosys)")
    rtl_dir = Path(rtl_dir).resolve()
    module, params = instance_parameters(rtl_dir / "instabnn_top.sv", instance)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # the folder's own sources (as compiled), the top left out
    sources = " ".join(str(p) for p in sorted(rtl_dir.glob("*.sv")) if p.name != "instabnn_top.sv")
    chparam = " ".join(f"-set {k} {v}" for k, v in params.items())
    script = workdir / "synth.ys"
    script.write_text(f"read_verilog -defer -sv {sources}\nchparam {chparam} {module}\n"
                      f"synth_xilinx -family xc7 -top {module}\nstat\n")
    log_path = workdir / "synth.log"
    proc = subprocess.run(["yosys", "-q", "-l", str(log_path), str(script)], cwd=rtl_dir, capture_output=True,
                          text=True, timeout=3600)
    log = log_path.read_text() if log_path.exists() else ""
    if proc.returncode != 0:
        raise SynthError(f"yosys failed on {instance} ({module}, log {log_path}): {(proc.stderr or log)[-500:].strip()}")
    return parse_hierarchy(log)


def instances_markdown(rows: dict[str, dict[str, dict]]) -> list[str]:
    """Per instance and submodule: logic LUTs / LUT-RAM sites / BRAM36 / DSP."""
    lines = ["| instance | submodule | logic LUT | LUT-RAM sites | LUT sites | BRAM36 | DSP |", "|---|---|---|---|---|---|---|"]
    for inst, mods in rows.items():
        for name, r in sorted(mods.items(), key=lambda kv: (kv[0] == "total", -kv[1]["lut"])):
            label = f"**{name}**" if name == "total" else name
            lines.append(f"| {inst} | {label} | {r['lut']} | {r['lutram_sites']} | {r['lut'] + r['lutram_sites']} | "
                         f"{r['bram36']:g} | {r['dsp']} |")
    return lines


def _synth_xilinx(top: str, params: dict, workdir: Path, label: str) -> dict:
    """``synth_xilinx -family xc7`` of ``top`` with ``params`` (its library files read); returns the resource dict."""
    if shutil.which("yosys") is None:
        raise SynthError("yosys not found (make setup installs it from apt as root; or apt-get install yosys)")
    chparam = " ".join(f"-set {k} {v}" for k, v in params.items())
    sources = " ".join(str(p) for p in rtl_paths(top))
    script = workdir / "synth.ys"
    script.write_text(f"read_verilog -defer -sv {sources}\nchparam {chparam} {top}\n"
                      f"synth_xilinx -family xc7 -top {top} -flatten\nstat\n")
    proc = subprocess.run(["yosys", "-q", "-l", "synth.log", str(script)], cwd=workdir, capture_output=True,
                          text=True, timeout=1800)
    log_path = workdir / "synth.log"
    log = log_path.read_text() if log_path.exists() else ""
    if proc.returncode != 0:
        raise SynthError(f"yosys failed on {top} {label} (log {log_path}): {(proc.stderr or log)[-500:].strip()}")
    res = parse_stat(log)
    res["utilisation_xc7z020_pct"] = {k: round(100.0 * res[k] / cap, 2) for k, cap in XC7Z020.items()}
    return res


def synth_binary_mvu(shape: BinaryMvuShape, workdir: Path, seed: int = 0) -> dict:
    """Synthesise ``binary_mvu`` with ``shape`` and random weights/thresholds; returns the resource dict."""
    if shutil.which("yosys") is None:
        raise SynthError("yosys not found (make setup installs it from apt as root; or apt-get install yosys)")
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = rng.choice([-1, 1], size=(shape.mh, shape.mw))
    wfile = write_weight_file(workdir / "weights.memh", weights, shape)
    tfile = None
    if shape.thresholds:
        tfile = write_threshold_file(workdir / "thresholds.memh", rng.integers(-shape.mw, shape.mw + 1, shape.mh),
                                     shape)
    return _synth_xilinx("binary_mvu", shape.rtl_parameters(wfile, tfile), workdir, shape.name)


def synth_int_mvu(shape: IntMvuShape, workdir: Path, seed: int = 0) -> dict:
    """Synthesise ``int_mvu`` with ``shape`` and random full-range weights (and biases)."""
    if shutil.which("yosys") is None:
        raise SynthError("yosys not found (make setup installs it from apt as root; or apt-get install yosys)")
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lo, hi = shape.weight_range
    wfile = write_int_weight_file(workdir / "weights.memh", rng.integers(lo, hi + 1, (shape.mh, shape.mw)), shape)
    bfile = None
    if shape.bias_bits:
        blo, bhi = shape.bias_range
        bfile = write_bias_file(workdir / "bias.memh", rng.integers(blo, bhi + 1, shape.mh), shape)
    return _synth_xilinx("int_mvu", shape.rtl_parameters(wfile, bfile), workdir, shape.name)


def synth_stream_block(top: str, shape, workdir: Path) -> dict:
    """Synthesise a streaming block without memory-init files (``sliding_window``, ``stream_fifo``,
    ``stream_duplicate``, ``width_converter``, ``pool_sum``, ``global_sum``) with ``shape.rtl_parameters()``."""
    workdir.mkdir(parents=True, exist_ok=True)
    return _synth_xilinx(top, shape.rtl_parameters(), workdir, shape.name)


def threshold_unit_constants(channels: int, pixels: int, input_bits: int, static: int,
                             seed: int = 0) -> InstaThConstants:
    """Seeded, trained-like constants of a threshold unit (residual stream scale 2^-4): mu ~ N(0, 0.5),
    sigma ~ U(0.5, 1.5), alpha ~ N(0, 1), beta ~ N(0, 0.5) per channel; static: tau ~ N(0, 0.5)."""
    rng = np.random.default_rng(seed)
    scale = 2.0 ** -4
    if static:
        return static_threshold_constants(rng.normal(0, 0.5, channels), scale, pixels, input_bits)
    return insta_th_constants(rng.normal(0, 0.5, channels), rng.uniform(0.5, 1.5, channels),
                              rng.normal(0, 1, channels), rng.normal(0, 0.5, channels), scale, pixels, input_bits)


def synth_insta_threshold(channels: int, pe: int, pixels: int, input_bits: int, static: int, workdir: Path,
                          shortcut: int = 0, seed: int = 0) -> tuple[InstaThresholdSpec, dict]:
    """Synthesise ``insta_threshold`` for the folding with :func:`threshold_unit_constants`; returns
    ``(spec, resource dict)``."""
    if shutil.which("yosys") is None:
        raise SynthError("yosys not found (make setup installs it from apt as root; or apt-get install yosys)")
    workdir.mkdir(parents=True, exist_ok=True)
    consts = threshold_unit_constants(channels, pixels, input_bits, static, seed)
    spec = with_chosen_limbs(InstaThresholdSpec.from_constants(consts, pe, static=static, shortcut=shortcut))
    cfile = write_coeff_file(workdir / "coeffs.memh", consts, spec)
    return spec, _synth_xilinx("insta_threshold", spec.rtl_parameters(cfile), workdir, spec.name)


def residual_tail_activation(channels: int, pixels: int, out_bits: int, shortcut: str,
                             seed: int = 0) -> tuple[ResidualActivation, int, int]:
    """Seeded, trained-like block tail (residual stream scale 2^-4): y = a acc + b with a ~ U(-0.05, 0.05),
    b, gamma, zeta ~ N(0, 0.3), slopes ~ U(-0.5, 1); acc of a 3x3 binary convolution (|acc| <= 9 C). ``shortcut``
    "shift": the identity (out_bits, scale 2^-4); "proj": a 1x1 int8 projection over 2x2 average-pool sums of
    Cin = C/2 channels (|acc_p| <= 127 Cin 128 4) with a real multiplier ~ U(-1, 1) 2^-12 / Cin and BN shift
    ~ N(0, 0.3). Returns ``(activation, acc_bound, sc_bits)``."""
    rng = np.random.default_rng(seed)
    out_exp, acc_bound = -4, 9 * channels
    a, b = rng.uniform(-0.05, 0.05, channels), rng.normal(0, 0.3, channels)
    act = {"kind": "rprelu", "gamma": rng.normal(0, 0.3, channels), "zeta": rng.normal(0, 0.3, channels),
           "slope": rng.uniform(-0.5, 1.0, channels)}
    proj, sc_bits = None, out_bits
    if shortcut == "proj":
        in_channels = max(1, channels // 2)
        bound = 127 * in_channels * 128 * 4
        proj = (rng.uniform(-1, 1, channels) * 2.0 ** -12 / in_channels, rng.normal(0, 0.3, channels), bound)
        sc_bits = signed_bits(-bound, bound)
    elif shortcut != "shift":
        raise ValueError(f"shortcut must be 'shift' or 'proj', got {shortcut!r}")
    tail = residual_activation(a, b, acc_bound, shortcut, out_exp, proj, act, out_exp, out_bits, pixels, "synth")
    return tail, acc_bound, sc_bits


def synth_residual_tail(channels: int, pe: int, pixels: int, out_bits: int, shortcut: str, workdir: Path,
                        seed: int = 0) -> tuple[ResidualTailSpec, dict]:
    """Synthesise ``residual_tail`` for the folding with :func:`residual_tail_activation`; returns
    ``(spec, resource dict)``."""
    if shutil.which("yosys") is None:
        raise SynthError("yosys not found (make setup installs it from apt as root; or apt-get install yosys)")
    workdir.mkdir(parents=True, exist_ok=True)
    tail, acc_bound, sc_bits = residual_tail_activation(channels, pixels, out_bits, shortcut, seed)
    spec = ResidualTailSpec.from_activation(tail, acc_bound, sc_bits, pe, pixels)
    cfile = write_residual_const_file(workdir / "consts.mem", tail, spec)
    return spec, _synth_xilinx("residual_tail", spec.rtl_parameters(cfile), workdir, spec.name)


def _residual_tail_row(spec: ResidualTailSpec, res: dict) -> dict:
    return {"block": "residual_tail", "shape": spec.name, "shortcut": "proj" if spec.shortcut_proj else "shift",
            "channels": spec.channels, "pe": spec.pe, "pixels": spec.pixels, "acc_bits": spec.acc_bits,
            "sc_bits": spec.sc_bits, "out_bits": spec.out_bits, "d_bits": spec.d_bits,
            "const_lane_bits": spec.const_lane_bits, "cycles_per_frame": spec.cycles_per_frame,
            "latency": spec.latency, **{k: v for k, v in res.items() if k != "cells"}, "cells": res["cells"]}


def residual_tails_markdown(rows: list[dict]) -> list[str]:
    """The Markdown table of the residual-tail rows (shift shortcut beside 1x1 projection)."""
    lines = ["| shortcut | C x H*W | PE | acc / sc / D bits | const bits/lane | cycles/frame | latency | LUT | FF | "
             "CARRY4 | LUTRAM | BRAM36 | DSP | LUT % xc7z020 | DSP % xc7z020 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        kind = "1x1 projection" if r["shortcut"] == "proj" else "shift (identity / pool)"
        lines.append(f"| {kind} | {r['channels']} x {r['pixels']} | {r['pe']} | {r['acc_bits']} / {r['sc_bits']} / "
                     f"{r['d_bits']} | {r['const_lane_bits']} | {r['cycles_per_frame']:g} | {r['latency']} | "
                     f"{r['lut']} | {r['ff']} | {r['carry4']} | {r['lutram']} | {r['bram36']:g} | {r['dsp']} | "
                     f"{r['utilisation_xc7z020_pct']['lut']:.2f} | {r['utilisation_xc7z020_pct']['dsp']:.2f} |")
    return lines


def insta_tail_activation(channels: int, pixels: int, out_bits: int, shortcut: str, stat_source: str,
                          seed: int = 0) -> tuple[ResidualActivation, int, int]:
    """Seeded, trained-like INSTA-PReLU block tail (residual stream scale 2^-4): y = a acc + b as in
    :func:`residual_tail_activation`, T = mu + sigma g(alpha s + beta) with mu ~ N(0, 0.3), sigma ~ U(0.2, 1.5),
    alpha ~ U(-1.5, 1.5), beta ~ N(0, 0.5), g = tanh3; ``stat_source`` "reuse": s from the block input's INSTA-Th
    statistics (mu_th ~ N(0, 0.5), sigma_th ~ U(0.5, 1.5), u ~ N(1, 0.2), v ~ N(0, 0.2); the input has the output's
    channels, bits and pixels: stride 1). Returns ``(activation, acc_bound, sc_bits)``."""
    rng = np.random.default_rng(seed)
    out_exp, acc_bound = -4, 9 * channels
    a, b = rng.uniform(-0.05, 0.05, channels), rng.normal(0, 0.3, channels)
    act = {"kind": "insta", "mu": rng.normal(0, 0.3, channels), "sigma": rng.uniform(0.2, 1.5, channels),
           "beta": rng.normal(0, 0.5, channels), "alpha": rng.uniform(-1.5, 1.5, channels), "g": "tanh3",
           "slope": rng.uniform(-0.5, 1.0, channels), "se": None}
    if stat_source == "reuse":
        act["reuse"] = {"mu": rng.normal(0, 0.5, channels), "sigma": rng.uniform(0.5, 1.5, channels),
                        "u": rng.normal(1, 0.2, channels), "v": rng.normal(0, 0.2, channels), "exp": out_exp,
                        "bits": out_bits, "pixels": pixels}
    elif stat_source != "own":
        raise ValueError(f"stat_source must be 'own' or 'reuse', got {stat_source!r}")
    proj, sc_bits = None, out_bits
    if shortcut == "proj":
        in_channels = channels if stat_source == "reuse" else max(1, channels // 2)
        bound = 127 * in_channels * 128 * 4
        proj = (rng.uniform(-1, 1, channels) * 2.0 ** -12 / in_channels, rng.normal(0, 0.3, channels), bound)
        sc_bits = signed_bits(-bound, bound)
    elif shortcut != "shift":
        raise ValueError(f"shortcut must be 'shift' or 'proj', got {shortcut!r}")
    tail = residual_activation(a, b, acc_bound, shortcut, out_exp, proj, act, out_exp, out_bits, pixels, "synth")
    return tail, acc_bound, sc_bits


def synth_insta_tail(channels: int, pe: int, pixels: int, out_bits: int, shortcut: str, stat_source: str,
                     workdir: Path, seed: int = 0) -> tuple[InstaTailSpec, dict]:
    """Synthesise ``insta_tail`` for the folding with :func:`insta_tail_activation`; returns
    ``(spec, resource dict)``."""
    if shutil.which("yosys") is None:
        raise SynthError("yosys not found (make setup installs it from apt as root; or apt-get install yosys)")
    workdir.mkdir(parents=True, exist_ok=True)
    tail, acc_bound, sc_bits = insta_tail_activation(channels, pixels, out_bits, shortcut, stat_source, seed)
    spec = with_chosen_limbs(InstaTailSpec.from_activation(tail, acc_bound, sc_bits, pe, pixels))
    files = write_insta_tail_memory_files(workdir, tail, spec)
    return spec, _synth_xilinx("insta_tail", spec.rtl_parameters(**files), workdir, spec.name)


def _insta_tail_row(spec: InstaTailSpec, res: dict) -> dict:
    return {"block": "insta_tail", "shape": spec.name, "shortcut": "proj" if spec.shortcut_proj else "shift",
            "stat_source": "reuse" if spec.stat_reuse else "own", "channels": spec.channels, "pe": spec.pe,
            "pixels": spec.pixels, "acc_bits": spec.acc_bits, "sc_bits": spec.sc_bits, "out_bits": spec.out_bits,
            "d_bits": spec.d_bits, "y_bits": spec.y_bits, "zacc_bits": spec.zacc_bits,
            "buffer_bits": spec.buffer_bits, "cycles_per_frame": spec.cycles_per_frame, "latency": spec.latency,
            "beat_latency": spec.beat_latency, **{k: v for k, v in res.items() if k != "cells"},
            "cells": res["cells"]}


def insta_tails_markdown(rows: list[dict]) -> list[str]:
    """The Markdown table of the INSTA-PReLU tail rows (own statistic beside reused statistics)."""
    lines = ["| statistic | shortcut | C x H*W | PE | acc / sc / D bits | Z bits | frame buffer kbit | cycles/frame | "
             "latency | beat latency | LUT | FF | CARRY4 | LUTRAM | BRAM36 | DSP | LUT % xc7z020 | DSP % xc7z020 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stat_source']} | {r['shortcut']} | {r['channels']} x {r['pixels']} | {r['pe']} | "
                     f"{r['acc_bits']} / {r['sc_bits']} / {r['d_bits']} | {r['zacc_bits']} | "
                     f"{r['buffer_bits'] / 1000:.1f} | {r['cycles_per_frame']:g} | {r['latency']} | "
                     f"{r['beat_latency']} | {r['lut']} | {r['ff']} | {r['carry4']} | {r['lutram']} | "
                     f"{r['bram36']:g} | {r['dsp']} | {r['utilisation_xc7z020_pct']['lut']:.2f} | "
                     f"{r['utilisation_xc7z020_pct']['dsp']:.2f} |")
    return lines


def _threshold_unit_row(spec: InstaThresholdSpec, res: dict) -> dict:
    return {"block": "insta_threshold", "shape": spec.name, "kind": "static" if spec.static else "insta",
            "channels": spec.channels, "pe": spec.pe, "pixels": spec.pixels, "input_bits": spec.input_bits,
            "shortcut": spec.shortcut, "cycles_per_frame": spec.cycles_per_frame, "latency": spec.latency,
            "beat_latency": spec.beat_latency, "buffer_bits": spec.buffer_bits,
            "coeff_bits": list(spec.coeff_bits), "tacc_bits": spec.tacc_bits,
            "power_sum_bits": list(spec.power_sum_bits),
            **{k: v for k, v in res.items() if k != "cells"}, "cells": res["cells"]}


def threshold_units_markdown(rows: list[dict]) -> list[str]:
    """The Markdown table of the threshold-unit rows (static beside INSTA-Th of the same folding)."""
    lines = ["| unit | C x H*W | PE | q bits | cycles/frame | latency | frame buffer kbit | LUT | FF | CARRY4 | "
             "LUTRAM | BRAM36 | DSP | LUT % xc7z020 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        unit = ("static (RSign)" if r["kind"] == "static" else "INSTA-Th") + (" + shortcut" if r["shortcut"] else "")
        lines.append(f"| {unit} | {r['channels']} x {r['pixels']} | {r['pe']} | {r['input_bits']} | "
                     f"{r['cycles_per_frame']:g} | {r['latency']} | {r['buffer_bits'] / 1000:.1f} | {r['lut']} | "
                     f"{r['ff']} | {r['carry4']} | {r['lutram']} | {r['bram36']:g} | {r['dsp']} | "
                     f"{r['utilisation_xc7z020_pct']['lut']:.2f} |")
    return lines


def run(shapes, out: Path, threshold_units=DEFAULT_THRESHOLD_UNITS, residual_tails=DEFAULT_RESIDUAL_TAILS,
        insta_tails=DEFAULT_INSTA_TAILS) -> dict:
    from instabnn.outputs import atomic_write_text

    version = subprocess.run(["yosys", "-V"], capture_output=True, text=True).stdout.strip() if shutil.which(
        "yosys") else "missing"
    rows = []
    with tempfile.TemporaryDirectory(prefix="instabnn-synth-") as tmp:
        for shape in shapes:
            print(f"synth_xilinx binary_mvu {shape.name} ...", flush=True)
            res = synth_binary_mvu(shape, Path(tmp) / shape.name)
            rows.append({"block": "binary_mvu", "shape": shape.name, "mw": shape.mw, "mh": shape.mh,
                         "simd": shape.simd, "pe": shape.pe, "thresholds": shape.thresholds,
                         "cycles_per_vector": shape.cycles_per_vector,
                         **{k: v for k, v in res.items() if k != "cells"}, "cells": res["cells"]})
        for shape in DEFAULT_INT_MVU_SHAPES:
            print(f"synth_xilinx int_mvu {shape.name} ...", flush=True)
            res = synth_int_mvu(shape, Path(tmp) / shape.name)
            rows.append({"block": "int_mvu", "shape": shape.name, "mw": shape.mw, "mh": shape.mh, "simd": shape.simd,
                         "pe": shape.pe, "acc_bits": shape.acc_bits, "cycles_per_vector": shape.cycles_per_vector,
                         **{k: v for k, v in res.items() if k != "cells"}, "cells": res["cells"]})
        for top, shape in DEFAULT_STREAM_BLOCKS:
            print(f"synth_xilinx {top} {shape.name} ...", flush=True)
            res = synth_stream_block(top, shape, Path(tmp) / shape.name)
            rows.append({"block": top, "shape": shape.name, **{k: v for k, v in res.items() if k != "cells"},
                         "cells": res["cells"]})
        for channels, pe, pixels, input_bits, static, shortcut in threshold_units:
            name = f"c{channels}_pe{pe}_n{pixels}_b{input_bits}_s{static}_sc{shortcut}"
            print(f"synth_xilinx insta_threshold {name} ...", flush=True)
            spec, res = synth_insta_threshold(channels, pe, pixels, input_bits, static, Path(tmp) / name,
                                              shortcut=shortcut)
            rows.append(_threshold_unit_row(spec, res))
        for channels, pe, pixels, out_bits, shortcut in residual_tails:
            name = f"rtail_c{channels}_pe{pe}_n{pixels}_b{out_bits}_{shortcut}"
            print(f"synth_xilinx residual_tail {name} ...", flush=True)
            spec, res = synth_residual_tail(channels, pe, pixels, out_bits, shortcut, Path(tmp) / name)
            rows.append(_residual_tail_row(spec, res))
        for channels, pe, pixels, out_bits, shortcut, stat_source in insta_tails:
            name = f"itail_c{channels}_pe{pe}_n{pixels}_b{out_bits}_{shortcut}_{stat_source}"
            print(f"synth_xilinx insta_tail {name} ...", flush=True)
            spec, res = synth_insta_tail(channels, pe, pixels, out_bits, shortcut, stat_source, Path(tmp) / name)
            rows.append(_insta_tail_row(spec, res))
    report = {"tool": version, "flow": "synth_xilinx -family xc7 -flatten", "part_capacity": XC7Z020, "rows": rows}
    atomic_write_text(out, json.dumps(report, indent=1))
    lines = [f"# Block resources ({version}, synth_xilinx -family xc7)", "",
             "| block | MW x MH | SIMD x PE | out | cycles/vector | LUT | FF | CARRY4 | LUTRAM | BRAM36 | DSP | LUT % xc7z020 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["block"] != "binary_mvu":
            continue
        lines.append(f"| {r['block']} | {r['mw']} x {r['mh']} | {r['simd']} x {r['pe']} | "
                     f"{'threshold' if r['thresholds'] else 'acc'} | {r['cycles_per_vector']} | {r['lut']} | "
                     f"{r['ff']} | {r['carry4']} | {r['lutram']} | {r['bram36']:g} | {r['dsp']} | "
                     f"{r['utilisation_xc7z020_pct']['lut']:.2f} |")
    other = [r for r in rows if r["block"] not in ("binary_mvu", "insta_threshold", "residual_tail", "insta_tail")]
    if other:
        lines += ["", "## Integer MVU, sliding windows, stream utilities", "",
                  "| block | shape | LUT | FF | CARRY4 | LUTRAM | BRAM36 | DSP | LUT % xc7z020 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in other:
            lines.append(f"| {r['block']} | {r['shape']} | {r['lut']} | {r['ff']} | {r['carry4']} | {r['lutram']} | "
                         f"{r['bram36']:g} | {r['dsp']} | {r['utilisation_xc7z020_pct']['lut']:.2f} |")
    unit_rows = [r for r in rows if r["block"] == "insta_threshold"]
    if unit_rows:
        lines += ["", "## Threshold units (insta_threshold): INSTA-Th beside static thresholds", "",
                  "Latency: edges from a frame's last input beat to its first output beat (static: beat to beat); "
                  "INSTA-Th adds one frame on top (every beat waits for its frame's threshold).", ""]
        lines += threshold_units_markdown(unit_rows)
    tail_rows = [r for r in rows if r["block"] == "residual_tail"]
    if tail_rows:
        lines += ["", "## Residual block tail with RPReLU (residual_tail): shift shortcut beside 1x1 projection", "",
                  "Latency: edges from a beat's input handshake to its output handshake; the projection adds one "
                  "multiplier per lane (SHORTCUT_MULT * acc_p) and the SHORTCUT_MULT field to the constant word.", ""]
        lines += residual_tails_markdown(tail_rows)
    itail_rows = [r for r in rows if r["block"] == "insta_tail"]
    if itail_rows:
        lines += ["", "## Residual block tail with INSTA-PReLU (insta_tail): own statistic beside reused statistics",
                  "", "Latency: own, edges from a frame's last input beat to its first output beat (beat latency: "
                  "per beat at full rate, one frame more); reuse, per beat (the frame's shifts come from the "
                  "statistic stream first).", ""]
        lines += insta_tails_markdown(itail_rows)
    md = "\n".join(lines) + "\n"
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)
    return report


def run_instances(rtl_dir: Path, instances: list[str], out: Path) -> dict:
    """:func:`synth_instance` of each of ``instances`` of the accelerator in ``rtl_dir``: JSON at ``out``, the
    Markdown table beside it."""
    from instabnn.outputs import atomic_write_text

    rows = {}
    with tempfile.TemporaryDirectory(prefix="instabnn-synth-") as tmp:
        for inst in instances:
            print(f"synth_xilinx (hierarchical) {inst} ...", flush=True)
            rows[inst] = synth_instance(rtl_dir, inst, Path(tmp) / inst)
    version = subprocess.run(["yosys", "-V"], capture_output=True, text=True).stdout.strip()
    report = {"tool": version, "flow": "synth_xilinx -family xc7 (hierarchical)", "rtl": str(rtl_dir),
              "instances": rows}
    atomic_write_text(out, json.dumps(report, indent=1))
    md = "\n".join([f"# Block instances of {rtl_dir} ({version}, synth_xilinx -family xc7, hierarchical)", ""]
                    + instances_markdown(rows)) + "\n"
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="instabnn-synth-blocks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports/synth_blocks.json")
    p.add_argument("--rtl", default=None,
                   help="a compiled accelerator's folder: synthesise --instances of it (hierarchical, per submodule) "
                        "instead of the default block set")
    p.add_argument("--instances", default="", help="comma-separated instance names of --rtl's top")
    args = p.parse_args(argv)
    if bool(args.rtl) != bool(args.instances):
        print("instabnn-synth-blocks: error: --rtl and --instances go together", file=sys.stderr)
        return 1
    if args.out and not args.out.endswith(".json"):
        print(f"instabnn-synth-blocks: error: --out {args.out}: a .json path expected", file=sys.stderr)
        return 1
    try:
        if args.rtl:
            run_instances(Path(args.rtl), [i for i in args.instances.split(",") if i], Path(args.out))
        else:
            run(DEFAULT_SHAPES, Path(args.out))
    except SynthError as e:
        print(f"instabnn-synth-blocks: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
