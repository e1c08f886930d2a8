"""The RTL library: every block's SystemVerilog under ``hw/blocks/<block>/`` (shared modules in
``hw/blocks/common/``), indexed by module name, and which files a block needs.

Every tool that reads the library (the compiler's source list, the block testbenches, Yosys) asks
:func:`rtl_sources` / :func:`rtl_paths` instead of keeping its own list, so a block that starts instantiating a
shared module (say ``output_fifo``) needs no other change. One file holds one module and is named after it; a
module name found in two folders is an error.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

LIBRARY_DIR = Path(__file__).resolve().parent
"""The folder of the block folders."""


@cache
def module_index() -> dict[str, Path]:
    """Module name -> its ``.sv`` file, over every block folder."""
    index: dict[str, Path] = {}
    for path in sorted(LIBRARY_DIR.rglob("*.sv")):
        if path.stem in index:
            raise ValueError(f"RTL module {path.stem} is defined twice: {index[path.stem]} and {path}")
        index[path.stem] = path
    return index


def rtl_sources(modules) -> list[str]:
    """File names of ``modules`` (a name or an iterable of names) and of the library modules they instantiate,
    submodules first."""
    modules = {modules} if isinstance(modules, str) else set(modules)
    index = module_index()
    missing = sorted(modules - index.keys())
    if missing:
        raise ValueError(f"no RTL library module {', '.join(missing)} in {LIBRARY_DIR}")
    order: list[str] = []

    def visit(m: str):
        if m in order:
            return
        text = index[m].read_text()
        for sub in sorted(index.keys() - {m}):
            if re.search(rf"^\s*{sub}\s*(#|\w+\s*\()", text, re.M):
                visit(sub)
        order.append(m)

    for m in sorted(modules):
        visit(m)
    return [f"{m}.sv" for m in order]


def library_file(name: str) -> Path:
    """The path of a library file named by :func:`rtl_sources` (``<module>.sv``)."""
    return module_index()[Path(name).stem]


def rtl_paths(modules) -> list[Path]:
    """:func:`rtl_sources` as paths."""
    return [library_file(name) for name in rtl_sources(modules)]
