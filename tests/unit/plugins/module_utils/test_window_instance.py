"""Pure parts of the instance-wide coordination: who holds what on the entry and on
register (from /proc/locks text), and how admission reads it."""
from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_instance as I
from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_records as R
from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_rules as W

ENTRY = ((0, 0x2c), 17)
REGISTER = ((0, 0x2c), 2)
MARK = I.MARKER_BASE + 12345

LOCKS = """\
1: FLOCK  ADVISORY  READ  100 00:2c:17 0 EOF
2: FLOCK  ADVISORY  READ  200 00:2c:17 0 EOF
3: FLOCK  ADVISORY  READ  300 00:2c:17 0 EOF
4: FLOCK  ADVISORY  WRITE 400 00:2c:17 0 EOF
4: -> FLOCK  ADVISORY  READ 500 00:2c:17 0 EOF
5: FLOCK  ADVISORY  READ  600 00:2c:17 0 EOF
6: FLOCK  ADVISORY  READ  700 00:2c:99 0 EOF
7: OFDLCK ADVISORY  WRITE -1 00:2c:2 %d %d
8: OFDLCK ADVISORY  WRITE -1 00:2c:2 5 5
9: FLOCK  ADVISORY  WRITE 800 00:2c:2 0 EOF
""" % (MARK, MARK)

UIDS = {100: 0, 200: 0, 300: 65534, 400: 0, 500: 0}      # 600 has exited


def classify(ours=(), holders=None):
    return I.classify(I.parse_proc_locks(LOCKS), ENTRY, set(ours), uid_of=UIDS.get,
                      holders_of=lambda devino: holders if holders is not None else {})


def test_root_shared_locks_not_ours_are_foreign_native_windows():
    view = classify(ours=[100])
    assert [h["pid"] for h in view["ours"]] == [100]
    assert [h["pid"] for h in view["native"]] == [200, 600]   # 600: exited, nobody visible: root's (safe side)
    assert [h["pid"] for h in view["exclusive"]] == [400]
    assert [h["pid"] for h in view["unprivileged"]] == [300]
    assert view["unprivileged"][0]["uid"] == 65534
    assert 500 not in [h["pid"] for v in view.values() for h in v]     # a blocked waiter holds nothing


def test_a_lock_of_an_exited_process_belongs_to_who_holds_its_descriptor():
    view = classify(holders={600: [(601, 65534)]})              # e.g. `flock -s 9` run by a user's shell
    assert [h["pid"] for h in view["unprivileged"]] == [300, 600]
    assert "pid 601 uid 65534" in view["unprivileged"][1]["cmdline"]
    view = classify(holders={600: [(602, 0)]})                  # a PR #9769 builder's shell (root)
    assert [h["pid"] for h in view["native"]] == [100, 200, 600]


def test_markers_are_ofd_locks_in_the_marker_range_on_register():
    locks = I.parse_proc_locks(LOCKS)
    assert I.markers(locks, REGISTER) == [MARK]               # not byte 5, not the flock mutex
    assert I.markers(locks, ENTRY) == []


def test_admission_reads_other_coordinators_windows():
    s = R.empty_state("qemu-arm")
    assert W.admissible(s, "emulation", foreign={"native": [{"pid": 1}], "emulation": []}) == (False, "foreign_native")
    assert W.admissible(s, "native", foreign={"native": [], "emulation": [MARK]}) == (False, "foreign_emulation")
    assert W.admissible(s, "native", foreign={"native": [{"pid": 1}], "emulation": []}) == (True, None)
    assert W.admissible(s, "emulation", foreign={"native": [], "emulation": [MARK]}) == (True, None)
    assert W.admissible(s, "emulation", ignore_fairness=True,
                        foreign={"native": [{"pid": 1}], "emulation": []})[0] is False


SIMPLE_LOCKS = """\
1: FLOCK  ADVISORY  READ  4242 00:2c:17 0 EOF
1: -> FLOCK  ADVISORY  WRITE 777 00:2c:17 0 EOF
2: FLOCK  ADVISORY  WRITE 900 fd:01:1234567 0 EOF
3: POSIX  ADVISORY  WRITE 55 08:02:99 0 EOF
4: OFDLCK ADVISORY  READ  -1 00:05:3 0 EOF
garbage line
"""


def test_parse_proc_locks():
    locks = I.parse_proc_locks(SIMPLE_LOCKS)
    assert locks[0] == {"kind": "FLOCK", "access": "READ", "pid": 4242, "dev": (0, 0x2c), "ino": 17,
                        "start": 0, "blocked": False}
    assert locks[1]["blocked"] and locks[1]["pid"] == 777 and locks[1]["access"] == "WRITE"
    assert locks[2]["dev"] == (0xfd, 1) and locks[2]["ino"] == 1234567
    assert locks[3]["kind"] == "POSIX" and locks[4]["pid"] == -1
    assert len(locks) == 5
