"""Fixtures for the arm64 fleet's verify: testinfra hosts over ssh, and module/playbook runs.

Molecule runs these with its inventory (MOLECULE_INVENTORY_FILE); run by hand
against a fleet started with fleet.py, point ARM64_INVENTORY at its inventory.yml.
"""
import os
import sys

import pytest
import testinfra

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fleet"))

import remote  # noqa: E402

WORK = "/var/tmp/arm64-verify"
# A dynamically linked armhf program that finds its loader and libc from the
# cross toolchain's sysroot (no armhf multiarch on the guests), sleeps argv[1]
# seconds, then prints a marker.
ARMHF_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 1) sleep(atoi(argv[1]));
    puts("armhf-ok");
    return 0;
}
"""
SYSROOT_LIB = "/usr/arm-linux-gnueabihf/lib"
LOADER = SYSROOT_LIB + "/ld-linux-armhf.so.3"


@pytest.fixture(scope="session")
def inventory():
    path = os.environ.get("ARM64_INVENTORY") or os.environ.get("MOLECULE_INVENTORY_FILE")
    if not path:
        raise RuntimeError("no inventory: run through molecule or set ARM64_INVENTORY")
    return path


def _host(inventory, name):
    return testinfra.get_host("ansible://%s" % name, ansible_inventory=inventory)


@pytest.fixture(scope="session")
def compat(inventory):
    return _host(inventory, "compat")


@pytest.fixture(scope="session")
def noaarch32(inventory):
    return _host(inventory, "noaarch32")


@pytest.fixture(scope="session")
def kernel16k(inventory):
    return _host(inventory, "kernel16k")


@pytest.fixture(scope="session")
def hosts(inventory):
    """Every guest by name; only the guest a test is about is ever contacted."""
    return {name: _host(inventory, name) for name in ("compat", "noaarch32", "kernel16k")}


@pytest.fixture(scope="session")
def module(inventory):
    """module(host, name, args, check=False) -> result dict of one real module run."""
    def run(host, name, args, check=False):
        return remote.module(inventory, host, name, args, check=check)
    return run


def compile_armhf_program(host, source=ARMHF_SOURCE, name="t", flags=""):
    """Compile C `source` on `host` with the cross toolchain provision installed; its path."""
    host.run_expect([0], "mkdir -p %s" % WORK)
    cmd = ("cat > {w}/{n}.c <<'EOF'\n{src}\nEOF\n"
           "arm-linux-gnueabihf-gcc -O2 {f} -o {w}/{n} {w}/{n}.c "
           "-Wl,--dynamic-linker={loader} -Wl,-rpath={lib}").format(
               w=WORK, n=name, f=flags, src=source, loader=LOADER, lib=SYSROOT_LIB)
    host.run_expect([0], cmd)
    return "%s/%s" % (WORK, name)


# One fixture per guest: verify runs each guest's tests in its own xdist worker
# (group = guest name), so a fixture must not touch the other guest.
@pytest.fixture(scope="session")
def compat_program(compat):
    """The armhf test program, compiled on compat with the toolchain provision installed."""
    return compile_armhf_program(compat)


@pytest.fixture(scope="session")
def noaarch32_program(noaarch32):
    """The armhf test program, compiled on noaarch32."""
    return compile_armhf_program(noaarch32)


@pytest.fixture(scope="session")
def kernel16k_program(kernel16k):
    """The armhf test program, compiled on kernel16k."""
    return compile_armhf_program(kernel16k)
