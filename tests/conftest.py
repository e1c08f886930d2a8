"""Shared fixtures: small trained digits checkpoints, made once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two test processes share two cores (pytest -n 2): one thread each keeps them from fighting.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def train_digits(out: Path, *args: str) -> Path:
    from instabnn.model.train import main

    rc = main(["--data", "digits", "--out", str(out), "--no-progress", *args])
    assert rc == 0, f"training {args} failed"
    return out / "model.pt"


@pytest.fixture(scope="session")
def digits_insta_ckpt(tmp_path_factory) -> Path:
    """A digits INSTA-BNN trained for a few epochs."""
    return train_digits(tmp_path_factory.mktemp("digits-insta"), "--variant", "insta", "--epochs", "4")
