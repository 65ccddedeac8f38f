#!/usr/bin/env bash
# NBD client leaf benchmark (issue 8): `biostack bench nbd+unix://...` (the load generator on the
# NBD leaf, in one JVM) against fio's nbd engine (libnbd) straight to the same server, a
# `biostack serve --ram` on a unix socket. Same job, same server, alternating, several rounds;
# prints each side's median, the IOPS ratio leaf/fio (aim: >= 0.9) and the p50 latency ratio
# (aim: <= 1.2).
#
#   bench/nbdleaf/run.sh [--runtime S] [--rounds N] [--size 1G]
#
# Jobs: 4k randread QD32 and QD1 (fio with --lat_percentiles=1, so its p50 is completion
# latency as the bench's is). The server is warmed first (JIT, page-ins) by both clients.
# Env: BIOSTACK  command that runs the biostack CLI (default: ./biostack of this checkout).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIOSTACK=${BIOSTACK:-$root/biostack}
runtime=10; rounds=3; size=1G
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) runtime=$2; shift 2;;
    --rounds) rounds=$2; shift 2;;
    --size) size=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
for t in fio python3; do
  command -v $t >/dev/null || { echo "bench: $t is not installed" >&2; exit 2; }
done
"$BIOSTACK" --version >/dev/null   # builds on first use

out=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

sock=$out/ram.sock
"$BIOSTACK" serve --ram "$size" --socket "$sock" >"$out/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "bench: serve did not come up" >&2; cat "$out/serve.log" >&2; exit 1; }
uri="nbd+unix:///?socket=$sock"
echo "== server: $BIOSTACK serve --ram $size --socket S;  runtime ${runtime}s per job, $rounds round(s), alternating"
echo "   leaf: $BIOSTACK bench '$uri' --rw randread --bs 4k --iodepth QD --ramp 2"
echo "   fio:  fio --ioengine=nbd --uri='$uri' --rw=randread --bs=4k --iodepth=QD --lat_percentiles=1 --ramp_time=2"

# Fill the ramdisk so reads hit data, not holes (and warm both clients up).
fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 --size="$size" \
    --output-format=terse >/dev/null 2>&1
"$BIOSTACK" bench "$uri" --rw randread --bs 4k --iodepth 32 --runtime 3 --json >/dev/null 2>&1 || true

jobs=("randread-4k-qd32 randread 4k 32" "randread-4k-qd1 randread 4k 1")
for r in $(seq 1 "$rounds"); do
  for j in "${jobs[@]}"; do
    set -- $j
    name=$1 rw=$2 bs=$3 qd=$4
    fio --name="$name" --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$qd" \
        --size="$size" --runtime="$runtime" --time_based --ramp_time=2 --randrepeat=0 --lat_percentiles=1 \
        --output-format=json >"$out/fio-$name-$r.json" 2>/dev/null
    "$BIOSTACK" bench "$uri" --rw "$rw" --bs "$bs" --iodepth "$qd" --runtime "$runtime" --ramp 2 \
        --size "$size" --json >"$out/bs-$name-$r.json" 2>/dev/null
    echo "round $r: $name done" >&2
  done
done

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
names = ["randread-4k-qd32", "randread-4k-qd1"]
def fio(path):
    text = open(path).read()
    j = json.loads(text[text.index("{"):])["jobs"][0]   # the nbd engine may print a line first
    d = j["read"]
    return d["iops"], d["lat_ns"]["percentile"]["50.000000"]
def bs(path):
    j = json.load(open(path))
    return j["iops"], j["lat_ns"]["p50"], j.get("alloc_bytes_per_io"), j["errors"]
print(f"{'job':18} {'fio IOPS':>10} {'leaf IOPS':>10} {'ratio':>6}   {'fio p50us':>9} {'leaf p50us':>10} {'ratio':>6}  alloc/io errors")
for n in names:
    f = [fio(f"{out}/fio-{n}-{r}.json") for r in range(1, rounds + 1)]
    b = [bs(f"{out}/bs-{n}-{r}.json") for r in range(1, rounds + 1)]
    fi = statistics.median(x[0] for x in f); bi = statistics.median(x[0] for x in b)
    fl = statistics.median(x[1] for x in f) / 1e3; bl = statistics.median(x[1] for x in b) / 1e3
    al = [x[2] for x in b if x[2] is not None]
    print(f"{n:18} {fi:10.0f} {bi:10.0f} {bi/fi:6.2f}   {fl:9.1f} {bl:10.1f} {bl/fl:6.2f}  "
          f"{(statistics.median(al) if al else float('nan')):.2f} B {sum(x[3] for x in b)}")
    print(f"{'':18} rounds fio={[round(x[0]) for x in f]} leaf={[round(x[0]) for x in b]}")
print("aims: IOPS ratio >= 0.90, p50 ratio <= 1.20 (measured on a quiet machine)")
PY
