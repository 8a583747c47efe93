#!/usr/bin/env python3
"""Run every benchmark and write docs/results.md (and docs/startup-timeline.png) from bench/results.md.in.

One command regenerates the page: ``make results`` (about an hour; the reload benchmarks spend most of it waiting
for random points of a 10 s HA loop, the start+reload matrix in its 240 trials). Each benchmark's output is kept in
docs/results/<name>.txt, so ``--only NAME`` reruns one and renders the page again with the others' last outputs. A
benchmark that fails stops the run with one line, and the page is left as it was.

Usage (as root, after `make install deps`): .venv/bin/python bench/results.py [--only NAME ...]
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile

from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = '.venv/bin/python'
# bench/sigterm_lock.py's interpreters: RHEL 8's and 9's Python (pyenv's 3.6.15, 3.9.18), Debian bookworm's (the
# machine's), RHEL 10's (pyenv's 3.12.1), Debian trixie's (pyenv's 3.13.0) and forky's (its root)
SIGTERM_LOCK_PYTHONS = [os.path.expanduser('~/.pyenv/versions/3.6.15/bin/python3'),
                        os.path.expanduser('~/.pyenv/versions/3.9.18/bin/python3'), '/usr/bin/python3',
                        os.path.expanduser('~/.pyenv/versions/3.12.1/bin/python3'),
                        os.path.expanduser('~/.pyenv/versions/3.13.0/bin/python3'), 'tests/root_python.sh']
BENCHES: Dict[str, List[str]] = {
    # first: it fails at once, not after an hour, where one of its interpreters is missing
    'sigterm_lock': [PYTHON, 'bench/sigterm_lock.py',
                     '--upstream', '.venv-upstream/lib/python3.11/site-packages/patroni',
                     '--patched', '.venv/lib/python3.11/site-packages/patroni',
                     *[arg for python in SIGTERM_LOCK_PYTHONS for arg in ('--python', python)], '--trials', '60'],
    'sighup_window': [PYTHON, 'bench/sighup_window.py', '--patched', '.venv/bin/patroni',
                      '--upstream', '.venv-upstream/bin/patroni', '--trials', '30'],
    'reload_latency': [PYTHON, 'bench/reload_latency.py', '--upstream', '.venv-upstream/bin/patroni',
                       '--reloads', '100'],
    'notify_reload': [PYTHON, 'bench/notify_reload.py', '--reloads', '50'],
    'reload_wait': [PYTHON, 'bench/reload_wait.py', '--upstream', '.venv-upstream/bin/patroni', '--reloads', '30'],
    'early_sighup_start': [PYTHON, 'bench/early_sighup_start.py', '--upstream', '.venv-upstream/bin/patroni',
                           '--trials', '10'],
    'start_reload_matrix': [PYTHON, 'bench/start_reload_matrix.py', '--trials', '30'],
    'startup_timeline': [PYTHON, 'bench/startup_timeline.py', '--trials', '5', '--png', 'docs/startup-timeline.png'],
}
OUT = os.path.join(ROOT, 'docs', 'results')


def render(machine: str) -> str:
    """docs/results.md as bench/results.md.in makes it from the records in docs/results/ (tests/test_figures.py checks
    that the page is this, not edited by hand).

    :param machine: what the page says of the machine that ran the benchmarks.
    :returns: the page.
    """
    fields = {'machine': machine}
    for name in BENCHES:
        try:
            with open(os.path.join(OUT, name + '.txt')) as f:
                fields[name] = f.read().rstrip('\n')
        except OSError:
            fields[name] = '(not run yet: bench/results.py --only {0})'.format(name)
    with open(os.path.join(ROOT, 'bench', 'results.md.in')) as f:
        return f.read().format(**fields)


def main() -> int:
    """Run the benchmarks asked for, then render the page."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--only', nargs='+', choices=sorted(BENCHES), help='rerun only these')
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    stamp = subprocess.check_output([sys.executable, 'patchqueue.py', 'series-stamp'], cwd=ROOT,
                                    universal_newlines=True).strip()  # the series each record is of
    for name in args.only or BENCHES:
        print('running ' + ' '.join(BENCHES[name]), flush=True)
        result = subprocess.run(BENCHES[name], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ['exit code {0}'.format(result.returncode)])[-1]
            errors = os.path.join(tempfile.gettempdir(), 'results-{0}.stderr'.format(name))
            with open(errors, 'w') as f:
                f.write(result.stderr)
            print('results.py: {0} failed, docs/results.md unchanged: {1} (its whole stderr: {2})'.format(
                name, last, errors), file=sys.stderr)
            return 1
        with open(os.path.join(OUT, name + '.txt'), 'w') as f:
            header = '$ {0}\n# {1}\n{2}\n'.format(' '.join(BENCHES[name]), datetime.date.today(), stamp)
            f.write(header + result.stdout)
    machine = '{0} cores, {1}, Python {2}'.format(os.cpu_count(), platform.platform(terse=True),
                                                  platform.python_version())
    page = render(machine)
    with open(os.path.join(ROOT, 'docs', 'results.md'), 'w') as f:
        f.write(page)
    print('wrote docs/results.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
