#!/usr/bin/env bash
# Crypt benchmark: the cost of dm-crypt-style AES-XTS on top of a device, and how well the crypt
# worker pool (kcryptd) spreads the cipher work over the cores.
#
#   bench/crypt/run.sh [FILE] [--runtime S] [--rounds N] [--size 1G] [--sector-size 512|4096]
#                      [--parts 1,2,3,4,5] [--swap]
#
# Part 1: XTS in memory and crypt over a ramdisk vs the bare ramdisk, single thread, from the
#   JMH-free io.biostack.layer.crypt.XtsThroughput (src/test); MB/s.
# Part 2: over a loop device with direct I/O (FILE): the loop device alone against crypt over it,
#   from one stack file, alternating, several rounds; each side's median and crypt/plain.
#   Targets (issue 9): >= 0.9 on randread-4k-qd32, >= 0.85 on read-128k-qd8.
# Part 3: over a ramdisk, where the CPU is the limit: crypt 128k read QD8 on every core against the
#   same run pinned to one core (taskset -c 0), alternating; target both/pinned >= 1.6. Then the
#   machine's own ceiling at that moment: pure XTS on every core against one thread (on a shared
#   machine this is well under the core count, and no pool can scale past it).
# Part 4: CPU time per I/O of crypt over a ramdisk and (with part 2) over the loop device, cipher
#   work inline (workers=0) against the worker pool, split by thread (io_uring worker, crypt
#   workers, rest), from io.biostack.layer.crypt.CryptScaling: the cost of the hand-off and the
#   cipher work left on the ring thread; readable even on a loaded machine where IOPS are not.
# Part 5 (issue 16): the LUKS data path, LUKS2 with 4096-byte sectors against LUKS1 with 512-byte
#   sectors, over the same loop device (FILE): two volumes side by side on it, each behind a linear
#   window, headers made by `biostack luks format` (pbkdf2, 1000 iterations: the unlock is not
#   what is measured) and copied in; opened by the stack's `luks` target, alternating round by
#   round. Targets: luks2-4k/luks1-512 >= 1.0 on randread-4k-qd32, >= 1.1 on read-128k-qd8.
#   --swap puts LUKS2 in the first half of FILE and LUKS1 in the second, to tell the sector size's
#   effect from the placement's.
# The key is random per run and only ever in the stack files, which are made mode 0600 in a
# private temp dir and removed on exit. Every bench command is printed before it runs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
file=/var/tmp/biostack-crypt-bench.img
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then file=$1; shift; fi
runtime=10; rounds=3; size=1G; sector=512; parts=1,2,3,4,5; swap=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) runtime=$2; shift 2;;
    --rounds) rounds=$2; shift 2;;
    --size) size=$2; shift 2;;
    --sector-size) sector=$2; shift 2;;
    --parts) parts=$2; shift 2;;
    --swap) swap=1; shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
. "$root/scripts/java-env.sh"
part() { [[ ",$parts," == *",$1,"* ]]; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }

(cd "$root" && { mvn -q -B -o -DskipTests package >&2 2>/dev/null || mvn -q -B -DskipTests package >&2; } \
  && mvn -q -B -o test-compile >&2 && touch target/.built)
cp="$root/target/classes:$root/target/test-classes:$root/target/lib/*"

if part 1; then
  echo "== part 1: XTS and crypt over a ramdisk (one thread)"
  "$JAVA_HOME/bin/java" -cp "$cp" io.biostack.layer.crypt.XtsThroughput "$(( runtime < 3 ? runtime : 3 ))"
fi

out=$(mktemp -d)
chmod 700 "$out"
trap 'rm -rf "$out"' EXIT
key=$(od -An -tx1 -N64 /dev/urandom | tr -d ' \n')
opts=""
[ "$sector" != 512 ] && opts=" 1 sector_size:$sector"
umask 077

# bench PREFIX STACK DEV RW BS QD OUT: one run, JSON to OUT; the command goes to stderr
bench() {
  local prefix=$1 stack=$2 dev=$3 rw=$4 bs=$5 qd=$6 json=$7
  local cmd="$prefix ./biostack bench --stack $stack --device $dev --ramp 2 --rw $rw --bs $bs --iodepth $qd --runtime $runtime --size $size --json"
  echo "  \$ ${cmd# }" >&2
  (cd "$root" && $cmd > "$json")
}

# report OUT ROUNDS A B LABEL_A LABEL_B NAME...: medians of IOPS and the ratio B/A per job
report() {
  python3 - "$@" <<'PY'
import json, os, statistics, sys
out, rounds, a, b, la, lb = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
names = sys.argv[7:]
def val(path):
    return float(json.load(open(path))["iops"])
print(f"{'job':20} {la:>12} {lb:>12} {lb + '/' + la:>14}   (median IOPS of {rounds})")
for name in names:
    med = {k: statistics.median(val(os.path.join(out, f"{name}.{k}.{r}.json")) for r in range(1, rounds + 1))
           for k in (a, b)}
    print(f"{name:20} {med[a]:12.0f} {med[b]:12.0f} {med[b] / med[a]:14.2f}")
PY
}

if part 2; then
  want=$(numfmt --from=iec "$size")
  if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -lt "$want" ]; then
    echo "laying out $file ($size)..." >&2
    rm -f "$file"
    dd if=/dev/urandom of="$file" bs=1M count=$(( want >> 20 )) status=none
  fi
  cat > "$out/loop.stack" <<STACK
disk0: loop $file direct-io=on
c0:    crypt aes-xts-plain64 $key 0 disk0 0$opts
STACK
  echo "== part 2: crypt over a loop device with direct I/O ($file) against the loop device alone"
  # name rw bs iodepth
  jobs=(
    "randread-4k-qd32 randread 4k 32"
    "read-128k-qd8 read 128k 8"
    "randwrite-4k-qd32 randwrite 4k 32"
    "write-128k-qd8 write 128k 8"
  )
  names=()
  for j in "${jobs[@]}"; do
    set -- $j
    names+=("$1")
    for r in $(seq "$rounds"); do
      for dev in disk0 c0; do
        bench "" "$out/loop.stack" "$dev" "$2" "$3" "$4" "$out/$1.$dev.$r.json"
      done
    done
  done
  report "$out" "$rounds" disk0 c0 plain crypt "${names[@]}"
fi

if part 3; then
  cat > "$out/ram.stack" <<STACK
r0: ram $size
c0: crypt aes-xts-plain64 $key 0 r0 0$opts
STACK
  echo "== part 3: crypt over a ramdisk, 128k read QD8: every core ($(nproc)) against one (taskset -c 0)"
  for r in $(seq "$rounds"); do
    bench "taskset -c 0" "$out/ram.stack" c0 read 128k 8 "$out/ram-read-128k-qd8.pinned.$r.json"
    bench "" "$out/ram.stack" c0 read 128k 8 "$out/ram-read-128k-qd8.all.$r.json"
  done
  report "$out" "$rounds" pinned all one-core all-cores ram-read-128k-qd8
  # what the machine gives at the moment: pure XTS on every core against one thread (a shared
  # machine gives less than its core count, and the crypt pool cannot scale past this)
  "$JAVA_HOME/bin/java" -cp "$cp" io.biostack.layer.crypt.XtsThroughput ceiling "$(nproc)" 1
fi

if part 4; then
  echo "== part 4: CPU per I/O, split by thread: cipher work inline (workers=0) against the pool (workers,inline,chunk,spin_us)"
  n=$(nproc)
  scaling() {
    echo "  \$ java -cp target/classes:target/test-classes:target/lib/* io.biostack.layer.crypt.CryptScaling $*" >&2
    (cd "$root" && "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -XX:+UseParallelGC -cp "$cp" \
      io.biostack.layer.crypt.CryptScaling "$@" 2>&1 | grep -v 'file engine\|Engines acquire')
  }
  # the defaults are "$n,32768,32768,20,nohelp"; the variant without nohelp is work-stealing
  scaling ram read 131072 8 2 "$rounds" 0,0,32768,0 "$n,32768,32768,20,nohelp" "$n,32768,32768,20"
  if part 2; then
    # the io_uring worker's share is what is left on the ring's critical path
    scaling "$out/loop.stack:disk0" read 131072 8 2 "$rounds" plain 0,0,32768,0 "$n,32768,32768,20,nohelp" \
      "$n,32768,32768,20"
  fi
fi

if part 5; then
  want=$(numfmt --from=iec "$size")
  half=$(( want / 2 ))
  if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -lt "$want" ]; then
    echo "laying out $file ($size)..." >&2
    rm -f "$file"
    dd if=/dev/urandom of="$file" bs=1M count=$(( want >> 20 )) status=none
  fi
  head -c 32 /dev/urandom | base64 > "$out/pass"
  # headers made on small scratch files, then copied to the start of each half of FILE
  for v in "luks1 512 2" "luks2 4096 16"; do
    set -- $v
    truncate -s $(( ($3 + 4) << 20 )) "$out/$1.img"
    echo "  \$ ./biostack luks format --type $1 --sector-size $2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file PASS $1.img" >&2
    if [ "$1" = luks1 ]; then
      (cd "$root" && ./biostack luks format --type luks1 --pbkdf-force-iterations 1000 --key-file "$out/pass" "$out/$1.img" >&2)
    else
      (cd "$root" && ./biostack luks format --type luks2 --sector-size "$2" --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
        --key-file "$out/pass" "$out/$1.img" >&2)
    fi
  done
  dd if="$out/luks1.img" of="$file" bs=1M count=2 conv=notrunc status=none
  dd if="$out/luks2.img" of="$file" bs=1M count=16 seek=$(( half >> 20 )) conv=notrunc status=none
  cat > "$out/luks.stack" <<STACK
disk0: loop $file direct-io=on
h1:    0 $(( half / 512 )) linear disk0 0
h2:    0 $(( half / 512 )) linear disk0 $(( half / 512 ))
l1:    luks h1 keyfile=$out/pass
l2:    luks h2 keyfile=$out/pass
STACK
  echo "== part 5: LUKS2 4096-byte sectors (l2) against LUKS1 512-byte sectors (l1), both on one loop device ($file)"
  jobs=(
    "luks-randread-4k-qd32 randread 4k 32"
    "luks-read-128k-qd8 read 128k 8"
  )
  names=()
  lsize=$(( (half >> 20) - 32 ))M
  for j in "${jobs[@]}"; do
    set -- $j
    names+=("$1")
    for r in $(seq "$rounds"); do
      for dev in l1 l2; do
        cmd="./biostack bench --stack $out/luks.stack --device $dev --ramp 2 --rw $2 --bs $3 --iodepth $4 --runtime $runtime --size $lsize --json"
        echo "  \$ $cmd" >&2
        (cd "$root" && $cmd > "$out/$1.$dev.$r.json")
      done
    done
  done
  report "$out" "$rounds" l1 l2 luks1-512 luks2-4k "${names[@]}"
  python3 - "$out" "$rounds" "${names[@]}" <<'PY'
import json, os, sys
out, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for n in names:
    for d in ("l1", "l2"):
        runs = [json.load(open(os.path.join(out, f"{n}.{d}.{r}.json"))) for r in range(1, rounds + 1)]
        print(f"  raw {n} {d}: IOPS {[round(float(x['iops'])) for x in runs]}, MB/s "
              f"{[round(float(x['bw_bytes']) / 1e6, 1) for x in runs]}, cpu us/io {[x.get('cpu_us_per_io') for x in runs]}")
PY
fi

