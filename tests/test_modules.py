"""The INSTA modules and quantizers against naive numpy renderings of docs/insta-bnn.md Sec. 2 and the
supplementary's Sec. B/C counts, plus gradient flow through every network variant.

The references below are written independently of ``model/``: explicit loops over (n, c) in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear

from instabnn.model import modules as M
from instabnn.model.config import ConfigError, NetConfig
from instabnn.model.networks import build_network
from instabnn.model.quant import (BinaryActApproxSign, BinaryActSte, BinaryWeightPerChannelXnor,
                                  Int8WeightPerChannelLsq, ResidualActPow2)

G_NAMES = ("sigmoid", "tanh", "tanh3")
EPS = 1e-5
N, C, H, W = 3, 8, 5, 6
R = 4  # SE reduction: C -> C/R -> C


# ------------------------------------------------------------------------------------------ naive references


def np_g(name: str, z: float) -> float:
    if name == "sigmoid":
        return 1.0 / (1.0 + math.exp(-z))
    if name == "tanh":
        return math.tanh(z)
    if name == "tanh3":
        return 3.0 * math.tanh(z / 3.0)
    raise AssertionError(name)


def np_prelu(z: float, kappa: float) -> float:
    return z if z >= 0 else kappa * z


def np_mu_sigma(x: np.ndarray, training: bool, running_mean: np.ndarray, running_var: np.ndarray):
    """BatchNorm-style statistics without affine: over (N, H, W), biased variance; sigma = sqrt(var + eps)."""
    n, c = x.shape[:2]
    mu, sigma = np.zeros(c), np.zeros(c)
    for ch in range(c):
        if training:
            vals = x[:, ch].reshape(-1)
            m = sum(vals) / len(vals)
            var = sum((v - m) ** 2 for v in vals) / len(vals)
        else:
            m, var = running_mean[ch], running_var[ch]
        mu[ch], sigma[ch] = m, math.sqrt(var + EPS)
    return mu, sigma


def np_third_moment(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """s[n, c] = mean over (h, w) of ((x - mu_c) / sigma_c)^3."""
    n, c, h, w = x.shape
    s = np.zeros((n, c))
    for i in range(n):
        for ch in range(c):
            acc = 0.0
            for y in range(h):
                for z in range(w):
                    acc += ((x[i, ch, y, z] - mu[ch]) / sigma[ch]) ** 3
            s[i, ch] = acc / (h * w)
    return s


def np_se(s: np.ndarray, fc1: np.ndarray, fc2: np.ndarray) -> np.ndarray:
    """FC2(ReLU(FC1(s))) per instance, no biases; fc1 is (C/r, C), fc2 is (C, C/r)."""
    out = np.zeros_like(s)
    for i in range(s.shape[0]):
        hidden = np.maximum(fc1 @ s[i], 0.0)
        out[i] = fc2 @ hidden
    return out


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def close(actual: torch.Tensor, expected: np.ndarray, rtol: float = 1e-5, atol: float = 1e-5):
    np.testing.assert_allclose(np64(actual), expected, rtol=rtol, atol=atol)


def random_input(seed: int, shift: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # skewed (exponential) per-channel data so that the third moment is far from zero
    x = torch.empty(N, C, H, W).exponential_(1.0, generator=g) * torch.linspace(0.5, 2.0, C).view(1, -1, 1, 1)
    sign = torch.where(torch.arange(C) % 2 == 0, 1.0, -1.0).view(1, -1, 1, 1)  # alternate skew direction
    return x * sign + shift + 0.2 * torch.randn(N, C, H, W, generator=g)


def randomise(module: torch.nn.Module, seed: int):
    """Random non-trivial values for every parameter and the running statistics (positive variances)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "scaling_impl" in name:
                continue
            if name.endswith("prelu.weight"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.05)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.7)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.5)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) * 2.0 + 0.3)


def running(module):
    stats = module.stats
    return np64(stats.running_mean), np64(stats.running_var)


# ------------------------------------------------------------------------------------------ InstanceStatistic


@pytest.mark.parametrize("training", [True, False])
def test_instance_statistic_matches_reference(training):
    torch.manual_seed(0)
    st = M.InstanceStatistic(C)
    randomise(st, 1)
    st.train(training)
    x = random_input(2)
    rm, rv = np64(st.running_mean), np64(st.running_var)
    mean, sigma, s = st(x)
    mu_ref, sigma_ref = np_mu_sigma(np64(x), training, rm, rv)
    close(mean, mu_ref)
    close(sigma, sigma_ref)
    assert s.shape == (N, C, 1, 1)
    s_ref = np_third_moment(np64(x), mu_ref, sigma_ref)
    close(s[:, :, 0, 0], s_ref)
    assert np.abs(s_ref).max() > 0.3  # the inputs are skewed: the test exercises a non-trivial s


def test_instance_statistic_running_update():
    st = M.InstanceStatistic(C, momentum=0.1)
    randomise(st, 3)
    rm0, rv0 = np64(st.running_mean), np64(st.running_var)
    x = random_input(4)
    st.train()
    st(x)
    xv = np64(x)
    count = N * H * W
    for ch in range(C):
        vals = xv[:, ch].reshape(-1)
        m = vals.sum() / count
        unbiased = ((vals - m) ** 2).sum() / (count - 1)
        assert st.running_mean[ch].item() == pytest.approx(0.9 * rm0[ch] + 0.1 * m, rel=1e-5, abs=1e-6)
        assert st.running_var[ch].item() == pytest.approx(0.9 * rv0[ch] + 0.1 * unbiased, rel=1e-5, abs=1e-6)
    assert int(st.num_batches_tracked) == 1
    # eval mode neither uses nor changes the batch statistics
    st.eval()
    before = st.running_mean.clone()
    mean, _, _ = st(x * 3.0 + 1.0)
    assert torch.equal(st.running_mean, before)
    assert torch.equal(mean, before)


def test_instance_statistic_rejects_wrong_channels():
    with pytest.raises(ValueError, match="expected input of shape"):
        M.InstanceStatistic(C)(torch.randn(2, C + 1, 3, 3))


# ------------------------------------------------------------------------------------------ thresholds


def test_rsign_matches_reference():
    m = M.RSign(C)
    randomise(m, 5)
    x = random_input(6)
    out, s = m(x)
    assert s is None
    tau = np64(m.threshold)
    xv = np64(x)
    ref = np.zeros_like(xv)
    for i in range(N):
        for ch in range(C):
            ref[i, ch] = xv[i, ch] - tau[ch]
    close(out, ref)


@pytest.mark.parametrize("training", [True, False])
def test_insta_th_matches_reference(training):
    m = M.InstaTh(C)
    randomise(m, 7)
    m.train(training)
    x = random_input(8)
    rm, rv = running(m)
    out, s = m(x)
    xv = np64(x)
    mu, sigma = np_mu_sigma(xv, training, rm, rv)
    s_ref = np_third_moment(xv, mu, sigma)
    alpha, beta = np64(m.alpha), np64(m.beta)
    ref = np.zeros_like(xv)
    for i in range(N):
        for ch in range(C):
            t = mu[ch] + sigma[ch] * (alpha[ch] * s_ref[i, ch] + beta[ch])
            ref[i, ch] = xv[i, ch] - t
    close(s[:, :, 0, 0], s_ref)
    close(out, ref)
    # the threshold is instance-aware: it differs between instances of one channel
    assert np.ptp(xv[:, 0].mean(axis=(1, 2)) - ref[:, 0].mean(axis=(1, 2))) > 1e-3


@pytest.mark.parametrize("g", G_NAMES)
@pytest.mark.parametrize("training", [True, False])
def test_insta_th_plus_matches_reference(g, training):
    m = M.InstaThPlus(C, R, g, se_weight_bits=None)
    randomise(m, 9)
    m.train(training)
    x = random_input(10)
    rm, rv = running(m)
    out, s = m(x)
    xv = np64(x)
    mu, sigma = np_mu_sigma(xv, training, rm, rv)
    s_ref = np_third_moment(xv, mu, sigma)
    se = np_se(s_ref, np64(m.se.fc1.weight), np64(m.se.fc2.weight))
    assert np.abs(se).max() > 0.1
    beta = np64(m.beta)
    ref = np.zeros_like(xv)
    for i in range(N):
        for ch in range(C):
            t = mu[ch] + sigma[ch] * (np_g(g, se[i, ch]) + beta[ch])
            ref[i, ch] = xv[i, ch] - t
    close(s[:, :, 0, 0], s_ref)
    close(out, ref)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_sign_matches_reference(training, affine):
    m = M.BatchNormSign(C, affine=affine)
    randomise(m, 11)
    m.train(training)
    x = random_input(12)
    rm, rv = np64(m.bn.running_mean), np64(m.bn.running_var)
    out, s = m(x)
    assert s is None
    xv = np64(x)
    mu, sigma = np_mu_sigma(xv, training, rm, rv)
    gamma = np64(m.bn.weight) if affine else np.ones(C)
    shift = np64(m.bn.bias) if affine else np.zeros(C)
    ref = np.zeros_like(xv)
    for i in range(N):
        for ch in range(C):
            ref[i, ch] = (xv[i, ch] - mu[ch]) / sigma[ch] * gamma[ch] + shift[ch]
    close(out, ref)


# ------------------------------------------------------------------------------------------ activations


def test_rprelu_matches_reference():
    m = M.RPReLU(C)
    randomise(m, 13)
    x = random_input(14)
    out = m(x)
    gamma, zeta, kappa = np64(m.gamma), np64(m.zeta), np64(m.prelu.weight)
    xv = np64(x)
    ref = np.zeros_like(xv)
    for i in range(N):
        for ch in range(C):
            for y in range(H):
                for z in range(W):
                    ref[i, ch, y, z] = np_prelu(xv[i, ch, y, z] - gamma[ch], kappa[ch]) + zeta[ch]
    close(out, ref)
    assert (ref < zeta.reshape(1, -1, 1, 1)).any()  # the negative branch is exercised


def _insta_prelu_reference(m, x, training, s_in, modulation):
    """y = PReLU_kappa(x - t), t_c = mu_c + sigma_c * g(m(s)_c + beta_c); s = own statistic or u * s_in + v."""
    rm, rv = running(m)
    xv = np64(x)
    mu, sigma = np_mu_sigma(xv, training, rm, rv)
    if s_in is None:
        s = np_third_moment(xv, mu, sigma)
    else:
        u, v = np64(m.reuse.u), np64(m.reuse.v)
        s = np.zeros((N, C))
        for i in range(N):
            for ch in range(C):
                s[i, ch] = u[ch] * s_in[i, ch] + v[ch]
    mod = modulation(s)
    beta, kappa = np64(m.beta), np64(m.prelu.weight)
    ref = np.zeros_like(xv)
    for i in range(N):
        for ch in range(C):
            t = mu[ch] + sigma[ch] * np_g(m.g, mod[i, ch] + beta[ch])
            for y in range(H):
                for z in range(W):
                    ref[i, ch, y, z] = np_prelu(xv[i, ch, y, z] - t, kappa[ch])
    return ref


@pytest.mark.parametrize("g", G_NAMES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("reuse", [False, True])
def test_insta_prelu_matches_reference(g, training, reuse):
    m = M.InstaPReLU(C, g=g, reuse_channels=C if reuse else None)
    randomise(m, 15)
    m.train(training)
    x = random_input(16, shift=0.0)
    s_in = None
    if reuse:
        s_in = np.random.default_rng(17).normal(size=(N, C))
        out = m(x, torch.tensor(s_in, dtype=torch.float32).view(N, C, 1, 1))
        s_in = np64(torch.tensor(s_in, dtype=torch.float32))
    else:
        out = m(x)
    alpha = np64(m.alpha)
    ref = _insta_prelu_reference(m, x, training, s_in, lambda s: s * alpha.reshape(1, -1))
    close(out, ref)
    assert (ref < 0).any() and (ref > 0).any()


@pytest.mark.parametrize("g", G_NAMES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("reuse", [False, True])
def test_insta_prelu_plus_matches_reference(g, training, reuse):
    m = M.InstaPReLUPlus(C, R, g=g, se_weight_bits=None, reuse_channels=C if reuse else None)
    randomise(m, 19)
    m.train(training)
    x = random_input(20, shift=0.0)
    s_in = None
    if reuse:
        s_in = np.random.default_rng(21).normal(size=(N, C))
        out = m(x, torch.tensor(s_in, dtype=torch.float32).view(N, C, 1, 1))
        s_in = np64(torch.tensor(s_in, dtype=torch.float32))
    else:
        out = m(x)
    fc1, fc2 = np64(m.se.fc1.weight), np64(m.se.fc2.weight)
    ref = _insta_prelu_reference(m, x, training, s_in, lambda s: np_se(s, fc1, fc2))
    close(out, ref)


def test_statistic_reuse_is_affine_map():
    m = M.StatisticReuse(C)
    randomise(m, 23)
    s = torch.randn(N, C, 1, 1)
    out = m(s)
    u, v, sv = np64(m.u), np64(m.v), np64(s)
    for i in range(N):
        for ch in range(C):
            assert out[i, ch, 0, 0].item() == pytest.approx(u[ch] * sv[i, ch, 0, 0] + v[ch], rel=1e-5, abs=1e-6)


def test_reuse_errors():
    with pytest.raises(ValueError, match="equal channel counts"):
        M.InstaPReLU(C, reuse_channels=C // 2)
    m = M.InstaPReLU(C, reuse_channels=C)
    with pytest.raises(ValueError, match="none was passed"):
        m(torch.randn(2, C, 3, 3))
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        M.InstaPReLU(C, g="relu")


# ------------------------------------------------------------------------------------------ parameter counts


def per_channel_count(module: torch.nn.Module) -> int:
    """Trainable parameters + running_mean / running_var buffers (supplementary Sec. C's counting)."""
    params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    buffers = sum(b.numel() for name, b in module.named_buffers()
                  if name.endswith("running_mean") or name.endswith("running_var"))
    return params + buffers


@pytest.mark.parametrize("channels", [8, 32])
def test_parameter_counts_match_supplementary(channels):
    c, r = channels, R
    se = 2 * c * c // r
    assert per_channel_count(M.RSign(c)) == c
    assert per_channel_count(M.RPReLU(c)) == 3 * c
    assert per_channel_count(M.InstaTh(c)) == 4 * c
    assert per_channel_count(M.InstaPReLU(c)) == 5 * c
    assert per_channel_count(M.InstaPReLU(c, reuse_channels=c)) == 5 * c + 2 * c
    # SE-like MLP: 2C^2/r weights replace alpha
    assert per_channel_count(M.InstaThPlus(c, r, "tanh3", None)) == 4 * c - c + se
    assert per_channel_count(M.InstaPReLUPlus(c, r)) == 5 * c - c + se
    assert per_channel_count(M.InstaPReLUPlus(c, r, reuse_channels=c)) == 5 * c - c + se + 2 * c
    assert per_channel_count(M.BatchNormSign(c, affine=False)) == 2 * c


def test_se_mlp_shapes_and_lsq_step_sizes():
    c, r = 16, 4
    mlp = M.SeMlp(c, r, None)
    assert tuple(mlp.fc1.weight.shape) == (c // r, c)
    assert tuple(mlp.fc2.weight.shape) == (c, c // r)
    assert mlp.fc1.bias is None and mlp.fc2.bias is None
    assert mlp.fc2.weight.abs().max() > 0  # small, not zero
    # 8-bit LSQ: the same weights plus one learned step size per output channel, C + C/r in all (Sec. C)
    q = M.SeMlp(c, r, 8)
    q(torch.randn(2, c, 1, 1))
    names = [n for n, _ in q.named_parameters()]
    weights = sum(p.numel() for n, p in q.named_parameters() if n.endswith(".weight"))
    steps = sum(p.numel() for n, p in q.named_parameters() if "scaling_impl" in n)
    assert weights == 2 * c * c // r, names
    assert steps == c + c // r, names
    assert q.fc1.quant_weight().bit_width.item() == 8


# ------------------------------------------------------------------------------------------ quantizers


def test_binary_weight_xnor_scale():
    torch.manual_seed(0)
    conv = QuantConv2d(5, 6, 3, bias=False, weight_quant=BinaryWeightPerChannelXnor)
    with torch.no_grad():
        conv.weight.mul_(torch.linspace(0.5, 3.0, 6).view(-1, 1, 1, 1))  # distinct per-channel magnitudes
        conv.weight[0, 0, 0, 0] = 0.0  # sign(0) = +1
    w = np64(conv.weight)
    qw = np64(conv.quant_weight().value)
    for o in range(w.shape[0]):
        a = np.abs(w[o]).mean()
        expected = np.where(w[o] >= 0, 1.0, -1.0) * a
        np.testing.assert_allclose(qw[o], expected, rtol=1e-6, atol=1e-7)
    assert qw[0, 0, 0, 0] > 0
    assert len({round(float(np.abs(qw[o]).max()), 6) for o in range(6)}) == 6


@pytest.mark.parametrize("quant", [BinaryActSte, BinaryActApproxSign])
def test_binary_act_forward(quant):
    m = QuantIdentity(act_quant=quant, return_quant_tensor=False)
    x = torch.tensor([-3.0, -1.0, -0.4, -1e-7, 0.0, -0.0, 1e-7, 0.4, 1.0, 3.0])
    y = m(x)
    expected = torch.tensor([-1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert torch.equal(y, expected)


def _act_grad(quant, x):
    x = x.clone().requires_grad_(True)
    QuantIdentity(act_quant=quant, return_quant_tensor=False)(x).sum().backward()
    return x.grad


def test_ste_gradient_is_clipped_identity():
    x = torch.tensor([-2.5, -1.0001, -1.0, -0.7, -0.1, 0.0, 0.3, 0.99, 1.0, 1.0001, 4.0])
    grad = _act_grad(BinaryActSte, x)
    expected = (x.abs() <= 1.0).float()
    assert torch.equal(grad, expected)


def test_approxsign_gradient():
    x = torch.linspace(-1.6, 1.6, 33)
    grad = _act_grad(BinaryActApproxSign, x)
    expected = torch.where(x.abs() < 1.0, 2.0 - 2.0 * x.abs(), torch.zeros_like(x))
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-6)
    assert grad[16].item() == pytest.approx(2.0)  # x = 0
    assert grad.max() > 1.5


def test_int8_lsq_weight_range():
    torch.manual_seed(0)
    fc = QuantLinear(12, 6, bias=False, weight_quant=Int8WeightPerChannelLsq, weight_bit_width=8)
    qt = fc.quant_weight()  # initialises the per-channel step sizes from the weights
    assert qt.bit_width.item() == 8 and bool(qt.signed)
    scale = qt.scale.detach()
    assert scale.numel() == 6 and torch.unique(scale).numel() > 1  # channel-wise
    # push the weights far beyond the range: the integers saturate at -Q_N = -128 and Q_P = 127
    with torch.no_grad():
        fc.weight.copy_(torch.randn(6, 12) * 1000.0)
        fc.weight[:, 0] = 1e4
        fc.weight[:, 1] = -1e4
    qt = fc.quant_weight()
    ints = qt.int().detach().float()
    torch.testing.assert_close(ints * qt.scale.detach(), qt.value.detach())
    assert ints.min().item() == -128 and ints.max().item() == 127
    assert torch.equal(ints[:, 0], torch.full((6,), 127.0))
    assert torch.equal(ints[:, 1], torch.full((6,), -128.0))
    # step sizes are learned parameters
    assert any("scaling_impl" in n and p.requires_grad for n, p in fc.named_parameters())


@pytest.mark.parametrize("bits", [4, 8])
def test_residual_act_scale_is_power_of_two(bits):
    m = QuantIdentity(act_quant=ResidualActPow2, bit_width=bits, return_quant_tensor=True)
    (name, param), = [(n, p) for n, p in m.named_parameters()]
    for value in (None, 0.37, 1.81, -2.6):
        if value is not None:
            with torch.no_grad():
                param.fill_(value)
        qt = m(torch.randn(64) * 3.0)
        e = torch.log2(qt.scale.detach())
        assert torch.equal(e, e.round()), (name, value, qt.scale)
        assert qt.bit_width.item() == bits
        ints = (qt.value / qt.scale).detach()
        torch.testing.assert_close(ints, ints.round(), rtol=0, atol=1e-4)
        assert ints.min() >= -(2 ** (bits - 1)) and ints.max() <= 2 ** (bits - 1) - 1
    # full signed range (narrow_range=False): saturating inputs reach -2^(b-1) and 2^(b-1) - 1
    qt = m(torch.tensor([-1e4, 1e4]))
    expected = torch.tensor([-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1])
    torch.testing.assert_close((qt.value / qt.scale).detach(), expected)


# ------------------------------------------------------------------------------------------ gradients


ARCH_SHAPES = {"digits": (1, 8), "resnet20": (3, 16)}


def _check_all_gradients(cfg: NetConfig, seed: int = 0):
    torch.manual_seed(seed)
    net = build_network(cfg)
    net.train()
    # INSTA-PReLU's alpha starts at 0 (the module starts as a plain shifted PReLU), so d(loss)/d(s') = 0 and the
    # statistics-reuse u, v get an exactly zero gradient on the very first step. Give alpha the small non-zero
    # value it has after one optimiser step; every other parameter keeps its initial value.
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, M.InstaPReLU) and module.reuse is not None:
                module.alpha.fill_(0.1)
    ch, size = ARCH_SHAPES[cfg.arch]
    x = torch.randn(4, ch, size, size)
    target = torch.randint(0, 10, (4,))
    loss = torch.nn.functional.cross_entropy(net(x), target)
    loss.backward()
    bad = []
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            bad.append(f"{name}: None")
        elif not torch.isfinite(p.grad).all():
            bad.append(f"{name}: not finite")
        elif not (p.grad != 0).any():
            bad.append(f"{name}: all zero")
    assert not bad, f"{cfg.arch}/{cfg.variant}: " + "; ".join(bad)
    return net


@pytest.mark.parametrize("variant", ["baseline", "insta", "insta_plus", "latency_optimized"])
@pytest.mark.parametrize("arch", ["digits", "resnet20"])
def test_gradients_reach_every_parameter(arch, variant):
    net = _check_all_gradients(NetConfig(arch=arch, variant=variant))
    names = [n for n, _ in net.named_parameters()]
    if variant == "insta_plus":
        assert any(n.endswith("se.fc1.weight") for n in names) and any(n.endswith("se.fc2.weight") for n in names)
    if variant == "latency_optimized":
        assert any(n.endswith("reuse.u") for n in names)


@pytest.mark.parametrize("variant", ["insta", "insta_plus"])
def test_gradients_with_stats_reuse_and_lsq(variant):
    net = _check_all_gradients(NetConfig(arch="digits", variant=variant, stats_reuse="auto", se_weight_bits=8,
                                         act_gradient="approxsign"))
    names = [n for n, _ in net.named_parameters()]
    assert any(n.endswith("reuse.u") for n in names) and any(n.endswith("reuse.v") for n in names)


@pytest.mark.parametrize("arch", ["digits", "resnet20"])
@pytest.mark.parametrize("variant", ["insta", "insta_plus", "latency_optimized"])
def test_stats_reuse_all_names_the_downsampling_block(arch, variant):
    cfg = NetConfig(arch=arch, variant=variant, stats_reuse="all")
    with pytest.raises(ConfigError, match=r"stats_reuse='all'.*block stage1\.block0\.conv0 changes channels"):
        build_network(cfg)
