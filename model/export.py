"""QONNX export: ``python -m instabnn.model.export --checkpoint runs/x/model.pt --out model.onnx`` (``make export``).

The network is exported with Brevitas' QONNX manager (TorchScript path, batch size 1, as FINN expects) and cleaned
with qonnx. Quantizers become ``Quant`` / ``BipolarQuant`` nodes; the INSTA operators become ``InstaStatistic`` and
``InstaShift`` nodes of the project's domain (``instabnn.model.onnx_ops``), which qonnx executes. The file's
metadata carries what rebuilds the model: ``instabnn.config`` (the NetConfig as JSON), ``instabnn.network``,
``instabnn.commit``, ``instabnn.checkpoint_sha256`` and ``instabnn.input_shape``.

Before the file is written, qonnx execution is compared with the PyTorch model in eval mode on ``--check N``
test images (digits) or generated inputs: the maximum absolute difference must be <= ``--tolerance`` (1e-5). The
one accepted exception is an input where a quantizer's input lies at a rounding tie to float precision (PyTorch and
onnxruntime sum in different orders, so one runtime may round up and the other down); such inputs are detected by
comparing every activation quantizer's output, listed in the report, and excluded from ``max_abs_diff``. Any other
difference is an error and leaves an earlier file at ``--out`` untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from instabnn.model.checkpoint import (CheckpointError, atomic_write_text, checkpoint_config, file_sha256,
                                       git_commit, load_checkpoint, load_weights)
from instabnn.model.config import ConfigError, NetConfig
from instabnn.model.networks import build_network

META_PREFIX = "instabnn."


class ExportError(RuntimeError):
    """An export that failed or does not match the PyTorch model; the message names the file."""


def qonnx_execute(model_wrapper, x: np.ndarray) -> np.ndarray:
    """Run (N, C, H, W) inputs one at a time through a batch-1 QONNX model; returns (N, classes)."""
    from qonnx.core.onnx_exec import execute_onnx

    iname, oname = model_wrapper.graph.input[0].name, model_wrapper.graph.output[0].name
    outs = [execute_onnx(model_wrapper, {iname: x[i:i + 1].astype(np.float32)})[oname] for i in range(len(x))]
    return np.concatenate(outs, axis=0)


def torch_execute(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x.astype(np.float32))).numpy()


TIE_EPS = 1e-4  # in quantizer steps (Quant) or absolute (BipolarQuant input): "at a rounding tie"


def _activation_quant_nodes(wrapper) -> list:
    return [n for n in wrapper.graph.node if n.op_type in ("Quant", "BipolarQuant")
            and wrapper.get_initializer(n.input[0]) is None]


def _torch_quant_outputs(model: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    """Outputs of the activation quantizers (Brevitas QuantIdentity) in call order, for one input."""
    from brevitas.nn import QuantIdentity

    outs, hooks = [], []
    for module in model.modules():
        if isinstance(module, QuantIdentity):
            hooks.append(module.register_forward_hook(lambda m, i, o: outs.append(o.detach().numpy().copy())))
    try:
        torch_execute(model, x)
    finally:
        for h in hooks:
            h.remove()
    return outs


def explain_mismatch(model: torch.nn.Module, wrapper, x: np.ndarray) -> str | None:
    """Why PyTorch and qonnx disagree on the single input ``x``, if it is a rounding tie, else None.

    PyTorch and onnxruntime sum convolutions in different orders, so their float results differ in the last bits.
    Where a quantizer's input lies at a rounding tie (half a step, or zero before a sign), that can flip one
    quantized value and everything after it. Accepted only if the *first* activation quantizer whose outputs differ
    differs exactly at elements that are at a tie.
    """
    from qonnx.core.onnx_exec import execute_onnx

    nodes = _activation_quant_nodes(wrapper)
    ours = _torch_quant_outputs(model, x)
    if len(nodes) != len(ours):
        return None
    ctx = execute_onnx(wrapper, {wrapper.graph.input[0].name: x.astype(np.float32)}, return_full_exec_context=True)
    for node, t_out in zip(nodes, ours):
        o_out = ctx[node.output[0]]
        if t_out.shape != o_out.shape:
            return None
        differ = t_out != o_out
        if not differ.any():
            continue
        v = ctx[node.input[0]].astype(np.float64)
        if node.op_type == "Quant":
            steps = v / float(np.asarray(wrapper.get_initializer(node.input[1])).reshape(-1)[0])
            at_tie = np.abs(np.abs(steps - np.floor(steps)) - 0.5) < TIE_EPS
        else:
            at_tie = np.abs(v) < TIE_EPS
        if np.all(at_tie[differ]):
            return f"rounding tie at {node.name} ({int(differ.sum())} value(s) within {TIE_EPS:g} of a tie)"
        return None
    return None


def check_inputs(cfg: NetConfig, n: int, seed: int = 0, data: str | None = None,
                 data_options: dict | None = None) -> tuple[np.ndarray, str]:
    """Test inputs for the equivalence check: the test images of the data set the network was trained on where
    that is digits or digits-iv (``data``, ``data_options`` from its checkpoint), else generated."""
    if data == "digits-iv":
        from instabnn.model.data import digits_test_split

        x, _, description = digits_test_split(data, data_options)
        return x[:n], description
    if cfg.arch == "digits" and cfg.in_channels in (None, 1) and cfg.image_size in (None, 8):
        from instabnn.model.data import digits_arrays

        return digits_arrays()[2][:n], "digits test split"
    rng = np.random.default_rng(seed)
    c, size = cfg.in_channels or 3, cfg.image_size or 32
    return rng.standard_normal((n, c, size, size)).astype(np.float32), "generated N(0,1) inputs"


def export_model(model: torch.nn.Module, out: str | Path, metadata: dict[str, str], n_check: int = 16,
                 tolerance: float = 1e-5, data: str | None = None, data_options: dict | None = None) -> dict:
    """Export ``model`` (an :class:`InstaBnn`) to QONNX at ``out``; returns the equivalence report.

    ``data`` / ``data_options``: the data set the model was trained on (its test images are the check inputs)."""
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    out = Path(out)
    cfg: NetConfig = model.cfg
    model = model.cpu().eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        dummy = torch.zeros(1, *model.input_shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_qonnx(model, dummy, tmp, dynamo=False)
            wrapper = cleanup_model(ModelWrapper(tmp))
        meta = {"config": cfg.to_json(), "network": cfg.arch, "variant": cfg.variant,
                "input_shape": json.dumps([1, *model.input_shape]), **metadata}
        for key, value in meta.items():  # model-level metadata_props, the standard place (Netron shows it)
            entry = wrapper.model.metadata_props.add()
            entry.key, entry.value = META_PREFIX + key, str(value)
        report = {"file": str(out), "nodes": len(wrapper.graph.node),
                  "op_types": sorted({n.op_type for n in wrapper.graph.node})}
        if n_check > 0:
            x, source = check_inputs(cfg, n_check, data=data, data_options=data_options)
            ref, got = torch_execute(model, x), qonnx_execute(wrapper, x)
            per_image = np.abs(ref - got).max(axis=1)
            ties = {}
            for i in np.flatnonzero(~(per_image <= tolerance)):
                reason = explain_mismatch(model, wrapper, x[i:i + 1])
                if reason is None:
                    raise ExportError(f"export {out}: qonnx execution differs from PyTorch by {per_image[i]:.3g} "
                                      f"(> {tolerance:g}) on input {i} of the {source}, not explained by a "
                                      f"rounding tie; nothing written")
                ties[int(i)] = reason
            clean = np.array([i not in ties for i in range(len(x))])
            report.update(check_inputs=source, check_n=len(x), tolerance=tolerance,
                          max_abs_diff=float(per_image[clean].max()) if clean.any() else None,
                          max_abs_diff_all=float(per_image.max()), images_at_rounding_ties=ties,
                          top1_agreement=float((ref.argmax(1) == got.argmax(1)).mean()))
        wrapper.save(tmp)
        os.replace(tmp, out)
        return report
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_checkpoint(checkpoint: str | Path, out: str | Path, n_check: int = 16, tolerance: float = 1e-5) -> dict:
    ckpt = load_checkpoint(checkpoint)
    cfg = checkpoint_config(ckpt, checkpoint)
    model = build_network(cfg)
    load_weights(model, ckpt["model"], checkpoint)
    meta = {"commit": ckpt.get("commit", git_commit()), "checkpoint_sha256": file_sha256(checkpoint),
            "checkpoint": str(checkpoint)}
    run = ckpt.get("run") or {}
    if run.get("data"):
        meta.update(data=run["data"], data_options=json.dumps(run.get("data_options") or {}, sort_keys=True))
    report = export_model(model, out, meta, n_check=n_check, tolerance=tolerance, data=run.get("data"),
                          data_options=run.get("data_options"))
    report["checkpoint"] = str(checkpoint)
    return report


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"model {path}: no such file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ExportError(f"model {path}: not a readable ONNX file ({e})") from e
    return metadata(proto)


def metadata(proto) -> dict[str, str]:
    """The ``instabnn.*`` model-level metadata of an ONNX ModelProto (prefix removed)."""
    return {p.key[len(META_PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(META_PREFIX)}


TRAINING_DATA_KEYS = ("data", "data_options")


def training_data(meta: dict[str, str]) -> tuple[str | None, dict]:
    """(data set, its options) a model was trained on, from its metadata (:func:`metadata`); (None, {}) where the
    file does not record them (not exported from a checkpoint of this project, or lowered before they were kept)."""
    if not meta.get("data"):
        return None, {}
    try:
        options = json.loads(meta.get("data_options") or "{}")
    except json.JSONDecodeError:
        raise ExportError(f"metadata data_options {meta['data_options']!r}: not JSON") from None
    return meta["data"], options


def carry_training_data(meta: dict[str, str], target) -> None:
    """Copy the training-data entries of an export's metadata ``meta`` (:func:`read_metadata`) into ModelProto
    ``target`` (its lowered graph), so that what runs on the lowered graph (co-simulation, deployment) can use the
    same test images."""
    for key in TRAINING_DATA_KEYS:
        if key in meta:
            entry = target.metadata_props.add()
            entry.key, entry.value = META_PREFIX + key, meta[key]


def config_from_onnx(path: str | Path) -> NetConfig:
    """The NetConfig an exported file was built from (its ``instabnn.config`` metadata)."""
    meta = read_metadata(path)
    if "config" not in meta:
        raise ExportError(f"model {path}: no instabnn.config metadata (not exported by instabnn)")
    return NetConfig.from_dict(json.loads(meta["config"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="instabnn-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by instabnn-train (model.pt)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--check", type=int, default=16, help="inputs compared between qonnx and PyTorch (0: none)")
    p.add_argument("--tolerance", type=float, default=1e-5)
    args = p.parse_args(argv)
    try:
        report = export_checkpoint(args.checkpoint, args.out, n_check=args.check, tolerance=args.tolerance)
    except (ExportError, CheckpointError, ConfigError) as e:
        print(f"instabnn-export: error: {e}", file=sys.stderr)
        return 2
    report_path = Path(args.out).with_suffix(".export.json")
    atomic_write_text(report_path, json.dumps(report, indent=1))
    check = "no equivalence check"
    if "check_n" in report:
        ties = report["images_at_rounding_ties"]
        check = (f"qonnx vs PyTorch on {report['check_n']} {report['check_inputs']}: max |diff| "
                 f"{report['max_abs_diff']:.2e}" + (f" ({len(ties)} input(s) at a rounding tie: {ties})" if ties else "")
                 + f", top-1 agreement {100 * report['top1_agreement']:.1f}%")
    print(f"exported {args.out} ({report['nodes']} nodes); {check}; report {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
