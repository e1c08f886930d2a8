"""The network compiler on plain W1A1 chains (Brevitas bnn_pynq style, :mod:`instabnn.hw.compile.chain`): a network
with random weights and non-trivial BatchNorm is exported (QONNX), lowered (``lower.main`` -> lowered.onnx), folded
(fixed configs below, as bnn_pynq's; ``hw/compile/folding.py`` chooses one for a frame rate too), compiled, and
co-simulated (``sim/cosim.py``) against the lowered graph executed by qonnx: every logit must be equal.

* ``tfc_1w1a`` (the real bnn_pynq TFC: 784 -> 64 -> 64 -> 64 -> 10; binarized 1-bit input, 784 lanes x 1 bit in one
  beat at the top level);
* a small CNV (the bnn_pynq ``CNV`` class with fewer channels, on a 15 x 15 image: an 8-bit integer-input first
  conv + threshold + max-pool of an odd 13 x 13 map (cropped), two binary convs, a dense layer after a 32 x 2 x 2
  frame (flatten: weight columns permuted to stream order), the last layer and the logits);
* random legal foldings of both (``conftest.random_folding``), with and without random stalls: measured cycles
  per frame within 2 % of the analytic bottleneck, which needs the input FIFOs of the dense layers
  (``Netlist.mvu``);
* ``-m slow``: the full ``cnv_1w1a`` (32 x 32 x 3) at two foldings, TFC under stalls on the cocotb harness, more
  random foldings, and TFC without the dense layers' input FIFOs (then it runs at about half the analytic rate).

Random images (``cosim`` ``data="random"``; random bits for the 1-bit TFC input).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from instabnn.hw.compile import compiler as C
from instabnn.hw import lower
from instabnn.hw.blocks.common.stream_order import stream_order_columns
from instabnn.model.bnn_pynq import export_bnn_pynq
from instabnn.sim import cosim

from conftest import check_rate, random_folding

TFC_FOLDING = {"Defaults": {}, "layer0": {"SIMD": 16, "PE": 16}, "layer1": {"SIMD": 16, "PE": 16},
               "layer2": {"SIMD": 16, "PE": 16}, "layer3": {"SIMD": 16, "PE": 5}, "logits_affine": {"PE": 10}}
MINI_CNV_FOLDING = {"Defaults": {}, "layer0": {"SIMD": 3, "PE": 8}, "layer1": {"SIMD": 16, "PE": 8},
                    "layer2": {"SIMD": 16, "PE": 8}, "layer3": {"SIMD": 16, "PE": 8}, "layer4": {"SIMD": 16, "PE": 5},
                    "logits_affine": {"PE": 10}}
CNV_FOLDING = {"Defaults": {}, "layer0": {"SIMD": 3, "PE": 16}, "layer1": {"SIMD": 64, "PE": 16},
               "layer2": {"SIMD": 64, "PE": 16}, "layer3": {"SIMD": 64, "PE": 32}, "layer4": {"SIMD": 64, "PE": 32},
               "layer5": {"SIMD": 32, "PE": 32}, "layer6": {"SIMD": 64, "PE": 16}, "layer7": {"SIMD": 64, "PE": 16},
               "layer8": {"SIMD": 32, "PE": 5}, "logits_affine": {"PE": 10}}


def build(tmp: Path, onnx_path: Path, folding: dict) -> tuple[Path, dict, float]:
    """lower.main -> folding -> compile; returns the RTL directory, the manifest and the seconds taken."""
    from qonnx.core.modelwrapper import ModelWrapper

    from instabnn.hw.compile.folding import apply_folding

    start = time.time()
    assert lower.main([str(onnx_path), "-n", "4", "--out", str(tmp), "--no-progress"]) == 0
    model = apply_folding(ModelWrapper(str(tmp / "lowered.onnx")), folding)
    model.save(str(tmp / "folded.onnx"))  # the chain ops' PE / SIMD set by hand (check_folding reads them as
    # element-wise ops, see the report); compile_model then takes the folding in the graph
    manifest = C.compile_model(tmp / "folded.onnx", tmp / "rtl")
    return tmp / "rtl", manifest, time.time() - start


@pytest.fixture(scope="module")
def tfc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tfc")
    return build(tmp, export_bnn_pynq("tfc_1w1a", tmp / "tfc.onnx", (1, 28, 28)), TFC_FOLDING)


MINI_CNV = {"CNV_OUT_CH_POOL": [(16, True), (32, False), (32, False)], "INTERMEDIATE_FC_FEATURES": [(128, 64)],
            "LAST_FC_IN_FEATURES": 64}


@pytest.fixture(scope="module")
def mini_cnv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mini_cnv")
    return build(tmp, export_bnn_pynq("cnv_1w1a", tmp / "cnv.onnx", (3, 15, 15), **MINI_CNV), MINI_CNV_FOLDING)


def _check(report: dict, manifest: dict):
    assert report["mismatches"] == 0, report.get("verilator", report.get("cocotb"))["mismatched_images"]
    assert report["tlast_errors"] == 0
    assert abs(report["cycles_per_frame"] - manifest["cycles_per_frame_estimate"]) \
        <= 0.02 * manifest["cycles_per_frame_estimate"], (report["cycles_per_frame"],
                                                          manifest["cycles_per_frame_estimate"])
    # the logits are not degenerate: the images get different predictions or at least different logits
    assert len(set(report["predictions_reference"])) > 1 or report["n"] == 1


def test_stream_order_columns_is_the_nchw_flatten():
    """A dense layer after a C x H x W frame: the stream (pixel-major) times the permuted weights equals the NCHW
    flatten times the weights."""
    rng = np.random.default_rng(0)
    for c, h, w in [(3, 2, 2), (32, 2, 2), (5, 3, 1), (4, 1, 1)]:
        x = rng.integers(-3, 4, size=(2, c, h, w))
        weight = rng.integers(-1, 2, size=(7, c * h * w))
        nchw = x.reshape(2, -1) @ weight.T
        stream = x.transpose(0, 2, 3, 1).reshape(2, -1) @ weight[:, stream_order_columns(c, h, w)].T
        assert np.array_equal(nchw, stream)
    assert np.array_equal(stream_order_columns(4, 1, 1), np.arange(4))


def test_tfc_bit_exact(tfc, tmp_path, verilator_path):
    rtl, manifest, seconds = tfc
    assert (manifest["input_lanes"], manifest["input_bits"], manifest["input_shape"]) == (784, 1, [784, 1, 1])
    assert manifest["cycles_per_frame_estimate"] == 784 // 16 * 64 // 16  # layer0: SF * NF
    blocks = {b for layer in manifest["layers"] for b in layer["blocks"]}
    assert {"binary_mvu", "channel_affine"} <= blocks and "int_mvu" not in blocks
    report = cosim.cosim(rtl, "random", 6, harness="verilator", work=tmp_path / "w")
    _check(report, manifest)
    (tmp_path / "report.json").write_text(json.dumps({**report, "build_seconds": seconds}, indent=1, default=str))


def test_cosim_takes_relative_paths(tfc, tmp_path, verilator_path, monkeypatch):
    """make bench passes folders relative to the repository (the harness then runs in a folder of its own)."""
    rtl, manifest, _ = tfc
    monkeypatch.chdir(rtl.parent)
    report = cosim.cosim("rtl", "random", 2, harness="verilator", work="relative-work")
    assert report["mismatches"] == 0 and (rtl.parent / "relative-work" / "verilator").is_dir()


def test_mini_cnv_bit_exact(mini_cnv, tmp_path, verilator_path):
    rtl, manifest, _ = mini_cnv
    assert (manifest["input_lanes"], manifest["input_bits"], manifest["input_shape"]) == (3, 8, [3, 15, 15])
    layers = {layer["node"]: layer for layer in manifest["layers"]}
    assert {"int_mvu", "channel_affine", "maxpool_bits", "sliding_window"} <= set(layers["layer0"]["blocks"])
    assert "sliding_window" not in layers["layer3"]["blocks"]  # the dense layer after the 32 x 2 x 2 frame
    assert manifest["cycles_per_frame_estimate"] == 13 * 13 * 9 * 2  # layer0: pixels * SF * NF
    report = cosim.cosim(rtl, "random", 6, harness="verilator", work=tmp_path / "w")
    _check(report, manifest)


@pytest.mark.slow
def test_mini_cnv_bit_exact_under_stalls(mini_cnv, tmp_path, verilator_path):
    """Random source idle and sink backpressure on the cocotb harness: still exact, tlast right."""
    rtl, manifest, _ = mini_cnv
    report = cosim.cosim(rtl, "random", 4, harness="cocotb", work=tmp_path / "w", in_stall=90, out_stall=120,
                         seed=3)
    assert report["mismatches"] == 0 and report["tlast_errors"] == 0, report["cocotb"]["mismatched_images"]


def test_flatten_permutation_matters(mini_cnv):
    """The layer after the 32 x 2 x 2 frame: its stored weight rows are the NCHW ones permuted, and differ from
    them (so the exact co-simulation above checks the permutation)."""
    from qonnx.core.modelwrapper import ModelWrapper

    from instabnn.hw import ops  # noqa: F401

    rtl, manifest, _ = mini_cnv
    model = ModelWrapper(str(C.lowered_graph_path(rtl, manifest)))
    node = next(n for n in model.graph.node if n.name == "layer3")
    in_shape = list(ops.ChainLayer(node).get_nodeattr("in_shapes"))
    weight = model.get_initializer("layer3.weight_bits")[:, :, 0, 0]
    assert in_shape[1:] == [32, 2, 2] and weight.shape[1] == 128
    perm = stream_order_columns(32, 2, 2)
    assert not np.array_equal(weight[:, perm], weight)


@pytest.mark.parametrize("fixture", ["tfc", "mini_cnv"])
def test_folding_cycle_model_is_the_compilers(fixture, request):
    """ChainLayer / AffineLogits get_exp_cycles (what hw/compile/folding.py folds by) equal the cycles the compiler
    builds for every layer of the folded chain."""
    from qonnx.core.modelwrapper import ModelWrapper

    from instabnn.hw.ops import hw_op

    rtl, manifest, _ = request.getfixturevalue(fixture)
    folded = ModelWrapper(str(rtl.parent / "folded.onnx"))
    compiled = {layer["node"]: layer["cycles"] for layer in manifest["layers"]}
    for node in folded.graph.node:
        assert hw_op(folded, node).get_exp_cycles() == compiled[node.name], node.name


@pytest.mark.parametrize("seed", [4, 5])
def test_random_chain_foldings_cycle_model_is_the_compilers(seed, mini_cnv, tmp_path):
    """For random legal foldings of the small CNV, folding's cycles (``get_exp_cycles``) equal the compile report's
    cycles per frame node by node, and each layer's is the slowest of its blocks' (the latency table's rows)."""
    from instabnn.hw.compile.folding import apply_folding, read_lowered
    from instabnn.hw.ops import hw_op

    rtl, manifest, _ = mini_cnv
    lowered = C.lowered_graph_path(rtl, manifest)
    config = random_folding(lowered, seed, (1000, 20000))
    out = C.compile_model(lowered, tmp_path / "rtl", config)
    folded = apply_folding(read_lowered(lowered), config)
    for node, layer in zip(folded.graph.node, out["layers"]):
        assert layer["node"] == node.name
        assert hw_op(folded, node).get_exp_cycles() == layer["cycles"], node.name
        assert layer["cycles"] == max(i["cycles_per_frame"] for i in layer["instances"]), node.name


def test_folding_chooses_a_chain_folding(mini_cnv, tmp_path):
    """hw/compile/folding.py folds a W1A1 chain for a frame rate; the compiled design's analytic bound meets it."""
    from instabnn.hw.compile import folding

    rtl, manifest, _ = mini_cnv
    lowered = C.lowered_graph_path(rtl, manifest)
    target_fps = 100e6 / 1600  # layer0's window (SIMD <= 3 channels) needs 1,521 clocks at the most parallel
    assert folding.main([str(lowered), "--target-fps", str(target_fps), "--out", str(tmp_path / "f.json")]) == 0
    config = json.loads((tmp_path / "f.json").read_text())
    assert set(config) >= {"layer0", "layer4", "logits_affine"}
    out = C.compile_model(lowered, tmp_path / "rtl", tmp_path / "f.json")
    assert out["cycles_per_frame_estimate"] <= 1600
    assert max(layer["cycles"] for layer in out["layers"]) == out["cycles_per_frame_estimate"]


def test_start_chain_leaves_other_graphs_alone(mini_cnv):
    """start_chain is False (and makes nothing) for a graph that does not start with a ChainLayer, True with the
    image stream for a chain."""
    from qonnx.core.modelwrapper import ModelWrapper

    from instabnn.hw import ops  # noqa: F401

    rtl, manifest, _ = mini_cnv
    model = ModelWrapper(str(C.lowered_graph_path(rtl, manifest)))
    comp = C.Compiler(model, rtl.parent / "unused")
    assert comp.start_chain() and (comp.input_stream.lanes, comp.input_stream.bits, comp.input_stream.beats) == \
        (3, 8, 225)
    other = ModelWrapper(str(C.lowered_graph_path(rtl, manifest)))
    other.graph.node[0].op_type = "StemConv"
    del other.graph.node[1:]
    comp = C.Compiler(other, rtl.parent / "unused")
    assert comp.start_chain() is False and comp.input_stream is None and not comp.net.lines


@pytest.mark.parametrize("fixture, vector_bits", [
    ("tfc", {"layer0": 784, "layer1": 64, "layer2": 64, "layer3": 64}),
    ("mini_cnv", {"layer3": 128, "layer4": 64})])  # layer0-2: convolutions, fed by their sliding windows
def test_dense_layers_get_one_input_vector_of_fifo(fixture, vector_bits, request):
    """Every MVU with several output folds (all dense layers of both foldings) that no sliding window feeds has a
    FIFO of one input vector in front; nothing else gets one; the manifest and compile.md report their sum."""
    rtl, manifest, _ = request.getfixturevalue(fixture)
    fifo_bits = {layer["node"]: layer["fifo_bits"] for layer in manifest["layers"]}
    assert fifo_bits == {node: vector_bits.get(node, 0) for node in fifo_bits}
    assert manifest["fifo_bits"] == sum(vector_bits.values())
    assert f"FIFOs between layers: {manifest['fifo_bits']} bits" in (rtl / "compile.md").read_text()


def _check_random_folding(built, seed: int, cycles: tuple[int, int], stall: int, tmp_path: Path) -> None:
    rtl, manifest, _ = built
    lowered = C.lowered_graph_path(rtl, manifest)
    out = C.compile_model(lowered, tmp_path / "rtl", random_folding(lowered, seed, cycles))
    report = cosim.cosim(tmp_path / "rtl", "random", 6, harness="verilator", work=tmp_path / "w", in_stall=stall,
                         out_stall=stall, seed=seed)
    check_rate(report, out, stall)


@pytest.mark.parametrize("fixture, seed, cycles, stall", [("mini_cnv", 1, (1600, 5000), 0),
                                                          ("tfc", 1, (500, 4000), 64)])
def test_random_folding_runs_at_the_analytic_rate(fixture, seed, cycles, stall, request, tmp_path, verilator_path):
    """A random legal folding (layers' rates close to each other) co-simulates bit-exact at the analytic rate; with
    random source idle and sink backpressure (``stall`` / 256) too."""
    _check_random_folding(request.getfixturevalue(fixture), seed, cycles, stall, tmp_path)


# ------------------------------------------------------------------------------------------ slow


@pytest.mark.slow
def test_full_cnv_1w1a_bit_exact(tmp_path, verilator_path):
    """The full bnn_pynq CNV (32 x 32 x 3, 64-64-128-128-256-256 convs, 512-512 dense, 10 classes)."""
    rtl, manifest, _ = build(tmp_path, export_bnn_pynq("cnv_1w1a", tmp_path / "cnv.onnx", (3, 32, 32)), CNV_FOLDING)
    report = cosim.cosim(rtl, "random", 4, harness="verilator", work=tmp_path / "w")
    _check(report, manifest)
    (tmp_path / "report.json").write_text(json.dumps(report, indent=1, default=str))


@pytest.mark.slow
def test_tfc_bit_exact_under_stalls(tfc, tmp_path, verilator_path):
    rtl, manifest, _ = tfc
    report = cosim.cosim(rtl, "random", 8, harness="cocotb", work=tmp_path / "w", in_stall=100, out_stall=100,
                         seed=5)
    assert report["mismatches"] == 0 and report["tlast_errors"] == 0, report["cocotb"]["mismatched_images"]


@pytest.mark.slow
def test_cosim_detects_a_missing_flatten_permutation(mini_cnv, tmp_path, verilator_path):
    """Compiled without the NCHW -> stream-order permutation of the dense layer after the 32 x 2 x 2 frame, the
    accelerator disagrees with the reference (so the exact runs above do check the flatten order)."""
    from instabnn.hw.compile import chain as compile_chain

    rtl, manifest, _ = mini_cnv
    with mock.patch.object(compile_chain, "stream_order_columns", lambda c, h, w: np.arange(c * h * w)):
        C.compile_model(C.lowered_graph_path(rtl, manifest), tmp_path / "rtl")
    report = cosim.cosim(tmp_path / "rtl", "random", 4, harness="verilator", work=tmp_path / "w")
    assert report["mismatches"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("fixture, cycles", [("mini_cnv", (1600, 6000)), ("tfc", (200, 5000))])
@pytest.mark.parametrize("seed", [2, 3, 4])
@pytest.mark.parametrize("stall", [0, 64])
def test_more_random_foldings_run_at_the_analytic_rate(fixture, cycles, seed, stall, request, tmp_path,
                                                      verilator_path):
    _check_random_folding(request.getfixturevalue(fixture), seed, cycles, stall, tmp_path)


TFC_DENSE_PE1 = {"Defaults": {}, "layer0": {"SIMD": 16, "PE": 1}, "layer1": {"SIMD": 1, "PE": 1},
                 "layer2": {"SIMD": 1, "PE": 1}, "layer3": {"SIMD": 1, "PE": 1}, "logits_affine": {"PE": 1}}


@pytest.mark.slow
def test_without_the_input_fifos_dense_layers_serialise(tfc, tmp_path, verilator_path):
    """The control: TFC's dense layers at PE = 1 (4,096 cycles each per frame) compiled without their input FIFOs
    run one after the other (about 8,000 cycles per frame); with them, at the analytic 4,096."""
    rtl, manifest, _ = tfc
    lowered = C.lowered_graph_path(rtl, manifest)

    def mvu_without_fifo(net, module, hint, shape, params, x, out):
        net.block(module, hint, params, {"s_axis": x}, out, spec=shape)

    with mock.patch.object(C.Netlist, "mvu", mvu_without_fifo):
        bare = C.compile_model(lowered, tmp_path / "bare", TFC_DENSE_PE1)
    report = cosim.cosim(tmp_path / "bare", "random", 6, harness="verilator", work=tmp_path / "wb")
    assert bare["cycles_per_frame_estimate"] == 4096 and report["cycles_per_frame"] > 1.5 * 4096
    out = C.compile_model(lowered, tmp_path / "rtl", TFC_DENSE_PE1)
    check_rate(cosim.cosim(tmp_path / "rtl", "random", 6, harness="verilator", work=tmp_path / "w"), out)


@pytest.mark.slow
def test_full_cnv_1w1a_at_3050_frames_per_second(tmp_path, verilator_path):
    """issue 16: ``cnv_1w1a`` folded by hw/compile/folding.py for 3,050 frames/s (dense layers at PE = 1) measured
    64,388 cycles per frame against 32,768 analytic before the dense layers had input FIFOs."""
    from instabnn.hw.compile import folding

    onnx = export_bnn_pynq("cnv_1w1a", tmp_path / "cnv.onnx", (3, 32, 32))
    assert lower.main([str(onnx), "-n", "2", "--out", str(tmp_path), "--no-progress"]) == 0
    assert folding.main([str(tmp_path / "lowered.onnx"), "--target-fps", "3050"]) == 0
    out = C.compile_model(tmp_path / "lowered.onnx", tmp_path / "rtl", tmp_path / "folding.json")
    assert out["cycles_per_frame_estimate"] == 32768
    report = cosim.cosim(tmp_path / "rtl", "random", 8, harness="verilator", work=tmp_path / "w")
    check_rate(report, out)
