"""make test's parallel workers (Makefile's TEST_WORKERS and TEST_DIST, tests/conftest.py's Workers): each test
module runs whole on one worker, in its own order. Run on a small suite of its own, with a copy of tests/conftest.py."""

import os
import re
import subprocess
import sys

from realparts import ROOT

# each test writes which worker ran it, in which module, in its order
MODULE = '''import os

import pytest


@pytest.mark.parametrize('n', range(6))
def test_runs(n):
    with open(os.path.join(os.path.dirname(__file__), os.pardir, 'ran'), 'a') as f:
        f.write('{0} {1} {2}\\n'.format(os.path.basename(__file__), os.environ['PYTEST_XDIST_WORKER'], n))
'''


def make_test_dist():
    """Makefile's TEST_DIST, the options make test gives pytest-xdist."""
    with open(os.path.join(ROOT, 'Makefile')) as f:
        return re.search(r'^TEST_DIST = (.*)$', f.read(), re.M).group(1).split()


def small_suite(tmp_path, modules, conftest_extra='', addopts='-p no:cacheprovider'):
    """A suite of its own in *tmp_path*: tests/ with a copy of tests/conftest.py (and *conftest_extra* after it), a
    stub of leftovers.py and *modules* (file name: text), and a pytest.ini with *addopts*; returns the environment
    to run pytest in there (this one without CI and PYTEST_ADDOPTS)."""
    tests = tmp_path / 'tests'
    tests.mkdir()
    with open(os.path.join(ROOT, 'tests', 'conftest.py')) as f:
        (tests / 'conftest.py').write_text(f.read() + conftest_extra)
    (tests / 'leftovers.py').write_text('def clean():\n    return []\n')
    for name, text in modules.items():
        (tests / name).write_text(text)
    (tmp_path / 'pytest.ini').write_text('[pytest]\naddopts = {0}\n'.format(addopts))
    return {k: v for k, v in os.environ.items() if k not in ('CI', 'PYTEST_ADDOPTS')}


def workers_of(tmp_path, dist):
    """Run the small suite (three modules of six tests) in two workers with *dist*; {module: [(worker, n), ...]}."""
    env = small_suite(tmp_path, {name: MODULE for name in ('test_a.py', 'test_b.py', 'test_c.py')})
    result = subprocess.run([sys.executable, '-m', 'pytest', '-n', '2'] + dist + ['tests'], cwd=str(tmp_path),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout
    ran = {}
    for line in (tmp_path / 'ran').read_text().splitlines():
        module, worker, n = line.split()
        ran.setdefault(module, []).append((worker, int(n)))
    return ran


def test_each_module_runs_whole_on_one_worker_in_its_order(tmp_path):
    ran = workers_of(tmp_path, make_test_dist())
    assert sorted(ran) == ['test_a.py', 'test_b.py', 'test_c.py'], ran
    for module, runs in ran.items():
        assert len({worker for worker, _ in runs}) == 1, (module, runs)
        assert [n for _, n in runs] == list(range(6)), (module, runs)
    assert len({runs[0][0] for runs in ran.values()}) == 2, 'both workers were used: {0}'.format(ran)


def test_the_check_sees_a_module_split_between_workers(tmp_path):
    """The control: pytest-xdist's --dist load hands out single tests, and the check above sees a module run by
    both workers (--dist loadgroup did too, with pytest 9, whose node ids xdist cannot suffix with the group)."""
    ran = workers_of(tmp_path, ['--dist', 'load'])
    assert any(len({worker for worker, _ in runs}) > 1 for runs in ran.values()), ran
