"""What a killed run of the tests, the demo or the benchmarks left behind, found and removed at the start of the next.

A run killed outright (SIGKILL, a CI job's time limit) ends none of its processes: a harness's ``unshare`` and the
systemd, etcd and PostgreSQL under it, or the etcd, Patroni and PostgreSQL an integration test spawned, go on
running, in a cgroup of their own or in the machine's, with their files in a temporary directory. Each of those
things names the process that made it (:func:`realparts.owner_tag`): a harness's cgroup by its name
(``sdnotify-<owner>-<id>``), a :class:`realparts.Workdir` by its owner file. Only what names an owner that has
provably ended (same PID namespace, no process with that PID and start time) is touched, so that a run going on in
parallel (another checkout, another engineer) keeps everything it has:

* every process in such a cgroup (and below it) is SIGKILLed by PID, then the groups are removed (deepest first);
* every process whose command line or working directory lies in such a directory (etcd's ``--data-dir``, Patroni's
  configuration file, a postmaster's and its backends' data directory) is SIGKILLed by PID, then the directory is
  removed.

Namespaces need nothing more: a harness's are held only by its processes. Run by tests/conftest.py (once per
session) and tests/demo.py; it cleans up after the benchmarks too (same Workdir, same harness).
"""

import os
import re
import shutil
import signal
import tempfile

from typing import List

from realparts import HARNESS_WORK, OWNER_FILE, owner_gone, wait_for, WORKDIR_PREFIX
from systemd_harness import CGROUP_PREFIX, cgroup2_mount, remove_cgroup

# sdnotify-<pid ns>-<pid>-<start>-<id>, a scope of the machine's systemd ending in .scope
CGROUP_NAME = re.compile(r'^' + re.escape(CGROUP_PREFIX) + r'(\d+-\d+-\d+)-[0-9a-f]{8}(\.scope)?$')


def _pids_in(cgroup: str) -> List[int]:
    pids = []
    for root, _, _ in os.walk(cgroup):
        try:
            with open(os.path.join(root, 'cgroup.procs')) as f:
                pids.extend(int(p) for p in f.read().split())
        except (OSError, ValueError):
            pass
    return pids


def _kill(pids: List[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _ended(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (it holds nothing then)."""
    try:
        with open('/proc/{0}/stat'.format(pid)) as f:
            return f.read().rsplit(')', 1)[1].split()[0] in ('Z', 'X')
    except (OSError, IndexError):
        return True


def stale_cgroups(max_depth: int = 4) -> List[str]:
    """Harness cgroups (at the top of the hierarchy, or a delegated scope anywhere above *max_depth*) whose owner
    has ended."""
    try:
        point, _ = cgroup2_mount()
    except RuntimeError:
        return []
    found = []
    for root, dirs, _ in os.walk(point):
        depth = root[len(point):].count('/')
        keep = []
        for d in dirs:
            m = CGROUP_NAME.match(d)
            if m:
                if owner_gone(m.group(1)):
                    found.append(os.path.join(root, d))
            elif depth < max_depth:
                keep.append(d)
        dirs[:] = keep
    return found


def stale_workdirs() -> List[str]:
    """Workdirs (see :class:`realparts.Workdir`) in the temporary directory or in :data:`realparts.HARNESS_WORK`
    whose owner has ended."""
    found = []
    for tmp in (tempfile.gettempdir(), HARNESS_WORK):
        found.extend(_stale_in(tmp))
    return found


def _stale_in(tmp: str) -> List[str]:
    if not os.path.isdir(tmp):
        return []
    found = []
    for name in sorted(os.listdir(tmp)):
        path = os.path.join(tmp, name)
        if not name.startswith(WORKDIR_PREFIX) or os.path.islink(path) or not os.path.isdir(path):
            continue
        try:
            with open(os.path.join(path, OWNER_FILE)) as f:
                owner = f.read()
        except OSError:
            continue  # not made by a Workdir that names its owner: not provably ours to remove
        if owner_gone(owner):
            found.append(path)
    return found


def processes_in(directories: List[str]) -> List[int]:
    """PIDs of the processes whose command line names a path in one of *directories*, or whose working directory
    is in one."""
    prefixes = [d.rstrip('/') + '/' for d in directories]
    if not prefixes:
        return []
    me = os.getpid()
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open('/proc/{0}/cmdline'.format(entry), 'rb') as f:
                args = f.read().decode('utf-8', 'replace').split('\0')
            cwd = os.readlink('/proc/{0}/cwd'.format(entry)) + '/'
        except OSError:
            continue
        if any(cwd.startswith(p) for p in prefixes) or \
                any(p in arg + '/' for arg in args if arg for p in prefixes):
            pids.append(int(entry))
    return pids


def clean(timeout: float = 30) -> List[str]:
    """Remove what killed runs left behind (see the module's docstring); returns one line per thing removed."""
    if os.geteuid() != 0:
        return []
    report = []
    for cgroup in stale_cgroups():
        killed: List[int] = []
        pids = _pids_in(cgroup)
        for _ in range(10):  # again, for what forked meanwhile
            if not pids:
                break
            _kill(pids)
            killed.extend(pids)
            wait_for(lambda: all(_ended(p) for p in pids), timeout, 'the processes of {0} to end'.format(cgroup))
            pids = [p for p in _pids_in(cgroup) if not _ended(p)]
        remove_cgroup(cgroup, timeout)
        report.append('cgroup {0} ({1} processes killed)'.format(cgroup, len(killed)))
    workdirs = stale_workdirs()
    pids = processes_in(workdirs)
    if pids:
        _kill(pids)
        wait_for(lambda: all(_ended(p) for p in pids), timeout, 'left-over processes {0} to end'.format(pids))
        report.append('processes {0}'.format(' '.join(map(str, sorted(pids)))))
    for path in workdirs:
        shutil.rmtree(path, ignore_errors=True)
        report.append('directory {0}'.format(path))
    return report


__all__: List[str] = ['clean', 'stale_cgroups', 'stale_workdirs', 'processes_in']
