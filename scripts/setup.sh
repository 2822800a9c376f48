#!/usr/bin/env bash
# Install everything the tests and the demo need on a fresh Debian 12 / Ubuntu machine (as root).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}

# Plain host packages: none of these registers a binfmt_misc entry.
HOST_PKGS="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross arch-test util-linux rsync git
  qemu-system-arm mmdebstrap e2fsprogs openssh-client zstd python3-venv"
# These register binfmt entries from their postinst: install them inside a private binfmt_misc
# instance so the machine's global one is never changed.
SANDBOXED_PKGS="qemu-user-static binfmt-support"

missing() { for p in "$@"; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || echo "$p"; done; }

need=$(missing $HOST_PKGS)
need_sb=$(missing $SANDBOXED_PKGS)
if [ -n "$need$need_sb" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  [ -z "$need" ] || apt-get install -y -qq --no-install-recommends $need
  [ -z "$need_sb" ] || "$PY" tests/sandbox/nsrun.py -- apt-get install -y -qq --no-install-recommends $need_sb
fi

if [ ! -x .venv/bin/ansible ] || ! cmp -s requirements-dev.txt .venv/.requirements 2>/dev/null; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  cp requirements-dev.txt .venv/.requirements
fi

# The older ansible-core lines that meta/runtime.yml claims (.venv has the newest, 2.19): one small
# venv each, with just ansible-core and pytest, for `ansible-test sanity` and the module
# integration tests on each line (scripts/sanity.sh VERSION, scripts/test.sh).
ANSIBLE_CORE_MATRIX="2.16.19 2.17.14 2.18.19"
pytest_pin=$(grep -E '^pytest==' requirements-dev.txt)
for core in $ANSIBLE_CORE_MATRIX; do
  venv=.venv-${core%.*}
  want="ansible-core==$core $pytest_pin"
  if [ ! -x "$venv/bin/ansible-test" ] || [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]; then
    "$PY" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check $want
    echo "$want" > "$venv/.requirements"
  fi
done

# ansible-test sanity --venv bootstraps pip with get-pip.py from a host that is not reachable here;
# this stand-in, placed where ansible-test caches it, does the same with ensurepip + pip. One copy
# per pip version that the ansible-test lines use (2.16/2.17: pip 23.1.2; 2.18/2.19: pip 24.2).
mkdir -p ~/.ansible/test/cache
cat > ~/.ansible/test/cache/get_pip_24_2.py <<'PY'
import subprocess
import sys

# get-pip.py's own options have no pip equivalent: drop them. ensurepip runs in a child process
# because in-process it sets PIP_CONFIG_FILE=/dev/null, which would hide pip's config from pip.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
PY
cp ~/.ansible/test/cache/get_pip_24_2.py ~/.ansible/test/cache/get_pip_23_1_2.py
# ansible-test runs pip with a scrubbed environment (HOME and PATH only), so a CA bundle given
# through PIP_CERT (TLS-intercepting networks) must also be in the user's pip config to reach PyPI.
if [ -n "${PIP_CERT:-}" ]; then
  "$PY" - "$PIP_CERT" <<'PY'
import configparser, os, sys
path = os.path.expanduser("~/.config/pip/pip.conf")
conf = configparser.RawConfigParser()
conf.read(path)
if not conf.has_section("global"):
    conf.add_section("global")
if conf.get("global", "cert", fallback=None) != sys.argv[1]:
    conf.set("global", "cert", sys.argv[1])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        conf.write(f)
PY
fi
echo "setup: done ($ROOT)"
