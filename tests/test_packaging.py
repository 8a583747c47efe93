"""The distribution packages' build (packaging/build.py, docs/packaging.md), the parts that need no Debian root:
the 3.0 (quilt) source package, a series that no longer applies, a missing tool, and the RPM read with rpm -qp.

Each test builds in a copy of the project (its tracked and new files) in a temporary directory, the pinned sdist
given by $PATRONI_SDIST, so that nothing of the worktree's build/ is touched.
"""

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from realparts import ROOT

sys.path.insert(0, ROOT)

import patchqueue  # noqa: E402

pytestmark = pytest.mark.timeout(300)

PYTHON = '/usr/bin/python3'
# the patch whose context is damaged in the bad-input tests, and a line of its context (in patroni/daemon.py)
# a patch of the series with a context line in patroni/daemon.py, found by its title (numbers move)
BROKEN = next(os.path.basename(p) for p in patchqueue.read_series(ROOT)
              if 'Send-READY-1-after-the-first-HA-cycle' in p)


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def project(tmp_path):
    """A copy of the project; yields (its path, the environment for packaging/build.py)."""
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                            stdout=subprocess.PIPE, check=True, timeout=60).stdout.decode().split('\0')
    copy = tmp_path / 'project'
    for name in filter(None, listed):
        if os.path.isfile(os.path.join(ROOT, name)):
            dest = copy / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), str(dest))
    sdist = patchqueue.obtain_sdist(ROOT, patchqueue.Pin(ROOT))
    env = dict(os.environ, PATRONI_SDIST=sdist, PATH='/usr/sbin:/usr/bin:/sbin:/bin')
    # Debian's integration files, taken once from Debian's patroni package (in the build root, with the mirror)
    made = subprocess.run([PYTHON, 'packaging/build.py', 'debian-integration'], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=900)
    if made.returncode == 2:
        pytest.skip('the Debian mirror cannot be used: ' + made.stderr.strip())
    assert made.returncode == 0, made.stderr
    shutil.copytree(os.path.join(ROOT, made.stdout.strip()), str(copy / made.stdout.strip()))
    return str(copy), env


def build(project, what, env=None):
    path, default_env = project
    return subprocess.run([PYTHON, 'packaging/build.py', what], cwd=path, env=env or default_env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=240)


def break_patch(path):
    """Change one context line of a hunk of BROKEN (in patroni/daemon.py): the patch no longer applies."""
    patch = os.path.join(path, 'patches', BROKEN)
    with open(patch) as f:
        lines = f.read().split('\n')
    in_ha = False
    for i, line in enumerate(lines):
        if line.startswith('+++ '):
            in_ha = line == '+++ b/patroni/daemon.py'
        elif in_ha and line.startswith(' ') and line.strip():
            lines[i] = ' # not upstream ' + line[1:]
            break
    else:
        raise AssertionError('no context line of patroni/daemon.py in ' + BROKEN)
    with open(patch, 'w') as f:
        f.write('\n'.join(lines))


def test_source_package_is_the_sdist_and_the_series(project):
    result = build(project, 'source')
    assert result.returncode == 0, result.stderr
    out = os.path.join(project[0], 'build', 'deb')
    pin = patchqueue.Pin(ROOT)
    # the orig tarball is the pinned sdist itself, byte for byte
    assert sha256(os.path.join(out, 'patroni_{0}.orig.tar.gz'.format(pin.version))) == pin.sha256
    version = '{0}-0{1}'.format(pin.version, pin.local.replace('.', ''))
    assert result.stdout.strip() == 'build/deb/patroni_{0}.dsc'.format(version)
    with open(os.path.join(out, 'patroni_{0}.dsc'.format(version))) as f:
        dsc = f.read()
    assert 'Format: 3.0 (quilt)' in dsc and 'Version: ' + version in dsc, dsc
    # debian/patches is patches/ (DEP-3 headers and all), in the series' order
    with tarfile.open(os.path.join(out, 'patroni_{0}.debian.tar.xz'.format(version))) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    with open(os.path.join(ROOT, 'patches', 'series'), 'rb') as f:
        assert members['debian/patches/series'] == f.read()
    for patch in patchqueue.read_series(ROOT):
        with open(patch, 'rb') as f:
            assert members['debian/patches/' + os.path.basename(patch)] == f.read(), patch
    assert len([m for m in members if m.startswith('debian/patches/')]) == len(patchqueue.read_series(ROOT)) + 1
    # the units are this project's, as Debian's dh_installsystemd takes them (debian/<unit>); patroni.service reads
    # the file Debian's reads, /etc/patroni/config.yml: it replaces Debian's unit on every node that has it enabled
    with open(os.path.join(ROOT, 'extras', 'startup_scripts', 'patroni@.service'), 'rb') as f:
        assert members['debian/patroni@.service'] == f.read()
    # Debian's postgresql-common integration, carried over from Debian's patroni (installed by debian/patroni.install)
    for path in ('usr/bin/pg_createconfig_patroni', 'usr/share/patroni/pg_createcluster_patroni',
                 'usr/share/patroni/pg_clonecluster_patroni', 'etc/patroni/config.yml.in'):
        assert 'debian/debian-patroni/' + path in members, path
    # but not Debian's dcs.yml (ZooKeeper; its etcd comment is the v2 API): ours, etcd's v3 API, what the
    # autopkgtests' cluster runs on (pg_createconfig_patroni copies it into the configurations it writes)
    assert 'debian/debian-patroni/etc/patroni/dcs.yml' not in members
    assert yaml.safe_load(members['debian/dcs.yml']) == {'etcd3': {'hosts': '127.0.0.1:2379'}}
    assert b'debian/dcs.yml etc/patroni' in members['debian/patroni.install']
    # the autopkgtests: dpkg-source names them in the .dsc, every test of debian/tests/control is there
    assert 'Testsuite: autopkgtest' in dsc.splitlines(), dsc
    tests = [t for line in members['debian/tests/control'].decode().splitlines() if line.startswith('Tests:')
             for t in line.split(':', 1)[1].split()]
    assert tests and all('debian/tests/' + t in members for t in tests), tests
    unit = members['debian/patroni.service'].decode()
    assert 'ConditionPathExists=/etc/patroni/config.yml' in unit, unit
    assert 'ExecStart=/usr/bin/patroni /etc/patroni/config.yml' in unit, unit
    assert 'patroni.yml' not in unit, unit
    # and the version sorts above Debian's own (trixie) and below PGDG's of the same upstream (docs/packaging.md)
    for other, relation in (('4.0.7-3~deb13u1', 'gt'), ('4.1.5-1.pgdg130+1', 'lt')):
        assert subprocess.run(['dpkg', '--compare-versions', version, relation, other], timeout=10).returncode == 0


def test_series_that_no_longer_applies_names_patch_and_file(project):
    """One line naming the patch and the file, no source package left. The control: the same copy, unbroken,
    builds (test_source_package_is_the_sdist_and_the_series)."""
    break_patch(project[0])
    result = build(project, 'source')
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('packaging/build.py: error: patches/{0} no longer applies: patroni/daemon.py: '.format(
        BROKEN)), lines[0]
    assert not os.path.exists(os.path.join(project[0], 'build', 'deb'))


def test_missing_tool_is_one_line(project):
    """Without rpmbuild on the PATH (an empty directory holding only python3): one line saying what to install."""
    path, env = project
    bare = os.path.join(path, 'bare-bin')
    os.makedirs(bare)
    os.symlink(PYTHON, os.path.join(bare, 'python3'))
    result = build(project, 'rpm', env=dict(env, PATH=bare))
    assert result.returncode == 1
    assert result.stderr == 'packaging/build.py: error: the RPM needs rpmbuild, which is not installed (apt-get ' \
                            'install rpm)\n', result.stderr


@pytest.fixture
def rpm_built(project):
    if not shutil.which('rpmbuild'):
        pytest.skip('rpmbuild is not installed (tests/deps.sh rpm installs Debian\'s rpm)')
    result = build(project, 'rpm')
    assert result.returncode == 0, result.stderr
    return os.path.join(project[0], result.stdout.strip())


def rpm_query(rpm, *args):
    result = subprocess.run(['rpm', '-qp'] + list(args) + [rpm], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_rpm_requires_files_and_scriptlets(rpm_built):
    assert rpm_built.endswith('.noarch.rpm'), rpm_built
    pin = patchqueue.Pin(ROOT)
    release = rpm_query(rpm_built, '--queryformat', '%{VERSION}-%{RELEASE}')
    assert release == '{0}-0.{1}'.format(pin.version, pin.local)
    requires = rpm_query(rpm_built, '--requires').split('\n')
    names = {r.split()[0] for r in requires if r}
    assert {'python3-psutil', 'python3-pyyaml', 'python3-ydiff', 'python3-psycopg2'} <= names, requires
    assert not any('systemd' in n and n.startswith('python') for n in names), requires
    files = rpm_query(rpm_built, '--list').split('\n')
    assert '/usr/lib/systemd/system/patroni.service' in files and '/usr/lib/systemd/system/patroni@.service' in files
    assert '/usr/bin/patroni' in files and '/usr/bin/patronictl' in files
    # the series is applied: patroni/systemd.py holds the built-in sd_notify channel of patch 0003
    systemd_py = [f for f in files if f.endswith('/patroni/systemd.py')]
    assert len(systemd_py) == 1, files
    archive = subprocess.run(['rpm2archive', '-'], stdin=open(rpm_built, 'rb'), stdout=subprocess.PIPE,
                             timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        unpacked = tar.extractfile('.' + systemd_py[0]).read().decode()
    assert 'class Notifier(object):' in unpacked
    scripts = rpm_query(rpm_built, '--scripts')
    # scriptlets there are (the positive control), and none restarts Patroni
    assert 'postuninstall scriptlet' in scripts and 'daemon-reload' in scripts, scripts
    assert 'restart' not in scripts, scripts


def test_rpm_series_that_no_longer_applies_names_patch_and_file(project):
    if not shutil.which('rpmbuild'):
        pytest.skip('rpmbuild is not installed (tests/deps.sh rpm installs Debian\'s rpm)')
    break_patch(project[0])
    result = build(project, 'rpm')
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('packaging/build.py: error: patches/{0} no longer applies: patroni/daemon.py: '.format(
        BROKEN)), lines[0]
    assert not os.path.exists(os.path.join(project[0], 'build', 'rpm')), 'a half-built package is left'


def test_changelog_behind_upstream_cfg_is_one_line(project):
    """A new local_version without its changelog entry: one line saying which versions disagree, nothing built."""
    path = project[0]
    cfg = os.path.join(path, 'upstream.cfg')
    with open(cfg) as f:
        text = f.read()
    with open(cfg, 'w') as f:
        f.write(text.replace('local_version = sdnotify.', 'local_version = sdnotify.9'))
    result = build(project, 'source')
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'packaging/debian/changelog starts with' in lines[0], result.stderr
    assert 'sdnotify9' in lines[0], lines[0]
    assert not os.path.exists(os.path.join(path, 'build', 'deb'))
