#!/usr/bin/env bash
# Issue 15's qcow2/raw ratio in one JVM (bench/qcow2/Interleave.java): raw and qcow2 4k QD32 in
# alternating windows of a second, so that both see the same share of a busy machine, on a disk
# file (direct I/O on), a tmpfs file in /dev/shm (direct I/O off) and RamDisks (the layer's CPU
# alone: no kernel). Prints each pair, then the median ratio and the median extra CPU per I/O.
#
# Usage: bench/qcow2/interleave.sh [--pairs N] [--seconds S] [--size SIZE] [--dir DIR] [--rw "randread randwrite"] [--media "disk shm ram"]
# Env:   BIOSTACK_CLASSES  the classes to measure (default: target/classes of this checkout)
# Run it under `flock /tmp/biostack-bench.lock` on a shared machine.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PAIRS=9; SECS=1; SIZE=1G; DIR=/var/tmp; RWS="randread"; MEDIA="disk shm ram"
while [ $# -gt 0 ]; do
  case $1 in
    --pairs) PAIRS=$2; shift 2;;
    --seconds) SECS=$2; shift 2;;
    --size) SIZE=$2; shift 2;;
    --dir) DIR=$2; shift 2;;
    --rw) RWS=$2; shift 2;;
    --media) MEDIA=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for t in fio qemu-img; do
  command -v $t >/dev/null || { echo "bench: $t is not installed" >&2; exit 2; }
done
"$root/biostack" --version >/dev/null   # builds on first use
. "$root/scripts/java-env.sh"
CLASSES=${BIOSTACK_CLASSES:-$root/target/classes}
disk=$(mktemp -d "$DIR/biostack-qcow2-interleave.XXXXXX")
shm=$(mktemp -d /dev/shm/biostack-qcow2-interleave.XXXXXX)
trap 'rm -rf "$disk" "$shm"' EXIT
fio --name=fill --ioengine=io_uring --direct=1 --filename="$disk/full.raw" --rw=write --bs=1M --iodepth=8 \
    --size="$SIZE" --output-format=terse >/dev/null
qemu-img convert -f raw -O qcow2 "$disk/full.raw" "$disk/full.qcow2"   # every cluster allocated
cp "$disk/full.raw" "$disk/full.qcow2" "$shm/"
for m in $MEDIA; do
  case $m in
    disk) d=$disk; mode=on;;
    shm) d=$shm; mode=off;;
    ram) d=$shm; mode=ram;;
    *) echo "unknown medium $m" >&2; exit 2;;
  esac
  for rw in $RWS; do
    echo "== $m $rw"
    "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -XX:+UseParallelGC -Xmx1g \
      -cp "$CLASSES:$root/target/lib/*" "$root/bench/qcow2/Interleave.java" \
      "$d/full.raw" "$d/full.qcow2" "$mode" "$rw" "$PAIRS" "$SECS"
  done
done
qemu-img check "$disk/full.qcow2" >/dev/null && echo "qemu-img check: clean after the rounds"
