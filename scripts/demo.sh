#!/usr/bin/env bash
# The main job on this machine: provision localhost as a build host (nativearm.binfmt.provision),
# then run the demo armhf build inside a native armhf window (nativearm.binfmt.build), which
# prints whether the armhf program ran native or emulated, and why.
#   DEMO_SANDBOX=1  run both inside a private binfmt_misc instance instead of the machine's own
# It runs as root on this machine, so it passes no -b: the playbooks take privilege escalation
# from the user (-b, AWX), and -b's default method, sudo, is not installed on a minimal Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH
ANSIBLE_COLLECTIONS_PATH=$(python3 -c 'import sys; sys.path.insert(0, "tests"); import ansible_env; print(ansible_env.collections_path())')
play() {
  ansible-playbook -i localhost, -c local -e "ansible_python_interpreter=$PWD/.venv/bin/python" "$@"
}
if [ "${DEMO_SANDBOX:-0}" = 1 ]; then
  # Lease records and the recorded desired state go to tmpfs mounts that exist only inside
  # the sandbox's mount namespace.
  exec python3 tests/sandbox/nsrun.py -- sh -c '
    mkdir -p /run/nativearm-binfmt && mount -t tmpfs -o mode=0700 nativearm-demo /run/nativearm-binfmt
    mkdir -p /var/lib/nativearm-binfmt && mount -t tmpfs -o mode=0755 nativearm-demo /var/lib/nativearm-binfmt
    for pb in nativearm.binfmt.provision nativearm.binfmt.build; do
      ansible-playbook -i localhost, -c local -e "ansible_python_interpreter=$0" "$pb" || exit
    done' "$PWD/.venv/bin/python"
fi
play nativearm.binfmt.provision
play nativearm.binfmt.build
