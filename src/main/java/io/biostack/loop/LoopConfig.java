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

    /**
     * The whole file, 512-byte blocks, writable, direct I/O and engine chosen automatically.
     *
     * @return the default configuration (offset 0, no size limit, no creation)
     */
    public static LoopConfig defaults() {
        return new LoopConfig(0, 0, 512, false, DirectIoMode.AUTO, EngineKind.AUTO, 0);
    }

    /**
     * This config with {@link #offset()} set.
     *
     * @param v bytes of the file to skip, a multiple of the logical block size
     * @return a new config; this one is unchanged
     */
    public LoopConfig withOffset(long v) { return new LoopConfig(v, sizeLimit, logicalBlockSize, readOnly, directIo, engine, createSize); }
    /**
     * This config with {@link #sizeLimit()} set.
     *
     * @param v the largest device size in bytes, 0 for up to the end of the file
     * @return a new config; this one is unchanged
     */
    public LoopConfig withSizeLimit(long v) { return new LoopConfig(offset, v, logicalBlockSize, readOnly, directIo, engine, createSize); }
    /**
     * This config with {@link #logicalBlockSize()} set.
     *
     * @param v 512, 1024, 2048 or 4096
     * @return a new config; this one is unchanged
     */
    public LoopConfig withLogicalBlockSize(int v) { return new LoopConfig(offset, sizeLimit, v, readOnly, directIo, engine, createSize); }
    /**
     * This config with {@link #readOnly()} set.
     *
     * @param v true to refuse writes, discards and write-zeroes
     * @return a new config; this one is unchanged
     */
    public LoopConfig withReadOnly(boolean v) { return new LoopConfig(offset, sizeLimit, logicalBlockSize, v, directIo, engine, createSize); }
    /**
     * This config with {@link #directIo()} set.
     *
     * @param v on, off or auto
     * @return a new config; this one is unchanged
     */
    public LoopConfig withDirectIo(DirectIoMode v) { return new LoopConfig(offset, sizeLimit, logicalBlockSize, readOnly, v, engine, createSize); }
    /**
     * This config with {@link #engine()} set.
     *
     * @param v the file engine to use, or automatic choice
     * @return a new config; this one is unchanged
     */
    public LoopConfig withEngine(EngineKind v) { return new LoopConfig(offset, sizeLimit, logicalBlockSize, readOnly, directIo, v, createSize); }
    /**
     * This config with {@link #createSize()} set.
     *
     * @param v the size in bytes to create a missing file at (sparse), 0 to refuse a missing file
     * @return a new config; this one is unchanged
     */
    public LoopConfig withCreateSize(long v) { return new LoopConfig(offset, sizeLimit, logicalBlockSize, readOnly, directIo, engine, v); }
}
