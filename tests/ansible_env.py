"""Run the collection's modules and playbooks for real, from tests.

The repository root is the collection root; a symlink tree under .cache
makes it importable as ansible_collections.nativearm.binfmt.
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
BIN = os.path.dirname(sys.executable)


def collections_path():
    link = os.path.join(COLLECTIONS, "ansible_collections", "nativearm", "binfmt")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        try:
            os.symlink(ROOT, link)
        except FileExistsError:
            pass
    return COLLECTIONS


def ansible_env(result_file=None, extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "plugins", "callback"),
        "ANSIBLE_CALLBACKS_ENABLED": "result_file",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
    })
    if result_file:
        env["NATIVEARM_RESULT_FILE"] = result_file
    env.update(extra or {})
    return env


def read_results(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_module(module, args, check=False, diff=False, wrap=None, env=None, timeout=300):
    """Run nativearm.binfmt.<module> (or a FQCN) once on localhost; return its result dict.

    ``wrap`` prefixes the command (e.g. Instance.nsenter) to run it inside a sandbox.
    """
    fqcn = module if "." in module else "nativearm.binfmt." + module
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as tmp:
        result_file = tmp.name
    argv = [os.path.join(BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local",
            "-m", fqcn, "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if wrap:
        argv = wrap(argv)
    try:
        proc = subprocess.run(argv, check=False, env=ansible_env(result_file, env), capture_output=True,
                              text=True, timeout=timeout)
        results = read_results(result_file)
    finally:
        os.unlink(result_file)
    if not results:
        raise AssertionError("no result from %s (rc %d)\nstdout:\n%s\nstderr:\n%s"
                             % (fqcn, proc.returncode, proc.stdout, proc.stderr))
    result = results[-1]
    result["_rc"] = proc.returncode
    result["_stdout"] = proc.stdout
    return result


def run_playbook(playbook, extra_vars=None, check=False, diff=False, wrap=None, env=None,
                 args=(), timeout=1800):
    """Run ansible-playbook against localhost; return (CompletedProcess, results list)."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as tmp:
        result_file = tmp.name
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", playbook]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    argv += list(args)
    if wrap:
        argv = wrap(argv)
    try:
        proc = subprocess.run(argv, check=False, env=ansible_env(result_file, env), capture_output=True,
                              text=True, timeout=timeout)
        results = read_results(result_file) if os.path.getsize(result_file) else []
    finally:
        os.unlink(result_file)
    return proc, results
