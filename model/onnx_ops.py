"""The two INSTA operators: their PyTorch implementation, their ONNX export, and their QONNX execution.

This module is also the ONNX domain of the project's custom nodes: qonnx resolves a node's ``domain`` by importing
it, so ``domain="instabnn.model.onnx_ops"`` finds the ``CustomOp`` classes listed in ``__all__`` below.

    InstaStatistic(x, mu, sigma) -> s        s[n,c,0,0] = mean_{h,w} ((x[n,c,h,w] - mu[c]) / sigma[c])^3
    InstaShift(x, z, mu, sigma, beta; g) -> x[n,c,h,w] - (mu[c] + sigma[c] * g(z[n,c,0,0] + beta[c]))

s and z have shape (N, C, 1, 1), like the output of a GlobalAveragePool (which InstaStatistic generalises).

Every INSTA module is one InstaStatistic, a per-(n, c) modulation z in standard ONNX (``alpha * s`` or the SE-like
MLP with its QONNX ``Quant`` weights), and one InstaShift; the binarizer (BipolarQuant) or the PReLU follows.
g is "none" (identity; INSTA-Th) or one of "sigmoid", "tanh", "tanh3" (= 3 tanh(z/3)).

The numpy execution follows the PyTorch expression order in float32, so that both agree to rounding (<= 1e-5).
"""

from __future__ import annotations

import numpy as np
import torch
from qonnx.custom_op.base import CustomOp

DOMAIN = "instabnn.model.onnx_ops"
DOMAIN_VERSION = 1

__all__ = ["InstaShift", "InstaStatistic", "insta_shift", "insta_statistic", "pad_spatial", "DOMAIN"]

_G_TORCH = {
    "none": lambda z: z,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "tanh3": lambda z: 3.0 * torch.tanh(z / 3.0),
}


def _g_numpy(name: str, z: np.ndarray) -> np.ndarray:
    if name == "none":
        return z
    if name == "sigmoid":
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    if name == "tanh":
        return np.tanh(z)
    if name == "tanh3":
        return (np.float32(3.0) * np.tanh(z / np.float32(3.0))).astype(np.float32)
    raise ValueError(f"InstaShift: unknown nonlinearity g={name!r}")


def _statistic_torch(x, mean, sigma):
    xn = (x - mean.view(1, -1, 1, 1)) / sigma.view(1, -1, 1, 1)
    return (xn * xn * xn).mean(dim=(2, 3), keepdim=True)


def _shift_torch(x, z, mean, sigma, beta, g):
    offset = mean.view(1, -1, 1, 1) + sigma.view(1, -1, 1, 1) * _G_TORCH[g](z + beta.view(1, -1, 1, 1))
    return x - offset


class _InstaStatisticFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mean, sigma):
        return _statistic_torch(x, mean, sigma)

    @staticmethod
    def symbolic(g, x, mean, sigma):
        return g.op(f"{DOMAIN}::InstaStatistic", x, mean, sigma)


class _InstaShiftFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, z, mean, sigma, beta, g_name):
        return _shift_torch(x, z, mean, sigma, beta, g_name)

    @staticmethod
    def symbolic(g, x, z, mean, sigma, beta, g_name):
        out = g.op(f"{DOMAIN}::InstaShift", x, z, mean, sigma, beta, g_s=g_name)
        out.setType(x.type())
        return out


class _PadConstantFn(torch.autograd.Function):
    """Spatial constant padding exported as one ``Pad`` node with constant pads (TorchScript's generic ``F.pad``
    export computes the pads with a chain of shape ops, which qonnx's constant folding is slow to remove)."""

    @staticmethod
    def forward(ctx, x, pad, value):
        return torch.nn.functional.pad(x, (pad,) * 4, value=value)

    @staticmethod
    def symbolic(g, x, pad, value):
        pads = g.op("Constant", value_t=torch.tensor([0, 0, pad, pad, 0, 0, pad, pad], dtype=torch.int64))
        fill = g.op("Constant", value_t=torch.tensor(value, dtype=torch.float32))
        out = g.op("Pad", x, pads, fill, mode_s="constant")
        return out


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export()


def insta_statistic(x: torch.Tensor, mean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """s (N, C, 1, 1) = mean over (H, W) of ((x - mu) / sigma)^3; one ``InstaStatistic`` node when exported."""
    if _exporting():
        return _InstaStatisticFn.apply(x, mean, sigma)
    return _statistic_torch(x, mean, sigma)


def insta_shift(x, z, mean, sigma, beta, g: str) -> torch.Tensor:
    """x - (mu + sigma * g(z + beta)), broadcast over (H, W); one ``InstaShift`` node when exported."""
    if g not in _G_TORCH:
        raise ValueError(f"unknown nonlinearity g={g!r}; choose from {sorted(_G_TORCH)}")
    if _exporting():
        return _InstaShiftFn.apply(x, z, mean, sigma, beta, g)
    return _shift_torch(x, z, mean, sigma, beta, g)


def pad_spatial(x: torch.Tensor, pad: int, value: float) -> torch.Tensor:
    """Pad H and W by ``pad`` on each side with the constant ``value``."""
    if _exporting():
        return _PadConstantFn.apply(x, pad, value)
    return torch.nn.functional.pad(x, (pad,) * 4, value=value)


# ------------------------------------------------------------------------------------------ qonnx execution


class InstaStatistic(CustomOp):
    """QONNX node: s[n,c,0,0] = mean_{h,w} ((x - mu_c) / sigma_c)^3. Inputs x (N,C,H,W), mu (C), sigma (C)."""

    def get_nodeattr_types(self):
        return {}

    def make_shape_compatible_op(self, model):
        from onnx import helper

        return helper.make_node("GlobalAveragePool", [self.onnx_node.input[0]], [self.onnx_node.output[0]])

    def infer_node_datatype(self, model):
        from qonnx.core.datatype import DataType

        model.set_tensor_datatype(self.onnx_node.output[0], DataType["FLOAT32"])

    def execute_node(self, context, graph):
        node = self.onnx_node
        x, mean, sigma = (np.asarray(context[name], dtype=np.float32) for name in node.input[:3])
        xn = (x - mean.reshape(1, -1, 1, 1)) / sigma.reshape(1, -1, 1, 1)
        cube = xn * xn * xn
        context[node.output[0]] = cube.mean(axis=(2, 3), dtype=np.float32, keepdims=True).astype(np.float32)

    def verify_node(self):
        if len(self.onnx_node.input) != 3:
            raise ValueError(f"InstaStatistic node {self.onnx_node.name!r} needs inputs (x, mu, sigma)")


class InstaShift(CustomOp):
    """QONNX node: x - (mu + sigma * g(z + beta)). Inputs x (N,C,H,W), z (N,C,1,1), mu, sigma, beta (C); attr g."""

    def get_nodeattr_types(self):
        return {"g": ("s", True, "none", {"none", "sigmoid", "tanh", "tanh3"})}

    def make_shape_compatible_op(self, model):
        from onnx import helper

        return helper.make_node("Identity", [self.onnx_node.input[0]], [self.onnx_node.output[0]])

    def infer_node_datatype(self, model):
        from qonnx.core.datatype import DataType

        model.set_tensor_datatype(self.onnx_node.output[0], DataType["FLOAT32"])

    def execute_node(self, context, graph):
        node = self.onnx_node
        x, z, mean, sigma, beta = (np.asarray(context[name], dtype=np.float32) for name in node.input[:5])
        g = self.get_nodeattr("g")
        c4 = (1, -1, 1, 1)
        offset = mean.reshape(c4) + sigma.reshape(c4) * _g_numpy(g, z + beta.reshape(c4))
        context[node.output[0]] = (x - offset).astype(np.float32)

    def verify_node(self):
        if len(self.onnx_node.input) != 5:
            raise ValueError(f"InstaShift node {self.onnx_node.name!r} needs inputs (x, z, mu, sigma, beta)")
