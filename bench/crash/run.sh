#!/usr/bin/env bash
# Crash-consistency benchmark (issue 10), two parts:
#
#   bench/crash/run.sh [DIR] [--runtime S] [--rounds N] [--files N] [--skip-logwrites] [--skip-replay]
#                     [--reorder N] [--save-log FILE] [--log FILE]
#
# 1. What the log-writes target costs: 4k randwrite QD32 on `lw: log-writes disk log` against
#    the bare loop device `disk`, with `biostack bench --stack`, alternating round by round.
#    It writes everything twice (the device and the log), so the aim is >= 0.45x the IOPS.
#    LOGDEV is a file written in full beforehand, as a real log device is: on a sparse or
#    fallocated file every O_DIRECT log write converts extents (measured here: 10-15k IOPS
#    against 76k on a written one, the bare disk doing 100k). It is sized for the run (1 GiB per
#    second of load, more than the log can take in) so it never fills up: a full log disables
#    logging and would make the target look free. Each open starts a new log at entry 0.
# 2. Replay speed: crash points checked per minute on a 256 MiB ext4 image with the
#    journal-recovering check (e2fsck -E journal_only -y, then e2fsck -fn, on a scratch copy),
#    `biostack replay` against the naive loop (`--naive`: cp the whole image before every check,
#    re-check points where nothing changed). The log comes from ext4 made and used through
#    `biostack serve --stack` + nbdfuse + the kernel loop driver (needs root, nbdfuse, losetup).
#    The aim is >= 3x, in order and with --reorder 20 (--reorder N checks N reordered states at
#    each flush point, on both sides). --save-log FILE keeps the log (and the mkfs/done marks in
#    it) for later runs; --log FILE replays that log instead of making a new one (no root needed).
#
# Prints the IOPS and ratio of part 1 and points/minute and ratio of part 2. Shared machines are
# noisy: read the ratios, and use more rounds when they disagree.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=${1:-/var/tmp}
[ $# -gt 0 ] && shift
runtime=10; rounds=3; files=40; do_lw=1; do_replay=1; reorder=0; save_log=; use_log=
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) runtime=$2; shift 2;;
    --rounds) rounds=$2; shift 2;;
    --files) files=$2; shift 2;;
    --skip-logwrites) do_lw=0; shift;;
    --skip-replay) do_replay=0; shift;;
    --reorder) reorder=$2; shift 2;;
    --save-log) save_log=$2; shift 2;;
    --log) use_log=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
bs="$root/biostack"
"$bs" --version >/dev/null   # builds on first use
work=$(mktemp -d "$dir/bs-crash.XXXXXX")
cleanup() {
  set +e
  [ -n "${fs_mounted:-}" ] && umount "$work/fs"
  [ -n "${loopdev:-}" ] && losetup -d "$loopdev"
  [ -n "${fuse_pid:-}" ] && { fusermount3 -u "$work/fuse"; wait "$fuse_pid"; }
  [ -n "${serve_pid:-}" ] && { kill "$serve_pid"; wait "$serve_pid"; }
  rm -rf "$work"
}
trap cleanup EXIT
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ---- part 1: log-writes over the bare device --------------------------------------------------
if [ "$do_lw" = 1 ]; then
  size=1G
  want=$(numfmt --from=iec "$size")
  echo "laying out $work/disk.img ($size, fully written)..." >&2
  dd if=/dev/zero of="$work/disk.img" bs=1M count=$((want / 1048576)) oflag=direct status=none
  cat >"$work/lw.stack" <<CONF
disk: loop $work/disk.img direct-io=on
log:  loop $work/log.img direct-io=on
lw:   log-writes disk log
CONF
  logmib=$(( (runtime + 3) * 1024 ))
  echo "laying out $work/log.img (${logmib} MiB, fully written)..." >&2
  dd if=/dev/zero of="$work/log.img" bs=4M count=$((logmib / 4)) oflag=direct status=none
  bare=(); logged=()
  for r in $(seq 1 "$rounds"); do
    b=$("$bs" bench --stack "$work/lw.stack" --device disk --rw randwrite --bs 4k --iodepth 32 --runtime "$runtime" --ramp 2 --json | json 'd["iops"]')
    l=$("$bs" bench --stack "$work/lw.stack" --device lw --rw randwrite --bs 4k --iodepth 32 --runtime "$runtime" --ramp 2 --json | json 'd["iops"]')
    echo "round $r: disk $b IOPS, log-writes $l IOPS" >&2
    bare+=("$b"); logged+=("$l")
  done
  python3 - "${bare[*]}" "${logged[*]}" <<'PY'
import statistics, sys
b = [float(x) for x in sys.argv[1].split()]; l = [float(x) for x in sys.argv[2].split()]
mb, ml = statistics.median(b), statistics.median(l)
print(f"log-writes 4k randwrite QD32: disk {mb:.0f} IOPS, log-writes {ml:.0f} IOPS, ratio {ml/mb:.2f}x (aim >= 0.45x)")
PY
  rm -f "$work/disk.img" "$work/log.img"
fi

# ---- part 2: replay speed on a 256 MiB ext4 ---------------------------------------------------
if [ "$do_replay" = 1 ] && [ -n "$use_log" ]; then
  cp --sparse=always "$use_log" "$work/fslog.img"
elif [ "$do_replay" = 1 ]; then
  for t in nbdfuse fusermount3 losetup mkfs.ext4 e2fsck mount umount; do
    command -v "$t" >/dev/null || { echo "part 2 needs $t" >&2; exit 1; }
  done
  mkdir "$work/fuse" "$work/fs"
  cat >"$work/fs.stack" <<CONF
disk: loop $work/fsdev.img size=256M
log:  loop $work/fslog.img size=4G
lw:   log-writes disk log
CONF
  "$bs" serve --stack "$work/fs.stack" --export lw --socket "$work/nbd.sock" --control "$work/ctl" >"$work/serve.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 100); do [ -S "$work/nbd.sock" ] && [ -S "$work/ctl" ] && break; sleep 0.1; done
  nbdfuse "$work/fuse" "nbd+unix:///lw?socket=$work/nbd.sock" &
  fuse_pid=$!
  for _ in $(seq 100); do [ -e "$work/fuse/nbd" ] && break; sleep 0.1; done
  loopdev=$(losetup --find --show "$work/fuse/nbd")
  mkfs.ext4 -q -F -b 4096 "$loopdev"
  "$bs" dm --control "$work/ctl" message lw mark mkfs
  mount -t ext4 "$loopdev" "$work/fs"; fs_mounted=1
  for i in $(seq 1 "$files"); do       # the workload: small files, each fsynced, a rename now and then
    head -c $((4096 * (i % 7 + 1))) /dev/urandom >"$work/fs/f$i"
    sync "$work/fs/f$i"
    [ $((i % 10)) = 0 ] && { mkdir -p "$work/fs/d$i"; mv "$work/fs/f$i" "$work/fs/d$i/"; sync "$work/fs/d$i"; }
  done
  umount "$work/fs"; fs_mounted=
  "$bs" dm --control "$work/ctl" message lw mark done
  losetup -d "$loopdev"; loopdev=
  fusermount3 -u "$work/fuse"; wait "$fuse_pid"; fuse_pid=
  kill "$serve_pid"; wait "$serve_pid" || true; serve_pid=
  [ -n "$save_log" ] && cp --sparse=always "$work/fslog.img" "$save_log"
fi
if [ "$do_replay" = 1 ]; then
  # the journal-recovering check, as --recover and --check: biostack skips the recovery where the
  # journal has nothing to replay (JournalState), --naive runs both on every state as a script would
  recover='e2fsck -E journal_only -y {} >/dev/null 2>&1'
  check='e2fsck -fn {} >/dev/null 2>&1'
  ours=(); naive=(); shm=()
  for r in $(seq 1 "$rounds"); do
    rm -f "$work/a.img" "$work/b.img"
    o=$("$bs" replay "$work/fslog.img" --to "$work/a.img" --size 256M --start-mark mkfs --end-mark done --at flush \
        --recover "$recover" --check "$check" --reorder "$reorder" --json | json '"%d %d %d" % (d["points"], d["millis"], d["checks"])')
    n=$("$bs" replay "$work/fslog.img" --to "$work/b.img" --size 256M --start-mark mkfs --end-mark done --at flush \
        --recover "$recover" --check "$check" --reorder "$reorder" --naive --json | json '"%d %d %d" % (d["points"], d["millis"], d["checks"])')
    rm -f "$work/c.img"
    m=$("$bs" replay "$work/fslog.img" --to "$work/c.img" --size 256M --start-mark mkfs --end-mark done --at flush \
        --recover "$recover" --check "$check" --reorder "$reorder" --naive --scratch-dir /dev/shm --json | json '"%d %d %d" % (d["points"], d["millis"], d["checks"])')
    echo "round $r (points ms checks): biostack replay $o; naive $n; naive with its copy in /dev/shm $m" >&2
    ours+=("$o"); naive+=("$n"); shm+=("$m")
  done
  python3 - "$(printf '%s;' "${ours[@]}")" "$(printf '%s;' "${naive[@]}")" "$(printf '%s;' "${shm[@]}")" "$reorder" <<'PY'
import statistics, sys
def ppm(s):
    out = []
    for run in filter(None, s.split(';')):
        p, ms, _ = map(int, run.split())
        out.append(p * 60000.0 / max(ms, 1))
    return statistics.median(out)
o, n, m = ppm(sys.argv[1]), ppm(sys.argv[2]), ppm(sys.argv[3])
print(f"replay, 256 MiB ext4, journal-recovering check, --reorder {sys.argv[4]}: {o:.0f} crash points/min, naive copy-then-check {n:.0f}/min, ratio {o/n:.2f}x (aim >= 3x)")
print(f"  (the naive loop with its copy in /dev/shm too: {m:.0f}/min, ratio {o/m:.2f}x)")
PY
fi
