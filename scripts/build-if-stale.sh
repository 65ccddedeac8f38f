# Sourced by ./biostack and examples/run (after scripts/java-env.sh): builds with Maven on first
# use or when the sources changed, then sets BIOSTACK_CP to the classes and their dependencies.
_biostack_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_biostack_stamp="$_biostack_root/target/.built"
_biostack_needs_build=0
if [ ! -f "$_biostack_stamp" ]; then
  _biostack_needs_build=1
elif [ -n "$(find "$_biostack_root/src/main" "$_biostack_root/pom.xml" -newer "$_biostack_stamp" -print -quit 2>/dev/null)" ]; then
  _biostack_needs_build=1
fi
if [ "$_biostack_needs_build" = 1 ]; then
  echo "biostack: building (first use or sources changed)..." >&2
  (cd "$_biostack_root" && mvn -q -B -Dstyle.color=never -DskipTests package >&2) || { echo "biostack: build failed" >&2; exit 1; }
  touch "$_biostack_stamp"
fi
BIOSTACK_CP="$_biostack_root/target/classes:$_biostack_root/target/lib/*"
