#!/bin/sh
# A minimal Debian root, made once with debootstrap into .cache/<name>, then reused:
#   tests/debian_root.sh [suite]           .cache/<suite>: minbase + systemd, for the second tier of the
#                                          real-systemd tests (default trixie, systemd 257: Type=notify-reload needs
#                                          systemd >= 253; the machine's own is 252). It gets an empty /host (the
#                                          harness binds the machine's / there for the services) and the machine's
#                                          postgres user (with its /etc/shadow and /etc/gshadow entries: without
#                                          them `su postgres` fails in the root, "Authentication failure"; a root
#                                          cached before they were added gets them here).
#   tests/debian_root.sh suite --minimal   .cache/<suite>-minimal: minbase alone, nothing added (what a minimal
#                                          Debian has; tests/test_fresh_debian.py runs the README's install in it).
# The mirror is the one the machine's apt already uses (or $SDNOTIFY_DEBIAN_MIRROR). debootstrap is bounded
# ($SDNOTIFY_STEP_TIMEOUT seconds, default 600); a suite newer than the machine's debootstrap (forky on Debian 12's)
# is made with its script for sid, which every current suite uses. Exit code 2 only when the mirror cannot be
# reached (its name does not resolve, the connection is refused or times out: wget's exit status 4 for the
# suite's Release file, asked after debootstrap failed); 1: anything else, a 404 (a wrong or removed suite)
# included.
set -eu
cd "$(dirname "$0")/.."
SUITE=${1:-trixie}
MINIMAL=${2:-}
case "$MINIMAL" in
    '') DEST=.cache/$SUITE; INCLUDE=--include=systemd ;;
    --minimal) DEST=.cache/$SUITE-minimal; INCLUDE= ;;
    *) echo "usage: tests/debian_root.sh [suite [--minimal]]" >&2; exit 1 ;;
esac
# pwconv and grpconv (the root's own) add the entries /etc/passwd and /etc/group have and the shadow files lack
shadow_postgres() {
    grep -q '^postgres:' "$1/etc/shadow" || chroot "$1" /usr/sbin/pwconv
    grep -q '^postgres:' "$1/etc/gshadow" || chroot "$1" /usr/sbin/grpconv
}
# one caller per root at a time (make test runs its tests in parallel workers: a second caller of the same root waits,
# then finds it made; callers of other roots do not wait): flock on .cache/.lock-<root>, held until this script exits
mkdir -p .cache
exec 9>".cache/.lock-$(basename "$DEST")"
flock 9
if [ -f "$DEST/.sdnotify-root" ]; then
    if [ -z "$MINIMAL" ]; then
        shadow_postgres "$DEST"
    fi
    cat "$DEST/.sdnotify-root"
    exit 0
fi
MIRROR=${SDNOTIFY_DEBIAN_MIRROR:-$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)}
MIRROR=${MIRROR:-$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)}
if [ -z "$MIRROR" ]; then
    echo "debian_root.sh: no Debian mirror in /etc/apt/sources.list*; set SDNOTIFY_DEBIAN_MIRROR" >&2
    exit 1
fi
SCRIPT=
if [ ! -e "/usr/share/debootstrap/scripts/$SUITE" ]; then
    SCRIPT=/usr/share/debootstrap/scripts/sid
fi
mkdir -p .cache
rm -rf "$DEST.tmp"
LOG=.cache/debootstrap-$(basename "$DEST").log
# shellcheck disable=SC2086
if ! timeout "${SDNOTIFY_STEP_TIMEOUT:-600}" debootstrap --variant=minbase $INCLUDE "$SUITE" "$DEST.tmp" "$MIRROR" \
        $SCRIPT >"$LOG" 2>&1
then
    echo "debian_root.sh: debootstrap $SUITE from $MIRROR failed (last line: $(tail -n1 "$LOG"))" >&2
    rm -rf "$DEST.tmp"
    # unreachable (wget: 4, a network failure) or not (0, or 8: the server answered, e.g. 404)
    status=0
    timeout 60 wget -q --spider --tries=1 --timeout=20 "$MIRROR/dists/$SUITE/Release" || status=$?
    if [ "$status" -eq 4 ]; then
        echo "debian_root.sh: the mirror $MIRROR cannot be reached" >&2
        exit 2
    fi
    exit 1
fi
if [ -z "$MINIMAL" ]; then
    mkdir "$DEST.tmp/host"
    getent passwd postgres >>"$DEST.tmp/etc/passwd"
    getent group postgres >>"$DEST.tmp/etc/group"
    shadow_postgres "$DEST.tmp"
    chroot "$DEST.tmp" /usr/lib/systemd/systemd --version | head -n1 >"$DEST.tmp/.sdnotify-root"
else
    echo "debian $(cat "$DEST.tmp/etc/debian_version") $SUITE minbase" >"$DEST.tmp/.sdnotify-root"
fi
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
cat "$DEST/.sdnotify-root"
