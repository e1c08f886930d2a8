"""Training: the digits network learns, resume is exact, stages / distillation / SE fine-tuning run, bad input is
refused with a one-line error naming the culprit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import fake_run_folder, train_digits, tree_hashes
from instabnn.model.checkpoint import load_checkpoint
from instabnn.model.train import PRESETS, Recipe, lr_factor, main


def test_digits_insta_learns(digits_insta_ckpt):
    result = json.loads((digits_insta_ckpt.parent / "result.json").read_text())
    history = json.loads((digits_insta_ckpt.parent / "metrics.json").read_text())
    assert len(history) == 4 and result["finished"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert result["test_acc"] >= 0.85, result["test_acc"]
    for name in ("last.pt", "model.pt", "metrics.csv", "curve.png"):
        assert (digits_insta_ckpt.parent / name).stat().st_size > 0


def test_resume_matches_uninterrupted_run(tmp_path):
    args = ("--variant", "insta", "--epochs", "3", "--seed", "7")
    full = train_digits(tmp_path / "full", *args)
    interrupted = tmp_path / "interrupted"
    assert main(["--data", "digits", "--out", str(interrupted), "--no-progress", *args,
                 "--stop-after-epoch", "0"]) == 0
    assert not (interrupted / "model.pt").exists()
    assert load_checkpoint(interrupted / "last.pt")["epoch"] == 0
    resumed = train_digits(interrupted, *args, "--resume")
    a, b = load_checkpoint(full)["model"], load_checkpoint(resumed)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"


def test_resume_with_changed_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), "--no-progress", "--epochs", "2", "--stop-after-epoch", "0"]) == 0
    assert main(["--out", str(out), "--no-progress", "--epochs", "2", "--lr", "0.1", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "last.pt" in err[0] and "recipe" in err[0]


def test_two_stage_distillation_and_se_finetune(tmp_path):
    teacher = train_digits(tmp_path / "teacher", "--real-valued", "--epochs", "1")
    assert load_checkpoint(teacher)["config"]["binary_acts"] is False
    two = tmp_path / "two"
    train_digits(two, "--two-stage", "--variant", "insta_plus", "--epochs", "1", "--teacher", str(teacher),
                 "--distill-weight", "0.5")
    s1, s2 = load_checkpoint(two / "stage1" / "model.pt"), load_checkpoint(two / "stage2" / "model.pt")
    assert s1["config"]["binary_weights"] is False and s2["config"]["binary_weights"] is True
    assert s2["run"]["init"].endswith("stage1/model.pt") and s2["run"]["teacher"] == str(teacher)
    # resuming a finished two-stage run is a no-op that keeps the weights
    train_digits(two, "--two-stage", "--variant", "insta_plus", "--epochs", "1", "--teacher", str(teacher),
                 "--distill-weight", "0.5", "--resume")
    again = load_checkpoint(two / "stage2" / "model.pt")["model"]
    assert all(torch.equal(again[k], s2["model"][k]) for k in again)
    ft = train_digits(tmp_path / "ft", "--preset", "se_finetune", "--init", str(two / "stage2" / "model.pt"),
                      "--epochs", "1")
    ck = load_checkpoint(ft)
    assert ck["config"]["se_weight_bits"] == 8 and ck["config"]["variant"] == "insta_plus"
    assert any(k.endswith("weight_quant.tensor_quant.scaling_impl.value") and ".se." in k for k in ck["model"])
    assert ck["run"]["recipe"]["lr"] == 1e-4 and ck["run"]["recipe"]["schedule"] == "linear"


def test_presets_follow_the_supplementary():
    cifar, abl, se = PRESETS["cifar"], PRESETS["ablation"], PRESETS["se_finetune"]
    assert (cifar.optimizer, cifar.lr, cifar.weight_decay, cifar.epochs, cifar.batch_size, cifar.schedule) == \
        ("adamw", 3e-3, 1e-4, 400, 256, "cosine")
    assert (abl.optimizer, abl.lr, abl.weight_decay, abl.epochs, abl.warmup_epochs) == ("adam", 1e-3, 0.0, 90, 5)
    factors = [lr_factor(abl, e) for e in range(90)]
    assert factors[0] == pytest.approx(0.2) and factors[4] == 1.0 and factors[39] == 1.0
    assert factors[40] == pytest.approx(0.1) and factors[60] == pytest.approx(0.01)
    assert factors[80] == pytest.approx(0.001)
    assert lr_factor(cifar, 0) == 1.0 and lr_factor(cifar, 200) == pytest.approx(0.5)
    assert (se.lr, se.epochs, se.schedule, se.weight_decay) == (1e-4, 10, "linear", 0.0)
    assert lr_factor(se, 5) == pytest.approx(0.5)
    assert lr_factor(Recipe(schedule="constant"), 33) == 1.0


@pytest.mark.parametrize("args, culprit", [
    (["--data", "cifar10", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["--data", "cifar10"], "--data-dir"),
    (["--data", "imagenet", "--data-dir", "/nonexistent/imagenet"], "/nonexistent/imagenet"),
    (["--arch", "resnet99"], "arch='resnet99'"),
    (["--variant", "insta_max"], "variant='insta_max'"),
    (["--stats-reuse", "all"], "stage1.block0.conv0"),
    (["--g", "relu"], "g='relu'"),
    (["--optimizer", "lion"], "--optimizer"),
    (["--init", "/nonexistent/model.pt"], "/nonexistent/model.pt"),
    (["--preset", "se_finetune"], "--init"),
    (["--lr", "inf"], "--lr inf"),
    (["--lr", "nan"], "--lr nan"),
    (["--lr", "1e300"], "--lr 1e+300"),
    (["--lr", "0"], "--lr 0"),
    (["--gamma", "-0.1"], "--gamma -0.1"),
    (["--weight-decay=-1e-4"], "--weight-decay -0.0001"),
    (["--epochs", "0"], "--epochs 0"),
    (["--batch-size", "-64"], "--batch-size -64"),
    (["--milestones", "40,0"], "--milestones 40,0"),
    (["--distill-weight", "nan"], "--distill-weight nan"),
    (["--workers", "-1"], "--workers -1"),
    (["--resume", "--overwrite"], "--overwrite"),
])
def test_bad_input_is_one_line_error(tmp_path, capsys, args, culprit):
    out = tmp_path / "run"
    assert main(["--out", str(out), "--epochs", "1", "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("instabnn-train: error:") and culprit in err[0], err
    assert not (out / "model.pt").exists()


@pytest.mark.parametrize("args, target, culprit", [
    ([], "run", "--resume continues it from last.pt, --overwrite replaces it"),
    (["--resume"], "finished", "(it has none)"),  # a run folder without last.pt: nothing to resume
    ([], "run/model.pt", "is a file, not a folder"),
    (["--two-stage"], "two", "stage1 already holds a training run"),
])
def test_a_folder_holding_a_run_is_refused(tmp_path, capsys, args, target, culprit):
    for folder in ("run", "finished", "two/stage1"):
        fake_run_folder(tmp_path / folder)
    (tmp_path / "finished" / "last.pt").unlink()
    before = {k: tree_hashes(tmp_path / k) for k in ("run", "finished", "two")}
    assert main(["--out", str(tmp_path / target), "--epochs", "1", "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / target.split("/")[0]) in err[0] and culprit in err[0], err
    assert {k: tree_hashes(tmp_path / k) for k in before} == before


def test_overwrite_replaces_the_run_only(tmp_path):
    run = tmp_path / "run"
    before = fake_run_folder(run)
    assert main(["--out", str(run), "--epochs", "1", "--no-progress", "--overwrite"]) == 0
    after = tree_hashes(run)
    assert load_checkpoint(run / "model.pt")["history"][-1]["epoch"] == 1  # the new run's
    assert {k: after[k] for k in ("model.onnx", "lowered.onnx")} == {k: before[k] for k in ("model.onnx",
                                                                                             "lowered.onnx")}


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """The learning rate jumps to 1e30 at epoch 2 (step schedule): the loss becomes NaN; the run stops naming epoch
    and step, exit 2, and last.pt / metrics of epoch 1 stay as they were."""
    run = tmp_path / "run"
    args = ["--out", str(run), "--epochs", "2", "--lr", "0.01", "--schedule", "step", "--milestones", "1",
            "--gamma", "1e32", "--no-progress"]
    assert main(args + ["--stop-after-epoch", "0"]) == 0
    before = tree_hashes(run)
    capsys.readouterr()
    assert main(args + ["--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(r"epoch 2, step \d+: the training loss is not finite", err[0]), err
    assert f"{run / 'last.pt'} keeps epoch 1" in err[0]
    assert tree_hashes(run) == before and not (run / "model.pt").exists()


def test_ctrl_c_says_which_checkpoint_is_kept(tmp_path, capsys, monkeypatch):
    from instabnn.model import train

    run = tmp_path / "run"
    real_lr_factor, kept = train.lr_factor, []

    def interrupted_at_epoch_2(recipe, epoch):
        if epoch == 1:
            kept.append(tree_hashes(run))
            raise KeyboardInterrupt
        return real_lr_factor(recipe, epoch)

    monkeypatch.setattr(train, "lr_factor", interrupted_at_epoch_2)
    assert main(["--out", str(run), "--epochs", "2", "--no-progress"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"instabnn-train: interrupted; {run / 'last.pt'} keeps epoch 1 (continue with the same command "
                   "and --resume)"]
    assert tree_hashes(run) == kept[0] and load_checkpoint(run / "last.pt")["epoch"] == 0
    monkeypatch.setattr(train, "lr_factor", real_lr_factor)
    assert main(["--out", str(run), "--epochs", "2", "--no-progress", "--resume"]) == 0
    assert load_checkpoint(run / "model.pt")["history"][-1]["epoch"] == 2


def test_unknown_preset_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--preset", "imagenet-fast"])
    assert e.value.code == 2 and "imagenet-fast" in capsys.readouterr().err


def test_corrupt_and_mismatched_checkpoints(tmp_path, capsys, digits_insta_ckpt):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    assert main(["--out", str(tmp_path / "a"), "--epochs", "1", "--init", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert str(corrupt) in err and "corrupt" in err
    # a checkpoint of another network: the digits INSTA weights into ResNet-20 shapes
    other = tmp_path / "other.pt"
    ck = load_checkpoint(digits_insta_ckpt)
    ck["config"]["arch"] = "resnet20"
    torch.save(ck, other)
    assert main(["--out", str(tmp_path / "b"), "--epochs", "1", "--init", str(other)]) == 2
    err = capsys.readouterr().err
    assert str(other) in err and ("shape" in err or "missing" in err)


def test_ddp_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "instabnn.model.train", "--data", "digits", "--out", str(out), "--epochs", "2", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2 and result["finished"]
    assert load_checkpoint(out / "model.pt")["history"][-1]["epoch"] == 2


def test_resume_accepts_checkpoints_from_before_new_config_fields(tmp_path):
    """A checkpoint whose stored config lacks fields added later (they take their defaults) still resumes."""
    from instabnn.model.checkpoint import load_checkpoint, save_checkpoint
    from instabnn.model.train import main

    out = tmp_path / "run"
    assert main(["--data", "digits", "--epochs", "2", "--out", str(out), "--no-progress",
                 "--stop-after-epoch", "0"]) == 0
    ckpt = load_checkpoint(out / "last.pt")
    for field in ("g_se", "baseline_threshold"):
        ckpt["run"]["net"].pop(field)
    ckpt["run"].pop("hardware_exact")
    save_checkpoint(out / "last.pt", ckpt)
    assert main(["--data", "digits", "--epochs", "2", "--out", str(out), "--no-progress", "--resume"]) == 0
    assert len(load_checkpoint(out / "model.pt")["history"]) == 2
