# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Native armhf windows: the lock protocol and the lease records.

This file is the one place to read the protocol; it holds the ``Window``
class (open, close, recovery, re-assertion, facts, repair) on top of private
parts, one responsibility each (standard library only):

- ``_window_rules.py``    pure rules: admission and fairness, the entry state
                          each mode needs, restore target, stale-window
                          refusal, lease ids, tiers, the result shape;
- ``_window_records.py``  the records on disk: run dir, state file (schema,
                          version, fail-closed writes), lock file names;
- ``_window_instance.py`` what other coordinators of the instance hold
                          (/proc/locks, register markers);
- ``_window_proc.py``     processes and locks: boot id, start times, signals
                          checked by start time, waiting for an exit, lock
                          holders, flock with a deadline;
- ``_holder_handle.py``   the opener's handle on a holder process and the
                          pipe messages both sides exchange;
- ``_holder.py``          the holder's side: process set-up and loop (imported
                          by an open, just before it forks the holder);
- ``_window_facts.py``    read-only views: facts, check-mode predictions;
- ``_window_repair.py``   repairs under the mutex: a close with corrupt records,
                          binfmt_drift's repair and re-enable (these two are
                          imported only when called: never by a holder, and
                          not by the open and close of a lease);
- ``binfmt_misc.py`` (entry access that lands on binfmt_misc only),
  ``probe.py`` (capability check, in an open) and ``_probe_run.py`` (the
  probe itself, imported only when one runs).

A holder is a fork of its opener: it runs this code from memory (every file
above that a holder runs is imported before the fork; ``_window_facts``,
``_window_repair`` and ``_probe_run`` are only ever run by a module's own
process), so it keeps working long after the
Ansible module that started it has exited and its AnsiballZ payload
directory has been deleted.

Terms
-----
entry     the binfmt_misc entry that sends 32-bit ARM ELF to qemu
          (``qemu-arm``). Writing ``0`` disables it, so the kernel runs armhf
          binaries itself (CONFIG_COMPAT); ``1`` enables it again.
lease     one open use of a window, of mode ``native`` (needs the entry
          disabled) or ``emulation`` (needs it enabled). Each lease is owned by
          one detached *holder* process.
window    the set of open leases on one binfmt_misc instance; all its leases
          have the same mode. ``prior`` is the entry's state recorded by the
          first lease (present? enabled?).
coordinator  whoever opens windows on the instance with its own records:
          this collection with a given ``run_dir`` in a given mount
          namespace (a build container has its own /run), or another tool
          such as an Armbian PR #9769 builder (seed 000), which keeps
          LOCK_SH on the entry while it builds, disables the entry when it
          is first in, and re-enables it when it is last out (LOCK_EX|LOCK_NB
          on a fresh descriptor succeeds), recording nothing.

Invariants, at every instant, per binfmt_misc instance (every coordinator)
-------------------------------------------------------------------------
I1  while any native lease is open, the entry is disabled (or absent);
I2  while any emulation lease is open, the entry is enabled (or absent);
I3  when the last lease ends -- closed, ttl expired, owner_pid gone, or its
    holder killed and a later caller recovered the stale window -- the
    entry is put back in ``prior`` exactly (an admin's ``disabled`` stays).
    With other coordinators: qemu-arm never stays disabled once every
    window of every coordinator has ended, and is never re-enabled while
    one of them still runs natively; whoever is last out restores.
I2 has one exception, which no coordinator can prevent: a PR #9769 builder
takes no mutex, so one that arrives during an emulation lease disables the
entry and builds natively. Its native window wins: I3's "never re-enabled
while one of them still runs natively" comes first. Emulation holders do not
re-enable under it (event ``reassert_deferred``; the lease's user sees it in
the events and ``foreign_windows`` of binfmt_info), and re-assert ``enabled``
once it is gone (the builder's own last out re-enables first, as no emulation
lease holds LOCK_SH). Every re-enable of ours (re-assertion, restore, an
emulation admission, a salvage, binfmt_drift's ``reenable`` of an entry a
tool left disabled) is decided and written under our own
LOCK_EX|LOCK_NB on the entry (``_enable``), so no builder can take its
LOCK_SH, find the entry disabled and start building between our look and our
write: it waits for its LOCK_SH, then finds the entry enabled and disables it
as first in. An unprivileged LOCK_SH keeps our LOCK_EX out and is not obeyed:
then /proc/locks and the owners' uids decide, the entry is enabled anyway and
looked at again, and a builder's root LOCK_SH that appeared in between (it may
have read ``disabled``: it takes its lock, then reads) gets the entry back
disabled, its window deferring the restore.

Instance-wide coordination (kernel objects every coordinator sees)
------------------------------------------------------------------
Records are per run dir; these belong to the binfmt_misc instance itself
(``_window_instance.py``), so another run_dir, a container with its own
/run and PR #9769 builders all see them:

- the instance mutex: flock(LOCK_EX) on the instance's ``register`` file
  (mode 0200: only root can open it, for writing; nothing is written).
  Every transition and every read of the records that decides something
  happens under it, whatever the run dir or mount namespace;
- LOCK_SH on the entry means one thing, as in PR #9769: "a native window
  user is here". Only native holders hold it, taken (``hold native``)
  under the mutex before the entry is disabled. A root-owned LOCK_SH that
  is not one of our holders' is a *foreign native window* (a PR #9769
  builder, this collection with another run_dir or /run). A lock taken by
  a process that has exited (``flock -s 9`` in a shell) is attributed to
  the processes holding that descriptor (/proc/PID/fdinfo); one we cannot
  see (another pid namespace) counts as root's;
- emulation markers: each emulation holder keeps an OFD write lock on one
  byte of ``register`` (at MARKER_BASE + a random offset; only root can
  open register, so only root can place one). Markers no lease of ours
  holds are *foreign emulation leases*. OFD locks and flock locks do not
  interact; the kernel drops both when the holder dies;
- unprivileged lock holders: the entry file is world-readable, so anyone
  can flock it. Their locks are reported (pid, uid, command line: open
  results' ``lock_holders_ignored`` and ``warning``, and a close's when it
  restored despite them; the restore event; binfmt_info's
  ``lock_holders``), never obeyed: a non-root LOCK_SH is no window, and a
  non-root LOCK_EX that keeps a native holder's LOCK_SH out is not waited
  for (the holder keeps trying to take it).

Rules that use them, under the mutex:
- a native open that finds a foreign native window *joins* it: the entry it
  found disabled is that window's doing, so its ``prior`` is "enabled" (the
  records keep the foreign pids in ``foreign``); it writes nothing;
- an emulation open waits while a foreign native window is open, then fails
  naming it; a native open waits while foreign emulation markers are held,
  then ``on_unsupported`` decides (emulate: an emulation lease, which may
  share the entry with the foreign ones);
- a root-owned LOCK_EX on the entry (a PR #9769 builder's last-out test,
  milliseconds) delays ``hold native`` until the open's deadline;
- the last lease out (close, holder's own end, stale recovery, probe
  rollback) first makes sure its own holder's locks are gone (a closer
  SIGKILLs it and waits, under the mutex; a holder ending its own lease drops
  them first), then restores ``prior`` -- unless re-enabling while a foreign
  native window is open, or disabling while foreign emulation markers are
  held: then the restore is *deferred* (event ``restore_deferred``,
  ``restored: false`` and the reason) to whoever is last out: a PR #9769
  builder re-enables when it is last out (our holders hold no lock then);
  another coordinator of this collection restores its own prior.
Known limit: records are not shared across coordinators, so an admin's
``disabled`` prior survives only in the coordinator that opened first: a
joiner of a foreign native window takes the prior as "enabled" (as the
contract says), and PR #9769 builders always re-enable. Fairness between
modes holds among the waiters of one run dir.

Where things live (per binfmt_misc instance)
--------------------------------------------
``RUN_DIR/<instance key>/`` (directory 0700, files 0600, root only; see
``_window_records.py``). Both directories are created 0700 and root-owned; an
existing one must already be a real directory (not a symlink) owned by us and
not writable by group or others, and is never chmodded (``run_dir: /run``
keeps its mode). The key
is the binfmt_misc mount's st_dev plus the inode of the user namespace that
sees it (Linux >= 6.7 gives each user namespace its own instance), so a
private instance in a test never shares records with the host's. ``/run`` is
a tmpfs: records vanish at reboot together with the kernel's binfmt state.

- ``state-<entry>.json`` the records: window mode, prior state, leases,
                 waiters, events. Replaced atomically under the mutex (temp
                 file, every byte written, fsync, size checked, rename), so a
                 lock-free read always sees a whole version.
- ``lease-<id>-<nonce>.lock`` held with flock(LOCK_EX) by the lease's holder
                 for its whole life. The kernel drops it when the holder dies
                 (SIGKILL, OOM): a lease is *live* iff this lock is held, which
                 is immune to pid reuse.
Nothing else: no code is installed there (holders are forked, not exec'd).

Why not only flock on the entry (as Armbian PR #9769 did)
----------------------------------------------------------
- Converting LOCK_EX to LOCK_SH is not atomic on Linux (flock(2): the old
  lock is dropped, then the new one placed), so a "last out" LOCK_EX|LOCK_NB
  probe can win in between. Here no decision depends on a conversion: the
  mutex is only ever taken and released whole.
- A re-registered entry is a new inode; locks on the old one coordinate
  nothing. The mutex and the markers are on ``register``, not on the entry.
- Entry files are world-readable, so anyone can flock them: the mutex is on
  a file only root can open, and entry locks count only when root's.
- The prior state, the lease list and the events need records.

Open (mode M, lease L)
----------------------
1. Fork the holder first, outside the mutex: no interpreter start-up, and
   the child needs no file of the caller's (``_holder.py`` describes how it
   detaches: own session, cwd /, stdio on /dev/null, inherited descriptors
   closed but the binfmt_misc directory checked before the fork, ``os._exit``
   so it never returns into the caller's code). It takes its lease lock, then
   reports ``ready`` through a pipe; it holds nothing on the instance yet. A
   holder is its opener's child until the opener exits; a long-lived opener
   reaps it.
2. Under the mutex: recover (below); if L is already live, return it
   (``changed: false``) and dismiss the new holder. Otherwise L is
   *admissible* when no other coordinator's window of the other mode is
   open (above), the window is empty or has mode M, and no live waiter
   of the other mode arrived before L (fairness: once an opener of the other
   mode waits, new joiners of the current mode queue behind it; a window
   also admits every waiter of its mode already waiting when it opened,
   so batches stay large and the other mode waits for one bounded batch).
   If not,
   record L as a waiter, release the mutex, and poll the records lock-free
   (they are replaced atomically); take the mutex again when L looks
   admissible, every FULL_LOOK seconds (to recover dead leases), and at the
   ``wait`` deadline.
3. Admission, still under the mutex. A first native lease first asks the
   capability check (``probe.capability``: architecture, personality
   (PER_LINUX32), page size, a probe in a private instance; it writes
   nothing): where armhf cannot run natively the entry is never touched and
   ``on_unsupported`` decides at once. Then the holder takes its mode's mark
   (``hold M``: LOCK_SH on the entry, or an emulation marker). First lease:
   record ``prior`` (or "enabled" when joining a foreign native window) and
   the lease in state.json *before* touching the entry (a crash after this
   point leaves a stale window, which recovery restores), then write the
   mode's state. A first native lease that the capability check could not
   decide runs the probe with the entry disabled; when it fails, the lease
   is removed and ``prior`` restored before the mutex is released
   (rollback), and ``on_unsupported`` decides (emulate: an emulation lease is
   admitted in the same critical section; the holder swaps its LOCK_SH for a
   marker). Joiners take their mark and add their record. The mutex is
   released.
4. ``commit MODE`` goes to the holder (the effective mode), which answers
   ``ok`` and closes its pipes; only then does the open return. The lease is
   live from admission on (its holder holds its lock), so nothing in the
   invariants waits for this step, and the mutex is not held across a
   round trip with another process. A holder that ends before ``ok`` (killed,
   or the lease was closed meanwhile) is killed for sure, the window is
   recovered, and the open fails saying so.
Since the entry's state changes only under the mutex, in the same critical
section as the record that justifies it, I1 and I2 hold at every instant.

Close (lease L), ttl, owner_pid, SIGTERM
----------------------------------------
Under the mutex: recover (which ends L itself if its holder just died);
remove L; if no live lease is left, L's holder is SIGKILLed and waited for
(its locks gone), then ``prior`` is restored (``restored: true``) or the
restore deferred to another coordinator (above), and the window cleared.
Otherwise the holder is told to exit (SIGUSR1) after the mutex is released,
and the close waits (pidfd) until it has exited, so no lock of it is left
when the close returns. A holder whose ttl expires, whose owner_pid ends
(pid and start time checked), or that gets SIGTERM/SIGINT/SIGHUP, drops its
locks and does the same for its own lease. If the opener dies before
``commit``, the holder does it too.

Records that cannot be written or read (fail closed)
---------------------------------------------------
- A write that fails (a full /run, ENOSPC after one page) leaves the previous
  version in place and no temp file. An admission that fails for any reason
  (a record that cannot be written, a refusal, a fault, a signal) leaves the
  host as it was (``_abandon``): its holder is SIGKILLed and reaped first (so
  its LOCK_SH cannot defer the restore), the lease is taken out of the last
  version on disk and the entry put back; when even that cannot be written
  and there were no records before the open, the ones it wrote are removed
  (the first lease records ``prior`` before it touches the entry, so a failed
  first write touches nothing). A close that cannot record still puts the entry back
  when it was the last lease out, and says so in a warning; the records
  then still name the closed lease, whose holder is gone, and the next
  recovery ends it onto the same state.
- A load checks ``version`` and every field (lock file names against the
  pattern this code generates, so no record names a path outside the
  instance dir). Unusable records are moved aside under the mutex
  (``state-<entry>.json.corrupt-<time>``; lock-free and read-only looks only
  report them) and every later load refuses while such a file exists:
  opens fail naming the file and ``binfmt_drift``; a close SIGKILLs its own
  lease's holder (found by its lock file and title) and, when no holder of
  the entry is left, puts the entry back to the prior the corrupt file
  still shows, else enabled -- deferred, like any last-out restore, while
  another coordinator's window needs the entry as it is; holders see the
  records file gone and exit touching nothing. ``binfmt_drift``
  (``Window.repair``) ends the entry's holders, restores the same way, and
  starts the records afresh (event ``records_repaired``).
- A pid from a record is signalled only after its start time matches,
  through a pidfd opened before the check (``signal_pid``).

Recovery (every open and close, binfmt_drift, holders)
------------------------------------------------------
Under the mutex: a recorded lease whose lock is free is dead; its record is
dropped (event ``holder_gone``). If no live lease remains but a window is
recorded, the window is *stale*: ``prior`` is restored (event
``stale_window_restored``, or deferred as above) -- onto the entry the window changed only: when
the records are from another boot, or the entry now has another inode
(re-registered after the holders died, or a new binfmt_misc instance that
reuses a dead one's st_dev and namespace inode, hence its key), the stale
records are dropped and the entry is left as its registrant set it (event
``stale_window_dropped``). Entry inodes come from one per-boot counter for
all instances, so they are not reused the way keys are. Dead waiters (pid +
start time) are dropped, and so are lease lock files that no record names
and no process locks (a holder killed before its lease was admitted).

Re-assertion (holders)
----------------------
Every holder polls the entry every ``POLL`` seconds (one open, fstat and
small read: negligible CPU), in ``_holder.py``, without the mutex. When the
entry's state is not its mode's, or its inode changed (re-registered by
systemd-binfmt, update-binfmts, ...), or it appeared or vanished, the holder
takes the mutex, re-checks, writes the mode's state and records an event --
except that an emulation holder does not re-enable the entry while a foreign
native window is open (event ``reassert_deferred``, re-checked every second).
A native holder moves its LOCK_SH to a new inode first, under the mutex and
before it writes ``0`` (``relock``: non-blocking tries, a root LOCK_EX waited
out for RELOCK_WAIT, an unprivileged one not obeyed): taken after the mutex is
released, another coordinator's last out could find no LOCK_SH on the new
inode in between and re-enable under the native lease. An entry that
appears in a window whose prior was "absent" is given back, at the end, the
state its registrant gave it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import errno
import fcntl
import os
import time

# The window's parts, each private to it (this docstring states the rules they serve).
# Names used by the modules, tests, bench and stress are re-exported from here.
from ansible_collections.nativearm.binfmt.plugins.module_utils._window_records import (  # noqa: F401 pylint: disable=unused-import
    LEASE_ID_PATTERN, MAX_EVENTS, MODES, STATE_VERSION, RecordsCorrupt, RecordsWriteError, WindowError,
    add_event, corrupt_files, empty_state, instance_key, load_state, lock_name_lease, lock_path, new_lock_name,
    open_private, salvage_prior, save_state, secure_dir, write_private)
from ansible_collections.nativearm.binfmt.plugins.module_utils._window_rules import (  # noqa: F401 pylint: disable=unused-import
    admissible, describe_prior, describe_status, desired_enabled, lease_result, new_lease_id,
    prior_text, restore_target, short_probe, stale_restore_refusal, validate_lease_id)
from ansible_collections.nativearm.binfmt.plugins.module_utils._window_proc import (  # noqa: F401 pylint: disable=unused-import
    Timeout, boot_id, describe_lock_holders, flock, kill_recorded, lock_holders_of, pid_alive, proc_start_time,
    signal_pid, try_flock, wait_exit)
from ansible_collections.nativearm.binfmt.plugins.module_utils import _holder_handle as handle
from ansible_collections.nativearm.binfmt.plugins.module_utils._holder_handle import POLL  # noqa: F401 pylint: disable=unused-import
from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_instance as instance
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils._window_instance import (  # noqa: F401 pylint: disable=unused-import
    parse_proc_locks, proc_cmdline)

# subprocess, select and threading are imported where used (a close needs
# none of them), and _holder only by an open, just before it forks.

DEFAULT_RUN_DIR = "/run/nativearm-binfmt"
DEFAULT_BINFMT_MISC = "/proc/sys/fs/binfmt_misc"
DEFAULT_ENTRY = "qemu-arm"
FULL_LOOK = 1.0          # a waiter re-checks under the mutex (and recovers) at least this often
MUTEX_MIN_WAIT = 45.0    # held briefly by our own processes; at most a probe (30 s timeout) long
HOLDER_START_WAIT = handle.START_WAIT
PROBE_TIMEOUT = 60
EXCLUSIVE_WAIT = 0.5     # a root LOCK_EX on the entry (a PR #9769 last-out test) delays a re-enable this long at most
RELOCK_WAIT = 0.5        # ... and a native holder's LOCK_SH on a re-registered entry this long at most
LOCK_FILE_MIN_AGE = 60.0  # an unrecorded, unlocked lease lock file this old is litter (see _sweep_lock_files)


class _NotNow(Exception):
    """Admission found, at its last look, a window it must wait for."""


# ---------------------------------------------------------------------------
# the probe
# ---------------------------------------------------------------------------

def host_capability(probe_argv=None):
    """probe.capability(): can this host run armhf natively at all? A check that
    writes nothing and touches no entry; ``native_possible`` True / False / None
    (only the real probe, with the entry disabled, can tell)."""
    from ansible_collections.nativearm.binfmt.plugins.module_utils import probe as probe_mod
    return probe_mod.capability(probe=probe_argv)


def default_probe(binfmt_misc=DEFAULT_BINFMT_MISC):
    """The real probe (probe.select_probe's choice), run as is: only meaningful
    while the entry is disabled."""
    from ansible_collections.nativearm.binfmt.plugins.module_utils._probe_run import direct_probe
    return direct_probe(None, binfmt_misc=binfmt_misc)


def run_probe(argv, timeout=PROBE_TIMEOUT):
    """Run ``argv`` directly; the probe result dict {native, method, command, rc, output, reason}."""
    import subprocess
    result = {"native": False, "method": "direct", "command": list(argv), "rc": None,
              "output": "", "reason": None}
    try:
        proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, close_fds=True, check=False)
    except OSError as exc:
        result["output"] = str(exc)
        result["reason"] = ("native probe %s could not run: %s (ENOEXEC means this kernel cannot run "
                            "32-bit ARM: no CONFIG_COMPAT, a CPU without AArch32 EL0, or non-4K pages)"
                            % (" ".join(argv), exc))
        return result
    except subprocess.TimeoutExpired:
        result["reason"] = "native probe %s timed out after %d s" % (" ".join(argv), timeout)
        return result
    result["rc"] = proc.returncode
    result["output"] = proc.stdout.decode("utf-8", "replace")[-2000:]
    if proc.returncode == 0:
        result["native"] = True
    else:
        result["reason"] = "native probe %s exited %d: %s" % (
            " ".join(argv), proc.returncode, result["output"].strip()[-300:])
    return result


# ---------------------------------------------------------------------------
# the window of one entry on one binfmt_misc instance
# ---------------------------------------------------------------------------

class Window(object):
    def __init__(self, entry=DEFAULT_ENTRY, binfmt_misc=DEFAULT_BINFMT_MISC, run_dir=DEFAULT_RUN_DIR,
                 instance_dir=None):
        try:                # the same name allowlist as binfmt_entry's
            bm.validate_name(entry, field="entry")
        except bm.BinfmtError as exc:
            raise WindowError(str(exc))
        self.entry = entry
        self.binfmt_misc = binfmt_misc
        self.entry_path = os.path.join(binfmt_misc, entry)
        self.register_path = os.path.join(binfmt_misc, instance.REGISTER)
        self.run_dir = run_dir
        if instance_dir is None:
            try:            # every read and write lands on binfmt_misc itself (fstatfs), never on a look-alike
                bm.check_filesystem(binfmt_misc)
            except (bm.BinfmtError, OSError) as exc:
                raise WindowError("binfmt_misc: no binfmt_misc filesystem at %s (%s); mount it (mount -t "
                                  "binfmt_misc binfmt_misc %s) or point binfmt_misc at it"
                                  % (binfmt_misc, getattr(exc, "message", None) or exc, binfmt_misc))
            instance_dir = os.path.join(run_dir, instance_key(binfmt_misc))
        self.dir = instance_dir
        self.mutex_min_wait = MUTEX_MIN_WAIT
        self._mutex_fd = None
        self.ignored = []       # unprivileged lock holders the last re-enable did not obey (_enable)

    # -- files ---------------------------------------------------------------
    def _path(self, name):
        return os.path.join(self.dir, name)

    @property
    def state_path(self):
        return self._path("state-%s.json" % self.entry)

    def ensure_dirs(self):
        secure_dir(self.run_dir)
        secure_dir(self.dir)

    def exists(self):
        return os.path.isdir(self.dir)

    # -- the mutex ---------------------------------------------------------------
    def acquire(self, deadline=None):
        """Take the instance mutex (bounded): flock(LOCK_EX) on the instance's
        ``register`` file, which only root can open, shared by every coordinator
        of the instance whatever its run dir or /run."""
        if self._mutex_fd is not None:
            raise RuntimeError("mutex taken twice")
        self.ensure_dirs()
        path = self.register_path
        try:
            fd = bm.open_entry(instance.REGISTER, os.O_WRONLY, self.binfmt_misc)
        except (bm.BinfmtError, OSError) as exc:
            raise WindowError("binfmt_misc: cannot open %s, the instance-wide window mutex (only root can): %s"
                              % (path, getattr(exc, "message", None) or exc))
        deadline = max(deadline or 0, time.time() + self.mutex_min_wait)
        try:
            flock(fd, fcntl.LOCK_EX, deadline)
        except Timeout:
            holders = lock_holders_of(path)
            os.close(fd)
            raise WindowError("timed out waiting for the window mutex (flock on %s); held by: %s"
                              % (path, describe_lock_holders(holders)), holders)
        except BaseException:
            os.close(fd)
            raise
        self._mutex_fd = fd

    def release(self):
        fd, self._mutex_fd = self._mutex_fd, None
        if fd is not None:
            os.close(fd)   # closing the only descriptor drops the flock

    @contextlib.contextmanager
    def mutex(self, deadline=None):
        """``with window.mutex(deadline):`` -- the instance mutex for the block."""
        self.acquire(deadline)
        try:
            yield self
        finally:
            self.release()

    # -- records ---------------------------------------------------------------
    def load(self, move=True):
        """The records (see _window_records.load_state: RecordsCorrupt when
        unusable). Unusable records are moved aside only under the mutex: a
        lock-free look passes ``move=False``."""
        return load_state(self.state_path, self.entry, move)

    def save(self, state):
        """Write the records whole or not at all (RecordsWriteError, old version intact)."""
        save_state(self.state_path, state)

    @staticmethod
    def _event(state, kind, lease=None, detail=None):
        add_event(state, kind, lease, detail)

    # -- the entry -------------------------------------------------------------
    def entry_status(self):
        """{present, enabled, ino} of the entry right now (binfmt_misc.entry_state)."""
        return bm.entry_state(self.entry, self.binfmt_misc)

    def set_enabled(self, enabled):
        bm.write_entry(self.entry, b"1" if enabled else b"0", self.binfmt_misc)

    def _apply(self, enabled):
        """Put the entry in ``enabled`` if it is present and differs; True when written."""
        status = self.entry_status()
        if status["present"] and status["enabled"] != enabled:
            try:
                self.set_enabled(enabled)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return False
                raise
            return True
        return False

    def _enable(self, state, ours=(), markers=()):
        """Enable the entry (if present and disabled) unless a native window of another
        coordinator is open: returns None when done, else that window's lock holders.
        Unprivileged lock holders that were not obeyed are left in ``self.ignored``.

        PR #9769 builders take no mutex: one could take its LOCK_SH, find the entry
        disabled and start building between a look and the write. So the look and
        the write happen under our own LOCK_EX|LOCK_NB on the entry: while we hold
        it no LOCK_SH can be taken (a builder's ``flock -s`` waits, then finds the
        entry enabled and disables it as first in). When it cannot be had,
        /proc/locks and the lock owners' uids decide, not the flock result: a
        root-owned LOCK_SH not ours defers; a root LOCK_EX (a builder's last-out
        test, milliseconds) is waited out for EXCLUSIVE_WAIT; a lock gone by the
        time we looked is tried again; locks of unprivileged users (the entry is
        world-readable) or of ``ours`` are not obeyed: the entry is enabled anyway,
        then looked at again. A root LOCK_SH that appeared meanwhile is a builder
        that may have read ``disabled`` (it takes its LOCK_SH, then reads): the
        entry is given back to it disabled and its window is returned (deferred);
        one that appears after that look reads ``enabled`` and disables it itself."""
        self.ignored = []
        try:
            fd = bm.open_entry(self.entry, os.O_RDONLY, self.binfmt_misc)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        try:
            end = time.time() + EXCLUSIVE_WAIT
            while not try_flock(fd, fcntl.LOCK_EX):
                foreign = self.look(state, ours, markers)
                if foreign["native"]:
                    return foreign["native"]
                if foreign["exclusive"] and time.time() < end:
                    try:            # a root LOCK_EX: wait for it a little, then look again
                        flock(fd, fcntl.LOCK_EX, min(end, time.time() + 0.05))
                        break
                    except Timeout:
                        continue
                unobeyed = [h for h in foreign["unprivileged"] if not h["blocked"]]
                if unobeyed or foreign["ours"] or time.time() >= end:
                    return self._enable_unguarded(state, ours, markers, unobeyed)
                time.sleep(0.001)   # whoever kept it out is gone already: try again
            self._apply(True)
            return None
        finally:
            os.close(fd)           # our LOCK_EX, if taken, goes with it

    def _enable_unguarded(self, state, ours, markers, unobeyed):
        """_enable without our LOCK_EX (locks that are not obeyed keep it out):
        enable, then look again; a root LOCK_SH there now gets the entry back."""
        wrote = self._apply(True)
        after = self.look(state, ours, markers)
        seen = dict((h["pid"], h) for h in unobeyed)
        seen.update((h["pid"], h) for h in after["unprivileged"] if not h["blocked"])
        self.ignored = [seen[pid] for pid in sorted(seen)]
        if after["native"]:
            if wrote:
                self._apply(False)
            return after["native"]
        return None

    def entry_lock_holders(self):
        return lock_holders_of(self.entry_path)

    # -- liveness --------------------------------------------------------------
    def lease_alive(self, record):
        path = lock_path(self.dir, record.get("lock"))
        if path is None:
            return False
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except (IOError, OSError):
            return True          # its holder still has LOCK_EX on it
        finally:
            os.close(fd)
        return False

    def _drop_lock_file(self, record):
        path = lock_path(self.dir, record.get("lock"))
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass

    # -- transitions (all under the mutex) --------------------------------------
    def _restore(self, state, why, lease=None, ours=(), markers=()):
        """End the window: put the entry back in its prior state (I3) -- unless
        another coordinator's window still needs the entry as it is: then the
        restore is deferred to whoever is last out (a PR #9769 builder re-enables
        qemu-arm when it is last out; this collection's other coordinators
        restore their own prior). Returns None, or why the restore was deferred.
        ``ours``/``markers``: pids and register markers of our holders that still hold
        locks (a probe rollback; a holder ending its own lease)."""
        target = restore_target(state)
        deferred = None
        self.ignored = []
        if target:
            native = self._enable(state, ours, markers)
            if native:
                deferred = ("a native window of another coordinator is open (root-owned shared locks on %s: "
                            "%s); qemu-arm is not re-enabled under it: whoever is last out restores it"
                            % (self.entry, instance.describe(native)))
        elif target is not None:
            foreign = self.look(state, ours, markers)
            if foreign["emulation"]:
                deferred = ("%d emulation lease(s) of another coordinator (another run_dir or /run) hold %s "
                            "enabled; the last of them out restores it" % (len(foreign["emulation"]), self.entry))
            else:
                self._apply(target)
        status = self.entry_status()
        if deferred:
            self._event(state, "restore_deferred", lease=lease, detail="prior %s; entry now %s: %s" % (
                describe_prior(state.get("prior")), describe_status(status), deferred))
        else:
            self._event(state, why, lease=lease, detail="prior %s; entry now %s%s" % (
                describe_prior(state.get("prior")), describe_status(status), self._ignored_text()))
        self._clear_window(state)
        return deferred

    def _ignored_text(self):
        if not self.ignored:
            return ""
        return ("; unprivileged lock holders not obeyed (they can neither block a window nor keep the entry "
                "disabled): %s" % instance.describe(self.ignored))

    def look(self, state, extra_pids=(), extra_markers=()):
        """The instance as the other coordinators leave it (_window_instance.look):
        root-owned shared locks on the entry that are not our holders' (native
        windows of other coordinators), their exclusive locks, unprivileged lock
        holders, and emulation markers on ``register`` that no lease of ours holds."""
        ours = set(rec.get("pid") for rec in state["leases"].values() if rec.get("mode") == "native")
        ours.update(extra_pids)
        markers = [rec.get("marker") for rec in state["leases"].values() if rec.get("marker") is not None]
        markers.extend(m for m in extra_markers if m is not None)
        return instance.look(self.entry_path, self.register_path, ours, markers)

    @staticmethod
    def _clear_window(state):
        for key in ("mode", "prior", "adopted", "opened_at", "native", "tier", "probe", "entry_ino", "boot_id",
                    "foreign"):
            state[key] = None

    def recover(self, state):
        """Drop dead leases and waiters; end a stale window. Returns what happened to
        a stale window: "restored" (prior put back), "dropped" (records of another
        registration, boot or instance; entry untouched), or None (none was stale)."""
        for lease_id, record in list(state["leases"].items()):
            if not self.lease_alive(record):
                del state["leases"][lease_id]
                self._drop_lock_file(record)
                self._event(state, "holder_gone", lease=lease_id,
                            detail="holder pid %s ended without closing its lease" % record.get("pid"))
        for token, waiter in list(state["waiters"].items()):
            if not pid_alive(waiter["pid"], waiter.get("start")):
                del state["waiters"][token]
        if not state["leases"]:         # litter is rare: no directory scan while leases are open
            self._sweep_lock_files(state)
        if state.get("prior") is not None and not state["leases"]:
            refusal = stale_restore_refusal(state, self.entry_status(), boot_id())
            if refusal:
                self._event(state, "stale_window_dropped", detail="prior %s not applied: %s" % (
                    describe_prior(state.get("prior")), refusal))
                self._clear_window(state)
                return "dropped"
            self._restore(state, "stale_window_restored")
            return "restored"
        return None

    def _sweep_lock_files(self, state, min_age=LOCK_FILE_MIN_AGE):
        """Unlink lease lock files that no record names and no process locks: a
        holder killed before its lease was admitted leaves one. A holder creates
        its file, then locks it, so only files older than ``min_age`` go."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        known = set(r.get("lock") for r in state["leases"].values())
        now = time.time()
        for name in names:
            if not (name.startswith("lease-") and name.endswith(".lock")) or name in known:
                continue
            try:
                if now - os.lstat(self._path(name)).st_mtime < min_age:
                    continue
            except OSError:
                continue
            if not self.lease_alive({"lock": name}):
                self._drop_lock_file({"lock": name})

    def _remove_lease(self, state, lease_id, why, own=False):
        """Remove one lease; restore when it was the last. Returns (record, restored).
        ``own``: the lease's holder itself ends it, so it still holds its LOCK_SH on
        the entry (or its emulation marker), which is ours, not another coordinator's."""
        record = state["leases"].pop(lease_id)
        self._drop_lock_file(record)
        restored = False
        if not state["leases"] and state.get("prior") is not None:
            ours, markers = ([record.get("pid")], [record.get("marker")]) if own else ((), ())
            restored = self._restore(state, "restored", lease=lease_id, ours=ours, markers=markers) is None
        if why != "closed":         # a lease ended by itself (ttl, owner, signal, ...) is worth a line
            self._event(state, why, lease=lease_id)
        return record, restored

    # -- reporting ---------------------------------------------------------------
    def summary(self, state, lease_id=None):
        status = self.entry_status()
        return {
            "entry": self.entry, "entry_present": status["present"], "entry_enabled": status["enabled"],
            "window_mode": state.get("mode"), "leases": len(state["leases"]),
            "prior_state": prior_text(state.get("prior")),
        }

    def holders_text(self, state, foreign=None):
        parts = []
        for lease_id, rec in sorted(state["leases"].items()):
            owner = ""
            if rec.get("owner_pid"):
                owner = ", owner pid %d: %s" % (rec["owner_pid"], proc_cmdline(rec["owner_pid"]))
            parts.append("%s lease %s (holder pid %d: %s%s)" % (
                rec["mode"], lease_id, rec["pid"], proc_cmdline(rec["pid"]), owner))
        text = "; ".join(parts) or "no leases"
        if foreign and foreign.get("native"):
            text += "; native window of another coordinator: %s" % instance.describe(foreign["native"])
        if foreign and foreign.get("emulation"):
            text += "; %d emulation lease(s) of another coordinator (markers on %s)" % (
                len(foreign["emulation"]), self.register_path)
        locks = self.entry_lock_holders()
        if locks:
            text += "; locks on %s from /proc/locks: %s" % (self.entry_path, describe_lock_holders(locks))
        return text

    # -- open ------------------------------------------------------------------
    def spawn_holder(self, lease_id, deadline, expires=None, owner_pid=None, owner_start=None):
        """Fork a holder (outside the mutex) and wait for its ``ready``; its HolderHandle."""
        self.ensure_dirs()
        config = {"lease_id": lease_id, "lock": new_lock_name(lease_id),
                  "expires": expires, "owner_pid": owner_pid, "owner_start": owner_start,
                  "title": "nativearm-window-holder %s lease=%s %s" % (self.entry, lease_id, self.dir)}
        window = Window(self.entry, self.binfmt_misc, self.run_dir, instance_dir=self.dir)
        window.mutex_min_wait = self.mutex_min_wait
        return handle.spawn(window, config, max(deadline - time.time(), 0) + HOLDER_START_WAIT, WindowError)

    def open(self, mode="native", lease_id=None, ttl=None, owner_pid=None, wait=30,
             on_unsupported="emulate", probe=None, check_mode=False, capability=None):
        """Open (or find) a lease. Returns a result dict (see the module's RETURN).

        ``probe`` runs the real probe (the entry disabled) and returns a probe
        result dict; ``capability`` returns probe.capability()'s verdict (it
        writes nothing). Both default to the collection's probe selection."""
        if mode not in MODES:
            raise WindowError("mode: must be one of %s, got %r" % (", ".join(MODES), mode))
        if on_unsupported not in ("emulate", "fail"):
            raise WindowError("on_unsupported: must be 'emulate' or 'fail', got %r" % (on_unsupported,))
        given = bool(lease_id)
        lease_id = validate_lease_id(lease_id) if given else new_lease_id()
        owner_start = None
        if owner_pid is not None:
            owner_start = proc_start_time(owner_pid)
            if owner_start is None:
                raise WindowError("owner_pid: process %d does not exist; pass the pid of a running "
                                  "process whose end should close the lease" % owner_pid)
        if ttl is not None and ttl <= 0:
            raise WindowError("ttl: must be a positive number of seconds, got %r" % (ttl,))
        probe = probe or (lambda: default_probe(self.binfmt_misc))
        capability = capability or host_capability
        start = time.time()
        deadline = start + max(float(wait or 0), 0.0)

        if check_mode:          # predict, change nothing (no holder, no records, no toggle)
            from ansible_collections.nativearm.binfmt.plugins.module_utils._window_facts import open_check
            return open_check(self, mode, lease_id)

        # Fast path for an idempotent open, without starting a holder (a fresh id is not open).
        existing = self._existing(lease_id, deadline) if given else None
        if existing is not None:
            return existing

        expires = round(start + ttl, 3) if ttl else None
        holder = self.spawn_holder(lease_id, deadline, expires, owner_pid, owner_start)
        committed = False
        admitted = None
        seq = None
        token = "%s-%d" % (lease_id, os.getpid())
        try:
            blocker = None
            last_full = 0.0
            while True:
                if seq is not None and not self._worth_a_look(lease_id, mode, seq, deadline, last_full):
                    time.sleep(POLL)
                    continue
                last_full = time.time()
                with self.mutex(deadline):
                    existed = os.path.exists(self.state_path)
                    state = self.load()
                    before = self.summary(state)
                    self.recover(state)
                    if lease_id in state["leases"]:
                        state["waiters"].pop(token, None)
                        self.save(state)
                        result = self._result(state, lease_id, changed=False, before=before)
                        holder.dismiss()
                        committed = True
                        return result
                    foreign = self.look(state)
                    ok, blocker = admissible(state, mode, seq, foreign=foreign)
                    if ok:
                        waiting = state["waiters"].pop(token, None)
                        try:
                            admitted = self._admit_or_undo(existed, state, holder, mode, lease_id,
                                                           expires, owner_pid, owner_start, on_unsupported,
                                                           probe, before, capability=capability,
                                                           deadline=deadline)
                            break
                        except _NotNow:
                            ok, blocker = False, "foreign_native"
                            if waiting is not None:
                                state["waiters"][token] = waiting
                    if time.time() >= deadline:
                        state["waiters"].pop(token, None)
                        if mode == "native" and on_unsupported == "emulate" and state.get("mode") != "native":
                            ok = admissible(state, "emulation", ignore_fairness=True, foreign=foreign)[0]
                            if ok:
                                reason = ("native window not available after waiting %ss: %s"
                                          % (wait, self.holders_text(state, foreign)))
                                admitted = self._admit_or_undo(existed, state, holder, "emulation",
                                                               lease_id, expires, owner_pid, owner_start,
                                                               on_unsupported, probe, before, reason=reason,
                                                               deadline=deadline)
                                break
                        self.save(state)
                        what = {"window_mode": "the other mode's leases to drain",
                                "fairness": "earlier waiters of the other mode",
                                "foreign_native": "the native window of another coordinator (root-owned shared "
                                                  "locks on the entry: a PR #9769 builder, or this collection "
                                                  "with another run_dir or /run) to end",
                                "foreign_emulation": "emulation leases of another coordinator (another run_dir "
                                                     "or /run) to end"}.get(blocker, blocker)
                        holders = self.entry_lock_holders()
                        raise WindowError("%s: cannot open a %s lease on %s: waited %ss for %s; holders: %s"
                                          % (self.entry, mode, self.binfmt_misc, wait, what,
                                             self.holders_text(state, foreign)), holders)
                    if seq is None:
                        state["seq"] = int(state.get("seq") or 0) + 1
                        seq = state["seq"]
                        state["waiters"][token] = {"mode": mode, "seq": seq, "pid": os.getpid(),
                                                   "start": proc_start_time(os.getpid()),
                                                   "since": round(start, 3), "lease": lease_id}
                    self.save(state)
                time.sleep(POLL)
            self._commit(holder, admitted)
            committed = True
            return admitted
        finally:
            if not committed:
                holder.dismiss()
                if seq is not None:
                    self._forget_waiter(token)

    def _worth_a_look(self, lease_id, mode, seq, deadline, last_full):
        """A waiter looks at the records lock-free (they are replaced atomically)
        and takes the mutex only when it may be admitted, at its deadline, or
        every FULL_LOOK seconds so that dead leases and waiters get recovered.
        Many waiters polling under the mutex would starve the holders of it."""
        now = time.time()
        if now >= deadline or now - last_full >= FULL_LOOK:
            return True
        try:
            snapshot = self.load(move=False)
        except (IOError, OSError, ValueError, WindowError):
            return True
        if lease_id in snapshot["leases"]:
            return True
        return admissible(snapshot, mode, seq)[0] and admissible(snapshot, mode, seq, foreign=self.look(snapshot))[0]

    def _admit_or_undo(self, existed, state, holder, mode, lease_id, *args, **kwargs):
        """_admit, or on any failure (a record that cannot be written, a refusal, a
        fault, a signal) leave the host as it was before this open: _abandon."""
        try:
            return self._admit(state, holder, mode, lease_id, *args, **kwargs)
        except _NotNow:
            raise
        except BaseException as exc:
            self._abandon(holder, lease_id, existed)
            if isinstance(exc, RecordsWriteError):
                raise RecordsWriteError("%s: no %s lease was opened: %s; the entry is %s"
                                        % (self.entry, mode, exc.message, describe_status(self.entry_status())))
            raise

    def _abandon(self, holder, lease_id, existed):
        """Admission failed (mutex held): leave the host as it was before this open.
        The holder is SIGKILLed and waited for first (its LOCK_SH or marker gone, so
        they do not defer the restore); then the lease is taken out of the records
        on disk (the last version written: the in-memory state may be half done)
        and ``prior`` restored if it was the first. When that cannot be written
        either (a full run_dir) and there were no records before this open, the
        records it created go: nothing names the lease any more."""
        holder.kill()
        self._drop_lock_file({"lock": holder.lock_name})
        try:
            state = self.load()
        except Exception:      # pylint: disable=broad-except  # the original error is the one to report
            return
        try:
            if lease_id in state["leases"]:
                self._remove_lease(state, lease_id, "open_failed")
                self.save(state)
        except RecordsWriteError:
            if not existed and not state["leases"] and state.get("prior") is None:
                try:
                    os.unlink(self.state_path)
                except OSError:
                    pass
        except Exception:      # pylint: disable=broad-except  # recovery ends the dead lease later
            pass

    def _forget_waiter(self, token):
        try:
            with self.mutex():
                state = self.load()
                if state["waiters"].pop(token, None) is not None:
                    self.save(state)
        except WindowError:     # no mutex, or records unusable or unwritable:
            pass                # the open's own error is the one to report

    def _existing(self, lease_id, deadline):
        try:                        # records are replaced atomically: a lock-free look first
            if lease_id not in self.load(move=False)["leases"]:
                return None
        except (IOError, OSError, ValueError, RecordsCorrupt):
            return None
        with self.mutex(deadline):
            state = self.load()
            if lease_id not in state["leases"]:
                return None
            before = self.summary(state)
            if self.recover(state) or lease_id not in state["leases"]:
                self.save(state)
                return None
            return self._result(state, lease_id, changed=False, before=before)

    def _hold(self, state, holder, mode, deadline):
        """Under the mutex, before the entry is touched: have the holder take its
        mode's instance-wide mark (native: LOCK_SH on the entry; emulation: a
        marker on ``register``, dropping any LOCK_SH). Returns (marker offset or
        None, unprivileged exclusive lock holders that kept the LOCK_SH out).

        A root-owned LOCK_EX on the entry (a PR #9769 builder's "last out" test)
        is waited out until ``deadline``; an unprivileged one is not obeyed: the
        lease goes on without LOCK_SH and its holder keeps trying to take it."""
        while True:
            line = holder.request(handle.message(handle.HOLD, mode), HOLDER_START_WAIT)
            word, arg = handle.parse(line)
            if word == handle.HELD:
                return (int(arg) if arg else None), []
            if word != handle.BUSY:
                raise WindowError("the lease holder pid %d did not take its locks: %s" % (holder.pid, line or "no answer"))
            view = self.look(state, [holder.pid])
            blockers = [h for h in view["unprivileged"] if h["access"] == "WRITE" and not h["blocked"]]
            if not view["exclusive"] and blockers:
                return None, blockers
            if view["exclusive"] and time.time() >= deadline:
                raise WindowError("%s is locked exclusively by root-owned process(es), waited until the deadline for "
                                  "a shared lock: %s" % (self.entry_path, instance.describe(view["exclusive"])),
                                  view["exclusive"])
            time.sleep(0.005)

    def _admit(self, state, holder, mode, lease_id, expires, owner_pid, owner_start, on_unsupported, probe,
               before, reason=None, capability=None, deadline=None):
        """Admit the lease (caller holds the mutex and checked admissibility)."""
        now = time.time()
        first = state.get("mode") is None
        verdict = None
        if first and mode == "native":
            # Before anything is written: a host that cannot run AArch32 EL0 never
            # sees its entry disabled for a probe that cannot succeed.
            verdict = (capability or host_capability)()
            if verdict.get("native_possible") is False:
                why = verdict.get("reason") or "this host cannot run armhf natively"
                if on_unsupported == "fail":
                    raise WindowError("%s: no native armhf window: %s; the entry was not touched (%s)"
                                      % (self.entry, why, describe_status(self.entry_status())))
                return self._admit(state, holder, "emulation", lease_id, expires, owner_pid, owner_start,
                                   on_unsupported, probe, before, reason=why, deadline=deadline)
        marker, ignored = self._hold(state, holder, mode, max(deadline or 0, now + 5.0))
        view = self.look(state, [holder.pid], [marker])
        if mode == "emulation" and view["native"]:
            # a PR #9769 builder (no mutex) came in since the admissibility check
            if reason is None:
                self._hold(state, holder, "none", 0)        # drop the marker: it waits like any waiter
                raise _NotNow()
            raise WindowError("%s: cannot open an emulation lease on %s (%s): a native window of another "
                              "coordinator holds the entry (root-owned shared locks: %s)"
                              % (self.entry, self.binfmt_misc, reason, instance.describe(view["native"])),
                              view["native"])
        record = {"mode": mode, "pid": holder.pid, "start": holder.start,
                  "lock": holder.lock_name, "owner_pid": owner_pid,
                  "owner_start": owner_start, "created": round(now, 3), "expires": expires, "marker": marker}
        probe_result = None
        if first:
            status = self.entry_status()
            joined = mode == "native" and bool(view["native"]) and status["present"] and not status["enabled"]
            # Joining another coordinator's native window: the entry it found disabled is
            # that window's doing, so the prior state is the one before it, enabled.
            prior = {"present": True, "enabled": True} if joined else {"present": status["present"],
                                                                       "enabled": status["enabled"]}
            state.update(mode=mode, prior=prior, adopted=None, opened_at=round(now, 3), entry_ino=status["ino"],
                         boot_id=boot_id(), native=None, probe=None, tier=None,
                         foreign=sorted(h["pid"] for h in view["native"]) if joined else None,
                         phase_seq=int(state.get("seq") or 0))
            state["leases"][lease_id] = record
            self._event(state, "opened", lease=lease_id, detail="%s window; prior %s%s" % (
                mode, describe_prior(state["prior"]), "; joined the native window of another coordinator (%s)"
                % instance.describe(view["native"]) if joined else ""))
            self.save(state)                   # prior recorded before the entry is touched
            if mode == "native":
                self._apply(False)
            else:
                # (a PR #9769 builder takes no mutex: one that arrived during the save is
                # not re-enabled under; the holder defers to it, as in reassert)
                self._enable(state)
            if mode == "native" and verdict and verdict.get("native_possible"):
                probe_result = verdict.get("probe") or {"native": True, "method": verdict.get("method"),
                                                        "reason": verdict.get("reason")}
                probe_result = dict(probe_result, native=True)
                state["probe"] = short_probe(probe_result)
                state["native"] = True
            elif mode == "native":
                probe_result = probe()
                state["probe"] = short_probe(probe_result)
                if not probe_result.get("native"):
                    del state["leases"][lease_id]
                    self._hold(state, holder, "none", 0)    # its LOCK_SH goes first: the re-enable is guarded
                    deferred = self._restore(state, "probe_failed_rollback", lease=lease_id, ours=[holder.pid])
                    why = probe_result.get("reason") or "native probe failed"
                    if on_unsupported == "fail" or deferred:
                        self.save(state)
                        raise WindowError("%s: no native armhf window: %s; %s (%s)"
                                          % (self.entry, why, deferred or "the entry was put back",
                                             describe_status(self.entry_status())))
                    return self._admit(state, holder, "emulation", lease_id, expires, owner_pid, owner_start,
                                       on_unsupported, probe, before, reason=why, deadline=deadline)
                state["native"] = True
            else:
                state["native"] = False
        else:
            # Joins and plain closes are not events: the lease list shows them, and at
            # MAX_EVENTS a busy host would push the events that matter out of the ring.
            state["leases"][lease_id] = record
        self.save(state)
        result = self._result(state, lease_id, changed=True, before=before)
        result["first"] = first
        result["reason"] = reason
        result["probe"] = short_probe(probe_result) if probe_result else None
        result["foreign_windows"] = {"native": [h["pid"] for h in view["native"]], "emulation": len(view["emulation"])}
        unprivileged = ignored or view["unprivileged"]
        if unprivileged:
            result["lock_holders_ignored"] = unprivileged
            result["warning"] = ("unprivileged processes hold locks on %s; they are not obeyed (they can neither "
                                 "block a window nor keep the entry disabled): %s"
                                 % (self.entry_path, instance.describe(unprivileged)))
        return result

    def _commit(self, holder, result):
        """After the mutex is released: tell the holder its lease is admitted
        (``commit MODE``, the effective mode) and wait for ``ok`` and for it to
        close its pipes. The lease is live from admission on (the holder holds
        its lock); until ``commit`` the holder only does not watch yet."""
        if holder.commit(result["mode"]):
            return
        holder.kill()                       # its lease is dead now: recover it like any other
        with self.mutex():
            state = self.load()
            if self.recover(state) or result["lease_id"] not in state["leases"]:
                self.save(state)
        raise WindowError("the lease holder pid %d ended before it was committed (killed, or the lease was "
                          "closed meanwhile); the window was recovered" % holder.pid)

    def _result(self, state, lease_id, changed, before=None):
        record = state["leases"].get(lease_id) or {}
        status = self.entry_status()
        return lease_result(changed, lease_id, status, before, self.summary(state), mode=record.get("mode"),
                            native=bool(state.get("native")) if record.get("mode") == "native" else False,
                            leases=len(state["leases"]), prior_state=prior_text(state.get("prior")),
                            holder_pid=record.get("pid"), expires=record.get("expires"))

    # -- close -----------------------------------------------------------------
    def close(self, lease_id, wait=30, check_mode=False):
        validate_lease_id(lease_id)
        deadline = time.time() + max(float(wait or 0), 0.0)
        if not self.exists() or not (os.path.exists(self.state_path) or corrupt_files(self.dir, self.entry)):
            state = empty_state(self.entry)
            return self._closed_result(state, lease_id, None, False, False, self.summary(state))
        if check_mode:
            from ansible_collections.nativearm.binfmt.plugins.module_utils._window_facts import close_check
            return close_check(self, lease_id)
        save_error = None
        with self.mutex(deadline):
            try:
                state = self.load()
            except RecordsCorrupt as exc:
                from ansible_collections.nativearm.binfmt.plugins.module_utils._window_repair import close_salvage
                return close_salvage(self, lease_id, exc)
            before = self.summary(state)
            record = state["leases"].get(lease_id)
            # Recovery first: it may end this very lease, if its holder died (even
            # a moment ago: a SIGKILLed holder's lock goes when its exit completes).
            recovered = self.recover(state)
            if record is None:
                if recovered:
                    self.save(state)
                return self._closed_result(state, lease_id, None, False, False, before)
            if lease_id not in state["leases"]:
                self.save(state)
                return self._closed_result(state, lease_id, record, True, recovered == "restored", before)
            last = len(state["leases"]) == 1
            # A last lease out decides whether to restore by what other coordinators hold,
            # so a closed lease's holder must be gone before the mutex is released: one that
            # outlived its record would look like another coordinator's native window to the
            # next last-out close, which would then defer its restore for good. It is ours
            # and under the mutex it can do nothing: SIGKILL, and wait for its exit.
            kill_recorded(record.get("pid"), record.get("start"))
            record, restored = self._remove_lease(state, lease_id, "closed")
            events = state.get("events") or [{}]
            deferred = events[-1].get("detail") if last and events[-1].get("event") == "restore_deferred" else None
            try:
                self.save(state)
            except RecordsWriteError as exc:
                # The entry is already as the close leaves it (restored when last out). The
                # records on disk still name this lease: once its holder has exited, the next
                # open, close or binfmt_drift finds it dead and recovers, to the same state.
                save_error = exc.message
        if deferred:
            result = self._closed_result(state, lease_id, record, True, False, before)
            result["reason"] = "restore deferred: " + deferred
        else:
            result = self._closed_result(state, lease_id, record, True, restored, before)
        if restored and self.ignored:
            result["lock_holders_ignored"] = self.ignored
            result["warning"] = ("unprivileged processes hold locks on %s; they were not obeyed and the entry was "
                                 "put back: %s" % (self.entry_path, instance.describe(self.ignored)))
        if save_error:
            result["warning"] = ("lease %s was closed%s, but %s; the next open or close, or binfmt_drift, "
                                 "tidies them%s" % (lease_id, " and the entry put back" if restored else "",
                                                    save_error, "; " + result["warning"] if result.get("warning")
                                                    else ""))
        return result

    def _closed_result(self, state, lease_id, record, changed, restored, before, after=None):
        status = self.entry_status()
        result = lease_result(changed, lease_id, status, before, after or self.summary(state),
                              mode=record.get("mode") if record else None, leases=len(state["leases"]),
                              restored=restored, holder_pid=record.get("pid") if record else None,
                              prior_state=(before or {}).get("prior_state") if restored
                              else prior_text(state.get("prior")))
        if record is None:
            result["warning"] = ("lease %s is not open on %s (already closed, expired, or never opened); "
                                 "nothing changed" % (lease_id, self.entry))
        return result

    # -- used by holders ---------------------------------------------------------
    def end_lease(self, lease_id, why):
        """A holder ends its own lease (ttl, owner gone, signal, opener gone).
        With corrupt records it ends touching nothing: it cannot know whether it
        is the last holder, and a close or binfmt_drift restores."""
        with self.mutex():
            try:
                state = self.load()
            except RecordsCorrupt:
                return
            if lease_id in state["leases"]:
                self._remove_lease(state, lease_id, why, own=True)
                self.recover(state)
                self.save(state)

    def reassert(self, lease_id, mode, held_ino, relock=None):
        """Under the mutex, put the entry back in ``mode``'s state if something
        changed it. Returns (still_open, new entry inode or None, deferred): an
        emulation lease does not re-enable the entry under a native window of
        another coordinator (a PR #9769 builder that arrived and disabled it):
        ``deferred`` is then True, and that window's last out re-enables it.

        ``held_ino``: the inode a native holder holds its LOCK_SH on (None: none).
        ``relock()``: a native holder's one non-blocking try at LOCK_SH on the entry
        as it is now; returns the inode it then holds it on, or None. When the entry
        is not the inode ``held_ino`` (re-registered, appeared), the LOCK_SH is moved
        to it here, under the mutex and before ``0`` is written: a last-out test of
        another coordinator (LOCK_EX|LOCK_NB on a fresh descriptor) between our write
        and our LOCK_SH would find no native window user and re-enable under us."""
        with self.mutex():
            try:
                state = self.load()
            except RecordsCorrupt:
                return False, None, False   # our record is gone with them: end, touching nothing
            if lease_id not in state["leases"]:
                return False, None, False
            status = self.entry_status()
            if relock is not None and mode == "native" and status["present"] and status["ino"] != held_ino:
                status = self._relock(state, relock)
            want = desired_enabled(state.get("mode") or mode)
            changed = False
            if status["present"] and status["ino"] != state.get("entry_ino"):
                prior = state.get("prior") or {}
                kind = "entry_recreated" if state.get("entry_ino") is not None else "entry_appeared"
                if not prior.get("present") and state.get("adopted") is None:
                    state["adopted"] = bool(status["enabled"])
                state["entry_ino"] = status["ino"]
                self._event(state, kind, lease=lease_id, detail="new inode %d, found %s" % (
                    status["ino"], "enabled" if status["enabled"] else "disabled"))
                changed = True
            elif not status["present"] and state.get("entry_ino") is not None:
                state["entry_ino"] = None
                self._event(state, "entry_vanished", lease=lease_id)
                changed = True
            deferred = False
            if status["present"] and status["enabled"] != want:
                self.ignored = []
                native = self._enable(state) if want else None
                if native:
                    deferred = True
                    events = state.get("events") or [{}]
                    if events[-1].get("event") != "reassert_deferred" or events[-1].get("lease") != lease_id:
                        self._event(state, "reassert_deferred", lease=lease_id, detail=(
                            "entry disabled by a native window of another coordinator (%s); not re-enabled "
                            "under it" % instance.describe(native)))
                        changed = True
                else:
                    if not want:
                        self._apply(False)
                    self._event(state, "reasserted", lease=lease_id, detail="entry was %s behind our back; %s again%s"
                                % ("enabled" if status["enabled"] else "disabled",
                                   "enabled" if want else "disabled", self._ignored_text()))
                    changed = True
            if changed:
                self.save(state)
            return True, status["ino"], deferred

    def _relock(self, state, relock):
        """A native holder's LOCK_SH onto the entry's current inode (mutex held),
        before the entry is written: non-blocking tries until RELOCK_WAIT. A root
        LOCK_EX (a PR #9769 builder's last-out test, milliseconds) is waited out;
        an unprivileged one is not obeyed (the holder keeps trying afterwards).
        Returns the entry status to decide on (read after the lock was taken)."""
        end = time.time() + RELOCK_WAIT
        while True:
            held = relock()
            status = self.entry_status()
            if not status["present"] or (held is not None and held == status["ino"]) or time.time() >= end:
                return status
            if held is None:        # a LOCK_EX was in the way; a root one may be gone already
                view = self.look(state)
                if not view["exclusive"] and [h for h in view["unprivileged"]
                                              if h["access"] == "WRITE" and not h["blocked"]]:
                    return status   # an unprivileged LOCK_EX keeps it out: not obeyed
            time.sleep(0.001)

    # -- facts (binfmt_info, binfmt_drift's check) and repair (binfmt_drift) -------
    def facts(self):
        """Window facts, read-only (_window_facts.facts)."""
        from ansible_collections.nativearm.binfmt.plugins.module_utils._window_facts import facts
        return facts(self)

    def repair(self):
        """binfmt_drift's repair, under the mutex (_window_repair.repair): end a stale
        window, or repair corrupt records. Returns "restored", "dropped",
        "records_repaired" or None (nothing to repair)."""
        from ansible_collections.nativearm.binfmt.plugins.module_utils._window_repair import repair
        return repair(self)

    def reenable(self):
        """binfmt_drift's ``enable`` of this entry, under the mutex and through _enable
        (_window_repair.reenable). Returns None when done, else why it was left."""
        from ansible_collections.nativearm.binfmt.plugins.module_utils._window_repair import reenable
        return reenable(self)


def window_facts(entry=DEFAULT_ENTRY, binfmt_misc=DEFAULT_BINFMT_MISC, run_dir=DEFAULT_RUN_DIR):
    """For binfmt_info and binfmt_drift's check: the window facts, read-only."""
    try:
        window = Window(entry, binfmt_misc, run_dir)
    except WindowError as exc:
        return {"entry": entry, "error": exc.message, "stale": False, "lease_count": 0, "leases": [],
                "mode": None, "prior_state": None, "events": [], "lock_holders": [], "stale_refusal": None,
                "corrupt": None}
    return window.facts()
