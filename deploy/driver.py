"""Runtime driver of the INSTA-BNN accelerator: the PYNQ-Z2 board (pynq Overlay + AXI DMA) and its simulation
twin (the stitched RTL behind the same DMA adapter, in Verilator).

One API for both backends::

    acc = Accelerator.open("instabnn.bit")        # board: the .bit with its .hwh beside it (PynqBackend)
    acc = Accelerator.open("runs/demo/rtl")       # simulation: an RTL directory with accelerator.json (SimBackend)
    q0 = acc.quantize(images)                     # float (N, C, H, W) -> integers of the input quantizer
    logits = acc.run(q0, batch=64)                # (N, classes) int64
    classes = acc.classify(images)
    print(acc.timing())                           # frames/s and per-batch latency, as measured by the backend

Host buffer layout (the block design of ``instabnn.hw.bitstream``: AXI DMA <-> ``instabnn_dma_wrapper`` <->
accelerator):

* MM2S (input): one DMA word per pixel, pixels row by row (image after image), ``dma_in_width`` bits =
  ``dma_in_width / 8`` little-endian bytes per pixel. Channel ``c`` of the pixel is the two's-complement
  ``input_bits`` field at bits ``[c * input_bits, (c + 1) * input_bits)``; the bits above are zero (the adapter
  ignores bits ``in_width`` and up). A whole batch goes in one MM2S transfer (its tlast is not used).
* S2MM (output): one DMA word per class logit, ``dma_out_width / 8`` little-endian bytes, the ``logit_bits``
  two's-complement logit sign-extended to the whole word. The accelerator raises tlast on each image's last class,
  and tlast ends an S2MM transfer of the AXI DMA in simple mode, so the driver arms one S2MM transfer per image
  (``classes * dma_out_width / 8`` bytes) while the batch streams in. Each image's slot in the receive buffer starts
  at a multiple of the DMA's memory-side width (``c_m_axi_s2mm_data_width / 8`` bytes, from the overlay's .hwh, else
  ``dma_memory_width`` of the runtime configuration): PYNQ refuses a transfer at an unaligned address. Every wait
  on a DMA channel has a deadline (``timeout_s``): an accelerator that sends too few logits or no tlast is an error
  naming the image, never a hang.

This file is copied alone onto the board (``make deploy``): it imports only numpy at module level, ``pynq`` in the
board backend and the ``instabnn`` package (Verilator co-simulation) in the simulation backend, both lazily.
Run as a script (``python3 driver.py classify --accelerator instabnn.bit --images test_images.npz``) or as
``python -m instabnn.deploy``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

RUNTIME_CONFIG = "accelerator_runtime.json"
CONFIG_FORMAT = "instabnn-runtime/1"
DMA_CELL = "dma"  # the AXI DMA's cell name in the block design (hw/bitstream/templates/pynq_z2_block_design.tcl)
REQUIRED = ("input_shape", "classes", "input_lanes", "input_bits", "input_exp", "logit_bits", "in_width",
            "out_width", "dma_in_width", "dma_out_width")


class DriverError(RuntimeError):
    """A bad input (path, configuration, image array, buffer) or a failed transfer; the message says which."""


# ------------------------------------------------------------------------------------------ configuration


def dma_stream_width(width: int) -> int:
    """The AXI DMA stream width for an accelerator stream of ``width`` bits (the next power of two >= width, 8 ..
    1024): the same rule as ``instabnn.hw.bitstream.pynq_z2.dma_stream_width``, repeated here so that the board
    needs only this file (tests/test_deploy.py checks that the two agree)."""
    w = 8
    while w < width:
        w *= 2
    if w > 1024:
        raise DriverError(f"stream width {width} exceeds the AXI DMA's 1024 bits")
    return w


def dma_memory_width(in_width: int, out_width: int) -> int:
    """The AXI DMA's memory-side width (``c_m_axi_*_data_width``) in the block design: the widest DMA stream, at
    least 32 bits (the rule of ``instabnn.hw.bitstream.pynq_z2.dma_parameters``)."""
    return max(32, dma_stream_width(in_width), dma_stream_width(out_width))


def _lowered_input_quantizer(manifest: dict, rtl_dir: Path) -> tuple[int, int]:
    """(input_exp, input_bits) from the lowered graph's metadata (instabnn.input_exp / instabnn.input_bits)."""
    if "input_exp" in manifest:
        return int(manifest["input_exp"]), int(manifest["input_bits"])
    import onnx

    from instabnn.hw.compile.compiler import CompileError, lowered_graph_path  # off the board only (RTL directories)

    try:
        path = lowered_graph_path(rtl_dir, manifest)
    except CompileError as e:
        raise DriverError(str(e)) from None

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    try:
        return int(props["instabnn.input_exp"]), int(props["instabnn.input_bits"])
    except KeyError as e:
        raise DriverError(f"{path}: metadata {e.args[0]!r} missing (lower the model again)") from None


def runtime_config(rtl_dir: str | Path) -> dict:
    """The small runtime configuration of an RTL directory (``accelerator.json`` plus the input quantizer and the
    DMA buffer layout): everything the driver needs on the board."""
    rtl_dir = Path(rtl_dir)
    path = rtl_dir / "accelerator.json"
    if not rtl_dir.is_dir():
        raise DriverError(f"RTL directory {rtl_dir}: no such directory (generate it with make hw)")
    if not path.is_file():
        raise DriverError(f"{path}: no accelerator manifest (generate the RTL with make hw)")
    m = json.loads(path.read_text())
    exp, bits = _lowered_input_quantizer(m, rtl_dir)
    if bits != int(m.get("input_bits", bits)):
        raise DriverError(f"{path}: input_bits {m['input_bits']} differs from the lowered graph's {bits}")
    c = int(m["input_shape"][0])
    cfg = {
        "format": CONFIG_FORMAT,
        "top": m["top"],
        "model_sha256": m.get("model_sha256"),
        "input_shape": [int(v) for v in m["input_shape"]],
        "classes": int(m["classes"]),
        "input_lanes": int(m.get("input_lanes", c)),
        "input_bits": bits,
        "input_exp": exp,
        "logit_bits": int(m["logit_bits"]),
        "in_width": int(m["in_width"]),
        "out_width": int(m["out_width"]),
        "dma_in_width": dma_stream_width(int(m["in_width"])),
        "dma_out_width": dma_stream_width(int(m["out_width"])),
        "dma_memory_width": dma_memory_width(int(m["in_width"]), int(m["out_width"])),
        "dma_cell": DMA_CELL,
        "clock_mhz": float(m.get("clock_mhz", 100.0)),
        "cycles_per_frame_estimate": m.get("cycles_per_frame_estimate"),
    }
    return check_config(cfg, str(path))


def check_config(cfg: dict, where: str = "runtime config") -> dict:
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise DriverError(f"{where}: field(s) {', '.join(missing)} missing")
    c = cfg["input_shape"][0]
    if cfg["input_lanes"] != c:
        raise DriverError(f"{where}: input_lanes {cfg['input_lanes']} != channels {c} (one pixel per beat expected)")
    if c * cfg["input_bits"] > cfg["in_width"] or cfg["in_width"] > cfg["dma_in_width"]:
        raise DriverError(f"{where}: {c} x {cfg['input_bits']} input bits do not fit in_width {cfg['in_width']} / "
                          f"the DMA word {cfg['dma_in_width']}")
    if not 1 < cfg["logit_bits"] <= min(63, cfg["out_width"]) or cfg["out_width"] > cfg["dma_out_width"]:
        raise DriverError(f"{where}: logit_bits {cfg['logit_bits']} must be 2 .. min(63, out_width "
                          f"{cfg['out_width']}) and out_width <= the DMA word {cfg['dma_out_width']}")
    if cfg["dma_in_width"] % 8 or cfg["dma_out_width"] % 8:
        raise DriverError(f"{where}: DMA widths must be whole bytes")
    cfg.setdefault("dma_cell", DMA_CELL)
    cfg.setdefault("clock_mhz", 100.0)
    cfg.setdefault("dma_memory_width", max(32, cfg["dma_in_width"], cfg["dma_out_width"]))
    return cfg


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DriverError(f"{path}: no runtime configuration (make deploy writes {RUNTIME_CONFIG} beside the "
                          "bitstream)")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DriverError(f"{path}: not valid JSON ({e})") from None
    if cfg.get("format") != CONFIG_FORMAT:
        raise DriverError(f"{path}: format {cfg.get('format')!r}, expected {CONFIG_FORMAT!r}")
    return check_config(cfg, str(path))


# ------------------------------------------------------------------------------------------ packing


def quantize(images, cfg: dict, clip: bool = False) -> np.ndarray:
    """Float images (N, C, H, W) -> the integers of the lowered graph's input quantizer: round_half_even(x /
    2^input_exp) in input_bits two's complement (float32 arithmetic, as the reference and onnxruntime).

    A value outside the quantizer's range (or infinite) is refused, naming the first one, unless ``clip``: then it
    saturates to the range, as the network's input quantizer does. NaN is always refused."""
    x = np.asarray(images, dtype=np.float32)
    shape = tuple(cfg["input_shape"])
    if x.ndim == len(shape):
        x = x[None]
    if tuple(x.shape[1:]) != shape:
        raise DriverError(f"images of shape {tuple(x.shape[1:])}, the accelerator takes {shape}")
    bits, step = cfg["input_bits"], np.float32(2.0 ** cfg["input_exp"])
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.round(x / step)
    bad = np.isnan(x) if clip else ~((q >= lo) & (q <= hi))  # NaN compares false: refused either way
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DriverError(f"{int(bad.sum())} pixel value(s) outside the input range {lo * step:g} .. {hi * step:g} "
                          f"of the {bits}-bit input quantizer (first: {x[first]:g} at image, channel, row, column "
                          f"{first}){'' if clip else '; clip=True (--clip) saturates them as the quantizer does'}")
    return np.clip(q, lo, hi).astype(np.int64)


def _as_q0(q0, cfg: dict) -> np.ndarray:
    q = np.asarray(q0)
    shape = tuple(cfg["input_shape"])
    if q.ndim == len(shape):
        q = q[None]
    if tuple(q.shape[1:]) != shape:
        raise DriverError(f"integer images of shape {tuple(q.shape[1:])}, the accelerator takes {shape}")
    if not np.issubdtype(q.dtype, np.integer):
        raise DriverError(f"pack takes quantized integer images (quantize() first), got dtype {q.dtype}")
    q = q.astype(np.int64)
    bits = cfg["input_bits"]
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if q.size and (q.min() < lo or q.max() > hi):
        raise DriverError(f"image values {q.min()} .. {q.max()} outside the {bits}-bit input range {lo} .. {hi}")
    return q


def pack(q0, cfg: dict) -> np.ndarray:
    """Integer images (N, C, H, W) -> the MM2S buffer bytes (uint8, N * H * W * dma_in_width / 8)."""
    q = _as_q0(q0, cfg)
    bits, word = cfg["input_bits"], cfg["dma_in_width"]
    n, c, h, w = q.shape
    pixels = q.transpose(0, 2, 3, 1).reshape(-1, c) & ((1 << bits) - 1)   # two's complement fields
    field = ((pixels[:, :, None] >> np.arange(bits)) & 1).astype(np.uint8)  # (pixels, C, bits), LSB first
    bitmap = np.zeros((len(pixels), word), np.uint8)
    bitmap[:, :c * bits] = field.reshape(len(pixels), c * bits)
    return np.packbits(bitmap, axis=1, bitorder="little").reshape(-1)


def unpack(buffer, n: int, cfg: dict, check: bool = True) -> np.ndarray:
    """The S2MM buffer bytes of ``n`` images -> logits (n, classes) int64. ``check``: the bits above logit_bits
    must repeat the sign (the sign extension of the accelerator and the adapter); anything else is a DriverError
    (a buffer that the DMA did not fill, or the wrong layout)."""
    k, word, lb = cfg["classes"], cfg["dma_out_width"] // 8, cfg["logit_bits"]
    buf = np.ascontiguousarray(buffer).reshape(-1).view(np.uint8)  # any dtype: its bytes
    need = n * k * word
    if buf.size < need:
        raise DriverError(f"output buffer of {buf.size} bytes, {n} images x {k} logits x {word} bytes = {need} "
                          "expected")
    bitmap = np.unpackbits(buf[:need].reshape(n * k, word), axis=1, bitorder="little")
    value = bitmap[:, :lb].astype(np.int64) @ (np.int64(1) << np.arange(lb, dtype=np.int64))
    sign = bitmap[:, lb - 1].astype(np.int64)
    value -= sign << lb
    if check:
        bad = np.nonzero(np.any(bitmap[:, lb:] != bitmap[:, lb - 1:lb], axis=1))[0]
        if bad.size:
            i = int(bad[0])
            raise DriverError(f"output word {i} (image {i // k}, class {i % k}) is not a sign-extended "
                              f"{lb}-bit logit: bytes {buf[i * word:(i + 1) * word].tobytes().hex()}")
    return value.reshape(n, k)


# ------------------------------------------------------------------------------------------ backends


class PynqBackend:
    """The PYNQ-Z2 board: ``pynq.Overlay`` of the .bit (with the .hwh beside it), the AXI DMA cell ``dma``.

    PYNQ's simple-mode DMA channels refuse a transfer whose address is not a multiple of the memory-side width or
    that is longer than ``2**c_sg_length_width - 1`` bytes; both limits come from the DMA's parameters in the .hwh
    (the runtime configuration where the overlay lacks them). ``timeout_s``: the deadline of each wait."""

    name = "pynq"

    def __init__(self, bitfile: str | Path, cfg: dict, download: bool = True, timeout_s: float = 10.0):
        try:
            import pynq
        except ImportError as e:
            raise DriverError(f"the pynq package is not importable ({e}): the board backend runs on a PYNQ "
                              "image; off the board open an RTL directory (simulation) instead") from None
        if not timeout_s > 0:
            raise DriverError(f"timeout must be a positive number of seconds, got {timeout_s}")
        self.pynq = pynq
        self.cfg = cfg
        self.timeout_s = float(timeout_s)
        self.overlay = pynq.Overlay(str(bitfile), download=download)
        cell = cfg.get("dma_cell", DMA_CELL)
        ip = getattr(self.overlay, "ip_dict", None)
        if ip is not None and cell not in ip:
            raise DriverError(f"{bitfile}: no IP {cell!r} in the overlay (IPs: {', '.join(sorted(ip))})")
        self.dma = getattr(self.overlay, cell)
        params = ((ip or {}).get(cell) or {}).get("parameters") or {}
        try:
            self.recv_align = int(params.get("c_m_axi_s2mm_data_width", cfg["dma_memory_width"])) // 8
            self.max_transfer = (1 << int(params.get("c_sg_length_width", 26))) - 1
        except ValueError as e:
            raise DriverError(f"{bitfile}: the DMA's parameters in the .hwh are not numbers ({e})") from None
        self._bufs: dict = {}

    def _buffer(self, key: str, nbytes: int):
        """A contiguous buffer of exactly ``nbytes`` (kept for the next batch of the same size)."""
        buf = self._bufs.get((key, nbytes))
        if buf is None:
            buf = self.pynq.allocate(shape=(nbytes,), dtype=np.uint8)
            self._bufs[(key, nbytes)] = buf
        return buf

    @staticmethod
    def _recv(channel, buf, start: int, nbytes: int) -> None:
        try:
            channel.transfer(buf, start=start, nbytes=nbytes)
        except TypeError:  # PYNQ without start/nbytes: a view of the buffer
            channel.transfer(buf[start:start + nbytes])

    def _wait(self, channel, what: str) -> None:
        """``channel.wait()`` once the channel is idle (or has stopped on an error, which PYNQ's ``wait()`` names);
        a DriverError naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + self.timeout_s
        while not channel.idle and not getattr(channel, "error", False):
            if time.monotonic() > deadline:
                raise DriverError(f"{what} did not finish within {self.timeout_s:g} s (the DMA channel is still "
                                  "busy; load the overlay again before the next run)")
        try:
            channel.wait()
        except RuntimeError as e:
            raise DriverError(f"{what}: {e}") from None

    def execute(self, buffers: list, counts: list[int]) -> tuple[list, list[dict]]:
        cfg = self.cfg
        k = cfg["classes"]
        per_image = k * cfg["dma_out_width"] // 8
        slot = -(-per_image // self.recv_align) * self.recv_align  # each image's logits start aligned
        outs, timings = [], []
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        for data, n in zip(buffers, counts):
            if data.size > self.max_transfer:
                raise DriverError(f"a batch of {n} images is {data.size} bytes, over the DMA's largest transfer of "
                                  f"{self.max_transfer} bytes: use a smaller batch")
            ibuf = self._buffer("in", data.size)
            obuf = self._buffer("out", n * slot)
            ibuf[:] = data
            if hasattr(ibuf, "flush"):
                ibuf.flush()
            t0 = time.perf_counter()
            self._recv(recv, obuf, 0, per_image)
            send.transfer(ibuf)
            for i in range(n):
                self._wait(recv, f"the S2MM transfer of image {i} of a batch of {n} (its {k} logits, "
                                 f"{per_image} bytes, ended by the accelerator's tlast)")
                if i + 1 < n:
                    self._recv(recv, obuf, (i + 1) * slot, per_image)
            self._wait(send, f"the MM2S transfer of a batch of {n} images ({data.size} bytes)")
            t1 = time.perf_counter()
            if hasattr(obuf, "invalidate"):
                obuf.invalidate()
            outs.append(np.array(obuf, dtype=np.uint8).reshape(n, slot)[:, :per_image].reshape(-1))
            timings.append({"images": n, "latency_s": t1 - t0})
        return outs, timings

    def close(self) -> None:
        for buf in self._bufs.values():
            if hasattr(buf, "freebuffer"):
                buf.freebuffer()
        self._bufs.clear()


SIM_TOP = "instabnn_deploy_sim_top"


SIM_TOP_TEMPLATE = Path(__file__).resolve().parent / "sim_top.sv"


def sim_top_verilog(cfg: dict) -> str:
    """The simulated DMA side (``sim_top.sv``): the board's adapter (``instabnn_dma_wrapper``) with its DMA-width
    streams on the port names of ``cosim_harness``'s device, held idle for 16 cycles after reset."""
    from instabnn.hw.bitstream.render import render

    return render(SIM_TOP_TEMPLATE, "instabnn.deploy.driver", dma_in_width=cfg["dma_in_width"],
                  dma_out_width=cfg["dma_out_width"])


class SimBackend:
    """The RTL directory in Verilator (``instabnn.sim.cosim``'s plain C++ harness) behind the board's DMA adapter:
    the source streams the MM2S buffer bytes as DMA words, the sink collects the S2MM words, and the cycle stamps
    give the simulated hardware's timing at the manifest clock. All batches of one ``run`` go through one
    simulation (one Verilator build), back to back."""

    name = "sim"

    def __init__(self, rtl_dir: str | Path, cfg: dict, work: str | Path | None = None):
        from instabnn.sim import cosim  # the instabnn package: off the board only

        self.rtl_dir = Path(rtl_dir).resolve()
        self.cfg = cfg
        self.work = Path(work) if work else self.rtl_dir.parent / "deploy-sim"
        self.manifest = cosim.load_manifest(self.rtl_dir)
        self.sim_wall_s = 0.0
        self.sim_images = 0

    def _sources(self) -> list[str]:
        from instabnn.hw.bitstream import load_accelerator
        from instabnn.hw.bitstream.pynq_z2 import WRAPPER_TOP, pynq_wrapper_verilog

        src = self.work / "src"
        src.mkdir(parents=True, exist_ok=True)
        (src / f"{WRAPPER_TOP}.v").write_text(pynq_wrapper_verilog(load_accelerator(self.rtl_dir)))
        (src / f"{SIM_TOP}.sv").write_text(sim_top_verilog(self.cfg))
        return [str((src / f"{WRAPPER_TOP}.v").resolve()), str((src / f"{SIM_TOP}.sv").resolve())]

    def execute(self, buffers: list, counts: list[int]) -> tuple[list, list[dict]]:
        from instabnn.sim import cosim

        cfg, m = self.cfg, self.manifest
        din, dout = cfg["dma_in_width"] // 8, cfg["dma_out_width"] // 8
        n = int(sum(counts))
        data = np.concatenate([np.asarray(b, np.uint8).reshape(-1) for b in buffers])
        h, w = cfg["input_shape"][1:]
        if data.size != n * h * w * din:
            raise DriverError(f"input buffers of {data.size} bytes for {n} images ({n * h * w * din} expected)")
        self.work.mkdir(parents=True, exist_ok=True)
        words = data.reshape(-1, din)[:, ::-1]  # little-endian words -> big-endian hex
        (self.work / "images.mem").write_text("\n".join(bytes(r).hex() for r in words) + "\n")
        sim_m = dict(m, top=SIM_TOP, sources=list(m["sources"]) + self._sources())
        cpf = m.get("cycles_per_frame_estimate") or 100_000
        max_cycles = int((n + 2) * cpf * cosim.MAX_CYCLES_PER_IMAGE_FACTOR) + 100_000
        t0 = time.perf_counter()
        params = {**cosim.harness_parameters(m, n, cfg["dma_in_width"], cfg["dma_out_width"]),
                  "IN_STALL": 0, "OUT_STALL": 0, "SEED": 1}
        result = cosim.run_verilator_harness(self.rtl_dir, sim_m, self.work, params, max_cycles)
        self.build_and_run_s = time.perf_counter() - t0
        if result.get("tlast_errors"):
            raise DriverError(f"the accelerator's m_axis_tlast was wrong {result['tlast_errors']} time(s): the "
                              "per-image S2MM transfers on the board would split the logits wrongly")
        run_dir = result["dir"]
        lines = [s for s in (run_dir / "logits.mem").read_text().split() if not s.startswith("//")]
        out = np.frombuffer(b"".join(bytes.fromhex(s.zfill(2 * dout))[::-1] for s in lines), np.uint8)
        stamps = cosim.read_memh(run_dir / "cycles.mem", 64, signed=False).reshape(n, 2)
        self.sim_wall_s += float(result["seconds"])
        self.sim_images += n
        self.last_result = {k: v for k, v in result.items() if k != "dir"}
        hz = cfg["clock_mhz"] * 1e6
        outs, timings, first = [], [], 0
        per_image = cfg["classes"] * dout
        for c in counts:
            outs.append(out[first * per_image:(first + c) * per_image].copy())
            cycles = int(stamps[first + c - 1, 1] - stamps[first, 0])
            timings.append({"images": int(c), "latency_cycles": cycles, "latency_s": cycles / hz})
            first += c
        self.stamps = stamps
        return outs, timings

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------ the accelerator


class Accelerator:
    """The accelerator behind one backend; see the module docstring."""

    def __init__(self, backend, cfg: dict):
        self.backend = backend
        self.cfg = cfg
        self.batches: list[dict] = []

    @classmethod
    def open(cls, path: str | Path, config: str | Path | None = None, work: str | Path | None = None,
             download: bool = True, timeout_s: float = 10.0) -> "Accelerator":
        """``path``: a ``.bit`` (``.hwh`` and ``accelerator_runtime.json`` beside it, or ``config``), a folder
        holding one ``.bit`` (the ``make deploy`` folder), or an RTL directory with ``accelerator.json``
        (simulation; ``work``: its build folder). ``timeout_s``: the board's deadline for each DMA transfer."""
        path = Path(path)
        if path.is_dir() and (path / "accelerator.json").is_file():
            cfg = load_config(config) if config else runtime_config(path)
            return cls(SimBackend(path, cfg, work), cfg)
        if path.is_dir():
            bits = sorted(path.glob("*.bit"))
            if len(bits) != 1:
                raise DriverError(f"{path}: neither an RTL directory (accelerator.json) nor a folder with one .bit "
                                  f"(found {len(bits)})")
            path = bits[0]
        if path.suffix != ".bit":
            raise DriverError(f"{path}: not a .bit file or an RTL directory")
        if not path.is_file():
            raise DriverError(f"{path}: no such bitstream")
        if not path.with_suffix(".hwh").is_file():
            raise DriverError(f"{path.with_suffix('.hwh')}: missing (pynq's Overlay needs the .hwh beside the .bit)")
        cfg = load_config(config or path.parent / RUNTIME_CONFIG)
        return cls(PynqBackend(path, cfg, download=download, timeout_s=timeout_s), cfg)

    # packing (pure functions of the configuration)
    def quantize(self, images, clip: bool = False) -> np.ndarray:
        return quantize(images, self.cfg, clip)

    def pack(self, q0) -> np.ndarray:
        return pack(q0, self.cfg)

    def unpack(self, buffer, n: int) -> np.ndarray:
        return unpack(buffer, n, self.cfg)

    def run(self, q0, batch: int = 64) -> np.ndarray:
        """Integer images (N, C, H, W) -> logits (N, classes) int64, ``batch`` images per DMA transfer."""
        q = _as_q0(q0, self.cfg)
        if batch < 1:
            raise DriverError(f"batch must be >= 1, got {batch}")
        chunks = [q[i:i + batch] for i in range(0, len(q), batch)]
        if not chunks:
            return np.zeros((0, self.cfg["classes"]), np.int64)
        buffers = [self.pack(c) for c in chunks]
        outs, timings = self.backend.execute(buffers, [len(c) for c in chunks])
        self.batches.extend(timings)
        return np.concatenate([self.unpack(o, len(c)) for o, c in zip(outs, chunks)])

    def classify(self, images, batch: int = 64, clip: bool = False) -> np.ndarray:
        """Float images -> classes; out-of-range pixels are refused unless ``clip`` (see :func:`quantize`)."""
        return self.run(self.quantize(images, clip), batch).argmax(axis=1)

    def timing(self) -> dict:
        """Frames per second and per-batch latency over the batches run so far (board: wall clock of the DMA
        transfers; simulation: the harness's cycle stamps at the manifest clock, i.e. the simulated hardware, plus
        the simulator's own speed)."""
        if not self.batches:
            return {"backend": self.backend.name, "images": 0}
        lat = np.array([b["latency_s"] for b in self.batches])
        n = int(sum(b["images"] for b in self.batches))
        out = {"backend": self.backend.name, "images": n, "batches": len(self.batches),
               "fps": n / float(lat.sum()), "batch_latency_s_mean": float(lat.mean()),
               "batch_latency_s_median": float(np.median(lat)), "batch_latency_s_max": float(lat.max())}
        if self.backend.name == "sim":
            out["clock_mhz"] = self.cfg["clock_mhz"]
            out["batch_latency_cycles_median"] = float(np.median([b["latency_cycles"] for b in self.batches]))
            st = self.backend.stamps
            if len(st) >= 4:  # steady state of the last run: one frame per cycles_per_frame
                a = len(st) // 2
                cpf = float(st[-1, 1] - st[a, 1]) / (len(st) - 1 - a)
                out["cycles_per_frame_streaming"] = cpf
                out["fps_streaming"] = self.cfg["clock_mhz"] * 1e6 / cpf
            out["first_image_latency_cycles"] = int(st[0, 1] - st[0, 0])
            out["simulator_images_per_s"] = self.backend.sim_images / max(self.backend.sim_wall_s, 1e-9)
        return out

    def reset_timing(self) -> None:
        self.batches = []

    def close(self) -> None:
        self.backend.close()


# ------------------------------------------------------------------------------------------ command line


def load_images(path: str | Path, cfg: dict, limit: int | None = None, clip: bool = False):
    """(q0, labels or None, reference logits or None) from an .npz with ``q0`` (quantized) or ``images`` (float,
    quantized by :func:`quantize` with ``clip``), optional ``labels`` and ``reference_logits``; the first ``limit``
    images (``limit`` >= 1) or all."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise DriverError(f"--limit {limit}: the number of images must be >= 1")
    if not path.is_file():
        raise DriverError(f"{path}: no such image file")
    with np.load(path) as z:
        if "q0" in z:
            q0 = z["q0"].astype(np.int64)
        elif "images" in z:
            try:
                q0 = quantize(z["images"], cfg, clip)
            except DriverError as e:
                raise DriverError(f"{path}: {e}") from None
        else:
            raise DriverError(f"{path}: neither 'q0' (quantized) nor 'images' (float) in it ({', '.join(z.files)})")
        labels = z["labels"] if "labels" in z else None
        ref = z["reference_logits"] if "reference_logits" in z else None
    sl = slice(None, limit)
    return q0[sl], None if labels is None else labels[sl], None if ref is None else ref[sl]


def format_timing(t: dict) -> str:
    if not t.get("images"):
        return "no images run"
    what = "simulated hardware" if t["backend"] == "sim" else "board, wall clock incl. Python/DMA set-up"
    lines = [f"{t['fps']:.1f} frames/s over {t['images']} images in {t['batches']} batch(es) ({what}); batch "
             f"latency median {1e3 * t['batch_latency_s_median']:.3f} ms, max {1e3 * t['batch_latency_s_max']:.3f} ms"]
    if t["backend"] == "sim":
        if "fps_streaming" in t:
            lines.append(f"streaming {t['fps_streaming']:.0f} frames/s ({t['cycles_per_frame_streaming']:.0f} "
                         f"cycles/frame at {t['clock_mhz']:g} MHz), first-image latency "
                         f"{t['first_image_latency_cycles']} cycles")
        lines.append(f"simulator speed {t['simulator_images_per_s']:.1f} images/s (Verilator wall clock)")
    return "\n".join(lines)


def _classify(a) -> dict:
    acc = Accelerator.open(a.accelerator, a.config, a.work, timeout_s=a.timeout)
    q0, labels, ref = load_images(a.images, acc.cfg, a.limit, a.clip)
    t0 = time.perf_counter()
    logits = acc.run(q0, a.batch)
    wall = time.perf_counter() - t0
    pred = logits.argmax(1)
    res = {"images": int(len(q0)), "batch": a.batch, "wall_s": wall, **acc.timing()}
    print(f"classified {len(q0)} images from {a.images} on {acc.backend.name} ({a.accelerator})")
    if labels is not None:
        res["accuracy"] = float(np.mean(pred == labels))
        print(f"accuracy {100 * res['accuracy']:.2f}%")
    if ref is not None:
        res["logits_mismatching_reference"] = int(np.sum(np.any(logits != ref, axis=1)))
        print(f"logits identical to the reference for {len(q0) - res['logits_mismatching_reference']} / {len(q0)} "
              "images")
    print(format_timing(res))
    print(f"total wall time {wall:.2f} s")
    acc.close()
    return res


def _bench(a) -> dict:
    if a.n < 1:
        raise DriverError(f"-n {a.n}: the number of images must be >= 1")
    acc = Accelerator.open(a.accelerator, a.config, a.work, timeout_s=a.timeout)
    if a.images:
        q0 = load_images(a.images, acc.cfg, clip=a.clip)[0]
        q0 = np.resize(q0, (a.n, *q0.shape[1:]))
    else:
        bits = acc.cfg["input_bits"]
        q0 = np.random.default_rng(a.seed).integers(-(1 << (bits - 1)), 1 << (bits - 1),
                                                    size=(a.n, *acc.cfg["input_shape"]))
    res = {"images": a.n, "by_batch": {}}
    for b in a.batch:
        acc.reset_timing()
        acc.run(q0, b)
        t = acc.timing()
        res["by_batch"][str(b)] = t
        print(f"batch {b}: " + format_timing(t).replace("\n", "\n    "))
    acc.close()
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="instabnn-deploy", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("classify", "bench"):
        s = sub.add_parser(name)
        s.add_argument("--accelerator", required=True,
                       help="a .bit (board), a folder with one .bit, or an RTL directory (Verilator simulation)")
        s.add_argument("--config", help=f"runtime configuration (default: {RUNTIME_CONFIG} beside the .bit)")
        s.add_argument("--work", help="simulation build folder (default: deploy-sim/ beside the RTL directory)")
        s.add_argument("--json", help="write the results here")
        s.add_argument("--timeout", type=float, default=10.0,
                       help="seconds each DMA transfer on the board may take before it is an error (default 10)")
        s.add_argument("--clip", action="store_true",
                       help="saturate float pixels outside the input quantizer's range (default: refuse them)")
        if name == "classify":
            s.add_argument("--images", required=True, help=".npz with q0 or images, optional labels / "
                                                           "reference_logits")
            s.add_argument("--batch", type=int, default=64)
            s.add_argument("--limit", type=int, help="the first N images only")
        else:
            s.add_argument("--images", help=".npz to draw the images from (default: random integers)")
            s.add_argument("-n", type=int, default=1000, help="images per batch size")
            s.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64, 256])
            s.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        res = _classify(a) if a.cmd == "classify" else _bench(a)
    except DriverError as e:
        print(f"instabnn-deploy: error: {e}", file=sys.stderr)
        return 2
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=float))
        print(f"wrote {a.json}")
    if a.cmd == "classify" and res.get("logits_mismatching_reference"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
