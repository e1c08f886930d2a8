// Whole-network co-simulation harness: an image source, a logit sink and per-image cycle stamps around the
// accelerator under test (instabnn.sim.cosim). Fixed HDL: the accelerator's module name comes from the macro
// COSIM_DUT (Verilator: +define+COSIM_DUT=<top>), every size from the parameters below.
//
// The source feeds IN_TOTAL = N_IMAGES * BEATS words of IMAGE_FILE (one beat per pixel) with random idle cycles
// (IN_STALL / 256); the sink takes N_IMAGES * CLASSES logits with random backpressure (OUT_STALL / 256), stores
// them in LOGIT_FILE and, per image, the cycle of its first accepted input beat and of its last logit in
// CYCLE_FILE; it counts logits whose tlast disagrees with "last class of an image" (tlast_errors). `done` rises
// once every logit has arrived and both files are written.
`resetall
`timescale 1ns / 1ps
`default_nettype none

`ifndef COSIM_DUT
`error "define COSIM_DUT as the accelerator's module name (+define+COSIM_DUT=<top>)"
`endif

module cosim_harness #(
    parameter int N_IMAGES = 1,       // images in IMAGE_FILE
    parameter int BEATS = 1,          // input beats (pixels) per image
    parameter int CLASSES = 1,        // logits per image
    parameter int IN_WIDTH = 8,       // s_axis_tdata width of the accelerator
    parameter int OUT_WIDTH = 8,      // m_axis_tdata width of the accelerator
    parameter int IN_STALL = 0,       // idle probability of the source, in 1/256
    parameter int OUT_STALL = 0,      // backpressure probability of the sink, in 1/256
    parameter int SEED = 1,           // LFSR seed of the stall generators
    parameter IMAGE_FILE = "images.mem",
    parameter LOGIT_FILE = "logits.mem",
    parameter CYCLE_FILE = "cycles.mem"
) (
    input  wire logic clk,
    input  wire logic rst,
    output logic      done,
    output logic [31:0] tlast_errors
);

localparam int IN_TOTAL = N_IMAGES * BEATS;
localparam int OUT_TOTAL = N_IMAGES * CLASSES;

initial begin
    if (N_IMAGES < 1 || BEATS < 1 || CLASSES < 1 || IN_WIDTH < 1 || OUT_WIDTH < 1) begin
        $fatal(1, "cosim_harness: N_IMAGES, BEATS, CLASSES, IN_WIDTH and OUT_WIDTH must be >= 1");
    end
    if (IN_STALL < 0 || IN_STALL > 255 || OUT_STALL < 0 || OUT_STALL > 255) begin
        $fatal(1, "cosim_harness: IN_STALL and OUT_STALL are probabilities in 1/256 (0 .. 255)");
    end
end

logic [IN_WIDTH - 1:0] image_mem[IN_TOTAL];
logic [OUT_WIDTH - 1:0] logit_mem[OUT_TOTAL];
logic [63:0] cycle_mem[2 * N_IMAGES];  // image i: [2i] first input beat accepted, [2i+1] last logit taken

initial begin
    $readmemh(IMAGE_FILE, image_mem);
end

logic [63:0] cycle_reg;
logic [31:0] lfsr_reg;
logic [31:0] in_count_reg, out_count_reg, src_index_reg;
logic [31:0] in_class_reg;
logic [31:0] in_beat_reg;

logic [IN_WIDTH - 1:0] s_axis_tdata;
logic s_axis_tvalid, s_axis_tready;
logic [OUT_WIDTH - 1:0] m_axis_tdata;
logic m_axis_tvalid, m_axis_tready, m_axis_tlast;

wire logic src_idle = lfsr_reg[7:0] < 8'(IN_STALL);
assign m_axis_tready = !(lfsr_reg[15:8] < 8'(OUT_STALL));

`COSIM_DUT dut (
    .clk(clk), .rst(rst),
    .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(s_axis_tvalid), .s_axis_tready(s_axis_tready),
    .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready),
    .m_axis_tlast(m_axis_tlast)
);

always_ff @(posedge clk) begin
    cycle_reg <= cycle_reg + 1;
    lfsr_reg <= {lfsr_reg[30:0], lfsr_reg[31] ^ lfsr_reg[21] ^ lfsr_reg[1] ^ lfsr_reg[0]};
    // source: a beat stays valid until taken
    if (!s_axis_tvalid || s_axis_tready) begin
        if (src_index_reg < IN_TOTAL && !src_idle) begin
            s_axis_tdata <= image_mem[src_index_reg];
            s_axis_tvalid <= 1'b1;
            src_index_reg <= src_index_reg + 1;
        end else begin
            s_axis_tvalid <= 1'b0;
        end
    end
    if (s_axis_tvalid && s_axis_tready) begin
        if (in_beat_reg == 0) begin
            cycle_mem[2 * (in_count_reg / BEATS)] <= cycle_reg;
        end
        in_beat_reg <= in_beat_reg == BEATS - 1 ? 0 : in_beat_reg + 1;
        in_count_reg <= in_count_reg + 1;
    end
    // sink
    if (m_axis_tvalid && m_axis_tready && out_count_reg < OUT_TOTAL) begin
        logit_mem[out_count_reg] <= m_axis_tdata;
        if (m_axis_tlast != (in_class_reg == CLASSES - 1)) begin
            tlast_errors <= tlast_errors + 1;
        end
        if (in_class_reg == CLASSES - 1) begin
            cycle_mem[2 * (out_count_reg / CLASSES) + 1] <= cycle_reg;
        end
        in_class_reg <= in_class_reg == CLASSES - 1 ? 0 : in_class_reg + 1;
        out_count_reg <= out_count_reg + 1;
    end
    if (!done && out_count_reg == OUT_TOTAL) begin
        $writememh(LOGIT_FILE, logit_mem);
        $writememh(CYCLE_FILE, cycle_mem);
        done <= 1'b1;
    end
    if (rst) begin
        cycle_reg <= '0;
        lfsr_reg <= 32'(SEED) | 32'h1;
        in_count_reg <= '0;
        out_count_reg <= '0;
        src_index_reg <= '0;
        in_class_reg <= '0;
        in_beat_reg <= '0;
        s_axis_tvalid <= 1'b0;
        done <= 1'b0;
        tlast_errors <= '0;
    end
end

endmodule

// The cocotb top: clock and reset come from inside the simulator (Verilator --timing), so the cocotb test only
// waits for done and no VPI callback runs per cycle.
module cosim_tb #(
    parameter int N_IMAGES = 1,
    parameter int BEATS = 1,
    parameter int CLASSES = 1,
    parameter int IN_WIDTH = 8,
    parameter int OUT_WIDTH = 8,
    parameter int IN_STALL = 0,
    parameter int OUT_STALL = 0,
    parameter int SEED = 1
) (
    output logic      done /*verilator public*/,
    output logic [31:0] tlast_errors /*verilator public*/
);

logic clk = 1'b0;
logic rst = 1'b1;

always #5 clk = !clk;

initial begin
    repeat (4) @(posedge clk);
    rst = 1'b0;
end

cosim_harness #(
    .N_IMAGES(N_IMAGES), .BEATS(BEATS), .CLASSES(CLASSES), .IN_WIDTH(IN_WIDTH), .OUT_WIDTH(OUT_WIDTH),
    .IN_STALL(IN_STALL), .OUT_STALL(OUT_STALL), .SEED(SEED)
) harness (
    .clk(clk), .rst(rst), .done(done), .tlast_errors(tlast_errors)
);

endmodule

`resetall
