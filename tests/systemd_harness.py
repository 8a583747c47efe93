"""A real systemd (the machine's /lib/systemd/systemd, 252 on Debian 12) as PID 1 of its own namespaces.

pid, mount, uts, ipc, net and cgroup namespaces; fresh /proc, /sys and cgroup2; a tmpfs /run; only the units given
(plus stub targets). Nothing reaches the host: units log to files, or, with ``journald=True``, to a systemd-journald
of the harness that keeps its journal in the harness's /run (``Storage=volatile``, no kernel log, no wall); a
loopback of its own, /proc/sys read-only (PID 1 would raise fs.file-max and fs.nr_open), ``container=`` set
(otherwise systemd logs to the host's kernel log, makes / shared and tries a global swapoff on exit).

cgroups: systemd gets a cgroup2 sub-tree of its own, found from /proc/self/mountinfo wherever cgroup2 is mounted
(/sys/fs/cgroup on a pure v2 layout, /sys/fs/cgroup/unified on a hybrid one). Where the machine's PID 1 is systemd,
that sub-tree is a transient scope with ``Delegate=yes`` (``systemd-run --scope``), the way systemd documents
delegation, so nothing is written into the cgroups it manages; elsewhere the harness makes the group itself at the
top of the hierarchy. Inside, as systemd's delegation rules ask, processes live only in leaves: our ``unshare`` in
``supervisor/``, systemd in ``payload/``, the root of its cgroup namespace. The group is named after the process that
made it (``sdnotify-<owner tag>-<id>``, see :func:`realparts.owner_tag`), so that the next run can remove it if a
killed run left it behind (tests/leftovers.py); it is removed at the end.
Processes are ended by PID: ``systemctl exit``, and SIGKILL of our ``unshare`` (whose --kill-child takes the
namespace's PID 1, and with it every process in it) if that fails.
"""

import base64
import json
import os
import re
import subprocess
import threading
import time
import uuid

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from realparts import core_dumps_piped, owner_tag, POSTGRES, ROOT, wait_for

SYSTEMD = '/lib/systemd/systemd'
TARGET = 'sdnotify.target'
CGROUP_PREFIX = 'sdnotify-'

# Run by /bin/sh in the machine's namespaces, in the delegated group $CG (made by us) or, without $CG, in the scope
# systemd-run put us in (found from /proc/self/cgroup): our unshare goes to supervisor/, its child to payload/.
# umask 022 here and in the inner scripts: the test process may have Patroni's 077 (importing patroni.file_perm sets
# it), and a /run/systemd made 0700 by the inner script kept services' users from connecting to journald: systemd
# connects their stdout with their uid, "Permission denied", and their start never ended.
OUTER = """set -e
umask 022
P=$(sed -n 's/^0:://p' /proc/self/cgroup)
D=${CG:-$CGMOUNT${P#"$CGROOT"}}
mkdir "$D/supervisor" "$D/payload"
echo $$ > "$D/supervisor/cgroup.procs"
export PAYLOAD="$D/payload"
exec unshare --pid --fork --kill-child --mount --propagation private --uts --ipc --net "$INNER"
"""

# The inner scripts start as PID 1 of the new PID namespace: they move to payload/ (the machine's cgroup2 is still
# mounted where it was, in this copy of its mount namespace), then unshare the cgroup namespace, whose root is then
# payload/, and run themselves again from the top.
PROLOGUE = """#!/bin/sh
set -e
umask 022
if [ -n "$PAYLOAD" ]; then
    echo $$ > "$PAYLOAD/cgroup.procs"
    unset PAYLOAD
    exec unshare --cgroup "$0"
fi
"""

INNER = PROLOGUE + """mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=755 tmpfs /run
if [ -n "$JOURNALD" ]; then
    mkdir -p /run/systemd/journald.conf.d
    printf '[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\nForwardToWall=no\nForwardToConsole=no\n' \
        > /run/systemd/journald.conf.d/harness.conf
fi
if [ -n "$OWN_TMP" ]; then
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    mount -t tmpfs -o mode=1777 tmpfs /var/tmp
fi
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount --bind "$CONSOLE" /dev/console
ip link set lo up
exec env -i container=patroni-sdnotify-test SYSTEMD_UNIT_PATH="$UNITS" {systemd} --unit={target}
""".format(systemd=SYSTEMD, target=TARGET)

# The same for a Debian root made by tests/debian_root.sh (a newer systemd): the root's systemd is PID 1 inside a
# chroot (of a mount point: systemd remounts / as a slave). The machine's / is bound (not recursively) at /host,
# with a tmpfs over its /run, for the services, which run there with RootDirectory=/host (see host_dropin).
INNER_ROOT = PROLOGUE + """R="$SYSTEMD_ROOT"
if [ -n "$OVERLAY" ]; then
    mount -t overlay overlay -o "lowerdir=$R,upperdir=$OVERLAY/upper,workdir=$OVERLAY/work" "$OVERLAY/root"
    R="$OVERLAY/root"
fi
mount --bind "$R" "$R"
mount --bind / "$R/host"
mount -t tmpfs -o mode=755 tmpfs "$R/host/run"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=755 tmpfs "$R/run"
if [ -n "$JOURNALD" ]; then
    mkdir -p "$R/run/systemd/journald.conf.d"
    printf '[Journal]\\nStorage=volatile\\nReadKMsg=no\\nForwardToSyslog=no\\nForwardToWall=no\\n' \\
        > "$R/run/systemd/journald.conf.d/harness.conf"
    printf 'ForwardToConsole=no\\n' >> "$R/run/systemd/journald.conf.d/harness.conf"
fi
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro "$R/proc/sys"
mount --rbind /dev "$R/dev"
mount --bind "$CONSOLE" "$R/dev/console"
ip link set lo up
exec chroot "$R" env -i container=patroni-sdnotify-test SYSTEMD_UNIT_PATH="/host$UNITS$UNIT_PATH_TAIL" \\
    /lib/systemd/systemd \\
    --unit={target}
""".format(target=TARGET)

STUBS = {
    'exit.target': '[Unit]\nDescription=Exit the harness\nDefaultDependencies=no\nRequires=sdnotify-exit.service\n'
                   'After=sdnotify-exit.service\nAllowIsolate=yes\n',
    'sdnotify-exit.service': '[Unit]\nDescription=Exit the harness\nDefaultDependencies=no\nSuccessAction=exit-force\n'
                             '\n[Service]\nType=oneshot\nExecStart=/bin/true\n',
}
# the machine's systemd-journald, for a harness with journald=True (see the module's docstring for its settings)
JOURNALD_UNITS = {
    'systemd-journald.socket': '[Unit]\nDescription=Journal sockets (harness)\nDefaultDependencies=no\n\n[Socket]\n'
                               'ListenStream=/run/systemd/journal/stdout\nListenDatagram=/run/systemd/journal/socket\n'
                               'SocketMode=0666\nPassCredentials=yes\nPassSecurity=yes\nReceiveBuffer=8M\n'
                               'Service=systemd-journald.service\n',
    'systemd-journald.service': '[Unit]\nDescription=Journal (harness)\nDefaultDependencies=no\n'
                                'Requires=systemd-journald.socket\nAfter=systemd-journald.socket\n\n[Service]\n'
                                'Type=notify\nSockets=systemd-journald.socket\n'
                                'ExecStart=/lib/systemd/systemd-journald\n',
}
# what services' default dependencies and our units refer to, as empty targets
STUBS.update({name: '[Unit]\nDescription={0} (stub)\n'.format(name) for name in (
    'sysinit.target', 'basic.target', 'shutdown.target', 'network.target', 'network-online.target',
    'multi-user.target', 'local-fs.target', 'umount.target', 'final.target')})


def _unescape(field: str) -> str:
    """A path of /proc/self/mountinfo, whose spaces, tabs, newlines and backslashes are octal escapes."""
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), field)


def cgroup2_mounts(mountinfo: str) -> List[Tuple[str, str, str]]:
    """Every cgroup2 mount in *mountinfo* (the text of /proc/PID/mountinfo), in its order, as (mount point, root in
    the hierarchy, major:minor). Some may be hidden by later mounts: see :func:`cgroup2_mount`."""
    mounts = []
    for line in mountinfo.splitlines():
        fields = line.split(' ')
        if '-' in fields[6:]:
            sep = fields.index('-', 6)
            if fields[sep + 1] == 'cgroup2':
                mounts.append((_unescape(fields[4]), _unescape(fields[3]), fields[2]))
    return mounts


def cgroup2_mount() -> Tuple[str, str]:
    """(mount point, root) of the cgroup2 hierarchy as this process sees it: the last cgroup2 mount of
    /proc/self/mountinfo that is not hidden (its mount point is a directory of that very file system)."""
    with open('/proc/self/mountinfo') as f:
        mounts = cgroup2_mounts(f.read())
    for point, root, device in reversed(mounts):
        try:
            st = os.stat(point)
        except OSError:
            continue
        if '{0}:{1}'.format(os.major(st.st_dev), os.minor(st.st_dev)) == device and \
                os.path.exists(os.path.join(point, 'cgroup.procs')):
            return point, root
    raise RuntimeError('no cgroup2 file system is mounted here (/proc/self/mountinfo): the harness needs one')


def cgroup_path(pid: str = 'self') -> str:
    """Where the cgroup of *pid* is in the file system (the cgroup2 line of /proc/PID/cgroup, under its mount)."""
    point, root = cgroup2_mount()
    with open('/proc/{0}/cgroup'.format(pid)) as f:
        path = [line[3:].strip() for line in f if line.startswith('0::')][0]
    if root != '/' and (path == root or path.startswith(root + '/')):
        path = path[len(root):]
    return os.path.normpath(point + '/' + path)


def systemd_is_pid1() -> bool:
    """Whether this PID namespace was booted with systemd (sd_booted(3): /run/systemd/system, and PID 1 is it)."""
    try:
        with open('/proc/1/comm') as f:
            comm = f.read().strip()
    except OSError:
        return False
    return comm == 'systemd' and os.path.isdir('/run/systemd/system')


def remove_cgroup(path: str, timeout: float = 10) -> None:
    """Remove the (empty of processes) cgroup *path* and every group below it, deepest first. A delegated scope
    may go on its own meanwhile (systemd collects it once empty): a group already gone is fine."""
    deadline = time.monotonic() + timeout
    while os.path.isdir(path):
        try:
            for root, _, _ in sorted(os.walk(path), key=lambda w: -w[0].count('/')):
                try:
                    os.rmdir(root)
                except FileNotFoundError:
                    pass
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# Python's faulthandler in every Patroni the harness runs (a drop-in of each of its units and templates): when a job
# does not end in time (Systemd.systemctl), SIGABRT makes it print every thread's stack in the unit's output; it acts
# on fatal signals only
FAULTHANDLER = '[Service]\nEnvironment=PYTHONFAULTHANDLER=1\n'
JOB_VERBS = ('start', 'stop', 'restart', 'reload', 'reload-or-restart', 'try-restart')


def template_of(unit: str) -> str:
    """``patroni@.service`` for ``patroni@15-test.service``; any other name as it is."""
    return re.sub(r'@[^.]*\.service$', '@.service', unit)


class Systemd(object):
    """One booted systemd; use as a context manager.

    :ivar dir: where its units, console log and inner script live (readable by postgres).
    :ivar pid: systemd's PID, as the host sees it.
    """

    def __init__(self, directory: str, units: Dict[str, str], dropins: Optional[Dict[str, str]] = None,
                 instances: Optional[List[str]] = None, root: Optional[str] = None, journald: bool = False,
                 root_units: bool = False, own_tmp: bool = False) -> None:
        """Write *units* (name -> text) and *dropins* (``unit.d/name.conf`` -> text) and boot.

        With *root* (a directory made by ``tests/debian_root.sh``), boot that root's systemd instead of the
        machine's; paths in units then go through :meth:`host_path`, and services need :func:`host_dropin`.

        The harness target refers to every unit, and to the template *instances*, with ``After=``, so that systemd
        keeps an inactive or failed unit loaded (it would garbage-collect it) and ``systemctl show`` can still tell
        how it ended. With *journald*, services log to a journald of the harness (the root's, with *root*).
        A *root* is booted through an overlay whose upper layer is :attr:`upper` (in this harness's directory): what
        runs there (packages installed, PrivateTmp= directories, files written) leaves *root* unchanged, for another
        harness or packaging/build.py may use it meanwhile. With *root_units*, systemd also loads the units installed
        in the root (after the harness's own, which win).
        With *own_tmp* (the machine's systemd only), /tmp and /var/tmp are tmpfs of the harness, so that the
        directories of units with PrivateTmp=yes are never made in the machine's: *directory* must not be in /tmp.
        """
        assert not (own_tmp and (root or (os.path.realpath(directory) + '/').startswith('/tmp/'))), directory
        self.dir = os.path.join(directory, 'systemd-' + uuid.uuid4().hex[:8])
        self.units = os.path.join(self.dir, 'units')
        os.makedirs(self.units)
        os.chmod(self.dir, 0o755)
        all_units = dict(STUBS, **dict(JOURNALD_UNITS if journald else {}, **units))
        all_units[TARGET] = '[Unit]\nDescription=patroni-sdnotify test harness\nAfter={0}\n{1}'.format(
            ' '.join(sorted(u for u in units if '@.' not in u) + (instances or [])),
            'Wants=systemd-journald.socket systemd-journald.service\n' if journald else '')
        # Patroni's units: named so (the packaged templates of test_deb's instances too), or running a patroni
        self.patroni_units = {template_of(u) for u in list(units) + (instances or []) if u.startswith('patroni')}
        self.patroni_units.update(u for u, text in units.items() if re.search(r'^ExecStart=\S*/patroni\b', text, re.M))
        faulthandler = {u + '.d/zz-faulthandler.conf': FAULTHANDLER for u in self.patroni_units}
        for name, text in list(all_units.items()) + list((dropins or {}).items()) + list(faulthandler.items()):
            path = os.path.join(self.units, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                f.write(text)
        # see the module's docstring: a scope of the machine's systemd, or a group we make
        name = CGROUP_PREFIX + owner_tag() + '-' + uuid.uuid4().hex[:8]
        point, cgroot = cgroup2_mount()
        env = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'CGMOUNT': point, 'CGROOT': '' if cgroot == '/' else cgroot}
        if systemd_is_pid1():
            launch = ['systemd-run', '--quiet', '--scope', '--collect', '--unit=' + name + '.scope',
                      '--property=Delegate=yes', '--description=patroni-sdnotify test harness', '--']
            self.cgroup = ''
        else:
            launch = []
            self.cgroup = env['CG'] = os.path.join(point, name)
            os.mkdir(self.cgroup)
        inner = os.path.join(self.dir, 'inner.sh')
        with open(inner, 'w') as f:
            f.write(INNER_ROOT if root else INNER)
        os.chmod(inner, 0o755)
        # the console: we keep the terminal side open too, for as long as systemd runs; otherwise, whenever systemd
        # has it closed, a read of our side fails (EIO), the drain stops, and once the buffer is full systemd blocks
        # writing to its console, for good
        self._master, self._slave = os.openpty()
        self.console_log = os.path.join(self.dir, 'console.log')
        self._console = threading.Thread(target=self._drain, daemon=True)
        self._console.start()
        self.root = root
        env.update(CONSOLE=os.ttyname(self._slave), UNITS=self.units, SYSTEMD_ROOT=root or '', INNER=inner,
                   JOURNALD='1' if journald else '', OVERLAY='', UNIT_PATH_TAIL='', OWN_TMP='1' if own_tmp else '')
        self.upper = None
        if root:
            env['OVERLAY'] = os.path.join(self.dir, 'overlay')
            for d in ('upper', 'work', 'root'):
                os.makedirs(os.path.join(env['OVERLAY'], d))
            self.upper = os.path.join(env['OVERLAY'], 'upper')
            env['UNIT_PATH_TAIL'] = ':' if root_units else ''
        self.proc = subprocess.Popen(launch + ['/bin/sh', '-c', OUTER], env=env, stdin=subprocess.DEVNULL)
        try:
            self.pid = int(wait_for(self._child, 10, 'systemd forked by unshare'))
            # the delegated group: the parent of our unshare's supervisor/
            self.cgroup = os.path.dirname(cgroup_path(str(self.proc.pid)))
            assert os.path.basename(self.cgroup).startswith(name), self.cgroup
            if launch:
                delegate = subprocess.run(['systemctl', 'show', '--property=Delegate', '--value', name + '.scope'],
                                          stdout=subprocess.PIPE, universal_newlines=True, timeout=30).stdout
                assert delegate.strip() == 'yes', 'the scope {0} is not delegated: {1!r}'.format(name, delegate)
            wait_for(lambda: self.systemctl('is-system-running').stdout.strip() in ('running', 'degraded'), 30,
                     'systemd booted (console: {0})'.format(self.console_log))
        except Exception:
            self.close()
            raise

    def _child(self) -> Optional[str]:
        try:
            with open('/proc/{0}/task/{0}/children'.format(self.proc.pid)) as f:
                children = f.read().split()
        except OSError:
            return None
        if not children:
            return None
        with open('/proc/{0}/comm'.format(children[0])) as f:
            return children[0] if f.read().strip() == 'systemd' else None

    def _drain(self) -> None:
        with open(self.console_log, 'wb') as out:
            while True:
                try:
                    data = os.read(self._master, 4096)
                except OSError:
                    return
                if not data:
                    return
                out.write(data)
                out.flush()

    def run(self, *cmd: str, timeout: float = 120, in_root: bool = False) -> 'subprocess.CompletedProcess[str]':
        """Run *cmd* inside every namespace of the harness, with an empty environment.

        The machine's programs run, unless *in_root*: then the programs of systemd's own root (its systemctl).
        """
        where = ['-r', '-w'] if in_root and self.root else []
        return subprocess.run(['nsenter', '-t', str(self.pid), '-a'] + where + ['env', '-i', 'PATH=/usr/bin:/bin']
                              + list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=timeout)

    def systemctl(self, *args: str, timeout: float = 120) -> 'subprocess.CompletedProcess[str]':
        """``systemctl *args`` in the harness. A job (start, stop, reload...) not done within *timeout* fails
        with what the harness shows then (see :meth:`stuck`), not only with the timeout."""
        try:
            return self.run('systemctl', '--no-pager', *args, timeout=timeout, in_root=True)
        except subprocess.TimeoutExpired:
            if not args or args[0] not in JOB_VERBS:
                raise
            raise AssertionError('systemctl {0} not done within {1} s\n{2}'.format(
                ' '.join(args), timeout, self.stuck([a for a in args[1:] if not a.startswith('-')])))

    def stuck(self, units: List[str]) -> str:
        """What the harness shows while a job of *units* hangs: the jobs, each process with its tasks' kernel wait
        channels, the units' status, the console's end; then each Patroni among them gets SIGABRT (its core dump
        off), and the end of its output, which then holds every thread's stack (FAULTHANDLER), is added."""
        def quiet(*cmd: str, in_root: bool = False) -> str:
            try:
                result = self.run(*cmd, timeout=30, in_root=in_root)
                return result.stdout + result.stderr
            except (OSError, subprocess.TimeoutExpired) as e:
                return '{0}: {1!r}\n'.format(cmd[0], e)

        def state(pid: str) -> str:  # R, S, D, Z... ('' once gone)
            return quiet('sh', '-c', 'cut -d" " -f3 /proc/$0/stat 2>/dev/null', pid, in_root=bool(self.root)).strip()
        # the harness's processes (with a root, its procfs is only mounted there, which may lack ps)
        parts = [quiet('systemctl', '--no-pager', 'list-jobs', in_root=True),
                 quiet('sh', '-c', 'for t in /proc/[0-9]*/task/*; do echo "$t $(cut -d" " -f3 $t/stat) $(cat $t/wchan) '
                       '$(tr "\\0" " " < $t/cmdline)"; done 2>/dev/null', in_root=bool(self.root))]
        for unit in units:
            parts.append(quiet('systemctl', '--no-pager', 'status', unit, in_root=True))
        try:
            with open(self.console_log, errors='replace') as f:
                parts.append('console:\n' + f.read()[-4000:])
        except OSError:
            pass
        piped = core_dumps_piped()
        for unit in (u for u in units if template_of(u) in self.patroni_units):
            pid = quiet('systemctl', 'show', '--property=MainPID', '--value', unit, in_root=True).strip()
            if not pid.isdigit() or pid == '0':
                continue
            if piped:
                parts.append('{0} (MainPID {1}): no SIGABRT, kernel.core_pattern is a pipe'.format(unit, pid))
                continue
            quiet('prlimit', '--pid', pid, '--core=0')
            quiet('kill', '-ABRT', pid)
            try:  # gone, or a zombie (if it is PID 1 that hangs, nobody reaps it)
                wait_for(lambda: state(pid) in ('', 'Z'), 10, 'the end of ' + pid, interval=0.2)
            except AssertionError:
                pass
            parts.append('{0} (MainPID {1}) after SIGABRT:\n{2}'.format(unit, pid, self.output(unit)))
        return '\n'.join(parts)

    def output(self, unit: str, size: int = 20000) -> str:
        """The end of *unit*'s output: its journal, or the file of its ``StandardOutput=append:`` drop-in."""
        texts = []
        for directory in sorted({os.path.join(self.units, u + '.d') for u in (unit, template_of(unit))}):
            for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
                with open(os.path.join(directory, name)) as f:
                    texts.append(f.read())
        files = re.findall(r'^StandardOutput=append:(\S+)$', '\n'.join(texts), re.M)
        if not files:
            result = self.run('journalctl', '--no-pager', '-o', 'cat', '-u', unit, timeout=30, in_root=True)
            return (result.stdout + result.stderr)[-size:]
        instance = unit.split('@', 1)[1][:-len('.service')] if '@' in unit else ''
        path = files[-1].replace('%i', instance).replace('%%', '%')
        path = path[len('/host'):] if self.root else path
        try:
            with open(path, errors='replace') as f:
                return f.read()[-size:]
        except OSError as e:
            return repr(e)

    def host_path(self, path: str) -> str:
        """*path* on the machine as systemd itself sees it (for ``StandardOutput=append:``)."""
        return '/host' + path if self.root else path

    def show(self, unit: str, *properties: str) -> Dict[str, str]:
        """``systemctl show`` of *properties* of *unit*, as a dict."""
        out = self.systemctl('show', '--property=' + ','.join(properties), unit).stdout
        return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)

    def wait_show(self, unit: str, predicate: Callable[[Dict[str, str]], bool], timeout: float,
                  what: Union[str, Callable[[], str]], *properties: str) -> Dict[str, str]:
        """Wait until *properties* of *unit* (``systemctl show``) satisfy *predicate*; return them."""
        def check() -> Optional[Dict[str, str]]:
            state = self.show(unit, *properties)
            return state if predicate(state) else None
        return wait_for(check, timeout, what)

    def http_json(self, url: str, body: Optional[Dict[str, object]] = None) -> Any:
        """GET *url* (or POST *body* to it) from inside the harness's network namespace; ``None`` if no answer."""
        code = ('import sys, urllib.request; data = sys.argv[2].encode() if len(sys.argv) > 2 else None; '
                'sys.stdout.write(urllib.request.urlopen(sys.argv[1], data, timeout=2).read().decode())')
        args = [url] + ([json.dumps(body)] if body is not None else [])
        result = self.run('/usr/bin/python3', '-c', code, *args, timeout=10)
        try:
            return json.loads(result.stdout) if result.returncode == 0 else None
        except ValueError:
            return None

    def postmaster_pid(self, data_dir: str) -> str:
        """The PID of the postmaster of *data_dir*, in the harness's PID namespace (from postmaster.pid)."""
        with open(os.path.join(data_dir, 'postmaster.pid')) as f:
            return f.readline().strip()

    def read_proc(self, path: str) -> str:
        """The text of /proc/*path* in the harness (with a root, its procfs is only mounted there)."""
        return self.run('cat', '/proc/' + path, in_root=bool(self.root)).stdout

    def children(self, pid: str) -> List[str]:
        """The PIDs of the harness whose parent is *pid* (as ``pgrep -P``, which a Debian root may lack)."""
        stats = self.run('sh', '-c', 'cat /proc/[0-9]*/stat 2>/dev/null', in_root=bool(self.root)).stdout
        fields = [line.split(' ', 1)[:1] + line.rsplit(')', 1)[-1].split()[1:2] for line in stats.splitlines()]
        return [f[0] for f in fields if len(f) == 2 and f[1] == pid]

    def postgres_pids(self, data_dir: str) -> List[str]:
        """The postmaster of *data_dir* and its children, as PIDs of the harness's PID namespace."""
        postmaster = self.postmaster_pid(data_dir)
        return [postmaster] + self.children(postmaster)

    def etcd_get(self, key: str) -> Optional[str]:
        """The value of *key* in the harness's etcd (v3 API), or ``None``."""
        answer = self.http_json('http://127.0.0.1:2379/v3/kv/range', {'key': base64.b64encode(key.encode()).decode()})
        kvs = (answer or {}).get('kvs') or []
        return base64.b64decode(kvs[0]['value']).decode() if kvs else None

    def close(self) -> None:
        """``systemctl exit``; SIGKILL our unshare if systemd does not go; remove the cgroup (a scope of the
        machine's systemd goes by itself once empty; removing its groups first only hastens it)."""
        if self.proc.poll() is None and getattr(self, 'pid', None):
            try:
                self.systemctl('exit', timeout=30)
                self.proc.wait(30)
            except (subprocess.TimeoutExpired, OSError):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        os.close(self._slave)
        os.close(self._master)
        if self.cgroup:
            remove_cgroup(self.cgroup)

    def __enter__(self) -> 'Systemd':
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def unit_for_test(text: str, patroni: str, config_dir: str) -> str:
    """A shipped unit with its paths pointed at the test's Patroni and configuration directory; nothing else changes."""
    return text.replace('/usr/bin/patroni', patroni).replace('/etc/patroni/', config_dir.rstrip('/') + '/')


def log_dropin(path: str) -> str:
    """A drop-in that sends a unit's output to *path* (there is no journald in the harness)."""
    return '[Service]\nStandardOutput=append:{0}\nStandardError=inherit\n'.format(path)


def etcd_unit(etcd: str, data_dir: str, log: str) -> str:
    """etcd 3.4 on the harness's own loopback, Type=notify (etcd sends READY=1 itself)."""
    return ('[Unit]\nDescription=etcd for the tests\n\n[Service]\nType=notify\nExecStart={0} --name h '
            '--data-dir {1} --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 '
            '--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 '
            '--initial-cluster h=http://127.0.0.1:2380\nStandardOutput=append:{2}\nStandardError=inherit\n'
            ).format(etcd, data_dir, log)


def host_dropin() -> str:
    """For a harness with a root: the service runs in the machine's / (its Python, PostgreSQL and etcd), with API
    file systems and a /run of its own; systemd makes its notification socket reachable there. Conditions on paths
    are reset: systemd checks them in its own root, where the machine's files are under /host."""
    return '[Unit]\nConditionPathExists=\n\n[Service]\nRootDirectory=/host\nMountAPIVFS=yes\n'


def debian_root(suite: str) -> Tuple[str, str]:
    """The cached Debian root of *suite* and its systemd's version line, made by tests/debian_root.sh if missing
    (about 30 s)."""
    result = subprocess.run([os.path.join(ROOT, 'tests', 'debian_root.sh'), suite], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return os.path.join(ROOT, '.cache', suite), result.stdout.strip()


def hardening_dropins(unit: str, paths: List[str]) -> Dict[str, str]:
    """The shipped extras/startup_scripts/hardening.conf for *unit* (``patroni.service``, ``patroni@.service``), as
    shipped, and the adaptation it prescribes: a drop-in read after it, ``ReadWritePaths=`` for the test's own
    directories (*paths*, which stand in for /var/lib/postgresql and the rest: none of them is under /tmp, which
    PrivateTmp= replaces; see realparts.HARNESS_WORK)."""
    for path in paths:
        assert not (path + '/').startswith('/tmp/'), path
    with open(os.path.join(ROOT, 'extras', 'startup_scripts', 'hardening.conf')) as f:
        shipped = f.read()
    return {unit + '.d/hardening.conf': shipped,
            unit + '.d/zz-paths.conf': '[Service]\nReadWritePaths={0}\n'.format(' '.join(paths))}


def owned_by_postgres(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    os.chown(path, POSTGRES.pw_uid, POSTGRES.pw_gid)
    return path


__all__: List[str] = ['Systemd', 'cgroup2_mount', 'cgroup2_mounts', 'cgroup_path', 'systemd_is_pid1', 'remove_cgroup',
                      'unit_for_test', 'log_dropin', 'etcd_unit', 'host_dropin', 'debian_root', 'hardening_dropins',
                      'owned_by_postgres']
