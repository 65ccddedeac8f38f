#!/usr/bin/env bash
# In-process qcow2 cost (issue 15, "In process"): `biostack bench` 4k QD32 on an allocated qcow2
# image against the same bench on the raw file with the same data, alternating raw and qcow2
# job by job, on a disk file (direct I/O on) and on a tmpfs file in /dev/shm (direct I/O off,
# so that the figures are the CPU of the stack, not the disk). Prints IOPS, the process's CPU
# per I/O and its allocated bytes per I/O (both from bench's --json), and the qcow2/raw ratios.
#
# Usage: bench/qcow2/inproc.sh [--runtime S] [--rounds N] [--size SIZE] [--dir DIR] [--rw "randread randwrite"]
# Env:   BIOSTACK  command that runs the biostack CLI (default: ./biostack of this checkout)
#        BIOSTACK_BASE  another build's CLI (a before): its qcow2 runs in the same rounds, "base"
# Run it under `flock /tmp/biostack-bench.lock` on a shared machine.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIOSTACK=${BIOSTACK:-$root/biostack}
RUNTIME=8; ROUNDS=3; SIZE=1G; DIR=/var/tmp; RWS="randread randwrite"; MEDIA="disk shm"
while [ $# -gt 0 ]; do
  case $1 in
    --runtime) RUNTIME=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    --size) SIZE=$2; shift 2;;
    --dir) DIR=$2; shift 2;;
    --rw) RWS=$2; shift 2;;
    --media) MEDIA=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for t in fio qemu-img python3; do
  command -v $t >/dev/null || { echo "bench: $t is not installed" >&2; exit 2; }
done
"$BIOSTACK" --version >/dev/null   # builds on first use, outside the measured window
[ -z "${BIOSTACK_BASE:-}" ] || "$BIOSTACK_BASE" --version >/dev/null
disk=$(mktemp -d "$DIR/biostack-qcow2-inproc.XXXXXX")
shm=$(mktemp -d /dev/shm/biostack-qcow2-inproc.XXXXXX)
trap 'rm -rf "$disk" "$shm"' EXIT
fio --name=fill --ioengine=io_uring --direct=1 --filename="$disk/full.raw" --rw=write --bs=1M --iodepth=8 \
    --size="$SIZE" --output-format=terse >/dev/null
qemu-img convert -f raw -O qcow2 "$disk/full.raw" "$disk/full.qcow2"   # every cluster allocated
cp "$disk/full.raw" "$disk/full.qcow2" "$shm/"

one() { # FILE RW DIRECT [CLI]: prints "iops cpu_us alloc_b"
  "${4:-$BIOSTACK}" bench --rw "$2" --bs 4k --iodepth 32 --ramp 2 --runtime "$RUNTIME" --direct-io "$3" --json "$1" 2>/dev/null |
    python3 -c '
import json, sys
t = sys.stdin.read(); j = json.loads(t[t.index("{"):])
print("%.0f %s %s" % (j["iops"], j["cpu_us_per_io"], j["alloc_bytes_per_io"]))'
}
printf "%-6s %-10s %-5s %-6s %10s %10s %10s\n" media rw round format IOPS "cpu us/IO" "alloc B/IO"
for m in $MEDIA; do
  if [ "$m" = shm ]; then d=$shm; dio=off; else d=$disk; dio=on; fi
  for rw in $RWS; do
    for r in $(seq 1 "$ROUNDS"); do
      if [ -n "${BIOSTACK_BASE:-}" ]; then
        bb=$(one "$d/full.qcow2" "$rw" "$dio" "$BIOSTACK_BASE")
        printf "%-6s %-10s %-5s %-6s %10s %10s %10s\n" "$m" "$rw" "$r" base $bb
      fi
      rr=$(one "$d/full.raw" "$rw" "$dio"); qq=$(one "$d/full.qcow2" "$rw" "$dio")
      printf "%-6s %-10s %-5s %-6s %10s %10s %10s\n" "$m" "$rw" "$r" raw $rr
      printf "%-6s %-10s %-5s %-6s %10s %10s %10s\n" "$m" "$rw" "$r" qcow2 $qq
      python3 -c 'import sys; r, q = sys.argv[1].split(), sys.argv[2].split(); print("%-6s %-10s %-5s %-6s %9.2fx %9.2fx" % (sys.argv[3], sys.argv[4], sys.argv[5], "q/raw", float(q[0]) / float(r[0]), float(q[1]) / float(r[1])))' "$rr" "$qq" "$m" "$rw" "$r"
    done
  done
done
qemu-img check "$disk/full.qcow2" >/dev/null && echo "qemu-img check: clean after the write rounds"
