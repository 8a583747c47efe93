"""The harness on the cgroup layouts machines have, and a killed run that leaves nothing behind.

- hybrid (this project's machine: cgroup2 at /sys/fs/cgroup/unified): every other test;
- cgroup v2 only, PID 1 not systemd (most containers and CI runners): the demo in a private mount namespace whose
  /sys/fs/cgroup is a plain cgroup2 mount, hiding the hybrid one;
- cgroup v2 only, PID 1 systemd (a stock systemd-booted Debian 12): the demo run inside a harness, whose systemd is
  PID 1 over a pure cgroup2 /sys/fs/cgroup: the inner harness must take a delegated scope from that systemd.
"""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

import leftovers

from realparts import Etcd, owner_gone, owner_tag, ROOT, wait_for, Workdir
from systemd_harness import cgroup2_mount, cgroup2_mounts, Systemd, systemd_is_pid1

DEMO = os.path.join(ROOT, 'tests', 'demo.py')
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
PURE = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate
"""
# a container's view without a cgroup namespace: the mount's root is the container's group; a space, escaped
CONTAINER = """\
700 690 0:24 /system.slice/docker-1.scope /sys/fs/cgroup\\040x ro,relatime - cgroup2 cgroup rw
"""


def test_cgroup2_mounts_of_every_layout():
    assert cgroup2_mounts(HYBRID) == [('/sys/fs/cgroup/unified', '/', '0:38')]
    assert cgroup2_mounts(PURE) == [('/sys/fs/cgroup', '/', '0:24')]
    assert cgroup2_mounts(CONTAINER) == [('/sys/fs/cgroup x', '/system.slice/docker-1.scope', '0:24')]
    # what the test below makes: a cgroup2 mounted over the hybrid layout, the last mount wins
    shadowed = HYBRID + '90 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n'
    assert [m[0] for m in cgroup2_mounts(shadowed)] == ['/sys/fs/cgroup/unified', '/sys/fs/cgroup']


def demo_cgroup(stdout):
    """The harness's cgroup, as the demo prints it."""
    found = re.search(r'its cgroup: (\S+)', stdout)
    assert found, stdout
    return found.group(1)


def assert_demo_ran(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'Active: active (running)' in result.stdout, result.stdout
    assert '| node1  | 127.0.0.1 | Leader | running |' in result.stdout, result.stdout


@pytest.mark.slow
def test_demo_with_cgroup2_only():
    """cgroup2 alone at /sys/fs/cgroup (the hybrid /sys/fs/cgroup/unified hidden under it): the harness finds it
    from mountinfo and makes its group there (or, on a systemd machine, gets a delegated scope)."""
    script = 'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$0" "$1"'
    result = subprocess.run(['unshare', '--mount', '--propagation', 'private', '/bin/sh', '-c', script,
                             sys.executable, DEMO], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=300)
    assert_demo_ran(result)
    cgroup = demo_cgroup(result.stdout)
    assert not cgroup.startswith('/sys/fs/cgroup/unified/'), cgroup
    if systemd_is_pid1():
        assert re.match(r'^/sys/fs/cgroup/.+/sdnotify-[0-9-]+[0-9a-f]{8}\.scope$', cgroup), cgroup
    else:
        assert re.match(r'^/sys/fs/cgroup/sdnotify-[0-9-]+[0-9a-f]{8}$', cgroup), cgroup
    # the same hierarchy, where this process sees it: the group is gone
    assert not os.path.exists(os.path.join(cgroup2_mount()[0], cgroup[len('/sys/fs/cgroup/'):]))


@pytest.mark.slow
def test_demo_under_systemd_as_pid1():
    """A stock systemd machine: pure cgroup2, systemd PID 1. The demo inside a harness takes a transient scope with
    Delegate=yes from that systemd (nothing written into the groups it manages), and the scope goes with it."""
    workdir = Workdir()
    try:
        with Systemd(workdir.path, {}) as host:
            layout = host.run('sh', '-c', 'stat -f -c %T /sys/fs/cgroup; ls /sys/fs/cgroup/unified').stdout
            assert layout.splitlines() == ['cgroup2fs'], 'pure cgroup v2 in there: ' + layout
            result = host.run(sys.executable, DEMO, timeout=300)
            assert_demo_ran(result)
            cgroup = demo_cgroup(result.stdout)
            assert re.match(r'^/sys/fs/cgroup/system\.slice/sdnotify-[0-9-]+[0-9a-f]{8}\.scope$', cgroup), cgroup
            left = host.systemctl('list-units', '--all', '--plain', '--no-legend', 'sdnotify-*').stdout
            assert not left.strip(), left
            assert not host.run('find', '/sys/fs/cgroup', '-name', 'sdnotify-*').stdout.strip()
    finally:
        workdir.cleanup()


def test_owner_gone_only_when_provably():
    me = owner_tag()
    ns, pid, start = me.split('-')
    assert not owner_gone(me)
    assert owner_gone('{0}-{1}-{2}'.format(ns, pid, int(start) + 1)), 'same PID, another start: another process'
    assert not owner_gone('{0}-{1}-{2}'.format(int(ns) + 1, pid, int(start) + 1)), 'another PID namespace: unknown'
    assert not owner_gone('') and not owner_gone('sdnotify')


# what a killed run had going: an etcd of its own, and a harness with an etcd in it; then it waits to be killed
KILLED_RUN = """
import json, os, sys
sys.path.insert(0, os.path.join({root!r}, 'tests'))
from realparts import Etcd, ETCD, HARNESS_WORK, Workdir
from systemd_harness import etcd_unit, Systemd
workdir = Workdir(HARNESS_WORK)  # where the harness tests keep theirs (not /tmp)
etcd = Etcd(workdir.mkdir('etcd-direct'))
harness = Systemd(workdir.path, {{'etcd.service': etcd_unit(ETCD, os.path.join(workdir.path, 'etcd'),
                                                            os.path.join(workdir.path, 'etcd.log'))}}, own_tmp=True)
assert harness.systemctl('start', 'etcd.service').returncode == 0
etcd_in_harness = int(harness.show('etcd.service', 'MainPID')['MainPID'])
with open(sys.argv[1] + '.tmp', 'w') as f:
    json.dump({{'workdir': workdir.path, 'cgroup': harness.cgroup, 'pids': [etcd.proc.pid, harness.proc.pid,
               harness.pid]}}, f)
os.rename(sys.argv[1] + '.tmp', sys.argv[1])
sys.stdin.read()
"""


def alive(pid):
    return not leftovers._ended(pid)


@pytest.mark.slow
def test_a_killed_run_leaves_nothing(tmp_path):
    """SIGKILL a run that has etcd and a harness going: all of it is still there (the reason for the clean-up),
    and the next run's clean-up ends it, removes its group and directory, and leaves a live run's things alone."""
    live = Workdir()
    etcd = Etcd(live.mkdir('etcd'))
    state = str(tmp_path / 'state.json')
    run = subprocess.Popen([sys.executable, '-c', KILLED_RUN.format(root=ROOT), state], stdin=subprocess.PIPE)
    try:
        wait_for(lambda: os.path.exists(state) or run.poll() is not None, 60, 'the run to be going')
        assert run.poll() is None, 'the run failed'
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        with open(state) as f:
            killed = json.load(f)
        assert all(alive(p) for p in killed['pids']), 'a killed run leaves its processes running'
        assert os.path.isdir(killed['cgroup']) and os.path.isdir(killed['workdir'])
        assert killed['workdir'] in leftovers.stale_workdirs() and live.path not in leftovers.stale_workdirs()
        report = leftovers.clean()
        assert not [p for p in killed['pids'] if alive(p)], report
        assert not os.path.exists(killed['cgroup']) and not os.path.exists(killed['workdir']), report
        assert [line for line in report if line.startswith('cgroup ' + killed['cgroup'])], report
        # the live run: untouched
        assert etcd.proc.poll() is None and os.path.isdir(live.path)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
        leftovers.clean()
        etcd.stop()
        live.cleanup()
