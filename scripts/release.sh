#!/usr/bin/env bash
# Builds the release archive: target/biostack-VERSION-linux-x86_64.tar.gz (see docs/release.md).
# The same as `mvn -P release package` with the tests skipped; pass -DskipTests=false to run them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/scripts/java-env.sh"
cd "$root"
exec mvn -B -ntp -q -Dstyle.color=never -P release -DskipTests "$@" package
