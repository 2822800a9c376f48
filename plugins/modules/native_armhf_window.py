#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
module: native_armhf_window
short_description: Open and close a crash-safe native armhf window (qemu-arm disabled for its duration)
version_added: 0.1.0
description:
  - While at least one V(native) lease is open on a host, the O(entry) (C(qemu-arm)) is disabled so the
    kernel runs 32-bit ARM ELF itself (CONFIG_COMPAT on aarch64). When the last lease closes, the entry is
    put back exactly as it was before the first lease (an admin's C(disabled) stays disabled).
  - V(emulation) leases are anchors that need the entry enabled; while one is open no native window opens.
    An emulation lease enables an admin-disabled entry for its duration.
  - Each lease is held by a small detached holder process (own session, stdio on C(/dev/null)) that owns
    the kernel locks, enforces O(ttl) and O(owner_pid), and re-asserts its mode's state within about
    0.1 s when the entry is toggled or re-registered behind its back. The holder is forked from the module
    (no new interpreter is started) and needs no file of the module's temporary payload, so it keeps
    running after those files are deleted. Its command line reads C(nativearm-window-holder ENTRY
    lease=ID ...) (cut to the length of the module's own command line).
  - Concurrent calls (Ansible forks, several builds on one host) are safe; see the notes for the protocol.
  - The first native lease first asks, without writing anything, whether this host can run 32-bit ARM at
    all (architecture; on arm64 personality(PER_LINUX32) and the page size; the probe in a private
    binfmt_misc instance where Linux >= 6.7). Where it cannot (x86_64, no AArch32 EL0, 16K pages), the
    entry is never touched and O(on_unsupported) decides. Only where that check cannot tell does it run
    O(probe) with the entry disabled; if the probe fails the window is rolled back (prior state restored)
    before anything else can see it, then O(on_unsupported) decides.
author:
  - nativearm.binfmt contributors (@nativearm)
options:
  state:
    description:
      - V(open) opens a lease (or returns the lease O(lease_id) if it is already open, unchanged).
      - V(closed) ends the lease O(lease_id); the last lease out restores the prior state.
    type: str
    choices: [open, closed]
    required: true
  lease_id:
    description:
      - Name of the lease. Generated on open when omitted (returned as RV(lease_id)); required to close.
      - Letters, digits, C(_), C(.), C(@), C(-); at most 64 characters.
    type: str
  ttl:
    description:
      - Seconds after which the lease closes itself (and restores the entry if it is the last), even if
        the controller died and no C(always:) ran. Unlimited when omitted.
    type: int
  owner_pid:
    description:
      - The lease closes itself when this process ends (pid and start time are checked, so pid reuse does
        not keep it open). The pid as seen on the managed host. Mutually exclusive with O(owner).
    type: int
  owner:
    description:
      - V(connection) ties the lease to the process on the host that lives as long as Ansible's connection
        to it, so a lease opened in one task and closed in a later one ends with the play even when no
        C(always:) runs (the controller was killed, the connection dropped), without guessing a O(ttl).
      - Over ssh that is the connection's sshd session process (C(sshd), or C(sshd-session) from OpenSSH 9.8);
        with ControlPersist (in Ansible's default C(ssh_args)) it lives as long as the play, then
        ControlPersist seconds more. With the local connection it is the C(ansible-playbook) (or C(ansible))
        process itself.
      - A connection that does not persist between tasks (ssh without ControlPersist) ends the lease with the
        task that opened it. RV(owner) says which process was chosen; opening the same O(lease_id) again in
        a later task in check mode shows whether it is still open and still the same owner (the
        C(native_armhf_build) role checks this). Fails, naming the processes it saw, when neither kind is
        found (for example under C(async), whose job runs detached).
      - Keep a generous O(ttl) as a backstop.
    type: str
    choices: [connection]
extends_documentation_fragment:
  - nativearm.binfmt.window
  - nativearm.binfmt.window.lease
notes:
  - "Invariants, at every instant: I1 while any native lease is open the entry is disabled; I2 while any
    emulation lease is open it is enabled; I3 when the last lease ends (closed, ttl, owner_pid, or its
    holder killed and a later caller recovered) the entry is in its prior state."
  - "Protocol: every transition happens under the binfmt_misc instance's own mutex, an flock(2) on its
    C(register) file, which only root can open, shared by every caller of the instance whatever its
    O(run_dir) or mount namespace (a build container with its own /run). The records (window mode,
    prior state, leases, waiters, events) are replaced atomically in the same critical section as the
    entry write they justify. The first lease records the prior state before it touches the entry."
  - "A lease is live while its holder holds LOCK_EX on its own lease lock file; the kernel drops that lock
    when the holder dies (SIGKILL, OOM). A window whose leases are all dead is stale: the next open,
    close, or M(nativearm.binfmt.binfmt_info) restores the prior state, onto the entry the window
    changed only: when the entry was re-registered since (new inode) or the records are from another
    boot, they are dropped and the entry is left as its registrant set it (event
    C(stale_window_dropped))."
  - "Other coordinators: as in Armbian PR 9769, a LOCK_SH on the entry means a native window user is
    here; only native holders hold it (emulation holders keep a lock on a byte of C(register) instead).
    A native open joins another coordinator's native window (a PR 9769 builder, or this collection with
    another O(run_dir) or /run) with prior state V(enabled); an emulation open waits for it; a last
    close defers the restore while it remains, and whoever is last out restores. Unprivileged processes
    that flock the world-readable entry are reported (RV(lock_holders_ignored)), never obeyed. No flock
    conversion is ever relied on (LOCK_EX to LOCK_SH is not atomic on Linux)."
  - "Fairness: once an opener of the other mode waits, new joiners of the current mode queue behind it,
    so neither mode starves. A window admits, together, every waiter of its mode that was already
    waiting when it opened (phase-fair batches); waiters poll the records without the mutex."
  - "qemu-arm absent: nothing is disabled, the probe still runs and RV(tier) is reported; a registration
    that appears mid-window is put in the window's mode by the holders and, at the end, left as its
    registrant made it."
  - "RV(tier) (after Armbian PR 117) is the one definition that M(nativearm.binfmt.binfmt_info) returns and
    the build_host role acts on, with this lease's RV(native): V(packaged_descriptor) a usable descriptor
    registers the entry, V(registered_entry) the entry is registered without one, V(native_probe) nothing
    registers it and the lease is native, V(qemu_fallback) nothing registers it and the lease is not
    native (qemu must be registered, see the build_host role). What exists decides before the probe, so a
    native lease on a host whose qemu-arm comes from a package is V(packaged_descriptor); RV(native) says
    that it ran natively."
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports what would happen; no holder is started, no record written, the entry untouched.
      The native probe is not run (it needs the entry disabled), so RV(native) may be null.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The entry's state, the window mode and the number of open leases before and after.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: linux
    details: Linux with binfmt_misc; run as root.
"""

EXAMPLES = r"""
- name: Open a native armhf window for one hour at most, tied to this play's lifetime
  nativearm.binfmt.native_armhf_window:
    state: open
    ttl: 3600
  register: window

- name: Build
  ansible.builtin.command: make -C /src ARCH=armhf
  changed_when: true

- name: Close the window (the last lease out restores qemu-arm)
  nativearm.binfmt.native_armhf_window:
    state: closed
    lease_id: "{{ window.lease_id }}"

- name: Open a window that ends with this play's connection at the latest (a day's ttl as a backstop)
  nativearm.binfmt.native_armhf_window:
    state: open
    owner: connection
    ttl: 86400
  register: window

- name: Hold qemu-arm enabled while an emulation-only job runs
  nativearm.binfmt.native_armhf_window:
    state: open
    mode: emulation
    lease_id: qemu-only-job
    wait: 120
"""

RETURN = r"""
lease_id:
  description: The lease (generated when not given).
  returned: always
  type: str
  sample: 3d37f91e36a54bb5
mode:
  description: The effective mode of the lease (V(emulation) after a fallback).
  returned: always
  type: str
  sample: native
native:
  description: True when 32-bit ARM now runs natively under this lease. Null in check mode when unknown.
  returned: always
  type: bool
  sample: true
leases:
  description: Open leases of either mode after the call (a count).
  returned: always
  type: int
  sample: 1
first:
  description: This call opened the window (recorded the prior state), even if the entry was already disabled.
  returned: always
  type: bool
restored:
  description:
    - This close put the entry back in its prior state.
    - False with RV(reason) when the restore was deferred to another coordinator still using the entry
      (a native window of an Armbian PR 9769 builder, or of this collection with another O(run_dir) or
      /run); its last out restores it.
  returned: always
  type: bool
foreign_windows:
  description:
    - Windows of other coordinators of this binfmt_misc instance seen by this open. V(native) lists
      root-owned processes holding a shared lock on the entry that are not this collection's holders
      of this O(run_dir) (pid, uid, cmdline); V(emulation) counts emulation leases of other run dirs or
      mount namespaces. A native open joins a foreign native window (prior state V(enabled)).
  returned: when state is open
  type: dict
lock_holders_ignored:
  description:
    - Unprivileged processes holding locks on the entry (pid, uid, cmdline, access). They are reported
      and never obeyed (they cannot block a window or keep the entry disabled); a warning names them too.
  returned: when there are some, on an open, and on a close that put the entry back despite them
  type: list
  elements: dict
prior_state:
  description: The entry's state before the window (V(enabled), V(disabled), V(absent)); null when no window.
  returned: always
  type: str
  sample: enabled
tier:
  description:
    - Which detection path decides (V(packaged_descriptor), V(registered_entry), V(native_probe), V(qemu_fallback)),
      as RV(nativearm.binfmt.binfmt_info#module:tier.name) defines it, with this lease's RV(native) as the native answer
      (see the notes). Whether the lease runs natively is RV(native).
  returned: when state is open
  type: str
  sample: packaged_descriptor
reason:
  description:
    - Why the lease is not native (the capability check, a probe failure, emulation leases held past
      O(wait)), or why a close deferred the restore; null otherwise.
  returned: always
  type: str
holder_pid:
  description: Pid of the detached holder process of the lease.
  returned: always
  type: int
expires:
  description: Epoch time at which the lease closes itself (O(ttl)); null without a ttl.
  returned: always
  type: float
probe:
  description: The probe result {native, method, command, rc, output, reason} when this call ran it.
  returned: when the probe ran
  type: dict
owner:
  description: With O(owner=connection), the process the lease is tied to {pid, start, kind (V(ssh) or
    V(local)), cmdline}.
  returned: when O(owner) is given
  type: dict
  sample: {"pid": 2311, "start": 183211, "kind": "ssh", "cmdline": "sshd-session: admin@notty"}
entry_present:
  description: Whether the entry is registered after the call.
  returned: always
  type: bool
entry_enabled:
  description: The entry's enabled state after the call (null when absent).
  returned: always
  type: bool
"""
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nativearm.binfmt.plugins.module_utils import window

# probe and descriptors are imported where they are needed: a close needs
# neither, and AnsiballZ payloads carry no bytecode (every import compiles).


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", required=True, choices=["open", "closed"]),
            mode=dict(type="str", default="native", choices=list(window.MODES)),
            entry=dict(type="str", default=window.DEFAULT_ENTRY),
            lease_id=dict(type="str"),
            ttl=dict(type="int"),
            owner_pid=dict(type="int"),
            owner=dict(type="str", choices=["connection"]),
            wait=dict(type="int", default=30),
            on_unsupported=dict(type="str", default="emulate", choices=["emulate", "fail"]),
            probe=dict(type="raw"),
            binfmt_misc=dict(type="path", default=window.DEFAULT_BINFMT_MISC),
            run_dir=dict(type="path", default=window.DEFAULT_RUN_DIR),
        ),
        required_if=[("state", "closed", ["lease_id"])],
        mutually_exclusive=[("owner", "owner_pid")],
        supports_check_mode=True,
    )


def run(module):
    p = module.params
    if p["wait"] < 0:
        raise window.WindowError("wait: must be 0 or more seconds, got %d" % p["wait"])
    win = window.Window(p["entry"], p["binfmt_misc"], p["run_dir"])
    if p["state"] == "closed":
        return win.close(p["lease_id"], wait=p["wait"], check_mode=module.check_mode)
    from ansible_collections.nativearm.binfmt.plugins.module_utils.probe import probe_option
    try:
        argv = probe_option(p["probe"])     # None: probe.select_probe chooses (the one probe selection)
    except ValueError as exc:
        raise window.WindowError(str(exc))
    owner, owner_pid = None, p["owner_pid"]
    if p["owner"] == "connection":
        from ansible_collections.nativearm.binfmt.plugins.module_utils._owner import OwnerError, find_connection_owner
        try:
            owner = find_connection_owner()
        except OwnerError as exc:
            raise window.WindowError(exc.message)
        owner_pid = owner["pid"]

    def probe():
        from ansible_collections.nativearm.binfmt.plugins.module_utils._probe_run import direct_probe
        return direct_probe(argv, binfmt_misc=p["binfmt_misc"])

    result = win.open(mode=p["mode"], lease_id=p["lease_id"], ttl=p["ttl"], owner_pid=owner_pid,
                      wait=p["wait"], on_unsupported=p["on_unsupported"], probe=probe,
                      check_mode=module.check_mode, capability=lambda: window.host_capability(argv))
    from ansible_collections.nativearm.binfmt.plugins.module_utils.descriptors import find_descriptor
    from ansible_collections.nativearm.binfmt.plugins.module_utils.tier import lease_tier
    result["tier"] = lease_tier(result, p["entry"], find_descriptor(p["entry"], dpkg_query=None))
    if owner is not None:
        result["owner"] = owner
    return result


def main():
    module = build_module()
    try:
        result = run(module)
    except window.WindowError as exc:
        module.fail_json(msg=exc.message, lock_holders=exc.holders)
    except Exception as exc:   # never a traceback: the exception's text is the message
        module.fail_json(msg="native_armhf_window: %s" % (str(exc) or repr(exc)))
    before, after = result.pop("before", None), result.pop("after", None)
    warning = result.pop("warning", None)
    if warning:
        module.warn(warning)
    if module._diff and result["changed"]:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
