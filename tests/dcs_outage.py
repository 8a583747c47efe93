"""A start while the DCS is down, under a real systemd (252: test_systemd_units.py, 257: test_systemd_257.py).

Two claims of patches 0013 and 0014, checked the same way under both:

* :func:`check_bounded_start`: with etcd down, ``systemctl start`` of a target that wants ``patroni.service`` (as
  ``multi-user.target`` does once the unit is enabled) returns after ``loop_wait + 2 * retry_timeout`` -- not before
  (READY=1 is not sent early) and not never (the boot is not held) -- with the unit active, STATUS= saying
  ``waiting for DCS``, no restart; when etcd is back the same Patroni joins.
* :func:`check_reload_during_the_wait`: a PostgreSQL parameter and a tag changed and ``systemctl reload``-ed
  while the start waits for etcd (systemd merges the reload into the start job and sends no signal), or once the
  start has returned at the bound with Patroni still waiting (a real SIGHUP), are in effect once etcd is back. The
  control is the same sequence without the change: the values stay, so what the check sees comes from the edit.
"""

import json
import os
import time

from realparts import wait_for

# what the Patroni of a node without a cache starts with: loop_wait 10 + 2 * retry_timeout 10
DEFAULT_BOUND = 30
TARGET = 'patroni-boot.target'


def start_bound(node):
    """loop_wait + 2 * retry_timeout as Patroni reads them at start-up: from its cache (patroni.dynamic.json), else
    the defaults."""
    try:
        with open(os.path.join(node.dir, 'data', 'patroni.dynamic.json')) as f:
            cache = json.load(f)
    except OSError:
        return DEFAULT_BOUND
    return cache.get('loop_wait', 10) + 2 * cache.get('retry_timeout', 10)


def sql(harness, query):
    """*query* on the node's PostgreSQL (port 5432), through psql inside the harness; its one value."""
    result = harness.run('psql', '-h', '127.0.0.1', '-p', '5432', '-U', 'postgres', '-d', 'postgres', '-XAtc', query)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def joined(harness, node, status):
    """Wait until the node runs PostgreSQL and holds the leader key once etcd is back; returns its REST status."""
    wait_for(lambda: harness.etcd_get('/service/{0}/leader'.format(node.scope)) == 'node1'
             and (status() or {}).get('state') == 'running', 90,
             lambda: 'the node joins once etcd is back\n' + node.tail())
    return status()


def check_bounded_start(harness, node, status, watchdog=0):
    """See the module's docstring. *harness*: a booted systemd with ``etcd.service`` and ``patroni.service`` for
    *node*; *status*: the node's REST status (``GET /patroni``). With *watchdog* (seconds), the unit has that
    ``WatchdogSec=``: systemd arms it at READY=1, while Patroni still waits for etcd and its HA loop has yet to run;
    for twice that long (a watchdog that is not fed kills at ``WatchdogSec=``, aborts within ``TimeoutAbortSec=2``)
    it must be neither killed nor restarted (the watchdog test of test_systemd_units.py is the positive control: a
    loop that stops cycling is restarted)."""
    with open(os.path.join(harness.units, TARGET), 'w') as f:
        f.write('[Unit]\nDescription=what multi-user.target is to an enabled patroni.service\n'
                'Wants=patroni.service\nAfter=patroni.service\n')
    dropin = os.path.join(harness.units, 'patroni.service.d', 'watchdog-at-start.conf')
    if watchdog:
        with open(dropin, 'w') as f:
            f.write('[Service]\nWatchdogSec={0}\nTimeoutAbortSec=2\nRestartSec=1\n'.format(watchdog))
    assert harness.systemctl('daemon-reload').returncode == 0
    node.write()
    bound = start_bound(node)
    assert harness.systemctl('stop', 'etcd.service').returncode == 0
    try:
        began = time.monotonic()
        start = harness.systemctl('start', TARGET, timeout=bound + 60)
        took = time.monotonic() - began
        assert start.returncode == 0, start.stderr + node.tail()
        # READY=1 at the bound: not before (no cycle has run), not much after (the interpreter's own start-up)
        assert bound <= took <= bound + 15, (took, bound, node.tail())
        state = harness.show('patroni.service', 'ActiveState', 'StatusText', 'NRestarts', 'MainPID')
        assert state['ActiveState'] == 'active' and state['NRestarts'] == '0', state
        assert state['StatusText'].startswith('waiting for DCS'), state
        assert 'waiting for DCS' in harness.systemctl('status', 'patroni.service').stdout
        assert harness.show(TARGET, 'ActiveState') == {'ActiveState': 'active'}
        deadline = time.monotonic() + 2 * watchdog
        while time.monotonic() < deadline:  # the span a watchdog would need to kill it, twice over
            now = harness.show('patroni.service', 'ActiveState', 'NRestarts', 'MainPID')
            assert now == {'ActiveState': 'active', 'NRestarts': '0', 'MainPID': state['MainPID']}, now
            time.sleep(0.5)  # the pace of the look, not a synchronisation
        assert harness.systemctl('start', 'etcd.service').returncode == 0
        joined(harness, node, status)
        end = harness.show('patroni.service', 'ActiveState', 'NRestarts', 'MainPID')
        assert end == {'ActiveState': 'active', 'NRestarts': '0', 'MainPID': state['MainPID']}, end
        print('start while etcd is down: `systemctl start {0}` returned after {1:.1f} s (loop_wait + 2 * '
              'retry_timeout = {2} s)'.format(TARGET, took, bound))
    finally:
        harness.systemctl('start', 'etcd.service')
        harness.systemctl('stop', TARGET, 'patroni.service')
        if os.path.exists(dropin):
            os.unlink(dropin)
            harness.systemctl('daemon-reload')


def check_reload_during_the_wait(harness, node, status, change, after_ready=False):
    """See the module's docstring; *change*: edit the file before the reload (the check) or not (the control).

    With *after_ready*, the reload comes once the start has returned at the bound, Patroni still waiting for etcd:
    a real SIGHUP (252: ``ExecReload=``; 257: systemd's own, the reload job waiting for RELOADING=1 ... READY=1),
    applied first thing once etcd answers.
    """
    node.write(tags={'merged': 'before'}, parameters={'work_mem': '4MB'})
    assert harness.systemctl('stop', 'etcd.service').returncode == 0
    try:
        if after_ready:
            start = harness.systemctl('start', 'patroni.service', timeout=start_bound(node) + 60)
            assert start.returncode == 0, start.stderr + node.tail()
        else:
            assert harness.systemctl('start', '--no-block', 'patroni.service').returncode == 0
        harness.wait_show('patroni.service', lambda s: s['StatusText'].startswith('waiting for DCS'), 30,
                          'STATUS: waiting for DCS', 'StatusText', 'ActiveState')
        if change:
            node.write(tags={'merged': 'after'}, parameters={'work_mem': '7MB'})
        reload = harness.systemctl('reload', '--no-block', 'patroni.service')
        assert reload.returncode == 0, reload.stderr + node.tail()
        if not after_ready:  # the unit is still starting: systemd merged the reload into the start job
            jobs = harness.systemctl('list-jobs').stdout
            assert 'patroni.service' in jobs and 'reload' not in jobs, jobs
        assert harness.systemctl('start', 'etcd.service').returncode == 0
        applied = joined(harness, node, status)
        expected = ('after', '7MB') if change else ('before', '4MB')
        assert (applied.get('tags'), sql(harness, 'SHOW work_mem')) == ({'merged': expected[0]}, expected[1]), \
            (applied, node.tail())
        state = harness.wait_show('patroni.service', lambda s: s['ActiveState'] == 'active', 30,
                                  'the reload job over', 'ActiveState', 'NRestarts')
        assert state == {'ActiveState': 'active', 'NRestarts': '0'}, state
        assert 'patroni.service' not in harness.systemctl('list-jobs').stdout
    finally:
        harness.systemctl('start', 'etcd.service')
        harness.systemctl('stop', 'patroni.service')
