"""cocotb testbench of the per-channel affine unit ``hw/blocks/channel_affine/channel_affine.sv`` (golden:
:meth:`instabnn.hw.blocks.channel_affine.spec.ChannelAffineSpec.reference`, equal to the contract's ``AffineRequant`` or the
classifier's logit scale it was built from; ``tests/test_rtl_channel_affine.py`` checks that equality and runs
this testbench). The case file (environment ``INSTABNN_AFFINE_CASE``) holds the spec and the frame size.

* ``stream_full_rate``: exact outputs; the input taken at one beat per clock; every beat out exactly
  ``LATENCY`` = 4 edges after it went in (so N*C/PE clocks per frame).
* ``stream_idle_backpressure``: random source idle and sink backpressure; exact, nothing lost or added.
* ``reset_mid_stream``: a reset inside a frame; the stream restarts at channel fold 0 and every later beat is exact.
A mismatch names the frame, pixel and channel.
"""

from __future__ import annotations

import json

import numpy as np

import cocotb
from cocotb.triggers import RisingEdge

from instabnn.hw.blocks.channel_affine.spec import LATENCY, ChannelAffineSpec
from instabnn.hw.blocks.pool.spec import frame_words, frames_from_words
from instabnn.hw.blocks.common.axis_tb import AxisHarness, case_from_env

CASE_ENV = "INSTABNN_AFFINE_CASE"


class TB:
    def __init__(self, dut, test_seed: int):
        case, self.case_dir = case_from_env(CASE_ENV, "tests/test_rtl_channel_affine.py")
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

    def beats_per_frame(self) -> int:
        return self.pixels * self.spec.cf


@cocotb.test()
async def stream_full_rate(dut):
    tb = TB(dut, 1)
    await tb.axis.reset()
    n = max(tb.n_frames, 3)
    x = tb.frames(n)
    await tb.send(x)
    total = n * tb.beats_per_frame()
    await tb.axis.wait_beats("m_axis", total, total * 2 + 100)
    await tb.axis.idle_cycles(20)
    xin, yout = tb.axis.beats("s_axis"), tb.axis.beats("m_axis")
    assert len(xin) == len(yout) == total, f"{len(xin)} in, {len(yout)} out, expected {total}"
    assert np.array_equal(tb.check("stream_full_rate", xin, yout), x)
    cin, cout = np.array([c for c, _ in xin]), np.array([c for c, _ in yout])
    latencies = sorted(set((cout - cin).tolist()))
    (tb.case_dir / "result_stream_full_rate.json").write_text(json.dumps(
        {"latency": latencies, "cycles_per_frame": float(cin[-1] - cin[0] + 1) / n}))
    assert np.all(np.diff(cin) == 1), "the input was not taken at one beat per clock"
    assert latencies == [LATENCY], f"per-beat latency {latencies}, stated {LATENCY}"


@cocotb.test()
async def stream_idle_backpressure(dut):
    tb = TB(dut, 2)
    await tb.axis.reset()
    tb.axis.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
    x = tb.frames(tb.n_frames)
    await tb.send(x)
    total = tb.n_frames * tb.beats_per_frame()
    await tb.axis.wait_beats("m_axis", total, total * 20 + 200)
    await tb.axis.idle_cycles(40)
    assert len(tb.axis.beats("m_axis")) == total, "beats added"
    assert np.array_equal(tb.check("stream_idle_backpressure", tb.axis.beats("s_axis"), tb.axis.beats("m_axis")), x)
    tb.axis.set_idle_backpressure(None)


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
    total = 2 * tb.beats_per_frame()
    await tb.axis.wait_beats("m_axis", total, total * 2 + 100)
    await tb.axis.idle_cycles(20)
    assert len(tb.axis.beats("m_axis")) == total, "stale beats after the reset"
    assert np.array_equal(tb.check("reset_mid_stream", tb.axis.beats("s_axis"), tb.axis.beats("m_axis")), x)
