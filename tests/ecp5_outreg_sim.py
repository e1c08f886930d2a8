"""Simulation helpers of tests/test_ecp5_outreg.py: a behavioural DP16KD (Yosys' own is a blackbox), the test
design, and the testbench comparing the RTL with gate-level netlists cycle by cycle (iverilog)."""

from __future__ import annotations

DP16KD_PINS_IN = ([f"DI{h}{i}" for h in "AB" for i in range(18)] + [f"AD{h}{i}" for h in "AB" for i in range(14)]
                  + [f"{p}{h}" for h in "AB" for p in ("CE", "OCE", "CLK", "WE", "RST")]
                  + [f"CS{h}{i}" for h in "AB" for i in range(3)])
DP16KD_PINS_OUT = [f"DO{h}{i}" for h in "AB" for i in range(18)]


def _bus(prefix: str, n: int) -> str:
    return "{" + ", ".join(f"{prefix}{i}" for i in reversed(range(n))) + "}"


def dp16kd_model() -> str:
    """The DP16KD in the configurations Yosys' block-RAM map gives (true dual port at 18 bits a port; pseudo dual
    port 36 bits: A writes, B reads, data {DOB, DOA}); anything else stops the simulation. Storage is 1024 chunks
    of 18 bits, INITVAL_xx slot j (20 bits) = chunk 16*xx + j. A read latch per port (CE), then the output register
    (REGMODE OUTREG; enabled by OCE, or by CE & OCE with +OUTREG_NEEDS_CE). In the 36-bit mode the DOA
    half follows port B's controls, or port A's OCEA / REGMODE_A with +PDP_A_HALF_OWN_CONTROLS (the two
    readings of the hardware the merge must both satisfy). A read of the chunk port A writes in the same clock edge
    reads x (the hardware does not promise old or new data)."""
    params = ["DATA_WIDTH_A = 18", "DATA_WIDTH_B = 18", 'REGMODE_A = "NOREG"', 'REGMODE_B = "NOREG"',
              'RESETMODE = "SYNC"', 'ASYNC_RESET_RELEASE = "SYNC"', 'CSDECODE_A = "0b000"', 'CSDECODE_B = "0b000"',
              'WRITEMODE_A = "NORMAL"', 'WRITEMODE_B = "NORMAL"', 'CLKAMUX = "CLKA"', 'CLKBMUX = "CLKB"',
              'GSR = "ENABLED"', "WID = 0", 'INIT_DATA = "STATIC"']
    params += [f"[319:0] INITVAL_{i:02X} = 320'h0" for i in range(64)]
    init_case = "\n".join(f"      {i}: v = INITVAL_{i:02X};" for i in range(64))
    return f"""
module DP16KD({", ".join(DP16KD_PINS_IN + DP16KD_PINS_OUT)});
  input {", ".join(DP16KD_PINS_IN)};
  output {", ".join(DP16KD_PINS_OUT)};
{chr(10).join(f"  parameter {p};" for p in params)}
  wire [17:0] dia = {_bus("DIA", 18)}, dib = {_bus("DIB", 18)};
  wire [13:0] ada = {_bus("ADA", 14)}, adb = {_bus("ADB", 14)};
  reg [17:0] mem [0:1023];
  reg [17:0] lat_a, lat_b, out_a, out_b;
  wire pdp = DATA_WIDTH_A == 36;
  function [319:0] initval(input integer i);
    reg [319:0] v;
    begin
      case (i)
{init_case}
      endcase
      initval = v;
    end
  endfunction
  integer i, j;
  initial begin
    if (!((DATA_WIDTH_A == 18 && DATA_WIDTH_B == 18) || (DATA_WIDTH_A == 36 && DATA_WIDTH_B == 36))) begin
      $display("DP16KD model: unsupported widths %0d / %0d", DATA_WIDTH_A, DATA_WIDTH_B);
      $finish;
    end
    for (i = 0; i < 64; i = i + 1)
      for (j = 0; j < 16; j = j + 1)
        mem[i * 16 + j] = initval(i) >> (j * 20);
    lat_a = 0; lat_b = 0; out_a = 0; out_b = 0;
  end
  // port A writes at this edge (chunk, byte mask over 18 bits, data), for the collision check of port B
  wire [9:0] a_chunk = pdp ? {{ada[13:5], 1'b0}} : ada[13:4];
  wire a_writes = CEA && WEA && (pdp ? |ada[3:0] : |ada[1:0]);
  // the two readings, chosen at run time (+OUTREG_NEEDS_CE, +PDP_A_HALF_OWN_CONTROLS)
  reg needs_ce, a_own;
  initial begin
    needs_ce = $test$plusargs("OUTREG_NEEDS_CE");
    a_own = $test$plusargs("PDP_A_HALF_OWN_CONTROLS");
  end
  wire oce_a = OCEA && (CEA || !needs_ce), oce_b = OCEB && (CEB || !needs_ce);
  reg [17:0] old;
  always @(posedge CLKA) begin
    if (RSTA) begin
      $display("DP16KD model: RSTA used"); $finish;
    end
    if (CEA) begin
      if (pdp) begin
        if (WEA) begin
          if (ada[0]) mem[a_chunk][8:0] <= dia[8:0];
          if (ada[1]) mem[a_chunk][17:9] <= dia[17:9];
          if (ada[2]) mem[a_chunk + 1][8:0] <= dib[8:0];
          if (ada[3]) mem[a_chunk + 1][17:9] <= dib[17:9];
        end
      end else begin
        old = mem[a_chunk];
        if (WEA) begin
          if (ada[0]) mem[a_chunk][8:0] <= dia[8:0];
          if (ada[1]) mem[a_chunk][17:9] <= dia[17:9];
          if (WRITEMODE_A == "READBEFOREWRITE") lat_a <= old;
          else if (WRITEMODE_A == "WRITETHROUGH")
            lat_a <= {{ada[1] ? dia[17:9] : old[17:9], ada[0] ? dia[8:0] : old[8:0]}};
        end else
          lat_a <= old;
      end
    end
    if ((!pdp || a_own) && oce_a) out_a <= lat_a;
  end
  wire [9:0] b_chunk = pdp ? {{adb[13:5], 1'b0}} : adb[13:4];
  always @(posedge CLKB) begin
    if (RSTB) begin
      $display("DP16KD model: RSTB used"); $finish;
    end
    if (CEB) begin
      if (WEB) begin
        $display("DP16KD model: writes on port B unsupported"); $finish;
      end
      if (pdp) begin
        lat_a <= (CLKA && a_writes && a_chunk == b_chunk) ? 18'bx : mem[b_chunk];
        lat_b <= (CLKA && a_writes && a_chunk == b_chunk) ? 18'bx : mem[b_chunk + 1];
      end else
        lat_b <= (CLKA && a_writes && a_chunk == b_chunk) ? 18'bx : mem[b_chunk];
    end
    if (oce_b) out_b <= lat_b;
    if (pdp && !a_own && oce_b) out_a <= lat_a;
  end
  wire reg_a = (pdp && !a_own) ? REGMODE_B == "OUTREG" : REGMODE_A == "OUTREG";
  wire [17:0] doa = reg_a ? out_a : lat_a;
  wire [17:0] dob = REGMODE_B == "OUTREG" ? out_b : lat_b;
  assign {_bus("DOA", 18)} = doa;
  assign {_bus("DOB", 18)} = dob;
endmodule
"""


DUT = """
module outreg_dut (
  input  logic clk, en, en2, rst, we,
  input  logic [9:0] waddr, raddr,
  input  logic [8:0] waddr36, raddr36,
  input  logic [15:0] wdata,
  input  logic [31:0] wdata36,
  output logic [15:0] q_same, q_diff, q_rst, q_free, q_rom,
  output logic [31:0] q_wide
);
  // as the project's RTL writes a block-RAM read: r1 <= mem[addr] (absorbed into the RAM), r2 <= r1
  logic [15:0] m_same [1024];
  logic [15:0] m_diff [1024];
  logic [15:0] m_rst [1024];
  logic [15:0] m_free [1024];
  logic [15:0] m_rom [1024];
  logic [31:0] m_wide [512];
  initial begin
    $readmemh("m16.mem", m_same); $readmemh("m16.mem", m_diff); $readmemh("m16.mem", m_rst);
    $readmemh("m16.mem", m_free); $readmemh("m16.mem", m_rom); $readmemh("m32.mem", m_wide);
  end
  always_ff @(posedge clk) begin
    if (we) begin
      m_same[waddr] <= wdata; m_diff[waddr] <= wdata; m_rst[waddr] <= wdata; m_free[waddr] <= wdata;
      m_wide[waddr36] <= wdata36;
    end
  end
  logic [15:0] r_same, r_diff, r_rst, r_free, r_rom;
  logic [31:0] r_wide;
  always_ff @(posedge clk) begin
    if (en) begin
      r_same <= m_same[raddr];
      q_same <= r_same;
      r_diff <= m_diff[raddr];
      r_rst <= m_rst[raddr];
      r_rom <= m_rom[raddr];
      q_rom <= r_rom;
      r_wide <= m_wide[raddr36];
      q_wide <= r_wide;
    end
    if (en2) q_diff <= r_diff;          // a different enable: must not merge
    if (rst) q_rst <= '0;                // a reset on r2: must not merge
    else if (en) q_rst <= r_rst;
    r_free <= m_free[raddr];             // no enable at all
    q_free <= r_free;
  end
endmodule
"""

OUTPUTS = (("q_same", 16), ("q_diff", 16), ("q_rst", 16), ("q_free", 16), ("q_rom", 16), ("q_wide", 32))


def testbench(gates: list[str], cycles: int, seed: int) -> str:
    """Random stimulus; after every clock each gate netlist's outputs must equal the RTL's wherever the RTL's bit
    is 0 or 1 (before a register's first load the RTL reads x)."""
    ins = "clk, en, en2, rst, we, waddr, raddr, waddr36, raddr36, wdata, wdata36"
    decl = "\n".join(f"  wire [{w - 1}:0] {n}_rtl, " + ", ".join(f"{n}_{g}" for g in gates) + ";" for n, w in OUTPUTS)

    def inst(mod: str, tag: str) -> str:
        outs = ", ".join(f".{n}({n}_{tag})" for n, _ in OUTPUTS)
        return f"  {mod} u_{tag} (.clk(clk), .en(en), .en2(en2), .rst(rst), .we(we), .waddr(waddr), " \
               f".raddr(raddr), .waddr36(waddr36), .raddr36(raddr36), .wdata(wdata), .wdata36(wdata36), {outs});"
    insts = "\n".join([inst("outreg_dut", "rtl")] + [inst(g, g) for g in gates])
    checks = "\n".join(f"      check({i}, {n}_rtl, {n}_{g});" for i, g in enumerate(gates) for n, _ in OUTPUTS)
    report = ", ".join(f"bad[{i}]" for i in range(len(gates)))
    fmt = " ".join(f"{g}=%0d" for g in gates)
    return f"""
module tb;
  logic {ins.replace("waddr, raddr, waddr36, raddr36, wdata, wdata36", "").strip(", ")};
  logic [9:0] waddr, raddr;
  logic [8:0] waddr36, raddr36;
  logic [15:0] wdata;
  logic [31:0] wdata36;
{decl}
{insts}
  integer bad [0:{len(gates) - 1}];
  integer defined = 0, total = 0, cyc, k, seed = {seed};
  task check(input integer g, input [31:0] ref_, input [31:0] got);
    integer b;
    begin
      if (^ref_ !== 1'bx && got === ref_) begin  // the common case, all bits defined and equal
        if (g == 0) begin
          total = total + 32;
          defined = defined + 32;
        end
      end else
      for (b = 0; b < 32; b = b + 1) begin
        if (g == 0) total = total + 1;
        if (ref_[b] === 1'b0 || ref_[b] === 1'b1) begin
          if (g == 0) defined = defined + 1;
          if (got[b] !== ref_[b]) begin
            if (bad[g] < 5) $display("MISMATCH gate %0d cycle %0d bit %0d: rtl %b gate %b", g, cyc, b, ref_[b], got[b]);
            bad[g] = bad[g] + 1;
          end
        end
      end
    end
  endtask
  initial begin
    for (k = 0; k < {len(gates)}; k = k + 1) bad[k] = 0;
    clk = 0;
    for (cyc = 0; cyc < {cycles}; cyc = cyc + 1) begin
      en = ($random(seed) & 3) != 0;
      en2 = $random(seed) & 1;
      rst = ($random(seed) & 15) == 0;
      we = $random(seed) & 1;
      // a small address range half of the time, so that reads meet the words just written
      waddr = ($random(seed) & 1) ? ($random(seed) & 7) : $random(seed);
      raddr = ($random(seed) & 1) ? ($random(seed) & 7) : $random(seed);
      waddr36 = ($random(seed) & 1) ? ($random(seed) & 7) : $random(seed);
      raddr36 = ($random(seed) & 1) ? ($random(seed) & 7) : $random(seed);
      wdata = $random(seed);
      wdata36 = $random(seed);
      #5 clk = 1;
      #4;
{checks}
      #1 clk = 0;
    end
    $display("RESULT defined=%0d total=%0d {fmt}", defined, total, {report});
    $finish;
  end
endmodule
"""


def lattice_cells(share_lattice, names=("LUT4", "L6MUX21", "PFUMX", "TRELLIS_FF", "LUT2", "INV", "VLO", "VHI")) -> str:
    """The named modules of Yosys' own ECP5 simulation models (common_sim.vh; the whole file has constructs
    iverilog does not take) and CCU2C (ccu2c_sim.vh)."""
    import re
    from pathlib import Path

    text = (Path(share_lattice) / "common_sim.vh").read_text()
    out = []
    for name in names:
        m = re.search(rf"^module {re.escape(name)}\b.*?^endmodule", text, re.S | re.M)
        if not m:
            raise ValueError(f"{name}: not in common_sim.vh")
        out.append(m.group(0))
    out.append((Path(share_lattice) / "ccu2c_sim.vh").read_text())
    return "\n\n".join(out) + "\n"
