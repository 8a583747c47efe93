#!/bin/sh
# Install what the tests need, without starting or changing any host-wide service:
# - PostgreSQL 15 from Debian (apt-get install only if it is missing; the tests run their own clusters);
# - etcd 3.4 from Debian's etcd-server package, unpacked into .cache/etcd (apt-get download + dpkg-deb -x):
#   installing the package would start a host-wide etcd through its init script.
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
.cache/etcd/usr/bin/etcd --version | head -1
/usr/lib/postgresql/15/bin/postgres --version
