"""The real patched ``patroni`` with PostgreSQL 15 and etcd 3.4 on loopback; this test plays the service manager.

What is asserted is what systemd would see on its notify socket, and what Patroni's children inherit.
"""

import os
import signal
import time
import uuid

import psycopg2
import pytest

from realparts import Etcd, NotifyListener, paced, Patroni, PG_BIN, ROOT, sequence_error, sighup_handler_order, \
    wait_for, Workdir

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def workdir():
    w = Workdir()
    yield w
    w.cleanup()


@pytest.fixture(scope='module')
def etcd(workdir):
    e = Etcd(workdir.path)
    yield e
    e.stop()


@pytest.fixture
def node(workdir, etcd):
    nodes = []

    def make(**kwargs):
        n = Patroni(workdir, etcd, 'it-' + uuid.uuid4().hex[:8], **kwargs)
        nodes.append(n)
        return n
    yield make
    for n in nodes:
        n.kill()


@pytest.fixture
def listener(workdir):
    listeners = []

    def make(address=None):
        address = address or os.path.join(workdir.path, 'notify-' + uuid.uuid4().hex[:8])
        lst = NotifyListener(address)
        listeners.append(lst)
        return lst
    yield make
    for lst in listeners:
        lst.close()


def read_env(path):
    with open(path) as f:
        return dict(line.split('=', 1) for line in f.read().splitlines() if '=' in line)


def first_cycle_time(n):
    """Time stamp of the first HA cycle's own log line (the line ``Patroni._run_cycle`` logs). Patroni writes its log
    from a thread of its own, so the line may reach the file a little after the notification: wait for it."""
    def find():
        for line in n.log().splitlines():
            if 'bootstrap' in line and 'INFO: ' in line or 'the leader with the lock' in line:
                return float(line.split(' ', 1)[0])
        return None
    return wait_for(find, 10, 'the first HA cycle in the log')


# in the environment Patroni is started with: its children must have it, and not NOTIFY_SOCKET (the positive control of
# the children's environment: the dump and /proc/PID/environ show what was inherited)
PROBE = ('SDNOTIFY_PROBE', 'inherited')


def wal_backlog(n, segments):
    """Switch *segments* WAL segments on *n*'s PostgreSQL (each after a new table: a switch with no WAL written is a
    no-op), for an archiver that takes 1 s a segment."""
    with psycopg2.connect(host='127.0.0.1', port=n.pg_port, user='postgres', dbname='postgres') as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for i in range(segments):
                cur.execute('CREATE TABLE backlog_{0}_{1} ()'.format(uuid.uuid4().hex[:8], i))
                cur.execute('SELECT pg_switch_wal()')


def test_sequence_ready_after_first_cycle_and_children_never_see_the_socket(node, listener, workdir, etcd):
    # written whole, then renamed: a reader that sees the file sees all of it (`env > file` creates it empty first)
    dump = '#!/bin/sh\nf={0}/$(basename $0)-$1.env\nenv > "$f.tmp" && mv "$f.tmp" "$f"\n'.format(workdir.path)
    callback = workdir.file('callback', dump, 0o755)
    bootstrap = workdir.file('bootstrap', dump.replace('-$1', '') + 'for a; do case "$a" in --datadir=*) '
                             'd="${a#--datadir=}";; esac; done\nexec ' + PG_BIN + '/initdb -D "$d" '
                             '-U postgres >/dev/null\n', 0o755)
    # the stop extension is on (the shipped units set it), and the shutdown has WAL to archive at 1 s a segment
    n = node(extra={'bootstrap': {'method': 'custom', 'custom': {'command': bootstrap}},
                    'postgresql': {'callbacks': {'on_start': callback, 'on_stop': callback}}},
             env={PROBE[0]: PROBE[1], 'PATRONI_STOP_TIMEOUT_MAX': '60'})
    n.write_config(parameters={'archive_mode': 'on', 'archive_command': 'sleep 1'})
    manager = listener()
    n.start(manager.address)
    ready = manager.wait('READY=1')
    # READY=1 comes right after the first HA cycle, not before it
    assert ready >= first_cycle_time(n) - 0.002
    n.wait_running()
    # children: the bootstrap script, the callbacks, the postmaster: none inherits NOTIFY_SOCKET, each inherits the rest
    for name in ('bootstrap.env', 'callback-on_start.env'):
        path = wait_for(lambda: os.path.exists(os.path.join(workdir.path, name)) and os.path.join(workdir.path, name),
                        30, name)
        env = read_env(path)
        assert 'NOTIFY_SOCKET' not in env and env.get(PROBE[0]) == PROBE[1], (path, env)
    with open('/proc/{0}/environ'.format(n.postmaster_pid()), 'rb') as f:
        environ = f.read().split(b'\0')
    assert not [v for v in environ if v.startswith(b'NOTIFY_SOCKET=')], environ
    assert '{0}={1}'.format(*PROBE).encode() in environ, environ
    assert etcd.get('/service/{0}/leader'.format(n.scope)) == 'node1'
    postmaster = n.postmaster_pid()
    wal_backlog(n, 3)
    assert n.stop() == 0
    assert manager.names() == ['READY=1', 'STOPPING=1']
    # the shutdown archiving its backlog extends systemd's stop timeout, only after STOPPING=1
    stopping = next(i for i, (_, m) in enumerate(manager.messages) if m.startswith('STOPPING=1'))
    assert manager.extensions() and all(i > stopping for i in manager.extensions()), manager.messages
    assert etcd.get('/service/{0}/leader'.format(n.scope)) is None
    assert not os.path.exists('/proc/{0}'.format(postmaster))
    stop_env = wait_for(lambda: os.path.exists(os.path.join(workdir.path, 'callback-on_stop.env')), 30, 'on_stop')
    env = read_env(os.path.join(workdir.path, 'callback-on_stop.env'))
    assert stop_env and 'NOTIFY_SOCKET' not in env and env.get(PROBE[0]) == PROBE[1], env


@pytest.mark.parametrize('delays, blocked', [((0, 10, 20, 50, 100, 200, 500), True), ((0, 10, 50, 200, 500), False)],
                         ids=['launched-with-SIGHUP-blocked', 'plain-exec'])
def test_sighup_during_start_up_is_a_reload(node, listener, delays, blocked):
    n = node()
    orders = []
    for i, delay in enumerate(delays):
        n.write_config(tags={'trial': 'before'})
        manager = listener()
        proc = n.start(manager.address, block_sighup=blocked)
        if not blocked:  # before Python runs Patroni's first lines, SIGHUP kills any program: count from the handler
            orders.append(sighup_handler_order(proc))
        time.sleep(delay / 1000.0)  # the input of the trial: when the signal comes, not a synchronisation
        n.write_config(tags={'trial': str(delay)})
        proc.send_signal(signal.SIGHUP)
        try:
            manager.wait('READY=1', timeout=90)
        except AssertionError as e:
            raise AssertionError('{0} ms, exit code {1}: {2}\n{3}'.format(delay, proc.poll(), e, n.log()[-3000:]))
        assert proc.poll() is None, 'killed by a SIGHUP {0} ms after exec: exit {1}'.format(delay, proc.returncode)
        wait_for(lambda: n.status().get('tags') == {'trial': str(delay)}, 30,
                 'the config as of the signal ({0} ms) in effect: {1}'.format(delay, n.status().get('tags')))
        if 'RELOADING=1' in manager.names():  # the signal came after READY=1: let that reload finish
            manager.wait('READY=1', count=2)
        assert n.stop() == 0
        assert sequence_error(manager.names()) == ''
    # the handler counted from is Patroni's first statement, not one it installs late: it comes before Patroni imports
    # what it needs to read its configuration (the control: test_upstream_handles_sighup_only_after_its_imports)
    print('plain exec, the SIGHUP handler as seen against PyYAML\'s library: {0}'.format(orders))
    assert 'late' not in orders and (blocked or 'early' in orders), orders


def test_upstream_handles_sighup_only_after_its_imports(node):
    """The control of the order check above: upstream 4.1.5 makes SIGHUP harmless only as its daemon starts, after it
    imported its dependencies and read its configuration file (a SIGHUP before that kills it)."""
    n = node(executable=os.path.join(ROOT, '.venv-upstream', 'bin', 'patroni'))
    proc = n.start(None)
    try:
        assert sighup_handler_order(proc) == 'late'
    finally:
        n.kill()


def test_abstract_socket(node, listener):
    n = node()
    manager = listener('@patroni-it-' + uuid.uuid4().hex[:8])
    n.start(manager.address)
    manager.wait('READY=1')
    n.wait_running()
    n.proc.send_signal(signal.SIGHUP)
    manager.wait('READY=1', count=2)
    assert n.stop() == 0
    assert manager.names() == ['READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1']


@pytest.mark.parametrize('kind', ['missing-path', 'not-a-socket', 'relative'])
def test_unusable_socket_one_warning_and_patroni_runs_on(node, workdir, kind):
    n = node()
    address = {'missing-path': os.path.join(workdir.path, 'no', 'such', 'socket'),
               'not-a-socket': workdir.file('plain-file-' + uuid.uuid4().hex[:8], ''),
               'relative': 'relative/socket'}[kind]
    n.start(address)
    status = n.wait_running()
    assert status['role'] == 'primary'
    n.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: 'No local configuration items changed.' in n.log(), 30, 'the reload being logged')
    assert n.stop() == 0
    warnings = [line for line in n.log().splitlines() if 'NOTIFY_SOCKET' in line]
    assert len(warnings) == 1, warnings
    assert 'WARNING' in warnings[0]


# loop_wait 10 as in upstream's defaults: long enough that waiting for it would show
SLOW_LOOP = {'bootstrap': {'dcs': {'ttl': 30, 'loop_wait': 10, 'retry_timeout': 10}}}
CYCLE = 'the leader with the lock'


def wait_for_new_cycle(n, what):
    """Wait until the HA loop logs one more steady-state cycle than now."""
    seen = n.log().count(CYCLE)
    wait_for(lambda: n.log().count(CYCLE) > seen, 30, what)


def test_sighup_is_applied_without_waiting_for_loop_wait(node, listener):
    n = node(extra=SLOW_LOOP)
    manager = listener()
    n.start(manager.address)
    n.wait_running()
    # a first SIGHUP, of an unchanged file: its cycle over (READY=1), the loop naps for loop_wait (10 s)
    n.proc.send_signal(signal.SIGHUP)
    manager.wait('READY=1', count=2, timeout=30)
    n.write_config(tags={'reload': 'now'})
    start = time.monotonic()
    n.proc.send_signal(signal.SIGHUP)
    manager.wait('READY=1', count=3, timeout=30)
    elapsed = time.monotonic() - start
    # waiting for the nap would take ~10 s; the reload itself (pg_ctl reload, a 1 s pause, a query) ~1.1 s, and the
    # waker lets a second SIGHUP through a second after the first at the earliest
    assert elapsed < 5, 'SIGHUP -> READY=1 took {0:.1f} s with loop_wait 10'.format(elapsed)
    assert n.status().get('tags') == {'reload': 'now'}
    assert n.stop() == 0
    assert manager.names() == ['READY=1', 'RELOADING=1', 'READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1']


@pytest.mark.parametrize('when', ['start-up', 'steady-state'])
def test_sighup_storm(node, listener, when):
    """1,000 SIGHUPs in one second (at the pace this machine allows: the storm's length is printed, not asserted),
    the configuration file rewritten along the way."""
    n = node()
    manager = listener()
    proc = n.start(manager.address, block_sighup=True)
    if when == 'steady-state':
        manager.wait('READY=1')
        n.wait_running()
    began = time.time()
    for i in paced(1000, 0.001):
        if i % 100 == 99:
            n.write_config(tags={'storm': str(i)})
        proc.send_signal(signal.SIGHUP)
    took = time.time() - began
    assert proc.poll() is None, 'killed by the storm: exit {0}\n{1}'.format(proc.returncode, n.log()[-3000:])
    ready = manager.wait('READY=1', timeout=90)
    if when == 'start-up':  # the storm hit the start-up: it began before READY=1
        assert began < ready, (began, ready)
    wait_for(lambda: n.status().get('tags') == {'storm': '999'}, 30,
             'the last configuration in effect: {0}'.format(n.status().get('tags')))
    wait_for(lambda: sequence_error(manager.names(), stopped=False) == '', 30,
             'every RELOADING=1 answered by READY=1: {0}'.format(manager.names()))
    wait_for_new_cycle(n, 'the HA loop cycling after the storm')
    assert proc.poll() is None
    assert n.stop() == 0
    assert sequence_error(manager.names()) == ''
    print('storm during {0}: {1:.2f} s for 1,000 SIGHUPs; {2} reloads'.format(when, took,
                                                                              manager.names().count('RELOADING=1')))


def statuses(manager):
    return [m.split('STATUS=', 1)[1].split('\n')[0] for _, m in manager.messages if 'STATUS=' in m]


def test_status_and_a_failed_reload(node, listener):
    n = node()
    manager = listener()
    n.write_config(tags={'config': 'good'})
    n.start(manager.address)
    n.wait_running()
    wait_for(lambda: any(CYCLE in s for s in statuses(manager)), 30, 'STATUS with the leader: {0}'.format(
        statuses(manager)))
    assert len(statuses(manager)) == len(set(statuses(manager))), 'STATUS sent only when it changes'
    # unparsable YAML: READY=1 all the same, the old configuration kept, STATUS says so until a good reload
    with open(n.config_path, 'w') as f:
        f.write('scope: [broken\n')
    n.proc.send_signal(signal.SIGHUP)
    manager.wait('READY=1', count=2)
    failed = wait_for(lambda: [s for s in statuses(manager) if s.startswith('reload failed: ')], 10,
                      'STATUS reload failed: {0}'.format(statuses(manager)))
    assert n.config_path in failed[-1]
    assert n.proc.poll() is None and n.status().get('tags') == {'config': 'good'}
    wait_for_new_cycle(n, 'a cycle after the failed reload')
    assert statuses(manager)[-1].startswith('reload failed: '), 'kept until the next successful reload'
    n.write_config(tags={'config': 'fixed'})
    n.proc.send_signal(signal.SIGHUP)
    manager.wait('READY=1', count=3)
    wait_for(lambda: not statuses(manager)[-1].startswith('reload failed'), 10, 'STATUS cleared')
    assert n.status().get('tags') == {'config': 'fixed'}
    assert n.stop() == 0
    last = [m for i, (_, m) in enumerate(manager.messages) if i not in manager.extensions()][-1]
    assert last == 'STOPPING=1\nSTATUS=shutting down'


def test_published_version_parses_for_monitoring_and_the_dcs(node, listener, etcd):
    """/metrics, GET /patroni and the member key carry upstream's version; only the package metadata has our label:
    a Prometheus scrape of ``04015+sdnotify01`` fails whole, and members could not parse ``4.1.5+sdnotify.1``."""
    import importlib.metadata
    import json
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from patroni.dcs import Member

    n = node()
    manager = listener()
    n.start(manager.address)
    manager.wait('READY=1', timeout=90)
    n.wait_running()
    wait_for(lambda: n.status().get('role') == 'primary', 30, 'the leader')
    with urllib.request.urlopen(n.api + '/metrics', timeout=5) as r:
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    version = families['patroni_version'].samples[0]
    assert version.value == 40105, version
    assert families['patroni_primary'].samples[0].value == 1  # the rest of the scrape is there too
    published = n.status()['patroni']['version']
    member = json.loads(wait_for(lambda: etcd.get('/service/{0}/members/{1}'.format(n.scope, n.name)), 30,
                                 'the member key'))
    for data in (published, member['version']):
        assert Member(0, n.name, None, {'version': data}).patroni_version == (4, 1, 5), data
    assert importlib.metadata.version('patroni').startswith('4.1.5+sdnotify.')
    assert n.stop() == 0


def test_ready_that_did_not_go_through_is_sent_again(node, workdir):
    """The service manager's socket is not there when the first HA cycle ends: READY=1 fails, and is sent again
    with a later cycle once it is there (before, it was lost for good: the unit would stay activating)."""
    n = node()
    n.start(None)
    n.wait_running()
    assert n.stop() == 0
    address = os.path.join(workdir.path, 'notify-late-' + uuid.uuid4().hex[:8])
    offset = len(n.log())
    n.start(address)
    # READY=1 is sent at the end of the first cycle, before the nap: a second cycle means it was tried, and failed
    wait_for(lambda: n.log()[offset:].count('I am (node1)') >= 2, 60, 'two HA cycles\n' + n.log()[-2000:])
    assert 'Failed to notify the service manager' in n.log()[offset:]
    manager = NotifyListener(address)
    try:
        manager.wait('READY=1', timeout=30)  # loop_wait is 2 s
        wait_for(lambda: any(m.startswith('STATUS=') for _, m in manager.messages), 30, 'STATUS= sent again too')
        assert n.stop() == 0
        assert manager.names().count('READY=1') == 1, manager.names()
    finally:
        manager.close()


def test_early_sighup_does_not_slow_the_start(node, listener):
    """A SIGHUP before the first HA cycle, on a node whose PostgreSQL is stopped, re-reads the configuration and
    leaves PostgreSQL alone: the first cycle starts it with the new files. (Before, Patroni ran `pg_ctl reload` on
    the stopped PostgreSQL and queried it until the retry deadline: retry_timeout, 20 s here, later: so large that a
    loaded machine's noise cannot hide it or fake it.)"""
    n = node(extra={'bootstrap': {'dcs': {'ttl': 60, 'loop_wait': 2, 'retry_timeout': 20}}})
    manager = listener()
    n.start(manager.address)
    manager.wait('READY=1', timeout=90)
    n.wait_running()
    assert n.stop() == 0

    def start(sighup):
        manager = listener()
        started = time.monotonic()
        proc = n.start(manager.address, block_sighup=True)
        if sighup:
            n.write_config(tags={'early': 'sighup'})
            proc.send_signal(signal.SIGHUP)  # pending until Patroni's first statement unblocks it
        n.wait_running()
        took = time.monotonic() - started
        if sighup:
            assert n.status().get('tags') == {'early': 'sighup'}
        assert n.stop() == 0
        n.write_config()
        return took

    # plain and early starts in turn, so that a change in the machine's load weighs on both alike
    plain, early = [], []
    for _ in range(2):
        plain.append(start(False))
        early.append(start(True))
    assert max(early) < min(plain) + 10, (plain, early)
    assert 'Exceeded retry deadline' not in n.log() and 'PID file' not in n.log(), n.log()[-3000:]
    print('start to PostgreSQL accepting: plain {0}, with an early SIGHUP {1}'.format(
        ['{0:.2f}'.format(t) for t in plain], ['{0:.2f}'.format(t) for t in early]))
