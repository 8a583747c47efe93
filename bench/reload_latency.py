#!/usr/bin/env python3
"""Reload latency at loop_wait 10, upstream Patroni and the patched one side by side in one run.

Both run as postgres with PostgreSQL 15 and one etcd 3.4 on loopback (tests/realparts.py). Each round rewrites each
node's configuration (a new tag), sends it SIGHUP and times until the new tag shows in GET /patroni; the nodes
take turns, and a random pause puts the signal at a random point of the HA loop's nap. Each node has a notify
socket of its own, and RELOADING=1 -> READY=1 is measured too: upstream gets Debian's python3-systemd (unpacked by
tests/deps.sh), without which it sends nothing.

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


def summary(values: List[float]) -> str:
    """min / p50 / p95 / max of *values*, in seconds."""
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    fields = (values[0], statistics.median(values), p95, values[-1], len(values))
    return 'min {0:6.2f}  p50 {1:6.2f}  p95 {2:6.2f}  max {3:6.2f}  (n={4})'.format(*fields)


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
        for i in range(args.reloads):
            for name, node in nodes.items():
                time.sleep(random.uniform(0, 10))  # the phase of the nap the signal lands in: the input
                node.write_config(tags={'round': str(i)})
                start = time.monotonic()
                node.proc.send_signal(signal.SIGHUP)
                wait_for(lambda: node.status().get('tags') == {'round': str(i)}, 60, '{0} round {1}'.format(name, i),
                         interval=0.01)
                applied[name].append(time.monotonic() - start)
                managers[name].wait('READY=1', count=i + 2, timeout=60)
        print('reload latency, loop_wait 10, {0} reloads each, seconds'.format(args.reloads))
        for name in nodes:
            print('SIGHUP -> new config in GET /patroni, {0:8}: {1}'.format(name, summary(applied[name])))
        for name, manager in managers.items():
            reloading = [t for t, m in manager.messages if m.startswith('RELOADING=1')]
            ready = [t for t, m in manager.messages if m.startswith('READY=1')][1:]
            print('RELOADING=1 -> READY=1,             {0:8}: {1}'.format(
                name, summary([b - a for a, b in zip(reloading, ready)])))
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
