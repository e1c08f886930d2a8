"""What the tools write: atomic file writes, and output folders that a tool owns.

A file is written through a temporary file beside it and a rename, so that a reader sees the old file or the whole
new one, never a part.

An output folder (``--out DIR`` of the compiler, the bitstream build, the deployment folder, the hls4ml check) is
built in a temporary sibling ``.DIR.tmp-*`` and swapped in when it is complete. The tool that writes it leaves a
marker, ``.instabnn-output.json``, naming the tool and listing every file it wrote. An existing DIR is replaced only
when it is empty, or when its marker names the same tool and it holds no file that the marker does not list;
anything else (a run folder, a checkpoint, a folder of another tool, a file the user added) is refused with an
:class:`OutputError` naming DIR, before any work, and DIR is left as it was::

    with OutputDir("runs/demo/rtl", "instabnn-compile") as staging:
        (staging / "top.sv").write_text(...)
    # here runs/demo/rtl is the new folder; on an exception it is untouched and the staging folder is gone
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

MARKER = ".instabnn-output.json"
MARKER_FORMAT = "instabnn-output/1"


class OutputError(RuntimeError):
    """An output path that the tool may not write; the message names it and says how to proceed."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# ------------------------------------------------------------------------------------------ owned folders


def _files(folder: Path) -> list[str]:
    """Every file (and link) below ``folder``, as sorted POSIX paths relative to it."""
    found = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        found += [(rel / f).as_posix() for f in files]
        found += [(rel / d).as_posix() for d in dirs if (Path(root) / d).is_symlink()]
    return sorted(found)


def _refusal(path: Path, tool: str, why: str) -> OutputError:
    return OutputError(f"output folder {path}: {why}; {tool} replaces only an empty folder or one it wrote itself "
                       f"(marker {MARKER}): choose another --out, or move or delete {path} yourself")


def check_output_dir(path: str | Path, tool: str) -> Path:
    """Raise :class:`OutputError` unless ``tool`` may (re)write the folder ``path``: it does not exist, it is an
    empty folder, or its marker names ``tool`` and lists every file in it. Returns ``path`` as a Path."""
    path = Path(path)
    if path.is_symlink():
        raise _refusal(path, tool, "is a link, not a folder")
    if path.exists() and not path.is_dir():
        raise _refusal(path, tool, "is a file, not a folder")
    if path.exists() and Path.cwd().resolve().is_relative_to(path.resolve()):
        raise _refusal(path, tool, "is (or holds) the working directory, which a swap would pull away")
    present = _files(path) if path.exists() else []
    if not present:
        return path
    marker, listed = path / MARKER, set()
    if marker.is_file():
        try:
            data = json.loads(marker.read_text())
            owner, listed = data["tool"], set(data["files"])
        except (OSError, ValueError, KeyError, TypeError):
            raise _refusal(path, tool, f"its marker {MARKER} is unreadable") from None
        if owner != tool:
            raise _refusal(path, tool, f"was written by {owner}, not {tool}")
    foreign = [f for f in present if f != MARKER and f not in listed]
    if foreign:
        more = f" (+{len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise _refusal(path, tool, f"holds {foreign[0]}{more}, which {tool} did not write")
    return path


def new_staging_dir(path: str | Path) -> Path:
    """A fresh, empty temporary folder beside ``path`` (same file system, so it can be renamed into place)."""
    path = Path(os.path.abspath(path))  # "." or "x/.." have a real name and parent only as absolute paths
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the result is an ordinary folder
    return staging


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err), str(b))


def install_output_dir(staging: str | Path, path: str | Path, tool: str) -> Path:
    """Write the marker into the finished ``staging`` folder and swap it in as ``path`` (checked again first: the
    folder may have changed while the tool worked). The earlier folder is removed only once the new one is in
    place."""
    check_output_dir(path, tool)
    staging, path = Path(staging), Path(os.path.abspath(path))
    files = [f for f in _files(staging) if f != MARKER]
    atomic_write_text(staging / MARKER, json.dumps({"format": MARKER_FORMAT, "tool": tool, "files": files},
                                                   indent=1) + "\n")
    if not path.exists():
        staging.rename(path)
        return path
    if _exchange(staging, path):
        shutil.rmtree(staging)  # now the earlier folder
        return path
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    old.rmdir()
    path.rename(old)
    try:
        staging.rename(path)
    except OSError:
        old.rename(path)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return path


class OutputDir:
    """``with OutputDir(path, tool) as staging:`` checks ``path`` (:func:`check_output_dir`), yields a staging
    folder beside it and installs it as ``path`` when the block ends without an exception. On an exception (or a
    refusal at the swap) the staging folder is removed."""

    def __init__(self, path: str | Path, tool: str):
        self.path, self.tool = check_output_dir(path, tool), tool
        self.staging: Path | None = None

    def __enter__(self) -> Path:
        self.staging = new_staging_dir(self.path)
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> bool:
        installed = False
        try:
            if exc_type is None:
                install_output_dir(self.staging, self.path, self.tool)
                installed = True
        finally:
            if not installed:
                shutil.rmtree(self.staging, ignore_errors=True)
        return False
