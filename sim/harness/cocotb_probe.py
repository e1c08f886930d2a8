"""cocotb probe of a generated accelerator inside ``cosim_harness``: records every handshake of the streams named in
``COSIM_PROBE_STREAMS`` (the signals that carry the lowered graph's tensors, from the manifest), so that a mismatch
can be traced to the first layer whose output differs from the reference (:func:`instabnn.sim.cosim.localize`).

Python samples the streams every clock here, so this is for one or a few images; the bulk co-simulation runs
without it (``cocotb_run.py``). Writes ``probe.json``: for each stream, the list of its beats as hex strings.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge


@cocotb.test()
async def probe(dut):
    names = json.loads(os.environ["COSIM_PROBE_STREAMS"])
    max_cycles = int(os.environ["COSIM_MAX_CYCLES"])
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    top = dut.dut
    handles = {n: (getattr(top, f"{n}_tdata"), getattr(top, f"{n}_tvalid"), getattr(top, f"{n}_tready"))
               for n in names}
    beats: dict[str, list[str]] = {n: [] for n in names}
    for _ in range(max_cycles):
        await RisingEdge(dut.clk)
        await ReadOnly()
        for n, (data, valid, ready) in handles.items():
            if valid.value and ready.value:
                beats[n].append(format(int(data.value), "x"))
        if dut.done.value:
            break
    with open("probe.json", "w") as f:
        json.dump(beats, f)
