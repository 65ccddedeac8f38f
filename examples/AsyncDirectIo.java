import io.biostack.block.BioFlags;
import io.biostack.block.IoIter;
import io.biostack.file.BackingFile;
import io.biostack.file.DirectIo;
import io.biostack.file.EngineKind;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;

/**
 * Asynchronous direct I/O from a {@code byte[]} and from a {@code MemorySegment}, in flight at
 * the same time. Run: {@code examples/run AsyncDirectIo [FILE]} (FILE is created, 1 MiB).
 *
 * <p>Memory: the caller keeps it alive and untouched until the future completes. Native memory
 * aligned for O_DIRECT goes to the kernel as it is; a {@code byte[]} (the kernel may not be given
 * heap memory, the GC moves it) is copied through a bounce buffer. Futures complete on the
 * engine's I/O thread: a dependent stage ({@code thenApply}) runs there too, so it must not block.
 */
public class AsyncDirectIo {
    static final int LEN = 64 * 1024;

    public static void main(String[] args) throws Exception {
        Path path = Path.of(args.length > 0 ? args[0] : "directio-demo.img");
        BackingFile.createSparse(path, 1 << 20);
        byte[] heap = new byte[LEN];
        Arrays.fill(heap, (byte) 'A');

        // 1. DirectIo on a BackingFile: the file bio interface, O_DIRECT where the file system allows it.
        try (BackingFile file = open(path); Arena arena = Arena.ofShared()) {
            // Memory for the kernel: aligned for O_DIRECT (and registered with the ring where it can be).
            MemorySegment segment = file.allocateIoBuffers(LEN, arena);
            segment.fill((byte) 'B');
            IoIter fromHeap = IoIter.of(heap);
            IoIter fromNative = IoIter.of(segment);
            System.out.println("byte[] zero copy: " + DirectIo.zeroCopy(file, fromHeap));
            System.out.println("MemorySegment zero copy: " + DirectIo.zeroCopy(file, fromNative));

            CompletableFuture<Long> w1 = DirectIo.write(file, 0, fromHeap, 0);
            CompletableFuture<Long> w2 = DirectIo.write(file, LEN, fromNative, BioFlags.FUA);
            System.out.println("wrote " + (w1.join() + w2.join()) + " bytes in two writes in flight together");

            // Read them back crosswise: the segment's data into a byte[], the array's into the segment.
            byte[] back = new byte[LEN];
            CompletableFuture<Boolean> r1 = DirectIo.read(file, LEN, IoIter.of(back))
                    .thenApply(n -> back[0] == 'B' && back[LEN - 1] == 'B');     // runs on the I/O thread
            CompletableFuture<Boolean> r2 = DirectIo.read(file, 0, IoIter.of(segment))
                    .thenApply(n -> segment.get(java.lang.foreign.ValueLayout.JAVA_BYTE, LEN - 1) == 'A');
            System.out.println("read back: byte[] " + r1.join() + ", MemorySegment " + r2.join());
        }

        // 2. The same through a loop device: a BlockDevice, so layers and NBD can sit on it.
        try (LoopDevice dev = LoopDevice.open(path, LoopConfig.defaults());
             Arena arena = Arena.ofShared()) {
            MemorySegment seg = dev.allocateIoMemory(LEN, arena);
            dev.read(0, seg).thenCompose(v -> dev.write(2 * LEN, seg)).thenCompose(v -> dev.flush()).join();
            byte[] copy = new byte[LEN];
            dev.read(2 * LEN, IoIter.of(copy)).join();
            System.out.println("loop device " + dev.name() + ": copied block 0 to " + 2 * LEN + ": "
                    + (copy[0] == 'A' && copy[LEN - 1] == 'A'));
        }
    }

    /** O_DIRECT where the file system takes it (tmpfs does not), else through the page cache. */
    static BackingFile open(Path path) throws java.io.IOException {
        try {
            return BackingFile.open(path, true, false, EngineKind.AUTO);
        } catch (java.io.IOException e) {
            System.out.println("no O_DIRECT here (" + e.getMessage() + "): using the page cache");
            return BackingFile.open(path, false, false, EngineKind.AUTO);
        }
    }
}
