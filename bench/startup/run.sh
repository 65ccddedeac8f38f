#!/usr/bin/env bash
# Start-up figures of the release against today's ways of running biostack (issue 18):
#   wall time of `--version`, `bench --help` and `dm --control S ls` (against a running stack),
#   N runs each (default 20), median and min in ms; time from `serve` start to the first NBD
#   reply (nbdinfo polling a unix socket); the archive's size next to the JDK's.
#   CPU time (user + sys, of the launcher and the JVM) is printed too: on a loaded machine it
#   moves less than the wall time.
# Usage: bench/startup/run.sh [RELEASE_DIR] [RUNS]
#   RELEASE_DIR: an unpacked release (default: target/release/biostack-*, from scripts/release.sh)
# Variants: source = ./biostack, plain = java -cp classes:lib/*, release = bin/biostack (AOT cache,
#   serial GC, C1 only), release-noaot = without the cache, release-c2 = with C2 back on.
# The variants run interleaved (one run of each in turn), so a load that comes and goes on a
# shared machine spreads over all of them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$root/scripts/java-env.sh"
rel=${1:-$(ls -d "$root"/target/release/biostack-* 2>/dev/null | head -n 1)}
runs=${2:-20}
[ -x "$rel/bin/biostack" ] || { echo "no release at '$rel': run scripts/release.sh" >&2; exit 1; }
command -v nbdinfo >/dev/null || { echo "needs nbdinfo (libnbd-bin)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# The source checkout's launcher, built (its first run would otherwise build).
"$root/biostack" --version >/dev/null
plain_cp="$root/target/classes:$root/target/lib/*"

# A running stack for dm ls.
printf 'a: ram 1M\nb: ram 1M\nlin: 0 1M linear a 0\nd: dust b 0 4096\n' > "$work/s.stack"
"$rel/bin/biostack" serve --stack "$work/s.stack" --export lin --control "$work/ctl" \
  --listen none --socket "$work/nbd" >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -S "$work/ctl" ] && break; sleep 0.05; done
[ -S "$work/ctl" ] || { cat "$work/serve.log" >&2; exit 1; }

variants=(source plain release release-noaot release-c2)
run_variant() { # VARIANT ARGS...
  local v=$1; shift
  case $v in
    source) "$root/biostack" "$@" ;;
    plain) "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -cp "$plain_cp" io.biostack.cli.Main "$@" ;;
    release) "$rel/bin/biostack" "$@" ;;
    release-noaot) BIOSTACK_NO_AOT=1 "$rel/bin/biostack" "$@" ;;
    release-c2) BIOSTACK_JAVA_OPTS=-XX:TieredStopAtLevel=4 "$rel/bin/biostack" "$@" ;;
  esac
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%d", m}'; }

declare -A times cpus
for cmd in "--version" "bench --help" "dm --control $work/ctl ls"; do
  for v in "${variants[@]}"; do times[$v]=""; cpus[$v]=""; done
  for _ in $(seq "$runs"); do
    for v in "${variants[@]}"; do
      t0=$(now_ms)
      # shellcheck disable=SC2086 # cmd is a list of words
      /usr/bin/time -f '%U %S' -o "$work/cpu" bash -c "$(declare -f run_variant); $(declare -p root rel plain_cp JAVA_HOME); run_variant $v $cmd" >/dev/null 2>&1 \
        || { echo "$v $cmd failed" >&2; exit 1; }
      times[$v]+="$(( $(now_ms) - t0 )) "
      cpus[$v]+="$(awk '{printf "%d", ($1 + $2) * 1000}' "$work/cpu") "
    done
  done
  for v in "${variants[@]}"; do
    med=$(echo "${times[$v]}" | tr ' ' '\n' | grep . | median)
    min=$(echo "${times[$v]}" | tr ' ' '\n' | grep . | sort -n | head -n 1)
    cpu=$(echo "${cpus[$v]}" | tr ' ' '\n' | grep . | median)
    printf '%-28s %-14s median %5d ms  min %5d ms  cpu median %5d ms  (%d runs)\n' "${cmd/$work\//}" "$v" "$med" "$min" "$cpu" "$runs"
  done
done

# serve start to the first NBD reply, 5 times each: release, source launcher.
first_reply() { # VARIANT
  local v=$1 s="$work/fr.sock" t0 pid
  rm -f "$s"
  t0=$(now_ms)
  run_variant "$v" serve --ram 64M --listen none --socket "$s" >/dev/null 2>&1 &
  pid=$!
  until nbdinfo --size "nbd+unix:///?socket=$s" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "serve exited" >&2; return 1; }
    sleep 0.005
  done
  echo $(( $(now_ms) - t0 ))
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
for v in release source; do
  fr=""
  for _ in 1 2 3 4 5; do fr+="$(first_reply "$v") "; done
  printf '%-28s %-14s median %5d ms  (5 runs: %s)\n' "serve -> first NBD reply" "$v" \
    "$(echo "$fr" | tr ' ' '\n' | grep . | median)" "$fr"
done

archive=$(ls "$root"/target/biostack-*-linux-x86_64.tar.gz 2>/dev/null | head -n 1 || true)
echo "sizes: archive $( [ -n "$archive" ] && du -h "$archive" | cut -f1 || echo '?'), unpacked $(du -sh "$rel" | cut -f1) (runtime $(du -sh "$rel/runtime" | cut -f1), AOT cache $(du -h "$rel/lib/biostack.aot" | cut -f1)); JDK $JAVA_HOME: $(du -sh "$JAVA_HOME" | cut -f1)"
