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
# Half text-like (compressible), a quarter zeros-ish, a quarter random: a guest disk's mix.
python3 - "$work/all.raw" "$mib" <<'PY'
import os, random, sys
random.seed(15); words = [b"qcow2", b"cluster", b"the", b"of", b"refcount", b"\n", b"zstd", b"block", b"table"]
out = bytearray()
while len(out) < int(sys.argv[2]) << 20:
    k = len(out) // 65536 % 4
    if k < 2: out += b" ".join(random.choice(words) for _ in range(14000))[:65536]
    elif k == 2: out += bytes(65000) + os.urandom(536)
    else: out += os.urandom(65536)
open(sys.argv[1], "wb").write(out[: int(sys.argv[2]) << 20])
PY
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
