"""Session set-up shared by every test: first remove what a killed earlier run left behind (tests/leftovers.py);
under ``CI=true`` a skip is a failure, unless the thing it needs truly cannot exist on the machine
(:data:`ALLOWED_SKIPS`)."""

import os
import socket
import sys

from typing import Any, Callable, Dict, Generator, Iterator, List, Optional, Tuple

import pytest

# The skips CI accepts, by their whole reason: each is of something that cannot exist on the machine the test runs
# on, whatever is installed, and says so only where its condition holds (CI runs on Linux, where none of today's
# can): reason -> (whether the thing is truly missing here, why). Any other skip (a mirror that cannot be used, a
# missing tool, not root, a control that could not fail), or an allowed one on a machine that has the thing, means
# the run proved less than it says: under CI=true it is reported as a failure.
ALLOWED_SKIPS: Dict[str, Tuple[Callable[[], bool], str]] = {
    # the series' own tests (patches/, upstream's test_systemd.py) also run on Windows, which has no sd_notify
    'no AF_UNIX sockets': (lambda: not hasattr(socket, 'AF_UNIX'),
                           'Windows: AF_UNIX datagram sockets, the sd_notify channel, do not exist there'),
    'the abstract socket namespace is Linux only': (lambda: not sys.platform.startswith('linux'),
                                                    'an abstract socket address exists on Linux only'),
    'fills a datagram queue as Linux bounds it': (lambda: not sys.platform.startswith('linux'),
                                                  'the queue bound the test fills is Linux\'s'),
}


def ci() -> bool:
    """Whether this is a CI run (``CI=true``, as .ci/run exports and CI services set)."""
    return os.environ.get('CI', '').lower() == 'true'


def skip_reason(longrepr: Any) -> str:
    """The reason of a skip, from a report's ``longrepr`` (a (file, line, 'Skipped: reason') tuple)."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        return reason[len('Skipped: '):] if reason.startswith('Skipped: ') else reason
    return str(longrepr)


def allowed(reason: str) -> Optional[str]:
    """Why a skip with *reason* is allowed under CI here (:data:`ALLOWED_SKIPS`, its condition true on this machine),
    or ``None``."""
    missing, why = ALLOWED_SKIPS.get(reason, (lambda: False, ''))
    return why if missing() else None


def fail_skip(report: Any) -> None:
    """Turn the skip *report* into a failure that names its reason, unless that reason is allowed; an expected
    failure that passed (XPASS of a non-strict xfail) too: what it marks is not what the run shows."""
    if ci() and report.passed and hasattr(report, 'wasxfail'):
        report.outcome = 'failed'
        report.longrepr = 'passed under CI=true while marked as an expected failure: {0}'.format(report.wasxfail)
    if ci() and report.skipped:
        # an expected failure is a skip too: a test that cannot pass here proves nothing
        reason = 'xfail: ' + report.wasxfail if hasattr(report, 'wasxfail') else skip_reason(report.longrepr)
        if allowed(reason) is None:
            report.outcome = 'failed'
            report.longrepr = 'skipped under CI=true, which accepts only the skips of tests/conftest.py ' \
                              'ALLOWED_SKIPS: {0}'.format(reason)


class SkipPolicy(object):
    """The hooks of the policy, registered as a plugin of the whole session (see :func:`pytest_configure`): a
    conftest's hooks would reach only the tests under tests/, not the series' own tests that ``make test`` runs
    from generated/upstream-tests/."""

    def __init__(self) -> None:
        # modules skipped whole (pytest.skip(allow_module_level=True)): disallowed under CI=true, they fail the run
        # at its end (as a collection error they would stop every other test)
        self.skipped_modules: List[str] = []

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Generator[None, Any, None]:
        outcome = yield
        fail_skip(outcome.get_result())

    # pytest_collectreport, not a wrapper of the collection: under pytest-xdist the workers collect, and the
    # controller, which decides the run's outcome, sees their skipped modules only through this hook
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if ci() and report.skipped and allowed(skip_reason(report.longrepr)) is None:
            self.skipped_modules.append('{0}: {1}'.format(report.nodeid, skip_reason(report.longrepr)))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for line in self.skipped_modules:
            terminalreporter.write_line('FAILED (skipped under CI=true, not in tests/conftest.py ALLOWED_SKIPS) '
                                        + line)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.skipped_modules and exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


# The modules that take longest, longest first (pytest --durations=0 of make test, 2026-12-07, this machine kind, a
# fresh machine: test_deb's time includes building the .debs and its roots): the parallel workers take them first, so
# that no long module is left to run alone at the end. A module not listed comes after them, in pytest's order.
LONGEST_FIRST = ['tests/test_systemd_units.py',    # 468 s
                 'tests/test_deb.py',              # 397 s
                 'tests/test_systemd_257.py',      # 318 s
                 'tests/test_notify_integration.py',  # 148 s
                 'tests/test_cluster.py',          # 111 s
                 'tests/test_fresh_debian.py',     # 73 s
                 'tests/test_container_pid1.py']   # 37 s


def module_of(item: pytest.Item) -> str:
    return item.nodeid.split('::', 1)[0]


class Workers(object):
    """How ``make test`` spreads the tests over its parallel workers (pytest-xdist, Makefile's ``TEST_DIST``:
    ``--dist loadfile --no-loadscope-reorder``): each test module is run whole by one worker, in its order, so that
    what a module sets up once (a booted systemd, a Debian root, a cluster: module-scoped fixtures) is set up once
    and nothing of it is used by two workers at a time; the modules are handed out in the order of
    :data:`LONGEST_FIRST`, the next one to a worker as it nears the end of its current one. A plugin of the whole
    session, as :class:`SkipPolicy`: it orders the series' own tests in generated/upstream-tests/ too."""

    # after pytest's own hooks, which order each module's tests by their fixtures' parameters: a stable sort keeps
    # each module's order
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: List[pytest.Item]) -> None:
        rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(module_of(item), len(rank)))


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipPolicy(), 'sdnotify-skip-policy')
    config.pluginmanager.register(Workers(), 'sdnotify-workers')


@pytest.fixture(scope='session', autouse=True)
def no_leftovers_of_killed_runs() -> Iterator[None]:
    """Kill and remove the harness cgroups, processes and directories of runs that were killed (as root only:
    nothing of the kind can be left otherwise); say what was removed."""
    if os.geteuid() == 0:
        import leftovers
        for line in leftovers.clean():
            sys.stderr.write('removed, left by a killed run: {0}\n'.format(line))
    yield


@pytest.fixture(scope='session', autouse=True)
def umask_022() -> Iterator[None]:
    """Every test and fixture runs with umask 022 (set after collection, before the first fixture): collecting
    upstream's tests imports patroni.file_perm, which sets the test process's umask to 077, and what a test makes
    for PostgreSQL's user or a chroot (a debootstrapped root, the harness's /run) must stay readable to them."""
    old = os.umask(0o022)
    yield
    os.umask(old)
