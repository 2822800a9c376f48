# The two README commands: `make demo` (the main job) and `make test` (every test).
SHELL := /bin/bash
VENV := .venv/bin
PYTEST := $(VENV)/python -m pytest
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup demo test unit integration sanity sanity-matrix lint package changelog molecule-default molecule-arm64 bench bench-arm64 bench-fleet

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

# ansible-test sanity on every ansible-core line meta/runtime.yml claims (2.16 .. 2.19).
sanity-matrix:
	for v in 2.16 2.17 2.18; do bash scripts/sanity.sh $$v || exit; done
	bash scripts/sanity.sh

# Build the collection tarball, check its file list and the example EE's build context.
package:
	bash scripts/check_package.sh

# Fold the pending changelogs/fragments into the release named by galaxy.yml's version and
# regenerate CHANGELOG.rst (the fragments are removed: commit the result). Its "no release_summary"
# warning only means no new fragment carries one: the release already has it.
changelog:
	$(VENV)/antsibull-changelog release --update-existing --reload-plugins

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

# A fleet of 1, 10 and 50 simulated build hosts on this machine (one private binfmt_misc
# instance each): ping floor vs remediate --check / remediate / again / build, forks 10 and 50.
bench-fleet:
	$(VENV)/python bench/fleet_bench.py
