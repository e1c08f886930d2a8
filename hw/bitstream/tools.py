"""What every board flow shares: finding tools and their versions, the git commit, the command recorder and the
record of what a flow produced (:class:`Build`)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .accelerator import BitstreamError

ROOT = Path(__file__).resolve().parents[2]


def find_tool(name: str) -> str | None:
    """An executable: the venv's bin directory first (YoWASP's console scripts), then PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def tool_version(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = [ln.strip() for ln in (proc.stdout + "\n" + proc.stderr).splitlines()
             if ln.strip() and not ln.startswith("Preparing to run")]
    return lines[0] if lines else "unknown"


def git_commit() -> str:
    """``git rev-parse HEAD`` of the repository holding this file, or "unknown"."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", out) else "unknown"


class Recorder:
    """Runs commands in the build folder and records them (relative working directory, seconds, status)."""

    def __init__(self, root: Path):
        self.root = root
        self.commands: list[dict] = []

    def run(self, cmd: list[str], cwd: Path, log: Path, timeout: float, what: str) -> subprocess.CompletedProcess:
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise BitstreamError(f"{what} timed out after {timeout:.0f} s ({shlex.join(cmd)})") from e
        except OSError as e:
            raise BitstreamError(f"{what}: cannot run {cmd[0]} ({e})") from e
        seconds = time.monotonic() - t0
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"$ (cd {os.path.relpath(cwd, self.root)} && {shlex.join(cmd)})\n{proc.stdout}{proc.stderr}\n")
        self.commands.append({"step": what, "cwd": os.path.relpath(cwd, self.root),
                              "command": shlex.join([Path(cmd[0]).name, *cmd[1:]]),
                              "seconds": round(seconds, 2), "returncode": proc.returncode})
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip()[-1500:]
            raise BitstreamError(f"{what} failed (exit {proc.returncode}; log {log}):\n{tail}")
        return proc


@dataclass
class Build:
    """What a board flow produced in the build folder."""

    status: str                    # "built", "dry-run", "no-vivado", "timing-failed"
    bitstream: str | None
    resources: dict
    timing: dict
    tools: dict
    notes: list[str]
    extra: dict = field(default_factory=dict)
