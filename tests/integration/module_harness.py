"""Run many module calls in one Python process, each checked for a clean refusal and an unchanged host.

usage: module_harness.py CASES.json RESULTS.jsonl

Runs inside a sandbox (tests/sandbox: nsenter into a private binfmt_misc instance). CASES is a
JSON list of {"id", "module", "args", "check", "watch": [paths]}; for each case the module's
``main()`` runs in this process with the args patched in (as ansible's own module unit tests
do), its stdout is the module's JSON result, and every path in ``watch`` (the binfmt_misc
directory, descriptor directories, run directories) is snapshot before and after: names, file
types, modes, owners, link targets and contents. One JSON line per case goes to RESULTS:
{"id", "result", "exit", "unchanged", "changes", "error"}. Ansible's process-per-module is about
a second of CPU per call; this runs hundreds of calls in seconds, so a large corpus fits CI time.
"""
import contextlib
import importlib
import io
import json
import os
import stat
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ansible_env import collections_path  # noqa: E402

sys.path.insert(0, collections_path())

from ansible.module_utils import basic  # noqa: E402

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:   # ansible-core < 2.19
    @contextlib.contextmanager
    def patch_module_args(args):
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved


def snapshot(paths):
    """{path: (kind, mode, uid, gid, content or link target)} of everything under ``paths``."""
    state = {}

    def add(path):
        try:
            st = os.lstat(path)
        except OSError as exc:
            state[path] = ("error", exc.errno)
            return
        if stat.S_ISLNK(st.st_mode):
            state[path] = ("link", st.st_mode, st.st_uid, st.st_gid, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            state[path] = ("dir", st.st_mode, st.st_uid, st.st_gid, None)
            for name in sorted(os.listdir(path)):
                if name != "register":
                    add(os.path.join(path, name))
        elif stat.S_ISREG(st.st_mode):
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as exc:
                data = "unreadable %d" % exc.errno
            state[path] = ("file", st.st_mode, st.st_uid, st.st_gid,
                           data.decode("latin-1") if isinstance(data, bytes) else data)
        else:
            state[path] = ("other", st.st_mode, st.st_uid, st.st_gid, None)

    for path in paths:
        add(path)
    return state


def run_case(case):
    module = importlib.import_module("ansible_collections.nativearm.binfmt.plugins.modules." + case["module"])
    args = dict(case["args"])
    if case.get("check"):
        args["_ansible_check_mode"] = True
    out = io.StringIO()
    error = None
    code = None
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit as exc:
            code = exc.code
        except BaseException:   # a traceback would have reached the user
            error = traceback.format_exc()
    text = out.getvalue().strip()
    result = None
    for line in reversed(text.splitlines()):
        try:
            result = json.loads(line)
            break
        except ValueError:
            continue
    if result is None and error is None:
        error = "no JSON result; stdout was %r" % text[-2000:]
    return result, code, error


def main(argv):
    with open(argv[1]) as f:
        cases = json.load(f)
    with open(argv[2], "w") as out:
        for case in cases:
            before = snapshot(case["watch"])
            result, code, error = run_case(case)
            after = snapshot(case["watch"])
            changes = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
            out.write(json.dumps({"id": case["id"], "result": result, "exit": code, "error": error,
                                  "unchanged": not changes, "changes": changes[:10]}) + "\n")
            out.flush()


if __name__ == "__main__":
    main(sys.argv)


def run_in(instance, cases, work, batch=120, timeout=600):
    """Run ``cases`` (dicts as in CASES.json) inside ``instance`` (tests/sandbox Instance) in
    batches; return {id: record}. Called from the tests, outside the sandbox."""
    results = {}
    for n in range(0, len(cases), batch):
        cases_file = os.path.join(str(work), "cases-%d.json" % n)
        results_file = os.path.join(str(work), "results-%d.jsonl" % n)
        with open(cases_file, "w") as f:
            json.dump(cases[n:n + batch], f)
        proc = instance.run([sys.executable, os.path.abspath(__file__), cases_file, results_file], timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError("module harness failed (rc %d): %s" % (proc.returncode, proc.stderr[-3000:]))
        with open(results_file) as f:
            for line in f:
                record = json.loads(line)
                results[record["id"]] = record
    return results
