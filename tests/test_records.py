"""The guard of `make test` (`make records`, patchqueue.py records): a record in docs/results that is not of the
series in patches/ fails the run in one line naming it and the command that remakes it; a record made on upstream's
master (PR map, upstream's suites, acceptance) is also stale when patches/upstream-only changed, which the series'
fingerprint does not cover. Run on a copy of the project's patchqueue.py, upstream.cfg and patches/."""

import os
import shutil
import subprocess
import sys

from typing import Tuple

from realparts import ROOT


def project(tmp_path) -> str:
    """A copy of what the guard reads, with two fresh records: a benchmark's and the PR map's."""
    root = str(tmp_path / 'project')
    os.makedirs(os.path.join(root, 'docs', 'results'))
    shutil.copy(os.path.join(ROOT, 'patchqueue.py'), root)
    shutil.copy(os.path.join(ROOT, 'upstream.cfg'), root)
    shutil.copytree(os.path.join(ROOT, 'patches'), os.path.join(root, 'patches'))
    series = stamp(root)
    write(root, 'reload_latency.txt', 'reload_latency\n2026-12-07\n{0}\nfigures\n'.format(series))
    write(root, 'pr_map.txt', '{0}\n{1}\ntable\n'.format(series, stamp(root, '--upstream-only').splitlines()[1]))
    return root


def stamp(root: str, *args: str) -> str:
    return subprocess.check_output([sys.executable, 'patchqueue.py', 'series-stamp'] + list(args), cwd=root,
                                   universal_newlines=True, timeout=30).strip()


def write(root: str, name: str, text: str) -> None:
    with open(os.path.join(root, 'docs', 'results', name), 'w') as f:
        f.write(text)


def records(root: str) -> Tuple[int, str]:
    result = subprocess.run([sys.executable, 'patchqueue.py', 'records'], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, timeout=30)
    return result.returncode, result.stdout


def test_fresh_records_pass(tmp_path):
    """The positive control of the tests below: the same copy, nothing changed."""
    assert records(project(tmp_path)) == (0, '')


def test_a_changed_patch_makes_every_record_stale(tmp_path):
    root = project(tmp_path)
    with open(os.path.join(root, 'patches', 'series')) as f:
        first = next(line.split()[0] for line in f if line.strip() and not line.startswith('#'))
    with open(os.path.join(root, 'patches', first), 'a') as f:
        f.write('\n')
    code, out = records(root)
    assert code == 1 and len(out.splitlines()) == 1, out
    assert 'docs/results/pr_map.txt, docs/results/reload_latency.txt was recorded' in out, out
    assert out.rstrip().endswith('run make pr-map and make results'), out


def test_a_changed_upstream_only_patch_makes_upstream_records_stale(tmp_path):
    root = project(tmp_path)
    folder = os.path.join(root, 'patches', 'upstream-only')
    patches = sorted(os.listdir(folder))
    assert patches, 'patches/upstream-only is empty: nothing to change'
    with open(os.path.join(folder, patches[0]), 'a') as f:
        f.write('\n')
    code, out = records(root)
    # the benchmark ran the series only: still of today's
    assert code == 1 and 'since docs/results/pr_map.txt was recorded: run make pr-map' in out, out


def test_an_upstream_record_without_the_upstream_only_line_is_stale(tmp_path):
    root = project(tmp_path)
    write(root, 'upstream_suite.txt', '{0}\nupstream abc\n'.format(stamp(root)))
    code, out = records(root)
    assert code == 1 and 'since docs/results/upstream_suite.txt was recorded: run make upstream-suite' in out, out


def test_a_block_of_another_series_beside_today_s_is_stale(tmp_path):
    root = project(tmp_path)
    write(root, 'reload_latency.txt', '{0}\nfigures\nseries {1} (patroni 4.1.5+sdnotify.5)\nold figures\n'.format(
        stamp(root), '0' * 64))
    code, out = records(root)
    assert code == 1 and 'since docs/results/reload_latency.txt was recorded: run make results' in out, out


def test_an_upstream_only_line_in_a_benchmark_record_is_stale(tmp_path):
    """A benchmark runs the series only: a record of one that names upstream-only patches is not what make results
    writes."""
    root = project(tmp_path)
    write(root, 'reload_latency.txt', '{0}\nfigures\n'.format(stamp(root, '--upstream-only')))
    code, out = records(root)
    assert code == 1 and 'since docs/results/reload_latency.txt was recorded' in out, out
