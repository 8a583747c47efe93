#!/usr/bin/env python3
"""Start -> PostgreSQL accepting connections, with and without a SIGHUP before the first HA cycle.

A node whose data directory exists and whose PostgreSQL is stopped is started, launched the way the opt-in
early-sighup.conf drop-in launches it (``env --block-signal=HUP``), and, in the "early SIGHUP" rounds, sent a SIGHUP
at once (with a changed configuration file): the signal stays pending until Patroni's first statement catches it, so
it is applied before the first HA cycle. Measured: spawn until ``GET /patroni`` says ``running`` (PostgreSQL accepts
connections). Upstream 4.1.5 is the reference for the plain start; it never unblocks SIGHUP, so an early SIGHUP does
nothing to it. Rounds alternate between the variants, so that the machine's load falls on all alike.

Usage (as root, after `make install deps`): .venv/bin/python bench/early_sighup_start.py --trials 10
"""

import argparse
import os
import signal
import sys
import time
import uuid

from typing import Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests'))

from realparts import BIN, Etcd, NotifyListener, Patroni, Workdir  # noqa: E402
from reload_latency import summary  # noqa: E402


def start(node: Patroni, workdir: Workdir, early_sighup: bool) -> float:
    """One start of *node*; returns the seconds until PostgreSQL accepts connections."""
    manager = NotifyListener(os.path.join(workdir.path, "notify-" + uuid.uuid4().hex[:8]))
    try:
        node.write_config()
        started = time.monotonic()
        proc = node.start(manager.address, block_sighup=True)
        if early_sighup:
            node.write_config(tags={'early': 'sighup'})
            proc.send_signal(signal.SIGHUP)
        try:
            node.wait_running(90)
        except AssertionError:
            raise SystemExit("{0} did not come up:\n{1}".format(node.executable, node.log()[-1500:]))
        took = time.monotonic() - started
        if node.stop() != 0:
            raise SystemExit('{0} did not stop cleanly'.format(node.executable))
        return took
    finally:
        manager.close()


def main() -> int:
    """Bootstrap each node once, then run the rounds and print the distributions."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--upstream', required=True, help='the upstream patroni executable')
    parser.add_argument('--patched', default=os.path.join(BIN, 'patroni'))
    parser.add_argument('--trials', type=int, default=10)
    args = parser.parse_args()
    workdir = Workdir()
    etcd = Etcd(workdir.path)
    try:
        nodes = {'patched': Patroni(workdir, etcd, 'bench-patched', executable=os.path.abspath(args.patched)),
                 'upstream': Patroni(workdir, etcd, 'bench-upstream', executable=os.path.abspath(args.upstream))}
        for node in nodes.values():  # bootstrap: from now on the data directory exists
            start(node, workdir, False)
        variants = [('patched, plain start', 'patched', False), ('patched, early SIGHUP', 'patched', True),
                    ('upstream 4.1.5, plain start', 'upstream', False)]
        times: Dict[str, List[float]] = {name: [] for name, _, _ in variants}
        for _ in range(args.trials):
            for name, node, early in variants:
                times[name].append(start(nodes[node], workdir, early))
        print('start -> PostgreSQL accepting (s), data directory present, PostgreSQL stopped, loop_wait 2, '
              'retry_timeout 5, {0} trials each:'.format(args.trials))
        for name, _, _ in variants:
            print('  {0:30s} {1}'.format(name, summary(times[name])))
        return 0
    finally:
        for node in locals().get('nodes', {}).values():
            node.kill()
        etcd.stop()
        workdir.cleanup()


if __name__ == '__main__':
    sys.exit(main())
