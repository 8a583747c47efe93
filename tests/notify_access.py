"""NotifyAccess=all and a postmaster that still has NOTIFY_SOCKET (upstream #3586, #3590), under a real systemd (252:
test_systemd_units.py, 257: test_systemd_257.py).

* :func:`check_ready_does_not_undo_stopping`: what systemd does, with no Patroni: a STOPPING=1 from another process
  of a NotifyAccess=all unit makes it "deactivating", and a READY=1 from the main process after it does not bring
  it back; it is killed when TimeoutStopSec= runs out. So #3590's READY=1 re-assert after a stop of PostgreSQL never
  protected such a unit, and 0003 loses nothing by removing it.
* :func:`check_postmaster_with_notify_socket`: what holds instead (0005): Patroni, the process systemd started, sends
  NOTIFYACCESS=main first. A postmaster started with NOTIFY_SOCKET (by ``ExecStartPre=``, as Patroni < 4.1.2 left
  one running) is taken over, then restarted through the REST API: its STOPPING=1 is ignored by systemd >= 254 and
  the unit stays active. The control is the same unit without ``SYSTEMD_EXEC_PID`` (so Patroni does not claim the
  socket), and systemd 252, which does not know NOTIFYACCESS=: the unit goes "deactivating" at the postmaster's
  STOPPING=1 (systemd's view is what the control waits for: its Patroni, SIGTERMed in the middle of the restart, may
  or may not start PostgreSQL again before it ends).
"""

import os

from realparts import PG_BIN, wait_for

SCRIPT = '''#!/bin/sh
systemd-notify --ready
while [ ! -e {d}/stop ]; do sleep 0.05; done
systemd-notify STOPPING=1
touch {d}/stopped
while [ ! -e {d}/ready ]; do sleep 0.05; done
systemd-notify --ready
touch {d}/readied
exec sleep 600
'''


def check_ready_does_not_undo_stopping(harness, directory):
    """See the module's docstring. *directory*: a directory of the test, readable by systemd."""
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    script = os.path.join(directory, 'notifier.sh')
    with open(script, 'w') as f:
        f.write(SCRIPT.format(d=harness.host_path(directory)))
    os.chmod(script, 0o755)
    with open(os.path.join(harness.units, 'stopping.service'), 'w') as f:
        f.write('[Service]\nType=notify\nNotifyAccess=all\nExecStart={0}\nTimeoutStopSec=3\n'
                'Environment=PATH=/usr/bin:/bin\n'.format(harness.host_path(script)))
    assert harness.systemctl('daemon-reload').returncode == 0
    try:
        assert harness.systemctl('start', 'stopping.service').returncode == 0
        assert harness.show('stopping.service', 'ActiveState') == {'ActiveState': 'active'}
        open(os.path.join(directory, 'stop'), 'w').close()  # another process of the unit: STOPPING=1
        harness.wait_show('stopping.service', lambda s: s['SubState'] == 'stop-sigterm', 10,
                          'deactivating at STOPPING=1 from a process other than the main one', 'SubState')
        open(os.path.join(directory, 'ready'), 'w').close()  # the main process: READY=1, #3590's re-assert
        wait_for(lambda: os.path.exists(os.path.join(directory, 'readied')), 10, 'READY=1 sent after STOPPING=1')
        state = harness.wait_show('stopping.service', lambda s: s['ActiveState'] == 'failed', 15,
                                  'killed at TimeoutStopSec=', 'ActiveState', 'SubState', 'Result')
        assert state['Result'] == 'timeout', state
    finally:
        harness.systemctl('stop', 'stopping.service')
        harness.systemctl('reset-failed', 'stopping.service')


def check_postmaster_with_notify_socket(harness, node, status, end_postgres, claims, control=False):
    """See the module's docstring. *claims*: whether Patroni's NOTIFYACCESS=main is expected to hold here; *control*:
    the unit without ``SYSTEMD_EXEC_PID``; *end_postgres*: ends a PostgreSQL that a killed Patroni left running."""
    data = os.path.join(node.dir, 'data')
    node.write()
    # a bootstrapped node, stopped: the postmaster of ExecStartPre= starts from its files
    assert harness.systemctl('start', 'patroni.service').returncode == 0, node.tail()
    wait_for(lambda: (status() or {}).get('state') == 'running', 90, lambda: 'bootstrapped\n' + node.tail())
    assert harness.systemctl('stop', 'patroni.service').returncode == 0
    dropin = os.path.join(harness.units, 'patroni.service.d', 'old-postmaster.conf')
    with open(dropin, 'w') as f:
        # as a postmaster started by Patroni < 4.1.2 and kept running across the upgrade (KillMode=process)
        f.write("[Service]\nNotifyAccess=all\nTimeoutStopSec=5\n"
                "ExecStartPre=/bin/sh -c 'exec /usr/bin/env NOTIFY_SOCKET=$${{NOTIFY_SOCKET:-/run/systemd/notify}} "
                "{0}/pg_ctl start -w -D {1} -l {2}/old-postmaster.log'\n{3}".format(
                    PG_BIN, data, node.dir, 'UnsetEnvironment=SYSTEMD_EXEC_PID\n' if control else ''))
    assert harness.systemctl('daemon-reload').returncode == 0
    try:
        assert harness.systemctl('start', 'patroni.service').returncode == 0, node.tail()
        old = harness.postmaster_pid(data)
        environ = harness.run('cat', '/proc/{0}/environ'.format(old), in_root=True).stdout.split('\0')
        assert any(v.startswith('NOTIFY_SOCKET=') for v in environ), environ  # what makes the case
        wait_for(lambda: (status() or {}).get('state') == 'running', 60, lambda: 'taken over\n' + node.tail())
        before = harness.show('patroni.service', 'ActiveState', 'SubState', 'MainPID', 'NRestarts')
        assert before['ActiveState'] == 'active' and before['SubState'] == 'running', before
        harness.http_json('http://127.0.0.1:8008/restart', {})  # answered in plain text: waited for below
        if claims:
            wait_for(lambda: os.path.exists(os.path.join(data, 'postmaster.pid'))
                     and harness.postmaster_pid(data) != old and (status() or {}).get('state') == 'running', 60,
                     lambda: 'PostgreSQL restarted\n' + node.tail())
            state = harness.show('patroni.service', 'ActiveState', 'SubState', 'MainPID', 'NRestarts')
            assert state == before, state  # still active, the same Patroni, not restarted
        else:
            # the control: the old postmaster's STOPPING=1, at the restart's shutdown, stops the unit. systemd's
            # SIGTERM reaches Patroni in the middle of its restart: whether PostgreSQL is up again before Patroni
            # ends is a race, and Restart=on-failure may start the unit again; only systemd's view is waited for
            harness.wait_show('patroni.service', lambda s: s != before, 60,
                              lambda: 'the unit stopped by the STOPPING=1\n' + node.tail(),
                              'ActiveState', 'SubState', 'MainPID', 'NRestarts')
    finally:
        harness.systemctl('stop', 'patroni.service')  # under the drop-in's TimeoutStopSec=
        harness.systemctl('reset-failed', 'patroni.service')
        os.unlink(dropin)
        harness.systemctl('daemon-reload')
        end_postgres(harness, node)
