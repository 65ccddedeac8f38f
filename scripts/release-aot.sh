#!/usr/bin/env bash
# Trains the release's ahead-of-time cache (JEP 483/514/515): STAGE/lib/biostack.aot, from one run
# of io.biostack.cli.AotTraining (it says what it runs, and why not serve) with the runtime, the
# class path and the JVM options bin/biostack gives the short commands; its dm commands go to a
# stack served by another process. Run by scripts/release-assemble.sh; alone, it retrains the cache
# of an unpacked release (bench/startup/run.sh does so to compare).
# Usage: scripts/release-aot.sh STAGE
set -euo pipefail
stage=${1:?usage: release-aot.sh STAGE (an unpacked release)}
say() { echo "release: $*" >&2; }

# The class path, in the launcher's order: the JVM refuses a cache whose class path differs.
jars=$(sed -n 's/^for jar in \(.*\); do$/\1/p' "$stage/bin/biostack")
[ -n "$jars" ] || { say "no jar list in $stage/bin/biostack"; exit 1; }
cp=
for j in $jars; do cp="$cp${cp:+:}$stage/lib/$j"; done

train=$(mktemp -d)
serve_pid=
trap '[ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null; rm -rf "$train"' EXIT
printf 'a: ram 1M\nlin: 0 1M linear a 0\n' > "$train/t.stack"
BIOSTACK_NO_AOT=1 "$stage/bin/biostack" serve --stack "$train/t.stack" --export lin \
  --control "$train/ctl" --listen none --socket "$train/nbd" >"$train/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 400); do [ -S "$train/ctl" ] && break; sleep 0.05; done
[ -S "$train/ctl" ] || { cat "$train/serve.log" >&2; say "training stack did not start"; exit 1; }
rm -f "$stage/lib/biostack.aot"
# The launcher's options for the short commands (bin/biostack says why), so that the cache and
# its runs agree; the log keeps errors (a class the cache cannot take is a warning).
(cd "$train" && "$stage/runtime/bin/java" -XX:AOTCacheOutput="$stage/lib/biostack.aot" \
  --enable-native-access=ALL-UNNAMED -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:CompileThresholdScaling=10 -XX:-UsePerfData \
  -Xlog:aot=error,cds=error -cp "$cp" io.biostack.cli.AotTraining "$train/ctl" >&2)
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=
[ -s "$stage/lib/biostack.aot" ] || { say "no AOT cache written"; exit 1; }
