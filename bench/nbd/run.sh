#!/usr/bin/env bash
# NBD server benchmark (issues 3 and 9): fio's nbd engine over a unix socket, every server in the
# same run, alternating job by job, with the server's CPU per I/O.
#
#  1. File export: biostack serve --direct-io on FILE  vs  qemu-nbd -f raw --cache=none
#     --aio=io_uring FILE  vs  fio on the raw file (io_uring, O_DIRECT): 4k randread QD1 (p50 of
#     total latency, --lat_percentiles=1), 4k randread QD32, 1M read QD8, 4k randwrite QD32.
#     Ratios printed: biostack/raw (issue 9: QD1 p50 <= 1.3x, QD32 >= 0.85x, 1M >= 0.9x,
#     randwrite >= 0.85x) and biostack/qemu-nbd (IOPS >= 1.5x at QD32, CPU per I/O <= 0.6x).
#  2. RAM: biostack serve --ram 1G  vs  nbdkit memory 1G: 4k randread QD32 and QD1 (issue 9:
#     >= 1.5x and >= 1.2x IOPS), 4k randwrite QD32.
#
# CPU per I/O: utime+stime of the server process (/proc/PID/stat, every thread) over the job,
# divided by the job's I/Os (fio's total_ios, ramp included, as the CPU window is).
#
# The raw file's "cpu us/IO" is fio's own (usr+sys over the job, from its JSON): what the kernel
# charges a process for the disk part alone, a floor under any server's CPU per I/O on the same
# disk. At QD1 the file section also serves `serve --ram` (same --poll-us) in the same rounds, and
# prints issue 19's QD1 check: biostack p50 - (raw p50 + ram p50), aim <= 5 us.
#
# Usage: bench/nbd/run.sh [--runtime SECONDS] [--rounds N] [--file PATH] [--size SIZE]
#                         [--threads N] [--poll-us US] [--skip-file] [--skip-ram]
#                         [--jobs "rw bs qd,rw bs qd,..."] [--skip-qemu] [--warm SECONDS]
#        --poll-us is passed to biostack serve (its default when not given: adaptive polling).
#        --jobs replaces the file section's job list (default: the four below).
#        --warm: the untimed warm-up per server (default 8 s: after 3 s the JIT still compiled
#        in the measured window, a quarter of the server's samples in a perf profile).
# Env:   BIOSTACK  command that runs the biostack CLI (default: ./biostack of this checkout)
#        BIOSTACK_BASE  a second biostack command (e.g. a build of main) served beside the first
#                  and measured in the same rounds, job by job (rows "base", ratio "bs/base"):
#                  a before/after in one run. BIOSTACK_BASE_OPTS: its BIOSTACK_JAVA_OPTS.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIOSTACK=${BIOSTACK:-$root/biostack}
RUNTIME=10
ROUNDS=1
SIZE=1G
THREADS=0
POLL=()
FILE=${TMPDIR:-/tmp}/biostack-nbd-bench.img
SKIP_FILE=0
SKIP_RAM=0
SKIP_QEMU=0
JOBS="randread 4k 1,randread 4k 32,read 1M 8,randwrite 4k 32"
WARM=8
BASE=${BIOSTACK_BASE:-}
while [ $# -gt 0 ]; do
  case $1 in
    --runtime) RUNTIME=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    --file) FILE=$2; shift 2;;
    --size) SIZE=$2; shift 2;;
    --threads) THREADS=$2; shift 2;;
    --poll-us) POLL=(--poll-us "$2"); shift 2;;
    --skip-file) SKIP_FILE=1; shift;;
    --skip-ram) SKIP_RAM=1; shift;;
    --skip-qemu) SKIP_QEMU=1; shift;;
    --jobs) JOBS=$2; shift 2;;
    --warm) WARM=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for t in fio qemu-nbd nbdkit python3; do
  command -v $t >/dev/null || { echo "bench: $t is not installed" >&2; exit 2; }
done
"$BIOSTACK" --version >/dev/null   # builds on first use, outside the measured window
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
TICK=$(getconf CLK_TCK)

# Starts a server in the background and waits for its socket; $1 = socket, rest = command.
# The server's pid is left in $started.
start() {
  local sock=$1; shift
  "$@" >"$work/$(basename "$sock").log" 2>&1 &
  started=$!
  pids+=($started)
  for _ in $(seq 1 300); do
    [ -S "$sock" ] && return 0
    sleep 0.1
  done
  echo "bench: server did not come up: $*" >&2; cat "$work/$(basename "$sock").log" >&2; exit 1
}

# utime+stime of a process in clock ticks (fields 14 and 15 of /proc/PID/stat, after the comm).
cpu_ticks() {
  [ -z "$1" ] && { echo 0; return; }
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

summarize() {
  python3 -c '
import json, sys
rw, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
text = sys.stdin.read()
j = json.loads(text[text.index("{"):])["jobs"][0]  # the nbd engine prints a line first
d = j["write" if "write" in rw else "read"]
p = d["lat_ns"]["percentile"]   # total latency (submission + completion), --lat_percentiles=1
ios = d["total_ios"]
cpu = ticks * 1e6 / hz / ios if ios and ticks else 0
if ticks < 0 and ios:  # no server: the CPU of fio itself over its runtime
    cpu = (j["usr_cpu"] + j["sys_cpu"]) / 100.0 * 1e6 / d["iops"] if d["iops"] else 0
print("%.0f %.1f %.1f %.1f %.1f" % (d["iops"], d["bw"] / 1024, p["50.000000"] / 1000, p["99.000000"] / 1000, cpu))
' "$1" "$2" "$TICK"
}

nbd() { echo "--ioengine=nbd --uri=nbd+unix:///?socket=$1"; }
raw() { echo "--ioengine=io_uring --direct=1 --filename=$1"; }

# A short untimed job per server first: JIT warm-up for the JVM, page-ins for everyone.
warm() {
  fio --name=warm --ioengine=nbd --uri="nbd+unix:///?socket=$1" --rw=randrw --bs=4k --iodepth=32 --size="$SIZE" \
      --runtime="$WARM" --time_based --output-format=terse >/dev/null 2>&1 || true
}

row() { printf "%-22s %-10s %10s %9s %9s %9s %12s\n" "$@"; }
header() { echo; row "job" "server" "IOPS" "MiB/s" "p50 us" "p99 us" "cpu us/IO"; }
div() { python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print("%.2fx" % (a / b) if b else "-")' "$1" "$2"; }
field() { echo "$1" | awk -v f="$2" '{ print $f }'; }

# One fio job; prints "iops MiB/s p50_us p99_us cpu_us_per_io".
# $1 = pid of the server (empty: none), $2 = fio's target options, then rw bs iodepth.
job() {
  local pid=$1 target=$2 rw=$3 bs=$4 qd=$5 c0 c1
  [ -z "$pid" ] && { c0=1; c1=0; }   # no server: summarize takes fio's own CPU
  [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
  # shellcheck disable=SC2086
  fio --name=j $target --rw="$rw" --bs="$bs" --iodepth="$qd" --size="$SIZE" \
      --runtime="$RUNTIME" --time_based --ramp_time=1 --randrepeat=0 --lat_percentiles=1 \
      --output-format=json >"$work/out.json" 2>/dev/null
  [ -n "$pid" ] && c1=$(cpu_ticks "$pid")
  summarize "$rw" "$((c1 - c0))" <"$work/out.json"
}

if [ "$SKIP_FILE" = 0 ]; then
  if [ ! -f "$FILE" ] || [ "$(stat -c %s "$FILE")" != "$(numfmt --from=iec "$SIZE")" ]; then
    echo "bench: writing $FILE ($SIZE of data, so reads hit the disk, not holes)"
    fio --name=fill --ioengine=io_uring --direct=1 --filename="$FILE" --rw=write --bs=1M --iodepth=8 \
        --size="$SIZE" --output-format=terse >/dev/null
  fi
  bs_sock=$work/biostack.sock
  qn_sock=$work/qemu-nbd.sock
  start "$bs_sock" $BIOSTACK serve --direct-io on --threads "$THREADS" "${POLL[@]}" "$FILE" --socket "$bs_sock"; bs_pid=$started
  if [ "$SKIP_QEMU" = 0 ]; then
    start "$qn_sock" qemu-nbd -f raw --cache=none --aio=io_uring --persistent --shared=8 -k "$qn_sock" "$FILE"; qn_pid=$started
  fi
  rm_sock=$work/ram.sock
  start "$rm_sock" $BIOSTACK serve --ram "$SIZE" --threads "$THREADS" "${POLL[@]}" --socket "$rm_sock"; rm_pid=$started
  if [ -n "$BASE" ]; then
    ba_sock=$work/base.sock
    start "$ba_sock" env BIOSTACK_JAVA_OPTS="${BIOSTACK_BASE_OPTS:-}" $BASE serve --direct-io on --threads "$THREADS" "${POLL[@]}" "$FILE" --socket "$ba_sock"; ba_pid=$started
    echo "   base:     BIOSTACK_JAVA_OPTS='${BIOSTACK_BASE_OPTS:-}' $BASE serve (same options)"
  fi
  echo "== file: $FILE ($SIZE), runtime ${RUNTIME}s per job, $ROUNDS round(s), alternating"
  echo "   biostack: $BIOSTACK serve --direct-io on --threads $THREADS ${POLL[*]} $FILE --socket S"
  echo "   qemu-nbd: qemu-nbd -f raw --cache=none --aio=io_uring --persistent --shared=8 -k S $FILE"
  echo "   raw:      fio --ioengine=io_uring --direct=1 --filename=$FILE"
  grep -h "nbd server:\|file engine:" "$work/biostack.sock.log" | sed 's/^/   biostack log: /' || true
  warm "$bs_sock"
  warm "$rm_sock"
  [ "$SKIP_QEMU" = 0 ] && warm "$qn_sock"
  [ -n "$BASE" ] && warm "$ba_sock"
  header
  IFS=, read -r -a specs <<<"$JOBS"
  for spec in "${specs[@]}"; do
    set -- $spec
    name="$1 $2 QD$3"
    for r in $(seq 1 "$ROUNDS"); do
      b=$(job "$bs_pid" "$(nbd "$bs_sock")" "$1" "$2" "$3")
      w=$(job "" "$(raw "$FILE")" "$1" "$2" "$3")
      if [ "$SKIP_QEMU" = 0 ]; then q=$(job "$qn_pid" "$(nbd "$qn_sock")" "$1" "$2" "$3"); else q="0 0 0 0 0"; fi
      [ -n "$BASE" ] && a=$(job "$ba_pid" "$(nbd "$ba_sock")" "$1" "$2" "$3")
      [ "$3" = 1 ] && m=$(job "$rm_pid" "$(nbd "$rm_sock")" "$1" "$2" "$3")
      row "$name" biostack $b
      row "$name" "raw file" $(echo "$w" | awk '{ print $1, $2, $3, $4, "fio:" $5 }')
      [ "$SKIP_QEMU" = 0 ] && row "$name" qemu-nbd $q
      if [ -n "$BASE" ]; then
        row "$name" base $a
        row "$name" "base/raw" "$(div "$(field "$a" 1)" "$(field "$w" 1)")" "" \
            "$(div "$(field "$a" 3)" "$(field "$w" 3)")" "" ""
        row "$name" "bs/base" "$(div "$(field "$b" 1)" "$(field "$a" 1)")" "" \
            "$(div "$(field "$b" 3)" "$(field "$a" 3)")" "" "$(div "$(field "$b" 5)" "$(field "$a" 5)")"
      fi
      if [ "$3" = 1 ]; then
        row "$name" "serve --ram" $m
        row "$name" "bs-raw-ram" "" "" "$(python3 -c 'import sys; print("%+.1f" % (float(sys.argv[1]) - float(sys.argv[2]) - float(sys.argv[3])))' \
            "$(field "$b" 3)" "$(field "$w" 3)" "$(field "$m" 3)")" "" ""
        [ -n "$BASE" ] && row "$name" "base-raw-ram" "" "" "$(python3 -c 'import sys; print("%+.1f" % (float(sys.argv[1]) - float(sys.argv[2]) - float(sys.argv[3])))' \
            "$(field "$a" 3)" "$(field "$w" 3)" "$(field "$m" 3)")" "" ""
        row "$name" "bs/raw" "$(div "$(field "$b" 1)" "$(field "$w" 1)")" "" \
            "$(div "$(field "$b" 3)" "$(field "$w" 3)")" "" "" 
      else
        row "$name" "bs/raw" "$(div "$(field "$b" 1)" "$(field "$w" 1)")" \
            "$(div "$(field "$b" 2)" "$(field "$w" 2)")" "" "" ""
      fi
      row "$name" "bs/qemu" "$(div "$(field "$b" 1)" "$(field "$q" 1)")" "" "" "" \
          "$(div "$(field "$b" 5)" "$(field "$q" 5)")"
    done
  done
  echo "   (bs/raw: IOPS, MiB/s; at QD1 also p50 of total latency, lower is better: target <= 1.3x."
  echo "    bs/qemu: IOPS, and CPU per I/O, lower is better: target <= 0.6x"
  echo "    bs-raw-ram: QD1 p50 beyond the disk's and a serve --ram round trip's, issue 19: <= 5 us."
  echo "    raw file cpu: fio's own usr+sys per I/O, the kernel's charge for the disk part alone)"
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
fi

if [ "$SKIP_RAM" = 0 ]; then
  bs_sock=$work/biostack-ram.sock
  nk_sock=$work/nbdkit.sock
  start "$bs_sock" $BIOSTACK serve --ram 1G --threads "$THREADS" "${POLL[@]}" --socket "$bs_sock"; bs_pid=$started
  start "$nk_sock" nbdkit -f -U "$nk_sock" memory 1G; nk_pid=$started
  echo
  echo "== ramdisk: biostack serve --ram 1G vs nbdkit memory 1G, runtime ${RUNTIME}s per job, alternating"
  warm "$bs_sock"
  warm "$nk_sock"
  header
  for spec in "randwrite 4k 32" "randread 4k 32" "randread 4k 1"; do
    set -- $spec
    name="$1 $2 QD$3"
    for r in $(seq 1 "$ROUNDS"); do
      b=$(job "$bs_pid" "$(nbd "$bs_sock")" "$1" "$2" "$3")
      k=$(job "$nk_pid" "$(nbd "$nk_sock")" "$1" "$2" "$3")
      row "$name" biostack $b
      row "$name" nbdkit $k
      row "$name" "bs/nbdkit" "$(div "$(field "$b" 1)" "$(field "$k" 1)")" "" "" "" \
          "$(div "$(field "$b" 5)" "$(field "$k" 5)")"
    done
  done
  echo "   (bs/nbdkit: IOPS, target >= 1.5x at QD32 and >= 1.2x at QD1; CPU per I/O)"
fi
