# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the modules that read or change native armhf windows."""

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
