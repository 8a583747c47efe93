#!/bin/bash
# Upstream's acceptance suite (behave, features/) on upstream's master, without and with the series, side by side,
# on each DCS this machine can run: the record docs/upstreaming.md quotes.
#
#   bench/acceptance.sh UPSTREAM [REF] [DCS...]
#
# UPSTREAM: a clone of upstream Patroni (work tree or bare); REF: its commit (default HEAD); DCS: the DCS to run, as
# upstream's DCS variable names them (default: etcd3 etcd raft zookeeper). In ACCEPTANCE_DIR (default
# build/acceptance, git-ignored) it makes two work trees of REF: master, and master + patches/series +
# patches/upstream-only applied as bench/upstream_suite.sh applies them (`git am -3 -C1`), and a venv as upstream's
# CI makes one for behave (requirements.txt, behave, coverage, psycopg[binary]; PYTHON, default /usr/bin/python3,
# which the user postgres can run). Then, for each DCS and each feature
# (FEATURES="basic_replication ...", default every features/*.feature), it runs `python -m behave features/X.feature`
# on master and on master + series at the same time (each side in a work tree and namespaces of its own, each the
# other's load), and nothing else: with upstream's environment (DCS=<dcs>, PATH starting with
# /usr/lib/postgresql/$PG_MAJOR/bin, etcd's directory and ".", BUILD_NUMBER set as upstream's CI sets a CI variable:
# its timeout multiplier, 5), as the user postgres (PostgreSQL refuses root), in private network and PID namespaces
# (`unshare`; bench/acceptance_init.py is PID 1: loopback, ZooKeeper when DCS=zookeeper, reaping) so that nothing
# on the host's ports is touched and nothing outlives the run, bounded by RUN_TIMEOUT seconds (default 700). With
# LOCK=<file>, each pair of runs holds `flock <file>` and nothing else does. A feature whose scenarios end
# differently on the two sides is run again on both (RERUNS times, default 1), to tell a flake from a difference.
# RECORD_ONLY=yes runs nothing and prints the record of the runs kept so far (e.g. after a run was stopped).
#
# The results stay in ACCEPTANCE_DIR/results/<dcs>/<side>/<feature>.{json,log,wall,rc,output}, for the series and
# upstream commit of ACCEPTANCE_DIR/key (a new series or commit starts afresh), so runs of one DCS at a time add up
# and a feature already run on a side is not run again there (a stopped run resumes);
# at the end bench/acceptance_report.py prints the record of everything run so far on stdout (progress on stderr);
# `make acceptance UPSTREAM=...` writes it, after the series stamp, to docs/results/acceptance.txt.
set -euo pipefail
UPSTREAM=${1:?usage: bench/acceptance.sh UPSTREAM [REF] [DCS...]}
REF=${2:-HEAD}
shift $(($# < 2 ? $# : 2))
DCS_LIST=("$@")
[ ${#DCS_LIST[@]} -gt 0 ] || DCS_LIST=(etcd3 etcd raft zookeeper)
HERE=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
WORK=${ACCEPTANCE_DIR:-$HERE/build/acceptance}
RUN_TIMEOUT=${RUN_TIMEOUT:-700}
RERUNS=${RERUNS:-1}
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
RUN_USER=${RUN_USER:-postgres}
T=${SDNOTIFY_STEP_TIMEOUT:-600}
log() { echo "acceptance: $*" >&2; }

[ "$(id -u)" = 0 ] || { echo "acceptance: run it as root (namespaces; behave runs as $RUN_USER)" >&2; exit 2; }
[ -x "$PGBIN/postgres" ] || { echo "acceptance: no PostgreSQL $PG_MAJOR in $PGBIN (tests/deps.sh postgresql)" >&2; exit 2; }
ETCD=$(command -v etcd || true)
[ -n "$ETCD" ] || ETCD=$HERE/.cache/etcd/usr/bin/etcd
sha=$(git -C "$UPSTREAM" rev-parse --verify "$REF^{commit}")
key="upstream $sha $("$PYTHON" "$HERE/patchqueue.py" series-stamp)"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
if [ "$(cat "$WORK/key" 2>/dev/null)" != "$key" ]; then
    log "new series or upstream commit: starting afresh in $WORK"
    rm -rf "$WORK/master" "$WORK/series" "$WORK/results"
    printf '%s\n' "$key" >"$WORK/key"
fi

tree() {  # tree SIDE: the work tree of one side
    local dir=$WORK/$1 series=() p
    [ -d "$dir" ] && return 0
    git clone --quiet --no-checkout "$UPSTREAM" "$dir.tmp"
    git -C "$dir.tmp" -c advice.detachedHead=false checkout --quiet "$sha"
    if [ "$1" = series ]; then
        while read -r p _; do
            case "$p" in ''|'#'*) continue ;; esac
            series+=("$HERE/patches/$p")
        done <"$HERE/patches/series"
        git -C "$dir.tmp" -c user.name=patroni-sdnotify -c user.email=patroni-sdnotify@localhost \
            am --quiet -3 -C1 "${series[@]}" "$HERE"/patches/upstream-only/*.patch
    fi
    git -C "$dir.tmp" log --format='%H %s' "$sha^..HEAD" >"$dir.tmp.commits"
    chown -R "$RUN_USER:" "$dir.tmp"
    mv "$dir.tmp.commits" "$WORK/$1.commits"
    mv "$dir.tmp" "$dir"
}
tree master
tree series

VENV=$WORK/venv
if [ ! -e "$VENV/.complete" ]; then
    log "venv: upstream's requirements.txt, behave, coverage, psycopg[binary]"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    timeout "$T" nice -n 10 "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        -r "$WORK/master/requirements.txt" behave coverage 'psycopg[binary]' >&2
    touch "$VENV/.complete"
fi
# upstream's ZooKeeperController suspends the DCS with `sudo kill -SIGSTOP <pid>`; the run is already its user's
mkdir -p "$WORK/bin"
printf '#!/bin/sh\nexec "$@"\n' >"$WORK/bin/sudo" && chmod 755 "$WORK/bin/sudo"

zookeeper_classpath() {  # Debian's zookeeper package: its jar and the jars it depends on
    [ -r /usr/share/java/zookeeper.jar ] || return 1
    command -v java >/dev/null || return 1
    local env=/etc/zookeeper/conf/environment cp
    if [ -r "$env" ]; then
        cp=$(. "$env" && echo "${CLASSPATH:-}")
    fi
    echo "${cp:-/usr/share/java/zookeeper.jar}"
}

unavailable() {  # unavailable DCS: why this machine cannot run it (empty: it can)
    case "$1" in
        etcd|etcd3) [ -x "$ETCD" ] || echo "no etcd binary (tests/deps.sh etcd unpacks etcd 3.4 into .cache/etcd)" ;;
        raft) ;;
        zookeeper|exhibitor) zookeeper_classpath >/dev/null || echo "no ZooKeeper (apt-get install zookeeper: Debian's package; no service is started)" ;;
        *) echo "no $1 on this machine" ;;
    esac
}

features=()
if [ -n "${FEATURES:-}" ]; then
    read -r -a features <<<"$FEATURES"
else
    for f in "$WORK"/master/features/*.feature; do features+=("$(basename "$f" .feature)"); done
fi

run() {  # run DCS SIDE FEATURE SUFFIX: one behave run of one feature on one side
    local dcs=$1 side=$2 feature=$3 suffix=$4 dir=$WORK/$2 out rc zk=()
    out=$WORK/results/$dcs/$side
    mkdir -p "$out"
    rm -rf "$dir/features/output" "$dir/data" "$dir/.acceptance" "$out/$feature$suffix".*
    mkdir -p "$dir/.acceptance/tmp" && chown -R "$RUN_USER:" "$dir/.acceptance"
    if [ "$dcs" = zookeeper ] || [ "$dcs" = exhibitor ]; then
        zk=(--zookeeper "$(zookeeper_classpath)" --zookeeper-dir "$dir/.acceptance/zookeeper")
    fi
    log "$dcs $side $feature$suffix ..."
    set +e
    (cd "$dir" && env -u NOTIFY_SOCKET -u WATCHDOG_USEC -u WATCHDOG_PID -u LISTEN_FDS -u LISTEN_PID \
        PATH="$WORK/bin:$VENV/bin:$PGBIN:$(dirname "$ETCD"):.:$PATH" HOME="$dir/.acceptance" \
        TMPDIR="$dir/.acceptance/tmp" \
        DCS="$dcs" BUILD_NUMBER=acceptance PYTHONDONTWRITEBYTECODE=1 \
        timeout -k 10 "$RUN_TIMEOUT" unshare --net --pid --fork --mount-proc --kill-child \
        "$PYTHON" "$HERE/bench/acceptance_init.py" --user "$RUN_USER" \
        --wall-file "$dir/.acceptance/wall" "${zk[@]}" -- \
        "$VENV/bin/python" -m behave --format json --outfile "$dir/.acceptance/result.json" --format plain \
        "features/$feature.feature") >"$out/$feature$suffix.log" 2>&1
    rc=$?
    set -e
    echo "$rc" >"$out/$feature$suffix.rc"
    [ ! -e "$dir/.acceptance/result.json" ] || mv "$dir/.acceptance/result.json" "$out/$feature$suffix.json"
    [ ! -e "$dir/.acceptance/wall" ] || mv "$dir/.acceptance/wall" "$out/$feature$suffix.wall"
    [ ! -d "$dir/.acceptance/zookeeper" ] || cp "$dir/.acceptance/zookeeper/zookeeper.log" "$out/$feature$suffix.zookeeper.log" 2>/dev/null || true
    [ ! -d "$dir/features/output" ] || cp -a "$dir/features/output" "$out/$feature$suffix.output"
    log "$dcs $side $feature$suffix: exit $rc, $(cat "$out/$feature$suffix.wall" 2>/dev/null || echo '?') s"
}

kept() {  # kept DCS FEATURE SUFFIX: whether both sides of that run are there
    [ -e "$WORK/results/$1/master/$2$3.rc" ] && [ -e "$WORK/results/$1/series/$2$3.rc" ]
}

kill_tree() {  # kill_tree PID: SIGTERM to PID and to its descendants, the deepest first (timeout forwards it to
    local child  # unshare, whose --kill-child ends the namespace)
    for child in $(pgrep -P "$1" || true); do kill_tree "$child"; done
    kill -TERM "$1" 2>/dev/null || true
}
trap 'for pid in $(pgrep -P $$ || true); do kill_tree "$pid"; done' EXIT  # every run, however far it got
trap 'exit 130' INT TERM

together() {  # together DCS FEATURE SUFFIX SIDE...: the runs of the feature on those sides, at once, under LOCK
    local dcs=$1 feature=$2 suffix=$3 side pid rc=0 pids=()
    shift 3
    if [ -n "${LOCK:-}" ]; then
        exec 9>>"$LOCK"
        flock 9
    fi
    for side in "$@"; do
        run "$dcs" "$side" "$feature" "$suffix" 9>&- &  # the lock is the script's: a run does not keep it
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || rc=$?
    done
    if [ -n "${LOCK:-}" ]; then
        exec 9>&-
    fi
    return "$rc"
}

[ "${RECORD_ONLY:-no}" = no ] || DCS_LIST=()  # the record of the runs kept so far, nothing run
for dcs in "${DCS_LIST[@]}"; do
    why=$(unavailable "$dcs")
    mkdir -p "$WORK/results/$dcs"
    if [ -n "$why" ]; then
        echo "$why" >"$WORK/results/$dcs/unavailable"
        log "$dcs: not run: $why"
        continue
    fi
    rm -f "$WORK/results/$dcs/unavailable"
    for feature in "${features[@]}"; do
        # a feature run on both sides is kept (remove $WORK/results/$dcs to run it again); on one side only (a run
        # that was stopped), it runs again on both: the two sides of a row always ran at the same time
        kept "$dcs" "$feature" "" || together "$dcs" "$feature" "" master series
        # exit 0: the scenarios end differently on the two sides
        if "$VENV/bin/python" "$HERE/bench/acceptance_report.py" --differs "$WORK" "$dcs" "$feature"; then
            for i in $(seq 1 "$RERUNS"); do
                kept "$dcs" "$feature" ".rerun$i" || together "$dcs" "$feature" ".rerun$i" master series
            done
        fi
    done
done
"$VENV/bin/python" "$HERE/bench/acceptance_report.py" "$WORK"
