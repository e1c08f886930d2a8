"""The block library's layout (docs/adding-a-block.md): every folder under hw/blocks is a registered, packaged block
with its spec, RTL and testbench, and the RTL index finds every module once."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

from instabnn.hw.blocks import BLOCKS
from instabnn.hw.blocks.rtl_library import LIBRARY_DIR, module_index, rtl_paths

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = sorted(p.name for p in LIBRARY_DIR.iterdir() if (p / "__init__.py").is_file() and p.name != "common")


def test_every_block_folder_is_registered():
    assert sorted(BLOCKS) == FOLDERS
    for name in FOLDERS:
        assert BLOCKS[name] == f"instabnn.hw.blocks.{name}.spec"


def test_a_wheel_carries_every_package_and_every_hdl_and_template_file(tmp_path):
    """A non-editable install finds every block, its RTL, the harness and the bitstream templates: setup.py
    discovers the packages, pyproject.toml's package-data names the files."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("instabnn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in FOLDERS + ["common"]:
        assert f"instabnn/hw/blocks/{name}/__init__.py" in names, name
    data = [p for p in ROOT.glob("hw/blocks/*/*.sv")] + list((ROOT / "hw/bitstream/templates").iterdir()) + \
        list((ROOT / "sim/harness").glob("*.[sc]*")) + [ROOT / "deploy/sim_top.sv"]
    assert len(data) > 30
    for path in data:
        assert "instabnn/" + path.relative_to(ROOT).as_posix() in names, f"{path} is not in the wheel"


def test_every_block_has_its_spec_rtl_and_bench():
    for name, spec_module in BLOCKS.items():
        folder = LIBRARY_DIR / name
        importlib.import_module(spec_module)
        assert (folder / f"test_{name}.py").is_file(), f"{folder}: no test_{name}.py"
        assert list(folder.glob("*.sv")), f"{folder}: no SystemVerilog"


def test_rtl_index_resolves_shared_modules_from_common():
    index = module_index()
    assert all(path.stem == name and path.is_relative_to(LIBRARY_DIR) for name, path in index.items())
    assert {p.name for p in rtl_paths("binary_mvu")} == {"popcount.sv", "mvu_fold_control.sv", "output_fifo.sv",
                                                      "binary_mvu.sv"}
    assert index["output_fifo"].parent.name == "common"
