"""Reading an ``.onnx`` file into the one canonical QONNX form every lowering reads: external data loaded, Gemm ->
MatMul (+ Add), the dynamo exporter's decomposed INSTA operators fused back, ReduceMean over H, W ->
GlobalAveragePool, then qonnx's cleanup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qonnx.transformation.base import Transformation

from instabnn.hw.lower.graph_reader import LoweringError


def load_onnx(path: str | Path):
    """The ModelProto of an ``.onnx`` file with its external data (``onnx.load``'s default: ``<name>.onnx.data`` and
    the like, relative to the model's own folder). A missing, empty, truncated or unreadable file is a
    LoweringError naming it."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise LoweringError(f"{path}: no such file" + (" (a directory)" if path.is_dir() else ""))
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError, or OSError / ValueError for missing external data
        raise LoweringError(f"{path}: not a readable ONNX model ({_first_line(e)})") from None
    if not proto.graph.node or not proto.graph.input or not proto.graph.output:
        raise LoweringError(f"{path}: not an ONNX model (no graph nodes, inputs or outputs; empty or truncated?)")
    return proto


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def read_graph(path: str | Path):
    """The QONNX graph of an ``.onnx`` file (:func:`load_onnx`) in the one form the lowering reads
    (:func:`canonical`)."""
    from qonnx.core.modelwrapper import ModelWrapper

    proto = load_onnx(path)
    try:
        return canonical(ModelWrapper(proto))
    except Exception as e:  # qonnx's shape inference or constant folding refusing a malformed graph
        raise LoweringError(f"{path}: qonnx cannot read this graph ({_first_line(e)})") from None


def canonical(model):
    """One form for what exporters write, so that the TorchScript (``dynamo=False``) and the dynamo exports of a
    network lower to the same integer network: shapes inferred; Gemm -> MatMul (+ Add of its bias); the dynamo
    exporter's decomposed INSTA operators fused back into InstaStatistic / InstaShift; ReduceMean over H, W ->
    GlobalAveragePool; a Reshape of (N, C, 1, 1) to (N, C) -> Flatten; then qonnx's ``cleanup_model`` (one
    initializer per use, constants folded except quantizers, Transposes folded into quantized weights, static graph
    inputs and unused tensors removed, node and tensor names from the graph).

    The fusion runs before the cleanup's renaming, which mis-renames a node reading one tensor twice (the dynamo
    export's ``Mul(d, d)``). qonnx's GemmToMatMul is not used: it also removes every Add of zeros and Mul by ones
    in the graph, such as an RPReLU shift that happens to be zero, which the lowering's patterns expect."""
    from qonnx.transformation.general import GiveUniqueNodeNames
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    for t in (InferShapes(), GiveUniqueNodeNames(), GemmToMatMulAdd(), FuseInstaOperators(),
              SpatialMeanToGlobalAveragePool()):
        model = model.transform(t)
    return cleanup_model(model)


def _constant_and_other(model, node) -> tuple[np.ndarray | None, str | None]:
    """(constant, other input) of a binary node with exactly one initializer input; (None, None) otherwise."""
    a, b = (model.get_initializer(t) for t in node.input[:2])
    if (a is None) == (b is None):
        return None, None
    return (a, node.input[1]) if b is None else (b, node.input[0])


def _producer(model, tensor: str, op_type: str):
    node = model.find_producer(tensor)
    return node if node is not None and node.op_type == op_type else None


def _per_channel(value, channels: int) -> np.ndarray | None:
    """A constant broadcasting per channel over (N, C, H, W) as a (C,) vector, else None."""
    v = np.asarray(value, np.float32)
    if v.ndim > 4 or any(d != 1 for i, d in enumerate(v.shape[::-1]) if i != 2) or v.size not in (1, channels):
        return None
    return np.broadcast_to(v.reshape(-1), (channels,)).copy()


def _internal(model, nodes: list) -> bool:
    """Whether only ``nodes`` read the outputs of ``nodes[1:]`` (the pattern's inner tensors, ``nodes[0]`` its
    output node)."""
    names = {n.name for n in nodes}
    return all(c.name in names for n in nodes[1:] for c in model.find_consumers(n.output[0]) or [])


def _replace(model, old: list, node) -> None:
    """Put ``node`` where ``old[0]`` is and remove the nodes ``old``."""
    graph = model.graph
    graph.node.insert(list(graph.node).index(old[0]), node)
    for n in old:
        graph.node.remove(n)


def _add_constant(model, value: np.ndarray) -> str:
    name = model.make_new_valueinfo_name()
    model.set_initializer(name, value)
    return name


class GemmToMatMulAdd(Transformation):
    """Gemm(A, B, C; alpha = beta = 1, transA = 0) -> MatMul(A, B or Transpose(B)) [-> Add(C)]."""

    def apply(self, model):
        from onnx import helper

        from qonnx.util.basic import get_by_name

        for gemm in model.get_nodes_by_op_type("Gemm"):
            attr = {a: get_by_name(gemm.attribute, a) for a in ("alpha", "beta", "transA", "transB")}
            if any(attr[a] is not None and attr[a].f != 1.0 for a in ("alpha", "beta")) or \
                    (attr["transA"] is not None and attr["transA"].i):
                continue  # left as it is: the lowering names it
            nodes, b = [], gemm.input[1]
            if attr["transB"] is not None and attr["transB"].i:
                nodes.append(helper.make_node("Transpose", [b], [model.make_new_valueinfo_name()], perm=[1, 0]))
                b = nodes[-1].output[0]
            bias = len(gemm.input) > 2 and gemm.input[2]
            nodes.append(helper.make_node("MatMul", [gemm.input[0], b],
                                          [model.make_new_valueinfo_name() if bias else gemm.output[0]]))
            if bias:
                nodes.append(helper.make_node("Add", [nodes[-1].output[0], gemm.input[2]], [gemm.output[0]]))
            index = list(model.graph.node).index(gemm)
            for n in reversed(nodes):
                model.graph.node.insert(index, n)
            model.graph.node.remove(gemm)
        return model, False


class FuseInstaOperators(Transformation):
    """The dynamo exporter writes the INSTA operators (:mod:`instabnn.model.onnx_ops`) as their arithmetic; fuse it
    back: ReduceMean_{H,W}(d * d * d), d = (x - mu) / sigma -> InstaStatistic(x, mu, sigma), and
    x - (mu + sigma * g(z + beta)) with g = identity | Tanh | Sigmoid | 3 Tanh(./3) -> InstaShift(x, z, mu, sigma,
    beta; g). mu, sigma, beta: per-channel constants."""

    def apply(self, model):
        from onnx import helper

        from instabnn.model.onnx_ops import DOMAIN

        for red in model.get_nodes_by_op_type("ReduceMean"):
            found = self._statistic(model, red)
            if found:
                x, mu, sigma, old = found
                _replace(model, old, helper.make_node("InstaStatistic", [x, _add_constant(model, mu),
                         _add_constant(model, sigma)], [red.output[0]], domain=DOMAIN))
        for sub in model.get_nodes_by_op_type("Sub"):
            found = self._shift(model, sub)
            if found:
                z, mu, sigma, beta, g, old = found
                consts = [_add_constant(model, v) for v in (mu, sigma, beta)]
                _replace(model, old, helper.make_node("InstaShift", [sub.input[0], z, *consts], [sub.output[0]],
                                                      domain=DOMAIN, g=g))
        return model, False

    @staticmethod
    def _statistic(model, red):
        if not _spatial_mean(model, red):
            return None
        cube = _producer(model, red.input[0], "Mul")
        square = cube and (_producer(model, cube.input[0], "Mul") or _producer(model, cube.input[1], "Mul"))
        if not square or len(set(square.input)) != 1 or set(cube.input) != {square.input[0], square.output[0]}:
            return None
        div = _producer(model, square.input[0], "Div")
        sub = div and _producer(model, div.input[0], "Sub")
        if not sub or model.get_initializer(div.input[1]) is None or model.get_initializer(sub.input[1]) is None:
            return None
        channels = model.get_tensor_shape(sub.input[0])[1]
        mu, sigma = (_per_channel(model.get_initializer(t), channels) for t in (sub.input[1], div.input[1]))
        if mu is None or sigma is None or not _internal(model, [red, cube, square, div, sub]):
            return None
        return sub.input[0], mu, sigma, [red, cube, square, div, sub]

    @staticmethod
    def _shift(model, sub):
        offset = _producer(model, sub.input[1], "Add")
        mu, scaled = _constant_and_other(model, offset) if offset else (None, None)
        mul = scaled and _producer(model, scaled, "Mul")
        sigma, gz = _constant_and_other(model, mul) if mul else (None, None)
        if gz is None:
            return None
        g, chain, arg = "none", [], gz
        head = model.find_producer(gz)
        if head is not None and head.op_type in ("Tanh", "Sigmoid"):
            g, chain, arg = head.op_type.lower(), [head], head.input[0]
        elif head is not None and head.op_type == "Mul":
            three, t = _constant_and_other(model, head)
            tanh = t and _producer(model, t, "Tanh")
            div = tanh and _producer(model, tanh.input[0], "Div")
            if three is None or not div or not np.all(three == 3) or \
                    not np.all(model.get_initializer(div.input[1]) == 3):
                return None
            g, chain, arg = "tanh3", [head, tanh, div], div.input[0]
        add = _producer(model, arg, "Add")
        beta, z = _constant_and_other(model, add) if add else (None, None)
        if z is None:
            return None
        channels = model.get_tensor_shape(sub.input[0])[1]
        mu, sigma, beta = (_per_channel(v, channels) for v in (mu, sigma, beta))
        if mu is None or sigma is None or beta is None or not _internal(model, [sub, offset, mul, *chain, add]):
            return None
        return z, mu, sigma, beta, g, [sub, offset, mul, *chain, add]


def _spatial_mean(model, node) -> bool:
    """Whether ``node`` (a ReduceMean) averages an (N, C, H, W) tensor over H and W, keeping the dimensions."""
    from qonnx.util.basic import get_by_name

    keep = get_by_name(node.attribute, "keepdims")
    axes = get_by_name(node.attribute, "axes")
    axes = list(axes.ints) if axes is not None else (model.get_initializer(node.input[1]) if len(node.input) > 1
                                                     and node.input[1] else None)
    shape = model.get_tensor_shape(node.input[0])
    if axes is None or shape is None or len(shape) != 4 or (keep is not None and keep.i == 0):
        return False
    return sorted(int(a) % 4 for a in np.asarray(axes).reshape(-1)) == [2, 3]


class SpatialMeanToGlobalAveragePool(Transformation):
    """ReduceMean over H, W (keeping them) -> GlobalAveragePool; Reshape of (N, C, 1, 1) to (N, C) -> Flatten."""

    def apply(self, model):
        from onnx import helper

        for node in list(model.graph.node):
            if node.op_type == "ReduceMean" and _spatial_mean(model, node):
                _replace(model, [node], helper.make_node("GlobalAveragePool", [node.input[0]], [node.output[0]]))
            elif node.op_type == "Reshape":
                shape_in, shape_out = model.get_tensor_shape(node.input[0]), model.get_tensor_shape(node.output[0])
                if shape_in and len(shape_in) == 4 and shape_in[2:] == [1, 1] and shape_out == shape_in[:2]:
                    _replace(model, [node], helper.make_node("Flatten", [node.input[0]], [node.output[0]], axis=1))
        return model, False

