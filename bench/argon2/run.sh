#!/usr/bin/env bash
# Argon2 unlock time (issue 16): a keyslot that `cryptsetup luksFormat --type luks2` made with its
# real defaults on this machine (argon2id tuned to about 2 s, its own memory and lanes, read back
# from the header), unlocked by `cryptsetup open --test-passphrase` against biostack's
# Argon2.derive and BouncyCastle's Argon2 with the same parameters, alternating round by round.
#
#   bench/argon2/run.sh [DIR] [--rounds N] [--skip-bc] [--volume IMG --key-file F]
#
# Each derivation runs in a fresh JVM (a cold unlock, as `biostack luks` would do it); the time
# printed is the derivation's own (JVM start excluded), next to the process's wall time from
# /usr/bin/time. Also printed per run: CPU time, peak heap, resident memory before and at its
# peak. The aim is biostack <= 1.5x cryptsetup's wall time. Shared machines are noisy: read the
# medians and the ratio of one run, and use more rounds when they disagree.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=/var/tmp
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then dir=$1; shift; fi
rounds=3; bc=1; vol=; keyfile=
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2;;
    --skip-bc) bc=0; shift;;
    --volume) vol=$2; shift 2;;
    --key-file) keyfile=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
command -v cryptsetup >/dev/null || { echo "cryptsetup is needed" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
. "$root/scripts/java-env.sh"
(cd "$root" && { mvn -q -B -o -DskipTests package >&2 2>/dev/null || mvn -q -B -DskipTests package >&2; } \
  && mvn -q -B -o test-compile >&2 && touch target/.built)
cp="$root/target/classes:$root/target/test-classes:$root/target/lib/*"
work=$(mktemp -d "$dir/bs-argon2.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ -z "$vol" ]; then
  vol=$work/vol.img; keyfile=$work/pass
  head -c 24 /dev/urandom | base64 >"$keyfile"
  truncate -s 64M "$vol"
  echo "\$ cryptsetup luksFormat --type luks2 -q --key-file $keyfile $vol   (cryptsetup's defaults)" >&2
  cryptsetup luksFormat --type luks2 -q --key-file "$keyfile" "$vol"
fi
read -r kdf t m p salt < <(cryptsetup luksDump --dump-json-metadata "$vol" | python3 -c '
import base64, json, sys
k = json.load(sys.stdin)["keyslots"]["0"]["kdf"]
print(k["type"], k["time"], k["memory"], k["cpus"], base64.b64decode(k["salt"]).hex())')
echo "keyslot 0: $kdf, time cost $t, memory $m KiB, $p lanes ($(nproc) cores here); load: $(cut -d' ' -f1-3 /proc/loadavg)"
jrun() { # impl -> "derive_s cpu_s process_wall_s", and the bench line on stderr
  local out line
  out=$( { /usr/bin/time -f "TIME %e" "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -Xmx2g -cp "$cp" \
      io.biostack.layer.crypt.Argon2Bench "$1" "$kdf" "$t" "$m" "$p" "$salt" "$keyfile" 1; } 2>&1)
  line=$(grep "^$1 " <<<"$out"); echo "  $line" >&2
  echo "$(sed -E 's/.*: ([0-9.]+) s wall, ([0-9.]+) s cpu.*/\1 \2/' <<<"$line") $(sed -n 's/^TIME //p' <<<"$out")"
}
cs=(); bs=(); bsp=(); bcs=()
for r in $(seq 1 "$rounds"); do
  c=$( { /usr/bin/time -f "%e %U %S" cryptsetup open --test-passphrase --key-file "$keyfile" "$vol"; } 2>&1 | tail -1)
  echo "round $r: cryptsetup open --test-passphrase: $c (wall user sys, s)" >&2
  cs+=("$(cut -d' ' -f1 <<<"$c")")
  read -r d _ w < <(jrun biostack); bs+=("$d"); bsp+=("$w")
  if [ "$bc" = 1 ]; then read -r d _ _ < <(jrun bc); bcs+=("$d"); fi
done
python3 - "${cs[*]}" "${bs[*]}" "${bsp[*]}" "${bcs[*]:-}" <<'PY'
import statistics, sys
c, b, bp = ([float(x) for x in a.split()] for a in sys.argv[1:4])
bc = [float(x) for x in sys.argv[4].split()]
mc, mb, mbp = statistics.median(c), statistics.median(b), statistics.median(bp)
print(f"cryptsetup open --test-passphrase: median {mc:.2f} s wall (runs {c})")
print(f"biostack Argon2.derive:            median {mb:.2f} s (runs {b}); whole JVM {mbp:.2f} s")
print(f"ratio biostack/cryptsetup: {mb/mc:.2f}x derive, {mbp/mc:.2f}x with JVM start (aim <= 1.5x)")
if bc:
    mbc = statistics.median(bc)
    print(f"BouncyCastle Argon2:               median {mbc:.2f} s (runs {bc}); ratio {mbc/mc:.2f}x cryptsetup, {mbc/mb:.2f}x biostack")
PY
