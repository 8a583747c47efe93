"""Patroni as PID 1 of its own PID namespace, as in a container: the path of ``patroni.__main__.main()`` that starts
the daemon with ``multiprocessing.Process`` and forwards SIGHUP, SIGTERM and others to it.

Python 3.14 made ``forkserver`` the default start method on Linux: the daemon is then forked by a server process that
PID 1 spawned (a fresh interpreter), not by PID 1, so it inherits none of PID 1's signal handlers. The claims, for
every interpreter given: a SIGHUP sent to PID 1 reaches the daemon and is applied as a reload (the same daemon and
postmaster, the new file in effect; the control: the file changed without a signal is not applied), SIGTERM to PID 1
stops PostgreSQL cleanly and ends the container with 0; and a SIGHUP that PID 1 forwards while the daemon starts (held
parsing its configuration file) is applied as a reload, not fatal (the control: no SIGHUP, the file read first stays
in effect).

Interpreters: the machine's (this venv: Python 3.11, start method ``fork``), and the venvs of
``SDNOTIFY_PID1_VENVS`` (``venv[=PostgreSQL bin dir],...``; ``make test-py314`` gives .venv-py314, made with
tests/root_python.sh: forky's Python 3.14 and PostgreSQL 18, run in the forky root).
"""

import json
import os
import signal
import subprocess
import sys

from typing import Dict, List, Optional

import pytest

from realparts import BIN, Etcd, free_port, http_json, patroni_config, PG_BIN, read_from, wait_for, Workdir

pytestmark = pytest.mark.slow

CYCLE = 'no action. I am (node1), the leader with the lock'


def interpreters() -> List[pytest.param]:
    """(venv bin directory, PostgreSQL bin directory) of each interpreter, with its Python version as the id."""
    venvs = [(BIN, PG_BIN)]
    for item in filter(None, os.environ.get('SDNOTIFY_PID1_VENVS', '').split(',')):
        venv, _, pg_bin = item.partition('=')
        venvs.append((os.path.join(os.path.abspath(venv), 'bin'), pg_bin or PG_BIN))
    params = []
    for bin_dir, pg_bin in venvs:
        version = subprocess.run([os.path.join(bin_dir, 'python'), '-c', 'import multiprocessing, platform; print('
                                  'platform.python_version(), multiprocessing.get_start_method())'],
                                 stdout=subprocess.PIPE, universal_newlines=True, timeout=60, check=True).stdout.split()
        name = '' if bin_dir == BIN else '-' + os.path.basename(os.path.dirname(bin_dir)).lstrip('.')
        params.append(pytest.param((bin_dir, pg_bin, version[1]),
                                   id="py{0}-{1}{2}".format(version[0], version[1], name)))
    return params


def children() -> Dict[int, int]:
    """PID -> parent PID of every process."""
    result = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open('/proc/{0}/stat'.format(name)) as f:
                    result[int(name)] = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return result


def descendants(pid: int) -> List[int]:
    parents = children()
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent:
                found.append(child)
                todo.append(child)
    return found


def proc_field(pid: int, name: str) -> Optional[str]:
    """A field of /proc/PID/status (``None``: no such process)."""
    try:
        with open('/proc/{0}/status'.format(pid)) as f:
            for line in f:
                if line.startswith(name + ':'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return None


def alive(pid: int) -> bool:
    state = proc_field(pid, 'State')
    return state is not None and not state.startswith(('Z', 'X'))


def catches(pid: int, signo: int) -> bool:
    return bool(int(proc_field(pid, 'SigCgt') or '0', 16) & (1 << (signo - 1)))


class Container(object):
    """``patroni CONFIG`` as PID 1 of a new PID namespace (``unshare --pid --fork --kill-child``), as postgres."""

    def __init__(self, workdir: Workdir, bin_dir: str, config: str) -> None:
        self.log = os.path.join(workdir.path, 'patroni.log')
        patroni = os.path.join(bin_dir, 'patroni')
        env = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'LC_ALL': 'C.UTF-8', 'HOME': workdir.path}
        if not any(name.endswith('-root') for name in os.listdir(bin_dir)):
            # the machine's interpreter: a /proc of the namespace, then postgres
            cmd = ['unshare', '--pid', '--fork', '--kill-child', '--mount-proc', 'setpriv', '--reuid=postgres',
                   '--regid=postgres', '--clear-groups', '--', patroni, config]
        else:  # a venv of tests/root_python.sh: it mounts the namespace's /proc in the root and becomes postgres
            cmd = ['unshare', '--pid', '--fork', '--kill-child', patroni, config]
            env['ROOT_PYTHON_USER'] = 'postgres'
        with open(self.log, 'a') as log:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=workdir.path)

        def pid1() -> Optional[int]:
            found = [pid for pid, ppid in children().items() if ppid == self.proc.pid]
            return found[0] if found else None
        self.pid1 = wait_for(pid1, 10, 'PID 1 of the namespace')

    def tail(self) -> str:
        return '\n--- patroni.log:\n' + read_from(self.log)[-3000:]

    def daemon(self, api_port: int) -> Optional[int]:
        """The daemon: the process of the namespace that listens on the REST API's port (not the postmaster's
        parent: Patroni starts the postmaster through a process that exits, so that PID 1 adopts it)."""
        inodes = set()
        with open('/proc/net/tcp') as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1].endswith(':{0:04X}'.format(api_port)) and fields[3] == '0A':  # LISTEN
                    inodes.add('socket:[{0}]'.format(fields[9]))
        for pid in [self.pid1] + descendants(self.pid1):
            try:
                fds = os.listdir('/proc/{0}/fd'.format(pid))
                if any(os.readlink('/proc/{0}/fd/{1}'.format(pid, fd)) in inodes for fd in fds):
                    return pid
            except OSError:
                continue
        return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # our unshare, whose --kill-child ends the namespace
            self.proc.wait(30)


@pytest.fixture(params=interpreters())
def python(request):
    return request.param


@pytest.fixture
def parts():
    workdir = Workdir()
    etcd = Etcd(workdir.path)
    containers: List[Container] = []
    yield workdir, etcd, containers
    for container in containers:
        container.close()
    etcd.stop()
    workdir.cleanup()


def config(workdir: Workdir, etcd: Etcd, pg_bin: str, tags: Dict[str, str]) -> Dict[str, object]:
    result = patroni_config(workdir.path, 'pid1', 'node1', etcd.port, free_port(), free_port(), tags)
    result['postgresql']['bin_dir'] = pg_bin  # type: ignore[index]
    return result


def status(cfg: Dict[str, object]) -> Dict[str, object]:
    return http_json('http://{0}/patroni'.format(cfg['restapi']['listen'])) or {}  # type: ignore[index]


def test_sighup_to_pid1_is_a_reload_and_sigterm_stops_cleanly(python, parts):
    bin_dir, pg_bin, method = python
    workdir, etcd, containers = parts
    cfg = config(workdir, etcd, pg_bin, {'reload': 'start'})
    path = workdir.file('patroni.yml', json.dumps(cfg))
    container = Container(workdir, bin_dir, path)
    containers.append(container)
    wait_for(lambda: status(cfg).get('state') == 'running', 120, lambda: 'PostgreSQL running' + container.tail())
    data_dir = cfg['postgresql']['data_dir']  # type: ignore[index]
    api_port = int(cfg['restapi']['listen'].rsplit(':', 1)[1])  # type: ignore[index]
    daemon = wait_for(lambda: container.daemon(api_port), 10, 'the daemon')
    parent = children()[daemon]
    print('{0}: PID 1 is {1}, the daemon {2}, its parent {3}'.format(
        method, container.pid1, daemon, 'PID 1' if parent == container.pid1 else 'another process ({0})'.format(
            parent)))
    assert daemon != container.pid1

    # the control: the file changed, no signal; two HA cycles later the old tags are still in effect
    cfg['tags'] = {'reload': 'new'}
    os.rename(workdir.file('new.yml', json.dumps(cfg)), path)
    offset = os.path.getsize(container.log)
    wait_for(lambda: read_from(container.log, offset).count(CYCLE) >= 2, 30, lambda: 'two HA cycles' + container.tail())
    assert status(cfg).get('tags') == {'reload': 'start'}

    os.kill(container.pid1, signal.SIGHUP)
    wait_for(lambda: status(cfg).get('tags') == {'reload': 'new'}, 30, lambda: 'the reload applied' + container.tail())
    assert container.daemon(api_port) == daemon and alive(container.pid1)

    os.kill(container.pid1, signal.SIGTERM)
    assert container.proc.wait(60) == 0, container.tail()
    # a clean (fast) shutdown removes postmaster.pid; a killed postmaster leaves it
    assert not os.path.exists(os.path.join(data_dir, 'postmaster.pid')), container.tail()
    assert not alive(daemon)


# the comment lines that keep the daemon parsing its configuration file for seconds (PyYAML's pure-Python scanner:
# about 0.3 s a MB on this machine kind), before its first statement that could handle a SIGHUP
PADDING = ('# ' + 'x' * 998 + '\n') * 20000


def parsing(pid: int, path: str) -> bool:
    """Whether *pid* is in the middle of reading the file *path*: an open file of it (the same device and inode: a
    process in a chroot names it otherwise) whose offset is past the start and short of the end. That is the YAML
    parser, which reads it in chunks; Config reads it whole once before (its digest), in one read(2)."""
    want = os.stat(path)
    try:
        fds = os.listdir('/proc/{0}/fd'.format(pid))
    except OSError:
        return False
    for fd in fds:
        try:
            st = os.stat('/proc/{0}/fd/{1}'.format(pid, fd))
            if (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino):
                continue
            with open('/proc/{0}/fdinfo/{1}'.format(pid, fd)) as f:
                pos = int([line.split()[1] for line in f if line.startswith('pos:')][0])
        except (OSError, IndexError, ValueError):
            continue
        if 0 < pos < want.st_size:
            return True
    return False


@pytest.mark.parametrize('sighup', [True, False], ids=['sighup', 'control'])
def test_sighup_forwarded_while_the_daemon_starts(python, parts, sighup):
    """The daemon reads a configuration file that takes seconds to parse (20 MB of comments); while it does, its
    path is made to name another file with other tags, and PID 1, which forwards signals by then, gets a SIGHUP: the
    daemon must survive it and apply the file as it is then (the other file's tags), where the control, without
    SIGHUP, keeps what it read first. That the SIGHUP reached the daemon inside that window is asserted: PID 1 has
    forwarded it (it went back to waiting) while the daemon still had the first file open."""
    bin_dir, pg_bin, method = python
    workdir, etcd, containers = parts
    first = config(workdir, etcd, pg_bin, {'read': 'first'})
    slow = workdir.file('slow.yml', PADDING + json.dumps(first) + '\n')
    path = os.path.join(workdir.path, 'patroni.yml')
    os.link(slow, path)
    container = Container(workdir, bin_dir, path)
    containers.append(container)

    def daemon_parsing() -> Optional[int]:
        for pid in descendants(container.pid1):
            if parsing(pid, slow):
                return pid
        return None
    daemon = wait_for(daemon_parsing, 60, lambda: 'the daemon parsing its configuration file' + container.tail())
    wait_for(lambda: catches(container.pid1, signal.SIGTERM), 10, 'PID 1 forwarding signals (its last handler)')
    os.rename(workdir.file('other.yml', json.dumps(dict(first, tags={'read': 'other'}))), path)
    assert parsing(daemon, slow), 'the daemon parsed its file before the test could change it'
    if sighup:
        switches = int(proc_field(container.pid1, 'voluntary_ctxt_switches') or 0)
        os.kill(container.pid1, signal.SIGHUP)
        # PID 1 woke up, forwarded it (passtochild) and waits again
        wait_for(lambda: int(proc_field(container.pid1, 'voluntary_ctxt_switches') or 0) > switches, 10,
                 'PID 1 to forward the SIGHUP')
        assert not alive(daemon) or parsing(daemon, slow), \
            'the window was missed: the daemon was done with its file before the SIGHUP came'
    expected = {'read': 'other' if sighup else 'first'}
    wait_for(lambda: container.proc.poll() is not None or status(first).get('state') == 'running', 120,
             lambda: 'PostgreSQL running, or the container gone' + container.tail())
    assert container.proc.poll() is None and alive(daemon), '{0}: the daemon died, and PID 1 with it (exit {1})'.format(
        method, container.proc.returncode) + container.tail()
    wait_for(lambda: status(first).get('tags') == expected, 30, lambda: 'tags {0}'.format(expected) + container.tail())
    if not sighup:  # and two HA cycles later, still
        offset = os.path.getsize(container.log)
        wait_for(lambda: read_from(container.log, offset).count(CYCLE) >= 2, 30,
                 lambda: 'two HA cycles' + container.tail())
        assert status(first).get('tags') == expected
    os.kill(container.pid1, signal.SIGTERM)
    assert container.proc.wait(60) == 0, container.tail()


if __name__ == '__main__':  # pragma: no cover
    sys.exit(pytest.main([__file__, '-v']))
