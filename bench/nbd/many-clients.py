#!/usr/bin/env python3
"""Issue 9's many-connections check, by hand: N NBD clients on a unix socket, each reading 4 KiB
once a second (fixed newstyle, NBD_OPT_GO, simple replies), for S seconds, while something else
(fio) measures a busy client's latency on the same server. Bounded: N sockets, S seconds.

    bench/nbd/many-clients.py SOCKET [--clients 1000] [--seconds 20] [--size BYTES]
"""
import argparse, os, random, socket, struct, sys, time

NBDMAGIC, IHAVEOPT = 0x4e42444d41474943, 0x49484156454F5054   # doc/proto.md "Newstyle negotiation"
OPT_GO, REP_ACK = 7, 1                                         # "Option types", "Option reply types"
REQUEST_MAGIC, SIMPLE_REPLY_MAGIC = 0x25609513, 0x67446698     # "Request message", "Simple reply"

def exact(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("server closed")
        b += c
    return bytes(b)

def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    magic, opt, _ = struct.unpack(">QQH", exact(s, 18))
    assert magic == NBDMAGIC and opt == IHAVEOPT
    s.sendall(struct.pack(">I", 3))                                       # FIXED_NEWSTYLE | NO_ZEROES
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, 6) + struct.pack(">IH", 0, 0))  # default export
    while True:
        _, _, rtype, rlen = struct.unpack(">QIII", exact(s, 20))
        exact(s, rlen)
        if rtype == REP_ACK:
            return s
        if rtype & 0x80000000:
            raise RuntimeError("GO refused: 0x%x" % rtype)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket"); ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=20); ap.add_argument("--size", type=int, default=1 << 30)
    a = ap.parse_args()
    t0 = time.time()
    conns = [connect(a.socket) for _ in range(a.clients)]
    print(f"{len(conns)} clients connected in {time.time() - t0:.1f} s", flush=True)
    rounds = errors = 0
    end = time.time() + a.seconds
    while time.time() < end:
        start = time.time()
        for i, s in enumerate(conns):
            off = random.randrange(a.size // 4096) * 4096
            s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, 0, i, off, 4096))
        for s in conns:
            magic, err, _ = struct.unpack(">IIQ", exact(s, 16))
            assert magic == SIMPLE_REPLY_MAGIC
            if err:
                errors += 1
            else:
                exact(s, 4096)
        rounds += 1
        time.sleep(max(0.0, 1.0 - (time.time() - start)))
    print(f"{rounds} rounds of {len(conns)} reads, {errors} errors", flush=True)

if __name__ == "__main__":
    main()
