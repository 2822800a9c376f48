# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only connection: every inventory host is a private sandbox on this machine
(tests/sandbox/fleet.py), reached by entering its user + mount namespace."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: nsfleet
short_description: run a host's tasks inside its own user + mount namespace (tests only)
description:
  - The local connection, with every command run through the host's C(nsenter) argv, so the
    host's tasks see its own binfmt_misc instance, /run and descriptor directories, and the
    machine's file system otherwise.
  - Files are copied through the sandbox's C(/proc/PID/root), so a path private to the host
    (under its /run, say) is its own, and a shared one is the machine's.
  - The sandboxes are started and stopped by tests/sandbox/fleet.py, which writes the inventory.
extends_documentation_fragment:
  - connection_pipelining
options:
  nsenter:
    description: The argv prefix that runs a command inside the host's namespaces.
    type: list
    elements: str
    required: true
    vars:
      - name: nsfleet_nsenter
  root:
    description: The host's root directory as the controller sees it (C(/proc/PID/root)).
    type: str
    required: true
    vars:
      - name: nsfleet_root
  become_success_timeout:
    description: As for the local connection.
    type: int
    default: 10
    vars:
      - name: ansible_local_become_success_timeout
  become_strip_preamble:
    description: As for the local connection.
    type: bool
    default: true
    vars:
      - name: ansible_local_become_strip_preamble
"""

import os
import shutil

from ansible.errors import AnsibleError, AnsibleFileNotFound
from ansible.module_utils.six.moves import shlex_quote
from ansible.plugins.connection.local import Connection as LocalConnection
from ansible.utils.display import Display

display = Display()


class Connection(LocalConnection):
    transport = "nsfleet"

    def _inside(self, path):
        """``path`` (absolute, as the host sees it) as the controller sees it."""
        return os.path.join(self.get_option("root"), os.path.abspath(path).lstrip("/"))

    def exec_command(self, cmd, in_data=None, sudoable=True):
        # The local connection runs a string command with /bin/sh -c; exec makes the
        # shell become nsenter, which then runs the command inside the namespaces.
        prefix = " ".join(shlex_quote(arg) for arg in self.get_option("nsenter"))
        return super(Connection, self).exec_command("exec %s %s" % (prefix, cmd), in_data=in_data,
                                                    sudoable=sudoable)

    def _copy(self, src, dest):
        if not os.path.exists(src):
            raise AnsibleFileNotFound("file or module does not exist: %s" % src)
        try:
            shutil.copyfile(src, dest)
        except (OSError, shutil.Error) as exc:
            raise AnsibleError("failed to copy %s to %s: %s" % (src, dest, exc))

    def put_file(self, in_path, out_path):
        display.vvv("PUT %s TO %s" % (in_path, out_path), host=self._play_context.remote_addr)
        self._copy(in_path, self._inside(out_path))

    def fetch_file(self, in_path, out_path):
        display.vvv("FETCH %s TO %s" % (in_path, out_path), host=self._play_context.remote_addr)
        self._copy(self._inside(in_path), out_path)
