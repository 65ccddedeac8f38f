#!/usr/bin/env bash
# RBD leaf benchmark (issue 8): `biostack bench` on a stack whose device is an rbd line, against
# fio's own rbd engine (librbd straight from C) on the same image, same job, alternating, in one
# run. librbd is the ceiling: the leaf should add nothing measurable.
#
# Jobs: 4k randwrite QD32, 4k randread QD32, 1M write QD8.
#
# It starts its own single-node Ceph (bench/rbd/ceph-single.sh: one mon, one OSD on memstore, in
# a private temp folder, monitor at 127.0.0.1:3300) and tears it down at the end, so nothing else
# may hold that port. Needs ceph-mon, ceph-osd, ceph-common (Debian), fio with its rbd engine.
#
# librbd's cache mode is made the same on both sides (issue 19: the leaf turns off
# rbd_cache_writethrough_until_flush, so its writes went to the writeback cache, while fio's engine,
# which never flushes, stayed write-through). Each mode runs in full, both tools reading one
# ceph.conf written for it:
#   off: rbd_cache = false on both;
#   on:  rbd_cache = true and rbd_cache_writethrough_until_flush = false on both, and both end
#        each job with one flush whose time counts in the run (fio end_fsync=1, biostack bench
#        --end-fsync), so what the cache still holds at the end is paid for on both sides.
#
# Both sides measure at librbd's API: fio's rbd engine calls librbd from C, biostack bench submits
# bios in process to the rbd leaf, which calls the same librbd through FFM (no NBD in between).
# --ramp (fio ramp_time, bench --ramp; both the same) is run but not measured: the JVM compiles
# the I/O path in its first seconds, and on a 2-vCPU machine the compiler's CPU is taken from the
# OSD, so a short ramp measures the warm-up too.
#
# Offsets (issue 19): fio's random jobs use its random map (its default: every block once per pass,
# never twice), so biostack bench runs with --randommap, the same rule. Without it, 2.3% of the 4k
# random writes on 1 GiB land on a block that one of the writes librbd's write-around cache keeps
# in flight (up to rbd_cache_max_dirty = 24 MiB, 6144 writes) still holds, and librbd holds such a
# write back until the older one is done. With the cache on, biostack/fio over rounds of 10 s had
# a median of 0.85 without the map (17 rounds) and 0.96 with it (19 rounds), each round +-25% on
# this shared 2-vCPU machine.
#
# Both sides log completions per 100 ms (fio write_iops_log/log_avg_msec, bench --iops-log), and
# the table gives the share of 100 ms intervals with under 1000 IOPS ("idle"): with the cache on,
# librbd's write-around makes both sides run in bursts (30-60k IOPS, then pauses of 0.3-1 s while
# the OSD works through the 24 MiB in flight).
#
# Ceph's daemons inherit the lock of `flock LOCK bench/rbd/run.sh`; they are killed at the end.
# Usage: bench/rbd/run.sh [--runtime SECONDS] [--rounds N] [--size SIZE] [--modes "off on"] [--ramp SECONDS]
#                         [--jobs "randwrite-4k-qd32 randread-4k-qd32 write-1m-qd8"]
# Env:   BIOSTACK  command that runs the biostack CLI (default: ./biostack of this checkout)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIOSTACK=${BIOSTACK:-$root/biostack}
RUNTIME=10
ROUNDS=3
SIZE=1G
MODES="off on"
RAMP=1
JOBS="randwrite-4k-qd32 randread-4k-qd32 write-1m-qd8"
while [ $# -gt 0 ]; do
  case $1 in
    --runtime) RUNTIME=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    --size) SIZE=$2; shift 2;;
    --modes) MODES=$2; shift 2;;
    --ramp) RAMP=$2; shift 2;;
    --jobs) JOBS=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for t in fio ceph-mon ceph-osd ceph rbd python3; do
  command -v $t >/dev/null || { echo "bench: $t is not installed (Debian: fio ceph-mon ceph-osd ceph-common)" >&2; exit 2; }
done
fio --enghelp=rbd >/dev/null 2>&1 || { echo "bench: this fio has no rbd engine" >&2; exit 2; }
"$BIOSTACK" --version >/dev/null   # builds on first use

. "$root/bench/rbd/ceph-single.sh"
work=$(mktemp -d)
cleanup() { ceph_stop "$work/ceph" || true; rm -rf "$work"; }
trap cleanup EXIT
bytes=$(numfmt --from=iec "$SIZE")
# memstore keeps the image in the OSD's memory: room for it plus slack.
CEPH_MEMSTORE_BYTES=$((bytes + (1 << 30))) ceph_start "$work/ceph"
echo "bench: single-node Ceph up ($CEPH_CONF)" >&2

rbd create rbd/bench --size "$SIZE"
# Written in full first, so that reads measure data and not holes.
fio --name=layout --ioengine=rbd --pool=rbd --rbdname=bench --clientname=admin --rw=write --bs=4M \
    --iodepth=8 --size="$SIZE" >/dev/null
# Then 20 s of 4k random writes, not measured: the first random-write job after the sequential
# fill was the fastest of its mode in every run (the tool that ran it first won its round by
# ~20%, both ways), so the cluster is brought to where the rounds find it.
fio --name=precondition --ioengine=rbd --pool=rbd --rbdname=bench --clientname=admin --rw=randwrite --bs=4k \
    --iodepth=32 --size="$SIZE" --runtime=20 --time_based >/dev/null
for mode in $MODES; do
  cp "$CEPH_CONF" "$work/ceph-$mode.conf"
  case $mode in
    off) printf '[client]\nrbd cache = false\n' >>"$work/ceph-$mode.conf";;
    on)  printf '[client]\nrbd cache = true\nrbd cache writethrough until flush = false\n' >>"$work/ceph-$mode.conf";;
    *) echo "unknown mode $mode (off, on)" >&2; exit 2;;
  esac
  printf 'vol: rbd rbd/bench conf=%s\n' "$work/ceph-$mode.conf" >"$work/rbd-$mode.stack"
done

# name rw bs iodepth
jobs=(
  "randwrite-4k-qd32 randwrite 4k 32"
  "randread-4k-qd32 randread 4k 32"
  "write-1m-qd8 write 1M 8"
)
out=$work/out
mkdir -p "$out"
run_fio() {
  CEPH_CONF="$work/ceph-$mode.conf" fio --name="$name" --ioengine=rbd --pool=rbd --rbdname=bench --clientname=admin \
      --rw="$rw" --bs="$bs" --iodepth="$qd" --size="$SIZE" --runtime="$RUNTIME" --time_based --ramp_time="$RAMP" \
      --randrepeat=0 --end_fsync="$endsync" --write_iops_log="$out/fio-$mode-$name-$r" --log_avg_msec=100 \
      --output-format=json >"$out/fio-$mode-$name-$r.json" 2>/dev/null
}
run_bs() {
  "$BIOSTACK" bench --stack "$work/rbd-$mode.stack" --device vol --rw "$rw" --bs "$bs" --iodepth "$qd" \
      --size "$SIZE" --runtime "$RUNTIME" --ramp "$RAMP" "${bsflush[@]}" "${bsmap[@]}" --iops-log "$out/bs-$mode-$name-$r.iops" \
      --json >"$out/bs-$mode-$name-$r.json" 2>"$out/bs-$mode-$name-$r.err" \
      || { echo "bench: biostack bench failed:" >&2; cat "$out/bs-$mode-$name-$r.err" >&2; exit 1; }
}
for mode in $MODES; do
  endsync=0; bsflush=(); [ "$mode" = on ] && { endsync=1; bsflush=(--end-fsync); }
  for r in $(seq 1 "$ROUNDS"); do
    for j in "${jobs[@]}"; do
      set -- $j
      name=$1 rw=$2 bs=$3 qd=$4
      case " $JOBS " in *" $name "*) ;; *) continue;; esac
      bsmap=(); case $rw in rand*) bsmap=(--randommap);; esac
      # The order alternates from round to round, so that a drift of the cluster (or of the
      # machine's other load) during a round weighs on both sides alike.
      if [ $((r % 2)) = 1 ]; then run_fio; run_bs; else run_bs; run_fio; fi
      echo "cache $mode, round $r: $name done" >&2
    done
  done
done

python3 - "$out" "$ROUNDS" "$MODES" "$JOBS" <<'PY'
import json, os, statistics, sys
out, rounds, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
names = [n for n in ["randwrite-4k-qd32", "randread-4k-qd32", "write-1m-qd8"] if n in sys.argv[4].split()]
def idle(path):
    # share of 100 ms intervals under 1000 IOPS; fio leaves out the intervals with no I/O at all
    d = {}
    for l in open(path):
        if l.strip():
            ms, v = int(l.split(',')[0]), int(l.split(',')[1])
            d[(ms + 50) // 100] = v
    n = max(d) if d else 0
    return sum(1 for i in range(1, n + 1) if d.get(i, 0) < 1000) / n if n else float("nan")
def fio(path):
    j = json.load(open(path))["jobs"][0]
    d = j["read"] if j["read"]["io_bytes"] > 0 else j["write"]
    return d["iops"], d["bw_bytes"], d["lat_ns"]["percentile"]["50.000000"] if "percentile" in d["lat_ns"] else d["clat_ns"]["percentile"]["50.000000"]
def bs(path):
    j = json.load(open(path))
    return j["iops"], j["bw_bytes"], j["lat_ns"]["p50"], j.get("alloc_bytes_per_io")
for m in modes:
  print(f"cache {m}:")
  print(f"{'job':18} {'fio-rbd IOPS':>12} {'biostack':>10} {'ratio':>6}   {'fio MiB/s':>9} {'bs MiB/s':>9}   {'fio p50us':>9} {'bs p50us':>9}  alloc/io")
  for n in names:
    f = [fio(f"{out}/fio-{m}-{n}-{r}.json") for r in range(1, rounds + 1)]
    b = [bs(f"{out}/bs-{m}-{n}-{r}.json") for r in range(1, rounds + 1)]
    fi = statistics.median(x[0] for x in f); bi = statistics.median(x[0] for x in b)
    fb = statistics.median(x[1] for x in f) / 2**20; bb = statistics.median(x[1] for x in b) / 2**20
    fl = statistics.median(x[2] for x in f) / 1e3; bl = statistics.median(x[2] for x in b) / 1e3
    al = [x[3] for x in b if x[3] is not None]
    al = statistics.median(al) if al else float("nan")
    print(f"{n:18} {fi:12.0f} {bi:10.0f} {bi/fi:6.2f}   {fb:9.1f} {bb:9.1f}   {fl:9.1f} {bl:9.1f}  {al:.1f} B")
    print(f"{'':18} rounds fio={[round(x[0]) for x in f]} biostack={[round(x[0]) for x in b]}")
    fi_ = [idle(f"{out}/fio-{m}-{n}-{r}_iops.1.log") for r in range(1, rounds + 1)]
    bi_ = [idle(f"{out}/bs-{m}-{n}-{r}.iops") for r in range(1, rounds + 1)]
    print(f"{'':18} idle 100ms intervals fio={[round(x, 2) for x in fi_]} biostack={[round(x, 2) for x in bi_]}")
PY
