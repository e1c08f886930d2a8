"""Folding of a lowered graph (hw/compile/folding.py): target met with the least parallelism, FINN config round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instabnn.hw import lower
from instabnn.hw.compile import folding
from instabnn.model.export import export_checkpoint


@pytest.fixture(scope="module")
def lowered(digits_insta_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("folding")
    export_checkpoint(digits_insta_ckpt, out / "model.onnx", n_check=2)
    net = lower.lower_file(out / "model.onnx")
    path = out / "lowered.onnx"
    lower.to_onnx(net, (1, 8, 8)).save(str(path))
    return path


def _model(path):
    from qonnx.core.modelwrapper import ModelWrapper

    return ModelWrapper(str(path))


@pytest.mark.parametrize("target", [20000, 3000, 1200])
def test_target_met_with_least_parallelism(lowered, target):
    from instabnn.hw.ops import hw_op

    model = _model(lowered)
    config = folding.choose_folding(model, target)
    for node in model.graph.node:
        op = hw_op(model, node)
        assert op.get_exp_cycles() <= target, node.name
        candidates = folding._candidates(op)
        i = candidates.index({k: v for k, v in config[node.name].items() if k in ("SIMD", "PE")})
        if i > 0:  # one step less parallel would miss the target, whatever its knobs
            for k, v in candidates[i - 1].items():
                op.set_nodeattr(k, v)
            folding.choose_knobs(op, 0)
            assert op.get_exp_cycles() > target, node.name
            for k, v in config[node.name].items():
                op.set_nodeattr(k, v)
        for knob, values in op.knob_candidates().items():  # a cheaper knob value would miss the target
            for v in values[:values.index(config[node.name][knob])]:
                op.set_nodeattr(knob, v)
                assert op.get_exp_cycles() > target, (node.name, knob, v)
            op.set_nodeattr(knob, config[node.name][knob])
    assert folding.folding_report(model)["cycles_per_frame"] <= target


def test_config_round_trip_through_finn_apply_config(lowered, tmp_path):
    assert folding.main([str(lowered), "--target-fps", "50000", "--out", str(tmp_path / "f.json")]) == 0
    config = json.loads((tmp_path / "f.json").read_text())
    chosen = folding.folding_report(folding.apply_folding(_model(lowered), config))
    assert all(config[r["node"]] == {**{k: r[k] for k in ("SIMD", "PE") if r[k] is not None}, **r["knobs"]}
               for r in chosen["layers"])
    assert any(r["knobs"] for r in chosen["layers"])  # the INSTA units' LIMBS are in the config
    assert any(r["SIMD"] is None for r in chosen["layers"])  # element-wise units have no SIMD, nor in the config
    assert chosen["cycles_per_frame"] <= 100e6 / 50000
    # the folding does not change what the graph computes
    q0 = np.random.default_rng(0).integers(-128, 128, size=(2, 1, 8, 8))
    assert np.array_equal(lower.execute_lowered(folding.apply_folding(_model(lowered), config), q0),
                          lower.execute_lowered(_model(lowered), q0))


def test_infeasible_target_reports_the_bottleneck(lowered):
    model = _model(lowered)
    folding.choose_folding(model, 1)
    report = folding.folding_report(model)
    assert report["cycles_per_frame"] > 1
    assert report["bottleneck"] in {n.name for n in model.graph.node}


def test_bad_input(tmp_path):
    assert folding.main([str(tmp_path / "missing.onnx")]) == 2


def test_ram_style_moves_weight_memories_to_block_ram_within_the_budget(lowered):
    """choose_ram_styles: with no room for block RAM every weight memory stays "auto"; with room, each one it moves
    to "block" saves LUTs in its node's estimate, and the layers' BRAM36 stay within the budget; cycles unchanged."""
    from instabnn.hw.blocks.common.resources import total
    from instabnn.hw.ops import hw_op

    model = _model(lowered)
    config = folding.choose_folding(model, 3000)
    ops = [hw_op(model, n) for n in model.graph.node]
    styled = [op for op in ops if "ram_style" in op.knob_options()]
    assert styled and all(config[op.onnx_node.name]["ram_style"] in ("auto", "block") for op in styled)

    def design():
        return total(b.spec.resources() for op in ops for b in op.blocks())

    cycles = folding.folding_report(model)["cycles_per_frame"]
    for op in styled:
        op.set_nodeattr("ram_style", "auto")
    start = design()["bram36"]
    assert set(folding.choose_ram_styles(model, start).values()) == {"auto"}  # no room: nothing moves
    auto = design()
    chosen = folding.choose_ram_styles(model, start + 1000)
    assert "block" in chosen.values()
    for op in styled:
        name = op.onnx_node.name
        est = {}
        for style in ("auto", "block"):
            op.set_nodeattr("ram_style", style)
            est[style] = total(b.spec.resources() for b in op.blocks())
        op.set_nodeattr("ram_style", chosen[name])
        if chosen[name] == "block":
            assert est["block"]["lut"] < est["auto"]["lut"] and est["block"]["bram36"] > est["auto"]["bram36"]
    assert design()["lut"] < auto["lut"] and design()["bram36"] <= start + 1000
    assert folding.folding_report(model)["cycles_per_frame"] == cycles


def test_ram_style_in_a_config_is_checked_and_may_be_left_out(lowered):
    from instabnn.hw.ops import hw_op

    model = _model(lowered)
    config = folding.choose_folding(model, 3000)
    name = next(n for n, e in config.items() if "ram_style" in e)
    bad = {**config, name: {**config[name], "ram_style": "ultra"}}
    with pytest.raises(folding.FoldingError, match=f'node {name}: ram_style = "ultra" is not one of "auto", "block"'):
        folding.apply_folding(_model(lowered), bad, "f.json")
    left_out = {**config, name: {k: v for k, v in config[name].items() if k != "ram_style"}}
    folded = folding.apply_folding(_model(lowered), left_out)
    node = next(n for n in folded.graph.node if n.name == name)
    assert hw_op(folded, node).get_nodeattr("ram_style") == "auto"
