"""Lowering of plain W1A1 networks (bnn_pynq-style chains, no residual stream), and the cross-check against FINN's
own streamlining of the same graph."""

from __future__ import annotations

import numpy as np

from instabnn.contract import layers as L
from instabnn.hw.lower.graph_reader import GraphReader, LoweringError


ELEMENTWISE = {"Mul": "mul", "Add": "add", "Sub": "sub", "Div": "div"}


def _affine_chain(r: GraphReader, x: str, channels: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Compose the per-channel affine map y = a x + b of a chain of constant Sub/Div/Mul/Add/BatchNormalization
    nodes starting at x; returns (a, b, last tensor)."""
    a, b = np.ones(channels), np.zeros(channels)
    while True:
        users = r.consumers(x)
        if len(users) != 1 or users[0].op_type not in (*ELEMENTWISE, "BatchNormalization"):
            return a, b, x
        node = users[0]
        if node.op_type == "BatchNormalization":
            na, nb = r.batchnorm(node)
            a, b = a * na, b * na + nb
        else:
            c = np.broadcast_to(r.init(node.input[1], node).astype(np.float64).reshape(-1), (channels,)) \
                if node.input[0] == x else None
            if c is None:
                raise LoweringError(f"node {node.name} ({node.op_type}): the constant must be the second input")
            if node.op_type == "Mul":
                a, b = a * c, b * c
            elif node.op_type == "Div":
                a, b = a / c, b / c
            elif node.op_type == "Add":
                b = b + c
            else:
                b = b - c
        x = node.output[0]


def lower_chain(model):
    """A plain W1A1 network (no residual stream): preprocessing, input quantizer, binary-weight Conv/MatMul
    layers each followed by BatchNormalization -> BipolarQuant [-> MaxPool], the last by an affine map."""
    from qonnx.transformation.infer_shapes import InferShapes

    from instabnn.contract.network import BinaryChainNetwork, ChainStage

    model = model.transform(InferShapes())
    r = GraphReader(model)
    x = model.graph.input[0].name
    input_shape = tuple(r.shape(x)[1:])
    preprocess = []
    node = r.consumers(x)[0] if len(r.consumers(x)) == 1 else None
    while node is not None and node.op_type in ("Reshape", *ELEMENTWISE):
        if node.op_type == "Reshape":
            preprocess.append(("reshape", 0.0))
        else:
            c = r.init(node.input[1], node).reshape(-1)
            if c.size != 1:
                raise LoweringError(f"node {node.name} ({node.op_type}): host preprocessing takes scalar constants")
            preprocess.append((ELEMENTWISE[node.op_type], float(c[0])))
        x = node.output[0]
        node = r.consumers(x)[0] if len(r.consumers(x)) == 1 else None
    if node is None or node.op_type not in ("BipolarQuant", "Quant"):
        raise LoweringError(f"tensor {x}: the input must reach a BipolarQuant or Quant after scalar preprocessing")
    e_in, bits_in = (0, 1) if node.op_type == "BipolarQuant" else r.act_format(node.output[0], node)
    x, stages, origin = node.output[0], [], {}
    integer_input = bits_in > 1
    while True:
        users = [n for n in r.consumers(x) if n.op_type not in ("Reshape", "Flatten")] or \
            [n for u in r.consumers(x) if u.op_type in ("Reshape", "Flatten") for n in r.consumers(u.output[0])]
        if len(users) != 1 or users[0].op_type not in ("Conv", "MatMul"):
            raise LoweringError(f"tensor {x}: expected one binary Conv or MatMul next, found "
                                f"{[n.op_type + ' ' + n.name for n in users]}")
        layer = users[0]
        bits, wscale = r.binary_weight(layer.input[1], layer)
        if layer.op_type == "MatMul":
            bits, stride = bits.T[:, :, None, None], 1
        else:
            stride = r.attr(layer, "strides", [1, 1])[0]
            if any(r.attr(layer, "pads", [0] * 4)) or r.attr(layer, "group", 1) != 1:
                raise LoweringError(f"node {layer.name} (Conv): plain W1A1 convolutions need pads 0 and group 1")
        cout = bits.shape[0]
        scale = np.broadcast_to(wscale, (cout,)) * (2.0 ** e_in if integer_input and not stages else 1.0)
        bound = bits[0].size * ((1 << (bits_in - 1)) if integer_input and not stages else 1)
        name = f"layer{len(stages)}"
        a, b, y = _affine_chain(r, layer.output[0], cout)
        nxt = r.consumers(y)
        if not nxt:  # graph output: the logits
            stages.append(ChainStage(name, bits.astype(np.uint8), stride, None))
            logits = L.affine_logits(a * scale, b, cout)
            origin["logits"] = y
            break
        bq = nxt[0]
        if bq.op_type != "BipolarQuant" or len(nxt) != 1:
            raise LoweringError(f"node {layer.name} ({layer.op_type}): its output must pass BatchNormalization -> "
                                f"BipolarQuant (a non-binary activation is not a W1A1 layer), found {bq.op_type}")
        t, flip = L.sign_thresholds(a * scale, b, bound)
        bits = bits.copy()
        bits[flip] = 1 - bits[flip]
        x, pool = bq.output[0], 1
        after = r.consumers(x)
        if len(after) == 1 and after[0].op_type == "MaxPool":
            k = r.attr(after[0], "kernel_shape")[0]
            if r.attr(after[0], "strides")[0] != k or any(r.attr(after[0], "pads", [0] * 4)):
                raise LoweringError(f"node {after[0].name} (MaxPool): only window = stride, no padding")
            x, pool = after[0].output[0], k
        stages.append(ChainStage(name, bits.astype(np.uint8), stride, t, pool))
        origin[name] = {"binarizer": x, "trace": f"{name}.out"}
    return BinaryChainNetwork(preprocess, e_in, bits_in, stages, logits, input_shape, origin)


def finn_streamline(model):
    """FINN's own W1A1 lowering of a plain Brevitas graph, as its dataflow builder's streamline step does it:
    ConvertQONNXtoFINN, Streamline (BatchNorm + sign -> MultiThreshold), convolutions to Im2Col + MatMul (NHWC),
    bipolar MatMul -> XnorPopcountMatMul, rounded thresholds."""
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.absorb import (AbsorbConsecutiveTransposes,
                                                       AbsorbScalarBiasIntoMultiThreshold,
                                                       AbsorbTransposeIntoMultiThreshold)
    from finn.transformation.streamline.reorder import MakeMaxPoolNHWC, MoveScalarLinearPastInvariants
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    for t in (ConvertQONNXtoFINN(), MoveScalarLinearPastInvariants(), AbsorbScalarBiasIntoMultiThreshold(),
              Streamline(), LowerConvsToMatMul(), MakeMaxPoolNHWC(), AbsorbTransposeIntoMultiThreshold(),
              MakeMaxPoolNHWC(), AbsorbConsecutiveTransposes(), ConvertBipolarMatMulToXnorPopcount(), Streamline(),
              RoundAndClipThresholds()):
        model = model.transform(t)
    return model


def finn_crosscheck(model, net) -> list[dict]:
    """Compare the plain W1A1 lowering with FINN's: per binary-input layer, FINN's XnorPopcountMatMul weights
    (in x out, im2col order) against ours (rows negated where the BN gain is negative), and its popcount-domain
    MultiThreshold against ours, pop >= ceil((t + MW) / 2). ``model``: the graph as :func:`read_graph` gives it. (The integer-input first layer is not compared: FINN
    keeps it a float MatMul with scaled thresholds.)"""
    finn = finn_streamline(model)
    xnor = finn.get_nodes_by_op_type("XnorPopcountMatMul")
    binary_stages = [st for i, st in enumerate(net.stages) if not (i == 0 and net.input_bits > 1)]
    if len(xnor) != len(binary_stages):
        raise LoweringError(f"FINN produced {len(xnor)} XnorPopcountMatMul nodes for {len(binary_stages)} binary layers")
    rows = []
    for st, node in zip(binary_stages, xnor):
        w = finn.get_initializer(node.input[1])
        ours = st.weight_bits.transpose(0, 2, 3, 1).reshape(st.weight_bits.shape[0], -1)
        row = {"layer": st.name, "finn_node": node.name, "weights_equal": bool(np.array_equal((w.T > 0), ours == 1))}
        nxt = finn.find_consumer(node.output[0])
        if st.thresholds is not None:
            t_finn = finn.get_initializer(nxt.input[1]).reshape(-1) if nxt is not None and \
                nxt.op_type == "MultiThreshold" else None
            row["thresholds_equal"] = t_finn is not None and bool(
                np.array_equal(np.ceil((st.thresholds + ours.shape[1]) / 2), np.broadcast_to(t_finn, st.thresholds.shape)))
        rows.append(row)
    return rows

