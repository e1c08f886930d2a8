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
