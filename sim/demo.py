"""The one-page summary of ``make demo``: float model, integer reference and RTL side by side.

``python -m instabnn.sim.demo runs/demo --out reports/demo.json`` reads what the flow wrote into the run directory
(training ``result.json``, lowering ``lowered.json``, compiler ``rtl/accelerator.json``, co-simulation
``cosim.json``) and writes ``reports/demo.json`` with ``accuracy_float``, ``accuracy_reference``, ``accuracy_rtl``,
``mismatches``, ``cycles_per_frame`` (measured in co-simulation), ``fps_at_100mhz``, the latency and the resource
estimate, and prints the same as a table. A missing input is an error naming the file and the step that writes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

STEPS = {"result.json": "training (instabnn.model.train)", "lowered.json": "lowering (instabnn.hw.lower)",
         "rtl/accelerator.json": "the compiler (instabnn.hw.compile)", "cosim.json": "co-simulation (instabnn.sim.cosim)"}


def _read(run: Path, name: str) -> dict:
    path = run / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; it is written by {STEPS[name]}")
    return json.loads(path.read_text())


def summary(run: str | Path) -> dict:
    run = Path(run)
    train, lowered = _read(run, "result.json"), _read(run, "lowered.json")
    acc, cosim = _read(run, "rtl/accelerator.json"), _read(run, "cosim.json")
    agreement = lowered["agreement"]
    cycles = cosim["cycles_per_frame"]
    return {
        "run": str(run),
        "variant": train["config"]["variant"],
        "test_images": cosim["n"],
        "accuracy_float": agreement["accuracy_float"],
        "accuracy_float_training": train["test_acc"],
        "accuracy_reference": agreement["accuracy_reference"],
        "accuracy_rtl": cosim["accuracy_rtl"],
        "top1_agreement_float_reference": agreement["top1_agreement"],
        "mismatches": cosim["mismatches"],
        "cycles_per_frame": cycles,
        "cycles_per_frame_analytic": acc["cycles_per_frame_estimate"],
        "fps_at_100mhz": 100e6 / cycles,
        "latency_cycles": cosim["latency_cycles"],
        "latency_us_at_100mhz": cosim["latency_cycles"] / 100.0,
        "resources_estimate": acc["resources_estimate"],
        "sim_images_per_s": cosim["sim_images_per_s"],
        "model_sha256": acc["model_sha256"],
    }


def table(s: dict) -> str:
    r = s["resources_estimate"]
    rows = [("variant", s["variant"]),
            ("accuracy float / reference / RTL",
             f"{100 * s['accuracy_float']:.2f}% / {100 * s['accuracy_reference']:.2f}% / {100 * s['accuracy_rtl']:.2f}% "
             f"({s['test_images']} test images)"),
            ("RTL vs reference", f"{s['mismatches']} mismatching images (integer logits compared exactly)"),
            ("cycles per frame", f"{s['cycles_per_frame']:.0f} measured, {s['cycles_per_frame_analytic']} analytic"),
            ("frames per second at 100 MHz", f"{s['fps_at_100mhz']:.0f}"),
            ("latency", f"{s['latency_cycles']} cycles = {s['latency_us_at_100mhz']:.1f} us at 100 MHz"),
            ("resources (estimate)", f"{r['lut']} LUT, {r['bram36']:g} BRAM36, {r['dsp']} DSP48E1"),
            ("simulation speed", f"{s['sim_images_per_s']:.1f} images/s")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv=None) -> int:
    from instabnn.outputs import atomic_write_text

    p = argparse.ArgumentParser(prog="instabnn-demo-summary", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="the run directory of make demo")
    p.add_argument("--out", default="reports/demo.json")
    a = p.parse_args(argv)
    try:
        s = summary(a.run)
    except FileNotFoundError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(s, indent=1))
    print(table(s))
    print(f"wrote {out}")
    return 0 if s["mismatches"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
