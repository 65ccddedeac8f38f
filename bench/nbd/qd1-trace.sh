#!/usr/bin/env bash
# Where a QD1 read waits (issue 19): perf tracepoints system-wide while fio's nbd engine reads 4k
# at QD1 from `serve --direct-io on FILE`, then the median (and p90) of each step of the reactor's
# timeline, per I/O: request CQE -> READ submitted -> block rq issued -> rq completed (the disk)
# -> file CQE (wake-up and task work) -> SENDMSG submitted -> the client's next request.
# Tracepoints cost about a microsecond each: read the steps against each other, not as latencies.
#
# Usage: bench/nbd/qd1-trace.sh [--file PATH] [--seconds S] [-- extra serve options, e.g. --poll-us 0]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIOSTACK=${BIOSTACK:-$root/biostack}
FILE=${TMPDIR:-/tmp}/biostack-nbd-bench.img
SECONDS_TRACED=1.5
while [ $# -gt 0 ]; do
  case $1 in
    --file) FILE=$2; shift 2;;
    --seconds) SECONDS_TRACED=$2; shift 2;;
    --) shift; break;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for t in fio perf python3; do
  command -v $t >/dev/null || { echo "bench: $t is not installed" >&2; exit 2; }
done
[ -f "$FILE" ] || fio --name=fill --ioengine=io_uring --direct=1 --filename="$FILE" --rw=write --bs=1M \
    --iodepth=8 --size=1G --output-format=terse >/dev/null
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
sock=$work/s.sock
$BIOSTACK serve --direct-io on "$@" "$FILE" --socket "$sock" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "bench: server did not come up" >&2; cat "$work/server.log" >&2; exit 1; }
# 12 s of JIT warm-up, then the trace inside the same job.
fio --name=j --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw=randread --bs=4k --iodepth=1 --size=1G \
    --runtime=$((14 + ${SECONDS_TRACED%.*})) --time_based --output-format=terse >/dev/null 2>&1 &
fp=$!
sleep 12
perf record -a -o "$work/perf.data" -e io_uring:io_uring_submit_req,io_uring:io_uring_complete,block:block_rq_issue,block:block_rq_complete,sched:sched_wakeup,sched:sched_switch \
    -- sleep "$SECONDS_TRACED" >/dev/null 2>&1
wait "$fp" || true
echo "serve --direct-io on $* $FILE; fio randread 4k QD1 over a unix socket; ${SECONDS_TRACED}s traced"
perf script -i "$work/perf.data" 2>/dev/null | python3 -c '
import re, sys, statistics as st
ev = []
for line in sys.stdin:
    m = re.match(r"\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s(.*)", line)
    if m:
        comm, tid, cpu, ts, name, rest = m.groups()
        ev.append((float(ts) * 1e6, comm, int(tid), name.split(":")[-1], rest))
rid = next((tid for _, comm, tid, name, rest in ev if comm.startswith("nbd-reactor") and "opcode READ" in rest), None)
if rid is None:
    sys.exit("no READ submitted by a reactor in the trace")
rows, cur = [], {}
for t, comm, tid, name, rest in ev:
    mine = tid == rid
    if name == "io_uring_submit_req" and mine and "opcode READ" in rest:
        cur = {"sub": t}
    elif name == "block_rq_issue" and "sub" in cur and " R" in rest and "iss" not in cur:
        cur["iss"] = t
    elif name == "block_rq_complete" and "iss" in cur and " R" in rest and "irq" not in cur:
        cur["irq"] = t
    elif name == "io_uring_complete" and mine and "irq" in cur and "cqe" not in cur and "user_data 0x1" in rest:
        cur["cqe"] = t
    elif name == "io_uring_submit_req" and mine and "SENDMSG" in rest and "cqe" in cur and "send" not in cur:
        cur["send"] = t
    elif name == "io_uring_complete" and mine and "send" in cur and "result 28," in rest:
        cur["next"] = t
        rows.append(cur)
        cur = {}
def show(label, a, b):
    v = sorted(r[b] - r[a] for r in rows if a in r and b in r)
    print("  %-34s %7.1f %7.1f" % (label, st.median(v), v[int(len(v) * 0.9)]))
print("  %-34s %7s %7s   (us, %d I/Os)" % ("step", "p50", "p90", len(rows)))
gap = sorted(rows[i + 1]["sub"] - rows[i]["next"] for i in range(len(rows) - 1))
print("  %-34s %7.1f %7.1f" % ("request CQE -> READ submitted", st.median(gap), gap[int(len(gap) * 0.9)]))
show("READ submitted -> rq issued", "sub", "iss")
show("rq issued -> rq completed (disk)", "iss", "irq")
show("rq completed -> file CQE (wake)", "irq", "cqe")
show("file CQE -> SENDMSG submitted", "cqe", "send")
show("SENDMSG -> next request (client)", "send", "next")
per = sorted(rows[i + 1]["sub"] - rows[i]["sub"] for i in range(len(rows) - 1))
print("  %-34s %7.1f %7.1f" % ("one I/O, READ to READ", st.median(per), per[int(len(per) * 0.9)]))
'
