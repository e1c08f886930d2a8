"""The INSTA-BNN modules, as defined in ``docs/algorithm.md`` (the project's reading of the paper).

Threshold modules map a block input x (N, C, H, W) to the centred input ``x - T`` that a binarizer turns into
sign(x - T), and return the instance statistic s (N, C, 1, 1) they computed (``None`` when they compute none):

    Sign         T_c = 0                                                           (no parameter)
    RSign        T_c = tau_c                                                       (ReActNet; 1 parameter / C)
    InstaTh      T_c = mu_c + sigma_c * (alpha_c * s_c + beta_c)                   (4 parameters / C)
    InstaThPlus  T_c = mu_c + sigma_c * (g(FC2(ReLU(FC1(s))))_c + beta_c)          (3 / C + 2 C^2 / r 8-bit)

Activation modules act on the sum after the shortcut; they take an optional reused statistic:

    RPReLU       y = PReLU_kappa(x - gamma_c) + zeta_c                             (ReActNet; 3 / C)
    InstaPReLU   y = PReLU_kappa(x - t_c),  t_c = mu_c + sigma_c * g(alpha_c * s_c + beta_c)   (5 / C)
    InstaPReLUPlus  alpha_c * s_c replaced by FC2(ReLU(FC1(s)))_c                  (4 / C + 2 C^2 / r 8-bit)

with x~ = (x - mu_c) / sigma_c and s_c = mean_{h,w} x~^3. mu, sigma are BatchNorm-style statistics without affine:
the batch's while training, running averages at inference. Feature statistics reuse (paper Sec. 4.2): an
INSTA-PReLU takes s' = u_c * s_c + v_c from the block's INSTA-Th instead of computing its own s (2 / C more).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from brevitas.nn import QuantLinear
from torch import nn

from instabnn.model import onnx_ops
from instabnn.model.quant import Int8WeightPerChannelLsq

G_FUNCTIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "tanh3": lambda z: 3.0 * torch.tanh(z / 3.0),
}
"""The bounded nonlinearities g of supplementary Sec. F; ``tanh3`` is 3*tanh(z/3), the paper's default."""


def check_g(name: str) -> str:
    if name not in G_FUNCTIONS:
        raise ValueError(f"unknown nonlinearity g={name!r}; choose from {sorted(G_FUNCTIONS)}")
    return name


class InstanceStatistic(nn.Module):
    """Per-channel normalisation statistics (mu, sigma) and the instance-wise third moment s.

    Training: mu, sigma^2 are the batch's (over N, H, W; biased variance, as BatchNorm normalises) and the running
    averages are updated with ``momentum`` (unbiased variance, as BatchNorm keeps it). Inference: running ones.
    sigma = sqrt(var + eps).
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def mean_sigma(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected input of shape (N, {self.channels}, H, W), got {tuple(x.shape)}")
        if self.training:
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), unbiased=False)
            with torch.no_grad():
                n = x.numel() / x.shape[1]
                unbiased = var * (n / max(n - 1.0, 1.0))
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        return mean, torch.sqrt(var + self.eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (mu (C,), sigma (C,), s (N, C, 1, 1))."""
        mean, sigma = self.mean_sigma(x)
        return mean, sigma, onnx_ops.insta_statistic(x, mean, sigma)


class SeMlp(nn.Module):
    """The SE-like MLP FC2(ReLU(FC1(s))) of the "+" modules: C -> C/r -> C, no biases.

    ``weight_bits=8`` gives the 8-bit channel-wise LSQ weights of the final model (supplementary Sec. B);
    ``None`` keeps them real-valued (the main training before the LSQ fine-tuning stage).
    """

    def __init__(self, channels: int, reduction: int, weight_bits: int | None):
        super().__init__()
        hidden = max(1, channels // reduction)
        quant = Int8WeightPerChannelLsq if weight_bits is not None else None
        kwargs = {"weight_bit_width": weight_bits} if weight_bits is not None else {}
        self.fc1 = QuantLinear(channels, hidden, bias=False, weight_quant=quant, **kwargs)
        self.fc2 = QuantLinear(hidden, channels, bias=False, weight_quant=quant, **kwargs)
        nn.init.normal_(self.fc2.weight, std=1e-3)  # start close to the plain INSTA module (alpha = 0)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """(N, C, 1, 1) -> (N, C, 1, 1)."""
        return self.fc2(F.relu(self.fc1(torch.flatten(s, 1))))[:, :, None, None]


# ----------------------------------------------------------------------------------------------- thresholds


class Sign(nn.Module):
    """The plain sign binarizer (threshold 0, no parameter): the "Sign" model of supplementary Sec. I."""

    def forward(self, x):
        return x, None


class RSign(nn.Module):
    """ReActNet's RSign threshold: a learned per-channel constant tau (binarizer input x - tau)."""

    def __init__(self, channels: int):
        super().__init__()
        self.threshold = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x - self.threshold.view(1, -1, 1, 1), None


class InstaTh(nn.Module):
    """INSTA-Th: T_c = mu_c + sigma_c * (alpha_c * s_c + beta_c) (paper Eq. 7, supplementary Sec. C)."""

    def __init__(self, channels: int):
        super().__init__()
        self.stats = InstanceStatistic(channels)
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        mean, sigma, s = self.stats(x)
        z = s * self.alpha.view(1, -1, 1, 1)
        return onnx_ops.insta_shift(x, z, mean, sigma, self.beta, "none"), s


class InstaThPlus(nn.Module):
    """INSTA-Th+: alpha_c * s_c of INSTA-Th replaced by g(FC2(ReLU(FC1(s))))_c (SE-like, paper Sec. 4.3)."""

    def __init__(self, channels: int, reduction: int, g: str, se_weight_bits: int | None):
        super().__init__()
        self.stats = InstanceStatistic(channels)
        self.se = SeMlp(channels, reduction, se_weight_bits)
        self.g = check_g(g)
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        mean, sigma, s = self.stats(x)
        z = G_FUNCTIONS[self.g](self.se(s))
        return onnx_ops.insta_shift(x, z, mean, sigma, self.beta, "none"), s


class BatchNormSign(nn.Module):
    """The BN of the BN-sign-conv block order (supplementary Sec. G) as a threshold module: x -> BN(x).

    ``affine=False`` is Table 2's "BN (w/o gamma, beta)" row.
    """

    def __init__(self, channels: int, affine: bool = True):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=affine)

    def forward(self, x):
        return self.bn(x), None


# ----------------------------------------------------------------------------------------------- activations


class RPReLU(nn.Module):
    """ReActNet's RPReLU: y = PReLU_kappa(x - gamma_c) + zeta_c, kappa per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.prelu = nn.PReLU(channels, init=0.25)
        self.zeta = nn.Parameter(torch.zeros(channels))

    def forward(self, x, s=None):
        return self.prelu(x - self.gamma.view(1, -1, 1, 1)) + self.zeta.view(1, -1, 1, 1)


class PReLU(nn.Module):
    """Plain per-channel PReLU with the activation-module signature (BN-sign-conv order, Sec. G)."""

    def __init__(self, channels: int):
        super().__init__()
        self.prelu = nn.PReLU(channels, init=0.25)

    def forward(self, x, s=None):
        return self.prelu(x)


class StatisticReuse(nn.Module):
    """s' = u_c * s_c + v_c: the INSTA-Th statistic mapped for the block's INSTA-PReLU (paper Sec. 4.2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.u = nn.Parameter(torch.ones(channels))
        self.v = nn.Parameter(torch.zeros(channels))

    def forward(self, s):
        return s * self.u.view(1, -1, 1, 1) + self.v.view(1, -1, 1, 1)


class _InstaActivation(nn.Module):
    """Shared body of INSTA-PReLU and INSTA-PReLU+: y = PReLU_kappa(x - mu - sigma * g(m(s) + beta))."""

    def __init__(self, channels: int, g: str, reuse_channels: int | None):
        super().__init__()
        if reuse_channels is not None and reuse_channels != channels:
            raise ValueError(
                f"statistics reuse needs equal channel counts: the INSTA-Th has {reuse_channels} channels, "
                f"the INSTA-PReLU {channels}")
        self.stats = InstanceStatistic(channels)
        self.reuse = StatisticReuse(channels) if reuse_channels is not None else None
        self.g = check_g(g)
        self.beta = nn.Parameter(torch.zeros(channels))
        self.prelu = nn.PReLU(channels, init=0.25)

    def modulation(self, s):
        raise NotImplementedError

    def forward(self, x, s=None):
        if self.reuse is not None:
            if s is None:
                raise ValueError("this INSTA-PReLU reuses the INSTA-Th statistic, but none was passed")
            mean, sigma = self.stats.mean_sigma(x)
            s = self.reuse(s)
        else:
            mean, sigma, s = self.stats(x)
        shifted = onnx_ops.insta_shift(x, self.modulation(s), mean, sigma, self.beta, self.g)
        return self.prelu(shifted)


class InstaPReLU(_InstaActivation):
    """INSTA-PReLU: t_c = mu_c + sigma_c * g(alpha_c * s_c + beta_c), y = PReLU_kappa(x - t_c) (paper Eq. 9)."""

    def __init__(self, channels: int, g: str = "tanh3", reuse_channels: int | None = None):
        super().__init__(channels, g, reuse_channels)
        self.alpha = nn.Parameter(torch.zeros(channels))

    def modulation(self, s):
        return s * self.alpha.view(1, -1, 1, 1)


class InstaPReLUPlus(_InstaActivation):
    """INSTA-PReLU+: alpha_c * s_c replaced by FC2(ReLU(FC1(s)))_c; g is applied once, as in INSTA-PReLU."""

    def __init__(self, channels: int, reduction: int, g: str = "tanh3", se_weight_bits: int | None = None,
                 reuse_channels: int | None = None):
        super().__init__(channels, g, reuse_channels)
        self.se = SeMlp(channels, reduction, se_weight_bits)

    def modulation(self, s):
        return self.se(s)
