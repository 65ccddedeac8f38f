#!/usr/bin/env bash
# Core-stack benchmark: fio (io_uring, O_DIRECT) against `biostack bench` on the same file, in one
# run, alternating, several rounds; prints each side's median and the ratio biostack/fio.
#
#   bench/core.sh [FILE] [--runtime S] [--rounds N] [--size 2G]     (env RAMDISK: tmpfs dir, default /dev/shm)
#
# Also bench --numjobs 1 and 2 against fio numjobs 1 and 2 on a file in RAM, with CPU per I/O.
#
# The file is written in full first (a sparse file would measure holes, not the disk).
# This machine's disk is shared and noisy: read the ratios, not the absolute figures, and
# prefer more rounds (--rounds 5) when they disagree.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
file=${1:-/var/tmp/biostack-bench.img}
[ $# -gt 0 ] && shift
runtime=10; rounds=3; size=2G; ramdisk=${RAMDISK:-/dev/shm}
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) runtime=$2; shift 2;;
    --rounds) rounds=$2; shift 2;;
    --size) size=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
command -v fio >/dev/null || { echo "fio is needed: apt-get install fio" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
"$root/biostack" --version >/dev/null   # builds on first use

want=$(numfmt --from=iec "$size")
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -lt "$want" ] || [ "$(du -B1 "$file" | cut -f1)" -lt "$want" ]; then
  echo "laying out $file ($size, fully written)..." >&2
  rm -f "$file"
  fio --name=layout --filename="$file" --rw=write --bs=1M --size="$size" --direct=1 \
      --ioengine=io_uring --iodepth=8 >/dev/null
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# name rw bs iodepth
jobs=(
  "randread-4k-qd32 randread 4k 32"
  "seqread-1m-qd8 read 1M 8"
  "randwrite-4k-qd32 randwrite 4k 32"
  "randread-4k-qd1 randread 4k 1"
)

# Per-core scaling (issue 9): bench --numjobs 1 and 2 on a file in RAM (tmpfs, no O_DIRECT), where
# the CPU is the limit; each job has its own ring. fio with the same numjobs for reference.
shm=$ramdisk/biostack-core-bench.img
for r in $(seq 1 "$rounds"); do
  for nj in 1 2; do
    fio --name=shm --ramp_time=2 --filename="$shm" --ioengine=io_uring --rw=randread --bs=4k --iodepth=32 \
        --numjobs="$nj" --group_reporting --runtime="$runtime" --time_based --size=512M --lat_percentiles=1 \
        --output-format=json >"$out/fio-shm-$nj-$r.json" 2>/dev/null
    "$root/biostack" bench "$shm" --ramp 2 --rw randread --bs 4k --iodepth 32 --numjobs "$nj" --runtime "$runtime" \
        --size 512M --direct-io off --engine uring --json >"$out/bs-shm-$nj-$r.json" 2>/dev/null
    echo "round $r: ramdisk numjobs=$nj done" >&2
  done
done
rm -f "$shm"

for r in $(seq 1 "$rounds"); do
  for j in "${jobs[@]}"; do
    set -- $j
    name=$1 rw=$2 bs=$3 qd=$4
    fio --name="$name" --ramp_time=2 --filename="$file" --ioengine=io_uring --direct=1 --rw="$rw" --bs="$bs" \
        --iodepth="$qd" --runtime="$runtime" --time_based --size="$size" --lat_percentiles=1 \
        --output-format=json >"$out/fio-$name-$r.json" 2>/dev/null
    "$root/biostack" bench "$file" --ramp 2 --rw "$rw" --bs "$bs" --iodepth "$qd" --runtime "$runtime" \
        --size "$size" --direct-io on --engine uring --json >"$out/bs-$name-$r.json" 2>/dev/null
    echo "round $r: $name done" >&2
  done
done

python3 - "$out" "$rounds" <<'PY'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
names = ["randread-4k-qd32", "seqread-1m-qd8", "randwrite-4k-qd32", "randread-4k-qd1"]
def fio(path):
    j = json.load(open(path))["jobs"][0]
    d = j["read"] if j["read"]["io_bytes"] > 0 else j["write"]
    ios = d["total_ios"]
    cpu = (j["usr_cpu"] + j["sys_cpu"]) / 100 * j["job_runtime"] * 1e3 / ios if ios else float('nan')
    pct = d["lat_ns"].get("percentile") or d["clat_ns"]["percentile"]
    return d["iops"], d["bw_bytes"], pct["50.000000"], cpu
def bs(path):
    j = json.load(open(path))
    return j["iops"], j["bw_bytes"], j["lat_ns"]["p50"], j.get("alloc_bytes_per_io"), j.get("cpu_us_per_io")
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float('nan')
print("== ramdisk (tmpfs), 4k randread QD32 per job: per-core scaling")
print(f"{'numjobs':8} {'fio IOPS':>10} {'fio cpu/IO':>10} {'biostack':>10} {'bs cpu/IO':>10} {'ratio':>6}")
base = None
for nj in (1, 2):
    f = [fio(f"{out}/fio-shm-{nj}-{r}.json") for r in range(1, rounds + 1)]
    b = [bs(f"{out}/bs-shm-{nj}-{r}.json") for r in range(1, rounds + 1)]
    fi, bi = med(x[0] for x in f), med(x[0] for x in b)
    base = base or bi
    print(f"{nj:<8} {fi:10.0f} {med(x[3] for x in f):9.2f}u {bi:10.0f} {med(x[4] for x in b):9.2f}u {bi/fi:6.2f}"
          + (f"   (biostack numjobs 2 / 1: {bi/base:.2f}x)" if nj == 2 else ""))
print()
print("== file, O_DIRECT: fio vs biostack bench")
print(f"{'job':20} {'fio IOPS':>10} {'biostack':>10} {'ratio':>6}   {'fio p50us':>9} {'bs p50us':>9} {'ratio':>6}  {'fio cpu/IO':>10} {'bs cpu/IO':>10}  alloc/io")
for n in names:
    f = [fio(f"{out}/fio-{n}-{r}.json") for r in range(1, rounds + 1)]
    b = [bs(f"{out}/bs-{n}-{r}.json") for r in range(1, rounds + 1)]
    fi = statistics.median(x[0] for x in f); bi = statistics.median(x[0] for x in b)
    fl = statistics.median(x[2] for x in f) / 1e3; bl = statistics.median(x[2] for x in b) / 1e3
    al = med(x[3] for x in b)
    print(f"{n:20} {fi:10.0f} {bi:10.0f} {bi/fi:6.2f}   {fl:9.1f} {bl:9.1f} {bl/fl:6.2f}  {med(x[3] for x in f):9.2f}u {med(x[4] for x in b):9.2f}u  {al:.2f} B")
    print(f"{'':20} rounds fio={[round(x[0]) for x in f]} biostack={[round(x[0]) for x in b]}")
PY
