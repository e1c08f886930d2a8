"""Testbench of the sliding-window generator (``sliding_window.sv``) against
``instabnn.contract.window.window_beats``: spec, lint, illegal parameters, Yosys synthesis, cocotb simulation.

Each simulation case builds the generator with Verilator for one :class:`SlidingWindowShape` and runs the
``@cocotb.test()``s of this file in one simulation (the case, :func:`make_case`, reaches them through
:func:`~instabnn.hw.blocks.common.axis_tb.run_bench`). Frames are random element codes (``ELEM_BITS`` bits each; for
the binary network code 0 is -1 and pads as such). The default tier runs two shapes; ``-m slow`` sweeps more shapes
(binary and 8-bit, K in {1, 3}, stride 1 and 2, padding 0 and 1) with over 1000 frames, and simulates a Yosys
netlist.

cocotb tests (each starts with a reset):

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

import shutil
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import cocotb

from instabnn.hw.blocks.common.axis_tb import (CYCLE_TOLERANCE, AxisHarness, check_dut_parameters, idle_backpressure,
                                               read_case, reset_mid_stream, run_full_rate_bench, write_result)
from instabnn.hw.blocks.sliding_window.spec import SlidingWindowShape
from instabnn.contract.packing import pack_fields, unpack_fields
from instabnn.contract.window import feature_map_beats, window_beats
from instabnn.hw.blocks.rtl_library import rtl_paths
from instabnn.hw.blocks.common.rtl_runner import lint_output_clean, verilator_lint, yosys_synth


# ----------------------------------------------------------------------------------------------------------------
# cocotb testbench (runs in the simulator)
# ----------------------------------------------------------------------------------------------------------------

def make_case(shape: SlidingWindowShape, seed: int, n_frames: int) -> dict:
    """The case the cocotb side reads (:func:`~instabnn.hw.blocks.common.axis_tb.read_case`)."""
    return {"shape": asdict(shape), "seed": seed, "n_frames": n_frames}


class TB(AxisHarness):
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        case, self.case_dir = read_case()
        self.shape = SlidingWindowShape(**case["shape"])
        self.n_frames = int(case["n_frames"])
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        super().__init__(dut, ["s_axis"], ["m_axis"], drivers_follow_reset)
        self.log = dut._log
        check_dut_parameters(dut, self.shape.rtl_parameters(),
                             {port: self.shape.data_width for port in ("s_axis_tdata", "m_axis_tdata")})

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

    async def send_tail(self, beats: int):
        """The last ``beats`` beats of one random frame (completes an interrupted frame)."""
        await self.send("s_axis", self.words(self.random_frames(1))[-beats:])

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

    async def wait_outputs(self, tag: str, n_frames: int):
        """Until the outputs of ``n_frames`` frames are out and their inputs in (with idle and backpressure), then
        long enough that anything extra would be seen."""
        s = self.shape
        await self.wait_beats("m_axis", n_frames * s.out_beats,
                              timeout_cycles=n_frames * (s.in_beats + s.out_beats) * 8 + 400, what=f"{tag}: ")
        # rows no window uses may arrive after the last output
        await self.wait_beats("s_axis", n_frames * s.in_beats, timeout_cycles=s.in_beats * 8 + 100, what=f"{tag}: ")
        await self.idle_cycles(3 * s.latency + 8)  # nothing extra comes out

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
    await idle_backpressure(tb, int(tb.rng.integers(1 << 30)), tb.n_frames, random_frames=tb.random_frames,
                            send_frames=tb.send_frames, wait_outputs=tb.wait_outputs, check_outputs=tb.check_outputs,
                            result_dir=tb.case_dir)


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
    await reset_mid_stream(tb, "reset_mid_frame", delays, frame_beats=s.in_beats,
                           input_beats=lambda: len(tb.beats("s_axis")),
                           send_frames=lambda n: tb.send_frames(tb.random_frames(n)), wait_outputs=tb.wait_outputs,
                           frames_before=2, frames_after=1)


# ----------------------------------------------------------------------------------------------------------------
# pytest runner (builds the block, runs the testbench above)
# ----------------------------------------------------------------------------------------------------------------

SOURCES = rtl_paths("sliding_window")
TOPLEVEL = "sliding_window"

FAST_SHAPES = [
    # binary 3x3 stride 1 pad -1 (code 0): a stage-1 convolution in miniature, output-bound
    SlidingWindowShape(channels=8, height=6, width=5, kernel=3, stride=1, pad=1, simd=4, elem_bits=1, pad_value=0),
    # 8-bit 1x1 stride 2 (the real downsampling shortcut), input-bound
    SlidingWindowShape(channels=4, height=6, width=6, kernel=1, stride=2, pad=0, simd=2, elem_bits=8),
]
FAST_FRAMES = 8

SLOW_SHAPES = [
    # the first convolution: 3 channels of 8 bits, pad 0, all channels per beat
    SlidingWindowShape(channels=3, height=7, width=7, kernel=3, stride=1, pad=1, simd=3, elem_bits=8),
    # binary 3x3 stride 2 pad 1 (downsampling block), odd map, pad code 1 to see it is a parameter
    SlidingWindowShape(channels=4, height=7, width=6, kernel=3, stride=2, pad=1, simd=2, elem_bits=1, pad_value=1),
    # 3x3 without padding, even map and stride 2: a row no window uses at the bottom
    SlidingWindowShape(channels=2, height=8, width=5, kernel=3, stride=2, pad=0, simd=1, elem_bits=4, pad_value=5),
    # 1x1 stride 1: input and output rates equal
    SlidingWindowShape(channels=6, height=4, width=3, kernel=1, stride=1, pad=0, simd=3, elem_bits=2),
    # 1x1 stride 2, odd map, one channel per beat
    SlidingWindowShape(channels=2, height=5, width=5, kernel=1, stride=2, pad=0, simd=1, elem_bits=8),
    # 3x3 stride 1 pad 0, tiny map (one output pixel per frame)
    SlidingWindowShape(channels=2, height=3, width=3, kernel=3, stride=1, pad=0, simd=2, elem_bits=1),
    # 3x3 stride 1 pad 1 on a 1-pixel-wide map
    SlidingWindowShape(channels=1, height=4, width=1, kernel=3, stride=1, pad=1, simd=1, elem_bits=3, pad_value=0),
    # K = 2 (even kernel), stride 2, pad 1
    SlidingWindowShape(channels=4, height=5, width=4, kernel=2, stride=2, pad=1, simd=4, elem_bits=1),
    # equal input and output rates with the smallest rows: 1x1 on a 1-pixel-wide map, 2x2 stride 2
    SlidingWindowShape(channels=1, height=3, width=1, kernel=1, stride=1, pad=0, simd=1, elem_bits=8),
    SlidingWindowShape(channels=2, height=4, width=4, kernel=2, stride=2, pad=0, simd=2, elem_bits=1),
]
SLOW_FRAMES = 64  # per test; with the idle/backpressure and reset tests about 150 frames per shape, 1600 in all

LINT_SHAPES = FAST_SHAPES + SLOW_SHAPES + [
    SlidingWindowShape(channels=16, height=32, width=32, kernel=3, stride=1, pad=1, simd=16, elem_bits=1),
    SlidingWindowShape(channels=64, height=8, width=8, kernel=3, stride=2, pad=1, simd=32, elem_bits=1),
    SlidingWindowShape(channels=3, height=32, width=32, kernel=3, stride=1, pad=1, simd=3, elem_bits=8),
]


def run_sliding_window(shape: SlidingWindowShape, n_frames: int, directory: Path, yosys_netlist: bool = False) -> dict:
    seed = zlib.crc32(shape.name.encode())
    case_dir = directory / "case"
    return run_full_rate_bench(__file__, make_case(shape, seed, n_frames), sources=SOURCES, toplevel=TOPLEVEL,
                               parameters=shape.rtl_parameters(), directory=case_dir, seed=seed,
                               yosys_netlist=yosys_netlist)


def _check_measurements(shape: SlidingWindowShape, result: dict):
    analytic = shape.cycles_per_frame
    assert result["cycles_per_frame_analytic"] == analytic
    assert abs(result["cycles_per_frame_measured"] - analytic) <= 0.02 * analytic
    assert result["latency_measured"] == shape.latency


# ----------------------------------------------------------------------------------------------------------------
# Spec (no simulator)
# ----------------------------------------------------------------------------------------------------------------


def test_shape_numbers():
    s = SlidingWindowShape(channels=16, height=32, width=32, kernel=3, stride=1, pad=1, simd=16, elem_bits=1)
    assert (s.out_height, s.out_width, s.mw, s.in_beats, s.out_beats) == (32, 32, 144, 1024, 9216)
    assert s.cycles_per_frame == 9216 and s.buffer_rows == 5 and s.buffer_bits == 5 * 32 * 16
    d = SlidingWindowShape(channels=16, height=32, width=32, kernel=1, stride=2, pad=0, simd=8, elem_bits=8)
    assert (d.out_height, d.in_beats, d.out_beats, d.cycles_per_frame) == (16, 2048, 512, 2048)


@pytest.mark.parametrize("kwargs, message", [
    (dict(channels=6, height=4, width=4, kernel=3, simd=4), "SIMD"),
    (dict(channels=4, height=4, width=4, kernel=1, pad=1), "PAD"),
    (dict(channels=4, height=1, width=4, kernel=3), "does not fit"),
    (dict(channels=4, height=4, width=4, kernel=3, elem_bits=2, pad_value=4), "PAD_VALUE"),
])
def test_shape_rejects_illegal(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SlidingWindowShape(**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# RTL
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", FAST_SHAPES, ids=lambda s: s.name)
def test_sliding_window_sim(shape, verilator_path, tmp_path):
    _check_measurements(shape, run_sliding_window(shape, FAST_FRAMES, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("shape", SLOW_SHAPES, ids=lambda s: s.name)
def test_sliding_window_sim_sweep(shape, verilator_path, tmp_path):
    _check_measurements(shape, run_sliding_window(shape, SLOW_FRAMES, tmp_path))


@pytest.mark.parametrize("shape", LINT_SHAPES, ids=lambda s: s.name)
def test_sliding_window_lint_clean(shape, verilator_path):
    ok, output = lint_output_clean(verilator_lint(SOURCES, TOPLEVEL, shape.rtl_parameters(), verilator_path))
    assert ok, output


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"SIMD": 3}, "SIMD (3) must divide C (8)"),
        ({"PAD": 3}, "PAD (3) must be in [0, K-1] = [0, 2]"),
        ({"K": 1, "PAD": 1}, "PAD (1) must be in [0, K-1] = [0, 0]"),
        ({"H": 1, "PAD": 0}, "kernel does not fit"),
        ({"ELEM_BITS": 31}, "ELEM_BITS (31) must be in [1, 30]"),
        ({"PAD_VALUE": 2}, "PAD_VALUE (2) must be an ELEM_BITS-bit code in [0, 1]"),
        ({"STRIDE": 0}, "must be >= 1"),
    ],
)
def test_sliding_window_rejects_illegal_parameters(overrides, message, verilator_path):
    params = FAST_SHAPES[0].rtl_parameters()
    params.update(overrides)
    proc = verilator_lint(SOURCES, TOPLEVEL, params, verilator_path)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")


@needs_yosys
def test_sliding_window_yosys_synth(tmp_path):
    """Yosys reads and synthesises the RTL (generic synth); the line buffer is one memory."""
    log = yosys_synth(SOURCES, TOPLEVEL, FAST_SHAPES[0].rtl_parameters(), tmp_path)
    assert "Number of cells" in log


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("shape", [FAST_SHAPES[0], SLOW_SHAPES[1]], ids=lambda s: s.name)
def test_sliding_window_yosys_netlist_sim(shape, verilator_path, tmp_path):
    """Yosys reads the RTL as Verilator does: its netlist passes the same cocotb tests, cycle for cycle."""
    _check_measurements(shape, run_sliding_window(shape, FAST_FRAMES, tmp_path, yosys_netlist=True))
