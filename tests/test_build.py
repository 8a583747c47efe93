"""The build pipeline: pinned sdist + patches/series -> the installed ``patroni <upstream>+sdnotify.<n>``."""

import email.parser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import patchqueue  # noqa: E402

PROJECT_FILES = ('setup.py', 'pyproject.toml', 'MANIFEST.in', 'upstream.cfg', 'patchqueue.py', 'README.md', 'patches',
                 'patroni_systemd_reload.py')
PIN = patchqueue.Pin(ROOT)
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope='session')
def sdist():
    """The verified pristine sdist (downloaded through pip into the cache if needed)."""
    return patchqueue.obtain_sdist(ROOT, PIN)


@pytest.fixture
def project(tmp_path, sdist, monkeypatch):
    """A copy of the project's inputs, with no generated tree, building from the cached sdist."""
    dest = tmp_path / 'project'
    dest.mkdir()
    for name in PROJECT_FILES:
        src = os.path.join(ROOT, name)
        (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, str(dest / name))
    monkeypatch.setenv(patchqueue.SDIST_ENV, sdist)
    return dest


def run_queue(project, *args, **env):
    """Run ``patchqueue.py`` of *project* and return the completed process."""
    return subprocess.run([sys.executable, str(project / 'patchqueue.py')] + list(args), cwd=str(project),
                          env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def sdist_member(sdist, name):
    """Text of one member of the pristine sdist."""
    with tarfile.open(sdist) as tar:
        return tar.extractfile('patroni-{0}/{1}'.format(PIN.version, name)).read().decode('utf-8')


def series():
    """The patch names listed in patches/series."""
    return [os.path.basename(p) for p in patchqueue.read_series(ROOT)]


def patched_files():
    """The files of the package (``patroni/...``) that the series changes or adds (its patches' ``+++ b/`` lines)."""
    files = set()
    for path in patchqueue.read_series(ROOT):
        with open(path) as f:
            files.update(line[6:].strip() for line in f if line.startswith('+++ b/patroni/'))
    return sorted(files)


def as_pristine(tree, sdist):
    """The files of :func:`patched_files` that are in *tree* (a directory holding ``patroni/``) as in the pristine
    sdist, byte for byte (or missing in both): none in a patched tree, all of them in a pristine one."""
    same = []
    with tarfile.open(sdist) as tar:
        for name in patched_files():
            try:
                pristine = tar.extractfile('patroni-{0}/{1}'.format(PIN.version, name)).read()
            except KeyError:
                pristine = None
            path = os.path.join(tree, name)
            built = open(path, 'rb').read() if os.path.exists(path) else None
            if built == pristine:
                same.append(name)
    return same


def test_the_pristine_tree_is_told_from_a_patched_one(tmp_path, sdist):
    """The control of as_pristine(): the sdist's own tree has every file the series touches as it was."""
    with tarfile.open(sdist) as tar:
        tar.extractall(str(tmp_path), members=[m for m in tar.getmembers() if '/patroni/' in m.name])
    files = patched_files()
    assert len(files) >= 10 and 'patroni/systemd.py' in files, files
    assert as_pristine(str(tmp_path / 'patroni-{0}'.format(PIN.version)), sdist) == files


def test_installed_version(sdist):
    out = subprocess.run([os.path.join(BIN, 'patroni'), '--version'], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    # the installed package is the patched tree: every file the series touches differs from the pristine sdist's
    import patroni
    assert as_pristine(os.path.dirname(os.path.dirname(patroni.__file__)), sdist) == []
    # the runtime version stays upstream's: /metrics, the REST API and the DCS publish it, and their readers parse it
    assert out.strip() == 'patroni {0}'.format(PIN.version) == 'patroni 4.1.5'
    assert PIN.package_version == '4.1.5+sdnotify.10'
    assert importlib.metadata.version('patroni') == PIN.package_version
    show = subprocess.run([sys.executable, '-m', 'pip', 'show', 'patroni'], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout
    assert 'Version: 4.1.5+sdnotify.10' in show.splitlines()


def test_metadata_equals_upstream(sdist):
    upstream = email.parser.Parser().parsestr(sdist_member(sdist, 'PKG-INFO'))
    installed = importlib.metadata.distribution('patroni')

    def normalized(requirements):
        return sorted(str(Requirement(r)) for r in requirements)

    assert normalized(installed.requires) == normalized(upstream.get_all('Requires-Dist'))
    assert sorted(installed.metadata.get_all('Provides-Extra')) == sorted(upstream.get_all('Provides-Extra'))
    scripts = {ep.name: ep.value for ep in installed.entry_points if ep.group == 'console_scripts'}
    upstream_scripts = dict(line.split(' = ') for line in sdist_member(sdist, 'patroni.egg-info/entry_points.txt')
                            .splitlines() if ' = ' in line)
    # upstream's console scripts, and beside them ours: the units' ExecReload=, not part of the series
    assert scripts.pop('patroni_systemd_reload') == 'patroni_systemd_reload:main'
    assert os.access(os.path.join(BIN, 'patroni_systemd_reload'), os.X_OK)
    assert scripts == upstream_scripts
    assert set(scripts) == {'patroni', 'patronictl', 'patroni_raft_controller', 'patroni_wale_restore',
                            'patroni_aws', 'patroni_barman'}
    for script in scripts:
        assert os.access(os.path.join(BIN, script), os.X_OK)


def test_build_materialises_patched_tree(project, sdist):
    result = run_queue(project, 'build')
    assert result.returncode == 0, result.stderr
    with open(str(project / 'patroni' / 'version.py')) as f:
        assert "__version__ = '4.1.5'" in f.read()
    # patched: no file the series touches is as in the pristine sdist (a pristine tree passed the check above too)
    assert as_pristine(str(project), sdist) == []
    # a second build with unchanged inputs reuses the tree
    mtime = os.stat(str(project / 'generated' / 'metadata.json')).st_mtime_ns
    assert run_queue(project, 'build').returncode == 0
    assert os.stat(str(project / 'generated' / 'metadata.json')).st_mtime_ns == mtime


def tampered(tmp_path, sdist):
    bad = tmp_path / os.path.basename(sdist)
    data = bytearray(open(sdist, 'rb').read())
    data[len(data) // 2] ^= 1
    bad.write_bytes(bytes(data))
    return str(bad)


def test_wrong_hash_refused(project, tmp_path, sdist):
    result = run_queue(project, 'build', PATRONI_SDIST=tampered(tmp_path, sdist))
    assert result.returncode == 1
    assert result.stderr.count('\n') == 1
    assert 'does not match the pinned {0}'.format(PIN.sha256) in result.stderr
    assert not (project / 'patroni').exists() and not (project / 'generated').exists()


def test_wrong_hash_installs_nothing(project, tmp_path, sdist):
    target = tmp_path / 'target'
    result = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-build-isolation', '--no-deps',
                             '--target', str(target), str(project)], env=dict(os.environ, PATRONI_SDIST=tampered(
                                 tmp_path, sdist)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    assert result.returncode != 0
    assert 'patroni-sdnotify: error: ' in result.stdout and 'refusing to build' in result.stdout
    assert not target.exists() or not list(target.iterdir())


def test_no_sdist_no_network(project, tmp_path):
    result = run_queue(project, 'fetch', PATRONI_SDIST='', PIP_NO_INDEX='1', PIP_FIND_LINKS='')
    assert result.returncode == 1
    assert result.stderr.count('\n') == 1
    assert 'set PATRONI_SDIST=/path/to/patroni-4.1.5.tar.gz' in result.stderr


@pytest.mark.skipif(not series(), reason='the series is empty')
def test_patch_that_does_not_apply(project):
    name = series()[0]
    path = project / 'patches' / name
    text = path.read_text()
    # break the first context line of the first hunk
    head, hunk = text.split('\n@@ ', 1)
    header, body = hunk.split('\n', 1)
    lines = body.split('\n')
    index = next(i for i, line in enumerate(lines) if line.startswith(' ') and line.strip())
    lines[index] = ' # not what upstream has' + lines[index][1:]
    path.write_text(head + '\n@@ ' + header + '\n' + '\n'.join(lines))
    target = next(line[6:] for line in head.splitlines() if line.startswith('+++ b/'))
    (project / 'patroni').mkdir()
    (project / 'patroni' / 'marker').write_text('old tree')
    result = run_queue(project, 'build')
    assert result.returncode == 1
    assert result.stderr.count('\n') == 1
    assert 'patch {0} does not apply to the pristine tree: {1}'.format(name, target) in result.stderr
    assert (project / 'patroni' / 'marker').read_text() == 'old tree'
    assert not (project / 'generated').exists()


def test_export_of_unchanged_queue_is_byte_identical(project, tmp_path):
    queue = tmp_path / 'queue'
    result = run_queue(project, 'import', str(queue))
    assert result.returncode == 0, result.stderr
    out = tmp_path / 'out'
    result = run_queue(project, 'export', str(queue), '--output', str(out))
    assert result.returncode == 0, result.stderr
    files = sorted(n for n in os.listdir(str(project / 'patches')) if os.path.isfile(str(project / 'patches' / n)))
    assert sorted(os.listdir(str(out))) == files  # patches/upstream-only/ is not part of the series
    for name in os.listdir(str(out)):
        assert (out / name).read_bytes() == (project / 'patches' / name).read_bytes(), name


def test_wheel_installs_without_git_or_network(project, tmp_path):
    dist = tmp_path / 'dist'
    subprocess.run([sys.executable, '-m', 'build', '--outdir', str(dist), str(project)], check=True,
                   stdout=subprocess.DEVNULL)
    wheels = [p for p in os.listdir(str(dist)) if p.endswith('.whl')]
    assert wheels == ['patroni-4.1.5+sdnotify.10-py3-none-any.whl']
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    nogit = {'PATH': str(venv / 'bin'), 'PIP_NO_INDEX': '1', 'HOME': str(tmp_path)}
    subprocess.run([str(venv / 'bin' / 'pip'), 'install', '--quiet', '--no-deps', str(dist / wheels[0])],
                   env=nogit, check=True)
    probe = ('import importlib.metadata as m, os, patroni, patroni.version as v; '
             'print(m.version("patroni"), v.__version__, '
             'os.path.exists(os.path.join(os.path.dirname(patroni.__file__), '
             '"postgresql/available_parameters/0_postgres.yml")))')
    out = subprocess.run([str(venv / 'bin' / 'python'), '-c', probe], env=nogit, cwd=str(tmp_path),
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    assert out.split() == ['4.1.5+sdnotify.10', '4.1.5', 'True']
    assert os.access(str(venv / 'bin' / 'patroni'), os.X_OK)


# upstream's docs/ and extras/ are not in the sdist: their patch goes on top of the series on master only
UPSTREAM_ONLY_DIR = os.path.join(ROOT, 'patches', 'upstream-only')
UPSTREAM_ONLY = [os.path.join('upstream-only', n) for n in sorted(os.listdir(UPSTREAM_ONLY_DIR))]


@pytest.mark.parametrize('name', series() + UPSTREAM_ONLY)
def test_patch_has_dep3_header(name):
    with open(os.path.join(ROOT, 'patches', name)) as f:
        text = f.read()
    assert 'GIT binary patch' not in text and 'Binary files' not in text, 'a generated file slipped in'
    header = text.split('\n---\n', 1)[0]
    lines = header.splitlines()
    assert lines[0].startswith('From 0000000000000000000000000000000000000000 ')
    fields = [line.split(':', 1)[0] for line in lines if ':' in line]
    for field in ('From', 'Date', 'Subject', 'Forwarded', 'Last-Update'):
        assert field in fields, field
    assert 'Bug' in fields or 'Bug-Debian' in fields
    assert len(header.split('\n\n', 2)[1].splitlines()) >= 3, 'the description says why'


def test_install_refuses_a_venv_the_service_user_cannot_reach(tmp_path):
    """`make install` from a checkout under a 0700 directory (/root's mode): one line naming the directory, nothing
    made. The control: the venv of this checkout, which postgres can run (the tests run it as postgres), passes."""
    closed = tmp_path / 'closed'
    closed.mkdir(mode=0o700)
    os.chmod(str(closed), 0o700)
    venv = closed / 'checkout' / '.venv'
    result = subprocess.run(['make', '-s', 'install', 'VENV=' + str(venv)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert result.returncode != 0 and result.stdout == '', result
    lines = result.stderr.strip().splitlines()
    # the first directory closed to postgres on the way (pytest's own base directory is 0700 too)
    blocked = re.search(r' (/\S+) \(mode 0700', lines[0]) if len(lines) == 1 else None
    assert 'postgres cannot reach' in lines[0] and blocked and str(venv).startswith(blocked.group(1) + '/'), lines
    assert not os.path.exists(str(venv))
    control = subprocess.run([sys.executable, os.path.join(ROOT, 'patchqueue.py'), 'reachable',
                              os.path.join(ROOT, '.venv'), 'postgres'], stderr=subprocess.PIPE, timeout=60)
    assert control.returncode == 0, control.stderr


def test_the_docs_name_the_version_they_install():
    """Every version of the package that the operators' docs name (pip's ``4.1.5+sdnotify.N``, the Debian package's
    ``4.1.5-2+sdnotifyN``) is today's; the positive control: the forms are found, and an older one is reported."""
    local = PIN.package_version.split('+', 1)[1]
    form = re.compile(re.escape(PIN.version) + r'(?:\+sdnotify\.(\d+)|-\d+\+sdnotify(\d+))\b')

    def stale(text):
        return [m.group(0) for m in form.finditer(text) if 'sdnotify.' + (m.group(1) or m.group(2)) != local]

    paths = ['README.md', 'docs/operating.md', 'docs/packaging.md', 'extras/startup_scripts/README.md',
             'packaging/debian/README.Debian']
    found = []
    for path in paths:
        with open(os.path.join(ROOT, path)) as f:
            text = f.read()
        found += form.findall(text)
        assert stale(text) == [], path
    assert found, 'no version named'
    old = '{0}+sdnotify.{1} and {0}-2+sdnotify{1}'.format(PIN.version, int(local.split('.')[1]) - 1)
    assert len(stale(old)) == 2
