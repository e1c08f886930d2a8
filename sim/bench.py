"""Hardware benchmark: compile time, co-simulation speed (cocotb beside the plain Verilator harness) and measured
cycles per frame beside the analytic bound, for the trained digits networks of ``make bench``.

``python -m instabnn.sim.bench --runs reports/bench-runs --out reports/bench_hw.json`` (part of ``make bench``, which
also stores the report as ``"hardware"`` in ``reports/bench.json``;
``--resnet20 baseline,insta,latency_optimized`` adds random-weight ResNet-20 accelerators at CIFAR-10 shape)
takes each ``<runs>/<variant>/model.pt`` whose variant the RTL library covers, exports, lowers, folds for
``--fps`` at 100 MHz, compiles (timed) and co-simulates the digits test split with both harnesses. It writes the
JSON and a Markdown table beside it. Targets (issue "network compiler"): measured cycles per frame within 5 % of
the analytic bound; cocotb at >= 50 % of the plain Verilator harness's images per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

VARIANTS = ("baseline", "insta", "insta_plus", "latency_optimized")


def bench_variant(run: Path, work: Path, fps: float) -> dict:
    from instabnn.hw.compile import compiler as C
    from instabnn.hw import lower
    from instabnn.hw.compile import folding
    from instabnn.model.export import export_checkpoint
    from instabnn.sim import cosim

    work.mkdir(parents=True, exist_ok=True)
    export_checkpoint(run / "model.pt", work / "model.onnx", n_check=2)
    t0 = time.perf_counter()
    if lower.main([str(work / "model.onnx"), "--out", str(work), "--no-progress", "-n", "16"]) != 0:
        raise RuntimeError(f"lowering {work / 'model.onnx'} failed")
    t1 = time.perf_counter()
    if folding.main([str(work / "lowered.onnx"), "--target-fps", str(fps)]) != 0:
        raise RuntimeError("folding failed")
    t2 = time.perf_counter()
    m = C.compile_model(work / "lowered.onnx", work / "rtl", work / "folding.json")
    t3 = time.perf_counter()
    r = cosim.cosim(work / "rtl", "digits", harness="both", work=work / "cosim")
    return {
        "lower_seconds": round(t1 - t0, 2), "fold_seconds": round(t2 - t1, 2), "compile_seconds": round(t3 - t2, 2),
        "n": r["n"], "mismatches": r["mismatches"], "accuracy_reference": r["accuracy_reference"],
        "accuracy_rtl": r["accuracy_rtl"], "cycles_per_frame_measured": r["cycles_per_frame"],
        "cycles_per_frame_analytic": m["cycles_per_frame_estimate"],
        "cycles_ratio": r["cycles_per_frame"] / m["cycles_per_frame_estimate"],
        "latency_cycles": r["latency_cycles"], "fps_at_100mhz": 100e6 / r["cycles_per_frame"],
        "cocotb_images_per_s": r["cocotb"]["sim_images_per_s"],
        "verilator_images_per_s": r["verilator"]["sim_images_per_s"],
        "cocotb_vs_verilator": r["cocotb_vs_verilator_speed"],
        "resources_estimate": m["resources_estimate"],
    }


def export_random_network(arch: str, variant: str, path: Path) -> Path:
    """The ``arch`` network of ``variant`` with random weights (:func:`~instabnn.model.networks.random_weights_network`,
    seed 0), exported to QONNX at ``path``."""
    from instabnn.model.config import NetConfig
    from instabnn.model.export import export_model
    from instabnn.model.networks import random_weights_network

    cfg = NetConfig(arch=arch, variant=variant)
    export_model(random_weights_network(cfg), path, {"instabnn.config": json.dumps(cfg.to_dict())}, n_check=1)
    return path


def resnet20(variant: str, work: Path, fps: float, n: int) -> dict:
    """ResNet-20 at CIFAR-10 shape with random weights (:func:`export_random_network`), compiled for ``fps`` and
    co-simulated on ``n`` random images (Verilator harness)."""
    from instabnn.hw.compile import compiler as C
    from instabnn.hw import lower
    from instabnn.hw.compile import folding
    from instabnn.sim import cosim

    work.mkdir(parents=True, exist_ok=True)
    export_random_network("resnet20", variant, work / "model.onnx")
    if lower.main([str(work / "model.onnx"), "--out", str(work), "--no-progress", "-n", "3"]) != 0:
        raise RuntimeError("lowering failed")
    if folding.main([str(work / "lowered.onnx"), "--target-fps", str(fps)]) != 0:
        raise RuntimeError("folding failed")
    m = C.compile_model(work / "lowered.onnx", work / "rtl", work / "folding.json")
    r = cosim.cosim(work / "rtl", "random", n, harness="verilator", work=work / "cosim")
    return {"n": r["n"], "mismatches": r["mismatches"], "cycles_per_frame_measured": r["cycles_per_frame"],
            "cycles_per_frame_analytic": m["cycles_per_frame_estimate"], "latency_cycles": r["latency_cycles"],
            "fps_at_100mhz": 100e6 / r["cycles_per_frame"], "resources_estimate": m["resources_estimate"],
            "rtl": str(work / "rtl")}


def markdown(report: dict) -> str:
    lines = [f"# Hardware benchmark (digits test split, folding for {report['fps']:g} frames/s at 100 MHz)", "",
             "| variant | compile s | mismatches | accuracy ref / RTL | cycles/frame measured / analytic | "
             "latency (cycles) | cocotb / Verilator images/s | cocotb share | estimate LUT / BRAM36 / DSP |",
             "|---|---|---|---|---|---|---|---|---|"]
    for v, r in report["variants"].items():
        e = r["resources_estimate"]
        lines.append(f"| {v} | {r['compile_seconds']} | {r['mismatches']} | {100 * r['accuracy_reference']:.2f} / "
                     f"{100 * r['accuracy_rtl']:.2f} % | {r['cycles_per_frame_measured']:.0f} / "
                     f"{r['cycles_per_frame_analytic']} | {r['latency_cycles']} | {r['cocotb_images_per_s']:.1f} / "
                     f"{r['verilator_images_per_s']:.1f} | {100 * r['cocotb_vs_verilator']:.0f} % | "
                     f"{e['lut']} / {e['bram36']:g} / {e['dsp']} |")
    if report.get("resnet20"):
        lines += ["", "ResNet-20 at CIFAR-10 shape, random weights, random images (`--resnet20`):", "",
                  "| variant | images | mismatches | cycles/frame measured / analytic | latency | estimate LUT / BRAM36 / DSP |",
                  "|---|---|---|---|---|---|"]
        for v, r in report["resnet20"].items():
            e = r["resources_estimate"]
            lines.append(f"| {v} | {r['n']} | {r['mismatches']} | {r['cycles_per_frame_measured']:.0f} / "
                         f"{r['cycles_per_frame_analytic']} | {r['latency_cycles']} | {e['lut']} / {e['bram36']:g} / "
                         f"{e['dsp']} |")
    lines += ["", "Command: `python -m instabnn.sim.bench` (`make bench`).", ""]
    return "\n".join(lines)


def merge_into(path: Path, report: dict) -> None:
    """Store ``report`` under ``"hardware"`` in the JSON object at ``path`` (created if missing), atomically."""
    from instabnn.outputs import atomic_write_text

    data = json.loads(path.read_text()) if path.is_file() else {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a JSON object expected, to merge the hardware benchmark into")
    data["hardware"] = report
    atomic_write_text(path, json.dumps(data, indent=1))


def main(argv=None) -> int:
    from instabnn.outputs import atomic_write_text

    p = argparse.ArgumentParser(prog="instabnn-bench-hw", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="reports/bench-runs", help="folder of <variant>/model.pt (make bench)")
    p.add_argument("--out", default="reports/bench_hw.json")
    p.add_argument("--fps", type=float, default=20000.0)
    p.add_argument("--variants", default=",".join(VARIANTS), help="digits variants ('' for none)")
    p.add_argument("--resnet20", default="", help="also ResNet-20 variants (random weights), e.g. "
                                                  "baseline,insta,latency_optimized, folded for --resnet20-fps")
    p.add_argument("--resnet20-fps", type=float, default=5000.0)
    p.add_argument("-n", type=int, default=20, help="random images per ResNet-20 variant")
    p.add_argument("--merge-into", default=None,
                   help="also store the report as 'hardware' in this JSON (make bench: reports/bench.json)")
    a = p.parse_args(argv)
    runs, out = Path(a.runs), Path(a.out)
    report = {"fps": a.fps, "variants": {}, "resnet20": {}}
    for v in [v for v in a.resnet20.split(",") if v]:
        report["resnet20"][v] = resnet20(v, out.parent / "bench-hw" / f"resnet20-{v}", a.resnet20_fps, a.n)
    for v in [v for v in a.variants.split(",") if v]:
        if not (runs / v / "model.pt").is_file():
            print(f"bench-hw: error: {runs / v / 'model.pt'} missing (run make bench first)", file=sys.stderr)
            return 2
        report["variants"][v] = bench_variant(runs / v, out.parent / "bench-hw" / v, a.fps)
    atomic_write_text(out, json.dumps(report, indent=1))
    if a.merge_into:
        merge_into(Path(a.merge_into), report)
    md = markdown(report)
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
