#!/usr/bin/env bash
# Decode throughput: biostack's pure-Java ZstdDecoder against the zstd CLI (libzstd), on 64 KiB
# clusters each compressed as its own frame at level 3 (what qemu-img convert -c writes).
#   bench/qcow2/zstd-decode.sh [MiB=64] [REPS=4]
# Run it under: flock /tmp/biostack-bench.lock bench/qcow2/zstd-decode.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/java-env.sh
mib=${1:-64}; reps=${2:-4}; cluster=65536
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mvn -B -ntp -o -q compile
python3 bench/qcow2/mixed-data.py "$work/all.raw" "$mib"   # the mix both zstd benches use
split -b $cluster -d -a 6 "$work/all.raw" "$work/c"
for f in "$work"/c??????; do zstd -q -3 --rm "$f" -o "$f.zst"; done
javac -d "$work/cls" -cp target/classes bench/qcow2/ZstdDecodeBench.java
for round in 1 2; do
  java -cp target/classes:"$work/cls" io.biostack.layer.qcow2.ZstdDecodeBench "$work" $cluster "$reps"
  # The CLI decodes the same frames (one process, all files), REPS times.
  start=$(date +%s.%N)
  for r in $(seq "$reps"); do zstd -q -d -c "$work"/c*.zst > /dev/null; done
  end=$(date +%s.%N)
  python3 -c "import sys; s=$end-$start; b=$reps*$mib*1048576; print(f'zstd CLI -d: {b>>20} MiB in {s:.2f} s = {b/s/1e6:.1f} MB/s')"
done
