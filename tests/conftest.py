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


def tree_hashes(path: Path) -> dict[str, str]:
    """sha256 of every file at or below ``path`` (relative names; {} when nothing is there): what a refused
    command must leave exactly as it was."""
    import hashlib

    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []
    return {str(p.relative_to(path)) if p != path else ".": hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def fake_run_folder(folder: Path) -> dict[str, str]:
    """A training run's folder (checkpoints, metrics, an exported and a lowered graph; contents are stand-ins);
    returns its hashes."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.pt", "last.pt", "metrics.csv", "metrics.json", "model.onnx", "lowered.onnx"):
        (folder / name).write_bytes(f"{name} of an earlier run\n".encode())
    return tree_hashes(folder)
