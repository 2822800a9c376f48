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
def hosts(compat, noaarch32):
    return {"compat": compat, "noaarch32": noaarch32}


@pytest.fixture(scope="session")
def module(inventory):
    """module(host, name, args, check=False) -> result dict of one real module run."""
    def run(host, name, args, check=False):
        return remote.module(inventory, host, name, args, check=check)
    return run


def _compile_armhf_program(host):
    host.run_expect([0], "mkdir -p %s" % WORK)
    cmd = ("cat > {w}/t.c <<'EOF'\n{src}\nEOF\n"
           "arm-linux-gnueabihf-gcc -O2 -o {w}/t {w}/t.c "
           "-Wl,--dynamic-linker={loader} -Wl,-rpath={lib}").format(
               w=WORK, src=ARMHF_SOURCE, loader=LOADER, lib=SYSROOT_LIB)
    host.run_expect([0], cmd)
    return WORK + "/t"


# One fixture per guest: verify runs each guest's tests in its own xdist worker
# (group = guest name), so a fixture must not touch the other guest.
@pytest.fixture(scope="session")
def compat_program(compat):
    """The armhf test program, compiled on compat with the toolchain provision installed."""
    return _compile_armhf_program(compat)


@pytest.fixture(scope="session")
def noaarch32_program(noaarch32):
    """The armhf test program, compiled on noaarch32."""
    return _compile_armhf_program(noaarch32)
