"""What two or more blocks use: RTL (output FIFO, moment polynomial, statistics accumulator), the testbench
helpers and the packing helpers (memory files, mixed-width lanes, FINN-order frames)."""
