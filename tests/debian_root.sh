#!/bin/sh
# A minimal Debian root with a newer systemd, for the second tier of the real-systemd tests (Type=notify-reload
# needs systemd >= 253; the machine's own is 252). Made once with debootstrap into .cache/<suite>, then reused:
#   tests/debian_root.sh [suite]        (default: trixie, systemd 257)
# The mirror is the one the machine's apt already uses (or $SDNOTIFY_DEBIAN_MIRROR). The root gets an empty /host
# (the harness binds the machine's / there for the services) and the machine's postgres user.
set -eu
cd "$(dirname "$0")/.."
SUITE=${1:-trixie}
DEST=.cache/$SUITE
if [ -f "$DEST/.sdnotify-root" ]; then
    cat "$DEST/.sdnotify-root"
    exit 0
fi
MIRROR=${SDNOTIFY_DEBIAN_MIRROR:-$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)}
MIRROR=${MIRROR:-$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)}
if [ -z "$MIRROR" ]; then
    echo "debian_root.sh: no Debian mirror in /etc/apt/sources.list*; set SDNOTIFY_DEBIAN_MIRROR" >&2
    exit 1
fi
mkdir -p .cache
rm -rf "$DEST.tmp"
if ! debootstrap --variant=minbase --include=systemd "$SUITE" "$DEST.tmp" "$MIRROR" >".cache/debootstrap-$SUITE.log" 2>&1
then
    echo "debian_root.sh: debootstrap $SUITE from $MIRROR failed (last line: $(tail -n1 ".cache/debootstrap-$SUITE.log"))" >&2
    rm -rf "$DEST.tmp"
    exit 1
fi
mkdir "$DEST.tmp/host"
getent passwd postgres >>"$DEST.tmp/etc/passwd"
getent group postgres >>"$DEST.tmp/etc/group"
chroot "$DEST.tmp" /usr/lib/systemd/systemd --version | head -n1 >"$DEST.tmp/.sdnotify-root"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
cat "$DEST/.sdnotify-root"
