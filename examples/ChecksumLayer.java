import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BlockDevice;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.NbdServer;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import java.util.zip.CRC32C;

/**
 * A layer of your own, served over NBD: a CRC32C per 4 KiB block, kept in memory, checked on
 * every read. A block changed behind the layer's back reads as an I/O error.
 *
 * <pre>
 * examples/run ChecksumLayer [IMAGE [SOCKET]]      # IMAGE is created, 16 MiB, when missing
 * nbdinfo 'nbd+unix:///checked?socket=SOCKET'      # from another terminal
 * </pre>
 * Press Enter (or close stdin) to stop.
 */
public class ChecksumLayer {
    static final int BLOCK = 4096;

    /**
     * The layer. It owns none of the bios it is given for longer than their I/O: each goes down
     * as a clone, and the parent completes from the clone's end-io, which runs on the lower
     * device's I/O thread (so it only computes, never blocks). Concurrent reads and writes of one
     * block race as they would on a disk; a real layer would order them (dm-integrity locks ranges).
     */
    static final class Checksummed implements BlockDevice {
        private final String name;
        private final BlockDevice lower;
        private final QueueLimits limits;
        private final AtomicIntegerArray crcs;
        final AtomicLong badReads = new AtomicLong();
        final AtomicLong lastBadBlock = new AtomicLong(-1);

        Checksummed(String name, BlockDevice lower) {
            this.name = name;
            this.lower = lower;
            int lbs = Math.max(BLOCK, lower.limits().logicalBlockSize());
            // Whole blocks only, so every bio covers whole checksummed blocks; no discard (simpler).
            this.limits = lower.limits().toBuilder().logicalBlockSize(lbs)
                    .physicalBlockSize(Math.max(lbs, lower.limits().physicalBlockSize()))
                    .maxDiscardBytes(0).maxWriteZeroesBytes(0).build();
            this.crcs = new AtomicIntegerArray((int) (lower.size() / BLOCK));
            scrub();
        }

        /** Takes the checksums of what is on the device now (the data we trust from here on). */
        private void scrub() {
            try (Arena arena = Arena.ofShared()) {   // shared: the I/O completes on another thread
                MemorySegment buf = lower.allocateIoMemory(1 << 20, arena);
                for (long off = 0; off < size(); off += buf.byteSize()) {
                    MemorySegment piece = buf.asSlice(0, Math.min(buf.byteSize(), size() - off));
                    lower.read(off, piece).join();
                    for (long b = 0; b < piece.byteSize(); b += BLOCK) {
                        CRC32C crc = new CRC32C();
                        crc.update(piece.asSlice(b, BLOCK).asByteBuffer());
                        crcs.set((int) ((off + b) / BLOCK), (int) crc.getValue());
                    }
                }
            }
        }

        @Override public String name() { return name; }
        @Override public long size() { return crcs.length() * (long) BLOCK; }
        @Override public QueueLimits limits() { return limits; }
        @Override public boolean isReadOnly() { return lower.isReadOnly(); }
        @Override public void close() { }   // the lower device belongs to whoever opened it

        @Override
        public void submit(Bio bio) {
            if (!BioChecks.admit(bio, name, size(), limits, isReadOnly())) {
                return;
            }
            if (bio.op() == Op.FLUSH) {
                lower.submit(bio);                 // nothing of ours to do: hand the bio itself down
                return;
            }
            Bio clone = bio.cloneShallow(null);    // shares the caller's memory; a BioPool avoids the allocation
            clone.setPrivateData(bio);
            clone.setEndIo(this::lowerDone);
            lower.submit(clone);
        }

        /** The clone's end-io, on the lower device's thread: checksum, then complete the caller's bio. */
        private void lowerDone(Bio clone) {
            Bio bio = (Bio) clone.privateData();
            if (!clone.status().isOk()) {
                bio.setStatus(clone.status(), clone.detail());
            } else if (bio.op() == Op.WRITE) {
                forEachBlock(bio, (block, crc) -> crcs.set((int) block, crc));
            } else {
                forEachBlock(bio, (block, crc) -> {
                    if (crcs.get((int) block) != crc) {
                        badReads.incrementAndGet();
                        lastBadBlock.set(block);
                        bio.setStatus(Status.MEDIUM, "checksum mismatch in block " + block + " of " + name);
                    }
                });
            }
            bio.endIo();
        }

        interface BlockCrc { void accept(long block, int crc); }

        /** CRC32C of each 4 KiB block of the bio's memory (its pieces may end anywhere). */
        private static void forEachBlock(Bio bio, BlockCrc out) {
            long[] pos = {bio.offset()};
            CRC32C crc = new CRC32C();
            bio.forEachSegment((seg, off, len) -> {
                while (len > 0) {
                    long n = Math.min(len, BLOCK - pos[0] % BLOCK);
                    crc.update(seg.asSlice(off, n).asByteBuffer());
                    pos[0] += n;
                    off += n;
                    len -= n;
                    if (pos[0] % BLOCK == 0) {
                        out.accept(pos[0] / BLOCK - 1, (int) crc.getValue());
                        crc.reset();
                    }
                }
            });
        }
    }

    public static void main(String[] args) throws Exception {
        Path image = Path.of(args.length > 0 ? args[0] : "checksum-demo.img");
        Path socket = Path.of(args.length > 1 ? args[1] : "/tmp/checksum-demo.sock");
        try (LoopDevice disk = LoopDevice.open(image, LoopConfig.defaults().withCreateSize(16 << 20));
             Checksummed checked = new Checksummed("checked", disk);
             NbdServer server = NbdServer.builder().export("checked", checked).unixSocket(socket).start()) {
            System.out.println("checksummed " + checked.size() / BLOCK + " blocks of " + image);
            System.out.println("serving nbd+unix:///checked?socket=" + socket);
            System.out.flush();
            System.in.read();                            // until Enter or end of input
            server.close();
            System.out.println(checked.badReads.get() == 0 ? "no corrupted reads"
                    : "corrupted reads: " + checked.badReads.get() + ", last in block " + checked.lastBadBlock.get());
        }
    }
}
