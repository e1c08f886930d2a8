"""The integer matrix-vector unit."""
