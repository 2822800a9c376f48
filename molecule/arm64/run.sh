#!/usr/bin/env bash
# Run the molecule scenario `arm64` phase by phase, printing each phase's time.
# The fleet is destroyed (every guest stopped by its pid) also when a phase fails.
#   bash molecule/arm64/run.sh            create, prepare, converge, verify, destroy
#   KEEP=1 bash molecule/arm64/run.sh     leave the guests running (then: molecule destroy -s arm64)
set -uo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
python3 -c 'import sys; sys.path.insert(0, "tests"); import ansible_env; ansible_env.collections_path()'

declare -a REPORT=()
phase() {
    local name=$1 start rc
    shift
    start=$(date +%s)
    echo "[arm64] phase $name: start $(date -u +%H:%M:%S)"
    "$@"
    rc=$?
    REPORT+=("$(printf '%-10s %5d s  rc %d' "$name" $(( $(date +%s) - start )) "$rc")")
    echo "[arm64] phase $name: $(( $(date +%s) - start )) s (rc $rc)"
    return "$rc"
}
summary() {
    echo "[arm64] ---- per-phase times (3 guests under qemu-system-aarch64 TCG) ----"
    printf '[arm64] %s\n' "${REPORT[@]}"
    echo "[arm64] total $(( $(date +%s) - T0 )) s"
}
cleanup() {
    local rc=$?
    if [ "${KEEP:-0}" != 1 ]; then
        phase destroy molecule destroy -s arm64 || rc=1
    fi
    summary
    exit "$rc"
}
T0=$(date +%s)
trap cleanup EXIT
phase create molecule create -s arm64 || exit 1
phase prepare molecule prepare --force -s arm64 || exit 1
phase converge molecule converge -s arm64 || exit 1
phase verify molecule verify -s arm64 || exit 1
