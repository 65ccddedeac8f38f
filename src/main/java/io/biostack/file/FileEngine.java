package io.biostack.file;

import io.biostack.block.Bio;

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

    /** Finishes every bio in flight, then stops. */
    void shutdown();
}
