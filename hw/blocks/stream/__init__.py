"""The stream utilities (stream_fifo, stream_duplicate, width_converter)."""
