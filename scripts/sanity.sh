#!/usr/bin/env bash
# ansible-test sanity for one ansible-core line: `scripts/sanity.sh` uses .venv (2.19),
# `scripts/sanity.sh 2.16` uses .venv-2.16 (made by scripts/setup.sh); further arguments go to
# ansible-test (e.g. --test validate-modules).
# ansible-test needs the collection under ansible_collections/NAMESPACE/NAME, outside any other git
# work tree (inside this repo it would see the copy as ignored files): copy the tracked and new
# (not ignored) files to a temporary tree, give it its own git index, and run sanity in a venv for
# the Python in use. Per-line ignore files: tests/sanity/ignore-2.X.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv=$repo/.venv
if [[ ${1:-} =~ ^2\.[0-9]+$ ]]; then
  venv=$repo/.venv-$1
  shift
  [ -x "$venv/bin/ansible-test" ] || { echo "sanity: $venv missing: run make setup" >&2; exit 2; }
fi
base=$(mktemp -d /tmp/nativearm-sanity.XXXXXX)
trap 'rm -rf "$base"' EXIT
dest=$base/ansible_collections/nativearm/binfmt
mkdir -p "$dest"
git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ "$dest/"
cd "$dest"
git init -q && git add -A && git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity
pyver=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
core=$("$venv/bin/python" -c 'import ansible.release as r; print(".".join(r.__version__.split(".")[:2]))')
skip=()
# 2.16 still checks the Python 2 boilerplate (from __future__ ..., __metaclass__) that 2.17 dropped
# with Python 2 targets; this collection's targets are Python >= 3.10.
[ "$core" != 2.16 ] || skip=(--skip-test future-import-boilerplate --skip-test metaclass-boilerplate)
echo "sanity: $("$venv/bin/ansible" --version | head -1), Python $pyver ${skip[*]}"
"$venv/bin/ansible-test" sanity --venv --python "$pyver" --color no "${skip[@]}" "$@"
