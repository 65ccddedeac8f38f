#!/usr/bin/env bash
# Fuzzes a format parser longer than the suite does, coverage-guided by Jazzer.
#
#   scripts/fuzz.sh TARGET [ROUNDS]           ROUNDS runs of the target's @FuzzTest (default 1; a
#                                            round lasts the annotation's maxDuration: qcow2 60 s,
#                                            luks2 20 s, nbd and nbd-client 30 s), each going on
#                                            from the corpus the last left in .cifuzz-corpus/
#   scripts/fuzz.sh --mutate TARGET [SECONDS] [SEED]
#                                            the suite's blind mutations of the seeds instead, no
#                                            Jazzer (qcow2: SECONDS long, default 300, from SEED)
#
# Targets: qcow2 is Qcow2MetadataFuzzTest (header, extensions, snapshot table, bitmap directory,
# L1/L2/refcount walk, compressed clusters, the device's read path); luks2 is Luks2HeaderFuzzTest
# (binary headers and the JSON area); nbd is NbdHandshakeFuzzTest (the server's option haggling,
# on a plain server and on one that requires TLS); nbd-client is ClientHandshakeFuzzTest (the NBD
# leaf's handshake, against any server stream).
#
# Jazzer 0.24's agent cannot read Java 25 class files (its ASM stops at version 68), so the run
# adds scripts/FuzzClassVersionAgent.java as a -javaagent, which relabels biostack's classes as
# version 65 while they load. Without it every class is left uninstrumented and the corpus never
# grows past one input.
#
# A failing input makes the test fail; Jazzer keeps it under
# src/test/resources/io/biostack/layer/<target>/<Test>Inputs/<method>/, where the suite then runs
# it as a regression seed once the bug is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/java-env.sh
mutate=
if [[ "${1:-}" == --mutate ]]; then
  mutate=1
  shift
fi
case "${1:-}" in
  qcow2) test=io.biostack.layer.qcow2.Qcow2MetadataFuzzTest; fuzz='imageParsers*'; blind='mutated*' ;;
  luks2) test=io.biostack.layer.crypt.Luks2HeaderFuzzTest; fuzz='parserAnswers*'; blind='mutated*' ;;
  nbd) test=io.biostack.nbd.NbdHandshakeFuzzTest; fuzz='everyClientStream*'; blind='mutated*' ;;
  nbd-client) test=io.biostack.nbd.client.ClientHandshakeFuzzTest; fuzz='everyServerStream*'; blind='mutated*' ;;
  *) echo "usage: scripts/fuzz.sh [--mutate] qcow2|luks2|nbd|nbd-client [ROUNDS | SECONDS [SEED]]" >&2; exit 2 ;;
esac
shift
mvn -B -ntp -q -o test-compile
if [[ -n "$mutate" ]]; then
  secs=${1:-300}
  seed=${2:-$(date +%s)}
  echo "mutating the $test seeds for ${secs}s from seed ${seed} (not coverage-guided)"
  exec mvn -B -ntp -o surefire:test@default-test -Dtest="$test#$blind" -Dqcow2.fuzz.seconds="$secs" \
    -Dqcow2.fuzz.seed="$seed" -Dqcow2.fuzz.device="${DEVICE:-true}" -Dsurefire.failIfNoSpecifiedTests=false
fi
rounds=${1:-1}
agent=target/fuzz-agent
rm -rf "$agent"
mkdir -p "$agent"
"$JAVA_HOME/bin/javac" --release 21 -d "$agent" scripts/FuzzClassVersionAgent.java  # 21: Jazzer reads it too
printf 'Premain-Class: FuzzClassVersionAgent\n' >"$agent/MANIFEST.MF"
"$JAVA_HOME/bin/jar" cfm "$agent.jar" "$agent/MANIFEST.MF" -C "$agent" .
for r in $(seq "$rounds"); do
  echo "round $r of $rounds: $test#$fuzz, corpus $(find .cifuzz-corpus/"$test" -type f 2>/dev/null | wc -l) inputs"
  JAZZER_FUZZ=1 mvn -B -ntp -o surefire:test@default-test -Djazzer.excluded=none -Dtest="$test#$fuzz" \
    -Dfuzz.argLine="-javaagent:$PWD/$agent.jar" -Dsurefire.failIfNoSpecifiedTests=false
done
echo "corpus: $(find .cifuzz-corpus/"$test" -type f 2>/dev/null | wc -l) inputs in .cifuzz-corpus/$test"
