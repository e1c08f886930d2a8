"""The co-simulation harness: fixed HDL (``cosim_harness.sv``), the plain Verilator main (``cosim_main.cpp``) and
the cocotb entry points run on it (``cocotb_run``: wait for ``done``; ``cocotb_probe``: record every probed stream)."""
