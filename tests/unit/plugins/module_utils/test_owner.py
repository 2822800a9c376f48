"""Which process lives as long as Ansible's connection (plugins/module_utils/_owner.py)."""
import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import _owner as O


def proc(pid, comm, *argv):
    return {"pid": pid, "ppid": pid - 1, "comm": comm, "argv": list(argv), "start": 1000 + pid}


SH = proc(90, "sh", "/bin/sh", "-c", "python3 /root/.ansible/tmp/x/AnsiballZ_native_armhf_window.py")
SUDO = proc(80, "sudo", "sudo", "-H", "-S", "-n", "-u", "root", "/bin/sh", "-c", "echo BECOME")
SSH_USER = proc(70, "sshd", "sshd: admin@notty")
SSH_PRIV = proc(60, "sshd", "sshd: admin [priv]")
SSHD = proc(50, "sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups")
SESSION = proc(70, "sshd-session", "sshd-session: admin@notty")
WORKER = proc(40, "ansible-playboo", "/usr/bin/python3", "/usr/bin/ansible-playbook", "-i", "hosts", "site.yml")
MAIN = proc(30, "ansible-playboo", "/usr/bin/python3", "/usr/bin/ansible-playbook", "-i", "hosts", "site.yml")
SHELL = proc(20, "bash", "-bash")
VENV = proc(30, "ansible", "/srv/venv/bin/python3.11", "/srv/venv/bin/ansible", "localhost", "-m", "x")


@pytest.mark.parametrize("chain, pid, kind", [
    ([SH, SSH_USER, SSH_PRIV, SSHD], 70, "ssh"),                 # the session, never the listener
    ([SH, SUDO, SH, SSH_USER, SSH_PRIV, SSHD], 70, "ssh"),        # become
    ([SH, SESSION, proc(60, "sshd-session", "sshd-session: admin [priv]"), SSHD], 70, "ssh"),  # OpenSSH >= 9.8
    ([SH, WORKER, MAIN, SHELL, SSH_USER, SSH_PRIV, SSHD], 30, "local"),  # the controller, not its login
    ([SH, SUDO, SH, WORKER, MAIN], 30, "local"),
    ([SH, proc(40, "ansible", "/srv/venv/bin/python3.11", "/srv/venv/bin/ansible", "localhost"), VENV], 30, "local"),
    ([SH, proc(40, "ansible-playboo", "/usr/local/bin/ansible-playbook", "x.yml")], 40, "local"),
])
def test_connection_owner(chain, pid, kind):
    record, found = O.connection_owner(chain)
    assert (record["pid"], found) == (pid, kind)


def test_no_owner_names_the_chain_and_the_fix():
    with pytest.raises(O.OwnerError) as err:
        O.connection_owner([SH, proc(10, "python3", "/usr/bin/python3", "async_wrapper.py")])
    message = err.value.message
    assert message.startswith("owner: connection: found neither an ssh session process")
    assert "10 /usr/bin/python3 async_wrapper.py" in message and "give owner_pid instead" in message
    with pytest.raises(O.OwnerError) as err:
        O.connection_owner([])
    assert "ancestors (none)" in err.value.message


def test_is_controller_needs_the_program_name_not_a_substring():
    assert not O.is_controller(proc(5, "vim", "vim", "ansible-playbook.yml"))
    assert not O.is_controller(proc(5, "python3", "python3", "/opt/ansible-lint"))
    assert not O.is_controller(proc(5, "kworker", ))


def test_parse_stat_with_spaces_and_parentheses_in_comm():
    text = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1000 100"
    assert O.parse_stat(text) == ("a (b) c", 17, 98765)


def test_ancestry_and_find_connection_owner_read_a_proc_tree(tmp_path):
    def fake(pid, ppid, comm, argv, start):
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "stat").write_text("%d (%s) S %d 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0" % (pid, comm, ppid, start))
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    fake(500, 400, "python3", ["/usr/bin/python3", "/tmp/AnsiballZ_x.py"], 9)
    fake(400, 300, "sh", ["/bin/sh", "-c", "..."], 8)
    fake(300, 200, "sshd-session", ["sshd-session: admin@notty"], 7)
    fake(200, 1, "sshd", ["sshd: /usr/sbin/sshd -D [listener]"], 1)
    assert [r["pid"] for r in O.ancestry(500, str(tmp_path))] == [400, 300, 200]
    assert O.find_connection_owner(500, str(tmp_path)) == {
        "pid": 300, "start": 7, "kind": "ssh", "cmdline": "sshd-session: admin@notty"}
    assert O.ancestry(999, str(tmp_path)) == []        # a process that is gone has no ancestors
