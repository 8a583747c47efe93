"""Session set-up shared by every test: first remove what a killed earlier run left behind (tests/leftovers.py)."""

import os
import sys

from typing import Iterator

import pytest


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
