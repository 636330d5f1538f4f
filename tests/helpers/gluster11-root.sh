#!/bin/bash
# Makes sure ROOT holds a Debian 13 (trixie) chroot with glusterfs-server
# 11.x and what the integration tests run inside it, and prints its
# glusterfs-server version on stdout (the only thing it prints there).
#
#   tests/helpers/gluster11-root.sh ROOT
#
# Used by tests/gluster11.rs (the integration suite against 11.x) and by
# tests/helpers/capture-gluster11.sh (the 11.x fixtures). Callers hold an
# exclusive flock on ROOT.lock for as long as they use ROOT, so a rebuild
# never happens under anyone's feet; this script takes no lock itself.
#
# A chroot is reused only if it is complete: its stamp file, written last,
# names the suite and package list asked for and the glusterfs-server version
# that dpkg reports now. Otherwise a new one is built beside it (ROOT.new.PID:
# debootstrap minbase, a policy-rc.d that keeps packages from starting
# anything, apt-get install) and renamed into place; the old one is removed
# only when nothing is mounted under it and no process runs in it.
set -euo pipefail

ROOT=${1:?usage: gluster11-root.sh ROOT}
SUITE=${SUITE:-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# glusterfs-server pulls in the CLI and the FUSE client; the rest is what the
# tests and the driver run besides gluster (ip, sysctl, mount/umount,
# unshare, openssl, python3).
PACKAGES="glusterfs-server iproute2 procps mount util-linux openssl python3"
STAMP=.glusterfs-csi-gluster11

[ "$(id -u)" = 0 ] || { echo "gluster11-root.sh: run as root" >&2; exit 1; }
case $ROOT in
    /*) ;;
    *) echo "gluster11-root.sh: ROOT must be an absolute path: $ROOT" >&2; exit 1 ;;
esac
ROOT=${ROOT%/}

say() { printf 'gluster11-root: %s %s\n' "$(date +%T)" "$*" >&2; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# Mount points at or under $1 (this namespace), deepest first.
mounts_under() {
    awk -v r="$1" '$5 == r || index($5, r "/") == 1 { print length($5), $5 }' /proc/self/mountinfo |
        sort -rn | cut -d' ' -f2-
}
# Pids of processes whose root directory is $1.
processes_in() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"
    done
    return 0
}
# Removes a chroot tree that nothing uses any more; refuses otherwise.
remove_tree() {
    local dir=$1
    if [ -n "$(mounts_under "$dir")" ] || [ -n "$(processes_in "$dir")" ]; then
        echo "gluster11-root.sh: $dir is still in use (mounts: $(mounts_under "$dir" | tr '\n' ' ')" \
            "processes: $(processes_in "$dir" | tr '\n' ' ')); leaving it" >&2
        return 1
    fi
    rm -rf --one-file-system "$dir"
}

installed_version() { # ROOT
    chroot "$1" dpkg-query -W -f='${Version}' glusterfs-server 2>/dev/null
}

# --- reuse --------------------------------------------------------------
if [ -f "$ROOT/$STAMP" ] && [ -x "$ROOT/usr/sbin/glusterd" ]; then
    recorded_suite=$(sed -n 's/^suite=//p' "$ROOT/$STAMP")
    recorded_packages=$(sed -n 's/^packages=//p' "$ROOT/$STAMP")
    recorded_version=$(sed -n 's/^glusterfs-server=//p' "$ROOT/$STAMP")
    if [ "$recorded_suite" = "$SUITE" ] && [ "$recorded_packages" = "$PACKAGES" ] &&
        [ -n "$recorded_version" ] && [ "$(installed_version "$ROOT" || true)" = "$recorded_version" ]; then
        echo "$recorded_version"
        exit 0
    fi
    say "$ROOT is not the chroot asked for (suite $recorded_suite, packages '$recorded_packages'," \
        "glusterfs-server $recorded_version): rebuilding"
elif [ -e "$ROOT" ]; then
    say "$ROOT has no complete chroot (no $STAMP): rebuilding"
fi

# --- build beside it ------------------------------------------------------
command -v debootstrap >/dev/null || { echo "gluster11-root.sh: install debootstrap" >&2; exit 1; }
parent=$(dirname "$ROOT")
mkdir -p "$parent"
# Builds that died half-way (the lock says no one else builds now).
for stale in "$ROOT".new.* "$ROOT".old.*; do
    [ -d "$stale" ] && { remove_tree "$stale" || true; }
done
new="$ROOT.new.$$"
cleanup_new() { [ -d "$new" ] && remove_tree "$new"; return 0; }
trap cleanup_new EXIT

t=$(now_ms)
log="$parent/$(basename "$ROOT").build.log"
if ! debootstrap --variant=minbase "$SUITE" "$new" "$MIRROR" > "$log" 2>&1; then
    tail -30 "$log" >&2
    echo "gluster11-root.sh: debootstrap failed (whole log: $log)" >&2
    exit 1
fi
say "debootstrap $SUITE: $(( $(now_ms) - t )) ms"
printf '#!/bin/sh\nexit 101\n' > "$new/usr/sbin/policy-rc.d"
chmod +x "$new/usr/sbin/policy-rc.d"
t=$(now_ms)
# shellcheck disable=SC2086
if ! { chroot "$new" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive chroot "$new" apt-get install -y -qq --no-install-recommends $PACKAGES &&
    chroot "$new" apt-get clean; } >> "$log" 2>&1; then
    tail -30 "$log" >&2
    echo "gluster11-root.sh: apt-get install in the chroot failed (whole log: $log)" >&2
    exit 1
fi
say "apt-get install $PACKAGES: $(( $(now_ms) - t )) ms"
version=$(installed_version "$new")
[ -n "$version" ] || { echo "gluster11-root.sh: glusterfs-server is not installed in $new" >&2; exit 1; }
# Written last: its presence says everything above succeeded.
printf 'suite=%s\npackages=%s\nglusterfs-server=%s\n' "$SUITE" "$PACKAGES" "$version" > "$new/$STAMP.tmp"
mv "$new/$STAMP.tmp" "$new/$STAMP"

if [ -e "$ROOT" ]; then
    old="$ROOT.old.$$"
    if [ -n "$(mounts_under "$ROOT")" ] || [ -n "$(processes_in "$ROOT")" ]; then
        echo "gluster11-root.sh: $ROOT is in use; not replacing it" >&2
        exit 1
    fi
    mv "$ROOT" "$old"
    mv "$new" "$ROOT"
    remove_tree "$old" || true
else
    mv "$new" "$ROOT"
fi
say "$ROOT ready: glusterfs-server $version"
echo "$version"
