"""README's install on a minimal Debian 12, and tests/deps.sh's PostgreSQL install creating no cluster.

A minbase bookworm root (tests/debian_root.sh bookworm --minimal, debootstrapped once into .cache/bookworm-minimal)
is used through an overlay, so every session starts from the pristine root and leaves it as it was. Everything runs
in a chroot inside private mount and PID namespaces (``unshare --kill-child``): its mounts are gone, and its processes
with them, when it ends or is killed. The network is the machine's (apt and pip need it), and so is pip's
configuration: the files ``pip config debug`` names, copied in, the local indexes and wheel directories they point
at, bound read-only at the same paths, and the CAs added to the machine (/usr/local/share/ca-certificates).
Downloaded .debs and pip's cache are kept in .cache/ between runs. Skipped, saying why, when the Debian mirror
cannot be reached.
"""

import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

from realparts import ROOT, Workdir

SUITE = 'bookworm'
LOWER = os.path.join(ROOT, '.cache', SUITE + '-minimal')
CACHES = {'/var/cache/apt/archives': os.path.join(ROOT, '.cache', SUITE + '-minimal-debs'),
          '/root/.cache/pip': os.path.join(ROOT, '.cache', SUITE + '-minimal-pip')}
# not under /root (mode 0700, as in the minbase root): `make install` refuses a venv postgres cannot reach
REPO = '/opt/patroni-sdnotify'
STEP = 900  # seconds for one chroot session: apt-get, then the build

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# in private mount and PID namespaces: the overlay, the API file systems, the caches, pip's files; then the chroot
OUTER = r"""set -e
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$OVERLAY_WORK" "$MNT"
mount -t proc proc "$MNT/proc"
mount --rbind /dev "$MNT/dev"
cat /etc/resolv.conf >"$MNT/etc/resolv.conf"
printf '%s\n' "$BINDS" | while IFS='|' read -r from to; do
    [ -n "$from" ] || continue
    mkdir -p "$MNT$to"
    mount --bind "$from" "$MNT$to"
done
printf '%s\n' "$RO_BINDS" | while IFS= read -r d; do
    [ -n "$d" ] || continue
    mkdir -p "$MNT$d"
    mount --bind "$d" "$MNT$d"
    mount -o remount,bind,ro "$MNT$d"
done
printf '%s\n' "$COPIES" | while IFS= read -r f; do
    [ -n "$f" ] || continue
    mkdir -p "$MNT$(dirname "$f")"
    cp "$f" "$MNT$f"
done
exec chroot "$MNT" /usr/bin/env -i "$@"
"""


def host_pip_config():
    """(files to copy, directories to bind read-only, PIP_* variables): how pip is configured on this machine, and
    the certificates it trusts."""
    out = subprocess.run([sys.executable, '-m', 'pip', 'config', 'debug'], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, universal_newlines=True, timeout=60).stdout
    files, values, env = [], [], {}
    section = ''
    for line in out.splitlines():
        if not line.startswith(' '):
            section = line.strip().rstrip(':')
            continue
        item = line.strip()
        exists = re.match(r'^(/\S+), exists: True$', item)
        variable = re.match(r"^(PIP_\w+)='(.*)'$", item)
        if exists and section in ('env', 'global', 'user'):
            files.append(exists.group(1))
        elif variable and section == 'env_var':
            env[variable.group(1)] = variable.group(2)
            values.append(variable.group(2))
        elif ': ' in item and ', exists: ' not in item:
            values.append(item.split(': ', 1)[1])
    paths = set()
    for value in values:
        for token in value.split():
            path = token[len('file://'):] if token.startswith('file://') else token
            path = os.path.normpath(path) if path.startswith('/') else ''
            # a local index (PEP 503 .../simple) links to its files relatively, next to it: bind its parent
            if token.startswith('file://') and os.path.basename(path) == 'simple':
                path = os.path.dirname(path)
            if path and os.path.exists(path):
                paths.add(path)
    # the CAs added to this machine (update-ca-certificates(8)), which its bundle, and so pip, trusts: the chroot's
    # own bundle gets them when its ca-certificates is installed (git recommends it), replacing the copied bundle
    local_cas = '/usr/local/share/ca-certificates'
    if os.path.isdir(local_cas):
        paths.update(os.path.join(local_cas, n) for n in os.listdir(local_cas) if n.endswith('.crt'))
    files += sorted(p for p in paths if os.path.isfile(p) and p not in files)
    return files, sorted(p for p in paths if os.path.isdir(p)), env


def readme_install():
    """The README's commands of its first section, up to and including ``make install``, comments dropped."""
    with open(os.path.join(ROOT, 'README.md')) as f:
        section = f.read().split('## Two commands on a fresh Debian 12 machine', 1)[1]
    block = re.search(r'```sh\n(.*?)```', section, re.S)
    assert block, 'README.md: no sh block in its first section'
    lines = [line.split('#', 1)[0].strip() for line in block.group(1).splitlines()]
    lines = [line for line in lines if line]
    assert 'make install' in lines, lines
    return lines[:lines.index('make install') + 1]


class Chroot(object):
    """One overlay over the pristine root, holding a copy of the project's files at /opt/patroni-sdnotify."""

    def __init__(self, workdir, name):
        self.dir = os.path.join(workdir.path, name)
        self.upper = os.path.join(self.dir, 'upper')
        for d in ('upper', 'work', 'mnt'):
            os.makedirs(os.path.join(self.dir, d))
        # the project as a fresh copy would have it: tracked and new files, nothing ignored (.venv, .cache, builds)
        listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                                stdout=subprocess.PIPE, check=True, timeout=60).stdout.decode().split('\0')
        os.makedirs(os.path.join(self.upper, 'root'), mode=0o700)
        for name in filter(None, listed):
            if os.path.lexists(os.path.join(ROOT, name)):
                dest = os.path.join(self.upper, REPO.lstrip('/'), name)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copy2(os.path.join(ROOT, name), dest, follow_symlinks=False)

    def run(self, script, timeout=STEP):
        """Run *script* (sh -e) as root in the chroot, in /opt/patroni-sdnotify, with a login's plain
        environment plus the machine's PIP_* variables; returns the completed process (output merged)."""
        files, ro_dirs, pip_env = host_pip_config()
        for path in CACHES.values():
            os.makedirs(path, exist_ok=True)
        env = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'LOWER': LOWER, 'UPPER': self.upper,
               'OVERLAY_WORK': os.path.join(self.dir, 'work'), 'MNT': os.path.join(self.dir, 'mnt'),
               'BINDS': '\n'.join('{0}|{1}'.format(host, inside) for inside, host in CACHES.items()),
               'RO_BINDS': '\n'.join(ro_dirs), 'COPIES': '\n'.join(files)}
        inner_env = dict(pip_env, PATH='/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME='/root',
                         LANG='C.UTF-8', DEBIAN_FRONTEND='noninteractive')
        inner = ['{0}={1}'.format(k, v) for k, v in sorted(inner_env.items())] + [
            '/bin/sh', '-ec', 'cd {0}\n{1}'.format(REPO, script)]
        # the session's directory as the outer shell's $0: in the command lines of unshare and of the namespace's
        # PID 1, so that tests/leftovers.py finds them if this run is killed (unshare --kill-child ends the rest)
        return subprocess.run(['unshare', '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child',
                               '/bin/sh', '-c', OUTER, self.dir] + inner, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              timeout=timeout)

    def path(self, path):
        """Where *path* of the chroot is, if the session wrote it (the overlay's upper layer)."""
        return os.path.join(self.upper, path.lstrip('/'))


@pytest.fixture(scope='module')
def fresh():
    """Make (once) the minimal root; skip if the Debian mirror cannot be reached; a Chroot factory."""
    if os.geteuid() != 0:
        pytest.skip('needs root (debootstrap, chroot, mounts)')
    made = subprocess.run([os.path.join(ROOT, 'tests', 'debian_root.sh'), SUITE, '--minimal'],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=STEP)
    if made.returncode == 2:
        pytest.skip('the Debian mirror cannot be used: ' + made.stderr.strip())
    assert made.returncode == 0, made.stderr
    with open(os.path.join(LOWER, 'etc', 'apt', 'sources.list')) as f:
        mirror = f.read().split()[1].rstrip('/')
    try:
        urllib.request.urlopen('{0}/dists/{1}/InRelease'.format(mirror, SUITE), timeout=20).close()
    except OSError as e:
        pytest.skip('the Debian mirror {0} is unreachable: {1}'.format(mirror, e))
    workdir = Workdir()
    yield lambda name: Chroot(workdir, name)
    workdir.cleanup()


def test_readme_install_on_minimal_debian_12(fresh):
    """The README's lines, as written, in a minbase bookworm; then ``patroni --version`` answers, and pip shows
    the patched distribution."""
    for tool in ('make', 'git', 'python3'):
        assert not os.path.exists(os.path.join(LOWER, 'usr', 'bin', tool)), 'minbase has no ' + tool
    chroot = fresh('readme')
    lines = readme_install()
    # then what a user checks: the command answers, and the installed distribution is ours
    check = ['.venv/bin/patroni --version', ".venv/bin/pip show patroni | sed -n 's/^Version: //p'"]
    result = chroot.run('\n'.join(lines + check))
    with open(os.path.join(ROOT, 'upstream.cfg')) as f:
        version = re.escape(re.search(r'^version = (\S+)', f.read(), re.M).group(1))
    assert result.returncode == 0, '\n'.join(lines) + '\n' + result.stdout[-5000:]
    answer, distribution = result.stdout.strip().splitlines()[-2:]
    assert re.match(r'^patroni {0}(\+sdnotify\.\d+)?$'.format(version), answer), result.stdout[-3000:]
    assert re.match(r'^{0}\+sdnotify\.\d+$'.format(version), distribution), result.stdout[-3000:]


CLUSTERS = """
ls /etc/postgresql/15 2>/dev/null || true
echo "--- policy: $(ls /usr/sbin/policy-rc.d 2>/dev/null || echo none)"
echo "--- postgres processes: $(cat /proc/[0-9]*/comm | grep -c '^postgres$' || true)"
"""


def test_deps_installs_postgresql_without_a_cluster(fresh):
    """tests/deps.sh's PostgreSQL part on a Debian 12 without PostgreSQL: no cluster 15/main (the control, the same
    install without createcluster.conf, makes one), no policy-rc.d left, nothing running."""
    control = fresh('control').run(
        'apt-get update -qq\nprintf "#!/bin/sh\\nexit 101\\n" >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d\n'
        'timeout 600 apt-get install -y -qq --no-install-recommends postgresql-15 >/root/install.log 2>&1 || '
        '{ s=$?; tail -n 40 /root/install.log; exit $s; }\n'
        'grep -i -E "cluster|error|fail|warn" /root/install.log | grep -v _apt | tail -n 15\n' + CLUSTERS)
    assert control.returncode == 0, control.stdout[-3000:]
    if 'main' not in control.stdout.splitlines():  # apt's warnings may come first: look for the line itself
        pytest.skip('the control (a plain install) made no 15/main here, so this test could not fail: '
                    + control.stdout[-1500:].replace('\n', ' | '))
    chroot = fresh('deps')
    result = chroot.run('tests/deps.sh postgresql\n' + CLUSTERS)
    assert result.returncode == 0, result.stdout[-3000:]
    out = result.stdout.strip().splitlines()
    assert 'main' not in out and any(line.startswith('postgres (PostgreSQL) 15') for line in out), result.stdout
    assert out[-2:] == ['--- policy: none', '--- postgres processes: 0'], result.stdout
    with open(chroot.path('/etc/postgresql-common/createcluster.conf')) as f:
        assert re.search(r'^create_main_cluster = false$', f.read(), re.M)
    assert not os.path.exists(chroot.path('/var/lib/postgresql/15/main'))
