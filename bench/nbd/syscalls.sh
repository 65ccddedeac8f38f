#!/usr/bin/env bash
# Kernel events per I/O of the NBD file path (issue 19), counted with perf tracepoints on the
# server process while fio's nbd engine runs one job against it: io_uring_enter calls, block
# requests issued, plug flushes (block_unplug: one per batch the block layer sends to the driver,
# so about one virtio doorbell each), io_uring submissions and task-work runs. Counts, unlike
# IOPS and latency, hardly move when the machine is loaded by others, so a before/after of a
# change to submission reads here even on a busy host.
#
# Usage: bench/nbd/syscalls.sh [--runtime S] [--rounds N] [--file PATH] [--size SIZE]
#                              [--jobs "rw bs qd,..."] [-- extra serve options]
# Env:   BIOSTACK (default ./biostack), BIOSTACK_BASE (a second build, alternated with the first),
#        BIOSTACK_OPTS / BIOSTACK_BASE_OPTS (their BIOSTACK_JAVA_OPTS).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIOSTACK=${BIOSTACK:-$root/biostack}
BASE=${BIOSTACK_BASE:-}
RUNTIME=5
ROUNDS=1
SIZE=1G
FILE=${TMPDIR:-/tmp}/biostack-nbd-bench.img
JOBS="randwrite 4k 32,randread 4k 32,randread 4k 1"
while [ $# -gt 0 ]; do
  case $1 in
    --runtime) RUNTIME=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    --file) FILE=$2; shift 2;;
    --size) SIZE=$2; shift 2;;
    --jobs) JOBS=$2; shift 2;;
    --) shift; break;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
EXTRA=("$@")
for t in fio perf python3; do
  command -v $t >/dev/null || { echo "bench: $t is not installed" >&2; exit 2; }
done
if [ ! -f "$FILE" ] || [ "$(stat -c %s "$FILE")" != "$(numfmt --from=iec "$SIZE")" ]; then
  fio --name=fill --ioengine=io_uring --direct=1 --filename="$FILE" --rw=write --bs=1M --iodepth=8 \
      --size="$SIZE" --output-format=terse >/dev/null
fi
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
EVENTS=syscalls:sys_enter_io_uring_enter,io_uring:io_uring_submit_req,io_uring:io_uring_local_work_run,block:block_rq_issue,block:block_unplug,syscalls:sys_enter_futex

# One server, one job: prints "iops enters/IO submits/IO taskruns/IO rq/IO unplugs/IO futex/IO".
measure() {
  local cmd=$1 opts=$2 rw=$3 bs=$4 qd=$5 sock=$work/s.sock
  rm -f "$sock"
  env BIOSTACK_JAVA_OPTS="$opts" $cmd serve --direct-io on "${EXTRA[@]}" "$FILE" --socket "$sock" \
      >"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do [ -S "$sock" ] && break; sleep 0.1; done
  [ -S "$sock" ] || { echo "bench: server did not come up" >&2; cat "$work/server.log" >&2; exit 1; }
  # JIT warm-up, untimed.
  fio --name=w --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw="$rw" --bs="$bs" --iodepth="$qd" \
      --size="$SIZE" --runtime=3 --time_based --output-format=terse >/dev/null 2>&1 || true
  perf stat -x, -e "$EVENTS" -p "$pid" -o "$work/perf.csv" &
  local perf=$!
  fio --name=j --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw="$rw" --bs="$bs" --iodepth="$qd" \
      --size="$SIZE" --runtime="$RUNTIME" --time_based --randrepeat=0 --output-format=json >"$work/out.json" 2>/dev/null
  kill -INT "$perf"; wait "$perf" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=
  python3 - "$work/out.json" "$work/perf.csv" "$rw" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])["jobs"][0]
d = j["write" if "write" in sys.argv[3] else "read"]
ios = max(d["total_ios"], 1)
c = {}
for line in open(sys.argv[2]):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        c[f[2]] = float(f[0])
names = ["syscalls:sys_enter_io_uring_enter", "io_uring:io_uring_submit_req", "io_uring:io_uring_local_work_run",
         "block:block_rq_issue", "block:block_unplug", "syscalls:sys_enter_futex"]
print("%.0f " % d["iops"] + " ".join("%.2f" % (c.get(n, 0) / ios) for n in names))
EOF
}

row() { printf "%-20s %-8s %9s %9s %9s %9s %9s %9s %9s\n" "$@"; }
echo "per I/O of fio's job, on the server process; file $FILE; ${RUNTIME}s per job; the machine may be loaded"
echo "  new:  BIOSTACK_JAVA_OPTS='${BIOSTACK_OPTS:-}' $BIOSTACK serve --direct-io on ${EXTRA[*]}"
[ -n "$BASE" ] && echo "  base: BIOSTACK_JAVA_OPTS='${BIOSTACK_BASE_OPTS:-}' $BASE serve --direct-io on ${EXTRA[*]}"
row job server IOPS enters submits taskrun rq_issue unplug futex
IFS=, read -r -a specs <<<"$JOBS"
for spec in "${specs[@]}"; do
  set -- $spec
  for r in $(seq 1 "$ROUNDS"); do
    row "$1 $2 QD$3" new $(measure "$BIOSTACK" "${BIOSTACK_OPTS:-}" "$1" "$2" "$3")
    [ -n "$BASE" ] && row "$1 $2 QD$3" base $(measure "$BASE" "${BIOSTACK_BASE_OPTS:-}" "$1" "$2" "$3")
  done
done
