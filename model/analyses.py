"""Analyses of the supplementary material, Sec. E-I: ``python -m instabnn.model.analyses <subcommand> --help``.

    correlation        Sec. E  E[x~^3] of each INSTA-Th vs the following INSTA-PReLU (and of each INSTA-PReLU vs the
                               next block's INSTA-Th) over training images, Pearson r per pair (Fig. 2)
    nonlinearity       Sec. F  g in sigmoid / tanh / 3 tanh(x/3) for INSTA-PReLU and for the SE of INSTA-Th+ (Table 1)
    ordering           Sec. G  the BN-sign-conv block order: BN, BN without gamma/beta, INSTA-Th in its place (Table 2)
    inconsistent-sign  Sec. H  per binary conv, the fraction of outputs with sign(W_r * A_r) != sign(W_b * A_b) (Fig. 3)
    tsne               Sec. I  t-SNE of the features feeding the classifier, half of the test split (Fig. 4)

Every subcommand writes ``<out>/<subcommand>.png``, ``.csv`` and ``.json`` (the ablations also ``.md``), each
atomically; the ablations train each variant with ``train.train_run`` into ``<out>/<subcommand>-runs/<key>/`` and
skip variants whose run already finished with the same settings (a rerun resumes an interrupted one).
The definitions (what exactly is measured) are in ``docs/analyses.md``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from instabnn.model import modules as M
from instabnn.model import onnx_ops
from instabnn.model.checkpoint import (CheckpointError, atomic_write_bytes, atomic_write_text, checkpoint_config,
                                       git_commit, load_checkpoint, load_weights)
from instabnn.model.config import ARCHS, G_NAMES, ConfigError, NetConfig
from instabnn.model.data import DATASET_ARCH, DATASETS, DataError, load_splits
from instabnn.model.networks import BinaryConvBlock, DuplicatedPointwiseBlock, build_network
from instabnn.model.train import DEFAULT_PRESET, PRESETS, RunSpec, TrainError, pick_device, train_run

PROG = "instabnn-analyses"
ARCH_DATA = {"digits": "digits", "resnet20": "cifar10", "reactnet18": "imagenet", "reactnet_a": "imagenet"}


class AnalysisError(RuntimeError):
    """An analysis that cannot run on the given input; the message names the file or option at fault."""


# ----------------------------------------------------------------------------------------------- common helpers


def _progress(iterable, progress: bool, **kwargs):
    if not progress:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, leave=False, dynamic_ncols=True, disable=None, **kwargs)


def write_png(fig, path: Path, dpi: int = 110) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames or list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pearson(a, b) -> float:
    """Pearson correlation of two 1-D samples (``numpy.corrcoef``); NaN where either is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or a.std() == 0.0 or b.std() == 0.0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


@dataclass
class LoadedModel:
    label: str
    path: Path
    model: torch.nn.Module
    cfg: NetConfig
    data: str
    data_options: dict


def load_model(path, label: str = "", data: str | None = None, device: torch.device | None = None) -> LoadedModel:
    """A trained network in eval mode, with the data set it was trained on (``data`` overrides)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, path)
    model = build_network(cfg)
    load_weights(model, ckpt["model"], path)
    model.eval()
    if device is not None:
        model.to(device)
    run = ckpt.get("run") or {}
    options = run.get("data_options") or {} if data is None or data == run.get("data") else {}
    if data is None:
        data = run.get("data") or ARCH_DATA[cfg.arch]
    return LoadedModel(label or path.parent.name or path.stem, path, model, cfg, data, options)


def parse_labelled(values: list[str]) -> list[tuple[str, str]]:
    """``LABEL=PATH`` (or a bare PATH, labelled by its folder) -> [(label, path)], labels unique."""
    out = []
    for v in values:
        label, sep, path = v.partition("=")
        if not sep:
            label, path = "", v
        if sep and (not label or not path):
            raise AnalysisError(f"--checkpoint {v!r}: expected LABEL=PATH")
        label = label or Path(path).parent.name or Path(path).stem
        if label in [o[0] for o in out]:
            raise AnalysisError(f"--checkpoint: label {label!r} given twice (use LABEL=PATH to name them)")
        out.append((label, path))
    return out


def load_data(loaded: list[LoadedModel], data: str | None, data_dir, augment: bool = False):
    """The one data set all ``loaded`` models were trained on (or ``data``), shape-checked against each model."""
    names = {(m.data, json.dumps(m.data_options, sort_keys=True)) for m in loaded}
    if data is None and len(names) > 1:
        raise AnalysisError(f"the checkpoints were trained on different data sets "
                            f"({', '.join(sorted(' '.join(n) for n in names))}); pick one with --data")
    name, options = (data, loaded[0].data_options) if data else names.pop()
    options = json.loads(options) if isinstance(options, str) else options
    splits = load_splits(name, data_dir, augment=augment, **options)
    for m in loaded:
        want = (splits.in_channels, splits.image_size, splits.image_size)
        if tuple(m.model.input_shape) != want:
            raise AnalysisError(f"checkpoint {m.path}: the network takes input {tuple(m.model.input_shape)}, "
                                f"but {name} images are {want}")
    return splits


def _batches(dataset, indices, batch_size: int, progress: bool, desc: str):
    subset = Subset(dataset, list(indices)) if indices is not None else dataset
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False)
    return _progress(loader, progress, desc=desc, unit="batch")


def _subset(n_total: int, n: int | None, seed: int) -> list[int]:
    """``n`` indices of ``range(n_total)`` drawn with ``seed`` (all of them for None), in increasing order."""
    if n is None or n >= n_total:
        return list(range(n_total))
    if n < 1:
        raise AnalysisError(f"--n {n}: must be >= 1")
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n]
    return sorted(perm.tolist())


# ----------------------------------------------------------------------------------------------- Sec. E correlation

THRESHOLD_KINDS = {M.InstaTh: "INSTA-Th", M.InstaThPlus: "INSTA-Th+"}
ACTIVATION_KINDS = {M.InstaPReLU: "INSTA-PReLU", M.InstaPReLUPlus: "INSTA-PReLU+"}


def insta_sequence(model) -> list[dict]:
    """The INSTA modules that compute s, in network order: INSTA-Th(+) then INSTA-PReLU(+) per block."""
    seq = []
    for idx, block in enumerate(model.blocks):
        for attr in ("threshold", "act"):
            mod = getattr(block, attr, None)
            kind = THRESHOLD_KINDS.get(type(mod)) or ACTIVATION_KINDS.get(type(mod))
            if kind:
                seq.append({"block_index": idx, "block": block.name, "module": f"blocks.{idx}.{attr}",
                            "role": "th" if attr == "threshold" else "prelu", "kind": kind, "mod": mod,
                            "channels": mod.stats.channels})
    return seq


def own_statistic(mod, x: torch.Tensor) -> torch.Tensor:
    """s = mean_{h,w} ((x - mu) / sigma)^3 of an INSTA module's own input, with its inference statistics.

    For INSTA-Th this is the s its forward computes. For an INSTA-PReLU that reuses the INSTA-Th statistic
    (``stats_reuse``) it is the statistic it would compute itself - the quantity Fig. 2 compares to decide reuse.
    """
    mean, sigma = mod.stats.mean_sigma(x)
    return onnx_ops.insta_statistic(x, mean, sigma)


def adjacent_pairs(seq: list[dict]) -> list[tuple[dict, dict]]:
    """(INSTA-Th, INSTA-PReLU) of the same block and (INSTA-PReLU, INSTA-Th) of adjacent blocks."""
    pairs = []
    for a, b in zip(seq, seq[1:]):
        if a["role"] == "th" and b["role"] == "prelu" and a["block_index"] == b["block_index"]:
            pairs.append((a, b))
        elif a["role"] == "prelu" and b["role"] == "th" and b["block_index"] == a["block_index"] + 1:
            pairs.append((a, b))
    return pairs


def collect_statistics(model, dataset, indices, batch_size=256, progress=True) -> dict[str, np.ndarray]:
    """module path -> s (n_images, C) for every INSTA module of ``model`` (eval mode), via forward pre-hooks."""
    seq = insta_sequence(model)
    store = {e["module"]: [] for e in seq}
    handles = []
    for e in seq:
        def hook(mod, args, key=e["module"]):
            store[key].append(own_statistic(mod, args[0])[:, :, 0, 0].detach().cpu().double().numpy())
        handles.append(e["mod"].register_forward_pre_hook(hook))
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for x, _ in _batches(dataset, indices, batch_size, progress, "statistics"):
                model(x.to(device))
    finally:
        for h in handles:
            h.remove()
    return {k: np.concatenate(v) for k, v in store.items()}


def run_correlation(checkpoint, out: Path, channel: int = 0, n: int = 256, seed: int = 0, data=None,
                    data_dir=None, batch_size=256, device="cpu", progress=True) -> dict:
    lm = load_model(checkpoint, data=data, device=pick_device(device))
    seq = insta_sequence(lm.model)
    if not any(e["role"] == "th" for e in seq) or not any(e["role"] == "prelu" for e in seq):
        have = "no INSTA modules" if not seq else f"only {seq[0]['kind']} modules"
        raise AnalysisError(f"checkpoint {lm.path}: correlation needs INSTA-Th and INSTA-PReLU modules, but this "
                            f"network (variant={lm.cfg.variant}, block_order={lm.cfg.block_order}) has {have}")
    pairs = adjacent_pairs(seq)
    if not pairs:
        raise AnalysisError(f"checkpoint {lm.path}: no adjacent INSTA-Th / INSTA-PReLU pair")
    limit = min(min(a["channels"], b["channels"]) for a, b in pairs)
    if not 0 <= channel < limit:
        raise AnalysisError(f"--channel {channel}: must lie in 0..{limit - 1} (the narrowest INSTA module of "
                            f"{lm.path} has {limit} channels)")
    splits = load_data([lm], data, data_dir, augment=False)
    indices = _subset(len(splits.train), n, seed)
    torch.manual_seed(seed)  # an ImageFolder training split crops at random even without augmentation
    stats = collect_statistics(lm.model, splits.train, indices, batch_size, progress)

    rows, panels = [], []
    for i, (a, b) in enumerate(pairs):
        xa, xb = stats[a["module"]], stats[b["module"]]
        common = min(xa.shape[1], xb.shape[1])
        per_channel = [pearson(xa[:, c], xb[:, c]) for c in range(common)]
        finite = [r for r in per_channel if not math.isnan(r)]
        kind = "th_to_prelu" if a["role"] == "th" else "prelu_to_next_th"
        rows.append({"pair": i, "kind": kind, "from_block": a["block"], "from_module": a["module"],
                     "from_kind": a["kind"], "to_block": b["block"], "to_module": b["module"], "to_kind": b["kind"],
                     "channel": channel, "n": len(xa), "pearson_r": per_channel[channel],
                     "mean_r_all_channels": float(np.mean(finite)) if finite else float("nan"),
                     "from_channels": a["channels"], "to_channels": b["channels"]})
        panels.append((a, b, xa[:, channel], xb[:, channel], per_channel[channel]))

    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "correlation.csv", rows)
    _plot_correlation(panels, out / "correlation.png", f"{lm.label}: E[x~^3] of adjacent INSTA modules, channel "
                                                       f"{channel}, {len(indices)} {splits.name} training images")
    summary = {"analysis": "correlation (supplementary Sec. E, Fig. 2)", "checkpoint": str(lm.path),
               "config": lm.cfg.to_dict(), "data": splits.name, "split": "train (no augmentation)",
               "n_images": len(indices), "subset_seed": seed, "image_indices": indices, "channel": channel,
               "pairs": rows,
               "mean_r": {k: _nanmean([r["pearson_r"] for r in rows if r["kind"] == k])
                          for k in ("th_to_prelu", "prelu_to_next_th")},
               "commit": git_commit()}
    write_json(out / "correlation.json", summary)
    return summary


def _nanmean(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _plot_correlation(panels, path: Path, title: str) -> None:
    plt = _pyplot()
    first = [p for p in panels if p[0]["role"] == "th"]
    second = [p for p in panels if p[0]["role"] == "prelu"]
    ncols = max(1, min(6, max(len(first), len(second))))
    rows_a, rows_b = math.ceil(len(first) / ncols), math.ceil(len(second) / ncols)
    nrows = max(1, rows_a + rows_b)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 3.0 * nrows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    letters = "abcdefghijklmnopqrstuvwxyz"
    k = 0
    for group, row0, colour in ((first, 0, "tab:blue"), (second, rows_a, "tab:orange")):
        for j, (a, b, xa, xb, r) in enumerate(group):
            ax = axes[row0 + j // ncols][j % ncols]
            ax.set_visible(True)
            ax.scatter(xa, xb, s=6, alpha=0.6, color=colour)
            tag = f"({letters[k % 26]}) " if k < 26 else ""
            k += 1
            where = a["block"] if a["block"] == b["block"] else f"{a['block']} -> {b['block']}"
            if a["channels"] != b["channels"]:  # channel c is then not the same feature on both sides
                where += f" ({a['channels']}->{b['channels']} ch)"
            ax.set_title(f"{tag}r = {r:.3f}\n{where}", fontsize=8 if len(where) < 30 else 6.5)
            ax.set_xlabel(f"E[x~^3] {a['kind']}", fontsize=8)
            ax.set_ylabel(f"E[x~^3] {b['kind']}", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    write_png(fig, path)


# ----------------------------------------------------------------------------------------------- Sec. H inconsistent sign


def _sign(t: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1, as the project's binarizers."""
    return torch.where(t >= 0, torch.ones_like(t), -torch.ones_like(t))


def inconsistent_sign_counts(a_real: torch.Tensor, w_real: torch.Tensor, b_in: torch.Tensor, w_bin: torch.Tensor,
                             stride, pad: int, dilation=1, groups: int = 1) -> tuple[int, int]:
    """(number of output elements whose signs differ, number of output elements) of one binary convolution.

    a_real  the real-valued activation A_r (N, C, H, W), unpadded; padded here with -1 like the binary input
    w_real  the latent real weights W_r
    b_in    the binary input A_b as the layer receives it (already padded with -1)
    w_bin   the layer's binary weights W_b = sign(W_r) * a_o (a_o > 0, per output channel)
    The binary product is computed on the +-1 integers and multiplied by a_o afterwards, so that an exact zero
    (an even fan-in can give one) stays zero and counts as +1; a_o > 0 never changes a sign.
    """
    real = F.conv2d(onnx_ops.pad_spatial(a_real, pad, -1.0) if pad else a_real, w_real, stride=stride,
                    dilation=dilation, groups=groups)
    scale = w_bin.abs().amax(dim=tuple(range(1, w_bin.dim())), keepdim=True)
    if (scale <= 0).any():
        raise AnalysisError("binary weights with a zero scale: the sign of the binary product is undefined")
    binary = F.conv2d(_sign(b_in), _sign(w_bin), stride=stride, dilation=dilation, groups=groups)
    binary = binary * scale.view(1, -1, 1, 1)
    mismatch = (_sign(real) != _sign(binary)).sum().item()
    return int(mismatch), int(real.numel())


def binary_conv_layers(model) -> list[dict]:
    """Every binary convolution with the block that feeds it: name, conv module, block, spatial pad."""
    layers = []
    for idx, block in enumerate(model.blocks):
        if isinstance(block, BinaryConvBlock):
            layers.append({"layer": block.name, "module": f"blocks.{idx}.conv", "conv": block.conv,
                           "block": block, "pad": block.pad})
        elif isinstance(block, DuplicatedPointwiseBlock):
            for half in ("a", "b"):
                layers.append({"layer": f"{block.name}.{half}", "module": f"blocks.{idx}.conv_{half}",
                               "conv": getattr(block, f"conv_{half}"), "block": block, "pad": 0})
    return layers


def collect_inconsistent_sign(lm: LoadedModel, dataset, indices, real_input="binarizer", batch_size=256,
                              progress=True) -> list[dict]:
    """Per binary conv of ``lm``: mismatches / outputs over the images, captured with forward pre-hooks."""
    cfg = lm.cfg
    if not (cfg.binary_acts and cfg.binary_weights):
        raise AnalysisError(f"checkpoint {lm.path}: inconsistent-sign needs binary weights and activations "
                            f"(binary_weights={cfg.binary_weights}, binary_acts={cfg.binary_acts})")
    layers = binary_conv_layers(lm.model)
    if not layers:
        raise AnalysisError(f"checkpoint {lm.path}: no binary convolution found")
    counts = {e["layer"]: [0, 0] for e in layers}
    real_acts: dict[int, torch.Tensor] = {}
    handles = []
    blocks = {id(e["block"]): e["block"] for e in layers}
    for block in blocks.values():
        # A_r: the binarizer's input x - T (default) or the block input x before the threshold module
        target = block.binarize if real_input == "binarizer" else block.threshold

        def keep(mod, args, key=id(block)):
            real_acts[key] = args[0].detach()
        handles.append(target.register_forward_pre_hook(keep))
    for e in layers:
        def measure(mod, args, e=e):
            w_bin = mod.quant_weight().value.detach()
            m, t = inconsistent_sign_counts(real_acts[id(e["block"])], mod.weight.detach(), args[0].detach(), w_bin,
                                            mod.stride, e["pad"], mod.dilation, mod.groups)
            counts[e["layer"]][0] += m
            counts[e["layer"]][1] += t
        handles.append(e["conv"].register_forward_pre_hook(measure))
    device = next(lm.model.parameters()).device
    try:
        with torch.no_grad():
            for x, _ in _batches(dataset, indices, batch_size, progress, f"inconsistent sign ({lm.label})"):
                lm.model(x.to(device))
                real_acts.clear()
    finally:
        for h in handles:
            h.remove()
    return [{"layer": e["layer"], "module": e["module"], "model": lm.label, "ratio": counts[e["layer"]][0] /
             counts[e["layer"]][1], "mismatches": counts[e["layer"]][0], "outputs": counts[e["layer"]][1]}
            for e in layers]


def run_inconsistent_sign(checkpoints: list[tuple[str, str]], out: Path, n=None, seed=0, real_input="binarizer",
                          data=None, data_dir=None, batch_size=256, device="cpu", progress=True) -> dict:
    dev = pick_device(device)
    loaded = [load_model(path, label, data, dev) for label, path in checkpoints]
    splits = load_data(loaded, data, data_dir, augment=False)
    indices = _subset(len(splits.test), n, seed)
    rows, per_model = [], {}
    for lm in loaded:
        r = collect_inconsistent_sign(lm, splits.test, indices, real_input, batch_size, progress)
        per_model[lm.label] = r
        rows += r
    names = [r["layer"] for r in per_model[loaded[0].label]]
    for lm in loaded[1:]:
        if [r["layer"] for r in per_model[lm.label]] != names:
            raise AnalysisError(f"checkpoint {lm.path}: its binary layers differ from those of "
                                f"{loaded[0].path}; compare networks of the same architecture")
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "inconsistent_sign.csv", [{k: r[k] for k in ("layer", "model", "ratio", "mismatches",
                                                                 "outputs", "module")} for r in rows])
    _plot_grouped_bars(names, {label: [r["ratio"] for r in rs] for label, rs in per_model.items()},
                       out / "inconsistent_sign.png", ylabel="inconsistent sign ratio",
                       title=f"sign(W_r*A_r) != sign(W_b*A_b): {len(indices)} {splits.name} test images")
    summary = {"analysis": "inconsistent sign ratio (supplementary Sec. H, Fig. 3)", "data": splits.name,
               "split": "test", "n_images": len(indices), "real_input": real_input,
               "image_indices": indices if n is not None else "all",
               "models": {lm.label: {"checkpoint": str(lm.path), "config": lm.cfg.to_dict(),
                                     "mean_ratio": float(np.mean([r["ratio"] for r in per_model[lm.label]])),
                                     "overall_ratio": sum(r["mismatches"] for r in per_model[lm.label]) /
                                     sum(r["outputs"] for r in per_model[lm.label])} for lm in loaded},
               "rows": rows, "commit": git_commit()}
    write_json(out / "inconsistent_sign.json", summary)
    return summary


def _plot_grouped_bars(categories: list[str], series: dict[str, list[float]], path: Path, ylabel: str, title: str,
                       percent: bool = False) -> None:
    plt = _pyplot()
    k = max(1, len(series))
    width = 0.8 / k
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(categories) * k + 2.0), 4.2))
    xs = np.arange(len(categories))
    for i, (label, values) in enumerate(series.items()):
        vals = [np.nan if v is None else v for v in values]
        bars = ax.bar(xs + (i - (k - 1) / 2) * width, vals, width, label=label)
        if len(categories) * k <= 24:
            ax.bar_label(bars, fmt="%.1f" if percent else "%.3f", fontsize=7, padding=1)
    ax.set_xticks(xs)
    if len(categories) > 4:
        ax.set_xticklabels(categories, rotation=30, ha="right", fontsize=8)
    else:
        ax.set_xticklabels([textwrap.fill(c, 18) for c in categories], fontsize=8)
    top = max([v for vs in series.values() for v in vs if v is not None and not math.isnan(v)], default=1.0)
    ax.set_ylim(0, 1.22 * top if top > 0 else 1.0)  # head room for the legend and the bar labels
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if k > 1:
        ax.legend(fontsize=8, loc="upper center", ncol=min(k, 4))
    fig.tight_layout()
    write_png(fig, path)


# ----------------------------------------------------------------------------------------------- Sec. I t-SNE


def collect_features(model, dataset, indices, batch_size=256, progress=True, desc="features") -> np.ndarray:
    """The vectors entering the classifier (global-average-pooled features), via a forward pre-hook on it."""
    feats = []
    handle = model.classifier.register_forward_pre_hook(
        lambda mod, args: feats.append(args[0].detach().cpu().double().numpy()))
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for x, _ in _batches(dataset, indices, batch_size, progress, desc):
                model(x.to(device))
    finally:
        handle.remove()
    return np.concatenate(feats)


def stratified_half(labels: np.ndarray, fraction: float, seed: int) -> list[int]:
    """floor(fraction * count) indices per class (at least 1), drawn with ``seed``, in increasing order."""
    if not 0.0 < fraction <= 1.0:
        raise AnalysisError(f"--fraction {fraction}: must lie in (0, 1]")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        chosen += rng.permutation(idx)[:max(1, int(fraction * len(idx)))].tolist()
    return sorted(chosen)


def tsne_embedding(features: np.ndarray, seed: int, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE with a fixed random_state; one OpenMP thread, so that the result does not depend on the machine's
    thread count (the Barnes-Hut gradient sums across threads in a varying order)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = min(perplexity, (len(features) - 1) / 3.0)
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed,
                    method="barnes_hut").fit_transform(features)


def run_tsne(checkpoints: list[tuple[str, str]], out: Path, fraction=0.5, seed=0, perplexity=30.0, data=None,
             data_dir=None, batch_size=256, device="cpu", progress=True) -> dict:
    from sklearn.metrics import silhouette_score

    dev = pick_device(device)
    loaded = [load_model(path, label, data, dev) for label, path in checkpoints]
    splits = load_data(loaded, data, data_dir, augment=False)
    labels_all = np.asarray([int(splits.test[i][1]) for i in range(len(splits.test))])
    indices = stratified_half(labels_all, fraction, seed)
    if len(indices) < 5:
        raise AnalysisError(f"t-SNE needs at least 5 images; --fraction {fraction} selects {len(indices)}")
    labels = labels_all[indices]
    rows, models = [], {}
    embeddings = {}
    for lm in _progress(loaded, progress, desc="t-SNE", unit="model"):
        feats = collect_features(lm.model, splits.test, indices, batch_size, False)
        emb = tsne_embedding(feats, seed, perplexity)
        embeddings[lm.label] = emb
        multi = len(np.unique(labels)) > 1
        models[lm.label] = {"checkpoint": str(lm.path), "config": lm.cfg.to_dict(), "feature_dim": feats.shape[1],
                            "silhouette_features": float(silhouette_score(feats, labels)) if multi else None,
                            "silhouette_tsne": float(silhouette_score(emb, labels)) if multi else None}
        for i, (x, y) in zip(indices, emb):
            c = int(labels_all[i])
            rows.append({"model": lm.label, "index": i, "label": c, "class": splits.class_names[c],
                         "x": float(x), "y": float(y)})
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "tsne.csv", rows)
    _plot_tsne(embeddings, labels, splits.class_names, models, out / "tsne.png",
               f"t-SNE of the features before the classifier: {len(indices)} {splits.name} test images")
    summary = {"analysis": "t-SNE (supplementary Sec. I, Fig. 4)", "data": splits.name, "split": "test",
               "fraction": fraction, "n_images": len(indices), "seed": seed, "perplexity": perplexity,
               "models": models, "commit": git_commit()}
    write_json(out / "tsne.json", summary)
    return summary


def _plot_tsne(embeddings, labels, class_names, models, path: Path, title: str) -> None:
    plt = _pyplot()
    k = len(embeddings)
    ncols = min(k, 3)
    nrows = math.ceil(k / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.4 * nrows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for j, (label, emb) in enumerate(embeddings.items()):
        ax = axes[j // ncols][j % ncols]
        ax.set_visible(True)
        for c in np.unique(labels):
            sel = labels == c
            ax.scatter(emb[sel, 0], emb[sel, 1], s=5, color=cmap(int(c) % cmap.N), label=class_names[int(c)])
        sil = models[label]["silhouette_tsne"]
        ax.set_title(f"({'abcdefghijklmnopqrstuvwxyz'[j % 26]}) {label}" +
                     (f"  silhouette {sil:.2f}" if sil is not None else ""), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes[0][0].get_legend_handles_labels()
    if len(names) <= 20:
        fig.legend(handles, names, loc="lower center", ncol=min(10, len(names)), fontsize=7, markerscale=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    write_png(fig, path)


# ----------------------------------------------------------------------------------------------- ablation runner


@dataclass
class Ablation:
    key: str  # sub-folder name
    net: dict  # NetConfig fields on top of the architecture
    label: str


def resolve_recipe(data: str, preset: str | None, epochs: int | None) -> tuple[str, dict]:
    preset = preset or DEFAULT_PRESET[data]
    if preset not in PRESETS:
        raise AnalysisError(f"--preset {preset!r}: choose from {', '.join(sorted(PRESETS))}")
    if preset == "se_finetune":
        raise AnalysisError("--preset se_finetune fine-tunes a trained network; the ablations train from scratch")
    recipe = asdict(PRESETS[preset])
    if epochs is not None:
        if epochs < 1:
            raise AnalysisError(f"--epochs {epochs}: must be >= 1")
        recipe["epochs"] = epochs
    return preset, recipe


def _same_run(result: dict, spec: RunSpec) -> bool:
    """Whether a finished run's ``result.json`` was trained with ``spec`` (compared as JSON, tuples as lists)."""
    cfg, want = result.get("config", {}), json.loads(json.dumps({"recipe": spec.recipe, "net": spec.net}))
    return bool(result.get("finished") and result.get("data") == spec.data and result.get("seed") == spec.seed
                and result.get("recipe") == want["recipe"] and all(cfg.get(k) == v for k, v in want["net"].items()))


def run_ablation(name: str, ablations: list[Ablation], out: Path, data="digits", data_dir=None, arch=None,
                 preset=None, epochs=None, seed=0, device="auto", progress=True) -> dict:
    """Train each ablation with the same recipe and seed into ``out/<name>-runs/<key>``; finished runs are skipped."""
    if data not in DATASETS:
        raise AnalysisError(f"--data {data!r}: choose from {', '.join(DATASETS)}")
    arch = arch or DATASET_ARCH[data]
    if arch not in ARCHS:
        raise AnalysisError(f"--arch {arch!r}: choose from {', '.join(ARCHS)}")
    preset, recipe = resolve_recipe(data, preset, epochs)
    specs = []
    for ab in ablations:
        net = {"arch": arch, **ab.net}
        NetConfig.from_dict(net)  # validates before any training starts
        specs.append((ab, RunSpec(data=data, net=net, recipe=dict(recipe), seed=seed, label=f"{name}: {ab.label}")))
    results = []
    for ab, spec in _progress(specs, progress, desc=name, unit="run"):
        run_dir = out / f"{name}-runs" / ab.key
        done = run_dir / "result.json"
        skipped = False
        if done.is_file():
            try:
                previous = json.loads(done.read_text())
            except (OSError, ValueError) as e:
                raise AnalysisError(f"{done}: unreadable ({e}); delete the run folder to retrain it") from e
            if not _same_run(previous, spec):
                raise AnalysisError(f"{run_dir}: holds a run with other settings (data, recipe, seed or network); "
                                    f"delete it or choose another --out")
            result, skipped = previous, True
            print(f"[{spec.label}] finished earlier ({100 * result['test_acc']:.2f}%); skipped", flush=True)
        else:
            t0 = time.time()
            result = train_run(spec, run_dir, data_dir=data_dir, device_name=device, resume=True,
                               progress=progress)
            result["train_seconds"] = round(time.time() - t0, 1)
            if not result.get("finished"):
                raise AnalysisError(f"{run_dir}: training did not finish")
        command = (f"python -m instabnn.model.train --data {data} --arch {arch} --preset {preset} "
                   f"--epochs {recipe['epochs']} --seed {seed} --out {run_dir} " +
                   " ".join(f"--{k.replace('_', '-')} {v}" for k, v in ab.net.items() if not isinstance(v, bool))
                   + "".join(" --no-bn-affine" for k, v in ab.net.items() if k == "bn_affine" and v is False))
        results.append({"key": ab.key, "label": ab.label, "net": spec.net, "test_acc": result["test_acc"],
                        "epochs_done": result["epochs_done"], "run_dir": str(run_dir), "skipped": skipped,
                        "command": command})
    return {"data": data, "arch": arch, "preset": preset, "recipe": recipe, "epochs": recipe["epochs"], "seed": seed,
            "runs": results, "commit": git_commit()}


def _recipe_line(report: dict) -> str:
    r = report["recipe"]
    return (f"Recipe: preset `{report['preset']}` ({r['optimizer']}, lr {r['lr']:g}, {r['schedule']} schedule, "
            f"batch {r['batch_size']}, weight decay {r['weight_decay']:g}), {report['epochs']} epoch(s), "
            f"seed {report['seed']}; data {report['data']}, arch {report['arch']}; commit {report['commit'][:12]}. "
            f"Accuracy: final-epoch top-1 on the test split.")


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}"


# ----------------------------------------------------------------------------------------------- Sec. F nonlinearity

G_LABELS = {"sigmoid": ("sigmoid(x)", "0 ~ 1"), "tanh": ("tanh(x)", "-1 ~ 1"), "tanh3": ("3*tanh(x/3)", "-3 ~ 3")}
NONLINEARITY_COLUMNS = {  # column key -> (variant, header)
    "insta": ("insta", "INSTA-PReLU"),
    "insta_plus": ("insta_plus", "SE (INSTA-Th+)"),
}


def _parse_list(value: str, allowed, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise AnalysisError(f"{option} {value!r}: choose from {', '.join(allowed)} (comma-separated)")
    return list(dict.fromkeys(items))


def run_nonlinearity(out: Path, gs=G_NAMES, columns=tuple(NONLINEARITY_COLUMNS), **kw) -> dict:
    ablations = [Ablation(f"{col}-{g}", {"variant": NONLINEARITY_COLUMNS[col][0],
                                         ("g" if col == "insta" else "g_se"): g},
                          f"{NONLINEARITY_COLUMNS[col][1]}, g={G_LABELS[g][0]}") for g in gs for col in columns]
    report = run_ablation("nonlinearity", ablations, out, **kw)
    acc = {r["key"]: r["test_acc"] for r in report["runs"]}
    table = []
    for g in gs:
        row = {"g": G_LABELS[g][0], "g_name": g, "range": G_LABELS[g][1]}
        for col in NONLINEARITY_COLUMNS:
            row[f"{col}_acc"] = acc.get(f"{col}-{g}")
        row.update(preset=report["preset"], epochs=report["epochs"], seed=report["seed"], data=report["data"],
                   arch=report["arch"])
        table.append(row)
    report.update(analysis="nonlinearity g (supplementary Sec. F, Table 1)", table=table)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "nonlinearity.csv", [{**r, **{f"{c}_acc": _pct(r[f"{c}_acc"]) for c in NONLINEARITY_COLUMNS}}
                                         for r in table])
    best = {c: max((r[f"{c}_acc"] for r in table if r[f"{c}_acc"] is not None), default=None)
            for c in NONLINEARITY_COLUMNS}

    def cell(r, c):
        v = r[f"{c}_acc"]
        return "" if v is None else (f"**{_pct(v)}**" if v == best[c] else _pct(v))

    md = ["# Nonlinearity g of INSTA-PReLU and of the SE of INSTA-Th+ (supplementary Sec. F, Table 1)", "",
          "| g | Range | INSTA-PReLU | SE (INSTA-Th+) |", "|---|---|---|---|"]
    md += [f"| {r['g']} | {r['range']} | {cell(r, 'insta')} | {cell(r, 'insta_plus')} |" for r in table]
    md += ["", "Top-1 test accuracy (%). " + _recipe_line(report),
           "INSTA-PReLU column: variant `insta` with `g` (g enters INSTA-PReLU only). SE (INSTA-Th+) column: "
           "variant `insta_plus` with `g_se` (the SE's g of INSTA-Th+; INSTA-PReLU+ keeps the default g).",
           "", "Runs:", ""] + [f"- `{r['key']}`: `{r['command']}`" + (" (reused)" if r["skipped"] else "")
                                for r in report["runs"]]
    atomic_write_text(out / "nonlinearity.md", "\n".join(md) + "\n")
    _plot_grouped_bars([r["g"] for r in table],
                       {NONLINEARITY_COLUMNS[c][1]: [None if r[f"{c}_acc"] is None else 100 * r[f"{c}_acc"]
                                                     for r in table] for c in columns},
                       out / "nonlinearity.png", ylabel="test top-1 accuracy (%)",
                       title=f"Table 1: g ({report['data']}, preset {report['preset']}, {report['epochs']} ep, "
                             f"seed {report['seed']})", percent=True)
    write_json(out / "nonlinearity.json", report)
    return report


# ----------------------------------------------------------------------------------------------- Sec. G ordering

ORDERING_ROWS = {  # key -> (Table 2 row label, NetConfig fields)
    "bn": ("BN - sign - conv - PReLU", {"block_order": "bn_sign_conv", "variant": "baseline", "bn_affine": True}),
    "bn_noaffine": ("BN (w/o gamma, beta) - sign - conv - PReLU",
                    {"block_order": "bn_sign_conv", "variant": "baseline", "bn_affine": False}),
    "insta_th": ("INSTA-Th - conv - PReLU", {"block_order": "bn_sign_conv", "variant": "insta"}),
}


def run_ordering(out: Path, rows=tuple(ORDERING_ROWS), **kw) -> dict:
    ablations = [Ablation(k, ORDERING_ROWS[k][1], ORDERING_ROWS[k][0]) for k in rows]
    report = run_ablation("ordering", ablations, out, **kw)
    acc = {r["key"]: r["test_acc"] for r in report["runs"]}
    table = [{"row": k, "structure": ORDERING_ROWS[k][0], "acc": acc[k], "preset": report["preset"],
              "epochs": report["epochs"], "seed": report["seed"], "data": report["data"], "arch": report["arch"]}
             for k in rows]
    report.update(analysis="BN-sign-conv block order (supplementary Sec. G, Table 2)", table=table)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "ordering.csv", [{**r, "acc": _pct(r["acc"])} for r in table])
    md = ["# INSTA-Th in the BN-sign-conv block order (supplementary Sec. G, Table 2)", "",
          "| Structure | Top-1 Acc. (%) |", "|---|---|"]
    md += [f"| {r['structure']} | {_pct(r['acc'])} |" for r in table]
    md += ["", _recipe_line(report),
           "Block: x -> BN | INSTA-Th -> sign -> binary conv -> PReLU -> + x (NetConfig block_order=bn_sign_conv).",
           "", "Runs:", ""] + [f"- `{r['key']}`: `{r['command']}`" + (" (reused)" if r["skipped"] else "")
                                for r in report["runs"]]
    atomic_write_text(out / "ordering.md", "\n".join(md) + "\n")
    _plot_grouped_bars([r["structure"] for r in table],
                       {"top-1": [100 * r["acc"] for r in table]}, out / "ordering.png",
                       ylabel="test top-1 accuracy (%)",
                       title=f"Table 2: block order ({report['data']}, preset {report['preset']}, "
                             f"{report['epochs']} ep, seed {report['seed']})", percent=True)
    write_json(out / "ordering.json", report)
    return report


# ----------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    def common(sp, default_device="cpu"):
        sp.add_argument("--out", default="reports/analyses", help="output folder (default: reports/analyses)")
        sp.add_argument("--data", choices=DATASETS, help="data set (default: the checkpoint's / digits)")
        sp.add_argument("--data-dir", help="directory of cifar10 / imagenet")
        sp.add_argument("--device", default=default_device, help=f"cpu | cuda[:k] | auto (default {default_device})")
        sp.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
        sp.add_argument("--no-progress", action="store_true", help="no progress bars")

    def evaluation(sp):
        common(sp)
        sp.add_argument("--batch-size", type=int, default=256)

    c = sub.add_parser("correlation", help="Sec. E: E[x~^3] of adjacent INSTA modules (Fig. 2)")
    c.add_argument("--checkpoint", required=True, help="a trained INSTA-BNN (model.pt)")
    c.add_argument("--channel", type=int, default=0)
    c.add_argument("--n", type=int, default=256, help="training images (default 256)")
    c.add_argument("--seed", type=int, default=0, help="seed of the image subset")
    evaluation(c)

    h = sub.add_parser("inconsistent-sign", help="Sec. H: inconsistent sign ratio per binary conv (Fig. 3)")
    h.add_argument("--checkpoint", action="append", required=True, metavar="LABEL=PATH",
                   help="repeat for each model (e.g. baseline=... insta=...)")
    h.add_argument("--n", type=int, help="test images (default: the whole test split)")
    h.add_argument("--seed", type=int, default=0, help="seed of the image subset when --n is given")
    h.add_argument("--real-input", choices=("binarizer", "block"), default="binarizer",
                   help="A_r: the binarizer's input x - T (default) or the block input x")
    evaluation(h)

    t = sub.add_parser("tsne", help="Sec. I: t-SNE of the features before the classifier (Fig. 4)")
    t.add_argument("--checkpoint", action="append", required=True, metavar="LABEL=PATH",
                   help="repeat for each model (e.g. Sign=... RSign=... INSTA-Th=...)")
    t.add_argument("--fraction", type=float, default=0.5, help="share of each class of the test split (0.5)")
    t.add_argument("--seed", type=int, default=0, help="seed of the subset and of TSNE's random_state")
    t.add_argument("--perplexity", type=float, default=30.0)
    evaluation(t)

    def ablation(sp):
        common(sp, "auto")
        sp.add_argument("--arch", choices=ARCHS, help="network (default: the data set's)")
        sp.add_argument("--preset", choices=sorted(k for k in PRESETS if k != "se_finetune"),
                        help="training recipe (default: the data set's, as instabnn-train)")
        sp.add_argument("--epochs", type=int, help="override the preset's epochs")
        sp.add_argument("--seed", type=int, default=0)

    nl = sub.add_parser("nonlinearity", help="Sec. F: g of INSTA-PReLU / SE of INSTA-Th+ (Table 1)")
    ablation(nl)
    nl.add_argument("--g", default=",".join(G_NAMES), help=f"rows, comma-separated (default {','.join(G_NAMES)})")
    nl.add_argument("--columns", default=",".join(NONLINEARITY_COLUMNS),
                    help="insta (INSTA-PReLU), insta_plus (SE of INSTA-Th+); default both")

    o = sub.add_parser("ordering", help="Sec. G: BN-sign-conv order with BN / BN w/o affine / INSTA-Th (Table 2)")
    ablation(o)
    o.add_argument("--rows", default=",".join(ORDERING_ROWS), help=f"default {','.join(ORDERING_ROWS)}")
    return p


def run_from_args(args) -> dict:
    out, progress = Path(args.out), not args.no_progress
    if args.command in ("correlation", "inconsistent-sign", "tsne") and args.batch_size < 1:
        raise AnalysisError(f"--batch-size {args.batch_size}: must be >= 1")
    if args.command == "correlation":
        if args.n < 2:
            raise AnalysisError(f"--n {args.n}: a correlation needs at least 2 images")
        return run_correlation(args.checkpoint, out, args.channel, args.n, args.seed, args.data, args.data_dir,
                               args.batch_size, args.device, progress)
    if args.command == "inconsistent-sign":
        return run_inconsistent_sign(parse_labelled(args.checkpoint), out, args.n, args.seed, args.real_input,
                                     args.data, args.data_dir, args.batch_size, args.device, progress)
    if args.command == "tsne":
        return run_tsne(parse_labelled(args.checkpoint), out, args.fraction, args.seed, args.perplexity, args.data,
                        args.data_dir, args.batch_size, args.device, progress)
    kw = dict(data=args.data or "digits", data_dir=args.data_dir, arch=args.arch, preset=args.preset,
              epochs=args.epochs, seed=args.seed, device=args.device, progress=progress)
    if args.command == "nonlinearity":
        return run_nonlinearity(out, _parse_list(args.g, G_NAMES, "--g"),
                                _parse_list(args.columns, tuple(NONLINEARITY_COLUMNS), "--columns"), **kw)
    return run_ordering(out, _parse_list(args.rows, tuple(ORDERING_ROWS), "--rows"), **kw)


OUTPUTS = {"correlation": "correlation", "inconsistent-sign": "inconsistent_sign", "tsne": "tsne",
           "nonlinearity": "nonlinearity", "ordering": "ordering"}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        run_from_args(args)
    except (AnalysisError, CheckpointError, ConfigError, DataError, TrainError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    stem = Path(args.out) / OUTPUTS[args.command]
    exts = ".png .csv .json" + (" .md" if args.command in ("nonlinearity", "ordering") else "")
    print(f"done: {', '.join(str(stem) + e for e in exts.split())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
