#!/usr/bin/env bash
# What users get: build the collection tarball (ansible-galaxy collection build) and check its
# file list (no development paths; the plugins, roles, playbooks, runtime metadata, licence,
# README and changelog are in), then generate the example execution environment's build context
# (ansible-builder create, no container runtime) the way the README says, from a checkout with
# the tarball at its root, and check that the context installs that tarball.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
work=$(mktemp -d /tmp/nativearm-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "check_package: $*" >&2; exit 1; }

version=$(python -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')
tarball=nativearm-binfmt-$version.tar.gz
ansible-galaxy collection build --output-path "$work" >/dev/null
tar tzf "$work/$tarball" | sed 's#^\./##' | sort > "$work/files"
echo "check_package: $tarball, $(wc -l < "$work/files") entries, $(du -k "$work/$tarball" | cut -f1) KiB"

dev_paths='^(tests|molecule|bench|scripts|\.ci|\.cache|\.ansible|\.venv[^/]*|\.git[^/]*|context|dist)(/|$)|^(Makefile|CONTRIBUTING\.md|requirements-dev[^/]*\.txt)$|\.tar\.gz$|__pycache__|\.pyc$'
if grep -E "$dev_paths" "$work/files"; then
  fail "the tarball ships the development paths above: add them to build_ignore in galaxy.yml"
fi
for want in plugins/modules/ roles/ playbooks/ meta/runtime.yml meta/execution-environment.yml \
    LICENSE README.md CHANGELOG.rst MANIFEST.json FILES.json; do
  grep -qxF "$want" "$work/files" || grep -q "^$want" "$work/files" || fail "the tarball lacks $want"
done
echo "check_package: tarball file list has no development paths, has plugins, roles, playbooks, meta, LICENSE, README.md, CHANGELOG.rst"

# The README's EE steps in a checkout-shaped directory: tarball at the root, examples/ beside it.
mkdir -p "$work/checkout/examples"
cp examples/execution-environment.yml "$work/checkout/examples/"
mv "$work/$tarball" "$work/checkout/"
(cd "$work/checkout" && ansible-builder create -f examples/execution-environment.yml) || fail "ansible-builder create failed"
ctx=$work/checkout/context
[ -f "$ctx/_build/collections/$tarball" ] ||
  fail "the EE context lacks _build/collections/$tarball (examples/execution-environment.yml names another version?)"
python - "$ctx/_build/requirements.yml" "collections/$tarball" <<'PY' || fail "the EE's galaxy requirements do not install collections/$tarball: update examples/execution-environment.yml"
import sys, yaml
reqs = yaml.safe_load(open(sys.argv[1]))
sys.exit(0 if any(c.get("name") == sys.argv[2] and c.get("type") == "file" for c in reqs["collections"]) else 1)
PY
grep -q 'ansible-galaxy collection install .*-r requirements.yml' "$ctx/Containerfile" "$ctx/Dockerfile" 2>/dev/null ||
  fail "the EE build file has no galaxy collection install step"
echo "check_package: EE context holds $tarball and installs it in its galaxy stage"
