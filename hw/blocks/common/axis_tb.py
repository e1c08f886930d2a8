"""Pieces shared by the blocks' AXI-Stream cocotb testbenches (``hw/blocks/<block>/test_<block>.py``).

A block's bench is one file: its ``@cocotb.test()`` coroutines and the pytest functions that build the block with
Verilator and run them. The pytest side hands the case (the spec, frame counts, seeds: a JSON object) to the
cocotb side in one way only: :func:`run_bench` writes it to ``case.json`` in the test's folder and names that file
in the environment variable ``INSTABNN_BENCH_CASE``; the cocotb side reads it back with :func:`read_case`.

* :func:`run_bench` / :func:`read_case`: the two ends of that hand-over (the RTL parameters go to the simulator as
  parameters, as usual); :func:`run_full_rate_bench`: :func:`run_bench` on the RTL or its Yosys netlist, returning
  the full-rate test's results.
* :func:`random_pause`: a seeded pause generator for cocotbext-axi sources (idle) and sinks (backpressure).
* :class:`StreamWatch`: one stream's handshakes and the rule that an offered beat stays offered until taken.
* :class:`HandshakeMonitor`: records every handshake ``(cycle, tdata)`` of named streams, cycle by cycle, outside
  reset; the scoreboards compare these records (what the DUT actually sampled and sent) with the golden functions.
* :class:`AxisHarness`: the clock, one or more cocotbext-axi sources and sinks with ``byte_lanes=1`` (one beat =
  one integer), a monitor on all of them, reset and idle/backpressure switching.
* :func:`idle_backpressure`: the body of the benches' idle/backpressure test (random source idle and sink
  backpressure, then every output exact, nothing lost or added), parameterised by the bench's frames and checks.
* :func:`reset_mid_stream`: the body of the benches' reset-in-mid-stream test (single-cycle resets while the
  sources drive through them, then exact operation), parameterised by the bench's streams, frames and checks.
* :func:`dut_int`, :func:`check_dut_parameters`, :func:`case_from_env`, :func:`write_result`.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

CLOCK_PERIOD_NS = 10
CYCLE_TOLERANCE = 0.02
CASE_ENV = "INSTABNN_BENCH_CASE"
"""The environment variable naming a bench's case file (see the module docstring)."""
BLOCKS_DIR = Path(__file__).resolve().parents[1]


def bench_module(bench_file: str | Path) -> str:
    """The import name of a bench file under ``hw/blocks`` (``.../pool/test_pool.py`` ->
    ``instabnn.hw.blocks.pool.test_pool``): the ``test_module`` cocotb's runner imports in the simulator."""
    rel = Path(bench_file).resolve().relative_to(BLOCKS_DIR).with_suffix("")
    return ".".join(("instabnn", "hw", "blocks", *rel.parts))


def run_bench(bench_file: str | Path, case: dict, *, sources, toplevel: str, parameters: dict, directory: Path,
              seed: int, **runner_options):
    """Build ``toplevel`` with ``parameters`` in ``directory`` and run the ``@cocotb.test()``s of ``bench_file`` (the
    calling bench's ``__file__``) on it, with ``case`` (JSON-serialisable) for :func:`read_case`. The testbench
    writes its results into ``directory``. ``runner_options``: the rest of
    :func:`instabnn.hw.blocks.common.rtl_runner.run_cocotb` (build_args, public_flat_rw, test_args)."""
    from instabnn.hw.blocks.common.rtl_runner import run_cocotb

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "case.json").write_text(json.dumps(case))
    return run_cocotb(sources=sources, toplevel=toplevel, test_module=bench_module(bench_file),
                      parameters=parameters, directory=directory, test_dir=directory,
                      extra_env={CASE_ENV: str(directory / "case.json")}, seed=seed, **runner_options)


def run_full_rate_bench(bench_file: str | Path, case: dict, *, sources, toplevel: str, parameters: dict,
                        directory: Path, seed: int, yosys_netlist: bool = False) -> dict:
    """:func:`run_bench` on the RTL, or (``yosys_netlist``) on the flattened netlist Yosys synthesises from it with
    ``parameters`` (parameters and memory contents baked in, built without the UNOPTFLAT warning: a bit-level
    netlist has false combinational loops for Verilator). Returns the full-rate test's
    ``result_stream_full_rate.json``, with ``frames_checked_all_tests`` (the sum of ``frames_checked`` over the
    tests' results) where the bench counts frames."""
    from instabnn.hw.blocks.common.rtl_runner import VERILATOR_BUILD_ARGS, yosys_synth

    directory = Path(directory)
    build_args = VERILATOR_BUILD_ARGS
    if yosys_netlist:
        netlist = directory / "synth" / "netlist.v"
        yosys_synth(sources, toplevel, parameters, directory / "synth", netlist)
        sources, parameters, build_args = [netlist], {}, VERILATOR_BUILD_ARGS + ["-Wno-UNOPTFLAT"]
    run_bench(bench_file, case, sources=sources, toplevel=toplevel, parameters=parameters, directory=directory,
              seed=seed, build_args=build_args)
    result = json.loads((directory / "result_stream_full_rate.json").read_text())
    results = [json.loads(p.read_text()) for p in sorted(directory.glob("result_*.json"))]
    if any("frames_checked" in r for r in results):
        result["frames_checked_all_tests"] = sum(r["frames_checked"] for r in results)
    return result


def read_case() -> tuple[dict, Path]:
    """The cocotb side of :func:`run_bench`: the case and the folder the results go to."""
    return case_from_env(CASE_ENV, "its pytest functions (pytest hw/blocks/<block>)")


def random_pause(seed: int, probability: float):
    """Seeded pause generator: True (pause) with the given probability each cycle, in random-length runs."""
    rnd = random.Random(seed)
    while True:
        run = rnd.randint(1, 4)
        pause = rnd.random() < probability
        for _ in range(run):
            yield pause


def dut_int(dut, name: str) -> int | None:
    """A parameter read back from the DUT, or None where the simulator does not expose it."""
    try:
        return int(getattr(dut, name).value)
    except (AttributeError, TypeError, ValueError):
        return None


def check_dut_parameters(dut, expected: dict, port_widths: dict):
    """The DUT's parameters, where the simulator exposes them (:func:`dut_int`), and its port widths (``tdata``
    port name -> bits) against the case's."""
    read = {name: dut_int(dut, name) for name in expected}
    dut._log.info("DUT parameters %s (None: not exposed by the simulator)", read)
    for name, value in read.items():
        assert value is None or value == expected[name], f"DUT {name}={value}, the case says {expected[name]}"
    for port, width in port_widths.items():
        got = len(getattr(dut, port))
        assert got == width, f"{port} is {got} bits, expected {width}"


def case_from_env(env_name: str, runner_hint: str) -> tuple[dict, Path]:
    """The case file (JSON) named by the environment variable ``env_name`` and its folder."""
    case_path = os.environ.get(env_name)
    if not case_path:
        raise RuntimeError(f"{env_name} is not set: run this testbench through {runner_hint}")
    return json.loads(Path(case_path).read_text()), Path(case_path).parent


def write_result(directory: Path, name: str, result: dict):
    (directory / f"result_{name}.json").write_text(json.dumps(result, indent=2) + "\n")


class StreamWatch:
    """One AXI-Stream interface ``<prefix>_tvalid/_tready/_tdata``, sampled at each clock edge by :meth:`sample`:
    records ``(cycle, tdata)`` of every handshake in ``beats``, and (``check_held``: a DUT's output) checks the rule
    that an offered beat stays offered, unchanged, until it is taken; each breach is a line in ``violations``. After
    an edge with reset high the caller sets ``pending`` to None (a reset may withdraw an offered beat)."""

    def __init__(self, dut, prefix: str, check_held: bool = True):
        self.valid = getattr(dut, f"{prefix}_tvalid")
        self.ready = getattr(dut, f"{prefix}_tready")
        self.data = getattr(dut, f"{prefix}_tdata")
        self.prefix = prefix
        self.check_held = check_held
        self.beats: list[tuple[int, int]] = []
        self.violations: list[str] = []
        self.pending: int | None = None  # tdata of a beat offered and not taken at the last edge

    def sample(self, cycle: int) -> bool:
        """Sample the edge ``cycle``; returns whether a handshake happened at it."""
        valid = bool(self.valid.value)
        handshake = valid and bool(self.ready.value)
        if self.check_held:
            data = int(self.data.value) if valid else None
            if self.pending is not None and (not valid or data != self.pending):
                self.violations.append(f"{self.prefix}: cycle {cycle}: beat {self.pending:#x} withdrawn or changed "
                                       f"before its handshake (tvalid={int(valid)}, tdata={data})")
            self.pending = None if handshake or not valid else data
        if handshake:
            self.beats.append((cycle, int(self.data.value)))
        return handshake

    def clear(self):
        self.beats.clear()
        self.pending = None


class HandshakeMonitor:
    """Per clock edge, records ``(cycle, tdata)`` of every stream whose ``tvalid`` and ``tready`` are both high (the
    handshake happens at that edge; one :class:`StreamWatch` per stream). Edges with ``rst`` high are counted but
    not recorded.

    The streams in ``held`` (a DUT's outputs) are also checked for the rule that an offered beat stays offered,
    unchanged, until it is taken. The streams in ``joined`` (inputs a DUT takes together) must all hand over at the
    same edges. Breaches of either are lines in :attr:`violations`, which outlives :meth:`clear`."""

    def __init__(self, dut, prefixes: list[str], held: tuple[str, ...] = (), joined: tuple[str, ...] = ()):
        self.dut = dut
        self.cycle = 0
        self.watches = {p: StreamWatch(dut, p, check_held=p in held) for p in prefixes}
        self.beats: dict[str, list[tuple[int, int]]] = {p: w.beats for p, w in self.watches.items()}
        self.joined = joined
        self.join_violations: list[str] = []
        cocotb.start_soon(self._run())

    @property
    def violations(self) -> list[str]:
        return [v for w in self.watches.values() for v in w.violations] + self.join_violations

    async def _run(self):
        clk, rst = self.dut.clk, self.dut.rst
        while True:
            await RisingEdge(clk)
            self.cycle += 1
            if rst.value:
                for w in self.watches.values():
                    w.pending = None
                continue
            handshakes = {p: w.sample(self.cycle) for p, w in self.watches.items()}
            if len({handshakes[p] for p in self.joined}) > 1:
                self.join_violations.append(f"cycle {self.cycle}: "
                                            + ", ".join(f"{p} handshake {handshakes[p]}" for p in self.joined))

    def clear(self):
        for w in self.watches.values():
            w.clear()


class AxisHarness:
    """Clock, sources, sinks and a handshake monitor around a DUT with ``clk``, ``rst`` (synchronous, active high)
    and AXI-Stream ports ``<prefix>_tdata/_tvalid/_tready``. ``check_held``: the monitor also checks that every
    beat the DUT offers on a sink stream stays offered, unchanged, until taken; ``joined_sources``: the DUT takes
    all its inputs at the same edges (both: :attr:`protocol_violations`)."""

    def __init__(self, dut, sources: list[str], sinks: list[str], drivers_follow_reset: bool = True,
                 check_held: bool = False, joined_sources: bool = False):
        self.dut = dut
        reset = dut.rst if drivers_follow_reset else None
        self.sources = {p: AxiStreamSource(AxiStreamBus.from_prefix(dut, p), dut.clk, reset, byte_lanes=1)
                        for p in sources}
        self.sinks = {p: AxiStreamSink(AxiStreamBus.from_prefix(dut, p), dut.clk, reset, byte_lanes=1)
                      for p in sinks}
        for driver in (*self.sources.values(), *self.sinks.values()):
            driver.log.setLevel("WARNING")
        self.monitor = HandshakeMonitor(dut, sources + sinks, held=tuple(sinks) if check_held else (),
                                        joined=tuple(sources) if joined_sources else ())
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()

    @property
    def cycle(self) -> int:
        return self.monitor.cycle

    def beats(self, prefix: str) -> list[tuple[int, int]]:
        return self.monitor.beats[prefix]

    @property
    def protocol_violations(self) -> list[str]:
        """Output beats withdrawn or changed before their handshake (with ``check_held``), inputs taken apart (with
        ``joined_sources``)."""
        return self.monitor.violations

    def set_idle_backpressure(self, seed: int | None, idle: float = 0.3, backpressure: float = 0.5):
        """Seeded random idle on every source and backpressure on every sink; ``None``: full rate."""
        for i, driver in enumerate((*self.sources.values(), *self.sinks.values())):
            driver.clear_pause_generator()
            driver.pause = False
            if seed is not None:
                probability = idle if i < len(self.sources) else backpressure
                driver.set_pause_generator(random_pause(seed + i, probability))

    async def reset(self, cycles: int = 3):
        """Hold rst high for ``cycles`` clock edges. Returns right after the last reset edge, with the records and
        the sinks cleared: the next edge is the first one at which the DUT (and the monitor) may see a handshake."""
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        for sink in self.sinks.values():
            sink.clear()
        self.monitor.clear()

    async def send(self, prefix: str, words: list[int]):
        """Queue ``words`` on a source (one beat each); returns at once (the source drives them in order)."""
        if len(words):
            await self.sources[prefix].send(AxiStreamFrame([int(w) for w in words]))

    async def wait_sources(self):
        """Until every source has driven all it was given; returns one edge after the last beat was taken."""
        for source in self.sources.values():
            await source.wait()  # returns at the clock edge that accepted the last beat
        await RisingEdge(self.dut.clk)

    async def wait_beats(self, prefix: str, n: int, timeout_cycles: int, what: str = ""):
        start = self.cycle
        while len(self.beats(prefix)) < n:
            assert self.cycle - start < timeout_cycles, (
                f"{what}timeout: {len(self.beats(prefix))} of {n} {prefix} beats after {timeout_cycles} cycles"
            )
            await RisingEdge(self.dut.clk)

    async def idle_cycles(self, n: int):
        for _ in range(n):
            await RisingEdge(self.dut.clk)


def same_frames(sampled, sent) -> bool:
    """Whether the inputs a scoreboard read back from the monitor are the frames sent: equal arrays, or (a DUT with
    several input streams) tuples of them, equal stream by stream."""
    if isinstance(sent, tuple):
        return isinstance(sampled, tuple) and len(sampled) == len(sent) and all(map(same_frames, sampled, sent))
    return np.array_equal(sampled, sent)


async def idle_backpressure(axis: AxisHarness, seed: int, n_frames: int, *, random_frames: Callable[[int], object],
                            send_frames: Callable[[object], Awaitable], wait_outputs: Callable[[str, int], Awaitable],
                            check_outputs: Callable[[str, int], object], result_dir: Path,
                            same_inputs: Callable[[object, object], bool] = same_frames, count_frames: bool = False,
                            name: str = "stream_idle_backpressure") -> int:
    """The body of a bench's idle/backpressure test; returns the cycles from the first input handshake to the last
    output handshake.

    After a reset, seeded (``seed``) random idle on every source and backpressure on every sink of ``axis`` (the
    bench's :class:`AxisHarness`), ``n_frames`` frames sent; then every output exact, nothing lost or added: the
    bench's scoreboard ``check_outputs(name, n_frames)`` (which returns the inputs as the DUT sampled them) passes
    and those inputs are the frames sent (``same_inputs(sampled, frames)``). The bench gives ``random_frames(n)``
    (``n`` random frames), ``send_frames(frames)`` (queue them) and ``wait_outputs(tag, n)`` (until the outputs of
    ``n`` frames are out, then long enough that anything extra would be seen), as for :func:`reset_mid_stream`.
    ``result_name.json`` in ``result_dir`` gets the frames and cycles; with ``count_frames`` also
    ``frames_checked`` (a bench whose results :func:`run_full_rate_bench` sums)."""
    await axis.reset()
    axis.set_idle_backpressure(seed)
    frames = random_frames(n_frames)
    await send_frames(frames)
    await wait_outputs(name, n_frames)
    sampled = check_outputs(name, n_frames)
    assert same_inputs(sampled, frames), f"{name}: the monitored input differs from what the source sent"
    first_in = min(beats[0][0] for beats in map(axis.beats, axis.sources) if beats)
    last_out = max(beats[-1][0] for beats in map(axis.beats, axis.sinks) if beats)
    cycles = last_out - first_in + 1
    axis.dut._log.info("%s: %d frames in %d cycles with idle and backpressure (%.1f per frame)", name, n_frames,
                       cycles, cycles / n_frames)
    result = {"n_frames": n_frames, "total_cycles": cycles}
    if count_frames:
        result["frames_checked"] = n_frames
    write_result(result_dir, name, result)
    axis.set_idle_backpressure(None)
    return cycles


async def reset_mid_stream(tb, name: str, delays: list[int], *, frame_beats: int, input_beats: Callable[[], int],
                           send_frames: Callable[[int], Awaitable], wait_outputs: Callable[[str, int], Awaitable],
                           check_outputs: Callable[[str, int], object] | None = None,
                           outputs: tuple[str, ...] = ("m_axis",), frames_before: int = 3, frames_after: int = 2,
                           frames_after_last: int | None = None, started: Callable[[], bool] | None = None,
                           complete_frames: Callable[[str], Awaitable] | None = None) -> int:
    """The body of a bench's reset-in-mid-stream test; returns the frames checked after the resets.

    ``tb`` is made with its sources not tied to the reset: a source may be valid at the reset edge and its stream
    goes on right after it, so the unit must start a fresh frame with the first beat taken after the reset. For
    each offset in ``delays`` (clock edges after the first input handshake, or after ``started()`` turns true),
    alternately at full rate and with idle and backpressure: ``frames_before`` frames queued, a single-cycle reset
    at that offset, no stream in ``outputs`` valid at the next edge, the interrupted frame completed (the rest of
    the stream is the start of new frames), ``frames_after`` more (``frames_after_last`` at the last offset), and
    then every output of the frames the DUT took after the reset exact, with nothing stale or extra.

    ``tb`` has ``dut`` (``clk``, ``rst``), ``rng``, ``log``, ``reset(cycles)`` (returns right after the last reset
    edge, records cleared), ``set_idle_backpressure(seed)``, ``send_tail(k)`` (queues the last ``k`` beats of a
    random frame), ``wait_sources()`` (as :meth:`AxisHarness.wait_sources`) and ``check_outputs(tag, n)`` (the
    scoreboard of the ``n`` frames recorded; ``check_outputs`` replaces it). Where completing the interrupted
    frame takes more than ``send_tail`` once the sources are done (several streams that must stay in step),
    ``complete_frames(tag)`` does it instead, called right after the reset check. The rest is the bench's:
    ``input_beats()``, input beats recorded since the last reset (``frame_beats`` a frame: an MVU's vector is its
    frame); ``send_frames(n)``, queue ``n`` random frames; ``wait_outputs(tag, n)``, until the outputs of ``n``
    frames are out, then long enough that anything extra would be seen.
    """
    dut = tb.dut
    check_outputs = check_outputs or tb.check_outputs
    started = started or (lambda: input_beats() > 0)
    checked = 0
    for i, delay in enumerate(delays):
        tag = f"{name}[delay={delay}]"
        tb.set_idle_backpressure(None)
        await tb.reset()
        if i % 2:
            tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
        await send_frames(frames_before)
        while not started():
            await RisingEdge(dut.clk)
        for _ in range(delay):
            await RisingEdge(dut.clk)
        before = input_beats()
        await tb.reset(cycles=1)  # a single-cycle reset must be enough
        await RisingEdge(dut.clk)  # values seen at this edge are the state the reset left
        for port in outputs:
            assert not getattr(dut, f"{port}_tvalid").value, f"{tag}: {port}_tvalid high right after reset"
        # the rest of the interrupted stream is the start of new frames: complete the last one, then more
        if complete_frames is not None:
            await complete_frames(tag)
        else:
            await tb.wait_sources()
            if pad := (-input_beats()) % frame_beats:
                await tb.send_tail(pad)
        last = i == len(delays) - 1
        await send_frames(frames_after_last if last and frames_after_last is not None else frames_after)
        await tb.wait_sources()
        assert input_beats() % frame_beats == 0, f"{tag}: {input_beats()} input beats after the reset"
        total = input_beats() // frame_beats
        await wait_outputs(tag, total)
        check_outputs(tag, total)
        tb.log.debug("%s: reset after %d input beats; %d frames after it exact", tag, before, total)
        checked += total
    tb.log.info("%s: reset at %d offsets %s, %d frames after the resets exact", name, len(delays), delays, checked)
    tb.set_idle_backpressure(None)
    return checked
