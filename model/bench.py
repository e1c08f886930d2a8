"""Benchmark the digits networks: each variant trained with the same default recipe, budget and seed.

``python -m instabnn.model.bench --out reports/bench.json`` (``make bench``) writes the JSON and a Markdown table
beside it (``bench.md``): test accuracy, training time and parameter count per variant, with the command that
reproduces each row. The target of the foundation issue is checked here, not in a timed test: the digits INSTA-BNN
reaches >= 97 % test accuracy with the default command in under 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from instabnn.model.checkpoint import atomic_write_text, git_commit
from instabnn.model.train import PRESETS, RunSpec, train_run

VARIANTS = ("insta", "baseline", "insta_plus", "latency_optimized")
TARGET_ACC, TARGET_SECONDS = 0.97, 300.0


def run_bench(out: Path, variants=VARIANTS, seed: int = 0, epochs: int | None = None) -> dict:
    recipe = asdict(PRESETS["digits"])
    if epochs:
        recipe["epochs"] = epochs
    rows = []
    for variant in variants:
        run_dir = out.parent / "bench-runs" / variant
        spec = RunSpec(data="digits", net={"arch": "digits", "variant": variant}, recipe=dict(recipe), seed=seed,
                       label=f"digits {variant}")
        t0 = time.time()
        result = train_run(spec, run_dir, progress=False)
        seconds = time.time() - t0
        ckpt = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
        rows.append({"variant": variant, "test_acc": result["test_acc"], "train_seconds": round(seconds, 1),
                     "epochs": recipe["epochs"], "parameters": int(sum(v.numel() for k, v in ckpt["model"].items()
                                                                       if v.is_floating_point())),
                     "command": f"python -m instabnn.model.train --data digits --variant {variant} --seed {seed}"
                                + (f" --epochs {epochs}" if epochs else "")})
    insta = next((r for r in rows if r["variant"] == "insta"), None)
    report = {"benchmark": "digits variants, default recipe", "seed": seed, "recipe": recipe, "rows": rows,
              "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "platform": platform.platform()},
              "commit": git_commit()}
    if insta:
        report["target"] = {"test_acc_min": TARGET_ACC, "seconds_max": TARGET_SECONDS,
                            "met": insta["test_acc"] >= TARGET_ACC and insta["train_seconds"] <= TARGET_SECONDS}
    return report


def markdown(report: dict) -> str:
    lines = [f"# Digits benchmark (seed {report['seed']}, {report['recipe']['epochs']} epochs, commit "
             f"{report['commit'][:12]})", "", "| variant | test accuracy | training time | parameters | command |",
             "|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['variant']} | {100 * r['test_acc']:.2f}% | {r['train_seconds']:.0f} s | "
                     f"{r['parameters']} | `{r['command']}` |")
    if "target" in report:
        t = report["target"]
        lines += ["", f"Target (INSTA-BNN >= {100 * t['test_acc_min']:.0f}% in <= {t['seconds_max']:.0f} s): "
                      f"{'met' if t['met'] else 'NOT met'}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="instabnn-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports/bench.json")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="override the preset's epochs (a shorter smoke run)")
    args = p.parse_args(argv)
    out = Path(args.out)
    report = run_bench(out, [v for v in args.variants.split(",") if v], args.seed, args.epochs)
    atomic_write_text(out, json.dumps(report, indent=1))
    md = markdown(report)
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
