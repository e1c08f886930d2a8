"""Lowering of the residual networks (INSTA-BNN, ReActNet-style, ResNet): stem, blocks (binarizer, binary
convolution, shortcut, activation tail), classifier; the patterns are listed in :mod:`instabnn.hw.lower`."""

from __future__ import annotations

import numpy as np

from instabnn.contract import layers as L
from instabnn.contract.insta import insta_th_constants, static_threshold_constants
from instabnn.contract.network import Block, IntegerNetwork, Shortcut
from instabnn.hw.lower.graph_reader import GraphReader, LoweringError


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
              "output_format": [e_out, bits_out], "shortcut_bound": shortcut_bound(shortcut, bits_in)}
    return block, origin, quant.output[0], e_out, bits_out


def shortcut_bound(shortcut: Shortcut, bits_in: int) -> int:
    """The largest magnitude the shortcut path of a block with ``bits_in``-bit inputs can output."""
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

