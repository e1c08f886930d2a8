"""Does INSTA help under instance variation? A paired multi-seed study on digits-iv (``make study``, docs/study.md).

``python -m instabnn.model.study [--full] [--scheduler ADDRESS] [--workers 2]``

Every (severity, seed) trains the five networks below on the same digits-iv split, perturbations and seed, scores
each on ``draws`` independent perturbation draws of the test split, measures the Sec. E statistic against the
perturbation parameters and the Sec. H inconsistent-sign ratio (``model/analyses.py``), and writes one record per
run. The report pairs each network with the baseline of the same seed: per severity the mean accuracy, the paired
difference with a bootstrap 95 % interval (``scipy.stats.bootstrap``, percentile) and a Wilcoxon signed-rank p-value
(``scipy.stats.wilcoxon``, two-sided) over seeds, and the verdict against the design's threshold.

    baseline           RSign / RPReLU
    insta_th           INSTA-Th / RPReLU (INSTA-Th alone)
    insta              INSTA-Th / INSTA-PReLU
    insta_plus         INSTA-Th+ / INSTA-PReLU+
    latency_optimized  INSTA from the second stage on, statistics reuse

Runs execute on Dask workers: a ``LocalCluster`` of ``--workers`` processes (one thread each) by default, or the
cluster at ``--scheduler ADDRESS`` (workers need this environment and the run folder on a shared file system);
``--workers 0`` runs them one after another in this process. A failed run is reported and retried (``--retries``);
a run whose record exists with the same settings is not repeated, and an interrupted training resumes from its
last epoch. Output: ``<out>/study.json``, ``study.md`` and ``study_*.png``; runs under ``--runs``.

After the study, ``make study-hw`` (:mod:`instabnn.sim.study_hardware`) puts the best seed of baseline and insta at
the highest severity of ``--runs`` through the hardware flow and adds a table to the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

PROG = "instabnn-study"

STUDY_VARIANTS = {
    "baseline": {"variant": "baseline"},
    "insta_th": {"variant": "insta", "activation": "rprelu"},
    "insta": {"variant": "insta"},
    "insta_plus": {"variant": "insta_plus"},
    "latency_optimized": {"variant": "latency_optimized"},
}
PERTURBATION_STATISTICS = ("brightness", "log2_contrast", "log2_gamma", "ramp")


class StudyError(RuntimeError):
    """A study that cannot run as asked; the message names the option."""


@dataclass(frozen=True)
class Design:
    """What the study trains and how it decides (docs/study.md)."""

    severities: tuple[float, ...]
    seeds: tuple[int, ...]
    variants: tuple[str, ...] = tuple(STUDY_VARIANTS)
    epochs: int = 10
    draws: int = 3
    image_size: int = 8
    noise: float = 0.0
    limit: int | None = None  # images per split (quick tests; at least one batch of 64); None: all
    threshold_points: float = 1.0  # "INSTA helps": mean paired gain >= this and the 95 % interval above 0
    bootstrap_resamples: int = 9999

    def check(self) -> None:
        from instabnn.model.data import DataError, check_digits_iv_options

        unknown = [v for v in self.variants if v not in STUDY_VARIANTS]
        if unknown:
            raise StudyError(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(STUDY_VARIANTS)}")
        if "baseline" not in self.variants:
            raise StudyError("--variants: the comparison needs 'baseline'")
        if not self.seeds or not self.severities:
            raise StudyError("--seeds / --severities: need at least one value each")
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.severities)) != len(self.severities):
            raise StudyError("--seeds / --severities: values must be distinct")
        if self.epochs < 1 or self.draws < 1:
            raise StudyError(f"--epochs {self.epochs} / --draws {self.draws}: must be >= 1")
        try:
            for s in self.severities:
                for seed in self.seeds:
                    check_digits_iv_options(s, self.image_size, self.noise, seed)
        except DataError as e:
            raise StudyError(str(e)) from None


REDUCED = Design(severities=(0.0, 2.0), seeds=tuple(range(10)), epochs=10, draws=3, image_size=8)
FULL = Design(severities=(0.0, 0.5, 1.0, 2.0, 3.0), seeds=tuple(range(10)), epochs=30, draws=5, image_size=16)


@dataclass(frozen=True)
class RunTask:
    """One training run of the study and its evaluation (executed on a worker)."""

    variant: str
    severity: float
    seed: int
    epochs: int
    draws: int
    image_size: int
    noise: float
    limit: int | None
    out: str
    fail_first: int = 0  # test hook: the first N attempts raise (a simulated worker failure)

    @property
    def key(self) -> str:
        return f"severity{self.severity:g}-seed{self.seed}-{self.variant}"

    def data_options(self) -> dict:
        options = {"severity": float(self.severity), "image_size": self.image_size, "noise": float(self.noise),
                   "seed": self.seed}
        return {**options, "limit": self.limit} if self.limit is not None else options


def tasks_for(design: Design, runs: Path) -> list[RunTask]:
    """Seed by seed (every severity and network of a seed before the next), so that a study stopped early still
    holds complete pairs at every severity."""
    return [RunTask(v, float(s), seed, design.epochs, design.draws, design.image_size, design.noise, design.limit,
                    str(runs / f"severity{s:g}" / f"seed{seed}" / v))
            for seed in design.seeds for s in design.severities for v in design.variants]


# ----------------------------------------------------------------------------------------------- one run (worker)


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def statistic_vs_perturbation(model, x: np.ndarray, params: dict[str, np.ndarray]) -> dict:
    """Sec. E's s of every INSTA module against each perturbation parameter: per module, the median and the maximum
    over channels of |Pearson r| (None where a parameter is constant, e.g. at severity 0)."""
    import torch
    from torch.utils.data import TensorDataset

    from instabnn.model.analyses import collect_statistics, insta_sequence, pearson

    seq = insta_sequence(model)
    if not seq:
        return {}
    data = TensorDataset(torch.from_numpy(x), torch.zeros(len(x), dtype=torch.long))
    stats = collect_statistics(model, data, None, progress=False)
    out = {}
    for e in seq:
        s = stats[e["module"]]
        row = {"kind": e["kind"], "block": e["block"]}
        for name in PERTURBATION_STATISTICS:
            r = np.abs([pearson(s[:, c], params[name]) for c in range(s.shape[1])])
            finite = r[np.isfinite(r)]
            row[name] = {"median_abs_r": _finite(np.median(finite)) if finite.size else None,
                         "max_abs_r": _finite(finite.max()) if finite.size else None}
        out[e["module"]] = row
    return out


def run_one(task: RunTask, attempt: int = 0) -> dict:
    """Train (or resume) one network, then score it on every test draw with the Sec. E and H measurements."""
    import torch
    from torch.utils.data import TensorDataset

    from instabnn.model.analyses import collect_inconsistent_sign, load_model
    from instabnn.model.data import digits_iv_arrays
    from instabnn.model.train import PRESETS, RunSpec, train_run

    if attempt < task.fail_first:
        raise RuntimeError(f"run {task.key}: simulated failure (attempt {attempt + 1})")
    torch.set_num_threads(1)
    t0 = time.time()
    recipe = {**asdict(PRESETS["digits"]), "epochs": task.epochs}
    spec = RunSpec(data="digits-iv", data_options=task.data_options(), net={"arch": "digits",
                   **STUDY_VARIANTS[task.variant]}, recipe=recipe, seed=task.seed, label=f"study {task.key}")
    out = Path(task.out)
    trained = train_run(spec, out, device_name="cpu", resume=True, progress=False)
    if not trained.get("finished"):
        raise RuntimeError(f"run {task.key}: training did not finish ({trained.get('epochs_done')} epochs)")
    lm = load_model(out / "model.pt", label=task.variant)
    options = {k: v for k, v in task.data_options().items()}
    accuracies, sec_e, sec_h = [], None, None
    for draw in range(task.draws):
        _, _, x, y, _, params = digits_iv_arrays(**options, test_draw=draw)
        with torch.no_grad():
            pred = lm.model(torch.from_numpy(x)).argmax(1).numpy()
        accuracies.append(float((pred == y).mean()))
        if draw == 0:
            sec_e = statistic_vs_perturbation(lm.model, x, params)
            data = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
            rows = collect_inconsistent_sign(lm, data, None, progress=False)
            sec_h = {"overall_ratio": sum(r["mismatches"] for r in rows) / sum(r["outputs"] for r in rows),
                     "layers": {r["layer"]: r["ratio"] for r in rows}}
    return {"task": asdict(task), "key": task.key, "accuracy_per_draw": accuracies,
            "accuracy": float(np.mean(accuracies)), "test_acc_during_training": trained["test_acc"],
            "sec_e": sec_e, "sec_h": sec_h, "seconds": time.time() - t0, "attempt": attempt}


# ----------------------------------------------------------------------------------------------- engine


def execute(tasks: list[RunTask], on_result, on_failure, scheduler: str | None = None, workers: int = 2,
            retries: int = 1, log=print, processes: bool = True) -> None:
    """Run ``tasks`` with :func:`run_one` on the engine of :mod:`instabnn.model.engine` (Dask workers, or inline
    with ``workers=0``): ``on_result(task, record)`` as each finishes, ``on_failure(task, error)`` once a task has
    failed ``retries + 1`` times."""
    from instabnn.model.engine import EngineError, run_tasks

    try:
        run_tasks(run_one, tasks, on_result, on_failure, scheduler, workers, retries, log, processes)
    except EngineError as e:
        raise StudyError(str(e)) from None


# ----------------------------------------------------------------------------------------------- statistics


def bootstrap_interval(values, resamples: int = 9999, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap 95 % interval of the mean (``scipy.stats.bootstrap``); None for fewer than 2 values."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return None
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    res = stats.bootstrap((values,), np.mean, confidence_level=0.95, n_resamples=resamples, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def wilcoxon_p(differences) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon``, exact for small samples without ties);
    1.0 when every difference is 0, None for fewer than 2 pairs."""
    from scipy import stats

    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return None
    if np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d, alternative="two-sided").pvalue)


def paired_comparison(treated: dict[int, float], baseline: dict[int, float], threshold_points: float,
                      resamples: int = 9999) -> dict:
    """Per-seed differences treated - baseline (accuracy in percentage points) over the seeds both have."""
    seeds = sorted(set(treated) & set(baseline))
    d = np.array([100.0 * (treated[s] - baseline[s]) for s in seeds])
    interval = bootstrap_interval(d, resamples) if seeds else None
    mean = float(d.mean()) if seeds else None
    verdict = "no runs"
    if interval is not None:
        if mean >= threshold_points and interval[0] > 0:
            verdict = "helps"
        elif mean <= -threshold_points and interval[1] < 0:
            verdict = "hurts"
        else:
            verdict = "no clear effect"
    elif seeds:
        verdict = "too few seeds"
    return {"seeds": seeds, "differences_points": d.tolist(), "mean_points": mean,
            "ci95_points": list(interval) if interval else None, "wilcoxon_p": wilcoxon_p(d), "verdict": verdict}


def aggregate(design: Design, records: dict[str, dict], failures: dict[str, str]) -> dict:
    by = {(r["task"]["variant"], r["task"]["severity"], r["task"]["seed"]): r for r in records.values()}
    per_severity = []
    for sev in design.severities:
        row = {"severity": sev, "variants": {}, "vs_baseline": {}, "sec_e": {}, "sec_h": {}}
        acc = {v: {seed: by[(v, sev, seed)]["accuracy"] for seed in design.seeds if (v, sev, seed) in by}
               for v in design.variants}
        for v in design.variants:
            values = [100.0 * a for a in acc[v].values()]
            ci = bootstrap_interval(values, design.bootstrap_resamples)
            row["variants"][v] = {"n_seeds": len(values), "mean_accuracy": float(np.mean(values)) if values else None,
                                  "std_accuracy": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                                  "ci95": list(ci) if ci else None,
                                  "per_seed": {str(k): 100.0 * a for k, a in acc[v].items()}}
            if v != "baseline":
                row["vs_baseline"][v] = paired_comparison(acc[v], acc["baseline"], design.threshold_points,
                                                          design.bootstrap_resamples)
            runs = [by[(v, sev, seed)] for seed in design.seeds if (v, sev, seed) in by]
            ratios = [r["sec_h"]["overall_ratio"] for r in runs if r.get("sec_h")]
            row["sec_h"][v] = float(np.mean(ratios)) if ratios else None
            first = [next(iter(r["sec_e"].values())) for r in runs if r.get("sec_e")]
            if first:
                row["sec_e"][v] = {"module": f"{first[0]['block']} {first[0]['kind']}", **{
                    name: _mean_or_none([f[name]["median_abs_r"] for f in first]) for name in PERTURBATION_STATISTICS}}
        per_severity.append(row)
    return {"per_severity": per_severity, "n_records": len(records), "failures": failures}


def _mean_or_none(values):
    finite = [v for v in values if v is not None]
    return float(np.mean(finite)) if finite else None


# ----------------------------------------------------------------------------------------------- report


def _fmt(v, spec=".2f", none="-"):
    return none if v is None else format(v, spec)


def markdown(report: dict) -> str:
    d = report["design"]
    lines = [f"# INSTA under instance variation: paired study on digits-iv ({report['design_name']} design)", "",
             f"Command: `{report['command']}`  ", f"Wall time of this invocation: {report['wall_seconds']:.0f} s; "
             f"runs trained now: {report['runs_this_invocation']}, reused: {report['runs_reused']}; summed run time "
             f"{report['run_seconds_total']:.0f} s on {report['engine']}.  ",
             f"Design: severities {d['severities']}, seeds {d['seeds']}, {d['epochs']} epochs (digits preset), "
             f"{d['draws']} test draws, {d['image_size']}x{d['image_size']} images, noise {d['noise']}; "
             f"\"helps\" = mean paired gain >= {d['threshold_points']} point and the bootstrap 95 % interval above 0.",
             "", "## Accuracy (%, mean over seeds of the mean over test draws; 95 % bootstrap interval)", "",
             "| severity | " + " | ".join(d["variants"]) + " |", "|---" * (len(d["variants"]) + 1) + "|"]
    for row in report["per_severity"]:
        cells = []
        for v in d["variants"]:
            a = row["variants"][v]
            ci = a["ci95"]
            cells.append(f"{_fmt(a['mean_accuracy'])}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
                         + f" (n={a['n_seeds']})")
        lines.append(f"| {row['severity']:g} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired difference against the baseline (points; same seed, split and perturbations)", "",
              "| severity | network | mean | 95 % bootstrap interval | Wilcoxon p | seeds | verdict |",
              "|---|---|---|---|---|---|---|"]
    for row in report["per_severity"]:
        for v, c in row["vs_baseline"].items():
            ci = c["ci95_points"]
            lines.append(f"| {row['severity']:g} | {v} - baseline | {_fmt(c['mean_points'], '+.2f')} | "
                         f"{f'[{ci[0]:+.2f}, {ci[1]:+.2f}]' if ci else '-'} | {_fmt(c['wilcoxon_p'], '.3f')} | "
                         f"{len(c['seeds'])} | {c['verdict']} |")
    lines += ["", "## Sec. E: does s track the perturbation?", "",
              "Median over channels of |Pearson r| between the first INSTA module's s and each per-image perturbation "
              "parameter on test draw 0, mean over seeds (- : the parameter is constant, severity 0).", "",
              "| severity | network | module | " + " | ".join(PERTURBATION_STATISTICS) + " |",
              "|---|---|---|" + "---|" * len(PERTURBATION_STATISTICS)]
    for row in report["per_severity"]:
        for v, e in row["sec_e"].items():
            lines.append(f"| {row['severity']:g} | {v} | {e['module']} | "
                         + " | ".join(_fmt(e[n], ".3f") for n in PERTURBATION_STATISTICS) + " |")
    lines += ["", "## Sec. H: inconsistent-sign ratio (all binary convolutions, test draw 0, mean over seeds)", "",
              "| severity | " + " | ".join(d["variants"]) + " |", "|---" * (len(d["variants"]) + 1) + "|"]
    for row in report["per_severity"]:
        lines.append(f"| {row['severity']:g} | " + " | ".join(_fmt(row["sec_h"][v], ".4f") for v in d["variants"])
                     + " |")
    if report["failures"]:
        lines += ["", "## Failed runs", ""] + [f"- {k}: {m}" for k, m in sorted(report["failures"].items())]
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in report["plots"]), ""]
    return "\n".join(lines)


def _none_to_nan(values) -> list[float]:
    return [np.nan if v is None else v for v in values]


def _band_plot(plt, severities, series: dict[str, tuple[list, list]], ylabel: str, title: str, path: Path,
               hlines=()) -> None:
    """One line per series (means against severity) with its 95 % interval as a band."""
    from instabnn.model.analyses import write_png

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, (means, intervals) in series.items():
        ax.plot(severities, _none_to_nan(means), marker="o", label=label)
        ax.fill_between(severities, [c[0] if c else np.nan for c in intervals],
                        [c[1] if c else np.nan for c in intervals], alpha=0.15)
    for y in hlines:
        ax.axhline(y, color="grey", lw=0.8, ls="--" if y else "-")
    ax.set_xlabel("severity")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_png(fig, path)


def plot(report: dict, out: Path) -> list[str]:
    from instabnn.model.analyses import _pyplot, write_png

    plt = _pyplot()
    d, rows = report["design"], report["per_severity"]
    sev = [r["severity"] for r in rows]
    _band_plot(plt, sev, {v: ([r["variants"][v]["mean_accuracy"] for r in rows],
                              [r["variants"][v]["ci95"] for r in rows]) for v in d["variants"]},
               "test accuracy (%)", "digits-iv: accuracy vs severity (95 % bootstrap bands over seeds)",
               out / "study_accuracy.png")
    _band_plot(plt, sev, {v: ([r["vs_baseline"][v]["mean_points"] for r in rows],
                              [r["vs_baseline"][v]["ci95_points"] for r in rows])
                          for v in d["variants"] if v != "baseline"},
               "paired difference vs baseline (points)", "network - baseline, same seed (95 % bootstrap bands)",
               out / "study_difference.png", hlines=(d["threshold_points"], 0.0, -d["threshold_points"]))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    if any("insta" in r["sec_e"] for r in rows):
        for name, ls in zip(PERTURBATION_STATISTICS, ("-", "--", ":", "-.")):
            ax1.plot(sev, _none_to_nan(r["sec_e"].get("insta", {}).get(name) for r in rows), ls=ls, marker="o",
                     label=name)
        ax1.legend(fontsize=8)
    for v in d["variants"]:
        ax2.plot(sev, _none_to_nan(r["sec_h"][v] for r in rows), marker="o", label=v)
    ax1.set_xlabel("severity")
    ax1.set_ylabel("median |r| over channels")
    ax1.set_title("Sec. E: s of insta's first INSTA-Th vs the perturbation", fontsize=9)
    ax2.set_xlabel("severity")
    ax2.set_ylabel("inconsistent-sign ratio")
    ax2.set_title("Sec. H: all binary convolutions, test draw 0", fontsize=9)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    write_png(fig, out / "study_statistics.png")
    return ["study_accuracy.png", "study_difference.png", "study_statistics.png"]


# ----------------------------------------------------------------------------------------------- driver


def run_study(design: Design, out: Path, runs: Path, scheduler: str | None = None, workers: int = 2,
              retries: int = 1, design_name: str = "custom", command: str = "", log=print) -> dict:
    from instabnn.model.analyses import write_json
    from instabnn.model.checkpoint import atomic_write_text, git_commit

    design.check()
    t0 = time.time()
    tasks = tasks_for(design, runs)
    records, failures = {}, {}
    todo = []
    for task in tasks:
        path = Path(task.out) / "study_run.json"
        record = json.loads(path.read_text()) if path.is_file() else None
        if record is not None and record.get("task") == asdict(task):
            records[task.key] = record
        else:
            todo.append(task)
    reused = len(records)
    log(f"study ({design_name}): {len(tasks)} runs, {reused} already done, {len(todo)} to run on "
        f"{scheduler or (f'{workers} local worker process(es)' if workers else 'this process')}", flush=True)

    def on_result(task, record):
        write_json(Path(task.out) / "study_run.json", record)
        records[task.key] = record
        log(f"[{len(records)}/{len(tasks)}] {task.key}: accuracy {100 * record['accuracy']:.2f}% "
            f"(draws {', '.join(f'{100 * a:.1f}' for a in record['accuracy_per_draw'])}) "
            f"in {record['seconds']:.0f} s", flush=True)

    def on_failure(task, message):
        failures[task.key] = message

    if todo:
        execute(todo, on_result, on_failure, scheduler, workers, retries, log)
    report = {"design_name": design_name, "design": asdict(design), "command": command,
              "engine": scheduler or (f"LocalCluster({workers} processes)" if workers else "inline"),
              "wall_seconds": time.time() - t0, "runs_this_invocation": len(records) - reused,
              "runs_reused": reused, "run_seconds_total": sum(r["seconds"] for r in records.values()),
              **aggregate(design, records, failures), "commit": git_commit()}
    out.mkdir(parents=True, exist_ok=True)
    report["plots"] = plot(report, out)
    write_json(out / "study.json", report)
    atomic_write_text(out / "study.md", markdown(report))
    return report


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="the full design (docs/study.md) instead of the reduced one")
    p.add_argument("--severities", type=_floats, help="override the design's severities, e.g. 0,1,2")
    p.add_argument("--seeds", type=_ints, help="override the design's seeds, e.g. 0,1,2")
    p.add_argument("--variants", help=f"override the networks (comma-separated; from {', '.join(STUDY_VARIANTS)})")
    p.add_argument("--epochs", type=int)
    p.add_argument("--draws", type=int, help="perturbation draws of the test split per model")
    p.add_argument("--image-size", type=int)
    p.add_argument("--noise", type=float)
    p.add_argument("--limit", type=int, help="only the first N images of each split (quick checks)")
    p.add_argument("--out", default="reports", help="folder of study.json / study.md / PNGs (default reports)")
    p.add_argument("--runs", help="run folder (default runs/study-reduced or runs/study-full)")
    p.add_argument("--scheduler", help="address of a Dask scheduler (default: a LocalCluster of --workers)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes (0: run in this process)")
    p.add_argument("--retries", type=int, default=1, help="retries of a failed run")
    args = p.parse_args(argv)
    design, name = (FULL, "full") if args.full else (REDUCED, "reduced")
    changes = {k: getattr(args, k) for k in ("severities", "seeds", "epochs", "draws", "image_size", "noise", "limit")
               if getattr(args, k) is not None}
    if args.variants is not None:
        changes["variants"] = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if changes:
        design, name = dataclasses.replace(design, **changes), f"{name}, modified"
    if args.workers < 0 or args.retries < 0:
        print(f"{PROG}: error: --workers {args.workers} / --retries {args.retries} must be >= 0", file=sys.stderr)
        return 2
    runs = Path(args.runs or f"runs/study-{'full' if args.full else 'reduced'}")
    command = " ".join([f"python -m instabnn.model.study", *(argv if argv is not None else sys.argv[1:])])
    try:
        report = run_study(design, Path(args.out), runs, args.scheduler, args.workers, args.retries, name, command)
    except StudyError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(f"study: {report['n_records']} runs in the report, {len(report['failures'])} failed; "
          f"{Path(args.out) / 'study.md'} ({report['wall_seconds']:.0f} s)")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
