# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the modules that read or change native armhf windows.

``nativearm.binfmt.window``: where the kernel's binfmt_misc and the window records are
(binfmt_info, binfmt_drift, native_armhf_window, native_armhf_command).
``nativearm.binfmt.window.lease``: how a lease is taken (native_armhf_window and
native_armhf_command, which open one through the same code).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  binfmt_misc:
    description:
      - Where binfmt_misc is mounted.
    type: path
    default: /proc/sys/fs/binfmt_misc
  run_dir:
    description:
      - Root-only directory (0700, files 0600) where native armhf windows keep their lease records and
        prior state, kept apart per binfmt_misc instance (st_dev of the mount plus its user namespace).
        Keep it on a tmpfs such as C(/run) so it is cleared by a reboot together with the kernel's
        binfmt_misc state.
    type: path
    default: /run/nativearm-binfmt
"""

    LEASE = r"""
options:
  mode:
    description:
      - V(native) needs the entry disabled, so the kernel runs 32-bit ARM ELF itself; V(emulation) needs it
        enabled, and keeps native windows from opening while its lease is held.
    type: str
    choices: [native, emulation]
    default: native
  entry:
    description:
      - The binfmt_misc entry that routes 32-bit ARM ELF to qemu.
    type: str
    default: qemu-arm
  wait:
    description:
      - Seconds to wait for the window (for the other mode's leases to drain, also other coordinators'
        windows, or a root-owned exclusive lock on the entry), then fall back per O(on_unsupported), or
        fail naming every holder.
    type: int
    default: 30
  on_unsupported:
    description:
      - When a native window cannot be had (the probe fails, or emulation leases still hold the entry
        after O(wait)), V(emulate) takes an emulation lease instead and says why in RV(reason); V(fail)
        fails with the reason and the holders.
    type: str
    choices: [emulate, fail]
    default: emulate
  probe:
    description:
      - The command that must run natively before the first native lease is granted (argv list, or a string
        split like a shell would, never run by a shell). Default, the collection's one probe (the same for
        every module and role) - the armhf loader loading the armhf libc from gcc-arm-linux-gnueabihf,
        C(/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3 --library-path /usr/arm-linux-gnueabihf/lib
        /usr/arm-linux-gnueabihf/lib/libc.so.6), which proves that a dynamically linked armhf program loads
        (C(ld-linux-armhf.so.3 --help) and static helpers also run on 16K-page kernels, where dynamic ones
        cannot).
    type: raw
"""
