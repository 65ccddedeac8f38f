#!/usr/bin/env bash
# NBD server benchmark (issue 3): fio's nbd engine over a unix socket.
#
#  1. biostack serve --direct-io on FILE  vs  qemu-nbd -f raw --cache=none --aio=io_uring FILE,
#     alternating job by job on the same file: 4k randread QD32, 1M seq read QD8,
#     4k randwrite QD32, 4k randread QD1 (latency). fio on the raw file (io_uring, O_DIRECT) is
#     printed as the ceiling.
#  2. biostack serve --ram 1G  vs  nbdkit memory 1G: 4k randwrite and randread QD32.
#
# Usage: bench/nbd/run.sh [--runtime SECONDS] [--rounds N] [--file PATH] [--size SIZE] [--skip-file] [--skip-ram]
# Env:   BIOSTACK  command that runs the biostack CLI (default: ./biostack of this checkout)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIOSTACK=${BIOSTACK:-$root/biostack}
RUNTIME=10
ROUNDS=1
SIZE=1G
FILE=${TMPDIR:-/tmp}/biostack-nbd-bench.img
SKIP_FILE=0
SKIP_RAM=0
while [ $# -gt 0 ]; do
  case $1 in
    --runtime) RUNTIME=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    --file) FILE=$2; shift 2;;
    --size) SIZE=$2; shift 2;;
    --skip-file) SKIP_FILE=1; shift;;
    --skip-ram) SKIP_RAM=1; shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for t in fio qemu-nbd nbdkit python3; do
  command -v $t >/dev/null || { echo "bench: $t is not installed" >&2; exit 2; }
done
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Starts a server in the background and waits for its socket; $1 = socket, rest = command.
start() {
  local sock=$1; shift
  "$@" >"$work/$(basename "$sock").log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    [ -S "$sock" ] && return 0
    sleep 0.1
  done
  echo "bench: server did not come up: $*" >&2; cat "$work/$(basename "$sock").log" >&2; exit 1
}

# fio job over NBD; prints "iops bw_MiBs p50_us p99_us". $1=uri $2=rw $3=bs $4=iodepth
fio_nbd() {
  fio --name=j --ioengine=nbd --uri="$1" --rw="$2" --bs="$3" --iodepth="$4" --size="$SIZE" \
      --runtime="$RUNTIME" --time_based --ramp_time=1 --randrepeat=0 --output-format=json 2>/dev/null | summarize "$2"
}

fio_file() {
  fio --name=j --ioengine=io_uring --direct=1 --filename="$1" --rw="$2" --bs="$3" --iodepth="$4" --size="$SIZE" \
      --runtime="$RUNTIME" --time_based --ramp_time=1 --randrepeat=0 --output-format=json 2>/dev/null | summarize "$2"
}

summarize() {
  python3 -c '
import json, sys
rw = sys.argv[1]
text = sys.stdin.read()
j = json.loads(text[text.index("{"):])["jobs"][0]  # the nbd engine prints a line first
d = j["write" if "write" in rw else "read"]
p = d["clat_ns"]["percentile"]
print("%.0f %.1f %.1f %.1f" % (d["iops"], d["bw"] / 1024, p["50.000000"] / 1000, p["99.000000"] / 1000))
' "$1"
}

# A short untimed job per server first: JIT warm-up for the JVM, page-ins for everyone.
warm() {
  fio --name=warm --ioengine=nbd --uri="$1" --rw=randrw --bs=4k --iodepth=32 --size="$SIZE" \
      --runtime=3 --time_based --output-format=terse >/dev/null 2>&1 || true
}

row() { printf "%-34s %-10s %10s %10s %10s %10s\n" "$@"; }

ratio() {
  python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print("%.2fx" % (a / b if b else 0))' "$1" "$2"
}

header() {
  echo
  row "job" "server" "IOPS" "MiB/s" "p50 us" "p99 us"
}

if [ "$SKIP_FILE" = 0 ]; then
  if [ ! -f "$FILE" ] || [ "$(stat -c %s "$FILE")" != "$(numfmt --from=iec "$SIZE")" ]; then
    echo "bench: writing $FILE ($SIZE of data, so reads hit the disk, not holes)"
    fio --name=fill --ioengine=io_uring --direct=1 --filename="$FILE" --rw=write --bs=1M --iodepth=8 \
        --size="$SIZE" --output-format=terse >/dev/null
  fi
  bs_sock=$work/biostack.sock
  qn_sock=$work/qemu-nbd.sock
  start "$bs_sock" $BIOSTACK serve --direct-io on "$FILE" --socket "$bs_sock"
  start "$qn_sock" qemu-nbd -f raw --cache=none --aio=io_uring --persistent --shared=8 -k "$qn_sock" "$FILE"
  echo "== file: $FILE ($SIZE), runtime ${RUNTIME}s per job, $ROUNDS round(s), alternating"
  echo "   biostack: $BIOSTACK serve --direct-io on $FILE --socket S"
  echo "   qemu-nbd: qemu-nbd -f raw --cache=none --aio=io_uring --persistent --shared=8 -k S $FILE"
  warm "nbd+unix:///?socket=$bs_sock"
  warm "nbd+unix:///?socket=$qn_sock"
  header
  for job in "randread 4k 32" "read 1M 8" "randwrite 4k 32" "randread 4k 1"; do
    set -- $job
    name="$1 $2 QD$3"
    for r in $(seq 1 "$ROUNDS"); do
      b=$(fio_nbd "nbd+unix:///?socket=$bs_sock" "$1" "$2" "$3")
      q=$(fio_nbd "nbd+unix:///?socket=$qn_sock" "$1" "$2" "$3")
      row "$name" biostack $b
      row "$name" qemu-nbd $q
      row "$name" ratio "$(ratio "${b%% *}" "${q%% *}")" "" \
          "$(ratio "$(echo "$q" | cut -d' ' -f3)" "$(echo "$b" | cut -d' ' -f3)")" ""
    done
    if [ "$3" = 32 ] && [ "$1" = randread ]; then
      row "$name" "raw file" $(fio_file "$FILE" "$1" "$2" "$3")
    fi
  done
  echo "   (ratio: IOPS biostack/qemu-nbd; in the p50 column qemu-nbd p50 / biostack p50, >1 = biostack faster)"
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
fi

if [ "$SKIP_RAM" = 0 ]; then
  bs_sock=$work/biostack-ram.sock
  nk_sock=$work/nbdkit.sock
  start "$bs_sock" $BIOSTACK serve --ram 1G --socket "$bs_sock"
  start "$nk_sock" nbdkit -f -U "$nk_sock" memory 1G
  echo
  echo "== ramdisk: biostack serve --ram 1G vs nbdkit memory 1G, runtime ${RUNTIME}s per job"
  warm "nbd+unix:///?socket=$bs_sock"
  warm "nbd+unix:///?socket=$nk_sock"
  header
  for job in "randwrite 4k 32" "randread 4k 32"; do
    set -- $job
    name="$1 $2 QD$3"
    for r in $(seq 1 "$ROUNDS"); do
      b=$(fio_nbd "nbd+unix:///?socket=$bs_sock" "$1" "$2" "$3")
      k=$(fio_nbd "nbd+unix:///?socket=$nk_sock" "$1" "$2" "$3")
      row "$name" biostack $b
      row "$name" nbdkit $k
      row "$name" ratio "$(ratio "${b%% *}" "${k%% *}")" "" "" ""
    done
  done
fi
