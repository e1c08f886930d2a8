"""Shared RTL (output FIFO, moment polynomial, statistics accumulator), bench helpers and packing helpers of the hardware blocks."""
