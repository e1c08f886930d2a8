"""Brevitas' bnn_pynq example networks (``tfc_1w1a``, ``cnv_1w1a``, ...) with random weights and non-trivial
BatchNorm statistics, exported to QONNX: the plain W1A1 chains the compiler's tests and the estimate check build
without a trained checkpoint (nothing is downloaded: ``pretrained=False``)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from unittest import mock

import torch

__all__ = ["randomise_batchnorm", "export_bnn_pynq"]


def randomise_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Random BatchNorm statistics and affine parameters (negative gains too: the lowering negates weight rows)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-3, 3)
                m.running_var.uniform_(0.5, 4)
                m.weight.uniform_(-1, 1)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def export_bnn_pynq(name: str, path: Path, shape: tuple[int, ...], **cnv_layout) -> Path:
    """The bnn_pynq network ``name`` (seed 0) exported to QONNX at ``path`` for inputs of ``shape`` (C, H, W).
    ``cnv_layout`` (``CNV_OUT_CH_POOL``, ``INTERMEDIATE_FC_FEATURES``, ``LAST_FC_IN_FEATURES``) overrides the CNV
    class's layout for a smaller network with the same layer types."""
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models import CNV as cnv_module
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    torch.manual_seed(0)
    with mock.patch.multiple(cnv_module, **cnv_layout) if cnv_layout else contextlib.nullcontext():
        model, _ = model_with_cfg(name, pretrained=False)
    randomise_batchnorm(model)
    export_qonnx(model, torch.rand(1, *shape), str(path), dynamo=False)
    return path
