# The two README commands: `make demo` (the main job) and `make test` (every test).
SHELL := /bin/bash
VENV := .venv/bin
PYTEST := $(VENV)/python -m pytest
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup demo test unit integration sanity lint molecule-default molecule-arm64 bench bench-arm64

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	bash scripts/test.sh

unit:
	$(PYTEST) -q tests/unit

integration:
	$(PYTEST) -q tests/integration

sanity:
	bash scripts/sanity.sh

lint:
	$(VENV)/ansible-lint --profile production

molecule-default:
	bash molecule/default/run.sh test

molecule-arm64:
	bash molecule/arm64/run.sh

bench:
	$(VENV)/python bench/binfmt_entry_bench.py
	$(VENV)/python bench/window_bench.py

# Native window vs qemu-arm inside the arm64 fleet (boots it, ~5 min with cached images).
bench-arm64:
	$(VENV)/python bench/arm64_native_vs_qemu.py
