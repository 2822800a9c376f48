#!/usr/bin/env bash
# Run the molecule scenario `default` inside a private binfmt_misc sandbox
# (tests/sandbox/nsrun.py): the machine's global binfmt_misc is never touched.
# The window's lease records and the scenario's state go to tmpfs mounts that
# exist only in the sandbox's mount namespace and vanish with it.
#   bash molecule/default/run.sh [test|converge|verify|...]   (default: test)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
python3 -c 'import sys; sys.path.insert(0, "tests"); import ansible_env; ansible_env.collections_path()'
exec python3 tests/sandbox/nsrun.py -- sh -c '
  for dir in /run/nativearm-binfmt /run/nativearm-molecule; do
    mkdir -p "$dir" && mount -t tmpfs -o mode=0700 nativearm-sandbox "$dir"
  done
  exec molecule "$@"' sh "${1:-test}" -s default "${@:2}"
