# INSTA-BNN toolkit: model -> QONNX -> (lowered integer graph -> RTL -> cocotb -> bitstream: later stages).
# Every target that needs the environment depends on `setup`, which builds .venv from env/requirements.lock.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done

RUN       ?= runs/demo
CKPT      ?= $(RUN)/model.pt
MODEL     ?= $(RUN)/model.onnx
TRAIN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help setup demo train export lower fold hw cosim hls4ml-check analyses study study-hw test test-slow bench cost synth-blocks estimate-check bitstream deploy lock clean

help:
	@echo "make setup      create .venv with the pinned environment (env/requirements.lock)"
	@echo "make demo       the whole flow on digits (or DATA=digits-iv TRAIN_ARGS='--severity 2'): train (VARIANT=$(VARIANT)),"
	@echo "                export, lower, fold, compile to RTL, co-simulate the"
	@echo "                test split -> $(RUN)/, summary in reports/demo.json"
	@echo "make train      train; TRAIN_ARGS='--data cifar10 --data-dir ... --preset cifar' etc. (--help lists all)"
	@echo "make export     export CKPT=$(CKPT) to MODEL=$(MODEL)"
	@echo "make lower      lower MODEL=$(MODEL) to the integer network; report $(dir $(MODEL))lowered.{json,md}"
	@echo "make fold       PE/SIMD per layer of $(dir $(MODEL))lowered.onnx for FPS=5000 at 100 MHz -> folding.json"
	@echo "make hw         MODEL=<exported .onnx>: lower, fold for FPS=$(FPS) (or FOLDING=<json>), generate the RTL -> $(dir $(MODEL))rtl/"
	@echo "make cosim      MODEL=... DATA=digits|digits-iv|cifar10|random N=<images>: co-simulate the RTL vs the reference"
	@echo "                -> reports/cosim.json (default DATA: what the model was trained on; digits-iv takes the run's"
	@echo "                severity/size/seed, COSIM_ARGS='--severity 2 --test-draw 1' overrides); SHARD=k/n one slice;"
	@echo "                SHARDS=n all n slices on local Dask workers (SCHEDULER=<dask address>: a cluster), merged"
	@echo "make hls4ml-check  MODEL=<exported .onnx>: hls4ml's QONNX front end + C simulation vs the reference -> reports/hls4ml/"
	@echo "make analyses   supplementary Sec. E-I analyses on digits -> reports/analyses/ (docs/analyses.md)"
	@echo "make study      paired multi-seed study of baseline / INSTA-Th / INSTA / INSTA+ / latency-optimized on digits-iv"
	@echo "                -> reports/study.{json,md,png} (reduced design; FULL=1 the full one; SCHEDULER=<dask address>)"
	@echo "make study-hw   the best-seed baseline and insta of that study at its highest severity through the hardware flow"
	@echo "                (5000 frames/s, RTL co-simulation of the run's digits-iv test split) -> table in reports/study.md"
	@echo "make test       the default test run (fast tiers)"
	@echo "make test-slow  the slow tiers (marked 'slow')"
	@echo "make bench      digits INSTA-BNN vs baseline, same budget and seed -> reports/bench.json; then compile time,"
	@echo "                co-simulation speed (cocotb vs Verilator), measured vs analytic cycles -> reports/bench_hw.json"
	@echo "make cost       BOPs / FLOPs / OPs / parameter bits of the comparison models -> reports/cost.{json,md}"
	@echo "make synth-blocks  Yosys synth_xilinx of the RTL blocks at a few foldings -> reports/synth_blocks.{json,md}"
	@echo "make estimate-check  the compiler's resource estimate vs Yosys on whole accelerators -> reports/estimate_vs_yosys.{json,md}"
	@echo "make bitstream  BOARD=pynq-z2|ulx3s-85f bitstream of RTL=$(RTL) -> bitstreams/<board>-$(notdir $(RUN))/ (pynq-z2 without Vivado: script + Yosys estimate, exit 3)"
	@echo "make deploy     folder for the PYNQ board (bitstream, hwh, driver, example, test images) -> build/deploy/"
	@echo "make lock       re-resolve env/requirements.in into env/requirements.lock"

$(STAMP): env/requirements.lock env/setup.sh pyproject.toml setup.py
	PYTHON=$(PYTHON) bash env/setup.sh
	@touch $@

setup: $(STAMP)

VARIANT ?= insta

demo: setup
	$(PY) -m instabnn.model.train --data $(or $(DATA),digits) --variant $(VARIANT) --out $(RUN) --resume $(TRAIN_ARGS)
	$(PY) -m instabnn.model.export --checkpoint $(RUN)/model.pt --out $(RUN)/model.onnx
	$(PY) -m instabnn.hw.lower $(RUN)/model.onnx --out $(RUN)
	$(PY) -m instabnn.hw.compile.folding $(RUN)/lowered.onnx --target-fps $(FPS)
	$(PY) -m instabnn.hw.compile $(RUN)/lowered.onnx --folding $(RUN)/folding.json --out $(RUN)/rtl
	$(PY) -m instabnn.sim.cosim $(RUN)/rtl --out $(RUN)/cosim.json
	$(PY) -m instabnn.sim.demo $(RUN) --out reports/demo.json

train: setup
	$(PY) -m instabnn.model.train --out $(RUN) $(TRAIN_ARGS)

export: setup
	$(PY) -m instabnn.model.export --checkpoint $(CKPT) --out $(MODEL)

lower: setup
	$(PY) -m instabnn.hw.lower $(MODEL)

FPS ?= 5000

fold: setup
	$(PY) -m instabnn.hw.compile.folding $(dir $(MODEL))lowered.onnx --target-fps $(FPS)

LOWERED := $(dir $(MODEL))lowered.onnx
FOLDING ?=
DATA ?=
COSIM_ARGS ?=
N ?=
DATA_DIR ?=
SHARD ?=
SHARDS ?=
HARNESS ?= cocotb

hw: setup
	$(PY) -m instabnn.hw.lower $(MODEL) --no-progress
	$(if $(FOLDING),,$(PY) -m instabnn.hw.compile.folding $(LOWERED) --target-fps $(FPS))
	$(PY) -m instabnn.hw.compile $(LOWERED) --folding $(if $(FOLDING),$(FOLDING),$(dir $(MODEL))folding.json) --out $(dir $(MODEL))rtl

COSIM = $(PY) -m instabnn.sim.cosim $(dir $(MODEL))rtl $(if $(DATA),--data $(DATA)) --harness $(HARNESS) $(COSIM_ARGS) \
	--out reports/cosim$(if $(SHARD),-$(subst /,of,$(SHARD)),).json \
	$(if $(N),-n $(N)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(SHARD),--shard $(SHARD)) \
	$(if $(SHARDS),--shards $(SHARDS) $(if $(SCHEDULER),--scheduler $(SCHEDULER)))

# the arguments are checked before lowering, folding and compiling (a typo in DATA costs nothing)
cosim: setup
	$(COSIM) --check-args
	$(MAKE) --no-print-directory hw
	$(COSIM)

hls4ml-check: setup
	$(PY) -m instabnn.hw.hls4ml_check $(MODEL) --out reports/hls4ml

analyses: setup
	$(PY) -m instabnn.model.train --data digits --variant insta --out runs/digits-insta --resume --no-progress
	$(PY) -m instabnn.model.train --data digits --variant baseline --out runs/digits-baseline --resume --no-progress
	$(PY) -m instabnn.model.analyses correlation --checkpoint runs/digits-insta/model.pt
	$(PY) -m instabnn.model.analyses inconsistent-sign --checkpoint baseline=runs/digits-baseline/model.pt --checkpoint insta=runs/digits-insta/model.pt
	$(PY) -m instabnn.model.analyses tsne --checkpoint baseline=runs/digits-baseline/model.pt --checkpoint insta=runs/digits-insta/model.pt
	$(PY) -m instabnn.model.analyses nonlinearity --epochs 10
	$(PY) -m instabnn.model.analyses ordering --epochs 10

FULL ?=
SCHEDULER ?=
STUDY_ARGS ?=
STUDY_HW_ARGS ?=

study: setup
	$(PY) -m instabnn.model.study --out reports $(if $(FULL),--full) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(STUDY_ARGS)

# the hardware table of the study's models (after make study; a finished model is not run again)
study-hw: setup
	$(PY) -m instabnn.sim.study_hardware --out reports $(if $(FULL),--full) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(STUDY_HW_ARGS)

test: setup
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: setup
	$(PY) -m instabnn.model.bench --out reports/bench.json
	$(PY) -m instabnn.sim.bench --runs reports/bench-runs --out reports/bench_hw.json --resnet20 baseline,insta,latency_optimized \
		--merge-into reports/bench.json

cost: setup
	$(PY) -m instabnn.model.cost --out reports/cost.json

synth-blocks: setup
	$(PY) -m instabnn.hw.synth --out reports/synth_blocks.json

estimate-check: setup
	nice -n 5 $(PY) -m instabnn.sim.estimate_check --out reports/estimate_vs_yosys.json

BOARD ?= pynq-z2
RTL   ?= $(RUN)/rtl
# the ECP5 open flow: 50 MHz by default (the digits INSTA accelerator routed at 67.7 MHz on the ULX3S, docs/hardware.md); PYNQ-Z2: 100 MHz
CLOCK_MHZ ?= $(if $(filter ulx3s-85f,$(BOARD)),50,100)

bitstream: setup
	$(PY) -m instabnn.hw.bitstream $(RTL) --board $(BOARD) --clock-mhz $(CLOCK_MHZ) --out bitstreams/$(BOARD)-$(notdir $(RUN))

DEPLOY_OUT ?= build/deploy/$(BOARD)-$(notdir $(RUN))

deploy: setup
	$(PY) -m instabnn.deploy assemble $(RTL) --bitstream bitstreams/$(BOARD)-$(notdir $(RUN)) --out $(DEPLOY_OUT)

lock:
	rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install -q torch==2.13.0 "setuptools>=77.0.3,<81" wheel
	build/lock-venv/bin/pip install -q --no-deps finn-plus==1.6.1 brevitas==0.13.4
	build/lock-venv/bin/pip install -q -r env/requirements.in
	{ sed -n 1,2p env/requirements.lock; build/lock-venv/bin/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; \
	  build/lock-venv/bin/pip freeze --all | grep -E '^(setuptools|wheel)=='; } > env/requirements.lock.new
	mv env/requirements.lock.new env/requirements.lock

clean:
	rm -rf runs reports build .pytest_cache
