"""Testbench of the stream utilities (``stream_fifo.sv``, ``stream_duplicate.sv``, ``width_converter.sv``) against
``instabnn.contract.stream``: golden functions, lint, illegal parameters, Yosys synthesis, cocotb simulation.

Each simulation case builds one block with Verilator for one shape (:class:`StreamFifoShape`,
:class:`StreamDuplicateShape` or :class:`WidthConverterShape`) and runs the ``@cocotb.test()``s of this file in one
simulation (the case, :func:`make_case`, reaches them through :func:`~instabnn.hw.blocks.common.axis_tb.run_bench`).
A "frame" here is a burst of random length (a multiple of N input beats for an up-converter) of random words;
frames are sent back to back. The default tier runs one shape per block (two for the width converter: up and
down); ``-m slow`` sweeps more shapes with over 1000 frames per block and simulates Yosys netlists.

cocotb tests (each starts with a reset):

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

import shutil
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import cocotb

from instabnn.hw.blocks.common import axis_tb
from instabnn.hw.blocks.common.axis_tb import (CYCLE_TOLERANCE, AxisHarness, dut_int, read_case, run_full_rate_bench,
                                               write_result)
from instabnn.hw.blocks.stream.spec import StreamDuplicateShape, StreamFifoShape, WidthConverterShape
from instabnn.contract.packing import pack_words
from instabnn.contract.stream import convert_width, duplicate, fifo
from instabnn.hw.blocks.rtl_library import rtl_paths
from instabnn.hw.blocks.common.rtl_runner import lint_output_clean, verilator_lint, yosys_synth


# ----------------------------------------------------------------------------------------------------------------
# cocotb testbench (runs in the simulator)
# ----------------------------------------------------------------------------------------------------------------

SHAPES = {"stream_fifo": StreamFifoShape, "stream_duplicate": StreamDuplicateShape,
          "width_converter": WidthConverterShape}


def make_case(block: str, shape, seed: int, n_frames: int, max_frame: int) -> dict:
    """The case the cocotb side reads (:func:`~instabnn.hw.blocks.common.axis_tb.read_case`)."""
    if not isinstance(shape, SHAPES[block]):
        raise TypeError(f"{block} takes a {SHAPES[block].__name__}")
    return {"block": block, "shape": asdict(shape), "seed": seed, "n_frames": n_frames, "max_frame": max_frame}


class TB(AxisHarness):
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        case, self.case_dir = read_case()
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

    async def send_tail(self, beats: int):
        """The last ``beats`` beats of one random frame (completes an interrupted group)."""
        await self.send("s_axis", self.random_frames(1)[0][-beats:])

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
    sent: list[list[int]] = []  # the frames of random length: what the waits and the scoreboard count in

    async def send_frames(frames: list[list[int]]):
        sent.extend(frames)
        await tb.send_frames(frames)

    async def wait_outputs(tag: str, _):
        n_in = sum(map(len, sent))
        await tb.wait_all(n_in, 64 * n_in * 8 + 200, tag)
        await tb.idle_cycles(16)  # nothing extra comes out

    await axis_tb.idle_backpressure(tb, int(tb.rng.integers(1 << 30)), tb.n_frames, random_frames=tb.random_frames,
                                    send_frames=send_frames, wait_outputs=wait_outputs,
                                    check_outputs=lambda tag, _: tb.check_outputs(tag, sent),
                                    same_inputs=lambda sampled, frames: sampled == [w for f in frames for w in f],
                                    result_dir=tb.case_dir)


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

    async def wait_outputs(tag: str, groups: int):
        n_in = groups * tb.group
        await tb.wait_all(n_in, 64 * n_in + 200, tag)
        await tb.idle_cycles(16)

    # a frame of the shared body is a group (input beats that make whole output beats); equal widths are wires,
    # with nothing to empty at a reset
    await axis_tb.reset_mid_stream(tb, "reset_mid_stream", [0, 1, 2, 3, 5, 8, 13, 21], frame_beats=tb.group,
                                   input_beats=lambda: len(tb.beats("s_axis")),
                                   send_frames=lambda n: tb.send_frames(tb.random_frames(n)),
                                   wait_outputs=wait_outputs, check_outputs=lambda tag, _: tb.check_outputs(tag),
                                   outputs=tuple(tb.outputs) if tb.latency_cycles else (), frames_before=2,
                                   frames_after=1)


# ----------------------------------------------------------------------------------------------------------------
# pytest runner (builds the block, runs the testbench above)
# ----------------------------------------------------------------------------------------------------------------

FAST_CASES = [  # (block, shape, frames, max frame length in groups)
    ("stream_fifo", StreamFifoShape(width=12, depth=5), 24, 12),
    ("stream_duplicate", StreamDuplicateShape(width=10), 24, 12),
    ("width_converter", WidthConverterShape(in_width=8, out_width=24), 24, 6),
    ("width_converter", WidthConverterShape(in_width=32, out_width=8), 24, 6),
]

SLOW_CASES = [
    ("stream_fifo", StreamFifoShape(width=1, depth=2), 350, 16),
    ("stream_fifo", StreamFifoShape(width=72, depth=64), 350, 40),
    ("stream_fifo", StreamFifoShape(width=33, depth=7), 350, 16),
    ("stream_duplicate", StreamDuplicateShape(width=1), 500, 16),
    ("stream_duplicate", StreamDuplicateShape(width=96), 500, 16),
    ("width_converter", WidthConverterShape(in_width=1, out_width=8), 250, 4),
    ("width_converter", WidthConverterShape(in_width=8, out_width=1), 250, 4),
    ("width_converter", WidthConverterShape(in_width=16, out_width=16), 250, 8),
    ("width_converter", WidthConverterShape(in_width=24, out_width=72), 250, 4),
    ("width_converter", WidthConverterShape(in_width=96, out_width=32), 250, 4),
]

LINT_CASES = FAST_CASES + SLOW_CASES + [
    ("stream_fifo", StreamFifoShape(width=64, depth=1024), 0, 0),
    ("width_converter", WidthConverterShape(in_width=16, out_width=32), 0, 0),
    ("width_converter", WidthConverterShape(in_width=2, out_width=1), 0, 0),
]


def _id(case) -> str:
    return case[1].name


# ----------------------------------------------------------------------------------------------------------------
# Golden functions (no simulator)
# ----------------------------------------------------------------------------------------------------------------


def test_convert_width_is_repacking():
    """A bipolar vector packed in a-bit words and converted to b bits is the same vector packed in b-bit words."""
    rng = np.random.default_rng(0)
    x = rng.choice([-1, 1], size=96)
    for a, b in [(8, 32), (32, 8), (4, 4), (1, 96), (96, 3), (24, 48)]:
        assert convert_width(pack_words(x, a), a, b) == pack_words(x, b), (a, b)
    assert convert_width([0x1, 0x2, 0x3, 0x4], 4, 8) == [0x21, 0x43]
    assert convert_width([0x4321], 16, 4) == [1, 2, 3, 4]
    assert fifo([3, 1, 2]) == [3, 1, 2] and duplicate([5, 6]) == ([5, 6], [5, 6])


def test_convert_width_rejects():
    with pytest.raises(ValueError):
        convert_width([1, 2, 3], 8, 16)  # not a whole group
    with pytest.raises(ValueError):
        convert_width([1], 6, 4)  # neither divides the other
    with pytest.raises(ValueError):
        convert_width([256], 8, 16)  # does not fit


def test_shapes():
    assert StreamFifoShape(8, 512).capacity == 513
    up, down = WidthConverterShape(8, 32), WidthConverterShape(32, 8)
    assert (up.ratio, up.group, up.out_beats(8), up.cycles(8), up.latency) == (4, 4, 2, 8, 1)
    assert (down.ratio, down.group, down.out_beats(2), down.cycles(2), down.latency) == (4, 1, 8, 8, 2)
    for bad in (lambda: StreamFifoShape(8, 1), lambda: WidthConverterShape(6, 4), lambda: StreamDuplicateShape(0)):
        with pytest.raises(ValueError):
            bad()


# ----------------------------------------------------------------------------------------------------------------
# RTL
# ----------------------------------------------------------------------------------------------------------------


def run_stream_util(block: str, shape, n_frames: int, max_frame: int, directory: Path,
                    yosys_netlist: bool = False) -> dict:
    seed = zlib.crc32(shape.name.encode())
    case_dir = directory / "case"
    case = make_case(block, shape, seed, n_frames, max_frame)
    return run_full_rate_bench(__file__, case, sources=rtl_paths(block), toplevel=block,
                               parameters=shape.rtl_parameters(), directory=case_dir, seed=seed,
                               yosys_netlist=yosys_netlist)


def _check_measurements(shape, result: dict):
    analytic = result["cycles_per_frame_analytic"]
    assert abs(result["cycles_per_frame_measured"] - analytic) <= 0.02 * analytic
    assert result["latency_measured"] == [shape.latency]


@pytest.mark.parametrize("case", FAST_CASES, ids=_id)
def test_stream_util_sim(case, verilator_path, tmp_path):
    block, shape, n_frames, max_frame = case
    _check_measurements(shape, run_stream_util(block, shape, n_frames, max_frame, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=_id)
def test_stream_util_sim_sweep(case, verilator_path, tmp_path):
    block, shape, n_frames, max_frame = case
    _check_measurements(shape, run_stream_util(block, shape, n_frames, max_frame, tmp_path))


@pytest.mark.parametrize("case", LINT_CASES, ids=_id)
def test_stream_util_lint_clean(case, verilator_path):
    block, shape = case[:2]
    ok, output = lint_output_clean(verilator_lint(rtl_paths(block), block, shape.rtl_parameters(),
                                                  verilator_path))
    assert ok, output


@pytest.mark.parametrize(
    "block, parameters, message",
    [
        ("stream_fifo", {"WIDTH": 8, "DEPTH": 1}, "DEPTH (1) must be >= 2"),
        ("stream_fifo", {"WIDTH": 0, "DEPTH": 4}, "WIDTH (0) must be >= 1"),
        ("stream_duplicate", {"WIDTH": 0}, "WIDTH (0) must be >= 1"),
        ("width_converter", {"IN_W": 8, "OUT_W": 12}, "one of IN_W (8) and OUT_W (12) must divide the other"),
        ("width_converter", {"IN_W": 0, "OUT_W": 8}, "IN_W (0) and OUT_W (8) must be >= 1"),
    ],
)
def test_stream_util_rejects_illegal_parameters(block, parameters, message, verilator_path):
    proc = verilator_lint(rtl_paths(block), block, parameters, verilator_path)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")


@needs_yosys
@pytest.mark.parametrize("case", FAST_CASES, ids=_id)
def test_stream_util_yosys_synth(case, tmp_path):
    """Yosys reads and synthesises the RTL (generic synth)."""
    block, shape = case[:2]
    log = yosys_synth(rtl_paths(block), block, shape.rtl_parameters(), tmp_path)
    assert "Number of cells" in log


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("case", [FAST_CASES[0], FAST_CASES[1], FAST_CASES[2], FAST_CASES[3]], ids=_id)
def test_stream_util_yosys_netlist_sim(case, verilator_path, tmp_path):
    """Yosys reads the RTL as Verilator does: its netlist passes the same cocotb tests, cycle for cycle."""
    block, shape, n_frames, max_frame = case
    _check_measurements(shape, run_stream_util(block, shape, n_frames, max_frame, tmp_path, yosys_netlist=True))
