"""The sliding-window (im2col) generator."""
