"""An independent cross-check of the integer reference with hls4ml's QONNX front end and C++ emulation.

``python -m instabnn.hw.hls4ml_check MODEL.onnx --out DIR`` prepares the QONNX graph the way hls4ml's documentation
asks (qonnx ``cleanup_model``, ``ConvertToChannelsLastAndClean``, ``GemmToMatMul``, ``cleanup_model`` again),
converts it with ``hls4ml.converters.convert_from_onnx_model`` (Vitis backend, ``io_parallel``), builds the C++
emulation with g++ (``compile()``) and runs ``predict()`` on the digits test split. Its logits are compared with
the project's integer reference (:func:`instabnn.hw.lower.lower_file`, logits = integers x their scale) and with the
float QONNX graph (qonnx's executor).

Where hls4ml refuses the graph, the report names the node, its op and hls4ml's own message; a survey runs every
node through hls4ml's ONNX layer handler so that all the nodes its parser refuses are listed, not only the first.
When the model given cannot be run, a plain W1A1 network (the Brevitas bnn_pynq ``FC``, TFC-like, 64-64-64
binary hidden units on the 8x8 digits, briefly trained) is built, exported with Brevitas' ``export_qonnx`` and
checked instead, so that predictions are compared on at least one network; the report says so.

Each network is tried as exported, and, for binary networks, with one semantics-preserving rewrite: every
``BipolarQuant`` of a constant weight replaced by the constant it computes (+-scale). The rewrite is needed
because hls4ml 1.3.0's ``quantize_dense_output`` pass applies the binary quantizer (x >= 0 -> 1, else 0) a second
time to weights already stored as {0, 1}, so every binary weight becomes 1; the report measures this on the
converted model rather than assuming it. Writes ``hls4ml.json`` and ``hls4ml.md`` (and the fallback network, the
kept projects) into ``--out``, built beside it and swapped in; an existing ``--out`` is replaced only when it is empty
or an earlier report folder of this check (:mod:`instabnn.outputs`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

PREP_STEPS = ["qonnx.util.cleanup.cleanup_model", "qonnx ConvertToChannelsLastAndClean", "qonnx GemmToMatMul",
              "qonnx.util.cleanup.cleanup_model"]
DEFAULT_PRECISIONS = ("fixed<32,16>", "fixed<64,32>")
LOGIT_TOL = 1e-2  # a logit difference above this is more than fixed-point rounding of the final scale


class HlsRefused(Exception):
    """hls4ml refused the graph: ``info`` names the node, its op and hls4ml's message."""

    def __init__(self, info: dict):
        super().__init__(info.get("reason", ""))
        self.info = info


def hls4ml_version() -> str:
    import hls4ml

    return hls4ml.__version__


# ------------------------------------------------------------------------------------------ graph preparation


def prepare(model):
    """The graph as hls4ml's QONNX front end documents it wants it."""
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    model = cleanup_model(model)
    model = model.transform(ConvertToChannelsLastAndClean())
    model = model.transform(GemmToMatMul())
    return cleanup_model(model)


def fold_binary_weights(model):
    """Replace each BipolarQuant of a constant (a binary weight) by the constant it computes: +scale where the
    float weight is >= 0, else -scale (QONNX BipolarQuant semantics). Returns (model, names of folded nodes)."""
    from qonnx.util.cleanup import cleanup_model

    folded = []
    for node in list(model.graph.node):
        if node.op_type != "BipolarQuant":
            continue
        w = model.get_initializer(node.input[0])
        s = model.get_initializer(node.input[1])
        if w is None or s is None:
            continue
        model.set_initializer(node.output[0], (np.where(w >= 0, 1.0, -1.0) * s).astype(np.float32))
        model.graph.node.remove(node)
        folded.append(node.name)
    return cleanup_model(model), folded


def parser_survey(model) -> list[dict]:
    """Every node through hls4ml's ONNX layer handler: op types it does not know, and nodes whose handler raises
    (hls4ml's own parser stops at the first of them)."""
    from hls4ml.converters.onnx_to_hls import get_input_shape, layer_handlers

    skip = {"Dropout", "Identity"}
    rows = []
    for node in model.graph.node:
        if node.op_type in skip:
            continue
        if node.op_type not in layer_handlers:
            rows.append({"node": node.name, "op": node.op_type, "status": "unsupported op",
                         "reason": f"Unsupported operation type: {node.op_type}"})
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                layer_handlers[node.op_type](node, list(node.input), get_input_shape(model.graph, node), model.graph)
        except Exception as e:  # hls4ml raises RuntimeError / Exception with its reason
            rows.append({"node": node.name, "op": node.op_type, "status": "refused", "reason": str(e)})
    return rows


def _failing_node(model, exc: BaseException) -> dict:
    """The node hls4ml was handling when it raised (from the traceback's handler frame), with its reason."""
    info = {"reason": f"{type(exc).__name__}: {exc}"}
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        node = frame.f_locals.get("node")
        if node is not None and hasattr(node, "op_type") and hasattr(node, "name"):
            info.update(node=node.name, op=node.op_type)
        elif node is not None and hasattr(node, "class_name") and "node" not in info:
            info.update(node=getattr(node, "name", "?"), op=f"hls4ml layer {node.class_name}")
    info["stage"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return info


# ------------------------------------------------------------------------------------------ conversion


def convert(model, project_dir: Path, precision: str, log: io.StringIO):
    """hls4ml model of a prepared QONNX graph: Vitis backend, io_parallel, default precision ``precision``
    (hls4ml infers the remaining types, 'auto')."""
    import hls4ml

    with contextlib.redirect_stdout(log):
        try:
            config = hls4ml.utils.config.config_from_onnx_model(model, granularity="name", backend="Vitis",
                                                                default_precision=precision)
            for layer_config in config["LayerName"].values():
                layer_config["Trace"] = True  # trace() (the binary-activation diagnosis) needs it at conversion
            hls_model = hls4ml.converters.convert_from_onnx_model(
                model, output_dir=str(project_dir), backend="Vitis", io_type="io_parallel", hls_config=config)
        except Exception as e:
            raise HlsRefused(_failing_node(model, e)) from e
        hls_model.compile()
    return hls_model


def layer_types(hls_model) -> list[dict]:
    rows = []
    for layer in hls_model.get_layers():
        rows.append({"layer": layer.name, "class": layer.class_name,
                     "output": {k: str(v.type.precision) for k, v in layer.variables.items()},
                     "weights": {k: str(v.type.precision) for k, v in layer.weights.items()}})
    return rows


def collapsed_binary_weights(hls_model) -> list[dict]:
    """Dense / Conv layers whose 1-bit weights are all one value in the converted model (the double-quantization
    effect); the source weights of a trained or random network have both signs."""
    rows = []
    for layer in hls_model.get_layers():
        w = layer.weights.get("weight")
        if w is None or str(w.type.precision) != "uint<1>":
            continue
        values = np.unique(np.asarray(w.data))
        rows.append({"layer": layer.name, "weight_values": [int(v) for v in values], "size": int(np.size(w.data)),
                     "collapsed": bool(len(values) == 1)})
    return rows


def graph_input(model, x_nchw: np.ndarray) -> np.ndarray:
    """Images in the layout of the prepared graph's input: channels-last where the conversion moved the input
    there (graphs with convolutions), else as they are (a dense-only graph keeps its NCHW input)."""
    shape = tuple(model.get_tensor_shape(model.graph.input[0].name))[1:]
    if x_nchw.ndim == 4 and shape == (x_nchw.shape[2], x_nchw.shape[3], x_nchw.shape[1]) != x_nchw.shape[1:]:
        x_nchw = np.transpose(x_nchw, (0, 2, 3, 1))
    return np.ascontiguousarray(x_nchw.astype(np.float32))


def hls_predict(hls_model, x: np.ndarray) -> np.ndarray:
    """hls4ml's C++ emulation on images already in the prepared graph's layout."""
    x = np.ascontiguousarray(x.reshape(len(x), -1).astype(np.float32))
    with contextlib.redirect_stdout(io.StringIO()):
        y = hls_model.predict(x)
    return np.asarray(y, np.float64).reshape(len(x), -1)


def binary_trace(hls_model, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Outputs of hls4ml's binary layers (uint<1>: 0 for -1, 1 for +1), in graph order, from its trace."""
    names = [layer.name for layer in hls_model.get_layers()
             if any(str(v.type.precision) == "uint<1>" for v in layer.variables.values())]
    x = np.ascontiguousarray(x.reshape(len(x), -1).astype(np.float32))
    with contextlib.redirect_stdout(io.StringIO()):
        _, trace = hls_model.trace(x)
    return [(n, np.asarray(trace[n]).reshape(len(x), -1)) for n in names if n in trace]


# ------------------------------------------------------------------------------------------ the two sides


def reference_logits(net, x: np.ndarray, trace: dict | None = None) -> np.ndarray:
    """Real logits of the project's integer reference: integers times their scale."""
    from instabnn.contract.network import BinaryChainNetwork

    ints = net.run(net.quantize_input(x), trace)
    scale = 2.0 ** -net.logits.frac if isinstance(net, BinaryChainNetwork) else net.classifier.lsb
    return ints.astype(np.float64) * scale


def float_logits(model_path: Path, x: np.ndarray) -> np.ndarray:
    from qonnx.core.onnx_exec import execute_onnx

    from instabnn.hw.lower import read_graph

    model = read_graph(model_path)
    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    return np.concatenate([execute_onnx(model, {iname: x[i:i + 1].astype(np.float32)})[oname]
                           for i in range(len(x))]).astype(np.float64)


def _reference_bits(net, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The reference's binary activations in order (bits 0/1), for a plain W1A1 chain."""
    from instabnn.contract.network import BinaryChainNetwork

    if not isinstance(net, BinaryChainNetwork):
        return []
    trace: dict = {}
    q0 = net.quantize_input(x)
    net.run(q0, trace)
    out = [("input", q0.reshape(len(x), -1))] if net.input_bits == 1 else []
    out += [(s.name, trace[f"{s.name}.out"].reshape(len(x), -1)) for s in net.stages if s.thresholds is not None]
    return out


def compare(hls: np.ndarray, ref: np.ndarray, flt: np.ndarray, labels) -> dict:
    diff = np.abs(hls - ref)
    out = {"n": int(len(hls)),
           "top1_agreement_hls4ml_vs_reference": float((hls.argmax(1) == ref.argmax(1)).mean()),
           "top1_agreement_hls4ml_vs_float": float((hls.argmax(1) == flt.argmax(1)).mean()),
           "top1_agreement_reference_vs_float": float((ref.argmax(1) == flt.argmax(1)).mean()),
           "max_abs_logit_diff_hls4ml_vs_reference": float(diff.max()),
           "max_abs_logit_diff_hls4ml_vs_float": float(np.abs(hls - flt).max()),
           "max_abs_logit_diff_reference_vs_float": float(np.abs(ref - flt).max()),
           "images_with_logit_diff_above_tol": int((diff.max(1) > LOGIT_TOL).sum()),
           "logit_tol": LOGIT_TOL,
           "max_abs_logit_diff_within_tol_images": float(diff[diff.max(1) <= LOGIT_TOL].max(initial=0.0))}
    if labels is not None:
        out.update(accuracy_hls4ml=float((hls.argmax(1) == labels).mean()),
                   accuracy_reference=float((ref.argmax(1) == labels).mean()),
                   accuracy_float=float((flt.argmax(1) == labels).mean()))
    return out


def bit_agreement(hls_bits, ref_bits) -> list[dict]:
    """Binary activations of hls4ml vs the reference, layer by layer (aligned from the last one back)."""
    rows = []
    k = min(len(hls_bits), len(ref_bits))
    for (hname, h), (rname, r) in zip(hls_bits[len(hls_bits) - k:], ref_bits[len(ref_bits) - k:]):
        if h.shape != r.shape:
            rows.append({"hls4ml_layer": hname, "reference": rname, "note": f"shapes {h.shape} vs {r.shape}"})
            continue
        diff = h.astype(np.int64) != r.astype(np.int64)
        rows.append({"hls4ml_layer": hname, "reference": rname, "bits": int(diff.size),
                     "bits_differing": int(diff.sum()), "images_differing": int(diff.any(1).sum())})
    return rows


# ------------------------------------------------------------------------------------------ one network


def check_network(model_path: Path, x: np.ndarray, labels, work: Path, precisions=DEFAULT_PRECISIONS,
                  source: str = "") -> dict:
    """All attempts for one exported QONNX network; never raises for hls4ml's refusals (they are reported)."""
    from qonnx.core.modelwrapper import ModelWrapper

    from instabnn.hw import lower

    report: dict = {"model": str(model_path), "inputs": source, "n": int(len(x)), "attempts": []}
    try:
        net = lower.lower_file(model_path)
    except lower.LoweringError as e:
        report["reference_error"] = str(e)
        return report
    report["kind"] = "residual (INSTA-BNN / ReActNet-style)" if lower.is_residual(
        ModelWrapper(str(model_path))) else "plain W1A1 chain"
    sides: dict = {}  # reference and float logits, computed once the first attempt runs

    def reference_and_float():
        if not sides:
            sides["ref"], sides["flt"] = reference_logits(net, x), float_logits(model_path, x)
            report["reference_vs_float"] = {
                "top1_agreement": float((sides["ref"].argmax(1) == sides["flt"].argmax(1)).mean()),
                "max_abs_logit_diff": float(np.abs(sides["ref"] - sides["flt"]).max())}
        return sides["ref"], sides["flt"]

    prepared = prepare(ModelWrapper(str(model_path)))
    report["prepared_ops"] = sorted({n.op_type for n in prepared.graph.node})
    report["parser_survey"] = parser_survey(prepared)

    variants = [("as exported", prepared)]
    folded_model, folded = fold_binary_weights(ModelWrapper(copy.deepcopy(prepared.model)))
    if folded:
        variants.append(("binary weights folded to +-scale constants", folded_model))
    for vi, (variant, model) in enumerate(variants):
        for pi, precision in enumerate(precisions):
            attempt = {"variant": variant, "default_precision": precision}
            if variant != "as exported":
                attempt["folded_nodes"] = folded
            log = io.StringIO()
            start = time.time()
            try:
                hls_model = convert(model, work / f"prj{vi}_{pi}", precision, log)
            except HlsRefused as e:
                attempt.update(status="refused", refusal=e.info, seconds=round(time.time() - start, 2))
                report["attempts"].append(attempt)
                break  # the other precisions are refused the same way
            except Exception as e:  # compile (g++) failure or an unexpected error inside hls4ml
                attempt.update(status="failed", error=f"{type(e).__name__}: {e}", log_tail=log.getvalue()[-2000:],
                               seconds=round(time.time() - start, 2))
                report["attempts"].append(attempt)
                continue
            attempt["compile_seconds"] = round(time.time() - start, 2)
            hls = hls_predict(hls_model, graph_input(model, x))
            ref, flt = reference_and_float()
            attempt.update(status="ran", agreement=compare(hls, ref, flt, labels),
                           collapsed_binary_weights=collapsed_binary_weights(hls_model),
                           layers=layer_types(hls_model))
            warnings = [line for line in log.getvalue().splitlines() if "WARNING" in line.upper()]
            if warnings:
                attempt["hls4ml_warnings"] = sorted(set(warnings))[:20]
            ref_bits = _reference_bits(net, x)
            if ref_bits and attempt["agreement"]["images_with_logit_diff_above_tol"]:
                try:
                    hls_bits = binary_trace(hls_model, graph_input(model, x))
                    attempt["binary_activation_agreement"] = bit_agreement(hls_bits, ref_bits)
                except Exception as e:  # tracing is a diagnosis only
                    attempt["binary_activation_agreement_error"] = f"{type(e).__name__}: {e}"
            attempt["seconds"] = round(time.time() - start, 2)
            report["attempts"].append(attempt)
    report["ran"] = any(a["status"] == "ran" for a in report["attempts"])
    return report


# ------------------------------------------------------------------------------------------ W1A1 fallback


def build_w1a1_digits(path: Path, steps: int = 300, seed: int = 0) -> Path:
    """A TFC-like Brevitas W1A1 network for the 8x8 digits (bnn_pynq ``FC``: 64-64-64 binary hidden units, binary
    input), trained for ``steps`` Adam steps on the digits training split, exported with ``export_qonnx``."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models.FC import FC

    from instabnn.model.data import digits_arrays

    torch.manual_seed(seed)
    model = FC(num_classes=10, weight_bit_width=1, act_bit_width=1, in_bit_width=1, in_channels=1,
               out_features=[64, 64, 64], in_features=(8, 8))
    x_tr, y_tr, _, _ = digits_arrays()
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):
        export_qonnx(model, torch.rand(1, 1, 8, 8), str(path), dynamo=False)
    return path


# ------------------------------------------------------------------------------------------ report


def run_check(model_path: Path, out: Path, n: int | None = None, precisions=DEFAULT_PRECISIONS,
              fallback: bool = True, keep_projects: bool = False, w1a1_steps: int = 300) -> dict:
    """The report of the check; the fallback network and the kept projects go into the folder ``out``."""
    from instabnn.hw.lower import evaluation_inputs

    start = time.time()
    work = Path(tempfile.mkdtemp(prefix="hls4ml-check-"))
    report = {"hls4ml": hls4ml_version(), "backend": "Vitis", "io_type": "io_parallel",
              "preparation": PREP_STEPS, "networks": []}
    try:
        x, labels, source = evaluation_inputs(model_path, n)
        report["networks"].append(check_network(model_path, x, labels, work / "main", precisions, source))
        if fallback and not report["networks"][0].get("ran"):
            w1a1 = build_w1a1_digits(work / "w1a1_digits_fc.onnx", steps=w1a1_steps)
            from instabnn.model.data import digits_arrays

            _, _, xt, yt = digits_arrays()
            xt, yt = xt[:n], yt[:n]
            net = check_network(w1a1, xt, yt, work / "w1a1", precisions, "digits test split")
            net["model"] = "w1a1_digits_fc.onnx (Brevitas bnn_pynq FC 64-64-64, W1A1, "\
                           f"{w1a1_steps} Adam steps on digits; built because the model given did not run)"
            shutil.copyfile(w1a1, out / "w1a1_digits_fc.onnx")
            report["networks"].append(net)
        if keep_projects:
            shutil.copytree(work, out / "hls4ml_projects")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["compared_predictions"] = any(net.get("ran") for net in report["networks"])
    report["seconds"] = round(time.time() - start, 2)
    return report


def _pct(v) -> str:
    return f"{100 * v:.2f}%"


def markdown(report: dict) -> str:
    lines = [f"# hls4ml cross-check (hls4ml {report['hls4ml']}, {report['backend']} backend, {report['io_type']})",
             "", "Preparation: " + " -> ".join(report["preparation"]) + "; then "
             "`convert_from_onnx_model`, `compile()` (g++ C++ emulation) and `predict()`.", ""]
    for net in report["networks"]:
        lines += [f"## `{Path(net['model']).name if ' ' not in net['model'] else net['model']}`", "",
                  f"{net.get('kind', '?')}; {net['n']} images ({net['inputs']})."]
        if "reference_error" in net:
            lines += ["", f"The project's lowering refused it: {net['reference_error']}", ""]
            continue
        if "reference_vs_float" in net:
            rf = net["reference_vs_float"]
            lines[-1] += (f" The project's reference vs the float QONNX graph: top-1 agreement "
                          f"{_pct(rf['top1_agreement'])}, max abs logit diff {rf['max_abs_logit_diff']:.3g}.")
        refused = net["parser_survey"]
        if refused:
            lines += ["", "Nodes hls4ml's ONNX parser refuses (each node's handler run on its own):", "",
                      "| node | op | hls4ml's reason |", "|---|---|---|"]
            lines += [f"| {r['node']} | {r['op']} | {r['reason']} |" for r in refused]
        else:
            lines += ["", "hls4ml's ONNX parser accepts every node."]
        lines += ["", "| variant | precision | status | top-1 vs reference | top-1 vs float | max abs logit diff vs "
                  "reference | images over tol | accuracy hls4ml / reference / float |",
                  "|---|---|---|---|---|---|---|---|"]
        for a in net["attempts"]:
            if a["status"] == "ran":
                g = a["agreement"]
                acc = (f"{_pct(g['accuracy_hls4ml'])} / {_pct(g['accuracy_reference'])} / {_pct(g['accuracy_float'])}"
                       if "accuracy_hls4ml" in g else "-")
                lines.append(f"| {a['variant']} | {a['default_precision']} | ran | "
                             f"{_pct(g['top1_agreement_hls4ml_vs_reference'])} | "
                             f"{_pct(g['top1_agreement_hls4ml_vs_float'])} | "
                             f"{g['max_abs_logit_diff_hls4ml_vs_reference']:.4g} | "
                             f"{g['images_with_logit_diff_above_tol']} | {acc} |")
            else:
                why = a.get("refusal", {}) or {"reason": a.get("error", "")}
                where = f"node {why['node']} ({why.get('op', '?')}): " if "node" in why else ""
                lines.append(f"| {a['variant']} | {a['default_precision']} | {a['status']}: {where}"
                             f"{why['reason']} | - | - | - | - | - |")
        for a in net["attempts"]:
            collapsed = [c["layer"] for c in a.get("collapsed_binary_weights", []) if c["collapsed"]]
            if collapsed:
                lines += ["", f"- {a['variant']}, {a['default_precision']}: the 1-bit weights of "
                          f"{', '.join(collapsed)} are all one value in the converted model (hls4ml's "
                          "`quantize_dense_output` re-applies the {0,1} binary quantizer to weights already in "
                          "{0,1}: 0 >= 0 -> 1), so its predictions are not the network's."]
            for row in a.get("binary_activation_agreement", []):
                if row.get("bits_differing"):
                    lines.append(f"- {a['variant']}, {a['default_precision']}: binary layer {row['hls4ml_layer']} "
                                 f"(reference {row['reference']}) differs in {row['bits_differing']} of "
                                 f"{row['bits']} bits ({row['images_differing']} images)")
        lines.append("")
    lines += ["## Reading the numbers", "",
              "- hls4ml computes in fixed point: with the binary weights folded it fuses each BatchNormalization "
              "into the preceding Dense (weights x gain, rounded to the default precision's fraction bits), so a "
              "pre-activation within that rounding of zero can take the other sign, and the final affine "
              "(TensorNorm) is applied with rounded constants (logit differences of a few 1e-4 at fixed<32,16>).",
              "- A wider default precision shrinks both effects; what remains at fixed<64,32> is listed above.",
              f"- 'images over tol': images with some logit off by more than {LOGIT_TOL} from the reference.", "",
              f"Run time: {report['seconds']} s.", ""]
    if not report["compared_predictions"]:
        lines.insert(4, "**No network ran through hls4ml: no predictions were compared.**\n")
    return "\n".join(lines)


def main(argv=None) -> int:
    from instabnn.outputs import OutputDir, OutputError

    p = argparse.ArgumentParser(prog="instabnn-hls4ml-check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an .onnx file exported by instabnn-export (or a plain Brevitas W1A1 export)")
    p.add_argument("--out", required=True, help="report directory (hls4ml.json, hls4ml.md)")
    p.add_argument("-n", type=int, default=None, help="images compared (default: the whole digits test split)")
    p.add_argument("--precision", action="append", default=None,
                   help=f"hls4ml default precision, repeatable (default: {', '.join(DEFAULT_PRECISIONS)})")
    p.add_argument("--no-fallback", action="store_true",
                   help="do not build and check the W1A1 digits network when the model given does not run")
    p.add_argument("--w1a1-steps", type=int, default=300, help="training steps of the fallback W1A1 network")
    p.add_argument("--keep-projects", action="store_true", help="copy hls4ml's generated projects into --out")
    args = p.parse_args(argv)
    import importlib.util

    if importlib.util.find_spec("hls4ml") is None:
        print("instabnn-hls4ml-check: error: hls4ml is not installed (pip install hls4ml==1.3.0)", file=sys.stderr)
        return 2
    model = Path(args.model)
    if not model.is_file():
        print(f"instabnn-hls4ml-check: error: {model}: no such file", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        target = OutputDir(out, "instabnn-hls4ml-check")
    except OutputError as e:
        print(f"instabnn-hls4ml-check: error: {e}", file=sys.stderr)
        return 2
    with target as staging:
        report = run_check(model, staging, args.n, tuple(args.precision or DEFAULT_PRECISIONS), not args.no_fallback,
                           args.keep_projects, args.w1a1_steps)
        (staging / "hls4ml.json").write_text(json.dumps(report, indent=1, default=str))
        (staging / "hls4ml.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'hls4ml.json'} and {out / 'hls4ml.md'}")
    return 0 if report["compared_predictions"] else 1


if __name__ == "__main__":
    sys.exit(main())
