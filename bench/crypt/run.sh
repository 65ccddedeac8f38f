#!/usr/bin/env bash
# Crypt benchmark: the cost of dm-crypt-style AES-XTS on top of a device.
#
#   bench/crypt/run.sh [FILE] [--runtime S] [--rounds N] [--size 1G] [--sector-size 512|4096]
#
# Part 1 (always): XTS in memory and crypt over a ramdisk vs the bare ramdisk, single thread,
#   from the JMH-free io.biostack.layer.crypt.XtsThroughput (src/test); MB/s.
# Part 2 (when `biostack bench` takes --stack): the same load on a loop device and on a crypt
#   device over it, from one stack file, alternating, several rounds; prints each side's median
#   and the ratio crypt/plain. The key is random per run and only ever in the stack file, which is
#   made mode 0600 in a private temp dir and removed on exit.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
file=${1:-/var/tmp/biostack-crypt-bench.img}
[ $# -gt 0 ] && shift
runtime=10; rounds=3; size=1G; sector=512
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) runtime=$2; shift 2;;
    --rounds) rounds=$2; shift 2;;
    --size) size=$2; shift 2;;
    --sector-size) sector=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
. "$root/scripts/java-env.sh"

echo "== part 1: XTS and crypt over a ramdisk (one thread)"
(cd "$root" && mvn -q -B -o test-compile >&2 2>/dev/null || mvn -q -B test-compile >&2)
"$JAVA_HOME/bin/java" -cp "$root/target/classes:$root/target/test-classes" \
  io.biostack.layer.crypt.XtsThroughput "$(( runtime < 3 ? runtime : 3 ))"

if ! "$root/biostack" bench --help 2>&1 | grep -q -- '--stack'; then
  echo "== part 2 skipped: this biostack bench has no --stack option yet"
  exit 0
fi
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }

want=$(numfmt --from=iec "$size")
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -lt "$want" ]; then
  echo "laying out $file ($size)..." >&2
  rm -f "$file"
  dd if=/dev/zero of="$file" bs=1M count=$(( want >> 20 )) status=none
fi

out=$(mktemp -d)
chmod 700 "$out"
trap 'rm -rf "$out"' EXIT
key=$(od -An -tx1 -N64 /dev/urandom | tr -d ' \n')
opts=""
[ "$sector" != 512 ] && opts=" 1 sector_size:$sector"
umask 077
cat > "$out/stack" <<STACK
disk0: loop $file direct-io=auto
c0:    crypt aes-xts-plain64 $key 0 disk0 0$opts
STACK

# name rw bs iodepth
jobs=(
  "randread-4k-qd32 randread 4k 32"
  "randwrite-4k-qd32 randwrite 4k 32"
  "read-128k-qd8 read 128k 8"
  "write-128k-qd8 write 128k 8"
)
for j in "${jobs[@]}"; do
  set -- $j
  name=$1; rw=$2; bs=$3; qd=$4
  for r in $(seq "$rounds"); do
    for dev in disk0 c0; do
      "$root/biostack" bench --stack "$out/stack" --device "$dev" --ramp 2 --rw "$rw" --bs "$bs" \
        --iodepth "$qd" --runtime "$runtime" --size "$size" --json > "$out/$name.$dev.$r.json"
    done
  done
done

python3 - "$out" "$rounds" "${jobs[@]}" <<'PY'
import json, os, statistics, sys
out, rounds, jobs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def val(path):
    d = json.load(open(path))
    for k in ("iops", "IOPS"):
        if k in d:
            return float(d[k])
    return float(d.get("bw_mib_s", d.get("bandwidth", 0)))
print(f"{'job':20} {'plain':>12} {'crypt':>12} {'crypt/plain':>12}")
for j in jobs:
    name = j.split()[0]
    med = {dev: statistics.median(val(os.path.join(out, f"{name}.{dev}.{r}.json")) for r in range(1, rounds + 1))
           for dev in ("disk0", "c0")}
    print(f"{name:20} {med['disk0']:12.0f} {med['c0']:12.0f} {med['c0'] / med['disk0']:12.2f}")
PY
