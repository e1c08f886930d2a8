"""The residual block tail with RPReLU."""
