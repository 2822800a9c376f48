#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
module: native_armhf_command
short_description: Run one command inside a native armhf window, in one task
version_added: 0.1.0
description:
  - Opens a native armhf window lease (see M(nativearm.binfmt.native_armhf_window)), runs one command, and
    closes the lease however the command ends, all in one module call (one round trip to the host).
  - The lease is owned by this module's own process, so it ends with it. No C(ttl)
    has to guess how long a build takes. If the module is killed (even with C(SIGKILL)), the lease's holder
    sees its owner gone and closes the lease, restoring C(qemu-arm) when it was the last one.
  - In V(native) mode the command runs under the 32-bit personality (C(PER_LINUX32), as the C(linux32) command
    sets it), so C(uname -m) says C(armv8l) to armhf build systems (config.guess, CMake, kernel and U-Boot
    makefiles) instead of C(aarch64). Under qemu-arm it says C(armv7l) anyway.
  - When no native window can be had (the probe fails, or emulation leases hold the entry past O(wait)),
    O(on_unsupported=emulate) runs the command under an emulation lease and says why in RV(reason).
  - Like M(ansible.builtin.command), the command runs without a shell and a non-zero exit status fails the
    task with its RV(rc), RV(stdout) and RV(stderr).
author:
  - nativearm.binfmt contributors (@nativearm)
options:
  argv:
    description:
      - The command as a list (program first), run without a shell. Exactly one of O(argv) and O(cmd).
    type: list
    elements: str
  cmd:
    description:
      - The command as a string, split into words like a shell would (quotes are honoured; no variables,
        globs, pipes or redirections, it is never run by a shell). Use O(argv) with C([/bin/sh, -c, ...])
        when you need a shell.
    type: str
  chdir:
    description:
      - Absolute path of an existing directory to run the command in.
    type: path
  stdin:
    description:
      - Text to feed to the command's standard input (otherwise it reads C(/dev/null)).
    type: str
  stdin_add_newline:
    description:
      - Add a newline to O(stdin) when it does not end with one.
    type: bool
    default: true
  environment:
    description:
      - Variables added to the command's environment (a null value removes one). The task keyword
        C(environment) works too.
    type: dict
    default: {}
  strip_empty_ends:
    description:
      - Strip trailing newlines from RV(stdout) and RV(stderr), as M(ansible.builtin.command) does.
    type: bool
    default: true
  linux32:
    description:
      - In a V(native) window, run the command under the 32-bit personality (C(PER_LINUX32)), so
        C(uname -m) says C(armv8l), as an armhf machine would. It is inherited by every process the command
        starts. V(false) leaves the personality as it is (C(uname -m) says C(aarch64)).
      - No effect under emulation (qemu-arm reports C(armv7l) by itself).
    type: bool
    default: true
extends_documentation_fragment:
  - nativearm.binfmt.window
  - nativearm.binfmt.window.lease
notes:
  - O(mode), O(entry), O(wait), O(on_unsupported) and O(probe) are those of
    M(nativearm.binfmt.native_armhf_window), for the lease the command runs under. O(wait) bounds only the
    wait for the window; the command's own run time is not limited (use C(async) for that).
  - The command is a child of the module. Signals the module gets (C(SIGTERM), C(SIGINT), C(SIGHUP)) are
    passed on to it and the module waits for it, then closes the lease. If the module is killed with
    C(SIGKILL), its direct child is killed too (C(PR_SET_PDEATHSIG)) and the lease's holder closes the lease;
    processes the command started in the background may outlive it, as with any killed command.
  - With C(async), the job's timeout kills the module and its command (same process group); the lease
    closes with them. C(poll) any value.
  - If the window cannot be opened the task fails with C(the window could not be opened) and the reason,
    and the command is not run (no RV(rc)).
  - Builds that hand work to daemons outside the command (C(dockerd), C(buildkitd)) are covered too, since the
    window is host-wide. Keep those daemons' own armhf processes in mind when choosing V(native).
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: partial
    details: In check mode the arguments are checked, no window is opened and the command is not run; the
      task returns C(changed=false) and C(skipped=true), as M(ansible.builtin.command) does.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  async:
    description: Supports being used with the C(async) keyword.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: linux
    details: Linux with binfmt_misc; run as root (C(become)).
seealso:
  - module: nativearm.binfmt.native_armhf_window
  - module: nativearm.binfmt.binfmt_namespace_command
  - module: ansible.builtin.command
"""

EXAMPLES = r"""
- name: Build armhf packages natively where the kernel can, emulated elsewhere
  nativearm.binfmt.native_armhf_command:
    argv: [dpkg-buildpackage, -aarmhf, -b, -uc, -us]
    chdir: /srv/src/hello
  register: build

- name: Say how it ran
  ansible.builtin.debug:
    msg: "{{ 'native' if build.native else 'emulated' }}: {{ build.reason }}"

- name: A build longer than the connection timeout
  nativearm.binfmt.native_armhf_command:
    argv: [make, -j8, ARCH=arm]
    chdir: /srv/src/u-boot
    wait: 600
  async: 14400
  poll: 30

- name: Only where it runs natively, and with the real 64-bit machine name
  nativearm.binfmt.native_armhf_command:
    cmd: ./configure --build=arm-linux-gnueabihf
    chdir: /srv/src/tool
    on_unsupported: fail
    linux32: false
"""

RETURN = r"""
cmd:
  description: The argv that was run (or would have been, in check mode).
  returned: always
  type: list
  elements: str
  sample: [make, -j8]
rc:
  description: The command's exit status (negative, the signal that killed it; 127 not found, 126 not
    executable). Absent when the command did not run (window not opened, check mode).
  returned: when the command ran or could not be started
  type: int
  sample: 0
stdout:
  description: The command's standard output.
  returned: when the command ran
  type: str
stdout_lines:
  description: RV(stdout) split into lines.
  returned: when the command ran
  type: list
  elements: str
stderr:
  description: The command's standard error.
  returned: when the command ran
  type: str
stderr_lines:
  description: RV(stderr) split into lines.
  returned: when the command ran
  type: list
  elements: str
native:
  description: True when the command ran with the entry disabled and 32-bit ARM ran natively.
  returned: when a window was opened
  type: bool
  sample: true
mode:
  description: The effective mode of the lease (V(emulation) after a fallback).
  returned: when a window was opened
  type: str
  sample: native
reason:
  description: Why the command ran natively or emulated.
  returned: when a window was opened
  type: str
  sample: "native window: qemu-arm was disabled while the command ran; the probe ran natively (exit status 0)"
tier:
  description: Which detection path decides (V(packaged_descriptor), V(registered_entry), V(native_probe),
    V(qemu_fallback)), as M(nativearm.binfmt.native_armhf_window) reports it (the definition of
    RV(nativearm.binfmt.binfmt_info#module:tier.name), with this lease's RV(native)). Whether the command
    ran natively is RV(native).
  returned: when a window was opened
  type: str
  sample: native_probe
restored:
  description: Closing the lease put the entry back in its prior state (it was the last lease).
  returned: when a window was opened
  type: bool
linux32:
  description: The command ran under the 32-bit personality.
  returned: when the command ran
  type: bool
lease_id:
  description: The lease the command ran under (closed by the time the task returns).
  returned: when a window was opened
  type: str
prior_state:
  description: The entry's state before the window (V(enabled), V(disabled), V(absent)).
  returned: when a window was opened
  type: str
duration:
  description: Seconds the command ran (the window's open and close not included).
  returned: when the command ran
  type: float
  sample: 12.5
start:
  description: When the command started (epoch seconds).
  returned: when the command ran
  type: float
end:
  description: When the command ended (epoch seconds).
  returned: when the command ran
  type: float
lock_holders:
  description: Processes holding locks on the entry, when the window could not be opened because of them.
  returned: on failure to open the window
  type: list
  elements: dict
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nativearm.binfmt.plugins.module_utils import window
from ansible_collections.nativearm.binfmt.plugins.module_utils import _command
from ansible_collections.nativearm.binfmt.plugins.module_utils._command import CommandError
from ansible_collections.nativearm.binfmt.plugins.module_utils.descriptors import find_descriptor
from ansible_collections.nativearm.binfmt.plugins.module_utils.tier import lease_tier


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            argv=dict(type="list", elements="str"),
            cmd=dict(type="str"),
            chdir=dict(type="path"),
            stdin=dict(type="str"),
            stdin_add_newline=dict(type="bool", default=True),
            environment=dict(type="dict", default={}),
            strip_empty_ends=dict(type="bool", default=True),
            linux32=dict(type="bool", default=True),
            mode=dict(type="str", default="native", choices=list(window.MODES)),
            entry=dict(type="str", default=window.DEFAULT_ENTRY),
            wait=dict(type="int", default=30),
            on_unsupported=dict(type="str", default="emulate", choices=["emulate", "fail"]),
            probe=dict(type="raw"),
            binfmt_misc=dict(type="path", default=window.DEFAULT_BINFMT_MISC),
            run_dir=dict(type="path", default=window.DEFAULT_RUN_DIR),
        ),
        mutually_exclusive=[("argv", "cmd")],
        required_one_of=[("argv", "cmd")],
        supports_check_mode=True,
    )


def open_lease(win, p):
    """Open a lease owned by this process; CommandError (no rc) when it cannot be had."""
    from ansible_collections.nativearm.binfmt.plugins.module_utils.probe import probe_option
    try:
        custom = probe_option(p["probe"])   # None: probe.select_probe chooses
    except ValueError as exc:
        raise CommandError(str(exc))

    def probe():
        from ansible_collections.nativearm.binfmt.plugins.module_utils._probe_run import direct_probe
        return direct_probe(custom, binfmt_misc=p["binfmt_misc"])

    try:
        return win.open(mode=p["mode"], owner_pid=os.getpid(), wait=p["wait"],
                        on_unsupported=p["on_unsupported"], probe=probe,
                        capability=lambda: window.host_capability(custom))
    except window.WindowError as exc:
        raise CommandError("the window could not be opened: %s" % exc.message, lock_holders=exc.holders)


def run(module):
    p = module.params
    argv = _command.command_argv(p["argv"], p["cmd"])
    chdir = _command.check_chdir(p["chdir"])
    env = _command.command_environment(os.environ, p["environment"])
    if p["wait"] < 0:
        raise CommandError("wait: must be 0 or more seconds, got %d" % p["wait"])
    try:
        win = window.Window(p["entry"], p["binfmt_misc"], p["run_dir"])
    except window.WindowError as exc:
        raise CommandError("the window could not be opened: %s" % exc.message)
    if module.check_mode:
        return {"changed": False, "skipped": True, "cmd": argv,
                "msg": "check mode: no window was opened and the command was not run"}

    lease = open_lease(win, p)
    if lease.get("warning"):        # e.g. unprivileged lock holders on the entry, not obeyed
        module.warn(lease["warning"])
    result = {"cmd": argv, "lease_id": lease["lease_id"], "mode": lease["mode"], "native": bool(lease["native"]),
              "reason": _command.lease_reason(lease, p["entry"]), "prior_state": lease.get("prior_state"),
              "restored": False}
    try:
        result["tier"] = lease_tier(lease, p["entry"], find_descriptor(p["entry"], dpkg_query=None))
        linux32 = bool(p["linux32"] and lease["mode"] == "native")
        try:
            outcome = _command.run(argv, chdir=chdir, env=env, linux32=linux32,
                                   stdin=_command.stdin_bytes(p["stdin"], p["stdin_add_newline"]),
                                   strip_empty_ends=p["strip_empty_ends"])
        except OSError as exc:
            rc, msg = _command.start_failure(argv, exc, result["native"])
            result.update(rc=rc, stdout="", stderr="", msg=msg, failed=True, changed=False)
        except Exception as exc:        # subprocess's report of a failed preexec_fn
            result.update(rc=126, stdout="", stderr="", failed=True, changed=False,
                          msg="the command could not be started: setting up its process failed (%s%s)"
                              % (exc, "; set linux32: false to run it without the 32-bit personality"
                                 if linux32 else ""))
        else:
            result.update(outcome, changed=True, linux32=linux32)
            signals = result.pop("signals")
            if signals:
                module.warn("the module got signal(s) %s while the command ran and passed them on to it"
                            % ", ".join(str(s) for s in signals))
    finally:
        result["restored"] = close_lease(module, win, lease["lease_id"], p["wait"])
    result["stdout_lines"] = result.get("stdout", "").splitlines()
    result["stderr_lines"] = result.get("stderr", "").splitlines()
    if not result.get("failed") and result["rc"] != 0:
        result.update(failed=True, msg="non-zero return code")
    return result


def close_lease(module, win, lease_id, wait):
    """Close the lease; True when that restored the entry. A close that fails is
    a warning: the lease's holder still ends it when this module's process ends."""
    try:
        closed = win.close(lease_id, wait=max(wait, 30))
    except window.WindowError as exc:
        module.warn("closing lease %s failed (%s); its holder ends it when this module exits"
                    % (lease_id, exc.message))
        return False
    if closed.get("warning"):
        module.warn(closed["warning"])
    return bool(closed.get("restored"))


def main():
    module = build_module()
    try:
        result = run(module)
    except CommandError as exc:
        module.fail_json(msg=exc.message, **exc.result)
    except Exception as exc:
        module.fail_json(msg="native_armhf_command failed unexpectedly: %s" % exc, exception=traceback.format_exc())
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
