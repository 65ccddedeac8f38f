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
# The short class path of the fast path (bin/biostack says why): biostack, picocli (the fallback
# for what the fast path does not recognise) and HdrHistogram (dm stats reads its histograms).
short=()
for j in "${jars[@]}"; do
  case $j in "$name.jar"|picocli-*|HdrHistogram-*) short+=("$j") ;; esac
done
[ "${#short[@]}" = 3 ] || { say "short class path is '${short[*]}', not biostack, picocli and HdrHistogram"; exit 1; }
sed -e "s|@JARS@|${jars[*]}|" -e "s|@SHORT_JARS@|${short[*]}|" "$root/src/dist/bin/biostack" > "$stage/bin/biostack"
chmod 755 "$stage/bin/biostack"

# Man pages and completion, from the command tree itself (io.biostack.cli.ManPages, AutoComplete).
say "man pages, completion"
cp_list=$(printf "$stage/lib/%s:" "${jars[@]}")
"$stage/runtime/bin/java" -cp "$cp_list" io.biostack.cli.ManPages "$stage/share/man/man1"
gzip -9n "$stage"/share/man/man1/*.1
BIOSTACK_NO_AOT=1 "$stage/bin/biostack" completion bash > "$stage/share/bash-completion/completions/biostack"

# The ahead-of-time caches, trained with the launcher's own class paths and runtime.
say "AOT training runs"
"$root/scripts/release-aot.sh" "$stage"

# README, docs, and the licences of what the archive bundles, the way a Debian package gives them:
# share/doc/biostack/copyright (machine-readable, DEP-5) names every jar of lib/, its copyright and
# licence and where the full text is; the texts are under share/doc/biostack/licenses/, taken from
# the jars themselves here (the runtime's own stay in runtime/legal, where jlink put them).
# biostack itself states no licence yet: that is its owners' call, and the file says so.
cp "$root/README.md" "$stage/"
[ -d "$root/docs" ] && cp -r "$root/docs" "$stage/share/doc/biostack/"
doc="$stage/share/doc/biostack"
lic="$doc/licenses"
rm -rf "$lic"
mkdir -p "$lic"
jar_file() { # the jar of lib/ whose name starts with $1 (exactly one)
  local f
  f=$(ls "$stage/lib/$1"*.jar 2>/dev/null) || true
  [ -n "$f" ] && [ "$(wc -l <<<"$f")" = 1 ] || { say "not one lib/$1*.jar: '$f'"; exit 1; }
  echo "$f"
}
manifest() { unzip -p "$1" META-INF/MANIFEST.MF | tr -d '\r' | sed -n "s/^$2: //p" | head -n 1; }
prom=$(jar_file prometheus-metrics-core-)
# The Apache License 2.0, from the Prometheus client's jar (picocli's jar carries no text).
unzip -p "$prom" META-INF/LICENSE > "$lic/Apache-2.0"
grep -q 'Apache License' "$lic/Apache-2.0" && grep -q 'Version 2.0, January 2004' "$lic/Apache-2.0" \
  || { say "$(basename "$prom") META-INF/LICENSE is not the Apache License 2.0"; exit 1; }
unzip -p "$prom" META-INF/NOTICE > "$lic/Prometheus-NOTICE"
hdr=$(jar_file HdrHistogram-)
unzip -p "$hdr" META-INF/LICENSE.txt > "$lic/HdrHistogram-LICENSE.txt"
# BouncyCastle's jars carry their licence as a class, org.bouncycastle.LICENSE, whose main prints it.
"$stage/runtime/bin/java" -cp "$(jar_file bcprov-)" org.bouncycastle.LICENSE > "$lic/BouncyCastle-LICENSE"
for f in Apache-2.0 Prometheus-NOTICE HdrHistogram-LICENSE.txt BouncyCastle-LICENSE; do
  [ -s "$lic/$f" ] || { say "licences/$f is empty"; exit 1; }
done
{
  cat <<TXT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: biostack
Comment: The components this archive bundles, each with its licence; the full texts are in
 share/doc/biostack/licenses/, taken from the bundled jars when the archive was built.
 biostack itself (bin/, lib/$name.jar, share/) states no licence of its own yet: that is
 its owners' decision.

Files: runtime/*
Copyright: Oracle and/or its affiliates, and the other OpenJDK contributors
License: GPL-2 with Classpath exception
 The Java runtime, made by jlink from $("$stage/runtime/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.vendor = //p') $("$stage/runtime/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.runtime.version = //p').
 Its licence and the notices of every module in it are in runtime/legal/.
TXT
  for j in "$stage"/lib/*.jar; do
    b=$(basename "$j")
    echo
    echo "Files: lib/$b"
    case $b in
      "$name.jar")
        echo "Copyright: the biostack authors"
        echo "License: none stated"
        echo " biostack states no licence yet." ;;
      picocli-*)
        echo "Copyright: $(manifest "$j" Implementation-Vendor)"
        echo "License: Apache-2.0"
        echo " The full text is in share/doc/biostack/licenses/Apache-2.0." ;;
      HdrHistogram-*)
        echo "Copyright: $(grep -o 'Copyright (c) .*' "$lic/HdrHistogram-LICENSE.txt" | sed 's/^Copyright (c) //' | paste -sd ';' | sed 's/;/; /g')"
        echo "License: public-domain or BSD-2-clause"
        echo " Released to the public domain (CC0 1.0), and also under the BSD 2-Clause License;"
        echo " both are in share/doc/biostack/licenses/HdrHistogram-LICENSE.txt." ;;
      bcprov-*|bcpkix-*|bctls-*|bcutil-*)
        echo "Copyright: $(head -n 1 "$lic/BouncyCastle-LICENSE" | sed -e 's/^Copyright (c) //' -e 's/ *$//')"
        echo "License: MIT"
        echo " The Bouncy Castle licence, an MIT licence; the full text is in"
        echo " share/doc/biostack/licenses/BouncyCastle-LICENSE." ;;
      prometheus-metrics-*)
        unzip -p "$j" META-INF/LICENSE | cmp -s - "$lic/Apache-2.0" \
          || { say "$b: its META-INF/LICENSE is not the Apache-2.0 text of $(basename "$prom")"; exit 1; }
        echo "Copyright: $(grep -m 1 '^Copyright' "$lic/Prometheus-NOTICE" | sed 's/^Copyright //')"
        echo "License: Apache-2.0"
        echo " The full text is in share/doc/biostack/licenses/Apache-2.0; the NOTICE of the"
        echo " Prometheus client is in share/doc/biostack/licenses/Prometheus-NOTICE." ;;
      *)
        say "no licence known for lib/$b: say in scripts/release-assemble.sh where its text is"
        exit 1 ;;
    esac
  done
} > "$doc/copyright"

say "tar"
tar -C "$target/release" --owner=0 --group=0 --numeric-owner -czf "$archive" "$name"
say "$archive ($(du -h "$archive" | cut -f1); unpacked $(du -sh "$stage" | cut -f1))"
