"""A private binfmt_misc instance held by a long-lived sandbox process.

``Instance`` starts ``nsrun.py -- cat`` (new user + mount namespace, full
identity id map, fresh binfmt_misc over /proc/sys/fs/binfmt_misc) and gives
two views of it:

- ``path``: the instance as seen from the calling process, through
  ``/proc/PID/root``; module_utils functions, flock(2) and file checks can
  use it directly;
- ``run(argv)``: runs a command *inside* the namespaces (nsenter), where the
  instance sits at the default /proc/sys/fs/binfmt_misc, so modules and
  playbooks run exactly as on a host.

Every instance is independent and disappears with its process.
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NSRUN = os.path.join(HERE, "nsrun.py")
INNER_PATH = "/proc/sys/fs/binfmt_misc"


class Instance(object):
    def __init__(self):
        # The sandbox lives until its stdin reaches end of file: close() ends it, and so
        # does the death of this process (and of any forked child sharing the pipe), so an
        # interrupted test run never leaves an instance, or holders watching it, behind.
        self.proc = subprocess.Popen(
            [sys.executable, NSRUN, "--", "sh", "-c", "echo ready; exec cat > /dev/null"],
            stdout=subprocess.PIPE, stdin=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.proc.kill()
            raise RuntimeError("sandbox did not start (is this Linux >= 6.7, run as root?)")
        self.pid = self.proc.pid
        self.path = "/proc/%d/root%s" % (self.pid, INNER_PATH)
        deadline = time.time() + 5
        while not os.path.exists(os.path.join(self.path, "register")):
            if time.time() > deadline:
                self.close()
                raise RuntimeError("private binfmt_misc did not appear at %s" % self.path)
            time.sleep(0.01)

    def nsenter(self, argv):
        """argv prefixed so that it runs inside this instance's namespaces."""
        return ["nsenter", "-t", str(self.pid), "-U", "-m", "--preserve-credentials", "--"] + list(argv)

    def run(self, argv, check=False, **kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.nsenter(argv), check=check, **kwargs)

    def snapshot(self):
        """name -> entry file text, for byte-identical before/after checks."""
        state = {}
        for name in sorted(os.listdir(self.path)):
            if name == "register":
                continue
            with open(os.path.join(self.path, name)) as f:
                state[name] = f.read()
        return state

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe:
                pipe.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
