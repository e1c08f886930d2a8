"""RTL tests of the stream utilities (``hw/blocks/stream/stream_fifo.sv``, ``stream_duplicate.sv``, ``width_converter.sv``):
golden functions, lint, illegal parameters, Yosys synthesis, cocotb simulation against
``instabnn.hw.reference.stream``.

Each simulation case builds one block with Verilator for one shape and runs the cocotb tests of
``instabnn.sim.test_stream_utils`` (full rate with cycle and latency checks, random idle and per-output
backpressure, capacity with stopped outputs, reset mid-stream). The default tier runs one shape per block (two for
the width converter: up and down); ``-m slow`` sweeps more shapes with over 1000 frames per block and simulates
Yosys netlists.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from instabnn.hw.packing import pack_words
from instabnn.hw.reference.stream import convert_width, duplicate, fifo
from instabnn.hw.blocks.stream.spec import StreamDuplicateShape, StreamFifoShape, WidthConverterShape
from instabnn.hw.rtl_library import rtl_paths
from instabnn.sim.rtl_runner import (
    VERILATOR_BUILD_ARGS,
    lint_output_clean,
    run_cocotb,
    verilator_lint,
    yosys_synth,
)

TEST_MODULE = "instabnn.sim.test_stream_utils"

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
    from instabnn.sim.test_stream_utils import prepare_case

    seed = zlib.crc32(shape.name.encode())
    case_dir = directory / "case"
    parameters, extra_env = prepare_case(block, shape, seed, n_frames, max_frame, case_dir)
    sources, build_args = rtl_paths(block), VERILATOR_BUILD_ARGS
    if yosys_netlist:
        netlist = directory / "netlist.v"
        yosys_synth(sources, block, parameters, case_dir / "synth", netlist)
        sources, parameters, build_args = [netlist], {}, VERILATOR_BUILD_ARGS + ["-Wno-UNOPTFLAT"]
    run_cocotb(sources=sources, toplevel=block, test_module=TEST_MODULE, parameters=parameters,
               directory=directory, test_dir=case_dir, extra_env=extra_env, seed=seed, build_args=build_args)
    return json.loads((case_dir / "result_stream_full_rate.json").read_text())


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
