#!/usr/bin/env bash
# qcow2 benchmark (issue 15): fio's nbd engine over a unix socket against `biostack serve
# IMG.qcow2` and `qemu-nbd -f qcow2 --cache=none --aio=io_uring` on the same image, alternating
# job by job in one run, with each server's CPU per I/O and resident memory.
#
#  1. fully allocated image: 4k randread QD32, 4k randread QD1 (p50 of total latency,
#     --lat_percentiles=1), 4k randwrite QD32.         aims: >= 1.0x, p50 <= 1.0x, >= 1.0x
#  2. allocating writes on an empty image (a fresh image per job): 4k randwrite QD32 and 64k
#     sequential write QD8.                              aim: >= 1.2x
#  3. a 3-deep backing chain (raw base, two qcow2 overlays, each holding a third), 4k randread
#     QD32.                                              aim: >= 1.0x
#  4. in process: `biostack bench` 4k randread QD32 on the allocated qcow2 against the same bench
#     on a raw file with the same data.                  aim: >= 0.9x
#  5. memory: each server's RSS after section 1 (biostack's metadata cache size from its log).
#
# Usage: bench/qcow2/run.sh [--runtime S] [--rounds N] [--size SIZE] [--dir DIR] [--only N]
# Env:   BIOSTACK  command that runs the biostack CLI (default: ./biostack of this checkout)
# The virtual disk's speed swings: read the ratios of one run, next to the raw figures.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIOSTACK=${BIOSTACK:-$root/biostack}
RUNTIME=10; ROUNDS=1; SIZE=1G; DIR=/var/tmp; ONLY=
while [ $# -gt 0 ]; do
  case $1 in
    --runtime) RUNTIME=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    --size) SIZE=$2; shift 2;;
    --dir) DIR=$2; shift 2;;
    --only) ONLY=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for t in fio qemu-nbd qemu-img python3; do
  command -v $t >/dev/null || { echo "bench: $t is not installed" >&2; exit 2; }
done
"$BIOSTACK" --version >/dev/null   # builds on first use, outside the measured window
work=$(mktemp -d "$DIR/biostack-qcow2-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
TICK=$(getconf CLK_TCK)
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

start() { # SOCKET CMD...: background server, waits for its socket; pid in $started
  local sock=$1; shift
  rm -f "$sock"
  "$@" >"$work/$(basename "$sock").log" 2>&1 &
  started=$!
  pids+=($started)
  for _ in $(seq 1 300); do [ -S "$sock" ] && return 0; sleep 0.1; done
  echo "bench: server did not come up: $*" >&2; cat "$work/$(basename "$sock").log" >&2; exit 1
}
stop_all() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=(); }
cpu_ticks() { [ -z "$1" ] && { echo 0; return; }; awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
summarize() {
  python3 -c '
import json, sys
rw, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
text = sys.stdin.read()
j = json.loads(text[text.index("{"):])["jobs"][0]
d = j["write" if "write" in rw else "read"]
p = d["lat_ns"]["percentile"]
ios = d["total_ios"]
cpu = ticks * 1e6 / hz / ios if ios and ticks else 0
print("%.0f %.1f %.1f %.1f %.1f" % (d["iops"], d["bw"] / 1024, p["50.000000"] / 1000, p["99.000000"] / 1000, cpu))
' "$1" "$2" "$TICK"
}
job() { # PID SOCKET RW BS QD [EXTRA]: prints "iops MiB/s p50 p99 cpu_us"
  local pid=$1 sock=$2 rw=$3 bs=$4 qd=$5 extra=${6:-} c0 c1
  c0=$(cpu_ticks "$pid")
  # shellcheck disable=SC2086
  fio --name=j --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw="$rw" --bs="$bs" --iodepth="$qd" --size="$SIZE" \
      --runtime="$RUNTIME" --time_based --ramp_time=1 --randrepeat=0 --lat_percentiles=1 $extra \
      --output-format=json >"$work/out.json" 2>/dev/null
  c1=$(cpu_ticks "$pid")
  summarize "$rw" "$((c1 - c0))" <"$work/out.json"
}
warm() {
  fio --name=warm --ioengine=nbd --uri="nbd+unix:///?socket=$1" --rw=randread --bs=4k --iodepth=32 --size="$SIZE" \
      --runtime=3 --time_based --output-format=terse >/dev/null 2>&1 || true
}
row() { printf "%-26s %-10s %10s %9s %9s %9s %12s\n" "$@"; }
header() { echo; row "job" "server" "IOPS" "MiB/s" "p50 us" "p99 us" "cpu us/IO"; }
div() { python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print("%.2fx" % (a / b) if b else "-")' "$1" "$2"; }
field() { echo "$1" | awk -v f="$2" '{ print $f }'; }
bs_serve() { start "$1" $BIOSTACK serve --direct-io on "$2" --socket "$1"; }
qn_serve() { start "$1" qemu-nbd -f qcow2 --cache=none --aio=io_uring --persistent --shared=8 -k "$1" "$2"; }
compare() { # NAME B Q [QD1]
  row "$1" biostack $2
  row "$1" qemu-nbd $3
  if [ "${4:-}" = qd1 ]; then
    row "$1" "bs/qemu" "$(div "$(field "$2" 1)" "$(field "$3" 1)")" "" "$(div "$(field "$2" 3)" "$(field "$3" 3)")" "" \
        "$(div "$(field "$2" 5)" "$(field "$3" 5)")"
  else
    row "$1" "bs/qemu" "$(div "$(field "$2" 1)" "$(field "$3" 1)")" "$(div "$(field "$2" 2)" "$(field "$3" 2)")" "" "" \
        "$(div "$(field "$2" 5)" "$(field "$3" 5)")"
  fi
}

full=$work/full.qcow2
raw=$work/full.raw
echo "bench: $SIZE images in $work; runtime ${RUNTIME}s per job, $ROUNDS round(s), alternating"
echo "   biostack: $BIOSTACK serve --direct-io on IMG --socket S"
echo "   qemu-nbd: qemu-nbd -f qcow2 --cache=none --aio=io_uring --persistent --shared=8 -k S IMG"

if want 1 || want 4 || want 5; then
  fio --name=fill --ioengine=io_uring --direct=1 --filename="$raw" --rw=write --bs=1M --iodepth=8 --size="$SIZE" \
      --output-format=terse >/dev/null
  qemu-img convert -f raw -O qcow2 "$raw" "$full"   # every cluster allocated, 64k clusters
fi

if want 1 || want 5; then
  echo; echo "== 1. fully allocated image ($(qemu-img info --output=json "$full" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["cluster-size"], "byte clusters,", j["actual-size"], "bytes")'))"
  bs_serve "$work/bs.sock" "$full"; bs_pid=$started
  qn_serve "$work/qn.sock" "$full"; qn_pid=$started
  warm "$work/bs.sock"; warm "$work/qn.sock"
  header
  for spec in "randread 4k 32" "randread 4k 1" "randwrite 4k 32"; do
    set -- $spec
    for r in $(seq 1 "$ROUNDS"); do
      b=$(job "$bs_pid" "$work/bs.sock" "$1" "$2" "$3")
      q=$(job "$qn_pid" "$work/qn.sock" "$1" "$2" "$3")
      compare "$1 $2 QD$3" "$b" "$q" "$([ "$3" = 1 ] && echo qd1)"
    done
  done
  echo; echo "== 5. memory after section 1: biostack RSS $(rss_mib "$bs_pid") MiB, qemu-nbd RSS $(rss_mib "$qn_pid") MiB"
  grep -h "qcow2\|cache" "$work/bs.sock.log" | head -3 | sed 's/^/   biostack log: /' || true
  echo "   qemu's default L2 cache covers min(image, 32 MiB of L2 tables) (docs/qcow2-cache.txt); a $SIZE image with"
  echo "   64 KiB clusters needs $(python3 -c "import sys; s='$SIZE'; m={'K':1<<10,'M':1<<20,'G':1<<30}; n=int(s[:-1])*m[s[-1].upper()]; print(n // 65536 * 8 // 1024)") KiB of L2 entries to map it all."
  stop_all
fi

if want 2; then
  echo; echo "== 2. allocating writes on an empty image (a fresh image for every job)"
  header
  for spec in "randwrite 4k 32" "write 64k 8"; do
    set -- $spec
    for r in $(seq 1 "$ROUNDS"); do
      qemu-img create -q -f qcow2 "$work/e-bs.qcow2" "$SIZE"; qemu-img create -q -f qcow2 "$work/e-qn.qcow2" "$SIZE"
      bs_serve "$work/bs.sock" "$work/e-bs.qcow2"; bs_pid=$started
      b=$(job "$bs_pid" "$work/bs.sock" "$1" "$2" "$3" "--ramp_time=0")
      stop_all
      qn_serve "$work/qn.sock" "$work/e-qn.qcow2"; qn_pid=$started
      q=$(job "$qn_pid" "$work/qn.sock" "$1" "$2" "$3" "--ramp_time=0")
      stop_all
      compare "$1 $2 QD$3 (alloc)" "$b" "$q"
      qemu-img check -q "$work/e-bs.qcow2" || echo "   qemu-img check of biostack's image FAILED"
    done
  done
  echo "   (the first JVM job runs cold: no warm-up is possible on an image that must stay empty)"
fi

if want 3; then
  echo; echo "== 3. a 3-deep chain: raw base <- qcow2 <- qcow2 <- qcow2, a third of the data in each layer"
  base=$work/base.raw
  fio --name=fill --ioengine=io_uring --direct=1 --filename="$base" --rw=write --bs=1M --iodepth=8 --size="$SIZE" \
      --output-format=terse >/dev/null
  qemu-img create -q -f qcow2 -b "$base" -F raw "$work/l1.qcow2"
  qemu-img create -q -f qcow2 -b "$work/l1.qcow2" -F qcow2 "$work/l2.qcow2"
  qemu-img create -q -f qcow2 -b "$work/l2.qcow2" -F qcow2 "$work/top.qcow2"
  n=$(numfmt --from=iec "$SIZE")
  qemu-io -f qcow2 -c "write -P 1 $((n / 3 / 65536 * 65536)) $((n / 3 / 65536 * 65536))" "$work/l1.qcow2"
  qemu-io -f qcow2 -c "write -P 2 $((2 * n / 3 / 65536 * 65536)) $((n / 6 / 65536 * 65536))" "$work/l2.qcow2"
  qemu-io -f qcow2 -c "write -P 3 $((5 * n / 6 / 65536 * 65536)) $((n / 6 / 65536 * 65536))" "$work/top.qcow2"
  bs_start() { start "$work/bs.sock" $BIOSTACK serve --direct-io on --read-only "$work/top.qcow2" --socket "$work/bs.sock"; }
  bs_start; bs_pid=$started
  start "$work/qn.sock" qemu-nbd -f qcow2 --cache=none --aio=io_uring --persistent --shared=8 -r -k "$work/qn.sock" "$work/top.qcow2"; qn_pid=$started
  warm "$work/bs.sock"; warm "$work/qn.sock"
  header
  for r in $(seq 1 "$ROUNDS"); do
    b=$(job "$bs_pid" "$work/bs.sock" randread 4k 32)
    q=$(job "$qn_pid" "$work/qn.sock" randread 4k 32)
    compare "randread 4k QD32 (chain)" "$b" "$q"
  done
  stop_all
fi

if want 4; then
  echo; echo "== 4. in process: biostack bench 4k randread QD32, qcow2 against raw (same data)"
  for r in $(seq 1 "$ROUNDS"); do
    q=$($BIOSTACK bench --rw randread --bs 4k --iodepth 32 --runtime "$RUNTIME" "$full" 2>&1 | grep -o 'IOPS=[0-9.]*k\?' | head -1)
    w=$($BIOSTACK bench --rw randread --bs 4k --iodepth 32 --runtime "$RUNTIME" "$raw" 2>&1 | grep -o 'IOPS=[0-9.]*k\?' | head -1)
    echo "round $r: qcow2 $q, raw $w"
  done
fi
