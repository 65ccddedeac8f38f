#!/usr/bin/env bash
# zstd compression for `img convert -c -o compression_type=zstd`: biostack's pure-Java
# ZstdEncoder against the zstd CLI (libzstd) at levels 1 and 3 (qemu's qcow2_zstd_compress uses
# libzstd's default, level 3), one frame per 64 KiB cluster, one thread each; then whole
# converts, `biostack img convert -c` against `qemu-img convert -c`, zstd and zlib, alternating.
#   bench/qcow2/zstd-encode.sh [MiB=64] [REPS=3]
# Run it under: flock /tmp/biostack-bench.lock bench/qcow2/zstd-encode.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/java-env.sh
mib=${1:-64}; reps=${2:-3}; cluster=65536
work=$(mktemp -d /var/tmp/zstd-encode.XXXXXX); trap 'rm -rf "$work"' EXIT
mvn -B -ntp -o -q package -DskipTests
./biostack --version > /dev/null # builds the launcher's classpath now, not inside a timed convert
python3 bench/qcow2/mixed-data.py "$work/all.raw" "$mib"   # the mix both zstd benches use
javac -d "$work/cls" -cp target/classes bench/qcow2/ZstdEncodeBench.java
secs() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$1" "$2"; }
for round in 1 2; do
  echo "== round $round: one thread, per cluster"
  java -cp target/classes:"$work/cls" io.biostack.layer.qcow2.ZstdEncodeBench "$work/all.raw" $cluster "$reps"
  # libzstd's own benchmark, the file cut into independent 64 KiB chunks (a frame each).
  zstd -q -b1 -e3 -B$cluster -i2 "$work/all.raw" 2>&1 | grep -E '^-[0-9]' | sed 's/^/zstd CLI bench: level /'
  echo "== round $round: img convert -c (2 vCPUs)"
  for ct in zstd zlib; do
    rm -f "$work/b.qcow2" "$work/q.qcow2"
    t0=$(date +%s.%N); ./biostack img convert -c -O qcow2 -o compression_type=$ct "$work/all.raw" "$work/b.qcow2"; t1=$(date +%s.%N)
    qemu-img convert -c -O qcow2 -o compression_type=$ct "$work/all.raw" "$work/q.qcow2"; t2=$(date +%s.%N)
    qemu-img compare -q "$work/all.raw" "$work/b.qcow2"
    echo "$ct: biostack $(secs $t0 $t1) s $(stat -c %s "$work/b.qcow2") bytes; qemu-img $(secs $t1 $t2) s $(stat -c %s "$work/q.qcow2") bytes"
  done
done
