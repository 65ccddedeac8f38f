#!/usr/bin/env bash
# Start-up figures of the release (issue 18), before and after:
#   wall time of `--version`, `dm --control S ls` (against a running stack), `img info` on a small
#   qcow2 image and `luks dump` on a small LUKS2 volume, RUNS runs each (default 20): median and
#   p90 in ms, and the median CPU time (user + sys of the launcher and the JVM; on a loaded machine
#   it moves less than the wall time);
#   time from `serve` start to the first NBD reply (nbdinfo polling a unix socket), SERVE_RUNS runs
#   (default 10), with the CPU time serve had used by then;
#   the archive's size next to the JDK's.
# Usage: bench/startup/run.sh [RELEASE_DIR] [RUNS]
#   RELEASE_DIR: an unpacked release (default: target/release/biostack-*, from scripts/release.sh)
#   BEFORE=DIR:  another unpacked release to compare with, e.g. one built from main:
#                git worktree add /tmp/bs-main main && /tmp/bs-main/scripts/release.sh
#                BEFORE=$(ls -d /tmp/bs-main/target/release/biostack-*) bench/startup/run.sh
#   NOAOT=1:     also run RELEASE_DIR without its AOT cache (BIOSTACK_NO_AOT=1)
# The variants run interleaved (one run of each in turn), so a load that comes and goes on a shared
# machine spreads over all of them. Run it under `flock /tmp/biostack-bench.lock` on a shared host.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rel=${1:-$(ls -d "$root"/target/release/biostack-* 2>/dev/null | head -n 1)}
runs=${2:-20}
serve_runs=${SERVE_RUNS:-10}
[ -x "$rel/bin/biostack" ] || { echo "no release at '$rel': run scripts/release.sh" >&2; exit 1; }
if [ -n "${BEFORE:-}" ] && [ ! -x "$BEFORE/bin/biostack" ]; then
  echo "BEFORE=$BEFORE is no unpacked release" >&2; exit 1
fi
command -v nbdinfo >/dev/null || { echo "needs nbdinfo (libnbd-bin)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

variants=(after)
[ -n "${BEFORE:-}" ] && variants=(before after)
[ -n "${NOAOT:-}" ] && variants+=(after-noaot)
# The launcher of a variant, and its BIOSTACK_NO_AOT (empty: the cache is used).
bin_of() { case $1 in before) echo "$BEFORE/bin/biostack" ;; *) echo "$rel/bin/biostack" ;; esac; }
noaot_of() { case $1 in after-noaot) echo 1 ;; *) echo "" ;; esac; }

# A running stack for dm ls, a small qcow2 image and a small LUKS2 volume (a cheap pbkdf2 keyslot:
# dump reads no keyslot), all made by the release measured.
printf 'a: ram 1M\nb: ram 1M\nlin: 0 1M linear a 0\nd: dust b 0 4096\n' > "$work/s.stack"
"$rel/bin/biostack" serve --stack "$work/s.stack" --export lin --control "$work/ctl" \
  --listen none --socket "$work/nbd" >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 400); do [ -S "$work/ctl" ] && break; sleep 0.05; done
[ -S "$work/ctl" ] || { cat "$work/serve.log" >&2; exit 1; }
"$rel/bin/biostack" img create -q -f qcow2 "$work/small.qcow2" 64M
truncate -s 32M "$work/small.luks"
printf training > "$work/key"
"$rel/bin/biostack" luks format "$work/small.luks" --key-file "$work/key" --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 >/dev/null

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# median and p90 (nearest rank) of the numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%d", m}'; }
p90() { sort -n | awk '{a[NR]=$1} END {i = int(NR * 0.9 + 0.999); if (i < 1) i = 1; printf "%d", a[i]}'; }
stats() { tr ' ' '\n' | grep .; }

echo "startup: $(date -u +%FT%TZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "startup: after = $rel${BEFORE:+, before = $BEFORE}"
declare -A times cpus
for cmd in "--version" "dm --control $work/ctl ls" "img info $work/small.qcow2" "luks dump $work/small.luks"; do
  for v in "${variants[@]}"; do times[$v]=""; cpus[$v]=""; done
  for _ in $(seq "$runs"); do
    for v in "${variants[@]}"; do
      t0=$(now_ms)
      # shellcheck disable=SC2086 # cmd is a list of words
      /usr/bin/time -f '%U %S' -o "$work/cpu" env BIOSTACK_NO_AOT="$(noaot_of "$v")" "$(bin_of "$v")" $cmd >/dev/null 2>"$work/err" \
        || { echo "$v $cmd failed:" >&2; cat "$work/err" >&2; exit 1; }
      times[$v]+="$(( $(now_ms) - t0 )) "
      cpus[$v]+="$(awk '{printf "%d", ($1 + $2) * 1000}' "$work/cpu") "
    done
  done
  for v in "${variants[@]}"; do
    printf '%-22s %-12s median %5d ms  p90 %5d ms  cpu median %5d ms  (%d runs; wall: %s)\n' \
      "${cmd//$work\//}" "$v" "$(stats <<<"${times[$v]}" | median)" "$(stats <<<"${times[$v]}" | p90)" \
      "$(stats <<<"${cpus[$v]}" | median)" "$runs" "${times[$v]% }"
  done
done

# serve start to the first NBD reply; the CPU serve had used by then, from /proc (clock ticks).
tick=$(getconf CLK_TCK)
first_reply() { # VARIANT -> "MS CPU_MS"
  local v=$1 s="$work/fr.sock" t0 pid cpu
  rm -f "$s"
  t0=$(now_ms)
  # env execs the launcher, which execs java: $! is the JVM's pid.
  env BIOSTACK_NO_AOT="$(noaot_of "$v")" "$(bin_of "$v")" serve --ram 64M --listen none --socket "$s" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 3000); do
    nbdinfo --size "nbd+unix:///?socket=$s" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "serve exited" >&2; return 1; }
    sleep 0.005
  done
  local t1; t1=$(now_ms)
  cpu=$(awk -v t="$tick" '{printf "%d", ($14 + $15) * 1000 / t}' "/proc/$pid/stat")
  echo "$(( t1 - t0 )) $cpu"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
declare -A fr frcpu
for v in "${variants[@]}"; do fr[$v]=""; frcpu[$v]=""; done
for _ in $(seq "$serve_runs"); do
  for v in "${variants[@]}"; do
    read -r ms cpu < <(first_reply "$v")
    fr[$v]+="$ms "; frcpu[$v]+="$cpu "
  done
done
for v in "${variants[@]}"; do
  printf '%-22s %-12s median %5d ms  p90 %5d ms  cpu median %5d ms  (%d runs; wall: %s)\n' \
    "serve -> first reply" "$v" "$(stats <<<"${fr[$v]}" | median)" "$(stats <<<"${fr[$v]}" | p90)" \
    "$(stats <<<"${frcpu[$v]}" | median)" "$serve_runs" "${fr[$v]% }"
done

archive=$(ls "$root"/target/biostack-*-linux-x86_64.tar.gz 2>/dev/null | head -n 1 || true)
jdk=$(. "$root/scripts/java-env.sh" >/dev/null 2>&1 && echo "$JAVA_HOME" || true)
echo "sizes: archive $( [ -n "$archive" ] && du -h "$archive" | cut -f1 || echo '?'), unpacked $(du -sh "$rel" | cut -f1) (runtime $(du -sh "$rel/runtime" | cut -f1), AOT caches $(du -h "$rel"/lib/*.aot | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}' | sed "s|$rel/lib/||g"))${jdk:+; JDK $jdk: $(du -sh "$jdk" | cut -f1)}"
echo "startup: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
