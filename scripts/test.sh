#!/usr/bin/env bash
# Every test, in order: unit, integration (real kernel, private binfmt_misc instances), stress
# (reduced size), ansible-test sanity (ansible-core 2.19), ansible-lint (production profile), the
# collection tarball and the example execution environment's build context, molecule scenarios
# (default: localhost in a private binfmt_misc; arm64: a two-host arm64 fleet, images cached
# in /var/cache/nativearm-arm64 and built on the first run), then the older ansible-core lines
# (module integration tests on 2.16, sanity on 2.16, 2.17, 2.18).
# Each stage's time is printed; the run stops at the first failing stage.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
stage() {
  local name=$1; shift
  local t0=$SECONDS
  echo "=== stage: $name"
  "$@"
  echo "=== stage: $name passed in $((SECONDS - t0)) s"
}
stage "unit + integration + stress (reduced) tests" \
  python -m pytest -q -p no:cacheprovider tests/unit tests/integration tests/stress
stage "ansible-test sanity (ansible-core 2.19)" bash scripts/sanity.sh
stage "ansible-lint (production profile)" ansible-lint --profile production
stage "collection tarball file list + example EE build context (ansible-builder create)" bash scripts/check_package.sh
stage "molecule scenario default (localhost in a private binfmt_misc)" bash molecule/default/run.sh test
stage "molecule scenario arm64 (three Debian arm64 guests under qemu-system-aarch64)" bash molecule/arm64/run.sh
# The older ansible-core lines that meta/runtime.yml claims: sanity on each, and the module
# integration tests on the oldest (the newest, 2.19 in .venv, ran all of them above;
# tests/ansible_env.py takes ansible from the venv of the Python that runs pytest).
matrix_t0=$SECONDS
stage "module integration tests on ansible-core 2.16" \
  .venv-2.16/bin/python -m pytest -q -p no:cacheprovider \
  tests/integration/test_binfmt_entry.py tests/integration/test_window_module.py tests/integration/test_binfmt_info.py
for core in 2.16 2.17 2.18; do
  stage "ansible-test sanity (ansible-core $core)" bash scripts/sanity.sh "$core"
done
echo "=== ansible-core 2.16-2.18 matrix: $((SECONDS - matrix_t0)) s in all"
echo "=== all stages passed in $SECONDS s"
