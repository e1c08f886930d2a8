// ULX3S (LFE5U-85F) host interface around {= top =}.
// UART on the FT231X (8N1, {= baud =} baud, CLKS_PER_BIT = {= clks_per_bit =} clocks per bit at {= clock_mhz =} MHz). Protocol:
// the host sends an image (input shape {= input_shape =}) as {= pixels =} pixels of IN_WIDTH / 8 byte(s) each (little-endian,
// IN_WIDTH-bit s_axis beats); the board answers {= classes =} logits of OUT_WIDTH / 8 byte(s) each (little-endian two's
// complement). Send the next image after its answer (a pixel word that the accelerator has not taken when the next
// completes is dropped: led[0]).
// LEDs: led[0] input overrun, led[1] UART framing error, led[2] toggles per answered image, led[3] in reset.
// Reset: power-on (after PLL lock) and while FIRE1 (btn[1]) is pressed.
`timescale 1ns / 1ps
`default_nettype none

module instabnn_ulx3s_top #(
    parameter IN_WIDTH = {= in_width =},          // the accelerator's s_axis_tdata width (a multiple of 8)
    parameter OUT_WIDTH = {= out_width =},         // the accelerator's m_axis_tdata width (a multiple of 8)
    parameter CLKS_PER_BIT = {= clks_per_bit =}      // clock cycles per UART bit (>= 4)
) (
    input  wire       clk_25mhz,
    input  wire       ftdi_txd,     // FPGA receives
    output wire       ftdi_rxd,     // FPGA transmits
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire [6:0] btn,          // btn[1] (FIRE1) resets; the others are unused
    /* verilator lint_on UNUSEDSIGNAL */
    output wire [7:0] led,
    output wire       wifi_gpio0
);

localparam IN_BYTES = IN_WIDTH / 8;
localparam OUT_BYTES = OUT_WIDTH / 8;
localparam CNT_BITS = $clog2(CLKS_PER_BIT + 1);     // bit-time counter
localparam IN_CNT_BITS = $clog2(IN_BYTES + 1);      // bytes of a pixel word received
localparam OUT_CNT_BITS = $clog2(OUT_BYTES + 1);    // bytes of a logit word still to send
localparam [31:0] HALF_BIT = CLKS_PER_BIT / 2;
localparam [31:0] LAST_CLK = CLKS_PER_BIT - 1;
localparam [31:0] IN_LAST_BYTE = IN_BYTES - 1;
localparam [31:0] OUT_WORD_BYTES = OUT_BYTES;
// the counters' constants at the counters' widths
localparam [CNT_BITS - 1:0] CNT_ZERO = 0;
localparam [CNT_BITS - 1:0] CNT_ONE = 1;
localparam [CNT_BITS - 1:0] CNT_HALF_BIT = HALF_BIT[CNT_BITS - 1:0];
localparam [CNT_BITS - 1:0] CNT_LAST = LAST_CLK[CNT_BITS - 1:0];
localparam [IN_CNT_BITS - 1:0] IN_CNT_ZERO = 0;
localparam [IN_CNT_BITS - 1:0] IN_CNT_ONE = 1;
localparam [IN_CNT_BITS - 1:0] IN_CNT_LAST = IN_LAST_BYTE[IN_CNT_BITS - 1:0];
localparam [OUT_CNT_BITS - 1:0] OUT_CNT_ZERO = 0;
localparam [OUT_CNT_BITS - 1:0] OUT_CNT_ONE = 1;
localparam [OUT_CNT_BITS - 1:0] OUT_CNT_WORD = OUT_WORD_BYTES[OUT_CNT_BITS - 1:0];

assign wifi_gpio0 = 1'b1;           // keeps the ESP32 from resetting the board

{% if pll %}
wire clk;
wire locked;
{= pll_module =} pll (.clkin(clk_25mhz), .clkout0(clk), .locked(locked));
{% else %}
wire clk = clk_25mhz;
wire locked = 1'b1;
{% endif %}

// reset: power-on counter (registers start at 0 after configuration), FIRE1 synchronised
/* verilator lint_off PROCASSINIT */
reg [1:0] fire_sync = 2'b00;
reg [4:0] por = 5'd0;
/* verilator lint_on PROCASSINIT */
always @(posedge clk) begin
    fire_sync <= {fire_sync[0], btn[1]};
    if (!locked || fire_sync[1]) por <= 5'd0;
    else if (!por[4]) por <= por + 5'd1;
end
wire rst = !por[4];

// UART receiver: start-bit detection, sampling in the middle of each bit
reg [2:0] rx_sync;
reg rx_busy, rx_done, frame_err;
reg [CNT_BITS - 1:0] rx_cnt;
reg [3:0] rx_bit;
reg [7:0] rx_byte;
always @(posedge clk) begin
    rx_sync <= {rx_sync[1:0], ftdi_txd};
    rx_done <= 1'b0;
    if (!rx_busy) begin
        if (!rx_sync[2]) begin
            rx_busy <= 1'b1;
            rx_cnt <= CNT_HALF_BIT;
            rx_bit <= 4'd0;
        end
    end else if (rx_cnt != CNT_ZERO) begin
        rx_cnt <= rx_cnt - CNT_ONE;
    end else begin
        rx_cnt <= CNT_LAST;
        if (rx_bit == 4'd0) begin
            if (rx_sync[2]) rx_busy <= 1'b0;           // a glitch, not a start bit
            else rx_bit <= 4'd1;
        end else if (rx_bit != 4'd9) begin
            rx_byte <= {rx_sync[2], rx_byte[7:1]};
            rx_bit <= rx_bit + 4'd1;
        end else begin
            rx_busy <= 1'b0;
            if (rx_sync[2]) rx_done <= 1'b1;
            else frame_err <= 1'b1;
        end
    end
    if (rst) begin
        rx_sync <= 3'b111;
        rx_busy <= 1'b0;
        rx_done <= 1'b0;
        frame_err <= 1'b0;
    end
end

// bytes -> IN_WIDTH-bit pixel words (first byte least significant)
reg [IN_WIDTH - 1:0] in_asm;
reg [IN_WIDTH - 1:0] in_word;
reg [IN_CNT_BITS - 1:0] in_cnt;
reg in_valid, overrun;
wire in_ready;
/* verilator lint_off UNUSEDSIGNAL */
wire [IN_WIDTH + 7:0] in_shifted = {rx_byte, in_asm};  // the byte shifted in at the top
/* verilator lint_on UNUSEDSIGNAL */
always @(posedge clk) begin
    if (in_valid && in_ready) in_valid <= 1'b0;
    if (rx_done) begin
        in_asm <= in_shifted[IN_WIDTH + 7:8];
        if (in_cnt == IN_CNT_LAST) begin
            in_cnt <= IN_CNT_ZERO;
            in_word <= in_shifted[IN_WIDTH + 7:8];
            in_valid <= 1'b1;
            if (in_valid && !in_ready) overrun <= 1'b1;
        end else begin
            in_cnt <= in_cnt + IN_CNT_ONE;
        end
    end
    if (rst) begin
        in_cnt <= IN_CNT_ZERO;
        in_valid <= 1'b0;
        overrun <= 1'b0;
    end
end

// the accelerator
wire [OUT_WIDTH - 1:0] out_data;
wire out_valid, out_last;
wire out_ready;
{= top =} accel (
    .clk(clk),
    .rst(rst),
    .s_axis_tdata(in_word),
    .s_axis_tvalid(in_valid),
    .s_axis_tready(in_ready),
    .m_axis_tdata(out_data),
    .m_axis_tvalid(out_valid),
    .m_axis_tready(out_ready),
    .m_axis_tlast(out_last)
);

// OUT_WIDTH-bit logit words -> bytes (least significant first) -> UART transmitter
reg [OUT_WIDTH - 1:0] tx_word;
reg [OUT_CNT_BITS - 1:0] tx_left;   // bytes of tx_word still to send
reg [9:0] tx_shift;                 // stop, data[7:0], start
reg [3:0] tx_bits;                  // bits of tx_shift still to send
reg [CNT_BITS - 1:0] tx_cnt;
reg image_toggle;
assign out_ready = tx_bits == 4'd0 && tx_left == OUT_CNT_ZERO;
always @(posedge clk) begin
    if (tx_bits == 4'd0) begin
        if (tx_left != OUT_CNT_ZERO) begin
            tx_shift <= {1'b1, tx_word[7:0], 1'b0};
            tx_word <= tx_word >> 8;
            tx_left <= tx_left - OUT_CNT_ONE;
            tx_bits <= 4'd10;
            tx_cnt <= CNT_LAST;
        end else if (out_valid) begin
            tx_word <= out_data;
            tx_left <= OUT_CNT_WORD;
            if (out_last) image_toggle <= !image_toggle;
        end
    end else if (tx_cnt != CNT_ZERO) begin
        tx_cnt <= tx_cnt - CNT_ONE;
    end else begin
        tx_cnt <= CNT_LAST;
        tx_shift <= {1'b1, tx_shift[9:1]};
        tx_bits <= tx_bits - 4'd1;
    end
    if (rst) begin
        tx_left <= OUT_CNT_ZERO;
        tx_bits <= 4'd0;
        image_toggle <= 1'b0;
    end
end
assign ftdi_rxd = tx_bits == 4'd0 ? 1'b1 : tx_shift[0];

assign led = {4'b0000, rst, image_toggle, frame_err, overrun};

endmodule

`default_nettype wire
