#!/usr/bin/env python3
"""How long a caller waits to know a reload is applied, upstream Patroni and the patched one side by side in one run.

Both run as postgres with PostgreSQL 15 and one etcd 3.4 on loopback (tests/realparts.py), at loop_wait 10. Each
round rewrites both nodes' configuration (a new tag and a new work_mem), waits a random pause (the phase of the HA
loop's nap the request lands in), then asks each node to reload the way a script would, and times until the script
knows the new configuration is in effect:

* patched: one ``POST /reload`` with ``{"timeout": 30}``: the time until its answer ``applied`` (checked: the new
  work_mem is then in PostgreSQL, on a new connection);
* upstream: ``POST /reload`` (answered at once, "reload scheduled"), then polling ``GET /patroni`` every 50 ms until
  the new tag shows, what callers do today instead of sleeping loop_wait. The tag shows once Patroni has read the file,
  which can be before PostgreSQL has loaded it (``pg_ctl reload`` only signals the postmaster): the rounds in which
  the new work_mem was not yet in effect when the tag showed are counted, and the new work_mem awaited (10 s at most).

Then a storm on each node: 1,000 SIGHUPs within a second and a caller every 10 ms of it (100 in all) asking for a
reload (patched: and waiting for it); counted, from the storm's start to 12 s later (the storm and more than one
loop_wait after it, the same window for both): reloads done (log lines of a reload with nothing to change), HA cycles
(the cycle's log line), requests the etcd server handled (``grpc_server_handled_total`` of its /metrics, the other
node's few included), callers answered, and ``GET /patroni`` latency, polled every 100 ms during the storm.

Usage (as root): .venv/bin/python bench/reload_wait.py --upstream .venv-upstream/bin/patroni [--reloads 30]
"""

import argparse
import os
import random
import statistics
import sys
import time

from typing import Dict, List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests'))

from realparts import BIN, Etcd, Patroni, post_reload, read_from, reload_storm, wait_for, Workdir  # noqa: E402

SLOW_LOOP = {'bootstrap': {'dcs': {'ttl': 30, 'loop_wait': 10, 'retry_timeout': 10}}}
NO_CHANGE = 'No local configuration items changed.'
CYCLE = 'no action. I am'
WINDOW = 12  # seconds from the storm's start: the storm, and more than one loop_wait after it


def etcd_requests(etcd: Etcd) -> int:
    """How many requests the etcd server has handled so far (``grpc_server_handled_total``, every method)."""
    import urllib.request
    with urllib.request.urlopen(etcd.url + '/metrics', timeout=10) as r:
        lines = r.read().decode().splitlines()
    return int(sum(float(line.rsplit(' ', 1)[1]) for line in lines if line.startswith('grpc_server_handled_total{')))


def summary(values: List[float], scale: float = 1) -> str:
    """min / p50 / p95 / max of *values* (seconds), times *scale* (1000: milliseconds)."""
    values = sorted(v * scale for v in values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    fields = (values[0], statistics.median(values), p95, values[-1], len(values))
    return 'min {0:8.2f}  p50 {1:8.2f}  p95 {2:8.2f}  max {3:8.2f}  (n={4})'.format(*fields)


def work_mem(node: Patroni) -> str:
    """work_mem in PostgreSQL, on a new connection."""
    import psycopg2
    with psycopg2.connect(host='127.0.0.1', port=node.pg_port, user='postgres', dbname='postgres') as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('work_mem')")
            return cur.fetchone()[0]


def reload_and_know(name: str, node: Patroni, round_: int) -> Tuple[float, bool]:
    """Ask *node* to reload; return the seconds until the caller knows the new configuration is in effect (upstream:
    believes it, the tag showing) and whether PostgreSQL had the new work_mem then."""
    start = time.monotonic()
    if name == 'patched':
        status, answer, _ = post_reload(node, {'timeout': 30})
        assert status == 200 and answer['reload'] == 'applied', (status, answer)
    else:
        assert post_reload(node, None)[0] == 202
        wait_for(lambda: node.status().get('tags') == {'round': str(round_)}, 30, 'round applied', interval=0.05)
    elapsed = time.monotonic() - start
    tags, in_effect, wanted = node.status().get('tags'), work_mem(node), '{0}MB'.format(4 + round_)
    failure = '{0}, round {1}: tags {2}, work_mem {3} after {4:.3f} s'.format(name, round_, tags, in_effect, elapsed)
    assert tags == {'round': str(round_)}, failure
    if in_effect == wanted:
        return elapsed, True
    assert name != 'patched', failure  # "applied" says PostgreSQL has it: no wait for the patched side
    wait_for(lambda: work_mem(node) == wanted, 10, failure + ', and not within 10 s more', interval=0.05)
    return elapsed, False


def storm(name: str, node: Patroni, etcd: Etcd) -> str:
    """1,000 SIGHUPs in a second and 100 callers; one line of what happened within :data:`WINDOW` seconds."""
    offset = os.path.getsize(node.log_path)
    requests, start = etcd_requests(etcd), time.monotonic()
    answers, latencies, took = reload_storm(node, {'timeout': 60} if name == 'patched' else None)
    # upstream applies the storm's reloads after its nap: wait for the flag to be taken
    wait_for(lambda: NO_CHANGE in read_from(node.log_path, offset), 30, name + ' reloading after the storm')
    time.sleep(max(0.0, start + WINDOW - time.monotonic()))  # the same window for both: the measurement's span
    requests = etcd_requests(etcd) - requests
    log = read_from(node.log_path, offset)
    alive = node.proc is not None and node.proc.poll() is None
    answered = {str(a[:2]) for a in answers}
    return ('{0:8}: {1:3d} reloads, {2:3d} HA cycles, {3:4d} etcd requests in {4} s; 100 callers answered in {5:.2f} s '
            '({6}), alive: {7}; GET /patroni, ms: {8}').format(
        name, log.count(NO_CHANGE), log.count(CYCLE), requests, WINDOW, took,
        ', '.join('{0}x {1}'.format([str(a[:2]) for a in answers].count(k), k) for k in sorted(answered)), alive,
        summary(latencies, 1000))


def main() -> int:
    """Run the rounds and print the distributions."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--upstream', required=True, help='the upstream patroni executable')
    parser.add_argument('--patched', default=os.path.join(BIN, 'patroni'))
    parser.add_argument('--reloads', type=int, default=30)
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    workdir = Workdir()
    etcd = Etcd(workdir.path)
    nodes: Dict[str, Patroni] = {}
    try:
        for name, executable in (('upstream', args.upstream), ('patched', args.patched)):
            nodes[name] = Patroni(workdir, etcd, 'bench-' + name, extra=SLOW_LOOP,
                                  executable=os.path.abspath(executable))
            nodes[name].start(None)
        for node in nodes.values():
            node.wait_running(120)
        known: Dict[str, List[float]] = {name: [] for name in nodes}
        early: Dict[str, int] = {name: 0 for name in nodes}  # rounds whose answer came before PostgreSQL had it
        for i in range(args.reloads):
            for node in nodes.values():
                node.write_config(tags={'round': str(i)}, parameters={'work_mem': '{0}MB'.format(4 + i)})
            time.sleep(random.uniform(0, 10))  # the phase of the nap the request lands in: the input
            for name in random.sample(list(nodes), 2):  # neither always first
                elapsed, in_effect = reload_and_know(name, nodes[name], i)
                known[name].append(elapsed)
                early[name] += not in_effect
        if args.reloads:  # 0: the storm alone
            print('reload -> the caller knows the new configuration is in effect, loop_wait 10, {0} reloads each'
                  .format(args.reloads))
            print('  patched: POST /reload {"timeout": 30} until its answer; upstream: POST /reload, then GET '
                  '/patroni every 50 ms')
            for name in nodes:
                print('{0:8}, s: {1}'.format(name, summary(known[name])))
            print('  the new work_mem not yet in PostgreSQL when the caller knew: ' +
                  ', '.join('{0} {1} of {2}'.format(name, early[name], args.reloads) for name in nodes))
        print('storm: 1,000 SIGHUPs in a second, and a POST /reload every 10 ms of it (patched: waiting, timeout 60); '
              'counted over {0} s from its start'.format(WINDOW))
        for name, node in nodes.items():
            print(storm(name, node, etcd))
    finally:
        for node in nodes.values():
            if node.proc:
                node.stop()
        etcd.stop()
        workdir.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
