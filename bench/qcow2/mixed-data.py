#!/usr/bin/env python3
# A guest disk's mix for the zstd benches (zstd-encode.sh, zstd-decode.sh), the same bytes for
# both: per 64 KiB, half text-like (compressible), a quarter nearly zero, a quarter random.
#   bench/qcow2/mixed-data.py FILE MIB
import os, random, sys
random.seed(15); words = [b"qcow2", b"cluster", b"the", b"of", b"refcount", b"\n", b"zstd", b"block", b"table"]
out = bytearray()
while len(out) < int(sys.argv[2]) << 20:
    k = len(out) // 65536 % 4
    if k < 2: out += b" ".join(random.choice(words) for _ in range(14000))[:65536]
    elif k == 2: out += bytes(65000) + os.urandom(536)
    else: out += os.urandom(65536)
open(sys.argv[1], "wb").write(out[: int(sys.argv[2]) << 20])
