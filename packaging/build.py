#!/usr/bin/python3
"""Build the patched Patroni as distribution packages, from the pinned sdist + patches/series (docs/packaging.md).

    packaging/build.py source   build/deb/: patroni_<v>.orig.tar.gz (the sdist itself), the 3.0 (quilt) source
                                package whose debian/patches is patches/ (on this machine, with dpkg-source);
                                `source bookworm`: bookworm's, in build/deb-bookworm/
    packaging/build.py deb      the source package, then the binary .deb built inside a Debian trixie build root
                                (.cache/trixie-build, a copy of tests/debian_root.sh's root with the build
                                dependencies; made once) with dpkg-buildpackage, and lintian; it serves trixie
                                and forky
    packaging/build.py deb bookworm   the same source built for bookworm (systemd 252), in .cache/bookworm-build,
                                into build/deb-bookworm/
    packaging/build.py rpm      build/rpm/: a noarch RPM with rpmbuild from the same sdist + series
    packaging/build.py proof-root [SUITE]   .cache/<suite>-proof (default trixie), what tests/test_deb.py boots
                                (made once)
    packaging/build.py build-root SUITE   only the build root of the build that serves SUITE, as `deb SUITE` makes it
                                (its lintian is what tests/test_packaging.py's Standards-Version check reads)

Every failure is one line on stderr, ``packaging/build.py: error: ...``; exit 2 only when the Debian mirror cannot be
reached (a name that does not resolve, a connection refused or timed out; as tests/debian_root.sh): a 404, e.g. of a
package the suite has superseded, is a failure (exit 1). Nothing outside build/ and .cache/ is written.
"""

import datetime
import email.utils
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys

from typing import List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import patchqueue  # noqa: E402

BUILD = os.path.join(ROOT, 'build')
SUITE = 'trixie'
# which build serves which suite: trixie's .deb (Depends: python3:any and packages both suites have, PostgreSQL
# through postgresql-common, units for systemd >= 253) installs on forky too; bookworm's systemd 252 has no
# Type=notify-reload, so bookworm gets a build of its own from the same source (for_bookworm())
BUILDS = {'trixie': 'trixie', 'forky': 'trixie', 'bookworm': 'bookworm'}
BUILD_ROOT = os.path.join(ROOT, '.cache', SUITE + '-build')
# the .debs apt downloads for the build root, kept between runs (a new build root needs no new download)
DEBS = os.path.join(ROOT, '.cache', SUITE + '-debs')


def build_root_of(suite: str) -> str:
    return os.path.join(ROOT, '.cache', suite + '-build')


def debs_of(suite: str) -> str:
    return os.path.join(ROOT, '.cache', suite + '-debs')


STEP = int(os.environ.get('SDNOTIFY_STEP_TIMEOUT', '600'))
# the tools of the build root besides the Build-Depends
TOOLS = ['build-essential', 'lintian', 'fakeroot']
UNITS = ['patroni.service', 'patroni@.service']

# In private mount and PID namespaces: the API file systems, the apt cache and the build directory bound into the
# root, then the chroot. Ended with the namespace (unshare --kill-child) whatever happens.
CHROOT = r"""set -e
R="$BUILD_ROOT"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/run"
mount --bind "$DEBS" "$R/var/cache/apt/archives"
mkdir -p "$R/build"
mount --bind "$OUT" "$R/build"
cat /etc/resolv.conf >"$R/etc/resolv.conf"
exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive DEB_BUILD_OPTIONS="$DEB_BUILD_OPTIONS" /bin/sh -ec "$SCRIPT"
"""


class Error(Exception):
    """A failure, said in one line; *code* is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super(Error, self).__init__(message)
        self.code = code


# the configuration file of Debian's patroni.service
DEBIAN_CONFIG = '/etc/patroni/config.yml'
# extras/startup_scripts files the package does not ship: its units are Type=notify-reload already
NOT_SHIPPED = ['notify-reload.conf']
# the reload of the extras' units (patroni_systemd_reload, for systemd 252 too), and what replaces it in the package,
# built for trixie (systemd 257; debian/control: Breaks: systemd (<< 253)): systemd's own notify-reload, which holds
# `systemctl reload` until Patroni's READY=1, needs no REST API and sends one SIGHUP
EXTRAS_RELOAD = re.compile(r'^# `systemctl reload` returns once.*?^ExecReload=.*?\n', re.M | re.S)
DEBIAN_RELOAD = """# `systemctl reload` returns once Patroni has applied the file and PostgreSQL has loaded it: systemd
# (>= 253) sends SIGHUP and waits for Patroni's RELOADING=1 ... READY=1. A reload is held until READY=1,
# so it never lands before Patroni handles SIGHUP; early-sighup.conf also covers a `kill -HUP` in the
# interpreter's first instants.
"""


# The header of the units as the package installs them (not the extras' "Copy to /etc/systemd/system/..."): which
# build, which systemd, how to change them (a drop-in), the examples; per build (trixie's serves trixie and forky)
PACKAGE_HEADER = {
    'trixie': {
        'patroni.service': """\
# Patroni as a systemd service: the unit of the patroni package of patroni-sdnotify (the patched Patroni),
# built for Debian 13 and later: Type=notify-reload, systemd >= 253 (tested on 257 and 262). Installed by the
# package: change it with a drop-in (`systemctl edit patroni`), which upgrades keep, not here.
# Drop-ins in /usr/share/doc/patroni/examples/: early-sighup.conf (coreutils >= 8.31), hardening.conf (an
# opt-in sandbox).
""",
        'patroni@.service': """\
# One Patroni per configuration file /etc/patroni/<instance>.yml: the template of the patroni package of
# patroni-sdnotify (the patched Patroni), built for Debian 13 and later: Type=notify-reload, systemd >= 253
# (tested on 257 and 262). Start with `systemctl start patroni@<instance>`. Installed by the package: change it
# with a drop-in (`systemctl edit patroni@<instance>`, or patroni@.service.d/ for every instance), not here.
# Drop-ins in /usr/share/doc/patroni/examples/: early-sighup.conf (coreutils >= 8.31), hardening.conf (an
# opt-in sandbox).
"""},
    'bookworm': {
        'patroni.service': """\
# Patroni as a systemd service: the unit of the patroni package of patroni-sdnotify (the patched Patroni and
# its patroni_systemd_reload), built for Debian 12: systemd 252 has no Type=notify-reload, so Type=notify with
# ExecReload= (tested on 252). Installed by the package: change it with a drop-in (`systemctl edit patroni`),
# which upgrades keep, not here.
# Drop-ins in /usr/share/doc/patroni/examples/: early-sighup.conf (coreutils >= 8.31), hardening.conf (an
# opt-in sandbox).
""",
        'patroni@.service': """\
# One Patroni per configuration file /etc/patroni/<instance>.yml: the template of the patroni package of
# patroni-sdnotify (the patched Patroni and its patroni_systemd_reload), built for Debian 12: systemd 252 has no
# Type=notify-reload, so Type=notify with ExecReload= (tested on 252). Start with `systemctl start
# patroni@<instance>`. Installed by the package: change it with a drop-in (`systemctl edit patroni@<instance>`,
# or patroni@.service.d/ for every instance), not here.
# Drop-ins in /usr/share/doc/patroni/examples/: early-sighup.conf (coreutils >= 8.31), hardening.conf (an
# opt-in sandbox).
"""}}


def package_header(text: str, build: str, unit: str) -> str:
    """*text* (a unit of extras/startup_scripts) with its leading comment replaced by :data:`PACKAGE_HEADER`."""
    head, sep, rest = text.partition('\n[Unit]\n')
    if not sep or 'Copy to /etc/systemd/system/' not in head:
        raise Error('extras/startup_scripts/{0}: its header changed (no "Copy to /etc/systemd/system/" before '
                    '[Unit]): update PACKAGE_HEADER in packaging/build.py'.format(unit))
    return PACKAGE_HEADER[build][unit] + '\n[Unit]\n' + rest


def debian_unit(text: str, unit: str) -> str:
    """A unit of extras/startup_scripts as the package ships it: ``Type=notify-reload`` without ``ExecReload=``;
    patroni.service reads Debian's /etc/patroni/config.yml (ours replaces Debian's unit at the same path: with
    another file every existing node would be skipped at its restart)."""
    assert text.count('\nType=notify\n') == 1 and len(EXTRAS_RELOAD.findall(text)) == 1, 'the units changed'
    text = package_header(text, 'trixie', unit)
    text = text.replace('\nType=notify\n', '\nType=notify-reload\nReloadSignal=SIGHUP\n')
    text = EXTRAS_RELOAD.sub(DEBIAN_RELOAD, text)
    return text.replace('PATRONI_CONFIG_FILE=/etc/patroni/patroni.yml', 'PATRONI_CONFIG_FILE=' + DEBIAN_CONFIG)


# bookworm (systemd 252: no Type=notify-reload): the same source, built with the extras' own units (Type=notify,
# `ExecReload=patroni_systemd_reload`, which waits for the reload through Patroni's REST API) and that program
# installed in /usr/bin; a version of its own below the one for trixie and forky (an upgrade to trixie replaces it)
BOOKWORM_SUFFIX = '~deb12u1'
BOOKWORM_ENTRY = """patroni ({version}) bookworm; urgency=medium

  * Built for bookworm from {base}:
    systemd 252 has no Type=notify-reload, so the units are Type=notify
    with ExecReload=/usr/bin/patroni_systemd_reload (installed), which
    returns once Patroni has applied the reload; no Breaks: systemd
    (<< 253); NEWS and README.Debian say so; Standards-Version 4.6.2,
    bookworm's policy.
  * python3-cdiff for python3-ydiff, which bookworm lacks (patronictl falls
    back to cdiff; debian/py3dist-overrides maps the requirement).

 -- patroni-sdnotify <dev@patroni-sdnotify.invalid>  {date}

"""
# bookworm's Debian policy (its debian-policy and lintian: 4.6.2), which bookworm's lintian knows, as Standards-Version
BOOKWORM_STANDARDS = '4.6.2'
# NEWS.Debian (apt-listchanges shows every entry newer than the installed version: from bookworm's 3.0.2, all of
# them): an entry of its own on top, and what the entries say of the trixie build's units said of bookworm's
BOOKWORM_NEWS = """patroni ({version}) bookworm; urgency=medium

  This is the build for Debian 12 (bookworm): its systemd 252 has no
  Type=notify-reload, so the units are Type=notify and `systemctl reload`
  runs ExecReload=/usr/bin/patroni_systemd_reload. It asks Patroni's REST
  API for the reload and returns once Patroni has applied it; it exits 1
  (and `systemctl reload` fails) when the reload could not be applied, or
  when the Patroni that answers has no waiting reload (one started by
  Debian's unit before the upgrade: it reloads, unwaited, until it is
  restarted). The entries below say so where they concern the units.
  The version, {version}, sorts below the build for
  Debian 13 and later: an upgrade to Debian 13 takes that one. Before
  going to Debian 13, read that build's NEWS: patroni_systemd_reload goes,
  and `systemctl reload` no longer fails on a file it could not apply.

 -- patroni-sdnotify <dev@patroni-sdnotify.invalid>  {date}

"""
# (what NEWS says of the trixie build, what it says in bookworm's instead): each found exactly once, or the build
# stops (NEWS changed: update these)
BOOKWORM_NEWS_SWAPS = [
    ("""  The units are now Type=notify-reload: `systemctl reload` returns once
  the reload is applied (systemd >= 253; the package Breaks older ones).
""", """  `systemctl reload` now returns once the reload is applied: on Debian 12
  through the units' ExecReload=/usr/bin/patroni_systemd_reload.
"""),
    ("""  sandbox, is among the examples (README.Debian). The package no longer
  installs on systemd < 253 (Debian 12).
""", """  sandbox, is among the examples (README.Debian).
"""),
    ("""  The unit changes (Type=notify-reload, no ExecReload=, ExecCondition=)
  apply at once, through the daemon-reload this package runs; the rest
  (OOMScoreAdjust=, the environment, the start bound) when Patroni is
  restarted (see the paused rollout in README.Debian). A Patroni started by
  Debian's own unit (Type=simple, no NOTIFY_SOCKET) cannot answer a reload
  under Type=notify-reload: until it is restarted, `systemctl reload` waits
  5 minutes and fails; reload it with `kill -HUP $(systemctl show -p
  MainPID --value patroni@<instance>)`, or restart it (paused) first.
""", """  The unit changes (ExecReload=/usr/bin/patroni_systemd_reload,
  ExecCondition=) apply at once, through the daemon-reload this package
  runs; the rest (OOMScoreAdjust=, the environment, the start bound) when
  Patroni is restarted (see the paused rollout in README.Debian). A Patroni
  started by Debian's own unit has no waiting reload: until it is
  restarted, `systemctl reload` reloads it but exits 1 ("a Patroni without
  the waiting reload").
"""),
    # bookworm's build never had python3-consul as a dependency of its own (bookworm's dh_python3 left it out)
    ('''
  python3-consul is no longer a dependency of its own: a DCS client is
  one of python3-etcd, python3-consul, python3-kazoo, python3-kubernetes
  and python3-pysyncobj. An installed python3-consul stays: autoremove
  keeps a package that satisfies an alternative of a dependency.
''', ''),
    # what changes from bookworm's build to trixie's: on bookworm's own build, nothing (it is that build)
    ('''
  Coming from the Debian 12 build (~deb12u1): the units are now
  Type=notify-reload (systemd sends the SIGHUP and waits for Patroni; no
  ExecReload=); /usr/bin/patroni_systemd_reload is gone. Remove drop-in
  ExecReload= lines naming it (`systemctl cat patroni@<instance>` must
  show none: systemd would still run them and fail the reload); scripts
  run `systemctl reload --job-mode=fail patroni@<instance>`. It returns
  0 also when the file could not be applied (patroni_systemd_reload
  exited 1): check `systemctl status`, or use `patronictl reload --wait`,
  which exits 1. A Patroni started by the Debian 12 build answers the
  new reload; one still running from Debian's 3.0.2 does not (the reload
  waits 5 minutes and fails). Both keep Debian 12's Python 3.11 until
  restarted: finish the dist-upgrade by restarting or rebooting each
  node, paused (README.Debian), before `apt autoremove`.
''', ''),
    # sdnotify5's word on a failed reload: under bookworm's units, patroni_systemd_reload makes it fail
    ('''  `systemctl reload` returns 0 also when the file could not be applied
  (Patroni keeps its previous configuration): `systemctl status` then
  says "reload failed: <file>, line <n>, column <n>: <problem>";
  `patronictl reload --wait` exits 1. Scripts should reload with
''', '''  `systemctl reload` exits 1 when the file could not be applied
  (patroni_systemd_reload; Patroni keeps its previous configuration):
  `systemctl status` then says "reload failed: <file>, line <n>, column
  <n>: <problem>"; `patronictl reload --wait` exits 1 too. Scripts should
  reload with
'''),
]
# README.Debian: (the trixie build's words, bookworm's)
BOOKWORM_README_SWAPS = [
    ("""Units (/usr/lib/systemd/system)
-------------------------------
""", """Units (/lib/systemd/system)
---------------------------
"""),
    ("""Both are Type=notify-reload (systemd >= 253: Debian 13 and later; the
package Breaks older systemd): systemd sends the SIGHUP and holds
`systemctl reload` until Patroni has applied the reload, and returns 0
also when it could not be applied (see StatusText).
""", """Both are Type=notify: this is the build for Debian 12, whose systemd 252
has no Type=notify-reload. `systemctl reload` runs
ExecReload=/usr/bin/patroni_systemd_reload, which asks Patroni's REST API
for the reload and returns once it is applied; it exits 1 (and so does
`systemctl reload`) when the reload could not be applied (see StatusText).
"""),
]


def swap(text: str, swaps: List[Tuple[str, str]], what: str) -> str:
    """*text* with each (old, new) of *swaps* replaced; *old* must be there exactly once."""
    for old, new in swaps:
        if text.count(old) != 1:
            raise Error('{0}: for bookworm, {1!r} expected once, found {2} times: update packaging/build.py'.format(
                what, old.splitlines()[0].strip(), text.count(old)))
        text = text.replace(old, new)
    return text


def bookworm_unit(text: str, unit: str) -> str:
    """A unit of extras/startup_scripts as the bookworm build ships it: as it is (Type=notify, ExecReload=
    patroni_systemd_reload) but for its header, patroni.service reading Debian's /etc/patroni/config.yml."""
    assert text.count('\nType=notify\n') == 1 and len(EXTRAS_RELOAD.findall(text)) == 1, 'the units changed'
    text = package_header(text, 'bookworm', unit)
    return text.replace('PATRONI_CONFIG_FILE=/etc/patroni/patroni.yml', 'PATRONI_CONFIG_FILE=' + DEBIAN_CONFIG)


def for_bookworm(debian: str, version: str) -> str:
    """Make the copied debian/ directory *debian* the bookworm build's; returns its version."""
    changelog = read(os.path.join(debian, 'changelog'))
    # a second after the entry it is built from (lintian: a new entry has a new date)
    date = email.utils.format_datetime(email.utils.parsedate_to_datetime(
        re.search(r'^ -- .*?  (.*)$', changelog, re.M).group(1)) + datetime.timedelta(seconds=1))
    bookworm = version + BOOKWORM_SUFFIX
    with open(os.path.join(debian, 'changelog'), 'w') as f:
        f.write(BOOKWORM_ENTRY.format(version=bookworm, base=version, date=date) + changelog)
    news = swap(read(os.path.join(debian, 'NEWS')), BOOKWORM_NEWS_SWAPS, 'packaging/debian/NEWS')
    with open(os.path.join(debian, 'NEWS'), 'w') as f:
        f.write(BOOKWORM_NEWS.format(version=bookworm, date=date) + news)
    readme = swap(read(os.path.join(debian, 'README.Debian')), BOOKWORM_README_SWAPS, 'packaging/debian/README.Debian')
    with open(os.path.join(debian, 'README.Debian'), 'w') as f:
        f.write(readme)
    control = read(os.path.join(debian, 'control'))
    assert '\nBreaks: systemd (<< 253)\n' in control and 'Its units are Type=notify-reload (systemd >= 253).' in control
    control = control.replace('\nBreaks: systemd (<< 253)\n', '\n').replace(
        'Its units are Type=notify-reload (systemd >= 253).',
        'Its units are Type=notify, reloaded by patroni_systemd_reload.')
    control = re.sub(r'^Standards-Version: .*$', 'Standards-Version: ' + BOOKWORM_STANDARDS, control, flags=re.M)
    # bookworm has no python3-ydiff: patronictl falls back to cdiff (as bookworm's patroni 3.0.2 depends on it)
    assert control.count('python3-ydiff') == 2, control
    control = control.replace('python3-ydiff', 'python3-cdiff')
    with open(os.path.join(debian, 'py3dist-overrides'), 'a') as f:
        f.write('# bookworm: python3-cdiff for python3-ydiff\nydiff python3-cdiff\n')
    with open(os.path.join(debian, 'control'), 'w') as f:
        f.write(control)
    shutil.copyfile(os.path.join(ROOT, 'patroni_systemd_reload.py'), os.path.join(debian, 'patroni_systemd_reload'))
    os.chmod(os.path.join(debian, 'patroni_systemd_reload'), 0o755)
    with open(os.path.join(debian, 'patroni.install'), 'a') as f:
        f.write('# the units\' ExecReload= (bookworm: systemd 252)\ndebian/patroni_systemd_reload usr/bin\n')
    return bookworm


def pin() -> patchqueue.Pin:
    return patchqueue.Pin(ROOT)


def debian_version(p: patchqueue.Pin) -> str:
    """``<Debian's revision>+<local version without dots>``, e.g. 4.1.5-2+sdnotify6: Debian's patroni
    :data:`DEBIAN_PATRONI`, which this packaging derives from (its postgresql-common integration is taken from that
    .deb), with the series. It sorts above that revision (and trixie's 4.0.7-3~deb13u1), below Debian's next one
    (4.1.5-3) and PGDG's of the same revision (4.1.5-2.pgdg*): docs/packaging.md, the pin."""
    if DEBIAN_PATRONI.split('-')[0] != p.version:
        raise Error('upstream.cfg pins {0}, but the Debian revision this packaging derives from is {1} '
                    '(DEBIAN_PATRONI in packaging/build.py): take the new one, or {0}-0 if Debian has none'
                    .format(p.version, DEBIAN_PATRONI))
    return '{0}+{1}'.format(DEBIAN_PATRONI, p.local.replace('.', ''))


# what apt, wget and debootstrap say when the mirror cannot be reached at all (a name that does not resolve, a
# connection refused or timed out); a 404 (a superseded package, a wrong suite) is not among them: a real failure
UNREACHABLE = re.compile(r'Temporary failure resolving|Could not resolve|unable to resolve host|Name or service not '
                         r'known|Temporary failure in name resolution|Could not connect to|Unable to connect to|'
                         r'Connection refused|Connection timed out|Network is unreachable|No route to host')


def unreachable(output: str) -> bool:
    """Whether *output* (of apt-get) says the mirror could not be reached (DNS or connect), not a 404 or else."""
    return bool(UNREACHABLE.search(output))


def need(tool: str, package: str, what: str) -> None:
    if not shutil.which(tool):
        raise Error('{0} needs {1}, which is not installed (apt-get install {2})'.format(what, tool, package))


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def patch_failure(output: str) -> Optional[str]:
    """From the output of dpkg-source or rpmbuild (patch): which patch of the series failed, on which file, how."""
    names = re.findall(r'(?:applying |/SOURCES/)(\S+\.patch)', output)
    fail = re.search(r'^.*(?:FAILED|can\'t find file|No file to patch|Reversed \(or previously applied\)).*$', output,
                     re.M)
    if not names or not fail:
        return None
    rejects = re.search(r'saving rejects to file (\S+?)(?:\.rej)?$', output, re.M)
    files = re.findall(r'^(?:patching|checking) file (\S+)', output[:fail.start()], re.M)
    where = rejects.group(1) if rejects else files[-1] if files else '?'
    return 'patches/{0} no longer applies: {1}: {2}'.format(names[-1], where, fail.group(0).strip().rstrip('.'))


def sdist_and_series(p: patchqueue.Pin) -> Tuple[str, List[str]]:
    """The pinned sdist (fetched and checked if need be) and the patches of patches/series, in order."""
    try:
        return patchqueue.obtain_sdist(ROOT, p), patchqueue.read_series(ROOT)
    except patchqueue.BuildError as e:
        raise Error(str(e))


def source(out: str = os.path.join(BUILD, 'deb'), suite: str = SUITE) -> str:
    """The 3.0 (quilt) source package in *out* (for bookworm: :func:`for_bookworm`); returns the path of its
    .dsc."""
    need('dpkg-source', 'dpkg-dev', 'the source package')
    p = pin()
    version = debian_version(p)
    changelog = read(os.path.join(HERE, 'debian', 'changelog'))
    top = re.match(r'^patroni \(([^)]+)\)', changelog)
    if not top or top.group(1) != version:
        raise Error('packaging/debian/changelog starts with {0}, but upstream.cfg makes {1}: add a changelog entry'
                    .format(top.group(1) if top else 'no entry', version))
    # Debian's /etc/init.d/patroni goes on an upgrade from any version before this one (a later Debian revision
    # ships it again): rm_conffile's prior-version is this version with a tilde
    maintscript = read(os.path.join(HERE, 'debian', 'patroni.maintscript'))
    prior = re.search(r'^rm_conffile /etc/init\.d/patroni (\S+)$', maintscript, re.M)
    if not prior or prior.group(1) != version + '~':
        raise Error('packaging/debian/patroni.maintscript: rm_conffile /etc/init.d/patroni {0}~ expected, found {1}'
                    .format(version, prior.group(1) if prior else 'none'))
    sdist, patches = sdist_and_series(p)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    orig = os.path.join(out, 'patroni_{0}.orig.tar.gz'.format(p.version))
    shutil.copyfile(sdist, orig)
    tree = os.path.join(out, 'patroni-{0}'.format(p.version))
    try:
        os.rename(patchqueue.extract_sdist(orig, os.path.join(out, 'unpack')), tree)
    except patchqueue.BuildError as e:
        raise Error(str(e))
    os.rmdir(os.path.join(out, 'unpack'))
    debian = os.path.join(tree, 'debian')
    shutil.copytree(os.path.join(HERE, 'debian'), debian)
    unit_for = debian_unit
    if suite == 'bookworm':
        version = for_bookworm(debian, version)
        unit_for = bookworm_unit
    os.makedirs(os.path.join(debian, 'patches'))
    for patch in patches:
        shutil.copyfile(patch, os.path.join(debian, 'patches', os.path.basename(patch)))
    shutil.copyfile(os.path.join(ROOT, 'patches', 'series'), os.path.join(debian, 'patches', 'series'))
    scripts = os.path.join(ROOT, 'extras', 'startup_scripts')
    for unit in UNITS:
        with open(os.path.join(scripts, unit)) as f:
            text = unit_for(f.read(), unit)
        with open(os.path.join(debian, unit), 'w') as f:
            f.write(text)
    os.makedirs(os.path.join(debian, 'startup_scripts'))
    integration = debian_integration()
    for path in INTEGRATION:
        target = os.path.join(debian, 'debian-patroni', path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(integration, path), target)
    for name in sorted(os.listdir(scripts)):
        if name not in UNITS + NOT_SHIPPED:
            shutil.copyfile(os.path.join(scripts, name), os.path.join(debian, 'startup_scripts', name))
    result = subprocess.run(['dpkg-source', '-b', os.path.basename(tree)], cwd=out, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, timeout=STEP)
    if result.returncode != 0:
        failure = patch_failure(result.stdout)
        shutil.rmtree(out, ignore_errors=True)
        lines = [line for line in result.stdout.splitlines() if 'error' in line] or result.stdout.splitlines()
        raise Error(failure or 'dpkg-source -b failed: ' + (lines[-1] if lines else '?'))
    dsc = os.path.join(out, 'patroni_{0}.dsc'.format(version))
    assert os.path.exists(dsc), result.stdout
    return dsc


def build_depends(control: str) -> str:
    """The Build-Depends field of *control* (text), as one line."""
    field = re.search(r'^Build-Depends:((?:\n[ \t].*|.*)+)', control, re.M)
    assert field, 'no Build-Depends'
    return ' '.join(field.group(1).split()).strip().rstrip(',')


def in_root(script: str, out: str, timeout: int = STEP, root: str = BUILD_ROOT,
            debs: str = DEBS) -> 'subprocess.CompletedProcess[str]':
    """Run *script* (sh -e) as root in the build root (or *root*), *out* at /build, *debs* (the suite's apt
    cache) at /var/cache/apt/archives; output merged."""
    os.makedirs(debs, exist_ok=True)
    env = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'BUILD_ROOT': root, 'DEBS': debs, 'OUT': out,
           'SCRIPT': script, 'DEB_BUILD_OPTIONS': os.environ.get('DEB_BUILD_OPTIONS', '')}
    return subprocess.run(['unshare', '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child',
                           '/bin/sh', '-c', CHROOT, root], env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout)


def debian_root(suite: str) -> str:
    """.cache/<suite> (tests/debian_root.sh, made once); exit 2 only when the mirror cannot be reached."""
    made = subprocess.run([os.path.join(ROOT, 'tests', 'debian_root.sh'), suite], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=STEP + 120)
    if made.returncode != 0:
        raise Error((made.stderr.strip().splitlines() or ['tests/debian_root.sh failed'])[-1], made.returncode)
    return os.path.join(ROOT, '.cache', suite)


def build_root(depends: str, out: str, suite: str = SUITE) -> None:
    """.cache/<suite>-build: a copy of the cached root of *suite* with the build dependencies, made or completed
    when they change (the stamp file holds what was installed)."""
    root = build_root_of(suite)
    stamp = os.path.join(root, '.sdnotify-build-depends')
    wanted = ', '.join([depends] + TOOLS)
    if os.path.exists(stamp) and read(stamp) == wanted:
        return
    if os.geteuid() != 0:
        raise Error('making the build root needs root (chroot, mounts)')
    if not os.path.isdir(root):
        lower = debian_root(suite)
        shutil.rmtree(root + '.tmp', ignore_errors=True)
        subprocess.run(['cp', '-a', lower, root + '.tmp'], check=True, timeout=STEP)
        with open(os.path.join(root + '.tmp', 'usr', 'sbin', 'policy-rc.d'), 'w') as f:
            f.write('#!/bin/sh\n# patroni-sdnotify build root: no service ever starts here\nexit 101\n')
        os.chmod(os.path.join(root + '.tmp', 'usr', 'sbin', 'policy-rc.d'), 0o755)
        os.rename(root + '.tmp', root)
    result = in_root('apt-get update -qq\napt-get satisfy -y -q --no-install-recommends "{0}" >/tmp/satisfy.log 2>&1 '
                     '|| {{ cat /tmp/satisfy.log; exit 1; }}'.format(wanted), out, root=root, debs=debs_of(suite))
    if result.returncode != 0:
        lines = result.stdout.strip().splitlines() or ['?']
        if unreachable(result.stdout):
            raise Error('the build root: the Debian mirror cannot be reached: ' + lines[-1], 2)
        # apt's "satisfy:command-line : Depends: X but it is not installable"
        unmet = [re.sub(r'^.*satisfy:command-line\s*:\s*', '', line).strip() for line in lines
                 if 'satisfy:command-line' in line or ' but ' in line]
        raise Error('missing build dependency (not installable from {0}): {1}'.format(
            suite, '; '.join(unmet) or lines[-1]))
    with open(stamp, 'w') as f:
        f.write(wanted)


# Debian's postgresql-common integration, carried over from Debian's own patroni package (which an installation of
# ours replaces): without them a configuration made by pg_createconfig_patroni can neither bootstrap (method
# pg_createcluster) nor create replicas (pg_clonecluster). Paths in Debian's .deb; /etc ones become conffiles.
# Not Debian's /etc/patroni/dcs.yml (ZooKeeper, and a comment for etcd's v2 API): ours, packaging/debian/dcs.yml.
# DEBIAN_PATRONI is the revision this packaging derives from (its version is <it>+sdnotifyN, debian_version()),
# Debian's patroni of forky and sid (DEBIAN_PATRONI_SUITE), fetched from that suite of the build root's mirror.
DEBIAN_PATRONI = '4.1.5-2'
DEBIAN_PATRONI_SUITE = 'forky'
INTEGRATION = ['usr/bin/pg_createconfig_patroni', 'usr/share/patroni/pg_createcluster_patroni',
               'usr/share/patroni/pg_clonecluster_patroni', 'etc/patroni/config.yml.in']
# testing's Release file carries a Valid-Until (a week); a mirror that serves a snapshot of it, as this machine's,
# is "expired" for apt (stable's has none). The signatures are still checked.
VALID_UNTIL = '-o Acquire::Check-Valid-Until=false'
# apt of the build root (trixie) made to read another suite of the same mirror, in lists of its own: the mirror is
# the one of the root's sources.list (debootstrap wrote it), the suite's name replaced
OTHER_SUITE = """rm -rf /tmp/suite && mkdir -p /tmp/suite/lists/partial
sed -n 's/^deb \\([^ ]*\\) {suite} main$/deb \\1 {other} main/p' /etc/apt/sources.list >/tmp/suite/sources.list
test -s /tmp/suite/sources.list
set -- -o Dir::Etc::SourceList=/tmp/suite/sources.list -o Dir::Etc::SourceParts=/nonexistent \\
    -o Dir::State::Lists=/tmp/suite/lists -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \\
    {valid}
apt-get "$@" update -qq
cd /build && apt-get "$@" download -q patroni={version} >/dev/null
rm -rf /tmp/suite
"""


def debian_integration() -> str:
    """The files of :data:`INTEGRATION`, taken from Debian's patroni :data:`DEBIAN_PATRONI` (downloaded once with
    the build root's apt from :data:`DEBIAN_PATRONI_SUITE`), kept in .cache/debian-patroni-<version>/; returns that
    directory. Exit 2 only when the mirror cannot be reached; that revision gone from the suite is a failure."""
    cache = os.path.join(ROOT, '.cache', 'debian-patroni-' + DEBIAN_PATRONI)
    if os.path.isdir(cache):
        return cache
    tmp = cache + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    build_root(build_depends(read(os.path.join(HERE, 'debian', 'control'))), tmp)
    result = in_root(OTHER_SUITE.format(suite=SUITE, other=DEBIAN_PATRONI_SUITE, version=DEBIAN_PATRONI,
                                        valid=VALID_UNTIL), tmp)
    debs = [n for n in os.listdir(tmp) if n.startswith('patroni_') and n.endswith('.deb')]
    if result.returncode != 0 or not debs:
        raise Error("Debian's patroni {0} cannot be downloaded from {1}: {2}".format(
            DEBIAN_PATRONI, DEBIAN_PATRONI_SUITE, (result.stdout.strip().splitlines() or ['?'])[-1]),
            2 if unreachable(result.stdout) else 1)
    subprocess.run(['dpkg-deb', '-x', os.path.join(tmp, debs[0]), os.path.join(tmp, 'deb')], check=True,
                   timeout=STEP)
    for path in INTEGRATION:
        target = os.path.join(tmp, 'files', path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(tmp, 'deb', path), target)
    os.rename(os.path.join(tmp, 'files'), cache)
    shutil.rmtree(tmp)
    return cache


PROOF_ROOT = os.path.join(ROOT, '.cache', SUITE + '-proof')
# what tests/test_deb.py installs Debian's patroni and ours over, in the root of each suite: the suite's
# PostgreSQL (the `postgresql` metapackage: 15, 17, 18), python3-etcd (what an operator installs for etcd: the
# dependency on a DCS client is met by python3-consul) and Debian's patroni's dependencies, installed; Debian's
# patroni .deb itself, downloaded into /root/debs. The Depends of debian/tests/control (postgresql, etcd-server),
# as autopkgtest installs them before the tests; apt-utils (apt-ftparchive) for the test's own apt archives;
# procps, which every standard install has (Priority: important) and a minbase root lacks: it ships /bin/kill, the
# ExecReload= of Debian's units (without it their `systemctl reload` fails, 203/EXEC; on trixie and forky ucf pulls
# it in, on bookworm nothing did).
PROOF_SCRIPT = """mkdir -p /etc/postgresql-common /root/debs
printf 'create_main_cluster = false\\n' >/etc/postgresql-common/createcluster.conf
apt-get {valid} update -qq
apt-get install -y -qq --no-install-recommends postgresql patroni python3-etcd etcd-server apt-utils \\
    procps >/dev/null
cp /var/cache/apt/archives/patroni_*.deb /root/debs/
dpkg --purge patroni >/dev/null
test ! -e /etc/patroni
"""


def proof_root_of(suite: str) -> str:
    return os.path.join(ROOT, '.cache', suite + '-proof')


def shadow_postgres(root: str) -> None:
    """Give the postgres user of *root* (copied from the machine by tests/debian_root.sh) its /etc/shadow and
    /etc/gshadow entries if it lacks them, with the root's pwconv and grpconv: without them `su postgres` fails
    there ("Authentication failure"), and Debian's test scripts use it. Roots cached before this are completed."""
    for path, tool in (('etc/shadow', 'pwconv'), ('etc/gshadow', 'grpconv')):
        if not re.search(r'^postgres:', read(os.path.join(root, path)), re.M):
            subprocess.run(['chroot', root, '/usr/sbin/' + tool], check=True, timeout=60)


def proof_root(suite: str = SUITE) -> str:
    """.cache/<suite>-proof (made once, again when PROOF_SCRIPT changes): see PROOF_SCRIPT. Returns its path."""
    if suite not in BUILDS:
        raise Error('no proof root for {0}: one of {1}'.format(suite, ', '.join(sorted(BUILDS))))
    proof = proof_root_of(suite)
    stamp = os.path.join(proof, '.sdnotify-proof')
    script_sum = 'PROOF_SCRIPT sha256 ' + hashlib.sha256(PROOF_SCRIPT.encode()).hexdigest()
    if os.path.exists(stamp) and read(stamp).splitlines()[-1] == script_sum:
        shadow_postgres(proof)
        return proof
    lower = debian_root(suite)
    tmp = proof + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(['cp', '-a', lower, tmp], check=True, timeout=STEP)
    with open(os.path.join(tmp, 'usr', 'sbin', 'policy-rc.d'), 'w') as f:
        f.write('#!/bin/sh\n# patroni-sdnotify proof root: no service starts while packages install\nexit 101\n')
    os.chmod(os.path.join(tmp, 'usr', 'sbin', 'policy-rc.d'), 0o755)
    os.makedirs(BUILD, exist_ok=True)
    result = in_root(PROOF_SCRIPT.format(valid=VALID_UNTIL), BUILD, root=tmp, debs=debs_of(suite))
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        lines = result.stdout.strip().splitlines() or ['?']
        raise Error('the proof root of {0}: {1}'.format(suite, lines[-1]), 2 if unreachable(result.stdout) else 1)
    os.unlink(os.path.join(tmp, 'usr', 'sbin', 'policy-rc.d'))
    shadow_postgres(tmp)
    with open(os.path.join(tmp, '.sdnotify-proof'), 'w') as f:
        f.write('{0}: PostgreSQL {1} + patroni\'s dependencies; /root/debs: {2}\n{3}\n'.format(
            suite, ' '.join(os.listdir(os.path.join(tmp, 'usr', 'lib', 'postgresql'))),
            ' '.join(os.listdir(os.path.join(tmp, 'root', 'debs'))), script_sum))
    shutil.rmtree(proof, ignore_errors=True)
    os.rename(tmp, proof)
    return proof


def deb(out: Optional[str] = None, suite: str = SUITE) -> str:
    """The binary .deb for *suite*, built in the build root of the build that serves it (:data:`BUILDS`) from the
    source package; lintian run on the result."""
    if suite not in BUILDS:
        raise Error('no build for {0}: one of {1}'.format(suite, ', '.join(sorted(BUILDS))))
    suite = BUILDS[suite]
    out = out or out_of(suite)
    dsc = source(out, suite)
    # the source package's own (bookworm's build changes them)
    depends = build_depends(read(dsc))
    build_root(depends, out, suite)
    name = os.path.basename(dsc)
    version = name[len('patroni_'):-len('.dsc')]
    script = '\n'.join([
        'cd /build && rm -rf src && dpkg-source -x {0} src >/dev/null'.format(name),
        'cd src && dpkg-checkbuilddeps',
        'dpkg-buildpackage -us -uc -b >/build/build.log 2>&1 || { tail -n 30 /build/build.log; exit 3; }',
        'cd /build && lintian --info --display-info --pedantic patroni_{0}.dsc patroni_{0}_all.deb'
        ' >/build/lintian.txt 2>&1 || true'.format(version),
        'cat /build/lintian.txt',
        'rm -rf /build/src'])
    result = in_root(script, out, timeout=STEP * 2, root=build_root_of(suite), debs=debs_of(suite))
    if result.returncode != 0:
        unmet = re.search(r'dpkg-checkbuilddeps: error: (.*)', result.stdout)
        if unmet:
            raise Error('missing build dependency: ' + unmet.group(1).strip())
        failed = [line for line in result.stdout.splitlines() if re.search(r'FAILED|Error|error:', line)]
        raise Error('dpkg-buildpackage failed ({0}; {1}/build.log): {2}'.format(
            'exit {0}'.format(result.returncode), os.path.relpath(out, ROOT),
            (failed or result.stdout.splitlines() or ['?'])[-1]))
    lintian = read(os.path.join(out, 'lintian.txt'))
    sys.stdout.write(lintian)
    errors = [line for line in lintian.splitlines() if line.startswith('E: ')]
    if errors:
        raise Error('lintian: {0} error(s), the first: {1}'.format(len(errors), errors[0]))
    return os.path.join(out, 'patroni_{0}_all.deb'.format(version))


def out_of(build: str) -> str:
    """build/deb for trixie's build, build/deb-<build> for another."""
    return os.path.join(BUILD, 'deb' if build == SUITE else 'deb-' + build)


def suite_source(suite: str) -> str:
    """The source package of the build that serves *suite*, in :func:`out_of` it."""
    if suite not in BUILDS:
        raise Error('no build for {0}: one of {1}'.format(suite, ', '.join(sorted(BUILDS))))
    return source(out_of(BUILDS[suite]), BUILDS[suite])


def suite_build_root(suite: str) -> str:
    """The build root of the build that serves *suite*, with the build dependencies of its source package (the
    same as :func:`deb` installs: one stamp), made or completed; the source package goes to a directory of its own
    (not :func:`out_of` it, where a .deb built before may be in use)."""
    if suite not in BUILDS:
        raise Error('no build for {0}: one of {1}'.format(suite, ', '.join(sorted(BUILDS))))
    suite = BUILDS[suite]
    out = os.path.join(BUILD, 'build-root-' + suite)
    build_root(build_depends(read(source(out, suite))), out, suite)
    return build_root_of(suite)


def rpm(out: str = os.path.join(BUILD, 'rpm')) -> str:
    """A noarch RPM built with rpmbuild from the sdist, the series and the units; returns its path."""
    need('rpmbuild', 'rpm', 'the RPM')
    p = pin()
    sdist, patches = sdist_and_series(p)
    shutil.rmtree(out, ignore_errors=True)
    sources = os.path.join(out, 'SOURCES')
    os.makedirs(sources)
    shutil.copyfile(sdist, os.path.join(sources, os.path.basename(sdist)))
    for path in patches + [os.path.join(ROOT, 'extras', 'startup_scripts', unit) for unit in UNITS] + [
            os.path.join(ROOT, 'patroni_systemd_reload.py')]:
        shutil.copyfile(path, os.path.join(sources, os.path.basename(path)))
    spec = read(os.path.join(HERE, 'patroni.spec'))
    lines = ['Patch{0:04d}: {1}'.format(i + 1, os.path.basename(path)) for i, path in enumerate(patches)]
    spec = spec.replace('@VERSION@', p.version).replace('@RELEASE@', '0.' + p.local).replace(
        '@PATCHES@', '\n'.join(lines))
    spec_path = os.path.join(out, 'patroni.spec')
    with open(spec_path, 'w') as f:
        f.write(spec)
    result = subprocess.run(['rpmbuild', '-bb', '--define', '_topdir ' + out, '--nodeps', spec_path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=STEP)
    with open(os.path.join(BUILD, 'rpm.log'), 'w') as f:
        f.write(result.stdout)
    if result.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        failure = patch_failure(result.stdout)
        errors = [line for line in result.stdout.splitlines() if 'error' in line.lower()]
        raise Error(failure or 'rpmbuild failed (build/rpm.log): ' + (errors or ['?'])[-1])
    built = [os.path.join(d, n) for d, _, names in os.walk(os.path.join(out, 'RPMS')) for n in names
             if n.endswith('.noarch.rpm')]
    assert len(built) == 1, built
    return built[0]


def main(argv: List[str]) -> int:
    commands = {'source': source, 'deb': deb, 'rpm': rpm, 'proof-root': proof_root,
                'debian-integration': debian_integration}
    # source, deb and proof-root take a suite (default trixie); build-root needs one
    per_suite = {'source': suite_source, 'deb': lambda suite: deb(suite=suite), 'proof-root': proof_root,
                 'build-root': suite_build_root}
    if not (len(argv) == 1 and argv[0] in commands or len(argv) == 2 and argv[0] in per_suite):
        sys.stderr.write('usage: packaging/build.py {0} | {1} SUITE\n'.format(
            '|'.join(commands), '|'.join(per_suite)))
        return 1
    # one build at a time in this project (make test runs its tests in parallel workers, and two of them may ask for
    # the same .deb or root): held until this process exits
    os.makedirs(BUILD, exist_ok=True)
    lock = open(os.path.join(BUILD, '.lock'), 'w')
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        path = per_suite[argv[0]](argv[1]) if len(argv) == 2 else commands[argv[0]]()
    except Error as e:
        sys.stderr.write('packaging/build.py: error: {0}\n'.format(e))
        return e.code
    except subprocess.TimeoutExpired as e:
        sys.stderr.write('packaging/build.py: error: timed out after {0} s: {1}\n'.format(e.timeout, e.cmd[0]))
        return 1
    print(os.path.relpath(path, ROOT))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
