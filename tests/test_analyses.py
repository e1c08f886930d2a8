"""Analyses of supplementary Sec. E-I: the numbers are recomputed here independently (explicit convolutions, numpy
statistics, the network's own feature method), the ablation tables carry their recipe, bad input is one line."""

from __future__ import annotations

import csv
import json
import runpy
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from conftest import train_digits
from instabnn.model import analyses as A
from instabnn.model.checkpoint import load_checkpoint
from instabnn.model.data import load_splits
from instabnn.model.networks import build_network


@pytest.fixture(scope="module")
def baseline_ckpt(tmp_path_factory) -> Path:
    return train_digits(tmp_path_factory.mktemp("digits-baseline"), "--variant", "baseline", "--epochs", "1")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_png(path: Path, min_size=(200, 150)):
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] >= min_size[0] and img.size[1] >= min_size[1], img.size


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("instabnn-analyses: error:"), err
    return err[0]


def sign(a):
    return np.where(a >= 0, 1.0, -1.0)


def conv_np(x, w, stride):
    """Explicit valid convolution (float64): x (N, C, H, W), w (O, C, k, k)."""
    k = w.shape[-1]
    win = sliding_window_view(x.astype(np.float64), (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.tensordot(win, w.astype(np.float64), axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)


# ----------------------------------------------------------------------------------------------- Sec. H


def test_inconsistent_sign_hand_made_case():
    a = torch.tensor([[0.5, -0.2, -0.1], [-0.4, -0.3, 0.6], [0.2, 0.1, 0.7]]).view(1, 1, 3, 3)
    w = torch.tensor([[0.9, 0.1], [0.1, 0.1]]).view(1, 1, 2, 2)
    w_bin = torch.sign(w) * w.abs().mean()
    # real outputs  0.36, -0.16 / -0.36, -0.13;  binary popcounts -2, -2 / 0 (sign +1), +2
    # -> outputs (0,0), (1,0) (sign(0) = +1 against a negative real) and (1,1) disagree: 3 of 4
    assert A.inconsistent_sign_counts(a, w, torch.sign(a), w_bin, 1, 0) == (3, 4)

    # padding with -1 and stride 2 on random data, against explicit loops
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(2, 3, 5, 5, generator=gen)
    w = torch.randn(4, 3, 3, 3, generator=gen)
    b_in = torch.nn.functional.pad(A._sign(a), (1, 1, 1, 1), value=-1.0)
    w_bin = A._sign(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True)
    ap = np.pad(a.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-1.0)
    wr, wb = w.numpy().astype(np.float64), sign(w.numpy())
    mismatches = total = 0
    for n in range(2):
        for o in range(4):
            for i in range(3):
                for j in range(3):
                    real = (ap[n, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * wr[o]).sum()
                    binary = (sign(ap[n, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]) * wb[o]).sum()
                    mismatches += sign(real) != sign(binary)
                    total += 1
    assert 0 < mismatches < total
    assert A.inconsistent_sign_counts(a, w, b_in, w_bin, 2, 1) == (mismatches, total)


def direct_inconsistent_sign(ckpt_path, indices) -> dict[str, tuple[int, int, int]]:
    """layer -> (mismatches, outputs, near-zero real outputs), walking the blocks by hand."""
    ckpt = load_checkpoint(ckpt_path)
    model = build_network(ckpt["config"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    test = load_splits("digits", augment=False).test
    x = torch.stack([test[i][0] for i in indices])
    out = {}
    with torch.no_grad():
        h = model.stem(model.input_quant(x))
        for blk in model.blocks:
            a = blk.threshold(h)[0].numpy()  # the binarizer's input x - T
            ap = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-1.0)
            w = blk.conv.weight.numpy()
            stride = blk.conv.stride[0]
            real = conv_np(ap, w, stride)
            binary = conv_np(sign(ap), sign(w), stride)
            out[blk.name] = (int((sign(real) != sign(binary)).sum()), real.size, int((np.abs(real) < 1e-4).sum()))
            h = blk(h)
    return out


def test_inconsistent_sign_matches_direct_computation(digits_insta_ckpt, baseline_ckpt, tmp_path):
    out = tmp_path / "out"
    assert A.main(["inconsistent-sign", "--checkpoint", f"base={baseline_ckpt}", "--checkpoint",
                   f"insta={digits_insta_ckpt}", "--n", "48", "--seed", "2", "--out", str(out), "--no-progress"]) == 0
    rows = read_csv(out / "inconsistent_sign.csv")
    summary = json.loads((out / "inconsistent_sign.json").read_text())
    indices = summary["image_indices"]
    assert len(indices) == 48 == summary["n_images"]
    layers = ["stage0.block0.conv0", "stage0.block0.conv1", "stage1.block0.conv0", "stage1.block0.conv1"]
    assert [r["layer"] for r in rows] == layers * 2 and [r["model"] for r in rows] == ["base"] * 4 + ["insta"] * 4
    for label, path in (("base", baseline_ckpt), ("insta", digits_insta_ckpt)):
        direct = direct_inconsistent_sign(path, indices)
        for r in (r for r in rows if r["model"] == label):
            mism, total, near_zero = direct[r["layer"]]
            assert int(r["outputs"]) == total
            assert abs(int(r["mismatches"]) - mism) <= near_zero, (label, r, direct[r["layer"]])
            assert float(r["ratio"]) == pytest.approx(int(r["mismatches"]) / total)
            assert 0.0 < float(r["ratio"]) < 0.5
    assert_png(out / "inconsistent_sign.png")


# ----------------------------------------------------------------------------------------------- Sec. E


def own_s(x: torch.Tensor, stats) -> np.ndarray:
    """E over (h, w) of ((x - running mean) / sqrt(running var + eps))^3, in numpy: (N, C)."""
    x = x.numpy().astype(np.float64)
    mu = stats.running_mean.numpy().astype(np.float64)[None, :, None, None]
    sd = np.sqrt(stats.running_var.numpy().astype(np.float64) + stats.eps)[None, :, None, None]
    return (((x - mu) / sd) ** 3).mean(axis=(2, 3))


def test_correlation_matches_numpy_corrcoef(digits_insta_ckpt, tmp_path):
    out = tmp_path / "out"
    assert A.main(["correlation", "--checkpoint", str(digits_insta_ckpt), "--channel", "3", "--n", "64",
                   "--seed", "5", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "correlation.json").read_text())
    indices = summary["image_indices"]
    assert len(indices) == 64 == len(set(indices))

    ckpt = load_checkpoint(digits_insta_ckpt)
    model = build_network(ckpt["config"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    train = load_splits("digits", augment=False).train
    x = torch.stack([train[i][0] for i in indices])
    seq = []  # (block, kind, s (N, C)) in network order
    with torch.no_grad():
        h = model.stem(model.input_quant(x))
        for blk in model.blocks:
            seq.append((blk.name, "th", own_s(h, blk.threshold.stats)))
            pre_act = blk.bn(blk.conv_path(h)[0]) + blk.shortcut(h)
            seq.append((blk.name, "prelu", own_s(pre_act, blk.act.stats)))
            h = blk(h)
    rows = read_csv(out / "correlation.csv")
    assert len(rows) == len(seq) - 1 == 7
    for r, (a, b) in zip(rows, zip(seq, seq[1:])):
        assert (r["from_block"], r["to_block"]) == (a[0], b[0])
        assert r["kind"] == ("th_to_prelu" if a[1] == "th" else "prelu_to_next_th")
        assert (int(r["channel"]), int(r["n"])) == (3, 64)
        expected = np.corrcoef(a[2][:, 3], b[2][:, 3])[0, 1]
        assert float(r["pearson_r"]) == pytest.approx(expected, abs=1e-5)
        common = min(a[2].shape[1], b[2].shape[1])
        mean_r = np.mean([np.corrcoef(a[2][:, c], b[2][:, c])[0, 1] for c in range(common)])
        assert float(r["mean_r_all_channels"]) == pytest.approx(mean_r, abs=1e-5)
    assert_png(out / "correlation.png", (600, 400))


def test_correlation_needs_insta_modules(baseline_ckpt, digits_insta_ckpt, tmp_path, capsys):
    assert A.main(["correlation", "--checkpoint", str(baseline_ckpt), "--out", str(tmp_path)]) == 2
    err = one_line_error(capsys)
    assert str(baseline_ckpt) in err and "INSTA-Th and INSTA-PReLU" in err and "variant=baseline" in err
    assert A.main(["correlation", "--checkpoint", str(digits_insta_ckpt), "--channel", "32",
                   "--out", str(tmp_path)]) == 2
    assert "--channel 32" in one_line_error(capsys)
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------- Sec. I


def test_tsne_embeds_the_classifier_input(digits_insta_ckpt, baseline_ckpt, tmp_path):
    out = tmp_path / "out"
    assert A.main(["tsne", "--checkpoint", f"RSign={baseline_ckpt}", "--checkpoint",
                   f"INSTA-Th={digits_insta_ckpt}", "--out", str(out), "--no-progress"]) == 0
    rows = read_csv(out / "tsne.csv")
    test = load_splits("digits", augment=False).test
    labels = np.asarray([int(test[i][1]) for i in range(len(test))])
    per_class = Counter(labels.tolist())
    for model in ("RSign", "INSTA-Th"):
        mine = [r for r in rows if r["model"] == model]
        got = Counter(int(r["label"]) for r in mine)
        assert got == {c: n // 2 for c, n in per_class.items()}  # half of each class
        assert all(int(r["label"]) == labels[int(r["index"])] for r in mine)
    # the embedding is t-SNE (fixed random_state) of the network's own pre-classifier features
    mine = [r for r in rows if r["model"] == "INSTA-Th"]
    ckpt = load_checkpoint(digits_insta_ckpt)
    model = build_network(ckpt["config"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    with torch.no_grad():
        feats = model.features(torch.stack([test[int(r["index"])][0] for r in mine])).double().numpy()
    emb = A.tsne_embedding(feats, seed=0)
    got = np.asarray([[float(r["x"]), float(r["y"])] for r in mine])
    np.testing.assert_allclose(got, emb, rtol=1e-4, atol=1e-3)
    summary = json.loads((out / "tsne.json").read_text())
    assert summary["n_images"] == len(mine) and summary["models"]["INSTA-Th"]["feature_dim"] == 64
    assert -1.0 <= summary["models"]["INSTA-Th"]["silhouette_tsne"] <= 1.0
    assert_png(out / "tsne.png", (600, 300))


# ----------------------------------------------------------------------------------------------- Sec. F, G


def test_nonlinearity_table_records_recipe_and_skips_finished_runs(tmp_path, capsys):
    out = tmp_path / "nl"
    args = ["nonlinearity", "--epochs", "1", "--seed", "3", "--g", "tanh", "--columns", "insta,insta_plus",
            "--out", str(out), "--no-progress", "--device", "cpu"]
    assert A.main(args) == 0
    rows = read_csv(out / "nonlinearity.csv")
    assert list(rows[0]) == ["g", "g_name", "range", "insta_acc", "insta_plus_acc", "preset", "epochs", "seed",
                             "data", "arch"]
    assert len(rows) == 1 and rows[0]["g"] == "tanh(x)" and rows[0]["range"] == "-1 ~ 1"
    assert (rows[0]["preset"], rows[0]["epochs"], rows[0]["seed"], rows[0]["data"]) == ("digits", "1", "3", "digits")
    for col, variant, field in (("insta", "insta", "g"), ("insta_plus", "insta_plus", "g_se")):
        result = json.loads((out / "nonlinearity-runs" / f"{col}-tanh" / "result.json").read_text())
        assert (result["config"]["variant"], result["config"][field], result["seed"]) == (variant, "tanh", 3)
        assert result["recipe"]["epochs"] == 1 and result["epochs_done"] == 1
        assert rows[0][f"{col}_acc"] == f"{100 * result['test_acc']:.2f}"
    md = (out / "nonlinearity.md").read_text()
    assert "| g | Range | INSTA-PReLU | SE (INSTA-Th+) |" in md and "| tanh(x) | -1 ~ 1 |" in md
    assert "preset `digits`" in md and "1 epoch(s), seed 3" in md
    assert_png(out / "nonlinearity.png")

    model_pt = out / "nonlinearity-runs" / "insta-tanh" / "model.pt"
    stamp = model_pt.stat().st_mtime_ns
    capsys.readouterr()
    assert A.main(args) == 0  # rerun: both runs are reused, not retrained
    assert capsys.readouterr().out.count("skipped") == 2 and model_pt.stat().st_mtime_ns == stamp
    assert read_csv(out / "nonlinearity.csv") == rows
    assert A.main([*args[:4], "4", *args[5:]]) == 2  # other seed, same folder: refused
    assert "other settings" in one_line_error(capsys)


def test_ordering_rows_train_table_2_networks(tmp_path):
    for key, (_, net) in A.ORDERING_ROWS.items():
        blk = build_network({"arch": "digits", **net}).blocks[0]
        want = {"bn": "BatchNormSign", "bn_noaffine": "BatchNormSign", "insta_th": "InstaTh"}[key]
        assert type(blk.threshold).__name__ == want and type(blk.act).__name__ == "PReLU" and blk.bn is None
        if want == "BatchNormSign":
            assert blk.threshold.bn.affine == (key == "bn")
    out = tmp_path / "ord"
    assert A.main(["ordering", "--epochs", "1", "--rows", "bn_noaffine", "--seed", "1", "--out", str(out),
                   "--no-progress", "--device", "cpu"]) == 0
    rows = read_csv(out / "ordering.csv")
    assert list(rows[0]) == ["row", "structure", "acc", "preset", "epochs", "seed", "data", "arch"]
    assert [r["structure"] for r in rows] == ["BN (w/o gamma, beta) - sign - conv - PReLU"]
    result = json.loads((out / "ordering-runs" / "bn_noaffine" / "result.json").read_text())
    assert (result["config"]["block_order"], result["config"]["variant"]) == ("bn_sign_conv", "baseline")
    assert result["config"]["bn_affine"] is False and result["seed"] == 1
    assert rows[0]["acc"] == f"{100 * result['test_acc']:.2f}"
    assert (rows[0]["preset"], rows[0]["epochs"], rows[0]["seed"]) == ("digits", "1", "1")
    md = (out / "ordering.md").read_text()
    assert "| Structure | Top-1 Acc. (%) |" in md and "1 epoch(s), seed 1" in md
    assert_png(out / "ordering.png")


# ----------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("argv, needle", [
    (["correlation", "--checkpoint", "{missing}"], "no such file"),
    (["inconsistent-sign", "--checkpoint", "a={missing}"], "no such file"),
    (["tsne", "--checkpoint", "a={missing}"], "no such file"),
    (["tsne", "--checkpoint", "=x.pt"], "LABEL=PATH"),
    (["inconsistent-sign", "--checkpoint", "a=x.pt", "--checkpoint", "a=y.pt"], "given twice"),
    (["nonlinearity", "--g", "relu"], "--g 'relu'"),
    (["ordering", "--rows", "bn,foo"], "--rows"),
    (["nonlinearity", "--epochs", "0"], "--epochs 0"),
])
def test_bad_input_is_one_line(argv, needle, tmp_path, capsys):
    missing = tmp_path / "nope" / "model.pt"
    argv = [a.format(missing=missing) for a in argv]
    assert A.main([*argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert needle in err
    if needle == "no such file":
        assert str(missing) in err
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: the module is already imported by this file
def test_runs_as_a_module(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["analyses", "tsne", "--checkpoint", f"x={tmp_path / 'missing.pt'}"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("instabnn.model.analyses", run_name="__main__")
    assert exit_info.value.code == 2
    assert "missing.pt" in one_line_error(capsys)
