"""Output folders a tool owns and atomic file writes (instabnn.outputs): a tool replaces only an empty folder or
one it wrote itself; everything else is refused with DIR named and left exactly as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from instabnn.outputs import (MARKER, OutputDir, OutputError, atomic_write_bytes, atomic_write_text,
                              check_output_dir)

from conftest import fake_run_folder, tree_hashes

TOOL = "instabnn-test-tool"


def write(folder: Path, files: dict[str, str], tool: str = TOOL) -> Path:
    with OutputDir(folder, tool) as staging:
        for name, text in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text)
    return folder


def no_staging_left(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name)]


def test_writes_a_new_folder_with_a_marker_listing_its_files(tmp_path):
    out = write(tmp_path / "a" / "out", {"x.txt": "1", "sub/y.txt": "2"})
    assert (out / "x.txt").read_text() == "1" and (out / "sub" / "y.txt").read_text() == "2"
    marker = json.loads((out / MARKER).read_text())
    assert marker["tool"] == TOOL and marker["files"] == ["sub/y.txt", "x.txt"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())  # an ordinary folder, not mkdtemp's 0700
    assert no_staging_left(out.parent)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_replaces_its_own_earlier_folder_and_an_empty_one(tmp_path):
    out = write(tmp_path / "out", {"old.txt": "old", "keep/a.txt": "a"})
    write(out, {"new.txt": "new"})
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "new.txt"])
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty", {"n.txt": "n"})
    assert (tmp_path / "empty" / "n.txt").is_file() and no_staging_left(tmp_path)


def test_refuses_a_run_folder_a_file_a_link_and_another_tools_folder(tmp_path):
    run = tmp_path / "runs" / "demo"
    before = fake_run_folder(run)
    other = write(tmp_path / "other", {"o.txt": "o"}, tool="instabnn-other")
    before_other = tree_hashes(other)
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    cases = [(run, "holds last.pt \\(\\+5 more\\), which instabnn-test-tool did not write"),
             (run / "model.pt", "is a file, not a folder"),
             (tmp_path / "link", "is a link, not a folder"),
             (other, "was written by instabnn-other, not instabnn-test-tool")]
    for path, why in cases:
        with pytest.raises(OutputError, match=why) as e:
            with OutputDir(path, TOOL) as staging:
                (staging / "x").write_text("x")
        message = str(e.value)
        assert "\n" not in message and str(path) in message and "choose another --out" in message
    assert tree_hashes(run) == before and tree_hashes(other) == before_other
    assert no_staging_left(tmp_path) and no_staging_left(run.parent)


def test_refuses_an_own_folder_the_user_added_a_file_to(tmp_path):
    out = write(tmp_path / "out", {"a.txt": "a"})
    (out / "notes.md").write_text("mine")
    before = tree_hashes(out)
    with pytest.raises(OutputError, match="holds notes.md, which"):
        write(out, {"b.txt": "b"})
    (out / MARKER).write_text("{not json")
    before = tree_hashes(out)
    with pytest.raises(OutputError, match="marker .* is unreadable"):
        check_output_dir(out, TOOL)
    assert tree_hashes(out) == before


def test_a_failure_inside_leaves_the_earlier_folder_and_no_staging(tmp_path):
    out = write(tmp_path / "out", {"a.txt": "a"})
    before = tree_hashes(out)
    with pytest.raises(RuntimeError, match="boom"):
        with OutputDir(out, TOOL) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert tree_hashes(out) == before and no_staging_left(tmp_path)


def test_a_folder_that_turned_foreign_during_the_work_is_refused_at_the_swap(tmp_path):
    out = write(tmp_path / "out", {"a.txt": "a"})
    with pytest.raises(OutputError, match="late.txt"):
        with OutputDir(out, TOOL) as staging:
            (staging / "b.txt").write_text("b")
            (out / "late.txt").write_text("written meanwhile")
    assert (out / "late.txt").is_file() and (out / "a.txt").is_file() and not (out / "b.txt").exists()
    assert no_staging_left(tmp_path)


def test_atomic_writes(tmp_path):
    atomic_write_text(tmp_path / "d" / "f.txt", "one")
    atomic_write_bytes(tmp_path / "d" / "f.txt", b"two")
    assert (tmp_path / "d" / "f.txt").read_bytes() == b"two"
    assert oct((tmp_path / "d" / "f.txt").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["f.txt"]


def test_the_working_directory_as_out_is_refused(tmp_path, monkeypatch):
    """--out . or an ancestor of the working directory: the swap would pull the process's directory away."""
    (tmp_path / "here" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "here" / "sub")
    for out in (Path("."), Path(".."), Path("../sub/..")):
        with pytest.raises(OutputError, match="holds\) the working directory"):
            write(out, {"a.txt": "a"})
    assert [p.name for p in (tmp_path / "here").iterdir()] == ["sub"] and no_staging_left(tmp_path / "here")
    write(Path("../new"), {"a.txt": "a"})  # a sibling, given relative to the working directory
    assert (tmp_path / "here" / "new" / "a.txt").is_file()
