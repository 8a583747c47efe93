#!/bin/sh
# Install what the tests need, without starting or changing any host-wide service:
# - PostgreSQL 15 from Debian (apt-get install only if it is missing; the tests run their own clusters). On a
#   systemd machine that install would create cluster 15/main and start it on port 5432, so, before it:
#   * if postgresql-common is not installed yet, /etc/postgresql-common/createcluster.conf is written with
#     `create_main_cluster = false`, postgresql-common's own switch (UCF_FORCE_CONFFOLD makes its install keep our
#     file): no cluster is created, by this install or a later postgresql-NN one. The file stays and says why;
#   * for the length of the install, /usr/sbin/policy-rc.d (if there is none already) denies every service start
#     (exit 101, invoke-rc.d(8) and deb-systemd-invoke honour it), and is removed afterwards, also on failure.
# - etcd 3.4 from Debian's etcd-server package, unpacked into .cache/etcd (apt-get download + dpkg-deb -x):
#   installing the package would start a host-wide etcd through its init script.
# - Debian's python3-systemd, unpacked into .cache/python3-systemd the same way: upstream 4.1.5 notifies systemd
#   only through it, so the benchmarks and the systemd 257 tier give it to the upstream control (PYTHONPATH).
# - Debian's rpm (rpmbuild, rpm -qp) and dpkg-dev (dpkg-source), for the package builds of packaging/build.py and
#   tests/test_packaging.py (tools; no service).
# - debootstrap, and Debian roots with systemd (tests/debian_root.sh, each ~30-60 s once): trixie (systemd 257) in
#   .cache/trixie, forky (262) in .cache/forky, bookworm (252) in .cache/bookworm; tests/test_deb.py installs the
#   .deb over each suite's own patroni there.
# Every apt-get step is bounded ($SDNOTIFY_STEP_TIMEOUT seconds, default 600), and so is debootstrap.
#   tests/deps.sh [PART ...]     PART: postgresql etcd python3-systemd rpm debootstrap trixie forky bookworm
#                                (default: all, in order). Exit status 2 only when the Debian mirror cannot be reached.
set -eu
cd "$(dirname "$0")/.."
T=${SDNOTIFY_STEP_TIMEOUT:-600}
PARTS=${*:-postgresql etcd python3-systemd rpm debootstrap trixie forky bookworm}
want() {
    case " $PARTS " in *" $1 "*) return 0 ;; esac
    return 1
}
aptget() {
    timeout "$T" env DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 apt-get "$@"
}
POLICY=/usr/sbin/policy-rc.d
OUR_POLICY=
cleanup() {
    if [ -n "$OUR_POLICY" ]; then
        rm -f "$POLICY"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
if want postgresql && [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    aptget update -qq
    if ! dpkg-query -W -f '${Status}' postgresql-common 2>/dev/null | grep -q 'ok installed'; then
        mkdir -p /etc/postgresql-common
        if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
            cat >/etc/postgresql-common/createcluster.conf <<'EOF'
# Written by patroni-sdnotify's tests/deps.sh before postgresql-common was installed: no cluster "main" is made
# when a PostgreSQL version is installed (the tests run clusters of their own). See createcluster.conf(5).
create_main_cluster = false
include_dir '/etc/postgresql-common/createcluster.d'
EOF
        fi
    fi
    if [ ! -e "$POLICY" ]; then
        OUR_POLICY=1
        printf '#!/bin/sh\n# patroni-sdnotify tests/deps.sh: no service starts while it installs PostgreSQL\nexit 101\n' \
            >"$POLICY"
        chmod 755 "$POLICY"
    fi
    aptget install -y -qq --no-install-recommends postgresql-15 >/dev/null
    cleanup
    OUR_POLICY=
fi
if want etcd && [ ! -x .cache/etcd/usr/bin/etcd ]; then
    apt-cache show etcd-server >/dev/null 2>&1 || aptget update -qq
    rm -rf .cache/etcd.tmp && mkdir -p .cache/etcd.tmp
    (cd .cache/etcd.tmp && aptget download etcd-server >/dev/null && dpkg-deb -x etcd-server_*.deb root)
    rm -rf .cache/etcd && mv .cache/etcd.tmp/root .cache/etcd && rm -rf .cache/etcd.tmp
fi
if want python3-systemd && [ ! -d .cache/python3-systemd/usr/lib/python3/dist-packages/systemd ]; then
    apt-cache show python3-systemd >/dev/null 2>&1 || aptget update -qq
    rm -rf .cache/python3-systemd.tmp && mkdir -p .cache/python3-systemd.tmp
    (cd .cache/python3-systemd.tmp && aptget download python3-systemd >/dev/null && dpkg-deb -x python3-systemd_*.deb root)
    rm -rf .cache/python3-systemd && mv .cache/python3-systemd.tmp/root .cache/python3-systemd
    rm -rf .cache/python3-systemd.tmp
fi
if want rpm && ! { command -v rpmbuild && command -v dpkg-source; } >/dev/null; then
    apt-cache show rpm >/dev/null 2>&1 || aptget update -qq
    aptget install -y -qq --no-install-recommends rpm dpkg-dev >/dev/null
fi
if want debootstrap && ! command -v debootstrap >/dev/null; then
    apt-cache show debootstrap >/dev/null 2>&1 || aptget update -qq
    aptget install -y -qq --no-install-recommends debootstrap >/dev/null
fi
for suite in trixie forky bookworm; do
    if want $suite; then
        tests/debian_root.sh $suite
    fi
done
if want etcd; then
    .cache/etcd/usr/bin/etcd --version | head -1
fi
if want postgresql; then
    /usr/lib/postgresql/15/bin/postgres --version
fi
