"""The cost model (supplementary Sec. C, docs/insta-bnn.md Sec. 5): every rule on tiny blocks counted by hand, the
orderings between variants, the comparison profiles, one ImageNet-shape network against a hand formula, and the CLI."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from torch import nn

from instabnn.model import cost as C
from instabnn.model.config import NetConfig
from instabnn.model.networks import BinaryConvBlock, DuplicatedPointwiseBlock, build_network

FP = 32


def block(cin, cout, size, stride=1, insta=False, kernel=3, profile=C.AS_BUILT, **cfg) -> C.CostReport:
    """Count one BinaryConvBlock on a (cin, size, size) input."""
    cfg = NetConfig(arch="resnet20", **{"variant": "insta" if insta else "baseline", **cfg})
    torch.manual_seed(0)
    return C.count_costs(BinaryConvBlock(cfg, "b", cin, cout, kernel, stride, insta), (cin, size, size),
                         profile=profile)


def one(report: C.CostReport, category: str) -> C.LayerCost:
    items = report.category(category)
    assert len(items) == 1, (category, items)
    return items[0]


def totals(report: C.CostReport):
    return report.bops, report.flops, report.params_bits


# ------------------------------------------------------------------------------------------------ single blocks


def test_baseline_block_by_hand():
    """sign -> 3x3 binary conv -> BN -> + x -> RPReLU: the XNOR scale merges into the BN, RSign C, RPReLU 3C."""
    c, h = 8, 6
    r = block(c, c, h)
    conv = one(r, "binary_conv")
    assert (conv.bops, conv.flops, conv.params, conv.bits) == (h * h * c * c * 9, 0, c * c * 9, 1)
    scale = one(r, "weight_scale")
    assert (scale.flops, scale.params) == (0, 0) and "merged" in scale.note
    bn = one(r, "batchnorm")
    assert (bn.flops, bn.params) == (h * h * c, 2 * c)
    assert (one(r, "rsign").params, one(r, "rsign").flops) == (c, 0)
    assert (one(r, "rprelu").params, one(r, "rprelu").flops) == (3 * c, 0)
    assert one(r, "sign").flops == 0
    assert totals(r) == (h * h * c * c * 9, h * h * c, c * c * 9 + FP * (c + 2 * c + 3 * c))
    assert r.ops == r.flops + r.bops / 64 == 288 + 20736 / 64


def test_downsampling_shortcut_option_b():
    """AvgPool (free) + real 1x1 conv (FLOPs, 32-bit) + BN (HWC, 2C) on the shortcut."""
    cin, cout, h = 8, 16, 8
    ho = h // 2
    r = block(cin, cout, h, stride=2)
    assert one(r, "pool").flops == 0
    proj = one(r, "real_conv")
    assert (proj.flops, proj.bops, proj.params, proj.bits) == (ho * ho * cout * cin, 0, cout * cin, FP)
    assert proj.note == "shortcut"
    bns = r.category("batchnorm")
    assert [(b.flops, b.params) for b in bns] == [(ho * ho * cout, 2 * cout)] * 2  # block BN, shortcut BN
    assert one(r, "binary_conv").bops == ho * ho * cout * cin * 9
    assert r.flops == ho * ho * cout * cin + 2 * ho * ho * cout
    assert r.params_bits == cout * cin * 9 + FP * (cin + 2 * cout + cout * cin + 2 * cout + 3 * cout)


def test_bn_sign_conv_order_bn_folds_into_sign_and_scale_does_not_merge():
    """BN -> sign: C parameters, no multiplies; conv -> PReLU: the weight scale costs Hout*Wout*Cout (+ Cout)."""
    c, h = 8, 6
    r = block(c, c, h, block_order="bn_sign_conv")
    bn = one(r, "batchnorm_sign")
    assert (bn.flops, bn.params) == (0, c)
    assert not r.category("batchnorm")
    scale = one(r, "weight_scale")
    assert (scale.flops, scale.params, scale.bits) == (h * h * c, c, FP)
    assert (one(r, "prelu").params, one(r, "prelu").flops) == (c, 0)
    assert totals(r) == (h * h * c * c * 9, h * h * c, c * c * 9 + FP * (c + c + c))
    # stride 2: the scale counts the conv's *output* map
    r2 = block(c, c, h, stride=2, block_order="bn_sign_conv")
    assert one(r2, "weight_scale").flops == (h // 2) ** 2 * c


def test_bn_without_sign_keeps_its_multiplies():
    """A real-valued teacher (no binarizer): the BN is not followed by a sign, the conv is a real conv."""
    c, h = 8, 6
    r = block(c, c, h, block_order="bn_sign_conv", binary_acts=False)
    assert (one(r, "batchnorm").flops, one(r, "batchnorm").params) == (h * h * c, 2 * c)
    assert r.bops == 0 and not r.category("binary_conv")
    conv = one(r, "real_conv")
    assert (conv.flops, conv.bits) == (h * h * c * c * 9, 1)  # 1-bit weights on real inputs: FP multiplies
    stage1 = block(c, c, h, binary_weights=False)  # real weights, binary activations
    assert stage1.bops == 0 and one(stage1, "real_conv").flops == h * h * c * c * 9
    assert one(stage1, "real_conv").bits == FP and not stage1.category("weight_scale")


def test_insta_th_and_insta_prelu():
    """INSTA-Th: 4C, HWC + 2HWC + 2C. INSTA-PReLU: 5C, HWC + 2HWC + 3C."""
    c, h = 8, 6
    hwc = h * h * c
    r = block(c, c, h, insta=True)
    th = one(r, "insta_th")
    assert (th.params, th.flops, th.bits) == (4 * c, hwc + 2 * hwc + 2 * c, FP)
    act = one(r, "insta_prelu")
    assert (act.params, act.flops) == (5 * c, hwc + 2 * hwc + 3 * c)
    assert not r.category("stats_reuse")
    base = block(c, c, h)
    assert r.bops == base.bops
    assert r.flops - base.flops == (3 * hwc + 2 * c) + (3 * hwc + 3 * c)
    assert r.params_bits - base.params_bits == FP * ((4 * c - c) + (5 * c - 3 * c))


def test_insta_th_counts_its_input_map_and_prelu_its_output_map():
    cin, cout, h = 8, 16, 8
    r = block(cin, cout, h, stride=2, insta=True)
    assert one(r, "insta_th").flops == 3 * h * h * cin + 2 * cin
    assert one(r, "insta_prelu").flops == 3 * (h // 2) ** 2 * cout + 3 * cout
    assert (one(r, "insta_th").params, one(r, "insta_prelu").params) == (4 * cin, 5 * cout)


def test_statistics_reuse():
    """Reuse drops the INSTA-PReLU's cube (2HWC) and spatial mean (3C -> 2C) and adds 2C parameters (u, v)."""
    c, h = 8, 6
    hwc = h * h * c
    plain = block(c, c, h, insta=True)
    reuse = block(c, c, h, insta=True, stats_reuse="all")
    act = one(reuse, "insta_prelu")
    assert (act.params, act.flops) == (5 * c, hwc + 2 * c)
    extra = one(reuse, "stats_reuse")
    assert (extra.params, extra.flops) == (2 * c, 0)
    assert plain.flops - reuse.flops == 2 * hwc + c
    assert reuse.params_bits - plain.params_bits == FP * 2 * c
    assert one(reuse, "insta_th").flops == one(plain, "insta_th").flops  # the INSTA-Th still computes s


@pytest.mark.parametrize("reuse", ["none", "all"])
def test_se_plus_modules(reuse):
    """INSTA-Th+ / INSTA-PReLU+: alpha replaced by 2C^2/r 8-bit FC weights (MACs as FLOPs) + C + C/r LSQ steps."""
    c, h, r_ = 16, 4, 4
    hwc = h * h * c
    fc = 2 * c * c // r_
    r = block(c, c, h, insta=True, variant="insta_plus", se_reduction=r_, se_weight_bits=8, stats_reuse=reuse)
    th, act = one(r, "insta_th_plus"), one(r, "insta_prelu_plus")
    assert (th.params, th.flops) == (3 * c, 3 * hwc + 2 * c)
    if reuse == "none":
        assert (act.params, act.flops) == (4 * c, 3 * hwc + 3 * c)
    else:
        assert (act.params, act.flops) == (4 * c, hwc + 2 * c) and one(r, "stats_reuse").params == 2 * c
    se = r.category("se_fc")
    assert [(s.params, s.bits, s.flops) for s in se] == [(fc, 8, fc)] * 2
    lsq = r.category("se_lsq")
    assert [(s.params, s.bits, s.flops) for s in lsq] == [(c + c // r_, FP, c + c // r_)] * 2
    # against the plain INSTA modules: -C (alpha) per module, + SE
    plain = block(c, c, h, insta=True, stats_reuse=reuse)
    assert r.params_bits - plain.params_bits == 2 * (-FP * c + 8 * fc + FP * (c + c // r_))
    assert r.flops - plain.flops == 2 * (fc + c + c // r_)


def test_se_real_weights_have_no_step_sizes():
    c, h = 16, 4
    r = block(c, c, h, insta=True, variant="insta_plus", se_reduction=4, se_weight_bits=None)
    assert [s.bits for s in r.category("se_fc")] == [FP, FP]
    assert not r.category("se_lsq")


@pytest.mark.parametrize("variant,reuse", [("baseline", "none"), ("insta", "none"), ("insta", "all"),
                                           ("insta_plus", "none"), ("insta_plus", "all")])
def test_rule_parameter_counts_match_the_modules(variant, reuse):
    """RSign C, RPReLU 3C, INSTA-Th 4C, INSTA-PReLU 5C (+2C reuse), "+" with SE and LSQ steps: the rules' counts
    equal the tensors the modules actually hold (parameters + running mean / variance)."""
    cfg = NetConfig(arch="resnet20", variant=variant, stats_reuse=reuse, se_weight_bits=8)
    torch.manual_seed(0)
    blk = BinaryConvBlock(cfg, "b", 16, 16, 3, 1, variant != "baseline")
    r = C.count_costs(blk, (16, 4, 4))
    for part in ("threshold", "act"):
        module = getattr(blk, part)
        held = sum(p.numel() for p in module.parameters())
        held += sum(b.numel() for n, b in module.named_buffers() if n.endswith(("running_mean", "running_var")))
        counted = sum(item.params for item in r.layers if item.name == part or item.name.startswith(part + "."))
        assert counted == held, part


def test_duplicated_pointwise_block():
    """ReActNet-A channel doubling: two binary 1x1 convs, each merged into its BN; one RSign, RPReLU on 2C."""
    c, h = 8, 4
    cfg = NetConfig(arch="reactnet_a", variant="baseline")
    torch.manual_seed(0)
    r = C.count_costs(DuplicatedPointwiseBlock(cfg, "p", c, False), (c, h, h))
    assert [(x.bops, x.params) for x in r.category("binary_conv")] == [(h * h * c * c, c * c)] * 2
    assert all(x.flops == 0 for x in r.category("weight_scale"))
    assert totals(r) == (2 * h * h * c * c, 2 * h * h * c, 2 * c * c + FP * (c + 2 * 2 * c + 3 * 2 * c))


def test_unknown_parametrised_module_is_an_error():
    class Mystery(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.w.view(1, -1, 1, 1)

    with pytest.raises(C.CostError, match="Mystery"):
        C.count_costs(nn.Sequential(nn.Conv2d(3, 3, 1), Mystery()), (3, 4, 4))
    with pytest.raises(C.CostError, match="input shape"):
        C.count_costs(nn.Sequential(nn.Conv2d(3, 3, 1)))


# ------------------------------------------------------------------------------------------------ networks


def test_digits_network_totals_and_report():
    r = C.model_cost(NetConfig(arch="digits", variant="insta"))
    assert r.input_shape == (1, 8, 8)
    assert r.ops == r.flops + r.bops / C.BOPS_PER_OP
    d = r.to_dict(layers=True)
    assert d["ops"] == r.ops and d["params_bits"] == r.params_bits
    for key in ("bops", "flops", "params", "params_bits"):
        assert sum(row[key] for row in d["breakdown"].values()) == d[key]
    assert sum(item["params_bits"] for item in d["layers"]) == r.params_bits
    # first conv and classifier are real (32-bit FLOPs): stem 8x8x32x1x9, classifier 64x10
    reals = r.category("real_conv") + r.category("real_linear")
    assert reals[0].flops == 8 * 8 * 32 * 9 and reals[-1].flops == 64 * 10 and reals[-1].params == 64 * 10 + 10
    assert len(r.category("binary_conv")) == 4 and len(r.category("insta_th")) == 4


@functools.lru_cache(maxsize=None)
def cached(cfg: NetConfig, profile: str = "as_built") -> C.CostReport:
    """Network builds dominate the run time (Brevitas): each (config, profile) is counted once per session."""
    return C.model_cost(cfg, profile)


@pytest.mark.parametrize("arch,size,variants", [
    ("resnet20", None, ("baseline", "insta", "insta_plus", "latency_optimized")),
    ("reactnet18", 64, ("baseline", "insta", "latency_optimized")),  # ("+" builds are slow; the "+" rules are
    ("reactnet_a", 32, ("baseline", "insta", "latency_optimized")),  # checked on blocks above and on resnet20)
])
def test_variant_orderings(arch, size, variants):
    reports = {v: cached(NetConfig(arch=arch, variant=v, image_size=size,
                                   se_weight_bits=8 if v == "insta_plus" else None)) for v in variants}
    base, insta, lat = reports["baseline"], reports["insta"], reports["latency_optimized"]
    assert base.bops == insta.bops == lat.bops > 0
    assert base.flops < lat.flops < insta.flops
    assert base.ops < lat.ops < insta.ops
    assert base.params_bits < insta.params_bits and base.params_bits < lat.params_bits
    # (reuse adds 2C per INSTA-PReLU where INSTA runs, so latency-optimized vs insta parameters may go either way)
    assert lat.category("stats_reuse") and not insta.category("stats_reuse")
    assert not base.category("insta_th") and lat.category("rsign") and lat.category("insta_th")
    if "insta_plus" in reports:
        plus = reports["insta_plus"]
        assert plus.bops == base.bops and plus.flops > insta.flops and plus.params_bits > insta.params_bits
        assert plus.category("se_fc") and plus.category("se_lsq")


def test_reactnet18_imagenet_against_hand_formula():
    """ReActNet-18 at 224: every total equal to the closed form; BOPs 1.68e9 as in the Bi-Real / ReActNet tables."""
    r = C.model_cost(NetConfig(arch="reactnet18", variant="baseline"))
    assert r.input_shape == (3, 224, 224)
    widths, sizes = (64, 128, 256, 512), (56, 28, 14, 7)
    bops = flops = bits1 = params32 = 0
    cin = 64
    for w, s in zip(widths, sizes):
        for _ in range(4):
            bops += s * s * w * cin * 9
            bits1 += w * cin * 9
            flops += s * s * w  # block BN
            params32 += cin + 2 * w + 3 * w  # RSign, BN, RPReLU
            cin = w
    for prev, w, s in zip(widths, widths[1:], sizes[1:]):  # option-B downsampling: 1x1 real conv + BN
        flops += s * s * w * prev + s * s * w
        params32 += w * prev + 2 * w
    flops += 112 * 112 * 64 * 3 * 49 + 112 * 112 * 64 + 512 * 1000  # stem conv + BN, classifier
    params32 += 64 * 3 * 49 + 2 * 64 + 512 * 1000 + 1000
    assert (r.bops, r.flops, r.params_bits) == (bops, flops, bits1 + FP * params32)
    assert round(r.bops / 1e9, 2) == 1.68
    assert round(r.flops / 1e8, 2) == 1.40
    assert r.ops == flops + bops / 64


def test_comparison_profiles():
    """Bi-Real, XNOR-Net and BNN as accounting profiles over the walked reactnet18 network (size-independent)."""
    cfg = NetConfig(arch="reactnet18", variant="baseline", image_size=64)
    react = cached(cfg)
    torch.manual_seed(0)
    net = build_network(cfg)  # one build, counted under two profiles
    bireal, bnn = C.count_costs(net, profile=C.PROFILES["bi_real"]), C.count_costs(net, profile=C.PROFILES["bnn"])
    xnor = C.model_cost(cfg.replace(block_order="bn_sign_conv"), "xnor")

    # Bi-Real: same operations, no RSign / RPReLU parameters
    assert (bireal.bops, bireal.flops) == (react.bops, react.flops)
    dropped = sum(i.params for i in react.category("rsign") + react.category("rprelu"))
    assert react.params_bits - bireal.params_bits == FP * dropped
    assert all(i.params == 0 for i in bireal.category("rsign") + bireal.category("rprelu"))

    # BNN: the three 1x1 downsampling convs move from FLOPs / 32 bit to BOPs / 1 bit
    shortcut = [i for i in react.category("real_conv") if i.note == "shortcut"]
    assert len(shortcut) == 3
    macs, weights = sum(i.flops for i in shortcut), sum(i.params for i in shortcut)
    assert bnn.bops == bireal.bops + macs and bnn.flops == bireal.flops - macs
    assert bnn.params_bits == bireal.params_bits - (FP - 1) * weights
    assert len(bnn.category("binary_conv")) == 16 + 3 and not bnn.category("weight_scale")

    # XNOR-Net: BN folded into the sign (C), the weight scale not merged (HoutWoutCout + Cout) on every binary conv
    assert xnor.bops == react.bops
    assert len(xnor.category("batchnorm_sign")) == 16
    scales = xnor.category("weight_scale")
    assert len(scales) == 16 and all(s.flops > 0 and s.params > 0 for s in scales)
    block_bns = [i for i in react.category("batchnorm") if i.name.endswith(".bn")]
    assert len(block_bns) == 16
    assert sum(s.flops for s in scales) == sum(i.flops for i in block_bns)
    assert xnor.flops == bireal.flops  # the scale's HoutWoutCout replaces the block BN's HWC exactly
    assert all(i.params == 0 for i in xnor.category("prelu"))
    assert bnn.ops < bireal.ops == xnor.ops == react.ops and bireal.params_bits < react.params_bits


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "reports" / "cost.json"
    assert C.main(["--out", str(out), "--models", "ResNet-20,INSTA-BNN-ResNet20"]) == 0
    data = json.loads(out.read_text())
    assert list(data) == ["ResNet-20", "INSTA-BNN-ResNet20"]
    for entry in data.values():
        assert {"bops", "flops", "ops", "params_bits", "breakdown", "config", "dataset"} <= set(entry)
        assert entry["ops"] == entry["flops"] + entry["bops"] / 64
        assert entry["input_shape"] == [3, 32, 32]
    assert data["INSTA-BNN-ResNet20"]["flops"] > data["ResNet-20"]["flops"]
    assert "insta_th" in data["INSTA-BNN-ResNet20"]["breakdown"]
    md = (tmp_path / "reports" / "cost.md").read_text()
    printed = capsys.readouterr().out
    assert "| model |" in md and "| INSTA-BNN-ResNet20 |" in md and printed == md
    with pytest.raises(SystemExit):
        C.main(["--out", str(out), "--models", "NoSuchNet"])


def test_comparison_model_list():
    names = [m.name for m in C.MODELS]
    for name in ("BNN-18", "XNOR-Net-18", "Bi-Real-18", "ReActNet-18", "ReActNet-A", "INSTA-BNN-ResNet18",
                 "INSTA-BNN+-ResNet18", "INSTA-BNN-ResNet18-latency", "INSTA-BNN-ReActNet-A",
                 "INSTA-BNN+-ReActNet-A", "INSTA-BNN-ReActNet-A-latency", "ResNet-20", "INSTA-BNN-ResNet20"):
        assert name in names
    assert len(set(names)) == len(names)
    for m in C.MODELS:
        if m.config.variant == "insta_plus":
            assert m.config.se_weight_bits == 8  # the final model (8-bit LSQ SE weights)
