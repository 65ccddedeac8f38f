#!/usr/bin/env bash
# Stats benchmark: what counting every device costs per I/O, stats on vs off.
#
#   bench/stats/run.sh [--runtime S] [--rounds N]
#
# Part 1: in-process micro measure (io.biostack.block.stats.StatsCost, src/test): 4k reads at QD1
#   on one thread, a bare ramdisk vs the same ramdisk in a CountedDevice, alternating rounds;
#   thread CPU ns per I/O, median of the per-round differences. Its caller reads no clock, so
#   counting's readings are all extra; it then measures the same pair with a caller that reads
#   the clock at submit and completion as bench does (counting shares those readings), and what
#   two bare clock reads cost in that loop: the difference between the two measures.
# Part 2: `biostack bench --stack` over a ram device (the bench thread does all the work: a
#   ramdisk completes inside submit), QD1 and QD32, -Dbiostack.stats=true vs false, alternating
#   JVMs; prints each side's median ns per I/O (1e9 / IOPS) and median p50 latency, and the
#   differences. Wall time, one JVM per side: the figures move with the machine's other load.
#   The aim (issue 19) is under 25 ns per I/O per counted device.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runtime=5; rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) runtime=$2; shift 2;;
    --rounds) rounds=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
. "$root/scripts/java-env.sh"
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== part 1: CountedDevice over a ramdisk, in-process, thread CPU time"
(cd "$root" && mvn -q -B -o test-compile >&2 2>/dev/null || mvn -q -B test-compile >&2)
(cd "$root" && mvn -q -B -o dependency:build-classpath -Dmdep.outputFile="$out/cp" >/dev/null 2>&1)
"$JAVA_HOME/bin/java" -XX:+UseParallelGC -cp "$root/target/classes:$root/target/test-classes:$(cat "$out/cp")" \
  io.biostack.block.stats.StatsCost $(( rounds * 2 + 1 )) 2000000

echo "== part 2: biostack bench --stack over ram, stats on vs off"
printf 'r0: ram 256M\nl0: linear r0 0\n' > "$out/stack"
for dev in r0 l0; do
for qd in 1 32; do
  for r in $(seq "$rounds"); do
    for on in true false; do
      BIOSTACK_JAVA_OPTS="-Dbiostack.stats=$on" "$root/biostack" bench --stack "$out/stack" --device "$dev" \
        --rw randread --bs 4k --iodepth "$qd" --ramp 2 --runtime "$runtime" --size 256M --json \
        > "$out/$dev.qd$qd.$on.$r.json"
    done
  done
done
done

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for dev, levels in (("r0", 1), ("l0", 2)):
  for qd in (1, 32):
    res = {}
    for on in ("true", "false"):
        ns, p50, alloc, cpu = [], [], [], []
        for r in range(1, rounds + 1):
            j = json.load(open(f"{out}/{dev}.qd{qd}.{on}.{r}.json"))
            ns.append(1e9 / j["iops"])
            p50.append(j["lat_ns"]["p50"])
            alloc.append(j.get("alloc_bytes_per_io"))
            cpu.append(1e3 * j["cpu_us_per_io"] if j.get("cpu_us_per_io") is not None else float("nan"))
        res[on] = (statistics.median(ns), statistics.median(p50), alloc, statistics.median(cpu), cpu)
    on, off = res["true"], res["false"]
    print(f"{dev} ({levels} counted level(s)) randread 4k QD{qd}: stats on {on[0]:.1f} ns/io (p50 {on[1]} ns), off {off[0]:.1f} ns/io (p50 {off[1]} ns); "
          f"difference {on[0] - off[0]:+.1f} ns/io ({(on[0] - off[0]) / levels:+.1f} per counted device), p50 {on[1] - off[1]:+.0f} ns; alloc bytes/io on {on[2]}")
    # process CPU per I/O: what the wall figures above mean on an idle machine, less moved by other load
    print(f"  cpu ns/io: on {on[3]:.1f} {[round(x) for x in on[4]]}, off {off[3]:.1f} {[round(x) for x in off[4]]}; "
          f"difference {on[3] - off[3]:+.1f} ({(on[3] - off[3]) / levels:+.1f} per counted device)")
PY
