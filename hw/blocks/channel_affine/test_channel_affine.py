"""Testbench of the per-channel affine unit (``channel_affine.sv``): the spec equals the contract's layers, lint,
illegal parameters, and the cocotb tests (golden:
:meth:`~instabnn.hw.blocks.channel_affine.spec.ChannelAffineSpec.reference`, equal to the contract's
``AffineRequant`` or the classifier's logit scale it was built from). The pytest functions
build the unit with Verilator and run the ``@cocotb.test()``s below on it; the case (the spec and the frame size)
reaches them through :func:`~instabnn.hw.blocks.common.axis_tb.run_bench`.

* ``stream_full_rate``: exact outputs; the input taken at one beat per clock; every beat out exactly
  ``LATENCY`` = 5 edges after it went in (so N*C/PE clocks per frame).
* ``stream_idle_backpressure``: random source idle and sink backpressure; exact, nothing lost or added.
* ``reset_mid_stream``: a reset inside a frame; the stream restarts at channel fold 0 and every later beat is exact.
A mismatch names the frame, pixel and channel.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

import cocotb
from cocotb.triggers import RisingEdge

from instabnn.hw.blocks.channel_affine.spec import LATENCY, ChannelAffineSpec, write_const_file
from instabnn.hw.blocks.common.axis_tb import AxisHarness, idle_backpressure, read_case, run_bench
from instabnn.hw.blocks.pool.spec import frame_words, frames_from_words
from instabnn.contract import layers as L
from instabnn.hw.blocks.rtl_library import rtl_paths
from instabnn.hw.blocks.common.rtl_runner import lint_output_clean, verilator_lint

SOURCES = rtl_paths("channel_affine")


# ---------------------------------------------------------------------------------------------------------------
# cocotb side
# ---------------------------------------------------------------------------------------------------------------

class TB:
    def __init__(self, dut, test_seed: int):
        case, self.case_dir = read_case()
        spec = case["spec"]
        self.spec = ChannelAffineSpec(**{**spec, "mult": tuple(spec["mult"]), "bias": tuple(spec["bias"])})
        self.pixels, self.n_frames = int(case["pixels"]), int(case["n_frames"])
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        self.dut, self.log = dut, dut._log
        self.axis = AxisHarness(dut, ["s_axis"], ["m_axis"])

    def frames(self, n: int) -> np.ndarray:
        s = self.spec
        lo, hi = -(1 << (s.in_bits - 1)), (1 << (s.in_bits - 1)) - 1
        x = self.rng.integers(lo, hi + 1, size=(n, s.channels, self.pixels, 1))
        if n > 2:
            x[1], x[2] = hi, lo  # the extremes: products and sums at their widest
        return x

    async def send(self, x: np.ndarray):
        for words in frame_words(x, self.spec.channels, self.spec.pe, self.spec.in_bits):
            await self.axis.send("s_axis", words)

    def check(self, tag: str, x_beats, y_beats):
        s = self.spec
        shape = (s.channels, self.pixels, 1)
        x = frames_from_words([w for _, w in x_beats], shape, s.pe, s.in_bits)
        got = frames_from_words([w for _, w in y_beats], shape, s.pe, s.out_bits)
        expected = s.reference(x)
        bad = np.argwhere(got != expected)
        if len(bad):
            f, c, p, _ = bad[0]
            raise AssertionError(f"{tag}: {len(bad)} mismatches; first at frame {f}, pixel {p}, channel {c}: "
                                 f"expected {expected[f, c, p, 0]}, got {got[f, c, p, 0]}")
        return x

    async def wait_outputs(self, tag: str, n_frames: int, slowdown: float = 1.0):
        """Until the outputs of ``n_frames`` frames are out, then long enough that anything extra would be seen."""
        total = n_frames * self.beats_per_frame()
        await self.axis.wait_beats("m_axis", total, int(total * 2 * slowdown) + 200, f"{tag}: ")
        await self.axis.idle_cycles(40)  # nothing extra comes out

    def check_outputs(self, tag: str, n_frames: int) -> np.ndarray:
        """:meth:`check` on the beats recorded, which must be those of ``n_frames`` frames on either side."""
        x_beats, y_beats = self.axis.beats("s_axis"), self.axis.beats("m_axis")
        total = n_frames * self.beats_per_frame()
        assert len(x_beats) == len(y_beats) == total, f"{tag}: {len(x_beats)} in, {len(y_beats)} out, expected {total}"
        return self.check(tag, x_beats, y_beats)

    def beats_per_frame(self) -> int:
        return self.pixels * self.spec.cf


@cocotb.test()
async def stream_full_rate(dut):
    tb = TB(dut, 1)
    await tb.axis.reset()
    n = max(tb.n_frames, 3)
    x = tb.frames(n)
    await tb.send(x)
    await tb.wait_outputs("stream_full_rate", n)
    assert np.array_equal(tb.check_outputs("stream_full_rate", n), x), "the monitored input differs from the sent"
    xin, yout = tb.axis.beats("s_axis"), tb.axis.beats("m_axis")
    cin, cout = np.array([c for c, _ in xin]), np.array([c for c, _ in yout])
    latencies = sorted(set((cout - cin).tolist()))
    (tb.case_dir / "result_stream_full_rate.json").write_text(json.dumps(
        {"latency": latencies, "cycles_per_frame": float(cin[-1] - cin[0] + 1) / n}))
    assert np.all(np.diff(cin) == 1), "the input was not taken at one beat per clock"
    assert latencies == [LATENCY], f"per-beat latency {latencies}, stated {LATENCY}"


@cocotb.test()
async def stream_idle_backpressure(dut):
    tb = TB(dut, 2)
    await idle_backpressure(tb.axis, int(tb.rng.integers(1 << 30)), tb.n_frames, random_frames=tb.frames,
                            send_frames=tb.send, wait_outputs=lambda tag, n: tb.wait_outputs(tag, n, slowdown=10),
                            check_outputs=tb.check_outputs, result_dir=tb.case_dir)


@cocotb.test()
async def reset_mid_stream(dut):
    tb = TB(dut, 3)
    await tb.axis.reset()
    tb.axis.set_idle_backpressure(None)
    await tb.send(tb.frames(1))
    for _ in range(int(tb.rng.integers(2, tb.beats_per_frame() + 2))):
        await RisingEdge(dut.clk)
    # stop the source, reset (dropping the partial frame and anything in flight), then a clean run
    tb.axis.sources["s_axis"].clear()
    await tb.axis.reset()
    x = tb.frames(2)
    await tb.send(x)
    await tb.wait_outputs("reset_mid_stream", 2)
    assert np.array_equal(tb.check_outputs("reset_mid_stream", 2), x)  # nothing stale from before the reset


# ---------------------------------------------------------------------------------------------------------------
# pytest side
# ---------------------------------------------------------------------------------------------------------------

def _requant_spec(seed: int, channels: int, pe: int, acc_bits: int) -> ChannelAffineSpec:
    rng = np.random.default_rng(seed)
    bound = 1 << (acc_bits - 1)
    rq = L.affine_requant(rng.uniform(-2, 2, channels), rng.uniform(-1, 1, channels), -6, bound, -5, 8)
    return ChannelAffineSpec.from_requant(rq, acc_bits, pe)


def _classifier_spec(seed: int, classes: int, pe: int, acc_bits: int) -> ChannelAffineSpec:
    rng = np.random.default_rng(seed)
    head = L.classifier(rng.integers(-128, 128, (classes, 16)), rng.integers(-8, -4, classes),
                        rng.uniform(-3, 3, classes), -4, 64)
    return ChannelAffineSpec.from_classifier(head, acc_bits, pe)


def test_spec_reference_equals_the_contract_layers():
    rng = np.random.default_rng(0)
    rq = L.affine_requant(rng.uniform(-2, 2, 8), rng.uniform(-1, 1, 8), -6, 1 << 15, -5, 8)
    acc = rng.integers(-(1 << 15), 1 << 15, (5, 8, 3, 3))
    assert np.array_equal(ChannelAffineSpec.from_requant(rq, 16, 4).reference(acc), rq(acc))
    head = L.classifier(rng.integers(-128, 128, (10, 16)), rng.integers(-8, -4, 10), rng.uniform(-3, 3, 10), -4, 64)
    q = rng.integers(-128, 128, (6, 16, 8, 8))
    sums = L.global_sum(q) @ head.weight.T
    spec = ChannelAffineSpec.from_classifier(head, 22, 5)
    assert np.array_equal(spec.reference(sums), head(q))
    worst = np.full((1, 10), -(1 << 21))
    assert np.array_equal(spec.reference(worst), (worst << head.shift[None, :]) + head.bias[None, :])  # no clamp


CASES = [("requant", 16, 4, 18, 9), ("requant", 6, 3, 12, 5), ("logits", 10, 5, 22, 1), ("logits", 10, 1, 30, 1)]


@pytest.mark.parametrize("kind,channels,pe,in_bits,pixels", CASES, ids=[f"{c[0]}_c{c[1]}_pe{c[2]}" for c in CASES])
def test_channel_affine_cocotb(kind, channels, pe, in_bits, pixels, tmp_path, verilator_path):
    make = _requant_spec if kind == "requant" else _classifier_spec
    spec = make(channels + pe, channels, pe, in_bits)
    cfile = write_const_file(tmp_path / "consts.mem", spec)
    params = spec.rtl_parameters(cfile)
    ok, log = lint_output_clean(verilator_lint(SOURCES, "channel_affine", params, verilator_path))
    assert ok, log
    case = {"spec": asdict(spec), "pixels": pixels, "n_frames": 12, "seed": channels * 7 + pe}
    run_bench(__file__, case, sources=SOURCES, toplevel="channel_affine", parameters=params, directory=tmp_path,
              seed=pe)
    result = json.loads((tmp_path / "result_stream_full_rate.json").read_text())
    assert result["latency"] == [5]
    assert abs(result["cycles_per_frame"] - pixels * spec.cf) <= 0.02 * pixels * spec.cf


@pytest.mark.parametrize("override,message", [({"PE": 3}, "must divide"), ({"SHIFT": -1}, "SHIFT"),
                                              ({"CONST_FILE": '""'}, "CONST_FILE"), ({"OUT_BITS": 65}, "OUT_BITS")])
def test_illegal_parameters_are_fatal(override, message, tmp_path, verilator_path):
    spec = _requant_spec(1, 8, 4, 16)
    params = {**spec.rtl_parameters(write_const_file(tmp_path / "c.mem", spec)), **override}
    proc = verilator_lint(SOURCES, "channel_affine", params, verilator_path)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


SWEEP = [("requant", 32, 8, 20, 16), ("requant", 12, 4, 14, 9), ("requant", 7, 7, 10, 4), ("logits", 10, 2, 26, 1),
         ("logits", 100, 20, 24, 1), ("requant", 64, 16, 18, 3)]


@pytest.mark.slow
@pytest.mark.parametrize("kind,channels,pe,in_bits,pixels", SWEEP, ids=[f"{c[0]}_c{c[1]}_pe{c[2]}" for c in SWEEP])
def test_channel_affine_sweep(kind, channels, pe, in_bits, pixels, tmp_path, verilator_path):
    """>= 1000 frames over six parameter sets (200 frames per test, three tests each)."""
    make = _requant_spec if kind == "requant" else _classifier_spec
    spec = make(channels * pe, channels, pe, in_bits)
    params = spec.rtl_parameters(write_const_file(tmp_path / "consts.mem", spec))
    case = {"spec": asdict(spec), "pixels": pixels, "n_frames": 200, "seed": channels + pe}
    run_bench(__file__, case, sources=SOURCES, toplevel="channel_affine", parameters=params, directory=tmp_path,
              seed=pe)
