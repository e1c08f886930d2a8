"""The RTL library (``hw/rtl/``): where it is, and which files a block needs.

Every tool that reads the library (the compiler's source list, the block testbenches, Yosys) asks
:func:`rtl_sources` instead of keeping its own list, so a block that starts instantiating a shared module (say
``output_fifo``) needs no other change.
"""

from __future__ import annotations

import re
from pathlib import Path

RTL_DIR = Path(__file__).resolve().parent / "rtl"


def rtl_sources(modules) -> list[str]:
    """File names of ``modules`` (a name or an iterable of names) and of the library modules they instantiate,
    submodules first."""
    modules = {modules} if isinstance(modules, str) else set(modules)
    known = {p.stem for p in RTL_DIR.glob("*.sv")}
    missing = sorted(modules - known)
    if missing:
        raise ValueError(f"no RTL library module {', '.join(missing)} in {RTL_DIR}")
    order: list[str] = []

    def visit(m: str):
        if m in order:
            return
        text = (RTL_DIR / f"{m}.sv").read_text()
        for sub in sorted(known - {m}):
            if re.search(rf"^\s*{sub}\s*(#|\w+\s*\()", text, re.M):
                visit(sub)
        order.append(m)

    for m in sorted(modules):
        visit(m)
    return [f"{m}.sv" for m in order]


def rtl_paths(modules) -> list[Path]:
    """:func:`rtl_sources` as paths."""
    return [RTL_DIR / name for name in rtl_sources(modules)]
