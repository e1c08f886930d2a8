"""The residual block tail with INSTA-PReLU (+)."""
