#!/usr/bin/env bash
# Fuzzes the qcow2 metadata parsers longer than the suite does (Qcow2MetadataFuzzTest).
#
#   scripts/fuzz-qcow2.sh [SECONDS] [SEED]      mutations of the seeds, SECONDS long (default 300),
#                                               from SEED (default: the time), device path included
#   JAZZER=1 scripts/fuzz-qcow2.sh [SECONDS]    Jazzer's coverage-guided @FuzzTest instead; needs a
#                                               Jazzer whose agent reads Java 25 class files (0.24's
#                                               does not: ASM "Unsupported class file major version 69")
#
# A failing input is kept as crash-N.qcow2 in the test's temporary folder; the message says where.
# Copy it into src/test/resources/io/biostack/layer/qcow2/Qcow2MetadataFuzzTestInputs/
# imageParsersAnswerEveryInputWithAResultOrAQcow2Error/ to make it a seed once it is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/java-env.sh
secs=${1:-300}
seed=${2:-$(date +%s)}
if [[ -n "${JAZZER:-}" ]]; then
  exec env JAZZER_FUZZ=1 mvn -B -ntp -o test -Djazzer.excluded=none -Dtest='Qcow2MetadataFuzzTest#imageParsers*' \
    -Djazzer.max_duration="${secs}s" -Dsurefire.failIfNoSpecifiedTests=false
fi
echo "fuzzing qcow2 metadata for ${secs}s from seed ${seed}"
exec mvn -B -ntp -o test-compile surefire:test@default-test -Dtest='Qcow2MetadataFuzzTest#mutated*' -Dqcow2.fuzz.seconds="$secs" \
  -Dqcow2.fuzz.seed="$seed" -Dqcow2.fuzz.device="${DEVICE:-true}" -Dsurefire.failIfNoSpecifiedTests=false
