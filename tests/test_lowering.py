"""The integer reference: QONNX lowering (hw/lower/), the hardware-exact PyTorch mode (model/hardware_exact.py),
and the arithmetic contract's widths (contract/layers.py)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from instabnn.hw import lower
from instabnn.contract import layers as L
from instabnn.contract.insta import insta_th_constants
from instabnn.model.checkpoint import checkpoint_config, load_checkpoint, load_weights
from instabnn.model.config import NetConfig
from instabnn.model.data import digits_arrays
from instabnn.model.export import export_checkpoint, export_model
from instabnn.model.hardware_exact import HardwareExact, integer_network
from instabnn.model.networks import build_network, random_weights_network

from conftest import train_digits

VARIANTS = {
    "baseline": ["--variant", "baseline"],
    "insta": ["--variant", "insta"],
    "insta_plus": ["--variant", "insta_plus"],
    "stats_reuse": ["--variant", "insta", "--stats-reuse", "auto"],
}


_TRAINED: dict = {}


def _variant(name: str, tmp_path_factory):
    """(model, onnx path) of a digits network trained for one epoch (made once per module and variant)."""
    if name not in _TRAINED:
        out = tmp_path_factory.mktemp(f"lower-{name}")
        ckpt = train_digits(out, *VARIANTS[name], "--epochs", "1")
        export_checkpoint(ckpt, out / "model.onnx", n_check=4)
        payload = load_checkpoint(ckpt)
        model = build_network(checkpoint_config(payload))
        load_weights(model, payload["model"])
        _TRAINED[name] = (model.eval(), out / "model.onnx")
    return _TRAINED[name]


@pytest.fixture(params=sorted(VARIANTS))
def digits_variant(request, tmp_path_factory):
    return _variant(request.param, tmp_path_factory)


@pytest.fixture
def baseline_variant(tmp_path_factory):
    return _variant("baseline", tmp_path_factory)


def test_reference_graph_equals_hardware_exact_mode(digits_variant):
    """The lowered QONNX graph and the PyTorch model's hardware-exact mode give identical integer logits on the
    whole digits test split, and agree with the float model on top-1 for nearly every image."""
    model, path = digits_variant
    _, _, x, _ = digits_arrays()
    net = lower.lower_file(path)
    q0 = net.quantize_input(x)
    logits = lower.execute_lowered(lower.to_onnx(net, x.shape[1:]), q0)  # the graph of hardware ops, by qonnx
    assert np.array_equal(logits, net.run(q0))
    assert np.array_equal(logits, HardwareExact(model).integer_logits(x))
    with torch.no_grad():
        float_top1 = model(torch.from_numpy(x)).argmax(1).numpy()
    assert (float_top1 == logits.argmax(1)).mean() >= 0.85  # one epoch: many near-ties; trained: see make lower


def test_lowered_graph_outputs_fit_their_widths_on_extreme_inputs(digits_variant):
    """Every node of the lowered graph checks that its output fits its declared width; drive saturated, constant
    and random extreme images (all at the input quantizer's limits) through it."""
    _, path = digits_variant
    net = lower.lower_file(path)
    rng = np.random.default_rng(0)
    lo, hi = -(1 << (net.input_bits - 1)), (1 << (net.input_bits - 1)) - 1
    shape = (1, *net.stem_weight.shape[1:2], 8, 8)
    q0 = np.concatenate([np.full(shape, hi), np.full(shape, lo), np.zeros(shape, np.int64),
                         rng.choice([lo, hi], size=(5, *shape[1:])), rng.integers(lo, hi + 1, size=(5, *shape[1:]))])
    graph = lower.to_onnx(net, q0.shape[1:])
    assert np.array_equal(lower.execute_lowered(graph, q0), net.run(q0))
    from qonnx.custom_op.registry import getCustomOp

    getCustomOp(graph.get_nodes_by_op_type("BinaryConv")[0]).set_nodeattr("out_bits", 4)  # a too-narrow width
    with pytest.raises(L.ContractError, match="block0.conv .*exceed its declared 4-bit width"):
        lower.execute_lowered(graph, q0[:1])


def test_lowered_structure(digits_variant):
    model, path = digits_variant
    net = lower.lower_file(path)
    cfg = model.cfg
    assert len(net.blocks) == 4
    tails = {b.tail.act for b in net.blocks}
    assert tails == ({"rprelu"} if cfg.variant == "baseline" else {"insta"})
    if cfg.effective_stats_reuse == "auto":
        assert [b.tail.stat_source for b in net.blocks] == ["reuse", "reuse", "own", "reuse"]
    if cfg.variant == "insta_plus":
        assert all(isinstance(b.threshold, L.ThresholdPlus) and b.tail.se is not None for b in net.blocks)
    assert [b.shortcut.kind for b in net.blocks] == ["identity", "identity", "proj", "identity"]


def test_make_lower_report(digits_insta_ckpt, tmp_path):
    onnx_path = tmp_path / "model.onnx"
    export_checkpoint(digits_insta_ckpt, onnx_path, n_check=2)
    assert lower.main([str(onnx_path), "-n", "8", "--out", str(tmp_path / "rep"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "rep" / "lowered.json").read_text())
    a = report["agreement"]
    assert a["n"] == 8 and 0.0 <= a["top1_agreement"] <= 1.0 and len(a["sign_agreement"]) == 4
    assert all(v > 0.8 for v in a["sign_agreement"].values())
    rows = {r["layer"]: r for r in report["layers"]}
    assert rows["block0"]["accumulator_bits"] == L.signed_bits(-288, 288)  # 3x3x32 binary MACs
    assert rows["block0"]["power_sum_bits"] == [14, 22, 28]  # 8-bit q over 8x8 pixels
    assert "sign agreement" in (tmp_path / "rep" / "lowered.md").read_text()
    assert a["lowered_graph_identical"] is True
    from qonnx.core.modelwrapper import ModelWrapper

    from instabnn.hw.ops import hw_op

    graph = ModelWrapper(str(tmp_path / "rep" / "lowered.onnx"))
    ops = [n.op_type for n in graph.graph.node]
    assert ops[0] == "StemConv" and ops[-1] == "Classifier" and ops.count("BinaryConv") == 4
    conv = hw_op(graph, graph.get_nodes_by_op_type("BinaryConv")[0])
    assert conv.get_exp_cycles() == 8 * 8 * 288 * 32  # PE = SIMD = 1
    assert conv.get_output_datatype().bitwidth() == L.signed_bits(-288, 288)


@pytest.mark.slow
@pytest.mark.parametrize("steps", [0, 5], ids=["random", "trained"])
def test_resnet20_random_and_trained_weights(tmp_path, steps):
    _resnet20_case(tmp_path, steps)


def _resnet20_case(tmp_path, steps: int, n_inputs: int = 3):
    """ResNet-20 (CIFAR-10 shape, INSTA), random weights with non-trivial statistics, optionally trained for a few
    Adam steps on generated images: the lowered graph equals the hardware-exact mode."""
    cfg = NetConfig(arch="resnet20", variant="insta")
    model = random_weights_network(cfg)
    if steps:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(3)
        for _ in range(steps):
            xb, yb = torch.randn(16, 3, 32, 32, generator=gen), torch.randint(0, 10, (16,), generator=gen)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        model.eval()
    path = tmp_path / "resnet20.onnx"
    export_model(model, path, {"instabnn.config": json.dumps(cfg.to_dict())}, n_check=1)
    x = np.random.default_rng(1).standard_normal((n_inputs, 3, 32, 32)).astype(np.float32)
    net = lower.lower_file(path)
    q0 = net.quantize_input(x)
    logits = lower.execute_lowered(lower.to_onnx(net, x.shape[1:]), q0)
    assert np.array_equal(logits, net.run(q0))
    assert np.array_equal(logits, HardwareExact(model).integer_logits(x))
    report = lower.agreement(lower.read_graph(path), net, x, progress=False)
    print("ResNet-20", "trained" if steps else "random", report)


# ------------------------------------------------------------------------------------------ refusals


def _edit(path, out, fn):
    m = onnx.load(str(path))
    fn(m.graph)
    onnx.save(m, str(out))
    return out


def test_refuses_unknown_activation(baseline_variant, tmp_path):
    model, path = baseline_variant

    def swap(graph):
        prelu = next(n for n in graph.node if n.op_type == "PRelu")
        prelu.op_type = "LeakyRelu"
        del prelu.input[1:]

    bad = _edit(path, tmp_path / "bad.onnx", swap)
    with pytest.raises(lower.LoweringError, match="node Sub_1 .*expected one PRelu.*LeakyRelu"):
        lower.lower_file(bad)
    assert lower.main([str(bad), "--out", str(tmp_path / "rep")]) == 2
    assert not (tmp_path / "rep").exists()


def test_refuses_non_binary_activation(baseline_variant, tmp_path):
    model, path = baseline_variant

    def unbinarize(graph):  # the first RSign's binarizer becomes an identity: a real-valued conv input
        sub = next(n for n in graph.node if n.op_type == "Sub")
        bq = next(n for n in graph.node if n.op_type == "BipolarQuant" and n.input[0] == sub.output[0])
        bq.op_type, bq.domain = "Identity", ""
        del bq.input[1:]

    with pytest.raises(lower.LoweringError, match="node Sub_0 .*expected one BipolarQuant.*Identity"):
        lower.lower_file(_edit(path, tmp_path / "bad.onnx", unbinarize))


def test_refuses_odd_pool_window(baseline_variant, tmp_path):
    model, path = baseline_variant

    def pool3(graph):
        pool = next(n for n in graph.node if n.op_type == "AveragePool")
        for a in pool.attribute:
            if a.name == "strides":
                a.ints[:] = [1, 1]

    with pytest.raises(lower.LoweringError, match="AveragePool.*power-of-two window"):
        lower.lower_file(_edit(path, tmp_path / "bad.onnx", pool3))


def test_refuses_missing_file(tmp_path):
    with pytest.raises(lower.LoweringError, match="no such file"):
        lower.lower_file(tmp_path / "none.onnx")


# ------------------------------------------------------------------------------------------ widths


def test_block_tail_fits_its_width_on_worst_case_inputs():
    rng = np.random.default_rng(0)
    c, k, e_out = 16, 288, -5
    act = {"kind": "insta", "mu": rng.normal(size=c), "sigma": rng.uniform(0.5, 2, c), "beta": rng.normal(size=c),
           "g": "tanh3", "slope": rng.uniform(0, 1, c), "alpha": rng.normal(size=c), "se": None}
    tail = L.residual_activation(rng.uniform(-0.05, 0.05, c), rng.normal(size=c), k, "shift", e_out, None, act,
                                 e_out, 8, 16, "test")
    sc_bound = 128
    bits = tail.pre_activation_bits(k, sc_bound)
    for acc_v, sc_v in [(k, 127), (-k, -128), (k, -128), (-k, 127)]:
        acc = np.full((1, c, 4, 4), acc_v)
        sc = np.full((1, c, 4, 4), sc_v)
        y = tail.pre_activation(acc, sc)
        d = y - tail.shift(y, None)[:, :, None, None]
        assert np.abs(y).max() < 2 ** (bits - 1) and np.abs(d).max() < 2 ** (bits - 1)
        out = tail(acc, sc)
        assert out.min() >= -128 and out.max() <= 127


def test_statistic_polynomial_fits_its_width_on_worst_case_inputs():
    rng = np.random.default_rng(1)
    c, bits, pixels = 8, 8, 64
    poly = L.moment_polynomial(rng.normal(size=c) * 20, rng.uniform(5, 40, c), rng.normal(size=c),
                               rng.normal(size=c), pixels, bits, L.G_IN_FRAC)
    width = poly.accumulator_bits()
    for v in (-128, 127, 0):
        z = poly.evaluate(np.full((1, c, 8, 8), v))
        assert max(abs(int(t)) for t in z.reshape(-1)) < 2 ** (width - 1)
    consts = insta_th_constants(rng.normal(size=c), rng.uniform(0.2, 1, c), rng.normal(size=c), rng.normal(size=c),
                                2.0 ** -5, pixels, bits)
    # the same polynomial in INSTA-Th form gives the same thresholds as the unit's golden function
    assert consts.threshold_accumulator_bits >= max(consts.power_sum_bits)


def test_g_table_and_moment_polynomial_match_the_float_math():
    rng = np.random.default_rng(2)
    c, pixels = 4, 16
    m, k, a, b = rng.normal(size=c) * 10, rng.uniform(5, 20, c), rng.normal(size=c), rng.normal(size=c)
    poly = L.moment_polynomial(m, k, a, b, pixels, 8, L.G_IN_FRAC)
    v = rng.integers(-128, 128, size=(3, c, 4, 4))
    z_float = a[None] * (((v - m[None, :, None, None]) / k[None, :, None, None]) ** 3).mean(axis=(2, 3)) + b[None]
    z_fx = np.asarray(poly.evaluate(v), dtype=np.float64) * 2.0 ** -poly.frac
    assert np.abs(z_fx - z_float).max() <= 2.0 ** -(L.G_IN_FRAC + L.GUARD_BITS)
    zs = np.linspace(-20, 20, 4001)
    for name, fn in L.G_FUNCTIONS.items():
        g = L.g_lookup(name, L.fix(zs, 20).astype(object), 20) * 2.0 ** -L.G_OUT_FRAC
        assert np.abs(g - fn(np.clip(zs, -L.G_RANGE, L.G_RANGE))).max() < 2e-3, name


def test_hardware_exact_mode_trains(digits_insta_ckpt):
    payload = load_checkpoint(digits_insta_ckpt)
    model = build_network(checkpoint_config(payload))
    load_weights(model, payload["model"])
    model.eval()
    _, _, x, y = digits_arrays()
    xb, yb = torch.from_numpy(x[:32]), torch.from_numpy(y[:32])
    exact = HardwareExact(model)
    out = exact(xb)
    net = integer_network(model)
    ints = net.run(net.quantize_input(x[:32]))
    assert torch.allclose(out.double(), torch.from_numpy(ints * net.classifier.lsb), rtol=1e-6, atol=0)
    loss = torch.nn.functional.cross_entropy(out / (out.abs().max() + 1e-9), yb)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


# ------------------------------------------------------------------------------------------ plain W1A1 networks


def _bnn_pynq_model(name: str):
    """A Brevitas bnn_pynq example network (random weights, non-trivial BatchNorm incl. negative gains) and its
    input shape."""
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    from instabnn.model.bnn_pynq import randomise_batchnorm
    torch.manual_seed(0)
    model, _ = model_with_cfg(name, pretrained=False)
    return randomise_batchnorm(model), (1, 1, 28, 28) if "fc" in name else (1, 3, 32, 32)


def _bnn_pynq(name: str, tmp_path):
    """A bnn_pynq example network exported by TorchScript (``dynamo=False``)."""
    from brevitas.export import export_qonnx

    model, shape = _bnn_pynq_model(name)
    path = tmp_path / f"{name}.onnx"
    export_qonnx(model, torch.rand(shape), str(path), dynamo=False)
    return path, shape[1:]


@pytest.mark.parametrize("name", ["tfc_1w1a", pytest.param("cnv_1w1a", marks=pytest.mark.slow)])
def test_brevitas_w1a1_networks_lower(name, tmp_path):
    path, shape = _bnn_pynq(name, tmp_path)
    net = lower.lower_file(path)
    x = np.random.default_rng(0).uniform(0, 1, (6, *shape)).astype(np.float32)
    report = lower.agreement(lower.read_graph(path), net, x, progress=False)
    assert report["top1_agreement"] == 1.0
    assert all(v >= 0.999 for v in report["sign_agreement"].values()), report["sign_agreement"]
    q0 = net.quantize_input(x)
    assert np.array_equal(lower.execute_lowered(lower.to_onnx(net, x.shape[1:]), q0), net.run(q0))
    assert any(np.any(s.thresholds != s.thresholds[0]) for s in net.stages if s.thresholds is not None)
    # FINN's own streamlining (BatchNorm + sign -> MultiThreshold, XNOR-popcount) gives the same weights and
    # thresholds for every binary-input layer
    rows = lower.finn_crosscheck(lower.read_graph(path), net)
    assert rows and all(r["weights_equal"] and r.get("thresholds_equal", True) for r in rows), rows


def test_refuses_non_binary_w2a2(tmp_path):
    path, _ = _bnn_pynq("cnv_2w2a", tmp_path)
    with pytest.raises(lower.LoweringError, match="BipolarQuant"):
        lower.lower_file(path)


def test_hardware_exact_fine_tuning_cli(digits_insta_ckpt, tmp_path):
    """``--hardware-exact --init``: one epoch of fine-tuning; the recorded test accuracy is the accuracy of the
    resulting model's integer network (what the accelerator computes)."""
    ckpt = train_digits(tmp_path, "--variant", "insta", "--init", str(digits_insta_ckpt), "--hardware-exact",
                        "--epochs", "1", "--lr", "1e-4")
    payload = load_checkpoint(ckpt)
    assert payload["run"]["hardware_exact"] is True
    model = build_network(checkpoint_config(payload))
    load_weights(model, payload["model"])
    _, _, x, y = digits_arrays()
    net = integer_network(model.eval())
    acc = float((net.run(net.quantize_input(x)).argmax(1) == y).mean())
    assert payload["history"][-1]["test_acc"] == pytest.approx(acc, abs=1e-9)


def test_plain_sign_baseline_lowers(tmp_path):
    """--baseline-threshold sign (supplementary Sec. I's "Sign" model): a BipolarQuant straight on x lowers as a
    static threshold at 0, and the lowered network equals the hardware-exact mode."""
    ckpt = train_digits(tmp_path, "--variant", "baseline", "--baseline-threshold", "sign", "--epochs", "1")
    export_checkpoint(ckpt, tmp_path / "model.onnx", n_check=2)
    payload = load_checkpoint(ckpt)
    model = build_network(checkpoint_config(payload))
    load_weights(model, payload["model"])
    assert not any(n.endswith("threshold.threshold") for n in payload["model"])  # no learned tau
    _, _, x, _ = digits_arrays()
    net = lower.lower_file(tmp_path / "model.onnx")
    assert all(set(b.threshold.coeffs[0]) == {0} for b in net.blocks)
    assert np.array_equal(net.run(net.quantize_input(x[:64])), HardwareExact(model.eval()).integer_logits(x[:64]))


# ------------------------------------------------------------------------------------------ exporter forms


def _export_dynamo(model, shape, path):
    """Brevitas' default call: torch's dynamo exporter (Gemm for Linear, INSTA operators decomposed into their
    arithmetic, weights in an external ``.onnx.data`` file beside the model)."""
    from brevitas.export import export_qonnx

    export_qonnx(model, torch.rand(shape), str(path))
    assert path.with_name(path.name + ".data").is_file()  # the external-data form is the one exercised
    return path


def _assert_same_integer_network(nets, x, exact_constants: bool = True):
    """Same input quantizer, identical integer logits on ``x``, the same lowered node list, identical lowered-graph
    execution (first images), and (``exact_constants``) identical constants."""
    a, b = nets
    qa, qb = a.quantize_input(x), b.quantize_input(x)
    assert np.array_equal(qa, qb)
    assert np.array_equal(a.run(qa), b.run(qb))
    ga, gb = lower.to_onnx(a, x.shape[1:]), lower.to_onnx(b, x.shape[1:])
    assert [(n.op_type, n.name) for n in ga.graph.node] == [(n.op_type, n.name) for n in gb.graph.node]
    assert np.array_equal(lower.execute_lowered(ga, qa[:2]), lower.execute_lowered(gb, qb[:2]))
    if exact_constants:
        for init in ga.graph.initializer:
            assert np.array_equal(ga.get_initializer(init.name), gb.get_initializer(init.name)), init.name


@pytest.mark.parametrize("name", ["tfc_1w1a", pytest.param("cnv_1w1a", marks=pytest.mark.slow)])
def test_dynamo_and_torchscript_exports_of_bnn_pynq_lower_alike(name, tmp_path, monkeypatch):
    """Issue 16 §1: Brevitas' default export (dynamo) of its own bnn_pynq networks lowers, to the integer network
    of the TorchScript export; the model is read from another working directory by a relative path (the external
    weights file is found beside the model)."""
    from brevitas.export import export_qonnx

    model, shape = _bnn_pynq_model(name)
    (tmp_path / "exports").mkdir()
    _export_dynamo(model, shape, tmp_path / "exports" / "dynamo.onnx")
    export_qonnx(model, torch.rand(shape), str(tmp_path / "exports" / "torchscript.onnx"), dynamo=False)
    monkeypatch.chdir(tmp_path / "exports")
    nets = [lower.lower_file(name) for name in ("torchscript.onnx", "dynamo.onnx")]
    x = np.random.default_rng(0).uniform(0, 1, (16, *shape[1:])).astype(np.float32)
    _assert_same_integer_network(nets, x)


@pytest.mark.parametrize("name", ["baseline", "insta", pytest.param("insta_plus", marks=pytest.mark.slow),
                                  pytest.param("stats_reuse", marks=pytest.mark.slow)])
def test_dynamo_and_torchscript_exports_of_digits_networks_lower_alike(name, tmp_path, tmp_path_factory):
    """Issue 16 §1 for the project's own networks: a Brevitas default (dynamo) export, whose INSTA operators come
    as their arithmetic, lowers to the integer network of the project's exporter (model/export.py: TorchScript,
    ``dynamo=False``).
    The dynamo exporter rounds sigma = sqrt(var + eps) differently from PyTorch in the last bit of some channels,
    so INSTA constants that scale with sigma may differ by a few units of their last place: there the logits on
    the whole digits test split must still be identical."""
    model, project_export = _variant(name, tmp_path_factory)
    dynamo = _export_dynamo(model, (1, *model.input_shape), tmp_path / "dynamo.onnx")
    nets = [lower.lower_file(p) for p in (project_export, dynamo)]
    _assert_same_integer_network(nets, digits_arrays()[2], exact_constants=name == "baseline")
