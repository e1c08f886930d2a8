"""The sum-pooling units (pool_sum: K x K windows; global_sum: whole frame)."""
