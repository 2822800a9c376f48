#!/usr/bin/env bash
# ansible-test needs the collection under ansible_collections/NAMESPACE/NAME, outside any other git
# work tree (inside this repo it would see the copy as ignored files): copy the tracked and new
# (not ignored) files to a temporary tree, give it its own git index, and run sanity in a venv for
# the Python in use.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
base=$(mktemp -d /tmp/nativearm-sanity.XXXXXX)
trap 'rm -rf "$base"' EXIT
dest=$base/ansible_collections/nativearm/binfmt
mkdir -p "$dest"
git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ "$dest/"
cd "$dest"
git init -q && git add -A && git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity
pyver=$("$repo/.venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$repo/.venv/bin/ansible-test" sanity --venv --python "$pyver" --color no "$@"
