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


def random_folding(lowered: Path, seed: int, cycles: tuple[int, int], random_knobs: bool = False) -> dict:
    """A random legal folding (FINN config) of a lowered graph for a random bottleneck between ``cycles``: per node
    a random (SIMD, PE), each dividing its dimension, among those within the bottleneck, preferring settings within
    3x of it so that the layers' rates are close (where the streams between them matter most). The knobs (LIMBS,
    SE_SIMD) are folding's choice for the bottleneck (``choose_knobs``; ram_style left out: auto), or, with
    ``random_knobs``, random legal values."""
    import itertools

    import numpy as np
    from qonnx.core.modelwrapper import ModelWrapper

    from instabnn.hw.compile.folding import choose_knobs, divisors
    from instabnn.hw.ops import hw_op

    rng = np.random.default_rng(seed)
    target = int(rng.integers(*cycles, endpoint=True))
    model = ModelWrapper(str(lowered))
    config = {"Defaults": {}}
    for node in model.graph.node:
        op = hw_op(model, node)
        dims = op.fold_options()
        settings = []
        for values in itertools.product(*(divisors(d) for d in dims.values())):
            for attr, v in zip(dims, values):
                op.set_nodeattr(attr, v)
            knobs = choose_knobs(op, target)
            settings.append((op.get_exp_cycles(), {**dict(zip(dims, values)), **knobs}))
        fits = [s for s in settings if s[0] <= target] or [min(settings, key=lambda s: s[0])]
        close = [s for s in fits if 3 * s[0] >= target] or fits
        config[node.name] = close[int(rng.integers(len(close)))][1]
    if random_knobs:
        for node in model.graph.node:
            for knob, legal in hw_op(model, node).knob_options().items():
                config[node.name][knob] = legal[int(rng.integers(len(legal)))]  # an int, or a string
    return config


def check_rate(report: dict, manifest: dict, stall: int = 0) -> None:
    """Bit-exact, tlast right, and measured cycles per frame within 2 % of the analytic bottleneck (with random
    idle / backpressure of probability ``stall`` / 256 at the ends: of the bottleneck slowed by that much)."""
    assert report["mismatches"] == 0 and report["tlast_errors"] == 0, report
    bound = 1.02 * manifest["cycles_per_frame_estimate"] * 256 / (256 - stall)
    assert report["cycles_per_frame"] <= bound, (report["cycles_per_frame"], manifest["cycles_per_frame_estimate"],
                                                 manifest["folding"])
