#!/bin/sh
# Build the PYNQ-Z2 bitstream with Vivado (on PATH) from this build folder.
set -e
cd "$(dirname "$0")/.."
mkdir -p work
vivado -mode batch -nojournal -log work/vivado.log -source project/build.tcl
