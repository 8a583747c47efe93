"""The record of bench/acceptance.sh: upstream's behave features on master and on master + the series, per DCS.

``acceptance_report.py WORK`` prints the record of every run kept in WORK/results (the stamp line is written before
it by ``make acceptance``); ``acceptance_report.py --differs WORK DCS FEATURE`` exits 0 when the scenarios of that
feature ended differently on the two sides in their first runs (bench/acceptance.sh then runs it again), 1 if not;
``acceptance_report.py --table RECORD`` prints the feature rows of the record RECORD (docs/results/acceptance.txt) as
the Markdown table docs/upstreaming.md quotes (tests/test_figures.py checks that it holds them all, and only them).

Per DCS and feature it gives the scenarios passed/failed/skipped and the wall time of the behave run on each side,
then every scenario whose outcome differs (with the step that failed and the first line of its error), the outcome
of the reruns of that feature, and the scenarios that failed on both sides.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys

from typing import Any, Dict, List, Optional, Tuple

SIDES = ('master', 'series')
#: bench/acceptance.sh's default DCS: the record says which of them no feature ran on
DEFAULT_DCS = ('etcd3', 'etcd', 'raft', 'zookeeper')
LABELS = {'master': 'master', 'series': 'master+series'}

#: (scenario name, status, failing step, first line of its error)
Scenario = Tuple[str, str, str, str]


def load(path: str) -> Optional[List[Scenario]]:
    """The scenarios of one behave run from its JSON output.

    :param path: the ``--format json`` output file.
    :returns: one entry per scenario, in order (a repeated name gets `` #2``, `` #3``...), or ``None`` if the file is
        missing or cut short (a run killed by its timeout writes no JSON).
    """
    try:
        with open(path) as f:
            features = json.load(f)
    except (OSError, ValueError):
        return None
    scenarios: List[Scenario] = []
    seen: Dict[str, int] = {}
    for feature in features:
        for element in feature.get('elements') or []:
            if element.get('type', element.get('keyword', '').lower()) not in ('scenario', 'scenario_outline'):
                continue
            name = element.get('name', '')
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = '{0} #{1}'.format(name, seen[name])
            steps = element.get('steps') or []
            status = element.get('status') or scenario_status(steps)
            step, error = '', ''
            for s in steps:
                result = s.get('result') or {}
                if result.get('status') in ('failed', 'error', 'undefined'):
                    step = '{0} {1}'.format(s.get('keyword', '').strip(), s.get('name', '')).strip()
                    message = result.get('error_message') or ''
                    lines = message if isinstance(message, list) else message.splitlines()
                    error = first_line(lines)
                    break
            scenarios.append((name, str(status), step, error))
    return scenarios


def scenario_status(steps: List[Dict[str, Any]]) -> str:
    """A scenario's status from its steps (for a behave whose JSON has none).

    :param steps: the steps of the JSON output.
    :returns: ``failed``, ``skipped`` or ``passed``.
    """
    statuses = [(s.get('result') or {}).get('status', 'skipped') for s in steps]
    if any(s in ('failed', 'error', 'undefined') for s in statuses):
        return 'failed'
    if not statuses or all(s in ('skipped', 'untested') for s in statuses):
        return 'skipped'
    return 'passed'


def first_line(lines: List[str]) -> str:
    """The line of an error message that says what failed (the assertion or exception, not the traceback).

    :param lines: the error message's lines.
    :returns: that line, at most 160 characters.
    """
    lines = [line.strip() for line in lines if line.strip()]
    for line in lines:
        if re.match(r'^(Assertion Failed|AssertionError|[A-Za-z_.]+(Error|Exception)\b)', line):
            return line[:160]
    return (lines[-1] if lines else '')[:160]


def counts(scenarios: Optional[List[Scenario]]) -> str:
    """``passed/failed/skipped`` of one run.

    :param scenarios: the run's scenarios, or ``None``.
    :returns: the cell of the table.
    """
    if scenarios is None:
        return 'no result'
    statuses = [s[1] for s in scenarios]
    other = len(statuses) - sum(statuses.count(s) for s in ('passed', 'failed', 'skipped'))
    cell = '{0}/{1}/{2}'.format(statuses.count('passed'), statuses.count('failed'), statuses.count('skipped'))
    return cell + (' +{0} other'.format(other) if other else '')


def read(path: str) -> str:
    """The first line of a small file, or ``?``.

    :param path: the file.
    :returns: its first line.
    """
    try:
        with open(path) as f:
            return f.readline().strip() or '?'
    except OSError:
        return '?'


def run_of(work: str, dcs: str, side: str, feature: str, suffix: str = '') -> Dict[str, Any]:
    """What one run left in WORK/results.

    :param work: the acceptance directory.
    :param dcs: the DCS.
    :param side: ``master`` or ``series``.
    :param feature: the feature's file name without ``.feature``.
    :param suffix: ``''`` or ``.rerunN``.
    :returns: ``scenarios``, ``wall`` (seconds, text) and ``rc`` (exit status, text).
    """
    base = os.path.join(work, 'results', dcs, side, feature + suffix)
    return {'scenarios': load(base + '.json'), 'wall': read(base + '.wall'), 'rc': read(base + '.rc')}


def outcome(scenarios: Optional[List[Scenario]]) -> Dict[str, str]:
    """Scenario name -> status.

    :param scenarios: a run's scenarios.
    :returns: the map (empty for no result).
    """
    return {s[0]: s[1] for s in scenarios or []}


def differing(master: Optional[List[Scenario]], series: Optional[List[Scenario]]) -> List[str]:
    """The scenarios whose status differs between the two sides (a missing result differs from any).

    :param master: master's scenarios.
    :param series: master + series' scenarios.
    :returns: their names, in master's order then the series' own.
    """
    if master is None or series is None:
        return ['(the whole feature: {0})'.format('no result on master' if master is None
                                                  else 'no result on master+series')] if master != series else []
    a, b = outcome(master), outcome(series)
    names = [s[0] for s in master] + [s[0] for s in series if s[0] not in a]
    return [n for n in names if a.get(n) != b.get(n)]


def describe(scenarios: Optional[List[Scenario]], name: str) -> str:
    """One side's outcome of a scenario, with the step that failed and its error.

    :param scenarios: that side's scenarios.
    :param name: the scenario.
    :returns: e.g. ``failed at "Then ...": AssertionError: ...``.
    """
    for s in scenarios or []:
        if s[0] == name:
            return s[1] + (' at "{0}"'.format(s[2]) if s[2] else '') + (': ' + s[3] if s[3] else '')
    return 'absent' if scenarios is not None else 'no result'


#: a Patroni log line of level ERROR or CRITICAL: (level, function, message)
LOG_LINE = re.compile(r'^\S+ \S+ (ERROR|CRITICAL) \[[^\]]* - ([^\]]+)\]: (.*)$')


def log_findings(work: str, dcs: str, side: str, feature: str) -> Tuple[int, int, List[str]]:
    """The ERROR and CRITICAL lines and the tracebacks in the Patroni logs of one run (features/output).

    :param work: the acceptance directory.
    :param dcs: the DCS.
    :param side: ``master`` or ``series``.
    :param feature: the feature.
    :returns: how many such lines, how many tracebacks, and the lines as ``LEVEL function: message`` with numbers
        written as ``N`` and the side's own tree (``<work>/master/``, ``<work>/series/``, in the paths of data
        directories and configuration files) as ``<tree>/`` (so that the two sides compare: the series moves line
        numbers, PIDs and times differ, each side runs in its own tree).
    """
    errors, tracebacks, lines = 0, 0, []
    tree = os.path.join(os.path.abspath(work), side) + os.sep
    pattern = os.path.join(work, 'results', dcs, side, feature + '.output', '*', 'patroni_*.log')
    for path in sorted(glob.glob(pattern)):
        if '_failed' in os.path.basename(os.path.dirname(path)):
            continue  # environment.py's copy of a failed feature's directory
        with open(path, errors='replace') as f:
            for line in f:
                if line.startswith('Traceback'):
                    tracebacks += 1
                match = LOG_LINE.match(line)
                if match:
                    errors += 1
                    line = '{0} {1}: {2}'.format(*match.groups()).replace(tree, '<tree>/')
                    lines.append(re.sub(r'\d+', 'N', line)[:160])
    return errors, tracebacks, lines


def features_of(work: str, dcs: str) -> List[str]:
    """The features run on a DCS, in name order.

    :param work: the acceptance directory.
    :param dcs: the DCS.
    :returns: their names.
    """
    names = set()
    for side in SIDES:
        for path in glob.glob(os.path.join(work, 'results', dcs, side, '*.rc')):
            name = os.path.basename(path)[:-3]
            if '.rerun' not in name:
                names.add(name)
    return sorted(names)


def versions(work: str) -> List[str]:
    """What the runs ran with.

    :param work: the acceptance directory.
    :returns: lines of the record.
    """
    def out(cmd: List[str]) -> str:
        try:
            return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                  timeout=60).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return '?'

    python = os.path.join(work, 'venv', 'bin', 'python')
    modules = out([python, '-c', 'import sys, importlib.metadata as m; print(", ".join(n + " " + m.version(n) for n in '
                   '("behave", "coverage", "psycopg", "python-etcd", "kazoo", "pysyncobj")))'])
    pg = out([os.path.join('/usr/lib/postgresql', os.environ.get('PG_MAJOR', '15'), 'bin', 'postgres'), '-V'])
    etcd = out(['sh', '-c', 'etcd --version 2>/dev/null || {0} --version'.format(
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.cache/etcd/usr/bin/etcd'))])
    zookeeper = out(['dpkg-query', '-W', '-f', '${Version}', 'zookeeper'])
    if not re.match(r'^\d', zookeeper):
        zookeeper = 'not installed'
    python_version = out([python, '-c', 'import platform; print(platform.python_version())'])
    return ['python {0}: {1}'.format(python_version, modules),
            '{0}; {1}; zookeeper (Debian) {2}'.format(pg, etcd, zookeeper)]


def record(work: str) -> List[str]:
    """The record (without the series stamp line).

    :param work: the acceptance directory.
    :returns: its lines.
    """
    lines: List[str] = []
    with open(os.path.join(work, 'key')) as f:
        sha = f.read().split()[1]
    subject = subprocess.run(['git', '-c', 'safe.directory=*', '-C', os.path.join(work, 'master'), 'log', '-1',
                              '--format=%s', sha], stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    with open(os.path.join(work, 'series.commits')) as f:
        commits = len(f.read().splitlines()) - 1
    lines.append('upstream {0} ({1}); master+series: {2} commits on it (patches/series and patches/upstream-only, '
                 'git am -3 -C1)'.format(sha, subject, commits))
    lines.extend(versions(work))
    lines.append('each feature in its own run of `python -m behave --format json --format plain features/<f>.feature`'
                 ' in upstream\'s tree, DCS=<dcs>, BUILD_NUMBER set (upstream\'s CI timeout multiplier 5), as postgres,'
                 ' in private network and PID namespaces; master and master+series at the same time (each the other\'s'
                 ' load); a feature that differs is run again on both sides (rerun N)')
    lines.append('cells: scenarios passed/failed/skipped, wall time of the behave run in seconds')
    run = os.listdir(os.path.join(work, 'results'))
    for dcs in [d for d in DEFAULT_DCS if d not in run] + sorted(run):
        lines.append('')
        why = os.path.join(work, 'results', dcs, 'unavailable')
        if os.path.exists(why):
            lines.append('dcs {0}: not run: {1}'.format(dcs, read(why)))
            continue
        names = features_of(work, dcs) if dcs in run else []
        if not names:
            lines.append('dcs {0}: no feature run yet'.format(dcs))
            continue
        lines.append('dcs {0}'.format(dcs))
        width = max([len(n) for n in names] + [19])
        row = '  {0:<%d}  {1:<14} {2:>7}  {3:<14} {4:>7}' % width
        lines.append(row.format('feature', 'master', 'wall', 'master+series', 'wall'))
        notes: List[str] = []
        totals = {side: [0, 0, 0, 0.0] for side in SIDES}
        logs = {side: [0, 0] for side in SIDES}
        series_only: List[str] = []
        pairs = 0
        for name in names:
            runs = {side: run_of(work, dcs, side, name) for side in SIDES}
            both = '?' not in (runs['master']['rc'], runs['series']['rc'])  # totals and logs: pairs only
            pairs += both
            cells = []
            for side in SIDES:
                cell = counts(runs[side]['scenarios'])
                if runs[side]['rc'] == '?':
                    cell = 'not run'
                elif runs[side]['scenarios'] is None:
                    cell = 'timed out' if runs[side]['rc'] == '124' else 'exit {0}'.format(runs[side]['rc'])
                elif both:
                    statuses = [s[1] for s in runs[side]['scenarios']]
                    for i, status in enumerate(('passed', 'failed', 'skipped')):
                        totals[side][i] += statuses.count(status)
                try:
                    totals[side][3] += float(runs[side]['wall']) if both else 0.0
                except ValueError:
                    pass
                cells.extend([cell, runs[side]['wall']])
            lines.append(row.format(name, *cells))
            if not both:
                continue  # a side not run (yet): nothing to compare
            found = {side: log_findings(work, dcs, side, name) for side in SIDES}
            for side in SIDES:
                logs[side][0] += found[side][0]
                logs[side][1] += found[side][1]
            series_only.extend(sorted('{0}: {1}'.format(name, line)
                                      for line in set(found['series'][2]) - set(found['master'][2])))
            master, series = runs['master']['scenarios'], runs['series']['scenarios']
            for scenario in differing(master, series):
                notes.append('  differs: {0}: {1}'.format(name, scenario))
                for side in SIDES:
                    notes.append('    {0}: {1}'.format(LABELS[side], describe(runs[side]['scenarios'], scenario)))
                n = 1
                while os.path.exists(os.path.join(work, 'results', dcs, 'master', '{0}.rerun{1}.rc'.format(name, n))):
                    again = {side: run_of(work, dcs, side, name, '.rerun{0}'.format(n)) for side in SIDES}
                    notes.append('    rerun {0}: {1}'.format(n, '; '.join(
                        '{0} {1} ({2}, {3} s)'.format(LABELS[side], describe(again[side]['scenarios'], scenario),
                                                      counts(again[side]['scenarios']), again[side]['wall'])
                        for side in SIDES)))
                    n += 1
            for s in master or []:
                if s[1] == 'failed' and outcome(series).get(s[0]) == 'failed':
                    notes.append('  failed on both: {0}: {1} ({2})'.format(
                        name, s[0], 'master: ' + describe(master, s[0]) + '; master+series: '
                        + describe(series, s[0])))
        total = []
        for side in SIDES:
            total.extend(['{0}/{1}/{2}'.format(*totals[side][:3]), '{0:.0f}'.format(totals[side][3])])
        lines.append(row.format('total (run on both)', *total))
        lines.append('  patroni logs, ERROR/CRITICAL lines and tracebacks: ' + ', '.join(
            '{0} {1}/{2}'.format(LABELS[side], *logs[side]) for side in SIDES))
        lines.extend('  only on master+series: ' + line for line in series_only)
        lines.extend(notes)
        if not pairs:
            lines.append('  differs: nothing compared (no feature run on both sides yet)')
        elif not any(n.startswith('  differs:') for n in notes):
            lines.append('  differs: none')
    return lines


def table(record_text: str) -> List[str]:
    """The feature rows of the record *record_text* as a Markdown table (DCS, feature, both sides and their wall)."""
    lines = ['| DCS | feature | master | wall (s) | master + series | wall (s) |',
             '| --- | --- | --- | --- | --- | --- |']
    dcs = ''
    for line in record_text.splitlines():
        if line.startswith('dcs '):
            dcs = line.split()[1]
        cells = line.split()
        if dcs and len(cells) == 5 and re.match(r'^\d+/\d+/\d+$', cells[1]) and cells[0] != 'total':
            lines.append('| {0} | {1} |'.format('etcd (v2 API)' if dcs == 'etcd' else dcs, ' | '.join(cells)))
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    """Print the record, its table (``--table``), or answer ``--differs``.

    :param argv: the arguments.
    :returns: the exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--differs', action='store_true')
    parser.add_argument('--table', action='store_true')
    parser.add_argument('work')
    parser.add_argument('dcs', nargs='?')
    parser.add_argument('feature', nargs='?')
    args = parser.parse_args(argv)
    if args.differs:
        if not args.dcs or not args.feature:
            parser.error('--differs needs DCS and FEATURE')
        runs = [run_of(args.work, args.dcs, side, args.feature)['scenarios'] for side in SIDES]
        return 0 if differing(*runs) else 1
    if args.table:
        with open(args.work) as f:
            print('\n'.join(table(f.read())))
        return 0
    print('\n'.join(record(args.work)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
