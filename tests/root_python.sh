#!/bin/bash
# The Python of a Debian root (tests/debian_root.sh), run from outside it: forky's Python 3.14 on this machine.
#
#   tests/root_python.sh setup          make the root .cache/$ROOT_PYTHON_SUITE (default forky) if missing, copy it,
#                                       once, to .cache/<suite>-python (the systemd tiers boot the suite's root as
#                                       debian_root.sh makes it) and install there what a venv needs: python3,
#                                       python3-venv, git (the build's `git apply`), make (test_build.py),
#                                       ca-certificates (pip's TLS), and PostgreSQL (forky's 18; postgresql-common
#                                       told to create no cluster, no service started) for the tests that start
#                                       Patroni; prints the interpreter
#   tests/root_python.sh ARGS...        run the root's python3 with ARGS, e.g. as PY= of `make pr-map` and
#                                       `make upstream-suite`, or as PYTHON= of `make install VENV=.venv-py314`
#
# Each run is a private mount namespace (`unshare --mount --propagation private`: nothing of it reaches the machine's
# mounts, and it ends with its last process) in which the root gets /dev, /sys and a /proc of the caller's PID
# namespace, the machine's /etc/resolv.conf and CA bundle, and, at the same paths, this checkout, the temporary directory ($TMPDIR
# or /tmp), $HOME and the working directory (plus ROOT_PYTHON_BIND, space-separated); then `chroot` into it, back to
# the working directory, same environment. ROOT_PYTHON_USER=name runs the interpreter as that user (chroot
# --userspec; the root has the machine's postgres user). Needs root (unshare, mount, chroot).
#
# `-m venv DIR` makes a venv usable from outside too: the interpreter's symlink in DIR/bin (to the root's
# /usr/bin/python3.X, which the machine does not have) is replaced by a script that runs it through this one, with
# argv[0] the venv's path so that it is the venv's interpreter; its pip, pytest, patroni... scripts work from
# outside and inside alike. Run inside the root, the script execs the interpreter directly.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
SELF=$HERE/tests/root_python.sh
SUITE=${ROOT_PYTHON_SUITE:-forky}
R=$HERE/.cache/$SUITE-python
T=${SDNOTIFY_STEP_TIMEOUT:-600}
PACKAGES='python3 python3-venv git make ca-certificates postgresql'
DONE=$R/.sdnotify-python

die() { echo "root_python.sh: $*" >&2; exit 2; }

# in the private mount namespace: the mounts, then chroot; $1 is the command (absolute, as the root sees it)
inside() {
    unset ROOT_PYTHON_EXE
    mount --rbind /dev "$R/dev"
    mount --rbind /sys "$R/sys"
    mount -t proc proc "$R/proc"
    if [ -f /etc/resolv.conf ]; then
        [ -f "$R/etc/resolv.conf" ] && [ ! -L "$R/etc/resolv.conf" ] || { rm -f "$R/etc/resolv.conf"; : >"$R/etc/resolv.conf"; }
        mount --bind /etc/resolv.conf "$R/etc/resolv.conf"
    fi
    # the machine's CA bundle (pip's PIP_CERT; the CA of a TLS proxy on the way is in it, not in the root's)
    if [ -f /etc/ssl/certs/ca-certificates.crt ] && [ -f "$R/etc/ssl/certs/ca-certificates.crt" ]; then
        mount --bind /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"
    fi
    local d
    for d in "$HERE" "${TMPDIR:-/tmp}" "${HOME:-/root}" "$PWD" ${ROOT_PYTHON_BIND:-}; do
        d=$(readlink -f "$d")
        case "$d" in /|/dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue ;; esac
        [ -d "$d" ] || continue
        # not twice (a bind of a directory under an earlier one would hide what that one shows there)
        mountpoint -q "$R$d" && continue
        mkdir -p "$R$d"
        mount --bind "$d" "$R$d"
    done
    local spec=()
    [ -z "${ROOT_PYTHON_USER:-}" ] || spec=(--userspec="$ROOT_PYTHON_USER:$ROOT_PYTHON_USER")
    exec chroot "${spec[@]}" "$R" /bin/sh -c 'cd "$0" && exec "$@"' "$PWD" "$@"
}

if [ "${1:-}" = __inside ]; then
    shift
    inside "$@"
fi

if [ "${1:-}" = setup ]; then
    "$HERE/tests/debian_root.sh" "$SUITE" >/dev/null
    if [ ! -f "$DONE" ]; then
        if [ ! -d "$R" ]; then
            rm -rf "$R.tmp"
            cp -a "$HERE/.cache/$SUITE" "$R.tmp"
            mv "$R.tmp" "$R"
        fi
        # Check-Valid-Until=false: the mirror's forky Release file may have expired (seen: "invalid since 30d"),
        # which debootstrap does not check and apt does; its signature is still checked
        # no cluster made by postgresql-common's postinst, no service started by any (invoke-rc.d asks policy-rc.d)
        mkdir -p "$R/etc/postgresql-common/createcluster.d"
        printf 'create_main_cluster = false\n' >"$R/etc/postgresql-common/createcluster.d/sdnotify.conf"
        printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
        chmod 755 "$R/usr/sbin/policy-rc.d"
        unshare --mount --propagation private -- "$SELF" __inside /usr/bin/env DEBIAN_FRONTEND=noninteractive \
            timeout "$T" sh -c "apt-get -o Acquire::Check-Valid-Until=false update -q >/dev/null && apt-get install -q -y --no-install-recommends \
            $PACKAGES >/dev/null" || die "apt-get install $PACKAGES in $R failed"
        rm -f "$R/usr/sbin/policy-rc.d"
        readlink "$R/usr/bin/python3" >"$DONE"
    fi
    exec "$SELF" -c 'import platform, sys; print("python", platform.python_version(), sys.executable)'
fi

[ -f "$DONE" ] || die "no Python in $R yet: run tests/root_python.sh setup"
PY=/usr/bin/$(cat "$DONE")  # python3.14 in forky

# a venv: made in the root, then its interpreter symlink replaced by a script that works from both sides
venv_dir=
if [ "${1:-}" = -m ] && [ "${2:-}" = venv ]; then
    venv_dir=$(readlink -m "${!#}")
fi
if [ -z "$venv_dir" ]; then
    exec unshare --mount --propagation private -- "$SELF" __inside "${ROOT_PYTHON_EXE:-$PY}" "$@"
fi
unshare --mount --propagation private -- "$SELF" __inside "$PY" "$@"
name=$(basename "$PY")
ln -sfn "$PY" "$venv_dir/bin/.$name-root"
cat >"$venv_dir/bin/$name.tmp" <<EOF
#!/bin/bash
# $name of the Debian root $R, made by tests/root_python.sh: inside the root, the interpreter itself; outside, through
# tests/root_python.sh. argv[0] is this file, so that the interpreter finds ../pyvenv.cfg: this venv's.
if [ -e /.sdnotify-root ] && [ -x $PY ]; then
    exec -a "$venv_dir/bin/$name" "$venv_dir/bin/.$name-root" "\$@"
fi
ROOT_PYTHON_SUITE=$SUITE ROOT_PYTHON_EXE="$venv_dir/bin/$name" exec "$SELF" "\$@"
EOF
chmod 755 "$venv_dir/bin/$name.tmp"
mv -f "$venv_dir/bin/$name.tmp" "$venv_dir/bin/$name"
