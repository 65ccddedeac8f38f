#!/usr/bin/env bash
# Changed-block tracking benchmark (issue 17): what dirty bitmaps and a mirror disk log cost, what
# an incremental backup reads, and what a restart resyncs. Everything goes through
# `biostack serve --stack` and real clients (fio's nbd engine, nbdinfo, nbdcopy); the bitmaps are
# driven by `biostack dm message`. Rounds alternate the two sides; every figure is printed raw
# beside its ratio. The machine may be shared: read ratios from one run, not absolute numbers.
#
#   bench/cbt/run.sh [--runtime S] [--rounds N] [--size SIZE] [--backup-size SIZE] [--skip-backup] [--only N]
#
# 0. in-process (io.biostack.block.bitmap.BitmapCost): CPU ns per 4k write through a counted
#    ramdisk, CPU ns of DeviceBitmaps.beforeWrite alone (the mark), and the wall time and
#    metadata writes of a first write to a clean chunk of a persistent bitmap (side file on disk).
# 1. 4k randwrite QD32 over NBD: no bitmap, one recording bitmap, one persistent bitmap on
#    regions already marked; and the first pass over a clean persistent bitmap with its count of
#    metadata writes (one per bitmap block of 32768 chunks touched).
# 2. mirror with a disk log vs the core log, 4k randwrite QD32.
# 3. incremental backup of a --backup-size device (4G) with 5% changed: the bytes a client
#    (bench/cbt/incremental.py, libnbd) reads by the ranges `nbdinfo --map=qemu:dirty-bitmap:BM`
#    reports vs the changed bytes, and its wall time vs a full nbdcopy of the same view, with one
#    connection and with four (multi-conn); beside it, the floor the disk sets (fio on the file).
# 4. resync bytes after a SIGKILL under writes, mirror with a disk log, against the device size.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runtime=5; rounds=2; size=1G; bsize=4G; skip_backup=0; only=
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) runtime=$2; shift 2;;
    --rounds) rounds=$2; shift 2;;
    --size) size=$2; shift 2;;
    --backup-size) bsize=$2; shift 2;;
    --skip-backup) skip_backup=1; shift;;
    --only) only=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
. "$root/scripts/java-env.sh"
for t in fio nbdinfo nbdcopy nbdsh python3; do command -v $t >/dev/null || { echo "$t is needed" >&2; exit 1; }; done
out=$(mktemp -d /var/tmp/biostack-cbt.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT

serve() { # STACKFILE EXPORT: starts serve, waits for ready
  "$root/biostack" serve --stack "$1" --export "$2" --socket "$out/nbd.sock" --control "$out/ctl" >"$out/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do grep -q '^ready' "$out/serve.log" 2>/dev/null && return; sleep 0.1; done
  echo "serve did not start:" >&2; cat "$out/serve.log" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
dm() { "$root/biostack" dm --control "$out/ctl" "$@"; }
fio_iops() { # EXPORT: 4k randwrite QD32, prints IOPS
  fio --name=w --ioengine=nbd --uri="nbd+unix:///$1?socket=$out/nbd.sock" --rw=randwrite --bs=4k --iodepth=32 \
      --runtime="$runtime" --time_based --size="$size" --output-format=json 2>/dev/null \
    | python3 -c 'import json,sys; s=sys.stdin.read(); print(int(json.loads(s[s.index("{"):])["jobs"][0]["write"]["iops"]))'
}
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.3f}' if b else 'n/a')" "$1" "$2"; }

# the mirror stacks of sections 2 and 4
for log in core disk disk500; do
  case $log in
    core) tbl="core 2 64k nosync"; feat="";;
    disk) tbl="disk 3 log 64k nosync"; feat="";;
    disk500) tbl="disk 3 log 64k nosync"; feat=" 2 handle_errors clear_delay=500ms";;
  esac
  printf 'a: loop %s size=%s direct-io=on\nb: loop %s size=%s direct-io=on\nlog: loop %s size=1M direct-io=on\nm: mirror %s 2 a 0 b 0%s\n' \
    "$out/a.img" "$size" "$out/b.img" "$size" "$out/log.img" "$tbl" "$feat" > "$out/m-$log.stack"
done
if want 0; then
echo "== 0. dirty bitmaps in-process: CPU ns per 4k write on a counted ramdisk (io.biostack.block.bitmap.BitmapCost)"
(cd "$root" && nice -n 5 mvn -q -B -o test-compile >&2 2>/dev/null || nice -n 5 mvn -q -B test-compile >&2)
(cd "$root" && mvn -q -B -o dependency:build-classpath -Dmdep.outputFile="$out/cp" >/dev/null 2>&1)
"$JAVA_HOME/bin/java" -XX:+UseParallelGC -cp "$root/target/classes:$root/target/test-classes:$(cat "$out/cp")" \
  io.biostack.block.bitmap.BitmapCost $(( rounds * 2 + 1 )) 1000000 "$out"

fi
if want 1; then
echo "== 1. dirty bitmaps: 4k randwrite QD32 over NBD, $size loop device (direct I/O), ${runtime}s runs"
printf 'd: loop %s size=%s direct-io=on bitmap-file=%s\n' "$out/d.img" "$size" "$out/d.bitmaps" > "$out/d.stack"
serve "$out/d.stack" d
fio_iops d >/dev/null # warm-up: allocate the file, compile the path
# the order alternates (none first on odd rounds, the bitmap first on even ones) so a drift in
# the machine's load does not favour one side
n1=(); n2=(); r1=(); r2=()
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then
    none=$(fio_iops d)
    dm message d "bitmap add t" >/dev/null; one=$(fio_iops d); dm message d "bitmap remove t" >/dev/null
  else
    dm message d "bitmap add t" >/dev/null; one=$(fio_iops d); dm message d "bitmap remove t" >/dev/null
    none=$(fio_iops d)
  fi
  n1+=("$none"); r1+=("$one")
  echo "round $r: none $none IOPS, one recording bitmap $one IOPS, ratio $(ratio "$one" "$none")"
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
sum() { printf '%s\n' "$@" | awk '{s+=$1} END {print s}'; }
echo "one recording bitmap vs none: median $(med "${r1[@]}") vs $(med "${n1[@]}") IOPS (ratio $(ratio "$(med "${r1[@]}")" "$(med "${n1[@]}")")), sums ratio $(ratio "$(sum "${r1[@]}")" "$(sum "${n1[@]}")")"
dm message d "bitmap add p persistent granularity=64k" >/dev/null
first=$(fio_iops d)
mw=$(dm status d | sed -n 's/.*metadata_writes=\([0-9]*\).*/\1/p')
echo "persistent, first pass over clean chunks: $first IOPS, $mw metadata writes (one FUA 4k write per bitmap block)"
# mark every chunk, so the rounds below measure writes to marked regions only
fio --name=mark --ioengine=nbd --uri="nbd+unix:///d?socket=$out/nbd.sock" --rw=write --bs=1M --iodepth=8 --size="$size" >/dev/null 2>&1
mw=$(dm status d | sed -n 's/.*metadata_writes=\([0-9]*\).*/\1/p')
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then
    marked=$(fio_iops d)
    none=$(dm message d "bitmap disable p" >/dev/null; fio_iops d); dm message d "bitmap enable p" >/dev/null
  else
    none=$(dm message d "bitmap disable p" >/dev/null; fio_iops d); dm message d "bitmap enable p" >/dev/null
    marked=$(fio_iops d)
  fi
  n2+=("$none"); r2+=("$marked")
  mw2=$(dm status d | sed -n 's/.*metadata_writes=\([0-9]*\).*/\1/p')
  echo "round $r: persistent on marked chunks $marked IOPS vs none $none IOPS, ratio $(ratio "$marked" "$none"); metadata writes $mw -> $mw2"
done
echo "persistent on marked chunks vs none: median $(med "${r2[@]}") vs $(med "${n2[@]}") IOPS (ratio $(ratio "$(med "${r2[@]}")" "$(med "${n2[@]}")")), sums ratio $(ratio "$(sum "${r2[@]}")" "$(sum "${n2[@]}")")"
stop

fi
if want 2; then
echo "== 2. mirror: disk log vs core log, 4k randwrite QD32 (disk500: the old 500 ms clear delay)"
declare -A mir
for r in $(seq "$rounds"); do
  for log in core disk disk500; do
    rm -f "$out/log.img"
    serve "$out/m-$log.stack" m
    fio_iops m >/dev/null
    mir[$log]=$(fio_iops m)
    stop
  done
  echo "round $r: core ${mir[core]} IOPS, disk ${mir[disk]} IOPS (ratio $(ratio "${mir[disk]}" "${mir[core]}")), disk with 500 ms clear delay ${mir[disk500]} IOPS (ratio $(ratio "${mir[disk500]}" "${mir[core]}"))"
done

fi
if want 4; then
echo "== 4. resync after SIGKILL under writes (mirror, disk log)"
rm -f "$out/log.img"
serve "$out/m-disk.stack" m
fio --name=w --ioengine=nbd --uri="nbd+unix:///m?socket=$out/nbd.sock" --rw=randwrite --bs=4k --iodepth=32 \
    --runtime=30 --time_based --size="$size" >/dev/null 2>&1 &
fpid=$!
sleep 3
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=
wait "$fpid" 2>/dev/null || true
serve "$out/m-disk.stack" m
for _ in $(seq 600); do st=$(dm status m); case "$st" in *" 1 AA 3 disk"*) n=$(echo "$st" | awk '{print $5}'); [ "${n%/*}" = "${n#*/}" ] && break;; esac; sleep 0.1; done
st=$(dm status m); echo "$st"
rb=$(echo "$st" | sed -n 's/.*resync_bytes=\([0-9]*\).*/\1/p')
dev=$(python3 -c "import sys; s=sys.argv[1]; m={'K':1<<10,'M':1<<20,'G':1<<30}; print(int(s[:-1])*m[s[-1].upper()] if s[-1].isalpha() else int(s))" "$size")
echo "resync after restart: $rb bytes of $dev ($(ratio "$rb" "$dev") of the device)"
stop

[ $skip_backup = 1 ] && exit 0
fi
if want 3; then
echo "== 3. incremental backup, $bsize device, 5% changed, over NBD (machine shared with other builds: read the ratios of one run)"
printf 'd: loop %s size=%s direct-io=on\n' "$out/big.img" "$bsize" > "$out/big.stack"
serve "$out/big.stack" d
u="nbd+unix:///d?socket=$out/nbd.sock"
fio --name=fill --ioengine=nbd --uri="$u" --rw=write --bs=1M --iodepth=8 --size="$bsize" >/dev/null 2>&1
secs() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.3f}')" "$1" "$2"; }
dm message d "bitmap add b0" >/dev/null
dm message d "backup-begin full bitmap=b0 new=b1 cow-dir=$out" >/dev/null
t0=$(date +%s.%N); nbdcopy "nbd+unix:///full?socket=$out/nbd.sock" "$out/backup.img"; t1=$(date +%s.%N)
dm message d "backup-end full" >/dev/null
echo "first full backup (nbdcopy, defaults): $(secs "$t0" "$t1")s"
sync # its 4 GiB of page cache written back now, not during the measures below
# 5% of the device in 64k random writes
fio --name=chg --ioengine=nbd --uri="$u" --rw=randwrite --bs=64k --iodepth=16 --io_size=$(python3 -c "
import sys; s='$bsize'; m={'K':1<<10,'M':1<<20,'G':1<<30}; print((int(s[:-1])*m[s[-1].upper()])//20)") --size="$bsize" >/dev/null 2>&1
changed=$(dm status d | sed -n 's/^bitmap b1 .*dirty=\([0-9]*\).*/\1/p')
dm message d "backup-begin inc bitmap=b1 new=b2 cow-dir=$out" >/dev/null
iu="nbd+unix:///inc?socket=$out/nbd.sock"
if ! nbdinfo --map=qemu:dirty-bitmap:b1 "$iu" > "$out/map" 2>"$out/map.err"; then
  echo "nbdinfo --map=qemu:dirty-bitmap:b1 failed: $(cat "$out/map.err") (the server does not offer the context yet)"
  exit 0
fi
nr=$(awk '$3 == 1' "$out/map" | wc -l)
echo "changed $changed bytes in $nr dirty ranges; multi-conn on the view export: $(nbdinfo --json "$iu" | python3 -c 'import json,sys; print(json.load(sys.stdin)["exports"][0]["can_multi_conn"])')"
# The floor the virtual disk sets: the same file read directly (O_DIRECT), 64k random reads
# (what the scattered dirty chunks need) against sequential reads (what a full copy needs).
fbw() { fio --name=floor --filename="$out/big.img" --size="$bsize" --direct=1 --ioengine=io_uring --time_based --runtime=5 \
        --output-format=json "$@" 2>/dev/null | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["jobs"][0]["read"]["bw_bytes"]))'; }
r16=$(fbw --rw=randread --bs=64k --iodepth=16); r64=$(fbw --rw=randread --bs=64k --iodepth=64); sq=$(fbw --rw=read --bs=1M --iodepth=8)
python3 -c "
import sys; r16,r64,sq,ch,dev=map(float,sys.argv[1:6])
print(f'disk floor (fio on {sys.argv[6]}): 64k randread QD16 {r16/1e6:.0f} MB/s, QD64 {r64/1e6:.0f} MB/s, 1M seq read QD8 {sq/1e6:.0f} MB/s;'
      f' changed bytes at the QD64 random rate {ch/r64:.2f}s vs the device at the sequential rate {dev/sq:.2f}s: floor ratio {ch/r64/(dev/sq):.3f}')
" "$r16" "$r64" "$sq" "$changed" "$(stat -c %s "$out/big.img")" "$out/big.img"
# Rounds over the same view: a full nbdcopy of it (nbdcopy's defaults: multi-conn, 4 connections,
# 64 requests each) and three incremental clients: the old measure (nbdsh, one connection, 16 in
# flight, a new buffer and a bytearray copy per read), incremental.py on one connection (16 in
# flight, buffers reused) and incremental.py as a backup client does on a multi-conn export (4
# connections, 16 in flight each). The order rotates; sync (untimed) after each so no copy pays
# another's writeback.
old_client() {
  PATH=/usr/bin:$PATH nbdsh -u "$iu" -c "
import os
fd = os.open('$out/backup.img', os.O_WRONLY)
ranges = []
for line in open('$out/map'):
    f = line.split()
    if len(f) >= 3 and f[2] == '1':
        off, ln = int(f[0]), int(f[1])
        pos = off
        while pos < off + ln:
            n = min(4 << 20, off + ln - pos)
            ranges.append((pos, n))
            pos += n
inflight = 0
def done(buf, pos, err):
    global inflight
    inflight -= 1
    os.pwrite(fd, buf.to_bytearray(), pos)
    return 1
for pos, n in ranges:
    while inflight >= 16:
        h.poll(-1)
    buf = nbd.Buffer(n)
    inflight += 1
    h.aio_pread(buf, pos, lambda err, b=buf, p=pos: done(b, p, err))
while inflight > 0:
    h.poll(-1)
os.close(fd)
"
}
declare -A t
for r in $(seq "$rounds"); do
  for k in 0 1 2 3; do
    case $(( (r + k) % 4 )) in
      0) t0=$(date +%s.%N); nbdcopy "$iu" "$out/full2.img"; t1=$(date +%s.%N); t[full]=$(secs "$t0" "$t1"); rm -f "$out/full2.img";;
      1) t0=$(date +%s.%N); o=$(/usr/bin/python3 "$root/bench/cbt/incremental.py" "$iu" "$out/map" "$out/backup.img" --connections 1 --inflight 16)
         t1=$(date +%s.%N); t[one]=$(secs "$t0" "$t1");;
      2) t0=$(date +%s.%N); o=$(/usr/bin/python3 "$root/bench/cbt/incremental.py" "$iu" "$out/map" "$out/backup.img" --connections 4 --inflight 16)
         t1=$(date +%s.%N); t[multi]=$(secs "$t0" "$t1"); read_multi=${o%% *}; conns=${o##* };;
      3) t0=$(date +%s.%N); old_client; t1=$(date +%s.%N); t[old]=$(secs "$t0" "$t1");;
    esac
    sync
  done
  echo "round $r: full nbdcopy ${t[full]}s; incremental: old nbdsh 1 conn x 16 ${t[old]}s (ratio $(ratio "${t[old]}" "${t[full]}")), 1 conn x 16 ${t[one]}s (ratio $(ratio "${t[one]}" "${t[full]}")), $conns conns x 16 ${t[multi]}s (ratio $(ratio "${t[multi]}" "${t[full]}")); read $read_multi bytes of $changed changed (ratio $(ratio "$read_multi" "$changed"))"
done
dm message d "backup-end inc" >/dev/null
stop
fi
