"""The block library's layout (docs/adding-a-block.md): every folder under hw/blocks is a registered, packaged block
with its spec, RTL and testbench, and the RTL index finds every module once."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

from instabnn.hw.blocks import BLOCKS
from instabnn.hw.rtl_library import LIBRARY_DIR, module_index, rtl_paths

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = sorted(p.name for p in LIBRARY_DIR.iterdir() if (p / "__init__.py").is_file() and p.name != "common")


def test_every_block_folder_is_registered_and_packaged():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert sorted(BLOCKS) == FOLDERS
    for name in FOLDERS:
        assert BLOCKS[name] == f"instabnn.hw.blocks.{name}.spec"
        assert f"instabnn.hw.blocks.{name}" in packages, f"pyproject.toml: package instabnn.hw.blocks.{name} missing"
    assert "instabnn.hw.blocks" in packages and "instabnn.hw.blocks.common" in packages


def test_every_block_has_its_spec_rtl_and_bench():
    for name, spec_module in BLOCKS.items():
        folder = LIBRARY_DIR / name
        importlib.import_module(spec_module)
        assert (folder / f"test_{name}.py").is_file(), f"{folder}: no test_{name}.py"
        assert list(folder.glob("*.sv")), f"{folder}: no SystemVerilog"


def test_rtl_index_resolves_shared_modules_from_common():
    index = module_index()
    assert all(path.stem == name and path.is_relative_to(LIBRARY_DIR) for name, path in index.items())
    assert {p.name for p in rtl_paths("binary_mvu")} == {"popcount.sv", "output_fifo.sv", "binary_mvu.sv"}
    assert index["output_fifo"].parent.name == "common"
