#!/usr/bin/env python3
"""The shipped unit under a real systemd 252 in private namespaces: start + reload back to back, then a look.

Boots the harness (tests/systemd_harness.py), starts etcd and a one-node Patroni cluster with
extras/startup_scripts/patroni.service, runs `systemctl start patroni; systemctl reload patroni`, prints
`systemctl status patroni` (with the log tail: the harness runs a journald of its own), `journalctl -t patroni` and
`patronictl list`, then shows the status of a Patroni started while etcd is down,
and tears everything down. Run as root: `make demo`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import leftovers  # noqa: E402
from realparts import BIN, ETCD, wait_for, Workdir  # noqa: E402
from systemd_harness import etcd_unit, Systemd, unit_for_test  # noqa: E402
from test_systemd_units import Node, patroni_status, shipped  # noqa: E402


def main() -> int:
    """Run the demo; returns the exit code."""
    for line in leftovers.clean():
        print('# removed, left by a killed run: ' + line)
    workdir = Workdir()
    try:
        node = Node(workdir, 'demo')
        units = {'etcd.service': etcd_unit(ETCD, os.path.join(workdir.path, 'etcd'),
                                           os.path.join(workdir.path, 'etcd.log')),
                 'patroni.service': unit_for_test(shipped('patroni.service'), os.path.join(BIN, 'patroni'), node.dir)}
        with Systemd(workdir.path, units, journald=True) as systemd:
            print('# systemd is PID {0} here; its cgroup: {1}'.format(systemd.pid, systemd.cgroup))
            print('$ systemctl start etcd')
            systemd.systemctl('start', 'etcd.service')
            print('$ systemctl start patroni && systemctl reload patroni')
            for verb in ('start', 'reload'):
                try:
                    result = systemd.systemctl(verb, 'patroni.service', timeout=90)
                    failed = result.stderr if result.returncode else ''
                except AssertionError as e:  # the harness's account of a job not done in time
                    failed = str(e)
                if failed:
                    print(failed)
                    for cmd in (['systemctl', '--no-pager', 'status', 'patroni.service', 'systemd-journald.socket'],
                                ['ls', '-ld', '/run/systemd', '/run/systemd/journal', '/run/systemd/journal/stdout',
                                 '/run/systemd/notify'],
                                ['journalctl', '--no-pager', '-n', '50']):
                        done = systemd.run(*cmd)
                        print('$ ' + ' '.join(cmd) + '\n' + done.stdout + done.stderr)
                    return 1
            wait_for(lambda: patroni_status(systemd).get('state') == 'running', 60, 'PostgreSQL running')
            wait_for(lambda: systemd.show('patroni.service', 'ActiveState')['ActiveState'] == 'active', 30,
                     'the reload to finish')
            print('$ systemctl status patroni')
            print(systemd.systemctl('status', 'patroni.service').stdout)
            print('$ journalctl -t patroni -n 5')
            print(systemd.run('journalctl', '--no-pager', '-t', 'patroni', '-n', '5').stdout)
            print('$ patronictl list')
            print(systemd.run(os.path.join(BIN, 'patronictl'), '-c', node.config, 'list').stdout)
            print('$ systemctl stop patroni')
            systemd.systemctl('stop', 'patroni.service')
            print(systemd.show('patroni.service', 'ActiveState', 'Result'))
            print('$ systemctl stop etcd; systemctl start --no-block patroni   # the DCS is down')
            systemd.systemctl('stop', 'etcd.service')
            systemd.systemctl('start', '--no-block', 'patroni.service')
            wait_for(lambda: systemd.show('patroni.service', 'StatusText')['StatusText'].startswith('waiting for DCS'),
                     30, 'STATUS: waiting for DCS')
            print('$ systemctl status patroni')
            print(systemd.systemctl('status', 'patroni.service').stdout)
            systemd.systemctl('stop', 'patroni.service')
        return 0
    finally:
        workdir.cleanup()


if __name__ == '__main__':
    sys.exit(main())
