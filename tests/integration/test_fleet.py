"""A fleet of 10 simulated build hosts on this machine (tests/sandbox/fleet.py): each its
own user + mount namespace with its own binfmt_misc instance, /run and descriptor
directories, reached by Ansible through the test-only nsfleet connection with forks = 10.

Provisioned, then every other host given drift (qemu-arm disabled, re-registered with
another interpreter, or a stale window from a SIGKILLed holder), the fleet runs
`remediate --check`, `remediate`, `remediate` again, `remediate` in serial batches and
`build` (a static armhf program, emulated on x86_64). The checks are on end state, never
on time (bench/fleet_bench.py measures time).
"""
import json
import os

import pytest

from sandbox.fleet import ENTRY, Fleet, compile_hello

SIZE = 10
FORKS = 10
SERIAL = 4      # batches of 4, 4 and 2 hosts
REPORT = "/var/lib/nativearm-binfmt/drift-report.json"   # binfmt_drift_report_path's default
HOSTS = ["h%02d" % (i + 1) for i in range(SIZE)]
# binfmt_drift's item kinds for each kind of drift the fleet injects (a stale window leaves
# qemu-arm disabled: reported as the window's, and as the entry's when the entry is checked too)
EXPECTED_KINDS = {None: [set()], "disabled": [{"enabled"}], "reregistered": [{"definition"}],
                  "stale_window": [{"stale_window"}, {"stale_window", "enabled"}]}


def drift_results(run):
    """Host -> the binfmt_drift module's result (the one holding drift and remaining)."""
    found = {r["_host"]: r for r in run.results if "drift" in r and "remaining" in r}
    assert sorted(found) == HOSTS, run.tail()
    return found


def kinds(result):
    return {item["kind"] for item in result["drift"]}


def fleet_tables(run):
    """The role's fleet summaries: a list of (header, {host: ((drift items, fixed, remaining), [item lines])})."""
    tables = []
    for r in run.results:
        msg = r.get("msg")
        if not (isinstance(msg, list) and msg and str(msg[0]).startswith("binfmt drift")):
            continue
        rows, host = {}, None
        for line in msg[2:]:
            fields = line.split()
            if fields and fields[0] in HOSTS:
                host = fields[0]
                rows[host] = (tuple(int(x) for x in fields[1:4]), [])
            elif line.startswith("    - ") and host:
                rows[host][1].append(line.strip()[2:])
        tables.append((msg[0], rows))
    return tables


def expected_rows(results, check_mode=False):
    def word(item):
        return "found" if check_mode else "fixed" if item["fixed"] else "remains"
    return {name: ((len(r["drift"]), sum(1 for i in r["drift"] if i["fixed"]), len(r["remaining"])),
                   ["%s: %s" % (word(i), i["message"]) for i in r["drift"]])
            for name, r in results.items()}


def check_fleet_table(run, results, check_mode=False):
    tables = fleet_tables(run)
    assert len(tables) == 1, tables   # once for the fleet, not once per host
    assert tables[0][1] == expected_rows(results, check_mode), tables[0]


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
        fleet.reports = {}
        for step, args in (("check", ["--check"]), ("remediate", []), ("again", []),
                           ("serial", ["-e", "nativearm_serial=%d" % SERIAL])):
            fleet.runs[step] = fleet.playbook("remediate", *args, forks=FORKS)
            fleet.states[step] = {n: fleet.snapshot(n) for n in fleet.names}
            fleet.reports[step] = {n: fleet.read_file(n, REPORT) for n in fleet.names}
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
    check_fleet_table(run, drift_results(run), check_mode=True)
    assert fleet.states["check"] == fleet.states["drifted"]
    assert fleet.reports["check"] == {n: None for n in fleet.names}   # check mode writes no report


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


def test_every_host_keeps_its_own_drift_report(fleet):
    results = drift_results(fleet.runs["remediate"])
    for name in fleet.names:
        report = json.loads(fleet.reports["remediate"][name])
        assert report["check_mode"] is False and report["remaining"] == [], (name, report)
        assert report["fixed"] == len(results[name]["drift"]), (name, report)
        assert [i["kind"] for i in report["drift"]] == [i["kind"] for i in results[name]["drift"]], name
        assert bool(report["drift"]) is (fleet.drift[name] is not None), (name, report)


def test_every_host_ends_in_its_provisioned_state(fleet):
    for step in ("remediate", "again", "serial", "build"):
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
    tables = [r["msg"] for r in run.results if isinstance(r.get("msg"), list)
              and any(str(line).startswith("armhf build on ") for line in r["msg"])]
    assert len(tables) == 1, run.tail()   # once for the fleet, not once per host
    said = {line.split()[3].rstrip(":"): line for line in tables[0] if line.startswith("armhf build on ")}
    assert sorted(said) == fleet.names, tables
    for name, line in said.items():
        assert "succeeded" in line and "output: hello from a 32-bit ARM (armhf) binary" in line, (name, line)
        if os.uname().machine == "x86_64":
            assert "EMULATED (qemu-arm)" in line, (name, line)


def test_serial_batches_each_print_the_hosts_checked_so_far(fleet):
    run = fleet.runs["serial"]
    assert run.proc.returncode == 0, run.tail()
    assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in run.recap.values()), run.recap
    tables = fleet_tables(run)
    sizes = [min(SIZE, SERIAL * (i + 1)) for i in range(-(-SIZE // SERIAL))]
    assert [len(rows) for _title, rows in tables] == sizes, tables
    for (_title, earlier), (_later_title, later) in zip(tables, tables[1:]):   # each batch adds its hosts
        assert set(earlier) < set(later), tables
    assert "(serial: 4 of 10 hosts so far)" in tables[0][0] and "so far" not in tables[-1][0], tables
    assert tables[-1][1] == {name: ((0, 0, 0), []) for name in HOSTS}
