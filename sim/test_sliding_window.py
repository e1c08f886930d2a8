"""cocotb testbench of ``hw/blocks/sliding_window/sliding_window.sv`` against ``instabnn.hw.reference.window.window_beats``.

The pytest entry ``tests/test_rtl_sliding_window.py`` builds the generator with Verilator for one
:class:`SlidingWindowShape`, writes a case file with :func:`prepare_case` (named by ``INSTABNN_WINDOW_CASE``) and
runs the cocotb tests below in one simulation. Frames are random element codes (``ELEM_BITS`` bits each; for the
binary network code 0 is -1 and pads as such).

Tests (each starts with a reset):

* ``stream_full_rate``: source always valid, sink always ready, frames back to back. Every output beat equals the
  reference exactly; the steady-state cycles per frame (output and input side, frames 1 .. n-1) are within 2 % of
  ``max(input beats, output beats)``; the first output beat appears ``SLIDING_WINDOW_LATENCY`` cycles after the
  input handshake that completes the rows the first output row needs.
* ``stream_idle_backpressure``: random idle on ``s_axis`` and backpressure on ``m_axis``; exact, nothing lost or
  added.
* ``reset_mid_frame``: single-cycle resets at offsets spread over a frame (the source drives through the reset);
  afterwards the stream restarts at a frame boundary: the outputs are the windows of the frames the DUT sampled
  after the reset, exactly, with no stale beat.

The scoreboard maps output beat ``j`` to (frame, output pixel, kernel position, channel fold) and names frame,
output pixel, kernel position and channel on a mismatch. The reference sees the input as the DUT sampled it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import RisingEdge

from instabnn.hw.packing import pack_fields, unpack_fields
from instabnn.hw.reference.window import feature_map_beats, window_beats
from instabnn.hw.blocks.sliding_window.spec import SlidingWindowShape
from instabnn.hw.blocks.common.axis_tb import CYCLE_TOLERANCE, AxisHarness, case_from_env, dut_int, write_result

CASE_ENV = "INSTABNN_WINDOW_CASE"


def prepare_case(shape: SlidingWindowShape, seed: int, n_frames: int, directory: Path) -> tuple[dict, dict]:
    """Writes ``case.json`` into ``directory``; returns ``(rtl_parameters, extra_env)`` for the runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    case = {"shape": asdict(shape), "seed": seed, "n_frames": n_frames}
    (directory / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    return shape.rtl_parameters(), {CASE_ENV: str(directory / "case.json")}


class TB(AxisHarness):
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        case, self.case_dir = case_from_env(CASE_ENV, "tests/test_rtl_sliding_window.py")
        self.shape = SlidingWindowShape(**case["shape"])
        self.n_frames = int(case["n_frames"])
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        super().__init__(dut, ["s_axis"], ["m_axis"], drivers_follow_reset)
        self.log = dut._log
        self._check_parameters()

    def _check_parameters(self):
        s, dut = self.shape, self.dut
        expected = {name: value for name, value in s.rtl_parameters().items()}
        read = {name: dut_int(dut, name) for name in expected}
        self.log.info("DUT parameters %s (None: not exposed by the simulator)", read)
        for name, value in read.items():
            assert value is None or value == expected[name], f"DUT {name}={value}, case file says {expected[name]}"
        for port in ("s_axis_tdata", "m_axis_tdata"):
            got = len(getattr(dut, port))
            assert got == s.data_width, f"{port} is {got} bits, expected {s.data_width}"

    def random_frames(self, n: int) -> np.ndarray:
        """``n`` random frames ``(n, H, W, C)`` of element codes; frame 1 is all ones, frame 2 all pad values
        flipped (corner cases for the pad mux)."""
        s = self.shape
        x = self.rng.integers(0, 1 << s.elem_bits, size=(n, s.height, s.width, s.channels), dtype=np.int64)
        if n > 2:
            x[1] = (1 << s.elem_bits) - 1
            x[2] = s.pad_value ^ ((1 << s.elem_bits) - 1)
        return x

    def words(self, frames: np.ndarray) -> list[int]:
        s = self.shape
        return [pack_fields(b, s.elem_bits, signed=False) for f in frames for b in feature_map_beats(f, s.simd)]

    def frames_from_words(self, words: list[int]) -> np.ndarray:
        s = self.shape
        n = len(words) // s.in_beats
        elems = [unpack_fields(w, s.elem_bits, s.simd) for w in words[: n * s.in_beats]]
        if not elems:
            return np.zeros((0, s.height, s.width, s.channels), np.int64)
        return np.concatenate(elems).reshape(n, s.height, s.width, s.channels)

    async def send_frames(self, frames: np.ndarray):
        await self.send("s_axis", self.words(frames))

    def expected_words(self, frames: np.ndarray) -> np.ndarray:
        s = self.shape
        return np.concatenate([window_beats(f, s.kernel, s.stride, s.pad, s.pad_value, s.simd) for f in frames])

    def describe(self, j: int) -> tuple[int, int, int, int, int, int]:
        """Output beat ``j`` -> (frame, oy, ox, ky, kx, channel fold)."""
        s = self.shape
        frame, r = divmod(j, s.out_beats)
        pixel, r = divmod(r, s.kernel * s.kernel * s.cf)
        oy, ox = divmod(pixel, s.out_width)
        pos, cf = divmod(r, s.cf)
        ky, kx = divmod(pos, s.kernel)
        return frame, oy, ox, ky, kx, cf

    def check_outputs(self, tag: str, n_frames: int) -> np.ndarray:
        """Scoreboard: the recorded input words (as the DUT sampled them) against the recorded output beats."""
        s = self.shape
        ins, outs = self.beats("s_axis"), self.beats("m_axis")
        assert len(ins) == n_frames * s.in_beats, f"{tag}: {len(ins)} input beats, expected {n_frames * s.in_beats}"
        assert len(outs) == n_frames * s.out_beats, (
            f"{tag}: {len(outs)} output beats, expected {n_frames} frames x {s.out_beats}"
        )
        sampled = self.frames_from_words([w for _, w in ins])
        expected = self.expected_words(sampled)  # (beats, SIMD)
        got = np.stack([unpack_fields(w, s.elem_bits, s.simd) for _, w in outs]) if outs else expected
        bad = np.argwhere(got != expected)
        for j, i in bad[:10]:
            frame, oy, ox, ky, kx, cf = self.describe(int(j))
            self.log.error("%s: frame %d, output pixel (%d, %d), kernel (%d, %d), channel %d: expected %d, got %d",
                           tag, frame, oy, ox, ky, kx, cf * s.simd + i, expected[j, i], got[j, i])
        if len(bad):
            j, i = bad[0]
            frame, oy, ox, ky, kx, cf = self.describe(int(j))
            raise AssertionError(
                f"{tag}: {len(bad)} mismatching elements; first at frame {frame}, output pixel ({oy}, {ox}), "
                f"kernel position ({ky}, {kx}), channel {cf * s.simd + i}: expected {expected[j, i]}, got {got[j, i]}"
            )
        return sampled


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, steady-state cycles per frame and latency."""
    tb = TB(dut, test_seed=1)
    s = tb.shape
    tb.set_idle_backpressure(None)
    await tb.reset()
    n = max(tb.n_frames, 4)
    frames = tb.random_frames(n)
    await tb.send_frames(frames)  # all queued: the source stays valid from the first beat to the last
    await tb.wait_beats("m_axis", n * s.out_beats, timeout_cycles=(n + 2) * s.cycles_per_frame * 2 + 200)
    # rows no window uses (e.g. the last row of an even map with K = 1, stride 2) may arrive after the last output
    await tb.wait_beats("s_axis", n * s.in_beats, timeout_cycles=s.in_beats + 100)
    sampled = tb.check_outputs("stream_full_rate", n)
    assert np.array_equal(sampled, frames), "the monitored input differs from what the source sent"

    in_cycles = [c for c, _ in tb.beats("s_axis")]
    out_cycles = [c for c, _ in tb.beats("m_axis")]
    out_starts = out_cycles[:: s.out_beats]
    in_starts = in_cycles[:: s.in_beats]
    measured = (out_starts[-1] - out_starts[1]) / (n - 2)
    in_measured = (in_starts[-1] - in_starts[1]) / (n - 2)
    analytic = s.cycles_per_frame
    # latency: the first output beat vs. the input handshake that completes input row min(H-1, K-1-P)
    first_rows = min(s.height - 1, s.kernel - 1 - s.pad) + 1
    latency = out_cycles[0] - in_cycles[first_rows * s.width * s.cf - 1]
    tb.log.info(
        "cycles per frame (frames 1..%d): measured %.3f (output side), %.3f (input side), analytic %d "
        "(input %d, output %d beats); first frame %d cycles; latency %d, stated %d; line buffer %d rows",
        n - 1, measured, in_measured, analytic, s.in_beats, s.out_beats, out_starts[1] - in_cycles[0], latency,
        s.latency, s.buffer_rows,
    )
    write_result(tb.case_dir, "stream_full_rate", {
        "shape": asdict(s),
        "n_frames": n,
        "cycles_per_frame_measured": measured,
        "cycles_per_frame_measured_input": in_measured,
        "cycles_per_frame_analytic": analytic,
        "in_beats": s.in_beats,
        "out_beats": s.out_beats,
        "first_frame_cycles": out_starts[1] - in_cycles[0],
        "latency_measured": latency,
        "latency_stated": s.latency,
        "buffer_rows": s.buffer_rows,
        "total_cycles": out_cycles[-1] - in_cycles[0] + 1,
    })
    assert abs(measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{measured} cycles per frame, analytic {analytic}"
    assert abs(in_measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{in_measured} cycles per frame (input side)"
    assert latency == s.latency, f"latency {latency}, stated {s.latency}"


@cocotb.test()
async def stream_idle_backpressure(dut):
    """Random idle on s_axis and random backpressure on m_axis: exact outputs, nothing lost or added."""
    tb = TB(dut, test_seed=2)
    s = tb.shape
    await tb.reset()
    tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
    n = tb.n_frames
    frames = tb.random_frames(n)
    await tb.send_frames(frames)
    await tb.wait_beats("m_axis", n * s.out_beats, timeout_cycles=n * (s.in_beats + s.out_beats) * 8 + 400)
    await tb.wait_beats("s_axis", n * s.in_beats, timeout_cycles=s.in_beats * 8 + 100)
    await tb.idle_cycles(3 * s.latency + 8)  # nothing extra comes out
    sampled = tb.check_outputs("stream_idle_backpressure", n)
    assert np.array_equal(sampled, frames), "the monitored input differs from what the source sent"
    cycles = tb.beats("m_axis")[-1][0] - tb.beats("s_axis")[0][0] + 1
    tb.log.info("%d frames in %d cycles with idle and backpressure (%.1f per frame)", n, cycles, cycles / n)
    write_result(tb.case_dir, "stream_idle_backpressure", {"n_frames": n, "total_cycles": cycles})
    tb.set_idle_backpressure(None)


@cocotb.test()
async def reset_mid_frame(dut):
    """Single-cycle resets at offsets spread over a frame, then exact operation from a fresh frame.

    The source is not tied to the reset: the rest of the interrupted stream is the start of the next frame. The
    testbench completes that frame with random beats, sends one more, and checks all outputs after the reset.
    """
    tb = TB(dut, test_seed=3, drivers_follow_reset=False)
    s = tb.shape
    span = s.cycles_per_frame + 2 * s.in_beats + s.latency
    delays = sorted({0, 1, 3, span // 2, span - 1, *tb.rng.integers(0, span, size=2).tolist()})
    checked = 0
    for i, delay in enumerate(delays):
        tag = f"reset_mid_frame[delay={delay}]"
        tb.set_idle_backpressure(None)
        await tb.reset()
        if i % 2:
            tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
        await tb.send_frames(tb.random_frames(2))
        while not tb.beats("s_axis"):
            await RisingEdge(dut.clk)
        await tb.idle_cycles(delay)
        await tb.reset(cycles=1)  # a single-cycle reset must be enough
        await RisingEdge(dut.clk)  # values seen at this edge are the state the reset left
        assert not dut.m_axis_tvalid.value, f"{tag}: m_axis_tvalid high right after reset"
        await tb.sources["s_axis"].wait()  # returns at the clock edge that accepted the last beat
        await RisingEdge(dut.clk)
        pad = (-len(tb.beats("s_axis"))) % s.in_beats
        if pad:
            await tb.send("s_axis", tb.words(tb.random_frames(1))[:pad])
        await tb.send_frames(tb.random_frames(1))
        await tb.sources["s_axis"].wait()
        await RisingEdge(dut.clk)
        assert len(tb.beats("s_axis")) % s.in_beats == 0, f"{tag}: {len(tb.beats('s_axis'))} input beats after reset"
        total = len(tb.beats("s_axis")) // s.in_beats
        await tb.wait_beats("m_axis", total * s.out_beats,
                            timeout_cycles=total * (s.in_beats + s.out_beats) * 8 + 400, what=f"{tag}: ")
        await tb.idle_cycles(2 * s.latency + 8)  # nothing extra comes out
        tb.check_outputs(tag, total)
        checked += total
    tb.log.info("reset at %d offsets %s, %d frames after the resets exact", len(delays), delays, checked)
    tb.set_idle_backpressure(None)
