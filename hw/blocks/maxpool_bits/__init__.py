"""The bit max-pool of the plain W1A1 chains (OR of K x K windows at stride K)."""
