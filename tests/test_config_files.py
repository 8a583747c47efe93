"""PostgreSQL's configuration files are replaced whole (series 0015), against the real patched Patroni, PostgreSQL 15
and etcd 3.4 on loopback, with upstream 4.1.5 as the control.

Every SIGHUP rewrites postgresql.conf and pg_hba.conf. A reader that looks at them while Patroni reloads, as a
PostgreSQL that starts while a reload is applied does, must find each of them whole: here, as big as before, since
nothing in them changes. Upstream truncates each file, then writes it: a postmaster that read pg_hba.conf in that
instant refused to start ("contains no entries"), and the reload that wrote it failed (`systemctl start` then
`systemctl reload`, seen in test_systemd_257 and test_deb before this patch).
"""

import os
import signal
import threading
import time

from typing import Dict, List, Tuple

import pytest

from realparts import Etcd, Patroni, read_from, ROOT, wait_for, Workdir

pytestmark = pytest.mark.slow

FILES = ('postgresql.conf', 'pg_hba.conf')
FAST_LOOP = {'bootstrap': {'dcs': {'ttl': 20, 'loop_wait': 1, 'retry_timeout': 5}}}
RELOADED = 'Reloading PostgreSQL configuration.'
UPSTREAM = os.path.join(ROOT, '.venv-upstream', 'bin', 'patroni')


@pytest.fixture
def node():
    workdir = Workdir()
    etcd = Etcd(workdir.path)
    nodes: List[Patroni] = []

    def make(**kwargs):
        n = Patroni(workdir, etcd, 'files', extra=FAST_LOOP, **kwargs)
        nodes.append(n)
        n.start(None)
        n.wait_running()
        return n
    try:
        yield make
    finally:
        for n in nodes:
            n.kill()
        etcd.stop()
        workdir.cleanup()


class Watcher(threading.Thread):
    """Looks at the files as often as it can (os.stat): a size other than the file's size before is a file seen in
    part; a new inode is a file seen replaced (whole)."""

    def __init__(self, paths: List[str]) -> None:
        super(Watcher, self).__init__(daemon=True)
        self.sizes = {p: os.stat(p).st_size for p in paths}
        self.inodes = {p: os.stat(p).st_ino for p in paths}
        self.torn: List[Tuple[str, int]] = []
        self.replaced: Dict[str, int] = {p: 0 for p in paths}
        self.looks = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for path, size in self.sizes.items():
                st = os.stat(path)
                if st.st_size != size:
                    self.torn.append((os.path.basename(path), st.st_size))
                if st.st_ino != self.inodes[path]:
                    self.inodes[path] = st.st_ino
                    self.replaced[path] += 1
            self.looks += 1

    def stop(self) -> None:
        self.done.set()
        self.join(10)


def reload_while_watched(n: Patroni, reloads: int, until_torn: bool) -> Watcher:
    """SIGHUP the node, each time once its previous reload was logged, *reloads* times (or until the watcher saw a
    file in part, with *until_torn*), while a watcher looks at the files."""
    watcher = Watcher([os.path.join(n.data_dir, f) for f in FILES])
    offset = os.path.getsize(n.log_path)
    watcher.start()
    try:
        for i in range(1, reloads + 1):
            assert n.proc
            n.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: read_from(n.log_path, offset).count(RELOADED) >= i or until_torn and watcher.torn,
                     30, 'reload {0} being logged'.format(i))
            if until_torn and watcher.torn:
                break
    finally:
        watcher.stop()
    return watcher


@pytest.mark.timeout(180)
def test_a_reader_finds_each_configuration_file_whole_while_patroni_reloads(node):
    n = node()
    started = time.monotonic()
    watcher = reload_while_watched(n, 10, until_torn=False)
    print('10 reloads in {0:.1f} s, {1} looks at the files, replaced seen: {2}, seen in part: {3}'.format(
        time.monotonic() - started, watcher.looks, watcher.replaced, len(watcher.torn)))
    assert watcher.torn == [], watcher.torn[:10]
    # the positive control of "never in part": the watcher was looking while the files were rewritten, at each reload
    assert min(watcher.replaced.values()) >= 10, watcher.replaced
    assert n.proc and n.proc.poll() is None


@pytest.mark.timeout(180)
def test_upstream_lets_a_reader_find_a_configuration_file_in_part(node):
    """The control: the same watcher and SIGHUPs with upstream 4.1.5, which writes the files in place, find one
    truncated (its reloads take a second each: at most 30 of them)."""
    n = node(executable=UPSTREAM)
    started = time.monotonic()
    watcher = reload_while_watched(n, 30, until_torn=True)
    print('upstream: a file seen in part after {0:.1f} s: {1}'.format(time.monotonic() - started, watcher.torn[:3]))
    assert watcher.torn, 'no file seen in part in {0} looks'.format(watcher.looks)
    assert sum(watcher.replaced.values()) == 0, watcher.replaced  # written in place, never replaced
