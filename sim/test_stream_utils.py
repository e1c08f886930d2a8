"""cocotb testbench of the stream utilities (``hw/blocks/stream/stream_fifo.sv``, ``stream_duplicate.sv``,
``width_converter.sv``) against ``instabnn.hw.reference.stream``.

The pytest entry ``tests/test_rtl_stream_utils.py`` builds one block with Verilator for one shape
(:class:`StreamFifoShape`, :class:`StreamDuplicateShape` or :class:`WidthConverterShape`), writes a case file with
:func:`prepare_case` (named by ``INSTABNN_STREAM_CASE``) and runs the cocotb tests below in one simulation. A
"frame" here is a burst of random length (a multiple of N input beats for an up-converter) of random words; frames
are sent back to back.

Tests (each starts with a reset):

* ``stream_full_rate``: sources always valid, sinks always ready. Every output stream equals the golden function
  of the input the DUT sampled; the cycles (narrow-side handshakes from first to last) per frame are within 2 % of
  the analytic count (one narrow beat per clock); the first output handshake follows the first (up: the N-th)
  input handshake by the stated latency.
* ``stream_idle_backpressure``: random idle on the source and independent random backpressure on each sink.
* ``capacity``: with the sinks stopped, the FIFO takes exactly DEPTH + 1 beats; with one duplicate output stopped,
  the input and the other output move exactly 2 beats; an up-converter takes 2N - 1 beats, a down-converter one
  wide beat plus the one it is sending; then everything drains exactly.
* ``reset_mid_stream``: single-cycle resets at several offsets with the source driving through the reset; the
  outputs after the reset are exactly the golden function of the input sampled after it (no stale beat).

A mismatch names the test, output, frame, beat within the frame, expected and got. Parameters are read back from
the DUT where exposed and the port widths checked.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import RisingEdge

from instabnn.hw.reference.stream import convert_width, duplicate, fifo
from instabnn.hw.blocks.stream.spec import StreamDuplicateShape, StreamFifoShape, WidthConverterShape
from instabnn.hw.blocks.common.axis_tb import CYCLE_TOLERANCE, AxisHarness, case_from_env, dut_int, write_result

CASE_ENV = "INSTABNN_STREAM_CASE"
SHAPES = {"stream_fifo": StreamFifoShape, "stream_duplicate": StreamDuplicateShape,
          "width_converter": WidthConverterShape}


def prepare_case(block: str, shape, seed: int, n_frames: int, max_frame: int, directory: Path) -> tuple[dict, dict]:
    """Writes ``case.json``; returns ``(rtl_parameters, extra_env)`` for the runner."""
    if not isinstance(shape, SHAPES[block]):
        raise TypeError(f"{block} takes a {SHAPES[block].__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    case = {"block": block, "shape": asdict(shape), "seed": seed, "n_frames": n_frames, "max_frame": max_frame}
    (directory / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    return shape.rtl_parameters(), {CASE_ENV: str(directory / "case.json")}


class TB(AxisHarness):
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        case, self.case_dir = case_from_env(CASE_ENV, "tests/test_rtl_stream_utils.py")
        self.block = case["block"]
        self.shape = SHAPES[self.block](**case["shape"])
        self.n_frames = int(case["n_frames"])
        self.max_frame = int(case["max_frame"])
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        self.outputs = ["m0_axis", "m1_axis"] if self.block == "stream_duplicate" else ["m_axis"]
        super().__init__(dut, ["s_axis"], self.outputs, drivers_follow_reset)
        self.log = dut._log
        if self.block == "width_converter":
            self.in_w, self.out_w = self.shape.in_width, self.shape.out_width
        else:
            self.in_w = self.out_w = self.shape.width
        self._check_parameters()

    def _check_parameters(self):
        for name, value in self.shape.rtl_parameters().items():
            got = dut_int(self.dut, name)
            assert got is None or got == value, f"DUT {name}={got}, case file says {value}"
        widths = {"s_axis_tdata": self.in_w, **{f"{p}_tdata": self.out_w for p in self.outputs}}
        for port, width in widths.items():
            got = len(getattr(self.dut, port))
            assert got == width, f"{port} is {got} bits, expected {width}"

    @property
    def latency_cycles(self) -> int:
        return self.shape.latency

    @property
    def group(self) -> int:
        """Input beats that make whole output beats."""
        return self.shape.group if self.block == "width_converter" else 1

    def golden(self, words: list[int]) -> dict[str, list[int]]:
        if self.block == "stream_fifo":
            return {"m_axis": fifo(words)}
        if self.block == "stream_duplicate":
            a, b = duplicate(words)
            return {"m0_axis": a, "m1_axis": b}
        return {"m_axis": convert_width(words, self.in_w, self.out_w)}

    def out_beats(self, in_beats: int) -> int:
        return self.shape.out_beats(in_beats) if self.block == "width_converter" else in_beats

    def random_frames(self, n: int) -> list[list[int]]:
        """``n`` frames of random length (1 .. max_frame groups) of random words; frame 1 all ones, frame 2 all
        zeros."""
        frames = []
        for f in range(n):
            length = int(self.rng.integers(1, self.max_frame + 1)) * self.group
            words = [int(w) for w in self.rng.integers(0, 1 << min(self.in_w, 62), size=length)]
            if self.in_w > 62:
                words = [w | (int(self.rng.integers(0, 1 << (self.in_w - 62))) << 62) for w in words]
            if f == 1:
                words = [(1 << self.in_w) - 1] * length
            elif f == 2:
                words = [0] * length
            frames.append(words)
        return frames

    async def send_frames(self, frames: list[list[int]]):
        for words in frames:
            await self.send("s_axis", words)

    def check_outputs(self, tag: str, frames: list[list[int]] | None = None) -> list[int]:
        """Scoreboard: every output stream against the golden function of the recorded input (as sampled)."""
        sampled = [w for _, w in self.beats("s_axis")]
        if frames is not None:
            sent = [w for f in frames for w in f]
            assert sampled == sent, f"{tag}: the monitored input ({len(sampled)} beats) differs from what was sent"
        usable = len(sampled) - len(sampled) % self.group
        # output beat -> (frame, beat within the frame) of the frames sent
        starts = np.cumsum([0] + [self.out_beats(len(f)) for f in frames]) if frames else None
        for port, expected in self.golden(sampled[:usable]).items():
            got = [w for _, w in self.beats(port)]
            n = min(len(got), len(expected))
            bad = [j for j in range(n) if got[j] != expected[j]]
            if bad:
                j = bad[0]
                where = f"output beat {j}"
                if starts is not None:
                    f = int(np.searchsorted(starts, j, side="right") - 1)
                    where += f" (frame {f}, beat {j - starts[f]})"
                for k in bad[:10]:
                    self.log.error("%s: %s beat %d: expected %#x, got %#x", tag, port, k, expected[k], got[k])
                raise AssertionError(f"{tag}: {len(bad)} mismatches on {port}; first at {where}: "
                                     f"expected {expected[j]:#x}, got {got[j]:#x}")
            assert len(got) == len(expected), f"{tag}: {len(got)} beats on {port}, expected {len(expected)}"
        return sampled

    async def wait_all(self, n_in: int, timeout_cycles: int, tag: str):
        await self.wait_beats("s_axis", n_in, timeout_cycles, what=f"{tag}: ")
        for port in self.outputs:
            await self.wait_beats(port, self.out_beats(n_in), timeout_cycles, what=f"{tag}: ")


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, one narrow-side beat per clock, latency."""
    tb = TB(dut, test_seed=1)
    s = tb.shape
    tb.set_idle_backpressure(None)
    await tb.reset()
    frames = tb.random_frames(max(tb.n_frames, 3))
    n_in = sum(len(f) for f in frames)
    await tb.send_frames(frames)
    await tb.wait_all(n_in, 4 * s.cycles(n_in) + 100, "stream_full_rate")
    await tb.idle_cycles(8)
    tb.check_outputs("stream_full_rate", frames)

    in_cycles = [c for c, _ in tb.beats("s_axis")]
    out_cycles = {p: [c for c, _ in tb.beats(p)] for p in tb.outputs}
    narrow = in_cycles if tb.in_w < tb.out_w else out_cycles[tb.outputs[0]]
    measured = (narrow[-1] - narrow[0] + 1) / len(frames)
    analytic = s.cycles(n_in) / len(frames)
    latencies = {p: c[0] - in_cycles[tb.group - 1] for p, c in out_cycles.items()}
    tb.log.info("%d frames, %d input beats: %.3f cycles per frame measured, %.3f analytic; latency %s, stated %d",
                len(frames), n_in, measured, analytic, latencies, s.latency)
    write_result(tb.case_dir, "stream_full_rate", {
        "block": tb.block,
        "shape": asdict(s),
        "n_frames": len(frames),
        "in_beats": n_in,
        "cycles_per_frame_measured": measured,
        "cycles_per_frame_analytic": analytic,
        "latency_measured": sorted(set(latencies.values())),
        "latency_stated": s.latency,
    })
    assert abs(measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{measured} cycles per frame, analytic {analytic}"
    assert set(latencies.values()) == {s.latency}, f"latency {latencies}, stated {s.latency}"


@cocotb.test()
async def stream_idle_backpressure(dut):
    """Random idle on s_axis and independent random backpressure on every output: exact, nothing lost or added."""
    tb = TB(dut, test_seed=2)
    await tb.reset()
    tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
    frames = tb.random_frames(tb.n_frames)
    n_in = sum(len(f) for f in frames)
    await tb.send_frames(frames)
    await tb.wait_all(n_in, 64 * n_in * 8 + 200, "stream_idle_backpressure")
    await tb.idle_cycles(16)  # nothing extra comes out
    tb.check_outputs("stream_idle_backpressure", frames)
    tb.set_idle_backpressure(None)


@cocotb.test()
async def capacity(dut):
    """Stopped outputs: the block holds exactly what its header states, then drains exactly."""
    tb = TB(dut, test_seed=4)
    s = tb.shape
    tb.set_idle_backpressure(None)
    await tb.reset()
    if tb.block == "stream_fifo":
        stopped, expect_in = tb.outputs, s.capacity
    elif tb.block == "stream_duplicate":
        stopped, expect_in = ["m1_axis"], s.skid
    elif s.out_width > s.in_width:
        stopped, expect_in = tb.outputs, 2 * s.ratio - 1
    elif s.in_width > s.out_width:
        stopped, expect_in = tb.outputs, 2
    else:
        stopped, expect_in = tb.outputs, 0  # wires: a stopped output stops the input
    for port in stopped:
        tb.sinks[port].pause = True
    n_words = (expect_in // tb.group + 4) * tb.group
    words = [int(w) for w in tb.rng.integers(0, 1 << min(tb.in_w, 62), size=n_words)]
    await tb.send("s_axis", words)
    await tb.idle_cycles(expect_in * 2 + 20)
    got_in = len(tb.beats("s_axis"))
    moved = {p: len(tb.beats(p)) for p in tb.outputs}
    tb.log.info("%s stopped: %d input beats taken, outputs moved %s", stopped, got_in, moved)
    assert got_in == expect_in, f"capacity: {got_in} input beats taken with {stopped} stopped, expected {expect_in}"
    for p in tb.outputs:
        assert moved[p] == (0 if p in stopped else tb.out_beats(expect_in)), f"capacity: {p} moved {moved[p]} beats"
    for port in stopped:
        tb.sinks[port].pause = False
    await tb.wait_all(len(words), 8 * len(words) + 50, "capacity")
    await tb.idle_cycles(8)
    tb.check_outputs("capacity")
    write_result(tb.case_dir, "capacity", {"stopped": stopped, "input_beats_taken": got_in})


@cocotb.test()
async def reset_mid_stream(dut):
    """Single-cycle resets while the source drives, then exact operation (nothing stale comes out)."""
    tb = TB(dut, test_seed=3, drivers_follow_reset=False)
    delays = [0, 1, 2, 3, 5, 8, 13, 21]
    for i, delay in enumerate(delays):
        tag = f"reset_mid_stream[delay={delay}]"
        tb.set_idle_backpressure(None)
        await tb.reset()
        if i % 2:
            tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
        await tb.send_frames(tb.random_frames(2))
        while not tb.beats("s_axis"):
            await RisingEdge(dut.clk)
        await tb.idle_cycles(delay)
        await tb.reset(cycles=1)
        await RisingEdge(dut.clk)  # values seen at this edge are the state the reset left
        for port in tb.outputs if tb.latency_cycles else []:  # (equal widths: wires, nothing to empty)
            assert not getattr(dut, f"{port}_tvalid").value, f"{tag}: {port}_tvalid high right after reset"
        await tb.sources["s_axis"].wait()
        await RisingEdge(dut.clk)
        pad = (-len(tb.beats("s_axis"))) % tb.group
        frames = tb.random_frames(1)
        await tb.send("s_axis", [0] * pad + frames[0])
        await tb.sources["s_axis"].wait()
        await RisingEdge(dut.clk)
        n_in = len(tb.beats("s_axis"))
        await tb.wait_all(n_in, 64 * n_in + 200, tag)
        await tb.idle_cycles(16)
        tb.check_outputs(tag)
    tb.set_idle_backpressure(None)
