"""Train an INSTA-BNN: ``python -m instabnn.model.train --help`` (also ``instabnn-train``, ``make train``).

Recipes are named presets (supplementary Sec. A, B); every knob of a preset can be overridden on the command line.

    digits       the embedded default: Adam lr 5e-3, cosine, 60 epochs, batch 64, no weight decay
    cifar        Sec. A.1: AdamW lr 3e-3, weight decay 1e-4, cosine, 400 epochs, batch 256
    ablation     Sec. A.2: Adam lr 1e-3 x0.1 at epochs 40/60/80, 5 warm-up epochs, 90 epochs, no weight decay
    se_finetune  Sec. B: 10 epochs, lr 1e-4 with linear decay, no weight decay, 8-bit LSQ SE weights
                 (start from a trained checkpoint with --init)

Two-stage training (ReActNet; the paper's ImageNet recipe): ``--two-stage`` trains stage 1 (binary activations,
real weights) into ``<out>/stage1`` and then stage 2 (both binary, initialised from stage 1) into ``<out>/stage2``;
``--stage 1`` / ``--stage 2 --init ...`` run one stage. ``--teacher CKPT`` adds ReActNet's distribution loss
(KL to the teacher's softmax) with weight ``--distill-weight``.

Every epoch writes ``last.pt`` (atomically), ``metrics.csv``, ``metrics.json`` and ``curve.png``; ``--resume``
continues from ``last.pt`` and ends with the same weights as an uninterrupted run: all randomness of epoch e is drawn
from generators seeded by (seed, e). The run ends with ``model.pt`` (weights and config) and ``result.json``.
An ``--out`` that holds a run is refused unless ``--resume`` (continue it) or ``--overwrite`` (train afresh; the
earlier files are replaced as the new run writes its first epoch). A non-finite loss stops the run naming the epoch
and step, before the update and with ``last.pt`` as it was; Ctrl-C says which checkpoint is kept (exit status 130).
Data-parallel training: ``torchrun --nproc_per_node=K -m instabnn.model.train ...`` (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from instabnn.model.checkpoint import (CheckpointError, checkpoint_config, git_commit, load_checkpoint, load_weights,
                                       save_checkpoint)
from instabnn.model.config import (ACTIVATIONS, ARCHS, BINARIZERS, BLOCK_ORDERS, G_NAMES, STATS_REUSE, VARIANTS,
                                   ConfigError, NetConfig)
from instabnn.model.data import DATASET_ARCH, DATASETS, DataError, check_digits_iv_options, load_splits
from instabnn.model.networks import build_network
from instabnn.outputs import atomic_write_bytes, atomic_write_text


@dataclass
class Recipe:
    optimizer: str = "adam"
    lr: float = 5e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | step | linear | constant
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0
    epochs: int = 60
    batch_size: int = 64


PRESETS = {
    "digits": Recipe(),
    "cifar": Recipe(optimizer="adamw", lr=3e-3, weight_decay=1e-4, schedule="cosine", epochs=400, batch_size=256),
    "ablation": Recipe(optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="step", milestones=(40, 60, 80),
                       gamma=0.1, warmup_epochs=5, epochs=90, batch_size=256),
    "se_finetune": Recipe(optimizer="adam", lr=1e-4, weight_decay=0.0, schedule="linear", epochs=10, batch_size=256),
}
DEFAULT_PRESET = {"digits": "digits", "digits-iv": "digits", "cifar10": "cifar", "imagenet": "ablation"}


class TrainError(RuntimeError):
    """A training request that cannot run; the message names the option or file at fault."""


class TrainInterrupted(TrainError):
    """Ctrl-C during training; the message says which checkpoint is kept."""


# ------------------------------------------------------------------------------------------------ helpers


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise TrainError(f"--device {name!r}: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"--device {name!r}: no CUDA device here")
    return device


class Distributed:
    """torch.distributed set-up from torchrun's environment; a no-op for a single process."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = device
        if self.world > 1:
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group(backend=backend)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            torch.distributed.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def close(self):
        if self.world > 1:
            torch.distributed.destroy_process_group()


def lr_factor(recipe: Recipe, epoch: int) -> float:
    """Learning-rate multiplier of ``epoch`` (0-based): linear warm-up, then the schedule."""
    if epoch < recipe.warmup_epochs:
        return (epoch + 1) / recipe.warmup_epochs
    if recipe.schedule == "cosine":
        span = max(1, recipe.epochs - recipe.warmup_epochs)
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - recipe.warmup_epochs) / span))
    if recipe.schedule == "linear":
        span = max(1, recipe.epochs - recipe.warmup_epochs)
        return 1.0 - (epoch - recipe.warmup_epochs) / span
    if recipe.schedule == "step":
        return recipe.gamma ** sum(epoch >= m for m in recipe.milestones)
    if recipe.schedule == "constant":
        return 1.0
    raise TrainError(f"unknown --schedule {recipe.schedule!r}; choose cosine, step, linear or constant")


def make_optimizer(recipe: Recipe, params) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
    raise TrainError(f"unknown --optimizer {recipe.optimizer!r}; choose adam, adamw or sgd")


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def evaluate(model, loader, device) -> tuple[float, float, int]:
    """(summed loss, number correct, number of images) over a loader, in eval mode."""
    model.eval()
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return loss, correct, n


def plot_curves(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax1.plot(epochs, [h["test_loss"] for h in history], label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    ax2.plot(epochs, [100 * h["train_acc"] for h in history], label="train")
    ax2.plot(epochs, [100 * h["test_acc"] for h in history], label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("top-1 accuracy (%)")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_metrics(out: Path, history: list[dict]) -> None:
    atomic_write_text(out / "metrics.json", json.dumps(history, indent=1))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out / "metrics.csv", buf.getvalue())


# ------------------------------------------------------------------------------------------------ training


@dataclass
class RunSpec:
    """Everything a training run depends on (stored in its checkpoints, compared on --resume)."""

    data: str
    net: dict
    recipe: dict
    seed: int
    data_options: dict = field(default_factory=dict)  # digits-iv: severity, image_size, seed, noise
    teacher: str | None = None
    distill_weight: float = 1.0
    init: str | None = None
    hardware_exact: bool = False
    label: str = ""


def train_run(spec: RunSpec, out: Path, data_dir=None, device_name="auto", workers=0, resume=False,
              stop_after_epoch: int | None = None, progress: bool = True) -> dict:
    """Train one network as described by ``spec`` into ``out``; returns the result dict (also ``result.json``)."""
    recipe = Recipe(**spec.recipe)
    cfg = NetConfig.from_dict(spec.net)
    dist = Distributed(pick_device(device_name))
    device = dist.device
    last = out / "last.pt"
    saved_epochs = None  # the epochs done in last.pt, as far as this run knows

    def kept() -> str:
        if not last.exists():
            return "no checkpoint was written"
        held = f"epoch {saved_epochs}" if saved_epochs is not None else "its last epoch"
        return f"{last} keeps {held} (continue with the same command and --resume)"

    try:
        splits = load_splits(spec.data, data_dir, **spec.data_options)
        cfg = cfg.replace(num_classes=splits.num_classes, in_channels=splits.in_channels,
                          image_size=splits.image_size)
        spec.net = cfg.to_dict()
        torch.manual_seed(spec.seed)
        model = build_network(cfg).to(device)

        start_epoch, history = 0, []
        if resume and last.exists():
            ckpt = load_checkpoint(last)
            saved = ckpt.get("run", {})
            if "net" in saved:  # fields added since the checkpoint was written take their defaults
                saved = {**saved, "net": NetConfig.from_dict(saved["net"]).to_dict()}
            for key in ("data", "data_options", "net", "recipe", "seed", "teacher", "distill_weight", "init",
                        "hardware_exact"):
                if saved.get(key, {"hardware_exact": False, "data_options": {}}.get(key)) \
                        != getattr(spec, key):
                    raise CheckpointError(f"checkpoint {last}: --resume with a different {key} "
                                          f"(checkpoint: {saved.get(key)!r}, now: {getattr(spec, key)!r})")
            load_weights(model, ckpt["model"], last)
            start_epoch, history = ckpt["epoch"] + 1, list(ckpt["history"])
            saved_epochs = start_epoch
        elif spec.init:
            init = load_checkpoint(spec.init)
            load_weights(model, init["model"], spec.init, allow_self_init=True)

        teacher = None
        if spec.teacher:
            tckpt = load_checkpoint(spec.teacher)
            teacher = build_network(checkpoint_config(tckpt, spec.teacher)).to(device)
            load_weights(teacher, tckpt["model"], spec.teacher)
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)

        trainable = model
        if spec.hardware_exact:
            if dist.world > 1:
                raise TrainError("--hardware-exact runs in one process (no data-parallel training)")
            from instabnn.model.hardware_exact import HardwareExact

            trainable = HardwareExact(model)
        if dist.world > 1:
            trainable = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = make_optimizer(recipe, [p for p in model.parameters() if p.requires_grad])
        for group in optimizer.param_groups:
            group["initial_lr"] = recipe.lr
        if resume and last.exists():
            optimizer.load_state_dict(ckpt["optimizer"])

        per_process_batch = max(1, recipe.batch_size // dist.world)
        test_loader = DataLoader(splits.test, batch_size=256, shuffle=False, num_workers=workers)
        # an earlier run's final files (--overwrite, or library callers) go once this run has written an epoch
        stale = [] if resume else [f for f in (out / "model.pt", out / "result.json") if f.exists()]
        if dist.main:
            out.mkdir(parents=True, exist_ok=True)
        title = spec.label or f"{cfg.arch} {cfg.variant} on {spec.data}"
        t_start = time.time()
        if start_epoch >= recipe.epochs and dist.main:
            print(f"[{title}] already trained ({start_epoch} epochs); nothing to do")

        for epoch in range(start_epoch, recipe.epochs):
            if stop_after_epoch is not None and epoch > stop_after_epoch:
                break
            t0 = time.time()
            torch.manual_seed(epoch_seed(spec.seed, epoch) + dist.rank)
            if dist.world > 1:
                sampler = torch.utils.data.DistributedSampler(splits.train, num_replicas=dist.world,
                                                              rank=dist.rank, shuffle=True, seed=spec.seed)
                sampler.set_epoch(epoch)
                loader = DataLoader(splits.train, batch_size=per_process_batch, sampler=sampler,
                                    num_workers=workers, drop_last=True)
            else:
                gen = torch.Generator().manual_seed(epoch_seed(spec.seed, epoch))
                loader = DataLoader(splits.train, batch_size=per_process_batch, shuffle=True, generator=gen,
                                    num_workers=workers, drop_last=True)
            lr = recipe.lr * lr_factor(recipe, epoch)
            if lr > FLOAT32_MAX:
                raise TrainError(f"epoch {epoch + 1}: the schedule's learning rate {lr:g} exceeds float32 (--gamma "
                                 f"{recipe.gamma:g}); stopped, {kept()}")
            for group in optimizer.param_groups:
                group["lr"] = lr
            trainable.train()
            if spec.hardware_exact:
                model.eval()  # statistics frozen at the values the hardware's constants are fixed from
            sums = [0.0, 0.0, 0.0]  # loss * n, correct, n
            bar = loader
            if progress and dist.main:
                from tqdm import tqdm

                bar = tqdm(loader, desc=f"epoch {epoch + 1}/{recipe.epochs}", leave=False, unit="batch",
                           dynamic_ncols=True, disable=None)
            for step, (x, y) in enumerate(bar, 1):
                x, y = x.to(device), y.to(device)
                logits = trainable(x)
                loss = F.cross_entropy(logits, y)
                if teacher is not None:
                    with torch.no_grad():
                        target = F.softmax(teacher(x), dim=1)
                    kd = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
                    loss = spec.distill_weight * kd + (1.0 - spec.distill_weight) * loss
                value = loss.item()
                if not math.isfinite(dist.all_sum([value])[0]):  # every process stops at the same step
                    raise TrainError(f"epoch {epoch + 1}, step {step}: the training loss is not finite (lr {lr:g}); "
                                     f"stopped before the update, {kept()}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sums[0] += value * len(y)
                sums[1] += (logits.argmax(1) == y).sum().item()
                sums[2] += len(y)
            sums = dist.all_sum(sums)
            test_loss, correct, n_test = evaluate(trainable if spec.hardware_exact else model, test_loader, device)
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": sums[0] / sums[2], "train_acc": sums[1] / sums[2],
                   "test_loss": test_loss / n_test, "test_acc": correct / n_test, "seconds": time.time() - t0}
            if not all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()):
                raise TrainError(f"epoch {epoch + 1}: the network's parameters are no longer finite (lr {lr:g}); "
                                 f"stopped, {kept()}")
            history.append(row)
            if dist.main:
                save_checkpoint(last, {"config": cfg.to_dict(), "model": model.state_dict(), "epoch": epoch,
                                       "optimizer": optimizer.state_dict(), "history": history,
                                       "run": asdict(spec), "commit": git_commit()})
                saved_epochs = epoch + 1
                for f in stale:
                    f.unlink(missing_ok=True)
                write_metrics(out, history)
                plot_curves(history, out / "curve.png", title)
                print(f"[{title}] epoch {epoch + 1}/{recipe.epochs}  lr {lr:.2e}  loss {row['train_loss']:.4f}  "
                      f"train {100 * row['train_acc']:.2f}%  test {100 * row['test_acc']:.2f}%  "
                      f"({row['seconds']:.1f}s)", flush=True)
            dist.barrier()

        finished = bool(history) and history[-1]["epoch"] >= recipe.epochs
        result = {"label": title, "data": spec.data, "config": cfg.to_dict(), "recipe": asdict(recipe),
                  "seed": spec.seed, "epochs_done": len(history), "finished": finished,
                  "test_acc": history[-1]["test_acc"] if history else None,
                  "train_seconds_this_run": time.time() - t_start, "world_size": dist.world,
                  "device": str(device), "commit": git_commit(), "out": str(out)}
        if dist.main and finished:
            save_checkpoint(out / "model.pt", {"config": cfg.to_dict(), "model": model.state_dict(),
                                               "history": history, "run": asdict(spec), "commit": git_commit()})
            atomic_write_text(out / "result.json", json.dumps(result, indent=1))
        dist.barrier()
        return result
    except KeyboardInterrupt:
        raise TrainInterrupted(f"interrupted; {kept()}") from None
    finally:
        dist.close()


# ------------------------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="instabnn-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data", default="digits", choices=DATASETS, help="data set (default: digits, embedded)")
    d.add_argument("--data-dir", help="directory of cifar10 (cifar-10-batches-py) or imagenet (train/, val/)")
    d.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    d.add_argument("--severity", type=float, help="digits-iv: perturbation strength, 0 = plain digits (default 1)")
    d.add_argument("--image-size", type=int, help="digits-iv: upsample to 8 (default), 16 or 32 pixels")
    d.add_argument("--noise", type=float, help="digits-iv: pixel noise std per unit severity (default 0)")
    d.add_argument("--perturbation-seed", type=int, help="digits-iv: seed of the perturbations (default --seed)")
    n = p.add_argument_group("network (see NetConfig)")
    n.add_argument("--arch", help=f"one of {', '.join(ARCHS)} (default: the data set's)")
    n.add_argument("--variant", default="insta", help=f"one of {', '.join(VARIANTS)} (a preset of the two below)")
    n.add_argument("--binarizer", help=f"overrides the variant's: {', '.join(BINARIZERS)}")
    n.add_argument("--activation", help=f"overrides the variant's: {', '.join(ACTIVATIONS)}")
    n.add_argument("--first-insta-stage", type=int)
    n.add_argument("--stats-reuse", default="none", help=f"one of {', '.join(STATS_REUSE)}")
    n.add_argument("--g", default="tanh3", help=f"INSTA-PReLU / SE nonlinearity: {', '.join(G_NAMES)}")
    n.add_argument("--g-se", help="the SE's nonlinearity in INSTA-Th+ where it differs from --g")
    n.add_argument("--baseline-threshold", default="rsign", help="binarizer of non-INSTA stages: rsign | sign")
    n.add_argument("--se-reduction", type=int, default=4)
    n.add_argument("--se-weight-bits", type=int, choices=[8], help="8: LSQ SE weights (default: real)")
    n.add_argument("--residual-bits", type=int, default=8, help="residual-stream bits (0: real-valued)")
    n.add_argument("--act-gradient", default="ste", help="ste | approxsign")
    n.add_argument("--shortcut", default="B", help="B | A (resnet20 only)")
    n.add_argument("--block-order", default="bireal", help=f"one of {', '.join(BLOCK_ORDERS)}")
    n.add_argument("--no-bn-affine", action="store_true", help="bn_sign_conv baseline: BN without gamma, beta")
    n.add_argument("--real-valued", action="store_true", help="real weights and activations (e.g. a teacher)")
    n.add_argument("--real-valued-layers", action="store_true",
                   help="first conv, classifier and 1x1 shortcuts real-valued, image unquantized (Sec. A.2: only "
                        "1- and 32-bit; with --residual-bits 0); not accepted by the hardware flow")
    r = p.add_argument_group("recipe (a preset, each knob overridable)")
    r.add_argument("--preset", choices=sorted(PRESETS), help="default: digits / cifar / ablation by data set")
    for f in fields(Recipe):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "milestones":
            r.add_argument(flag, type=lambda s: tuple(int(v) for v in s.split(",") if v), help="e.g. 40,60,80")
        else:
            r.add_argument(flag, type=type(f.default))
    t = p.add_argument_group("stages, initialisation, distillation")
    t.add_argument("--stage", choices=["1", "2", "full"], default="full",
                   help="1: binary activations, real weights; 2 / full: both binary")
    t.add_argument("--two-stage", action="store_true", help="stage 1 then stage 2 into <out>/stage1, <out>/stage2")
    t.add_argument("--init", help="initialise weights from this checkpoint (stage 2, SE fine-tuning)")
    t.add_argument("--teacher", help="distil from this checkpoint's network (ReActNet distribution loss)")
    t.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation loss (0..1)")
    t.add_argument("--hardware-exact", action="store_true",
                   help="fine-tune in hardware-exact mode: forward values are the accelerator's integers "
                        "(docs/arithmetic.md), gradients straight through, BN / INSTA statistics frozen; test "
                        "accuracy is the hardware's (start from a trained checkpoint with --init)")
    o = p.add_argument_group("run")
    o.add_argument("--out", default="runs/digits-insta", help="output directory")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--device", default="auto", help="auto (GPU where present) | cpu | cuda[:k]")
    o.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    o.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    o.add_argument("--overwrite", action="store_true",
                   help="train afresh into an --out that holds a run (replaced as the new run writes its epochs)")
    o.add_argument("--stop-after-epoch", type=int, help=argparse.SUPPRESS)  # simulates an interruption (tests)
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


RUN_FILES = ("last.pt", "model.pt", "result.json", "metrics.csv", "metrics.json", "curve.png")
FLOAT32_MAX = float(torch.finfo(torch.float32).max)  # the optimizers compute in float32
NUMBER_RULES = {  # option: (holds, what it must be)
    "lr": (lambda v: 0 < v <= FLOAT32_MAX, "a finite number > 0 (float32)"),
    "weight_decay": (lambda v: 0 <= v <= FLOAT32_MAX, "a finite number >= 0 (float32)"),
    "gamma": (lambda v: 0 < v <= FLOAT32_MAX, "a finite number > 0 (float32)"),
    "epochs": (lambda v: v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "warmup_epochs": (lambda v: v >= 0, "an integer >= 0"),
    "milestones": (lambda v: all(m >= 1 for m in v), "epochs >= 1"),
    "distill_weight": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "workers": (lambda v: v >= 0, "an integer >= 0"),
    "threads": (lambda v: v >= 0, "an integer >= 0"),
}


def check_numbers(recipe: Recipe, args) -> None:
    """TrainError naming the first option whose value is out of range or not finite (inf, nan)."""
    for name, (holds, what) in NUMBER_RULES.items():
        value = getattr(recipe, name) if hasattr(recipe, name) else getattr(args, name)
        values = value if isinstance(value, tuple) else (value,)
        if not (all(math.isfinite(v) for v in values) and holds(value)):
            shown = ",".join(map(str, values)) if isinstance(value, tuple) else value
            raise TrainError(f"--{name.replace('_', '-')} {shown}: must be {what}")


def claim_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to train into a folder that holds a run, unless ``resume`` (and it has last.pt to continue from) or
    ``overwrite`` (the new run's epochs replace it; its model.pt and result.json go with the first epoch written)."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out}: is a file, not a folder")
    found = [f for f in RUN_FILES if (out / f).exists()]
    if found and not overwrite and not (resume and "last.pt" in found):
        raise TrainError(f"--out {out} already holds a training run ({', '.join(found)}): --resume continues it "
                         f"from last.pt{'' if 'last.pt' in found else ' (it has none)'}, --overwrite replaces it")


def spec_from_args(args) -> RunSpec:
    arch = args.arch or DATASET_ARCH[args.data]
    preset = args.preset or DEFAULT_PRESET[args.data]
    recipe = Recipe(**asdict(PRESETS[preset]))
    for f in fields(Recipe):
        value = getattr(args, f.name)
        if value is not None:
            setattr(recipe, f.name, value)
    check_numbers(recipe, args)
    lr_factor(recipe, 0)  # validates the schedule name
    make_optimizer(recipe, [torch.nn.Parameter(torch.zeros(1))])  # validates the optimizer name
    se_bits = args.se_weight_bits if args.se_weight_bits is not None else (8 if preset == "se_finetune" else None)
    if preset == "se_finetune" and not args.init and not args.resume:
        raise TrainError("preset se_finetune fine-tunes a trained network: give its checkpoint with --init")
    net = dict(arch=arch, variant=args.variant, binarizer=args.binarizer, activation=args.activation,
               first_insta_stage=args.first_insta_stage,
               stats_reuse=args.stats_reuse, g=args.g, g_se=args.g_se, baseline_threshold=args.baseline_threshold,
               se_reduction=args.se_reduction, se_weight_bits=se_bits,
               residual_bits=args.residual_bits or None, act_gradient=args.act_gradient, shortcut=args.shortcut,
               block_order=args.block_order, bn_affine=not args.no_bn_affine,
               real_valued_layers=args.real_valued_layers,
               binary_weights=not args.real_valued and args.stage != "1", binary_acts=not args.real_valued)
    if args.init:
        # fine-tuning / stage 2 continues the checkpoint's network; only the stage and the SE precision change
        init_cfg = checkpoint_config(load_checkpoint(args.init), args.init).to_dict()
        if args.arch and args.arch != init_cfg["arch"]:
            raise TrainError(f"--init {args.init}: its network is {init_cfg['arch']!r}, not --arch {args.arch!r}")
        net = {**init_cfg, "binary_weights": net["binary_weights"],
               "se_weight_bits": se_bits if se_bits is not None else init_cfg["se_weight_bits"]}
    NetConfig.from_dict(net)  # validates
    return RunSpec(data=args.data, net=net, recipe=asdict(recipe), seed=args.seed, teacher=args.teacher,
                   distill_weight=args.distill_weight, init=args.init, hardware_exact=args.hardware_exact,
                   data_options=data_options_from_args(args))


def data_options_from_args(args) -> dict:
    """digits-iv's options (validated); an error if one is given for another data set."""
    given = {k: getattr(args, k) for k in ("severity", "image_size", "noise", "perturbation_seed")
             if getattr(args, k) is not None}
    if args.data != "digits-iv":
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise TrainError(f"{flags}: apply to --data digits-iv only, not --data {args.data}")
        return {}
    options = {"severity": given.get("severity", 1.0), "image_size": given.get("image_size", 8),
               "noise": given.get("noise", 0.0), "seed": given.get("perturbation_seed", args.seed)}
    check_digits_iv_options(**options)
    return options


def run_from_args(args) -> dict:
    out = Path(args.out)
    common = dict(data_dir=args.data_dir, device_name=args.device, workers=args.workers, resume=args.resume,
                  stop_after_epoch=args.stop_after_epoch, progress=not args.no_progress)
    if args.resume and args.overwrite:
        raise TrainError("--resume continues the run in --out, --overwrite replaces it: give one of them")
    if not args.two_stage:
        spec = spec_from_args(args)
        claim_run_folder(out, args.resume, args.overwrite)
        return train_run(spec, out, **common)
    if args.stage != "full" or args.init:
        raise TrainError("--two-stage runs both stages itself: drop --stage / --init")
    args.stage = "1"
    stage1 = spec_from_args(args)
    for folder in (out / "stage1", out / "stage2"):
        claim_run_folder(folder, args.resume, args.overwrite)
    stage1.label = "stage 1 (binary activations, real weights)"
    res1 = train_run(stage1, out / "stage1", **common)
    if not res1["finished"]:
        return res1
    args.stage, args.init = "2", str(out / "stage1" / "model.pt")
    stage2 = spec_from_args(args)
    stage2.label = "stage 2 (binary weights and activations)"
    return train_run(stage2, out / "stage2", **common)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        result = run_from_args(args)
    except (TrainInterrupted, KeyboardInterrupt) as e:
        print(f"instabnn-train: {str(e) or 'interrupted before training started'}", file=sys.stderr)
        return 130
    except (TrainError, ConfigError, CheckpointError, DataError) as e:
        print(f"instabnn-train: error: {e}", file=sys.stderr)
        return 2
    if result.get("finished") and int(os.environ.get("RANK", "0")) == 0:
        print(f"done: test accuracy {100 * result['test_acc']:.2f}% -> {result['out']}/model.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
