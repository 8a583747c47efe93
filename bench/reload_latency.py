#!/usr/bin/env python3
"""Reload latency at loop_wait 10, upstream Patroni and the patched one side by side in one run.

Both run as postgres with PostgreSQL 15 and one etcd 3.4 on loopback (tests/realparts.py). Each round rewrites each
node's configuration (a new tag; in every other round a new work_mem too, a parameter PostgreSQL applies on reload),
then, after a random pause that puts the signal at a random point of the HA loop's nap, sends both nodes SIGHUP and
times until the new tag shows in GET /patroni. Each node has a notify socket of its own, and RELOADING=1 -> READY=1
is measured too, by kind of round: upstream gets Debian's python3-systemd (unpacked by tests/deps.sh), without which
it sends nothing. Every reload of Patroni runs `pg_ctl reload` and reads pending_restart afterwards (with a tag
alone PostgreSQL's files are rewritten unchanged). The floor: on the patched node's PostgreSQL, `SELECT
pg_reload_conf()` until pg_conf_load_time() of the same connection moves.

Usage (as root): .venv/bin/python bench/reload_latency.py --upstream .venv-upstream/bin/patroni [--reloads 50]
"""

import argparse
import os
import random
import signal
import statistics
import sys
import time

from typing import Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests'))

from realparts import BIN, Etcd, NotifyListener, Patroni, PYTHON_SYSTEMD, wait_for, Workdir  # noqa: E402

SLOW_LOOP = {'bootstrap': {'dcs': {'ttl': 30, 'loop_wait': 10, 'retry_timeout': 10}}}


def summary(values: List[float], scale: float = 1) -> str:
    """min / p50 / p95 / max of *values* (seconds), times *scale* (1000: milliseconds)."""
    values = sorted(v * scale for v in values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    fields = (values[0], statistics.median(values), p95, values[-1], len(values))
    return 'min {0:7.2f}  p50 {1:7.2f}  p95 {2:7.2f}  max {3:7.2f}  (n={4})'.format(*fields)


def reload_floor(port: int, count: int) -> List[float]:
    """What PostgreSQL itself takes: ``SELECT pg_reload_conf()`` until pg_conf_load_time() of the same connection
    moves, *count* times (seconds)."""
    import psycopg2
    times = []
    with psycopg2.connect(host='127.0.0.1', port=port, user='postgres', dbname='postgres') as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for _ in range(count):
                cur.execute('SELECT pg_catalog.pg_conf_load_time()')
                before = cur.fetchone()
                start = time.monotonic()
                cur.execute('SELECT pg_catalog.pg_reload_conf()')
                while True:
                    cur.execute('SELECT pg_catalog.pg_conf_load_time()')
                    if cur.fetchone() != before:
                        break
                    time.sleep(0.001)
                times.append(time.monotonic() - start)
    return times


def main() -> int:
    """Run the rounds and print the distributions."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--upstream', required=True, help='the upstream patroni executable')
    parser.add_argument('--patched', default=os.path.join(BIN, 'patroni'))
    parser.add_argument('--reloads', type=int, default=50)
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    workdir = Workdir()
    etcd = Etcd(workdir.path)
    nodes: Dict[str, Patroni] = {}
    managers: Dict[str, NotifyListener] = {}
    try:
        for name, executable in (('upstream', args.upstream), ('patched', args.patched)):
            managers[name] = NotifyListener(os.path.join(workdir.path, 'notify-' + name))
            nodes[name] = Patroni(workdir, etcd, 'bench-' + name, extra=SLOW_LOOP,
                                  executable=os.path.abspath(executable),
                                  env={'PYTHONPATH': PYTHON_SYSTEMD} if name == 'upstream' else None)
            nodes[name].start(managers[name].address)
        for node in nodes.values():
            node.wait_running(120)
        for manager in managers.values():
            manager.wait('READY=1', count=1, timeout=120)
        applied: Dict[str, List[float]] = {name: [] for name in nodes}
        kinds = ['tag only', 'work_mem']
        for i in range(args.reloads):
            kind = kinds[i % 2]
            for node in nodes.values():
                node.write_config(tags={'round': str(i)},
                                  parameters={'work_mem': '{0}MB'.format(4 + i)} if kind == 'work_mem' else None)
            time.sleep(random.uniform(0, 10))  # the phase of the nap the signal lands in: the input
            start = time.monotonic()
            for node in nodes.values():
                node.proc.send_signal(signal.SIGHUP)
            waiting = dict(nodes)

            def one_applied() -> bool:  # each node's time is taken when it is seen applied, not after the other's
                for name, node in list(waiting.items()):
                    if node.status().get('tags') == {'round': str(i)}:
                        applied[name].append(time.monotonic() - start)
                        del waiting[name]
                return not waiting
            wait_for(one_applied, 60, 'round {0} applied by both'.format(i), interval=0.005)
            for name, manager in managers.items():
                manager.wait('READY=1', count=i + 2, timeout=60)
        floor = reload_floor(nodes['patched'].pg_port, args.reloads)
        print('reload latency, loop_wait 10, {0} reloads each ({1} of each kind)'.format(
            args.reloads, args.reloads // 2))
        for name in nodes:
            print('SIGHUP -> new config in GET /patroni, s, {0:8}:           {1}'.format(
                name, summary(applied[name])))
        for name, manager in managers.items():
            reloading = [t for t, m in manager.messages if m.startswith('RELOADING=1')]
            ready = [t for t, m in manager.messages if m.startswith('READY=1')][1:]
            pairs = [b - a for a, b in zip(reloading, ready)]
            for k, kind in enumerate(kinds):
                print('RELOADING=1 -> READY=1, ms, {0:8}, {1:8}: {2}'.format(
                    name, kind, summary(pairs[k::2], 1000)))
        print('floor, pg_reload_conf() -> pg_conf_load_time() moves, ms:  {0}'.format(summary(floor, 1000)))
        print('SIGHUP -> new config, p50 ratio upstream / patched: {0:.0f}x'.format(
            statistics.median(applied['upstream']) / statistics.median(applied['patched'])))
    finally:
        for node in nodes.values():
            if node.proc:
                node.stop()
        for manager in managers.values():
            manager.close()
        etcd.stop()
        workdir.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
