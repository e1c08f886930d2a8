"""real_valued_layers (supplementary Sec. A.2: only 1- and 32-bit precision): the model, its export, and the
hardware flow's refusal."""

from __future__ import annotations

import pytest
import torch
from brevitas.nn import QuantConv2d
from torch import nn

from instabnn.model.config import ConfigError, NetConfig
from instabnn.model.networks import build_network

CFG = dict(arch="digits", variant="insta", real_valued_layers=True, residual_bits=None)


def test_first_last_and_shortcut_layers_are_real_valued():
    net = build_network(NetConfig(**CFG))
    assert type(net.stem[0]) is nn.Conv2d and type(net.classifier) is nn.Linear
    assert isinstance(net.input_quant, nn.Identity)
    projections = [b.shortcut.proj[0] for b in net.blocks if b.shortcut.proj is not None]
    assert projections and all(type(p) is nn.Conv2d for p in projections)
    assert all(isinstance(b.conv, QuantConv2d) for b in net.blocks)  # the binary convolutions stay binary
    with torch.no_grad():
        assert torch.isfinite(net.eval()(torch.rand(2, 1, 8, 8))).all()


def test_needs_a_real_residual_stream():
    with pytest.raises(ConfigError, match="real_valued_layers .*residual_bits=None"):
        NetConfig(arch="digits", real_valued_layers=True)


def test_exports_but_the_hardware_flow_refuses(tmp_path):
    from instabnn.hw import lower
    from instabnn.contract import layers as L
    from instabnn.model.export import export_model
    from instabnn.model.hardware_exact import integer_network

    torch.manual_seed(0)
    model = build_network(NetConfig(**CFG)).eval()
    report = export_model(model, tmp_path / "m.onnx", {}, n_check=2)
    assert report["check_n"] == 2
    with pytest.raises(lower.LoweringError, match=r"\(Conv\): real-valued first layer .*Sec. A.2"):
        lower.lower_file(tmp_path / "m.onnx")
    with pytest.raises(L.ContractError, match="real_valued_layers .*no integer form"):
        integer_network(model)


def test_train_cli_option(capsys, tmp_path):
    from instabnn.model.train import build_parser, main, spec_from_args

    net = spec_from_args(build_parser().parse_args(["--real-valued-layers", "--residual-bits", "0"])).net
    assert net["real_valued_layers"] is True and net["residual_bits"] is None
    assert main(["--real-valued-layers", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "residual_bits=None" in capsys.readouterr().err


def test_cost_counts_them_as_32_bit_layers():
    from instabnn.model import cost as C

    real = C.model_cost(NetConfig(**CFG))
    stem = next(i for i in real.layers if i.name == "stem.0")
    assert stem.category == "real_conv" and stem.bits == 32 and stem.flops > 0
