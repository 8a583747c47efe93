#!/usr/bin/env python3
"""How long ``systemctl reload`` blocks under Type=notify-reload (systemd 257), upstream and patched in one run.

The systemd 257 tier of the tests (tests/test_systemd_257.py): Debian trixie's systemd as PID 1 of private
namespaces, one etcd 3.4, two Patroni units at loop_wait 10, both the shipped unit with the shipped
notify-reload.conf drop-in and ``ExecReload=`` emptied, as the Debian package's units are: systemd's own wait for
READY=1 is what is measured (the shipped ``ExecReload=``, patroni_systemd_reload, would add its own request).
``patroni.service`` runs the patched Patroni; ``patroni-upstream.service`` runs upstream 4.1.5 with Debian's
python3-systemd (without it upstream never sends READY=1 and cannot start as Type=notify).
Each round rewrites a unit's configuration (a new tag), then times ``systemctl reload`` and checks that the new tag is
in effect when it returns; the units take turns, and a random pause puts the reload at a random point of the HA
loop's nap. The rounds start once both run PostgreSQL (upstream sends READY=1 before its first HA cycle). A reload
that has not returned after --bound seconds is counted as hung, and that unit takes no further rounds.

Usage (as root, after `make deps`): .venv/bin/python bench/notify_reload.py [--reloads 50]
"""

import argparse
import os
import random
import subprocess
import sys
import time

from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))

from reload_latency import summary  # noqa: E402  (this script's directory is on sys.path)
from realparts import BIN, ETCD, patroni_config, PYTHON_SYSTEMD, wait_for, Workdir, write_config  # noqa: E402
from systemd_harness import etcd_unit, host_dropin, log_dropin, owned_by_postgres, Systemd  # noqa: E402
from systemd_harness import unit_for_test  # noqa: E402
from test_systemd_257 import debian_root  # noqa: E402
from start_reload import shipped  # noqa: E402

PATRONI = {'patroni.service': os.path.join(BIN, 'patroni'),
           'patroni-upstream.service': os.path.join(ROOT, '.venv-upstream', 'bin', 'patroni')}


def main() -> int:
    """Run the rounds and print the distributions."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--reloads', type=int, default=50)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--bound', type=float, default=60, help='seconds after which a reload counts as hung')
    args = parser.parse_args()
    random.seed(args.seed)
    root, version = debian_root('trixie')
    workdir = Workdir()
    units = {'etcd.service': etcd_unit(ETCD, os.path.join(workdir.path, 'etcd'),
                                       '/host' + os.path.join(workdir.path, 'etcd.log'))}
    dropins = {'etcd.service.d/host.conf': host_dropin()}
    configs: Dict[str, Dict[str, object]] = {}
    for i, (unit, patroni) in enumerate(sorted(PATRONI.items())):
        directory = owned_by_postgres(os.path.join(workdir.path, unit.split('.')[0]))
        config = patroni_config(directory, 'bench-{0}'.format(i), 'node1', 2379, 8008 + i, 5432 + i)
        config['bootstrap'] = {'dcs': {'ttl': 30, 'loop_wait': 10, 'retry_timeout': 10}}
        configs[unit] = {'path': os.path.join(directory, 'patroni.yml'), 'config': config, 'api': 8008 + i}
        write_config(workdir, str(configs[unit]['path']), config)
        units[unit] = unit_for_test(shipped('patroni.service'), patroni, directory)
        dropins[unit + '.d/host.conf'] = host_dropin()
        dropins[unit + '.d/log.conf'] = log_dropin('/host' + os.path.join(directory, 'patroni.log'))
        dropins[unit + '.d/notify-reload.conf'] = shipped('notify-reload.conf')
        dropins[unit + '.d/strict.conf'] = '[Service]\nExecReload=\n'
    dropins['patroni-upstream.service.d/python-systemd.conf'] = '[Service]\nEnvironment=PYTHONPATH={0}\n'.format(
        PYTHON_SYSTEMD)
    blocked: Dict[str, List[float]] = {unit: [] for unit in PATRONI}
    hung: Dict[str, int] = {}
    try:
        with Systemd(workdir.path, units, dropins, root=root) as systemd:
            for unit in ['etcd.service'] + sorted(PATRONI):
                result = systemd.systemctl('start', unit)
                assert result.returncode == 0, (unit, result.stderr)
            for unit in sorted(PATRONI):
                api = 'http://127.0.0.1:{0}/patroni'.format(configs[unit]['api'])
                wait_for(lambda: (systemd.http_json(api) or {}).get('state') == 'running', 120, unit + ' running')
            for i in range(args.reloads):
                for unit in sorted(set(PATRONI) - set(hung)):
                    time.sleep(random.uniform(0, 10))  # the phase of the nap the reload lands in: the input
                    config = dict(configs[unit]['config'], tags={'round': str(i)})  # type: ignore
                    write_config(workdir, str(configs[unit]['path']), config)
                    start = time.monotonic()
                    try:
                        result = systemd.systemctl('reload', unit, timeout=args.bound)
                    except subprocess.TimeoutExpired:
                        hung[unit] = i
                        continue
                    blocked[unit].append(time.monotonic() - start)
                    assert result.returncode == 0, (unit, i, result.stderr)
                    status = systemd.http_json('http://127.0.0.1:{0}/patroni'.format(configs[unit]['api'])) or {}
                    assert status.get('tags') == {'round': str(i)}, (unit, i, status)
    finally:
        workdir.cleanup()
    print('{0}, Type=notify-reload, loop_wait 10, {1} reloads each: `systemctl reload` blocked, seconds'.format(
        version, args.reloads))
    for unit in sorted(PATRONI):
        print('{0:26}: {1}{2}'.format(unit, summary(blocked[unit]) if blocked[unit] else '-',
                                      '; reload #{0} hung (> {1:.0f} s)'.format(hung[unit] + 1, args.bound)
                                      if unit in hung else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
