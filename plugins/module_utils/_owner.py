# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which process on the managed host lives as long as Ansible's connection to it.

A lease opened in one task and closed in a later one (``native_armhf_window``
with ``owner: connection``) is tied to that process, so it ends with the play
even when no ``always:`` runs, without guessing a ttl:

- ssh: the per-connection sshd process (comm ``sshd``, or ``sshd-session``
  since OpenSSH 9.8, Debian 13). With ControlPersist (Ansible's default
  ssh_args) it lives as long as the play, then ControlPersist seconds more.
  The nearest one is taken: the sshd listener above it lives forever;
- local connection: the top Ansible controller process (``ansible-playbook``,
  ``ansible``, ...). Each task runs in a short-lived worker forked from it,
  so consecutive controller processes are climbed to the topmost one.

``connection_owner`` is pure (a chain of process records in, the owner out);
``ancestry`` reads /proc (the path is a parameter).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

SSHD_COMMS = ("sshd", "sshd-session")
CONTROLLERS = ("ansible-playbook", "ansible", "ansible-runner", "ansible-console", "ansible-pull")
MAX_DEPTH = 64


class OwnerError(Exception):
    def __init__(self, message):
        super(OwnerError, self).__init__(message)
        self.message = message


def parse_stat(text):
    """(comm, ppid, start time) from the text of /proc/PID/stat."""
    head, tail = text.rsplit(")", 1)
    fields = tail.split()
    return head.split("(", 1)[1], int(fields[1]), int(fields[19])


def read_process(pid, proc="/proc"):
    """{pid, ppid, comm, argv, start} of ``pid``, or None when it is gone."""
    try:
        with open(os.path.join(proc, str(pid), "stat")) as f:
            comm, ppid, start = parse_stat(f.read())
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as f:
            argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except (IOError, OSError, ValueError, IndexError):
        return None
    return {"pid": int(pid), "ppid": ppid, "comm": comm, "argv": argv, "start": start}


def ancestry(pid, proc="/proc", depth=MAX_DEPTH):
    """The process records of ``pid``'s parent, grandparent, ... up to (not including) pid 1."""
    chain = []
    me = read_process(pid, proc)
    ppid = me["ppid"] if me else 0
    while ppid > 1 and len(chain) < depth:
        record = read_process(ppid, proc)
        if record is None:
            break
        chain.append(record)
        ppid = record["ppid"]
    return chain


def is_sshd(record):
    return record["comm"] in SSHD_COMMS


def is_controller(record):
    """An Ansible controller process: its program, or the script its Python runs, is ansible*."""
    argv = record["argv"]
    if not argv:
        return False
    names = [os.path.basename(argv[0])]
    if names[0].startswith("python") and len(argv) > 1:
        names.append(os.path.basename(argv[1]))
    return any(name in CONTROLLERS for name in names)


def describe(record):
    return "%d %s" % (record["pid"], " ".join(record["argv"]) or "[%s]" % record["comm"])


def connection_owner(chain):
    """(record, kind) of the process that lives as long as the connection, from
    ``chain`` (nearest ancestor first): the nearest sshd, or the topmost of the
    nearest run of Ansible controller processes. OwnerError when there is none."""
    for i, record in enumerate(chain):
        if is_sshd(record):
            return record, "ssh"
        if is_controller(record):
            top = record
            for above in chain[i + 1:]:
                if not is_controller(above):
                    break
                top = above
            return top, "local"
    raise OwnerError("owner: connection: found neither an ssh session process (%s) nor an Ansible controller "
                     "process (%s) among this module's ancestors (%s); give owner_pid instead (the pid of a "
                     "process on the host whose end should close the lease) and keep a ttl"
                     % (", ".join(SSHD_COMMS), ", ".join(CONTROLLERS),
                        "; ".join(describe(r) for r in chain) or "none"))


def find_connection_owner(pid=None, proc="/proc"):
    """{pid, start, kind, cmdline} of the connection's process for the module ``pid``."""
    record, kind = connection_owner(ancestry(os.getpid() if pid is None else pid, proc))
    return {"pid": record["pid"], "start": record["start"], "kind": kind,
            "cmdline": " ".join(record["argv"]) or record["comm"]}
