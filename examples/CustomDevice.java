import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BlockDevice;
import io.biostack.block.IoIter;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.layer.Linear;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;

/**
 * A block device of your own: a disk in a byte[]. Run: {@code examples/run CustomDevice}.
 *
 * <p>{@link BlockDevice#submit} is the whole contract: check the bio, move its bytes, call
 * {@link Bio#endIo()} exactly once. This device completes bios on the submitting thread; a device
 * over real I/O completes them later on its own threads. The library's layers stack on it as on
 * any device, and the future conveniences ({@code read}, {@code write}) come for free.
 */
public class CustomDevice {
    static final class HeapDisk implements BlockDevice {
        private final MemorySegment disk;
        private final QueueLimits limits = QueueLimits.builder().logicalBlockSize(512).build();

        HeapDisk(int bytes) {
            disk = MemorySegment.ofArray(new byte[bytes]);
        }

        @Override public String name() { return "heapdisk"; }
        @Override public long size() { return disk.byteSize(); }
        @Override public QueueLimits limits() { return limits; }
        @Override public boolean isReadOnly() { return false; }
        @Override public void close() { }

        @Override
        public void submit(Bio bio) {
            // Out of range, misaligned or too large: the bio fails with a clear status, nothing moves.
            if (!BioChecks.admit(bio, name(), size(), limits, isReadOnly())) {
                return;
            }
            MemorySegment here = disk.asSlice(bio.offset(), bio.size());
            switch (bio.op()) {
                case READ -> bio.copyFrom(here);                    // device -> the caller's memory
                case WRITE -> bio.copyTo(here);                     // the caller's memory -> device
                case DISCARD, WRITE_ZEROES -> here.fill((byte) 0);
                case FLUSH -> { }                                   // nothing volatile to flush
            }
            bio.endIo();                                            // exactly once; the bio goes back
        }
    }

    public static void main(String[] args) {
        try (HeapDisk disk = new HeapDisk(1 << 20)) {
            byte[] hello = "hello, block device".getBytes(StandardCharsets.US_ASCII);
            byte[] sector = new byte[512];
            System.arraycopy(hello, 0, sector, 0, hello.length);
            disk.write(4096, IoIter.of(sector), 0).join();

            // A library layer over it: a window that starts 4 KiB in, so its sector 0 is our 4096.
            Linear window = Linear.of("window", disk, 4096);
            byte[] back = new byte[512];
            window.read(0, IoIter.of(back)).join();
            System.out.println("read through linear: " + new String(back, 0, hello.length, StandardCharsets.US_ASCII));
            System.out.println("window size: " + window.size());

            // The bare contract: a bio with a callback, which runs once, here on this thread.
            Bio bio = new Bio().init(Op.READ, 0, disk.size(), b ->
                    System.out.println("end-io: " + b.status() + " (" + b.detail() + ")"));
            bio.addSegment(MemorySegment.ofArray(new byte[512]));
            disk.submit(bio);
        }
    }
}
