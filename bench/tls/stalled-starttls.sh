#!/usr/bin/env bash
# Issue 19's TLS flood, by hand: N clients that send NBD_OPT_STARTTLS, read its ACK and then send
# no ClientHello, against biostack serve --tls require on a unix socket. Prints the server's RSS
# growth (VmRSS from /proc/PID/status, after a warm-up of 50 such clients) over N of them, and
# per client. Bounded: N sockets on one unix socket, closed again at the end; loopback only.
#
# Usage: bench/tls/stalled-starttls.sh [--clients 1000]
# Env:   BIOSTACK  command that runs the biostack CLI (default: ./biostack of this checkout)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIOSTACK=${BIOSTACK:-$root/biostack}
CLIENTS=1000
while [ $# -gt 0 ]; do
  case $1 in
    --clients) CLIENTS=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
command -v certtool >/dev/null || { echo "bench: certtool is not installed" >&2; exit 2; }
"$BIOSTACK" --version >/dev/null # builds on first use
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
pki=$work/pki
mkdir -p "$pki"
tmpl() { printf '%s\n' "$@" >"$pki/t.tmpl"; }
certtool --generate-privkey --key-type=ecdsa --outfile "$pki/ca-key.pem" 2>/dev/null
tmpl 'cn = "bench CA"' ca cert_signing_key 'expiration_days = 2'
certtool --generate-self-signed --load-privkey "$pki/ca-key.pem" --template "$pki/t.tmpl" \
  --outfile "$pki/ca-cert.pem" 2>/dev/null
certtool --generate-privkey --key-type=ecdsa --outfile "$pki/server-key.pem" 2>/dev/null
tmpl 'cn = "localhost"' 'dns_name = "localhost"' tls_www_server encryption_key signing_key 'expiration_days = 2'
certtool --generate-certificate --load-privkey "$pki/server-key.pem" --load-ca-certificate "$pki/ca-cert.pem" \
  --load-ca-privkey "$pki/ca-key.pem" --template "$pki/t.tmpl" --outfile "$pki/server-cert.pem" 2>/dev/null

sock=$work/nbd.sock
"$BIOSTACK" serve --ram 64M --socket "$sock" --tls require --tls-certificates "$pki" \
  --handshake-budget $((CLIENTS + 100)) --handshake-timeout 120s >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q '^ready' "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready' "$work/serve.log" || { cat "$work/serve.log" >&2; exit 1; }
# The JVM's pid is the launcher's (exec).
python3 - "$sock" "$pid" "$CLIENTS" <<'PY'
import socket, struct, sys, time
path, pid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
IHAVEOPT, OPT_STARTTLS, REP_ACK = 0x49484156454F5054, 5, 1   # doc/proto.md "Option types"

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def exact(s, k):
    b = b""
    while len(b) < k:
        c = s.recv(k - len(b))
        if not c:
            raise EOFError("server closed")
        b += c
    return b

def stalled():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    exact(s, 18)
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, OPT_STARTTLS, 0))
    _, _, rtype, rlen = struct.unpack(">QIII", exact(s, 20))
    exact(s, rlen)
    assert rtype == REP_ACK, hex(rtype)
    return s

warm = [stalled() for _ in range(50)]
time.sleep(1)
before = rss_kib()
t0 = time.time()
conns = [stalled() for _ in range(n)]
time.sleep(2)
after = rss_kib()
print(f"{n} clients stalled after STARTTLS in {time.time() - t0:.1f} s")
print(f"server RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB: +{(after - before) / 1024:.1f} MiB,"
      f" {(after - before) / n:.1f} KiB per client")
for s in conns + warm:
    s.close()
PY
