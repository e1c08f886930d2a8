"""Integer golden functions: the single definition of what the hardware computes."""
