"""The integer network as the lowered ONNX graph of hardware layers (``lowered.onnx``), and its execution."""

from __future__ import annotations

import numpy as np

from instabnn.contract.fixed_point import signed_bits
from instabnn.contract.network import IntegerNetwork
from instabnn.hw.lower.residual import shortcut_bound


def to_onnx(net: IntegerNetwork, input_shape: tuple[int, int, int]):
    """The integer network as one ONNX graph of hardware layers (:mod:`instabnn.hw.ops`), batch 1, NCHW.

    qonnx executes it node by node; each node calls the contract's function on its stored constants."""
    import json as _json

    from onnx import TensorProto, helper, numpy_helper

    from instabnn.hw import ops
    from instabnn.contract.network import BinaryChainNetwork

    nodes, inits, infos = [], [], []
    shapes: dict[str, tuple] = {}
    trace: dict = {}
    def add(op, name, data_inputs, output, out_shape, out_bits, scalars, arrays):
        const_names = sorted(arrays)
        for f in const_names:
            inits.append(numpy_helper.from_array(np.asarray(arrays[f], np.int64), f"{name}.{f}"))
        in_shapes = [d for t in data_inputs if t for d in shapes[t][0]]
        in_bits = [shapes[t][1] for t in data_inputs if t]
        nodes.append(helper.make_node(op, list(data_inputs) + [f"{name}.{f}" for f in const_names], [output],
                                      name=name, domain=ops.DOMAIN, backend="fpgadataflow",
                                      scalars=_json.dumps(scalars), const_names=const_names, in_shapes=in_shapes,
                                      out_shape=list(out_shape), in_bits=in_bits, out_bits=out_bits))
        shapes[output] = (tuple(out_shape), out_bits)
        infos.append(helper.make_tensor_value_info(output, TensorProto.INT64, list(out_shape)))

    if isinstance(net, BinaryChainNetwork):
        q0 = net.quantize_input(np.zeros((1, *input_shape), np.float32))
        shapes["image"] = (q0.shape, net.input_bits)
        net.run(q0, trace)
        x = "image"
        for i, stage in enumerate(net.stages):
            scalars, arrays = ops.pack(stage)
            scalars["integer_input"] = int(i == 0 and net.input_bits > 1)
            scalars["kernel"] = int(stage.weight_bits.shape[-1])  # for the cycle model (ChainLayer.get_exp_cycles)
            out = trace[f"{stage.name}.out"]
            k = stage.weight_bits[0].size * ((1 << (net.input_bits - 1)) if scalars["integer_input"] else 1)
            add("ChainLayer", stage.name, [x], f"{stage.name}.out", out.shape,
                1 if stage.thresholds is not None else signed_bits(-k, k), scalars, arrays)
            x = f"{stage.name}.out"
        scalars, arrays = ops.pack(net.logits)
        add("AffineLogits", "logits_affine", [x], "logits", (1, len(net.logits.mult)), 64, scalars, arrays)
        return _graph(nodes, inits, infos, q0.shape[1:], net)
    zero = np.zeros((1, *input_shape), np.int64)
    q = net.stem(zero)
    net.run(zero, trace)
    shapes["image"] = ((1, *input_shape), net.input_bits)
    scalars, arrays = ops.pack(net.stem_requant)
    k = net.stem_weight.shape[-1]
    scalars["conv"] = {"kernel": k, "stride": net.stem_stride, "pad": net.stem_pad}
    add("StemConv", "stem", ["image"], "stem.out", q.shape, net.stem_requant.out_bits, scalars,
        {**arrays, "weight": net.stem_weight})
    x = "stem.out"
    for b in net.blocks:
        scalars, arrays = ops.pack(b.threshold)
        add("ThresholdUnit", f"{b.name}.threshold", [x], f"{b.name}.bits", trace[f"{b.name}.bits"].shape, 1,
            scalars, arrays)
        add("BinaryConv", f"{b.name}.conv", [f"{b.name}.bits"], f"{b.name}.acc", trace[f"{b.name}.acc"].shape,
            signed_bits(-b.weight_bits[0].size, b.weight_bits[0].size),
            {"kernel": b.kernel, "stride": b.stride, "pad": b.pad}, {"weight": b.weight_bits})
        sc = x
        if b.shortcut.kind != "identity":
            sc = f"{b.name}.shortcut"
            scalars, arrays = ops.pack(b.shortcut)
            sc_value = b.shortcut(np.zeros(shapes[x][0], np.int64))
            bound = shortcut_bound(b.shortcut, shapes[x][1])
            add("ShortcutPath", sc, [x], sc, sc_value.shape, signed_bits(-bound, bound), scalars, arrays)
        scalars, arrays = ops.pack(b.tail)
        add("ResidualActivation", f"{b.name}.tail", [f"{b.name}.acc", sc, x if b.tail.stat_source == "reuse" else ""],
            f"{b.name}.out", trace[f"{b.name}.out"].shape, b.tail.out_bits, scalars, arrays)
        x = f"{b.name}.out"
    scalars, arrays = ops.pack(net.classifier)
    add("Classifier", "classifier", [x], "logits", (1, net.classifier.weight.shape[0]), 64, scalars, arrays)
    return _graph(nodes, inits, infos, input_shape, net)


def _graph(nodes, inits, infos, input_shape, net):
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    graph = helper.make_graph(nodes, "instabnn_lowered",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, *input_shape])],
                              [infos.pop()], initializer=inits, value_info=infos)
    model = qonnx_make_model(graph, producer_name="instabnn.hw.lower")
    helper.set_model_props(model, {"instabnn.input_exp": str(net.input_exp),
                                   "instabnn.input_bits": str(net.input_bits)})
    return ModelWrapper(model)


def execute_lowered(model, q0: np.ndarray, progress: bool = False) -> np.ndarray:
    """Integer logits of integer images q0 (N, C, H, W) through the lowered graph, one image at a time."""
    from qonnx.core.onnx_exec import execute_onnx
    from tqdm import tqdm

    out = [execute_onnx(model, {"image": q0[i:i + 1].astype(np.float32)})["logits"]
           for i in tqdm(range(len(q0)), desc="lowered graph", disable=None if progress else True, leave=False)]
    return np.concatenate(out).astype(np.int64)

