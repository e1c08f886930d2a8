"""The binarizer and the activation as two independent choices (NetConfig.binarizer / activation, --binarizer /
--activation), the variants as presets of both, and the QONNX export and lowering of every combination."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from instabnn.model import modules as M
from instabnn.model.config import ACTIVATIONS, BINARIZERS, VARIANT_MODULES, ConfigError, NetConfig
from instabnn.model.networks import build_network

THRESHOLD_TYPES = {"sign": M.Sign, "rsign": M.RSign, "insta_th": M.InstaTh, "insta_th_plus": M.InstaThPlus}
ACTIVATION_TYPES = {"prelu": M.PReLU, "rprelu": M.RPReLU, "insta_prelu": M.InstaPReLU,
                    "insta_prelu_plus": M.InstaPReLUPlus}
COMBINATIONS = list(itertools.product(BINARIZERS, ACTIVATIONS))


@pytest.mark.parametrize("binarizer, activation", COMBINATIONS)
def test_every_combination_builds_the_chosen_modules(binarizer, activation):
    net = build_network(NetConfig(arch="digits", binarizer=binarizer, activation=activation))
    for block in net.blocks:
        assert type(block.threshold) is THRESHOLD_TYPES[binarizer], block.name
        assert type(block.act) is ACTIVATION_TYPES[activation], block.name
    with torch.no_grad():
        assert torch.isfinite(net.eval()(torch.rand(2, 1, 8, 8))).all()


@pytest.mark.parametrize("variant", sorted(VARIANT_MODULES))
def test_variants_are_presets_of_both_modules(variant):
    """A variant and its explicit module pair build the same parameters (latency_optimized: in its INSTA stages)."""
    binarizer, activation = VARIANT_MODULES[variant]
    cfg = NetConfig(arch="resnet20", variant=variant)
    assert (cfg.effective_binarizer, cfg.effective_activation) == (binarizer or "rsign", activation)
    explicit = NetConfig(arch="resnet20", variant=variant, binarizer=binarizer or "rsign", activation=activation)
    a, b = build_network(cfg).state_dict(), build_network(explicit).state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)


def test_insta_th_alone_and_plain_prelu_baseline():
    th_alone = build_network(NetConfig(arch="resnet20", binarizer="insta_th", activation="rprelu"))
    assert all(isinstance(b.threshold, M.InstaTh) and isinstance(b.act, M.RPReLU) for b in th_alone.blocks)
    prelu = build_network(NetConfig(arch="resnet20", variant="baseline", activation="prelu"))
    assert all(isinstance(b.threshold, M.RSign) and type(b.act) is M.PReLU for b in prelu.blocks)
    assert sum(p.numel() for n, p in prelu.named_parameters() if n.endswith("act.prelu.weight")) > 0


def test_latency_optimized_falls_back_before_its_first_insta_stage():
    net = build_network(NetConfig(arch="resnet20", variant="latency_optimized", activation="insta_prelu_plus"))
    kinds = {(type(b.threshold), type(b.act)) for b, s in zip(net.blocks, net.specs) if s.stage == 0}
    assert kinds == {(M.RSign, M.RPReLU)}
    kinds = {(type(b.threshold), type(b.act)) for b, s in zip(net.blocks, net.specs) if s.stage >= 1}
    assert kinds == {(M.InstaTh, M.InstaPReLUPlus)}


@pytest.mark.parametrize("changes, culprit", [
    (dict(binarizer="insta"), "binarizer='insta'"),
    (dict(activation="relu"), "activation='relu'"),
    (dict(binarizer="rsign", stats_reuse="auto"), "binarizer='rsign'"),
    (dict(activation="rprelu", stats_reuse="auto"), "activation='rprelu'"),
    (dict(block_order="bn_sign_conv", binarizer="insta_th"), "leave binarizer and activation unset"),
])
def test_bad_choices_are_refused(changes, culprit):
    with pytest.raises(ConfigError, match=culprit):
        NetConfig(**changes)


def test_train_cli_wires_the_choices(tmp_path, capsys):
    from instabnn.model.train import build_parser, main, spec_from_args

    args = build_parser().parse_args(["--variant", "baseline", "--binarizer", "insta_th", "--activation", "prelu"])
    net = spec_from_args(args).net
    assert (net["variant"], net["binarizer"], net["activation"]) == ("baseline", "insta_th", "prelu")
    assert main(["--activation", "relu6", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "activation='relu6'" in err and "\n" not in err


def _randomise(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial thresholds, activations and statistics (an untrained network has alpha = beta = 0 etc.)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.split(".")[-1] in ("alpha", "beta", "threshold", "gamma", "zeta", "u", "v"):
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(0.2 * torch.randn(buf.shape, generator=g))
            elif name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=g))
    return net.eval()


def _export_and_lower(binarizer, activation, tmp_path, stats_reuse="none"):
    from instabnn.hw import lower
    from instabnn.model.data import digits_arrays
    from instabnn.model.export import export_model
    from instabnn.model.hardware_exact import HardwareExact

    torch.manual_seed(0)
    cfg = NetConfig(arch="digits", binarizer=binarizer, activation=activation, stats_reuse=stats_reuse)
    model = _randomise(build_network(cfg), 1)
    report = export_model(model, tmp_path / "m.onnx", {}, n_check=4)  # raises unless qonnx == PyTorch
    assert report["check_n"] == 4
    x = digits_arrays()[2][:32]
    net = lower.lower_file(tmp_path / "m.onnx")
    assert np.array_equal(net.run(net.quantize_input(x)), HardwareExact(model).integer_logits(x))
    return net


@pytest.mark.parametrize("binarizer, activation", [("insta_th", "rprelu"), ("sign", "prelu")])
def test_new_combinations_export_and_lower(binarizer, activation, tmp_path):
    """The QONNX round trip holds and the lowered integer network equals the hardware-exact PyTorch mode."""
    net = _export_and_lower(binarizer, activation, tmp_path)
    assert {b.tail.act for b in net.blocks} == {"insta" if activation.startswith("insta") else "rprelu"}


@pytest.mark.slow
@pytest.mark.parametrize("binarizer, activation", COMBINATIONS)
def test_every_combination_exports_and_lowers(binarizer, activation, tmp_path):
    _export_and_lower(binarizer, activation, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("binarizer, activation", [("insta_th", "insta_prelu_plus"),
                                                   ("insta_th_plus", "insta_prelu")])
def test_mixed_statistics_reuse_exports_and_lowers(binarizer, activation, tmp_path):
    _export_and_lower(binarizer, activation, tmp_path, stats_reuse="auto")
