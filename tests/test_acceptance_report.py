"""bench/acceptance_report.py, the record of `make acceptance`, on behave JSON output made here (no behave run)."""

import importlib.util
import json
import os

from typing import Any, Dict, List

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location('acceptance_report',
                                              os.path.join(HERE, '..', 'bench', 'acceptance_report.py'))
assert spec and spec.loader
report: Any = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)

FAILED_STEP = 'postgres-1 role is the primary after 10 seconds'
ERROR = 'AssertionError: postgres-1 role is not the primary'


def behave_json(statuses: List[str]) -> List[Dict[str, Any]]:
    """What `behave --format json` writes for one feature whose scenarios end with these statuses."""
    elements = []
    for i, status in enumerate(statuses):
        steps: List[Dict[str, Any]] = [{'keyword': 'Given', 'name': 'I start postgres-0',
                                        'result': {'status': 'skipped' if status == 'skipped' else 'passed'}}]
        if status == 'failed':
            steps.append({'keyword': 'Then', 'name': FAILED_STEP, 'result': {
                'status': 'failed', 'error_message': ['Traceback (most recent call last):', '  File "x"', ERROR]}})
        elements.append({'type': 'scenario', 'keyword': 'Scenario', 'name': 'scenario {0}'.format(i),
                         'status': status, 'steps': steps})
    return [{'keyword': 'Feature', 'name': 'f', 'elements': elements}]


def write_run(work: str, dcs: str, side: str, feature: str, statuses: List[str], suffix: str = '') -> None:
    """Leave what bench/acceptance.sh leaves after one run."""
    base = os.path.join(work, 'results', dcs, side, feature + suffix)
    os.makedirs(os.path.dirname(base), exist_ok=True)
    with open(base + '.json', 'w') as f:
        json.dump(behave_json(statuses), f)
    with open(base + '.rc', 'w') as f:
        f.write('0\n' if 'failed' not in statuses else '1\n')
    with open(base + '.wall', 'w') as f:
        f.write('42.0\n')


@pytest.fixture
def work(tmp_path: Any) -> str:
    """An acceptance directory without trees or venv (the record then says '?' for their versions)."""
    with open(os.path.join(str(tmp_path), 'key'), 'w') as f:
        f.write('upstream de6b22c800a4e5edb351482f0bf64415271003f6 series x (patroni y)\n')
    with open(os.path.join(str(tmp_path), 'series.commits'), 'w') as f:
        f.write('c3 three\nc2 two\nde6b22c8 master\n')
    return str(tmp_path)


def test_a_scenario_that_differs_is_listed_with_its_step_error_and_rerun(work: str) -> None:
    write_run(work, 'etcd3', 'master', 'basic_replication', ['passed', 'passed', 'skipped'])
    write_run(work, 'etcd3', 'series', 'basic_replication', ['passed', 'failed', 'skipped'])
    write_run(work, 'etcd3', 'master', 'basic_replication', ['passed', 'passed', 'skipped'], '.rerun1')
    write_run(work, 'etcd3', 'series', 'basic_replication', ['passed', 'passed', 'skipped'], '.rerun1')
    error = '2026-12-06 23:32:56,159 ERROR [/t/patroni/ha.py:{0} - demote]: failed to demote (pid {0})\n'
    for side, extra in (('master', ''), ('series', error)):
        logs = os.path.join(work, 'results', 'etcd3', side, 'basic_replication.output', 'basic_replication')
        os.makedirs(logs)
        with open(os.path.join(logs, 'patroni_postgres-0.log'), 'w') as f:
            f.write('2026-12-06 23:32:48,763 CRITICAL [/t/patroni/__main__.py:152 - ensure_unique_name]: '
                    "Can't start\n" + extra.format(len(side)))
    assert report.main(['--differs', work, 'etcd3', 'basic_replication']) == 0
    lines = report.record(work)
    assert '  patroni logs, ERROR/CRITICAL lines and tracebacks: master 1/0, master+series 2/0' in lines
    assert '  only on master+series: basic_replication: ERROR demote: failed to demote (pid N)' in lines
    assert 'master+series: 2 commits on it' in lines[0]
    row = [line for line in lines if line.startswith('  basic_replication')]
    assert row and row[0].split() == ['basic_replication', '2/0/1', '42.0', '1/1/1', '42.0']
    text = '\n'.join(lines)
    assert '  differs: basic_replication: scenario 1\n    master: passed\n' in text
    assert '    master+series: failed at "Then {0}": {1}\n'.format(FAILED_STEP, ERROR) in text
    assert '    rerun 1: master passed (2/0/1, 42.0 s); master+series passed (2/0/1, 42.0 s)' in text
    assert 'differs: none' not in text


def test_the_same_outcomes_differ_in_nothing_and_a_failure_on_both_sides_is_listed(work: str) -> None:
    # the control of the test above: only the series side's failure is gone
    write_run(work, 'etcd3', 'master', 'basic_replication', ['passed', 'passed', 'skipped'])
    write_run(work, 'etcd3', 'series', 'basic_replication', ['passed', 'passed', 'skipped'])
    write_run(work, 'etcd3', 'master', 'recovery', ['failed'])
    write_run(work, 'etcd3', 'series', 'recovery', ['failed'])
    assert report.main(['--differs', work, 'etcd3', 'basic_replication']) == 1
    assert report.main(['--differs', work, 'etcd3', 'recovery']) == 1
    text = '\n'.join(report.record(work))
    assert '  differs: none' in text and '  differs: basic' not in text
    assert '  failed on both: recovery: scenario 0 (master: failed at "Then {0}"'.format(FAILED_STEP) in text
    assert [line.split() for line in text.splitlines() if line.startswith('  total')] == [
        ['total', '(run', 'on', 'both)', '2/1/1', '84', '2/1/1', '84']]


def test_a_run_killed_by_its_timeout_differs_from_a_result_and_a_dcs_not_run_says_why(work: str) -> None:
    write_run(work, 'raft', 'master', 'patroni_api', ['passed'])
    base = os.path.join(work, 'results', 'raft', 'series', 'patroni_api')
    os.makedirs(os.path.dirname(base))
    with open(base + '.rc', 'w') as f:
        f.write('124\n')  # timeout(1): no JSON, no wall time
    os.makedirs(os.path.join(work, 'results', 'zookeeper'))
    with open(os.path.join(work, 'results', 'zookeeper', 'unavailable'), 'w') as f:
        f.write('no ZooKeeper (apt-get install zookeeper)\n')
    assert report.main(['--differs', work, 'raft', 'patroni_api']) == 0
    text = '\n'.join(report.record(work))
    assert 'timed out' in text
    assert 'differs: patroni_api: (the whole feature: no result on master+series)' in text
    assert 'dcs zookeeper: not run: no ZooKeeper (apt-get install zookeeper)' in text


def test_the_same_error_in_each_sides_own_tree_is_no_difference(work: str) -> None:
    """An ERROR line that names a path of the side's own work tree (a data directory, a configuration file) is the
    same line on both sides; the control: a message that truly differs is listed."""
    for feature in ('recovery', 'patroni_api'):
        for side in ('master', 'series'):
            write_run(work, 'etcd3', side, feature, ['passed'])
    line = ("2026-12-07 05:40:00,100 ERROR [{0}/patroni/postgresql/__init__.py:{1} - get_guc_value]: Failed to execute "
            "['postgres', '-D', '{0}/data/postgres-0', '-C', 'archive_mode']\n")
    for side, extra in (('master', ''), ('series', 'ERROR [x.py:1 - reload_config]: Failed to reload\n')):
        tree = os.path.join(os.path.abspath(work), side)
        for feature in ('recovery', 'patroni_api'):
            logs = os.path.join(work, 'results', 'etcd3', side, feature + '.output', feature)
            os.makedirs(logs)
            with open(os.path.join(logs, 'patroni_postgres-0.log'), 'w') as f:
                f.write(line.format(tree, 1077 if side == 'master' else 1097)
                        + ('2026-12-07 05:40:01,200 ' + extra if feature == 'patroni_api' else ''))
    lines = report.record(work)
    assert '  patroni logs, ERROR/CRITICAL lines and tracebacks: master 2/0, master+series 3/0' in lines
    assert [line for line in lines if line.startswith('  only on master+series')] == [
        '  only on master+series: patroni_api: ERROR reload_config: Failed to reload']
