"""The .deb of `make deb` where it runs: Debian trixie booted as PID 1 (systemd 257) with systemd-journald, Debian's
own patroni 4.0.7 installed first with an instance configuration in /etc/patroni, then ours over it with apt.

The root is .cache/trixie-proof (packaging/build.py proof-root: PostgreSQL 17, as trixie has no 15, and Debian's
patroni's dependencies, installed; Debian's patroni .deb downloaded), booted through an overlay whose upper layer
lives in this run's directory: the cached roots are never changed. etcd 3.4 is the machine's (RootDirectory=/host).
Part of `make test`, and alone `make test-deb`: 2 min 18 s on a fresh machine (the build root, the proof root and
the .deb made, their .debs downloaded), ~1 min 45 s once cached (the .deb is built each time, ~55 s);
SDNOTIFY_DEB=build/deb/patroni_..._all.deb uses a .deb already built. The source package's autopkgtests
(packaging/debian/tests) run here too, in the same boot, as autopkgtest runs them: ~14 s of that.
Skipped, saying why, when the Debian mirror cannot be used.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from realparts import ETCD, ROOT, wait_for, Workdir
from systemd_harness import etcd_unit, host_dropin, Systemd

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

INSTANCE = 'patroni@17-test.service'
CONFIG = '/etc/patroni/17-test.yml'
DATA = '/var/lib/postgresql/17/test'
TRIALS = int(os.environ.get('SDNOTIFY_DEB_TRIALS', '10'))
CONTROL_TRIALS = 3
# the result of an HA cycle, as Patroni logs it: ``INFO: <what it did>`` after ``Lock owner: ...; I am node1``
CYCLE = re.compile(r'INFO: Lock owner: .*; I am node1\n.*INFO: (?!Lock owner)(.+)')


def build(what):
    result = subprocess.run(['/usr/bin/python3', os.path.join(ROOT, 'packaging', 'build.py'), what], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=1500)
    if result.returncode == 2:
        pytest.skip('the Debian mirror cannot be used: ' + result.stderr.strip())
    assert result.returncode == 0, result.stderr
    return os.path.join(ROOT, result.stdout.strip().splitlines()[-1])


def config():
    return {
        'scope': 'deb', 'name': 'node1',
        'restapi': {'listen': '127.0.0.1:8008', 'connect_address': '127.0.0.1:8008'},
        'etcd3': {'hosts': '127.0.0.1:2379'},
        'bootstrap': {'dcs': {'ttl': 20, 'loop_wait': 2, 'retry_timeout': 5}},
        'postgresql': {
            'listen': '127.0.0.1:5432', 'connect_address': '127.0.0.1:5432', 'data_dir': DATA,
            'bin_dir': '/usr/lib/postgresql/17/bin', 'pgpass': '/var/lib/postgresql/17/pgpass',
            'authentication': {'superuser': {'username': 'postgres'}, 'replication': {'username': 'postgres'}},
            'pg_hba': ['local all all trust', 'host all all 127.0.0.1/32 trust',
                       'host replication all 127.0.0.1/32 trust'],
            'parameters': {'unix_socket_directories': '/var/lib/postgresql/17', 'shared_buffers': '16MB',
                           'max_connections': 20, 'fsync': 'off'},
        },
    }


@pytest.fixture(scope='module')
def trixie():
    if os.geteuid() != 0:
        pytest.skip('needs root (chroot, mounts, namespaces)')
    # SDNOTIFY_DEB: a .deb already built by `make deb` (to rerun the test without building again)
    deb = os.environ.get('SDNOTIFY_DEB') or build('deb')
    root = build('proof-root')
    workdir = Workdir()
    units = {'etcd.service': etcd_unit(ETCD, os.path.join(workdir.path, 'etcd'),
                                       '/host' + os.path.join(workdir.path, 'etcd.log'))}
    dropins = {'etcd.service.d/host.conf': host_dropin()}
    config_file = workdir.file('17-test.yml', json.dumps(config(), indent=1))
    with Systemd(workdir.path, units, dropins, root=root, journald=True, overlay=True,
                 instances=[INSTANCE]) as systemd:
        assert systemd.systemctl('--version').stdout.startswith('systemd 257')
        assert systemd.systemctl('start', 'etcd.service').returncode == 0
        systemd.deb, systemd.config_file = '/host' + deb, '/host' + config_file
        systemd.workdir, systemd.host_deb = workdir, deb
        yield systemd
    workdir.cleanup()


def sh(tier, script, timeout=300):
    """Run *script* as root in the booted root, with the PATH dpkg needs (its sbin tools)."""
    script = 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8\n' + script
    result = tier.run('/bin/sh', '-ec', script, timeout=timeout, in_root=True)
    assert result.returncode == 0, script + '\n' + result.stdout + result.stderr
    return result.stdout


def journal(tier):
    return sh(tier, 'journalctl --no-pager -o cat -t patroni@17-test')


def start_reload(tier):
    """`systemctl start; systemctl reload` back to back; then how the instance is: 'alive' (active, the same main
    process, never restarted) or 'killed' (its main process ended by a signal, SIGHUP), and the state."""
    tier.run('/bin/sh', '-c', 'systemctl start {0}; systemctl reload {0}'.format(INSTANCE), in_root=True,
             timeout=300)
    # the patched Patroni answers the reload with RELOADING=1 ... READY=1 (systemd shows 'reloading' until then)
    state = tier.wait_show(INSTANCE, lambda s: s['ActiveState'] != 'reloading', 60, 'the reload answered',
                           'ActiveState', 'SubState', 'MainPID', 'ExecMainCode', 'ExecMainStatus', 'NRestarts',
                           'Result')
    if state['ActiveState'] == 'active' and state['NRestarts'] == '0':
        return 'alive', state
    if state['ExecMainCode'] == '2' and state['ExecMainStatus'] == '1':  # CLD_KILLED by SIGHUP
        return 'killed', state
    return 'other', state


def stop(tier):
    tier.systemctl('stop', INSTANCE, timeout=300)
    tier.systemctl('reset-failed', INSTANCE)


def test_su_postgres_works_in_the_root(trixie):
    """Debian's test scripts run commands as postgres with su: the root's postgres user (tests/debian_root.sh copies
    it from the machine) needs its /etc/shadow entry, or su fails ("Authentication failure")."""
    assert sh(trixie, 'su postgres -c "id -un"').strip() == 'postgres'


def test_debian_patroni_under_its_type_simple_unit_is_killed(trixie):
    """The control: Debian's own patroni 4.0.7, its own template (Type=simple), the same start+reload."""
    # apt reads local files as its _apt user: from /tmp, not /root
    sh(trixie, 'cp /root/debs/patroni_*.deb /tmp/\n'
               'apt-get install -y -q --no-install-recommends /tmp/patroni_4*.deb >/tmp/apt.log 2>&1 '
               '|| {{ tail -n 20 /tmp/apt.log; exit 1; }}\n'
               'install -o postgres -g postgres -m 0640 {0} {1}'.format(trixie.config_file, CONFIG))
    assert trixie.show(INSTANCE, 'Type')['Type'] == 'simple'
    outcomes = []
    for _ in range(CONTROL_TRIALS):
        outcomes.append(start_reload(trixie))
        stop(trixie)
    print("Debian's patroni 4.0.7, Type=simple: start+reload back to back: {0}".format(
        [o for o, _ in outcomes]))
    assert any(o == 'killed' for o, _ in outcomes), outcomes


def running_pids(tier):
    """(Patroni's main PID, the postmaster's PID) of the instance, as the harness's PID namespace numbers them."""
    main = tier.show(INSTANCE, 'MainPID')['MainPID']
    postmaster = sh(tier, 'head -n 1 {0}/postmaster.pid 2>/dev/null || true'.format(DATA)).strip()
    return main, postmaster


def wait_running(tier, whose):
    """Wait until the instance's Patroni runs its PostgreSQL (postmaster.pid there, GET /patroni says running)."""
    wait_for(lambda: tier.run('test', '-f', DATA + '/postmaster.pid', in_root=True).returncode == 0 and
             (tier.http_json('http://127.0.0.1:8008/patroni') or {}).get('state') == 'running', 120,
             whose + ' running its PostgreSQL\n' + journal(tier)[-2000:])


def test_our_deb_installs_over_debians_without_restarting_it(trixie):
    """Debian's Patroni running (its Type=simple unit, a new cluster bootstrapped), then our .deb installed over it
    with apt: the same Patroni and postmaster still run (no restart on upgrade), the configuration is byte for byte
    the same, systemd has our Type=notify-reload template loaded, everything in Debian's places, no python3-systemd."""
    before = sh(trixie, 'cat ' + CONFIG)
    assert trixie.systemctl('start', INSTANCE).returncode == 0
    wait_running(trixie, "Debian's Patroni")
    old = running_pids(trixie)
    assert old[0] != '0' and old[1], old
    try:
        sh(trixie, 'cp {0} /tmp/ours.deb\napt-get install -y -q --no-install-recommends /tmp/ours.deb >/tmp/apt.log '
                   '2>&1 || {{ tail -n 20 /tmp/apt.log; exit 1; }}'.format(trixie.deb))
        # still the same processes: the upgrade neither stopped nor restarted Patroni, nor PostgreSQL
        assert running_pids(trixie) == old
        assert trixie.show(INSTANCE, 'ActiveState')['ActiveState'] == 'active'
    finally:
        stop(trixie)
    version = sh(trixie, "dpkg-query -W -f '${Version}' patroni")
    assert re.match(r'^\d+\.\d+\.\d+-0sdnotify\d+$', version), version
    assert sh(trixie, 'cat ' + CONFIG) == before
    assert 'python3-systemd' not in sh(trixie, "dpkg-query -W -f '${Depends} ${Recommends}' patroni")
    assert trixie.run('dpkg-query', '-W', 'python3-systemd', in_root=True).returncode != 0
    assert trixie.run('python3', '-c', 'import systemd', in_root=True).returncode != 0
    # Debian's places: units, console scripts, docs (NEWS.Debian says: no restart on upgrade)
    sh(trixie, 'test -x /usr/bin/patroni && test -x /usr/bin/patronictl'
               ' && test -f /usr/lib/systemd/system/patroni.service'
               ' && zgrep -q "does not stop, start or restart Patroni" /usr/share/doc/patroni/NEWS.Debian.gz'
               ' && test -f /usr/share/doc/patroni/README.Debian'
               ' && test -f /usr/share/doc/patroni/examples/early-sighup.conf'
               ' && test ! -e /usr/share/doc/patroni/examples/notify-reload.conf'
               ' && test -f /usr/share/doc/patroni/examples/hardening.conf')
    # Debian's postgresql-common integration is still there (configurations made by pg_createconfig_patroni call it)
    sh(trixie, 'test -x /usr/bin/pg_createconfig_patroni && test -x /usr/share/patroni/pg_createcluster_patroni'
               ' && test -x /usr/share/patroni/pg_clonecluster_patroni && test -f /etc/patroni/config.yml.in'
               ' && test -f /etc/patroni/dcs.yml && dpkg -S /usr/share/patroni/pg_clonecluster_patroni'
               ' | grep -q "^patroni: "')
    # its DCS example is ours, etcd's v3 API (Debian's: ZooKeeper); Debian's, unmodified, replaced by dpkg
    sh(trixie, 'grep -q "^etcd3:" /etc/patroni/dcs.yml && ! grep -q "^zookeeper:" /etc/patroni/dcs.yml')
    # patroni.service reads Debian's /etc/patroni/config.yml, named once
    unit = sh(trixie, 'cat /usr/lib/systemd/system/patroni.service')
    assert 'Environment=PATRONI_CONFIG_FILE=/etc/patroni/config.yml\n' in unit and 'patroni.yml' not in unit, unit
    # the template loaded without a manual daemon-reload, keeping what Debian's template gives an instance
    state = trixie.show(INSTANCE, 'Type', 'FragmentPath', 'SyslogIdentifier', 'EnvironmentFiles', 'RuntimeDirectory',
                        'ConditionResult', 'User', 'ExecStart', 'ExecReload', 'NotifyAccess', 'Environment')
    # systemd 257: the reload is systemd's own (SIGHUP, then it waits for READY=1), no ExecReload=
    assert state['Type'] == 'notify-reload' and state['FragmentPath'] == '/usr/lib/systemd/system/patroni@.service', \
        state
    assert state.get('ExecReload', '') == '', state
    assert 'PATRONI_CONFIG_FILE=/etc/patroni/17-test.yml' in state['Environment'], state
    assert state['SyslogIdentifier'] == 'patroni@17-test' and state['User'] == 'postgres', state
    # one EnvironmentFiles= line per file: Debian's shared env.conf first
    files = sh(trixie, 'systemctl show -p EnvironmentFiles ' + INSTANCE).splitlines()
    assert files[0] == 'EnvironmentFiles=/etc/patroni/env.conf (ignore_errors=yes)', files
    assert state['RuntimeDirectory'] == 'postgresql/17-test.pg_stat_tmp', state
    assert 'path=/usr/bin/patroni ; argv[]=/usr/bin/patroni ${PATRONI_CONFIG_FILE}' in state['ExecStart'], state
    # and nothing started it again
    assert trixie.show(INSTANCE, 'ActiveState')['ActiveState'] == 'inactive'


def test_start_is_ready_after_the_first_ha_cycle_in_the_journal(trixie):
    result = trixie.systemctl('start', INSTANCE, timeout=300)
    try:
        assert result.returncode == 0, result.stderr + trixie.run(
            'journalctl', '--no-pager', '-n', '60', in_root=True).stdout + trixie.systemctl(
            'status', 'systemd-journald.service').stdout
        # systemctl start returned: READY=1 came, and only after a cycle had ended
        logged = journal(trixie)
        assert CYCLE.search(logged), logged[-3000:]
        state = trixie.show(INSTANCE, 'ActiveState', 'SubState', 'StatusText', 'NRestarts')
        assert state['ActiveState'] == 'active' and state['SubState'] == 'running', state
        assert state['StatusText'], state
        print('StatusText={0}'.format(state['StatusText']))
        assert trixie.run('python3', '-c', 'import systemd', in_root=True).returncode != 0
    finally:
        stop(trixie)


def test_start_reload_back_to_back_survives(trixie):
    outcomes = []
    for _ in range(TRIALS):
        outcomes.append(start_reload(trixie))
        stop(trixie)
    print('patroni {0}, Type=notify-reload: start+reload back to back: {1}'.format(
        'sdnotify', [o for o, _ in outcomes]))
    assert [o for o, _ in outcomes] == ['alive'] * TRIALS, [s for _, s in outcomes]


def patroni_argv(tier, unit):
    """The command line of *unit*'s main process (Patroni), as a list."""
    pid = tier.show(unit, 'MainPID')['MainPID']
    return tier.run('cat', '/proc/{0}/cmdline'.format(pid), in_root=True).stdout.split('\0')[:-1]


@pytest.mark.parametrize('unit, config', [(INSTANCE, CONFIG), ('patroni.service', '/etc/patroni/config.yml')])
def test_every_example_starts_patroni_on_the_packages_units(trixie, unit, config):
    """Each drop-in of /usr/share/doc/patroni/examples, installed as its README says, on each unit of the package:
    the unit starts Patroni on the unit's own configuration file, and a reload is applied. The control: without
    that file the start is skipped (ExecCondition=, as Debian's ConditionPathExists=), nothing runs."""
    template = unit.split('@')[0] + ('@' if '@' in unit else '') + '.service'
    examples = sh(trixie, 'ls /usr/share/doc/patroni/examples/').split()
    # hardening.conf: test_example_hardening_runs_debians_layout_unchanged (it needs Debian's paths, and /tmp back)
    dropins = [name for name in examples if name.endswith('.conf') and name != 'hardening.conf']
    assert dropins == ['early-sighup.conf'] and 'hardening.conf' in examples, examples
    if config != CONFIG:
        sh(trixie, 'install -o postgres -g postgres -m 0640 {0} {1}'.format(CONFIG, config))
    try:
        for name in dropins:
            sh(trixie, 'mkdir -p /etc/systemd/system/{0}.d && cp /usr/share/doc/patroni/examples/{1} '
                       '/etc/systemd/system/{0}.d/ && systemctl daemon-reload'.format(template, name))
            try:
                result = trixie.systemctl('start', unit, timeout=300)
                assert result.returncode == 0, result.stderr + journal(trixie)[-2000:]
                argv = patroni_argv(trixie, unit)
                assert argv[-2:] == ['/usr/bin/patroni', config], argv
                reload = trixie.systemctl('reload', unit, timeout=60)
                assert reload.returncode == 0 and trixie.show(unit, 'ActiveState')['ActiveState'] == 'active', reload
                print('{0} with {1}: {2}'.format(unit, name, ' '.join(argv)))
            finally:
                stop_unit(trixie, unit)
                sh(trixie, 'rm /etc/systemd/system/{0}.d/{1} && systemctl daemon-reload'.format(template, name))
        sh(trixie, 'mv {0} {0}.away'.format(config))
        try:
            start = trixie.systemctl('start', unit, timeout=60)
            state = trixie.show(unit, 'ActiveState', 'MainPID')
            assert start.returncode == 0 and state == {'ActiveState': 'inactive', 'MainPID': '0'}, state
            skipped = trixie.run('journalctl', '--no-pager', '-o', 'cat', '-u', unit, in_root=True).stdout
            assert "Skipped due to 'exec-condition'." in skipped, skipped[-2000:]
        finally:
            sh(trixie, 'mv {0}.away {0}'.format(config))
    finally:
        if config != CONFIG:
            sh(trixie, 'rm -f ' + config)


def stop_unit(tier, unit):
    tier.systemctl('stop', unit, timeout=300)
    tier.systemctl('reset-failed', unit)


def test_example_hardening_runs_debians_layout_unchanged(trixie):
    """Issue 26 on a Debian system: the package's example hardening.conf, copied as it is into patroni@.service.d/
    (no ReadWritePaths= added: data, pgpass and socket are in /var/lib/postgresql, which it lists), under Debian's
    systemd 257. The instance starts sandboxed (NoNewPrivs, a seccomp filter, no capabilities), leads and serves a
    write, stops cleanly. PrivateTmp= pulls in trixie's tmp.mount (RequiresMountsFor=/tmp): a booted trixie has it
    mounted already, this root not, so it is stopped again at the end (a tmpfs over /tmp hid the .deb that the
    later tests install from /tmp)."""
    dropin = '/etc/systemd/system/patroni@.service.d/hardening.conf'
    install = 'mkdir -p {0} && cp /usr/share/doc/patroni/examples/hardening.conf {1} && systemctl daemon-reload'
    tmp_mount = trixie.show('tmp.mount', 'ActiveState')['ActiveState']
    sh(trixie, install.format(os.path.dirname(dropin), dropin))
    before = len(journal(trixie))
    try:
        assert trixie.show(INSTANCE, 'ProtectSystem', 'PrivateTmp') == {'ProtectSystem': 'strict', 'PrivateTmp': 'yes'}
        result = trixie.systemctl('start', INSTANCE, timeout=300)
        assert result.returncode == 0, result.stderr + journal(trixie)[before:]
        wait_for(lambda: (trixie.http_json('http://127.0.0.1:8008/patroni') or {}).get('role') == 'primary'
                 and trixie.http_json('http://127.0.0.1:8008/patroni').get('state') == 'running', 60,
                 'the sandboxed instance leading\n' + journal(trixie)[before:][-3000:])
        main = trixie.show(INSTANCE, 'MainPID')['MainPID']
        status = sh(trixie, 'grep -E "^(NoNewPrivs|Seccomp|CapBnd):" /proc/{0}/status'.format(main))
        fields = dict(line.split(':\t') for line in status.splitlines())
        assert fields == {'NoNewPrivs': '1', 'Seccomp': '2', 'CapBnd': '0' * 16}, status
        sh(trixie, 'psql -h 127.0.0.1 -U postgres -d postgres -XAtc "CREATE TABLE IF NOT EXISTS sandboxed AS '
                   'SELECT 1 AS i; CHECKPOINT"')
        stop_result = trixie.systemctl('stop', INSTANCE, timeout=300)
        assert stop_result.returncode == 0, stop_result.stderr
        assert trixie.show(INSTANCE, 'Result') == {'Result': 'success'}
        print('the example hardening.conf on Debian (systemd 257): started, led, wrote, stopped cleanly')
    finally:
        stop(trixie)
        sh(trixie, 'rm -f {0} && systemctl daemon-reload'.format(dropin))
        if tmp_mount != 'active':
            trixie.systemctl('stop', 'tmp.mount')
        assert trixie.show('tmp.mount', 'ActiveState')['ActiveState'] == tmp_mount


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


def test_autopkgtests_pass_against_the_installed_package(trixie):
    """The source package's debian/tests, run as autopkgtest runs them, in the booted root with our .deb installed:
    the .dsc unpacked (dpkg-source -x, the series applied), every Depends of a test installed (``@``: patroni),
    each script run as root from the unpacked source's root with AUTOPKGTEST_TMP a fresh directory, failing on a
    non-zero exit or, unless ``allow-stderr``, on output to stderr. The control: a script of our own in the same
    tree sees that directory and that root, and fails on a line to stderr unless it has allow-stderr."""
    deb = os.path.basename(trixie.host_deb)
    dsc = os.path.join(os.path.dirname(trixie.host_deb), deb[:-len('_all.deb')] + '.dsc')
    source = os.path.join(trixie.workdir.path, 'source')
    subprocess.run(['dpkg-source', '--no-check', '-x', dsc, source], stdout=subprocess.DEVNULL, check=True,
                   timeout=120)
    tests = autopkgtest_control(os.path.join(source, 'debian', 'tests', 'control'))
    names = [name for paragraph in tests for name in paragraph['tests'].split()]
    assert names == ['installed', 'cluster'], names
    for paragraph in tests:
        for group in paragraph.get('depends', '@').split(','):
            alternatives = ['patroni' if a.strip() == '@' else a.split('(')[0].strip() for a in group.split('|')]
            assert any(trixie.run('dpkg-query', '-W', '-f', '${Status}', a, in_root=True).stdout ==
                       'install ok installed' for a in alternatives), (paragraph['tests'], group)
        restrictions = paragraph.get('restrictions', '').replace(',', ' ').split()
        for name in paragraph['tests'].split():
            failure, _ = autopkgtest(trixie, source, name, restrictions)
            assert failure is None, name + ': ' + failure
    control = os.path.join(source, 'debian', 'tests', 'sdnotify-control')
    with open(control, 'w') as f:
        f.write('#!/bin/sh\nset -e\ntest -f debian/tests/control\necho "tmp=$(ls -A "$AUTOPKGTEST_TMP" | wc -l) '
                'uid=$(id -u)"\necho noise >&2\n')
    os.chmod(control, 0o755)
    assert autopkgtest(trixie, source, 'sdnotify-control', []) == ('stderr: noise\n', 'tmp=0 uid=0\n')
    assert autopkgtest(trixie, source, 'sdnotify-control', ['allow-stderr']) == (None, 'tmp=0 uid=0\n')


def test_remove_stops_a_running_instance_and_keeps_configuration_and_data(trixie):
    """`apt remove` under a running instance stops it (as Debian's prerm stops patroni), leaving /etc/patroni and
    the data directory. The control: a reinstallation of the same .deb (the old prerm runs with "upgrade") leaves
    the same Patroni and postmaster running."""
    assert trixie.systemctl('start', INSTANCE, timeout=300).returncode == 0
    wait_running(trixie, 'our Patroni')
    running = running_pids(trixie)
    assert running[0] != '0' and running[1], running
    try:
        sh(trixie, 'apt-get install -y -q --reinstall /tmp/ours.deb >/tmp/apt.log 2>&1 '
                   '|| { tail -n 20 /tmp/apt.log; exit 1; }')
        assert running_pids(trixie) == running
        assert trixie.show(INSTANCE, 'ActiveState')['ActiveState'] == 'active'
        sh(trixie, 'apt-get remove -y -q patroni >/tmp/apt.log 2>&1 || { tail -n 20 /tmp/apt.log; exit 1; }')
        state = trixie.show(INSTANCE, 'ActiveState', 'MainPID', 'Result')
        assert state['ActiveState'] == 'inactive' and state['MainPID'] == '0', state
        # Patroni stopped its PostgreSQL: no postmaster.pid left, the postmaster gone
        sh(trixie, 'test ! -e {0}/postmaster.pid && ! kill -0 {1} 2>/dev/null'.format(DATA, running[1]))
    finally:
        stop(trixie)
    assert trixie.run('test', '-e', '/usr/bin/patroni', in_root=True).returncode != 0
    sh(trixie, 'test -f {0} && test -f {1}/PG_VERSION'.format(CONFIG, DATA))


def test_missing_build_dependency_is_one_line(trixie):
    """A Build-Depends that trixie cannot satisfy: one line naming it, and the build root's record of what it holds
    unchanged (nothing installed). The control: the real Build-Depends, satisfied (the fixture built the .deb)."""
    sys.path.insert(0, os.path.join(ROOT, 'packaging'))
    import build as packaging_build
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
