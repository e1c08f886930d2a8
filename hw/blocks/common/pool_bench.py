"""What the two pooling blocks' testbenches share (``pool``: ``pool_sum`` and ``global_sum``; ``maxpool_bits``): the
same ports (``s_axis`` in, ``m_axis`` out: C x H x W frames, PE channels a beat, pixel by pixel) and the same timing
contract (one input beat per clock; every output beat leaves ``spec.latency`` edges after the input beat that
completes it, ``spec.completing_beats``). :class:`PoolBench` (the case, the parameter check, the scoreboard), the
three cocotb test bodies (:func:`stream_full_rate`, :func:`stream_idle_backpressure`, :func:`reset_mid_frame`: a
bench's ``@cocotb.test()``s call them with its :class:`PoolBench`) and the pytest-side check of the full-rate
results (:func:`check_measurements`)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from instabnn.hw.blocks.common.axis_tb import (CYCLE_TOLERANCE, AxisHarness, check_dut_parameters, idle_backpressure,
                                               read_case, reset_mid_stream, write_result)


class PoolBench(AxisHarness):
    """The cocotb side of a pooling bench: the case (``spec``, ``n_frames``, ``seed``), the DUT's parameters and
    port widths against the spec, the output protocol check and the scoreboard. A bench gives :meth:`spec_from_case`,
    :meth:`expected_parameters`, :meth:`random_inputs` (``n`` frames ``(n, C, H, W)``), :meth:`frame_words` (frames
    -> the words of each frame), :meth:`input_frames` and :meth:`output_frames` (recorded words -> frames)."""

    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        case, self.case_dir = read_case()
        self.spec = self.spec_from_case(case)
        self.n_frames = int(case["n_frames"])
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        # drivers_follow_reset=False: the source keeps driving through a reset (tvalid may be high at the reset edge)
        super().__init__(dut, ["s_axis"], ["m_axis"], drivers_follow_reset, check_held=True)
        self.log = dut._log
        s = self.spec
        check_dut_parameters(dut, self.expected_parameters(), {"s_axis_tdata": s.in_width, "m_axis_tdata": s.out_width})
        self.frames_checked = 0

    @property
    def in_beats(self) -> list[tuple[int, int]]:
        return self.beats("s_axis")

    @property
    def out_beats(self) -> list[tuple[int, int]]:
        return self.beats("m_axis")

    async def send_frames(self, q: np.ndarray):
        for words in self.frame_words(q):
            await self.send("s_axis", words)

    async def send_tail(self, beats: int):
        """The last ``beats`` beats of one random frame (completes an interrupted frame)."""
        await self.send("s_axis", self.frame_words(self.random_inputs(1))[0][-beats:])

    async def wait_outputs(self, tag: str, n_frames: int, slowdown: float = 8.0):
        """Until the outputs of ``n_frames`` frames are out and their inputs in, the stream up to ``slowdown`` times
        slower than full rate (idle and backpressure), then long enough that anything extra would be seen."""
        s = self.spec
        timeout = int((n_frames + 2) * s.frame_beats * 2 * slowdown + 4 * s.latency + 200)
        await self.wait_beats("m_axis", n_frames * s.out_frame_beats, timeout, what=f"{tag}: ")
        # rows cropped after the last window (maxpool_bits): the frame's input goes on after its last output
        await self.wait_beats("s_axis", n_frames * s.frame_beats, timeout, what=f"{tag}: ")
        await self.idle_cycles(2 * s.latency + 10)  # nothing extra comes out

    def check_outputs(self, tag: str, n_frames: int) -> np.ndarray:
        """Scoreboard: the recorded input words (as the DUT sampled them) against the recorded output beats; returns
        the input frames."""
        s = self.spec
        for what, beats, per_frame in (("input", self.in_beats, s.frame_beats),
                                       ("output", self.out_beats, s.out_frame_beats)):
            assert len(beats) == n_frames * per_frame, (
                f"{tag}: {len(beats)} {what} beats, expected {n_frames * per_frame} ({n_frames} frames)")
        violations = self.protocol_violations
        assert not violations, f"{tag}: stream protocol: " + "; ".join(violations[:5])
        q = self.input_frames([w for _, w in self.in_beats])
        expected = s.reference(q)
        got = self.output_frames([w for _, w in self.out_beats])
        bad = np.argwhere(got != expected)
        if len(bad):
            for f, c, y, x in bad[:10]:
                self.log.error("%s: frame %d output pixel (%d, %d) channel %d: expected %d, got %d", tag, f, y, x, c,
                               expected[f, c, y, x], got[f, c, y, x])
            f, c, y, x = bad[0]
            raise AssertionError(f"{tag}: {len(bad)} mismatches; first at frame {f}, output pixel (row {y}, column "
                                 f"{x}), channel {c}: expected {expected[f, c, y, x]}, got {got[f, c, y, x]}")
        self.frames_checked += n_frames
        return q


async def stream_full_rate(tb: PoolBench):
    """No idle, no backpressure: exact outputs; clocks per frame (input and output side) within 2 % of
    ``spec.cycles_per_frame``; the input taken at one beat per clock; every output beat ``spec.latency`` edges
    after the input beat that completes it. Results in ``result_stream_full_rate.json``."""
    s = tb.spec
    await tb.reset()
    n = max(tb.n_frames, 4)
    q = tb.random_inputs(n)
    await tb.send_frames(q)  # all queued: the source stays valid from the first beat to the last
    await tb.wait_outputs("stream_full_rate", n, slowdown=1)
    got_q = tb.check_outputs("stream_full_rate", n)
    assert np.array_equal(got_q, q), "the monitored inputs differ from the sent"

    in_cycles = np.array([c for c, _ in tb.in_beats])
    out_cycles = np.array([c for c, _ in tb.out_beats])
    in_starts, out_starts = in_cycles[::s.frame_beats], out_cycles[::s.out_frame_beats]
    measured = (in_starts[-1] - in_starts[0]) / (n - 1)
    out_measured = (out_starts[-1] - out_starts[0]) / (n - 1)
    completing = (np.arange(n)[:, None] * s.frame_beats + s.completing_beats()[None, :]).reshape(-1)
    beat_latencies = sorted(set((out_cycles - in_cycles[completing]).tolist()))
    analytic = s.cycles_per_frame
    tb.log.info("%s: cycles per frame measured %.3f (input), %.3f (output), analytic %.3f; per-beat latency %s, "
                "stated %d", s.name, measured, out_measured, analytic, beat_latencies, s.latency)
    write_result(tb.case_dir, "stream_full_rate", {
        "spec": asdict(s), "top": tb.dut._name, "n_frames": n, "frame_beats": s.frame_beats,
        "out_frame_beats": s.out_frame_beats,
        "cycles_per_frame_measured": measured, "cycles_per_frame_measured_output": out_measured,
        "cycles_per_frame_analytic": analytic, "latency_measured": beat_latencies, "latency_stated": s.latency,
        "total_cycles": int(out_cycles[-1] - in_cycles[0] + 1), "frames_checked": tb.frames_checked,
    })
    assert abs(measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{measured} cycles per frame, analytic {analytic}"
    assert abs(out_measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{out_measured} cycles per frame at the output"
    assert np.all(np.diff(in_cycles) == 1), "the input was not taken at one beat per clock"
    assert beat_latencies == [s.latency], f"per-beat latencies {beat_latencies}, stated {s.latency}"


async def stream_idle_backpressure(tb: PoolBench):
    """Random idle on the input, random backpressure on the output: exact, nothing lost or added
    (:func:`~instabnn.hw.blocks.common.axis_tb.idle_backpressure`)."""
    await idle_backpressure(tb, int(tb.rng.integers(1 << 30)), tb.n_frames, random_frames=tb.random_inputs,
                            send_frames=tb.send_frames, wait_outputs=tb.wait_outputs, check_outputs=tb.check_outputs,
                            result_dir=tb.case_dir, count_frames=True)


def reset_delays(spec) -> list[int]:
    """Clock offsets (from the first input handshake) for the resets: inside the first frame, at its end, with a
    result in the pipeline and in the output FIFO, inside the second frame."""
    fb, lat = spec.frame_beats, spec.latency
    first_out = int(spec.completing_beats()[0])
    points = [0, 1, 2, first_out, first_out + 1, first_out + lat, fb // 2, fb - 1, fb, fb + 1, fb + lat + 1,
              fb + fb // 2 + 1]
    return sorted(set(p for p in points if p >= 0))


async def reset_mid_frame(tb: PoolBench):
    """Reset in the middle of a frame, then correct operation (no stale beat, every later frame exact):
    :func:`~instabnn.hw.blocks.common.axis_tb.reset_mid_stream` at the offsets of :func:`reset_delays`,
    alternately with idle and backpressure. ``tb`` is made with ``drivers_follow_reset=False``: the stream goes on
    right after the reset and the unit must start a fresh frame with the first beat taken after it."""
    delays = reset_delays(tb.spec)
    checked = await reset_mid_stream(tb, "reset_mid_frame", delays, frame_beats=tb.spec.frame_beats,
                                     input_beats=lambda: len(tb.in_beats),
                                     send_frames=lambda n: tb.send_frames(tb.random_inputs(n)),
                                     wait_outputs=tb.wait_outputs, frames_after_last=max(2, tb.n_frames // 4))
    write_result(tb.case_dir, "reset_mid_frame", {"delays": delays, "frames_checked": checked})


def check_measurements(result: dict):
    """The pytest side: ``result`` (the full-rate test's results) has one frame per ``frame_beats`` clocks, measured
    within 2 % on both sides, and the stated latency, every output beat."""
    analytic = result["cycles_per_frame_analytic"]
    assert analytic == result["frame_beats"]
    assert abs(result["cycles_per_frame_measured"] - analytic) <= CYCLE_TOLERANCE * analytic
    assert abs(result["cycles_per_frame_measured_output"] - analytic) <= CYCLE_TOLERANCE * analytic
    assert result["latency_measured"] == [result["latency_stated"]]
