"""digits-iv: the digits with seeded per-image photometric variation (model/data.py)."""

from __future__ import annotations

import numpy as np
import pytest

from instabnn.model.data import DataError, digits_arrays, digits_iv_arrays, load_splits


def test_severity_zero_is_the_plain_digits_exactly():
    plain = digits_arrays()
    iv = digits_iv_arrays(severity=0.0, seed=5)
    for a, b in zip(plain, iv[:4]):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_same_seed_same_perturbation_other_seed_other():
    a = digits_iv_arrays(severity=1.5, seed=3, noise=0.1)
    b = digits_iv_arrays(severity=1.5, seed=3, noise=0.1)
    c = digits_iv_arrays(severity=1.5, seed=4, noise=0.1)
    assert all(np.array_equal(x, y) for x, y in zip(a[:4], b[:4]))
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[2], c[2])
    assert np.array_equal(a[1], c[1]) and np.array_equal(a[3], c[3])  # same split, same labels


def test_image_keeps_its_perturbation_whatever_else_is_drawn():
    """An image's perturbation depends on (seed, split, draw, its index) only: the noise option does not change
    the five photometric parameters, and a test draw leaves the training images alone."""
    a = digits_iv_arrays(severity=2.0, seed=1)
    noisy = digits_iv_arrays(severity=2.0, seed=1, noise=0.2)
    for name in a[4]:
        assert np.array_equal(a[4][name], noisy[4][name]) and np.array_equal(a[5][name], noisy[5][name])
    draw1 = digits_iv_arrays(severity=2.0, seed=1, test_draw=1)
    assert np.array_equal(a[0], draw1[0])  # training images unchanged
    assert not np.array_equal(a[2], draw1[2])  # the test images perturbed afresh


def test_test_perturbations_independent_of_training_ones():
    _, _, _, _, p_tr, p_te = digits_iv_arrays(severity=2.0, seed=0)
    n = len(p_te["brightness"])
    for name in ("log2_contrast", "brightness", "log2_gamma", "ramp"):
        r = np.corrcoef(p_tr[name][:n], p_te[name])[0, 1]
        assert abs(r) < 0.2, name  # independent streams: |r| ~ N(0, 1/sqrt(360))
    # a test image's parameters are not those its index would get in the training stream
    from instabnn.model.data import _digits_split, perturb

    x, _, _, idx_te = _digits_split()
    _, as_train = perturb(x[idx_te], idx_te, 2.0, 0, "train")
    assert not np.allclose(as_train["brightness"], p_te["brightness"])


@pytest.mark.parametrize("size", [8, 16, 32])
def test_statistics_move_with_severity(size):
    """The spread of per-image mean and contrast over the test images grows with severity; no image is
    normalised (per-image means differ, nothing is rescaled to unit variance)."""
    spreads = []
    for severity in (0.0, 1.0, 2.0, 4.0):
        x = digits_iv_arrays(severity=severity, image_size=size, seed=2)[2]
        assert x.shape == (360, 1, size, size)
        means, stds = x.mean(axis=(1, 2, 3)), x.std(axis=(1, 2, 3))
        spreads.append((means.std(), np.log(stds).std()))
    for (m0, s0), (m1, s1) in zip(spreads, spreads[1:]):
        assert m1 > m0 and s1 > s0


def test_parameters_follow_the_documented_ranges():
    p = digits_iv_arrays(severity=2.0, seed=0)[4]
    assert np.all(np.abs(p["log2_contrast"]) <= 1.0) and np.all(np.abs(p["brightness"]) <= 0.5)
    assert np.all(np.abs(p["log2_gamma"]) <= 1.0) and np.all((p["ramp"] >= 0) & (p["ramp"] <= 0.5))
    assert p["brightness"].std() > 0.2  # uniform on [-0.5, 0.5]: std 0.29


@pytest.mark.parametrize("size", [16, 32])
def test_upsampled_severity_zero_is_bilinear_digits(size):
    """Separable bilinear interpolation at pixel centres (source coordinate (j + 1/2) 8/size - 1/2, clamped)."""
    up = np.zeros((size, 8))
    for j in range(size):
        c = min(max((j + 0.5) * 8 / size - 0.5, 0.0), 7.0)
        i0 = int(np.floor(c))
        up[j, i0] += 1 - (c - i0)
        up[j, min(i0 + 1, 7)] += c - i0
    x8 = digits_arrays()[2]
    got = digits_iv_arrays(severity=0.0, image_size=size)[2]
    assert np.allclose(got, up @ x8 @ up.T, atol=1e-6)


def test_splits_carry_parameters_and_augment():
    splits = load_splits("digits-iv", severity=1.0, image_size=16, seed=0)
    assert splits.image_size == 16 and splits.name == "digits-iv"
    assert len(splits.perturbations["test"]["brightness"]) == len(splits.test) == 360
    img, label = splits.train[0]
    assert tuple(img.shape) == (1, 16, 16)


@pytest.mark.parametrize("kwargs, culprit", [
    (dict(severity=-1.0), "--severity -1.0"), (dict(severity=float("nan")), "--severity nan"),
    (dict(image_size=12), "--image-size 12"), (dict(noise=-0.1), "--noise -0.1"), (dict(seed=-3), "seed -3"),
])
def test_bad_options_are_one_line_errors(kwargs, culprit):
    with pytest.raises(DataError, match=culprit) as info:
        digits_iv_arrays(**kwargs)
    assert "\n" not in str(info.value)


def test_options_for_other_data_sets_are_refused():
    with pytest.raises(DataError, match="digits-iv only"):
        load_splits("digits", severity=1.0)
    with pytest.raises(DataError, match="--image-size applies"):
        load_splits("digits", image_size=16)


def test_train_and_export_digits_iv(tmp_path, capsys):
    """--data digits-iv trains, its checkpoint records the options, and the export's equivalence check runs on the
    same digits-iv test images; a resume with another severity is refused."""
    import json

    from instabnn.model.export import export_checkpoint, read_metadata
    from instabnn.model.train import main

    from conftest import train_digits

    common = ["--data", "digits-iv", "--severity", "1.5", "--perturbation-seed", "7"]
    ckpt = train_digits(tmp_path, "--variant", "insta", "--epochs", "1", *common)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["data"] == "digits-iv" and result["config"]["image_size"] == 8
    report = export_checkpoint(ckpt, tmp_path / "model.onnx", n_check=3)
    assert report["check_inputs"].startswith("digits-iv test split") and report["check_n"] == 3
    meta = read_metadata(tmp_path / "model.onnx")
    assert meta["data"] == "digits-iv"
    assert json.loads(meta["data_options"]) == {"severity": 1.5, "image_size": 8, "noise": 0.0, "seed": 7}
    rc = main(["--out", str(tmp_path), "--resume", "--epochs", "1", "--no-progress", "--variant", "insta",
               "--data", "digits-iv", "--severity", "2", "--perturbation-seed", "7"])
    assert rc == 2 and "different data_options" in capsys.readouterr().err


def test_upsampled_network_exports_with_digits_iv_check_images(tmp_path):
    """A 16x16 digits network (untrained) exports; the equivalence check feeds it 16x16 digits-iv test images."""
    from instabnn.model.config import NetConfig
    from instabnn.model.export import export_model
    from instabnn.model.networks import build_network

    options = {"severity": 2.0, "image_size": 16, "noise": 0.1, "seed": 0}
    model = build_network(NetConfig(arch="digits", variant="insta", image_size=16))
    report = export_model(model, tmp_path / "m.onnx", {}, n_check=2, data="digits-iv", data_options=options)
    assert report["check_inputs"].startswith("digits-iv") and report["check_n"] == 2  # else ExportError


@pytest.mark.parametrize("args, culprit", [
    (["--data", "digits-iv", "--severity", "-1"], "--severity -1.0"),
    (["--data", "digits-iv", "--image-size", "24"], "--image-size 24"),
    (["--data", "digits", "--severity", "1"], "--severity: apply to --data digits-iv only"),
])
def test_train_cli_refuses_bad_data_options(tmp_path, capsys, args, culprit):
    from instabnn.model.train import main

    assert main([*args, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert culprit in err and "\n" not in err and not (tmp_path / "run").exists()
