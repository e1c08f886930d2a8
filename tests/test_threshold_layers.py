"""Binarizers of exported graphs fixed as integer threshold units: found, and bit-equal to the float graph."""

from __future__ import annotations

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper

from instabnn.hw.threshold_layers import LoweringError, find_threshold_layers, threshold_agreement
from instabnn.model.config import NetConfig
from instabnn.model.data import digits_arrays
from instabnn.model.export import export_checkpoint, export_model
from test_export import randomised


def test_trained_digits_insta_thresholds_match_the_graph(tmp_path, digits_insta_ckpt):
    out = tmp_path / "digits.onnx"
    export_checkpoint(digits_insta_ckpt, out, n_check=0)
    model = ModelWrapper(str(out))
    layers = find_threshold_layers(model)
    assert [l.kind for l in layers] == ["insta_th"] * 4  # one per binary convolution
    assert [l.shape for l in layers] == [(32, 8, 8)] * 3 + [(64, 4, 4)]
    rows = threshold_agreement(model, digits_arrays()[2][:12])
    for r in rows:
        assert r["agreement"] >= 0.999, r
        assert r["power_sum_bits"] == ([14, 22, 28] if r["shape"][1] == 8 else [12, 20, 26])


def test_baseline_static_thresholds(tmp_path):
    out = tmp_path / "base.onnx"
    export_model(randomised(NetConfig(arch="digits", variant="baseline")), out, {}, n_check=0)
    model = ModelWrapper(str(out))
    layers = find_threshold_layers(model)
    assert [l.kind for l in layers] == ["static"] * 4
    assert all(l.constants.coeffs[3] == (0,) * l.shape[0] for l in layers)
    rng = np.random.default_rng(0)
    for r in threshold_agreement(model, rng.uniform(0, 1, (6, 1, 8, 8)).astype(np.float32)):
        assert r["agreement"] >= 0.999, r


def test_unlowered_pattern_is_named(tmp_path):
    out = tmp_path / "plus.onnx"
    export_model(randomised(NetConfig(arch="digits", variant="insta_plus")), out, {}, n_check=0)
    with pytest.raises(LoweringError, match=r"InstaShift_\d+ \(InstaShift\).*INSTA-Th\+ is not lowered yet"):
        find_threshold_layers(ModelWrapper(str(out)))
