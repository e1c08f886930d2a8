"""The INSTA-Th integer golden function against the float module and the exact math; widths from worst cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from instabnn.contract.insta import (frame_thresholds, insta_th_constants, insta_threshold_compare,
                                         power_sum_ranges, signed_bits, static_threshold_constants)
from instabnn.model.modules import InstaTh


def trained_like_insta_th(channels: int, seed: int) -> InstaTh:
    torch.manual_seed(seed)
    m = InstaTh(channels)
    with torch.no_grad():
        m.stats.running_mean.copy_(0.5 * torch.randn(channels))
        m.stats.running_var.copy_(0.5 + torch.rand(channels))
        m.alpha.copy_(torch.randn(channels))
        m.beta.copy_(0.5 * torch.randn(channels))
    return m.eval()


def skewed_frames(rng, frames, channels, h, w, bits):
    qmax = (1 << (bits - 1)) - 1
    q = rng.gamma(2.0, 6.0, size=(frames, channels, h, w)) * rng.choice([-1, 1], size=(frames, channels, 1, 1))
    q = q - rng.normal(0, 4, size=(frames, channels, 1, 1))
    return np.clip(np.round(q), -qmax - 1, qmax).astype(np.int64)


@pytest.mark.parametrize("bits, h, scale_exp", [(8, 8, -4), (6, 4, -3), (8, 16, -5)])
def test_threshold_is_exact_ceiling_of_the_math(bits, h, scale_exp):
    rng = np.random.default_rng(bits * 100 + h)
    m = trained_like_insta_th(6, seed=h)
    scale = 2.0 ** scale_exp
    mu, var = m.stats.running_mean.double().numpy(), m.stats.running_var.double().numpy()
    sigma = np.sqrt(var + m.stats.eps)
    alpha, beta = m.alpha.detach().double().numpy(), m.beta.detach().double().numpy()
    consts = insta_th_constants(mu, sigma, alpha, beta, scale, h * h, bits)
    q = skewed_frames(rng, 12, 6, h, h, bits)
    t = frame_thresholds(q, consts)
    tolerance = 2.0 ** -consts.guard_bits
    checked = 0
    for f in range(q.shape[0]):
        for c in range(6):
            x = q[f, c].astype(np.float64) * scale
            s = np.mean(((x - mu[c]) / sigma[c]) ** 3)
            T = (mu[c] + sigma[c] * (alpha[c] * s + beta[c])) / scale  # the threshold in the q domain
            frac_part = T - math.floor(T)
            if min(frac_part, 1 - frac_part) < tolerance:
                continue  # within the documented rounding error of an integer: either ceiling is allowed
            expected = min(max(math.ceil(T), -(1 << (bits - 1))), 1 << (bits - 1))
            assert t[f, c] == expected, f"frame {f} channel {c}: t={t[f, c]}, exact ceil(T)={expected} (T={T})"
            checked += 1
    assert checked >= 0.9 * q.shape[0] * 6


def test_agreement_with_the_float_module():
    rng = np.random.default_rng(1)
    m = trained_like_insta_th(8, seed=3)
    scale = 2.0 ** -4
    sigma = torch.sqrt(m.stats.running_var + m.stats.eps)
    consts = insta_th_constants(m.stats.running_mean, sigma.detach(), m.alpha.detach(), m.beta.detach(),
                                scale, 64, 8)
    q = skewed_frames(rng, 32, 8, 8, 8, 8)
    bits = insta_threshold_compare(q, consts)
    with torch.no_grad():
        centred, _ = m(torch.from_numpy(q * scale).float())
    float_bits = (centred >= 0).numpy().astype(np.uint8)
    agreement = (bits == float_bits).mean()
    assert agreement >= 0.999, agreement


def test_worst_case_widths_hold_the_extremes():
    bits, pixels = 8, 256
    rng = np.random.default_rng(0)
    consts = insta_th_constants(rng.normal(0, 1, 4), rng.uniform(0.2, 3, 4), rng.normal(0, 2, 4),
                                rng.normal(0, 1, 4), 2.0 ** -4, pixels, bits)
    widths = consts.power_sum_bits
    for value in (-(1 << (bits - 1)), (1 << (bits - 1)) - 1):
        q = np.full((1, 4, 16, 16), value)
        for j, w in zip((1, 2, 3), widths):
            p = int((q[0, 0].astype(object) ** j).sum())
            assert -(1 << (w - 1)) <= p <= (1 << (w - 1)) - 1
            assert signed_bits(p, p) <= w
        frame_thresholds(q, consts)  # no overflow error
    # the computed widths are tight: P3 at 8 bits and 256 pixels spans [-2^29, 256 * 127^3]
    assert power_sum_ranges(8, 256)[3] == (-(1 << 29), 256 * 127 ** 3)
    assert widths == (signed_bits(-(1 << 15), 256 * 127), signed_bits(0, 1 << 22), 30)
    assert consts.threshold_bits == 9 and consts.threshold_accumulator_bits > max(widths)


def test_static_threshold_is_ceil_tau_over_scale():
    tau = np.array([0.0, 0.26, -0.3, 1.0])
    consts = static_threshold_constants(tau, 2.0 ** -2, 16, 8)
    q = np.zeros((1, 4, 4, 4), dtype=np.int64)
    assert frame_thresholds(q, consts)[0].tolist() == [0, 2, -1, 4]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="power of two"):
        insta_th_constants([0.0], [1.0], [0.0], [0.0], 0.3, 16, 8)
    consts = insta_th_constants([0.0], [1.0], [0.0], [0.0], 0.25, 16, 8)
    with pytest.raises(ValueError, match="8-bit"):
        frame_thresholds(np.full((1, 1, 4, 4), 200), consts)
    with pytest.raises(ValueError, match="H\\*W = 16"):
        frame_thresholds(np.zeros((1, 1, 3, 3), dtype=np.int64), consts)
