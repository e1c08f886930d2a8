"""digits-iv through the hardware side: the lowered graph keeps the data a network was trained on, and the
co-simulation and the deployment's example images use the same digits-iv test images (severity, image size,
noise, perturbation seed of the training run) unless an option is overridden explicitly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instabnn.contract.layers import quantize_int
from instabnn.deploy import assemble as A
from instabnn.hw import compile as C
from instabnn.hw import folding, lower
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


def test_deploy_example_images_are_the_training_data(run):
    data, description = A.digits_test_images(run / "rtl", 6)
    x, y, expected = digits_test_split("digits-iv", TRAINED)
    assert description == expected and np.array_equal(data["labels"], y[:6])
    m = cosim.load_manifest(run / "rtl")
    model = cosim.lowered_model(m, run / "rtl")
    assert np.array_equal(data["q0"], _quantized(model, x[:6]))
    assert np.array_equal(data["reference_logits"], cosim.reference_logits(model, _quantized(model, x[:6]), False))
