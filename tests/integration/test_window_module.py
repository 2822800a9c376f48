"""nativearm.binfmt.native_armhf_window through Ansible, on the real kernel.

``ansible localhost -m ...`` runs inside a private binfmt_misc instance
(nsenter), exactly as on a host: the module is shipped as an AnsiballZ payload
whose directory is deleted when the module returns, so these tests prove that
the holder (forked from the module) lives on, detached, needing none of it.
"""
import os
import stat

import pytest

from ansible_env import run_module
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils import probe
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W

from window_support import ENTRY, Host, gone, wait_for

PACKAGED = os.path.exists("/usr/share/binfmts/" + ENTRY) or os.path.exists("/usr/lib/binfmt.d/%s.conf" % ENTRY)


def window(host, check=False, diff=False, **args):
    args.setdefault("run_dir", host.run_dir)
    return run_module("native_armhf_window", args, check=check, diff=diff, wrap=host.inst.nsenter)


def test_module_native_window_lifecycle(host):
    r = window(host, diff=True, state="open", probe=["/bin/true"], lease_id="ci-1", ttl=300)
    assert r["_status"] == "ok" and r["changed"], r
    assert r["native"] is True and r["mode"] == "native" and r["first"] and r["leases"] == 1
    # the tier is the host's path (tier.py): qemu-arm is registered, so not native_probe
    assert r["tier"] == ("packaged_descriptor" if PACKAGED else "registered_entry") and r["prior_state"] == "enabled"
    assert r["diff"]["before"]["entry_enabled"] is True and r["diff"]["after"]["entry_enabled"] is False
    pid = r["holder_pid"]
    # the module has exited and its AnsiballZ directory is gone; the holder lives on, detached
    assert not gone(pid) and os.getsid(pid) == pid
    assert os.readlink("/proc/%d/cwd" % pid) == "/"
    # forked from the module: it names itself over the module's command line (the AnsiballZ path)...
    assert W.proc_cmdline(pid).startswith("nativearm-window-holder %s lease=ci-1 " % ENTRY)
    assert b"ansible-tmp" not in open("/proc/%d/cmdline" % pid, "rb").read()
    # ...and holds nothing of the payload, which is deleted by now: no descriptor, no mapping
    fds = [os.readlink("/proc/%d/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%d/fd" % pid)]
    assert not [f for f in fds if "ansible-tmp" in f or "AnsiballZ" in f], fds
    assert "ansible-tmp" not in open("/proc/%d/maps" % pid).read()
    assert stat.S_IMODE(os.stat(host.run_dir).st_mode) == 0o700
    assert host.entry() == "disabled"
    # it still does its job after the module is gone: an external re-enable is undone
    bm.set_enabled(ENTRY, True, host.path)
    wait_for(lambda: host.entry() == "disabled", timeout=2)

    again = window(host, state="open", probe=["/bin/true"], lease_id="ci-1")
    assert again["_status"] == "ok" and not again["changed"]
    assert again["holder_pid"] == pid and again["leases"] == 1

    c = window(host, diff=True, state="closed", lease_id="ci-1")
    assert c["_status"] == "ok" and c["changed"] and c["restored"] and c["prior_state"] == "enabled"
    assert c["diff"]["after"]["entry_enabled"] is True
    assert host.entry() == "enabled"
    wait_for(lambda: gone(pid))


def test_module_holder_ends_its_lease_by_ttl_after_the_module_is_gone(host):
    """The forked holder takes the mutex, rewrites the records and restores the
    entry long after the module and its AnsiballZ payload are gone."""
    # The ttl leaves room for a slow module run on a loaded machine: the lease must still be
    # open when the module returns. What ended it is read from the events, not from a clock.
    r = window(host, state="open", probe=["/bin/true"], ttl=15)
    assert r["_status"] == "ok" and r["native"] and host.entry() == "disabled", r
    pid = r["holder_pid"]
    assert not gone(pid)
    wait_for(lambda: host.entry() == "enabled", timeout=60)
    wait_for(lambda: "ttl_expired" in [e["event"] for e in host.facts()["events"]], timeout=5)
    assert host.facts()["lease_count"] == 0 and host.facts()["prior_state"] is None
    wait_for(lambda: gone(pid))


def test_module_probe_failure_fail_and_emulate(host):
    before = host.inst.snapshot()
    r = window(host, state="open", on_unsupported="fail", ttl=60)
    assert r["_status"] == "failed" and "Exec format error" in r["msg"], r
    assert host.inst.snapshot() == before
    r = window(host, state="open", ttl=60)
    assert r["_status"] == "ok" and r["changed"]
    assert r["native"] is False and r["mode"] == "emulation" and "Exec format error" in r["reason"]
    assert r["tier"] == ("packaged_descriptor" if PACKAGED else "registered_entry")
    assert host.entry() == "enabled"
    c = window(host, state="closed", lease_id=r["lease_id"])
    assert c["restored"] and host.inst.snapshot() == before


def test_module_check_mode_and_unknown_close(host):
    before = host.inst.snapshot()
    r = window(host, check=True, diff=True, state="open", probe="/bin/true")
    assert r["_status"] == "ok" and r["changed"] and r["first"]
    assert r["diff"]["after"]["entry_enabled"] is False
    assert host.inst.snapshot() == before and host.facts()["lease_count"] == 0
    c = window(host, state="closed", lease_id="nobody")
    assert c["_status"] == "ok" and not c["changed"]
    assert any("not open" in w for w in c.get("warnings", [])), c
    assert host.inst.snapshot() == before


def test_module_bad_input_names_the_field(host):
    before = host.inst.snapshot()
    r = window(host, state="open", lease_id="a/b", probe=["/bin/true"])
    assert r["_status"] == "failed" and "lease_id" in r["msg"]
    r = window(host, state="closed")
    assert r["_status"] == "failed" and "lease_id" in r["msg"]
    assert host.inst.snapshot() == before


def test_module_qemu_arm_absent(instance, tmp_path):
    host = Host(instance, tmp_path / "run", registered=False)
    try:
        r = window(host, state="open", ttl=60)
        assert r["_status"] == "ok" and r["native"] is False
        # the host's descriptor registers qemu-arm even where this instance has not loaded it (tier.py)
        assert r["tier"] == ("packaged_descriptor" if PACKAGED else "qemu_fallback")
        assert r["prior_state"] == "absent" and not r["entry_present"]
        c = window(host, state="closed", lease_id=r["lease_id"])
        assert c["restored"] and host.entry() == "absent"
    finally:
        host.close()


def test_binfmt_info_reports_a_stale_window_and_binfmt_drift_repairs_it(host):
    import signal
    r = window(host, state="open", probe=["/bin/true"], lease_id="crashy", ttl=300)
    pid = r["holder_pid"]
    info = run_module("binfmt_info", {"run_dir": host.run_dir, "probe": False}, wrap=host.inst.nsenter)
    w = info["window"]
    assert not info["changed"] and w["lease_count"] == 1 and w["mode"] == "native" and not w["stale"]
    assert [h["pid"] for h in w["lock_holders"]] == [pid]
    assert "nativearm-window-holder" in w["lock_holders"][0]["cmdline"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid))
    assert host.entry() == "disabled"
    check = run_module("binfmt_info", {"run_dir": host.run_dir, "probe": False}, check=True,
                       wrap=host.inst.nsenter)
    assert not check["changed"] and check["window"]["stale"] and host.entry() == "disabled"
    seen = run_module("binfmt_info", {"run_dir": host.run_dir, "probe": False}, wrap=host.inst.nsenter)
    assert not seen["changed"] and seen["window"]["stale"] and host.entry() == "disabled"   # read-only
    fix = run_module("binfmt_drift", {"run_dir": host.run_dir, "entries": []}, wrap=host.inst.nsenter)
    assert fix["changed"] and host.entry() == "enabled"
    again = run_module("binfmt_info", {"run_dir": host.run_dir, "probe": False}, wrap=host.inst.nsenter)
    assert not again["changed"] and not again["window"]["stale"]


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the case of an x86_64 build host")
def test_module_native_open_on_x86_64_never_touches_the_entry(host):
    """The module's real capability check (the tests' hook taken out): emulation, with the reason."""
    before = host.inst.snapshot()
    r = run_module("native_armhf_window", {"state": "open", "probe": ["/bin/true"], "ttl": 60,
                                           "run_dir": host.run_dir, "on_unsupported": "fail"},
                   wrap=host.inst.nsenter, env={probe.CAPABILITY_ENV: ""})
    assert r["_status"] == "failed" and "x86_64" in r["msg"] and "not touched" in r["msg"], r
    assert host.inst.snapshot() == before
    r = run_module("native_armhf_window", {"state": "open", "probe": ["/bin/true"], "ttl": 60,
                                           "run_dir": host.run_dir},
                   wrap=host.inst.nsenter, env={probe.CAPABILITY_ENV: ""})
    assert r["_status"] == "ok" and r["native"] is False and r["mode"] == "emulation", r
    assert "x86_64" in r["reason"] and host.entry() == "enabled"
    events = [e["event"] for e in host.facts()["events"]]
    assert "probe_failed_rollback" not in events
    c = window(host, state="closed", lease_id=r["lease_id"])
    assert c["restored"] and host.inst.snapshot() == before
