"""The distribution packages' build (packaging/build.py, docs/packaging.md), the parts that need no Debian root:
the 3.0 (quilt) source package, a series that no longer applies, a missing tool, and the RPM read with rpm -qp.

Each test builds in a copy of the project (its tracked and new files) in a temporary directory, the pinned sdist
given by $PATRONI_SDIST, so that nothing of the worktree's build/ is touched.
"""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from realparts import ROOT

sys.path.insert(0, ROOT)

import patchqueue  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, 'packaging'))

import build as packaging_build  # noqa: E402

# the test's own time: the module's fixture (made) has bounds of its own
pytestmark = pytest.mark.timeout(300, func_only=True)

PYTHON = '/usr/bin/python3'
# the patch whose context is damaged in the bad-input tests, and a line of its context (in patroni/daemon.py)
# a patch of the series with a context line in patroni/daemon.py, found by its title (numbers move)
BROKEN = next(os.path.basename(p) for p in patchqueue.read_series(ROOT)
              if 'Send-READY-1-after-the-first-HA-cycle' in p)


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def made_once(env, *args):
    """``packaging/build.py *args`` in the project itself with *env*, once for the module (see :func:`made`): its
    path."""
    # bounded here, not by the test's timeout: the build lock may be held by test_deb's builds in the other worker
    made = subprocess.run([PYTHON, 'packaging/build.py'] + list(args), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=1800)
    if made.returncode == 2:
        pytest.skip('the Debian mirror cannot be used: ' + made.stderr.strip())
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope='module')
def made():
    """What the module's tests take from the project, made once: packaging/build.py's environment (with the pinned
    sdist), Debian's integration files (taken from Debian's patroni package, with trixie's build root and the
    mirror), and the build roots of both builds, whose lintian test_lintian_nits_changelog_news_and_standards_version
    reads (test_deb's `deb` makes the same ones: whichever comes first)."""
    env = dict(os.environ, PATRONI_SDIST=patchqueue.obtain_sdist(ROOT, patchqueue.Pin(ROOT)),
               PATH='/usr/sbin:/usr/bin:/sbin:/bin')
    return {'env': env, 'debian-integration': made_once(env, 'debian-integration'),
            'bookworm-build-root': made_once(env, 'build-root', 'bookworm'),
            'trixie-build-root': made_once(env, 'build-root', 'trixie')}


@pytest.fixture
def project(tmp_path, made):
    """A copy of the project; yields (its path, the environment for packaging/build.py)."""
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                            stdout=subprocess.PIPE, check=True, timeout=60).stdout.decode().split('\0')
    copy = tmp_path / 'project'
    for name in filter(None, listed):
        if os.path.isfile(os.path.join(ROOT, name)):
            dest = copy / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), str(dest))
    shutil.copytree(os.path.join(ROOT, made['debian-integration']), str(copy / made['debian-integration']))
    return str(copy), made['env']


def build(project, what, env=None, *args):
    path, default_env = project
    return subprocess.run([PYTHON, 'packaging/build.py', what] + list(args), cwd=path, env=env or default_env,
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
    # Debian's revision this packaging derives from, + the series' label
    version = '{0}+{1}'.format(packaging_build.DEBIAN_PATRONI, pin.local.replace('.', ''))
    assert packaging_build.DEBIAN_PATRONI.startswith(pin.version + '-'), packaging_build.DEBIAN_PATRONI
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
    # (Type=notify-reload without ExecReload=: trixie's systemd 257 waits for READY=1 itself)
    for name in ('patroni@.service', 'patroni.service'):
        unit = members['debian/' + name].decode()
        assert 'Type=notify-reload\nReloadSignal=SIGHUP\n' in unit and 'ExecReload' not in unit, unit
        assert 'ExecStart=/usr/bin/patroni ${PATRONI_CONFIG_FILE}\n' in unit, unit
    assert 'debian/startup_scripts/notify-reload.conf' not in members
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
    assert 'Environment=PATRONI_CONFIG_FILE=/etc/patroni/config.yml\n' in unit, unit
    # the header is the package's (built for Debian 13 and later), not the extras' "Copy to /etc/systemd/system/"
    for name in ('patroni@.service', 'patroni.service'):
        header = members['debian/' + name].decode().split('\n[Unit]\n')[0]
        assert 'built for Debian 13 and later: Type=notify-reload, systemd >= 253' in header, header
        assert 'Copy to' not in header and 'notify-reload.conf' not in header, header
    assert 'patroni.yml' not in unit, unit
    # Debian's /etc/init.d/patroni removed on an upgrade from any earlier version
    assert members['debian/patroni.maintscript'].decode().splitlines()[-1] == \
        'rm_conffile /etc/init.d/patroni {0}~'.format(version)
    # and the version sorts above Debian's own in every suite that ships it (trixie; forky and sid) and PGDG's
    # 4.1.5-1, below Debian's next revision and PGDG's of the same one (docs/packaging.md: the pin)
    for other, relation in (('4.0.7-3~deb13u1', 'gt'), ('4.1.5-2', 'gt'), ('4.1.5-2+deb14u1', 'gt'),
                            ('4.1.5-1.pgdg130+1', 'gt'), ('4.1.5-3', 'lt'), ('4.1.5-2.pgdg130+1', 'lt')):
        compared = subprocess.run(['dpkg', '--compare-versions', version, relation, other], timeout=10)
        assert compared.returncode == 0, (version, relation, other)


def debian_files(out, version):
    """The files of the source package's debian.tar.xz in *out*, as text."""
    with tarfile.open(os.path.join(out, 'patroni_{0}.debian.tar.xz'.format(version))) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()
                if m.isfile() and not m.name.startswith('debian/patches/')}


def trixie_only(text):
    """What *text* says that holds for the trixie build only: each Type=notify-reload not said to be missing ("has
    no Type=notify-reload"), a Breaks: on systemd, the extras' own install instructions."""
    found = ['Type=notify-reload: ' + text[max(0, m.start() - 40):m.end()]
             for m in re.finditer(r'Type=notify-reload', text) if not re.search(r'\bno\s+(#\s*)?$', text[:m.start()])]
    found += [line for line in text.splitlines() if re.search(r'Breaks(:| older)|Copy to /etc/systemd|'
                                                              r'tested on 252 and 257|notify-reload\.conf', line)]
    return found


def test_bookworm_source_says_what_bookworm_has(project):
    """bookworm's source package (packaging/build.py source bookworm): every text a bookworm user reads (the units
    as installed, NEWS.Debian, README.Debian, the description) says Type=notify with patroni_systemd_reload, nothing
    of Type=notify-reload but that systemd 252 lacks it, no Breaks: systemd, no "Copy to /etc/systemd/system/". The
    control: the same check finds what the trixie build's texts say of its own units."""
    result = build(project, 'source', None, 'bookworm')
    assert result.returncode == 0, result.stderr
    pin = patchqueue.Pin(ROOT)
    version = '{0}+{1}{2}'.format(packaging_build.DEBIAN_PATRONI, pin.local.replace('.', ''),
                                  packaging_build.BOOKWORM_SUFFIX)
    assert result.stdout.strip() == 'build/deb-bookworm/patroni_{0}.dsc'.format(version)
    # below the build for trixie and forky (an upgrade to trixie takes it), above bookworm's own and a
    # bookworm-backports upload of Debian's revision, below Debian's next (docs/packaging.md: ~deb12u1, not ~bpo12+1)
    trixie_version = version[:-len(packaging_build.BOOKWORM_SUFFIX)]
    later = '{0}-{1}'.format(*packaging_build.DEBIAN_PATRONI.rsplit('-', 1)[:1] + [
        int(packaging_build.DEBIAN_PATRONI.rsplit('-', 1)[1]) + 1])
    for relation, other in (('lt', trixie_version), ('gt', '3.0.2-1'), ('gt', packaging_build.DEBIAN_PATRONI),
                            ('gt', packaging_build.DEBIAN_PATRONI + '~bpo12+1'), ('lt', later + '~bpo12+1')):
        compared = subprocess.run(['dpkg', '--compare-versions', version, relation, other], timeout=10)
        assert compared.returncode == 0, (version, relation, other)
    files = debian_files(os.path.join(project[0], 'build', 'deb-bookworm'), version)
    news, readme = files['debian/NEWS'], files['debian/README.Debian']
    assert news.startswith('patroni ({0}) bookworm; urgency=medium\n'.format(version)), news[:200]
    assert files['debian/changelog'].startswith('patroni ({0}) bookworm;'.format(version))
    assert 'Units (/lib/systemd/system)\n' in readme, readme  # bookworm's debhelper installs them there
    for name in ('patroni.service', 'patroni@.service'):
        unit = files['debian/' + name]
        header = unit.split('\n[Unit]\n')[0]
        assert 'built for Debian 12' in header and '(tested on 252)' in header, header
        assert '\nType=notify\n' in unit and '\nExecReload=/usr/bin/patroni_systemd_reload ${PATRONI_CONFIG_FILE}\n' \
            in unit, unit
    assert 'Its units are Type=notify, reloaded by patroni_systemd_reload.' in files['debian/control']
    for name in ('debian/NEWS', 'debian/README.Debian', 'debian/control', 'debian/patroni.service',
                 'debian/patroni@.service'):
        assert trixie_only(files[name]) == [], name
    # the control: trixie's own texts, which the check reads as trixie's
    trixie = build(project, 'source')
    assert trixie.returncode == 0, trixie.stderr
    trixie_files = debian_files(os.path.join(project[0], 'build', 'deb'), version[:-len(
        packaging_build.BOOKWORM_SUFFIX)])
    for name in ('debian/NEWS', 'debian/README.Debian', 'debian/control', 'debian/patroni.service'):
        assert trixie_only(trixie_files[name]), name


def comment_above(unit, setting):
    """The comment lines right above the line *setting*= of *unit* (its text), joined."""
    lines = unit.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(setting + '='))
    above = []
    for line in reversed(lines[:index]):
        if not line.startswith('# '):
            break
        above.insert(0, line[2:])
    return ' '.join(above)


def test_timeout_start_comment_says_what_systemd_does():
    """The comment on TimeoutStartSec= in every unit says what systemd does when it is reached, as systemd.service(5)
    says (TimeoutStartFailureMode=terminate, the default): SIGTERM (KillSignal=), then SIGKILL (FinalKillSignal=)
    after TimeoutStopSec=, and that a reload reaching it fails while the service runs on. The control: the same
    reading of the TimeoutStopSec= comment, which says none of it."""
    for name in packaging_build.UNITS:
        with open(os.path.join(ROOT, 'extras', 'startup_scripts', name)) as f:
            unit = f.read()
        comment = comment_above(unit, 'TimeoutStartSec')
        for words in ('TimeoutStartFailureMode=', 'SIGTERM to Patroni', 'then SIGKILL if it has not exited',
                      'TimeoutStopSec= later', 'Restart=on-failure starts it again',
                      'one not over by then fails (`systemctl reload` exits 1) and Patroni runs on'):
            assert words in comment, (name, words, comment)
        assert 'it is then killed' not in comment, comment
        stop_comment = comment_above(unit, 'TimeoutStopSec')
        assert 'SIGTERM to Patroni' not in stop_comment and 'Restart=on-failure' not in stop_comment


def seconds(span):
    """A systemd time span of the forms the units and targets use (1500, 90s, 5min, 30min, 1h) in seconds."""
    match = re.fullmatch(r'(\d+)\s*(s|min|h)?', span.strip())
    assert match, span
    return int(match.group(1)) * {None: 1, 's': 1, 'min': 60, 'h': 3600}[match.group(2)]


def shutdown_targets():
    """(path, JobTimeoutSec= in seconds, JobTimeoutAction=) of reboot.target and poweroff.target of this machine's
    systemd (252) and of each Debian root in .cache (bookworm 252, trixie 257, forky 262) that exists."""
    found = []
    for root in ['/'] + [os.path.join(ROOT, '.cache', suite) for suite in ('bookworm', 'trixie', 'forky')]:
        for target in ('reboot.target', 'poweroff.target'):
            path = os.path.join(root, 'usr', 'lib', 'systemd', 'system', target)
            if os.path.exists(path):
                with open(path) as f:
                    fields = dict(line.split('=', 1) for line in f.read().splitlines() if '=' in line)
                found.append((path, seconds(fields['JobTimeoutSec']), fields['JobTimeoutAction']))
    return found


def stop_bound(unit):
    """How long a stop of *unit* (its text) may last: the larger of TimeoutStopSec= and PATRONI_STOP_TIMEOUT_MAX,
    plus the 30 s of Patroni's last extension."""
    stop = seconds(re.search(r'^TimeoutStopSec=(.+)$', unit, re.M).group(1))
    extension = seconds(re.search(r'^Environment=PATRONI_STOP_TIMEOUT_MAX=(.+)$', unit, re.M).group(1))
    return max(stop, extension) + 30


def test_shipped_stop_bound_ends_before_a_reboot_is_forced():
    """A reboot or poweroff is forced JobTimeoutSec= (30 min) after it began (reboot-force: every process killed):
    the shipped units' stop, extended by PATRONI_STOP_TIMEOUT_MAX, ends before that, and the texts an administrator
    reads (README.Debian, the extras README, NEWS) name the value the units ship. The control: the former 3600 is
    over the bound."""
    targets = shutdown_targets()
    assert targets, 'no reboot.target on this machine'
    for path, job_timeout, action in targets:
        assert job_timeout == 1800 and action.endswith('-force'), (path, job_timeout, action)
    shipped = set()
    for name in packaging_build.UNITS:
        with open(os.path.join(ROOT, 'extras', 'startup_scripts', name)) as f:
            unit = f.read()
        assert stop_bound(unit) < 1800, (name, stop_bound(unit))
        shipped.add(re.search(r'^Environment=PATRONI_STOP_TIMEOUT_MAX=(.+)$', unit, re.M).group(1))
        assert stop_bound(unit.replace('PATRONI_STOP_TIMEOUT_MAX=' + min(shipped), 'PATRONI_STOP_TIMEOUT_MAX=3600')) \
            > 1800
    assert shipped == {'1500'}, shipped
    for path in ('packaging/debian/README.Debian', 'extras/startup_scripts/README.md'):
        with open(os.path.join(ROOT, path)) as f:
            text = f.read()
        assert 'PATRONI_STOP_TIMEOUT_MAX=1500' in text and 'PATRONI_STOP_TIMEOUT_MAX=3600' not in text, path
    with open(os.path.join(ROOT, 'packaging', 'debian', 'NEWS')) as f:  # the entry of the version that made it 1500
        entry = dict(news_entries(f.read()))['4.1.5-2+sdnotify6']
    assert 'PATRONI_STOP_TIMEOUT_MAX=1500 (was 3600)' in entry, entry


def long_lines(text):
    """The lines of a changelog or NEWS over 80 columns (lintian's debian-changelog-line-too-long), but the
    trailer lines (`` -- name <address>  date``), which lintian does not measure."""
    return [line for line in text.splitlines() if len(line) > 80 and not line.startswith(' -- ')]


def current_policy(suite):
    """The newest released Debian policy the lintian of *suite*'s build root knows (``4.6.2`` from 4.6.2.0); the
    build root is made by the module's fixture."""
    path = os.path.join(ROOT, '.cache', suite + '-build', 'usr', 'share', 'lintian', 'data', 'debian-policy',
                        'releases.json')
    with open(path) as f:
        releases = json.load(f)['releases']
    released = [r['version'] for r in releases if 'UNRELEASED' not in ' '.join(r['changes'][:3])]
    return '.'.join(max(released, key=lambda v: [int(x) for x in v.split('.')]).split('.')[:3])


def test_lintian_nits_changelog_news_and_standards_version(project):
    """Each build's source package: no line of debian/changelog or debian/NEWS over 80 columns (bookworm's has an
    entry of each made by packaging/build.py), and Standards-Version the newest policy its build suite's lintian
    knows (trixie 4.7.2, bookworm 4.6.2: lintian of bookworm warned newer-standards-version on 4.7.2). The control:
    the check finds a line of 81 columns."""
    assert long_lines('  ' + 'x' * 79) and not long_lines(' -- ' + 'x' * 90)
    for suite, out in (('trixie', 'deb'), ('bookworm', 'deb-bookworm')):
        result = build(project, 'source', None, suite)
        assert result.returncode == 0, result.stderr
        version = os.path.basename(result.stdout.strip())[len('patroni_'):-len('.dsc')]
        files = debian_files(os.path.join(project[0], 'build', out), version)
        for name in ('debian/changelog', 'debian/NEWS'):
            assert long_lines(files[name]) == [], (suite, name, long_lines(files[name]))
        standards = re.search(r'^Standards-Version: (.*)$', files['debian/control'], re.M).group(1)
        assert standards == {'trixie': '4.7.2', 'bookworm': packaging_build.BOOKWORM_STANDARDS}[suite], standards
        known = current_policy(suite)
        assert standards == known, (suite, standards, known)


def test_no_single_dcs_client_is_required(project):
    """python3-consul is no hard Depends: upstream 4.1.5's metadata (the sdist's requires.txt) has py-consul among
    its base requirements (a [:python_version ...] section: the control, why the override is needed), which
    debian/py3dist-overrides makes dh_python3 ignore (a name without a Debian package), in both builds; the Depends
    of debian/control keeps one client of five as alternatives. tests/test_deb.py reads the installed package's
    Depends."""
    sdist = patchqueue.obtain_sdist(ROOT, patchqueue.Pin(ROOT))
    with tarfile.open(sdist) as tar:
        requires = next(tar.extractfile(m).read().decode() for m in tar.getmembers()
                        if m.name.endswith('.egg-info/requires.txt'))
    sections = re.split(r'^(\[[^\]]*\])$', requires, flags=re.M)
    base = sections[0] + ''.join(body for header, body in zip(sections[1::2], sections[2::2])
                                 if header.startswith('[:'))
    assert re.search(r'^py-consul\b', base, re.M), requires
    for suite, out in (('trixie', 'deb'), ('bookworm', 'deb-bookworm')):
        result = build(project, 'source', None, suite)
        assert result.returncode == 0, result.stderr
        version = os.path.basename(result.stdout.strip())[len('patroni_'):-len('.dsc')]
        files = debian_files(os.path.join(project[0], 'build', out), version)
        overrides = [line.split() for line in files['debian/py3dist-overrides'].splitlines()
                     if line.strip() and not line.startswith('#')]
        assert ['py-consul'] in overrides, (suite, overrides)
        assert (['ydiff', 'python3-cdiff'] in overrides) == (suite == 'bookworm'), (suite, overrides)
        depends = re.search(r'^Depends: (.*?)\n(?! )', files['debian/control'], re.M | re.S).group(1)
        groups = [g.strip() for g in ' '.join(depends.split()).split(',')]
        consul = [g for g in groups if 'python3-consul' in g]
        assert consul == ['python3-etcd (>= 0.4.3) | python3-consul (>= 0.7.0) | python3-kazoo | '
                          'python3-kubernetes | python3-pysyncobj'], groups


def news_entries(news):
    """The entries of a debian/NEWS, newest first: (version, text with its lines joined by single spaces)."""
    return [(m.group(1), ' '.join(m.group(2).split()))
            for m in re.finditer(r'^patroni \(([^)]+)\) [^\n]*\n(.*?)^ -- ', news, re.M | re.S)]


def source_files(project, suite):
    """The version and the debian/ files of *suite*'s source package (packaging/build.py source SUITE)."""
    result = build(project, 'source', None, suite)
    assert result.returncode == 0, result.stderr
    version = os.path.basename(result.stdout.strip())[len('patroni_'):-len('.dsc')]
    out = os.path.dirname(os.path.join(project[0], result.stdout.strip()))
    return version, debian_files(out, version)


# what NEWS says to a node that comes from the Debian 12 build (operator review s8, S4)
FROM_DEB12 = ('Coming from the Debian 12 build (~deb12u1): the units are now Type=notify-reload (systemd sends '
              'the SIGHUP and waits for Patroni; no ExecReload=); /usr/bin/patroni_systemd_reload is gone. Remove '
              'drop-in ExecReload= lines naming it')


def test_news_tells_a_deb12_node_its_units_change(project):
    """On an upgrade from the bookworm build (~deb12u1) to the trixie build, apt-listchanges shows the NEWS entries
    above the installed version: one of those says that the units become Type=notify-reload and that
    /usr/bin/patroni_systemd_reload is gone. The control: the entry that said so until now (sdnotify5's "The units
    are now Type=notify-reload") sorts below the bookworm build, so that node never sees it. bookworm's own build
    does not say it (packaging/build.py BOOKWORM_NEWS_SWAPS)."""
    bookworm, bookworm_files = source_files(project, 'bookworm')
    trixie, trixie_files = source_files(project, 'trixie')
    entries = news_entries(trixie_files['debian/NEWS'])
    assert entries[0][0] == trixie, entries[0][0]

    def above_bookworm(version):
        return subprocess.run(['dpkg', '--compare-versions', version, 'gt', bookworm], timeout=10).returncode == 0

    saying = [version for version, text in entries if FROM_DEB12 in text]
    assert saying == [trixie] and above_bookworm(trixie), (saying, bookworm)
    former = [version for version, text in entries if 'The units are now Type=notify-reload' in text]
    assert len(former) == 1 and not above_bookworm(former[0]), (former, bookworm)
    assert long_lines(trixie_files['debian/NEWS']) == []
    bookworm_news = ' '.join(bookworm_files['debian/NEWS'].split())
    assert 'Coming from the Debian 12 build' not in bookworm_news and 'patroni_systemd_reload is gone' not in \
        bookworm_news, bookworm_news
    # bookworm's NEWS says what its own units do with a file that cannot be applied (exit 1), never trixie's words
    # for it, and its top entry sends the reader to the Debian 13 build's NEWS before the upgrade (operator s9)
    assert 'returns 0 also when the file could not be applied' not in bookworm_news, bookworm_news
    assert '`systemctl reload` exits 1 when the file could not be applied (patroni_systemd_reload;' in bookworm_news
    assert "Before going to Debian 13, read that build's NEWS" in news_entries(bookworm_files['debian/NEWS'])[0][1]
    assert long_lines(bookworm_files['debian/NEWS']) == []


# what NEWS and README.Debian say of hosts without systemd (operator review s8, S5, option a)
NEEDS_SYSTEMD = ('This package needs systemd as init. Do not install it where Patroni is started by '
                 '/etc/init.d/patroni (sysvinit, `service patroni start` in a container): that script is removed, so '
                 'a running Patroni keeps running but nothing starts it after the next boot, and `apt remove patroni` '
                 'does not stop it.')


def test_texts_say_the_package_needs_systemd(project):
    """NEWS (the entry of this version, which an upgrade from the previous one shows) and README.Debian of both
    builds say that without systemd as init nothing starts Patroni and `apt remove` stops nothing; what the package
    does behind it: it removes /etc/init.d/patroni (rm_conffile), and its prerm stops Patroni only where systemd
    runs (/run/systemd/system)."""
    for suite in ('trixie', 'bookworm'):
        version, files = source_files(project, suite)
        entries = dict(news_entries(files['debian/NEWS']))
        assert NEEDS_SYSTEMD in entries[version.replace(packaging_build.BOOKWORM_SUFFIX, '')], (suite, entries)
        assert NEEDS_SYSTEMD in ' '.join(files['debian/README.Debian'].split()), suite
        assert files['debian/patroni.maintscript'].splitlines()[-1].startswith('rm_conffile /etc/init.d/patroni ')
        stop = re.search(r'^if (.*); then\n\tunits=', files['debian/patroni.prerm'], re.M)
        assert stop and '[ -d /run/systemd/system ]' in stop.group(1), files['debian/patroni.prerm']


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


def test_build_root_of_no_build_is_one_line(project, made):
    """``build-root`` needs a suite that a build serves: without one, the usage; with another, one line naming
    those that are served; nothing is made either way (build/ of the copy stays as it was). The control: a served
    suite is made (its path printed), in the module's fixture."""
    assert made['bookworm-build-root'] == '.cache/bookworm-build', made
    path, _ = project

    def built():  # what is in build/ besides the lock every command takes (build/.lock)
        out = os.path.join(path, 'build')
        return sorted(set(os.listdir(out)) - {'.lock'}) if os.path.isdir(out) else []

    before = built()
    usage = build(project, 'build-root')
    assert usage.returncode == 1 and usage.stderr.startswith('usage: packaging/build.py '), usage.stderr
    assert 'build-root' in usage.stderr, usage.stderr
    result = build(project, 'build-root', None, 'buster')
    assert (result.returncode, result.stderr) == (
        1, 'packaging/build.py: error: no build for buster: one of bookworm, forky, trixie\n'), result.stderr
    assert built() == before, (before, built())


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
    # rpm -q --changelog tells an operator what this release changed: its first entry is this release's
    assert rpm_query(rpm_built, '--changelog').split('\n')[0].endswith(' - ' + release)
    requires = rpm_query(rpm_built, '--requires').split('\n')
    names = {r.split()[0] for r in requires if r}
    assert {'python3-psutil', 'python3-pyyaml', 'python3-ydiff', 'python3-psycopg2'} <= names, requires
    assert not any('systemd' in n and n.startswith('python') for n in names), requires
    # one DCS client, as Debian's Depends (docs/packaging.md): a rich dependency
    assert '(python3-etcd or python3-consul or python3-kazoo or python3-pysyncobj or python3-kubernetes)' in \
        requires, requires
    files = rpm_query(rpm_built, '--list').split('\n')
    assert '/usr/lib/systemd/system/patroni.service' in files and '/usr/lib/systemd/system/patroni@.service' in files
    assert '/usr/bin/patroni' in files and '/usr/bin/patronictl' in files
    assert '/usr/bin/patroni_systemd_reload' in files  # the units' ExecReload= (RHEL 9: systemd 252)
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


# the spec's exclusion from RPM's Python dependency generator (operator review s8, S6)
REQUIRES_EXCLUDE = '%global __requires_exclude ^python%{python3_version}dist\\\\(py-consul\\\\)\n'


def generated_requires(project, spec):
    """The Requires of the RPM built from *spec* (a file in the copy's build/rpm, which packaging/build.py rpm
    filled) with RPM's Python dependency generator run by this interpreter: Debian's rpm ships the generator
    (pythondistdeps.py), but its python3 lacks the ``packaging`` module it needs, so it adds nothing there."""
    out = os.path.join(project[0], 'build', 'rpm')
    result = subprocess.run(['rpmbuild', '-bb', '--define', '_topdir ' + out, '--define',
                             '__pythondist_requires {0} /usr/lib/rpm/pythondistdeps.py --requires'.format(
                                 sys.executable), '--nodeps', spec],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:]
    built = [os.path.join(d, n) for d, _, names in os.walk(os.path.join(out, 'RPMS')) for n in names]
    assert len(built) == 1, built
    requires = rpm_query(built[0], '--requires').split('\n')
    os.unlink(built[0])
    return requires


def test_rpm_python_generator_adds_no_consul_requires(project, rpm_built):
    """RPM's Python dependency generator (on by default on Fedora and RHEL 9) would add a hard
    python3.Xdist(py-consul) Requires from upstream's base requirements: the spec excludes it
    (__requires_exclude), which rpmspec parses into the regular expression rpm matches. With the generator run on
    the built tree (a python with ``packaging``), the RPM has its python3.Xdist() Requires (the positive control:
    the generator ran) but none on py-consul; the control: the same spec without the exclusion has it."""
    with open(os.path.join(ROOT, 'packaging', 'patroni.spec')) as f:
        assert REQUIRES_EXCLUDE in f.read()
    spec = os.path.join(project[0], 'build', 'rpm', 'patroni.spec')
    with open(spec) as f:
        text = f.read()
    python = '{0}.{1}'.format(*sys.version_info[:2])
    # rpmspec -P expands a probe in %description: the macro as rpm's generator code reads it
    probe = os.path.join(project[0], 'build', 'rpm', 'probe.spec')
    with open(probe, 'w') as f:
        f.write(text.replace('\n%description\n', '\n%description\nPROBE[%{__requires_exclude}]\n'))
    parsed = subprocess.run(['rpmspec', '-P', '--define', 'python3_version ' + python, probe],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert parsed.returncode == 0, parsed.stderr
    assert 'PROBE[^python{0}dist\\(py-consul\\)]'.format(python) in parsed.stdout.splitlines(), parsed.stdout
    requires = generated_requires(project, spec)
    dist = 'python{0}dist('.format(python)
    assert dist + 'click) >= 5' in requires and not any(dist + 'py-consul)' in r for r in requires), requires
    without = os.path.join(project[0], 'build', 'rpm', 'without.spec')
    with open(without, 'w') as f:
        f.write(text.replace(REQUIRES_EXCLUDE, ''))
    assert dist + 'py-consul) >= 1.1.1' in generated_requires(project, without)


def scriptlet(scripts, which):
    """The body of the scriptlet *which* ('preuninstall', ...) in the output of rpm -qp --scripts."""
    match = re.search(r'^{0} scriptlet \(using /bin/sh\):\n(.*?)(?=^\w+ scriptlet \(|\Z)'.format(which), scripts,
                      re.M | re.S)
    assert match, scripts
    return match.group(1)


# what the stub systemctl lists for `list-units`: as systemctl --plain prints them, a failed one with its bullet
LISTED_UNITS = ('patroni@15-main.service loaded active running Patroni instance 15-main\n'
                '\u25cf patroni@15-old.service loaded failed failed Patroni instance 15-old\n'
                'patroni.service loaded active running Patroni\n')


def test_rpm_preun_stops_and_disables_the_instances_on_erase_only(rpm_built, tmp_path):
    """The RPM's %preun run with a stub systemctl (it logs its arguments; `list-units` lists two instances and
    patroni.service) and a .wants directory with a third, enabled instance: on erase ($1 = 0) patroni.service and
    every instance are stopped and disabled (`disable --now`, as %systemd_preun does); on upgrade ($1 = 1, the
    control) systemctl is not called."""
    body = scriptlet(rpm_query(rpm_built, '--scripts'), 'preuninstall')
    log = tmp_path / 'systemctl.log'
    stub = tmp_path / 'systemctl'
    stub.write_text('#!/bin/sh\necho "$*" >>{0}\nif [ "$3" = list-units ] || [ "$1" = list-units ]; then\n'
                    "printf '{1}'\nfi\n".format(log, LISTED_UNITS.replace('\n', '\\n')))
    stub.chmod(0o755)
    etc = tmp_path / 'etc-systemd-system'
    (etc / 'multi-user.target.wants').mkdir(parents=True)
    (etc / 'multi-user.target.wants' / 'patroni@15-enabled.service').write_text('')
    (etc / 'multi-user.target.wants' / 'cron.service').write_text('')
    script = body.replace('/usr/bin/systemctl', str(stub)).replace('/etc/systemd/system', str(etc))
    for argument, expected in (('1', []), ('0', [
            '--no-reload disable --now patroni.service',
            'list-units --all --plain --no-legend --type=service patroni@*.service',
            '--no-reload disable --now patroni@15-enabled.service patroni@15-main.service patroni@15-old.service'])):
        if log.exists():
            log.unlink()
        result = subprocess.run(['/bin/sh', '-c', script, 'preun', argument], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
        assert result.returncode == 0, result.stderr
        called = log.read_text().splitlines() if log.exists() else []
        assert called == expected, (argument, called, script)


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


# what apt-get prints (its messages, with a documentation address and name): a 404 of a package the suite has
# superseded, and the mirror not reached at all
APT_404 = 'E: Failed to fetch http://192.0.2.1/debian/pool/main/p/patroni/patroni_4.0.7-3~deb13u1_all.deb  404  ' \
          'Not Found [IP: 192.0.2.1 80]'
APT_UNREACHABLE = [
    "W: Failed to fetch http://192.0.2.1/debian/dists/trixie/InRelease  Temporary failure resolving 'mirror.invalid'",
    "E: Failed to fetch http://192.0.2.1/debian/dists/trixie/InRelease  Could not resolve 'mirror.invalid'",
    'E: Failed to fetch http://192.0.2.1/debian/pool/main/p/patroni/patroni_4.1.5-2_all.deb  Could not connect to '
    '192.0.2.1:80 (192.0.2.1), connection timed out',
    'E: Failed to fetch http://192.0.2.1/debian/dists/trixie/InRelease  Unable to connect to 192.0.2.1:http:',
]


def test_build_exit_2_only_when_the_mirror_cannot_be_reached():
    """packaging/build.py exits 2 (tests skip on it) for a DNS or connect error only; a 404 "Failed to fetch" (a
    package the suite superseded) is a failure. The control: each unreachable message is recognised."""
    assert not packaging_build.unreachable(APT_404)
    assert not packaging_build.unreachable("E: Version '4.1.5-2' for 'patroni' was not found")
    for message in APT_UNREACHABLE:
        assert packaging_build.unreachable(message), message


@pytest.fixture
def debian_root_copy(tmp_path):
    """tests/debian_root.sh alone in an empty project directory (its .cache empty: debootstrap always runs)."""
    if os.geteuid() != 0 or not shutil.which('debootstrap'):
        pytest.skip('needs root and debootstrap (tests/deps.sh debootstrap)')
    (tmp_path / 'tests').mkdir()
    shutil.copy2(os.path.join(ROOT, 'tests', 'debian_root.sh'), str(tmp_path / 'tests'))
    return str(tmp_path / 'tests' / 'debian_root.sh')


def run_debian_root(script, mirror):
    return subprocess.run([script, 'bookworm'], env=dict(os.environ, SDNOTIFY_DEBIAN_MIRROR=mirror,
                                                         SDNOTIFY_STEP_TIMEOUT='60'),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=180)


def test_debian_root_exit_2_only_when_the_mirror_cannot_be_reached(debian_root_copy, tmp_path):
    """tests/debian_root.sh against a mirror that answers 404 (an HTTP server on loopback serving an empty
    directory: the suite's Release file is not there) fails with 1, not 2; against a loopback port nobody listens
    on (connection refused) with 2, the mirror named unreachable. Nothing but its log and its lock is left in .cache."""
    import functools
    import http.server
    import socket
    import threading
    empty = tmp_path / 'empty'
    empty.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(empty))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        answered = run_debian_root(debian_root_copy, 'http://127.0.0.1:{0}/debian'.format(server.server_port))
    finally:
        server.shutdown()
        server.server_close()
    assert answered.returncode == 1, answered.stderr
    assert 'debootstrap bookworm from' in answered.stderr and 'cannot be reached' not in answered.stderr
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    refused = run_debian_root(debian_root_copy, 'http://127.0.0.1:{0}/debian'.format(port))
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].endswith('cannot be reached'), refused.stderr
    assert sorted(os.listdir(os.path.join(os.path.dirname(os.path.dirname(debian_root_copy)), '.cache'))) == [
        '.lock-bookworm', 'debootstrap-bookworm.log']


NEEDRESTART_CHECK = r"""
our %nrconf = (override_rc => {qr(^dbus) => 0});
do $ARGV[0];  # as needrestart reads conf.d: a file it cannot read changes nothing, and the assertions fail
die $@ if $@;
for my $unit (@ARGV[1 .. $#ARGV]) {
    my $selected = 1;
    for my $re (keys %{$nrconf{override_rc}}) { $selected = $nrconf{override_rc}{$re} if $unit =~ $re }
    print "$unit $selected\n";
}
"""


def test_needrestart_leaves_patroni_unselected():
    """packaging/debian/needrestart/patroni.conf, read as needrestart reads its conf.d (Perl, into %nrconf): Patroni's
    units are not preselected for a restart after an upgrade (a restart stops PostgreSQL: on a leader, a failover);
    the control: PostgreSQL's own units and a name that only starts like Patroni's stay selected. The package installs
    it (patroni.install)."""
    conf = os.path.join(ROOT, 'packaging', 'debian', 'needrestart', 'patroni.conf')
    units = ['patroni.service', 'patroni@15-main.service', 'postgresql@15-main.service', 'patroni-exporter.service']
    out = subprocess.run(['perl', '-e', NEEDRESTART_CHECK, conf] + units, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split('\n')[:-1] == ['patroni.service 0', 'patroni@15-main.service 0',
                                           'postgresql@15-main.service 1', 'patroni-exporter.service 1']
    with open(os.path.join(ROOT, 'packaging', 'debian', 'patroni.install')) as f:
        assert 'debian/needrestart/patroni.conf etc/needrestart/conf.d\n' in f.read()
