"""What every lowering shares: :class:`LoweringError` and :class:`GraphReader`, the navigation and the quantizer /
weight / BatchNormalization readers over a canonical QONNX graph (:mod:`instabnn.hw.lower.read`)."""

from __future__ import annotations

import numpy as np

from instabnn.contract import layers as L


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

