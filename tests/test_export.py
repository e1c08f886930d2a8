"""QONNX export: qonnx execution equals the PyTorch eval output (<= 1e-5) for every network family; metadata
rebuilds the model; a failed export leaves the earlier file intact."""

from __future__ import annotations

import json

import pytest
import torch

from instabnn.model.config import NetConfig
from instabnn.model.export import (ExportError, config_from_onnx, export_checkpoint, export_model, main,
                                   read_metadata)
from instabnn.model.networks import build_network


def randomised(cfg: NetConfig, seed: int = 0):
    """A network with non-trivial state: random INSTA/RSign/RPReLU parameters, running statistics from a few
    train-mode passes, so that every term of every formula matters in the comparison."""
    torch.manual_seed(seed)
    model = build_network(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.split(".")[-1] in ("alpha", "beta", "threshold", "gamma", "zeta", "u", "v"):
                p.copy_(0.3 * torch.randn_like(p))
    model.train()
    c, h, w = model.input_shape
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, c, h, w))
    return model.eval()


FAST = [
    NetConfig(arch="digits", variant="baseline"),
    NetConfig(arch="digits", variant="insta"),
    NetConfig(arch="digits", variant="insta_plus", se_weight_bits=8),
    NetConfig(arch="digits", variant="insta_plus", g="sigmoid"),
    NetConfig(arch="digits", variant="latency_optimized", first_insta_stage=0),
    NetConfig(arch="digits", variant="insta", block_order="bn_sign_conv"),
    NetConfig(arch="digits", variant="baseline", block_order="bn_sign_conv", bn_affine=False),
    NetConfig(arch="digits", variant="insta", act_gradient="approxsign", residual_bits=4, g="tanh"),
    NetConfig(arch="resnet20", variant="insta"),
    NetConfig(arch="resnet20", variant="latency_optimized", shortcut="A"),
]
SLOW = [
    NetConfig(arch="reactnet18", variant="insta", image_size=32),
    NetConfig(arch="reactnet_a", variant="latency_optimized", image_size=32),
    NetConfig(arch="resnet20", variant="insta_plus", se_weight_bits=8, se_reduction=4),
    NetConfig(arch="reactnet18", variant="insta_plus", se_weight_bits=8, se_reduction=16),
    NetConfig(arch="reactnet_a", variant="insta", image_size=224),
]


def _check(cfg, tmp_path):
    model = randomised(cfg)
    out = tmp_path / "m.onnx"
    report = export_model(model, out, {"commit": "test"}, n_check=3)
    assert report["max_abs_diff"] <= 1e-5 and report["top1_agreement"] == 1.0
    insta = cfg.variant != "baseline"
    assert ("InstaStatistic" in report["op_types"]) == insta
    assert ("InstaShift" in report["op_types"]) == insta
    assert "BipolarQuant" in report["op_types"] and "Quant" in report["op_types"]
    assert config_from_onnx(out) == cfg
    return report


@pytest.mark.parametrize("cfg", FAST, ids=lambda c: f"{c.arch}-{c.variant}-{c.block_order}")
def test_export_equivalence(cfg, tmp_path):
    _check(cfg, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", SLOW, ids=lambda c: f"{c.arch}-{c.variant}")
def test_export_equivalence_large(cfg, tmp_path):
    _check(cfg, tmp_path)


def test_custom_nodes_are_in_the_project_domain(tmp_path):
    import onnx

    out = tmp_path / "m.onnx"
    export_model(randomised(NetConfig(arch="digits", variant="insta_plus")), out, {}, n_check=0)
    proto = onnx.load(str(out))
    domains = {n.domain for n in proto.graph.node if n.op_type.startswith("Insta")}
    assert domains == {"instabnn.model.onnx_ops"}
    shifts = [n for n in proto.graph.node if n.op_type == "InstaShift"]
    gs = sorted({a.s.decode() for n in shifts for a in n.attribute if a.name == "g"})
    assert gs == ["none", "tanh3"]  # INSTA-Th+ (g inside the SE) and INSTA-PReLU+


def test_exported_checkpoint_metadata_and_rebuild(tmp_path, digits_insta_ckpt, capsys):
    out = tmp_path / "digits.onnx"
    assert main(["--checkpoint", str(digits_insta_ckpt), "--out", str(out), "--check", "8"]) == 0
    meta = read_metadata(out)
    assert meta["network"] == "digits" and meta["variant"] == "insta" and len(meta["checkpoint_sha256"]) == 64
    assert meta["commit"] and json.loads(meta["input_shape"]) == [1, 1, 8, 8]
    report = json.loads(out.with_suffix(".export.json").read_text())
    assert report["check_n"] == 8 and report["max_abs_diff"] <= 1e-5
    rebuilt = build_network(config_from_onnx(out))
    assert sum(p.numel() for p in rebuilt.parameters()) > 0


def test_failed_export_leaves_earlier_file_intact(tmp_path, digits_insta_ckpt):
    out = tmp_path / "digits.onnx"
    export_checkpoint(digits_insta_ckpt, out, n_check=0)
    before = out.read_bytes()
    with pytest.raises(ExportError, match="nothing written"):
        export_checkpoint(digits_insta_ckpt, out, n_check=2, tolerance=-1.0)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["digits.onnx"]  # no temporary left behind


def test_unexplained_difference_is_an_error(tmp_path, digits_insta_ckpt, monkeypatch):
    """A real difference (here: the classifier bias changed in the graph) is not a rounding tie."""
    from qonnx.util import cleanup

    real_cleanup = cleanup.cleanup_model

    def corrupting_cleanup(wrapper, *a, **k):  # export imports cleanup_model at call time, so this takes effect
        wrapper = real_cleanup(wrapper, *a, **k)
        gemm = wrapper.get_nodes_by_op_type("Gemm")[0]
        bias = wrapper.get_initializer(gemm.input[2])
        wrapper.set_initializer(gemm.input[2], bias + 0.01)
        return wrapper

    monkeypatch.setattr(cleanup, "cleanup_model", corrupting_cleanup)
    with pytest.raises(ExportError, match="not explained by a rounding tie"):
        export_checkpoint(digits_insta_ckpt, tmp_path / "bad.onnx", n_check=2)
    assert not (tmp_path / "bad.onnx").exists()


def test_trained_checkpoint_on_many_test_images(tmp_path, digits_insta_ckpt):
    report = export_checkpoint(digits_insta_ckpt, tmp_path / "d.onnx", n_check=100)
    assert report["check_n"] == 100 and report["max_abs_diff"] <= 1e-5
    assert len(report["images_at_rounding_ties"]) <= 5  # rare: a value within 1e-4 steps of a tie
    assert all("rounding tie at" in why for why in report["images_at_rounding_ties"].values())


def test_export_cli_errors(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.pt" in err[0]
    with pytest.raises(ExportError, match="no such file"):
        config_from_onnx(tmp_path / "none.onnx")
