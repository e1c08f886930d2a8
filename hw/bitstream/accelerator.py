"""The accelerator RTL directory and its manifest ``accelerator.json`` (written by ``hw/compile/compiler.py``)."""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_FIELDS = ("top", "sources", "mem_files", "in_width", "out_width", "input_shape", "classes")


class BitstreamError(RuntimeError):
    """Bad input (RTL directory, manifest) or a failed tool run; the message names the file or the log."""


@dataclass
class Accelerator:
    """An accelerator RTL directory as described by its ``accelerator.json``."""

    rtl_dir: Path
    manifest_path: Path
    top: str
    sources: list[str]
    mem_files: list[str]
    in_width: int
    out_width: int
    input_shape: list[int]
    classes: int
    model_sha256: str | None = None
    folding: object = None
    clock_mhz: float = 100.0
    raw: dict = field(default_factory=dict)

    @property
    def pixels(self) -> int:
        return int(math.prod(self.input_shape[1:])) if len(self.input_shape) == 3 else int(math.prod(self.input_shape))


def load_accelerator(rtl_dir: str | Path) -> Accelerator:
    """Read and check ``rtl_dir/accelerator.json``; every error names the directory or the file."""
    rtl_dir = Path(rtl_dir)
    if not rtl_dir.exists():
        raise BitstreamError(f"RTL directory {rtl_dir}: no such directory (make the accelerator RTL first, "
                             "hw/compile/compiler.py)")
    if not rtl_dir.is_dir():
        raise BitstreamError(f"RTL directory {rtl_dir}: not a directory")
    path = rtl_dir / "accelerator.json"
    if not path.is_file():
        raise BitstreamError(f"{path}: no such file (an accelerator RTL directory holds its manifest "
                             "accelerator.json)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise BitstreamError(f"{path}: unreadable ({e})") from e
    except json.JSONDecodeError as e:
        raise BitstreamError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    if not isinstance(data, dict):
        raise BitstreamError(f"{path}: a JSON object expected, got {type(data).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in data]
    if missing:
        raise BitstreamError(f"{path}: field(s) {', '.join(repr(k) for k in missing)} missing")

    def bad(msg: str) -> BitstreamError:
        return BitstreamError(f"{path}: {msg}")

    top = data["top"]
    if not isinstance(top, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise bad(f"'top' must be a Verilog module name, got {top!r}")
    lists = {}
    for key in ("sources", "mem_files"):
        val = data[key]
        if not isinstance(val, list) or not all(isinstance(s, str) and s for s in val):
            raise bad(f"{key!r} must be a list of relative file paths")
        for rel in val:
            if re.search(r"[\s\[\]{}$\\\"';]", rel):
                raise bad(f"{key!r} entry {rel!r}: no whitespace or Tcl / shell special characters in file names")
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise bad(f"{key!r} entry {rel!r} must be a path relative to {rtl_dir} (no '..')")
            if not (rtl_dir / rel).is_file():
                raise bad(f"{key!r} names {rel!r}, but {rtl_dir / rel} does not exist")
        lists[key] = list(val)
    if not lists["sources"]:
        raise bad("'sources' is empty")
    names = [Path(m).name for m in lists["mem_files"]]
    if len(set(names)) != len(names):
        raise bad("'mem_files' has two files of the same name (the RTL names them by bare file name)")
    widths = {}
    for key in ("in_width", "out_width"):
        w = data[key]
        if not isinstance(w, int) or isinstance(w, bool) or w < 8 or w % 8:
            raise bad(f"{key!r} must be a positive multiple of 8, got {w!r}")
        widths[key] = w
    shape = data["input_shape"]
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise bad(f"'input_shape' must be a list of positive integers [C, H, W], got {shape!r}")
    classes = data["classes"]
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise bad(f"'classes' must be a positive integer, got {classes!r}")
    clock = data.get("clock_mhz", 100)
    if clock is None:
        clock = 100
    if not isinstance(clock, (int, float)) or isinstance(clock, bool) or not 1 <= clock <= 800:
        raise bad(f"'clock_mhz' must be a number of MHz (1 .. 800), got {clock!r}")
    return Accelerator(rtl_dir=rtl_dir, manifest_path=path, top=top, sources=lists["sources"],
                       mem_files=lists["mem_files"], in_width=widths["in_width"], out_width=widths["out_width"],
                       input_shape=list(shape), classes=classes, model_sha256=data.get("model_sha256"),
                       folding=data.get("folding"), clock_mhz=float(clock), raw=data)


def copy_rtl(acc: Accelerator, dest: Path) -> tuple[list[Path], list[Path]]:
    """Copy the sources (their relative paths kept) and the mem files (also flat, by bare name: the RTL's
    $readmemh names) into ``dest``; returns ``(sources, flat mem files)`` under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    srcs = []
    for rel in acc.sources:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(acc.rtl_dir / rel, target)
        srcs.append(target)
    mems = []
    for rel in acc.mem_files:
        flat = dest / Path(rel).name
        shutil.copy2(acc.rtl_dir / rel, flat)
        if Path(rel).name != rel:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(acc.rtl_dir / rel, dest / rel)
        mems.append(flat)
    shutil.copy2(acc.manifest_path, dest / "accelerator.json")
    return srcs, mems

