"""Find the binarizers of an exported QONNX graph and fix them as integer threshold units.

Two patterns, both ending in a ``BipolarQuant`` (scale 1) whose input x comes from a signed, zero-point-0,
power-of-two-scale ``Quant`` (the residual stream, x = S * q):

    INSTA-Th   x -> InstaStatistic(x, mu, sigma) -> Mul(alpha) -> InstaShift(x, ., mu, sigma, beta; g=none)
    RSign      x -> Sub(x, tau)

Each becomes an :class:`ThresholdLayer` holding the :class:`InstaThConstants` of the integer golden function
(:mod:`instabnn.hw.reference.insta`). :func:`threshold_agreement` runs images through qonnx and compares, per
binarizer, the graph's float binarization with the integer unit's bits. ``python -m instabnn.hw.threshold_layers
model.onnx`` prints that report.

Anything else that feeds a BipolarQuant (INSTA-Th+, a BatchNorm of the BN-sign-conv order, ...) is reported as not
lowered yet, naming the node.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass

import numpy as np

from instabnn.hw.reference.insta import (InstaThConstants, insta_th_constants, insta_threshold_compare,
                                         static_threshold_constants)


class LoweringError(ValueError):
    """A graph the flow cannot lower; the message names the node and the reason."""


@dataclass
class ThresholdLayer:
    kind: str  # "insta_th" | "static"
    binarizer: str  # the BipolarQuant node's name
    input: str  # the tensor x (a Quant output)
    output: str  # the BipolarQuant output
    scale: float
    input_bits: int
    shape: tuple[int, int, int]  # (C, H, W)
    constants: InstaThConstants


def _init(model, name: str, node) -> np.ndarray:
    value = model.get_initializer(name)
    if value is None:
        raise LoweringError(f"node {node.name} ({node.op_type}): input {name} is not a constant")
    return np.asarray(value, dtype=np.float64)


def _residual_quant(model, tensor: str, user) -> tuple[float, int]:
    producer = model.find_producer(tensor)
    if producer is None or producer.op_type != "Quant":
        raise LoweringError(f"node {user.name} ({user.op_type}): its input {tensor} must come from a Quant node "
                            f"(the quantized residual stream)")
    scale = _init(model, producer.input[1], producer)
    zero_point = _init(model, producer.input[2], producer)
    bits = _init(model, producer.input[3], producer)
    attrs = {a.name: a.i for a in producer.attribute if a.type == a.INT}
    if scale.size != 1 or np.any(zero_point != 0) or bits.size != 1 or attrs.get("signed", 1) != 1:
        raise LoweringError(f"node {producer.name} (Quant): the residual stream needs a per-tensor scale, "
                            f"zero point 0 and signed integers")
    s = float(scale.reshape(-1)[0])
    if s <= 0 or math.log2(s) != round(math.log2(s)):
        raise LoweringError(f"node {producer.name} (Quant): scale {s} is not a power of two")
    return s, int(bits.reshape(-1)[0])


def find_threshold_layers(model) -> list[ThresholdLayer]:
    """Every BipolarQuant of ``model`` (a qonnx ModelWrapper) fed by an INSTA-Th or RSign pattern."""
    layers = []
    for bq in model.get_nodes_by_op_type("BipolarQuant"):
        if model.get_initializer(bq.input[0]) is not None:
            continue  # a weight quantizer
        if not np.all(_init(model, bq.input[1], bq) == 1.0):
            raise LoweringError(f"node {bq.name} (BipolarQuant): activation scale must be 1")
        src = model.find_producer(bq.input[0])
        if src is None:
            raise LoweringError(f"node {bq.name} (BipolarQuant): input {bq.input[0]} has no producer")
        if src.op_type == "InstaShift":
            g = next((a.s.decode() for a in src.attribute if a.name == "g"), "none")
            if g != "none":
                raise LoweringError(f"node {src.name} (InstaShift): g={g!r} before a binarizer is not an INSTA-Th")
            x = src.input[0]
            mul = model.find_producer(src.input[1])
            stat = model.find_producer(mul.input[0]) if mul is not None and mul.op_type == "Mul" else None
            if stat is None or stat.op_type != "InstaStatistic" or stat.input[0] != x:
                raise LoweringError(f"node {src.name} (InstaShift): modulation is not InstaStatistic -> Mul(alpha) "
                                    f"on the same input (INSTA-Th+ is not lowered yet)")
            mu, sigma, beta = (_init(model, n, src) for n in src.input[2:5])
            alpha = _init(model, mul.input[1], mul)
            scale, bits = _residual_quant(model, x, stat)
            c, h, w = model.get_tensor_shape(x)[1:]
            consts = insta_th_constants(mu, sigma, np.broadcast_to(alpha.reshape(-1), (c,)), beta, scale, h * w,
                                        bits)
            kind = "insta_th"
        elif src.op_type == "Sub" and model.get_initializer(src.input[1]) is not None:
            x = src.input[0]
            scale, bits = _residual_quant(model, x, src)
            c, h, w = model.get_tensor_shape(x)[1:]
            tau = np.broadcast_to(_init(model, src.input[1], src).reshape(-1), (c,))
            consts = static_threshold_constants(tau, scale, h * w, bits)
            kind = "static"
        else:
            raise LoweringError(f"node {bq.name} (BipolarQuant): fed by {src.op_type} node {src.name}, which is "
                                f"not an INSTA-Th or RSign pattern (not lowered yet)")
        layers.append(ThresholdLayer(kind, bq.name, x, bq.output[0], scale, bits, (c, h, w), consts))
    return layers


def threshold_agreement(model, images: np.ndarray) -> list[dict]:
    """Per binarizer: the fraction of bits where the integer unit equals the graph's float binarization."""
    from qonnx.core.onnx_exec import execute_onnx

    layers = find_threshold_layers(model)
    stats = {layer.binarizer: [0, 0] for layer in layers}
    iname = model.graph.input[0].name
    for i in range(len(images)):
        ctx = execute_onnx(model, {iname: images[i:i + 1].astype(np.float32)}, return_full_exec_context=True)
        for layer in layers:
            q_float = ctx[layer.input].astype(np.float64) / layer.scale
            q = np.rint(q_float).astype(np.int64)
            if not np.array_equal(q, q_float):
                raise LoweringError(f"tensor {layer.input}: not on the integer grid of scale {layer.scale}")
            ref = insta_threshold_compare(q, layer.constants)
            graph_bits = (ctx[layer.output] > 0).astype(np.uint8)
            stats[layer.binarizer][0] += int((ref == graph_bits).sum())
            stats[layer.binarizer][1] += ref.size
    return [{"binarizer": layer.binarizer, "kind": layer.kind, "shape": list(layer.shape),
             "input_bits": layer.input_bits, "scale": layer.scale,
             "agreement": stats[layer.binarizer][0] / stats[layer.binarizer][1],
             "bits_compared": stats[layer.binarizer][1], **{k: v for k, v in layer.constants.to_dict().items()
                                                           if k.endswith("bits") or k == "fracs"}}
            for layer in layers]


def main(argv=None) -> int:
    from qonnx.core.modelwrapper import ModelWrapper

    from instabnn.model.export import check_inputs, config_from_onnx

    p = argparse.ArgumentParser(prog="instabnn-thresholds", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an .onnx file exported by instabnn-export")
    p.add_argument("-n", type=int, default=16, help="images compared")
    p.add_argument("--json", help="also write the report here")
    args = p.parse_args(argv)
    try:
        model = ModelWrapper(args.model)
        images, source = check_inputs(config_from_onnx(args.model), args.n)
        rows = threshold_agreement(model, images)
    except (LoweringError, ValueError) as e:
        print(f"instabnn-thresholds: error: {e}", file=sys.stderr)
        return 2
    print(f"integer threshold units vs the graph's float binarization, {len(images)} {source}:")
    print("| binarizer | kind | C x H x W | P1/P2/P3 bits | agreement |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['binarizer']} | {r['kind']} | {'x'.join(map(str, r['shape']))} | "
              f"{'/'.join(map(str, r['power_sum_bits']))} | {100 * r['agreement']:.3f}% |")
    if args.json:
        from instabnn.model.checkpoint import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
