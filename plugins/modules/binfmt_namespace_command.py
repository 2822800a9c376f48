#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: binfmt_namespace_command
short_description: Run a command in its own user and mount namespace with a private binfmt_misc
version_added: "0.1.0"
description:
  - Runs one command in a new user + mount namespace whose uid and gid maps are the full identity
    range, with a fresh private binfmt_misc instance mounted over O(binfmt_misc) (Linux 6.7 and later
    give every user namespace its own instance).
  - In O(mode=native) the private instance stays empty, so the kernel runs 32-bit ARM binaries
    itself (CONFIG_COMPAT on arm64) or refuses them. In O(mode=emulation) only C(qemu-arm) is
    registered there. O(mode=auto) runs O(probe) natively first and registers C(qemu-arm) only when
    it fails.
  - The host's binfmt_misc is never touched and no lock is taken, so concurrent builds cannot
    interfere with each other or with the host-wide native armhf window.
  - What the command loses in the namespace, compared to a host-wide window -
    it cannot create device nodes (C(mknod) of character or block devices fails), cannot load
    kernel modules or use loop devices; daemons that already run on the host (C(dockerd),
    C(buildkitd), C(systemd) services) stay outside the namespace and keep using the host's
    binfmt_misc, so a build that hands work to them is not covered (use the window for those).
    Files it writes keep their real owners (identity map), the network is the host's.
  - Refused with a clear reason on kernels older than 6.7 and when not running as root.
  - Like M(ansible.builtin.command), the command is not run in check mode.
author:
  - nativearm.binfmt contributors (@nativearm)
options:
  argv:
    description:
      - The command as a list; run without a shell. Mutually exclusive with O(cmd).
    type: list
    elements: str
  cmd:
    description:
      - The command as a string, split like a shell would split words (no expansion, no pipes)
        unless O(shell=true), then run by C(/bin/sh -c).
    type: str
  shell:
    description:
      - Run O(cmd) through C(/bin/sh -c). Only when you need shell syntax.
    type: bool
    default: false
  chdir:
    description:
      - Absolute directory to run the command in; must exist.
    type: path
  environment:
    description:
      - Extra environment variables for the command (added to the module's own environment).
    type: dict
    default: {}
  mode:
    description:
      - How 32-bit ARM binaries run inside the namespace; see the description.
    type: str
    choices: [auto, native, emulation]
    default: auto
  probe:
    description:
      - Command that must succeed natively for O(mode=auto) to choose native. Defaults to the armhf
        loader loading the armhf libc, C(/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3 --library-path
        /usr/arm-linux-gnueabihf/lib /usr/arm-linux-gnueabihf/lib/libc.so.6) from gcc-arm-linux-gnueabihf,
        the same probe every module of the collection uses. It proves that a dynamically linked armhf
        program loads; static helpers such as arch-test's also run on 16K-page kernels, where dynamic
        ones fail with "ELF load command address/offset not page-aligned".
    type: list
    elements: str
  interpreter:
    description:
      - qemu-arm interpreter registered for emulation. Default the first existing of
        C(/usr/bin/qemu-arm-static), C(/usr/libexec/qemu-binfmt/arm-binfmt-P), C(/usr/bin/qemu-arm).
    type: path
  flags:
    description:
      - Kernel flags of the private qemu-arm registration (C(F) opens the interpreter at
        registration, so it works from any mount namespace).
      - C(O) hands the interpreter an open file descriptor of the binary (binaries that may be run but
        not read). C(C) also runs it with a setuid binary's credentials; the namespace's identity map
        makes those the host's real ones, so C(C) is refused unless O(allow_credentials=true).
    type: str
    default: F
  allow_credentials:
    description:
      - Accept the C(C) flag in O(flags) (privilege escalation risk, as for M(nativearm.binfmt.binfmt_entry)).
    type: bool
    default: false
  stdin:
    description:
      - Text fed to the command's standard input (small inputs).
    type: str
  binfmt_misc:
    description:
      - Where the private binfmt_misc is mounted inside the namespace.
    type: path
    default: /proc/sys/fs/binfmt_misc
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: partial
    details: In check mode the command is not run and the task is skipped (after the argument checks).
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Linux 6.7 or later, as root.
notes:
  - A failed command fails the task with its real C(rc), C(stdout) and C(stderr).
  - The role C(nativearm.binfmt.native_armhf_build) runs builds this way.
seealso:
  - module: nativearm.binfmt.native_armhf_window
"""

EXAMPLES = r"""
- name: Build armhf packages without touching the host's qemu-arm
  nativearm.binfmt.binfmt_namespace_command:
    argv: [dpkg-buildpackage, -aarmhf, -b]
    chdir: /srv/src/hello
    mode: auto

- name: Run an armhf test binary under qemu only
  nativearm.binfmt.binfmt_namespace_command:
    argv: [./hello-armhf]
    chdir: /srv/build
    mode: emulation
"""

RETURN = r"""
cmd:
  description: The argv that was run.
  returned: always
  type: list
  elements: str
rc:
  description: Exit status of the command (125 setup failed, 126 not executable, 127 not found).
  returned: always
  type: int
stdout:
  description: Standard output.
  returned: always
  type: str
stderr:
  description: Standard error.
  returned: always
  type: str
mode:
  description: The effective mode, C(native) or C(emulation).
  returned: always
  type: str
native:
  description: True when armhf binaries ran natively in the namespace.
  returned: always
  type: bool
reason:
  description: Why this mode was used (probe result).
  returned: always
  type: str
entries:
  description: Entries registered in the private binfmt_misc (parsed, as binfmt_entry returns them).
  returned: always
  type: list
  elements: dict
delta:
  description: Wall time of the command in seconds, including the namespace setup.
  returned: always
  type: float
"""

import os
import shlex

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nativearm.binfmt.plugins.module_utils import nscommand
from ansible_collections.nativearm.binfmt.plugins.module_utils.userns import unsupported_reason


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            argv=dict(type="list", elements="str"),
            cmd=dict(type="str"),
            shell=dict(type="bool", default=False),
            chdir=dict(type="path"),
            environment=dict(type="dict", default={}),
            mode=dict(type="str", choices=["auto", "native", "emulation"], default="auto"),
            probe=dict(type="list", elements="str"),
            interpreter=dict(type="path"),
            flags=dict(type="str", default="F"),
            allow_credentials=dict(type="bool", default=False),
            stdin=dict(type="str"),
            binfmt_misc=dict(type="path", default="/proc/sys/fs/binfmt_misc"),
        ),
        mutually_exclusive=[("argv", "cmd")],
        required_one_of=[("argv", "cmd")],
        supports_check_mode=True,
    )


def command_argv(params):
    if params["cmd"] is not None:
        if params["shell"]:
            return ["/bin/sh", "-c", params["cmd"]]
        return shlex.split(params["cmd"])
    return list(params["argv"])


def run(module):
    p = module.params
    argv = command_argv(p)
    if not argv or not argv[0]:
        module.fail_json(msg="argv/cmd: the command is empty; give the program to run")
    if p["chdir"] and (not os.path.isabs(p["chdir"]) or not os.path.isdir(p["chdir"])):
        module.fail_json(msg="chdir: %r is not an existing absolute directory" % p["chdir"])
    nscommand.check_registration(p["interpreter"], p["flags"], p["allow_credentials"])
    why = unsupported_reason()
    if why:
        module.fail_json(msg="isolation namespace refused: %s" % why, cmd=argv)
    if module.check_mode:
        module.exit_json(changed=False, skipped=True, cmd=argv,
                         msg="command not run in check mode")
    environ = dict(os.environ)
    environ.update(dict((k, str(v)) for k, v in p["environment"].items()))
    result = nscommand.run(argv, p["binfmt_misc"], mode=p["mode"], chdir=p["chdir"],
                           environ=environ, probe=p["probe"], interpreter=p["interpreter"],
                           flags=p["flags"], stdin=p["stdin"], allow_credentials=p["allow_credentials"])
    result["cmd"] = argv
    result["changed"] = True
    error = result.pop("error")
    if error:
        module.fail_json(msg=error, **result)
    if result["rc"] != 0:
        module.fail_json(msg="non-zero return code %d" % result["rc"], **result)
    module.exit_json(**result)


def main():
    module = build_module()
    try:
        run(module)
    except Exception as exc:   # never a traceback: the message names the option when it can
        module.fail_json(msg=str(exc) or repr(exc))


if __name__ == "__main__":
    main()
