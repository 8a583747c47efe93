"""PID 1 of the private network and PID namespaces of one run of upstream's behave features (bench/acceptance.sh).

It brings the namespace's loopback up, starts ZooKeeper when asked (upstream's ZooKeeperController does not start
one: it looks for a running ``java .*zookeeper`` with pgrep), runs the command as the given user, reaps every orphan
(Patroni's postmaster is one: a PID 1 that did not reap would leave zombies that look alive to psutil) and exits with
the command's status, which ends every process left in the namespace. The command's wall time, from its start to its
exit, goes to ``--wall-file``.

Usage (as root, inside ``unshare --net --pid --fork --mount-proc``)::

    acceptance_init.py --user postgres --wall-file F [--zookeeper CLASSPATH --zookeeper-dir D] -- command...
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from typing import List, Optional

#: how long ZooKeeper may take to accept connections on its client port (seconds)
ZOOKEEPER_START_TIMEOUT = 120.0
ZOOKEEPER_PORT = 2181


def as_user(user: str, command: List[str]) -> List[str]:
    """The command run as ``user`` with its groups (setpriv keeps the environment).

    :param user: the user name.
    :param command: the command.
    :returns: the setpriv command line.
    """
    return ['setpriv', '--reuid', user, '--regid', user, '--init-groups', '--'] + command


def start_zookeeper(user: str, classpath: str, directory: str) -> 'subprocess.Popen[bytes]':
    """Start a standalone ZooKeeper on port 2181 with its data in ``directory`` and wait until it accepts connections.

    :param user: the user it runs as.
    :param classpath: the Java class path of Debian's ZooKeeper.
    :param directory: its configuration, data and log directory (created, owned by ``user``).
    :returns: the process.
    :raises RuntimeError: if it exits or does not listen within :data:`ZOOKEEPER_START_TIMEOUT`.
    """
    os.makedirs(os.path.join(directory, 'data'), exist_ok=True)
    config = os.path.join(directory, 'zoo.cfg')
    with open(config, 'w') as f:
        f.write('tickTime=2000\ndataDir={0}\nclientPort={1}\nadmin.enableServer=false\n'
                .format(os.path.join(directory, 'data'), ZOOKEEPER_PORT))
    subprocess.run(['chown', '-R', user, directory], check=True)
    log = open(os.path.join(directory, 'zookeeper.log'), 'ab')
    # no /tmp/hsperfdata_<user>/<pid>: the two sides' JVMs run at the same time, with the same PID in their namespaces
    java = ['java', '-Xmx256m', '-XX:-UsePerfData', '-Dzookeeper.log.dir=' + directory, '-cp', classpath,
            'org.apache.zookeeper.server.ZooKeeperServerMain', config]
    process = subprocess.Popen(as_user(user, java), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + ZOOKEEPER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError('ZooKeeper exited with {0} (see {1}/zookeeper.log)'.format(
                process.returncode, directory))
        try:
            socket.create_connection(('127.0.0.1', ZOOKEEPER_PORT), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.2)  # polling a port: there is no event to wait on
    raise RuntimeError('ZooKeeper did not listen on {0} within {1:.0f} s'.format(
        ZOOKEEPER_PORT, ZOOKEEPER_START_TIMEOUT))


def reap_until(child: 'subprocess.Popen[bytes]') -> int:
    """Reap every process that ends until ``child`` does.

    :param child: the command.
    :returns: its exit status (128 + signal number if a signal ended it).
    """
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child.pid:
            child.returncode = status  # Popen must not wait for it again
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command (see the module's docstring).

    :param argv: the arguments.
    :returns: the command's exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--user', required=True)
    parser.add_argument('--wall-file', required=True)
    parser.add_argument('--zookeeper', metavar='CLASSPATH')
    parser.add_argument('--zookeeper-dir')
    parser.add_argument('command', nargs='+')
    args = parser.parse_args(argv)
    if os.getpid() != 1:
        parser.error('not PID 1 of a PID namespace: run it under unshare --pid --fork --mount-proc')
    subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
    if args.zookeeper:
        try:
            start_zookeeper(args.user, args.zookeeper, args.zookeeper_dir)
        except RuntimeError as e:
            print('acceptance_init: {0}'.format(e), file=sys.stderr)
            return 3
    start = time.monotonic()
    child = subprocess.Popen(as_user(args.user, args.command))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _: child.send_signal(s))
    code = reap_until(child)
    with open(args.wall_file, 'w') as f:
        f.write('{0:.1f}\n'.format(time.monotonic() - start))
    return code


if __name__ == '__main__':
    sys.exit(main())
