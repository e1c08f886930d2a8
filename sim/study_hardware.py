"""The hardware side of the study's models (``python -m instabnn.sim.study_hardware``, ``make study-hw``,
docs/study.md).

From a finished study run folder (``--runs``) it takes, at the highest severity there, the best seed of each network
(highest accuracy, mean over its test draws; the lowest seed on a tie) and puts that model through the flow of
``make demo``, in the model's own run folder: export (``model.onnx``), lowering (``lowered.onnx``, agreement on the
run's digits-iv test split), folding for ``fps`` frames/s at 100 MHz (``folding.json``), compilation (``rtl/``),
co-simulation of the whole digits-iv test split of that run (perturbation draw 0: the severity, image size, noise
and perturbation seed are those the model was trained with, read from its lowered graph) (``cosim.json``), and the
summary of ``make demo`` (:func:`instabnn.sim.demo.summary`, ``hardware.json``). The models run on the study's
engine (:mod:`instabnn.model.engine`); a model whose ``hardware.json`` holds the same settings and checkpoint is not
run again. The table is added to ``<out>/study.json`` (key ``hardware``) and ``study.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HARDWARE_VARIANTS = ("baseline", "insta")
HARDWARE_FILE = "hardware.json"
PROG = "instabnn-study-hw"


class HardwareError(RuntimeError):
    """A study folder or report that the hardware table cannot be made from; the message names it."""


@dataclass(frozen=True)
class HardwareTask:
    """One study model through the hardware flow (executed on a worker)."""

    variant: str
    severity: float
    seed: int
    run: str
    checkpoint_sha256: str
    fps: float = 5000.0
    harness: str = "verilator"

    @property
    def key(self) -> str:
        return f"hardware-severity{self.severity:g}-seed{self.seed}-{self.variant}"  # "hardware-" + the record's


def study_records(runs: Path) -> list[dict]:
    """Every finished run's record under a study run folder (``severity<S>/seed<k>/<network>/study_run.json``)."""
    records = []
    for path in sorted(runs.glob("severity*/seed*/*/study_run.json")):
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise HardwareError(f"{path}: not a study record ({e})") from None
        records.append({**record, "path": str(path.parent)})
    return records


def best_models(runs: Path, variants=HARDWARE_VARIANTS) -> list[dict]:
    """Per network, the best seed's record at the highest severity of the folder (ties: the lowest seed)."""
    records = study_records(runs)
    if not records:
        raise HardwareError(f"--runs {runs}: no finished study runs (severity*/seed*/<network>/study_run.json)")
    severity = max(r["task"]["severity"] for r in records)
    chosen = []
    for variant in variants:
        candidates = [r for r in records if r["task"]["severity"] == severity and r["task"]["variant"] == variant]
        if not candidates:
            raise HardwareError(f"--runs {runs}: no finished {variant} run at severity {severity:g}")
        chosen.append(max(candidates, key=lambda r: (r["accuracy"], -r["task"]["seed"])))
    return chosen


def run_hardware(task: HardwareTask, attempt: int = 0) -> dict:
    """Export, lower, fold, compile, co-simulate and summarise one model in its run folder (as ``make demo``)."""
    from instabnn.hw.compile import compiler as hw_compile
    from instabnn.hw import lower
    from instabnn.hw.compile import folding
    from instabnn.model.export import export_checkpoint
    from instabnn.outputs import atomic_write_text
    from instabnn.sim import cosim, demo

    t0 = time.time()
    run = Path(task.run)
    export_checkpoint(run / "model.pt", run / "model.onnx")
    steps = (("lowering", lower.main, [str(run / "model.onnx"), "--out", str(run), "--no-progress"]),
             ("folding", folding.main, [str(run / "lowered.onnx"), "--target-fps", f"{task.fps:g}"]),
             ("compilation", hw_compile.main, [str(run / "lowered.onnx"), "--folding", str(run / "folding.json"),
                                               "--out", str(run / "rtl")]))
    for name, main, argv in steps:
        if main(argv) != 0:
            raise HardwareError(f"{run}: {name} failed (its error is printed above)")
    report = cosim.cosim(run / "rtl", None, None, harness=task.harness, work=run / "cosim")
    atomic_write_text(run / "cosim.json", json.dumps(report, indent=1))
    summary = {"task": asdict(task), "key": task.key, **demo.summary(run), "data": report["data"],
               "harness": task.harness, "seconds": time.time() - t0}
    atomic_write_text(run / HARDWARE_FILE, json.dumps(summary, indent=1))
    return summary


def hardware_table(runs: Path, out: Path, variants=HARDWARE_VARIANTS, fps: float = 5000.0,
                   harness: str = "verilator", scheduler: str | None = None, workers: int = 2, retries: int = 1,
                   log=print) -> dict:
    """Add the hardware table of the study in ``runs`` to ``out``/study.{json,md} (the study's report of that
    folder, written by ``make study``); returns the table."""
    from instabnn.model.analyses import write_json
    from instabnn.model.checkpoint import atomic_write_text, file_sha256
    from instabnn.model.engine import EngineError, run_tasks
    from instabnn.model.study import markdown

    study_json = out / "study.json"
    if not study_json.is_file():
        raise HardwareError(f"{study_json}: no study report (run the study first: the table is added to it)")
    report = json.loads(study_json.read_text())
    t0 = time.time()
    models = best_models(runs, variants)
    tasks, rows, failures = [], {}, {}
    for r in models:
        t = r["task"]
        checkpoint = Path(r["path"]) / "model.pt"
        if not checkpoint.is_file():
            raise HardwareError(f"{checkpoint}: missing (the study record {r['path']}/study_run.json has no model)")
        task = HardwareTask(t["variant"], t["severity"], t["seed"], r["path"], file_sha256(checkpoint), fps, harness)
        done = Path(r["path"]) / HARDWARE_FILE
        previous = json.loads(done.read_text()) if done.is_file() else None
        if previous is not None and previous.get("task") == asdict(task):
            rows[task.key] = previous
        else:
            tasks.append(task)
    log(f"study hardware: {len(models)} models, {len(rows)} already done, {len(tasks)} to run", flush=True)

    def on_result(task, summary):
        rows[task.key] = summary
        log(f"{task.key}: RTL {100 * summary['accuracy_rtl']:.2f}%, {summary['mismatches']} mismatches, "
            f"{summary['cycles_per_frame']:.0f} cycles/frame ({summary['seconds']:.0f} s)", flush=True)

    try:
        run_tasks(run_hardware, tasks, on_result, lambda task, message: failures.__setitem__(task.key, message),
                  scheduler, workers, retries, log)
    except EngineError as e:
        raise HardwareError(str(e)) from None
    study = {f"hardware-{r['key']}": r for r in models}
    table = {"runs": str(runs), "severity": models[0]["task"]["severity"], "fps_target": fps, "harness": harness,
             "selection": "per network, the seed with the highest study accuracy (mean over its test draws) at the "
                          "highest severity in the run folder",
             "models": [{**rows[key], "study_accuracy": study[key]["accuracy"],
                         "study_accuracy_draw0": study[key]["accuracy_per_draw"][0]}
                        for key in study if key in rows],
             "failures": failures, "wall_seconds": time.time() - t0}
    report["hardware"] = table
    write_json(study_json, report)
    atomic_write_text(out / "study.md", markdown(report) + "\n".join(hardware_markdown(table)) + "\n")
    return table


def hardware_markdown(table: dict) -> list[str]:
    """The hardware section of study.md."""
    lines = ["", f"## Hardware: the best seed of each network at severity {table['severity']:g}", "",
             f"Flow of `make demo` (export, lowering, folding for {table['fps_target']:g} frames/s at 100 MHz, "
             f"compilation, co-simulation with the {table['harness']} harness of the whole digits-iv test split of "
             f"the model's run, draw 0). {table['selection'].capitalize()}. Accuracy: float (QONNX graph), "
             "integer reference, RTL; resources: the compiler's analytic estimate (xc7z020), not synthesis.", "",
             "| network | seed | study accuracy: mean of draws, draw 0 | float / reference / RTL (draw 0) | "
             "mismatches | cycles/frame (measured, analytic) | latency | LUT | BRAM36 | DSP |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in table["models"]:
        t, r = m["task"], m["resources_estimate"]
        lines.append(f"| {t['variant']} | {t['seed']} | {100 * m['study_accuracy']:.2f} %, "
                     f"{100 * m['study_accuracy_draw0']:.2f} % | "
                     f"{100 * m['accuracy_float']:.2f} / {100 * m['accuracy_reference']:.2f} / "
                     f"{100 * m['accuracy_rtl']:.2f} % ({m['test_images']} images) | {m['mismatches']} | "
                     f"{m['cycles_per_frame']:.0f}, {m['cycles_per_frame_analytic']} | {m['latency_cycles']} cycles "
                     f"= {m['latency_us_at_100mhz']:.1f} us | {r['lut']} | {r['bram36']:g} | {r['dsp']} |")
    if table["failures"]:
        lines += ["", "Failed (not in the table):"] + [f"- {k}: {m}" for k, m in sorted(table["failures"].items())]
    lines += ["", f"Run folder `{table['runs']}`: `python -m instabnn.sim.study_hardware --runs {table['runs']}` "
              f"({table['wall_seconds']:.0f} s; a model with its hardware.json is not run again).", ""]
    return lines


def main(argv=None) -> int:
    from instabnn.model.arguments import Parser
    from instabnn.model.study import STUDY_VARIANTS

    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", help="the study's run folder (default runs/study-reduced, with --full runs/study-full)")
    p.add_argument("--full", action="store_true", help="the full design's run folder by default")
    p.add_argument("--out", default="reports", help="folder of the study's study.json / study.md (default reports)")
    p.add_argument("--variants", help=f"networks (comma-separated; default {','.join(HARDWARE_VARIANTS)})")
    p.add_argument("--fps", type=float, default=5000.0, help="the folding's target frames/s at 100 MHz (default 5000)")
    p.add_argument("--scheduler", help="address of a Dask scheduler (default: a LocalCluster of --workers)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes (0: run in this process)")
    p.add_argument("--retries", type=int, default=1, help="retries of a failed model")
    args = p.parse_args(argv)
    if not (math.isfinite(args.fps) and args.fps > 0):
        print(f"{PROG}: error: --fps {args.fps}: must be a finite number > 0", file=sys.stderr)
        return 2
    if args.workers < 0 or args.retries < 0:
        print(f"{PROG}: error: --workers {args.workers} / --retries {args.retries} must be >= 0", file=sys.stderr)
        return 2
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants else \
        HARDWARE_VARIANTS
    unknown = [v for v in variants if v not in STUDY_VARIANTS]
    if unknown or not variants:
        print(f"{PROG}: error: --variants: unknown {', '.join(unknown) or '(none given)'}", file=sys.stderr)
        return 2
    runs = Path(args.runs or f"runs/study-{'full' if args.full else 'reduced'}")
    try:
        table = hardware_table(runs, Path(args.out), variants, args.fps, scheduler=args.scheduler,
                               workers=args.workers, retries=args.retries)
    except HardwareError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(hardware_markdown(table)))
    print(f"added to {Path(args.out) / 'study.md'} and study.json")
    return 1 if table["failures"] or any(m["mismatches"] for m in table["models"]) else 0


if __name__ == "__main__":
    sys.exit(main())
