#!/usr/bin/env bash
# Trains the release's ahead-of-time caches (JEP 483/514/515), each from one run of
# io.biostack.cli.AotTraining (it says what each runs, and why not serve) with the runtime, the
# class path and the JVM options bin/biostack gives those commands:
#   STAGE/lib/short.aot     --version and dm (the fast path), on the launcher's short class path
#   STAGE/lib/img.aot       img info (the fast path), short class path
#   STAGE/lib/convert.aot   img convert (its own fast path, ImgConvert.fastPath), on the whole class path
#   STAGE/lib/luks.aot      luks (picocli), short class path
#   STAGE/lib/biostack.aot  help and completion (the whole picocli tree), on the whole class path
#   STAGE/lib/serve.aot     serve up to its first NBD replies, whole class path, serve's options
# The dm commands go to a stack served by another process. Run by scripts/release-assemble.sh;
# alone, it retrains the caches of an unpacked release (bench/startup/run.sh does so to compare).
# Usage: scripts/release-aot.sh STAGE
set -euo pipefail
stage=${1:?usage: release-aot.sh STAGE (an unpacked release)}
say() { echo "release: $*" >&2; }

# The class paths, in the launcher's order: the JVM refuses a cache whose class path differs.
classpath() { # VARIABLE -> the launcher's jar list of that name, as a class path
  local jars j cp=
  jars=$(sed -n "s/^$1=\"\(.*\)\"\$/\1/p" "$stage/bin/biostack")
  [ -n "$jars" ] || { say "no $1 list in $stage/bin/biostack"; exit 1; }
  for j in $jars; do cp="$cp${cp:+:}$stage/lib/$j"; done
  echo "$cp"
}
full_cp=$(classpath jars)
short_cp=$(classpath short_jars)

train=$(mktemp -d)
serve_pid=
trap '[ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null; rm -rf "$train"' EXIT
printf 'a: ram 1M\nlin: 0 1M linear a 0\n' > "$train/t.stack"
BIOSTACK_NO_AOT=1 "$stage/bin/biostack" serve --stack "$train/t.stack" --export lin \
  --control "$train/ctl" --listen none --socket "$train/nbd" >"$train/serve.log" 2>&1 &
serve_pid=$!
# the image the fast path's img info reads, made here so that img create stays out of its cache
BIOSTACK_NO_AOT=1 "$stage/bin/biostack" img create -q -f qcow2 "$train/train.qcow2" 64M
for _ in $(seq 400); do [ -S "$train/ctl" ] && break; sleep 0.05; done
[ -S "$train/ctl" ] || { cat "$train/serve.log" >&2; say "training stack did not start"; exit 1; }
rm -f "$stage"/lib/*.aot
# The launcher's options for the short commands (bin/biostack says why), so that the caches and
# their runs agree; the log keeps errors (a class the cache cannot take is a warning).
opts=(--enable-native-access=ALL-UNNAMED -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:CompileThresholdScaling=10
  -XX:-UsePerfData -Xlog:aot=error,cds=error)
# convert's, as bin/biostack gives them: C1's usual thresholds
convert_opts=(--enable-native-access=ALL-UNNAMED -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData
  -Xlog:aot=error,cds=error)
serve_opts=(--enable-native-access=ALL-UNNAMED -XX:+UseParallelGC -Xlog:aot=error,cds=error)
for mode in short img convert luks full serve; do
  o=("${opts[@]}")
  case $mode in
    full) cache=biostack cp=$full_cp ;;
    convert) cache=convert cp=$full_cp o=("${convert_opts[@]}") ;;
    serve) cache=serve cp=$full_cp o=("${serve_opts[@]}") ;;
    *) cache=$mode cp=$short_cp ;;
  esac
  (cd "$train" && "$stage/runtime/bin/java" -XX:AOTCacheOutput="$stage/lib/$cache.aot" "${o[@]}" \
    -cp "$cp" io.biostack.cli.AotTraining "$mode" "$train/ctl" >&2)
  [ -s "$stage/lib/$cache.aot" ] || { say "no AOT cache lib/$cache.aot written"; exit 1; }
done
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=
