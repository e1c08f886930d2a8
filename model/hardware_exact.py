"""Hardware-exact mode of the PyTorch model: the same fixed-point constants and rounding as the accelerator.

:func:`integer_network` fixes the constants of every layer from the PyTorch modules with the functions of the
arithmetic contract (:mod:`instabnn.contract.layers`, ``docs/arithmetic.md``), the same functions the
lowering of the exported QONNX graph uses; the resulting :class:`~instabnn.contract.network.IntegerNetwork`
computes the integers the hardware computes. :class:`HardwareExact` wraps a model so that its forward values are
exactly those integers (times their scales), layer by layer, while gradients flow through the float layers
(straight-through per block): fine-tuning in this mode trains what the board will run.

    >>> exact = HardwareExact(model).eval()
    >>> logits = exact(images)                  # float tensor, values = hardware logits * lsb
    >>> ints = exact.integer_logits(images)     # the integers the accelerator outputs
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from instabnn.contract import layers as L
from instabnn.contract.insta import insta_th_constants, static_threshold_constants
from instabnn.contract.network import Block, IntegerNetwork, Shortcut
from instabnn.model import modules as M
from instabnn.model.networks import BinaryConvBlock, InstaBnn


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def act_format(quant: nn.Module, what: str) -> tuple[int, int]:
    """(exponent, bits) of a power-of-two activation quantizer (QuantIdentity)."""
    proxy = quant.act_quant
    return int(L.pow2_exponent(_np(proxy.scale()), what)[0]), int(proxy.bit_width())


def int_weight(layer: nn.Module, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(integers, per-output-channel exponents) of an 8-bit power-of-two weight quantizer."""
    qw = layer.quant_weight()
    scale = _np(qw.scale)
    w_int = L.quantize_int(_np(layer.weight), scale, int(qw.bit_width), narrow=True)
    return w_int, L.pow2_exponent(scale, what)


def se_weights(linear: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(integers, real steps) of an SE-like FC layer: its 8-bit LSQ quantizer, or 8-bit per-channel max-abs
    quantization of real weights (done identically by the lowering)."""
    w = _np(linear.weight)
    if linear.weight_quant.is_quant_enabled:
        scale = _np(linear.quant_weight().scale)
        return L.quantize_int(w, scale, 8, narrow=False), scale.reshape(-1)
    return L.ptq_int8(w)


def se_fixed(se: M.SeMlp, bias) -> L.SeMlpFixed:
    w1, s1 = se_weights(se.fc1)
    w2, s2 = se_weights(se.fc2)
    return L.se_mlp_fixed(w1, s1, w2, s2, bias)


def _bn(bn: nn.BatchNorm2d):
    return L.fold_batchnorm(_np(bn.weight) if bn.affine else np.ones(bn.num_features, np.float32),
                            _np(bn.bias) if bn.affine else np.zeros(bn.num_features, np.float32),
                            _np(bn.running_mean), _np(bn.running_var), bn.eps)


def _mean_sigma(stats: M.InstanceStatistic):
    was = stats.training
    stats.eval()
    mean, sigma = stats.mean_sigma(torch.zeros(1, stats.channels, 1, 1))
    stats.train(was)
    return _np(mean), _np(sigma)


def threshold_unit(module: nn.Module, channels: int, e_in: int, bits: int, pixels: int, name: str):
    if isinstance(module, M.RSign):
        return static_threshold_constants(_np(module.threshold), 2.0 ** e_in, pixels, bits)
    if isinstance(module, M.Sign):
        return static_threshold_constants(np.zeros(channels), 2.0 ** e_in, pixels, bits)
    if isinstance(module, M.InstaTh):
        mu, sigma = _mean_sigma(module.stats)
        return insta_th_constants(mu, sigma, _np(module.alpha), _np(module.beta), 2.0 ** e_in, pixels, bits)
    if isinstance(module, M.InstaThPlus):
        mu, sigma = _mean_sigma(module.stats)
        se = se_fixed(module.se, np.zeros(module.stats.channels))
        return L.threshold_plus(mu, sigma, _np(module.beta), e_in, pixels, bits, se, module.g)
    raise L.ContractError(f"block {name}: threshold module {type(module).__name__} has no hardware form")


def block_of(block: nn.Module, e_in: int, bits_in: int, size: int) -> tuple[Block, int, int, int]:
    """The integer form of one binary block; returns (block, e_out, bits_out, output size)."""
    if not isinstance(block, BinaryConvBlock) or block.order != "bireal":
        raise L.ContractError(f"block {getattr(block, 'name', '?')}: only Bi-Real-order BinaryConvBlocks are "
                              f"lowered ({type(block).__name__}, order {getattr(block, 'order', '?')})")
    name = block.name
    e_out, bits_out = act_format(block.out_quant, f"block {name} output quantizer")
    threshold = threshold_unit(block.threshold, block.conv.in_channels, e_in, bits_in, size * size, name)
    qw = block.conv.quant_weight()
    weight_bits = (_np(block.conv.weight) >= 0).astype(np.uint8)
    kernel, stride = block.conv.kernel_size[0], block.conv.stride[0]
    out_size = (size + 2 * block.pad - kernel) // stride + 1
    bn_a, bn_b = _bn(block.bn)
    a = bn_a * _np(qw.scale).reshape(-1).astype(np.float64)
    acc_bound = weight_bits[0].size

    sc = block.shortcut
    if sc.option == "A":
        shortcut = Shortcut("option_a", pool=sc.stride, channel_pad=(sc.extra // 2, sc.extra - sc.extra // 2))
        sc_exp = e_in
    else:
        pool = sc.stride if sc.pool is not None else 1
        sc_exp = e_in - 2 * int(math.log2(pool))
        if sc.proj is None:
            shortcut = Shortcut("pool" if pool > 1 else "identity", pool=pool)
        else:
            w_int, w_exp = int_weight(sc.proj[0], f"block {name} shortcut conv")
            shortcut = Shortcut("proj", pool=pool, weight=w_int)
    proj = None
    if shortcut.kind == "proj":
        pa, pb = _bn(sc.proj[1])
        proj_bound = int(np.abs(shortcut.weight).sum(axis=(1, 2, 3)).max()) * (1 << (bits_in - 1)) * pool * pool
        proj = (pa * 2.0 ** (sc_exp + w_exp.astype(np.float64)), pb, proj_bound)

    act = block.act
    if isinstance(act, M.RPReLU):
        act_params = {"kind": "rprelu", "gamma": _np(act.gamma), "zeta": _np(act.zeta), "slope": _np(act.prelu.weight)}
    elif isinstance(act, M.PReLU):  # the RPReLU tail with gamma = zeta = 0
        zeros = np.zeros(act.prelu.num_parameters, np.float32)
        act_params = {"kind": "rprelu", "gamma": zeros, "zeta": zeros, "slope": _np(act.prelu.weight)}
    elif isinstance(act, M.InstaPReLU | M.InstaPReLUPlus):
        mu, sigma = _mean_sigma(act.stats)
        act_params = {"kind": "insta", "mu": mu, "sigma": sigma, "beta": _np(act.beta), "g": act.g,
                      "slope": _np(act.prelu.weight), "alpha": _np(act.alpha) if isinstance(act, M.InstaPReLU) else None,
                      "se": act.se if isinstance(act, M.InstaPReLUPlus) else None}
        if act.reuse is not None:
            th_mu, th_sigma = _mean_sigma(block.threshold.stats)
            act_params["reuse"] = {"mu": th_mu, "sigma": th_sigma, "u": _np(act.reuse.u), "v": _np(act.reuse.v),
                                   "exp": e_in, "bits": bits_in, "pixels": size * size}
    else:
        raise L.ContractError(f"block {name}: activation {type(act).__name__} has no hardware form")
    if act_params.get("se") is not None:
        act_params["se"] = lambda bias, se=act_params["se"]: se_fixed(se, bias)
    tail = L.residual_activation(a, bn_b, acc_bound, shortcut.kind, sc_exp, proj, act_params, e_out, bits_out,
                                 out_size * out_size, name)
    return Block(name, threshold, weight_bits, stride, block.pad, shortcut, tail), e_out, bits_out, out_size


def integer_network(model: InstaBnn) -> IntegerNetwork:
    """Fix every constant of ``model`` (in eval mode) as the hardware does."""
    if model.cfg.real_valued_layers:
        raise L.ContractError("network: real_valued_layers (32-bit first conv, classifier and shortcuts, Sec. A.2 "
                              "ablation) has no integer form; the hardware needs their 8-bit versions")
    with torch.no_grad():
        e0, b0 = act_format(model.input_quant, "input quantizer")
        conv, bn, quant = model.stem[0], model.stem[1], model.stem[-1]
        if len(model.stem) != 3:
            raise L.ContractError("stem: only conv -> BN -> quantizer is lowered (no max-pool stem)")
        w_int, w_exp = int_weight(conv, "stem conv")
        e, bits = act_format(quant, "stem quantizer")
        a, b = _bn(bn)
        bound = int(np.abs(w_int).sum(axis=(1, 2, 3)).max()) * (1 << (b0 - 1))
        requant = L.affine_requant(a, b, e0 + w_exp, bound, e, bits)
        size = (model.input_shape[1] + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        blocks = []
        for block in model.blocks:
            blk, e, bits, size = block_of(block, e, bits, size)
            blocks.append(blk)
        cw, cw_exp = int_weight(model.classifier, "classifier")
        head = L.classifier(cw, cw_exp, _np(model.classifier.bias), e, size * size)
    return IntegerNetwork(e0, b0, w_int, conv.stride[0], conv.padding[0], requant, blocks, head)


class HardwareExact(nn.Module):
    """Forward values of ``model`` replaced by the hardware's integers, block by block (straight-through
    gradients). Constants are re-fixed from the current parameters at every call."""

    def __init__(self, model: InstaBnn):
        super().__init__()
        self.model = model

    @staticmethod
    def _exact(float_out: torch.Tensor, q: np.ndarray, exp: int) -> torch.Tensor:
        exact = torch.from_numpy(np.asarray(q, np.float64) * 2.0 ** exp).to(float_out.device, float_out.dtype)
        return float_out + (exact - float_out).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = integer_network(self.model)
        m = self.model
        q = net.quantize_input(_np(x))
        h = self._exact(m.input_quant(x), q, net.input_exp)
        q = net.stem(q)
        h = self._exact(m.stem(h), q, net.stem_requant.out_exp)
        for module, block in zip(m.blocks, net.blocks):
            q = block(q)
            h = self._exact(module(h), q, block.tail.out_exp)
        logits = m.classifier(torch.flatten(m.pool(h), 1))
        ints = net.classifier(q)
        exact = torch.from_numpy(ints.astype(np.float64) * net.classifier.lsb).to(logits.device, logits.dtype)
        return logits + (exact - logits).detach()

    @torch.no_grad()
    def integer_logits(self, x) -> np.ndarray:
        net = integer_network(self.model)
        return net.run(net.quantize_input(np.asarray(x, np.float32)))
