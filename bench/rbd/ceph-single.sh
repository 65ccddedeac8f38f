#!/usr/bin/env bash
# A throw-away single-node Ceph for benchmarks: one ceph-mon and one ceph-osd on memstore, no
# manager, pool size 1, auth none, monitor at v2:127.0.0.1:3300, everything (data, run dir, admin
# sockets, logs) inside one private folder. The shell twin of the tests' CephCluster fixture
# (src/test/java/io/biostack/rbd/CephCluster.java); the facts behind each key are in
# shared/notes/test-services.md.
#
# memstore keeps pages (memstore_page_set = true; Ceph 16's default is false): without them an
# object is one bufferlist that every 4k write in its middle splits further, so the OSD's CPU per
# write grew over a run, from ~380 us to over 1000 us per 4k randwrite here within 20 minutes, and
# whichever tool ran later in a round was measured on a slower cluster. With pages it stays near
# 110-170 us (measured on this 2-vCPU machine, issue 19).
#
#   . bench/rbd/ceph-single.sh
#   ceph_start DIR        # DIR must be new or empty; exports CEPH_CONF; creates pool "rbd"
#   ceph_stop DIR         # kills the daemons and deletes DIR
set -euo pipefail

ceph_start() {
    local dir=$1
    mkdir -p "$dir"/{mon,osd,run,log}
    cat > "$dir/ceph.conf" <<CONF
[global]
fsid = $(cat /proc/sys/kernel/random/uuid)
mon host = v2:127.0.0.1:3300
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon data avail warn = 1
mon data avail crit = 0
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = ${CEPH_MEMSTORE_BYTES:-4294967296}
memstore page set = true
run dir = $dir/run
admin socket = $dir/run/\$name.\$pid.asok
log file = $dir/log/\$name.log
mon cluster log file = $dir/log/cluster.log
mon data = $dir/mon/\$id
osd data = $dir/osd/\$id
keyring = $dir/keyring
CONF
    export CEPH_CONF=$dir/ceph.conf
    ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-mon --mkfs -i a -c "$CEPH_CONF" --keyring "$dir/keyring" >"$dir/log/mkfs-mon.out" 2>&1
    ceph-mon -f -i a -c "$CEPH_CONF" >"$dir/log/mon.out" 2>&1 &
    echo $! > "$dir/run/mon.pid"
    local i
    for i in $(seq 1 60); do
        timeout 5 ceph -s >/dev/null 2>&1 && break
        [ "$i" = 60 ] && { echo "ceph-mon did not come up: $dir/log" >&2; return 1; }
        sleep 0.5
    done
    local id
    id=$(ceph osd create)
    ceph osd crush add "osd.$id" 1 root=default >/dev/null 2>&1
    mkdir -p "$dir/osd/$id"
    ceph-osd -i "$id" --mkfs --no-mon-config -c "$CEPH_CONF" >"$dir/log/mkfs-osd.out" 2>&1
    ceph-osd -f -i "$id" -c "$CEPH_CONF" >"$dir/log/osd.out" 2>&1 &
    echo $! > "$dir/run/osd.pid"
    for i in $(seq 1 120); do
        ceph osd dump 2>/dev/null | grep -q "^osd.$id up" && break
        [ "$i" = 120 ] && { echo "ceph-osd did not come up: $dir/log" >&2; return 1; }
        sleep 0.5
    done
    ceph osd pool create rbd 32 32 >/dev/null 2>&1
    rbd pool init rbd
}

ceph_stop() {
    local dir=$1 f
    for f in "$dir/run/osd.pid" "$dir/run/mon.pid"; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
    for f in "$dir/run/osd.pid" "$dir/run/mon.pid"; do
        [ -f "$f" ] && timeout 10 tail --pid="$(cat "$f")" -f /dev/null 2>/dev/null || true
    done
    rm -rf "$dir"
}
