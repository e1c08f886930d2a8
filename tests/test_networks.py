"""Network construction: every arch x variant, the latency-optimized stage choice, shortcut / block-order options
and configuration errors (docs/insta-bnn.md Sec. 1-3, supplementary Sec. D and G)."""

from __future__ import annotations

import pytest
import torch

from instabnn.model import modules as M
from instabnn.model.config import ConfigError, NetConfig
from instabnn.model.networks import BinaryConvBlock, DuplicatedPointwiseBlock, build_network

ARCHS = ("digits", "resnet20", "reactnet18", "reactnet_a")
VARIANTS = ("baseline", "insta", "insta_plus", "latency_optimized")
# small inputs: the ImageNet networks are fully convolutional up to the global pool
INPUT = {"digits": (1, 8), "resnet20": (3, 32), "reactnet18": (3, 32), "reactnet_a": (3, 32)}
CLASSES = {"digits": 10, "resnet20": 10, "reactnet18": 1000, "reactnet_a": 1000}
N_BLOCKS = {"digits": 4, "resnet20": 18, "reactnet18": 16, "reactnet_a": 26}
DEFAULT_LATENCY_STAGE = {"digits": 1, "resnet20": 1, "reactnet18": 1, "reactnet_a": 2}

THRESHOLDS = {"baseline": M.RSign, "insta": M.InstaTh, "insta_plus": M.InstaThPlus}
ACTIVATIONS = {"baseline": M.RPReLU, "insta": M.InstaPReLU, "insta_plus": M.InstaPReLUPlus}


def blocks_with_stage(net):
    blocks = list(net.blocks.children())
    assert len(blocks) == len(net.specs)
    assert [b.name for b in blocks] == [s.name for s in net.specs]
    return [(b, s) for b, s in zip(blocks, net.specs)]


def check_block_kinds(block, kind: str):
    assert type(block.threshold) is THRESHOLDS[kind], (block.name, type(block.threshold))
    assert type(block.act) is ACTIVATIONS[kind], (block.name, type(block.act))


def run_eval(net, arch, batch=2):
    ch, size = INPUT[arch]
    torch.manual_seed(1)
    x = torch.randn(batch, ch, size, size)
    net.eval()
    with torch.no_grad():
        return net(x)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_build_and_forward(arch, variant):
    torch.manual_seed(0)
    net = build_network(NetConfig(arch=arch, variant=variant))
    pairs = blocks_with_stage(net)
    assert len(pairs) == N_BLOCKS[arch]
    assert net.input_shape[0] == INPUT[arch][0]

    first = DEFAULT_LATENCY_STAGE[arch] if variant == "latency_optimized" else 0
    for block, spec in pairs:
        expect_insta = variant != "baseline" and spec.stage >= first
        assert block.insta == expect_insta, (block.name, spec.stage)
        kind = ("insta_plus" if variant == "insta_plus" else "insta") if expect_insta else "baseline"
        check_block_kinds(block, kind)
        if variant == "latency_optimized" and expect_insta:
            # statistics reuse ("auto") exactly where the INSTA-Th and INSTA-PReLU channel counts agree
            same = spec.cin == spec.cout and isinstance(block, BinaryConvBlock)
            assert (block.act.reuse is not None) == same, block.name
        elif expect_insta:
            assert block.act.reuse is None, block.name
    if variant == "latency_optimized":
        stages = {s.stage for _, s in pairs}
        assert min(stages) < first <= max(stages)  # both kinds of block are present

    # eval mode uses the running statistics and leaves them alone
    before = {k: v.clone() for k, v in net.state_dict().items() if k.endswith("running_mean")}
    y = run_eval(net, arch)
    assert y.shape == (2, CLASSES[arch])
    assert torch.isfinite(y).all()
    assert not torch.allclose(y[0], y[1])  # the output depends on the input
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_reactnet_a_latency_stage_is_the_28_pixel_stage():
    # 224 -> 112 (stem) -> 56 (block1) -> 28 (block3): the third halving starts stage 2 (supplementary Sec. D)
    net = build_network(NetConfig(arch="reactnet_a", variant="baseline"))
    stage_of = {s.name: s.stage for s in net.specs}
    # the five channel-doubling 1x1 convolutions are the duplicated C -> C pairs of ReActNet-A
    doubled = [b.name for b in net.blocks if isinstance(b, DuplicatedPointwiseBlock)]
    assert doubled == [f"block{i}.pw1x1" for i in (0, 1, 3, 5, 11)]
    assert stage_of["block2.pw1x1"] == 1 and stage_of["block3.dw3x3"] == 2
    ch, _ = INPUT["reactnet_a"]
    sizes = {}
    hooks = [b.register_forward_hook(lambda m, i, o, name=b.name: sizes.__setitem__(name, o.shape[-1]))
             for b in net.blocks]
    net.eval()
    with torch.no_grad():
        net(torch.randn(1, ch, 64, 64))
    for h in hooks:
        h.remove()
    assert sizes["block2.pw1x1"] == 64 // 4 and sizes["block3.dw3x3"] == 64 // 8  # 224: 56 -> 28


@pytest.mark.parametrize("arch,variant,first", [
    ("digits", "insta", 1),
    ("resnet20", "latency_optimized", 2),
    ("resnet20", "latency_optimized", 0),
    ("resnet20", "insta_plus", 1),
])
def test_first_insta_stage_override(arch, variant, first):
    net = build_network(NetConfig(arch=arch, variant=variant, first_insta_stage=first))
    assert net.cfg.effective_first_insta_stage == first
    plus = variant == "insta_plus"
    n_insta = 0
    for block, spec in blocks_with_stage(net):
        insta = spec.stage >= first
        n_insta += insta
        assert block.insta == insta, block.name
        check_block_kinds(block, ("insta_plus" if plus else "insta") if insta else "baseline")
    assert 0 < n_insta
    y = run_eval(net, arch)
    assert y.shape == (2, 10)


def test_shortcut_a_resnet20():
    net_a = build_network(NetConfig(arch="resnet20", variant="insta", shortcut="A"))
    net_b = build_network(NetConfig(arch="resnet20", variant="insta", shortcut="B"))
    names_a = [n for n, _ in net_a.named_parameters()]
    # option A has no 1x1 projection: no shortcut parameters at all
    assert not any(".shortcut." in n for n in names_a)
    assert any(".shortcut.proj" in n for n, _ in net_b.named_parameters())
    assert sum(p.numel() for p in net_a.parameters()) < sum(p.numel() for p in net_b.parameters())
    assert run_eval(net_a, "resnet20").shape == (2, 10)
    # the downsampling shortcut subsamples and zero-pads the new channels
    block = net_a.blocks[6]
    assert block.name == "stage1.block0.conv0"
    x = torch.randn(2, 16, 8, 8)
    sc = block.shortcut(x)
    assert sc.shape == (2, 32, 4, 4)
    assert torch.equal(sc[:, 8:24], x[:, :, ::2, ::2])
    assert not sc[:, :8].any() and not sc[:, 24:].any()


@pytest.mark.parametrize("arch", ["digits", "reactnet18", "reactnet_a"])
def test_shortcut_a_rejected_elsewhere(arch):
    with pytest.raises(ConfigError, match="shortcut"):
        NetConfig(arch=arch, shortcut="A")


@pytest.mark.parametrize("variant", ["baseline", "insta"])
def test_bn_sign_conv_order(variant):
    net = build_network(NetConfig(arch="digits", variant=variant, block_order="bn_sign_conv"))
    for block in net.blocks:
        assert block.bn is None
        assert type(block.act) is M.PReLU
        assert type(block.threshold) is (M.InstaTh if variant == "insta" else M.BatchNormSign)
    assert run_eval(net, "digits").shape == (2, 10)
    net.train()
    net(torch.randn(3, 1, 8, 8)).sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_bn_affine_false_removes_affine_parameters():
    with_affine = build_network(NetConfig(arch="resnet20", variant="baseline", block_order="bn_sign_conv"))
    without = build_network(NetConfig(arch="resnet20", variant="baseline", block_order="bn_sign_conv",
                                      bn_affine=False))
    for block in with_affine.blocks:
        assert block.threshold.bn.weight is not None and block.threshold.bn.bias is not None
    for block in without.blocks:
        assert block.threshold.bn.weight is None and block.threshold.bn.bias is None
        assert not list(block.threshold.parameters())
        assert block.threshold.bn.running_mean is not None  # the normalisation itself stays
    removed = sum(p.numel() for p in with_affine.parameters()) - sum(p.numel() for p in without.parameters())
    assert removed == sum(2 * spec.cin for spec in with_affine.specs)
    assert run_eval(without, "resnet20").shape == (2, 10)


@pytest.mark.parametrize("changes", [
    {"block_order": "bn_sign_conv", "variant": "insta_plus"},
    {"block_order": "bn_sign_conv", "variant": "latency_optimized"},
    {"block_order": "bn_sign_conv", "variant": "insta", "stats_reuse": "auto"},
])
def test_bn_sign_conv_rejects_other_variants(changes):
    with pytest.raises(ConfigError, match="block_order"):
        NetConfig(arch="digits", **changes)


@pytest.mark.parametrize("field,value", [
    ("arch", "resnet56"),
    ("variant", "insta_pp"),
    ("g", "relu"),
    ("stats_reuse", "some"),
    ("block_order", "conv_bn"),
    ("act_gradient", "tanh"),
    ("se_weight_bits", 4),
])
def test_unknown_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        NetConfig(**{field: value})
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        build_network({"arch": "digits", field: value} if field != "arch" else {field: value})


def test_unknown_field_and_baseline_reuse_rejected():
    with pytest.raises(ConfigError, match="colour"):
        build_network({"arch": "digits", "colour": "blue"})
    with pytest.raises(ConfigError, match="stats_reuse"):
        NetConfig(variant="baseline", stats_reuse="auto")
    with pytest.raises(ConfigError, match="first_insta_stage"):
        NetConfig(first_insta_stage=-1)


def _binary_convs(net):
    for block in net.blocks:
        yield block.conv


@pytest.mark.parametrize("binary", [True, False])
def test_binary_weights_flag(binary):
    torch.manual_seed(0)
    net = build_network(NetConfig(arch="digits", variant="insta", binary_weights=binary))
    for conv in _binary_convs(net):
        qw = conv.quant_weight()
        value = (qw.value if hasattr(qw, "value") else qw).detach()
        w = conv.weight.detach()
        distinct = [torch.unique(value[o].abs()).numel() for o in range(value.shape[0])]
        if binary:
            # one magnitude per output channel: sign(w) * mean|w|
            assert distinct == [1] * value.shape[0]
            torch.testing.assert_close(value, torch.sign(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True))
        else:
            assert min(distinct) > 2
            torch.testing.assert_close(value, w)
    assert run_eval(net, "digits").shape == (2, 10)


def test_binary_conv_sees_only_plus_minus_one_with_minus_one_padding():
    net = build_network(NetConfig(arch="digits", variant="insta"))
    seen = []
    hook = net.blocks[0].conv.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    run_eval(net, "digits")
    hook.remove()
    b = seen[0]
    b = b.value if hasattr(b, "value") else b
    assert b.shape[-2:] == (10, 10)  # 8x8 padded by 1
    assert set(torch.unique(b).tolist()) == {-1.0, 1.0}
    assert (b[:, :, 0, :] == -1).all() and (b[:, :, -1, :] == -1).all()
    assert (b[:, :, :, 0] == -1).all() and (b[:, :, :, -1] == -1).all()
