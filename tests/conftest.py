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
