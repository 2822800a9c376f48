"""A fleet of simulated build hosts on one machine, for tests and benchmarks.

Each inventory host is a long-lived private instance (``Instance``: its own user +
mount namespace and binfmt_misc), reached through the test-only connection
``tests/plugins/connection/nsfleet.py``. Inside its mount namespace a host also has:

- its own /run (a tmpfs): window lease records and holders' lock files;
- a private copy-on-write view (overlayfs over the machine's directory, the upper
  layer on a tmpfs of the host's own) of /etc, /usr/share/binfmts,
  /usr/lib/binfmt.d and /var/lib: the host starts with the machine's descriptors and
  dpkg database, and whatever the collection writes there (binfmt.d files,
  update-binfmts' database, the recorded desired state, the drift report) stays the
  host's and disappears with it;

and shares the rest of the file system with the machine (so package installation
is skipped: ``--skip-tags packages``). Every host starts with a qemu-arm entry whose
interpreter exists; ``Fleet.inject_drift`` then gives every other host (the first
one included) one of DRIFT_KINDS in turn.

Nothing here touches the machine's global binfmt_misc or its files.
"""
import concurrent.futures
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(ROOT, "plugins", "module_utils"))

import binfmt_misc as bm  # noqa: E402  (the collection's kernel interface)
from ansible_env import BIN, ansible_env, read_results  # noqa: E402
from presets import preset  # noqa: E402
from sandbox.instance import Instance  # noqa: E402

CONNECTION_PLUGINS = os.path.join(TESTS, "plugins", "connection")
PLAYBOOKS = os.path.join(ROOT, "playbooks")
ENTRY = "qemu-arm"
CAPABILITY_ENV = "NATIVEARM_BINFMT_CAPABILITY"  # probe.CAPABILITY_ENV
# Directories each host gets a private copy-on-write view of (those that exist here).
PRIVATE_DIRS = ("/etc", "/usr/share/binfmts", "/usr/lib/binfmt.d", "/var/lib")
DRIFT_KINDS = ("disabled", "reregistered", "stale_window")
# qemu-arm interpreters as Debian's qemu-user-static registers them, and the static one.
INTERPRETERS = (("/usr/libexec/qemu-binfmt/arm-binfmt-P", "PF"), ("/usr/bin/qemu-arm-static", "F"))
HELLO_SOURCE = os.path.join(ROOT, "roles", "native_armhf_build", "files", "hello_armhf.c")
# Inside the host's namespaces: $1 is its scratch mount point, then the directories to cover.
SETUP = r"""
set -e
scratch=$1; shift
mount -t tmpfs -o mode=0700 nsfleet-scratch "$scratch"
mount -t tmpfs -o mode=0755 nsfleet-run /run
i=0
for dir in "$@"; do
    [ -d "$dir" ] || continue
    i=$((i + 1))
    mkdir "$scratch/$i" "$scratch/$i/upper" "$scratch/$i/work"
    chmod --reference="$dir" "$scratch/$i/upper"
    chown --reference="$dir" "$scratch/$i/upper"
    mount -t overlay nsfleet-overlay \
        -o "lowerdir=$dir,upperdir=$scratch/$i/upper,workdir=$scratch/$i/work,userxattr" "$dir"
done
"""


def drift_plan(names):
    """Host name -> drift kind (None for a clean host): every other host, kinds in turn."""
    return {name: (DRIFT_KINDS[(i // 2) % len(DRIFT_KINDS)] if i % 2 == 0 else None)
            for i, name in enumerate(names)}


def seed_interpreter():
    for path, flags in INTERPRETERS:
        if os.access(path, os.X_OK):
            return path, flags
    raise RuntimeError("no qemu-arm interpreter on this machine (%s)" % ", ".join(choice[0] for choice in INTERPRETERS))


def arm_definition(interpreter, flags):
    magic, mask, offset = preset("arm")
    return bm.make_definition(ENTRY, interpreter, magic=magic, mask=mask, offset=offset, flags=flags)


def compile_hello(directory):
    """The demo program, built once as a static armhf binary; its path."""
    out = os.path.join(directory, "hello_armhf")
    subprocess.run(["arm-linux-gnueabihf-gcc", "-static", "-O2", "-o", out, HELLO_SOURCE], check=True)
    return out


def recap(stdout):
    """Host -> {ok, changed, unreachable, failed, ...} from the PLAY RECAP."""
    hosts = {}
    lines = stdout.split("PLAY RECAP")[-1].splitlines()
    for line in lines:
        if ":" not in line or "ok=" not in line:
            continue
        host, counts = line.split(":", 1)
        hosts[host.strip()] = {k: int(v) for k, v in (pair.split("=") for pair in counts.split())}
    return hosts


class Run(object):
    """One ansible command: its process, per-task results, wall and controller CPU time."""

    def __init__(self, argv, proc, results, wall, cpu):
        self.argv, self.proc, self.results, self.wall, self.cpu = argv, proc, results, wall, cpu

    @property
    def recap(self):
        return recap(self.proc.stdout)

    def by_host(self, task=None, key=None):
        """Host -> last result (of ``task``, or holding ``key``)."""
        found = {}
        for r in self.results:
            if (task is None or r.get("_task") == task) and (key is None or key in r):
                found[r.get("_host")] = r
        return found

    def tail(self, n=4000):
        return (self.proc.stdout[-n:] + "\n" + self.proc.stderr[-n:]).strip()


class Fleet(object):
    def __init__(self, size, directory=None, pipelining=True):
        self.names = ["h%02d" % (i + 1) for i in range(size)]
        self.own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="nsfleet-")
        os.makedirs(self.dir, exist_ok=True)
        self.pipelining = pipelining
        self.instances = {}
        self.drift = {}
        self.provisioned = {}
        self.host_vars = {}
        self.inventory = os.path.join(self.dir, "inventory.json")
        self.interpreter, self.flags = seed_interpreter()

    # -- hosts ---------------------------------------------------------------------------------

    def start(self, workers=8):
        try:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                for name, inst in zip(self.names, pool.map(self._start_host, self.names)):
                    self.instances[name] = inst
        except BaseException:
            self.close()
            raise
        self.write_inventory()
        return self

    def _start_host(self, name):
        scratch = os.path.join(self.dir, "hosts", name)
        os.makedirs(scratch)
        inst = Instance()
        try:
            done = inst.run(["sh", "-c", SETUP, "sh", scratch] + list(PRIVATE_DIRS))
            if done.returncode:
                raise RuntimeError("%s: sandbox set-up failed: %s" % (name, done.stderr.strip()))
            bm.register(arm_definition(self.interpreter, self.flags), inst.path)
        except BaseException:
            inst.close()
            raise
        return inst

    def write_inventory(self):
        hosts = {}
        for name, inst in self.instances.items():
            hosts[name] = {"nsfleet_nsenter": inst.nsenter([]), "nsfleet_root": "/proc/%d/root" % inst.pid}
            hosts[name].update(self.host_vars.get(name, {}))
        children = {}
        for name, kind in self.drift.items():
            if kind:
                children.setdefault("drift_" + kind, {"hosts": {}})["hosts"][name] = {}
        inventory = {"all": {"hosts": hosts, "children": children,
                             "vars": {"ansible_connection": "nsfleet",
                                      "ansible_python_interpreter": sys.executable}}}
        with open(self.inventory, "w") as f:
            json.dump(inventory, f, indent=1)

    def path(self, name):
        """The host's binfmt_misc as this process sees it."""
        return self.instances[name].path

    def entry(self, name):
        return bm.read_entry(ENTRY, self.path(name))

    def snapshot(self, name):
        return self.instances[name].snapshot()

    def read_file(self, name, path):
        """A file as the host sees it (its private /run, /etc, /var/lib...); None when it is absent."""
        try:
            with open("/proc/%d/root%s" % (self.instances[name].pid, path)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def close(self):
        for inst in self.instances.values():
            inst.close()
        self.instances = {}
        hosts = os.path.join(self.dir, "hosts")
        if os.path.isdir(hosts):
            for name in os.listdir(hosts):
                os.rmdir(os.path.join(hosts, name))  # empty: the scratch tmpfs died with its host
            os.rmdir(hosts)
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- ansible -------------------------------------------------------------------------------

    def env(self, forks, extra=None):
        values = {"ANSIBLE_CONNECTION_PLUGINS": CONNECTION_PLUGINS, "ANSIBLE_FORKS": str(forks),
                  "ANSIBLE_PIPELINING": "1" if self.pipelining else "0", "ANSIBLE_RETRY_FILES_ENABLED": "0"}
        values.update(extra or {})
        return values

    def ansible(self, argv, forks=10, env=None, timeout=1800):
        """Run ``ansible`` or ``ansible-playbook`` (argv[0]) on the fleet's inventory."""
        argv = [os.path.join(BIN, argv[0]), "-i", self.inventory] + list(argv[1:])
        fd, result_file = tempfile.mkstemp(suffix=".jsonl", dir=self.dir)
        os.close(fd)
        full_env = ansible_env(result_file)
        # The hosts decide what they can run as real hosts do (the test suite lets a stand-in
        # probe decide: not here, unless the caller says so).
        full_env.pop(CAPABILITY_ENV, None)
        full_env.update(self.env(forks, env))
        try:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.monotonic()
            proc = subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)
            wall = time.monotonic() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            results = read_results(result_file)
        finally:
            os.unlink(result_file)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return Run(argv, proc, results, wall, cpu)

    def playbook(self, name, *args, **kwargs):
        return self.ansible(["ansible-playbook", os.path.join(PLAYBOOKS, name + ".yml")] + list(args), **kwargs)

    def ping(self, **kwargs):
        return self.ansible(["ansible", "all", "-m", "ansible.builtin.ping"], **kwargs)

    # -- the fleet's life: provision, drift ----------------------------------------------------

    def provision(self, forks=10):
        """Provision every host (packages skipped); remember each host's provisioned state."""
        args = ["--skip-tags", "packages"]
        if not role_has_tags("build_host"):
            args += ["-e", json.dumps({"build_host_install_packages": False})]
        run = self.playbook("provision", *args, forks=forks)
        if run.proc.returncode:
            raise RuntimeError("provision failed:\n" + run.tail())
        self.provisioned = {name: self.snapshot(name) for name in self.names}
        if not drift_uses_recorded_state():
            # Until binfmt_drift reads the state build_host records: give it as input.
            self.host_vars = {name: {"binfmt_drift_entries": [self.desired_entry(name)]} for name in self.names}
            self.write_inventory()
        return run

    def desired_entry(self, name):
        entry = bm.parse_entry(self.provisioned[name][ENTRY], ENTRY)
        return {"name": ENTRY, "interpreter": entry["interpreter"], "flags": entry["flags"],
                "magic": entry["magic"], "mask": entry["mask"], "offset": entry["offset"],
                "enabled": entry["enabled"]}

    def inject_drift(self, forks=10):
        """Give every other host one kind of drift; returns host -> kind (None: clean)."""
        self.drift = drift_plan(self.names)
        self.write_inventory()
        for name, kind in self.drift.items():
            if kind == "disabled":
                bm.set_enabled(ENTRY, False, self.path(name))
            elif kind == "reregistered":
                current = self.entry(name)["interpreter"]
                other = [(p, f) for p, f in INTERPRETERS if p != current and os.access(p, os.X_OK)]
                interpreter, flags = other[0] if other else ("/bin/true", "F")
                bm.unregister(ENTRY, self.path(name))
                bm.register(arm_definition(interpreter, flags), self.path(name))
        if "stale_window" in self.drift.values():
            self._stale_windows(forks)
        return self.drift

    def _stale_windows(self, forks):
        """A native window opened on each drift_stale_window host, its holder then SIGKILLed:
        qemu-arm is left disabled with the window's records saying so."""
        args = {"state": "open", "probe": ["/bin/true"], "ttl": 3600}
        # /bin/true stands in for an arm64 kernel that runs armhf natively (probe.CAPABILITY_ENV)
        run = self.ansible(["ansible", "drift_stale_window", "-m", "nativearm.binfmt.native_armhf_window",
                            "-a", json.dumps(args)], forks=forks, env={CAPABILITY_ENV: "probe"})
        leases = run.by_host(key="holder_pid")
        wanted = [n for n, k in self.drift.items() if k == "stale_window"]
        if sorted(leases) != sorted(wanted) or not all(leases[n].get("native") for n in wanted):
            raise RuntimeError("could not open the native windows to leave stale:\n" + run.tail())
        for name in wanted:
            pid = leases[name]["holder_pid"]
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid)
            if self.entry(name)["enabled"]:
                raise RuntimeError("%s: qemu-arm enabled after its window's holder was killed" % name)


def wait_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.02)
    raise RuntimeError("process %d still alive %d s after SIGKILL" % (pid, timeout))


def role_has_tags(role):
    with open(os.path.join(ROOT, "roles", role, "tasks", "main.yml")) as f:
        return "tags:" in f.read()


def drift_uses_recorded_state():
    """Whether binfmt_drift falls back to the state build_host recorded (issue 13)."""
    with open(os.path.join(ROOT, "plugins", "modules", "binfmt_drift.py")) as f:
        return "desired_state_file" in f.read()
