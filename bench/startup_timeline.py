#!/usr/bin/env python3
"""Start-up timeline, upstream 4.1.5 and the patched Patroni in one run, drawn as a PNG.

For each start: spawn -> SIGHUP handler in place (``SigCgt`` in /proc/PID/status) -> first HA cycle done (the first
line ``Patroni._run_cycle`` logs) -> READY=1 (on a notify socket of the bench's own) -> PostgreSQL accepting
connections (a psycopg2 connect succeeds). Each node is bootstrapped once, then started --trials times from its
existing data directory with PostgreSQL stopped (a service restart); the nodes take turns. Upstream gets Debian's
python3-systemd (tests/deps.sh), without which it sends no READY=1 at all. All times are from the same clock
(time.time(): the log's timestamps are wall-clock).

Usage (as root): .venv/bin/python bench/startup_timeline.py [--trials 5] [--png docs/startup-timeline.png]
"""

import argparse
import os
import re
import statistics
import sys
import threading
import time

from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))

from realparts import BIN, Etcd, NotifyListener, Patroni, PYTHON_SYSTEMD, Workdir  # noqa: E402

EVENTS = ('SIGHUP handler', 'first HA cycle done', 'READY=1', 'PostgreSQL accepting')
LOG = {'log': {'format': '%(asctime)s.%(msecs)03d %(funcName)s %(levelname)s: %(message)s', 'dateformat': '%s'}}
CYCLE_LINE = re.compile(r'^(\d+\.\d+) _run_cycle INFO: ', re.M)


def first(predicate, timeout: float = 120, interval: float = 0.0002) -> Optional[float]:
    """Poll *predicate* until true; the wall-clock time it first was, or ``None`` after *timeout* seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return time.time()
        time.sleep(interval)
    return None


def handler_installed(pid: int) -> bool:
    """Whether process *pid* catches SIGHUP."""
    try:
        with open('/proc/{0}/status'.format(pid)) as f:
            return any(line.startswith('SigCgt:') and int(line.split()[1], 16) & 1 for line in f)
    except OSError:
        return False


def accepting(port: int) -> bool:
    """Whether PostgreSQL on *port* accepts a connection."""
    import psycopg2
    try:
        psycopg2.connect(host='127.0.0.1', port=port, user='postgres', dbname='postgres', connect_timeout=1).close()
        return True
    except psycopg2.Error:
        return False


def one_start(node: Patroni, manager: NotifyListener) -> Dict[str, float]:
    """Start *node* once; the time of each of :data:`EVENTS`, in ms after the spawn."""
    offset = os.path.getsize(node.log_path)
    readies = len([m for _, m in manager.messages if m.startswith('READY=1')])
    results: Dict[str, Optional[float]] = {}
    spawned = time.time()
    proc = node.start(manager.address)
    pollers = [threading.Thread(target=lambda: results.__setitem__('SIGHUP handler', first(
                   lambda: handler_installed(proc.pid), interval=0.0001))),
               threading.Thread(target=lambda: results.__setitem__('PostgreSQL accepting', first(
                   lambda: accepting(node.pg_port), interval=0.01)))]
    for poller in pollers:
        poller.start()
    results['READY=1'] = manager.wait('READY=1', count=readies + 1, timeout=120)
    for poller in pollers:
        poller.join()
    with open(node.log_path) as f:
        f.seek(offset)
        match = CYCLE_LINE.search(f.read())
    results['first HA cycle done'] = float(match.group(1)) if match else None
    node.wait_running(60)
    node.stop()
    missing = [e for e in EVENTS if results.get(e) is None]
    assert not missing, 'not seen: {0}'.format(missing)
    return {e: (results[e] - spawned) * 1000 for e in EVENTS}  # type: ignore


def draw(medians: Dict[str, Dict[str, List[float]]], path: str) -> None:
    """The timeline: one row per Patroni, each event at its median with a min-max bar."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    colours = dict(zip(EVENTS, ('tab:blue', 'tab:orange', 'tab:red', 'tab:green')))
    fig, ax = plt.subplots(figsize=(10, 3.2))
    names = list(medians)
    for row, name in enumerate(names):
        ax.plot([0, max(statistics.median(v) for v in medians[name].values())], [row, row], color='lightgrey',
                zorder=1)
        for event in EVENTS:
            values = medians[name][event]
            mid = statistics.median(values)
            ax.errorbar(mid, row, xerr=[[mid - min(values)], [max(values) - mid]], fmt='o', color=colours[event],
                        label=event if row == 0 else None, capsize=3, zorder=2)
            ax.annotate('{0:.0f}'.format(mid), (mid, row), textcoords='offset points', xytext=(0, 8 if event in (
                'SIGHUP handler', 'READY=1') else -14), ha='center', fontsize=8, color=colours[event])
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set_xlabel('ms after spawn (median, bars: min-max over {0} starts)'.format(len(values)))
    ax.set_title('Patroni start-up: spawn -> SIGHUP handler -> first HA cycle -> READY=1 -> PostgreSQL accepting')
    ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.28), ncol=4, frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    """Run the starts, print the table, draw the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--upstream', default=os.path.join(ROOT, '.venv-upstream', 'bin', 'patroni'))
    parser.add_argument('--patched', default=os.path.join(BIN, 'patroni'))
    parser.add_argument('--trials', type=int, default=5)
    parser.add_argument('--png', default=os.path.join(ROOT, 'docs', 'startup-timeline.png'))
    args = parser.parse_args()
    workdir = Workdir()
    etcd = Etcd(workdir.path)
    nodes: Dict[str, Patroni] = {}
    managers: Dict[str, NotifyListener] = {}
    times: Dict[str, Dict[str, List[float]]] = {}
    try:
        for name, executable in (('upstream 4.1.5', args.upstream), ('patched', args.patched)):
            key = name.split()[0]
            managers[name] = NotifyListener(os.path.join(workdir.path, 'notify-' + key))
            nodes[name] = Patroni(workdir, etcd, 'timeline-' + key, extra=LOG, executable=os.path.abspath(executable),
                                  env={'PYTHONPATH': PYTHON_SYSTEMD} if key == 'upstream' else None)
            nodes[name].start(managers[name].address)  # bootstrap once
            nodes[name].wait_running(120)
            nodes[name].stop()
            times[name] = {e: [] for e in EVENTS}
        for _ in range(args.trials):
            for name, node in nodes.items():
                for event, ms in one_start(node, managers[name]).items():
                    times[name][event].append(ms)
    finally:
        for node in nodes.values():
            node.kill()
        for manager in managers.values():
            manager.close()
        etcd.stop()
        workdir.cleanup()
    print('start-up timeline, ms after spawn, median (min-max) of {0} starts from an existing data directory'.format(
        args.trials))
    print('{0:24}'.format('event') + ''.join('{0:>26}'.format(name) for name in times))
    for event in EVENTS:
        print('{0:24}'.format(event) + ''.join('{0:>26}'.format('{0:.0f} ({1:.0f}-{2:.0f})'.format(
            statistics.median(v), min(v), max(v))) for v in (times[name][event] for name in times)))
    draw(times, args.png)
    print('picture: ' + os.path.relpath(args.png, ROOT))
    return 0


if __name__ == '__main__':
    sys.exit(main())
