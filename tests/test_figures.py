"""Docs, patch headers and PR texts quote only figures that docs/results.md holds now (DEVELOPERS.md): every timing
figure with a decimal part (``13.12 ms``, ``0.02 s``) in them must be a number of docs/results.md, which `make results`
writes from the benchmarks of the series that ships. A figure that is no measurement (a setting of a test or of a unit)
is listed in SETTINGS, with where it comes from."""

import glob
import os
import re

from typing import Iterator, List, Tuple

from realparts import ROOT

# with a space before the unit, as the docs write them (captured output, `CPU: 2.153s`, is no claim)
FIGURE = re.compile(r'(?<![\d.])(\d+\.\d+) (ms|s)\b')

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


def unmeasured(results: str) -> List[str]:
    """The figures quoted that docs/results.md does not hold, as ``file: figure``."""
    numbers = set(re.findall(r'(?<![\d.])\d+\.\d+(?![\d])', results))
    found = []
    for name, text in texts():
        for match in FIGURE.finditer(text):
            figure = '{0} {1}'.format(*match.groups())
            if match.group(1) not in numbers and figure not in SETTINGS:
                found.append('{0}: {1}'.format(name, figure))
    return found


def test_every_figure_quoted_is_in_results_md():
    with open(os.path.join(ROOT, 'docs', 'results.md')) as f:
        results = f.read()
    assert unmeasured(results) == []


def test_a_figure_results_md_lacks_is_found():
    """The positive control: the same check against a results.md without one figure that the docs quote."""
    with open(os.path.join(ROOT, 'docs', 'results.md')) as f:
        results = f.read()
    quoted = [m.group(1) for _, text in texts() for m in FIGURE.finditer(text)
              if '{0} {1}'.format(*m.groups()) not in SETTINGS]
    assert quoted, 'the docs quote no figure at all'
    assert any(item.endswith(quoted[0] + ' ms') or item.endswith(quoted[0] + ' s')
               for item in unmeasured(results.replace(quoted[0], 'N/A')))
