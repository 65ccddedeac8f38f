#!/usr/bin/env bash
# img convert (and info) against qemu-img on a 1 GiB image with half of it allocated (random
# extents of 64 KiB..1 MiB of random data, holes between): raw->qcow2 and qcow2->raw, alternating tool by tool, ROUNDS times, in two
# cache modes used alike by both tools:
#   default: qemu-img convert's defaults (source through the page cache, destination -t unsafe:
#            page cache, no flush at the end);
#   none:    -t none -T none (O_DIRECT both sides, the destination flushed).
# Prints every wall time (biostack's include the JVM's start-up, run as the launcher runs it; "in process" is the convert alone,
# from BIOSTACK_TIMING) and ratios qemu-img/biostack (above 1: biostack is faster), and
# `img info` wall time. Usage: [BIOSTACK=LAUNCHER] bench/img/run.sh [ROUNDS] [DIR]
# BIOSTACK=target/release/biostack-*/bin/biostack (scripts/release.sh -o) times the release's
# launcher, as users run it (its runtime, JVM options and AOT caches); by default java runs from
# the checkout's class path.
# The machine may be shared: read the ratios of one run, with their raw figures beside them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rounds=${1:-3}
dir=${2:-$(mktemp -d "${TMPDIR:-/var/tmp}/bsimg.XXXXXX")}
mkdir -p "$dir"
"$root/biostack" --version >/dev/null   # builds when stale, outside the timings
# biostack runs as the launcher's last line runs it (the same JVM flags), JAVA_HOME set once here:
# the checkout's launcher probes every JDK under /usr/lib/jvm with a JVM start of its own until
# it finds a 25 (two JDK 17s first on this machine), which the release's bin/biostack does not.
# Its cost is printed at the end, apart.
. "$root/scripts/java-env.sh"
. "$root/scripts/build-if-stale.sh"
bs_java=("$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -XX:+UseParallelGC -cp "$BIOSTACK_CP" io.biostack.cli.Main)
if [ -n "${BIOSTACK:-}" ]; then
  [ -x "$BIOSTACK" ] || { echo "BIOSTACK=$BIOSTACK is not an executable launcher" >&2; exit 1; }
  bs_java=("$BIOSTACK")
  echo "biostack: $BIOSTACK"
fi
export BIOSTACK_TIMING=1

src="$dir/src.raw"
if [ ! -f "$src" ]; then
  # Random extents of 64 KiB..1 MiB (64 KiB multiples), data or hole by turns, until half of the
  # 1 GiB holds data; a fixed seed so that every run copies the same image.
  python3 - "$src" <<'PY'
import os, random, sys
rnd = random.Random(15)
size, k = 1 << 30, 64 << 10
with open(sys.argv[1], "wb") as f:
    f.truncate(size)
    off, data = 0, 0
    while off < size:
        n = min(rnd.randint(1, 16) * k, size - off)
        if rnd.random() < 0.5:
            f.seek(off)
            f.write(os.urandom(n))
            data += n
        off += n
print(f"src.raw: {data >> 20} MiB of data in 1024 MiB", file=sys.stderr)
PY
  sync
fi
[ -f "$dir/ref.qcow2" ] || qemu-img convert -O qcow2 "$src" "$dir/ref.qcow2"

now() { date +%s.%N; }
# t CMD...: wall seconds; sets IN to the in-process seconds biostack printed (or the wall time)
# sync first, outside the time: the page-cache modes leave up to 1 GiB dirty, and a run paid for
# the writeback of what the one before left (measured: both tools 0.5-1.3 s instead of 0.3).
t() { local s e; sync; s=$(now); "$@" >/dev/null 2>"$dir/err" || { cat "$dir/err" >&2; exit 1; }; e=$(now)
      W=$(echo "$e - $s" | bc); IN=$(sed -n 's/.*convert took \([0-9.]*\) s in process.*/\1/p' "$dir/err"); IN=${IN:-$W}; }
declare -A sum
add() { sum[$1]=$(echo "${sum[$1]:-0} + $2" | bc); }
mean() { echo "scale=3; ${sum[$1]} / $rounds" | bc; }

for mode in default none; do
  [ $mode = none ] && opts=(-t none -T none) || opts=()
  for r in $(seq "$rounds"); do
    for tool in qemu biostack; do
      rm -f "$dir/out.qcow2" "$dir/out.raw"
      [ $tool = qemu ] && cmd=(qemu-img convert) || cmd=("${bs_java[@]}" img convert)
      # Each output is checked and deleted before the next run: its dirty pages go with it, so
      # the sync before the next run has nothing to write back.
      t "${cmd[@]}" "${opts[@]}" -O qcow2 "$src" "$dir/out.qcow2"; aw=$W; ai=$IN
      qemu-img compare -q "$src" "$dir/out.qcow2"; rm -f "$dir/out.qcow2"
      t "${cmd[@]}" "${opts[@]}" -O raw "$dir/ref.qcow2" "$dir/out.raw"; bw=$W; bi=$IN
      qemu-img compare -q -f raw -F raw "$src" "$dir/out.raw"; rm -f "$dir/out.raw"
      printf '%-7s round %d %-8s raw->qcow2 %6.2f s (in process %5.2f)  qcow2->raw %6.2f s (in process %5.2f)\n' \
        $mode "$r" $tool "$aw" "$ai" "$bw" "$bi"
      add $mode.$tool.a "$aw"; add $mode.$tool.ai "$ai"; add $mode.$tool.b "$bw"; add $mode.$tool.bi "$bi"
    done
  done
  for k in a b; do
    name=$([ $k = a ] && echo "raw->qcow2" || echo "qcow2->raw")
    q=$(mean $mode.qemu.$k); w=$(mean $mode.biostack.$k); i=$(mean $mode.biostack.${k}i)
    printf '%-7s %-10s qemu-img %6.2f s  biostack %6.2f s wall (ratio %5.2f), %6.2f s in process (ratio %5.2f)\n' \
      $mode "$name" "$q" "$w" "$(echo "scale=3; $q / $w" | bc)" "$i" "$(echo "scale=3; $q / $i" | bc)"
  done
done
for r in $(seq "$rounds"); do
  t qemu-img info "$dir/ref.qcow2"; add info.qemu "$W"
  t "${bs_java[@]}" img info "$dir/ref.qcow2"; add info.biostack "$W"
  t "${bs_java[@]}" --version; add version.java "$W"
  t env -u JAVA_HOME "$root/biostack" --version; add version.launcher "$W"
done
printf 'info       qemu-img %6.3f s  biostack %6.3f s wall (JVM start-up included)\n' "$(mean info.qemu)" "$(mean info.biostack)"
printf 'launcher   biostack --version %6.3f s through ./biostack without JAVA_HOME, %6.3f s as java directly\n' \
  "$(mean version.launcher)" "$(mean version.java)"
echo "(machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); images in $dir)"
