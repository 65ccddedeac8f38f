# Sourced by ./biostack and ./run-tests: finds a JDK 25 or newer and exports JAVA_HOME.
# Order: JAVA_HOME when it is 25+, then the usual install places. No downloads.
_biostack_java_major() {
  # prints the feature version of the java binary given, or nothing. The JDK's release file says
  # it without starting a JVM (half a second each, and the JDK 17s come first in /usr/lib/jvm);
  # a JDK without one is asked directly.
  local home=${1%/bin/java} v
  if [ -r "$home/release" ]; then
    v=$(sed -n 's/^JAVA_VERSION="\([0-9][0-9]*\).*/\1/p' "$home/release" | head -n 1)
    if [ -n "$v" ]; then echo "$v"; return 0; fi
  fi
  "$1" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9][0-9]*\).*/\1/p' | head -n 1
}

_biostack_find_jdk() {
  local cand major
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/javac" ]; then
    major=$(_biostack_java_major "$JAVA_HOME/bin/java")
    if [ -n "$major" ] && [ "$major" -ge 25 ]; then echo "$JAVA_HOME"; return 0; fi
  fi
  for cand in /usr/lib/jvm/* /opt/java/* /opt/jdk* /usr/local/lib/jvm/* "$HOME"/.sdkman/candidates/java/* "$HOME"/.jdks/*; do
    [ -x "$cand/bin/javac" ] || continue
    major=$(_biostack_java_major "$cand/bin/java")
    if [ -n "$major" ] && [ "$major" -ge 25 ]; then echo "$cand"; return 0; fi
  done
  return 1
}

if ! BIOSTACK_JDK=$(_biostack_find_jdk); then
  echo "biostack: needs a JDK 25 or newer and found none (JAVA_HOME=${JAVA_HOME:-unset}, /usr/lib/jvm/*)." >&2
  echo "biostack: install one, e.g. 'apt-get install openjdk-25-jdk-headless' or Temurin 25, or set JAVA_HOME." >&2
  exit 1
fi
export JAVA_HOME="$BIOSTACK_JDK"
export PATH="$JAVA_HOME/bin:$PATH"
export MAVEN_OPTS="${MAVEN_OPTS:-} --sun-misc-unsafe-memory-access=allow --enable-native-access=ALL-UNNAMED"
