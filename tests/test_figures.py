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
import results as results_py  # noqa: E402 (bench/ is no package)

# a decimal, the unit after it (with or without a space), or the first of a range whose second end has the unit;
# captured `systemctl status` output (`CPU: 2.153s`) is no claim
FIGURE = re.compile(r'(?<!CPU: )(?<![\d.])(\d+\.\d+)'
                    r'(?:\s?(ms|s|seconds)\b|(?=\s?[-\u2013]\s?\d+\.\d+\s?(ms|s|seconds)\b))')

# figures that are settings, not measurements
SETTINGS = {
    '1.5 s': 'how long the reload tests hold the postmaster (tests/test_systemd_units.py, tests/test_systemd_257.py)',
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
    """The benchmarks' records (docs/results/*.txt of bench/results.py), concatenated."""
    text = ''
    for name in sorted(results_py.BENCHES):
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
