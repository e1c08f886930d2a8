"""One cycle model: folding's cycles (each op's ``get_exp_cycles``, the slowest of the block specs the op lowers to)
are the compile report's, node by node, for random legal foldings of the digits networks (random knobs too); the
report's latency table has each instance's latency from its spec; folding knobs (LIMBS, SE_SIMD) in a folding
config are checked like PE / SIMD. (A W1A1 chain: tests/test_compile_chain.py.)"""

from __future__ import annotations

import json

import pytest

from instabnn.hw.compile import compiler as C
from instabnn.hw import lower
from instabnn.hw.compile import folding

from conftest import random_folding

_LOWERED: dict = {}


def untrained_digits(variant: str, tmp_path_factory):
    """lowered.onnx of an untrained digits network (``random_weights_network``: the hardware's shapes and widths do
    not need training), made once per variant."""
    from instabnn.model.config import NetConfig
    from instabnn.model.export import export_model
    from instabnn.model.networks import random_weights_network

    if variant not in _LOWERED:
        out = tmp_path_factory.mktemp(f"cycles-{variant}")
        cfg = NetConfig(variant=variant)
        model = random_weights_network(cfg)
        export_model(model, out / "model.onnx", {"instabnn.config": json.dumps(cfg.to_dict())}, n_check=0)
        assert lower.main([str(out / "model.onnx"), "--out", str(out), "--no-progress", "-n", "2"]) == 0
        _LOWERED[variant] = out / "lowered.onnx"
    return _LOWERED[variant]


@pytest.mark.parametrize("variant", ["baseline", "insta", "insta_plus", "latency_optimized"])
def test_folding_cycles_are_the_compile_reports(variant, tmp_path_factory, tmp_path):
    from instabnn.hw.ops import hw_op

    lowered = untrained_digits(variant, tmp_path_factory)
    config = random_folding(lowered, 1, (1000, 20000), random_knobs=True)  # folding's own knob choices:
    m = C.compile_model(lowered, tmp_path / "rtl", config)  # tests/test_folding.py and the co-simulations
    assert m["folding"] == {k: v for k, v in config.items() if k != "Defaults"}  # knobs included
    model = folding.apply_folding(folding.read_lowered(lowered), config)
    assert [n.name for n in model.graph.node] == [layer["node"] for layer in m["layers"]]
    for node, layer in zip(model.graph.node, m["layers"]):
        op = hw_op(model, node)
        assert op.get_exp_cycles() == layer["cycles"], node.name
        instances = layer["instances"]
        assert [i["module"] for i in instances] == [b.module for b in op.blocks()], node.name
        assert [i["latency"] for i in instances] == [b.spec.latency for b in op.blocks()], node.name
        assert all(i["beat_latency"] >= i["latency"] for i in instances), node.name
        assert layer["cycles"] == max(i["cycles_per_frame"] for i in instances), node.name
    assert m["cycles_per_frame_estimate"] == max(layer["cycles"] for layer in m["layers"])
    assert "| layer | instance | module | cycles / frame | latency | beat latency |" in \
        (tmp_path / "rtl" / "compile.md").read_text()
    if variant in ("insta", "insta_plus"):
        assert any(set(entry) - {"PE", "SIMD"} for entry in m["folding"].values())


def test_knobs_in_a_folding_config_are_checked(tmp_path_factory, tmp_path):
    """LIMBS / SE_SIMD: where the node has them, one of their legal values; elsewhere an unknown key; missing, an
    error naming the node. Each a one-line FoldingError naming the node, before anything is compiled."""
    plus = untrained_digits("insta_plus", tmp_path_factory)
    base = untrained_digits("baseline", tmp_path_factory)
    good = folding.choose_folding(folding.read_lowered(plus), 20000)
    assert good["block0.threshold"].keys() == {"PE", "SE_SIMD"}
    cases = [
        ("block0.threshold", "SE_SIMD", 3, "block0.threshold: SE_SIMD = 3 is not one of its legal values"),
        ("block0.threshold", "SE_SIMD", 0, "block0.threshold: SE_SIMD = 0 is not a positive integer"),
        ("block0.threshold", "LIMBS", 2, "block0.threshold: unknown key 'LIMBS'"),
        ("block0.conv", "SE_SIMD", 1, "block0.conv: unknown key 'SE_SIMD'"),
        ("block0.threshold", "SE_SIMD", None, "block0.threshold: no SE_SIMD"),
    ]
    for node, key, value, message in cases:
        config = json.loads(json.dumps(good))
        if value is None:
            del config[node][key]
        else:
            config[node][key] = value
        with pytest.raises(folding.FoldingError, match=message) as e:
            folding.apply_folding(folding.read_lowered(plus), config, "f.json")
        assert "\n" not in str(e.value) and str(e.value).startswith("f.json: node ")
        with pytest.raises(C.CompileError, match=message):
            C.compile_model(plus, tmp_path / "rtl", config)
        assert not (tmp_path / "rtl").exists()
    # LIMBS beyond the power sums' width (an INSTA-Th unit), and a knob on a static (RSign) unit
    insta = untrained_digits("insta", tmp_path_factory)
    config = folding.choose_folding(folding.read_lowered(insta), 20000)
    node = next(n for n, entry in config.items() if "LIMBS" in entry)
    config[node]["LIMBS"] = 99
    with pytest.raises(folding.FoldingError, match=f"{node}: LIMBS = 99 is not one of its legal values"):
        folding.apply_folding(folding.read_lowered(insta), config)
    config = folding.choose_folding(folding.read_lowered(base), 20000)
    config["block0.threshold"]["LIMBS"] = 1
    with pytest.raises(folding.FoldingError, match="block0.threshold: unknown key 'LIMBS'"):
        folding.apply_folding(folding.read_lowered(base), config)


def test_a_spec_given_an_illegal_knob_raises(tmp_path_factory):
    """The specs take the knobs as given: an illegal value is an error, not a choice."""
    import dataclasses

    from instabnn.hw.ops import hw_op

    plus = folding.read_lowered(untrained_digits("insta_plus", tmp_path_factory))
    node = next(n for n in plus.graph.node if n.op_type == "ThresholdUnit")
    op = hw_op(plus, node)
    op.set_nodeattr("SE_SIMD", 1)
    spec = op.blocks()[0].spec
    with pytest.raises(ValueError, match="se_simd"):
        dataclasses.replace(spec, se_simd=3)
    op.set_nodeattr("SE_SIMD", 3)
    with pytest.raises(ValueError, match="SE_SIMD = 3 is not one of"):
        op.get_exp_cycles()
    op.set_nodeattr("SE_SIMD", 0)
    with pytest.raises(ValueError, match="no SE_SIMD chosen"):
        op.get_exp_cycles()
