"""The network compiler (hw/compile/compiler.py) and the whole-network co-simulation (sim/cosim.py): a trained digits
network goes QONNX -> lowered graph -> folding -> RTL directory -> Verilator, and every logit of the RTL equals the
lowered graph's (the golden reference) exactly."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from instabnn.hw.compile import compiler as C
from instabnn.hw import lower
from instabnn.hw.compile import folding
from instabnn.model.export import export_checkpoint
from instabnn.sim import cosim

from conftest import check_rate, fake_run_folder, random_folding, train_digits, tree_hashes

_BUILT: dict = {}


def _lowered(variant: str, tmp_path_factory):
    """lowered.onnx and folding.json of a digits network trained for one epoch (made once per variant)."""
    if variant not in _BUILT:
        out = tmp_path_factory.mktemp(f"compile-{variant}")
        ckpt = train_digits(out, "--variant", variant, "--epochs", "1")
        export_checkpoint(ckpt, out / "model.onnx", n_check=2)
        assert lower.main([str(out / "model.onnx"), "--out", str(out), "-n", "8", "--no-progress"]) == 0
        assert folding.main([str(out / "lowered.onnx"), "--target-fps", "20000"]) == 0
        _BUILT[variant] = out
    return _BUILT[variant]


@pytest.fixture
def baseline(tmp_path_factory):
    return _lowered("baseline", tmp_path_factory)


def test_compile_writes_a_self_contained_rtl_directory(baseline, tmp_path, verilator_path):
    m = C.compile_model(baseline / "lowered.onnx", tmp_path / "rtl", baseline / "folding.json")
    rtl = tmp_path / "rtl"
    for f in m["sources"] + m["mem_files"] + ["accelerator.json", "compile.md"]:
        assert (rtl / f).is_file(), f
    assert m["sources"][-1] == f"{m['top']}.sv"
    assert m["folding"] == json.loads((baseline / "folding.json").read_text())
    assert m["classes"] == 10 and m["input_shape"] == [1, 8, 8] and m["in_width"] % 8 == 0
    r = m["resources_estimate"]
    assert r["lut"] == sum(layer["lut"] for layer in m["layers"]) > 0 and r["dsp"] > 0
    with pytest.raises(C.CompileError, match="over budget"):
        C.compile_model(baseline / "lowered.onnx", tmp_path / "rtl2", baseline / "folding.json",
                        max_utilisation=r["lut"] / 2 / C.XC7Z020["lut"])
    assert not (tmp_path / "rtl2").exists()
    from instabnn.hw.blocks.common.rtl_runner import lint_output_clean, verilator_lint

    ok, log = lint_output_clean(verilator_lint([rtl / s for s in m["sources"]], m["top"], {}, verilator_path))
    assert ok, log[-3000:]


def test_cosim_bit_exact_under_stalls_and_at_the_analytic_rate(baseline, tmp_path, verilator_path):
    """Digits images through the stitched RTL: identical logits to the reference, with random source idle cycles
    and sink backpressure (cocotb harness) and without (plain Verilator harness, where the measured cycles per
    frame must meet the folding's analytic bound within 5%)."""
    C.compile_model(baseline / "lowered.onnx", tmp_path / "rtl", baseline / "folding.json")
    stalled = cosim.cosim(tmp_path / "rtl", "digits", 6, harness="cocotb", work=tmp_path / "w1", in_stall=90,
                          out_stall=120, seed=7)
    assert stalled["mismatches"] == 0 and stalled["tlast_errors"] == 0, stalled.get("cocotb")
    assert stalled["accuracy_rtl"] == stalled["accuracy_reference"]
    full = cosim.cosim(tmp_path / "rtl", "digits", 8, harness="verilator", work=tmp_path / "w2")
    assert full["mismatches"] == 0 and full["tlast_errors"] == 0
    assert full["cycles_per_frame"] <= 1.05 * full["cycles_per_frame_analytic"], full
    assert full["latency_cycles"] > full["cycles_per_frame_analytic"]


def test_cosim_detects_a_wrong_constant_and_localizes_it(baseline, tmp_path, verilator_path):
    """A corrupted weight memory must show up as mismatches (the comparison can fail), and the probe run must name
    the layer whose output first differs."""
    C.compile_model(baseline / "lowered.onnx", tmp_path / "rtl", baseline / "folding.json")
    mem = tmp_path / "rtl" / "block1_conv_weight.mem"
    lines = mem.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if not line.startswith("//"))
    lines[i] = "".join("7" if ch != "7" else "1" for ch in lines[i])
    mem.write_text("\n".join(lines) + "\n")
    r = cosim.cosim(tmp_path / "rtl", "random", 3, harness="verilator", work=tmp_path / "w")
    assert r["mismatches"] >= 1
    bad = r["verilator"]["mismatched_images"][0]
    assert bad["reference"] != bad["rtl"]
    loc = r["localization"]
    assert loc["first_divergent_tensor"] == "block1.acc"
    assert [e["match"] for e in loc["layers"]][:4] == [True, True, True, True]  # stem.out, block0.bits/acc/out


def test_bad_folding_unknown_op_and_missing_files_stop_before_writing(baseline, tmp_path):
    out = tmp_path / "rtl"
    C.compile_model(baseline / "lowered.onnx", out, baseline / "folding.json")  # an earlier build
    before = tree_hashes(out)
    config = json.loads((baseline / "folding.json").read_text())
    config["block0.conv"]["PE"] = 5  # does not divide 32 output channels
    (tmp_path / "bad.json").write_text(json.dumps(config))
    with pytest.raises(C.CompileError, match="block0.conv"):
        C.compile_model(baseline / "lowered.onnx", out, tmp_path / "bad.json")
    assert tree_hashes(out) == before

    model = onnx.load(baseline / "lowered.onnx")
    node = next(n for n in model.graph.node if n.name == "block1.tail")
    scalars = json.loads(next(a for a in node.attribute if a.name == "scalars").s)
    scalars["act"] = "insta"  # a block tail the RTL library has no unit for (here: claimed INSTA-PReLU)
    next(a for a in node.attribute if a.name == "scalars").s = json.dumps(scalars).encode()
    onnx.save(model, tmp_path / "unsupported.onnx")
    with pytest.raises(C.CompileError, match="block1.tail"):
        C.compile_model(tmp_path / "unsupported.onnx", out, baseline / "folding.json")
    assert tree_hashes(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rtl.")]  # no temporary directory left

    with pytest.raises(C.CompileError, match="no such lowered graph"):
        C.compile_model(tmp_path / "missing.onnx", out)
    with pytest.raises(C.CompileError, match="no such folding"):
        C.compile_model(baseline / "lowered.onnx", out, tmp_path / "missing.json")
    assert C.main([str(tmp_path / "missing.onnx")]) == 2
    with pytest.raises(cosim.CosimError, match="accelerator.json"):
        cosim.cosim(tmp_path / "nowhere")


def test_out_the_compiler_did_not_write_is_refused_and_left_unchanged(baseline, tmp_path, capsys):
    """--out at a run folder, at its checkpoint, or at an RTL directory the user added a file to: a one-line error
    naming it, exit 2, every file as it was; the compiler's own earlier RTL directory is replaced."""
    run = tmp_path / "runs" / "demo"
    fake_run_folder(run)
    rtl = tmp_path / "rtl"
    args = [str(baseline / "lowered.onnx"), "--folding", str(baseline / "folding.json"), "--out"]
    assert C.main(args + [str(rtl)]) == 0
    assert C.main(args + [str(rtl)]) == 0  # its own earlier output: replaced
    (rtl / "notes.md").write_text("the user's")
    for out, why in ((run, "holds last.pt"), (run / "model.pt", "is a file, not a folder"), (rtl, "holds notes.md")):
        before = {"run": tree_hashes(run), "rtl": tree_hashes(rtl)}
        capsys.readouterr()
        assert C.main(args + [str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and str(out) in err and why in err, err
        assert {"run": tree_hashes(run), "rtl": tree_hashes(rtl)} == before
    assert not list(tmp_path.glob("**/.*.tmp-*"))


def test_manifest_names_the_lowered_graph_relative_to_itself(baseline, tmp_path, monkeypatch):
    """Compiled with relative paths, the run folder moved and used from another directory: cosim and the driver
    find the graph beside it, not one at the typed path in the working directory; a different graph there (same
    name, other hash) is a one-line error naming it."""
    from instabnn.deploy import driver

    run = tmp_path / "a" / "runs" / "demo"
    run.mkdir(parents=True)
    for f in ("lowered.onnx", "folding.json"):
        (run / f).write_bytes((baseline / f).read_bytes())
    monkeypatch.chdir(tmp_path / "a")
    m = C.compile_model("runs/demo/lowered.onnx", "runs/demo/rtl", "runs/demo/folding.json")
    assert m["lowered"] == "../lowered.onnx"
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "runs").rename(tmp_path / "b" / "runs")
    decoy = tmp_path / "a" / "runs" / "demo"  # a different graph at the typed path, in the working directory
    decoy.mkdir(parents=True)
    (decoy / "lowered.onnx").write_bytes(b"not the graph")
    rtl = tmp_path / "b" / "runs" / "demo" / "rtl"
    model = cosim.lowered_model(cosim.load_manifest(rtl), rtl)
    assert len(model.graph.node) == len(onnx.load(baseline / "lowered.onnx").graph.node)
    acc = driver.Accelerator.open("../b/runs/demo/rtl", work=tmp_path / "sim")  # the driver's docstring example
    assert isinstance(acc.backend, driver.SimBackend) and acc.cfg["model_sha256"] == m["model_sha256"]

    lowered = rtl.parent / "lowered.onnx"
    graph = onnx.load(lowered)
    graph.graph.node[0].name += "_edited"  # re-lowered since the compile: not the graph the RTL was made from
    onnx.save(graph, lowered)
    before = tree_hashes(tmp_path / "b")
    for call, error in ((lambda: cosim.lowered_model(cosim.load_manifest(rtl), rtl), cosim.CosimError),
                        (lambda: driver.runtime_config(rtl), driver.DriverError)):
        with pytest.raises(error, match="model_sha256") as e:
            call()
        assert "\n" not in str(e.value) and str(lowered) in str(e.value)
    lowered.unlink()
    with pytest.raises(cosim.CosimError, match="is missing"):
        cosim.lowered_model(cosim.load_manifest(rtl), rtl)
    assert tree_hashes(tmp_path / "b") == {k: v for k, v in before.items() if k != "runs/demo/lowered.onnx"}


def test_merge_of_shard_reports():
    base = {"rtl": "r", "rtl_sha256": "r" * 64, "top": "t", "model_sha256": "h", "data": "d", "in_stall": 0,
            "out_stall": 0, "cycles_per_frame_analytic": 100, "clock_mhz": 100.0, "tlast_errors": 0,
            "latency_cycles": 250}
    a = dict(base, first_image=0, n=2, mismatches=0, sim_images_per_s=10.0, cycles_per_frame=100.0,
             predictions_rtl=[1, 2], predictions_reference=[1, 2], labels=[1, 3])
    b = dict(base, first_image=2, n=2, mismatches=1, sim_images_per_s=20.0, cycles_per_frame=102.0,
             predictions_rtl=[4, 4], predictions_reference=[4, 5], labels=[4, 5])
    m = cosim.merge([("b.json", b), ("a.json", a)])
    assert m["n"] == 4 and m["mismatches"] == 1 and m["predictions_rtl"] == [1, 2, 4, 4]
    assert m["accuracy_reference"] == 0.75 and m["accuracy_rtl"] == 0.5
    assert np.isclose(m["sim_images_per_s"], 4 / (2 / 10 + 2 / 20))
    with pytest.raises(cosim.CosimError, match="a.json and b.json differ in model_sha256"):
        cosim.merge([("a.json", a), ("b.json", dict(b, model_sha256="other"))])


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["insta", "insta_plus", "latency_optimized"])
def test_insta_variants_compile_and_cosimulate(variant, tmp_path_factory, tmp_path, verilator_path):
    """Every INSTA unit in a whole digits network (INSTA-Th, INSTA-Th+, INSTA-PReLU own / reused statistics,
    INSTA-PReLU+): the RTL equals the reference exactly, at the analytic rate."""
    built = _lowered(variant, tmp_path_factory)
    m = C.compile_model(built / "lowered.onnx", tmp_path / "rtl", built / "folding.json")
    assert "insta_tail.sv" in m["sources"]
    r = cosim.cosim(tmp_path / "rtl", "digits", 8, harness="verilator", work=tmp_path / "w")
    assert r["mismatches"] == 0 and r["tlast_errors"] == 0
    assert r["cycles_per_frame"] <= 1.05 * r["cycles_per_frame_analytic"]


@pytest.mark.slow
def test_insta_th_plus_units_in_a_network(tmp_path_factory, tmp_path, verilator_path):
    """INSTA-Th+ (insta_threshold with SE = 1) in a whole network: the threshold units of a digits insta_plus network with
    the INSTA-PReLU tails of an insta network (the RTL has no INSTA-PReLU+ yet), spliced into one lowered graph. The
    graph is its own golden reference, so the RTL must equal it exactly (its accuracy means nothing)."""
    plus, insta = _lowered("insta_plus", tmp_path_factory), _lowered("insta", tmp_path_factory)
    model, donor = onnx.load(plus / "lowered.onnx"), onnx.load(insta / "lowered.onnx")
    tails = {n.name: n for n in donor.graph.node if n.op_type == "ResidualActivation"}
    donor_inits = {i.name: i for i in donor.graph.initializer}
    nodes = [tails.get(n.name, n) for n in model.graph.node]
    inits = [i for i in model.graph.initializer if not any(i.name.startswith(t + ".") for t in tails)]
    inits += [donor_inits[t] for n in tails.values() for t in n.input if t in donor_inits]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    onnx.save(model, tmp_path / "hybrid.onnx")
    m = C.compile_model(tmp_path / "hybrid.onnx", tmp_path / "rtl")
    assert "se_mlp.sv" in m["sources"] and "insta_tail.sv" in m["sources"]
    r = cosim.cosim(tmp_path / "rtl", "digits", 6, harness="verilator", work=tmp_path / "w")
    assert r["mismatches"] == 0 and r["tlast_errors"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["baseline", "latency_optimized"])
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("stall", [0, 64])
def test_random_foldings_run_at_the_analytic_rate(variant, seed, stall, tmp_path_factory, tmp_path, verilator_path):
    """Random legal foldings of the residual digits networks (layers' rates close to each other): bit-exact and
    within 2 % of the analytic rate, with and without random stalls (conftest.check_rate)."""
    built = _lowered(variant, tmp_path_factory)
    m = C.compile_model(built / "lowered.onnx", tmp_path / "rtl",
                        random_folding(built / "lowered.onnx", seed, (1500, 10000)))
    r = cosim.cosim(tmp_path / "rtl", "digits", 6, harness="verilator", work=tmp_path / "w", in_stall=stall,
                    out_stall=stall, seed=seed)
    check_rate(r, m, stall)
