#!/usr/bin/python3
# An incremental backup client, as virtnbdbackup or a libvirt pull-backup client reads: the dirty
# ranges that `nbdinfo --map=qemu:dirty-bitmap:BM` listed are read from the backup view's export
# with several requests in flight per connection, on several connections when the server sets
# NBD_FLAG_CAN_MULTI_CONN, and written into the backup file at their offsets. No biostack code:
# libnbd's python binding (python3-libnbd), run by the system python.
#
#   incremental.py URI MAPFILE BACKUPFILE [--connections N] [--inflight N] [--max-request BYTES]
#
# Prints "BYTES_READ SECONDS CONNECTIONS" on one line.
import argparse
import os
import sys
import threading
import time

import nbd

ap = argparse.ArgumentParser()
ap.add_argument("uri")
ap.add_argument("map")
ap.add_argument("out")
ap.add_argument("--connections", type=int, default=4)
ap.add_argument("--inflight", type=int, default=16, help="requests in flight per connection")
ap.add_argument("--max-request", type=int, default=4 << 20)
a = ap.parse_args()

t0 = time.monotonic()
ranges = []
with open(a.map) as f:
    for line in f:
        x = line.split()
        # nbdinfo --map: OFFSET LENGTH TYPE [DESCRIPTION]; qemu:dirty-bitmap type 1 is dirty
        if len(x) >= 3 and x[2] == "1":
            off, ln = int(x[0]), int(x[1])
            end = off + ln
            while off < end:
                n = min(a.max_request, end - off)
                ranges.append((off, n))
                off += n
total = sum(n for _, n in ranges)

first = nbd.NBD()
first.connect_uri(a.uri)
conns = a.connections if first.can_multi_conn() else 1
handles = [first] + [nbd.NBD() for _ in range(conns - 1)]
for h in handles[1:]:
    h.connect_uri(a.uri)
fd = os.open(a.out, os.O_WRONLY)
errors = []


def worker(h, mine):
    # The client's buffers are its own and never read before a successful read fills them.
    h.set_pread_initialize(False)
    state = {"inflight": 0}

    # Buffers are reused, by size: a fresh 64 KiB buffer per read cost the allocator an
    # mprotect and 16 page faults each time (strace: one mprotect per read).
    free = {}

    def done(buf, pos, err):
        state["inflight"] -= 1
        if err.value:
            errors.append(f"read at {pos}: {os.strerror(err.value)}")
        else:
            os.pwrite(fd, buf.to_buffer(), pos)
        free.setdefault(len(buf), []).append(buf)
        return 1

    for pos, n in mine:
        while state["inflight"] >= a.inflight:
            h.poll(-1)
        spare = free.get(n)
        buf = spare.pop() if spare else nbd.Buffer(n)
        state["inflight"] += 1
        h.aio_pread(buf, pos, lambda err, b=buf, p=pos: done(b, p, err))
    while state["inflight"] > 0:
        h.poll(-1)


# Interleaved (range i to connection i mod N): together the connections sweep the device in
# offset order, as one sorted stream would.
threads = [threading.Thread(target=worker, args=(h, ranges[i::conns])) for i, h in enumerate(handles)]
for t in threads:
    t.start()
for t in threads:
    t.join()
os.close(fd)
for h in handles:
    h.shutdown()
if errors:
    print("\n".join(errors[:10]), file=sys.stderr)
    sys.exit(1)
print(total, f"{time.monotonic() - t0:.3f}", conns)
