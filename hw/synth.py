"""Per-block resource figures: Yosys ``synth_xilinx -family xc7`` of the RTL blocks for a few foldings.

``python -m instabnn.hw.synth --out reports/synth_blocks.json`` (``make synth-blocks``) synthesises each block with
random weights (seeded; the weights are ROM contents, so they shape the logic) and writes a JSON report and a
Markdown table (``.md`` beside it) of LUT, FF, CARRY4, LUTRAM, BRAM36 (RAMB18 counted as 0.5) and DSP48E1, with each
figure also as a percentage of the PYNQ-Z2's xc7z020 (53,200 LUT, 106,400 FF, 140 BRAM36, 220 DSP48E1).
Yosys' xc7 mapping is not Vivado's: these are open-tool figures for the same RTL, to compare foldings and blocks.
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

from instabnn.hw.mvu_files import BinaryMvuShape, write_threshold_file, write_weight_file

RTL_DIR = Path(__file__).resolve().parent / "rtl"
XC7Z020 = {"lut": 53_200, "ff": 106_400, "bram36": 140, "dsp": 220}

# A ResNet-20 stage-1 binary 3x3 convolution (16 -> 16 channels: MW = 3*3*16 = 144, MH = 16) at three foldings,
# with accumulator and with threshold output, and a stage-3 one (64 -> 64: MW = 576).
DEFAULT_SHAPES = [
    BinaryMvuShape(144, 16, 16, 4, 0), BinaryMvuShape(144, 16, 16, 4, 1), BinaryMvuShape(144, 16, 48, 8, 1),
    BinaryMvuShape(144, 16, 144, 16, 1), BinaryMvuShape(576, 64, 64, 16, 1),
]


class SynthError(RuntimeError):
    """Yosys is missing or failed; the message names the block and the log."""


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
    params = shape.rtl_parameters(wfile, tfile)
    chparam = " ".join(f"-set {k} {v}" for k, v in params.items())
    sources = " ".join(str(p) for p in sorted(RTL_DIR.glob("*.sv")))
    script = workdir / "synth.ys"
    script.write_text(f"read_verilog -defer -sv {sources}\nchparam {chparam} binary_mvu\n"
                      f"synth_xilinx -family xc7 -top binary_mvu -flatten\nstat\n")
    proc = subprocess.run(["yosys", "-q", "-l", "synth.log", str(script)], cwd=workdir, capture_output=True,
                          text=True, timeout=1800)
    log_path = workdir / "synth.log"
    log = log_path.read_text() if log_path.exists() else ""
    if proc.returncode != 0:
        raise SynthError(f"yosys failed on binary_mvu {shape.name} (log {log_path}): "
                         f"{(proc.stderr or log)[-500:].strip()}")
    res = parse_stat(log)
    res["utilisation_xc7z020_pct"] = {k: round(100.0 * res[k] / cap, 2) for k, cap in XC7Z020.items()}
    return res


def run(shapes, out: Path) -> dict:
    from instabnn.model.checkpoint import atomic_write_text

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
    report = {"tool": version, "flow": "synth_xilinx -family xc7 -flatten", "part_capacity": XC7Z020, "rows": rows}
    atomic_write_text(out, json.dumps(report, indent=1))
    lines = [f"# Block resources ({version}, synth_xilinx -family xc7)", "",
             "| block | MW x MH | SIMD x PE | out | cycles/vector | LUT | FF | CARRY4 | LUTRAM | BRAM36 | DSP | LUT % xc7z020 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['block']} | {r['mw']} x {r['mh']} | {r['simd']} x {r['pe']} | "
                     f"{'threshold' if r['thresholds'] else 'acc'} | {r['cycles_per_vector']} | {r['lut']} | "
                     f"{r['ff']} | {r['carry4']} | {r['lutram']} | {r['bram36']:g} | {r['dsp']} | "
                     f"{r['utilisation_xc7z020_pct']['lut']:.2f} |")
    md = "\n".join(lines) + "\n"
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="instabnn-synth-blocks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports/synth_blocks.json")
    args = p.parse_args(argv)
    try:
        run(DEFAULT_SHAPES, Path(args.out))
    except SynthError as e:
        print(f"instabnn-synth-blocks: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
