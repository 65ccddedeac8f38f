#!/usr/bin/env bash
# Layer benchmark: what a layer costs over the device below it, measured in one process with
# `biostack bench --stack FILE --device NAME`, alternating the devices round by round.
#
#   bench/layers/run.sh [DIR] [--runtime S] [--rounds N] [--size 1G] [--rw randread|randwrite]
#
# Each run ramps 2 s before measuring (JIT warm-up; layered paths have more to compile).
# Devices (one stack file, written to a temporary directory):
#   disk0          loop over DIR/layers-a.img                     (the baseline)
#   lin            0 SIZE-1M linear disk0 1M                      (dm-linear over it; as a dm device,
#                                                                  so it also pays the suspend gate)
#   both           striped 2 64k over disk0 and disk1 (DIR/layers-b.img)
#   disk1          loop over DIR/layers-b.img                     (second baseline for striped)
# Printed: median IOPS per device at 4k QD32, lin/disk0 (issue 4 asks >= 0.98) and both/disk0.
# The files are written in full first so that holes are not measured. The disk is shared and
# noisy: read the ratios, and use more rounds when they disagree.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=${1:-/var/tmp}
[ $# -gt 0 ] && shift
runtime=10; rounds=3; size=1G; rw=randread
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) runtime=$2; shift 2;;
    --rounds) rounds=$2; shift 2;;
    --size) size=$2; shift 2;;
    --rw) rw=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
"$root/biostack" --version >/dev/null   # builds on first use
if ! "$root/biostack" bench --help 2>&1 | grep -q -- '--stack'; then
  echo "this build's 'biostack bench' has no --stack FILE --device NAME yet" >&2
  exit 2
fi

want=$(numfmt --from=iec "$size")
for f in "$dir/layers-a.img" "$dir/layers-b.img"; do
  if [ ! -f "$f" ] || [ "$(stat -c %s "$f")" -lt "$want" ] || [ "$(du -B1 "$f" | cut -f1)" -lt "$want" ]; then
    echo "laying out $f ($size, fully written)..." >&2
    rm -f "$f"
    dd if=/dev/zero of="$f" bs=1M count=$((want / 1048576)) oflag=direct status=none
  fi
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
stack="$out/stack.conf"
cat >"$stack" <<CONF
# bench/layers/run.sh
disk0: loop $dir/layers-a.img direct-io=on
disk1: loop $dir/layers-b.img direct-io=on
lin:   0 $(( (want - 1048576) / 512 )) linear disk0 1M
both:  striped 2 64k disk0 0 disk1 0
CONF

devices=(disk0 lin both)
for r in $(seq 1 "$rounds"); do
  for d in "${devices[@]}"; do
    "$root/biostack" bench --stack "$stack" --device "$d" --ramp 2 --rw "$rw" --bs 4k --iodepth 32 \
        --runtime "$runtime" --json >"$out/$d-$r.json"
    echo "round $r: $d done" >&2
  done
done

python3 - "$out" "$rounds" "$rw" "${devices[@]}" <<'PY'
import json, statistics, sys
out, rounds, rw, devs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
iops = {}
for d in devs:
    v = []
    for r in range(1, rounds + 1):
        with open(f"{out}/{d}-{r}.json") as f:
            j = json.load(f)
        v.append(j["iops"])
        if j.get("errors"):
            print(f"warning: {d} round {r}: {j['errors']} errors")
    iops[d] = statistics.median(v)
print(f"4k {rw} QD32, median of {rounds} rounds")
for d in devs:
    print(f"  {d:6s} {iops[d]:12.0f} IOPS")
print(f"  lin/disk0  {iops['lin'] / iops['disk0']:.3f}   (linear layer cost; target >= 0.98)")
print(f"  both/disk0 {iops['both'] / iops['disk0']:.3f}   (striped over two files)")
PY
