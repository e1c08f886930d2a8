"""digits-iv through the hardware side: the lowered graph keeps the data a network was trained on, and the
co-simulation and the deployment's example images use the same digits-iv test images (severity, image size,
noise, perturbation seed of the training run) unless an option is overridden explicitly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instabnn.contract.layers import quantize_int
from instabnn.deploy import assemble as A
from instabnn.hw.compile import compiler as C
from instabnn.hw import lower
from instabnn.hw.compile import folding
from instabnn.model.data import digits_test_split
from instabnn.model.export import export_checkpoint, read_metadata
from instabnn.sim import cosim

from conftest import train_digits

TRAINED = {"severity": 1.5, "image_size": 8, "noise": 0.0, "seed": 7}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A digits-iv baseline (1 epoch, severity 1.5, perturbation seed 7), exported, lowered and compiled."""
    out = tmp_path_factory.mktemp("digits-iv-run")
    ckpt = train_digits(out, "--variant", "baseline", "--epochs", "1", "--data", "digits-iv", "--severity", "1.5",
                        "--perturbation-seed", "7")
    export_checkpoint(ckpt, out / "model.onnx", n_check=2)
    assert lower.main([str(out / "model.onnx"), "--out", str(out), "-n", "8", "--no-progress"]) == 0
    assert folding.main([str(out / "lowered.onnx"), "--target-fps", "20000"]) == 0
    C.compile_model(out / "lowered.onnx", out / "rtl", out / "folding.json")
    return out


def _quantized(model, x):
    props = {p.key: p.value for p in model.model.metadata_props}
    return quantize_int(x, np.float32(2.0 ** int(props["instabnn.input_exp"])), int(props["instabnn.input_bits"]),
                        narrow=False)


def test_lowering_keeps_the_training_data_and_checks_agreement_on_it(run):
    meta = read_metadata(run / "lowered.onnx")
    assert meta["data"] == "digits-iv" and json.loads(meta["data_options"]) == TRAINED
    assert read_metadata(run / "model.onnx")["data_options"] == meta["data_options"]
    report = json.loads((run / "lowered.json").read_text())
    assert report["inputs"] == digits_test_split("digits-iv", TRAINED)[2]


def test_cosim_takes_the_training_options_and_validates_overrides(run):
    m = cosim.load_manifest(run / "rtl")
    model = cosim.lowered_model(m, run / "rtl")
    assert cosim.default_data(model) == "digits-iv"
    options = cosim.digits_iv_options(model, m["input_shape"], {"severity": None})
    assert options == TRAINED
    q0, labels, desc = cosim.images_for("digits-iv", 5, model, m["input_shape"], None, data_options=options)
    x, y, expected = digits_test_split("digits-iv", TRAINED)
    assert desc == expected and np.array_equal(labels, y[:5]) and np.array_equal(q0, _quantized(model, x[:5]))
    assert not np.array_equal(q0, _quantized(model, digits_test_split("digits")[0][:5]))  # not the plain digits

    harder = cosim.digits_iv_options(model, m["input_shape"], {"severity": 2.0})
    assert harder == {**TRAINED, "severity": 2.0}
    q_draw1, _, desc1 = cosim.images_for("digits-iv", 5, model, m["input_shape"], None, data_options=options,
                                         test_draw=1)
    assert "test draw 1" in desc1 and not np.array_equal(q_draw1, q0)

    with pytest.raises(cosim.CosimError, match="--image-size 16: the accelerator takes 8x8"):
        cosim.digits_iv_options(model, m["input_shape"], {"image_size": 16})
    with pytest.raises(cosim.CosimError, match="--noise -1"):
        cosim.digits_iv_options(model, m["input_shape"], {"noise": -1.0})
    with pytest.raises(cosim.CosimError, match="--severity: apply to --data digits-iv only, not --data digits"):
        cosim.cosim(run / "rtl", "digits", 2, digits_iv={"severity": 2.0}, work=run / "never")
    assert not (run / "never").exists()

    del model.model.metadata_props[:]  # a graph lowered from an export that records no training data
    with pytest.raises(cosim.CosimError, match="records no digits-iv training .* give --severity and "
                                               "--perturbation-seed"):
        cosim.digits_iv_options(model, m["input_shape"], {})
    assert cosim.digits_iv_options(model, m["input_shape"], {"severity": 1.0, "seed": 3}) == \
        {"severity": 1.0, "seed": 3, "noise": 0.0, "image_size": 8}


@pytest.mark.parametrize("args, culprit", [
    (["--data", "digits", "--severity", "2"], "--severity: apply to --data digits-iv only"),
    (["--data", "random", "--test-draw", "1"], "--test-draw: apply to --data digits-iv only"),
    (["--data", "digits-iv", "--test-draw", "-1"], "--test-draw -1"),
    (["--data", "digits-iv", "--perturbation-seed", "-2"], "perturbation seed -2"),
    (["--data", "digits-iv", "--image-size", "12"], "--image-size 12"),
])
def test_cosim_cli_refuses_bad_digits_iv_options_before_any_work(tmp_path, capsys, args, culprit):
    assert cosim.main(["--check-args", *args, "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert culprit in err and "\n" not in err, err


def test_deploy_example_images_are_the_training_data(run, tmp_path):
    data, description = A.digits_test_images(run / "rtl", 6)
    x, y, expected = digits_test_split("digits-iv", TRAINED)
    assert description == expected and np.array_equal(data["labels"], y[:6])
    m = cosim.load_manifest(run / "rtl")
    model = cosim.lowered_model(m, run / "rtl")
    assert np.array_equal(data["q0"], _quantized(model, x[:6]))
    assert np.array_equal(data["reference_logits"], cosim.reference_logits(model, _quantized(model, x[:6]), False))
    summary = A.assemble(run / "rtl", None, tmp_path / "deploy", n_images=6)
    assert summary["images_from"] == expected and expected in (tmp_path / "deploy" / "README.md").read_text()
    with np.load(tmp_path / "deploy" / "test_images.npz") as z:
        assert np.array_equal(z["q0"], data["q0"])


# ---------------------------------------------------------------------------------- co-simulation shards on workers


def _fake_cosim(calls, fail_first=0):
    """cosim() as far as the shard runner sees it: a report of the requested slice of 7 images (no simulator)."""
    def fake(rtl_dir, shard, n=None, **kwargs):
        k, parts = map(int, shard.split("/"))
        calls.append(shard)
        if calls.count(shard) <= fail_first:
            raise cosim.CosimError(f"simulated failure of shard {shard}")
        bounds = np.linspace(0, n or 7, parts + 1).astype(int)
        size = int(bounds[k] - bounds[k - 1])
        return {"rtl": rtl_dir, "rtl_sha256": "r", "top": "t", "model_sha256": "m", "data": "digits-iv (fake)",
                "in_stall": 0, "out_stall": 0, "cycles_per_frame_analytic": 10, "clock_mhz": 100.0, "shard": shard,
                "first_image": int(bounds[k - 1]), "n": size, "mismatches": 0, "tlast_errors": 0,
                "sim_images_per_s": 5.0, "cycles_per_frame": 10.0, "latency_cycles": 30,
                "predictions_rtl": [k] * size, "predictions_reference": [k] * size, "labels": [1] * size}
    return fake


@pytest.mark.parametrize("engine", [dict(workers=0), dict(workers=2, processes=False)])
def test_shards_run_retry_merge_and_are_not_repeated(run, tmp_path, monkeypatch, engine):
    """--shards: every shard runs (a failed one is retried), the reports are merged; a second call runs nothing,
    a changed request runs every shard again, a shard failing twice is named and nothing is merged."""
    calls, logs = [], []
    monkeypatch.setattr(cosim, "cosim", _fake_cosim(calls, fail_first=1))
    monkeypatch.setattr(cosim, "rtl_digest", lambda rtl_dir, m: "r")
    out = tmp_path / "rep" / "cosim.json"
    log = lambda *a, **k: logs.append(" ".join(map(str, a)))  # noqa: E731
    merged = cosim.cosim_shards(run / "rtl", 3, out, retries=1, log=log, n=7, **engine)
    assert sorted(calls) == ["1/3", "1/3", "2/3", "2/3", "3/3", "3/3"]
    assert merged["n"] == 7 and merged["shards"] == 3 and merged["predictions_rtl"] == [1, 1, 2, 2, 3, 3, 3]
    assert merged["shard_reports"] == [str(p.resolve()) for p in cosim.shard_paths(out, 3)]
    assert [json.loads(p.read_text())["request"]["shard"] for p in cosim.shard_paths(out, 3)] == ["1/3", "2/3", "3/3"]
    assert any("failed (attempt 1 of 2)" in line for line in logs)

    calls.clear()
    again = cosim.cosim_shards(run / "rtl", 3, out, retries=1, log=log, n=7, **engine)
    assert calls == [] and again["predictions_rtl"] == merged["predictions_rtl"]
    cosim.cosim_shards(run / "rtl", 3, out, retries=1, log=log, n=6, **engine)
    assert sorted(set(calls)) == ["1/3", "2/3", "3/3"]

    monkeypatch.setattr(cosim, "cosim", _fake_cosim([], fail_first=2))
    with pytest.raises(cosim.CosimError, match=r"3 of 3 shard\(s\) failed .*simulated failure.*nothing merged"):
        cosim.cosim_shards(run / "rtl", 3, tmp_path / "other" / "cosim.json", retries=1, log=log, n=7, **engine)
    assert not (tmp_path / "other" / "cosim.json").exists()


def test_shards_refuse_a_file_they_did_not_write_and_bad_flags(run, tmp_path, capsys):
    out = tmp_path / "cosim.json"
    foreign = cosim.shard_paths(out, 2)[1]
    foreign.write_text("my notes\n")
    with pytest.raises(cosim.CosimError, match="cosim-2of2.json: exists and is not a co-simulation report"):
        cosim.cosim_shards(run / "rtl", 2, out, workers=0)
    assert foreign.read_text() == "my notes\n"
    for args, culprit in ((["--shards", "2", "--shard", "1/2"], "not with --shard"),
                          (["--workers", "3"], "apply to --shards only"),
                          (["--shards", "2", "--retries", "-1"], "--retries -1")):
        assert cosim.main([str(run / "rtl"), *args, "--out", str(tmp_path / "c.json")]) == 2
        err = capsys.readouterr().err.strip()
        assert culprit in err and "\n" not in err, err
    with pytest.raises(SystemExit):
        cosim.main([str(run / "rtl"), "--shards", "0", "--out", str(tmp_path / "c.json")])
    assert "argument --shards: '0' must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


@pytest.mark.slow
def test_two_shards_on_local_worker_processes_match_one_run(run, tmp_path, verilator_path):
    """The real thing: 2 shards of 4 digits-iv images on a LocalCluster of 2 worker processes, merged; the same
    predictions as one unsharded run, 0 mismatches; a restart runs nothing."""
    out = tmp_path / "cosim.json"
    assert cosim.main([str(run / "rtl"), "--shards", "2", "-n", "4", "--harness", "verilator", "--out", str(out),
                       "--work", str(tmp_path / "w")]) == 0
    merged = json.loads(out.read_text())
    whole = cosim.cosim(run / "rtl", None, 4, harness="verilator", work=tmp_path / "w1")
    assert merged["mismatches"] == 0 and merged["shards"] == 2 and merged["data"] == whole["data"]
    assert merged["predictions_rtl"] == whole["predictions_rtl"] and merged["labels"] == whole["labels"]
    logs = []
    cosim.cosim_shards(run / "rtl", 2, out, n=4, harness="verilator", work=tmp_path / "w",
                       log=lambda *a, **k: logs.append(" ".join(map(str, a))))
    assert "2 already done, 0 to run" in logs[0]
