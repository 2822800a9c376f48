"""A fleet of 10 simulated build hosts on this machine (tests/sandbox/fleet.py): each its
own user + mount namespace with its own binfmt_misc instance, /run and descriptor
directories, reached by Ansible through the test-only nsfleet connection with forks = 10.

Provisioned, then every other host given drift (qemu-arm disabled, re-registered with
another interpreter, or a stale window from a SIGKILLed holder), the fleet runs
`remediate --check`, `remediate`, `remediate` again and `build` (a static armhf program,
emulated on x86_64). The checks are on end state, never on time (bench/fleet_bench.py
measures time).
"""
import os

import pytest

from sandbox.fleet import ENTRY, ROOT, Fleet, compile_hello

SIZE = 10
FORKS = 10
# binfmt_drift's item kinds for each kind of drift the fleet injects (a stale window leaves
# qemu-arm disabled: reported as the window's, and as the entry's when the entry is checked too)
EXPECTED_KINDS = {None: [set()], "disabled": [{"enabled"}], "reregistered": [{"definition"}],
                  "stale_window": [{"stale_window"}, {"stale_window", "enabled"}]}


def drift_results(run):
    """Host -> the binfmt_drift module's result (the one holding drift and remaining)."""
    found = {r["_host"]: r for r in run.results if "drift" in r and "remaining" in r}
    assert sorted(found) == ["h%02d" % (i + 1) for i in range(SIZE)], run.tail()
    return found


def kinds(result):
    return {item["kind"] for item in result["drift"]}


def fleet_table(run):
    """Host -> (drift items, fixed, remaining) from the role's fleet summary, None without one."""
    tables = [r["msg"] for r in run.results if isinstance(r.get("msg"), list)
              and r["msg"] and str(r["msg"][0]).startswith("binfmt drift")]
    if not tables:
        return None
    assert len(tables) == 1, tables   # once for the fleet, not once per host
    rows = {}
    for line in tables[0][2:]:
        fields = line.split()
        if fields and fields[0] in ("h%02d" % (i + 1) for i in range(SIZE)):
            rows[fields[0]] = tuple(int(x) for x in fields[1:4])
    return rows


def has_fleet_summary():
    with open(os.path.join(ROOT, "roles", "binfmt_drift", "tasks", "main.yml")) as f:
        return "Summarise the fleet" in f.read()


def check_fleet_table(run, results):
    table = fleet_table(run)
    if not has_fleet_summary():   # the role's fleet summary is not on this branch yet
        return
    assert table is not None, run.tail()
    expected = {name: (len(r["drift"]), sum(1 for i in r["drift"] if i["fixed"]), len(r["remaining"]))
                for name, r in results.items()}
    assert table == expected, (table, expected)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The fleet's whole life, once: every run and every host's state after each step."""
    directory = str(tmp_path_factory.mktemp("fleet"))
    hello = compile_hello(directory)
    with Fleet(SIZE, directory) as fleet:
        fleet.start()
        fleet.provision(forks=FORKS)
        fleet.inject_drift(forks=FORKS)
        fleet.states = {"drifted": {n: fleet.snapshot(n) for n in fleet.names}}
        fleet.runs = {}
        for step, args in (("check", ["--check"]), ("remediate", []), ("again", [])):
            fleet.runs[step] = fleet.playbook("remediate", *args, forks=FORKS)
            fleet.states[step] = {n: fleet.snapshot(n) for n in fleet.names}
        fleet.runs["build"] = fleet.playbook("build", "-e", '{"native_armhf_build_command": ["%s"]}' % hello,
                                             forks=FORKS)
        fleet.states["build"] = {n: fleet.snapshot(n) for n in fleet.names}
        yield fleet


def test_every_host_is_its_own_build_host_with_an_existing_interpreter(fleet):
    paths = {fleet.path(n) for n in fleet.names}
    assert len(paths) == SIZE and "/proc/sys/fs/binfmt_misc" not in paths
    for name in fleet.names:
        provisioned = fleet.provisioned[name][ENTRY]
        assert provisioned.startswith("enabled\n"), (name, provisioned)
        interpreter = provisioned.split("interpreter ", 1)[1].split("\n", 1)[0]
        assert os.access(interpreter, os.X_OK), (name, interpreter)


def test_half_the_fleet_drifted_each_in_its_own_way(fleet):
    drifted = {n: k for n, k in fleet.drift.items() if k}
    assert len(drifted) == SIZE // 2 and set(drifted.values()) == {"disabled", "reregistered", "stale_window"}
    for name, kind in fleet.drift.items():
        state = fleet.states["drifted"][name]
        assert (state == fleet.provisioned[name]) == (kind is None), (name, kind, state)


def test_check_reports_each_hosts_drift_and_changes_nothing(fleet):
    run = fleet.runs["check"]
    assert run.proc.returncode == 0, run.tail()
    assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in run.recap.values()), run.recap
    for name, result in drift_results(run).items():
        assert kinds(result) in EXPECTED_KINDS[fleet.drift[name]], (name, fleet.drift[name], result["drift"])
        assert len(result["remaining"]) == len(result["drift"])
    check_fleet_table(run, drift_results(run))
    assert fleet.states["check"] == fleet.states["drifted"]


def test_remediate_fixes_exactly_the_drifted_hosts(fleet):
    run = fleet.runs["remediate"]
    assert run.proc.returncode == 0, run.tail()
    for name, result in drift_results(run).items():
        assert kinds(result) in EXPECTED_KINDS[fleet.drift[name]], (name, result["drift"])
        assert result["remaining"] == [] and all(item["fixed"] for item in result["drift"]), (name, result)
        assert result["changed"] is (fleet.drift[name] is not None), (name, result)
    check_fleet_table(run, drift_results(run))
    changed = {name for name, counts in run.recap.items() if counts["changed"]}
    assert changed == {n for n, k in fleet.drift.items() if k}, run.recap


def test_every_host_ends_in_its_provisioned_state(fleet):
    for step in ("remediate", "again", "build"):
        assert fleet.states[step] == fleet.provisioned, step


def test_second_remediate_changes_nothing_anywhere(fleet):
    run = fleet.runs["again"]
    assert run.proc.returncode == 0, run.tail()
    assert sorted(run.recap) == fleet.names
    assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in run.recap.values()), run.recap
    assert all(result["drift"] == [] for result in drift_results(run).values())
    check_fleet_table(run, drift_results(run))


def test_the_armhf_build_ran_on_every_host(fleet):
    run = fleet.runs["build"]
    assert run.proc.returncode == 0, run.tail()
    said = {r["_host"]: r["msg"] for r in run.results
            if isinstance(r.get("msg"), str) and "the armhf build ran" in r["msg"]}
    assert sorted(said) == fleet.names, run.tail()
    for name, msg in said.items():
        assert "hello from a 32-bit ARM (armhf) binary" in msg, (name, msg)
        if os.uname().machine == "x86_64":
            assert "EMULATED under qemu-arm" in msg, (name, msg)
