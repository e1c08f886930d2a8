# PYNQ-Z2 ({= part =}) block design around the accelerator
# {= top =} ({= manifest_name =}: model {= model =}), AXI DMA, {= clock_mhz =} MHz FCLK_CLK0.
# Run from the build folder: vivado -mode batch -source project/build.tcl (see project/run_vivado.sh).

set root [file normalize [file join [file dirname [info script]] ..]]
set name {= name =}
set proj_dir [file join $root work vivado]
set out_dir $root
set jobs {= jobs =}
if {[info exists ::env(INSTABNN_VIVADO_JOBS)]} { set jobs $::env(INSTABNN_VIVADO_JOBS) }

create_project -force {= bd_name =} $proj_dir -part {= part =}

# board part where the PYNQ-Z2 board files are installed, else the bare part with the board's PS settings
set board [lindex [lsort [get_board_parts -quiet {= board_part =}:*]] end]
if {$board ne ""} {
    set_property board_part $board [current_project]
    set use_board 1
    puts "instabnn: board part $board"
} else {
    set use_board 0
    puts "instabnn: WARNING: board files {= board_part =} not installed; part {= part =} with the PYNQ-Z2 PS settings"
}

# accelerator RTL (SystemVerilog) and the Verilog adapter that the block design references
add_files -norecurse [list \
{% for source in sources %}
    [file join $root {= source =}] \
{% endfor %}
    [file join $root project {= wrapper_top =}.v]]
{% if mem_files %}

# $readmemh files: the RTL names them by bare file name; as project memory files Vivado synthesis finds them
set mems [list \
{% for mem in mem_files %}
    [file join $root {= mem =}] \
{% endfor %}
]
add_files -norecurse $mems
set_property file_type {Memory File} [get_files $mems]
{% endif %}
update_compile_order -fileset sources_1

create_bd_design {= bd_name =}

# Zynq-7000 processing system
set ps7 [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 ps7]
if {$use_board} {
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 -config {make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"} $ps7
} else {
    set_property -dict [list \
{% for key, value in ps_fallback.items() %}
        CONFIG.{= key =} {{= value =}} \
{% endfor %}
    ] $ps7
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 -config {make_external "FIXED_IO, DDR" apply_board_preset "0" Master "Disable" Slave "Disable"} $ps7
}
set_property -dict [list \
{% for key, value in ps_fixed.items() %}
    CONFIG.{= key =} {{= value =}} \
{% endfor %}
] $ps7

# AXI DMA, simple (register) mode: MM2S -> accelerator s_axis, accelerator m_axis -> S2MM
set dma [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma:7.1 dma]
set_property -dict [list \
{% for key, value in dma.items() %}
    CONFIG.{= key =} {{= value =}} \
{% endfor %}
] $dma

# the accelerator, an RTL module reference (adapter + {= top =}); its clock and streams run at the PS clock's
# actual frequency (a module reference's FREQ_HZ is 100 MHz unless set, and validate_bd_design refuses a stream
# whose FREQ_HZ differs from the DMA's)
set accel [create_bd_cell -type module -reference {= wrapper_top =} accel]
set fclk_hz [get_property CONFIG.FREQ_HZ [get_bd_pins ps7/FCLK_CLK0]]
set_property CONFIG.FREQ_HZ $fclk_hz [get_bd_pins accel/aclk]
set_property CONFIG.FREQ_HZ $fclk_hz [get_bd_intf_pins accel/s_axis]
set_property CONFIG.FREQ_HZ $fclk_hz [get_bd_intf_pins accel/m_axis]

set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset:5.0 rst_fclk0]
connect_bd_net [get_bd_pins ps7/FCLK_CLK0] [get_bd_pins rst_fclk0/slowest_sync_clk] [get_bd_pins accel/aclk] \
    [get_bd_pins dma/s_axi_lite_aclk] [get_bd_pins dma/m_axi_mm2s_aclk] [get_bd_pins dma/m_axi_s2mm_aclk] \
    [get_bd_pins ps7/M_AXI_GP0_ACLK] [get_bd_pins ps7/S_AXI_HP0_ACLK]
connect_bd_net [get_bd_pins ps7/FCLK_RESET0_N] [get_bd_pins rst_fclk0/ext_reset_in]
connect_bd_net [get_bd_pins rst_fclk0/peripheral_aresetn] [get_bd_pins accel/aresetn] [get_bd_pins dma/axi_resetn]
connect_bd_intf_net [get_bd_intf_pins dma/M_AXIS_MM2S] [get_bd_intf_pins accel/s_axis]
connect_bd_intf_net [get_bd_intf_pins accel/m_axis] [get_bd_intf_pins dma/S_AXIS_S2MM]

# PS GP0 -> DMA registers; DMA MM2S / S2MM -> PS HP0 (DDR)
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config {Clk_master {/ps7/FCLK_CLK0} Clk_slave {/ps7/FCLK_CLK0} Clk_xbar {/ps7/FCLK_CLK0} Master {/ps7/M_AXI_GP0} Slave {/dma/S_AXI_LITE} ddr_seg {Auto} intc_ip {New AXI Interconnect} master_apm {0}} [get_bd_intf_pins dma/S_AXI_LITE]
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config {Clk_master {/ps7/FCLK_CLK0} Clk_slave {/ps7/FCLK_CLK0} Clk_xbar {/ps7/FCLK_CLK0} Master {/dma/M_AXI_MM2S} Slave {/ps7/S_AXI_HP0} ddr_seg {Auto} intc_ip {New AXI SmartConnect} master_apm {0}} [get_bd_intf_pins ps7/S_AXI_HP0]
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config {Clk_master {/ps7/FCLK_CLK0} Clk_slave {/ps7/FCLK_CLK0} Clk_xbar {/ps7/FCLK_CLK0} Master {/dma/M_AXI_S2MM} Slave {/ps7/S_AXI_HP0} ddr_seg {Auto} intc_ip {Auto} master_apm {0}} [get_bd_intf_pins dma/M_AXI_S2MM]

# no interrupts: the driver (deploy/driver.py) polls the DMA channels' status with a deadline

assign_bd_address
validate_bd_design
save_bd_design

set bd_file [get_files {= bd_name =}.bd]
# global synthesis of the block design: the accelerator's $readmemh files resolve in the one synthesis run
set_property synth_checkpoint_mode None $bd_file
generate_target all $bd_file
add_files -norecurse [make_wrapper -files $bd_file -top]
set_property top {= bd_name =}_wrapper [current_fileset]
update_compile_order -fileset sources_1

launch_runs synth_1 -jobs $jobs
wait_on_run synth_1
if {[get_property PROGRESS [get_runs synth_1]] ne "100%"} { error "instabnn: synthesis failed (see $proj_dir)" }
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} { error "instabnn: implementation failed (see $proj_dir)" }

open_run impl_1
file mkdir [file join $root work reports]
report_utilization -file [file join $root work reports utilization.rpt]
# the accelerator's cell by its exact name (a pattern would also match the accelerator instance inside it, and
# the report would count it twice)
set accel_cells [get_cells -quiet {= bd_name =}_i/accel]
if {[llength $accel_cells] == 1} {
    report_utilization -cells $accel_cells -file [file join $root work reports utilization_accel.rpt]
} else {
    puts "instabnn: WARNING: no cell {= bd_name =}_i/accel: no utilisation report of the accelerator alone"
}
report_timing_summary -max_paths 10 -file [file join $root work reports timing_summary.rpt]

# the bitstream and its hardware handoff, same base name (PYNQ's Overlay loads <name>.bit with <name>.hwh)
set bits [glob -nocomplain [file join $proj_dir {= bd_name =}.runs impl_1 *.bit]]
if {[llength $bits] == 0} { error "instabnn: no bitstream in [file join $proj_dir {= bd_name =}.runs impl_1]" }
file copy -force [lindex $bits 0] [file join $out_dir $name.bit]
set hwh [glob -nocomplain [file join $proj_dir {= bd_name =}.gen sources_1 bd {= bd_name =} hw_handoff {= bd_name =}.hwh] \
                          [file join $proj_dir {= bd_name =}.srcs sources_1 bd {= bd_name =} hw_handoff {= bd_name =}.hwh]]
if {[llength $hwh] == 0} { error "instabnn: no hardware handoff (.hwh) in $proj_dir" }
file copy -force [lindex $hwh 0] [file join $out_dir $name.hwh]
puts "instabnn: wrote [file join $out_dir $name.bit] and $name.hwh"
