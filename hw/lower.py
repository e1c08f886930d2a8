"""Lower an exported QONNX graph to the integer network of the arithmetic contract, and report on it.

``python -m instabnn.hw.lower model.onnx`` (``make lower``) reads the graph the exporter writes
(:mod:`instabnn.model.export`), recognises each hardware layer by its node pattern, fixes its constants with the
functions of :mod:`instabnn.contract.layers` (the same ones the hardware-exact PyTorch mode uses), and writes
``lowered.json`` / ``lowered.md``: per layer the formats, accumulator widths, parameter memory in bits, and the
agreement of the integer network with the float graph (sign agreement per binarizer, top-1 agreement).

Patterns (x: a residual-stream tensor, the output of a signed power-of-two ``Quant``)::

    stem       Quant(image) -> Conv(Quant w) -> BatchNormalization -> Quant
    threshold  Sub(x, tau)                                                     RSign
               InstaShift(x, Mul(InstaStatistic(x), alpha); g=none)            INSTA-Th
               InstaShift(x, g(SE(InstaStatistic(x))); g=none)                 INSTA-Th+
    block      BipolarQuant(threshold) -> Pad(-1) -> Conv(BipolarQuant w) -> BatchNormalization -> Add(., shortcut)
    shortcut   x | AveragePool(x) | BatchNormalization(Conv(Quant w, AveragePool(x) | x))
    activation Sub(gamma) -> PRelu -> Add(zeta)                                RPReLU
               PRelu                                                           PReLU (RPReLU, gamma = zeta = 0)
               InstaShift(y, Mul(s, alpha) | SE(s); g) -> PRelu                INSTA-PReLU(+),
               s = InstaStatistic(y) | Add(Mul(s_th, u), v)  (statistics reuse)
               -> Quant
    head       GlobalAveragePool -> Flatten -> MatMul(Quant w) [-> Add(bias)]   (a Gemm is read as MatMul -> Add)

Anything else is refused with a :class:`LoweringError` naming the node and the reason; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from qonnx.transformation.base import Transformation

from instabnn.contract import layers as L
from instabnn.contract.fixed_point import signed_bits
from instabnn.contract.insta import (InstaThConstants, insta_th_constants, power_sum_bits,
                                         static_threshold_constants)
from instabnn.contract.network import Block, IntegerNetwork, Shortcut


class LoweringError(ValueError):
    """A graph the flow cannot lower; the message names the node and the reason."""


class GraphReader:
    """Navigation helpers over a qonnx ModelWrapper with shapes inferred."""

    def __init__(self, model):
        self.model = model

    def producer(self, tensor: str, op_types=None, user=None):
        node = self.model.find_producer(tensor)
        if op_types is not None and (node is None or node.op_type not in op_types):
            where = f"node {user.name} ({user.op_type})" if user is not None else f"tensor {tensor}"
            got = "a graph input or constant" if node is None else f"{node.name} ({node.op_type})"
            raise LoweringError(f"{where}: input {tensor} must come from {'/'.join(op_types)}, not {got}")
        return node

    def consumers(self, tensor: str) -> list:
        return list(self.model.find_consumers(tensor) or [])

    def consumer(self, tensor: str, op_type: str, user=None):
        found = [n for n in self.consumers(tensor) if n.op_type == op_type]
        if len(found) != 1:
            where = f"after node {user.name} ({user.op_type})" if user is not None else f"tensor {tensor}"
            raise LoweringError(f"{where}: expected one {op_type} reading {tensor}, found "
                                f"{[n.op_type for n in self.consumers(tensor)]}")
        return found[0]

    def init(self, tensor: str, node) -> np.ndarray:
        value = self.model.get_initializer(tensor)
        if value is None:
            raise LoweringError(f"node {node.name} ({node.op_type}): input {tensor} is not a constant")
        return np.asarray(value)

    def attr(self, node, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return a.s.decode() if a.type == a.STRING else (list(a.ints) if a.ints else a.i)
        return default

    def shape(self, tensor: str) -> tuple[int, ...]:
        return tuple(self.model.get_tensor_shape(tensor))

    # -------------------------------------------------------------------- quantizers

    def act_format(self, tensor: str, user=None) -> tuple[int, int]:
        """(exponent, bits) of the residual-stream Quant producing ``tensor``."""
        q = self.producer(tensor, ("Quant",), user)
        scale, zp, bits = (self.init(t, q) for t in q.input[1:4])
        if scale.size != 1 or np.any(zp != 0) or self.attr(q, "signed", 1) != 1:
            raise LoweringError(f"node {q.name} (Quant): the residual stream needs a per-tensor scale, zero "
                                f"point 0 and signed integers")
        try:
            return int(L.pow2_exponent(scale, f"node {q.name} (Quant)")[0]), int(bits.reshape(-1)[0])
        except L.ContractError as e:
            raise LoweringError(str(e)) from None

    def int_weight(self, tensor: str, user) -> tuple[np.ndarray, np.ndarray]:
        """(integers, per-output-channel exponents) of an 8-bit power-of-two weight Quant."""
        q = self.producer(tensor, ("Quant",), user)
        w, scale, zp, bits = (self.init(t, q) for t in q.input[:4])
        if np.any(zp != 0):
            raise LoweringError(f"node {q.name} (Quant): weights need zero point 0")
        try:
            exp = L.pow2_exponent(scale, f"node {q.name} (Quant)")
        except L.ContractError as e:
            raise LoweringError(str(e)) from None
        return L.quantize_int(w, scale, int(bits.reshape(-1)[0]), bool(self.attr(q, "narrow", 0))), exp

    def real_weight(self, tensor: str, user) -> tuple[np.ndarray, np.ndarray]:
        """(integers, real steps) of an SE layer's (in x out) MatMul weight: its Quant, or 8-bit max-abs."""
        node = self.model.find_producer(tensor)
        if node is not None and node.op_type == "Quant":
            w, scale, zp, bits = (self.init(t, node) for t in node.input[:4])
            if int(bits.reshape(-1)[0]) != 8 or np.any(zp != 0):
                raise LoweringError(f"node {node.name} (Quant): SE weights must be 8-bit, zero point 0")
            w_t, s_t = w.T, np.asarray(scale).reshape(-1)
            return L.quantize_int(w_t, s_t[:, None], 8, bool(self.attr(node, "narrow", 0))), s_t
        return L.ptq_int8(self.init(tensor, user).T)

    def binary_weight(self, tensor: str, user) -> tuple[np.ndarray, np.ndarray]:
        bq = self.producer(tensor, ("BipolarQuant",), user)
        w, scale = self.init(bq.input[0], bq), self.init(bq.input[1], bq)
        return (w >= 0).astype(np.uint8), np.asarray(scale, np.float64).reshape(-1)

    def batchnorm(self, node) -> tuple[np.ndarray, np.ndarray]:
        scale, bias, mean, var = (self.init(t, node) for t in node.input[1:5])
        return L.fold_batchnorm(scale, bias, mean, var, float(self.attr_f(node, "epsilon", 1e-5)))

    def attr_f(self, node, name, default):
        for a in node.attribute:
            if a.name == name:
                return a.f
        return default


G_OF_CHAIN = {("Div", "Tanh", "Mul"): "tanh3", ("Tanh",): "tanh", ("Sigmoid",): "sigmoid"}


def _se(r: GraphReader, z: str, user):
    """Parse g?(SE(s)) ending in tensor ``z``: returns (statistic tensor, g or None, int weights & steps)."""
    node = r.producer(z, None)
    chain = []
    while node is not None and node.op_type in ("Div", "Tanh", "Mul", "Sigmoid"):
        chain.insert(0, node.op_type)
        node = r.producer(node.input[0], None)
    g = None
    if chain:
        if tuple(chain) not in G_OF_CHAIN:
            raise LoweringError(f"node {user.name}: the SE output passes through {chain}, not a known g")
        g = G_OF_CHAIN[tuple(chain)]
    while node is not None and node.op_type == "Unsqueeze":
        node = r.producer(node.input[0], None)
    if node is None or node.op_type != "MatMul":
        raise LoweringError(f"node {user.name} ({user.op_type}): its modulation is neither Mul(s, alpha) nor an "
                            f"SE-like MLP (MatMul -> Relu -> MatMul)")
    w2, s2 = r.real_weight(node.input[1], node)
    relu = r.producer(node.input[0], ("Relu",), node)
    mm1 = r.producer(relu.input[0], ("MatMul",), relu)
    w1, s1 = r.real_weight(mm1.input[1], mm1)
    flat = r.producer(mm1.input[0], ("Flatten",), mm1)
    return flat.input[0], g, (w1, s1, w2, s2)


def _statistic(r: GraphReader, s: str, own_input: str, user) -> tuple[str, dict | None]:
    """Where the statistic s comes from: ('own', None) for InstaStatistic(own_input), or ('reuse', u/v and the
    INSTA-Th's statistic node) for Add(Mul(s_th, u), v)."""
    node = r.producer(s, ("InstaStatistic", "Add"), user)
    if node.op_type == "InstaStatistic":
        if node.input[0] != own_input:
            raise LoweringError(f"node {node.name} (InstaStatistic): reads {node.input[0]}, expected {own_input}")
        return "own", {"stat": node}
    mul = r.producer(node.input[0], ("Mul",), node)
    stat = r.producer(mul.input[0], ("InstaStatistic",), mul)
    return "reuse", {"stat": stat, "u": r.init(mul.input[1], mul).reshape(-1), "v": r.init(node.input[1], node).reshape(-1)}


def _modulation(r: GraphReader, shift, own_input: str) -> dict:
    """alpha / SE and the statistic source of an InstaShift node."""
    z = shift.input[1]
    node = r.producer(z, None)
    if node is not None and node.op_type == "Mul" and r.model.get_initializer(node.input[1]) is not None \
            and r.producer(node.input[0], None).op_type in ("InstaStatistic", "Add"):
        source, info = _statistic(r, node.input[0], own_input, node)
        return {"alpha": r.init(node.input[1], node).reshape(-1), "source": source, **info}
    s, g, weights = _se(r, z, shift)
    source, info = _statistic(r, s, own_input, shift)
    return {"se": weights, "se_g": g, "source": source, **info}


def _mu_sigma(r: GraphReader, node):
    return r.init(node.input[1], node).reshape(-1), r.init(node.input[2], node).reshape(-1)


def lower_threshold(r: GraphReader, x: str, e: int, bits: int, pixels: int):
    """The binarizer reading residual tensor x: (threshold unit, BipolarQuant node)."""
    for node in r.consumers(x):
        if node.op_type == "BipolarQuant":  # a plain sign
            return static_threshold_constants(np.zeros(r.shape(x)[1]), 2.0 ** e, pixels, bits), node
        if node.op_type == "Sub" and r.model.get_initializer(node.input[1]) is not None:
            bq = r.consumer(node.output[0], "BipolarQuant", node)
            tau = r.init(node.input[1], node).reshape(-1)
            return static_threshold_constants(tau, 2.0 ** e, pixels, bits), bq
        if node.op_type == "InstaShift" and node.input[0] == x:
            consumers = r.consumers(node.output[0])
            if [c.op_type for c in consumers] != ["BipolarQuant"]:
                continue  # an INSTA-PReLU reading x (not a binarizer)
            if r.attr(node, "g", "none") != "none":
                raise LoweringError(f"node {node.name} (InstaShift): a binarizer's shift must have g=none")
            mod = _modulation(r, node, x)
            mu, sigma, beta = (r.init(t, node).reshape(-1) for t in node.input[2:5])
            if "alpha" in mod:
                if mod["source"] != "own":
                    raise LoweringError(f"node {node.name}: an INSTA-Th must compute its own statistic")
                return insta_th_constants(mu, sigma, mod["alpha"], beta, 2.0 ** e, pixels, bits), consumers[0]
            w1, s1, w2, s2 = mod["se"]
            if mod["se_g"] is None:
                raise LoweringError(f"node {node.name}: INSTA-Th+ needs g after its SE-like MLP")
            se = L.se_mlp_fixed(w1, s1, w2, s2, np.zeros_like(beta))
            return L.threshold_plus(mu, sigma, beta, e, pixels, bits, se, mod["se_g"]), consumers[0]
    raise LoweringError(f"tensor {x}: no binarizer (Sub -> BipolarQuant or InstaShift -> BipolarQuant) reads it; "
                        f"consumers {[n.op_type + ' ' + n.name for n in r.consumers(x)]}")


def lower_block(r: GraphReader, x: str, e_in: int, bits_in: int, index: int):
    c, h, w = r.shape(x)[1:]
    threshold, bq = lower_threshold(r, x, e_in, bits_in, h * w)
    name = f"block{index}"
    node = r.consumer(bq.output[0], "Pad", bq)
    pads = r.init(node.input[1], node).reshape(-1)
    fill = r.init(node.input[2], node).reshape(-1) if len(node.input) > 2 and node.input[2] else np.zeros(1)
    if fill[0] != -1.0 or len(set(pads[[2, 3, 6, 7]].tolist())) != 1 or np.any(pads[[0, 1, 4, 5]] != 0):
        raise LoweringError(f"node {node.name} (Pad): binary activations must be padded spatially with -1")
    pad = int(pads[2])
    conv = r.consumer(node.output[0], "Conv", node)
    weight_bits, xnor = r.binary_weight(conv.input[1], conv)
    stride = r.attr(conv, "strides", [1, 1])[0]
    if any(r.attr(conv, "pads", [0] * 4)) or r.attr(conv, "group", 1) != 1:
        raise LoweringError(f"node {conv.name} (Conv): binary convolutions need pads 0 (the Pad node pads) and "
                            f"group 1")
    bn = r.consumer(conv.output[0], "BatchNormalization", conv)
    bn_a, bn_b = r.batchnorm(bn)
    add = r.consumer(bn.output[0], "Add", bn)
    sc_tensor = add.input[1] if add.input[0] == bn.output[0] else add.input[0]
    out_c, out_h, out_w = r.shape(add.output[0])[1:]

    proj = None
    sc_node = r.producer(sc_tensor, None)
    pool, sc_exp = 1, e_in
    if sc_tensor == x:
        shortcut = Shortcut("identity")
    elif sc_node is not None and sc_node.op_type in ("AveragePool", "BatchNormalization"):
        src = sc_node
        if sc_node.op_type == "BatchNormalization":
            pconv = r.producer(sc_node.input[0], ("Conv",), sc_node)
            src = r.producer(pconv.input[0], ("AveragePool",), pconv) if pconv.input[0] != x else None
        if src is not None:
            k = r.attr(src, "kernel_shape")[0]
            if src.input[0] != x or r.attr(src, "strides")[0] != k or k & (k - 1):
                raise LoweringError(f"node {src.name} (AveragePool): the shortcut pools x with a power-of-two "
                                    f"window at stride = window")
            pool, sc_exp = k, e_in - 2 * (k.bit_length() - 1)
        if sc_node.op_type == "AveragePool":
            shortcut = Shortcut("pool", pool=pool)
        else:
            w_int, w_exp = r.int_weight(pconv.input[1], pconv)
            shortcut = Shortcut("proj", pool=pool, weight=w_int)
            pa, pb = r.batchnorm(sc_node)
            bound = int(np.abs(w_int).sum(axis=(1, 2, 3)).max()) * (1 << (bits_in - 1)) * pool * pool
            proj = (pa * 2.0 ** (sc_exp + w_exp.astype(np.float64)), pb, bound)
    else:
        raise LoweringError(f"node {add.name} (Add): shortcut {sc_tensor} is not x, AveragePool(x) or a 1x1 "
                            f"projection (option A shortcuts are not lowered from QONNX yet)")

    y = add.output[0]
    first = r.consumers(y)
    ops = sorted(n.op_type for n in first)
    if ops == ["Sub"]:
        sub = first[0]
        prelu = r.consumer(sub.output[0], "PRelu", sub)
        add2 = r.consumer(prelu.output[0], "Add", prelu)
        act = {"kind": "rprelu", "gamma": r.init(sub.input[1], sub).reshape(-1),
               "slope": r.init(prelu.input[1], prelu).reshape(-1), "zeta": r.init(add2.input[1], add2).reshape(-1)}
        last = add2
    elif ops == ["PRelu"]:  # plain PReLU: the RPReLU tail with gamma = zeta = 0
        prelu = first[0]
        slope = r.init(prelu.input[1], prelu).reshape(-1)
        act = {"kind": "rprelu", "gamma": np.zeros_like(slope), "slope": slope, "zeta": np.zeros_like(slope)}
        last = prelu
    else:
        shift = next((n for n in first if n.op_type == "InstaShift"), None)
        if shift is None:
            shift = next((n for n in r.model.graph.node if n.op_type == "InstaShift" and n.input[0] == y), None)
        if shift is None:
            raise LoweringError(f"node {add.name} (Add): its sum feeds {ops}, neither RPReLU (Sub -> PRelu -> "
                                f"Add), PReLU (PRelu) nor INSTA-PReLU (InstaShift -> PRelu)")
        prelu = r.consumer(shift.output[0], "PRelu", shift)
        mod = _modulation(r, shift, y)
        mu, sigma, beta = (r.init(t, shift).reshape(-1) for t in shift.input[2:5])
        act = {"kind": "insta", "mu": mu, "sigma": sigma, "beta": beta, "g": r.attr(shift, "g", "none"),
               "slope": r.init(prelu.input[1], prelu).reshape(-1), "alpha": mod.get("alpha"), "se": None}
        if act["g"] == "none":
            raise LoweringError(f"node {shift.name} (InstaShift): INSTA-PReLU needs a nonlinearity g")
        if "se" in mod:
            w1, s1, w2, s2 = mod["se"]
            act["se"] = lambda bias: L.se_mlp_fixed(w1, s1, w2, s2, bias)
        if mod["source"] == "reuse":
            th_mu, th_sigma = _mu_sigma(r, mod["stat"])
            if mod["stat"].input[0] != x:
                raise LoweringError(f"node {shift.name}: reuses a statistic of {mod['stat'].input[0]}, not of the "
                                    f"block input {x}")
            act["reuse"] = {"mu": th_mu, "sigma": th_sigma, "u": mod["u"], "v": mod["v"], "exp": e_in,
                            "bits": bits_in, "pixels": h * w}
        last = prelu
    quant = r.consumer(last.output[0], "Quant", last)
    e_out, bits_out = r.act_format(quant.output[0], quant)
    try:
        tail = L.residual_activation(bn_a * xnor, bn_b, int(weight_bits[0].size), shortcut.kind, sc_exp, proj, act,
                                     e_out, bits_out, out_h * out_w, name)
    except L.ContractError as err:
        raise LoweringError(f"node {add.name}: {err}") from None
    block = Block(name, threshold, weight_bits, stride, pad, shortcut, tail)
    origin = {"binarizer": bq.output[0], "output": quant.output[0], "input_format": [e_in, bits_in],
              "output_format": [e_out, bits_out], "shortcut_bound": _shortcut_bound(shortcut, bits_in)}
    return block, origin, quant.output[0], e_out, bits_out


def _shortcut_bound(shortcut: Shortcut, bits_in: int) -> int:
    v = (1 << (bits_in - 1)) * shortcut.pool * shortcut.pool
    return v * int(np.abs(shortcut.weight).sum(axis=(1, 2, 3)).max()) if shortcut.kind == "proj" else v


def lower_model(model) -> IntegerNetwork:
    """The integer network of a qonnx ModelWrapper holding an exported INSTA-BNN graph."""
    from qonnx.transformation.infer_shapes import InferShapes

    model = model.transform(InferShapes())
    r = GraphReader(model)
    inp = model.graph.input[0].name
    if [n.op_type for n in r.consumers(inp)] == ["Conv"] and model.get_initializer(r.consumers(inp)[0].input[1]) \
            is not None:
        raise LoweringError(f"node {r.consumers(inp)[0].name} (Conv): real-valued first layer on an unquantized "
                            f"image (a real_valued_layers network, Sec. A.2 ablation); the hardware needs the 8-bit "
                            f"input quantizer and 8-bit first / last / shortcut layers")
    q0 = r.consumer(inp, "Quant")
    e0, b0 = r.act_format(q0.output[0])
    stem = r.consumer(q0.output[0], "Conv", q0)
    w_int, w_exp = r.int_weight(stem.input[1], stem)
    bn = r.consumer(stem.output[0], "BatchNormalization", stem)
    quant = r.consumer(bn.output[0], "Quant", bn)
    e, bits = r.act_format(quant.output[0], quant)
    a, b = r.batchnorm(bn)
    bound = int(np.abs(w_int).sum(axis=(1, 2, 3)).max()) * (1 << (b0 - 1))
    requant = L.affine_requant(a, b, e0 + w_exp, bound, e, bits)
    pads = r.attr(stem, "pads", [0] * 4)
    x, blocks, origin = quant.output[0], [], {"stem": {"output": quant.output[0], "output_format": [e, bits]}}
    while not any(n.op_type == "GlobalAveragePool" for n in r.consumers(x)):
        block, origin[f"block{len(blocks)}"], x, e, bits = lower_block(r, x, e, bits, len(blocks))
        blocks.append(block)
    gap = r.consumer(x, "GlobalAveragePool")
    h, w = r.shape(x)[2:]
    flat = r.consumer(gap.output[0], "Flatten", gap)
    mm = r.consumer(flat.output[0], "MatMul", flat)
    w_in_out, w_exp = r.int_weight(mm.input[1], mm)
    cw, cw_exp = w_in_out.T, w_exp.reshape(-1)
    add = [n for n in r.consumers(mm.output[0]) if n.op_type == "Add"]
    bias = r.init(add[0].input[1], add[0]).reshape(-1) if add else np.zeros(cw.shape[0])
    head = L.classifier(cw, cw_exp, bias, e, h * w)
    origin["stem"]["input_format"], origin["logits"] = [e0, b0], model.graph.output[0].name
    return IntegerNetwork(e0, b0, w_int, r.attr(stem, "strides", [1, 1])[0], pads[0], requant, blocks, head,
                          origin)


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


def is_residual(model) -> bool:
    return any(n.op_type in ("PRelu", "InstaShift") for n in model.graph.node)


# ------------------------------------------------------------------------------------------ reading a graph


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


def lower_model_any(model):
    """The integer network of a canonical graph (:func:`canonical`): INSTA-BNN / ReActNet-style residual networks,
    or plain W1A1."""
    return lower_model(model) if is_residual(model) else lower_chain(model)


def lower_graph(model, path: str | Path) -> IntegerNetwork:
    """:func:`lower_model_any` of the graph read from ``path`` (:func:`read_graph`), errors naming the file."""
    try:
        return lower_model_any(model)
    except LoweringError as e:
        raise LoweringError(f"{path}: {e}") from None


def lower_file(path: str | Path) -> IntegerNetwork:
    return lower_graph(read_graph(path), path)


# ------------------------------------------------------------------------------------------ lowered graph


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
            bound = _shortcut_bound(b.shortcut, shapes[x][1])
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


# ------------------------------------------------------------------------------------------ report


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


def main(argv=None) -> int:
    from instabnn.outputs import atomic_write_text

    from instabnn.model.arguments import Parser, positive_int

    p = Parser(prog="instabnn-lower", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an .onnx file: instabnn-export's, or Brevitas' export_qonnx (either exporter)")
    p.add_argument("-n", type=positive_int, default=None, help="images compared (default: the whole digits test "
                                                               "split, or 16 generated inputs)")
    p.add_argument("--out", default=None, help="report directory (default: next to the model)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    start = time.time()
    out = Path(args.out) if args.out else Path(args.model).parent
    try:
        if out.exists() and not out.is_dir():
            raise LoweringError(f"--out {out}: not a directory (the reports go into a directory)")
        model = read_graph(args.model)
        net = lower_graph(model, args.model)
        images, labels, source = evaluation_inputs(args.model, args.n)
        report = {"model": str(args.model), "inputs": source, "layers": layer_table(net),
                  "agreement": agreement(model, net, images, labels, not args.no_progress)}
    except (LoweringError, L.ContractError) as e:
        print(f"instabnn-lower: error: {e}", file=sys.stderr)
        return 2
    lowered = to_onnx(net, images.shape[1:])  # (a plain W1A1 network: its graph starts after preprocessing)
    from instabnn.model.export import carry_training_data, read_metadata

    carry_training_data(read_metadata(args.model), lowered.model)
    from instabnn.contract.network import BinaryChainNetwork

    if isinstance(net, BinaryChainNetwork):
        report["finn_crosscheck"] = finn_crosscheck(model, net)
    q0 = net.quantize_input(images)
    graph_logits = execute_lowered(lowered, q0, not args.no_progress)
    report["agreement"]["lowered_graph_identical"] = bool(np.array_equal(graph_logits, net.run(q0)))
    if not report["agreement"]["lowered_graph_identical"]:
        print("instabnn-lower: error: the lowered graph's execution differs from the integer network",
              file=sys.stderr)
        return 2
    report["seconds"] = round(time.time() - start, 2)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".lowered.onnx.tmp"
    lowered.save(str(tmp))
    tmp.replace(out / "lowered.onnx")
    atomic_write_text(out / "lowered.json", json.dumps(report, indent=1, default=str))
    atomic_write_text(out / "lowered.md", markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'lowered.onnx'} (hardware layers, domain instabnn.hw.ops), {out / 'lowered.json'} and "
          f"{out / 'lowered.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
