# torch-dojo developer entry points. Every target is idempotent: a second run redoes nothing.
#
#   make apt       install the LLVM/MLIR 22 Debian packages that are missing (melior needs them)
#   make venv      .venv with the pinned Python tools (requirements-dev.txt)
#   make develop   build the extension (release) into python/torch_dojo, editable install
#   make test      cargo test (default members, with the MLIR bridge) + pytest tests/python
#   make test-opinfo  every PyTorch OpInfo entry through backend="dojo" vs tests/opinfo/expected.tsv
#                  (make test runs a stratified subset; DOJO_OPINFO_UPDATE=1 rewrites the table)
#   make demo      compile a small MLP with backend="dojo" and print a report
#   make bench     benchmarks (bench-cfloat: CFloat conversion GB/s; bench-roofline: GEMM efficiency
#                  vs roofline on d1 + scaling; bench-models: per-model fallback, compile time, diff;
#                  bench-precision: accuracy, simulated time and 200-step loss per precision policy;
#                  bench-latency: first-call compile time vs Inductor, phases, growth, peak memory;
#                  bench-sim: simulated run vs eager wall time). Ratios against goals, never
#                  pass/fail: make test has no timing assertions.
#   make bench-egraph  the e-graph optimizer on TENSAT's models (issue 6): cost, simulated time
#                  on d1 with egraph off/on, e-graph size, optimisation time (not in make bench)
#   make bench-mapping  issue 5's mapping benchmark: resnet50 / GPT-2 124M inference and training
#                  step on tile (and d1): roofline efficiency, speedup over the naive plan,
#                  planning time (not in make bench)
#
# Facts behind the settings: shared notes build.md (torch 2.13 + tch 0.26 + melior 0.27).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := develop
MAKEFLAGS += --no-builtin-rules

ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
STAMPS := $(ROOT)/.stamps
# The interpreter the virtualenv is made from (Python >= 3.11).
BOOTSTRAP_PYTHON ?= python3

LLVM_PACKAGES := llvm-22-dev libmlir-22-dev libclang-22-dev libpolly-22-dev libzstd-dev mlir-22-tools
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# One environment for cargo and maturin, so neither rebuilds what the other built:
# torch-sys runs `python` from the virtualenv and takes libtorch from its torch
# (LIBTORCH_USE_PYTORCH; changing LIBTORCH_* reruns a ~76 s C++ build); PYO3_* are what
# maturin sets; the MLIR/TableGen prefixes pick LLVM 22 over /usr/bin/llvm-config
# (changing them needs `cargo clean -p mlir-sys -p tblgen`).
PY_SIGNATURE := $(shell $(BOOTSTRAP_PYTHON) -c 'import sys, struct; v = sys.version_info; print("%s-%d.%d-%dbit" % (sys.implementation.name, v[0], v[1], struct.calcsize("P") * 8))')
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
export PYO3_PYTHON := $(PY)
export PYO3_ENVIRONMENT_SIGNATURE := $(PY_SIGNATURE)
export PYO3_BUILD_EXTENSION_MODULE := 1
export MLIR_SYS_220_PREFIX := /usr/lib/llvm-22
export TABLEGEN_220_PREFIX := /usr/lib/llvm-22

# What the extension is built from (Python sources are installed editable: no rebuild).
RUST_SOURCES := $(shell find compiler runtime passes python -type f \( -name '*.rs' -o -name Cargo.toml \) -not -path '*/tests/*' 2>/dev/null)
EXTENSION_INPUTS := Cargo.toml $(wildcard Cargo.lock) $(RUST_SOURCES) pyproject.toml
# Rebuild when the built module is gone even if the stamp is newer than every input.
EXTENSION := $(wildcard python/torch_dojo/_native*.so)

.PHONY: apt venv develop test test-rust test-python test-opinfo demo FORCE

apt:
	@missing=""; \
	for p in $(LLVM_PACKAGES); do \
	  dpkg-query -W -f='$${db:Status-Status}' "$$p" 2>/dev/null | grep -qx installed || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  $(SUDO) apt-get update; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

venv: $(STAMPS)/venv

$(VENV)/pyvenv.cfg:
	$(BOOTSTRAP_PYTHON) -m venv $(VENV)

$(STAMPS)/venv: requirements-dev.txt $(VENV)/pyvenv.cfg
	$(PY) -m pip install -r requirements-dev.txt
	@mkdir -p $(STAMPS) && touch $@

develop: $(STAMPS)/develop

# --release: the simulator runs inside the extension, and tests run real kernels on it
# (clean ~3.3 min on 2 cores, incremental ~10 s plus the pip install of the wheel).
$(STAMPS)/develop: $(EXTENSION_INPUTS) $(STAMPS)/venv $(if $(EXTENSION),,FORCE)
	maturin develop --release
	@touch $@

FORCE:

test: apt develop
	@status=0; \
	$(MAKE) --no-print-directory test-rust || status=1; \
	$(MAKE) --no-print-directory test-python || status=1; \
	exit $$status

# Default members only (the extension crate needs Python; it is tested from pytest).
test-rust: apt
	cargo test --no-fail-fast --features dojo-passes/mlir

test-python: develop
	DOJO_OPINFO_FULL=1 $(PY) -m pytest tests/python

# The full OpInfo sweep alone (~3.5 min on 2 cores; make test-python runs it too). A plain
# `pytest tests/python` runs every 4th entry (~1 min).
test-opinfo: develop
	DOJO_OPINFO_FULL=1 $(PY) -m pytest tests/python/test_opinfo.py -k sweep

demo: develop
	$(PY) examples/demo.py

.PHONY: bench bench-cfloat bench-models bench-roofline bench-precision bench-latency bench-sim bench-egraph bench-mapping
bench: bench-cfloat bench-roofline bench-models bench-latency bench-sim bench-precision

# Issue 8: resnet18 first call vs Inductor (fresh processes, cold caches) with dojo's phases,
# GPT-2 compile-time growth over 2-12 layers, peak memory compiling GPT-2 124M for tile.
bench-latency: develop
	$(PY) benchmarks/latency.py

# Issue 8: simulated run vs eager wall time (resnet18 forward, tiny GPT-2 training step), per
# precision policy (BENCH_PRECISION=fp32,cfloat8; a policy the backend rejects prints n/a).
BENCH_PRECISION ?= fp32,cfloat8
bench-sim: develop
	$(PY) benchmarks/sim.py --precision $(BENCH_PRECISION)

# Per model (tests/python/test_models.py): fallback nodes, compile time, max difference from eager.
bench-models: develop
	$(PY) benchmarks/models.py

# Per precision policy: resnet18 / tiny GPT-2 error vs f32 eager, simulated time, and the
# final loss of 200 GPT-2 training steps relative to fp32's.
bench-precision: develop
	$(PY) benchmarks/precision.py

# Issue 6: per TENSAT benchmark model (BERT layer, ResNeXt-50, NasNet-A, NasRNN, Inception-v3,
# SqueezeNet, VGG-19), the e-graph optimizer's cost/e-graph/time statistics and the simulated
# time on d1 with egraph off vs on, next to TENSAT's speedups; outputs checked against eager.
# BENCH_EGRAPH_MODELS=bert,nasrnn runs a subset.
BENCH_EGRAPH_MODELS ?=
comma := ,
bench-egraph: develop
	$(PY) benchmarks/egraph.py $(subst $(comma), ,$(BENCH_EGRAPH_MODELS))

# Issue 5: resnet50 (batch 32) and GPT-2 124M (batch 8, sequence 512) inference and training
# step on tile and d1 (or the variants that fit): simulated time, roofline efficiency, speedup
# of the default plan over lower-to-d1{plan=naive}, planning time. Graphs are captured once
# into BENCH_MAPPING_GRAPHS (kept); compile + timing-only simulation by graph_bench (release).
BENCH_MAPPING_GRAPHS ?= /tmp/dojo-bench-mapping
bench-mapping: develop
	cargo build --release -p dojo-passes --example graph_bench
	$(PY) benchmarks/mapping.py --graphs $(BENCH_MAPPING_GRAPHS)

# The GEMM roofline sweep on d1 and the scaling table (timing-only simulation).
bench-roofline:
	cargo run --release -p dojo-passes --example roofline_sweep

# std-only benchmark binary (runtime/benches/cfloat.rs), release profile; not a timed test.
bench-cfloat:
	cargo bench -p dojo-runtime --bench cfloat
