#!/bin/bash
# Captures the gluster 11.x CLI output kept in tests/fixtures/gluster/11/: the
# same commands, in the same situations, as the 10.3 fixtures next to it.
#
# Run by hand, as root, on a machine with nothing else using the address
# block (never by CI):
#
#   tests/helpers/capture-gluster11.sh [OUT_DIR]     # default tests/fixtures/gluster/11
#
# What it does:
#  1. Takes $ROOT.lock (tests/gluster11.rs uses the same chroot and lock) and
#     makes sure $ROOT (default /var/tmp/glusterfs-csi-gluster11) holds a
#     minimal Debian 13 (trixie) with glusterfs-server: tests/helpers/
#     gluster11-root.sh reuses a complete one or debootstraps a new one (a
#     policy-rc.d keeps packages from starting anything). Nothing of the
#     host's gluster (packages, /var/lib/glusterd, /etc/glusterfs) is touched.
#  2. Binds /proc, /sys, /dev into $ROOT, adds $BLOCK.1-3 (default 127.77.1,
#     the block the 10.3 captures used; the tests expect the block named in
#     CAPTURES, src/gluster/mod.rs) and $CLIENT_ADDR to lo, and starts three
#     glusterd "nodes" inside the chroot as `glusterfs-csi dev` does: each
#     bound to its own alias with its own working, run and log directories
#     under /tmp/tb/nN (chroot paths) and its own socket. Bricks live in
#     /tmp/tb/c/bN, as in the 10.3 captures; two small tmpfs mounts stand in
#     for file systems that are not the root one.
#  3. Runs every command the parsers read, in the situation each fixture
#     stands for (see the comments below), writing OUT_DIR/<fixture name>.
#     Output that differs from run to run (uuids, ports, pids, byte counts,
#     timestamps) is kept as gluster printed it.
#  4. On exit, whatever happened: unmounts everything under $ROOT (FUSE mounts,
#     tmpfs, /proc, /sys, /dev), ends the processes whose root is $ROOT (by
#     pid) and removes the aliases it added.
#
# Observations that are not fixtures (session mode, a single-brick volume
# without clients) go to $NOTES (default /var/tmp/gluster11-notes).
set -euo pipefail

ROOT=${ROOT:-/var/tmp/glusterfs-csi-gluster11}
BLOCK=${BLOCK:-127.77.1}
# A non-loopback address put on lo, for a client auth.allow refuses.
CLIENT_ADDR=${CLIENT_ADDR:-198.18.77.11}
NOTES=${NOTES:-/var/tmp/gluster11-notes}
here=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(realpath -m "${1:-$here/tests/fixtures/gluster/11}")

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for a in "$BLOCK.1" "$BLOCK.2" "$BLOCK.3" "$CLIENT_ADDR"; do
    if ip -o -4 addr show | grep -q " $a/"; then
        echo "$a is already in use: pick another BLOCK or CLIENT_ADDR" >&2
        exit 1
    fi
done

say() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
elapsed() { echo "$(( $(date +%s%N) / 1000000 - $1 )) ms"; }

# --- 1. the chroot --------------------------------------------------------
mkdir -p "$(dirname "$ROOT")"
exec 9> "$ROOT.lock"
flock -n 9 || { echo "$ROOT is in use (tests/gluster11.rs holds $ROOT.lock): try again later" >&2; exit 1; }
command -v debootstrap >/dev/null || apt-get install -y debootstrap
t=$(( $(date +%s%N) / 1000000 ))
say "chroot: glusterfs-server $("$here/tests/helpers/gluster11-root.sh" "$ROOT") ($(elapsed $t))"
if pids=$(for p in /proc/[0-9]*; do [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && echo "${p#/proc/}"; done) && [ -n "$pids" ]; then
    echo "processes already run in $ROOT ($pids): not starting another cluster there" >&2
    exit 1
fi

# --- cleanup, armed before anything is started or mounted -----------------
added=()
chroot_pids() {
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && echo "${p#/proc/}"
    done
    return 0
}
mounts_under_root() {
    awk -v r="$ROOT/" 'index($5, r) == 1 { print length($5), $5 }' /proc/self/mountinfo |
        sort -rn | cut -d' ' -f2-
}
cleanup() {
    set +e
    # FUSE mounts first, while their clients still run.
    for m in $(mounts_under_root | grep -v -e "^$ROOT/proc" -e "^$ROOT/sys" -e "^$ROOT/dev"); do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    for round in 1 2 3 4 5; do
        pids=$(chroot_pids)
        [ -z "$pids" ] && break
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null
        for _ in $(seq 50); do
            [ -z "$(chroot_pids)" ] && break
            sleep 0.2
        done
        pids=$(chroot_pids)
        # shellcheck disable=SC2086
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
        sleep 0.5
    done
    for m in $(mounts_under_root); do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    for a in "${added[@]}"; do
        ip addr del "$a/32" dev lo
    done
    left=$(chroot_pids)
    [ -n "$left" ] && echo "WARNING: still running in $ROOT: $left" >&2
    [ -n "$(mounts_under_root)" ] && echo "WARNING: still mounted under $ROOT: $(mounts_under_root)" >&2
    return 0
}
trap cleanup EXIT

# --- 2. the cluster -------------------------------------------------------
mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount --rbind /dev "$ROOT/dev"
mount --make-rslave "$ROOT/dev"
for a in "$BLOCK.1" "$BLOCK.2" "$BLOCK.3" "$CLIENT_ADDR"; do
    ip addr add "$a/32" dev lo
    added+=("$a")
done

# $ROOT/run, never $ROOT/var/run: that is a symlink to /run, which outside
# the chroot is the host's (rm -rf through it once removed the host's /run/gluster).
rm -rf "$ROOT/tmp/tb" "$ROOT/tmp/bx" "$ROOT/tmp/tlsx" "$ROOT/run/gluster"
mkdir -p "$OUT" "$NOTES" "$ROOT/tmp/tb/m" "$ROOT/tmp/tb/logs"
for n in 1 2 3; do
    mkdir -p "$ROOT/tmp/tb/n$n/work" "$ROOT/tmp/tb/n$n/run" "$ROOT/tmp/tb/n$n/log" "$ROOT/tmp/tb/c/b$n"
done
# File systems other than the root one, for bricks that need no `force`.
mkdir -p "$ROOT/tmp/bx/m" "$ROOT/tmp/bx/r/a" "$ROOT/tmp/bx/r/b" "$ROOT/tmp/bx/r/c"
mount -t tmpfs -o size=64m tmpfs "$ROOT/tmp/bx/m"
mount -t tmpfs -o size=64m tmpfs "$ROOT/tmp/bx/r/a"

sock() { echo "/tmp/tb/n$1/run/glusterd.socket"; }
start_glusterd() {
    local n=$1 d=/tmp/tb/n$1
    chroot "$ROOT" glusterd \
        "--xlator-option=management.working-directory=$d/work" \
        "--xlator-option=management.transport.socket.bind-address=$BLOCK.$n" \
        "--xlator-option=management.run-directory=$d/run" \
        "--xlator-option=management.glusterd-sockfile=$d/run/glusterd.socket" \
        "--xlator-option=management.cluster-test-mode=$d/log" \
        "--log-file=$d/log/glusterd.log" "--pid-file=$d/run/glusterd.pid"
    for _ in $(seq 150); do
        g "$n" pool list 2>/dev/null | grep -q '<opRet>0</opRet>' && return 0
        sleep 0.2
    done
    echo "glusterd $n did not answer" >&2
    return 1
}
# g N WORDS...: the CLI against node N's socket, as the driver runs it.
g() {
    local n=$1
    shift
    chroot "$ROOT" gluster --mode=script --xml "--glusterd-sock=$(sock "$n")" "$@"
}
# cap FILE N WORDS...: saves the answer; failures are the point of some.
cap() {
    local file=$1
    shift
    g "$@" > "$OUT/$file" 2>&1 || true
    grep -q '</cliOutput>' "$OUT/$file" || { echo "$file: no XML answer:" >&2; cat "$OUT/$file" >&2; return 1; }
    say "$file: $(grep -o '<opRet>[^<]*</opRet>' "$OUT/$file") $(grep -o '<opErrstr>[^<]*' "$OUT/$file" | head -1)"
}
# ok N WORDS...: a step that must succeed.
ok() {
    local out
    out=$(g "$@")
    grep -q '<opRet>0</opRet>' <<<"$out" || { echo "gluster ${*:2} failed: $out" >&2; return 1; }
}
wait_pool() { # N CONNECTED: until node N sees that many connected peers (itself included)
    for _ in $(seq 300); do
        [ "$(g "$1" pool list | grep -c '<connected>1</connected>')" = "$2" ] && return 0
        sleep 0.2
    done
    echo "node $1 never saw $2 connected peers" >&2
    return 1
}
# unmount_if_mounted PATH: also a mount whose client died (ENOTCONN).
unmount_if_mounted() {
    if awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        umount "$1"
    fi
}
bricks() { # VOLUME: a replica 3 brick list on the root file system
    echo "$BLOCK.1:/tmp/tb/c/b1/$1 $BLOCK.2:/tmp/tb/c/b2/$1 $BLOCK.3:/tmp/tb/c/b3/$1"
}

chroot "$ROOT" gluster --version > "$OUT/gluster_version.txt"
chroot "$ROOT" glusterfs --version > "$OUT/glusterfs_version.txt"
say "versions: $(head -1 "$OUT/gluster_version.txt"), $(head -1 "$OUT/glusterfs_version.txt")"

t=$(( $(date +%s%N) / 1000000 ))
for n in 1 2 3; do start_glusterd "$n"; done
say "3 glusterds up: $(elapsed $t)"

# --- 3. captures ----------------------------------------------------------
# A pool of one, and an empty one.
cap uuid_get.xml 1 system:: uuid get
cap pool_list_single.xml 1 pool list
cap volume_list_empty.xml 1 volume list
cap volume_info_empty.xml 1 volume info

ok 1 peer probe "$BLOCK.2"
ok 1 peer probe "$BLOCK.3"
for n in 1 2 3; do wait_pool "$n" 3; done
cap pool_list.xml 1 pool list
# Seen from node 2, read-only over TCP (how the driver learns node 1's name).
chroot "$ROOT" gluster --mode=script --xml "--remote-host=$BLOCK.2" pool list > "$OUT/pool_list_remote.xml"
cap volume_get_op_version.xml 1 volume get all cluster.op-version
cap volume_get_max_op_version.xml 1 volume get all cluster.max-op-version
# Not wrapped in <cliOutput>.
g 1 volume set help-xml > "$OUT/volume_set_help_xml.xml"
grep -q '</options>' "$OUT/volume_set_help_xml.xml"

# Bricks on the root file system without force, refused by node 1 itself.
# shellcheck disable=SC2046
cap volume_create_root_partition.xml 1 volume create hm replica 3 $(bricks hm)
# shellcheck disable=SC2046
cap volume_create.xml 1 volume create v1 replica 3 $(bricks v1) force
# shellcheck disable=SC2046
cap volume_create_exists.xml 1 volume create v1 replica 3 $(bricks v1) force
cap volume_set_multi.xml 1 volume set v1 user.csi.name pvc-1 user.csi.size 1073741824
cap volume_info_created.xml 1 volume info v1
cap volume_start.xml 1 volume start v1
cap volume_info_started.xml 1 volume info v1
cap volume_start_already.xml 1 volume start v1
cap volume_start_missing.xml 1 volume start nosuch
cap volume_stop_missing.xml 1 volume stop nosuch
cap volume_info_missing.xml 1 volume info nosuch

# shellcheck disable=SC2046
ok 1 volume create arb replica 3 arbiter 1 $(bricks arb) force
cap volume_info_arbiter.xml 1 volume info arb
ok 1 volume create rep1 "$BLOCK.1:/tmp/tb/c/b1/rep1" force
cap volume_info_distribute.xml 1 volume info rep1
ok 1 volume delete arb
ok 1 volume delete rep1

# The brick's parent directory is missing on node 3.
cap volume_create_brickdir_fail.xml 1 volume create hm replica 3 \
    "$BLOCK.1:/tmp/tb/c/b1/hm" "$BLOCK.2:/tmp/tb/c/b2/hm" "$BLOCK.3:/tmp/tb/c/nope/hm" force
# Node 1's brick on a file system of its own, the others' on the root one:
# refused by nodes 2 and 3 while staging.
cap volume_create_root_partition_staging.xml 1 volume create hm replica 3 \
    "$BLOCK.1:/tmp/bx/r/a/hm" "$BLOCK.2:/tmp/bx/r/b/hm" "$BLOCK.3:/tmp/bx/r/c/hm"
# A create that failed on node 3 leaves brick directories marked with the
# volume id on the others: a plain retry is refused.
mkdir -p "$ROOT/tmp/bx/m/a" "$ROOT/tmp/bx/m/b"
g 1 volume create hm replica 3 "$BLOCK.1:/tmp/bx/m/a/hm" "$BLOCK.2:/tmp/bx/m/b/hm" "$BLOCK.3:/tmp/bx/m/c/hm" > "$NOTES/hm_first_try.xml" || true
mkdir -p "$ROOT/tmp/bx/m/c"
cap volume_create_brick_in_use.xml 1 volume create hm replica 3 \
    "$BLOCK.1:/tmp/bx/m/a/hm" "$BLOCK.2:/tmp/bx/m/b/hm" "$BLOCK.3:/tmp/bx/m/c/hm"

# The 10.3 capture's twelve volumes.
# shellcheck disable=SC2046
ok 1 volume create hm replica 3 $(bricks hm) force
for v in r11 r12 r13 s21 s22 s23 v2 v3 v4 v5; do
    # shellcheck disable=SC2046
    ok 1 volume create "$v" replica 3 $(bricks "$v") force
done
cap volume_list.xml 1 volume list

cap volume_set_bad_value.xml 1 volume set v2 performance.cache-size abc
cap volume_set_unknown_key.xml 1 volume set v2 no.such.key on

# Lock contention: parallel sets of one volume through one node (its own
# lock: 30802), and through all three (peers' locks: "Locking failed on").
par="$NOTES/parallel"
found_locked= found_locking=
for round in $(seq 30); do
    rm -rf "$par" && mkdir -p "$par"
    for i in $(seq 9); do
        g 1 volume set v2 performance.cache-size "$((32 + i))MB" > "$par/v2.$i" 2>&1 &
        g $(( i % 3 + 1 )) volume set v3 performance.cache-size "$((32 + i))MB" > "$par/v3.$i" 2>&1 &
    done
    wait
    if [ -z "$found_locked" ] && f=$(grep -l '<opErrno>30802</opErrno>' "$par"/v2.* | head -1) && [ -n "$f" ]; then
        cp "$f" "$OUT/volume_set_locked.xml"
        found_locked=1
        say "volume_set_locked.xml: round $round"
    fi
    if [ -z "$found_locking" ] && f=$(grep -l 'Locking failed on' "$par"/v3.* | head -1) && [ -n "$f" ]; then
        cp "$f" "$OUT/volume_set_locking_failed.xml"
        found_locking=1
        say "volume_set_locking_failed.xml: round $round"
    fi
    [ -n "$found_locked" ] && [ -n "$found_locking" ] && break
done
[ -n "$found_locked" ] && [ -n "$found_locking" ] || { echo "no lock contention seen" >&2; exit 1; }
grep -h -o '<opErrstr>[^<]*' "$par"/* | sort | uniq -c > "$NOTES/parallel_set_errors.txt" || true

ok 1 volume start v5
cap volume_stop.xml 1 volume stop v5
cap volume_stop_not_started.xml 1 volume stop v5
cap volume_delete.xml 1 volume delete v5
cap volume_delete_missing.xml 1 volume delete v5

# Node 3's glusterd down (its bricks keep running).
kill -TERM "$(cat "$ROOT/tmp/tb/n3/run/glusterd.pid")"
wait_pool 1 2
cap pool_list_peer_down.xml 1 pool list
# shellcheck disable=SC2046
cap volume_create_peer_down.xml 1 volume create pd replica 3 $(bricks pd) force
cap volume_delete_peer_down.xml 1 volume delete r11
start_glusterd 3
for n in 1 2 3; do wait_pool "$n" 3; done

# Clients of a started replica 3 volume: one FUSE mount and the three
# self-heal daemons.
# shellcheck disable=SC2046
ok 1 volume create csi-tv replica 3 $(bricks tv) force
ok 1 volume start csi-tv
client_list() { chroot "$ROOT" gluster --mode=script "--glusterd-sock=$(sock 1)" volume status csi-tv client-list; }
for _ in $(seq 150); do client_list | grep -Eq '^glustershd +3$' && break; sleep 0.2; done
mkdir -p "$ROOT/tmp/tb/m/tv"
chroot "$ROOT" mount -t glusterfs -o log-file=/tmp/tb/logs/tv.log "$BLOCK.1:/csi-tv" /tmp/tb/m/tv
for _ in $(seq 150); do client_list | grep -Eq '^fuse +1$' && break; sleep 0.2; done
client_list > "$OUT/volume_status_client_list.txt"
cap volume_status_clients.xml 1 volume status csi-tv clients
umount "$ROOT/tmp/tb/m/tv"
for _ in $(seq 150); do client_list | grep -Eq '^fuse ' || break; sleep 0.2; done
client_list > "$OUT/volume_status_client_list_unmounted.txt"

# One brick, no self-heal daemon: unmounted (10.3 fails both queries), then
# with one FUSE client, asked brick by brick.
ok 1 volume create csi-t3 "$BLOCK.3:/tmp/tb/c/b3/t3" force
ok 1 volume start csi-t3
g 1 volume status csi-t3 clients > "$NOTES/single_brick_unmounted_clients.xml" 2>&1 || true
chroot "$ROOT" gluster --mode=script "--glusterd-sock=$(sock 1)" volume status csi-t3 client-list \
    > "$NOTES/single_brick_unmounted_client_list.txt" 2>&1 || true
mkdir -p "$ROOT/tmp/tb/m/t3"
chroot "$ROOT" mount -t glusterfs -o log-file=/tmp/tb/logs/t3.log "$BLOCK.3:/csi-t3" /tmp/tb/m/t3
for _ in $(seq 150); do
    g 1 volume status csi-t3 "$BLOCK.3:/tmp/tb/c/b3/t3" clients | grep -q '<clientCount>1<' && break
    sleep 0.2
done
cap volume_status_brick_clients.xml 1 volume status csi-t3 "$BLOCK.3:/tmp/tb/c/b3/t3" clients
umount "$ROOT/tmp/tb/m/t3"

# The driver's session mode: one CLI reading command lines on stdin.
printf 'pool list\nvolume list\n' | chroot "$ROOT" gluster --mode=script --xml "--glusterd-sock=$(sock 1)" \
    > "$NOTES/session_two_commands.xml" 2>&1 || true

# FUSE client logs. A volume glusterd does not have:
mkdir -p "$ROOT/tmp/tb/m/x"
chroot "$ROOT" mount -t glusterfs -o log-file=/tmp/tb/logs/missing.log "$BLOCK.1:/no-such-volume" /tmp/tb/m/x || true
cp "$ROOT/tmp/tb/logs/missing.log" "$OUT/client_log_missing_volume.log"
# A client auth.allow does not list. glusterd hands a client on a pool
# server's address the "trusted" volfile (with credentials the bricks let in
# whatever auth.allow says), so this one reads the plain client volfile from
# node 1's working directory and connects to the bricks from $CLIENT_ADDR.
# (The 10.3 capture ran the client in a network namespace of its own.)
# shellcheck disable=SC2046
ok 1 volume create av replica 3 $(bricks av) force
ok 1 volume set av auth.allow "$BLOCK.*"
ok 1 volume start av
mkdir -p "$ROOT/tmp/tb/m/av"
chroot "$ROOT" glusterfs --log-file=/tmp/tb/logs/av.log \
    "--xlator-option=*-client-*.transport.socket.source-addr=$CLIENT_ADDR" \
    --process-name fuse --volfile=/tmp/tb/n1/work/vols/av/av.tcp-fuse.vol /tmp/tb/m/av || true
sleep 2
unmount_if_mounted "$ROOT/tmp/tb/m/av"
cp "$ROOT/tmp/tb/logs/av.log" "$OUT/client_log_auth_failed.log"
# TLS on the I/O path, the client without the certificate ssl.own-cert
# names (the bricks loaded it before it was moved away):
tls=/tmp/tlsx/server
mkdir -p "$ROOT$tls"
chroot "$ROOT" openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=gluster-test \
    -keyout "$tls/glusterfs.key" -out "$tls/glusterfs.pem" 2>/dev/null
cp "$ROOT$tls/glusterfs.pem" "$ROOT$tls/glusterfs.ca"
# shellcheck disable=SC2046
ok 1 volume create tv replica 3 $(bricks tlsv) force
ok 1 volume set tv ssl.own-cert "$tls/glusterfs.pem" ssl.private-key "$tls/glusterfs.key" \
    ssl.ca-list "$tls/glusterfs.ca" client.ssl on server.ssl on auth.ssl-allow '*'
ok 1 volume start tv
mv "$ROOT$tls/glusterfs.pem" "$ROOT$tls/glusterfs.pem.away"
mkdir -p "$ROOT/tmp/tb/m/none"
chroot "$ROOT" mount -t glusterfs -o log-file=/tmp/tb/logs/m-none.log "$BLOCK.1:/tv" /tmp/tb/m/none || true
sleep 2
unmount_if_mounted "$ROOT/tmp/tb/m/none"
mv "$ROOT$tls/glusterfs.pem.away" "$ROOT$tls/glusterfs.pem"
cp "$ROOT/tmp/tb/logs/m-none.log" "$OUT/client_log_no_certificate.log"

# Quota (sizes the driver enforces): refused before the first start, then
# enabled, limited and listed; the CLI's aux mounts go under /var/run/gluster.
mkdir -p "$ROOT/run/gluster"
# shellcheck disable=SC2046
ok 1 volume create csi-q replica 3 $(bricks q) force
cap quota_enable_stopped.xml 1 volume quota csi-q enable
ok 1 volume start csi-q
cap quota_list_not_enabled.xml 1 volume quota csi-q list /
cap quota_limit_usage_not_enabled.xml 1 volume quota csi-q limit-usage / 10485760
cap quota_enable.xml 1 volume quota csi-q enable
cap quota_enable_already.xml 1 volume quota csi-q enable
cap quota_list_no_limit.xml 1 volume quota csi-q list /
cap quota_limit_usage.xml 1 volume quota csi-q limit-usage / 10485760
cap quota_limit_usage_same.xml 1 volume quota csi-q limit-usage / 10485760
cap quota_list.xml 1 volume quota csi-q list /
cap quota_enable_missing.xml 1 volume quota nosuch enable
cap quota_limit_usage_missing.xml 1 volume quota nosuch limit-usage / 1048576
cap quota_list_missing.xml 1 volume quota nosuch list /
# Directory quotas (subdirectory mode): a limit on a directory at the top,
# removed, removed again, and removed from a path that is not there.
mkdir -p "$ROOT/tmp/tb/m/q"
chroot "$ROOT" mount -t glusterfs -o log-file=/tmp/tb/logs/q.log "$BLOCK.1:/csi-q" /tmp/tb/m/q
mkdir "$ROOT/tmp/tb/m/q/d"
ok 1 volume quota csi-q limit-usage /d 1048576
cap quota_remove.xml 1 volume quota csi-q remove /d
cap quota_remove_no_limit.xml 1 volume quota csi-q remove /d
cap quota_remove_missing_path.xml 1 volume quota csi-q remove /nope
unmount_if_mounted "$ROOT/tmp/tb/m/q"
# What quota enable sets (features.quota-deem-statfs among them).
g 1 volume info csi-q > "$NOTES/quota_volume_info.xml"
# Volume health (src/controller/health.rs): brick state from `volume status`,
# heal counts from glfsheal, run as the driver runs it against a socket that
# is not the default one (the CLI's `volume heal` ignores --glusterd-sock).
heal() { chroot "$ROOT" /usr/lib/x86_64-linux-gnu/glusterfs/glfsheal "$1" info-summary --xml glusterd-sock "$(sock 1)"; }
capheal() { # FILE VOLUME
    heal "$2" > "$OUT/$1" 2>&1 || true
    grep -q '</cliOutput>' "$OUT/$1" || { echo "$1: no XML answer:" >&2; cat "$OUT/$1" >&2; return 1; }
    say "$1: $(grep -o '<opRet>[^<]*</opRet>' "$OUT/$1")"
}
brick_pid() { # VOLUME BRICK_DIR: the brick process's pid from `volume status`
    g 1 volume status "$1" | tr -d '\n ' | grep -o "<path>$2</path><peerid>[^<]*</peerid><status>1</status><port>[^<]*</port><ports><tcp>[^<]*</tcp><rdma>[^<]*</rdma></ports><pid>[0-9]*" | grep -o '[0-9]*$'
}
client_connected() { # MOUNT N: the FUSE client is connected to brick N-1
    grep -q 'connected = 1' "$ROOT/tmp/tb/m/$1/.meta/graphs/active/hs-client-$2/private" 2>/dev/null
}
start_force() { # VOLUME N...: bricks N running again, and the client back on them
    local v=$1 n
    shift
    # glusterd 11.1 here takes the killed brick for "already-running" on
    # `volume start force` (its glusterd.log); stop and start instead.
    ok 1 volume stop "$v" force
    ok 1 volume start "$v"
    for n in "$@"; do
        for _ in $(seq 150); do [ -n "$(brick_pid "$v" "/tmp/tb/c/b$n/$v")" ] && break; sleep 0.2; done
        [ -n "$(brick_pid "$v" "/tmp/tb/c/b$n/$v")" ] || { echo "brick $n of $v did not start" >&2; return 1; }
        for _ in $(seq 150); do client_connected "$v" "$((n - 1))" && break; sleep 0.2; done
        client_connected "$v" "$((n - 1))" || { echo "client of $v never reconnected to brick $n" >&2; return 1; }
    done
}
cap volume_status.xml 1 volume status csi-tv
capheal heal_info_summary.xml csi-tv
cap volume_status_missing.xml 1 volume status nosuch
capheal heal_info_summary_missing.xml nosuch
# shellcheck disable=SC2046
ok 1 volume create hs replica 3 $(bricks hs) force
cap volume_status_not_started.xml 1 volume status hs
capheal heal_info_summary_not_started.xml hs
# No quorum and no healing, so bricks can be written alone and stay apart.
ok 1 volume set hs cluster.quorum-type none cluster.self-heal-daemon off cluster.data-self-heal off \
    cluster.metadata-self-heal off cluster.entry-self-heal off
ok 1 volume start hs
mkdir -p "$ROOT/tmp/tb/m/hs"
chroot "$ROOT" mount -t glusterfs -o log-file=/tmp/tb/logs/hs.log "$BLOCK.1:/hs" /tmp/tb/m/hs
echo base > "$ROOT/tmp/tb/m/hs/f"
kill -KILL "$(brick_pid hs /tmp/tb/c/b3/hs)"
for _ in $(seq 50); do client_connected hs 2 || break; sleep 0.2; done
cap volume_status_brick_down.xml 1 volume status hs
capheal heal_info_summary_brick_down.xml hs
for i in 1 2 3 4 5; do echo "data$i" > "$ROOT/tmp/tb/m/hs/p$i"; done
sync
start_force hs 3
capheal heal_info_summary_pending.xml hs
# Split-brain, the documented way: f written with brick 1 down, then again
# with only brick 1 up; each side blames the other.
kill -KILL "$(brick_pid hs /tmp/tb/c/b1/hs)"
for _ in $(seq 50); do client_connected hs 0 || break; sleep 0.2; done
echo AAAA > "$ROOT/tmp/tb/m/hs/f"
sync
start_force hs 1
kill -KILL "$(brick_pid hs /tmp/tb/c/b2/hs)" "$(brick_pid hs /tmp/tb/c/b3/hs)"
for _ in $(seq 50); do client_connected hs 1 || break; sleep 0.2; done
echo BBBBBBBB > "$ROOT/tmp/tb/m/hs/f"
sync
start_force hs 2 3
capheal heal_info_summary_split_brain.xml hs
umount "$ROOT/tmp/tb/m/hs"
# Node 3's glusterd down: `volume status` leaves its bricks out.
kill -TERM "$(cat "$ROOT/tmp/tb/n3/run/glusterd.pid")"
wait_pool 1 2
cap volume_status_peer_down.xml 1 volume status csi-tv
start_glusterd 3
for n in 1 2 3; do wait_pool "$n" 3; done

say "captured $(ls "$OUT" | wc -l) files in $OUT; notes in $NOTES"
