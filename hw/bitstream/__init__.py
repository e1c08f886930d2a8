"""Bitstreams from a generated accelerator RTL directory: PYNQ-Z2 (Vivado) and ULX3S-85F (open ECP5 flow).

The package, by concern: :mod:`.accelerator` (the RTL directory's manifest), :mod:`.tools` (tools, versions, the
command recorder), :mod:`.render` (the one template renderer) with the fixed HDL / Tcl / scripts in ``templates/``,
one module per board (:mod:`.pynq_z2`, :mod:`.ulx3s`) and :mod:`.flow` (the board-independent build, its report and
the command line; its docstring describes the flows). ``python -m instabnn.hw.bitstream`` runs :func:`main`.
"""

from .accelerator import Accelerator, BitstreamError, load_accelerator
from .flow import EXIT_FAILED, EXIT_NO_VIVADO, EXIT_OK, EXIT_TIMING, EXIT_USAGE, build, main

__all__ = ["Accelerator", "BitstreamError", "load_accelerator", "build", "main", "EXIT_OK", "EXIT_USAGE",
           "EXIT_FAILED", "EXIT_NO_VIVADO", "EXIT_TIMING"]
