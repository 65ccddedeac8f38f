#!/usr/bin/env bash
# The release, end to end (issue 18): unpacks the archive into an empty folder and runs it with
# PATH and JAVA_HOME free of any JDK and of Maven: --version, serve with nbdinfo against it,
# dm ls on a served stack, man on a page, the completion script through bash -n.
# Usage: scripts/release-check.sh [ARCHIVE]   (default: target/biostack-*-linux-x86_64.tar.gz)
# .ci/run runs it after scripts/release.sh. Needs nbdinfo (libnbd-bin) and man (man-db).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
archive=${1:-$(ls "$root"/target/biostack-*-linux-x86_64.tar.gz | head -n 1)}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "release-check: FAIL: $*" >&2; exit 1; }
say() { echo "release-check: $*" >&2; }

# A PATH of the host's tools without java, javac, jlink, mvn and the like.
mkdir "$work/path" "$work/home" "$work/unpacked"
for d in /bin /usr/bin /usr/local/bin; do   # later ones shadow earlier ones, as on the PATH
  ln -sf "$d"/* "$work/path/" 2>/dev/null || true
done
(cd "$work/path" && rm -f java javac jar jlink jshell jcmd jps jdeps jpackage keytool jaotc serialver \
  rmiregistry jrunscript jexec mvn mvnw)
run() { env -i HOME="$work/home" PATH="$work/path" LANG=C.UTF-8 TERM=dumb "$@"; }
# For `run_bg ... &`: exec makes the background job the program itself, so the cleanup's kill reaches
# serve; with run, $! was a subshell, and serve outlived the check.
run_bg() { exec env -i HOME="$work/home" PATH="$work/path" LANG=C.UTF-8 TERM=dumb "$@"; }
run sh -c 'command -v java' >/dev/null 2>&1 && fail "java still on the PATH"
run sh -c 'command -v mvn' >/dev/null 2>&1 && fail "mvn still on the PATH"

tar -C "$work/unpacked" -xzf "$archive"
rel=$(ls -d "$work"/unpacked/biostack-*)
bs="$rel/bin/biostack"
version=$(basename "$rel"); version=${version#biostack-}

out=$(run "$bs" --version) || fail "--version exits $?"
[ "$out" = "biostack $version" ] || fail "--version printed '$out', not 'biostack $version'"
say "--version: $out"

# The AOT caches are taken (their class paths and options match the launcher's). --version runs
# the fast path from lib/short.aot and loads no picocli class; --help runs picocli from
# lib/biostack.aot: the release rewrites picocli's Java 5 class files so that the cache can link
# them (the JVM loads an unlinkable class from its jar instead, which costs every start).
loads=$(run env BIOSTACK_JAVA_OPTS=-Xlog:class+load "$bs" --version) || fail "--version with -Xlog:class+load"
for cls in io.biostack.cli.Main io.biostack.cli.FastPath; do
  grep -qF "] $cls source: shared objects file" <<<"$loads" \
    || fail "$cls does not come from the AOT cache: $(grep -F "] $cls source" <<<"$loads")"
done
grep -q 'picocli' <<<"$loads" && fail "--version loads picocli: $(grep -m 3 picocli <<<"$loads")"
loads=$(run env BIOSTACK_JAVA_OPTS=-Xlog:class+load "$bs" --help) || fail "--help with -Xlog:class+load"
for cls in io.biostack.cli.Main picocli.CommandLine 'picocli.CommandLine$Model$CommandSpec'; do
  grep -qF "] $cls source: shared objects file" <<<"$loads" \
    || fail "$cls does not come from the AOT cache: $(grep -F "] $cls source" <<<"$loads")"
done
say "AOT caches: --version from short.aot without picocli, --help with picocli from biostack.aot"

# The licences: share/doc/biostack/copyright names every jar of lib/, and the texts it points at
# are there.
copyright="$rel/share/doc/biostack/copyright"
[ -s "$copyright" ] || fail "no $copyright"
for j in "$rel"/lib/*.jar; do
  grep -qxF "Files: lib/$(basename "$j")" "$copyright" || fail "copyright does not name lib/$(basename "$j")"
done
for f in $(grep -o 'share/doc/biostack/licenses/[A-Za-z0-9._-]*[A-Za-z0-9]' "$copyright" | sort -u); do
  [ -s "$rel/$f" ] || fail "copyright points at $f, which is missing or empty"
done
grep -q '^License: Apache-2.0' "$copyright" && grep -q '^License: MIT' "$copyright" \
  || fail "copyright lacks the Apache-2.0 or MIT components"
say "copyright: $(grep -c '^Files: lib/' "$copyright") jars, texts in share/doc/biostack/licenses"

# serve disk.img, and nbdinfo against it
cd "$work"
truncate -s 64M disk.img
run_bg "$bs" serve disk.img --listen none --socket "$work/nbd.sock" >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -S "$work/nbd.sock" ] && break; sleep 0.05; done
size=$(run nbdinfo --size "nbd+unix:///?socket=$work/nbd.sock") || { cat "$work/serve.log" >&2; fail "nbdinfo"; }
[ "$size" = 67108864 ] || fail "nbdinfo --size says $size, not 67108864"
say "serve disk.img: nbdinfo --size $size"

# dm ls on a served stack
printf 'a: ram 1M\nlin: 0 1M linear a 0\n' > s.stack
run_bg "$bs" serve --stack s.stack --export lin --control "$work/ctl" --listen none --socket "$work/s.sock" \
  >"$work/stack.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -S "$work/ctl" ] && break; sleep 0.05; done
ls_out=$(run "$bs" dm --control "$work/ctl" ls) || { cat "$work/stack.log" >&2; fail "dm ls"; }
grep -q '^lin' <<<"$ls_out" || fail "dm ls does not list lin: $ls_out"
say "dm ls: $(tr '\n' ' ' <<<"$ls_out")"
# the other commands of the launcher's short class path: dm through picocli (stats --interval)
# and img info, with the error of an absent image (the fast path leaves it to picocli)
st=$(run "$bs" dm --control "$work/ctl" stats --interval 0.1 --count 1 --json) || fail "dm stats --interval: $st"
grep -q '"device":"lin"' <<<"$st" || fail "dm stats --interval does not show lin: $st"
run "$bs" img create -q -f qcow2 "$work/small.qcow2" 64M || fail "img create"
info=$(run "$bs" img info "$work/small.qcow2") || fail "img info: $info"
grep -qx 'virtual size: 64 MiB (67108864 bytes)' <<<"$info" || fail "img info says: $info"
code=0; err=$(run "$bs" img info "$work/absent.qcow2" 2>&1) || code=$?
[ "$code" = 1 ] && grep -q "Could not open '$work/absent.qcow2'" <<<"$err" \
  || fail "img info on an absent image: exit $code, '$err'"
say "dm stats --interval, img info, img info on an absent image (exit 1)"
# img convert both ways, page cache (the kernel's copy; main returns instead of System.exit, so a
# thread left running would hang it: hence the timeout) and O_DIRECT (the bio pipeline)
head -c 1M /dev/urandom > "$work/conv.raw"; truncate -s 16M "$work/conv.raw"
printf 'tail' | dd of="$work/conv.raw" bs=1 seek=$((12 << 20)) conv=notrunc status=none
run timeout 60 "$bs" img convert -O qcow2 "$work/conv.raw" "$work/conv.qcow2" || fail "img convert raw->qcow2 exits $?"
run timeout 60 "$bs" img convert -t none -T none -O raw "$work/conv.qcow2" "$work/back.raw" \
  || fail "img convert -t none qcow2->raw exits $?"
cmp "$work/conv.raw" "$work/back.raw" || fail "img convert round trip differs"
say "img convert raw->qcow2 (page cache) and back (-t none): equal"
truncate -s 32M "$work/small.luks"
printf secret > "$work/key"
run "$bs" luks format "$work/small.luks" --key-file "$work/key" --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  >/dev/null || fail "luks format"
dump=$(run "$bs" luks dump "$work/small.luks") || fail "luks dump: $dump"
grep -q '^Version:[[:space:]]*2' <<<"$dump" || fail "luks dump says: $dump"
say "luks format, luks dump"

# man pages: by file, and by name through --print-manpath
page=$(run man -l "$rel/share/man/man1/biostack-serve.1.gz" 2>&1) || fail "man -l biostack-serve.1.gz"
grep -q -- '--socket' <<<"$page" || fail "man biostack-serve shows no --socket"
manpath=$(run "$bs" --print-manpath)
run env MANPATH="$manpath" man biostack-dm 2>/dev/null | grep -q -- '--control' || fail "man biostack-dm (MANPATH=$manpath)"
say "man: biostack-serve, biostack-dm"

# the completion script parses, and completes a subcommand
comp="$rel/share/bash-completion/completions/biostack"
run bash -n "$comp" || fail "bash -n on the completion script"
words=$(run bash -c ". '$comp'; COMP_WORDS=(biostack se); COMP_CWORD=1; COMP_LINE='biostack se'; COMP_POINT=11; _complete_biostack; echo \"\${COMPREPLY[@]}\"" 2>/dev/null || true)
grep -qw serve <<<"$words" || fail "completion of 'biostack se' gave '$words'"
say "completion: 'biostack se' -> $words"
say "OK ($archive)"
