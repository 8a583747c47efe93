"""The helpers of tests/realparts.py that the real-parts tests rely on to tell right from wrong (fast, no daemon)."""

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from realparts import (BIN, ephemeral_ports, free_port, Patroni, process_state, sequence_error, sighup_handler_order,
                       wait_for)


def test_free_port_is_outside_the_ephemeral_range_and_never_given_twice():
    """Issue 24, item 5: free_port() used to bind port 0 and close it, handing out a port of the ephemeral range,
    which any bind to port 0 or outgoing connection of the machine could take before the daemon bound it."""
    low, high = ephemeral_ports()
    ports = [free_port() for _ in range(200)]
    assert not [p for p in ports if low <= p <= high], (low, high, ports)
    assert len(set(ports)) == len(ports)
    with socket.socket() as s:  # and it is free
        s.bind(('127.0.0.1', ports[-1]))


def test_free_port_gives_each_parallel_worker_its_own_ports(monkeypatch):
    """Under make test's pytest-xdist workers, two workers never get the same port: each draws from its own residue
    class (as if the second of three workers; the control: with no worker set, every residue comes up)."""
    monkeypatch.setenv('PYTEST_XDIST_WORKER_COUNT', '3')
    monkeypatch.setenv('PYTEST_XDIST_WORKER', 'gw1')
    assert {free_port() % 3 for _ in range(50)} == {1}
    monkeypatch.delenv('PYTEST_XDIST_WORKER_COUNT')
    monkeypatch.delenv('PYTEST_XDIST_WORKER')
    assert {free_port() % 3 for _ in range(50)} == {0, 1, 2}


def counted(names):
    """The check test_notify_integration made before: the RELOADING=1 and READY=1 counted, not their order."""
    return names[0] == 'READY=1' and names[-1] == 'STOPPING=1' and \
        names.count('RELOADING=1') == names.count('READY=1') - 1


@pytest.mark.parametrize('names', [
    ['READY=1', 'STOPPING=1'],
    ['READY=1', 'RELOADING=1', 'READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1'],
])
def test_sequence_well_formed(names):
    assert sequence_error(names) == '' and counted(names)
    assert sequence_error(names[:-1], stopped=False) == ''


@pytest.mark.parametrize('names', [
    # two reloads open at once, then two READY=1: counted, they pass
    ['READY=1', 'RELOADING=1', 'RELOADING=1', 'READY=1', 'READY=1', 'STOPPING=1'],
    # READY=1 twice in a row, a reload left open
    ['READY=1', 'READY=1', 'RELOADING=1', 'STOPPING=1'],
])
def test_sequence_out_of_order_is_caught_where_counting_was_not(names):
    assert counted(names), 'the old check let it pass'
    assert sequence_error(names) != ''


@pytest.mark.parametrize('names, stopped', [
    (['RELOADING=1', 'READY=1', 'STOPPING=1'], True),
    (['READY=1', 'RELOADING=1', 'STOPPING=1'], True),
    (['READY=1', 'STOPPING=1', 'READY=1'], True),
    (['READY=1', 'RELOADING=1'], False),
    ([], False),
])
def test_sequence_errors(names, stopped):
    assert sequence_error(names, stopped) != ''


HANDLER = 'import signal; signal.signal(signal.SIGHUP, lambda *a: None)'
PAUSE = 'import time; time.sleep(0.3)'


@pytest.mark.parametrize('program, order', [
    ('; '.join((HANDLER, PAUSE, 'import yaml', PAUSE)), 'early'),
    ('; '.join(('import yaml', PAUSE, HANDLER, PAUSE)), 'late'),
])
def test_sighup_handler_order_tells_early_from_late(program, order):
    """The watcher of test_notify_integration's plain-exec trials, on two small programs: one that handles SIGHUP
    before it imports PyYAML, one after."""
    proc = subprocess.Popen([sys.executable, '-c', program + '; time.sleep(5)'])
    try:
        assert sighup_handler_order(proc) == order
    finally:
        proc.kill()
        proc.wait(10)


def test_process_state_shows_a_stopped_process_and_a_blocked_pending_sigterm():
    """What Patroni.stop() reports when a daemon does not end: a child that blocks SIGTERM and got one shows it
    pending and blocked (bit 15: 0x4000); stopped by SIGSTOP, its state is T; the control: before the SIGTERM,
    nothing is pending and it is not stopped."""
    code = ('import signal, sys, time; signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM]); '
            'sys.stdout.write("ready\\n"); sys.stdout.flush(); time.sleep(60)')
    child = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert child.stdout.readline() == 'ready\n'
        masks = dict(line.split(':\t') for line in process_state(child.pid).splitlines() if ':\t' in line)
        assert int(masks['SigBlk'], 16) & 0x4000 and not int(masks['ShdPnd'], 16), masks
        assert not masks['State'].startswith('T'), masks  # running or asleep
        child.send_signal(signal.SIGTERM)
        child.send_signal(signal.SIGSTOP)
        stopped = 'while ! grep -q "^State:.T" /proc/$0/status; do sleep 0.01; done'
        assert subprocess.run(['sh', '-c', stopped, str(child.pid)], timeout=10).returncode == 0
        state = process_state(child.pid)
        masks = dict(line.split(':\t') for line in state.splitlines() if ':\t' in line)
        assert int(masks['ShdPnd'], 16) & 0x4000, state
        assert masks['State'].startswith('T'), state
        assert 'task {0} python'.format(child.pid) in state and ': T ' in state, state
    finally:
        child.kill()
        child.wait(10)


@pytest.mark.parametrize('replaced', [False, True], ids=['same-log', 'log-replaced'])
def test_a_daemon_not_stopped_is_reported_with_its_stacks_and_where_its_output_goes(tmp_path, replaced):
    """Patroni.stop() on a daemon that ignores SIGTERM (the report's own code, on a stand-in process written to as
    Patroni's log is): the failure tells its state and that SIGTERM is caught, gives every thread's stack printed
    by faulthandler on SIGABRT and, where py-spy is installed, taken from outside, and whether its output still goes
    to the file at the log's path; ``log-replaced``: the file renamed away and another made in its place (as the
    storm test's log once looked: silent while the daemon worked) is told apart."""
    node = Patroni.__new__(Patroni)
    node.name, node.data_dir, node.log_path = 'stand-in', str(tmp_path / 'data'), str(tmp_path / 'patroni.log')
    code = ('import signal, sys, threading, time; signal.signal(signal.SIGTERM, lambda *_: print("SIGTERM ignored", '
            'flush=True)); threading.Thread(target=time.sleep, args=(60,), daemon=True).start(); '
            'print("ready", flush=True); time.sleep(60)')
    with open(node.log_path, 'a') as log:
        st = os.fstat(log.fileno())
        node.log_file = (st.st_dev, st.st_ino)
        node.proc = subprocess.Popen([sys.executable, '-c', code], stdout=log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONFAULTHANDLER='1'))
    try:
        wait_for(lambda: 'ready' in node.log(), 30, 'the stand-in running')
        if replaced:
            os.rename(node.log_path, node.log_path + '.old')
            open(node.log_path, 'w').close()
        with pytest.raises(AssertionError) as failed:
            node.stop(timeout=1)
        told = str(failed.value)
        assert told.startswith('stand-in (PID {0}) not stopped 1 s after SIGTERM; then:'.format(node.proc.pid)), told
        assert re.search(r'^SigCgt:\s+[0-9a-f]*[4-7c-f][0-9a-f]{3}$', told, re.M), told  # bit 15: SIGTERM caught
        if replaced:
            assert 'fd 2 -> {0}.old (size'.format(node.log_path) in told and 'NOT the file it was started with' in told
            assert 'Fatal Python error: Aborted' in open(node.log_path + '.old').read()
        else:
            assert 'fd 2 -> {0} (size'.format(node.log_path) in told and 'NOT the file' not in told, told
            since = told.split('\nsince:\n', 1)[1]
            assert 'SIGTERM ignored' in since and 'Fatal Python error: Aborted' in since, since
            assert len(re.findall(r'^(?:Current thread|Thread) 0x', since, re.M)) == 2, since
        if os.path.exists(os.path.join(BIN, 'py-spy')):
            assert 'py-spy dump:' in told and 'Thread' in told.split('py-spy dump:', 1)[1], told
        assert node.proc.poll() is not None, 'ended by SIGABRT'
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
        node.proc.wait(10)
