#!/bin/bash
# The pull requests: patches/series cut into one PR per concern, each PR a prefix of the series on upstream's master,
# and upstream's own checks (flake8, isort, the unit suite, pyright strict) on every prefix.
#
#   bench/pr_map.sh UPSTREAM [REF] [PYTHON]
#
# UPSTREAM: a clone of upstream Patroni (work tree or bare); REF: its commit (default HEAD); PYTHON: the interpreter of
# the venvs (default python3). In a temporary clone it applies the series with `git am`, PR after PR (the map is
# PRS below; a patch of patches/upstream-only/, upstream's docs/ and extras/, goes with the PR marked "+docs:<its
# number>"), turns each patch into a clean upstream commit (the DEP-3 fields Forwarded:, Last-Update:, Origin:,
# Applied-Upstream: dropped,
# "Bug: <url>" written as upstream writes it, "Ref: #N"), and after each PR runs upstream's checks as its CI does:
# flake8 and isort with tox.ini, `pytest tests` in a venv of requirements.txt + requirements.dev.txt, and pyright
# (PYRIGHT, default .cache/pyright/node_modules/.bin/pyright, `npm install pyright@1.1.411` there: the version of
# upstream's workflow) against a venv of requirements.txt psycopg2-binary psycopg, as upstream's pyright job
# (PR_PYRIGHT=no skips it, e.g. for a second interpreter: pyright checks for pyrightconfig.json's pythonVersion).
# It prints a Markdown table (docs/upstreaming.md quotes it).
#
# The commits' author is PR_AUTHOR ("Name <address>") or, if unset, `git config user.name`/`user.email`. An address
# under .invalid, .example, .test or localhost is no one's: the checks still run, with that placeholder in the
# temporary clone only, but nothing is written out. With a real author and PR_OUT=dir, each PR's commits are written
# as `git format-patch` files to dir/prN-<name>/, ready to push or mail.
#
# Each patch is applied with plain `git am` first, and with `git am -3 -C1` only if that fails (the patches are made
# on the 4.1.5 sdist, whose blobs are not in upstream's history); the record names the patches that needed it. The
# PR branches are the commits made on REF (rebased): each PR's `git format-patch` export (what PR_OUT receives) is
# checked at the end to apply to REF with plain `git am` (no -3, no -C), PR after PR in order, in a second work tree,
# ending on the very tree the checks ran on.
set -euo pipefail
UPSTREAM=${1:?usage: bench/pr_map.sh UPSTREAM [REF] [PYTHON]}
REF=${2:-HEAD}
PYTHON=${3:-python3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
T=${SDNOTIFY_STEP_TIMEOUT:-600}
PYRIGHT=${PYRIGHT:-$HERE/.cache/pyright/node_modules/.bin/pyright}
PR_PYRIGHT=${PR_PYRIGHT:-yes}  # no: skip pyright (it checks for pyrightconfig.json's pythonVersion, not PYTHON's)
PR_CHECKS=${PR_CHECKS:-yes}  # no: only apply, export and check the exports (seconds): no venv, no checks

# name|patch numbers (a range of patches/series)|concern; in series order, each PR on top of the previous ones
PRS=(
    "reload-while-initdb|0001-0001|a reload writes no file while the data directory is created (initdb/basebackup)"
    "early-sighup|0002-0002|a SIGHUP from the first instant of the daemon is a reload, not a kill"
    "notifier|0003-0005|+docs:0001 no READY=1 re-assert after a stop (#3590); built-in sd_notify; READY=1 after the first cycle"
    "prompt-reload|0006-0006|a SIGHUP cuts the loop_wait nap short"
    "status|0007-0007|+docs:0002 STATUS="
    "watchdog|0008-0009|+docs:0003 WatchdogSec= (opt-in): pinged by the HA loop, and during a stop of PostgreSQL that progresses"
    "stop-extension|0010-0010|+docs:0004 PATRONI_STOP_TIMEOUT_MAX (opt-in): the stop timeout extended while a shutdown progresses"
    "reload-wait|0011-0011|after pg_ctl reload, wait for pg_conf_load_time() instead of a second"
    "reload-answer|0012-0012|+docs:0005 POST /reload {\"timeout\": N} and patronictl reload --wait answer when it is over"
    "ready-contract|0013-0014|+docs:0006 READY=1 for the configuration on disk, and at the latest after loop_wait + 2 * retry_timeout"
    "config-whole|0015-0015|PostgreSQL's configuration files replaced whole (temporary file, rename), never read in part"
    "sigterm-lock|0016-0016|the lock of the SIGTERM handler reentrant (a SIGTERM could hang Patroni on Python 3.6-3.9, 3.14)"
)

author=${PR_AUTHOR:-}
if [ -z "$author" ]; then
    name=$(git -C "$HERE" config user.name || true)
    email=$(git -C "$HERE" config user.email || true)
    [ -n "$name" ] && [ -n "$email" ] && author="$name <$email>"
fi
real_author=yes
case "$author" in
    ''|*'.invalid>'|*'.example>'|*'.test>'|*'@localhost>'|*'.localhost>') real_author=no ;;
esac
if [ "$real_author" = no ]; then
    echo "pr_map: no real author (set PR_AUTHOR=\"Name <address>\"): running the checks only, writing nothing" >&2
    author='nobody <nobody@invalid>'
    [ -z "${PR_OUT:-}" ] || { echo "pr_map: PR_OUT needs a real author" >&2; exit 2; }
fi
[ "$PR_PYRIGHT" = no ] || [ "$PR_CHECKS" = no ] || [ -x "$PYRIGHT" ] || { echo "pr_map: no pyright at $PYRIGHT (npm install pyright@1.1.411 in .cache/pyright)" >&2; exit 2; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
git clone --quiet --no-checkout "$UPSTREAM" "$TMP/up"
cd "$TMP/up"
git -c advice.detachedHead=false checkout --quiet "$(git -C "$UPSTREAM" rev-parse "$REF")"
aname=${author% <*}; aemail=${author##*<}; aemail=${aemail%>}
git config user.name "$aname" && git config user.email "$aemail"
base=$(git rev-parse HEAD)

PIP="timeout --foreground $T"
if [ "$PR_CHECKS" = no ]; then
    echo "upstream $(git log -1 --format='%H (%s)'), PR_CHECKS=no: the PRs applied and exported, no checks run"
else
"$PYTHON" -m venv "$TMP/venv" && "$PYTHON" -m venv "$TMP/venv-pyright"
for v in venv venv-pyright; do
    $PIP "$TMP/$v/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >/dev/null
done
$PIP "$TMP/venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt -r requirements.dev.txt \
    psycopg2-binary >/dev/null
$PIP "$TMP/venv/bin/pip" install --quiet --disable-pip-version-check flake8 isort >/dev/null
$PIP "$TMP/venv-pyright/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt psycopg2-binary \
    psycopg >/dev/null

echo "upstream $(git log -1 --format='%H (%s)'), python $("$TMP/venv/bin/python" -c \
    'import platform; print(platform.python_version())'), $("$PYRIGHT" --version)"
fi
echo
echo "| PR | patches | concern | commits | flake8 | isort | pytest | pyright |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"

checks() {  # the cells of one row
    local f8 is py pr out
    if [ "$PR_CHECKS" = no ]; then echo "not run | not run | not run | not run"; return; fi
    if "$TMP/venv/bin/python" -m flake8 --config tox.ini patroni tests >"$TMP/flake8" 2>&1; then f8=clean
    else f8="$(wc -l <"$TMP/flake8") findings"; fi
    if "$TMP/venv/bin/python" -m isort --settings-path tox.ini --check-only patroni tests >"$TMP/isort" 2>&1; then
        is=clean
    else is="$(grep -c ERROR "$TMP/isort") files"; fi
    out=$(timeout 1800 "$TMP/venv/bin/python" -m pytest tests -q -p no:cacheprovider 2>&1 || true)
    py=$(printf '%s\n' "$out" | tail -1 | sed -e 's/^=* *//' -e 's/ in [0-9.]*s.*//')
    if [ "$PR_PYRIGHT" = no ]; then
        pr='not run (PR_PYRIGHT=no)'
    else
        out=$(timeout 1800 "$PYRIGHT" --pythonpath "$TMP/venv-pyright/bin/python" 2>&1 || true)
        pr=$(printf '%s\n' "$out" | grep -E '[0-9]+ errors?, [0-9]+ warnings?' | tail -1 | sed 's/ *$//')
    fi
    echo "$f8 | $is | $py | ${pr:-pyright did not run}"
}

# the clean message of one commit: DEP-3 fields out, Bug: as upstream's "Ref: #N"
clean_message() {
    git log -1 --format=%B | sed -E \
        -e '/^(Forwarded|Last-Update|Origin|Applied-Upstream|Bug-[A-Za-z]+):/d' \
        -e 's,^Bug: https://github.com/patroni/patroni/(issues|pull)/([0-9]+)$,Ref: #\2,' \
        -e 's,^Bug: ,Ref: ,' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
}

echo "| master | | | | $(checks) |"
fuzzy=()
mapfile -t series < <(grep -v -e '^#' -e '^$' "$HERE/patches/series" | awk '{print $1}')
n=0
for pr in "${PRS[@]}"; do
    n=$((n + 1))
    IFS='|' read -r name range concern <<<"$pr"
    first=${range%-*}; last=${range#*-}
    files=()
    for p in "${series[@]}"; do
        num=${p%%-*}
        if [ "$((10#$num))" -ge "$((10#$first))" ] && [ "$((10#$num))" -le "$((10#$last))" ]; then
            files+=("$HERE/patches/$p")
        fi
    done
    case "$concern" in '+docs:'*) docs=${concern%% *}; docs=${docs#+docs:}; concern=${concern#* }
                                   files+=("$HERE"/patches/upstream-only/"$docs"-*.patch)
                                   range="$range + upstream-only $docs" ;; esac
    start=$(git rev-parse HEAD)
    for f in "${files[@]}"; do
        if ! git am --quiet "$f" >/dev/null 2>&1; then
            git am --abort
            git am --quiet -3 -C1 "$f"
            rel=${f#"$HERE"/patches/}
            fuzzy+=("${rel%%-*}")
        fi
        GIT_COMMITTER_NAME="$aname" GIT_COMMITTER_EMAIL="$aemail" \
            git commit --quiet --amend --author="$author" -F <(clean_message)
    done
    if grep -qE '^(Forwarded|Last-Update):' <(git log --format=%B "$start..HEAD"); then
        echo "pr_map: a DEP-3 field is left in $name" >&2; exit 1
    fi
    echo "| $n $name | $range | $concern | $(git rev-list --count "$start..HEAD") | $(checks) |"
    git format-patch --quiet --zero-commit --no-signature --full-index -o "$TMP/out/pr$n-$name" "$start..HEAD"
    if [ -n "${PR_OUT:-}" ]; then
        mkdir -p "$PR_OUT"
        cp -r "$TMP/out/pr$n-$name" "$PR_OUT/"
    fi
done
echo
echo "$(git rev-list --count "$base..HEAD") commits on $(git rev-parse --short "$base"), authored by" \
    "$([ "$real_author" = yes ] && echo "$author" || echo 'a placeholder (no PR_AUTHOR): nothing written')"
echo
echo "patches that plain \`git am\` did not apply on $(git rev-parse --short "$base"), applied with \`git am -3 -C1\`:" \
    "${fuzzy[*]:-none}"
# the PR branches as exported: plain `git am` of each PR's format-patch files on REF, PR after PR
git worktree add --quiet --detach "$TMP/plain" "$base"
results=()
for i in $(seq 1 "$n"); do
    dir=$(echo "$TMP/out/pr$i-"*)
    if git -C "$TMP/plain" am --quiet "$dir"/*.patch >/dev/null 2>&1; then
        results+=("PR $i applies ($(find "$dir" -name '*.patch' | wc -l) commits)")
    else
        results+=("PR $i FAILS")
        git -C "$TMP/plain" am --abort
        break
    fi
done
same=no
[ "$(git -C "$TMP/plain" rev-parse 'HEAD^{tree}')" = "$(git rev-parse 'HEAD^{tree}')" ] && same=yes
echo "each PR's exported patches (git format-patch of its commits above) on $(git rev-parse --short "$base") with" \
    "plain \`git am\` (no -3, no -C), in order: $(IFS=,; echo "${results[*]}" | sed 's/,/, /g'); the tree at the" \
    "end is the one checked after PR $n: $same"
[ "$same" = yes ]
