"""The compiler's resource estimate beside Yosys on whole accelerators.

``python -m instabnn.sim.estimate_check --out reports/estimate_vs_yosys.json`` (``make estimate-check``) builds
each design from random weights (nothing trained, nothing downloaded), compiles it and synthesises the generated
accelerator with the flow ``make bitstream`` uses where Vivado is missing (Yosys ``synth_xilinx -family xc7
-flatten`` through :func:`instabnn.hw.bitstream.pynq_z2.yosys_xc7_estimate`). It writes the JSON and a Markdown
table beside it: estimate and Yosys LUT / BRAM36 / DSP48E1 per design, the LUT ratio and whether it is within
:data:`LUT_TOLERANCE` of Yosys' LUT sites (logic LUTs plus the LUT sites of its LUT RAM, as Vivado's "Slice LUTs"
counts them and as the estimate does, small RAMs being LUTs in it; beside it the ratio to logic LUTs alone). Every figure is from this run; nothing is read back from an earlier one.

Designs (``--designs``, comma-separated):

    digits-baseline   the digits network, baseline variant, folded for 5,000 frames/s at 100 MHz (``make demo``)
    digits-insta      the digits network, INSTA variant, 5,000 frames/s
    cnv_1w1a          Brevitas bnn_pynq CNV, W1A1, 32 x 32 x 3, folded for 3,050 frames/s
    tfc_1w1a          Brevitas bnn_pynq TFC, W1A1, 28 x 28, folded for 20,000 frames/s

Each Yosys run takes minutes (``cnv_1w1a`` the longest); run it with ``nice``. ``--designs`` with
``--keep-others`` re-runs some designs and keeps the others' entries from the report at ``--out``; every entry
names the commit and date of the run that made it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from instabnn.hw.synth import LUTRAM_SITES

LUT_TOLERANCE = 0.15
"""Largest relative LUT error of the estimate against Yosys on a whole design (issue 16)."""


DESIGNS = {
    "digits-baseline": {"source": ("instabnn", "digits", "baseline"), "fps": 5000.0},
    "digits-insta": {"source": ("instabnn", "digits", "insta"), "fps": 5000.0},
    "cnv_1w1a": {"source": ("bnn_pynq", "cnv_1w1a", (3, 32, 32)), "fps": 3050.0},
    "tfc_1w1a": {"source": ("bnn_pynq", "tfc_1w1a", (1, 28, 28)), "fps": 20000.0},
}


def build_design(name: str, work: Path) -> dict:
    """Export, lower, fold and compile design ``name`` in ``work``; returns the compiler's manifest."""
    from instabnn.hw.compile import compiler as C
    from instabnn.hw import lower
    from instabnn.hw.compile import folding

    kind, net, arg = DESIGNS[name]["source"]
    work.mkdir(parents=True, exist_ok=True)
    onnx = work / "model.onnx"
    if kind == "instabnn":
        from instabnn.sim.bench import export_random_network

        export_random_network(net, arg, onnx)
    else:
        from instabnn.model.bnn_pynq import export_bnn_pynq

        export_bnn_pynq(net, onnx, arg)
    if lower.main([str(onnx), "--out", str(work), "--no-progress", "-n", "2"]) != 0:
        raise RuntimeError(f"{name}: lowering {onnx} failed")
    if folding.main([str(work / "lowered.onnx"), "--target-fps", str(DESIGNS[name]["fps"])]) != 0:
        raise RuntimeError(f"{name}: folding failed")
    return C.compile_model(work / "lowered.onnx", work / "rtl", work / "folding.json")


def synthesise(rtl: Path, work: Path) -> dict:
    """Yosys ``synth_xilinx -family xc7`` of the accelerator in ``rtl`` (the ``make bitstream`` path without
    Vivado); returns its resource dict and the seconds it took."""
    from instabnn.hw.bitstream.accelerator import copy_rtl, load_accelerator
    from instabnn.hw.bitstream.pynq_z2 import yosys_xc7_estimate
    from instabnn.hw.bitstream.tools import Recorder

    acc = load_accelerator(rtl)
    srcs, mems = copy_rtl(acc, work / "rtl")
    t0 = time.monotonic()
    res = yosys_xc7_estimate(srcs, mems, acc.top, work / "yosys-xc7", Recorder(work))
    lutram_sites = sum(LUTRAM_SITES.get(cell, 0) * n for cell, n in res["cells"].items())
    unknown = [c for c in res["cells"] if c.startswith("RAM") and not c.startswith("RAMB") and c not in LUTRAM_SITES]
    if unknown:
        raise RuntimeError(f"{rtl}: Yosys used LUT RAM cells of unknown size {unknown}; add them to LUTRAM_SITES")
    return {**{k: res[k] for k in ("lut", "ff", "carry4", "lutram", "bram36", "dsp")},
            "lutram_sites": lutram_sites, "seconds": round(time.monotonic() - t0, 1)}


def compare(estimate: dict, yosys: dict) -> dict:
    """The estimate's LUT ratio to Yosys' LUT sites (logic LUTs plus the LUT sites of its LUT RAM: what Vivado's
    "Slice LUTs" counts, and what the estimate counts, small RAMs being LUTs in it) and whether it is within
    :data:`LUT_TOLERANCE` (the check); beside it, the ratio to Yosys' logic LUTs alone."""
    sites = yosys["lut"] + yosys.get("lutram_sites", 0)
    ratio = estimate["lut"] / sites
    return {"lut_with_lutram_ratio": round(ratio, 3), "lut_within_tolerance": abs(ratio - 1) <= LUT_TOLERANCE,
            "lut_ratio": round(estimate["lut"] / yosys["lut"], 3)}


def check_design(name: str, work: Path) -> dict:
    manifest = build_design(name, work)
    est = manifest["resources_estimate"]
    blocks: dict[str, dict] = {}
    for layer in manifest["layers"]:
        for module in layer["blocks"]:
            blocks.setdefault(module, 0)
            blocks[module] += 1
    yosys = synthesise(work / "rtl", work / "synth")
    return {"fps": DESIGNS[name]["fps"], "cycles_per_frame": manifest["cycles_per_frame_estimate"],
            "folding": manifest["folding"], "block_instances": blocks, "estimate": est, "yosys": yosys,
            **compare(est, yosys)}


def source_commit() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes), or "unknown" outside a git checkout."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) or "unknown"


def markdown(report: dict) -> str:
    lines = [f"Estimate vs Yosys `synth_xilinx -family xc7 -flatten` (whole accelerators, random weights; "
             f"LUT tolerance {100 * LUT_TOLERANCE:g} %).", "",
             "| design | frames/s | estimate LUT / BRAM36 / DSP | Yosys LUT / BRAM36 / DSP | Yosys LUT RAM sites | "
             "LUT estimate / Yosys (LUT + LUT RAM sites) | LUT estimate / Yosys logic LUT | Yosys seconds | "
             "commit, date |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["designs"].items():
        e, y = r["estimate"], r["yosys"]
        lines.append(f"| {name} | {r['fps']:g} | {e['lut']:,} / {e['bram36']:g} / {e['dsp']} | "
                     f"{y['lut']:,} / {y['bram36']:g} / {y['dsp']} | {y.get('lutram_sites', 0)} | "
                     f"{r['lut_with_lutram_ratio']:.3f}{'' if r['lut_within_tolerance'] else ' (outside)'} | "
                     f"{r['lut_ratio']:.3f} | {y['seconds']:g} | "
                     f"{r.get('commit', '?')}, {r.get('date', '?')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from instabnn.outputs import atomic_write_text

    p = argparse.ArgumentParser(prog="instabnn-estimate-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="reports/estimate_vs_yosys.json", help="JSON report (and .md beside it)")
    p.add_argument("--designs", default=",".join(DESIGNS), help=f"comma-separated, of: {', '.join(DESIGNS)}")
    p.add_argument("--work", default=None, help="build folder (default: estimate-check/ beside --out)")
    p.add_argument("--keep-others", action="store_true",
                   help="keep the entries of the designs not in --designs from the report at --out (each entry "
                        "names the commit and date of its run)")
    a = p.parse_args(argv)
    names = [d for d in a.designs.split(",") if d]
    unknown = [d for d in names if d not in DESIGNS]
    if unknown or not names:
        print(f"estimate-check: error: --designs: unknown {unknown or 'none given'}; choose from "
              f"{', '.join(DESIGNS)}", file=sys.stderr)
        return 1
    out = Path(a.out)
    if out.suffix != ".json":
        print(f"estimate-check: error: --out {out}: a .json path expected", file=sys.stderr)
        return 1
    work = Path(a.work) if a.work else out.parent / "estimate-check"
    report = {"tool": "yosys synth_xilinx -family xc7 -flatten", "lut_tolerance": LUT_TOLERANCE, "designs": {}}
    if a.keep_others and out.is_file():
        earlier = json.loads(out.read_text())
        report["designs"] = {k: v for k, v in earlier.get("designs", {}).items() if k not in names}
    commit = source_commit()  # of the code this process loaded
    for name in names:
        report["designs"][name] = {"commit": commit, "date": time.strftime("%Y-%m-%d %H:%M"),
                                   **check_design(name, work / name)}
        print(f"estimate-check: {name}: {json.dumps(report['designs'][name]['estimate'])} estimated, "
              f"{json.dumps(report['designs'][name]['yosys'])} Yosys", flush=True)
    atomic_write_text(out, json.dumps(report, indent=1))
    md = markdown(report)
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)
    return 0 if all(r["lut_within_tolerance"] for r in report["designs"].values()) else 3


if __name__ == "__main__":
    sys.exit(main())
