#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
module: binfmt_info
short_description: Everything about binfmt_misc, descriptors, native armhf and windows on a host
version_added: 0.1.0
description:
  - Reports whether binfmt_misc is mounted and enabled, every registered entry parsed, every
    persistent descriptor (binfmt-support files, systemd binfmt.d files) with its owning package
    where dpkg knows it, the host architecture, kernel and page size, the C(abi.*) sysctls, whether
    the kernel runs armhf natively, and the state of native armhf windows (leases, mode, prior
    state, events, and every process holding a lock on the entry, from C(/proc/locks)), and the tier
    (RV(tier)) that decides how armhf programs run here.
  - Whether armhf can run natively is decided by checks that write nothing and never touch an entry,
    in this order - the host architecture (only aarch64, armv7l and armv8l can); on arm64
    C(personality(PER_LINUX32)), which fails with EINVAL when the CPU has no 32-bit EL0; the page
    size (the armhf libc's segments are 4 KiB-aligned, so on a 16K-page kernel no dynamically linked
    armhf program can load); and on Linux 6.7 and later the real probe in a new user namespace with its
    own, empty binfmt_misc instance. On older kernels the probe runs directly only when no enabled
    entry could catch it; otherwise the answer is C(null) with the reason (a window,
    M(nativearm.binfmt.native_armhf_window), finds out by disabling the entry).
  - Read-only, like every C(*_info) module, in any mode (C(changed) is always false). A stale
    window (a prior state recorded but no holder alive, for example after SIGKILL or the OOM
    killer) and unusable window records are reported here, never repaired. They are repaired by
    M(nativearm.binfmt.binfmt_drift) (the C(nativearm.binfmt.binfmt_drift) role) and by the window's
    own open and close.
author:
  - nativearm.binfmt contributors (@nativearm)
options:
  binfmts_dir:
    description: binfmt-support's import directory.
    type: path
    default: /usr/share/binfmts
  binfmt_d_dirs:
    description: systemd binfmt.d directories, highest precedence first.
    type: list
    elements: path
    default: [/etc/binfmt.d, /run/binfmt.d, /usr/local/lib/binfmt.d, /usr/lib/binfmt.d]
  probe:
    description: Run the native armhf probe.
    type: bool
    default: true
  probe_command:
    description:
      - The armhf command that must run natively. Default the armhf loader loading the armhf libc,
        C(/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3 --library-path /usr/arm-linux-gnueabihf/lib
        /usr/arm-linux-gnueabihf/lib/libc.so.6) from gcc-arm-linux-gnueabihf (else the same from
        libc6:armhf), because that is what a dynamically linked armhf build needs. Static helpers such
        as arch-test's and C(ld-linux-armhf.so.3 --help) also succeed on 16K-page kernels, where every
        dynamically linked armhf program fails.
    type: list
    elements: str
  window_entry:
    description: The entry native armhf windows toggle.
    type: str
    default: qemu-arm
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - nativearm.binfmt.window
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: nativearm.binfmt.binfmt_entry
  - module: nativearm.binfmt.native_armhf_window
"""

EXAMPLES = r"""
- name: Gather binfmt facts
  nativearm.binfmt.binfmt_info:
  register: binfmt

- name: Say whether this host runs armhf natively, and which tier provides qemu-arm
  ansible.builtin.debug:
    msg: "native armhf: {{ binfmt.native_armhf.native }} ({{ binfmt.native_armhf.reason }}); tier {{ binfmt.tier.name }}"

- name: Warn about a stale window or unusable window records (binfmt_drift repairs them)
  ansible.builtin.debug:
    msg: "{{ binfmt.window.corrupt.message if binfmt.window.corrupt else 'the native armhf window is stale' }}"
  when: binfmt.window.stale or binfmt.window.corrupt
"""

RETURN = r"""
binfmt_misc:
  description: The binfmt_misc mount.
  returned: always
  type: dict
  sample: {path: /proc/sys/fs/binfmt_misc, mounted: true, enabled: true}
entries:
  description: Every registered entry, by name, as the kernel shows it.
  returned: always
  type: dict
  sample:
    qemu-arm: {name: qemu-arm, enabled: true, interpreter: /usr/bin/qemu-arm-static, flags: F,
               type: magic, offset: 0, magic: 7f454c4601010100000000000000000002002800,
               mask: ffffffffffffff00fffffffffffffffffeffffff, extension: null}
descriptors:
  description:
    - Persistent descriptors. One record per binfmt-support file and per binfmt.d line, with
      C(path), C(format), C(name), C(definition), C(package) (dpkg owner or package line),
      C(effective) and C(error).
  returned: always
  type: list
  elements: dict
host:
  description:
    - Host architecture (C(machine)), kernel C(release), C(page_size), and C(aarch32_el0), whether
      the kernel can run 32-bit EL0 code at all - true or false from C(personality(PER_LINUX32)) on
      ARM hosts (a check that touches no entry, made also with O(probe=false)), null on other
      architectures.
  returned: always
  type: dict
  sample: {machine: aarch64, release: 6.12.57+deb13-arm64, page_size: 4096, aarch32_el0: true}
abi:
  description: The C(abi.*) sysctls present on this kernel, by name (for example C(cp15_barrier)).
  returned: always
  type: dict
  sample: {cp15_barrier: 1, setend: 1, swp: 0}
native_armhf:
  description:
    - Can armhf run natively here. C(native) is true, false, or null when it could not be decided
      without touching an entry. C(reason) says what was found.
    - C(method) names the check that decided - V(architecture), V(personality) (no 32-bit EL0),
      V(page_size) (pages larger than 4 KiB, on a kernel without private binfmt_misc instances, where
      only disabling qemu-arm could show whether the armhf libc loads), V(private_instance) (the probe in a private binfmt_misc instance),
      V(direct) (the probe run as is, on kernels older than 6.7, where no enabled entry would catch
      it); null when nothing decided.
    - C(arch), C(page_size) and C(aarch32_el0) are the inputs; C(probe) is the probe's own result
      (C(command), C(rc), C(output), C(reason)) when it ran, else null.
    - Null when O(probe=false).
  returned: always
  type: dict
  sample: {native: true, method: private_instance, arch: aarch64, page_size: 16384, aarch32_el0: true,
           reason: "the probe ran natively in a private binfmt_misc instance: ... (aarch64, 16 KiB pages, ...)",
           probe: {command: [...], rc: 0, output: "", reason: "the probe ran natively (exit status 0)"}}
tier:
  description:
    - How 32-bit ARM programs run on this host, for O(window_entry) - the detection path that decides
      (after Armbian PR 117), the one definition that the C(nativearm.binfmt.build_host) role acts on and
      that M(nativearm.binfmt.native_armhf_window) and M(nativearm.binfmt.native_armhf_command) report.
    - C(name) is the first that holds of V(packaged_descriptor) (a usable descriptor registers the entry -
      parsed, not masked, not overridden - whether or not the kernel has loaded it), V(registered_entry)
      (the entry is registered and no descriptor defines it), V(native_probe) (nothing registers it and
      C(native_armhf.native) is true), V(qemu_fallback) (nothing registers it and armhf does not run
      natively, or that is not known, for example with O(probe=false)).
    - What exists decides before the probe, so a native-capable host whose qemu-arm comes from a package is
      V(packaged_descriptor); whether armhf runs natively is RV(native_armhf).
    - C(reason) says what was found; C(descriptor) is the path of the descriptor that decided, else null.
  returned: always
  type: dict
  sample: {name: packaged_descriptor, descriptor: /usr/share/binfmts/qemu-arm,
           reason: "a descriptor registers qemu-arm: /usr/share/binfmts/qemu-arm (package qemu-user-static);
             the kernel entry is registered, enabled"}
window:
  description:
    - The native armhf window on O(window_entry). Includes C(lease_count) and C(leases) (id, mode,
      holder pid, owner_pid, expiry, alive), C(mode), C(prior_state), C(stale), C(stale_refusal) (why
      repairing a stale window would drop its records instead of applying its prior, or null),
      C(corrupt) (null, or C(path) and C(message) of unusable records that
      M(nativearm.binfmt.binfmt_drift) repairs), C(events) and C(lock_holders).
    - C(foreign_windows) are the other coordinators' windows on the instance - C(native), root-owned
      shared locks on the entry (an Armbian PR 9769 builder building, or this collection with
      another run_dir or /run), C(emulation), their emulation lease count - and C(unprivileged), lock
      holders that are reported, never obeyed.
    - C(lock_holders) are the processes holding a lock on the entry, from C(/proc/locks), each with
      C(pid), C(uid), C(cmdline), the lock type (C(kind), C(access), C(blocked)) and C(ours) (true for
      a live lease's holder).
    - C(events) are the last 50 window transitions and anomalies, each with time, lease, pid and
      detail, such as V(opened), V(restored), V(probe_failed_rollback), V(holder_gone),
      V(stale_window_restored), V(stale_window_dropped), V(reasserted), V(entry_recreated),
      V(entry_appeared), V(entry_vanished), V(ttl_expired), V(owner_gone), V(opener_gone) and
      V(records_repaired).
      A join or a plain close is not an event.
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils import descriptors, probe
from ansible_collections.nativearm.binfmt.plugins.module_utils._probe_run import native_armhf as probe_native_armhf
from ansible_collections.nativearm.binfmt.plugins.module_utils.tier import tier_fact
from ansible_collections.nativearm.binfmt.plugins.module_utils.window import DEFAULT_RUN_DIR, window_facts

ABI_DIR = "/proc/sys/abi"


def read_abi(abi_dir=ABI_DIR):
    values = {}
    try:
        names = sorted(os.listdir(abi_dir))
    except OSError:
        return values
    for name in names:
        try:
            with open(os.path.join(abi_dir, name)) as f:
                text = f.read().strip()
        except (IOError, OSError):
            continue
        values[name] = int(text) if text.lstrip("-").isdigit() else text
    return values


def native_armhf(path, command, host):
    """The native armhf facts, without writing anything or touching an entry (_probe_run.native_armhf)."""
    return probe_native_armhf(path, command, host)


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            binfmt_misc=dict(type="path", default=bm.DEFAULT_PATH),
            binfmts_dir=dict(type="path", default=descriptors.BINFMTS_DIR),
            binfmt_d_dirs=dict(type="list", elements="path", default=list(descriptors.BINFMT_D_DIRS)),
            probe=dict(type="bool", default=True),
            probe_command=dict(type="list", elements="str"),
            window_entry=dict(type="str", default="qemu-arm"),
            run_dir=dict(type="path", default=DEFAULT_RUN_DIR),
        ),
        supports_check_mode=True,
    )


def run(module):
    p = module.params
    path = p["binfmt_misc"]
    mounted = bm.is_mounted(path)
    entries = bm.read_all_entries(path) if mounted else {}
    host = probe.host_facts()
    native = native_armhf(path, p["probe_command"], host) if p["probe"] else None
    host["aarch32_el0"] = native["aarch32_el0"] if native else probe.aarch32_el0_fact(host["machine"])
    window = window_facts(p["window_entry"], path, p["run_dir"])
    found = descriptors.scan_descriptors(p["binfmts_dir"], p["binfmt_d_dirs"], module.get_bin_path("dpkg-query"))
    module.exit_json(
        changed=False,
        binfmt_misc=dict(path=path, mounted=mounted, enabled=bm.read_status(path) if mounted else None),
        entries=entries,
        descriptors=found,
        host=host,
        abi=read_abi(),
        native_armhf=native,
        tier=tier_fact(p["window_entry"], entries.get(p["window_entry"]), found, native),
        window=window,
    )


def main():
    module = build_module()
    try:
        run(module)
    except Exception as exc:   # never a traceback: the exception's text is the message
        module.fail_json(msg="binfmt_info: %s" % (str(exc) or repr(exc)))


if __name__ == "__main__":
    main()
