#!/usr/bin/python3
"""The ``ExecReload=`` of patroni-sdnotify's units: reload the local Patroni and return once the reload is applied.

    patroni_systemd_reload [--timeout SECONDS] CONFIG_FILE

It reads *CONFIG_FILE*, the unit's own Patroni configuration, for the REST API's address, credentials and TLS
settings (as ``patronictl`` reads them: ``ctl`` first, then ``restapi``; never the DCS), and asks that REST API for
the waiting reload of the patched Patroni, ``POST /reload {"timeout": SECONDS}``, which answers once the reload is
over. ``systemctl reload`` then returns when Patroni has applied the file and PostgreSQL has loaded it, on every
systemd (252 included, where systemd itself only waits for this command).

Exit status and what it means:

* 0: the reload is applied; or the REST API does not answer (Patroni is still starting, e.g. waiting for its DCS,
  before its REST API is up): then Patroni gets a SIGHUP (``$MAINPID``, as ``kill -HUP`` did) and nothing waits,
  which stderr says;
* 1: the reload failed (Patroni keeps the configuration it had, or applied part of it: the message says which), or
  was not over after *SECONDS*, or the REST API refused the request or could not be asked (authentication, TLS, a
  connection that timed out: Patroni then gets a SIGHUP, so the reload still happens, unwaited);
* 2: *CONFIG_FILE* cannot be read: nothing is sent and nothing changes.

Every failure is one line on stderr (the unit's journal).
"""

import argparse
import json
import os
import signal
import sys
import time

from typing import Any, Dict, List, Optional, Tuple

PROG = 'patroni_systemd_reload'
# how long to wait for a REST API that restarts on its new settings (its address may change with them)
RESTART_WAIT = 30


class Failure(Exception):
    """The reload could not be waited for; *code* is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super(Failure, self).__init__(message)
        self.code = code


class Unreachable(Exception):
    """Nothing listens at the REST API's address."""


class Refused(Exception):
    """The REST API could not be asked: TLS failed (a rejected certificate, a missing client certificate), or the
    connection timed out."""


def read_config(path: str) -> Any:
    """Patroni's own view of *path* (with the ``PATRONI_*`` environment of the unit, as Patroni has it).

    :raises Failure: the file is missing, unreadable or not a Patroni configuration (exit status 2).
    """
    from patroni.config import Config

    try:
        with open(path):
            pass
        return Config(path, validator=None)
    except Exception as e:
        message = ' '.join(str(e).split()) or type(e).__name__
        raise Failure('cannot read {0}: {1}: nothing was reloaded'.format(path, message), 2)


def reload_url(config: Any) -> str:
    """The URL of ``POST /reload`` on this node's REST API, as Patroni's own REST API builds its address:
    ``restapi.connect_address`` (what its certificate names), else ``restapi.listen`` (a wildcard as loopback)."""
    restapi = config.get('restapi') or {}
    address = restapi.get('connect_address') or restapi.get('listen') or ''
    host, _, port = address.rpartition(':')
    if host in ('', '0.0.0.0', '*'):
        host = '127.0.0.1'
    elif host in ('::', '[::]'):
        host = '[::1]'
    scheme = 'https' if restapi.get('certfile') else 'http'
    return '{0}://{1}:{2}/reload'.format(scheme, host, port)


def post_reload(config: Any, timeout: int) -> Tuple[int, Dict[str, Any]]:
    """``POST /reload {"timeout": timeout}``; returns the HTTP status and the JSON answer.

    :raises Unreachable: nothing accepts the connection.
    :raises Refused: TLS failed, or the connection timed out.
    :raises Failure: any other error of the request.
    """
    import urllib3

    from patroni.request import PatroniRequest

    url = reload_url(config)
    try:
        response = PatroniRequest(config).request('POST', url, {'timeout': timeout}, retries=False,
                                                  timeout=urllib3.Timeout(connect=5, read=timeout + 5))
    except urllib3.exceptions.NewConnectionError as e:
        raise Unreachable('{0}: {1}'.format(url, e))
    except (urllib3.exceptions.SSLError, urllib3.exceptions.ConnectTimeoutError) as e:
        raise Refused('{0}: {1}'.format(url, ' '.join(str(e).split()) or type(e).__name__))
    except Exception as e:
        raise Failure('{0}: {1}'.format(url, ' '.join(str(e).split()) or type(e).__name__))
    try:
        answer = json.loads(response.data.decode('utf-8'))
    except ValueError:
        answer = {'error': ' '.join(response.data.decode('utf-8', 'replace').split())[:200]}
    return response.status, answer if isinstance(answer, dict) else {'error': str(answer)}


def sighup(why: str, code: int) -> int:
    """Send SIGHUP to ``$MAINPID`` (set by systemd for ``ExecReload=``), say *why* nothing waits; return *code*."""
    pid = os.environ.get('MAINPID', '')
    if not pid.isdigit():
        raise Failure('{0}; no $MAINPID to send SIGHUP to: nothing was reloaded'.format(why))
    try:
        os.kill(int(pid), signal.SIGHUP)
    except OSError as e:
        raise Failure('{0}; SIGHUP to {1}: {2}'.format(why, pid, e.strerror))
    sys.stderr.write('{0}: {1}: sent SIGHUP to {2}, not waiting for the reload\n'.format(PROG, why, pid))
    return code


def reload(path: str, timeout: int) -> int:
    """Reload the Patroni of *path* and wait at most *timeout* seconds; returns the exit status.

    :raises Failure: see the module's docstring.
    """
    config = read_config(path)
    try:
        status, answer = post_reload(config, timeout)
    except Unreachable as e:
        return sighup('the REST API does not answer ({0})'.format(e), 0)
    except Refused as e:  # as a refused request: reload as before, and say that it is not waited for
        return sighup('the REST API could not be asked ({0})'.format(e), 1)
    deadline = time.monotonic() + RESTART_WAIT
    while answer.get('reload') == 'scheduled' and 'REST API restarts' in str(answer.get('error')):
        # the reload changes the REST API's settings: ask the restarted one (read from the same file) for a reload
        # of the file, which is over once both are
        config = read_config(path)
        try:
            status, answer = post_reload(config, timeout)
        except Unreachable as e:
            if time.monotonic() > deadline:
                raise Failure('the REST API did not come back after its restart ({0})'.format(e))
            time.sleep(0.1)
    # the answer's "reload" says how it went, whatever the HTTP status that goes with it
    if answer.get('reload') == 'applied':
        if answer.get('pending_restart'):
            sys.stderr.write('{0}: applied; PostgreSQL needs a restart for: {1}\n'.format(
                PROG, ', '.join(sorted(answer.get('pending_restart_reason') or {}))))
        return 0
    if answer.get('reload') in ('failed', 'scheduled'):
        raise Failure('reload {0}: {1}'.format(answer['reload'], answer.get('error')))
    if status == 202:
        raise Failure('the REST API scheduled the reload without waiting for it (a Patroni without the waiting '
                      'reload)')
    # refused (401, 403): reload as before
    return sighup('the REST API answered {0} {1}'.format(status, answer.get('error') or ''), 1)


def main(argv: Optional[List[str]] = None) -> int:
    """Parse the command line, reload, print a failure as one line; returns the exit status."""
    parser = argparse.ArgumentParser(prog=PROG, description='Reload the local Patroni and wait until the reload is '
                                     'applied (the ExecReload= of the patroni-sdnotify units).')
    parser.add_argument('--timeout', type=int, default=240,
                        help="seconds to wait, 1 to 3600 (default: 240, within the units' TimeoutStartSec=5min)")
    parser.add_argument('config_file', help="the unit's Patroni configuration file")
    args = parser.parse_args(argv)
    if not 0 < args.timeout <= 3600:
        parser.error('--timeout must be 1 to 3600 seconds')
    try:
        return reload(args.config_file, args.timeout)
    except Failure as e:
        sys.stderr.write('{0}: {1}\n'.format(PROG, e))
        return e.code


if __name__ == '__main__':
    sys.exit(main())
