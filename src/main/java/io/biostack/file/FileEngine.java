package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.sys.AnonymousMemory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Phase two of direct I/O: does a file bio's I/O against its backing file and completes it.
 *
 * <p>The engine receives bios whose memory the kernel may take as it is (native, alive, aligned
 * for the file) and whose size fits the file's limits: {@link BackingFile} bounces and splits
 * before. The bio's {@link Bio#driverData()} holds its {@link BackingFile}. The engine owns the
 * bio until it calls {@link Bio#endIo()}, exactly once, on one of its own threads.
 */
interface FileEngine {
    /** Takes {@code bio}; never blocks. */
    void submit(Bio bio);

    /** "io_uring (SINGLE_ISSUER|DEFER_TASKRUN)" or "threads (4)". */
    String describe();

    /** The kind actually running. */
    EngineKind kind();

    /**
     * Native memory for file bios, {@code bytes} long and aligned to {@code align} (at least
     * 4096): the engine may make it cheaper to do I/O on (io_uring: registered with the ring as a
     * fixed buffer). It belongs to {@code owner}, freed (and unregistered) when owner is closed,
     * which the caller does only after every bio over it has completed. Cold path: may wait for
     * the engine's thread. By default plain {@code owner} memory ({@link #plainIoMemory}).
     */
    default MemorySegment allocateIoMemory(long bytes, long align, Arena owner) {
        return plainIoMemory(bytes, align, owner);
    }

    /**
     * Zeroed native memory of {@code owner}, aligned to {@code align} (at least 4096). From
     * {@link #HUGE_IO_BYTES} up, an anonymous mapping with huge pages
     * ({@link AnonymousMemory#reserveHuge}): the kernel zero-fills it 2 MiB a fault as it is first
     * touched, where {@code Arena.allocate} zeroes it at once a 4 KiB fault at a time (16 MiB of
     * I/O buffers took 20 to 120 ms that way here, 2 ms with huge pages) and counts it against
     * {@code -XX:MaxDirectMemorySize}. Smaller sizes, or no mapping, come from {@code owner}.
     */
    static MemorySegment plainIoMemory(long bytes, long align, Arena owner) {
        if (bytes >= HUGE_IO_BYTES && align <= AnonymousMemory.HUGE_PAGE) {
            MemorySegment m = AnonymousMemory.reserveHuge(bytes, owner);
            if (m != null) {
                return m;
            }
        }
        return owner.allocate(bytes, Math.max(4096, align));
    }

    /** Smallest I/O memory mapped with huge pages: one huge page (below, a mapping wastes most of one). */
    long HUGE_IO_BYTES = AnonymousMemory.HUGE_PAGE;

    /** Finishes every bio in flight, then stops. */
    void shutdown();
}
