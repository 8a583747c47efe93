#!/usr/bin/env python3
"""Measure exec -> SIGHUP no longer fatal, for upstream Patroni and the patched one, in the same run.

For each trial the daemon is spawned with a config whose DCS is a closed loopback port (so it goes no further than
start-up), and /proc/PID/status is polled until SigCgt (handled) or SigBlk (blocked) has the SIGHUP bit: that is the
moment a SIGHUP stops being fatal. The patched one is also started as the opt-in early-sighup.conf drop-in starts
it, through `env --block-signal=HUP`. The interpreter floor is a Python that installs a SIGHUP handler as its first
statement. Trials alternate between the programs so that machine load affects all of them alike.

Usage: bench/sighup_window.py --patched .venv/bin/patroni --upstream .venv-upstream/bin/patroni [--trials 30]
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from typing import Dict, List

CONFIG = """scope: bench
name: bench
restapi: {listen: 127.0.0.1:1, connect_address: 127.0.0.1:1}
etcd3: {hosts: 127.0.0.1:1}
postgresql: {data_dir: %s/data, listen: 127.0.0.1:1, connect_address: 127.0.0.1:1}
"""
FLOOR = [sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGHUP, lambda *a: None); time.sleep(60)']


def sighup_caught(pid: int) -> bool:
    """Whether a SIGHUP is no longer fatal: the process handles it (SigCgt) or has it blocked (SigBlk)."""
    with open('/proc/{0}/status'.format(pid)) as f:
        return any(int(line.split()[1], 16) & 1 for line in f if line.startswith(('SigCgt:', 'SigBlk:')))


def one_trial(cmd: List[str], timeout: float = 10.0) -> float:
    """Spawn *cmd*, return seconds until its SIGHUP handler is in place; end it by PID."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - start < timeout:
            if proc.poll() is not None:
                raise RuntimeError('{0} exited with {1} before installing a handler'.format(cmd[0], proc.returncode))
            if sighup_caught(proc.pid):
                return time.monotonic() - start
        raise RuntimeError('{0}: no SIGHUP handler after {1}s'.format(cmd[0], timeout))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def main() -> int:
    """Run the trials and print the distributions."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--patched', required=True, help='the patched patroni executable')
    parser.add_argument('--upstream', help='the upstream patroni executable')
    parser.add_argument('--trials', type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, 'patroni.yml')
        with open(config, 'w') as f:
            f.write(CONFIG % tmp)
        programs = {'floor (python3, handler first)': FLOOR, 'patched': [args.patched, config],
                    'patched, env --block-signal=HUP': ['/usr/bin/env', '--block-signal=HUP', args.patched, config]}
        if args.upstream:
            programs['upstream'] = [args.upstream, config]
        results: Dict[str, List[float]] = {name: [] for name in programs}
        for _ in range(args.trials):
            for name, cmd in programs.items():
                results[name].append(one_trial(cmd) * 1000)
    floor = statistics.median(results['floor (python3, handler first)'])
    print('exec -> SIGHUP handled or blocked, ms, {0} trials each'.format(args.trials))
    print('{0:34} {1:>7} {2:>7} {3:>7} {4:>7} {5:>12}'.format('program', 'min', 'p50', 'p95', 'max', 'p50 - floor'))
    for name, values in results.items():
        values.sort()
        p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
        p50 = statistics.median(values)
        row = (name, values[0], p50, p95, values[-1], p50 - floor)
        print('{0:34} {1:7.1f} {2:7.1f} {3:7.1f} {4:7.1f} {5:12.1f}'.format(*row))
    if args.upstream:
        p50 = {name: statistics.median(values) for name, values in results.items()}
        print('p50 ratios: upstream / patched {0:.1f}x, upstream / patched with env {1:.0f}x'.format(
            p50['upstream'] / p50['patched'], p50['upstream'] / p50['patched, env --block-signal=HUP']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
