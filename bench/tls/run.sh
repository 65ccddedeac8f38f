#!/usr/bin/env bash
# TLS benchmark (issue 7): fio's nbd engine over nbds+unix:// against
#   biostack serve --ram SIZE --tls-certificates DIR   and   nbdkit --tls=require --tls-certificates DIR memory SIZE,
# alternating job by job in the same run, on 4k randread QD32 and 1M read QD8; plus plain
# biostack serve --ram SIZE in the same rounds, so TLS's cost shows as server CPU per I/O
# (utime+stime of the server process from /proc/PID/stat over the job, divided by fio's I/Os).
#
# Usage: bench/tls/run.sh [--runtime SECONDS] [--rounds N] [--size SIZE] [--numjobs N] [--poll-us US]
#        --numjobs: fio jobs per measurement, each its own connection (default 2, issue 19: one
#        fio job was the limit, not the server); their figures are summed (group_reporting).
#        --poll-us US: passed to both biostack servers (default: serve's own, adaptive polling).
#        A polling reactor's spins count in its CPU per I/O; --poll-us 0 leaves them out (at 1M
#        over TLS it made no difference here: 615-990 us per I/O without, 603-1085 with).
#        --jobs "SPEC,SPEC": the fio jobs, each "RW BS IODEPTH" (default "randread 4k 32,read 1M 8";
#        "write 1M 8" measures the decryption of large writes).
#        --perf FILE: perf-records the biostack TLS server (perf record -F 1999 -g) during each of
#        its 1M jobs into FILE.TIME, with the JIT's symbols (-XX:+DumpPerfMapAtExit,
#        /tmp/perf-PID.map), for `perf report -i FILE.TIME --sort dso,sym` (where its CPU goes,
#        kernel and JIT stubs included).
#        --jfr FILE: records the biostack TLS server with JFR (settings=profile) into FILE, for
#        `jfr print --events jdk.ExecutionSample FILE` (where its CPU goes).
# Env:   BIOSTACK  command that runs the biostack CLI (default: ./biostack of this checkout)
#
# Client certificates: fio's nbd engine refuses URI parameters that name local files
# (tls-certificates=), so libnbd must find them in its default folder: $HOME/.pki/libnbd, or
# /etc/pki/libnbd for root. The script never touches /etc: it gives fio a private HOME, and when
# run as root it runs fio as nobody (setpriv) so that libnbd looks in that HOME.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIOSTACK=${BIOSTACK:-$root/biostack}
RUNTIME=10
ROUNDS=1
SIZE=1G
NUMJOBS=2
JFR=
PERF=
POLL=()
JOBS="randread 4k 32,read 1M 8"
while [ $# -gt 0 ]; do
  case $1 in
    --runtime) RUNTIME=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    --size) SIZE=$2; shift 2;;
    --numjobs) NUMJOBS=$2; shift 2;;
    --jfr) JFR=$2; shift 2;;
    --perf) PERF=$2; shift 2;;
    --jobs) JOBS=$2; shift 2;;
    --poll-us) POLL=(--poll-us "$2"); shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
IFS=, read -r -a specs <<<"$JOBS"
for t in fio nbdkit certtool python3; do
  command -v $t >/dev/null || { echo "bench: $t is not installed" >&2; exit 2; }
done
"$BIOSTACK" --version >/dev/null # builds on first use
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# ---- certificates (certtool, as nbdkit's manual does it) ------------------------------------
pki=$work/pki
mkdir -p "$pki" "$work/home/.pki/libnbd"
tmpl() { printf '%s\n' "$@" >"$pki/t.tmpl"; }
certtool --generate-privkey --key-type=ecdsa --outfile "$pki/ca-key.pem" 2>/dev/null
tmpl 'cn = "bench CA"' ca cert_signing_key 'expiration_days = 2'
certtool --generate-self-signed --load-privkey "$pki/ca-key.pem" --template "$pki/t.tmpl" \
  --outfile "$pki/ca-cert.pem" 2>/dev/null
certtool --generate-privkey --key-type=ecdsa --outfile "$pki/server-key.pem" 2>/dev/null
tmpl 'cn = "localhost"' 'dns_name = "localhost"' tls_www_server encryption_key signing_key 'expiration_days = 2'
certtool --generate-certificate --load-privkey "$pki/server-key.pem" --load-ca-certificate "$pki/ca-cert.pem" \
  --load-ca-privkey "$pki/ca-key.pem" --template "$pki/t.tmpl" --outfile "$pki/server-cert.pem" 2>/dev/null
certtool --generate-privkey --key-type=ecdsa --outfile "$pki/client-key.pem" 2>/dev/null
tmpl 'cn = "bench"' tls_www_client encryption_key signing_key 'expiration_days = 2'
certtool --generate-certificate --load-privkey "$pki/client-key.pem" --load-ca-certificate "$pki/ca-cert.pem" \
  --load-ca-privkey "$pki/ca-key.pem" --template "$pki/t.tmpl" --outfile "$pki/client-cert.pem" 2>/dev/null
cp "$pki/ca-cert.pem" "$pki/client-cert.pem" "$pki/client-key.pem" "$work/home/.pki/libnbd/"
chmod -R a+rX "$work/home"

# fio as a user whose default libnbd folder is $work/home/.pki/libnbd.
as_client() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$work/home" "$@"
  else
    env HOME="$work/home" "$@"
  fi
}

# Starts a server in the background, waits for its socket and opens it to fio's user.
start() {
  local sock=$1; shift
  "$@" >"$work/$(basename "$sock").log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    if [ -S "$sock" ]; then chmod 666 "$sock"; return 0; fi
    sleep 0.1
  done
  echo "bench: server did not come up: $*" >&2; cat "$work/$(basename "$sock").log" >&2; exit 1
}

# The JVM under a launcher script: the pid itself when it is java, else its java child.
java_pid() { if [ "$(cat /proc/$1/comm)" = java ]; then echo "$1"; else pgrep -P "$1" java | head -1; fi; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One fio job; prints "iops MiB/s cpu_us_per_io". $1=uri $2=server pid $3=rw $4=bs $5=iodepth
job() {
  local t0 t1 json
  t0=$(cpu_ticks "$2")
  local rec=
  if [ -n "$PERF" ] && [ "$2" = "$bs_tls_pid" ] && [ "$4" = 1M ]; then
    perf record -q -F 1999 -g -p "$(java_pid "$2")" -o "$PERF.$(date +%H%M%S%N)" >/dev/null 2>&1 &
    rec=$!
  fi
  json=$(as_client fio --name=j --ioengine=nbd --uri="$1" --rw="$3" --bs="$4" --iodepth="$5" --size="$SIZE" \
      --numjobs="$NUMJOBS" --group_reporting --runtime="$RUNTIME" --time_based --randrepeat=0 \
      --output-format=json 2>/dev/null) || {
    echo "bench: fio failed on $1" >&2; exit 1; }
  t1=$(cpu_ticks "$2")
  if [ -n "$rec" ]; then kill -INT "$rec"; wait "$rec" || true; fi
  echo "$json" | python3 -c '
import json, os, sys
text = sys.stdin.read()
j = json.loads(text[text.index("{"):])["jobs"][0]
d = j["write" if "write" in sys.argv[2] else "read"]
ticks = int(sys.argv[1]); hz = os.sysconf("SC_CLK_TCK")
ios = max(d["total_ios"], 1)
print("%.0f %.1f %.1f" % (d["iops"], d["bw"] / 1024, ticks / hz * 1e6 / ios))
' "$((t1 - t0))" "$3"
}

# Fills the export with data (reads of a sparse ramdisk would be holes, not data).
fill() {
  as_client fio --name=fill --ioengine=nbd --uri="$1" --rw=write --bs=1M --iodepth=8 --size="$SIZE" \
      --output-format=terse >/dev/null 2>&1 || { echo "bench: fill failed on $1" >&2; exit 1; }
}

# Untimed jobs first: the JVM's JIT compiles the TLS and NBD paths before anything is measured.
warm() {
  local spec
  for spec in "${specs[@]}"; do
    set -- $spec
    as_client fio --name=warm --ioengine=nbd --uri="$u" --rw="$1" --bs="$2" --iodepth="$3" --size="$SIZE" \
        --runtime=3 --time_based --output-format=terse >/dev/null 2>&1 || true
  done
}

row() { printf "%-20s %-16s %10s %10s %14s\n" "$@"; }

bs_tls=$work/biostack-tls.sock
bs_plain=$work/biostack-plain.sock
nk_tls=$work/nbdkit-tls.sock
jfr_opts=${BIOSTACK_JAVA_OPTS:-}
[ -n "$PERF" ] && jfr_opts="$jfr_opts -XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit"
[ -n "$JFR" ] && jfr_opts="$jfr_opts -XX:StartFlightRecording=filename=$JFR,settings=profile"
start "$bs_tls" env BIOSTACK_JAVA_OPTS="$jfr_opts" $BIOSTACK serve --ram "$SIZE" --socket "$bs_tls" --tls-certificates "$pki" "${POLL[@]}"
bs_tls_pid=${pids[-1]}
start "$bs_plain" $BIOSTACK serve --ram "$SIZE" --socket "$bs_plain" "${POLL[@]}"
bs_plain_pid=${pids[-1]}
start "$nk_tls" nbdkit -f -U "$nk_tls" --tls=require --tls-certificates "$pki" memory "$SIZE"
nk_tls_pid=${pids[-1]}
# libnbd checks the server's name; over a unix socket it must be told which (not a file).
u_bs_tls="nbds+unix:///?socket=$bs_tls&tls-hostname=localhost"
u_nk_tls="nbds+unix:///?socket=$nk_tls&tls-hostname=localhost"
u_bs_plain="nbd+unix:///?socket=$bs_plain"

echo "== TLS: runtime ${RUNTIME}s per job, $NUMJOBS fio jobs (connections) each, $ROUNDS round(s), alternating; export $SIZE in RAM, filled first"
echo "   biostack: $BIOSTACK serve --ram $SIZE --socket S --tls-certificates DIR   (TLS 1.3, X.509)"
echo "   nbdkit:   nbdkit -f -U S --tls=require --tls-certificates DIR memory $SIZE"
echo "   plain:    $BIOSTACK serve --ram $SIZE --socket S"
for u in "$u_bs_tls" "$u_nk_tls" "$u_bs_plain"; do fill "$u"; warm; done
echo
row "job" "server" "IOPS" "MiB/s" "CPU us/IO"
for spec in "${specs[@]}"; do
  set -- $spec
  name="$1 $2 QD$3"
  for r in $(seq 1 "$ROUNDS"); do
    b=$(job "$u_bs_tls" "$bs_tls_pid" "$1" "$2" "$3")
    k=$(job "$u_nk_tls" "$nk_tls_pid" "$1" "$2" "$3")
    p=$(job "$u_bs_plain" "$bs_plain_pid" "$1" "$2" "$3")
    row "$name" "biostack TLS" $b
    row "$name" "nbdkit TLS" $k
    row "$name" "biostack plain" $p
    python3 -c '
import sys
b, k, p = (list(map(float, s.split())) for s in sys.argv[1:4])
print("%-20s %-16s %10s %10s %14s" % ("", "ratios", "%.2fx" % (b[0] / k[0]), "%.2fx" % (b[1] / k[1]),
      "TLS/plain %.2fx" % (b[2] / p[2])))
' "$b" "$k" "$p"
  done
done
echo "   (ratios: IOPS and MiB/s biostack TLS / nbdkit TLS, aim >= 1; server CPU per I/O biostack TLS /"
echo "    biostack plain, aim <= 1.5)"
