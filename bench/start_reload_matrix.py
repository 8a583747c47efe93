#!/usr/bin/env python3
"""``systemctl start; systemctl reload`` back to back, 30 trials in every cell of the matrix of the tests.

{upstream 4.1.5, patched} x {Type=simple, Type=notify} x {plain ExecStart, the early-sighup.conf drop-in}, under the
harness's systemd 252 with etcd 3.4 and PostgreSQL 15: the cells and how a trial is read are tests/start_reload.py's
(`make test` runs a few trials a cell). Cells take turns trial by trial, so that the machine's load falls on all
alike. Prints, per cell, how many trials ended with the reload applied, with Patroni killed by the SIGHUP, or with the
SIGHUP held blocked (reload lost), and checks each cell against what the tests expect.

Usage (as root, after `make install deps`): .venv/bin/python bench/start_reload_matrix.py [--trials 30]
"""

import argparse
import os
import sys

from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))

import start_reload  # noqa: E402  (tests/ is on sys.path)
from realparts import ETCD, read_from, Workdir  # noqa: E402
from systemd_harness import etcd_unit, Systemd  # noqa: E402
from test_systemd_units import end_postgres, Node, patroni_status  # noqa: E402


def main() -> int:
    """Run the trials, print one line a cell; exit 1 if a cell is not what the tests expect."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--trials', type=int, default=30)
    args = parser.parse_args()
    workdir = Workdir()
    nodes = {'patched': Node(workdir, 'patched'), 'upstream': Node(workdir, 'upstream')}
    units = {'etcd.service': etcd_unit(ETCD, os.path.join(workdir.path, 'etcd'),
                                       os.path.join(workdir.path, 'etcd.log'))}
    dropins: Dict[str, str] = {}
    for cell in start_reload.CELLS:
        files = start_reload.cell_units(cell, nodes[cell[0]].dir, nodes[cell[0]].log)
        units[start_reload.unit_name(cell)] = files.pop(start_reload.unit_name(cell))
        dropins.update(files)
    outcomes: Dict[start_reload.Cell, List[str]] = {cell: [] for cell in start_reload.CELLS}
    try:
        with Systemd(workdir.path, units, dropins) as systemd:
            assert systemd.systemctl('start', 'etcd.service').returncode == 0
            for program in nodes:
                start_reload.bootstrap(systemd, program, lambda: patroni_status(systemd))
            for _ in range(args.trials):
                for cell in start_reload.CELLS:
                    node = nodes[cell[0]]
                    offset = os.path.getsize(node.log) if os.path.exists(node.log) else 0
                    try:
                        outcomes[cell].append(start_reload.trial(systemd, cell, node.log,
                                                                 lambda: patroni_status(systemd),
                                                                 lambda: end_postgres(systemd, node)))
                    except Exception as e:  # e.g. a stop that does not end: say what the node did, go on
                        outcomes[cell].append('error')
                        unit = start_reload.unit_name(cell)
                        print('{0}: {1!r}\n{2}\n{3}'.format(unit, e, systemd.systemctl('status', unit).stdout,
                                                            read_from(node.log, offset)[-6000:]), file=sys.stderr)
                        systemd.systemctl('kill', '--signal=KILL', unit)
                        end_postgres(systemd, node)
                        systemd.systemctl('reset-failed', unit)
    finally:
        workdir.cleanup()
    print('systemd 252, `systemctl start; systemctl reload` back to back, {0} trials a cell:'.format(args.trials))
    failed = []
    for cell in start_reload.CELLS:
        print('  ' + start_reload.summary(cell, outcomes[cell]))
        try:
            start_reload.check(cell, outcomes[cell])
        except AssertionError:
            failed.append(cell)
    if failed:
        print('not as the tests expect: {0}'.format(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
