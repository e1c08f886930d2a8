"""The hls4ml cross-check (hw/hls4ml_check.py): the residual digits network is refused at a named node, and a
plain W1A1 network runs through hls4ml's C++ emulation with the reference's predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("hls4ml")

from instabnn.hw import hls4ml_check as H  # noqa: E402
from instabnn.model.config import NetConfig  # noqa: E402
from instabnn.model.data import digits_arrays  # noqa: E402
from instabnn.model.export import export_model  # noqa: E402
from instabnn.model.networks import build_network  # noqa: E402

from conftest import fake_run_folder, tree_hashes  # noqa: E402


@pytest.fixture(scope="module")
def residual_onnx(tmp_path_factory):
    """The digits baseline (static thresholds, RPReLU, Pad(-1) XNOR convs), random weights, exported."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hls4ml-residual") / "model.onnx"
    export_model(build_network(NetConfig(arch="digits", variant="baseline")).eval(), path, {}, n_check=2)
    return path


def test_residual_network_is_refused_at_the_minus_one_pad(residual_onnx, tmp_path):
    _, _, x, y = digits_arrays()
    report = H.check_network(residual_onnx, x[:4], y[:4], tmp_path, precisions=("fixed<32,16>",))
    assert not report["ran"]
    first = report["attempts"][0]
    assert first["status"] == "refused"
    assert first["refusal"]["op"] == "Pad" and first["refusal"]["node"].startswith("Pad")
    assert "got -1.0" in first["refusal"]["reason"]
    refused = {r["op"] for r in report["parser_survey"]}
    assert "Pad" in refused  # every XNOR conv's -1 padding
    assert sum(r["op"] == "Pad" for r in report["parser_survey"]) == 4
    assert "AveragePool" in refused  # the projection shortcut's pool stays channels-first


def test_cli_without_fallback_reports_that_nothing_ran(residual_onnx, tmp_path):
    out = tmp_path / "rep"
    assert H.main([str(residual_onnx), "--out", str(out), "-n", "4", "--no-fallback",
                   "--precision", "fixed<32,16>"]) == 1
    report = json.loads((out / "hls4ml.json").read_text())
    assert report["compared_predictions"] is False and len(report["networks"]) == 1
    md = (out / "hls4ml.md").read_text()
    assert "No network ran through hls4ml" in md and "Only constant value of 0 supported for Pad node" in md
    (out / "notes.md").write_text("the user's")  # the report folder is no longer the check's alone
    before = tree_hashes(out)
    assert H.main([str(residual_onnx), "--out", str(out), "-n", "4", "--no-fallback"]) == 2
    assert tree_hashes(out) == before


@pytest.mark.parametrize("target, why", [("runs/demo", "holds last.pt"), ("runs/demo/model.pt", "is a file")])
def test_cli_refuses_an_out_it_did_not_write(residual_onnx, tmp_path, capsys, target, why):
    before = fake_run_folder(tmp_path / "runs" / "demo")
    assert H.main([str(residual_onnx), "--out", str(tmp_path / target), "-n", "4", "--no-fallback"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(tmp_path / target) in err and why in err, err
    assert tree_hashes(tmp_path / "runs" / "demo") == before


def test_cli_refuses_missing_file(tmp_path):
    assert H.main([str(tmp_path / "nope.onnx"), "--out", str(tmp_path)]) == 2


def test_fold_binary_weights_keeps_the_graph_function(tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    path = H.build_w1a1_digits(tmp_path / "fc.onnx", steps=5)
    prepared = H.prepare(ModelWrapper(str(path)))
    folded, names = H.fold_binary_weights(H.prepare(ModelWrapper(str(path))))
    assert len(names) == 4  # the four weight matrices; the activations' BipolarQuants stay
    assert all(folded.get_initializer(n.input[0]) is None for n in folded.get_nodes_by_op_type("BipolarQuant"))
    x = H.graph_input(prepared, digits_arrays()[2][:3])
    assert x.shape[1:] == tuple(prepared.get_tensor_shape(prepared.graph.input[0].name))[1:]
    for i in range(3):
        a = execute_onnx(prepared, {prepared.graph.input[0].name: x[i:i + 1]})[prepared.graph.output[0].name]
        b = execute_onnx(folded, {folded.graph.input[0].name: x[i:i + 1]})[folded.graph.output[0].name]
        assert np.array_equal(a, b)


@pytest.mark.slow
def test_w1a1_network_matches_the_reference_through_hls4ml(tmp_path):
    """Three hls4ml conversions + g++ builds (about a minute on two cores)."""
    path = H.build_w1a1_digits(tmp_path / "fc.onnx", steps=150)
    _, _, x, y = digits_arrays()
    report = H.check_network(path, x[:80], y[:80], tmp_path / "work", precisions=("fixed<32,16>",))
    assert report["ran"] and report["parser_survey"] == []
    assert report["reference_vs_float"]["top1_agreement"] == 1.0
    as_exported, folded = report["attempts"]
    assert as_exported["variant"] == "as exported" and as_exported["status"] == "ran"
    assert all(c["collapsed"] for c in as_exported["collapsed_binary_weights"])  # hls4ml 1.3.0's double quantization
    assert folded["status"] == "ran" and len(folded["folded_nodes"]) == 4
    g = folded["agreement"]
    assert g["top1_agreement_hls4ml_vs_reference"] == 1.0
    assert g["images_with_logit_diff_above_tol"] == 0
    assert g["max_abs_logit_diff_hls4ml_vs_reference"] < H.LOGIT_TOL
    assert not any(c["collapsed"] for c in folded["collapsed_binary_weights"])
