#!/usr/bin/env python3
"""Count SIGTERMs whose handler deadlocks on ``_sigterm_lock``, upstream Patroni and the patched one, per Python.

``AbstractPatroniDaemon.sigterm_handler`` calls ``api_sigterm``, which takes ``_sigterm_lock``; the main thread holds
that lock in ``received_sigterm`` (read once per HA cycle) and, upstream, in ``shutdown()``. Python runs a signal
handler in the main thread at its next check for signals: Python 3.6 to 3.9 check between most instructions, also
inside a ``with`` block, 3.10 to 3.13 only at calls and backward jumps, 3.14 right after a ``with`` statement's
``__enter__`` (python/cpython#148874). A handler there that waits for a ``threading.Lock`` held by its own thread
waits for ever (and the daemon ends only at the service manager's SIGKILL).

Each trial starts a child with the given interpreter that imports ``patroni.daemon`` from the given package
directory, sets up the daemon's signal handlers (``setup_signal_handlers()``, as the daemon's ``__init__`` does) and
then does nothing but read ``received_sigterm`` in a loop (so the window is hit far more often than by a daemon,
which spends its time waiting); once the child says it is ready, the bench waits a random 0-10 ms (the point of the
signal, not a synchronisation) and sends SIGTERM. The child either ends with exit code 0 and nothing on stderr (the
handler's ``SystemExit``), or is still there 2 s after the signal: then SIGUSR1 makes ``faulthandler`` print every
thread's stack, and a main thread waiting in ``api_sigterm`` is counted as deadlocked (the child is killed); anything
else fails the bench. Trials alternate between the cells; the table names each side's lock type.

Usage: bench/sigterm_lock.py --upstream DIR --patched DIR --python PYTHON [--python PYTHON ...] [--trials 200]
(DIR: a ``patroni`` package directory, e.g. .venv-upstream/lib/python3.11/site-packages/patroni)
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

from typing import Dict, Tuple

CHILD = """
import faulthandler, os, signal
import patroni.daemon
from patroni.daemon import AbstractPatroniDaemon

class Daemon(AbstractPatroniDaemon):
    def _run_cycle(self):
        pass

    def _shutdown(self):
        pass

daemon = Daemon.__new__(Daemon)
daemon.setup_signal_handlers()
faulthandler.register(signal.SIGUSR1)
lock = type(daemon._sigterm_lock).__name__
print('ready', os.getpid(), lock[:1].upper() + lock[1:], patroni.daemon.__file__, flush=True)
while not daemon.received_sigterm:
    pass
"""
GRACE = 2.0  # seconds from the SIGTERM to the end of a child that is not deadlocked, at most


def one_trial(python: str, path: str) -> Tuple[str, str]:
    """One child, one SIGTERM.

    :param python: the interpreter.
    :param path: a directory holding the ``patroni`` package to import, and nothing else: the child's working
        directory, first on its ``sys.path``.
    :returns: ``ended`` or ``deadlocked``, and the type of the lock.
    """
    proc = subprocess.Popen([python, '-c', CHILD], cwd=path, env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1'),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ''
        expected = os.path.join(os.path.realpath(os.path.join(path, 'patroni')), 'daemon.py')
        words = line.split()
        # the signals go to the interpreter itself (a wrapper such as tests/root_python.sh must exec it)
        if len(words) != 4 or words[:2] != ['ready', str(proc.pid)] or os.path.realpath(words[3]) != expected:
            raise RuntimeError('the child did not start as {0} with {1}: {2!r} {3}'.format(
                proc.pid, expected, line, proc.stderr.read() if proc.stderr else ''))
        time.sleep(random.uniform(0, 0.01))  # the point of the signal
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=GRACE)
            outcome = 'ended' if proc.returncode == 0 and not err else ''
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            try:
                _, err = proc.communicate(timeout=GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            outcome = 'deadlocked' if 'in api_sigterm' in err else ''
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if not outcome:
        raise RuntimeError('the child neither ended nor waited in api_sigterm (exit code {0}):\n{1}'.format(
            proc.returncode, err))
    return outcome, words[2]


def main() -> int:
    """Run the trials and print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--upstream', required=True, help="upstream's patroni package directory")
    parser.add_argument('--patched', required=True, help='the patched patroni package directory')
    parser.add_argument('--python', action='append', required=True, help='an interpreter')
    parser.add_argument('--trials', type=int, default=200)
    args = parser.parse_args()
    # the children run in a directory of their own: an interpreter given by a relative path is taken from here
    args.python = [os.path.abspath(python) if os.path.exists(python) else python for python in args.python]
    with tempfile.TemporaryDirectory() as tmp:
        sides: Dict[str, str] = {}
        for side, package in (('upstream 4.1.5', args.upstream), ('patched', args.patched)):
            sides[side] = os.path.join(tmp, side.split()[0])  # a directory with nothing but that package in it
            os.mkdir(sides[side])
            os.symlink(os.path.realpath(package), os.path.join(sides[side], 'patroni'))
        versions: Dict[str, str] = {}  # (an interpreter that is not there fails here, before any trial)
        for python in args.python:
            versions[python] = subprocess.check_output(
                [python, '-c', 'import platform; print(platform.python_version())'],
                universal_newlines=True).strip()
        counts: Dict[Tuple[str, str], Dict[str, int]] = {}
        locks: Dict[str, str] = {}
        for _ in range(args.trials):
            for python in args.python:
                for side, path in sides.items():
                    outcome, locks[side] = one_trial(python, path)
                    cell = counts.setdefault((python, side), {'ended': 0, 'deadlocked': 0})
                    cell[outcome] += 1
    print('SIGTERM to a daemon whose main thread reads received_sigterm in a loop, {0} trials a cell: ended, or '
          'deadlocked (the handler waiting in api_sigterm for the lock its own thread holds)'.format(args.trials))
    print('{0:<10} {1:<30} {2}'.format('python', *('{0} ({1})'.format(side, locks[side]) for side in sides)))
    for python in args.python:
        cells = ['ended {ended:>4}  deadlocked {deadlocked:>4}'.format(**counts[(python, side)]) for side in sides]
        print('{0:<10} {1:<30} {2}'.format(versions[python], *cells))
    return 0


if __name__ == '__main__':
    sys.exit(main())
