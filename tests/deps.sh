#!/bin/sh
# Install what the tests need, without starting or changing any host-wide service:
# - PostgreSQL 15 from Debian (apt-get install only if it is missing; the tests run their own clusters);
# - etcd 3.4 from Debian's etcd-server package, unpacked into .cache/etcd (apt-get download + dpkg-deb -x):
#   installing the package would start a host-wide etcd through its init script.
# - Debian's python3-systemd, unpacked into .cache/python3-systemd the same way: upstream 4.1.5 notifies systemd
#   only through it, so the benchmarks and the systemd 257 tier give it to the upstream control (PYTHONPATH).
# - debootstrap, and a Debian trixie root with systemd 257 in .cache/trixie (tests/debian_root.sh, ~30 s once).
set -eu
cd "$(dirname "$0")/.."
if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
fi
if [ ! -x .cache/etcd/usr/bin/etcd ]; then
    apt-cache show etcd-server >/dev/null 2>&1 || apt-get update -qq
    rm -rf .cache/etcd.tmp && mkdir -p .cache/etcd.tmp
    (cd .cache/etcd.tmp && apt-get download etcd-server >/dev/null && dpkg-deb -x etcd-server_*.deb root)
    rm -rf .cache/etcd && mv .cache/etcd.tmp/root .cache/etcd && rm -rf .cache/etcd.tmp
fi
if [ ! -d .cache/python3-systemd/usr/lib/python3/dist-packages/systemd ]; then
    apt-cache show python3-systemd >/dev/null 2>&1 || apt-get update -qq
    rm -rf .cache/python3-systemd.tmp && mkdir -p .cache/python3-systemd.tmp
    (cd .cache/python3-systemd.tmp && apt-get download python3-systemd >/dev/null && dpkg-deb -x python3-systemd_*.deb root)
    rm -rf .cache/python3-systemd && mv .cache/python3-systemd.tmp/root .cache/python3-systemd
    rm -rf .cache/python3-systemd.tmp
fi
if ! command -v debootstrap >/dev/null; then
    apt-cache show debootstrap >/dev/null 2>&1 || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
tests/debian_root.sh trixie
.cache/etcd/usr/bin/etcd --version | head -1
/usr/lib/postgresql/15/bin/postgres --version
