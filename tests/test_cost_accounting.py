"""The cost model's accounting profiles (model/cost.py Accounting, docs/cost.md): each choice against a direct count."""

from __future__ import annotations

import json

import pytest

from instabnn.model import cost as C
from instabnn.model.config import NetConfig

R20 = dict(arch="resnet20")


def test_bn_multiplies_option_removes_exactly_the_bn_multiplies():
    cfg = NetConfig(variant="baseline", **R20)
    counted, free = C.model_cost(cfg, accounting="project"), C.model_cost(cfg, accounting="no_bn")
    bn = sum(i.flops for i in counted.category("batchnorm"))
    assert bn > 0 and all(i.flops == 0 for i in free.category("batchnorm"))
    assert counted.flops - free.flops == bn and counted.params_bits == free.params_bits
    assert (counted.accounting, free.accounting) == ("project", "no_bn")


def test_reuse_dropping_the_normalization_leaves_2c_per_reusing_module():
    cfg = NetConfig(variant="latency_optimized", **R20)
    lean = C.Accounting("t", "test", reuse_drops_normalization=True)
    keep, drop = C.model_cost(cfg), C.model_cost(cfg, accounting=lean)
    reused = [i for i in drop.category("insta_prelu") if i.note]
    assert reused and all(i.flops == 2 * (i.params // 5) for i in reused)  # 5C parameters -> C
    saved = sum(a.flops - b.flops for a, b in zip(keep.category("insta_prelu"), drop.category("insta_prelu")))
    normalization = sum(i.flops - 2 * (i.params // 5) for i in keep.category("insta_prelu") if i.note)
    assert saved == normalization > 0


@pytest.mark.parametrize("r", [16])
def test_se_reduction_sets_the_fc_size(r):
    cfg = NetConfig(variant="insta_plus", se_weight_bits=8, **R20)
    rep = C.model_cost(cfg, accounting=C.Accounting("t", "test", se_reduction=r))
    for item in rep.category("se_fc"):
        c = int(round((item.params * r / 2) ** 0.5))
        assert item.params == 2 * c * (c // r) and item.bits == 8
    assert rep.config["se_reduction"] == r


def test_insta_placement_sec_d_keeps_rsign_before_the_latency_stage():
    cfg = NetConfig(variant="insta", **R20)  # ResNet-20 has no third halving: its Sec. D stage is 1 (docs/model.md)
    sec_d = C.model_cost(cfg, accounting="sec_d")
    assert sec_d.config["first_insta_stage"] == 1 and sec_d.category("rsign") and sec_d.category("insta_th")
    everywhere = C.model_cost(cfg, accounting=C.Accounting("t", "test", bn_multiplies=False, insta_placement="all"))
    assert not everywhere.category("rsign") and everywhere.flops > sec_d.flops
    with pytest.raises(C.CostError, match="insta_placement='middle'"):
        C.Accounting("bad", "x", insta_placement="middle")


def test_cli_counts_each_model_under_each_accounting(tmp_path, capsys):
    out = tmp_path / "cost.json"
    assert C.main(["--out", str(out), "--models", "ResNet-20", "--accounting", "project,no_bn"]) == 0
    data = json.loads(out.read_text())
    assert list(data) == ["ResNet-20 [project]", "ResNet-20 [no_bn]"]
    assert data["ResNet-20 [no_bn]"]["accounting"] == "no_bn"
    md = capsys.readouterr().out
    assert "| ResNet-20 | CIFAR-10 | 3x32x32 | as_built | no_bn |" in md
    assert "- `no_bn`: BN multiplies not counted" in md
    with pytest.raises(SystemExit):
        C.main(["--out", str(out), "--accounting", "mystery"])
