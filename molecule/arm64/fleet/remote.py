"""Drive the fleet from the controller: one module or playbook run, result as a dict.

Used by the scenario's verify tests and the benchmark. Runs the real
`ansible` / `ansible-playbook` of the project's venv with the collection on
ANSIBLE_COLLECTIONS_PATH, against an inventory of the fleet (molecule's, or
the one fleet.py writes).
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def collections_path():
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import ansible_env
    return ansible_env.collections_path()


def env(extra=None):
    e = dict(os.environ)
    e.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",  # molecule exports it as true for its own output
        "ANSIBLE_TIMEOUT": "60",
        "ANSIBLE_PIPELINING": "1",
        "PATH": VENV_BIN + os.pathsep + e.get("PATH", ""),
    })
    e.update(extra or {})
    return e


def _result_env(result_file, extra=None):
    """Results as JSON lines through the test callback tests/plugins/callback/result_file.py
    (one line per task result; every run here targets one host)."""
    e = {"ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "plugins", "callback"),
         "ANSIBLE_CALLBACKS_ENABLED": "result_file",
         "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
         "NATIVEARM_RESULT_FILE": result_file}
    e.update(extra or {})
    return env(e)


def _new_result_file():
    fd, path = tempfile.mkstemp(prefix="arm64-results-", suffix=".jsonl")
    os.close(fd)
    return path


def read_results(result_file, remove=True):
    """[(task name, result dict)] in order."""
    try:
        with open(result_file) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    finally:
        if remove:
            os.unlink(result_file)
    return [(r.get("_task"), r) for r in rows]


def module(inventory, host, name, args, check=False, become=True, timeout=900):
    """Run one module on one host; return its result dict plus `_rc` (never raises on failure)."""
    fqcn = name if "." in name else "nativearm.binfmt." + name
    argv = [os.path.join(VENV_BIN, "ansible"), host, "-i", inventory, "-m", fqcn]
    if args:  # an empty "-a {}" would be taken as raw params
        argv += ["-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if become:
        argv.append("--become")
    result_file = _new_result_file()
    proc = subprocess.run(argv, env=_result_env(result_file), check=False, capture_output=True,
                          text=True, timeout=timeout)
    results = read_results(result_file)
    if not results:
        raise AssertionError("no result from %s on %s (rc %d)\nstdout:\n%s\nstderr:\n%s"
                             % (fqcn, host, proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:]))
    result = results[-1][1]
    result["_rc"] = proc.returncode
    result["failed"] = result.get("_status") == "failed"
    return result


class Run(object):
    """A finished playbook run: returncode, stdout, stderr and the task results."""

    def __init__(self, returncode, stdout, stderr, results):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.results = results


def _playbook_argv(inventory, playbook_path, extra_vars, check, limit, tags):
    argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, playbook_path]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    if limit:
        argv += ["--limit", limit]
    if tags:
        argv += ["--tags", tags]
    return argv


def playbook(inventory, playbook_path, extra_vars=None, check=False, limit=None, timeout=1800,
             tags=None, extra_env=None):
    """Run a playbook to the end; return a Run. extra_env: more environment (for example more
    callbacks in ANSIBLE_CALLBACKS_ENABLED)."""
    result_file = _new_result_file()
    proc = subprocess.run(_playbook_argv(inventory, playbook_path, extra_vars, check, limit, tags),
                          env=_result_env(result_file, extra_env), check=False, capture_output=True,
                          text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr, read_results(result_file))


class Background(object):
    """A playbook started in the background (for concurrent runs); wait() gives a Run."""

    def __init__(self, inventory, playbook_path, extra_vars=None, limit=None):
        self.result_file = _new_result_file()
        self.proc = subprocess.Popen(
            _playbook_argv(inventory, playbook_path, extra_vars, False, limit, None),
            env=_result_env(self.result_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        self._run = None

    def done(self):
        """True once the playbook has exited (a wait for a marker can stop early then)."""
        return self.proc.poll() is not None

    def wait(self, timeout=1800):
        if self._run is None:  # a second wait returns the same Run
            out, err = self.proc.communicate(timeout=timeout)
            self._run = Run(self.proc.returncode, out, err, read_results(self.result_file))
        return self._run
