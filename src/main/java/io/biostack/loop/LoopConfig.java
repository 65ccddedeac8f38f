package io.biostack.loop;

import io.biostack.file.EngineKind;

/**
 * How to set up a loop device, as {@code losetup} options say it.
 *
 * @param offset           bytes of the file skipped before the device starts ({@code --offset})
 * @param sizeLimit        largest device size in bytes, 0 = up to the end of the file ({@code --sizelimit})
 * @param logicalBlockSize 512, 1024, 2048 or 4096 ({@code --sector-size})
 * @param readOnly         refuse changes ({@code --read-only})
 * @param directIo         page cache or not ({@code --direct-io})
 * @param engine           which I/O engine
 * @param createSize       when the file is missing, create it sparse at this size; 0 = don't create
 */
public record LoopConfig(long offset, long sizeLimit, int logicalBlockSize, boolean readOnly,
                         DirectIoMode directIo, EngineKind engine, long createSize) {

    /** The whole file, 512-byte blocks, writable, direct I/O and engine chosen automatically. */
    public static LoopConfig defaults() {
        return new LoopConfig(0, 0, 512, false, DirectIoMode.AUTO, EngineKind.AUTO, 0);
    }

    /** This config with {@link #offset()} set. */
    public LoopConfig withOffset(long v) { return new LoopConfig(v, sizeLimit, logicalBlockSize, readOnly, directIo, engine, createSize); }
    /** This config with {@link #sizeLimit()} set. */
    public LoopConfig withSizeLimit(long v) { return new LoopConfig(offset, v, logicalBlockSize, readOnly, directIo, engine, createSize); }
    /** This config with {@link #logicalBlockSize()} set. */
    public LoopConfig withLogicalBlockSize(int v) { return new LoopConfig(offset, sizeLimit, v, readOnly, directIo, engine, createSize); }
    /** This config with {@link #readOnly()} set. */
    public LoopConfig withReadOnly(boolean v) { return new LoopConfig(offset, sizeLimit, logicalBlockSize, v, directIo, engine, createSize); }
    /** This config with {@link #directIo()} set. */
    public LoopConfig withDirectIo(DirectIoMode v) { return new LoopConfig(offset, sizeLimit, logicalBlockSize, readOnly, v, engine, createSize); }
    /** This config with {@link #engine()} set. */
    public LoopConfig withEngine(EngineKind v) { return new LoopConfig(offset, sizeLimit, logicalBlockSize, readOnly, directIo, v, createSize); }
    /** This config with {@link #createSize()} set. */
    public LoopConfig withCreateSize(long v) { return new LoopConfig(offset, sizeLimit, logicalBlockSize, readOnly, directIo, engine, v); }
}
