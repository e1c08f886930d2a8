"""The lowering report (``lowered.json`` / ``lowered.md``): per layer formats, accumulator widths and parameter
memory, and the integer network's agreement with the float graph."""

from __future__ import annotations

import numpy as np

from instabnn.contract.fixed_point import signed_bits
from instabnn.contract.insta import InstaThConstants, power_sum_bits
from instabnn.contract.network import IntegerNetwork
from instabnn.hw.lower.read import read_graph


def memory_bits(*objects) -> int:
    """Parameter memory of contract objects / arrays: every constant array at the width its values need (unsigned
    where none is negative: weight bits take 1 bit each)."""
    from instabnn.hw import ops

    total = 0
    for obj in objects:
        arrays = {"a": obj} if isinstance(obj, np.ndarray) else ops.pack(obj)[1]
        for a in arrays.values():
            a = np.asarray(a, np.int64)
            if a.size:
                lo, hi = int(a.min()), int(a.max())
                total += a.size * (max(1, hi.bit_length()) if lo >= 0 else signed_bits(lo, hi))
    return total


def _threshold_widths(unit) -> dict:
    if isinstance(unit, InstaThConstants):
        kind = "static" if all(c == 0 for cs in unit.coeffs[1:] for c in cs) else "insta_th"
        constants = memory_bits(np.asarray(unit.coeffs if kind != "static" else unit.coeffs[:1]))
        return {"kind": kind, "power_sum_bits": list(unit.power_sum_bits) if kind != "static" else [],
                "threshold_accumulator_bits": unit.threshold_accumulator_bits if kind != "static" else 0,
                "constant_bits": constants}
    return {"kind": "insta_th_plus", "power_sum_bits": list(power_sum_bits(unit.poly.input_bits, unit.poly.pixels)),
            "threshold_accumulator_bits": unit.poly.accumulator_bits(), "constant_bits": memory_bits(unit)}


def layer_table(net) -> list[dict]:
    """Per hardware layer: formats, accumulator widths and parameter memory in bits."""
    from instabnn.contract.network import BinaryChainNetwork

    rows = []
    if isinstance(net, BinaryChainNetwork):
        for i, st in enumerate(net.stages):
            first_int = i == 0 and net.input_bits > 1
            k = st.weight_bits[0].size * ((1 << (net.input_bits - 1)) if first_int else 1)
            last = st.thresholds is None
            rows.append({"layer": st.name, "kind": f"binary-weight {st.weight_bits.shape[-1]}x{st.weight_bits.shape[-1]}"
                         f"{' (int input)' if first_int else ''}{' -> logits' if last else ' -> BN-sign thresholds'}"
                         f"{f' -> maxpool {st.pool}' if st.pool > 1 else ''}", "shape": list(st.weight_bits.shape),
                         "input": f"int{net.input_bits} x 2^{net.input_exp}" if first_int else "bipolar",
                         "output": "int logits" if last else "bipolar", "accumulator_bits": signed_bits(-k, k),
                         "parameter_bits": memory_bits(st)})
        return rows
    stem_bound = int(np.abs(net.stem_weight).sum(axis=(1, 2, 3)).max()) * (1 << (net.input_bits - 1))
    rows.append({"layer": "stem", "kind": "int8 conv + BN requant", "shape": list(net.stem_weight.shape),
                 "input": f"int{net.input_bits} x 2^{net.input_exp}",
                 "output": f"int{net.stem_requant.out_bits} x 2^{net.stem_requant.out_exp}",
                 "accumulator_bits": signed_bits(-stem_bound, stem_bound),
                 "parameter_bits": memory_bits(net.stem_weight, net.stem_requant)})
    for block in net.blocks:
        origin = net.origin.get(block.name, {})
        e_in, b_in = origin.get("input_format", ["?", "?"])
        tw = _threshold_widths(block.threshold)
        k = int(block.weight_bits[0].size)
        tail = block.tail
        sc_bound = origin.get("shortcut_bound", 0)
        row = {"layer": block.name, "kind": f"{tw['kind']} -> binary {block.kernel}x{block.kernel}/{block.stride} "
                                            f"-> {tail.act}{'+' if tail.se is not None else ''}"
                                            f"{' (reuse)' if tail.stat_source == 'reuse' else ''}",
               "shape": list(block.weight_bits.shape), "input": f"int{b_in} x 2^{e_in}",
               "output": f"int{tail.out_bits} x 2^{tail.out_exp}",
               "power_sum_bits": tw["power_sum_bits"], "threshold_accumulator_bits": tw["threshold_accumulator_bits"],
               "accumulator_bits": signed_bits(-k, k), "tail_frac": tail.frac,
               "tail_bits": tail.pre_activation_bits(k, sc_bound) if sc_bound else None,
               "shortcut": block.shortcut.kind,
               "statistic_accumulator_bits": tail.poly.accumulator_bits() if tail.poly is not None else None,
               "parameter_bits": memory_bits(block.weight_bits, block.shortcut, block.tail) + tw["constant_bits"]}
        rows.append(row)
    c = net.classifier
    rows.append({"layer": "classifier", "kind": "global sum + int8 linear", "shape": list(c.weight.shape),
                 "output": f"int logits x {c.lsb:.3g}", "parameter_bits": memory_bits(c)})
    return rows


def agreement(model, net: IntegerNetwork, images: np.ndarray, labels=None, progress=True) -> dict:
    """The integer network against the float QONNX graph ``model`` (as :func:`read_graph` gives it): sign agreement
    per binarizer, top-1 agreement."""
    from qonnx.core.onnx_exec import execute_onnx
    from tqdm import tqdm

    iname = model.graph.input[0].name
    trace: dict = {}
    logits_int = net.run(net.quantize_input(images), trace)
    binarizers = {k: v for k, v in net.origin.items() if isinstance(v, dict) and "binarizer" in v}
    key = {k: v.get("trace", f"{k}.bits") for k, v in binarizers.items()}
    same = dict.fromkeys(binarizers, 0)
    float_logits = []
    for i in tqdm(range(len(images)), desc="float graph", disable=None if progress else True, leave=False):
        ctx = execute_onnx(model, {iname: images[i:i + 1].astype(np.float32)}, return_full_exec_context=True)
        float_logits.append(ctx[net.origin["logits"]])
        for k, v in binarizers.items():
            same[k] += int(((ctx[v["binarizer"]].reshape(-1) > 0) == (trace[key[k]][i].reshape(-1) == 1)).sum())
    float_logits = np.concatenate(float_logits)
    out = {"n": len(images),
           "top1_agreement": float((float_logits.argmax(1) == logits_int.argmax(1)).mean()),
           "sign_agreement": {k: same[k] / trace[key[k]].size for k in binarizers}}
    if labels is not None:
        out["accuracy_float"] = float((float_logits.argmax(1) == labels).mean())
        out["accuracy_reference"] = float((logits_int.argmax(1) == labels).mean())
        out["accuracy_gap"] = out["accuracy_float"] - out["accuracy_reference"]
    return out


def evaluation_inputs(model_path, n: int | None):
    """The test split (with labels) of the digits or digits-iv data the network was trained on (its export's
    metadata), the digits test split for another digits network, else generated inputs (no labels)."""
    from instabnn.model.data import digits_test_split
    from instabnn.model.export import ExportError, config_from_onnx, read_metadata, training_data

    try:
        cfg = config_from_onnx(model_path)
    except ExportError:  # not exported by this project: generated inputs in [0, 1] of the graph's input shape
        m = read_graph(model_path)
        shape = m.get_tensor_shape(m.graph.input[0].name)[1:]
        return np.random.default_rng(0).uniform(0, 1, (n or 16, *shape)).astype(np.float32), None, \
            "generated U(0,1) inputs"
    data, options = training_data(read_metadata(model_path))
    if data in ("digits", "digits-iv"):
        x, y, description = digits_test_split(data, options)
        return x[:n], y[:n], description
    if cfg.arch == "digits" and cfg.in_channels in (None, 1) and cfg.image_size in (None, 8):
        x, y, description = digits_test_split("digits")
        return x[:n], y[:n], description
    rng = np.random.default_rng(0)
    c, size = cfg.in_channels or 3, cfg.image_size or 32
    return rng.standard_normal((n or 16, c, size, size)).astype(np.float32), None, "generated N(0,1) inputs"


def markdown(report: dict) -> str:
    a = report["agreement"]
    lines = [f"# Lowering report: `{report['model']}`", "",
             f"Integer network vs the float QONNX graph on {a['n']} {report['inputs']}: top-1 agreement "
             f"{100 * a['top1_agreement']:.2f}%"]
    if "accuracy_float" in a:
        lines[-1] += (f"; accuracy float {100 * a['accuracy_float']:.2f}%, reference "
                      f"{100 * a['accuracy_reference']:.2f}% (gap {100 * a['accuracy_gap']:+.2f} points)")
    lines += ["", "| layer | kind | in | out | acc bits | P1/P2/P3 bits | threshold acc bits | tail bits (F) | "
              "param bits | sign agreement |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["layers"]:
        agree = a["sign_agreement"].get(r["layer"])
        lines.append(f"| {r['layer']} | {r['kind']} | {r.get('input', '')} | {r['output']} | "
                     f"{r.get('accumulator_bits', '')} | {'/'.join(map(str, r.get('power_sum_bits') or [])) or '-'} | "
                     f"{r.get('threshold_accumulator_bits') or '-'} | "
                     f"{str(r['tail_bits']) + ' (' + str(r['tail_frac']) + ')' if r.get('tail_bits') else '-'} | "
                     f"{r['parameter_bits']} | {'' if agree is None else f'{100 * agree:.3f}%'} |")
    lines += ["", f"Total parameter memory: {sum(r['parameter_bits'] for r in report['layers'])} bits.", ""]
    return "\n".join(lines)

