"""Checkpoints: atomic writes (:mod:`instabnn.outputs`), validated reads, and loading weights into a (possibly
different-stage) network.

A checkpoint is a dict with ``format``, ``config`` (the :class:`NetConfig` as a dict), ``model`` (state dict) and,
for a training checkpoint, ``epoch``, ``optimizer``, ``scheduler``, ``history`` and ``train`` (the run's settings).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path

import torch

from instabnn.model.config import ConfigError, NetConfig
from instabnn.outputs import atomic_write_bytes, atomic_write_text  # noqa: F401  (re-exported for callers)

FORMAT = "instabnn-checkpoint/1"

# Quantizer state that a network may lack and initialises itself from statistics on first use: the LSQ step sizes
# of the SE layers when fine-tuning starts from a real-valued SE (supplementary Sec. B).
SELF_INITIALISING_KEYS = ("weight_quant.tensor_quant.scaling_impl.value",)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit the network; the message names the file."""


def save_checkpoint(path: str | Path, payload: dict) -> None:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt file
        raise CheckpointError(f"checkpoint {path}: unreadable or corrupt ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not an instabnn checkpoint (format {FORMAT!r} expected)")
    for key in ("config", "model"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path}: field {key!r} missing")
    return ckpt


def checkpoint_config(ckpt: dict, path: str | Path = "?") -> NetConfig:
    try:
        return NetConfig.from_dict(ckpt["config"])
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path}: bad network config: {e}") from e


def load_weights(model: torch.nn.Module, state: dict, path: str | Path = "?", allow_self_init: bool = False):
    """Load a state dict, naming the first mismatching parameter on failure.

    ``allow_self_init`` accepts missing quantizer step sizes that initialise from statistics (see above).
    """
    own = model.state_dict()
    for name, tensor in state.items():
        if name in own and own[name].shape != tensor.shape:
            raise CheckpointError(f"checkpoint {path}: parameter {name} has shape {tuple(tensor.shape)}, "
                                  f"the network expects {tuple(own[name].shape)}")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not (allow_self_init and k.endswith(SELF_INITIALISING_KEYS))]
    if missing or result.unexpected_keys:
        detail = []
        if missing:
            detail.append(f"missing {missing[0]}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
        if result.unexpected_keys:
            extra = result.unexpected_keys
            detail.append(f"unexpected {extra[0]}" + (f" (+{len(extra) - 1} more)" if len(extra) > 1 else ""))
        raise CheckpointError(f"checkpoint {path}: does not match the network: {'; '.join(detail)}")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit() -> str:
    """The repository's HEAD commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
