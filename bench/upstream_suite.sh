#!/bin/bash
# Upstream's own checks on upstream's master, without and with the series: the record docs/upstreaming.md quotes.
#
#   bench/upstream_suite.sh UPSTREAM [REF] [PYTHON]
#
# UPSTREAM: a clone of upstream Patroni (a work tree or a bare repository); REF: the commit (default HEAD); PYTHON:
# the interpreter of the venv (default python3; e.g. ~/.pyenv/versions/3.6.15/bin/python for the oldest upstream
# supports). In a temporary work tree of REF, with a venv of upstream's requirements.txt + requirements.dev.txt, it
# runs upstream's flake8, isort and unit suite (pytest tests/) on REF alone, then applies patches/series with
# `git am -3` (and patches/upstream-only/) and runs them again. It prints each check's result line and counts
# PytestUnhandledThreadExceptionWarning (a thread of the series dying in a test). Then the same on the base that
# ships: the pinned sdist (upstream.cfg, verified by `patchqueue.py fetch`), alone and with patches/series, with the
# three files a release artifact lacks taken from REF at run time (tests/__init__.py, upstream's test helpers;
# postgres0.yml, the configuration its tests read; tox.ini, the flake8/isort settings), in the same venv. Nothing is
# written outside the temporary directory, which is removed at the end; `make upstream-suite UPSTREAM=...` writes the output to
# docs/results/upstream_suite.txt (upstream_suite-py<version>.txt with PY=).
# With AMEND="<diff> ..." (changes to the series proposed for the series' owner, kept out of
# patches/), the checks run a third time with those diffs applied on top (`git apply`).
set -euo pipefail
UPSTREAM=${1:?usage: bench/upstream_suite.sh UPSTREAM [REF] [PYTHON]}
REF=${2:-HEAD}
PYTHON=${3:-python3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
amend=()
for a in ${AMEND:-}; do amend+=("$(cd "$(dirname "$a")" && pwd)/$(basename "$a")"); done
T=${SDNOTIFY_STEP_TIMEOUT:-600}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
git clone --quiet --no-checkout "$UPSTREAM" "$TMP/up"
cd "$TMP/up"
COMMIT=$(git -C "$UPSTREAM" rev-parse "$REF")
git -c advice.detachedHead=false checkout --quiet "$COMMIT"
git config user.name patroni-sdnotify && git config user.email patroni-sdnotify@localhost
echo "upstream $(git log -1 --format='%H (%s)')"
"$PYTHON" -m venv "$TMP/venv"
PIP="timeout $T $TMP/venv/bin/pip install --quiet --disable-pip-version-check"
$PIP --upgrade pip >/dev/null  # the pip of an old venv (3.6) knows no manylinux2014 wheel and builds from source
$PIP -r requirements.txt -r requirements.dev.txt psycopg2-binary >/dev/null
$PIP flake8 isort >/dev/null  # apart: the pip of Python 3.6 refuses a requirement given twice
echo "python $("$TMP/venv/bin/python" -c 'import platform; print(platform.python_version())')"

checks() {
    local out
    if "$TMP/venv/bin/python" -m flake8 --config tox.ini patroni tests >"$TMP/flake8" 2>&1; then
        echo "  flake8: clean"
    else
        echo "  flake8: $(wc -l <"$TMP/flake8") findings"; head -5 "$TMP/flake8" | sed 's/^/    /'
    fi
    if "$TMP/venv/bin/python" -m isort --settings-path tox.ini --check-only patroni tests >"$TMP/isort" 2>&1; then
        echo "  isort: clean"
    else
        echo "  isort: $(grep -c ERROR "$TMP/isort") files"
    fi
    out=$(timeout 1800 "$TMP/venv/bin/python" -m pytest tests -q -p no:cacheprovider 2>&1 || true)
    echo "  pytest: $(printf '%s\n' "$out" | tail -1)"
    echo "  PytestUnhandledThreadExceptionWarning: $(printf '%s\n' "$out" | grep -c 'PytestUnhandledThreadExceptionWarning' || true)"
}

echo "REF alone:"
checks
series=()
while read -r p _; do
    case "$p" in ''|'#'*) continue ;; esac
    series+=("$HERE/patches/$p")
done <"$HERE/patches/series"
git am --quiet -3 -C1 "${series[@]}" "$HERE"/patches/upstream-only/*.patch
echo "REF + patches/series (${#series[@]} patches) + patches/upstream-only:"
checks
if [ "${#amend[@]}" -gt 0 ]; then
    git apply "${amend[@]}"
    echo "REF + patches/series + patches/upstream-only + $(for a in "${amend[@]}"; do printf '%s ' "${a#"$HERE"/}"; done):"
    checks
fi

# the shipped base: pristine sdist + series, upstream's test helpers from REF (a release artifact has no
# tests/__init__.py, so upstream's test files cannot run from it alone)
SDIST=$(cd "$HERE" && python3 patchqueue.py fetch)
mkdir "$TMP/base"
tar -xzf "$SDIST" -C "$TMP/base" --strip-components=1
for f in tests/__init__.py tox.ini postgres0.yml; do
    git -C "$TMP/up" show "$COMMIT:$f" >"$TMP/base/$f"
done
cd "$TMP/base"
git init --quiet . && git config user.name patroni-sdnotify && git config user.email patroni-sdnotify@localhost
git add -A && git commit --quiet -m base
# the sdist's own release has no tag in every clone: say whether the helpers differ at its tag, or else at the newest
# release tag not above its version
VERSION=$(sed -n 's/^version *= *//p' "$HERE/upstream.cfg")
TAG=$( (git -C "$TMP/up" tag --list 'v[0-9]*'; echo "v$VERSION~") | sort -V | sed -n "/^v$VERSION~\$/q;p" | tail -n 1)
git -C "$TMP/up" rev-parse -q --verify "refs/tags/v$VERSION" >/dev/null && TAG=v$VERSION
if [ -z "$TAG" ]; then
    SAME="no release tag in the clone to compare them with"
elif git -C "$TMP/up" diff --quiet "$TAG" "$COMMIT" -- tests/__init__.py tox.ini postgres0.yml; then
    SAME="the same at $TAG"
else
    SAME="they differ at $TAG"
fi
echo "$(basename "$SDIST") (the pinned sdist) + tests/__init__.py, postgres0.yml and tox.ini of REF ($SAME), alone:"
checks
git am --quiet "${series[@]}"  # no -3, no fuzz: exactly as setup.py applies them (git apply)
echo "$(basename "$SDIST") + patches/series (${#series[@]} patches, applied exactly, as setup.py builds what ships):"
checks
