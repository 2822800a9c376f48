"""Verify build_host's abi sysctls on `compat` (seed 002): set to hardware mode (2) where the
kernel accepts it, the values found before recorded, a second run changes nothing, an armhf
program that uses a CP15 barrier and SETEND runs natively with no deprecation lines in the
kernel log, and build_host_abi_restore puts the previous values back.

Under TCG the emulated cortex-a57 executes both instructions whatever the sysctls say (the
kernel's emulation never traps there), so what is proven here is the role's part: values,
record, idempotence and undo; the log check would catch emulation on real hardware.
"""
import re

from conftest import compile_armhf_program
from test_arm64_fleet import COMPAT, qemu_arm, remote

ABI = ("cp15_barrier", "setend")
SYSCTL_FILE = "/etc/sysctl.d/60-nativearm-abi.conf"
ABI_SOURCE = r"""
#include <stdio.h>
int main(void) {
    __asm__ volatile("mcr p15, 0, %0, c7, c10, 5" : : "r"(0) : "memory");  /* CP15 DMB */
    __asm__ volatile("setend be\n\tsetend le" : : : "memory");
    puts("abi-ok");
    return 0;
}
"""


def abi_values(host):
    return {name: int(host.file("/proc/sys/abi/" + name).content_string) for name in ABI}


def provision_abi(inventory, **extra):
    run = remote.playbook(inventory, "nativearm.binfmt.provision", limit="compat", tags="abi",
                          extra_vars=extra)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    out = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)  # molecule's environment may force colour
    changed = int(re.search(r"compat\s*:.*changed=(\d+)", out).group(1))
    print("provision abi %s: changed=%d\n%s" % (extra, changed, "\n".join(
        line for line in out.splitlines() if line.startswith(("TASK", "changed", "ok:", "fatal")))))
    return changed


def deprecation_lines(host):
    return [line for line in host.run("dmesg").stdout.splitlines() if "deprecated" in line]


@COMPAT
def test_abi_hardware_mode_recorded_idempotent_native_and_restored(inventory, compat, module):
    before = abi_values(compat)
    assert not compat.file(SYSCTL_FILE).exists
    program = compile_armhf_program(compat, ABI_SOURCE, name="abi", flags="-marm")  # armhf default arch (armv7-a+fp), ARM state
    try:
        assert provision_abi(inventory, build_host_abi_hardware=True) >= 1
        now = abi_values(compat)
        assert now["cp15_barrier"] == 2, now
        assert now["setend"] in (2, before["setend"]), now  # 2 is refused without mixed-endian EL0
        text = compat.file(SYSCTL_FILE).content_string
        for name in ABI:
            assert "# previous abi.%s = %d" % (name, before[name]) in text, text
        assert "abi.cp15_barrier = 2" in text, text
        assert provision_abi(inventory, build_host_abi_hardware=True) == 0  # second run: no change
        assert compat.file(SYSCTL_FILE).content_string == text  # the record is kept, not rewritten

        logged = deprecation_lines(compat)
        result = module("compat", "native_armhf_command", {"argv": [program]})
        assert not result.get("failed") and result["rc"] == 0, result
        assert result["native"] is True and result["stdout"].strip() == "abi-ok", result
        assert deprecation_lines(compat) == logged, "the kernel emulated (and logged) an instruction"
    finally:
        provision_abi(inventory, build_host_abi_restore=True)
    assert abi_values(compat) == before
    assert not compat.file(SYSCTL_FILE).exists
    assert provision_abi(inventory, build_host_abi_restore=True) == 0  # nothing left to undo
    assert qemu_arm(compat) == "enabled"
