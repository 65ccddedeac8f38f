#!/usr/bin/env bash
# Assembles the release archive from a packaged build (target/biostack-VERSION.jar, target/lib):
#   target/biostack-VERSION-linux-x86_64.tar.gz
# Run by `mvn -P release package` (the release profile's last package step) or scripts/release.sh.
# Needs a JDK 25 (scripts/java-env.sh finds it); jlink links from the JDK's own runtime image,
# so no jmods folder is needed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/scripts/java-env.sh"
version=${1:?usage: release-assemble.sh VERSION}
target="$root/target"
name="biostack-$version"
stage="$target/release/$name"
archive="$target/$name-linux-x86_64.tar.gz"
say() { echo "release: $*" >&2; }

[ -f "$target/$name.jar" ] || { say "no $target/$name.jar: run mvn package first"; exit 1; }
rm -rf "$target/release" "$archive"
mkdir -p "$stage/bin" "$stage/lib" "$stage/share/man/man1" "$stage/share/bash-completion/completions" \
  "$stage/share/doc/biostack/licenses"

# The modules jdeps finds in biostack and its dependencies (bcprov's LDAP cert store, which needs
# java.sql and so java.xml, is never loaded: left out), plus what is reached without a static
# reference: java.logging backs System.Logger (one-line log records), jdk.management.jfr answers
# `jcmd PID JFR.start`, jdk.httpserver serves --metrics, jdk.unsupported for the Prometheus client.
modules=java.base,java.logging,java.management,java.naming,jdk.httpserver,jdk.jfr,jdk.management,jdk.management.jfr,jdk.unsupported
say "jlink $modules"
"$JAVA_HOME/bin/jlink" --add-modules "$modules" --output "$stage/runtime" \
  --strip-debug --no-header-files --no-man-pages

# The jars, biostack's first; the launcher lists them in this order, the order the cache records.
jars=("$name.jar")
cp "$target/$name.jar" "$stage/lib/"
for j in "$target"/lib/*.jar; do
  cp "$j" "$stage/lib/"
  jars+=("$(basename "$j")")
done
sed "s|@JARS@|${jars[*]}|" "$root/src/dist/bin/biostack" > "$stage/bin/biostack"
chmod 755 "$stage/bin/biostack"

# Man pages and completion, from the command tree itself (io.biostack.cli.ManPages, AutoComplete).
say "man pages, completion"
cp_list=$(printf "$stage/lib/%s:" "${jars[@]}")
"$stage/runtime/bin/java" -cp "$cp_list" io.biostack.cli.ManPages "$stage/share/man/man1"
gzip -9n "$stage"/share/man/man1/*.1
BIOSTACK_NO_AOT=1 "$stage/bin/biostack" completion bash > "$stage/share/bash-completion/completions/biostack"

# The ahead-of-time cache: one training run with the launcher's own class path and runtime, its
# dm commands against a stack served by another process (io.biostack.cli.AotTraining says why).
say "AOT training run"
train=$(mktemp -d)
serve_pid=
trap '[ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null; rm -rf "$train"' EXIT
printf 'a: ram 1M\nlin: 0 1M linear a 0\n' > "$train/t.stack"
BIOSTACK_NO_AOT=1 "$stage/bin/biostack" serve --stack "$train/t.stack" --export lin \
  --control "$train/ctl" --listen none --socket "$train/nbd" >"$train/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 400); do [ -S "$train/ctl" ] && break; sleep 0.05; done
[ -S "$train/ctl" ] || { cat "$train/serve.log" >&2; say "training stack did not start"; exit 1; }
# Old class files (picocli targets Java 5) cannot be stored linked: the JVM says so per class,
# a warning only, so the log keeps errors.
(cd "$train" && "$stage/runtime/bin/java" -XX:AOTCacheOutput="$stage/lib/biostack.aot" \
  --enable-native-access=ALL-UNNAMED -XX:+UseSerialGC -Xlog:aot=error,cds=error \
  -cp "${cp_list%:}" io.biostack.cli.AotTraining "$train/ctl" >&2)
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=

# README, docs and licences (the runtime's own are in runtime/legal).
cp "$root/README.md" "$stage/"
[ -d "$root/docs" ] && cp -r "$root/docs" "$stage/share/doc/biostack/"
for j in "$stage"/lib/*.jar; do
  b=$(basename "$j" .jar)
  for f in META-INF/LICENSE META-INF/LICENSE.txt META-INF/NOTICE; do
    if unzip -p "$j" "$f" > "$stage/share/doc/biostack/licenses/$b-$(basename "$f")" 2>/dev/null; then :; else
      rm -f "$stage/share/doc/biostack/licenses/$b-$(basename "$f")"; fi
  done
done
cat > "$stage/share/doc/biostack/licenses/README" <<'TXT'
Licences of what this archive bundles, besides biostack itself:
  runtime/          OpenJDK (GPLv2 with the Classpath Exception): runtime/legal/
  picocli           Apache License 2.0
  HdrHistogram      public domain (CC0) or BSD 2-clause: HdrHistogram-*-LICENSE.txt
  BouncyCastle      the Bouncy Castle licence (MIT-style): https://www.bouncycastle.org/licence.html
  Prometheus client Apache License 2.0: prometheus-metrics-*-LICENSE, -NOTICE
TXT

say "tar"
tar -C "$target/release" --owner=0 --group=0 --numeric-owner -czf "$archive" "$name"
say "$archive ($(du -h "$archive" | cut -f1); unpacked $(du -sh "$stage" | cut -f1))"
