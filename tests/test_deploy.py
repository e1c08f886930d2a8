"""The runtime driver (deploy/driver.py) on its simulation backend and on a stub of the board's pynq package, its
DMA buffer packing, and the deployment folder (deploy/assemble.py, ``make deploy``).

The simulation backend runs the accelerator RTL behind the board's DMA adapter (``instabnn_dma_wrapper``) in
Verilator, fed the exact bytes that the DMA would read and decoding the exact bytes it would write; its logits must
equal the lowered graph's (the golden reference) for the whole digits test split."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import fake_run_folder, train_digits, tree_hashes

ROOT = Path(__file__).resolve().parents[1]

from instabnn.deploy import assemble as A
from instabnn.deploy import driver as D


def _cfg(c, bits, logit_bits, classes, hw=(4, 5), exp=-4):
    in_width = -(-c * bits // 8) * 8
    out_width = -(-logit_bits // 8) * 8
    return D.check_config({"format": D.CONFIG_FORMAT, "top": "t", "input_shape": [c, *hw], "classes": classes,
                           "input_lanes": c, "input_bits": bits, "input_exp": exp, "logit_bits": logit_bits,
                           "in_width": in_width, "out_width": out_width,
                           "dma_in_width": D.dma_stream_width(in_width),
                           "dma_out_width": D.dma_stream_width(out_width), "clock_mhz": 100.0})


CONFIGS = [_cfg(1, 8, 35, 10, (8, 8)), _cfg(3, 5, 19, 7), _cfg(5, 7, 40, 3, (2, 3)), _cfg(2, 4, 9, 4, (3, 3))]


# ------------------------------------------------------------------------------------------ independent codecs


def _decode_pixels(buf: bytes, cfg: dict, n: int) -> np.ndarray:
    """The accelerator's view of the MM2S bytes: per DMA word (little endian), the low in_width bits, C fields."""
    c, h, w = cfg["input_shape"]
    bits, word = cfg["input_bits"], cfg["dma_in_width"] // 8
    out = np.zeros((n, h, w, c), np.int64)
    flat = out.reshape(-1, c)
    assert len(buf) == n * h * w * word
    for i in range(n * h * w):
        v = int.from_bytes(buf[i * word:(i + 1) * word], "little") & ((1 << cfg["in_width"]) - 1)
        for k in range(c):
            f = (v >> (k * bits)) & ((1 << bits) - 1)
            flat[i, k] = f - (1 << bits) if f >> (bits - 1) else f
    return out.transpose(0, 3, 1, 2)


def _encode_logits(logits: np.ndarray, cfg: dict) -> bytes:
    """S2MM bytes of logits: each sign-extended to the DMA word, little endian."""
    word = cfg["dma_out_width"] // 8
    return b"".join(int(v).to_bytes(word, "little", signed=True) for v in np.asarray(logits).reshape(-1))


def _random_q0(cfg, n, rng):
    bits = cfg["input_bits"]
    q = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(n, *cfg["input_shape"]))
    q[0].flat[0], q[0].flat[-1] = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return q


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"C{c['input_shape'][0]}x{c['input_bits']}b-L{c['logit_bits']}")
def test_pack_unpack_round_trip(cfg):
    rng = np.random.default_rng(cfg["logit_bits"])
    q0 = _random_q0(cfg, 5, rng)
    buf = D.pack(q0, cfg)
    c, h, w = cfg["input_shape"]
    assert buf.dtype == np.uint8 and buf.size == 5 * h * w * cfg["dma_in_width"] // 8
    assert np.array_equal(_decode_pixels(buf.tobytes(), cfg, 5), q0)
    # bits above the C fields are zero (the adapter ignores them, the harness writes them as zero)
    used = c * cfg["input_bits"]
    words = [int.from_bytes(bytes(r), "little") for r in buf.reshape(-1, cfg["dma_in_width"] // 8)]
    assert all(v >> used == 0 for v in words)

    lb = cfg["logit_bits"]
    logits = rng.integers(-(1 << (lb - 1)), 1 << (lb - 1), size=(6, cfg["classes"]), dtype=np.int64)
    logits[0, 0], logits[0, -1], logits[1, 0] = -(1 << (lb - 1)), (1 << (lb - 1)) - 1, -1
    raw = np.frombuffer(_encode_logits(logits, cfg), np.uint8)
    got = D.unpack(raw, 6, cfg)
    assert got.dtype == np.int64 and np.array_equal(got, logits)
    assert np.any(got < 0)


def test_pack_and_unpack_reject_bad_input():
    cfg = CONFIGS[1]
    with pytest.raises(D.DriverError, match="outside the 5-bit input range"):
        D.pack(np.full((1, *cfg["input_shape"]), 16), cfg)
    with pytest.raises(D.DriverError, match="integer images"):
        D.pack(np.zeros((1, *cfg["input_shape"]), np.float32), cfg)
    with pytest.raises(D.DriverError, match="shape"):
        D.pack(np.zeros((1, 1, 4, 5), np.int64), cfg)
    raw = bytearray(_encode_logits(np.array([[5, -3, 0, 1, 2, 3, 4]]), cfg))
    raw[2] ^= 0x80  # bit 23: above logit_bits 19, no longer a sign extension
    with pytest.raises(D.DriverError, match="image 0, class 0"):
        D.unpack(np.frombuffer(bytes(raw), np.uint8), 1, cfg)
    with pytest.raises(D.DriverError, match="expected"):
        D.unpack(np.zeros(10, np.uint8), 1, cfg)


def test_quantize_rounds_half_even_and_refuses_or_clips_out_of_range():
    cfg = CONFIGS[3]  # 4 bits, exponent -4: step 1/16, range -8 .. 7
    x = np.zeros((1, *cfg["input_shape"]), np.float32)
    x.flat[:6] = [0.5 / 16, 1.5 / 16, -2.5 / 16, 7 / 16, -8 / 16, 3 / 16]
    assert D.quantize(x, cfg).flat[:6].tolist() == [0, 2, -2, 7, -8, 3]
    for value in (100.0, -100.0, 7.5 / 16, np.inf, 1000):
        y = x.copy()
        y.flat[7] = value
        with pytest.raises(D.DriverError, match=r"1 pixel value\(s\) outside the input range -0.5 .. 0.4375") as e:
            D.quantize(y, cfg)
        assert "\n" not in str(e.value) and "clip=True" in str(e.value)
        assert D.quantize(y, cfg, clip=True).flat[7] == (7 if value > 0 else -8)
    y = x.copy()
    y.flat[3] = np.nan
    for clip in (False, True):
        with pytest.raises(D.DriverError, match="nan at image, channel, row, column"):
            D.quantize(y, cfg, clip=clip)
    acc = D.Accelerator(backend=None, cfg=cfg)  # classify applies the same policy as quantize
    y.flat[3] = 100.0
    with pytest.raises(D.DriverError, match="outside the input range"):
        acc.classify(y)


# ------------------------------------------------------------------------------------------ a stub pynq


class _Buffer(np.ndarray):
    physical_address = 0

    def flush(self):
        self.flushed = True

    def invalidate(self):
        pass

    def freebuffer(self):
        pass


def fake_pynq(model, cfg: dict, log: list, hwh_parameters: bool = True, sg_length_width: int | None = None,
              tlast_missing: bool = False, decode_error: bool = False) -> types.ModuleType:
    """A stand-in for the pynq package (PYNQ 3): ``Overlay(bit).dma`` with simple-mode channels. MM2S bytes go
    through ``model(q0) -> logits`` (decoded and encoded independently of the driver); the S2MM channel delivers one
    image per transfer (the accelerator's tlast ends it) and must have room for it.

    The channels keep PYNQ's rules: a transfer only on an idle channel, at an address that is a multiple of the
    memory-side width (``c_m_axi_*_data_width / 8``), at most ``2**c_sg_length_width - 1`` bytes, and (the DMA
    writes where it is told) inside the buffer; ``pynq.allocate`` gives page-aligned buffers. The DMA's parameters
    are those of the generated block design (``hwh_parameters``: the overlay's ip_dict carries them, as the .hwh
    does). ``wait()`` on a busy channel fails the test (PYNQ's would spin for ever: the driver must wait for
    ``idle`` with a deadline). ``tlast_missing``: the last image's logits never end their transfer;
    ``decode_error``: the S2MM channel stops on a decode error (PYNQ's ``wait()`` raises it)."""
    from instabnn.hw.bitstream.pynq_z2 import dma_parameters

    params = dma_parameters(cfg["in_width"], cfg["out_width"])
    if sg_length_width is not None:
        params["c_sg_length_width"] = str(sg_length_width)
    pending: list[bytes] = []
    next_address = [0x1000_0000]

    class Channel:
        def __init__(self, width_key):
            self.align = int(params[width_key]) // 8
            self.max_size = (1 << int(params["c_sg_length_width"])) - 1
            self.busy = False
            self.error = False

        @property
        def idle(self):
            return not self.busy

        def check(self, buf, start, nbytes):
            if self.busy:
                raise RuntimeError("DMA channel not idle")
            nbytes = nbytes or buf.nbytes - start
            if nbytes > self.max_size:
                raise ValueError(f"Transfer size is {nbytes} bytes, which exceeds the maximum DMA buffer size "
                                 f"{self.max_size}.")
            if (buf.physical_address + start) % self.align:
                raise RuntimeError(f"DMA does not support unaligned transfers; Starting address must be aligned to "
                                   f"{self.align} bytes.")
            assert 0 <= start and start + nbytes <= buf.nbytes, "transfer beyond the buffer"
            return nbytes

        def wait(self):
            if self.error:
                raise RuntimeError("DMA Decode Error (invalid address)")
            assert not self.busy, "wait() on a busy channel: PYNQ's would never return"

    class Recv(Channel):
        armed = None

        def transfer(self, buf, start=0, nbytes=0):
            nbytes = self.check(buf, start, nbytes)
            self.armed, self.busy = (buf, start, nbytes), True
            log.append(("recv", start, nbytes))
            self.error = decode_error
            self._deliver()

        def _deliver(self):
            if self.armed is not None and pending and not self.error:
                buf, start, nbytes = self.armed
                chunk = pending.pop(0)
                assert len(chunk) <= nbytes, "S2MM buffer shorter than an image's logits"
                buf.view(np.uint8).reshape(-1)[start:start + len(chunk)] = np.frombuffer(chunk, np.uint8)
                self.armed, self.busy = None, False

    class Send(Channel):
        def __init__(self, recv):
            super().__init__("c_m_axi_mm2s_data_width")
            self.recv = recv

        def transfer(self, buf, start=0, nbytes=0):
            nbytes = self.check(buf, start, nbytes)
            data = buf.tobytes()[start:start + nbytes]
            log.append(("send", len(data)))
            assert getattr(buf, "flushed", False), "MM2S buffer not flushed"
            c, h, w = cfg["input_shape"]
            n = len(data) // (h * w * cfg["dma_in_width"] // 8)
            logits = model(_decode_pixels(data, cfg, n))
            pending.extend(_encode_logits(row, cfg) for row in logits)
            if tlast_missing:
                pending.pop()
            self.recv._deliver()

    class Dma:
        def __init__(self):
            self.recvchannel = Recv("c_m_axi_s2mm_data_width")
            self.sendchannel = Send(self.recvchannel)

    class Overlay:
        def __init__(self, bitfile, download=True):
            assert Path(bitfile).with_suffix(".hwh").is_file()
            self.ip_dict = {"dma": {"parameters": dict(params)} if hwh_parameters else {}, "ps7": {}}
            self.dma = Dma()
            log.append(("overlay", Path(bitfile).name))

    def allocate(shape, dtype):
        buf = np.zeros(shape, dtype).view(_Buffer)
        buf.physical_address = next_address[0]
        next_address[0] += -(-buf.nbytes // 4096) * 4096 + 4096
        return buf

    mod = types.ModuleType("pynq")
    mod.Overlay, mod.allocate = Overlay, allocate
    return mod


STUB_PYNQ = """
import json
import numpy as np

_z = np.load({npz!r})
_cfg = json.load(open({cfg!r}))
_pending = []


class _Buf(np.ndarray):
    def flush(self): pass
    def invalidate(self): pass
    def freebuffer(self): pass


def allocate(shape, dtype):
    return np.zeros(shape, dtype).view(_Buf)


class _Recv:
    armed = None
    @property
    def idle(self): return self.armed is None
    def transfer(self, buf, start=0, nbytes=0):
        self.armed = (buf, start, nbytes or buf.nbytes)
        self.deliver()
    def deliver(self):
        if self.armed is not None and _pending:
            buf, start, nbytes = self.armed
            chunk = _pending.pop(0)
            assert len(chunk) <= nbytes
            buf[start:start + len(chunk)] = np.frombuffer(chunk, np.uint8)
            self.armed = None
    def wait(self):
        assert self.armed is None, "DMA wait timed out"


class _Send:
    idle = True
    def __init__(self, recv): self.recv = recv
    def transfer(self, buf, start=0, nbytes=0):
        per = int(np.prod(_cfg["input_shape"][1:])) * _cfg["dma_in_width"] // 8
        q = _z["q0"].astype(np.int64)
        word = _cfg["dma_out_width"] // 8
        for i in range(len(buf) // per):
            img = bytes(buf[i * per:(i + 1) * per])
            pix = np.frombuffer(img, np.uint8).astype(np.int8).astype(np.int64)  # 8-bit single-channel pixels
            k = int(np.nonzero((q.reshape(len(q), -1) == pix).all(1))[0][0])
            _pending.append(b"".join(int(v).to_bytes(word, "little", signed=True)
                                     for v in _z["reference_logits"][k]))
        self.recv.deliver()
    def wait(self): pass


class _Dma:
    def __init__(self):
        self.recvchannel = _Recv()
        self.sendchannel = _Send(self.recvchannel)


class Overlay:
    def __init__(self, bitfile, download=True):
        self.ip_dict = {{"dma": {{}}}}
        self.dma = _Dma()
"""


def _bit_folder(path: Path, cfg: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "design.bit").write_bytes(b"not a real bitstream")
    (path / "design.hwh").write_text("<hwh/>")
    (path / D.RUNTIME_CONFIG).write_text(json.dumps(cfg))
    return path / "design.bit"


def test_pynq_backend_through_a_stub_overlay(tmp_path, monkeypatch):
    cfg = CONFIGS[1]
    rng = np.random.default_rng(3)
    weights = rng.integers(-50, 51, size=(int(np.prod(cfg["input_shape"])), cfg["classes"]))
    model = lambda q: q.reshape(len(q), -1) @ weights  # noqa: E731
    log: list = []
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(model, cfg, log))
    acc = D.Accelerator.open(_bit_folder(tmp_path, cfg))
    assert isinstance(acc.backend, D.PynqBackend)
    q0 = _random_q0(cfg, 21, rng)
    logits = acc.run(q0, batch=8)
    assert np.array_equal(logits, model(q0)) and np.any(logits < 0)
    per_image = cfg["classes"] * cfg["dma_out_width"] // 8
    assert [e for e in log if e[0] == "send"] == [("send", n * 20 * 2) for n in (8, 8, 5)]
    assert all(e[2] == per_image for e in log if e[0] == "recv") and sum(e[0] == "recv" for e in log) == 21
    t = acc.timing()
    assert t["backend"] == "pynq" and t["images"] == 21 and t["batches"] == 3 and t["fps"] > 0
    assert np.array_equal(acc.classify(q0[:3] * np.float32(2.0 ** cfg["input_exp"])), model(q0[:3]).argmax(1))


def test_driver_dma_rules_match_the_block_design():
    """driver.py repeats two rules of the bitstream flow (it is copied alone onto the board): they must agree."""
    from instabnn.hw.bitstream.pynq_z2 import dma_parameters, dma_stream_width

    for in_width in range(8, 520, 8):
        for out_width in (8, 16, 24, 40, 64, 136):
            params = dma_parameters(in_width, out_width)
            assert D.dma_stream_width(in_width) == dma_stream_width(in_width) == \
                int(params["c_m_axis_mm2s_tdata_width"])
            assert D.dma_memory_width(in_width, out_width) == int(params["c_m_axi_s2mm_data_width"]) == \
                int(params["c_m_axi_mm2s_data_width"])


# logits of 6 and 20 bytes per image against a 4- and an 8-byte memory side: image i's slot would start unaligned
UNALIGNED = [_cfg(1, 8, 12, 3, (3, 3)), _cfg(8, 8, 20, 5, (2, 2))]


def _linear_model(cfg, rng):
    """Logits = pixels @ random weights, small enough that every logit fits logit_bits."""
    inputs = int(np.prod(cfg["input_shape"]))
    w = max(1, min(50, ((1 << (cfg["logit_bits"] - 1)) - 1) // (inputs << (cfg["input_bits"] - 1))))
    weights = rng.integers(-w, w + 1, size=(inputs, cfg["classes"]))
    return lambda q: q.reshape(len(q), -1) @ weights  # noqa: E731


@pytest.mark.parametrize("hwh_parameters", [True, False], ids=["hwh", "runtime-config"])
@pytest.mark.parametrize("cfg", UNALIGNED, ids=lambda c: f"{c['classes']}x{c['dma_out_width'] // 8}B")
def test_receive_slots_are_aligned_for_pynq(tmp_path, monkeypatch, cfg, hwh_parameters):
    """Each image's S2MM transfer starts at a multiple of the DMA's memory-side width (PYNQ refuses others), taken
    from the .hwh's DMA parameters or, without them, from the runtime configuration."""
    per_image = cfg["classes"] * cfg["dma_out_width"] // 8
    align = D.dma_memory_width(cfg["in_width"], cfg["out_width"]) // 8
    assert per_image % align  # the layout these configurations are here for
    rng = np.random.default_rng(5)
    model = _linear_model(cfg, rng)
    log: list = []
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(model, cfg, log, hwh_parameters=hwh_parameters))
    acc = D.Accelerator.open(_bit_folder(tmp_path, cfg))
    q0 = _random_q0(cfg, 7, rng)
    assert np.array_equal(acc.run(q0, batch=4), model(q0))
    starts = [e[1] for e in log if e[0] == "recv"]
    assert len(starts) == 7 and all(s % align == 0 for s in starts) and all(e[2] == per_image for e in log
                                                                             if e[0] == "recv")


def test_fake_pynq_refuses_what_pynq_refuses(tmp_path):
    """The stub is not a rubber stamp: an unaligned start, an over-long transfer and a busy channel are refused as
    PYNQ refuses them."""
    cfg = UNALIGNED[0]
    pynq = fake_pynq(lambda q: np.zeros((len(q), cfg["classes"]), np.int64), cfg, [])
    _bit_folder(tmp_path, cfg)
    recv = pynq.Overlay(str(tmp_path / "design.bit")).dma.recvchannel
    buf = pynq.allocate(shape=(64,), dtype=np.uint8)
    with pytest.raises(RuntimeError, match="unaligned"):
        recv.transfer(buf, start=6, nbytes=6)
    with pytest.raises(ValueError, match="exceeds the maximum"):
        recv.transfer(pynq.allocate(shape=(1 << 26,), dtype=np.uint8))
    recv.transfer(buf, start=8, nbytes=6)
    with pytest.raises(RuntimeError, match="not idle"):
        recv.transfer(buf, start=16, nbytes=6)


def test_batch_over_the_dma_transfer_limit_is_refused(tmp_path, monkeypatch):
    cfg = CONFIGS[1]  # 20 pixels x 2 bytes per image
    log: list = []
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(_linear_model(cfg, np.random.default_rng(1)), cfg, log,
                                                       sg_length_width=8))  # transfers of at most 255 bytes
    acc = D.Accelerator.open(_bit_folder(tmp_path, cfg))
    q0 = _random_q0(cfg, 7, np.random.default_rng(2))
    with pytest.raises(D.DriverError, match=r"a batch of 7 images is 280 bytes, over the DMA's largest transfer of "
                                            r"255 bytes"):
        acc.run(q0, batch=7)
    assert not [e for e in log if e[0] == "send"]
    assert np.array_equal(acc.run(q0, batch=6)[:1], acc.run(q0[:1]))  # 240 bytes: fine


def test_missing_tlast_is_an_error_within_the_deadline(tmp_path, monkeypatch):
    """An accelerator whose last image never raises tlast leaves the S2MM transfer running: the driver gives up
    after its deadline, naming the image, instead of waiting for ever."""
    cfg = CONFIGS[1]
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(_linear_model(cfg, np.random.default_rng(1)), cfg, [],
                                                       tlast_missing=True))
    acc = D.Accelerator.open(_bit_folder(tmp_path, cfg), timeout_s=0.2)
    t0 = time.monotonic()
    with pytest.raises(D.DriverError, match=r"S2MM transfer of image 2 of a batch of 3 .* did not finish within "
                                            r"0\.2 s"):
        acc.run(_random_q0(cfg, 3, np.random.default_rng(2)), batch=3)
    assert time.monotonic() - t0 < 5
    with pytest.raises(D.DriverError, match="timeout must be a positive number"):
        D.Accelerator.open(_bit_folder(tmp_path, cfg), timeout_s=0)


def test_dma_error_is_named_without_waiting_for_the_deadline(tmp_path, monkeypatch):
    cfg = CONFIGS[1]
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(_linear_model(cfg, np.random.default_rng(1)), cfg, [],
                                                       decode_error=True))
    acc = D.Accelerator.open(_bit_folder(tmp_path, cfg), timeout_s=30)
    t0 = time.monotonic()
    with pytest.raises(D.DriverError, match=r"S2MM transfer of image 0 .*: DMA Decode Error \(invalid address\)"):
        acc.run(_random_q0(cfg, 2, np.random.default_rng(2)), batch=2)
    assert time.monotonic() - t0 < 5


def test_open_names_the_missing_file(tmp_path):
    with pytest.raises(D.DriverError, match="no such bitstream"):
        D.Accelerator.open(tmp_path / "x.bit")
    (tmp_path / "x.bit").write_bytes(b"")
    with pytest.raises(D.DriverError, match=r"x\.hwh"):
        D.Accelerator.open(tmp_path / "x.bit")
    (tmp_path / "x.hwh").write_text("")
    with pytest.raises(D.DriverError, match=D.RUNTIME_CONFIG):
        D.Accelerator.open(tmp_path / "x.bit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.DriverError, match="neither an RTL directory"):
        D.Accelerator.open(tmp_path / "empty")


def test_driver_imports_on_a_plain_pynq_image(tmp_path):
    """driver.py alone (as copied to the board) imports with torch, qonnx, finn, cocotb, onnx and instabnn
    unavailable."""
    code = ("import sys\n"
            "for m in ('torch', 'qonnx', 'finn', 'cocotb', 'onnx', 'instabnn', 'brevitas'):\n"
            "    sys.modules[m] = None\n"
            f"sys.path.insert(0, {str(ROOT / 'deploy')!r})\n"
            "import driver\n"
            "assert driver.Accelerator and driver.pack\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------ a real accelerator


_BUILT: dict = {}


@pytest.fixture
def rtl(tmp_path_factory):
    """The RTL directory of a digits baseline network trained for one epoch (made once per session)."""
    if "rtl" not in _BUILT:
        from instabnn.hw.compile import compiler as C
        from instabnn.hw import lower
        from instabnn.hw.compile import folding
        from instabnn.model.export import export_checkpoint

        out = tmp_path_factory.mktemp("deploy-baseline")
        ckpt = train_digits(out, "--variant", "baseline", "--epochs", "1")
        export_checkpoint(ckpt, out / "model.onnx", n_check=2)
        assert lower.main([str(out / "model.onnx"), "--out", str(out), "-n", "8", "--no-progress"]) == 0
        assert folding.main([str(out / "lowered.onnx"), "--target-fps", "20000"]) == 0
        C.compile_model(out / "lowered.onnx", out / "rtl", out / "folding.json")
        _BUILT["rtl"] = out / "rtl"
    return _BUILT["rtl"]


def test_sim_backend_classifies_the_digits_test_split_like_the_reference(rtl, tmp_path, verilator_path):
    """The whole digits test split (360 images) through pack -> DMA adapter + RTL (Verilator) -> unpack, in
    batches of 64: logits identical to the lowered graph's, and the simulated timing is the accelerator's."""
    from instabnn.model.data import digits_arrays
    from instabnn.sim import cosim

    m = cosim.load_manifest(rtl)
    model = cosim.lowered_model(m, rtl)
    q_ref, labels, _ = cosim.images_for("digits", None, model, m["input_shape"], None)
    images = digits_arrays()[2]
    acc = D.Accelerator.open(rtl, work=tmp_path / "sim")
    assert isinstance(acc.backend, D.SimBackend)
    q0 = acc.quantize(images)
    assert np.array_equal(q0, q_ref) and len(q0) == 360
    logits = acc.run(q0, batch=64)
    ref = cosim.reference_logits(model, q0, False)
    assert logits.shape == (360, 10) and logits.dtype == np.int64
    assert np.array_equal(logits, ref)
    assert np.mean(logits.argmax(1) == labels) == np.mean(ref.argmax(1) == labels)
    t = acc.timing()
    assert t["images"] == 360 and t["batches"] == 6
    cpf = m["cycles_per_frame_estimate"]
    assert t["cycles_per_frame_streaming"] <= 1.05 * cpf
    assert 0.5 * t["fps_streaming"] < t["fps"] <= t["fps_streaming"] * 1.01
    assert t["batch_latency_cycles_median"] >= 63 * cpf
    assert t["simulator_images_per_s"] > 0


def test_assemble_writes_the_board_folder_and_the_driver_runs_it(rtl, tmp_path, monkeypatch, capsys):
    from instabnn.sim import cosim

    bits = tmp_path / "bitstreams" / "pynq-z2-demo"
    cfg = D.runtime_config(rtl)
    _bit_folder(bits, cfg)
    (bits / "manifest.json").write_text(json.dumps({"model_sha256": cfg["model_sha256"]}))
    out = tmp_path / "deploy-demo"
    r = A.assemble(rtl, bits, out, n_images=40)
    assert r["bitstream"] and r["images"] == 40
    for f in A.FILES + ("design.bit", "design.hwh"):
        assert (out / f).is_file(), f
    assert (out / "driver.py").read_text() == (ROOT / "deploy" / "driver.py").read_text()
    assert D.load_config(out / D.RUNTIME_CONFIG) == cfg
    with np.load(out / "test_images.npz") as z:
        q0, labels, ref = z["q0"], z["labels"], z["reference_logits"]
    assert q0.shape == (40, 1, 8, 8) and labels.shape == (40,) and ref.shape == (40, 10)
    text = (out / "README.md").read_text()
    assert "design.bit" in text and "has been run on a PYNQ-Z2 board" in text

    # the board path end to end: the driver's CLI on the folder, a stub pynq looping through the lowered graph
    model = cosim.lowered_model(cosim.load_manifest(rtl), rtl)
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(lambda q: cosim.reference_logits(model, q, False), cfg, []))
    assert D.main(["classify", "--accelerator", str(out), "--images", str(out / "test_images.npz"), "--batch", "16",
                   "--json", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["logits_mismatching_reference"] == 0 and res["images"] == 40 and res["backend"] == "pynq"
    assert res["accuracy"] == float(np.mean(ref.argmax(1) == labels))
    assert "identical to the reference for 40 / 40" in capsys.readouterr().out

    # the example script as the board runs it (a separate Python process), with a pynq stub that answers each
    # image with its reference logits, looked up from the MM2S bytes
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "pynq.py").write_text(STUB_PYNQ.format(npz=str(out / "test_images.npz"), cfg=str(out / D.RUNTIME_CONFIG)))
    p = subprocess.run([sys.executable, str(out / "classify_digits.py"), "--batch", "7"], capture_output=True,
                       text=True, cwd=tmp_path, env={"PYTHONPATH": str(stub), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "identical to the reference for 40 / 40" in p.stdout and "single-image latency" in p.stdout

    # without a bitstream: the folder still assembles, and its README says how to build one
    r = A.assemble(rtl, tmp_path / "none", tmp_path / "nobit", n_images=10)
    assert r["bitstream"] is None and not list((tmp_path / "nobit").glob("*.bit"))
    assert "The bitstream is missing" in (tmp_path / "nobit" / "README.md").read_text()

    # a bitstream of another model is refused
    (bits / "manifest.json").write_text(json.dumps({"model_sha256": "0" * 64}))
    with pytest.raises(A.DeployError, match="manifest.json"):
        A.assemble(rtl, bits, tmp_path / "other", n_images=10)


def test_assemble_refuses_an_out_it_did_not_write(rtl, tmp_path, capsys):
    """--out at a run folder, at its checkpoint, or at an assembled folder the user added a file to: a one-line
    error naming it, exit 2, every file as it was; its own earlier folder is replaced."""
    run = tmp_path / "runs" / "demo"
    fake_run_folder(run)
    own = tmp_path / "deploy"
    assert A.main([str(rtl), "--out", str(own), "-n", "4"]) == 0
    assert A.main([str(rtl), "--out", str(own), "-n", "4"]) == 0  # its own: replaced
    (own / "notes.md").write_text("the user's")
    for out, why in ((run, "holds last.pt"), (run / "model.pt", "is a file, not a folder"), (own, "holds notes.md")):
        before = {"run": tree_hashes(run), "own": tree_hashes(own)}
        capsys.readouterr()
        assert A.main([str(rtl), "--out", str(out), "-n", "4"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and str(out) in err and why in err, err
        assert {"run": tree_hashes(run), "own": tree_hashes(own)} == before


@pytest.mark.parametrize("args, culprit", [
    (["classify", "--limit", "0"], "--limit 0"),
    (["classify", "--limit", "-3"], "--limit -3"),
    (["classify", "--images", "{float}"], "outside the input range"),
    (["bench", "-n", "0"], "-n 0"),
])
def test_cli_refuses_bad_counts_and_pixels(rtl, tmp_path, capsys, args, culprit):
    images = tmp_path / "images.npz"
    np.savez(images, q0=np.zeros((4, 1, 8, 8), np.int8))
    floats = tmp_path / "float.npz"
    np.savez(floats, images=np.full((2, 1, 8, 8), 1000.0, np.float32))
    before = tree_hashes(tmp_path)
    args = [a.replace("{float}", str(floats)) for a in args]
    if "--images" not in args:
        args += ["--images", str(images)]
    assert D.main([*args, "--accelerator", str(rtl), "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and culprit in err[0], err
    assert tree_hashes(tmp_path) == before


def test_assemble_names_a_missing_rtl_directory(tmp_path):
    with pytest.raises(A.DeployError, match=str(tmp_path / "nope")):
        A.assemble(tmp_path / "nope", None, tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(A.DeployError, match="accelerator.json"):
        A.assemble(tmp_path / "empty", None, tmp_path / "out")
    assert A.main([str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_bench_and_classify_on_the_simulation(rtl, tmp_path, verilator_path):
    out = tmp_path / "deploy"
    A.assemble(rtl, None, out, n_images=360)
    assert D.main(["classify", "--accelerator", str(rtl), "--work", str(tmp_path / "w1"), "--images",
                   str(out / "test_images.npz"), "--batch", "32", "--json", str(tmp_path / "c.json")]) == 0
    res = json.loads((tmp_path / "c.json").read_text())
    assert res["images"] == 360 and res["logits_mismatching_reference"] == 0 and res["backend"] == "sim"
    assert D.main(["bench", "--accelerator", str(rtl), "--work", str(tmp_path / "w2"), "-n", "64", "--batch", "1",
                   "64", "--json", str(tmp_path / "b.json")]) == 0
    b = json.loads((tmp_path / "b.json").read_text())["by_batch"]
    assert b["1"]["batch_latency_s_median"] < b["64"]["batch_latency_s_median"]
