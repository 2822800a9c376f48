"""Finding the processes a test run started, by what they hold open."""
import os


def processes_using(path):
    """Pids (not ours) with a descriptor open on a file under ``path``. Every lease
    holder keeps its lease lock file under the run dir open for its whole life,
    and is forked, so its command line is only a title cut to its opener's argv
    size: it is found by what it holds, not by its command line."""
    prefix = os.path.realpath(str(path)) + os.sep
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            fds = os.listdir("/proc/%s/fd" % name)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%s/fd/%s" % (name, fd)).startswith(prefix):
                    pids.append(int(name))
                    break
            except OSError:
                continue
    return pids
