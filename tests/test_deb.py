"""The .deb of `make deb` where it runs, on every Debian suite people run: each suite's root (tests/debian_root.sh)
booted as PID 1 with its own systemd (bookworm 252, trixie 257, forky 262) and systemd-journald, that suite's
PostgreSQL (15, 17, 18) and Python (3.11, 3.13, 3.14); that suite's own patroni installed first with an instance
configuration in /etc/patroni (and patroni.service with Debian's /etc/patroni/config.yml), then ours over it with apt.

One booted root per suite (a module-scoped fixture parametrized by suite: every check of the file runs in it). The
roots are .cache/<suite>-proof (packaging/build.py proof-root SUITE: the suite's PostgreSQL and Debian's patroni's
dependencies installed, Debian's patroni .deb downloaded), booted through an overlay whose upper layer lives in this
run's directory: the cached roots are never changed. etcd 3.4 is the machine's (RootDirectory=/host).
The .deb: trixie's build serves trixie and forky (packaging/build.py BUILDS), bookworm has a build of its own;
SDNOTIFY_DEB=build/deb/patroni_..._all.deb (SDNOTIFY_DEB_BOOKWORM for bookworm's) uses a .deb already built.
SDNOTIFY_DEB_SUITES (default "bookworm trixie forky") chooses the suites. The source package's autopkgtests
(packaging/debian/tests) run in the same boot, as autopkgtest runs them. No test depends on another having run:
those that need the suite's own patroni or ours installed (and the instance's configuration) take the fixture
`debians` or `ours`, which installs it when it is not (so `-k` selects any of them).
Skipped, saying why, when the Debian mirror cannot be reached (packaging/build.py exit 2: a DNS or connect error).
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from realparts import ETCD, ROOT, sighup_blocked_and_pending, wait_for, Workdir
from systemd_harness import etcd_unit, host_dropin, Systemd

sys.path.insert(0, os.path.join(ROOT, 'packaging'))

import build as packaging_build  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

SUITES = os.environ.get('SDNOTIFY_DEB_SUITES', 'bookworm trixie forky').split()
# each suite's systemd, and what Debian's patroni there is (what ours is installed over)
SYSTEMD = {'bookworm': 252, 'trixie': 257, 'forky': 262}
POSTGRESQL = {'bookworm': '15', 'trixie': '17', 'forky': '18'}
PYTHON = {'bookworm': '3.11', 'trixie': '3.13', 'forky': '3.14'}
DEBIAN_PATRONI = {'bookworm': '3.0.2', 'trixie': '4.0.7', 'forky': '4.1.5'}
TRIALS = int(os.environ.get('SDNOTIFY_DEB_TRIALS', '10'))
# the controls' trials: until the first one killed (or its reload lost), at most this many
CONTROL_TRIALS = 10
# the result of an HA cycle, as Patroni logs it: ``INFO: <what it did>`` after ``Lock owner: ...; I am node1``
CYCLE = re.compile(r'INFO: Lock owner: .*; I am node1\n.*INFO: (?!Lock owner)(.+)')
# patroni.service's own configuration (Debian's /etc/patroni/config.yml): a second cluster beside the instance's
SERVICE = 'patroni.service'
SERVICE_CONFIG = '/etc/patroni/config.yml'
UNIT_DIRS = ['/usr/lib/systemd/system/', '/lib/systemd/system/']
_BUILT = {}


def build(what, suite=None):
    """packaging/build.py *what* [*suite*] (a .deb built once per build in this process); the path it printed."""
    key = (what, packaging_build.BUILDS[suite] if what == 'deb' else suite)
    if key not in _BUILT:
        result = subprocess.run(['/usr/bin/python3', os.path.join(ROOT, 'packaging', 'build.py'), what] +
                                ([suite] if suite else []), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=2400)
        if result.returncode == 2:
            pytest.skip('the Debian mirror cannot be reached: ' + result.stderr.strip())
        assert result.returncode == 0, result.stderr
        _BUILT[key] = os.path.join(ROOT, result.stdout.strip().splitlines()[-1])
    return _BUILT[key]


def config(pg, scope='deb', api=8008, port=5432, cluster='test'):
    data = '/var/lib/postgresql/{0}/{1}'.format(pg, cluster)
    return {
        'scope': scope, 'name': 'node1',
        'restapi': {'listen': '127.0.0.1:{0}'.format(api), 'connect_address': '127.0.0.1:{0}'.format(api)},
        'etcd3': {'hosts': '127.0.0.1:2379'},
        'bootstrap': {'dcs': {'ttl': 20, 'loop_wait': 2, 'retry_timeout': 5}},
        # each line starts with the time its record was made (µs): Patroni's logger thread writes it later
        'log': {'format': '%(created).6f %(levelname)s: %(message)s'},
        'postgresql': {
            'listen': '127.0.0.1:{0}'.format(port), 'connect_address': '127.0.0.1:{0}'.format(port), 'data_dir': data,
            'bin_dir': '/usr/lib/postgresql/{0}/bin'.format(pg), 'pgpass': '/var/lib/postgresql/{0}/pgpass'.format(pg),
            'authentication': {'superuser': {'username': 'postgres'}, 'replication': {'username': 'postgres'}},
            'pg_hba': ['local all all trust', 'host all all 127.0.0.1/32 trust',
                       'host replication all 127.0.0.1/32 trust'],
            'parameters': {'unix_socket_directories': '/var/lib/postgresql/{0}'.format(pg), 'shared_buffers': '16MB',
                           'max_connections': 20, 'fsync': 'off'},
        },
    }


def deb_for(suite):
    given = os.environ.get('SDNOTIFY_DEB_BOOKWORM' if packaging_build.BUILDS[suite] == 'bookworm' else 'SDNOTIFY_DEB')
    return os.path.join(ROOT, given) if given else build('deb', suite)


@pytest.fixture(scope='module', params=SUITES)
def tier(request):
    """The suite's proof root booted (systemd + journald), etcd started; attributes say what the suite has."""
    suite = request.param
    if os.geteuid() != 0:
        pytest.skip('needs root (chroot, mounts, namespaces)')
    started = time.monotonic()
    deb = deb_for(suite)
    root = build('proof-root', suite)
    made = time.monotonic() - started
    pg = sorted(os.listdir(os.path.join(root, 'usr', 'lib', 'postgresql')), key=int)[-1]
    debian_debs = [n for n in os.listdir(os.path.join(root, 'root', 'debs')) if n.startswith('patroni_')]
    assert len(debian_debs) == 1, debian_debs
    workdir = Workdir()
    try:
        units = {'etcd.service': etcd_unit(ETCD, os.path.join(workdir.path, 'etcd'),
                                           '/host' + os.path.join(workdir.path, 'etcd.log'))}
        dropins = {'etcd.service.d/host.conf': host_dropin()}
        instance = 'patroni@{0}-test.service'.format(pg)
        config_file = workdir.file('instance.yml', json.dumps(config(pg), indent=1))
        service_file = workdir.file('config.yml', json.dumps(config(pg, 'deb-svc', 8009, 5433, 'svc'), indent=1))
        with Systemd(workdir.path, units, dropins, root=root, journald=True, root_units=True,
                     instances=[instance, SERVICE]) as systemd:
            version = systemd.systemctl('--version').stdout.split()[1]
            systemd.suite, systemd.pg, systemd.systemd_version = suite, pg, int(version)
            systemd.instance, systemd.tag = instance, instance[:-len('.service')]
            systemd.conf = '/etc/patroni/{0}-test.yml'.format(pg)
            systemd.data = '/var/lib/postgresql/{0}/test'.format(pg)
            systemd.notify_reload = systemd.systemd_version >= 253
            systemd.deb, systemd.config_file = '/host' + deb, '/host' + config_file
            systemd.service_file = '/host' + service_file
            systemd.debian_deb = '/root/debs/' + debian_debs[0]
            systemd.debian_version = debian_debs[0].split('_')[1]
            systemd.workdir, systemd.host_deb = workdir, deb
            systemd.ours_version = subprocess.run(['dpkg-deb', '-f', deb, 'Version'], stdout=subprocess.PIPE,
                                                  universal_newlines=True, check=True, timeout=60).stdout.strip()
            assert systemd.systemctl('start', 'etcd.service').returncode == 0
            print('{0}: systemd {1}, PostgreSQL {2}, Debian\'s patroni {3}; .deb and root ready in {4:.0f} s, '
                  'booted in {5:.0f} s'.format(suite, version, pg, systemd.debian_version, made,
                                               time.monotonic() - started - made))
            yield systemd
            print('{0}: {1:.0f} s in all'.format(suite, time.monotonic() - started))
    finally:
        workdir.cleanup()


@pytest.fixture(scope='module')
def trixie_built():
    """The trixie build made (its build root has its build dependencies)."""
    if os.geteuid() != 0:
        pytest.skip('needs root (chroot, mounts)')
    return deb_for('trixie')


def sh(tier, script, timeout=300):
    """Run *script* as root in the booted root, with the PATH dpkg needs (its sbin tools)."""
    script = 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8\n' + script
    result = tier.run('/bin/sh', '-ec', script, timeout=timeout, in_root=True)
    assert result.returncode == 0, script + '\n' + result.stdout + result.stderr
    return result.stdout


def journal(tier):
    return sh(tier, 'journalctl --no-pager -o cat -t ' + tier.tag)


def entries(tier, unit):
    """The journal entries (dicts, journalctl -o json) of *unit*'s processes since its current start began
    (InactiveExitTimestampMonotonic)."""
    since = int(tier.show(unit, 'InactiveExitTimestampMonotonic')['InactiveExitTimestampMonotonic'])
    assert since > 0, unit
    out = sh(tier, 'journalctl --no-pager -o json _SYSTEMD_UNIT=' + unit)
    found = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [e for e in found if int(e['__MONOTONIC_TIMESTAMP']) >= since]


def first_cycle_entry(tier, unit, result=None):
    """The journal entry of *unit*'s first HA cycle since its start, or None: the line logging *result*, what the
    cycle did (Patroni logs it, sets it as STATUS= and only then sends READY=1), after the cycle's ``Lock owner:
    ...; I am node1``; without *result* (an unpatched Patroni has no StatusText) the line after that one."""
    lines = [e for e in entries(tier, unit) if isinstance(e.get('MESSAGE'), str)]
    for i, (before, entry) in enumerate(zip(lines, lines[1:])):
        if CYCLE.search(before['MESSAGE'] + '\n' + entry['MESSAGE']):
            if result is None:
                return entry
            return next((e for e in lines[i + 1:] if e['MESSAGE'].endswith(' INFO: ' + result)), None)
    return None


def cycle_versus_active(tier, unit, result=None):
    """When the first HA cycle's result line of *unit* was made and when journald received it, and the unit's
    ActiveEnterTimestampMonotonic: monotonic µs of this boot (the entry's _BOOT_ID is the root's). Patroni's logger
    thread writes a record after the call that made it, so journald's receipt (__MONOTONIC_TIMESTAMP; a stream has
    no _SOURCE_MONOTONIC_TIMESTAMP) can come after a READY=1 sent right behind the call: the order is the record's
    own time (the line's first field, %(created) of the configuration's log format), taken to the monotonic clock by
    the entry's own pair of clocks (__REALTIME_TIMESTAMP - __MONOTONIC_TIMESTAMP, read together by journald)."""
    entry = wait_for(lambda: first_cycle_entry(tier, unit, result), 120, 'the first HA cycle of ' + unit)
    boot = sh(tier, 'cat /proc/sys/kernel/random/boot_id').strip().replace('-', '')
    assert entry['_BOOT_ID'] == boot, (entry, boot)
    active = int(tier.show(unit, 'ActiveEnterTimestampMonotonic')['ActiveEnterTimestampMonotonic'])
    assert active > 0, unit
    received = int(entry.get('_SOURCE_MONOTONIC_TIMESTAMP') or entry['__MONOTONIC_TIMESTAMP'])
    made = re.match(r'^(\d+)\.(\d{6}) ', entry['MESSAGE'])
    assert made, entry['MESSAGE']
    offset = int(entry['__REALTIME_TIMESTAMP']) - int(entry['__MONOTONIC_TIMESTAMP'])
    created = int(made.group(1)) * 1000000 + int(made.group(2)) - offset
    return created, received, active, entry['MESSAGE']


RELOADED = 'No local configuration items changed.'  # what Patroni (3.0.2 to 4.1.5) logs for a reload it handled


def start_journal(tier, unit, since):
    """*unit*'s journal since monotonic µs *since*: (µs, whether PID 1 wrote it, message), PID 1's lines about the
    unit ("Started ...", "Reloading ...") and the unit's own processes' lines, in order."""
    # the newest entries only (a trial's start and reload log far fewer): the unit's journal grows trial by trial
    out = sh(tier, 'journalctl --no-pager -n 400 -o json _SYSTEMD_UNIT={0} + _PID=1 UNIT={0}'.format(unit))
    found = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [(int(e['__MONOTONIC_TIMESTAMP']), e.get('_PID') == '1', e['MESSAGE']) for e in found
            if int(e['__MONOTONIC_TIMESTAMP']) >= since and isinstance(e.get('MESSAGE'), str)]


def start_reload(tier):
    """`systemctl start; systemctl reload` of the instance back to back; then what became of it and the facts that
    say so (a dict: the state, the reload's exit status, the ms from PID 1's "Started" to its "Reloading" line).
    The outcome is read from the system, never assumed:

    - 'applied': the same main process, never restarted, and Patroni logged the reload (RELOADED);
    - 'killed': the main process ended by the reload's SIGHUP;
    - 'lost': alive and running Patroni with the SIGHUP blocked and pending (a reload never to be applied);
    - 'not-delivered': `systemctl reload` failed or PID 1 never ran the reload (no "Reloading" line): the trial says
      nothing about the race;
    - 'other': none of these within a minute."""
    unit = tier.instance
    script = 'systemctl start {0}; systemctl reload {0}; echo "reload $?"'.format(unit)
    result = tier.run('/bin/sh', '-c', script, in_root=True, timeout=300)
    rc = re.search(r'^reload (\d+)$', result.stdout, re.M)
    # the patched Patroni answers the reload with RELOADING=1 ... READY=1 (systemd shows 'reloading' until then)
    state = tier.wait_show(unit, lambda s: s['ActiveState'] != 'reloading', 60, 'the reload answered',
                           'ActiveState', 'SubState', 'MainPID', 'ExecMainCode', 'ExecMainStatus', 'NRestarts',
                           'Result', 'InactiveExitTimestampMonotonic')
    facts = {'state': state, 'reload rc': int(rc.group(1)) if rc else None}
    since = int(state['InactiveExitTimestampMonotonic'])

    def pid1(prefix, lines):
        return next((t for t, by_pid1, message in lines if by_pid1 and message.startswith(prefix)), None)

    def settled():
        lines = start_journal(tier, unit, since)
        started, reloading = pid1('Started ', lines), pid1('Reloading ', lines)
        if started is not None and reloading is not None:
            facts['started to reloading ms'] = round((reloading - started) / 1000.0, 1)
        if facts['reload rc'] != 0:
            return 'not-delivered'
        if reloading is None:  # journald may not have it yet: decided when the wait ends
            return None
        now = tier.show(unit, 'ActiveState', 'MainPID', 'ExecMainCode', 'ExecMainStatus', 'NRestarts')
        if (now['ExecMainCode'], now['ExecMainStatus']) == ('2', '1') and now['ActiveState'] != 'active':
            return 'killed'  # CLD_KILLED by SIGHUP
        if now['ActiveState'] != 'active' or now['NRestarts'] != '0' or now['MainPID'] != state['MainPID']:
            return None
        if any(not by_pid1 and RELOADED in message for _, by_pid1, message in lines):
            return 'applied'
        return 'lost' if sighup_lost(tier, now['MainPID']) else None
    try:
        outcome = wait_for(settled, 60, 'the trial settled', interval=0.2)
    except AssertionError:
        reloaded = any(by_pid1 and m.startswith('Reloading ') for _, by_pid1, m in start_journal(tier, unit, since))
        outcome = 'other' if reloaded else 'not-delivered'
    if outcome in ('not-delivered', 'other'):  # what PID 1 and the reload's kill said
        facts['journal'] = [m for _, _, m in start_journal(tier, unit, since)][-8:]
    return outcome, facts


def stop(tier, unit=None):
    tier.systemctl('stop', unit or tier.instance, timeout=300)
    tier.systemctl('reset-failed', unit or tier.instance)


def test_su_postgres_works_in_the_root(tier):
    """Debian's test scripts run commands as postgres with su: the root's postgres user (tests/debian_root.sh copies
    it from the machine) needs its /etc/shadow entry, or su fails ("Authentication failure")."""
    assert sh(tier, 'su postgres -c "id -un"').strip() == 'postgres'


def test_the_suites_own_stack_and_our_version_above_its_patroni(tier):
    """The root is the suite it says (its systemd, PostgreSQL, Python, Debian's patroni), and our .deb's version
    sorts above the suite's own patroni (an upgrade; the control: Debian's next revision sorts above ours)."""
    python = sh(tier, 'python3 -c "import sys; print(\'%d.%d\' % sys.version_info[:2])"').strip()
    ours = sh(tier, 'cp {0} /tmp/ours.deb && dpkg-deb -f /tmp/ours.deb Version'.format(tier.deb)).strip()
    print('{0}: systemd {1}, PostgreSQL {2}, Python {3}, Debian\'s patroni {4}; ours {5}'.format(
        tier.suite, tier.systemd_version, tier.pg, python, tier.debian_version, ours))
    assert (tier.systemd_version, tier.pg, python) == (SYSTEMD[tier.suite], POSTGRESQL[tier.suite],
                                                       PYTHON[tier.suite])
    assert tier.debian_version.startswith(DEBIAN_PATRONI[tier.suite] + '-'), tier.debian_version
    assert sh(tier, 'dpkg --compare-versions {0} gt {1} && echo above'.format(ours, tier.debian_version)) == 'above\n'
    later = later_debian_revision()
    assert sh(tier, 'dpkg --compare-versions {0} lt {1} && echo below'.format(ours, later)) == 'below\n'


def later_debian_revision():
    """Debian's next revision of the one this packaging derives from (4.1.5-2: 4.1.5-3)."""
    upstream, revision = packaging_build.DEBIAN_PATRONI.rsplit('-', 1)
    return '{0}-{1}'.format(upstream, int(revision) + 1)


def install_debians(tier):
    """Debian's own patroni of the suite installed (apt reads local files as _apt: from /tmp, not /root). The first
    time in a boot it records whether Debian's package made rc.d links for /etc/init.d/patroni there
    (tier.rc_links: the suite's update-rc.d decides)."""
    sh(tier, 'cp {0} /tmp/debian.deb\n'
             'apt-get install -y -q --no-install-recommends --allow-downgrades /tmp/debian.deb >/tmp/apt.log 2>&1 '
             '|| {{ tail -n 20 /tmp/apt.log; exit 1; }}'.format(tier.debian_deb))
    if not hasattr(tier, 'rc_links'):
        tier.rc_links = tier.run('/bin/sh', '-c', 'ls /etc/rc*.d/ | grep -q patroni', in_root=True).returncode == 0


def installed(tier):
    """The version of the patroni package installed in the root, or '' (none, or removed)."""
    status = tier.run('dpkg-query', '-W', '-f', '${Status} ${Version}', 'patroni', in_root=True).stdout
    return status[len('install ok installed '):] if status.startswith('install ok installed ') else ''


def instance_config(tier):
    """The instance's configuration in /etc/patroni (as the control test writes it), if it is not there."""
    sh(tier, 'test -f {1} || install -o postgres -g postgres -m 0640 {0} {1}'.format(tier.config_file, tier.conf))


@pytest.fixture
def debians(tier):
    """The suite's own patroni installed and the instance's configuration written, whatever ran before."""
    if installed(tier) != tier.debian_version:
        install_debians(tier)
    instance_config(tier)
    return tier


@pytest.fixture
def ours(tier):
    """Our .deb installed and the instance's configuration written, whatever ran before: every test after the
    installation test depends on this fixture, not on that test's order (run alone, it installs our .deb over
    whatever the root has; after that test, it finds ours installed and does nothing)."""
    if installed(tier) != tier.ours_version:
        install_ours(tier, '--allow-downgrades')
    sh(tier, 'test -e /tmp/ours.deb || cp {0} /tmp/ours.deb'.format(tier.deb))
    instance_config(tier)
    assert installed(tier) == tier.ours_version
    return tier


def install_ours(tier, *options):
    sh(tier, 'test -e /tmp/ours.deb || cp {0} /tmp/ours.deb\napt-get install -y -q --no-install-recommends {1} '
             '/tmp/ours.deb >/tmp/apt.log 2>&1 || {{ tail -n 20 /tmp/apt.log; exit 1; }}'.format(
                 tier.deb, ' '.join(options)))


def control_trials(tier):
    """The start+reload trials of a control: until one is 'killed' or 'lost', at most CONTROL_TRIALS; each printed
    with its facts. A trial whose reload was not delivered says nothing either way and is counted, not judged."""
    outcomes = []
    while len(outcomes) < CONTROL_TRIALS and not any(o in ('killed', 'lost') for o, _ in outcomes):
        outcomes.append(start_reload(tier))
        stop(tier)
    for outcome, facts in outcomes:
        print('  {0}: {1}'.format(outcome, {k: v for k, v in facts.items() if k != 'state'}))
    return outcomes


def test_debian_patroni_under_its_type_simple_unit_start_reload(tier):
    """The control: the suite's own patroni, its own template (Type=simple, ExecReload=/bin/kill -s HUP $MAINPID),
    the same start+reload: killed by the early SIGHUP (bookworm's 3.0.2, trixie's 4.0.7, forky's 4.1.5-2), within
    the trials. (Before the proof roots had procps, bookworm's had no /bin/kill: every reload failed, 203/EXEC, and
    the control showed nothing; start_reload() now tells such a trial apart.)"""
    install_debians(tier)
    sh(tier, 'install -o postgres -g postgres -m 0640 {0} {1}'.format(tier.config_file, tier.conf))
    assert tier.show(tier.instance, 'Type')['Type'] == 'simple'
    outcomes = control_trials(tier)
    print("{0}: Debian's patroni {1}, Type=simple: start+reload back to back: {2}".format(
        tier.suite, tier.debian_version, [o for o, _ in outcomes]))
    assert 'other' not in [o for o, _ in outcomes] and outcomes[-1][0] == 'killed', outcomes


def running_pids(tier, unit=None, data=None):
    """(Patroni's main PID, the postmaster's PID) of *unit* (the instance), as the harness's PID namespace numbers
    them."""
    main = tier.show(unit or tier.instance, 'MainPID')['MainPID']
    postmaster = sh(tier, 'head -n 1 {0}/postmaster.pid 2>/dev/null || true'.format(data or tier.data)).strip()
    return main, postmaster


def wait_running(tier, whose, api=8008, data=None):
    """Wait until a Patroni runs its PostgreSQL (postmaster.pid there, GET /patroni says running)."""
    wait_for(lambda: tier.run('test', '-f', (data or tier.data) + '/postmaster.pid', in_root=True).returncode == 0 and
             (tier.http_json('http://127.0.0.1:{0}/patroni'.format(api)) or {}).get('state') == 'running', 120,
             whose + ' running its PostgreSQL\n' + journal(tier)[-2000:])


def pid1_reloads(tier):
    """The lines PID 1 logged when a daemon-reload began, one per reload: "Reloading." (252), "Reloading..." (257,
    262; they also log "Reloading requested from client PID ...", not counted)."""
    out = sh(tier, 'journalctl --no-pager -o cat _PID=1')
    return [line for line in out.splitlines() if line in ('Reloading.', 'Reloading...')]


def test_our_deb_installs_over_debians_without_restarting_it(tier, debians):
    """Debian's Patroni running under both of its units, patroni@<pg>-test (its Type=simple template, a new cluster
    bootstrapped) and patroni.service (Debian's /etc/patroni/config.yml, a second cluster), then our .deb installed
    over it with apt: the same Patroni and postmaster processes still run (no restart on upgrade), systemd has our
    units loaded while they run (NeedDaemonReload=no: systemd reloaded during the postinst, by its own
    `systemctl daemon-reload` and by `update-rc.d patroni remove`, which runs one under systemd: the reloads PID 1
    logged during the installation are printed; the control: the unit's file touched after them makes it yes),
    the configurations are byte for byte the same, Debian's /etc/init.d/patroni and its rc.d links are gone
    (rm_conffile), everything is in Debian's places, no python3-systemd. Under Debian's Type=simple unit the first
    HA cycle comes after the unit is active (the control of the start test's order)."""
    service_data = '/var/lib/postgresql/{0}/svc'.format(tier.pg)
    sh(tier, 'install -o postgres -g postgres -m 0640 {0} {1}'.format(tier.service_file, SERVICE_CONFIG))
    before = sh(tier, 'cat {0} {1}'.format(tier.conf, SERVICE_CONFIG))
    sh(tier, 'test -f /etc/init.d/patroni')
    assert tier.systemctl('start', tier.instance).returncode == 0
    assert tier.systemctl('start', SERVICE).returncode == 0
    try:
        wait_running(tier, "Debian's Patroni")
        wait_running(tier, "Debian's patroni.service", 8009, service_data)
        cycle, received, active, line = cycle_versus_active(tier, tier.instance)
        print("{0}: Debian's Type=simple unit active, then its first cycle's line made {1} µs later (received {2} "
              "µs later): {3}".format(tier.suite, cycle - active, received - active, line))
        assert cycle > active, (cycle, active, line)
        old = running_pids(tier), running_pids(tier, SERVICE, service_data)
        assert all(main != '0' and postmaster for main, postmaster in old), old
        logged = len(pid1_reloads(tier))
        install_ours(tier)
        reloads = pid1_reloads(tier)[logged:]
        print('{0}: systemd reloaded {1} times during the installation: {2}'.format(tier.suite, len(reloads), reloads))
        assert reloads, 'no daemon-reload during the installation'
        # still the same processes: the upgrade neither stopped nor restarted Patroni, nor PostgreSQL
        assert (running_pids(tier), running_pids(tier, SERVICE, service_data)) == old
        for unit in (tier.instance, SERVICE):
            state = tier.show(unit, 'ActiveState', 'NeedDaemonReload', 'FragmentPath', 'Type')
            # the old Patroni still runs, systemd has our unit loaded already
            assert state['ActiveState'] == 'active' and state['NeedDaemonReload'] == 'no', (unit, state)
            assert state['Type'] == ('notify-reload' if tier.notify_reload else 'notify'), (unit, state)
            # Debian's unit path (bookworm's debhelper: /lib, the same directory under merged /usr)
            assert state['FragmentPath'] in [d + unit.split('@')[0].split('.')[0] + (
                '@.service' if '@' in unit else '.service') for d in UNIT_DIRS], (unit, state)
        # the control: the template's file touched after systemd loaded it, without a daemon-reload
        fragment = tier.show(tier.instance, 'FragmentPath')['FragmentPath']
        sh(tier, 'touch -d "+1 minute" ' + fragment)
        assert tier.show(tier.instance, 'NeedDaemonReload')['NeedDaemonReload'] == 'yes'
        sh(tier, 'touch -d "-1 minute" {0} && systemctl daemon-reload'.format(fragment))
    finally:
        stop(tier)
        stop(tier, SERVICE)
    version = sh(tier, "dpkg-query -W -f '${Version}' patroni")
    assert re.match(r'^{0}\+sdnotify\d+(~deb12u1)?$'.format(re.escape(packaging_build.DEBIAN_PATRONI)), version), \
        version
    assert sh(tier, 'cat {0} {1}'.format(tier.conf, SERVICE_CONFIG)) == before
    sh(tier, 'rm {0}'.format(SERVICE_CONFIG))
    # Debian's init script went with the upgrade (rm_conffile: unchanged, so deleted), and its rc.d links
    sh(tier, 'test ! -e /etc/init.d/patroni && test ! -e /etc/init.d/patroni.dpkg-bak'
             ' && ! ls /etc/rc*.d/ 2>/dev/null | grep -q patroni')
    print('{0}: /etc/init.d/patroni removed on the upgrade, and its rc.d links ({1} before)'.format(
        tier.suite, 'there' if tier.rc_links else 'none'))
    assert 'python3-systemd' not in sh(tier, "dpkg-query -W -f '${Depends} ${Recommends}' patroni")
    # a DCS client is one of Depends' alternatives, python3-consul no hard dependency (debian/py3dist-overrides)
    groups = [g.strip() for g in sh(tier, "dpkg-query -W -f '${Depends}' patroni").split(',')]
    assert [g for g in groups if 'python3-consul' in g] == [g for g in groups if g.startswith('python3-etcd ')] \
        and len([g for g in groups if 'python3-consul' in g]) == 1, groups
    if 'python3-systemd' not in sh(tier, 'dpkg-deb -f {0} Depends'.format(tier.debian_deb)):
        assert tier.run('dpkg-query', '-W', 'python3-systemd', in_root=True).returncode != 0
        assert tier.run('python3', '-c', 'import systemd', in_root=True).returncode != 0
    # Debian's places: units, console scripts, docs (NEWS.Debian says: no restart on upgrade)
    sh(tier, 'test -x /usr/bin/patroni && test -x /usr/bin/patronictl'
             ' && test -f /usr/lib/systemd/system/patroni.service'
             ' && zgrep -q "does not stop, start or restart Patroni" /usr/share/doc/patroni/NEWS.Debian.gz'
             ' && ls /usr/share/doc/patroni/README.Debian*'
             ' && test -f /usr/share/doc/patroni/examples/early-sighup.conf'
             ' && test ! -e /usr/share/doc/patroni/examples/notify-reload.conf'
             ' && test -f /usr/share/doc/patroni/examples/hardening.conf')
    # Debian's postgresql-common integration is still there (configurations made by pg_createconfig_patroni call it)
    sh(tier, 'test -x /usr/bin/pg_createconfig_patroni && test -x /usr/share/patroni/pg_createcluster_patroni'
             ' && test -x /usr/share/patroni/pg_clonecluster_patroni && test -f /etc/patroni/config.yml.in'
             ' && test -f /etc/patroni/dcs.yml && dpkg -S /usr/share/patroni/pg_clonecluster_patroni'
             ' | grep -q "^patroni: "')
    # its DCS example is ours, etcd's v3 API (Debian's: ZooKeeper); Debian's, unmodified, replaced by dpkg
    sh(tier, 'grep -q "^etcd3:" /etc/patroni/dcs.yml && ! grep -q "^zookeeper:" /etc/patroni/dcs.yml')
    # needrestart (if the admin installs it) leaves Patroni's units unselected: a conffile of ours
    sh(tier, 'grep -qx /etc/needrestart/conf.d/patroni.conf /var/lib/dpkg/info/patroni.conffiles')
    # patroni.service reads Debian's /etc/patroni/config.yml, named once
    unit = sh(tier, 'cat /usr/lib/systemd/system/patroni.service')
    assert 'Environment=PATRONI_CONFIG_FILE=/etc/patroni/config.yml\n' in unit and 'patroni.yml' not in unit, unit
    # the template loaded without a manual daemon-reload, keeping what Debian's template gives an instance
    state = tier.show(tier.instance, 'Type', 'FragmentPath', 'SyslogIdentifier', 'EnvironmentFiles',
                      'RuntimeDirectory', 'ConditionResult', 'User', 'ExecStart', 'ExecReload', 'NotifyAccess',
                      'Environment')
    if tier.notify_reload:
        # systemd >= 253: the reload is systemd's own (SIGHUP, then it waits for READY=1), no ExecReload=
        assert state['Type'] == 'notify-reload' and state.get('ExecReload', '') == '', state
    else:
        # bookworm's build: Type=notify, the reload waited for by patroni_systemd_reload
        assert state['Type'] == 'notify' and 'path=/usr/bin/patroni_systemd_reload ;' in state['ExecReload'], state
    assert state['FragmentPath'] in [d + 'patroni@.service' for d in UNIT_DIRS], state
    assert 'PATRONI_CONFIG_FILE={0}'.format(tier.conf) in state['Environment'], state
    assert state['SyslogIdentifier'] == tier.tag and state['User'] == 'postgres', state
    # one EnvironmentFiles= line per file: Debian's shared env.conf first
    files = sh(tier, 'systemctl show -p EnvironmentFiles ' + tier.instance).splitlines()
    assert files[0] == 'EnvironmentFiles=/etc/patroni/env.conf (ignore_errors=yes)', files
    assert state['RuntimeDirectory'] == 'postgresql/{0}-test.pg_stat_tmp'.format(tier.pg), state
    assert 'path=/usr/bin/patroni ; argv[]=/usr/bin/patroni ${PATRONI_CONFIG_FILE}' in state['ExecStart'], state
    # and nothing started it again
    assert tier.show(tier.instance, 'ActiveState')['ActiveState'] == 'inactive'


def test_start_is_ready_after_the_first_ha_cycle_in_the_journal(tier, ours):
    """`systemctl start` returns once READY=1 came, which Patroni sends after its first HA cycle: the cycle's line
    is in the journal under the unit's tag, made (its record's time on the monotonic clock, same boot: see
    cycle_versus_active) before the unit's ActiveEnterTimestampMonotonic. The control (in
    test_our_deb_installs_over_debians_without_restarting_it): under Debian's Type=simple unit the same comparison
    puts the first cycle after. Our Patroni never loads
    python3-systemd (the control: python3 importing it maps its _daemon module, which the check looks for)."""
    result = tier.systemctl('start', tier.instance, timeout=300)
    try:
        assert result.returncode == 0, result.stderr + tier.run(
            'journalctl', '--no-pager', '-n', '60', in_root=True).stdout + tier.systemctl(
            'status', 'systemd-journald.service').stdout
        # what the first cycle did, as Patroni set it right before READY=1 (read before a second cycle sets another)
        status = tier.show(tier.instance, 'StatusText')['StatusText']
        assert status, status
        cycle, received, active, line = cycle_versus_active(tier, tier.instance, status)
        print('{0}: the first cycle\'s line made {1} µs before the unit was active (received by journald {2} µs '
              'before): {3}'.format(tier.suite, active - cycle, active - received, line))
        assert cycle < active, (cycle, received, active, line)
        # under the unit's journal tag
        assert CYCLE.search(journal(tier)), journal(tier)[-3000:]
        state = tier.show(tier.instance, 'ActiveState', 'SubState', 'StatusText', 'NRestarts', 'MainPID')
        assert state['ActiveState'] == 'active' and state['SubState'] == 'running', state
        assert state['StatusText'], state
        print('StatusText={0}'.format(state['StatusText']))
        maps = sh(tier, 'cat /proc/{0}/maps'.format(state['MainPID']))
        assert 'python3' in maps and 'systemd/_daemon' not in maps, state
        if tier.run('dpkg-query', '-W', 'python3-systemd', in_root=True).returncode == 0:
            control = sh(tier, 'python3 -c "import systemd.daemon; print(open(\'/proc/self/maps\').read())"')
            assert 'systemd/_daemon' in control
        else:
            assert tier.run('python3', '-c', 'import systemd', in_root=True).returncode != 0
    finally:
        stop(tier)


def test_start_reload_back_to_back_survives(tier, ours):
    """Ours under its own units (Type=notify-reload on 257 and 262; Type=notify with patroni_systemd_reload on 252):
    every start+reload back to back ends with the reload applied by the same, never restarted, process (the controls
    above and below: Debian's patroni and upstream's 4.1.5 under Type=simple are killed in the same root)."""
    outcomes = []
    for _ in range(TRIALS):
        outcomes.append(start_reload(tier))
        stop(tier)
    print('{0}: patroni sdnotify, Type={1}: start+reload back to back: {2}; started to reloading (ms): {3}'.format(
        tier.suite, 'notify-reload' if tier.notify_reload else 'notify', [o for o, _ in outcomes],
        [f.get('started to reloading ms') for _, f in outcomes]))
    for outcome, facts in outcomes:  # what PID 1, the reload's command and Patroni said of a trial not applied
        if outcome != 'applied':
            print('  {0}: {1}'.format(outcome, {k: v for k, v in facts.items() if k != 'state'}))
    assert [o for o, _ in outcomes] == ['applied'] * TRIALS, [f for _, f in outcomes]


# upstream's Patroni (the pinned sdist, unpatched) under the installed template made as Debian's: Type=simple, the
# reload a plain SIGHUP, no restart
UPSTREAM = '/opt/upstream'
UPSTREAM_DROPIN = """[Service]
Type=simple
Environment=PYTHONPATH={path}
ExecStart=
ExecStart=/usr/bin/python3 -m patroni ${{PATRONI_CONFIG_FILE}}
ExecReload=
ExecReload=/bin/kill -s HUP $MAINPID
Restart=no
"""


def sighup_lost(tier, pid):
    """Whether process *pid* of the root, once it runs Patroni (exec done), has SIGHUP blocked and pending: a
    SIGHUP that reached it while systemd still held it blocked, which an unpatched Patroni never unblocks (the
    reload is never applied). False if the process ended first."""
    def execed():
        result = tier.run('cat', '/proc/{0}/cmdline'.format(pid), in_root=True)
        return 'gone' if result.returncode != 0 else 'patroni' in result.stdout and 'execed'
    if wait_for(execed, 30, 'process {0} running Patroni'.format(pid)) == 'gone':
        return False
    return sighup_blocked_and_pending(tier.run('cat', '/proc/{0}/status'.format(pid), in_root=True).stdout)


def test_upstream_patroni_under_a_type_simple_unit_loses_start_reload(tier, ours):
    """The positive control of the start+reload trials with the pinned version itself: upstream's Patroni 4.1.5
    (the sdist unpacked, unpatched: no patroni.systemd; run by the suite's python3 with the suite's packages) under
    the installed template with a drop-in that makes it what Debian's is (Type=simple, ExecReload=/bin/kill -s HUP
    $MAINPID, Restart=no): start+reload back to back until a trial kills it ('killed') or leaves its SIGHUP blocked
    and pending for ever ('lost'), at most CONTROL_TRIALS; killed in every suite."""
    sdist = packaging_build.sdist_and_series(packaging_build.pin())[0]
    path = '{0}/patroni-{1}'.format(UPSTREAM, packaging_build.pin().version)
    dropin = '/etc/systemd/system/patroni@.service.d/zz-upstream.conf'
    sh(tier, 'rm -rf {0} && mkdir -p {0} && tar xzf /host{1} -C {0}'.format(UPSTREAM, sdist))
    imported = sh(tier, 'cd / && PYTHONPATH={0} python3 -c "import patroni, patroni.version; '
                        'print(patroni.__file__, patroni.version.__version__)"; '
                        'cd / && ! PYTHONPATH={0} python3 -c "import patroni.systemd" 2>/dev/null'.format(path))
    assert imported.split() == [path + '/patroni/__init__.py', packaging_build.pin().version], imported
    sh(tier, "mkdir -p {0} && cat >{1} <<'EOF'\n{2}EOF\nsystemctl daemon-reload".format(
        os.path.dirname(dropin), dropin, UPSTREAM_DROPIN.format(path=path)))
    outcomes = []
    try:
        assert tier.show(tier.instance, 'Type')['Type'] == 'simple'
        outcomes = control_trials(tier)
    finally:
        stop(tier)
        sh(tier, 'rm -f {0} && systemctl daemon-reload'.format(dropin))
        # a postmaster a killed Patroni left behind (KillMode=process) would hold the port of the next tests
        sh(tier, 'pid=$(head -n 1 {0}/postmaster.pid 2>/dev/null || true); if [ -n "$pid" ] && kill -0 "$pid" '
                 '2>/dev/null; then su postgres -c "/usr/lib/postgresql/{1}/bin/pg_ctl -D {0} -m fast -w stop"; '
                 'fi'.format(tier.data, tier.pg))
    print("{0}: upstream's Patroni {1}, Type=simple: start+reload back to back: {2}".format(
        tier.suite, packaging_build.pin().version, [o for o, _ in outcomes]))
    assert 'other' not in [o for o, _ in outcomes] and outcomes[-1][0] in ('killed', 'lost'), outcomes


def psql(tier, query, port=5432):
    return sh(tier, 'psql -h 127.0.0.1 -p {0} -U postgres -d postgres -XAtc "{1}"'.format(port, query)).strip()


def test_systemctl_reload_returns_with_the_new_value_in_effect(tier, ours):
    """work_mem 7MB written into the instance's file, then `systemctl reload`: when it returns, PostgreSQL says
    7MB (systemd >= 253: systemd's notify-reload waits for Patroni's READY=1; bookworm: patroni_systemd_reload
    waits for the REST API's answer). The control: 4MB before the reload, with the file already changed."""
    original = sh(tier, 'cat ' + tier.conf)
    changed = json.loads(original)
    changed['postgresql']['parameters']['work_mem'] = '7MB'
    changed_file = '/host' + tier.workdir.file('changed.yml', json.dumps(changed, indent=1))
    assert tier.systemctl('start', tier.instance, timeout=300).returncode == 0
    try:
        wait_running(tier, 'our Patroni')
        sh(tier, 'install -o postgres -g postgres -m 0640 {0} {1}'.format(changed_file, tier.conf))
        assert psql(tier, 'SHOW work_mem') == '4MB'
        started = time.monotonic()
        reload = tier.systemctl('reload', tier.instance, timeout=120)
        took = time.monotonic() - started
        assert reload.returncode == 0, reload.stderr
        assert psql(tier, 'SHOW work_mem') == '7MB'
        print('{0}: systemctl reload returned after {1:.2f} s, work_mem 7MB in effect'.format(tier.suite, took))
    finally:
        sh(tier, 'install -o postgres -g postgres -m 0640 {0} {1}'.format(tier.config_file, tier.conf))
        stop(tier)
    assert sh(tier, 'cat ' + tier.conf) == original


def patroni_argv(tier, unit):
    """The command line of *unit*'s main process (Patroni), as a list."""
    pid = tier.show(unit, 'MainPID')['MainPID']
    return tier.run('cat', '/proc/{0}/cmdline'.format(pid), in_root=True).stdout.split('\0')[:-1]


@pytest.mark.parametrize('which', ['instance', 'service'])
def test_every_example_starts_patroni_on_the_packages_units(tier, ours, which):
    """Each drop-in of /usr/share/doc/patroni/examples, installed as its README says, on each unit of the package:
    the unit starts Patroni on the unit's own configuration file, and a reload is applied. The control: without
    that file the start is skipped (ExecCondition=, as Debian's ConditionPathExists=), nothing runs."""
    unit, config = (tier.instance, tier.conf) if which == 'instance' else (SERVICE, SERVICE_CONFIG)
    template = unit.split('@')[0] + ('@' if '@' in unit else '') + '.service'
    examples = sh(tier, 'ls /usr/share/doc/patroni/examples/').split()
    # hardening.conf: test_example_hardening_runs_debians_layout_unchanged (it needs Debian's paths, and /tmp back)
    dropins = [name for name in examples if name.endswith('.conf') and name != 'hardening.conf']
    assert dropins == ['early-sighup.conf'] and 'hardening.conf' in examples, examples
    if config != tier.conf:
        sh(tier, 'install -o postgres -g postgres -m 0640 {0} {1}'.format(tier.conf, config))
    try:
        for name in dropins:
            sh(tier, 'mkdir -p /etc/systemd/system/{0}.d && cp /usr/share/doc/patroni/examples/{1} '
                     '/etc/systemd/system/{0}.d/ && systemctl daemon-reload'.format(template, name))
            try:
                result = tier.systemctl('start', unit, timeout=300)
                assert result.returncode == 0, result.stderr + journal(tier)[-2000:]
                argv = patroni_argv(tier, unit)
                assert argv[-2:] == ['/usr/bin/patroni', config], argv
                reload = tier.systemctl('reload', unit, timeout=60)
                assert reload.returncode == 0 and tier.show(unit, 'ActiveState')['ActiveState'] == 'active', reload
                print('{0} with {1}: {2}'.format(unit, name, ' '.join(argv)))
            finally:
                stop_unit(tier, unit)
                sh(tier, 'rm /etc/systemd/system/{0}.d/{1} && systemctl daemon-reload'.format(template, name))
        sh(tier, 'mv {0} {0}.away'.format(config))
        try:
            start = tier.systemctl('start', unit, timeout=60)
            state = tier.show(unit, 'ActiveState', 'MainPID')
            assert start.returncode == 0 and state == {'ActiveState': 'inactive', 'MainPID': '0'}, state
            skipped = tier.run('journalctl', '--no-pager', '-o', 'cat', '-u', unit, in_root=True).stdout
            assert "Skipped due to 'exec-condition'." in skipped, skipped[-2000:]
        finally:
            sh(tier, 'mv {0}.away {0}'.format(config))
    finally:
        if config != tier.conf:
            sh(tier, 'rm -f ' + config)


def stop_unit(tier, unit):
    tier.systemctl('stop', unit, timeout=300)
    tier.systemctl('reset-failed', unit)


def test_example_hardening_runs_debians_layout_unchanged(tier, ours):
    """Issue 26 on a Debian system: the package's example hardening.conf, copied as it is into patroni@.service.d/
    (no ReadWritePaths= added: data, pgpass and socket are in /var/lib/postgresql, which it lists), under Debian's
    systemd 257. The instance starts sandboxed (NoNewPrivs, a seccomp filter, no capabilities), leads and serves a
    write, stops cleanly. PrivateTmp= pulls in the suite's tmp.mount (RequiresMountsFor=/tmp): a booted trixie has it
    mounted already, this root not, so it is stopped again at the end (a tmpfs over /tmp hid the .deb that the
    later tests install from /tmp)."""
    dropin = '/etc/systemd/system/patroni@.service.d/hardening.conf'
    install = 'mkdir -p {0} && cp /usr/share/doc/patroni/examples/hardening.conf {1} && systemctl daemon-reload'
    tmp_mount = tier.show('tmp.mount', 'ActiveState')['ActiveState']
    sh(tier, install.format(os.path.dirname(dropin), dropin))
    before = len(journal(tier))
    try:
        sandbox = tier.show(tier.instance, 'ProtectSystem', 'PrivateTmp')
        assert sandbox == {'ProtectSystem': 'strict', 'PrivateTmp': 'yes'}, sandbox
        result = tier.systemctl('start', tier.instance, timeout=300)
        assert result.returncode == 0, result.stderr + journal(tier)[before:]
        wait_for(lambda: (tier.http_json('http://127.0.0.1:8008/patroni') or {}).get('role') == 'primary'
                 and tier.http_json('http://127.0.0.1:8008/patroni').get('state') == 'running', 60,
                 'the sandboxed instance leading\n' + journal(tier)[before:][-3000:])
        main = tier.show(tier.instance, 'MainPID')['MainPID']
        status = sh(tier, 'grep -E "^(NoNewPrivs|Seccomp|CapBnd):" /proc/{0}/status'.format(main))
        fields = dict(line.split(':\t') for line in status.splitlines())
        assert fields == {'NoNewPrivs': '1', 'Seccomp': '2', 'CapBnd': '0' * 16}, status
        sh(tier, 'psql -h 127.0.0.1 -U postgres -d postgres -XAtc "CREATE TABLE IF NOT EXISTS sandboxed AS '
                 'SELECT 1 AS i; CHECKPOINT"')
        stop_result = tier.systemctl('stop', tier.instance, timeout=300)
        assert stop_result.returncode == 0, stop_result.stderr
        assert tier.show(tier.instance, 'Result') == {'Result': 'success'}
        print('the example hardening.conf on Debian {0} (systemd {1}): started, led, wrote, stopped cleanly'.format(
            tier.suite, tier.systemd_version))
    finally:
        stop(tier)
        sh(tier, 'rm -f {0} && systemctl daemon-reload'.format(dropin))
        if tmp_mount != 'active':
            tier.systemctl('stop', 'tmp.mount')
        assert tier.show('tmp.mount', 'ActiveState')['ActiveState'] == tmp_mount


def test_downgrade_to_debians_brings_its_init_script_back(tier, ours):
    """Our .deb removed Debian's /etc/init.d/patroni (rm_conffile, test_our_deb_installs_over_debians_...); a
    downgrade to the suite's own patroni brings it back with its rc.d links, and installing ours again removes
    them again (the control: the same check that sees them gone sees them there)."""
    sh(tier, 'test ! -e /etc/init.d/patroni')
    install_debians(tier)
    assert sh(tier, "dpkg-query -W -f '${Version}' patroni") == tier.debian_version
    back = tier.run('/bin/sh', '-c', 'test -f /etc/init.d/patroni' + (
        ' && ls /etc/rc*.d/ | grep -q patroni' if tier.rc_links else ''), in_root=True)
    install_ours(tier)
    sh(tier, 'test ! -e /etc/init.d/patroni && ! ls /etc/rc*.d/ 2>/dev/null | grep -q patroni')
    print('{0}: downgrade to {1}: /etc/init.d/patroni {2}; ours again: gone'.format(
        tier.suite, tier.debian_version, 'back' if back.returncode == 0 else 'NOT back'))
    assert back.returncode == 0, back.stdout + back.stderr


# apt with only the test's two local archives (file:, made with apt-ftparchive in the root) and lists of its own:
# the root's own sources (its mirror, unreachable from the harness) are left alone
PIN_APT = ('-o Dir::Etc::SourceList=/srv/pin/sources.list -o Dir::Etc::SourceParts=/nonexistent '
           '-o Dir::State::Lists=/srv/pin/lists -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=')
PIN_ARCHIVES = """rm -rf /srv/pin && mkdir -p /srv/pin/ours /srv/pin/debian /srv/pin/lists/partial
cp /tmp/ours.deb /srv/pin/ours/
# a later Debian revision: the suite's own patroni .deb with only its version changed
rm -rf /tmp/later && dpkg-deb -R {debian_deb} /tmp/later
sed -i 's/^Version: .*/Version: {later}/' /tmp/later/DEBIAN/control
dpkg-deb -b /tmp/later /srv/pin/debian/patroni_{later}_all.deb >/dev/null
for a in ours:patroni-sdnotify debian:Debian; do
    cd /srv/pin/${{a%%:*}}
    apt-ftparchive packages . >Packages
    apt-ftparchive -o APT::FTPArchive::Release::Origin=${{a#*:}} -o APT::FTPArchive::Release::Label=${{a#*:}} \\
        -o APT::FTPArchive::Release::Suite={suite} release . >/tmp/Release
    mv /tmp/Release Release
done
printf 'deb [trusted=yes] file:/srv/pin/ours ./\\ndeb [trusted=yes] file:/srv/pin/debian ./\\n' >/srv/pin/sources.list
apt-get {apt} update -qq
"""
# what docs/packaging.md and README.Debian tell administrators to write (our archive's Origin)
PIN = 'Package: patroni\nPin: release o=patroni-sdnotify\nPin-Priority: 995\n'


def test_apt_pin_keeps_ours_against_a_later_debian_revision(tier, ours):
    """Two local apt archives made in the root with apt-ftparchive: ours (Origin patroni-sdnotify, our .deb) and
    "Debian" (Origin Debian, the suite's patroni as Debian's next revision, 4.1.5-3, which sorts above ours). With
    the pin of docs/packaging.md in /etc/apt/preferences.d, `apt-get dist-upgrade` keeps ours; without it (the
    control) Debian's replaces it. Ours is installed again at the end."""
    later = later_debian_revision()
    ours = sh(tier, "dpkg-query -W -f '${Version}' patroni")
    assert sh(tier, 'dpkg --compare-versions {0} lt {1} && echo below'.format(ours, later)) == 'below\n'
    sh(tier, PIN_ARCHIVES.format(debian_deb=tier.debian_deb, later=later, suite=tier.suite, apt=PIN_APT))
    upgrade = 'apt-get {0} -y -q dist-upgrade >/tmp/apt.log 2>&1 || {{ tail -n 20 /tmp/apt.log; exit 1; }}\n' \
              "dpkg-query -W -f '${{Version}}' patroni".format(PIN_APT)
    try:
        sh(tier, "cat >/etc/apt/preferences.d/patroni-sdnotify <<'EOF'\n{0}EOF".format(PIN))
        policy = sh(tier, 'apt-cache {0} policy patroni'.format(PIN_APT))
        pinned = sh(tier, upgrade)
        sh(tier, 'rm /etc/apt/preferences.d/patroni-sdnotify')
        unpinned = sh(tier, upgrade)
        print('{0}: with the pin dist-upgrade kept {1}; without it installed {2}\n{3}'.format(
            tier.suite, pinned, unpinned, policy))
        assert pinned == ours, policy
        assert unpinned == later, policy
    finally:
        sh(tier, 'rm -rf /srv/pin /tmp/later /etc/apt/preferences.d/patroni-sdnotify')
        install_ours(tier, '--allow-downgrades')
    assert sh(tier, "dpkg-query -W -f '${Version}' patroni") == ours


def autopkgtest_control(path):
    """The paragraphs of a debian/tests/control (deb822): dicts of lower-cased field names, continuations joined."""
    paragraphs, current, field = [], {}, None
    with open(path) as f:
        for line in f.read().splitlines() + ['']:
            if line.startswith('#'):
                continue
            if not line.strip():
                if current:
                    paragraphs.append(current)
                current = {}
            elif line[0] in ' \t':
                current[field] += ' ' + line.strip()
            else:
                field, value = line.split(':', 1)
                field = field.lower()
                current[field] = value.strip()
    return paragraphs


def autopkgtest(tier, source, name, restrictions):
    """Run the test *name* of the unpacked source *source* (a path of the machine) as autopkgtest runs it: as root,
    from the source's root, AUTOPKGTEST_TMP a fresh directory. Returns (None if it passed, else why; its output)."""
    tmp = sh(tier, 'mktemp -d /tmp/autopkgtest.XXXXXX').strip()
    started = time.monotonic()
    result = tier.run('env', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root',
                      'DEBIAN_FRONTEND=noninteractive', 'AUTOPKGTEST_TMP=' + tmp, '/bin/sh', '-c',
                      'cd "$1" && exec "debian/tests/$2"', 'sh', '/host' + source, name, timeout=600, in_root=True)
    print('autopkgtest {0} ({1}): exit {2}, {3:.1f} s\n{4}'.format(
        name, ' '.join(restrictions), result.returncode, time.monotonic() - started, result.stdout))
    if result.returncode != 0:
        return 'exit {0}\n{1}\n{2}'.format(result.returncode, result.stdout, result.stderr), result.stdout
    if result.stderr and 'allow-stderr' not in restrictions:
        return 'stderr: ' + result.stderr, result.stdout
    return None, result.stdout


def test_autopkgtests_pass_against_the_installed_package(tier, ours):
    """The source package's debian/tests, run as autopkgtest runs them, in the booted root with our .deb installed:
    the .dsc unpacked (dpkg-source -x, the series applied), every Depends of a test installed (``@``: patroni),
    each script run as root from the unpacked source's root with AUTOPKGTEST_TMP a fresh directory, failing on a
    non-zero exit or, unless ``allow-stderr``, on output to stderr. The control: a script of our own in the same
    tree sees that directory and that root, and fails on a line to stderr unless it has allow-stderr."""
    deb = os.path.basename(tier.host_deb)
    dsc = os.path.join(os.path.dirname(tier.host_deb), deb[:-len('_all.deb')] + '.dsc')
    source = os.path.join(tier.workdir.path, 'source')
    subprocess.run(['dpkg-source', '--no-check', '-x', dsc, source], stdout=subprocess.DEVNULL, check=True,
                   timeout=120)
    tests = autopkgtest_control(os.path.join(source, 'debian', 'tests', 'control'))
    names = [name for paragraph in tests for name in paragraph['tests'].split()]
    assert names == ['installed', 'cluster'], names
    for paragraph in tests:
        for group in paragraph.get('depends', '@').split(','):
            alternatives = ['patroni' if a.strip() == '@' else a.split('(')[0].strip() for a in group.split('|')]
            assert any(tier.run('dpkg-query', '-W', '-f', '${Status}', a, in_root=True).stdout ==
                       'install ok installed' for a in alternatives), (paragraph['tests'], group)
        restrictions = paragraph.get('restrictions', '').replace(',', ' ').split()
        for name in paragraph['tests'].split():
            failure, _ = autopkgtest(tier, source, name, restrictions)
            assert failure is None, name + ': ' + failure
    control = os.path.join(source, 'debian', 'tests', 'sdnotify-control')
    with open(control, 'w') as f:
        f.write('#!/bin/sh\nset -e\ntest -f debian/tests/control\necho "tmp=$(ls -A "$AUTOPKGTEST_TMP" | wc -l) '
                'uid=$(id -u)"\necho noise >&2\n')
    os.chmod(control, 0o755)
    assert autopkgtest(tier, source, 'sdnotify-control', []) == ('stderr: noise\n', 'tmp=0 uid=0\n')
    assert autopkgtest(tier, source, 'sdnotify-control', ['allow-stderr']) == (None, 'tmp=0 uid=0\n')


def test_remove_stops_a_running_instance_and_keeps_configuration_and_data(tier, ours):
    """`apt remove` under a running instance stops it (as Debian's prerm stops patroni), leaving /etc/patroni and
    the data directory. The control: a reinstallation of the same .deb (the old prerm runs with "upgrade") leaves
    the same Patroni and postmaster running."""
    assert tier.systemctl('start', tier.instance, timeout=300).returncode == 0
    wait_running(tier, 'our Patroni')
    running = running_pids(tier)
    assert running[0] != '0' and running[1], running
    try:
        sh(tier, 'apt-get install -y -q --reinstall /tmp/ours.deb >/tmp/apt.log 2>&1 '
                 '|| { tail -n 20 /tmp/apt.log; exit 1; }')
        assert running_pids(tier) == running
        assert tier.show(tier.instance, 'ActiveState')['ActiveState'] == 'active'
        sh(tier, 'apt-get remove -y -q patroni >/tmp/apt.log 2>&1 || { tail -n 20 /tmp/apt.log; exit 1; }')
        state = tier.show(tier.instance, 'ActiveState', 'MainPID', 'Result')
        assert state['ActiveState'] == 'inactive' and state['MainPID'] == '0', state
        # Patroni stopped its PostgreSQL: no postmaster.pid left, the postmaster gone
        sh(tier, 'test ! -e {0}/postmaster.pid && ! kill -0 {1} 2>/dev/null'.format(tier.data, running[1]))
    finally:
        stop(tier)
    assert tier.run('test', '-e', '/usr/bin/patroni', in_root=True).returncode != 0
    sh(tier, 'test -f {0} && test -f {1}/PG_VERSION'.format(tier.conf, tier.data))


def test_missing_build_dependency_is_one_line(trixie_built):
    """A Build-Depends that trixie cannot satisfy: one line naming it, and the build root's record of what it holds
    unchanged (nothing installed). The control: the real Build-Depends, satisfied (the fixture built the .deb)."""
    stamp = os.path.join(packaging_build.BUILD_ROOT, '.sdnotify-build-depends')
    with open(stamp) as f:
        before = f.read()
    depends = packaging_build.build_depends(packaging_build.read(os.path.join(ROOT, 'packaging', 'debian',
                                                                              'control')))
    with pytest.raises(packaging_build.Error) as failure:
        packaging_build.build_root(depends + ', python3-sdnotify-no-such-package', packaging_build.BUILD)
    message = str(failure.value)
    assert '\n' not in message and message.startswith('missing build dependency'), message
    assert 'python3-sdnotify-no-such-package' in message, message
    with open(stamp) as f:
        assert f.read() == before


def test_build_log_says_what_dh_auto_test_ran_and_what_it_could_not(trixie_built):
    """dh_auto_test ran upstream's unit tests the sdist can run (the series' tests/test_systemd.py among them,
    tests/test_aws.py with boto3, tests/test_async_executor.py last) and passed; the log names the files it could
    not run and why (upstream's tests/__init__.py, which the sdist lacks)."""
    with open(os.path.join(os.path.dirname(trixie_built), 'build.log')) as f:
        log = f.read()
    ran = re.search(r"^dh_auto_test: upstream's unit tests, (\d+) files: (.*)$", log, re.M)
    not_run = re.search(r"^dh_auto_test: not run, (\d+) files that import upstream's tests/__init__.py, which the "
                        r"sdist lacks \(make upstream-suite runs them\): (.*)$", log, re.M)
    assert ran and not_run, log[-3000:]
    files, left = ran.group(2).split(), not_run.group(2).split()
    assert len(files) == int(ran.group(1)) and len(left) == int(not_run.group(1)), (files, left)
    assert {'test_systemd.py', 'test_aws.py', 'test_postmaster.py'} <= set(files), files
    assert files[-1] == 'test_async_executor.py' and not set(files) & set(left), (files, left)
    # pytest -q's last line: "1234 passed, 5 warnings in 60.1s" (failures and errors would be counted there)
    summary = re.findall(r'^(?:\d+ \w+, )*\d+ passed.* in [\d.]+s.*$', log, re.M)
    assert len(summary) == 1 and 'failed' not in summary[0] and 'error' not in summary[0], summary or log[-2000:]
    print('dh_auto_test: {0} files, {1}; not run: {2} files'.format(len(files), summary[0], len(left)))
