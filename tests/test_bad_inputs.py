"""Issue 16 §5: inputs a user gets wrong. Each ends in a one-line error naming the culprit (file, node, key or
argument) and a non-zero exit, through the real command line, and leaves every file that was there unchanged."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from instabnn.hw.compile import compiler as C
from instabnn.hw import lower
from instabnn.hw.compile import folding
from instabnn.hw.blocks.common import memfile
from instabnn.sim import cosim

REPO = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, *culprits: str) -> str:
    """The tool's stderr: exactly one line, naming every culprit."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for c in culprits:
        assert c in err, (c, err)
    return err


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A digits baseline network (random weights) exported, lowered, folded and compiled: model.onnx,
    lowered.onnx, folding.json (as instabnn-folding writes it), rtl/."""
    from instabnn.model.config import NetConfig
    from instabnn.model.export import export_model
    from instabnn.model.networks import build_network

    out = tmp_path_factory.mktemp("bad-inputs")
    torch.manual_seed(0)
    export_model(build_network(NetConfig(variant="baseline")).eval(), out / "model.onnx", {}, n_check=0)
    assert lower.main([str(out / "model.onnx"), "-n", "2", "--no-progress"]) == 0
    assert folding.main([str(out / "lowered.onnx"), "--target-fps", "20000"]) == 0
    assert C.main([str(out / "lowered.onnx"), "--folding", str(out / "folding.json"), "--out", str(out / "rtl")]) == 0
    return out


# ------------------------------------------------------------------------------------------ broken ONNX files


def _small_onnx(path: Path, external: bool = False) -> Path:
    w = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    onnx.save(helper.make_model(graph), str(path), save_as_external_data=external, location=path.name + ".data",
              size_threshold=0)
    return path


def _broken(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.onnx"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        data = _small_onnx(path).read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "missing_external_data":
        _small_onnx(path, external=True)
        (folder / (path.name + ".data")).unlink()
    return path


TOOLS = {
    "lower": lambda path, folder: lower.main([str(path), "--out", str(folder), "--no-progress"]),
    "folding": lambda path, folder: folding.main([str(path), "--out", str(folder / "new-folding.json")]),
    "compile": lambda path, folder: C.main([str(path), "--out", str(folder / "rtl")]),
}


@pytest.mark.parametrize("kind", ["empty", "random", "truncated", "missing_external_data"])
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_unreadable_onnx(tool, kind, built, tmp_path, capsys):
    bad = _broken(kind, tmp_path)
    shutil.copytree(built / "rtl", tmp_path / "rtl")  # an earlier build of the compiler: it may replace it
    (tmp_path / "lowered.json").write_text("{}")
    before = snapshot(tmp_path)
    assert TOOLS[tool](bad, tmp_path) == 2
    one_line_error(capsys, str(bad))
    assert snapshot(tmp_path) == before


def test_folding_and_compile_refuse_a_graph_that_is_not_lowered(built, tmp_path, capsys):
    before = snapshot(built)
    assert folding.main([str(built / "model.onnx"), "--out", str(tmp_path / "f.json")]) == 2
    one_line_error(capsys, "model.onnx", "not a hardware layer", "lower the model first")
    assert C.main([str(built / "model.onnx"), "--out", str(tmp_path / "rtl")]) == 2
    one_line_error(capsys, "model.onnx", "not a hardware layer")
    assert snapshot(built) == before and not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ folding configs


def _edits(config: dict) -> dict:
    """name -> (edited config or raw text, what the error must name)."""
    nodes = list(config)
    conv = next(n for n in nodes if "SIMD" in config[n])
    flat = next(n for n in nodes if "SIMD" not in config[n])
    without = dict(config)
    del without[conv]
    return {
        "misspelled node": ({**without, conv + "s": config[conv]}, [repr(conv + "s"), f"did you mean {conv!r}"]),
        "missing node": (without, ["no folding for node", conv]),
        "empty": ({}, ["no folding for node", nodes[0]]),
        "unknown key": ({**config, conv: {**config[conv], "pe": 2}}, [conv, "unknown key 'pe'"]),
        "SIMD where none": ({**config, flat: {**config[flat], "SIMD": 2}}, [flat, "unknown key 'SIMD'"]),
        "missing key": ({**config, conv: {"PE": config[conv]["PE"]}}, [conv, "no SIMD"]),
        "string value": ({**config, conv: {**config[conv], "PE": "2"}}, [conv, 'PE = "2"']),
        "float value": ({**config, conv: {**config[conv], "PE": 2.0}}, [conv, "PE = 2.0"]),
        "boolean value": ({**config, conv: {**config[conv], "PE": True}}, [conv, "PE = true"]),
        "zero": ({**config, conv: {**config[conv], "PE": 0}}, [conv, "PE = 0"]),
        "negative": ({**config, conv: {**config[conv], "SIMD": -4}}, [conv, "SIMD = -4"]),
        "not dividing": ({**config, conv: {**config[conv], "PE": 5}}, [conv, "PE=5 does not divide"]),
        "not an object": ([1, 2], ["JSON object"]),
        "node not an object": ({**config, conv: 4}, [conv]),
        "Defaults with values": ({"Defaults": {"PE": [1, ["all"]]}, **config}, ["Defaults"]),
        "malformed JSON": ('{"block0.conv": {"PE": 1,}}', ["not valid JSON", "line 1"]),
    }


@pytest.mark.parametrize("case", list(_edits({"block0.conv": {"SIMD": 1, "PE": 1}, "x": {"PE": 1}})))
def test_bad_folding_config(case, built, tmp_path, capsys):
    """compile --folding and folding --config refuse the config, naming the file and the node / key; nothing is
    written (the RTL directory keeps its earlier build)."""
    config, culprits = _edits(json.loads((built / "folding.json").read_text()))[case]
    path = tmp_path / "folding.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    shutil.copytree(built / "rtl", tmp_path / "rtl")  # an earlier build of the compiler: it may replace it
    before, built_before = snapshot(tmp_path), snapshot(built)
    assert C.main([str(built / "lowered.onnx"), "--folding", str(path), "--out", str(tmp_path / "rtl")]) == 2
    one_line_error(capsys, str(path), *culprits)
    assert folding.main([str(built / "lowered.onnx"), "--config", str(path), "--out", str(tmp_path / "f.json")]) == 2
    one_line_error(capsys, str(path), *culprits)
    assert snapshot(tmp_path) == before and snapshot(built) == built_before


def test_a_folding_written_by_hand_is_never_replaced(built, tmp_path, capsys):
    """instabnn-folding replaces only its own unchanged output; an edited or hand-written folding stays."""
    lowered = tmp_path / "lowered.onnx"
    lowered.write_bytes((built / "lowered.onnx").read_bytes())
    assert folding.main([str(lowered), "--target-fps", "20000"]) == 0
    assert folding.main([str(lowered), "--target-fps", "5000"]) == 0  # its own, unchanged: replaced
    config = json.loads((tmp_path / "folding.json").read_text())
    node = next(iter(config))
    config[node]["PE"] = 1
    (tmp_path / "folding.json").write_text(json.dumps(config))  # edited by hand
    before = snapshot(tmp_path)
    assert folding.main([str(lowered), "--target-fps", "20000"]) == 2
    one_line_error(capsys, str(tmp_path / "folding.json"), "not replaced")
    assert snapshot(tmp_path) == before
    # applying it (--config) writes nothing unless --out names a file
    assert folding.main([str(lowered), "--config", str(tmp_path / "folding.json")]) == 0
    assert snapshot(tmp_path) == before
    (tmp_path / "out-dir").mkdir()
    assert folding.main([str(lowered), "--out", str(tmp_path / "out-dir")]) == 2
    one_line_error(capsys, "out-dir", "is a directory")


def test_manifest_folding_has_simd_only_where_the_node_has_one(built):
    manifest = json.loads((built / "rtl" / "accelerator.json").read_text())
    assert manifest["folding"] == json.loads((built / "folding.json").read_text())
    assert any("SIMD" not in f for f in manifest["folding"].values())


# ------------------------------------------------------------------------------------------ command-line numbers


ARGUMENTS = [
    (cosim.main, ["rtl", "--shard", "abc"], "--shard"),
    (cosim.main, ["rtl", "--shard", "3/2"], "--shard"),
    (cosim.main, ["rtl", "--shard", "0/2"], "--shard"),
    (cosim.main, ["rtl", "-n", "0"], "-n"),
    (cosim.main, ["rtl", "-n", "-3"], "-n"),
    (cosim.main, ["rtl", "-n", "many"], "-n"),
    (cosim.main, ["rtl", "--data", "bogus"], "--data"),
    (lower.main, ["model.onnx", "-n", "0"], "-n"),
    (lower.main, ["model.onnx", "-n", "-3"], "-n"),
    (folding.main, ["lowered.onnx", "--target-fps", "0"], "--target-fps"),
    (folding.main, ["lowered.onnx", "--clock-mhz", "nan"], "--clock-mhz"),
    (C.main, ["lowered.onnx", "--clock-mhz", "inf"], "--clock-mhz"),
]


@pytest.mark.parametrize("main, argv, argument", ARGUMENTS, ids=[" ".join(a[1][1:]) for a in ARGUMENTS])
def test_bad_numbers_on_the_command_line(main, argv, argument, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    one_line_error(capsys, f"argument {argument}")


def test_cosim_out_directory_and_missing_cifar_dir_refused_before_work(tmp_path, capsys):
    (tmp_path / "reports").mkdir()
    assert cosim.main([str(tmp_path / "rtl"), "--out", str(tmp_path / "reports")]) == 2
    one_line_error(capsys, "--out", "reports", "is a directory")
    assert cosim.main([str(tmp_path / "rtl"), "--data", "cifar10", "--data-dir", str(tmp_path / "nowhere"),
                       "--check-args"]) == 2
    one_line_error(capsys, "nowhere")
    assert cosim.main([str(tmp_path / "rtl"), "--check-args", "-n", "4", "--shard", "1/2"]) == 0


def test_make_cosim_checks_its_arguments_before_any_work(tmp_path):
    """make cosim DATA=bogus stops before lowering, folding and compiling: the run folder (with a hand-edited
    folding) is left as it was."""
    (tmp_path / "model.onnx").write_bytes(b"not lowered yet")
    (tmp_path / "folding.json").write_text('{"edited": "by hand"}')
    before = snapshot(tmp_path)
    run = subprocess.run(["make", "--no-print-directory", "cosim", f"MODEL={tmp_path}/model.onnx", "DATA=bogus"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "instabnn.hw.lower" not in run.stdout, run.stdout  # nothing after the check ran
    assert "argument --data: invalid choice: 'bogus'" in run.stderr
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------ memory files


def test_memory_file_with_a_non_hex_character(built, tmp_path, capsys):
    """The one memory-file reader names the file and line; cosim checks every memory file before it builds."""
    import shutil

    rtl = tmp_path / "rtl"
    shutil.copytree(built / "rtl", rtl)
    manifest = json.loads((rtl / "accelerator.json").read_text())
    mem = rtl / manifest["mem_files"][0]
    lines = mem.read_text().splitlines()
    lines[2] = "g" + lines[2][1:]
    mem.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=f"{mem.name}:3: 'g'"):
        memfile.read_memh(mem)
    before = snapshot(tmp_path)
    assert cosim.main([str(rtl), "--data", "random", "-n", "1", "--out", str(tmp_path / "r.json"),
                       "--work", str(tmp_path / "work")]) == 2
    one_line_error(capsys, f"{mem}:3", "not a hex digit")
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------ merging shard reports


def _shard_report(k: int, parts: int, total: int = 360, **changes) -> dict:
    bounds = np.linspace(0, total, parts + 1).astype(int)
    n = int(bounds[k] - bounds[k - 1])
    return {"rtl": "runs/demo/rtl", "rtl_sha256": "a" * 64, "top": "instabnn_top", "model_sha256": "b" * 64,
            "data": "digits test split", "shard": f"{k}/{parts}", "first_image": int(bounds[k - 1]), "n": n,
            "in_stall": 0, "out_stall": 0, "cycles_per_frame_analytic": 4608, "clock_mhz": 100.0, "mismatches": 0,
            "tlast_errors": 0, "sim_images_per_s": 50.0, "cycles_per_frame": 4608.0, "latency_cycles": 11067,
            "predictions_rtl": [1] * n, "predictions_reference": [1] * n, "labels": [1] * n, **changes}


@pytest.mark.parametrize("case, reports, culprits", [
    ("the same report twice", {"s1.json": _shard_report(1, 2)}, ["s1.json and s1.json", "same images"]),
    ("overlapping splits", {"s1.json": _shard_report(1, 2), "t2.json": _shard_report(2, 4)},
     ["s1.json and t2.json", "same images"]),
    ("other RTL", {"s1.json": _shard_report(1, 2), "s2.json": _shard_report(2, 2, rtl_sha256="c" * 64)},
     ["s1.json and s2.json", "rtl_sha256"]),
    ("other stalls", {"s1.json": _shard_report(1, 2), "s2.json": _shard_report(2, 2, in_stall=90)},
     ["in_stall"]),
    ("no RTL hash", {"s1.json": _shard_report(1, 2), "s2.json": _shard_report(2, 2, rtl_sha256=None)},
     ["s2.json", "no rtl_sha256"]),
])
def test_merge_refuses_what_is_not_one_run(case, reports, culprits, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, report in reports.items():
        Path(name).write_text(json.dumps({k: v for k, v in report.items() if v is not None}))
    files = list(reports) * (2 if case == "the same report twice" else 1)
    before = snapshot(tmp_path)
    assert cosim.main(["--merge", *files, "--out", "merged.json"]) == 2
    one_line_error(capsys, *culprits)
    assert snapshot(tmp_path) == before


def test_merge_of_all_shards(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for k in (1, 2, 3):
        Path(f"s{k}.json").write_text(json.dumps(_shard_report(k, 3)))
    assert cosim.main(["--merge", "s3.json", "s1.json", "s2.json", "--out", "merged.json"]) == 0
    merged = json.loads(Path("merged.json").read_text())
    assert merged["n"] == 360 and merged["shards"] == 3 and merged["rtl_sha256"] == "a" * 64
