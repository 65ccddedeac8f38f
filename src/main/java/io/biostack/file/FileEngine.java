package io.biostack.file;

import io.biostack.block.Bio;

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
     * the engine's thread. By default plain {@code owner} memory.
     */
    default MemorySegment allocateIoMemory(long bytes, long align, Arena owner) {
        return owner.allocate(bytes, Math.max(4096, align));
    }

    /** Finishes every bio in flight, then stops. */
    void shutdown();
}
