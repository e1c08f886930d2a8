"""The binary (XNOR-popcount) matrix-vector unit."""
