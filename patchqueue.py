#!/usr/bin/env python3
"""Turn the pinned pristine Patroni sdist plus ``patches/series`` into the patched package.

The pin (upstream version, sdist sha256 and our local version label) lives in ``upstream.cfg``. The sdist is
obtained through pip, or from the file named by ``$PATRONI_SDIST`` for an offline build, and is always checked
against the pinned sha256.

Commands (``python3 patchqueue.py COMMAND``):

* ``fetch``: obtain and verify the pinned sdist, print its path;
* ``build``: materialise the patched package into ``patroni/`` and its metadata into ``generated/``;
* ``import DIR``: make DIR a git repository holding the pristine tree with the series applied as commits;
* ``export DIR``: write the commits on top of the pristine tree in DIR back to ``patches/`` (``git format-patch``).

Every failure is reported as one line and leaves the generated tree as it was.
"""

import configparser
import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
#: which command writes a record of docs/results (by name, without the interpreter suffix); the others: make results
RECORDED_BY = {'pr_map': 'make pr-map', 'upstream_suite': 'make upstream-suite', 'acceptance': 'make acceptance'}
SDIST_ENV = 'PATRONI_SDIST'
GENERATED = ('patroni', 'generated')
PRISTINE_TAG = 'pristine'
# Options that make ``git format-patch`` output depend on the commits only: no commit ids, no git version
# trailer, no "n/m" numbering that changes when a patch is added; full blob ids so that ``git am -3`` can fall
# back to a three-way merge on a base that has moved.
FORMAT_PATCH_OPTIONS = ['--zero-commit', '--no-signature', '--full-index', '--no-numbered', '--stat=80',
                        '--no-renames', '--encoding=UTF-8']
IDENTITY = ['-c', 'user.name=patroni-sdnotify queue', '-c', 'user.email=queue@patroni-sdnotify.invalid',
            '-c', 'commit.gpgsign=false', '-c', 'core.autocrlf=false']


class BuildError(Exception):
    """A build step failed; the message is one line meant for the operator."""


class Pin(object):
    """The pinned pristine upstream and our version label, read from ``upstream.cfg``.

    :ivar version: upstream version, e.g. ``4.1.5``.
    :ivar sha256: sha256 of the upstream sdist.
    :ivar local: PEP 440 local version label, e.g. ``sdnotify.1``.
    """

    def __init__(self, root: str) -> None:
        """Read the pin of the project at *root*.

        :param root: the project directory.
        """
        parser = configparser.ConfigParser()
        path = os.path.join(root, 'upstream.cfg')
        if not parser.read(path):
            raise BuildError('{0}: cannot read the pin file'.format(path))
        try:
            self.version = parser.get('upstream', 'version')
            self.sha256 = parser.get('upstream', 'sha256').lower()
            self.local = parser.get('package', 'local_version')
        except configparser.Error as e:
            raise BuildError('{0}: {1}'.format(path, str(e).splitlines()[0]))

    @property
    def sdist_name(self) -> str:
        """File name of the pinned sdist."""
        return 'patroni-{0}.tar.gz'.format(self.version)

    @property
    def package_version(self) -> str:
        """Version of the patched distribution, ``<upstream>+<local>``."""
        return '{0}+{1}'.format(self.version, self.local)


def sha256_of(path: str) -> str:
    """Compute the sha256 of a file.

    :param path: the file.
    :returns: the hex digest.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 16), b''):
            digest.update(block)
    return digest.hexdigest()


def verify_sdist(path: str, pin: Pin) -> str:
    """Check that *path* is the pinned sdist.

    :param path: the sdist to check.
    :param pin: the pin.
    :returns: *path*.
    :raises BuildError: if the file is missing or its sha256 differs from the pin.
    """
    if not os.path.isfile(path):
        raise BuildError('{0}: no such file (set {1} to the patroni {2} sdist)'.format(path, SDIST_ENV, pin.version))
    actual = sha256_of(path)
    if actual != pin.sha256:
        raise BuildError('{0}: sha256 {1} does not match the pinned {2} of patroni {3}; refusing to build'
                         .format(path, actual, pin.sha256, pin.version))
    return path


def cache_dir(root: str) -> str:
    """Where the verified sdist is kept between builds.

    :param root: the project directory.
    :returns: the cache directory (created if missing).
    """
    path = os.path.join(root, '.cache', 'sdist')
    os.makedirs(path, exist_ok=True)
    return path


def obtain_sdist(root: str, pin: Pin) -> str:
    """Find or download the pinned sdist and verify it.

    ``$PATRONI_SDIST`` wins; then the cache; then ``pip download``. A download is verified before it enters the
    cache, so the cache only ever holds the pinned file.

    :param root: the project directory.
    :param pin: the pin.
    :returns: the path of the verified sdist.
    :raises BuildError: if no verified sdist can be had.
    """
    given = os.environ.get(SDIST_ENV)
    if given:
        return verify_sdist(os.path.abspath(given), pin)
    cached = os.path.join(cache_dir(root), pin.sdist_name)
    if os.path.isfile(cached) and sha256_of(cached) == pin.sha256:
        return cached
    with tempfile.TemporaryDirectory(prefix='sdist-', dir=cache_dir(root)) as tmp:
        cmd = [sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps', '--no-binary', ':all:',
               '--dest', tmp, 'patroni=={0}'.format(pin.version)]
        try:
            result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
            failure = result.returncode and (result.stdout.strip().splitlines() or ['exit code'])[-1]
        except OSError as e:
            failure = str(e)
        downloaded = os.path.join(tmp, pin.sdist_name)
        if failure or not os.path.isfile(downloaded):
            raise BuildError('cannot obtain the patroni {0} sdist through pip ({1}); download {2} elsewhere and set '
                             '{3}=/path/to/{2}'.format(pin.version, failure or 'no sdist', pin.sdist_name, SDIST_ENV))
        verify_sdist(downloaded, pin)
        os.replace(downloaded, cached)
    return cached


def extract_sdist(sdist: str, dest: str) -> str:
    """Unpack the sdist, refusing members that would land outside *dest* or that are links or devices.

    :param sdist: the verified sdist.
    :param dest: an empty directory.
    :returns: the top directory of the unpacked tree.
    """
    with tarfile.open(sdist, 'r:gz') as tar:
        members = tar.getmembers()
        for member in members:
            name = os.path.normpath(member.name)
            if name.startswith(('/', '..')) or not (member.isfile() or member.isdir()):
                raise BuildError('{0}: unexpected member {1!r}; refusing to unpack'.format(sdist, member.name))
            # the unpacked tree belongs to whoever builds, not to the uid recorded in the archive
            member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), '', ''
        tar.extractall(dest, members)
    tops = os.listdir(dest)
    if len(tops) != 1:
        raise BuildError('{0}: expected one top directory, found {1}'.format(sdist, tops))
    return os.path.join(dest, tops[0])


def read_series(root: str) -> List[str]:
    """Read ``patches/series``: one patch file name per line, ``#`` comments and blank lines ignored.

    :param root: the project directory.
    :returns: the paths of the patches, in order.
    """
    path = os.path.join(root, 'patches', 'series')
    patches: List[str] = []
    with open(path) as f:
        for line in f:
            name = line.split('#', 1)[0].strip().split(' ')[0]
            if not name:
                continue
            patch = os.path.join(root, 'patches', name)
            if not os.path.isfile(patch):
                raise BuildError('patches/series names {0}, which does not exist'.format(name))
            patches.append(patch)
    return patches


def git_env(ceiling: str) -> Dict[str, str]:
    """Environment for git commands run on a tree that is not (or not yet) a repository of its own.

    :param ceiling: git must not look for a repository above this directory.
    :returns: the environment.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith('GIT_')}
    env['GIT_CEILING_DIRECTORIES'] = ceiling
    env['LC_ALL'] = 'C'
    return env


def apply_patch(tree: str, patch: str) -> None:
    """Apply one patch to *tree* exactly (``git apply`` has no fuzz); on failure name the patch and the file.

    :param tree: the tree to patch.
    :param patch: the patch file.
    :raises BuildError: if the patch does not apply.
    """
    name = os.path.basename(patch)
    cmd = ['git', 'apply', '--whitespace=nowarn', patch]
    try:
        result = subprocess.run(cmd, cwd=tree, env=git_env(os.path.dirname(tree)), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, universal_newlines=True)
    except OSError as e:
        raise BuildError('cannot run git to apply {0}: {1}'.format(name, e))
    if result.returncode:
        files = re.findall(r'^error: (?:patch failed: )?([^:\s]+)(?::\d+)?: ', result.stdout, re.M)
        detail = files[0] if files else (result.stdout.strip().splitlines() or ['git apply failed'])[-1]
        raise BuildError('patch {0} does not apply to the pristine tree: {1}'.format(name, detail))


def upstream_metadata(tree: str) -> Dict[str, Any]:
    """Read upstream's own metadata from the sdist: PKG-INFO, requires.txt and entry_points.txt.

    Reusing these files (rather than re-deriving them) keeps requirements, extras and console scripts equal to
    upstream's by construction.

    :param tree: the unpacked sdist.
    :returns: keyword arguments for :func:`setuptools.setup`, except name and version.
    """
    with open(os.path.join(tree, 'PKG-INFO'), encoding='utf-8') as f:
        info = email.parser.Parser().parse(f)
    requires: Dict[Optional[str], List[str]] = {None: []}
    section: Optional[str] = None
    with open(os.path.join(tree, 'patroni.egg-info', 'requires.txt')) as f:
        for line in f:
            line = line.strip()
            if line.startswith('['):
                section = line[1:-1]
                requires.setdefault(section, [])
            elif line:
                requires[section].append(line)
    entry_points = configparser.ConfigParser(delimiters=('=',))
    entry_points.optionxform = str  # pyright: ignore[reportAttributeAccessIssue]
    entry_points.read(os.path.join(tree, 'patroni.egg-info', 'entry_points.txt'))
    return {
        'description': info['Summary'],
        'long_description': info.get_payload(),
        'url': info['Home-page'],
        'author': info['Author'],
        'author_email': info['Author-email'],
        'license': info['License'],
        'keywords': info['Keywords'],
        'classifiers': info.get_all('Classifier') or [],
        'install_requires': requires.pop(None),
        'extras_require': requires,
        'entry_points': {'console_scripts': ['{0} = {1}'.format(k, v) for k, v in entry_points['console_scripts']
                                             .items()]},
    }


def stamp_of(pin: Pin, patches: List[str]) -> str:
    """Fingerprint of every input of the generated tree: the pin, the series and this module.

    :param pin: the pin.
    :param patches: the patch files, in order.
    :returns: a hex digest.
    """
    digest = hashlib.sha256()
    for item in [pin.sha256, pin.package_version] + [os.path.basename(p) for p in patches]:
        digest.update(item.encode('utf-8') + b'\0')
    for path in patches + [os.path.abspath(__file__)]:
        with open(path, 'rb') as f:
            digest.update(f.read() + b'\0')
    return digest.hexdigest()


def concatenated_sha256(paths: List[str]) -> str:
    """The sha256 of the bytes of the files *paths*, in that order, concatenated (``cat PATHS | sha256sum``)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, 'rb') as f:
            digest.update(f.read())
    return digest.hexdigest()


def series_stamp(root: str) -> str:
    """The ``series`` line of every record in docs/results: the series it is of, and the package version.

    The fingerprint is the sha256 of the bytes of the patch files named in patches/series, in that order,
    concatenated: ``cat $(sed 's/#.*//' patches/series | awk 'NF{print "patches/"$1}') | sha256sum``.

    :param root: the project directory.
    :returns: ``series <sha256> (patroni <version>)``.
    """
    return 'series {0} (patroni {1})'.format(concatenated_sha256(read_series(root)), Pin(root).package_version)


def upstream_only_stamp(root: str) -> str:
    """The ``upstream-only`` line of the records made on upstream's master (the PR map, upstream's suites): the docs
    patches of patches/upstream-only that they apply after the series, which the series' fingerprint does not cover.

    :param root: the project directory.
    :returns: ``upstream-only <sha256 of the files in name order, concatenated> (<n> patches)``.
    """
    folder = os.path.join(root, 'patches', 'upstream-only')
    names = sorted(name for name in os.listdir(folder) if name.endswith('.patch')) if os.path.isdir(folder) else []
    return 'upstream-only {0} ({1} patches)'.format(
        concatenated_sha256([os.path.join(folder, name) for name in names]), len(names))


def record_command(name: str) -> str:
    """The command that remakes the record *name* of docs/results (``pr_map-py3.6.15.txt``: ``make pr-map``)."""
    return RECORDED_BY.get(name.split('-')[0].split('.')[0], 'make results')


def stale_records(root: str) -> List[str]:
    """The records of docs/results with a ``series`` line that is not today's series, or with none; of those made on
    upstream's master (:data:`RECORDED_BY`), also those without the ``upstream-only`` line of today's
    patches/upstream-only.

    :param root: the project directory.
    :returns: their names, relative to docs/results.
    """
    stamp = series_stamp(root)
    extra = upstream_only_stamp(root)
    folder = os.path.join(root, 'docs', 'results')
    stale: List[str] = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith('.txt'):
            with open(os.path.join(folder, name)) as f:
                text = f.read().splitlines()
            lines = [line for line in text if line.startswith('series ')]
            others = [line for line in text if line.startswith('upstream-only ')]
            # every series line of the record: a block of another is stale
            made_on_upstream = record_command(name) != 'make results'
            if not lines or set(lines) != {stamp} or set(others) != ({extra} if made_on_upstream else set()):
                stale.append(name)
    return stale


def read_generated(root: str) -> Optional[Dict[str, Any]]:
    """Read the metadata of the generated tree, if there is one.

    :param root: the project directory.
    :returns: the metadata, or ``None``.
    """
    try:
        with open(os.path.join(root, 'generated', 'metadata.json')) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def patched_tree(root: str, pin: Pin, patches: List[str], dest: str) -> str:
    """Unpack the verified sdist into *dest* and apply the series to it.

    :param root: the project directory.
    :param pin: the pin.
    :param patches: the patch files, in order.
    :param dest: an empty directory.
    :returns: the patched tree.
    """
    tree = extract_sdist(obtain_sdist(root, pin), dest)
    for patch in patches:
        apply_patch(tree, patch)
    return tree


def build(root: str = HERE) -> Dict[str, Any]:
    """Materialise the patched package into ``<root>/patroni``; its metadata and tests into ``<root>/generated``.

    Nothing is rebuilt when the stamp of the generated tree matches the inputs (this is also how a build from our
    own sdist, which carries the generated tree, works without the pristine sdist). The new tree is prepared
    aside and swapped in only once every step succeeded.

    :param root: the project directory.
    :returns: the metadata, including ``version``.
    """
    pin = Pin(root)
    patches = read_series(root)
    stamp = stamp_of(pin, patches)
    current = read_generated(root)
    if current and current.get('stamp') == stamp and os.path.isdir(os.path.join(root, 'patroni')):
        return current
    with tempfile.TemporaryDirectory(prefix='build-', dir=cache_dir(root)) as tmp:
        tree = patched_tree(root, pin, patches, os.path.join(tmp, 'src'))
        metadata = upstream_metadata(tree)
        metadata.update(stamp=stamp, version=pin.package_version, upstream_version=pin.version)
        staged = os.path.join(tmp, 'staged')
        os.makedirs(os.path.join(staged, 'generated'))
        # new mtimes: setuptools' build_py skips a file that is not newer than its copy in build/, and the sdist's
        # files are older than any build of an earlier series
        shutil.copytree(os.path.join(tree, 'patroni'), os.path.join(staged, 'patroni'), copy_function=shutil.copy)
        # the series' upstream-style unit tests, for the ones that run without upstream's git checkout
        shutil.copytree(os.path.join(tree, 'tests'), os.path.join(staged, 'generated', 'upstream-tests'))
        shutil.copy2(os.path.join(tree, 'LICENSE'), os.path.join(staged, 'generated', 'LICENSE'))
        with open(os.path.join(staged, 'generated', 'metadata.json'), 'w') as f:
            json.dump(metadata, f, indent=1, sort_keys=True)
        retired = os.path.join(tmp, 'retired')
        os.makedirs(retired)
        for name in GENERATED:
            if os.path.exists(os.path.join(root, name)):
                os.rename(os.path.join(root, name), os.path.join(retired, name))
        for name in GENERATED:
            os.rename(os.path.join(staged, name), os.path.join(root, name))
    return metadata


def git(repo: str, *args: str) -> str:
    """Run git in *repo* with the queue's identity; raise a one-line error on failure.

    :param repo: the repository.
    :param args: git arguments.
    :returns: the standard output.
    """
    result = subprocess.run(['git'] + IDENTITY + list(args), cwd=repo, env=git_env(os.path.dirname(repo)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if result.returncode:
        lines = (result.stderr.strip() or result.stdout.strip() or 'failed').splitlines()
        raise BuildError('git {0}: {1}'.format(args[0], lines[0] if lines[0].startswith('error') else lines[-1]))
    return result.stdout


def queue_import(root: str, repo: str) -> None:
    """Create the editing repository: the pristine tree as the first commit (tag ``pristine``), one commit a patch.

    :param root: the project directory.
    :param repo: a directory that does not exist yet.
    """
    pin = Pin(root)
    repo = os.path.abspath(repo)
    if os.path.exists(repo):
        raise BuildError('{0} exists already; import needs a new directory'.format(repo))
    patches = read_series(root)
    with tempfile.TemporaryDirectory(prefix='import-', dir=cache_dir(root)) as tmp:
        tree = extract_sdist(obtain_sdist(root, pin), tmp)
        git(tree, 'init', '--quiet')
        git(tree, 'add', '--all', '--force')
        git(tree, '-c', 'user.name=upstream', 'commit', '--quiet', '--date=2000-01-01T00:00:00Z',
            '--message=patroni {0} (pristine sdist, sha256 {1})'.format(pin.version, pin.sha256))
        git(tree, 'tag', PRISTINE_TAG)
        for patch in patches:
            try:
                git(tree, 'am', '--quiet', '--keep-cr', patch)
            except BuildError as e:
                raise BuildError('patch {0} does not apply: {1}'.format(os.path.basename(patch), e))
        shutil.move(tree, repo)


def queue_export(root: str, repo: str, out: Optional[str] = None) -> List[str]:
    """Write the commits ``pristine..HEAD`` of *repo* as the series: patch files plus ``series``.

    Patches that the new series no longer lists are removed from the output directory.

    :param root: the project directory.
    :param repo: the editing repository made by :func:`queue_import`.
    :param out: the output directory, ``<root>/patches`` by default.
    :returns: the names of the patches written, in order.
    """
    out = out or os.path.join(root, 'patches')
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='export-', dir=cache_dir(root)) as tmp:
        git(os.path.abspath(repo), 'format-patch', '--quiet', '--output-directory', tmp, *FORMAT_PATCH_OPTIONS,
            '{0}..HEAD'.format(PRISTINE_TAG))
        names = sorted(os.listdir(tmp))
        for name in os.listdir(out):
            if name.endswith('.patch') and name not in names:
                os.unlink(os.path.join(out, name))
        for name in names:
            shutil.copyfile(os.path.join(tmp, name), os.path.join(out, name))
    with open(os.path.join(out, 'series'), 'w') as f:
        f.write(''.join(name + '\n' for name in names))
    return names


def unreachable(path: str, user: str) -> Optional[str]:
    """The first directory on the way to *path* (which need not exist yet) that *user* cannot pass (no search
    permission for it, or, if there is no such user yet, for others), or ``None``.

    ``make install`` refuses a venv that the service user could not run (systemd: 203/EXEC, then start-limit-hit).
    """
    import grp
    import pwd
    import stat

    try:
        entry = pwd.getpwnam(user)
        uid, gids = entry.pw_uid, {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    except KeyError:
        uid, gids = None, set()
    if uid == 0:
        return None
    directory = os.path.abspath(path)
    while not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    chain = []
    while True:
        chain.append(directory)
        if directory == os.path.dirname(directory):
            break
        directory = os.path.dirname(directory)
    for directory in reversed(chain):
        st = os.stat(directory)
        bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid in gids else stat.S_IXOTH
        if not st.st_mode & bit:
            return '{0} (mode {1:04o}, owner {2})'.format(directory, stat.S_IMODE(st.st_mode), st.st_uid)
    return None


def main(argv: List[str]) -> int:
    """Command-line entry point.

    :param argv: the arguments after the program name.
    :returns: the exit code.
    """
    import argparse

    parser = argparse.ArgumentParser(prog='patchqueue.py', description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default=HERE, help='project directory (default: where this file is)')
    sub = parser.add_subparsers(dest='command')
    sub.add_parser('fetch', help='obtain and verify the pinned sdist')
    sub.add_parser('build', help='materialise the patched package into patroni/')
    for name, text in (('import', 'pristine tree + series as git commits in DIR'),
                       ('export', 'commits of DIR back to patches/')):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument('repo', metavar='DIR')
        if name == 'export':
            cmd.add_argument('--output', help='write the series here instead of patches/')
    cmd = sub.add_parser('series-stamp', help="print the series' fingerprint line of the records in docs/results")
    cmd.add_argument('--upstream-only', action='store_true',
                     help='and the line of patches/upstream-only, for the records made on upstream master')
    sub.add_parser('records', help='fail unless every record in docs/results is of the series in patches/')
    cmd = sub.add_parser('reachable', help='fail unless USER may reach the venv DIR (make install)')
    cmd.add_argument('venv', metavar='DIR')
    cmd.add_argument('user', metavar='USER')
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    try:
        if args.command == 'fetch':
            print(obtain_sdist(root, Pin(root)))
        elif args.command == 'build':
            print('patroni {0} in {1}'.format(build(root)['version'], os.path.join(root, 'patroni')))
        elif args.command == 'import':
            queue_import(root, args.repo)
            print('{0}: pristine + {1} patches; edit, commit, then: patchqueue.py export {0}'
                  .format(args.repo, len(read_series(root))))
        elif args.command == 'export':
            print('\n'.join(queue_export(root, args.repo, args.output)))
        elif args.command == 'series-stamp':
            print(series_stamp(root))
            if args.upstream_only:
                print(upstream_only_stamp(root))
        elif args.command == 'records':
            stale = stale_records(root)
            if stale:
                print('the series (or patches/upstream-only) changed since {0} was recorded: run {1}'.format(
                    ', '.join('docs/results/' + name for name in stale),
                    ' and '.join(sorted({record_command(name) for name in stale}))), file=sys.stderr)
                return 1
        elif args.command == 'reachable':
            blocked = unreachable(args.venv, args.user)
            if blocked:
                print('make install: {0} cannot reach {1}: {2} is closed to it; install from a checkout it can '
                      'reach (e.g. under /opt or /srv), or set VENV= to a directory it can reach'.format(
                          args.user, os.path.join(os.path.abspath(args.venv), 'bin', 'patroni'), blocked),
                      file=sys.stderr)
                return 2
        else:
            parser.print_help()
            return 2
    except BuildError as e:
        print('patchqueue: error: {0}'.format(e), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
