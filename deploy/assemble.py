"""The folder to copy onto the PYNQ-Z2 board (``make deploy``).

``python -m instabnn.deploy assemble RTL_DIR --bitstream BITSTREAM_DIR --out OUT`` writes OUT with:

* the bitstream and its ``.hwh`` (same base name) from the ``make bitstream`` build folder, where Vivado built them
  (otherwise the README says that they are missing and how to build them);
* ``driver.py`` (a copy of :mod:`instabnn.deploy.driver`: numpy + pynq only on the board);
* ``accelerator_runtime.json`` (input quantizer, shapes, DMA buffer layout, clock, model hash);
* ``classify_digits.py`` (the example: load the overlay, classify the test images, compare with the reference);
* ``test_images.npz``: the first ``--n`` test images of the data the network was trained on (digits, or digits-iv
  with the training's perturbation), quantized (``q0``), with ``labels`` and the
  ``reference_logits`` of the lowered graph (the golden reference);
* ``README.md``: how to copy and run it, and what has (not) been run on a board.

The folder is written beside OUT and swapped in at the end; an existing OUT is replaced only when it is empty or an
earlier folder of this command (:mod:`instabnn.outputs`), and a missing or bad RTL directory is an error that names
the path.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from instabnn.deploy.driver import RUNTIME_CONFIG, DriverError, runtime_config
from instabnn.sim.cosim import CosimError
from instabnn.outputs import OutputDir, OutputError

HERE = Path(__file__).resolve().parent
TOOL = "instabnn-deploy-assemble"
FILES = ("driver.py", RUNTIME_CONFIG, "classify_digits.py", "test_images.npz", "README.md")


class DeployError(RuntimeError):
    """A missing or inconsistent input; the message names the path."""


EXAMPLE = '''#!/usr/bin/env python3
"""Classify the bundled digits test images on the PYNQ-Z2 with the INSTA-BNN accelerator.

Run on the board, in this folder, as root (pynq needs it):  sudo python3 classify_digits.py [--batch 64]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from driver import Accelerator, format_timing, load_images  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\\n\\n")[0])
    p.add_argument("--bitstream", default=str(HERE / "{bit}"))
    p.add_argument("--images", default=str(HERE / "test_images.npz"))
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
    acc = Accelerator.open(a.bitstream)
    q0, labels, ref = load_images(a.images, acc.cfg)
    logits = acc.run(q0, batch=a.batch)
    pred = logits.argmax(axis=1)
    same = int(np.sum(np.all(logits == ref, axis=1)))
    print(f"{{len(q0)}} images: accuracy {{100 * np.mean(pred == labels):.2f}}% "
          f"(reference {{100 * np.mean(ref.argmax(axis=1) == labels):.2f}}%)")
    print(f"logits identical to the reference for {{same}} / {{len(q0)}} images")
    print(format_timing(acc.timing()))
    acc.reset_timing()
    acc.run(q0[:1], batch=1)
    print(f"single-image latency {{1e3 * acc.timing()['batch_latency_s_median']:.3f}} ms (wall clock)")
    acc.close()
    return 0 if same == len(q0) else 1


if __name__ == "__main__":
    sys.exit(main())
'''


def _find_bitstream(bitstream_dir: Path | None, cfg: dict) -> tuple[Path | None, Path | None, str]:
    """(.bit, .hwh, a note for the README)."""
    if bitstream_dir is None:
        return None, None, "no bitstream build folder was given"
    if not bitstream_dir.is_dir():
        return None, None, f"the bitstream build folder `{bitstream_dir}` does not exist"
    bits = sorted(bitstream_dir.glob("*.bit"))
    if not bits:
        return None, None, (f"the bitstream build folder `{bitstream_dir}` holds no .bit (Vivado was not run: "
                            "`make bitstream` without Vivado writes only the project and a Yosys estimate)")
    if len(bits) > 1:
        raise DeployError(f"{bitstream_dir}: several .bit files ({', '.join(b.name for b in bits)}); expected one")
    bit = bits[0]
    hwh = bit.with_suffix(".hwh")
    if not hwh.is_file():
        raise DeployError(f"{hwh}: missing (PYNQ's Overlay needs the .hwh beside {bit.name})")
    man = bitstream_dir / "manifest.json"
    if man.is_file() and cfg.get("model_sha256"):
        built = json.loads(man.read_text()).get("model_sha256")
        if built and built != cfg["model_sha256"]:
            raise DeployError(f"{man}: the bitstream was built from model {built}, the RTL directory is model "
                              f"{cfg['model_sha256']}")
    return bit, hwh, f"built by Vivado in `{bitstream_dir}`"


def digits_test_images(rtl_dir: Path, n: int) -> tuple[dict, str]:
    """The first ``n`` test images of the data the network was trained on (digits, or digits-iv with the
    training's perturbation options, as co-simulation picks them: :func:`instabnn.sim.cosim.default_data`),
    quantized, with labels and the lowered graph's logits; and their description."""
    from instabnn.sim import cosim

    m = cosim.load_manifest(rtl_dir)
    model = cosim.lowered_model(m, rtl_dir)
    data = cosim.default_data(model)
    options = cosim.digits_iv_options(model, m["input_shape"], {}) if data == "digits-iv" else None
    q0, labels, description = cosim.images_for(data, n, model, m["input_shape"], None, data_options=options)
    ref = cosim.reference_logits(model, q0, False)
    dtype = np.int8 if int(m["input_bits"]) <= 8 else np.int16 if int(m["input_bits"]) <= 16 else np.int32
    return {"q0": q0.astype(dtype), "labels": labels.astype(np.int64),
            "reference_logits": ref.astype(np.int64)}, description


def readme(cfg: dict, bit: Path | None, note: str, n: int, data: dict, rtl_dir: Path, description: str) -> str:
    acc_ref = float(np.mean(data["reference_logits"].argmax(1) == data["labels"]))
    din, dout = cfg["dma_in_width"] // 8, cfg["dma_out_width"] // 8
    c, h, w = cfg["input_shape"]
    if bit is not None:
        bit_lines = (f"* `{bit.name}` and `{bit.with_suffix('.hwh').name}`: the bitstream and its hardware handoff "
                     f"({note}).")
        missing = ""
        built = "* The bitstream was built by Vivado (see report.md in its build folder for timing and utilisation)."
    else:
        built = "* No bitstream has been built for this folder (see below)."
        bit_lines = "* **No bitstream in this folder**: " + note + "."
        missing = f"""
## The bitstream is missing

Vivado is needed to make it. On a machine with Vivado (with the PYNQ-Z2 board files, or the bare xc7z020 part:
the generated script handles both), run `make bitstream BOARD=pynq-z2 RTL={rtl_dir}` (or
`project/run_vivado.sh` in the build folder that `make bitstream` wrote without Vivado), then `make deploy`
again: it copies `<name>.bit` and `<name>.hwh` here. The driver looks for exactly one `.bit` in this folder, with
its `.hwh` beside it.
"""
    return f"""# INSTA-BNN accelerator on the PYNQ-Z2

Generated by `make deploy` (`python -m instabnn.deploy assemble`) from `{rtl_dir}` (top `{cfg['top']}`, model
`{cfg.get('model_sha256')}`).

## Contents

{bit_lines}
* `driver.py`: the runtime driver (`Accelerator`: `open`, `quantize`, `pack`, `unpack`, `run`, `classify`,
  `timing`); imports numpy and, for the board, `pynq` only.
* `{RUNTIME_CONFIG}`: what the driver needs to know about this accelerator (input quantizer 2^{cfg['input_exp']}
  x {cfg['input_bits']}-bit integers, input {c}x{h}x{w}, {cfg['classes']} classes, {cfg['logit_bits']}-bit logits,
  DMA layout, {cfg['clock_mhz']:g} MHz clock).
* `classify_digits.py`: the example below.
* `test_images.npz`: the first {n} images of the {description} (the data the network was trained on; the
  scikit-learn digits, embedded), quantized (`q0`, int), their
  `labels`, and the `reference_logits` of the lowered integer graph (the golden reference; its accuracy on these
  images is {100 * acc_ref:.2f}%).

## Run on the board

1. A PYNQ-Z2 with a stock PYNQ image (Python 3 with numpy and pynq), on the network.
2. Copy this folder: `scp -r <this folder> xilinx@pynq:/home/xilinx/instabnn` (password `xilinx` on the
   stock image), or drop it into the Jupyter file browser.
3. On the board: `cd /home/xilinx/instabnn && sudo python3 classify_digits.py` (pynq needs root). It loads the
   overlay, classifies the images in batches of 64, prints the accuracy, how many images have logits identical to
   the reference (all should), frames per second and batch latency (wall clock, including Python and the DMA
   set-up), and the single-image latency.
4. Or the driver's command line: `sudo python3 driver.py classify --accelerator . --images test_images.npz
   --batch 64`, and `sudo python3 driver.py bench --accelerator . -n 2000 --batch 1 16 64 256`.

From a notebook: `from driver import Accelerator; acc = Accelerator.open("{bit.name if bit else '<name>.bit'}");
acc.classify(float_images)` (float images as the training pipeline feeds the network: `quantize` applies the
input quantizer).

## Buffer layout (what the driver does)

* Input (DMA MM2S, one transfer per batch): one {din}-byte little-endian word per pixel, pixels row by row, image
  after image; channel k in bits [{cfg['input_bits']}k, {cfg['input_bits']}(k+1)) as two's complement, the rest
  zero.
* Output (DMA S2MM): one {dout}-byte little-endian word per class logit, sign-extended. The accelerator ends each
  image with tlast, which ends an S2MM transfer, so the driver arms one S2MM transfer per image
  ({cfg['classes'] * dout} bytes) while the batch streams in, each at a multiple of the DMA's memory-side width
  (PYNQ refuses unaligned transfers); each transfer has a deadline (`--timeout`, default 10 s).
* The AXI DMA is the block design cell `{cfg['dma_cell']}` (simple mode, no scatter-gather).

## What has been run where

* **Nothing in this folder has been run on a PYNQ-Z2 board.** The board backend (`PynqBackend`) was exercised only
  against a stub `pynq` module (an in-memory model of the Overlay, `allocate` and the DMA channels with per-image
  tlast, keeping PYNQ 3's alignment and transfer-size rules) in the repository's tests.
* The same driver code (`pack`, `unpack`, batching) ran on its simulation backend: the RTL behind the board's DMA
  adapter (`instabnn_dma_wrapper`) in Verilator, fed the exact MM2S bytes and decoding the exact S2MM bytes; its
  logits were identical to the reference for the digits test split (`tests/test_deploy.py`).
{built}
* Unverified on hardware: the DMA throughput, the per-image S2MM re-arming overhead in Python (it bounds the
  board's frames/s for small images), and `transfer(start=, nbytes=)` of PYNQ's DMA driver (older PYNQ: the
  driver falls back to buffer views).
{missing}"""


def assemble(rtl_dir: str | Path, bitstream_dir: str | Path | None, out: str | Path, n_images: int = 300) -> dict:
    """Write the deployment folder ``out``; returns a summary (files, bitstream or None, images)."""
    rtl_dir, out = Path(rtl_dir), Path(out)
    target = OutputDir(out, TOOL)  # refuses a folder this command did not write, before any work
    if not rtl_dir.is_dir():
        raise DeployError(f"RTL directory {rtl_dir}: no such directory (make hw writes it)")
    if not (rtl_dir / "accelerator.json").is_file():
        raise DeployError(f"{rtl_dir / 'accelerator.json'}: no such file ({rtl_dir} is not an accelerator RTL "
                          "directory)")
    try:
        cfg = runtime_config(rtl_dir)
    except DriverError as e:
        raise DeployError(str(e)) from None
    bit, hwh, note = _find_bitstream(Path(bitstream_dir) if bitstream_dir else None, cfg)
    try:
        data, description = digits_test_images(rtl_dir, n_images)
    except CosimError as e:
        raise DeployError(str(e)) from None
    with target as tmp:
        shutil.copy2(HERE / "driver.py", tmp / "driver.py")
        (tmp / RUNTIME_CONFIG).write_text(json.dumps(cfg, indent=1) + "\n")
        (tmp / "classify_digits.py").write_text(EXAMPLE.format(bit=bit.name if bit else "instabnn.bit"))
        np.savez_compressed(tmp / "test_images.npz", **data)
        (tmp / "README.md").write_text(readme(cfg, bit, note, len(data["q0"]), data, rtl_dir, description))
        if bit is not None:
            shutil.copy2(bit, tmp / bit.name)
            shutil.copy2(hwh, tmp / hwh.name)
    files = list(FILES) + ([bit.name, hwh.name] if bit else [])
    return {"out": str(out), "files": files, "bitstream": str(bit) if bit else None, "note": note,
            "images": int(len(data["q0"])), "images_from": description}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="instabnn-deploy assemble", description=__doc__.split("\n\n")[0])
    p.add_argument("rtl", help="accelerator RTL directory (make hw)")
    p.add_argument("--bitstream", help="the make bitstream build folder (bitstreams/pynq-z2-<run>)")
    p.add_argument("--out", required=True, help="the folder to write")
    p.add_argument("-n", type=int, default=300, help="test images to include (default 300)")
    a = p.parse_args(argv)
    try:
        r = assemble(a.rtl, a.bitstream, a.out, a.n)
    except (DeployError, OutputError) as e:
        print(f"instabnn-deploy assemble: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {r['out']}: {', '.join(r['files'])}")
    if r["bitstream"] is None:
        print(f"note: no bitstream in it ({r['note']}); its README.md says how to build one with Vivado")
    return 0


if __name__ == "__main__":
    sys.exit(main())
