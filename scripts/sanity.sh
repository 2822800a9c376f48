#!/usr/bin/env bash
# ansible-test needs the collection under ansible_collections/NAMESPACE/NAME: copy the tracked
# (and new, not ignored) files there and run sanity in a venv for the Python in use.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/sanity/ansible_collections/nativearm/binfmt
rm -rf .cache/sanity && mkdir -p "$dest"
git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ "$dest/"
cd "$dest"
pyver=$(../../../../../.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
exec ../../../../../.venv/bin/ansible-test sanity --venv --python "$pyver" --color no "$@"
