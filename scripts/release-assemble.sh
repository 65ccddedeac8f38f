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

# The jars, biostack's first and picocli's second; the launcher lists them in this order, the
# order the cache records. A class the cache does not hold is looked up jar by jar along the class
# path, and each jar opened on the way costs a read of its central directory (bcprov's is 700 KB):
# on the release's runtime, a hello-world behind the 18 jars took 260 ms of CPU, 140 ms alone.
jars=("$name.jar")
cp "$target/$name.jar" "$stage/lib/"
for j in "$target"/lib/picocli-*.jar; do
  # picocli is compiled for Java 5 (class-file version 49), and the JVM neither links nor verifies
  # such classes into the AOT cache ("Old class has been linked"): its 169 classes that every
  # command loads would come from the jar and through the old verifier at each start.
  # UpgradeClassFiles rewrites them to version 52 with stack maps, the code unchanged.
  "$JAVA_HOME/bin/java" "$root/scripts/UpgradeClassFiles.java" "$j" "$stage/lib/$(basename "$j")"
  jars+=("$(basename "$j")")
done
for j in "$target"/lib/*.jar; do
  case $(basename "$j") in picocli-*) continue ;; esac
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

# The ahead-of-time cache, trained with the launcher's own class path and runtime.
say "AOT training run"
"$root/scripts/release-aot.sh" "$stage"

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
