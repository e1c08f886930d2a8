"""cocotb test of a whole generated accelerator inside ``cosim_harness`` (see :mod:`instabnn.sim.cosim`).

The harness feeds the images from its own memory and stores the logits, so Python is not in the per-cycle loop:
the clock and reset come from ``cosim_tb`` itself (Verilator ``--timing``), and this test only waits for ``done``
and records the wall-clock time of the run in ``cocotb_run.json`` in the working directory.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.triggers import RisingEdge, Timer, with_timeout


@cocotb.test()
async def network(dut):
    max_cycles = int(os.environ["COSIM_MAX_CYCLES"])
    start = time.perf_counter()
    await with_timeout(RisingEdge(dut.done), max_cycles * 10, "ns")
    seconds = time.perf_counter() - start
    await Timer(20, "ns")
    with open("cocotb_run.json", "w") as f:
        json.dump({"seconds": seconds, "tlast_errors": int(dut.tlast_errors.value)}, f)
