"""The paired study (model/study.py): its statistics against direct computations, the engine (inline and Dask
workers), failure reporting and retry, resumption, and the report."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from instabnn.model import study as S


def test_wilcoxon_p_equals_the_exact_sign_flip_distribution():
    """Two-sided exact p of the signed-rank statistic, enumerated over all 2^n sign assignments."""
    d = np.array([1.5, -0.4, 2.2, 0.9, 3.1, -1.7, 0.6])
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    w_plus = ranks[d > 0].sum()
    total = ranks.sum()
    extreme = min(w_plus, total - w_plus)
    sums = [ranks[np.array(signs, bool)].sum() for signs in itertools.product([0, 1], repeat=len(d))]
    exact = np.mean([min(s, total - s) <= extreme for s in sums])
    assert S.wilcoxon_p(d) == pytest.approx(exact, abs=1e-12)
    assert S.wilcoxon_p(np.zeros(5)) == 1.0 and S.wilcoxon_p([0.3]) is None


def test_bootstrap_interval_matches_a_direct_percentile_bootstrap():
    values = np.array([0.2, 1.4, -0.3, 2.5, 0.9, 1.1, 3.0, -0.8, 0.4, 1.9])
    rng = np.random.default_rng(123)
    means = values[rng.integers(0, len(values), size=(40000, len(values)))].mean(axis=1)
    direct = np.percentile(means, [2.5, 97.5])
    low, high = S.bootstrap_interval(values, resamples=40000)
    assert low == pytest.approx(direct[0], abs=0.05) and high == pytest.approx(direct[1], abs=0.05)
    assert low < values.mean() < high
    assert S.bootstrap_interval([1.5, 1.5, 1.5]) == (1.5, 1.5) and S.bootstrap_interval([2.0]) is None


@pytest.mark.parametrize("gains, verdict", [
    ([0.02, 0.03, 0.025, 0.035, 0.02, 0.03], "helps"),
    ([-0.02, -0.03, -0.025, -0.035, -0.02, -0.03], "hurts"),
    ([0.02, -0.03, 0.01, -0.01, 0.02, -0.02], "no clear effect"),
    ([0.005, 0.006, 0.004, 0.005, 0.007, 0.006], "no clear effect"),  # above 0 but under the 1-point threshold
])
def test_paired_comparison_verdicts(gains, verdict):
    base = {seed: 0.9 - 0.01 * seed for seed in range(len(gains))}
    treated = {seed: base[seed] + g for seed, g in enumerate(gains)}
    treated[99] = 1.0  # a seed without a baseline run is left out of the pairs
    c = S.paired_comparison(treated, base, threshold_points=1.0)
    assert c["seeds"] == list(range(len(gains)))
    assert c["mean_points"] == pytest.approx(100 * np.mean(gains))
    assert c["differences_points"] == pytest.approx([100 * g for g in gains])
    assert c["verdict"] == verdict


def _tiny(tmp_path, **changes) -> S.Design:
    base = dict(severities=(0.0, 2.0), seeds=(0, 1), variants=("baseline", "insta"), epochs=1, draws=2, limit=80,
                bootstrap_resamples=999)
    return S.Design(**{**base, **changes})


@pytest.mark.slow
def test_inline_study_reports_and_resumes(tmp_path):
    design = _tiny(tmp_path, severities=(2.0,))
    logs = []
    log = lambda *a, **k: logs.append(" ".join(map(str, a)))  # noqa: E731
    report = S.run_study(design, tmp_path / "rep", tmp_path / "runs", workers=0, log=log)
    assert report["n_records"] == 4 and report["runs_this_invocation"] == 4 and not report["failures"]
    saved = json.loads((tmp_path / "rep" / "study.json").read_text())
    row = saved["per_severity"][0]
    assert row["severity"] == 2.0 and set(row["variants"]) == {"baseline", "insta"}
    per_seed = row["variants"]["insta"]["per_seed"]
    records = {seed: json.loads((tmp_path / "runs" / "severity2" / f"seed{seed}" / "insta" / "study_run.json")
                                .read_text()) for seed in (0, 1)}
    assert per_seed == {str(k): 100 * r["accuracy"] for k, r in records.items()}
    assert all(len(r["accuracy_per_draw"]) == 2 for r in records.values())
    diff = row["vs_baseline"]["insta"]
    base = row["variants"]["baseline"]["per_seed"]
    assert diff["differences_points"] == pytest.approx([per_seed[s] - base[s] for s in ("0", "1")])
    assert row["sec_e"]["insta"]["brightness"] is not None and "baseline" not in row["sec_e"]
    assert 0 < row["sec_h"]["baseline"] < 1
    for name in ("study.md", "study_accuracy.png", "study_difference.png", "study_statistics.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    assert any(line.startswith("[4/4]") for line in logs)

    again = S.run_study(design, tmp_path / "rep", tmp_path / "runs", workers=0, log=log)
    assert again["runs_this_invocation"] == 0 and again["runs_reused"] == 4
    assert again["per_severity"] == json.loads(json.dumps(report["per_severity"]))


def _synthetic_record(task: S.RunTask, accuracy: float) -> dict:
    return {"task": task.__dict__, "key": task.key, "accuracy_per_draw": [accuracy, accuracy],
            "accuracy": accuracy, "test_acc_during_training": accuracy, "seconds": 1.0, "attempt": 0,
            "sec_e": {"blocks.0.threshold": {"kind": "INSTA-Th", "block": "stage0.block0.conv0",
                                             **{n: {"median_abs_r": 0.1 * (task.seed + 1), "max_abs_r": 0.5}
                                                for n in S.PERTURBATION_STATISTICS}}}
            if task.variant != "baseline" else {},
            "sec_h": {"overall_ratio": 0.2 + 0.01 * task.seed, "layers": {}}}


def test_finished_runs_are_not_repeated_and_the_report_pairs_seeds(tmp_path, monkeypatch):
    """Records already on disk (same settings) are reused without running anything; a record written with other
    settings is run again. The aggregation pairs by seed."""
    design = _tiny(tmp_path, seeds=(0, 1, 2))
    tasks = S.tasks_for(design, tmp_path / "runs")
    acc = {}
    for t in tasks:
        acc[t.key] = 0.80 + 0.05 * t.seed + (0.02 + 0.01 * t.seed if t.variant == "insta" else 0.0) - 0.1 * t.severity
        Path(t.out).mkdir(parents=True)
        (Path(t.out) / "study_run.json").write_text(json.dumps(_synthetic_record(t, acc[t.key])))
    ran = []
    monkeypatch.setattr(S, "execute", lambda todo, *a, **k: ran.extend(todo))
    report = S.run_study(design, tmp_path / "rep", tmp_path / "runs", workers=0, log=lambda *a, **k: None)
    assert ran == [] and report["runs_reused"] == 12
    row = report["per_severity"][1]
    c = row["vs_baseline"]["insta"]
    assert c["seeds"] == [0, 1, 2] and c["differences_points"] == pytest.approx([2.0, 3.0, 4.0])
    assert c["mean_points"] == pytest.approx(3.0) and c["verdict"] == "helps"
    assert c["wilcoxon_p"] == pytest.approx(0.25)  # n = 3, all positive: exact two-sided 2/8
    assert row["variants"]["baseline"]["mean_accuracy"] == pytest.approx(100 * (0.85 - 0.2))
    assert row["sec_h"]["insta"] == pytest.approx(0.21)
    assert row["sec_e"]["insta"]["brightness"] == pytest.approx(0.2)
    md = (tmp_path / "rep" / "study.md").read_text()
    assert "| 2 | insta - baseline | +3.00 |" in md and "helps" in md

    stale = json.loads((Path(tasks[0].out) / "study_run.json").read_text())
    stale["task"]["epochs"] = 7
    (Path(tasks[0].out) / "study_run.json").write_text(json.dumps(stale))
    S.run_study(design, tmp_path / "rep", tmp_path / "runs", workers=0, log=lambda *a, **k: None)
    assert [t.key for t in ran] == [tasks[0].key]


def test_statistic_vs_perturbation_is_pearson_per_channel():
    """Median / max |r| over channels of the first INSTA-Th's s against a parameter, computed directly here;
    None for a constant parameter (severity 0)."""
    import torch

    from instabnn.model.analyses import insta_sequence, own_statistic
    from instabnn.model.config import NetConfig
    from instabnn.model.data import digits_iv_arrays
    from instabnn.model.networks import build_network

    torch.manual_seed(0)
    model = build_network(NetConfig(arch="digits", variant="insta")).eval()
    x, params = digits_iv_arrays(severity=2.0, seed=0, limit=100)[2], digits_iv_arrays(severity=2.0, seed=0,
                                                                                       limit=100)[5]
    params = {**params, "ramp": np.zeros(100)}
    got = S.statistic_vs_perturbation(model, x, params)
    first = insta_sequence(model)[0]
    captured = []
    h = first["mod"].register_forward_pre_hook(lambda m, a: captured.append(own_statistic(m, a[0])[:, :, 0, 0]))
    with torch.no_grad():
        model(torch.from_numpy(x))
    h.remove()
    s = captured[0].double().numpy()
    r = np.abs([np.corrcoef(s[:, c], params["brightness"])[0, 1] for c in range(s.shape[1])])
    row = got[first["module"]]
    assert row["brightness"]["median_abs_r"] == pytest.approx(np.median(r), abs=1e-9)
    assert row["brightness"]["max_abs_r"] == pytest.approx(r.max(), abs=1e-9)
    assert row["ramp"] == {"median_abs_r": None, "max_abs_r": None}


def _flaky_tasks(tmp_path, fail_first):
    tasks = S.tasks_for(_tiny(tmp_path, severities=(1.0,), seeds=(0,), variants=("baseline",)), tmp_path / "runs")
    return [S.RunTask(**{**t.__dict__, "fail_first": fail_first}) for t in tasks]


@pytest.mark.parametrize("engine", ["inline", "dask-threads"])
def test_failed_run_is_reported_and_retried(tmp_path, engine):
    results, failures, logs = {}, {}, []
    kwargs = dict(workers=0) if engine == "inline" else dict(workers=1, processes=False)
    log = lambda *a, **k: logs.append(" ".join(map(str, a)))  # noqa: E731
    S.execute(_flaky_tasks(tmp_path, 1), lambda t, r: results.__setitem__(t.key, r),
              lambda t, m: failures.__setitem__(t.key, m), retries=1, log=log, **kwargs)
    assert list(results) == ["severity1-seed0-baseline"] and not failures
    assert results["severity1-seed0-baseline"]["attempt"] == 1
    assert any("failed (attempt 1 of 2)" in line and "retrying" in line for line in logs)

    results.clear()
    S.execute(_flaky_tasks(tmp_path / "b", 3), lambda t, r: results.__setitem__(t.key, r),
              lambda t, m: failures.__setitem__(t.key, m), retries=1, log=log, **kwargs)
    assert not results and "simulated failure (attempt 2)" in failures["severity1-seed0-baseline"]
    assert any("FAILED after 2 attempt(s)" in line for line in logs)


def test_cli_errors_are_one_line(tmp_path, capsys):
    for args, culprit in ((["--variants", "insta,mystery"], "unknown mystery"),
                          (["--variants", "insta"], "needs 'baseline'"),
                          (["--severities", "-1"], "--severity -1.0"),
                          (["--image-size", "12"], "--image-size 12"),
                          (["--workers", "-1"], "--workers -1")):
        assert S.main([*args, "--out", str(tmp_path / "rep"), "--runs", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err.strip()
        assert culprit in err and "\n" not in err, err
    assert not (tmp_path / "rep").exists() and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_dask_local_worker_processes_tiny_sweep(tmp_path):
    """The default engine: a LocalCluster of two worker processes; the same records as the inline engine."""
    args = ["--severities", "0,2", "--seeds", "0,1", "--variants", "baseline,insta", "--epochs", "1", "--draws", "2",
            "--limit", "80", "--workers", "2"]
    assert S.main([*args, "--out", str(tmp_path / "rep"), "--runs", str(tmp_path / "runs")]) == 0
    inline = S.run_study(_tiny(tmp_path, bootstrap_resamples=9999), tmp_path / "rep0", tmp_path / "runs0", workers=0)
    dask = json.loads((tmp_path / "rep" / "study.json").read_text())
    assert dask["engine"] == "LocalCluster(2 processes)" and dask["n_records"] == 8
    for a, b in zip(dask["per_severity"], inline["per_severity"]):
        assert a["variants"] == json.loads(json.dumps(b["variants"]))
