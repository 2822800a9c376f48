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
        "ANSIBLE_TIMEOUT": "60",
        "ANSIBLE_PIPELINING": "1",
        "PATH": VENV_BIN + os.pathsep + e.get("PATH", ""),
    })
    e.update(extra or {})
    return e


def module(inventory, host, name, args, check=False, become=True, timeout=900):
    """Run one module on one host; return its result dict plus `_rc` (never raises on failure)."""
    fqcn = name if "." in name else "nativearm.binfmt." + name
    argv = [os.path.join(VENV_BIN, "ansible"), host, "-i", inventory, "-m", fqcn,
            "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if become:
        argv.append("--become")
    proc = subprocess.run(argv, env=env({"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
                                         "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}),
                          check=False, capture_output=True, text=True, timeout=timeout)
    try:
        data = json.loads(proc.stdout)
        result = data["plays"][0]["tasks"][0]["hosts"][host]
    except (ValueError, KeyError, IndexError):
        raise AssertionError("no result from %s on %s (rc %d)\nstdout:\n%s\nstderr:\n%s"
                             % (fqcn, host, proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:]))
    result["_rc"] = proc.returncode
    return result


def playbook(inventory, playbook_path, extra_vars=None, check=False, limit=None, timeout=1800,
             tags=None):
    """Run a playbook; return the CompletedProcess (stdout is the json callback's document)."""
    argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, playbook_path]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    if limit:
        argv += ["--limit", limit]
    if tags:
        argv += ["--tags", tags]
    return subprocess.run(argv, env=env({"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}),
                          check=False, capture_output=True, text=True, timeout=timeout)


def popen_playbook(inventory, playbook_path, extra_vars=None, limit=None):
    """Start a playbook in the background (for concurrent runs); json callback on stdout."""
    argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, playbook_path]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if limit:
        argv += ["--limit", limit]
    return subprocess.Popen(argv, env=env({"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def task_results(stdout, host):
    """[(task name, result dict)] for host from a json-callback playbook run, in order."""
    data = json.loads(stdout)
    out = []
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            if host in task.get("hosts", {}):
                out.append((task["task"]["name"], task["hosts"][host]))
    return out
