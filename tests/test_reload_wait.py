"""``POST /reload`` with ``{"timeout": ...}`` and ``patronictl reload --wait`` against the real patched Patroni,
PostgreSQL 15 and etcd 3.4 on loopback (series 0012).

The claims: the answer comes once the new configuration is in effect (in ``GET /patroni`` and in PostgreSQL), says
when a parameter needs a restart, and says why a reload failed; a reload that cannot end in time is answered with a
clear error when the caller's timeout runs out; a storm of SIGHUPs and waiting callers is coalesced, every caller is
answered and Patroni stays responsive. loop_wait is 10 s, so an answer that waited for the next cycle would show.
"""

import os
import signal
import subprocess
import threading
import time
import urllib.request

import psycopg2
import pytest

from realparts import BIN, Etcd, paced, Patroni, post_reload, read_from, reload_storm, wait_for, Workdir, write_config

pytestmark = pytest.mark.slow

SLOW_LOOP = {'bootstrap': {'dcs': {'ttl': 30, 'loop_wait': 10, 'retry_timeout': 10}}}
RELOADING_PG = 'INFO: Reloading PostgreSQL configuration.'
NO_CHANGE = 'No local configuration items changed.'
CYCLE = 'no action. I am (node1), the leader with the lock'
APPLIED = {'reload': 'applied', 'state': 'running', 'pending_restart': False}


@pytest.fixture(scope='module')
def module_node():
    workdir = Workdir()
    etcd = Etcd(workdir.path)
    n = Patroni(workdir, etcd, 'reload-wait', extra=SLOW_LOOP)
    try:
        yield n
    finally:
        n.kill()
        etcd.stop()
        workdir.cleanup()


@pytest.fixture
def node(module_node):
    """The module's node, running its own configuration whatever test ran before (the storm test ends with a stop):
    each test runs alone or in any order."""
    n = module_node
    if n.proc is None or n.proc.poll() is not None:
        n.write_config()
        n.start(None)
    n.wait_running()
    return n


def restore(n):
    """The node's own configuration back, and in effect (for the next test, also after a failure)."""
    n.write_config()
    assert post_reload(n, {'timeout': 30})[:2] == (200, APPLIED), n.log()[-2000:]


def http_get_seconds(url):
    """How long a GET of *url* takes to be answered, whatever the status (``inf``: no answer within 10 s)."""
    start = time.monotonic()
    try:
        urllib.request.urlopen(url, timeout=10).close()
    except urllib.error.HTTPError:
        pass
    except OSError:
        return float('inf')
    return time.monotonic() - start


def setting(n, name):
    """The value of *name* in PostgreSQL, on a new connection."""
    with psycopg2.connect(host='127.0.0.1', port=n.pg_port, user='postgres', dbname='postgres') as conn:
        with conn.cursor() as cur:
            cur.execute('SELECT current_setting(%s)', (name,))
            return cur.fetchone()[0]


def patronictl(n, *args):
    # a configuration of its own: the node's file is broken on purpose in one test
    config = write_config(n.workdir, os.path.join(n.dir, 'patronictl.yml'),
                          {'etcd3': {'hosts': '127.0.0.1:{0}'.format(n.etcd.port)}})
    return subprocess.run([os.path.join(BIN, 'patronictl'), '-c', config, 'reload', n.scope, n.name,
                           '--force'] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)


def test_answer_comes_with_the_new_configuration_in_effect(node):
    try:
        for i, work_mem in enumerate(('5MB', '6MB', '7MB')):
            node.write_config(tags={'round': str(i)}, parameters={'work_mem': work_mem})
            status, answer, elapsed = post_reload(node, {'timeout': 30})
            assert (status, answer) == (200, APPLIED), node.log()[-2000:]
            assert node.status().get('tags') == {'round': str(i)}
            assert setting(node, 'work_mem') == work_mem
            assert elapsed < 5, 'answered after {0:.1f} s: the next cycle (loop_wait 10) was waited for'.format(elapsed)
        # a parameter that needs a restart: applied, and the answer says what waits for the restart
        node.write_config(parameters={'shared_buffers': '32MB'})
        status, answer, _ = post_reload(node, {'timeout': 30})
        assert status == 200 and answer['reload'] == 'applied' and answer['pending_restart'] is True, answer
        assert answer['pending_restart_reason'] == {'shared_buffers': {'old_value': '16MB', 'new_value': '32MB'}}
        assert answer['state'] == 'running'
    finally:
        restore(node)
    # the default request and answer are the ones they always were
    assert post_reload(node)[:2] == (202, 'reload scheduled')


def test_patronictl_reload_wait(node):
    node.write_config(tags={'by': 'patronictl'})
    result = patronictl(node, '--wait')
    assert result.returncode == 0, result.stdout
    assert 'Success: reload applied on member {0}'.format(node.name) in result.stdout
    assert node.status().get('tags') == {'by': 'patronictl'}
    result = patronictl(node, '--timeout', '10')
    assert result.returncode == 1 and '--timeout only goes with --wait' in result.stdout, result.stdout


def test_a_broken_configuration_file_is_answered_as_a_failure(node):
    node.write_config(tags={'config': 'good'})
    assert post_reload(node, {'timeout': 30})[1]['reload'] == 'applied'
    try:
        with open(node.config_path, 'w') as f:
            f.write('scope: [broken\n')
        status, answer, _ = post_reload(node, {'timeout': 30})
        assert status == 500 and answer['reload'] == 'failed', answer
        # one line: the file, the line and column, the parser's problem (not the repr of the parser's exception)
        error = "{0}, line 2, column 1: expected ',' or ']', but got '<stream end>'".format(node.config_path)
        assert answer['error'] == error, answer
        assert node.status().get('tags') == {'config': 'good'}, 'the previous configuration stays in effect'
        result = patronictl(node, '--wait')
        assert result.returncode == 1, result.stdout
        assert 'Failed: reload for member {0} failed: {1}'.format(node.name, error) in result.stdout, result.stdout
        assert 'reload not applied on: {0}'.format(node.name) in result.stdout, result.stdout
        node.write_config(tags={'config': 'fixed'})
        answer = post_reload(node, {'timeout': 30})[:2]
        assert answer == (200, APPLIED), answer
        assert node.status().get('tags') == {'config': 'fixed'}
    finally:
        restore(node)


def test_a_reload_that_cannot_end_in_time_is_answered_when_the_timeout_runs_out(node):
    """The HA loop is held in a cycle by a DCS that does not answer (etcd stopped, retry_timeout 10 s): a reload
    requested meanwhile waits for that cycle to end."""
    # right after a steady-state cycle the loop naps (loop_wait 10 s) and needs no DCS until its next cycle
    seen = node.log().count(CYCLE)
    wait_for(lambda: node.log().count(CYCLE) > seen, 30, 'a steady-state cycle')
    offset = os.path.getsize(node.log_path)
    os.kill(node.etcd.proc.pid, signal.SIGSTOP)
    try:
        # this reload runs at once, then the loop goes on to a cycle that hangs on etcd
        assert post_reload(node)[0] == 202
        wait_for(lambda: NO_CHANGE in read_from(node.log_path, offset), 10, 'the reload before the hung cycle')
        status, answer, elapsed = post_reload(node, {'timeout': 1})
        assert (status, answer) == (202, {'reload': 'scheduled', 'error': 'not over after 1 s'})
        assert 1 <= elapsed < 5, elapsed
        assert node.status(), 'the REST API answers meanwhile'
    finally:
        os.kill(node.etcd.proc.pid, signal.SIGCONT)
    # positive control: the same request with room to wait is applied
    status, answer, _ = post_reload(node, {'timeout': 60})
    assert (status, answer) == (200, APPLIED), node.log()[-2000:]
    node.wait_running()


def test_waiting_callers_never_starve_health_checks(node):
    """The HA loop held in a cycle by a DCS that does not answer (etcd stopped), and twice as many callers waiting on
    POST /reload as the REST API has handler threads (restapi.thread_pool_size 5): GET /health is answered at once
    all along, as on master, whose POST /reload never waits. Half of the handler threads may wait; the other callers
    are answered at once that their reload is scheduled, not waited for."""
    seen = node.log().count(CYCLE)
    wait_for(lambda: node.log().count(CYCLE) > seen, 30, 'a steady-state cycle')
    answers, threads = [], []
    offset = os.path.getsize(node.log_path)
    os.kill(node.etcd.proc.pid, signal.SIGSTOP)
    try:
        assert post_reload(node)[0] == 202  # a reload, then the loop goes on to a cycle that hangs on etcd
        wait_for(lambda: NO_CHANGE in read_from(node.log_path, offset), 10, 'the reload before the hung cycle')
        for _ in range(10):
            threads.append(threading.Thread(target=lambda: answers.append(post_reload(node, {'timeout': 20}))))
            threads[-1].start()
        wait_for(lambda: len(answers) == 8, 10, 'all but the two waiting callers answered at once')
        health, waiting = [], []
        for _ in paced(20, 0.05):
            waiting.append(len(answers) == 8)  # both waiting callers still hold their handler threads
            health.append(http_get_seconds(node.api + '/health'))
        assert max(health) < 1, 'GET /health while callers wait: {0}'.format(health)
        assert [a[:2] for a in answers[:8]] == [(202, {'reload': 'scheduled', 'error': '2 callers wait for a '
                                                                                       'reload already'})] * 8, answers
    finally:
        os.kill(node.etcd.proc.pid, signal.SIGCONT)
    for thread in threads:
        thread.join(60)
    # the two that waited are answered once the loop can reload; the positive control that checks ran while they
    # held their threads
    assert [a[:2] for a in answers[8:]] == [(200, APPLIED)] * 2, answers
    assert waiting[0], 'no health check while the two callers waited'
    print('GET /health with 2 callers waiting and 8 turned away: {0:.3f} s max over {1} checks, {2} while they '
          'waited'.format(max(health), len(health), sum(waiting)))
    node.wait_running()


def test_a_storm_of_sighups_and_waiting_callers_is_coalesced(node):
    """1,000 SIGHUPs within a second and 100 callers waiting on POST /reload at the same time; then Patroni stops
    cleanly (the next test, if any, starts it again)."""
    node.write_config(tags={'storm': 'on'})
    offset = os.path.getsize(node.log_path)
    answers, latencies, storm = reload_storm(node, {'timeout': 60})
    assert node.proc.poll() is None, node.log()[-3000:]
    # every caller is answered: those that found half of the handler threads waiting already, at once
    turned_away = (202, {'reload': 'scheduled', 'error': '2 callers wait for a reload already'})
    assert len(answers) == 100 and set(map(str, answers)) <= {str((200, APPLIED)), str(turned_away)}, answers
    assert answers.count((200, APPLIED)) >= 2, answers
    assert node.status().get('tags') == {'storm': 'on'}
    # the first one changed the tags, the others logged NO_CHANGE; each one logs RELOADING_PG (the count holds only
    # if the log is written: run 2 of session 14 had a log that stopped when the storm began)
    logged = read_from(node.log_path, offset)
    reloads = logged.count(NO_CHANGE) + 1
    assert RELOADING_PG in logged, 'no reload in the log since the storm began:\n' + logged[-3000:]
    assert reloads < 100, '{0} reloads for 1,100 requests: not coalesced'.format(reloads)
    print('storm: {0} reloads for 1,000 SIGHUPs + 100 waiting POSTs in {1:.2f} s; GET /patroni: {2}'.format(
        reloads, storm, ' '.join('{0:.3f}'.format(t) for t in latencies)))
    assert latencies and max(latencies) < 5, 'GET /patroni during the storm: {0}'.format(latencies)
    # nothing is left hanging: a reload after the storm is answered at once
    assert post_reload(node, {'timeout': 30})[:2] == (200, APPLIED)
    assert node.stop() == 0
