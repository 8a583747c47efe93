"""Real parts for the integration tests: etcd 3.4 and PostgreSQL 15 from Debian, the installed patched Patroni.

Everything listens on 127.0.0.1, lives under one temporary directory and is ended by PID. Patroni runs as the
``postgres`` user (PostgreSQL refuses to run as root).
"""

import base64
import json
import os
import pwd
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ETCD = os.path.join(ROOT, '.cache', 'etcd', 'usr', 'bin', 'etcd')
# Debian's PostgreSQL 15 on this machine; SDNOTIFY_PG_BIN names another (make test-py314: forky's 18, in its root)
PG_BIN = os.environ.get('SDNOTIFY_PG_BIN') or '/usr/lib/postgresql/15/bin'
BIN = os.path.dirname(sys.executable)
# Debian's python3-systemd, unpacked by tests/deps.sh: what upstream 4.1.5 needs to notify systemd at all
PYTHON_SYSTEMD = os.path.join(ROOT, '.cache', 'python3-systemd', 'usr', 'lib', 'python3', 'dist-packages')
POSTGRES = pwd.getpwnam('postgres')
# every Workdir holds this file, naming the process that made it (see owner_tag); tests/leftovers.py cleans up
# after a run only once that process is provably gone
OWNER_FILE = '.sdnotify-owner'
WORKDIR_PREFIX = 'sdnotify-'
# where the systemd harnesses keep their Workdirs: not under /tmp, which a unit with PrivateTmp=yes (the shipped
# hardening.conf) sees as a /tmp of its own, empty
HARNESS_WORK = os.path.join(ROOT, '.cache', 'work')


def wait_for(predicate: Callable[[], Any], timeout: float, what: Union[str, Callable[[], str]],
             interval: float = 0.02) -> Any:
    """Poll *predicate* until it returns something true; fail with *what* after *timeout* seconds. *what* may be a
    callable, called at the failure: a log's tail then shows how the wait ended, not how it began."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError('timed out after {0}s waiting for {1}'.format(
                timeout, what() if callable(what) else what))
        time.sleep(interval)


def process_start(pid: int) -> Optional[str]:
    """When *pid* started (clock ticks since boot, /proc/PID/stat field 22); ``None`` if there is no such process."""
    try:
        with open('/proc/{0}/stat'.format(pid)) as f:
            return f.read().rsplit(')', 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_tag() -> str:
    """This process, as ``<pid namespace inode>-<pid>-<start time>``: unique for as long as the machine runs."""
    ns = re.sub(r'\D', '', os.readlink('/proc/self/ns/pid'))
    return '{0}-{1}-{2}'.format(ns, os.getpid(), process_start(os.getpid()))


def owner_gone(tag: str) -> bool:
    """Whether the process named by *tag* (see :func:`owner_tag`) has provably ended: it was in our PID namespace
    and no process of that PID with that start time runs. A tag of another PID namespace, or unreadable, is not."""
    parts = tag.strip().split('-')
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return False
    ns, pid, start = parts
    if ns != re.sub(r'\D', '', os.readlink('/proc/self/ns/pid')):
        return False
    return process_start(int(pid)) != start


def process_state(pid: int, log: Optional[Tuple[int, int]] = None) -> str:
    """How process *pid* stands, from /proc: its signal masks (pending, blocked, ignored, caught), its I/O counts,
    what its standard output and error are (with *log*, the ``(st_dev, st_ino)`` of the file it was started with:
    whether they still are that file) and, per thread, name, run state (R, S, D, T...), kernel wait channel and
    kernel stack; an unreadable part says why."""
    def read(name: str) -> str:
        try:
            with open('/proc/{0}/{1}'.format(pid, name)) as f:
                return f.read().strip()
        except OSError as e:
            return repr(e)
    wanted = ('State', 'SigQ', 'SigPnd', 'ShdPnd', 'SigBlk', 'SigIgn', 'SigCgt')
    lines = [line for line in read('status').splitlines() if line.split(':')[0] in wanted]
    lines.append('io: ' + ' '.join(read('io').split()))
    for fd in ('1', '2'):
        try:
            target = os.readlink('/proc/{0}/fd/{1}'.format(pid, fd))
            st = os.stat('/proc/{0}/fd/{1}'.format(pid, fd))
            same = '' if log is None else ', the file it was started with' if (st.st_dev, st.st_ino) == log else \
                ', NOT the file it was started with'
            lines.append('fd {0} -> {1} (size {2}{3}); {4}'.format(fd, target, st.st_size, same, ' '.join(
                read('fdinfo/' + fd).split())))
        except OSError as e:
            lines.append('fd {0}: {1!r}'.format(fd, e))
    try:
        tasks = sorted(os.listdir('/proc/{0}/task'.format(pid)), key=int)
    except OSError as e:
        tasks, lines = [], lines + [repr(e)]
    for task in tasks:
        stat = read('task/{0}/stat'.format(task))
        masks = ' '.join(line.split()[1] for line in read('task/{0}/status'.format(task)).splitlines()
                         if line.startswith(('SigPnd', 'SigBlk')))
        lines.append('task {0} {1}: {2} {3} (SigPnd SigBlk {4}) kernel stack: {5}'.format(
            task, read('task/{0}/comm'.format(task)), (stat.rsplit(')', 1)[-1].split() or ['?'])[0],
            read('task/{0}/wchan'.format(task)), masks, ' < '.join(
                line.split()[-1] for line in read('task/{0}/stack'.format(task)).splitlines())))
    return '\n'.join(lines)


def core_dumps_piped() -> bool:
    """Whether the machine's kernel.core_pattern pipes core dumps to a handler, which the kernel runs even for a
    process whose core dumps are off: then a diagnostic SIGABRT would act on the machine's behalf, and is not sent."""
    with open('/proc/sys/kernel/core_pattern') as f:
        return f.read().startswith('|')


def read_from(path: str, offset: int = 0) -> str:
    """The text of the file *path* from byte *offset* on (a log: what was written since ``os.path.getsize``);
    ``''`` if there is no such file."""
    try:
        with open(path, 'rb') as f:
            f.seek(offset)
            return f.read().decode(errors='replace')
    except FileNotFoundError:
        return ''


def sighup_safe(pid: int) -> bool:
    """Whether a SIGHUP to *pid* is no longer fatal: blocked (SigBlk) or handled (SigCgt), per /proc/PID/status."""
    try:
        with open('/proc/{0}/status'.format(pid)) as f:
            masks = dict(line.split(':', 1) for line in f if line.startswith(('SigBlk:', 'SigCgt:')))
    except OSError:
        return False
    return any(int(value, 16) & 1 for value in masks.values())


def sighup_blocked_and_pending(status: str) -> bool:
    """Whether the /proc/PID/status text *status* shows a SIGHUP pending (SigPnd or ShdPnd) that the process blocks
    (SigBlk): a reload that will never be applied by a process that never unblocks it."""
    masks = dict(line.split(':', 1) for line in status.splitlines() if ':' in line)
    try:
        pending = int(masks['SigPnd'], 16) | int(masks['ShdPnd'], 16)
        return bool(pending & int(masks['SigBlk'], 16) & 1)  # SIGHUP is signal 1: bit 0 of the masks
    except (KeyError, ValueError):
        return False


def ephemeral_ports() -> Tuple[int, int]:
    """The kernel's ephemeral port range (net.ipv4.ip_local_port_range): where every bind to port 0 and every
    outgoing connection of the machine takes its local port."""
    with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
        low, high = f.read().split()
    return int(low), int(high)


# the ports free_port() gave out in this process
_GIVEN: Set[int] = set()


def mapped(pid: int, library: str) -> bool:
    """Whether a file whose path holds *library* is mapped into *pid* (/proc/PID/maps)."""
    try:
        with open('/proc/{0}/maps'.format(pid)) as f:
            return library in f.read()
    except OSError:
        return False


# PyYAML's C extension: a dependency that Patroni imports to read its configuration file, before it can start
DEPENDENCY = '/yaml/_yaml.'


def sighup_handler_order(proc: 'subprocess.Popen[bytes]', timeout: float = 30) -> str:
    """Watch the process *proc* (just exec'd: Popen returns once the exec succeeded) until a SIGHUP is no longer
    fatal to it (:func:`sighup_safe`), and tell whether that came before it loaded :data:`DEPENDENCY`:
    ``'early'`` (seen safe, then the library seen not mapped yet), ``'late'`` (the library seen mapped, then the
    signal seen still fatal) or ``'unknown'`` (both first seen together: this watcher was not scheduled between them).
    """
    deadline = time.monotonic() + timeout
    late = False
    while True:
        loaded = mapped(proc.pid, DEPENDENCY)
        safe = sighup_safe(proc.pid)
        if safe:
            return 'late' if late else 'unknown' if mapped(proc.pid, DEPENDENCY) else 'early'
        late = late or loaded
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError('no SIGHUP handler within {0} s (exit code {1})'.format(timeout, proc.poll()))
        time.sleep(0.0002)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the ephemeral range (:func:`ephemeral_ports`)
    and never given before by this process, nor by another worker of the same pytest-xdist run (each has its share).

    The port cannot stay bound here: a daemon (etcd, Patroni, PostgreSQL) binds it later. Meanwhile a port of the
    ephemeral range could be taken by any bind to port 0 or outgoing connection of the machine, where other tests
    run beside these; outside it, only by a program that picks that very port (:class:`Etcd` then starts again).
    """
    low, high = ephemeral_ports()
    # under make test's parallel workers (pytest-xdist: PYTEST_XDIST_WORKER gw0, gw1, ...), each its own share
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    worker = int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0')[2:])
    ports = [p for p in range(10000, 65536) if not low <= p <= high and p % workers == worker]
    assert len(ports) > 1000, 'the ephemeral port range {0}-{1} leaves too few ports for the tests'.format(low, high)
    while True:
        port = random.choice(ports)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port


def http_json(url: str, body: Optional[Dict[str, Any]] = None, timeout: float = 2) -> Any:
    """GET (or POST *body* to) *url* and decode the JSON answer; ``None`` if nothing answers."""
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as r:
            return json.loads(r.read().decode())
    except (OSError, ValueError):
        return None


def patroni_config(directory: str, scope: str, name: str, etcd_port: int, api_port: int, pg_port: int,
                   tags: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A small, fast Patroni configuration on loopback; everything of the node lives under *directory*.

    ``loop_wait`` and ``ttl`` are lowered and ``fsync`` is off, so that the tests stay fast.
    """
    return {
        'scope': scope, 'name': name,
        'log': {'level': 'INFO', 'format': '%(asctime)s.%(msecs)03d %(levelname)s: %(message)s', 'dateformat': '%s'},
        'restapi': {'listen': '127.0.0.1:{0}'.format(api_port), 'connect_address': '127.0.0.1:{0}'.format(api_port)},
        'etcd3': {'hosts': '127.0.0.1:{0}'.format(etcd_port)},
        'bootstrap': {'dcs': {'ttl': 20, 'loop_wait': 2, 'retry_timeout': 5}},
        'postgresql': {
            'listen': '127.0.0.1:{0}'.format(pg_port), 'connect_address': '127.0.0.1:{0}'.format(pg_port),
            'data_dir': os.path.join(directory, 'data'), 'bin_dir': PG_BIN,
            'pgpass': os.path.join(directory, 'pgpass'),
            'authentication': {'superuser': {'username': 'postgres'}, 'replication': {'username': 'postgres'}},
            'pg_hba': ['local all all trust', 'host all all 127.0.0.1/32 trust',
                       'host replication all 127.0.0.1/32 trust'],
            'parameters': {'unix_socket_directories': directory, 'shared_buffers': '16MB', 'max_connections': 20,
                           'fsync': 'off'},
        },
        'tags': tags or {},
    }


def write_config(workdir: 'Workdir', path: str, config: Dict[str, Any]) -> str:
    """Write *config* to *path* atomically (JSON is YAML), owned by postgres; returns *path*."""
    os.rename(workdir.file(path + '.tmp', json.dumps(config, indent=1)), path)
    return path


class Workdir(object):
    """A directory the postgres user owns, removed at the end; it names its owner (:data:`OWNER_FILE`), so that
    a later run can tell it was left behind by a killed one."""

    def __init__(self, parent: Optional[str] = None) -> None:
        """In the temporary directory, or in *parent* (made if missing), e.g. :data:`HARNESS_WORK`."""
        if parent:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=parent)
        os.chmod(self.path, 0o755)
        os.chown(self.path, POSTGRES.pw_uid, POSTGRES.pw_gid)
        with open(os.path.join(self.path, OWNER_FILE), 'w') as f:
            f.write(owner_tag() + '\n')

    def mkdir(self, name: str) -> str:
        path = os.path.join(self.path, name)
        os.mkdir(path, 0o755)
        os.chown(path, POSTGRES.pw_uid, POSTGRES.pw_gid)
        return path

    def file(self, name: str, text: str, mode: int = 0o644) -> str:
        path = os.path.join(self.path, name)
        with open(path, 'w') as f:
            f.write(text)
        os.chmod(path, mode)
        os.chown(path, POSTGRES.pw_uid, POSTGRES.pw_gid)
        return path

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class Etcd(object):
    """One etcd 3.4 member on loopback."""

    def __init__(self, workdir: str) -> None:
        """Start etcd on two ports of :func:`free_port`; on other ports again if one was taken meanwhile."""
        for attempt in range(3):
            self.port, peer = free_port(), free_port()
            self.url = 'http://127.0.0.1:{0}'.format(self.port)
            peer_url = 'http://127.0.0.1:{0}'.format(peer)
            log_path = os.path.join(workdir, 'etcd.log')
            self.log = open(log_path, 'w')
            data = os.path.join(workdir, 'etcd')
            shutil.rmtree(data, ignore_errors=True)
            self.proc = subprocess.Popen([ETCD, '--name', 'it', '--data-dir', data,
                                          '--listen-client-urls', self.url, '--advertise-client-urls', self.url,
                                          '--listen-peer-urls', peer_url, '--initial-advertise-peer-urls', peer_url,
                                          '--initial-cluster', 'it=' + peer_url], stdout=self.log, stderr=self.log)
            wait_for(lambda: self.proc.poll() is not None
                     or (http_json(self.url + '/health') or {}).get('health') == 'true', 30, 'etcd health')
            if self.proc.poll() is None:
                return
            self.log.close()
            assert 'address already in use' in read_from(log_path) and attempt < 2, read_from(log_path)[-2000:]

    def get(self, key: str) -> Optional[str]:
        """The value of *key*, or ``None``."""
        answer = http_json(self.url + '/v3/kv/range', {'key': base64.b64encode(key.encode()).decode()})
        kvs = (answer or {}).get('kvs') or []
        return base64.b64decode(kvs[0]['value']).decode() if kvs else None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


class NotifyListener(object):
    """Plays the service manager's side of sd_notify(3): records every datagram with its arrival time."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.messages: List[Tuple[float, str]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind('\0' + address[1:] if address.startswith('@') else address)
        if not address.startswith('@'):
            os.chmod(address, 0o777)
        self.sock.settimeout(0.2)
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.time(), data.decode()))

    def names(self) -> List[str]:
        """The state changes in order, e.g. ``['READY=1', 'RELOADING=1']``: the first assignment of each message
        that is neither only a ``STATUS=`` nor a stop timeout extension (see :meth:`extensions`)."""
        return [m.split('\n')[0] for _, m in self.messages if not m.startswith(('STATUS=', 'EXTEND_TIMEOUT_USEC='))]

    def extensions(self) -> List[int]:
        """The indexes in :attr:`messages` of ``EXTEND_TIMEOUT_USEC=`` messages."""
        return [i for i, (_, m) in enumerate(self.messages) if m.startswith('EXTEND_TIMEOUT_USEC=')]

    def wait(self, message: str, count: int = 1, timeout: float = 60) -> float:
        """Wait for the *count*-th message that begins with *message*; return its arrival time."""
        def found() -> Optional[float]:
            times = [t for t, m in self.messages if m.split('\n')[0] == message]
            return times[count - 1] if len(times) >= count else None
        return wait_for(found, timeout, '{0} #{1} (got {2})'.format(message, count, self.names()))

    def close(self) -> None:
        self._stop = True
        self.thread.join(5)
        self.sock.close()


class Patroni(object):
    """One patched Patroni node: its config file, its process, its log."""

    def __init__(self, workdir: Workdir, etcd: Etcd, scope: str, name: str = 'node1',
                 extra: Optional[Dict[str, Any]] = None, executable: str = os.path.join(BIN, 'patroni'),
                 env: Optional[Dict[str, str]] = None) -> None:
        self.executable = executable
        self.env = env or {}
        self.workdir = workdir
        self.etcd = etcd
        self.scope = scope
        self.name = name
        self.api_port, self.pg_port = free_port(), free_port()
        self.api = 'http://127.0.0.1:{0}'.format(self.api_port)
        self.dir = workdir.mkdir(scope + '-' + name)
        self.data_dir = os.path.join(self.dir, 'data')
        self.extra = extra or {}
        self.config_path = ''
        self.proc: Optional['subprocess.Popen[bytes]'] = None
        self.log_file: Optional[Tuple[int, int]] = None
        self.log_path = os.path.join(self.dir, 'patroni.log')
        self.write_config()

    def write_config(self, tags: Optional[Dict[str, Any]] = None, parameters: Optional[Dict[str, Any]] = None) -> None:
        """(Re)write the configuration file, atomically; *parameters* are added to PostgreSQL's."""
        config = patroni_config(self.dir, self.scope, self.name, self.etcd.port, self.api_port, self.pg_port, tags)
        config['postgresql']['parameters'].update(parameters or {})
        for key, value in self.extra.items():
            config[key] = dict(config.get(key) or {}, **value) if isinstance(value, dict) else value
        self.config_path = write_config(self.workdir, os.path.join(self.dir, 'patroni.yml'), config)

    def start(self, notify_socket: Optional[str], block_sighup: bool = False) -> 'subprocess.Popen[bytes]':
        """Spawn the daemon as postgres, the way the unit does (optionally with SIGHUP blocked by env).

        With *block_sighup*, return once env has blocked SIGHUP (~1 ms after exec): the launcher's own first
        instants, before it can block anything, are the one window no program can close from inside.
        """
        env = dict(self.env, PATH='/usr/bin:/bin', HOME=self.dir, LC_ALL='C.UTF-8', PYTHONFAULTHANDLER='1')
        if notify_socket:
            env['NOTIFY_SOCKET'] = notify_socket
        cmd = [self.executable, self.config_path]
        if block_sighup:
            cmd = ['/usr/bin/env', '--block-signal=HUP'] + cmd
        log = open(self.log_path, 'a')
        st = os.fstat(log.fileno())
        self.log_file = (st.st_dev, st.st_ino)  # what its output goes to (see stop())
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, user=POSTGRES.pw_uid,
                                     group=POSTGRES.pw_gid, extra_groups=[], cwd=self.dir)
        log.close()
        if block_sighup:
            pid = self.proc.pid
            wait_for(lambda: sighup_safe(pid), 5, 'env to block SIGHUP', interval=0.0001)
        return self.proc

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def status(self) -> Dict[str, Any]:
        return http_json(self.api + '/patroni') or {}

    def wait_running(self, timeout: float = 60) -> Dict[str, Any]:
        def running() -> Optional[Dict[str, Any]]:
            status = self.status()
            return status if status.get('state') == 'running' else None
        return wait_for(running, timeout, '{0} running PostgreSQL'.format(self.name))

    def postmaster_pid(self) -> Optional[int]:
        try:
            with open(os.path.join(self.data_dir, 'postmaster.pid')) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM the daemon (by PID) and wait for it; returns its exit code. If it has not ended within *timeout*,
        fail with what shows why: how it and its postmaster stood then (:func:`process_state`: signals, threads,
        where their output goes), every thread's Python stack taken from outside (py-spy, if installed), its log
        since the SIGTERM, and the stacks it prints itself on SIGABRT (Python's faulthandler, on in its
        environment; SIGCONT for a stopped one)."""
        assert self.proc
        size = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pid = self.proc.pid
            report = ['{0} (PID {1}) not stopped {2} s after SIGTERM; then:'.format(self.name, pid, timeout),
                      process_state(pid, self.log_file)]
            try:
                st = os.stat(self.log_path)
                report.append('{0}: {1} bytes ({2} since the SIGTERM), {3}'.format(
                    self.log_path, st.st_size, st.st_size - size, 'the file it was started with'
                    if (st.st_dev, st.st_ino) == self.log_file else 'NOT the file it was started with'))
            except OSError as e:
                report.append(repr(e))
            postmaster = self.postmaster_pid()
            if postmaster:
                report += ['its postmaster, PID {0}:'.format(postmaster), process_state(postmaster, self.log_file)]
            spy = os.path.join(BIN, 'py-spy')
            if os.path.exists(spy):
                dumped = subprocess.run([spy, 'dump', '--pid', str(pid)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
                report += ['py-spy dump:', dumped.stdout[-10000:]]
            if not core_dumps_piped():
                try:
                    resource.prlimit(pid, resource.RLIMIT_CORE, (0, 0))  # no core dump of it on the machine
                    self.proc.send_signal(signal.SIGABRT)
                    self.proc.send_signal(signal.SIGCONT)
                    self.proc.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    report += ['still running 10 s after SIGABRT:', process_state(pid, self.log_file)]
            else:
                report.append('no SIGABRT: kernel.core_pattern is a pipe')
            try:  # read once, as bytes (size is a byte offset); a log path gone leaves the rest of the report
                with open(self.log_path, 'rb') as f:
                    logged = f.read()
            except OSError as e:
                logged = repr(e).encode()
            since = logged[size:].decode(errors='replace')
            if len(since) > 20000:
                since = since[:5000] + '\n[...]\n' + since[-15000:]
            report += ['its log before the SIGTERM, the end:', logged[:size][-3000:].decode(errors='replace'),
                       'since:', since]
            raise AssertionError('\n'.join(report))

    def kill(self) -> None:
        """Last resort at teardown: end the daemon and its PostgreSQL, by PID."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        pid = self.postmaster_pid()
        if pid:
            try:
                os.kill(pid, signal.SIGQUIT)
            except OSError:
                pass


def sequence_error(names: List[str], stopped: bool = True) -> str:
    """What is wrong with *names* (:meth:`NotifyListener.names`) as the sequence systemd expects: ``READY=1`` first,
    then ``RELOADING=1`` and ``READY=1`` strictly alternating, ending with ``READY=1``; then, with *stopped*, one
    ``STOPPING=1`` last (without it, none). ``''`` if nothing is."""
    body = list(names)
    if stopped:
        if not body or body.pop() != 'STOPPING=1':
            return 'not ended by STOPPING=1: {0}'.format(names)
    for i, name in enumerate(body):
        expected = 'RELOADING=1' if i % 2 else 'READY=1'
        if name != expected:
            return '{0} at {1}, where {2} must come: {3}'.format(name, i, expected, names)
    if not body or body[-1] != 'READY=1':
        return 'a RELOADING=1 not answered by READY=1, or no READY=1 at all: {0}'.format(names)
    return ''


def paced(count: int, interval: float) -> Iterator[int]:
    """0 .. *count* - 1, the i-th yielded *i* × *interval* seconds after the first: the pace of a storm (a rate to
    keep, not a synchronisation)."""
    start = time.monotonic()
    for i in range(count):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield i


def post_reload(node: 'Patroni', body: Optional[Dict[str, Any]] = None,
                timeout: float = 60) -> Tuple[int, Any, float]:
    """POST /reload to *node*; (HTTP status, the decoded JSON answer or the text, seconds it took)."""
    data = json.dumps(body).encode() if body is not None else None
    start = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(node.api + '/reload', data=data, method='POST'),
                                    timeout=timeout) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    elapsed = time.monotonic() - start
    try:
        return status, json.loads(text), elapsed
    except ValueError:
        return status, text, elapsed


def reload_storm(node: 'Patroni', body: Optional[Dict[str, Any]]) -> Tuple[List[Tuple[int, Any]], List[float], float]:
    """1,000 SIGHUPs to *node* within a second, and a POST /reload with *body* every 10 ms of it (100 callers),
    while GET /patroni is polled every 100 ms. Returns each caller's (status, answer), the GET /patroni latencies
    (seconds; ``inf``: no answer) and how long until every caller had its answer."""
    assert node.proc
    answers: List[Tuple[int, Any]] = []
    latencies: List[float] = []
    done = threading.Event()

    def caller() -> None:
        answers.append(post_reload(node, body, timeout=90)[:2])

    def watcher() -> None:
        while not done.is_set():
            start = time.monotonic()
            latencies.append(time.monotonic() - start if node.status() else float('inf'))
            done.wait(0.1)  # the watcher's pace, not a synchronisation

    callers = [threading.Thread(target=caller) for _ in range(100)]
    watching = threading.Thread(target=watcher)
    watching.start()
    start = time.monotonic()
    for i in paced(1000, 0.001):
        node.proc.send_signal(signal.SIGHUP)
        if i % 10 == 0:
            callers[i // 10].start()
    for thread in callers:
        thread.join(120)
    took = time.monotonic() - start
    done.set()
    watching.join(10)
    return answers, latencies, took
