"""Docs, patch headers and PR texts quote only figures that docs/results.md holds now (DEVELOPERS.md): every timing
figure with a decimal part (``13.12 ms``, ``0.02 s``, ``47.31ms``, ``3.14 seconds``, both ends of ``0.5-0.7 s``) in
them must be a number of the benchmarks' records in docs/results/, which `make results` writes on the series that
ships, and docs/results.md must be the page bench/results.py renders from those records (no hand edit). A figure that
is no measurement (a setting of a test or of a unit) is listed in SETTINGS, with where it comes from."""

import glob
import os
import re
import sys

from typing import Iterator, List, Tuple

from realparts import ROOT

sys.path.insert(0, os.path.join(ROOT, 'bench'))
import acceptance_report  # noqa: E402 (bench/ is no package)
import results as results_py  # noqa: E402

# a decimal, the unit after it (with or without a space), or the first of a range whose second end has the unit;
# captured `systemctl status` output (`CPU: 2.153s`) is no claim
FIGURE = re.compile(r'(?<!CPU: )(?<![\d.])(\d+\.\d+)'
                    r'(?:\s?(ms|s|seconds)\b|(?=\s?[-\u2013]\s?\d+\.\d+\s?(ms|s|seconds)\b))')

# figures that are settings, not measurements
SETTINGS = {
    '1.5 s': 'how long the reload tests hold the postmaster and Patroni (test_systemd_units.py, test_systemd_257.py)',
    '0.5 s': 'how long the reload tests hold the postmaster alone (tests/test_systemd_units.py, test_systemd_257.py)',
}


def texts() -> Iterator[Tuple[str, str]]:
    """(path relative to the project, text) of every file that quotes figures: the docs but the results themselves,
    the units' README, the Debian package's NEWS and README.Debian, and each patch's header (before its diff)."""
    paths = [os.path.join(ROOT, 'README.md'), os.path.join(ROOT, 'extras', 'startup_scripts', 'README.md')]
    paths += [os.path.join(ROOT, 'packaging', 'debian', name) for name in ('NEWS', 'README.Debian')]
    paths += [p for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')) if os.path.basename(p) != 'results.md']
    for path in sorted(paths):
        with open(path) as f:
            yield os.path.relpath(path, ROOT), f.read()
    for path in sorted(glob.glob(os.path.join(ROOT, 'patches', '**', '*.patch'), recursive=True)):
        with open(path) as f:
            yield os.path.relpath(path, ROOT), f.read().split('\ndiff --git ', 1)[0]


def figures(text: str) -> Iterator[Tuple[str, str]]:
    """(number, ``number unit``) of each timing figure of *text*."""
    for match in FIGURE.finditer(text):
        yield match.group(1), '{0} {1}'.format(match.group(1), match.group(2) or match.group(3))


def records() -> str:
    """The benchmarks' records (docs/results/*.txt of bench/results.py) and the acceptance records (their wall
    times), concatenated."""
    text = ''
    for name in sorted(results_py.BENCHES) + ['acceptance', 'acceptance-quorum_commit']:
        with open(os.path.join(ROOT, 'docs', 'results', name + '.txt')) as f:
            text += f.read()
    return text


def unmeasured(measured: str) -> List[str]:
    """The figures quoted that the text *measured* does not hold, as ``file: figure``."""
    numbers = set(re.findall(r'(?<![\d.])\d+\.\d+(?![\d])', measured))
    return ['{0}: {1}'.format(name, figure) for name, text in texts() for number, figure in figures(text)
            if number not in numbers and figure not in SETTINGS]


def test_every_figure_quoted_is_in_the_records():
    assert unmeasured(records()) == []


def test_a_figure_the_records_lack_is_found():
    """The positive control: the same check against records without one figure that the docs quote, and against
    figures written in each form the check reads."""
    quoted = [number for _, text in texts() for number, figure in figures(text) if figure not in SETTINGS]
    assert quoted, 'the docs quote no figure at all'
    assert any(item.split(': ')[1].startswith(quoted[0] + ' ')
               for item in unmeasured(records().replace(quoted[0], 'N/A')))
    forms = 'took 47.31ms, then 3.14 seconds, 0.5-0.7 s, 0.25 \u2013 0.75 s; CPU: 2.153s'
    assert [figure for _, figure in figures(forms)] == [
        '47.31 ms', '3.14 seconds', '0.5 s', '0.7 s', '0.25 s', '0.75 s']


def test_results_md_is_rendered_from_the_records():
    """docs/results.md is bench/results.py's page of today's records, word for word; its one line of its own, the
    machine, is taken from the page."""
    with open(os.path.join(ROOT, 'docs', 'results.md')) as f:
        page = f.read()
    machine = re.search(r"this project's machine kind \((.+?)\)\. Each block", page)
    assert machine, 'docs/results.md does not say which machine ran the benchmarks'
    assert results_py.render(machine.group(1)) == page, 'docs/results.md was edited by hand: run make results'


# test counts quoted from upstream's suites (``806 passed``, ``677 without, 783 with``): docs/results' records of
# `make pr-map` and `make upstream-suite` (pytest's summary lines, ``NNN passed``) must hold each
COUNT = re.compile(r'(?<![\d.])(\d+) passed\b|(?<![\d.])(\d+) without, (\d+) with\b')
# a row of upstreaming.md's acceptance table: | DCS | feature | master | wall | master + series | wall |
ACCEPTANCE_ROW = re.compile(r'^\| (\S+)(?: \(v2 API\))? \| (\w+) \| (\d+/\d+/\d+) \| ([\d.]+) \| (\d+/\d+/\d+) \| '
                            r'([\d.]+) \|$', re.M)


def suite_records() -> str:
    """The records of upstream's suites run with the series (pr_map*, upstream_suite*), concatenated."""
    text = ''
    for path in sorted(glob.glob(os.path.join(ROOT, 'docs', 'results', '*.txt'))):
        if os.path.basename(path).startswith(('pr_map', 'upstream_suite')):
            with open(path) as f:
                text += f.read()
    return text


def uncounted(recorded: str) -> List[str]:
    """The test counts quoted that no pytest summary of *recorded* holds, as ``file: N passed``."""
    counts = set(re.findall(r'(?<![\d.])(\d+) passed\b', recorded))
    return ['{0}: {1} passed'.format(name, count) for name, text in texts() for match in COUNT.finditer(text)
            for count in match.groups() if count is not None and count not in counts]


def test_every_test_count_quoted_is_in_the_records():
    assert uncounted(suite_records()) == []


def test_a_test_count_the_records_lack_is_found():
    """The positive control: the counts quoted are found (each form), and one the records lose is reported."""
    quoted = [count for _, text in texts() for match in COUNT.finditer(text) for count in match.groups() if count]
    assert quoted, 'the docs quote no test count at all'
    assert [c for m in COUNT.finditer('677 without, 783 with; 806 passed') for c in m.groups() if c] == [
        '677', '783', '806']
    assert any(item.endswith(': {0} passed'.format(quoted[-1]))
               for item in uncounted(suite_records().replace(quoted[-1] + ' passed', 'N/A passed')))


def acceptance_rows(text: str) -> List[Tuple[str, ...]]:
    """The rows (DCS, feature, master, wall, master + series, wall) of upstreaming.md's acceptance table in *text*,
    or of the record docs/results/acceptance.txt (``dcs X`` then ``  feature  a/b/c  wall  d/e/f  wall``)."""
    if text.startswith('|') or '\n| DCS |' in text:
        return [m.groups() for m in ACCEPTANCE_ROW.finditer(text)]
    rows, dcs = [], None
    for line in text.splitlines():
        if line.startswith('dcs '):
            dcs = line.split()[1]
        cells = line.split()
        if dcs and len(cells) == 5 and re.match(r'^\d+/\d+/\d+$', cells[1]) and cells[0] != 'total':
            rows.append((dcs,) + tuple(cells))
    return rows


def test_the_acceptance_table_is_the_record():
    """docs/upstreaming.md's acceptance table holds the rows of docs/results/acceptance.txt, all and only them."""
    with open(os.path.join(ROOT, 'docs', 'upstreaming.md')) as f:
        page = f.read()
    with open(os.path.join(ROOT, 'docs', 'results', 'acceptance.txt')) as f:
        record = acceptance_rows(f.read())
    assert record, 'docs/results/acceptance.txt holds no feature run'
    assert sorted(acceptance_rows(page)) == sorted(record)
    # and word for word the table bench/acceptance_report.py --table makes of the record, in one piece
    with open(os.path.join(ROOT, 'docs', 'results', 'acceptance.txt')) as f:
        table = '\n'.join(acceptance_report.table(f.read()))
    assert '\n' + table + '\n\n' in page, 'docs/upstreaming.md: paste bench/acceptance_report.py --table'
    # the positive control: a row whose wall time is not the record's is told apart
    row = '| {0} | {1} | {2} | {3} |'.format(*record[0][1:5])
    assert row in page, row
    assert sorted(acceptance_rows(page.replace(row, row.replace(record[0][3], '0.5')))) != sorted(record)


def table_rows(text: str) -> List[List[str]]:
    """The cells of every Markdown table row of *text* but the separators."""
    return [[cell.strip() for cell in line.strip()[1:-1].split('|')] for line in text.splitlines()
            if line.startswith('| ') and line.rstrip().endswith('|') and not line.startswith('| ---')]


def pr_map_records() -> dict:
    """{Python version ('' for the machine's, pr_map.txt): {PR: its row's cells}} of docs/results/pr_map*.txt."""
    found = {}
    for path in glob.glob(os.path.join(ROOT, 'docs', 'results', 'pr_map*.txt')):
        version = re.sub(r'^pr_map(?:-py)?|\.txt$', '', os.path.basename(path))
        with open(path) as f:
            found[version] = {row[0]: row for row in table_rows(f.read()) if len(row) == 8}
    return found


def pr_table_errors(page: str) -> List[str]:
    """The rows of upstreaming.md's PR-map tables in *page* that are not their records': the map (PR, patches,
    concern, commits, flake8, isort, pytest, pyright) word for word pr_map.txt's row; the table by Python version,
    each cell ``pytest / flake8 / isort`` (``/ pyright ...`` where it ran) of that version's record."""
    records, errors, versions = pr_map_records(), [], None
    for row in table_rows(page):
        if row[0] == 'PR':
            versions = [cell[len('Python '):] for cell in row[1:]] if row[1].startswith('Python ') else None
            continue
        if len(row) == 8 and row[0] in records['']:
            if row != records[''][row[0]]:
                errors.append('{0}: not pr_map.txt\'s row'.format(row[0]))
        elif versions and len(row) == len(versions) + 1:
            for version, cell in zip(versions, row[1:]):
                record = records.get(version, {}).get(row[0])
                if record is None:
                    errors.append('{0}, Python {1}: no record'.format(row[0], version))
                    continue
                made = ' / '.join(record[6:7] + record[4:6])
                if not record[7].startswith('not run'):
                    made += ' / pyright ' + record[7]
                if cell != made:
                    errors.append('{0}, Python {1}: {2!r}, the record says {3!r}'.format(row[0], version, cell, made))
    return errors


def test_the_pr_tables_are_the_records():
    with open(os.path.join(ROOT, 'docs', 'upstreaming.md')) as f:
        page = f.read()
    assert pr_table_errors(page) == []
    # the positive controls: two rows' counts swapped, one of the Python table's cells changed
    swapped = page.replace('| 744 passed', '| 7XX passed').replace('| 753 passed', '| 744 passed')
    swapped = swapped.replace('| 7XX passed', '| 753 passed')
    assert any(e.startswith('4 prompt-reload') for e in pr_table_errors(swapped))
    changed = page.replace('| 707 passed, 1 warning /', '| 707 passed /')
    assert any(e.startswith('1 reload-while-initdb, Python 3.6.15') for e in pr_table_errors(changed))
