package io.biostack.loop;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Sizes;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;
import io.biostack.file.BackingFile;
import io.biostack.file.EngineKind;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A file as a block device (drivers/block/loop.c): device bios are checked against the device's
 * size and blocks, shifted by the offset, and handed to the backing file's
 * {@link BackingFile#submitFileBio}. No thread per request, no special async path: completion is
 * each bio's own end-io, called from the file's engine.
 *
 * <p>Thread-safe: any thread may submit. Bios complete on the backing file's engine thread (the
 * io_uring worker, or a pool thread of the threads engine), or on the submitting thread when
 * they are refused. Owns its {@link BackingFile}, which {@link #close()} closes.
 */
public final class LoopDevice implements BlockDevice, io.biostack.block.Resizable, io.biostack.block.ImageLocking {
    private static final System.Logger LOG = System.getLogger("biostack.loop");
    private static final AtomicInteger NEXT_INDEX = new AtomicInteger();

    private final String name;
    private final BackingFile file;
    private final LoopConfig config;
    private final QueueLimits limits;
    private volatile long size;

    private LoopDevice(String name, BackingFile file, LoopConfig config, long size) {
        this.name = name;
        this.file = file;
        this.config = config;
        this.size = size;
        QueueLimits fl = file.limits();
        this.limits = QueueLimits.builder()
                .logicalBlockSize(config.logicalBlockSize())
                .physicalBlockSize(Math.max(config.logicalBlockSize(), fl.physicalBlockSize()))
                .dmaAlignment(fl.dmaAlignment())
                .maxBytes(fl.maxBytes())
                .maxSegments(fl.maxSegments())
                .discardGranularity(Math.max(config.logicalBlockSize(), fl.discardGranularity()))
                .maxDiscardBytes(config.readOnly() ? 0 : fl.maxDiscardBytes())
                .maxWriteZeroesBytes(config.readOnly() ? 0 : fl.maxWriteZeroesBytes())
                .ioMin(Math.max(config.logicalBlockSize(), fl.ioMin()))
                .writeCache(true)
                .fua(true)
                .build();
    }

    /**
     * Opens a loop device named "loopN".
     *
     * @param file the backing file (or block device) to open
     * @param config the device's settings
     * @return the open device; the caller owns it and closes it
     * @throws IOException when the file can't be opened or created
     * @throws IllegalArgumentException when the settings are refused (the message says which and
     *         why)
     */
    public static LoopDevice open(Path file, LoopConfig config) throws IOException {
        return open("loop" + NEXT_INDEX.getAndIncrement(), file, config);
    }

    /**
     * Opens {@code file} as a block device ({@code losetup}). Refuses, with a message that says
     * why, a block size other than 512/1024/2048/4096, an offset or size limit that isn't a
     * multiple of it, direct I/O forced on where the file's alignment doesn't allow it, and a
     * missing file unless {@link LoopConfig#createSize()} asks to create it.
     *
     * @param name the device's name in messages and statistics
     * @param file the backing file (or block device) to open
     * @param config the device's settings
     * @return the open device; the caller owns it and closes it
     * @throws IOException when the file can't be opened or created
     * @throws IllegalArgumentException when the settings are refused (the message says which and
     *         why)
     */
    public static LoopDevice open(String name, Path file, LoopConfig config) throws IOException {
        int lbs = config.logicalBlockSize();
        if (lbs != 512 && lbs != 1024 && lbs != 2048 && lbs != 4096) {
            throw new IllegalArgumentException("sector size must be 512, 1024, 2048 or 4096, not " + lbs);
        }
        if (config.offset() < 0 || config.offset() % lbs != 0) {
            throw new IllegalArgumentException("offset " + config.offset() + " is not a multiple of the "
                    + lbs + "-byte sector size");
        }
        if (config.sizeLimit() < 0 || config.sizeLimit() % lbs != 0) {
            throw new IllegalArgumentException("size limit " + config.sizeLimit() + " is not a multiple of the "
                    + lbs + "-byte sector size");
        }
        if (!Files.exists(file)) {
            if (config.createSize() <= 0) {
                throw new IOException(file + ": no such file");
            }
            if (config.createSize() % lbs != 0) {
                throw new IllegalArgumentException("size " + config.createSize() + " is not a multiple of the "
                        + lbs + "-byte sector size");
            }
            BackingFile.createSparse(file, config.createSize());
        }
        boolean direct = decideDirect(file, config);
        BackingFile bf = BackingFile.open(file, direct, config.readOnly(), config.engine());
        try {
            long size = deviceSize(bf.size(), config, false);
            LoopDevice dev = new LoopDevice(name, bf, config, size);
            LOG.log(System.Logger.Level.DEBUG, () -> name + ": " + file + " " + Sizes.human(size)
                    + " direct-io=" + (direct ? "on" : "off") + " engine=" + bf.engineDescription());
            return dev;
        } catch (IOException | RuntimeException e) {
            bf.close();
            throw e;
        }
    }

    /**
     * loop.c's {@code lo_can_use_dio}: O_DIRECT only when the file system takes it at all
     * (FMODE_CAN_ODIRECT) and the offset and the logical block size are multiples of the file's
     * direct-I/O alignment. AUTO falls back to the page cache otherwise; ON is refused, saying why.
     */
    private static boolean decideDirect(Path file, LoopConfig c) throws IOException {
        if (c.directIo() == DirectIoMode.OFF) {
            return false;
        }
        int align = BackingFile.directIoAlignment(file);
        boolean fits = directIoFits(c.offset(), c.logicalBlockSize(), align);
        if ((fits || c.directIo() == DirectIoMode.ON) && !BackingFile.directIoSupported(file)) {
            if (c.directIo() == DirectIoMode.ON) {
                throw new IllegalArgumentException("direct I/O is not supported by the file system of " + file
                        + " (an O_DIRECT open fails with EINVAL); use --direct-io auto or off");
            }
            return false;
        }
        if (c.directIo() == DirectIoMode.ON && !fits) {
            throw new IllegalArgumentException("direct I/O needs the offset (" + c.offset() + ") and sector size ("
                    + c.logicalBlockSize() + ") to be multiples of " + file + "'s direct-I/O alignment (" + align
                    + "); use --direct-io auto or off, or --sector-size " + align);
        }
        return fits;
    }

    /** True when O_DIRECT can serve a device at {@code offset} with blocks of {@code lbs}. */
    static boolean directIoFits(long offset, int lbs, int align) {
        return offset % align == 0 && lbs % align == 0;
    }

    /**
     * The device's size for a file of {@code fileSize} bytes: whole logical blocks, as loop.c
     * counts them, or, once a read-only device {@link #growTo shows the part block}, rounded up.
     */
    private static long deviceSize(long fileSize, LoopConfig c, boolean showPart) {
        long avail = Math.max(0, fileSize - c.offset());
        int lbs = c.logicalBlockSize();
        if (showPart) {
            avail = (avail + lbs - 1) / lbs * lbs;
        }
        if (c.sizeLimit() > 0) {
            avail = Math.min(avail, c.sizeLimit());
        }
        return avail / lbs * lbs;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public QueueLimits limits() {
        return limits;
    }

    @Override
    public boolean isReadOnly() {
        return config.readOnly();
    }

    /**
     * True when the backing file is open with O_DIRECT.
     *
     * @return true when direct I/O is on, false when I/O goes through the page cache
     */
    public boolean isDirectIo() {
        return file.isDirect();
    }

    /**
     * The file under the device (owned by the device: don't close it).
     *
     * @return the backing file
     */
    public BackingFile backingFile() {
        return file;
    }

    /**
     * The configuration the device was opened with.
     *
     * @return the configuration as given to {@code open}
     */
    public LoopConfig config() {
        return config;
    }

    /**
     * Checks the bio against the device, shifts it by the offset and hands it to the file. The
     * bio's offset is changed in place (as the kernel remaps partitions); it completes on the
     * file's engine thread, or at once when it is bad.
     */
    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, size, limits, config.readOnly())) {
            return;
        }
        if (bio.op() != Op.FLUSH) {
            bio.setOffset(bio.offset() + config.offset());
        }
        file.submitFileBio(bio);
    }

    /**
     * Re-reads the file's size ({@code losetup --set-capacity}, loop.c {@code loop_set_size}): a
     * file that grew gives a bigger device. Returns the new size in bytes.
     *
     * @return the device size in bytes after the re-read
     * @throws IOException when the file's size can't be read
     */
    public synchronized long refreshCapacity() throws IOException {
        size = deviceSize(file.size(), config, showPart);
        return size;
    }

    /**
     * Takes qemu's image locks on the file for a format over this device (qcow2): qemu's tools
     * and a second biostack then refuse to write the image meanwhile, and this is refused when
     * one of them writes it. The file's locks, whatever this device's offset into it.
     *
     * @param write true when the format writes
     * @return the locks; close them before this device
     * @throws IOException when another user of the file conflicts
     */
    @Override
    public io.biostack.block.ImageLocking.Held lockImage(boolean write) throws IOException {
        return file.lockImage(write);
    }

    /** Set by {@link #showPartBlock}: the file's last part block is shown. Guarded by this. */
    private boolean showPart;

    /**
     * From now on, shows the file's last block when the file ends inside it, without changing
     * the file: it reads as the file's bytes, then zeros, as qemu's file-posix reads a file that
     * it sizes in whole sectors, rounded up (block.c {@code bdrv_refresh_total_sectors}), and a
     * write there extends the file. Read-only devices too. This is how a qemu format reads a
     * file that qemu left ending mid-sector (a compressed last cluster, an odd-sized raw backing
     * file), through the one path every read takes. Until then the device ends at the file's
     * last whole block, as loop.c's does.
     *
     * @return the device size afterwards
     * @throws IOException when the file's size can't be read
     */
    @Override
    public synchronized long showPartBlock() throws IOException {
        showPart = true;
        return refreshCapacity();
    }

    /**
     * Grows the file (ftruncate) so that the device is at least {@code minSize} bytes, then
     * re-reads its size. A loop device with a size limit, or over a block device, cannot grow.
     *
     * @param minSize the device size wanted, in bytes
     * @return the device size afterwards
     * @throws IOException when the file cannot grow
     */
    @Override
    public synchronized long growTo(long minSize) throws IOException {
        if (size >= minSize) {
            return size;
        }
        if (config.sizeLimit() > 0) {
            throw new IOException(name + " has a size limit of " + config.sizeLimit() + " bytes; it cannot grow");
        }
        int lbs = config.logicalBlockSize();
        file.extendTo(config.offset() + (minSize + lbs - 1) / lbs * lbs);
        return refreshCapacity();
    }

    /**
     * Shrinks the file (ftruncate) so that the device is {@code size} bytes rounded up to its
     * logical block size, then re-reads its size. A loop device with a size limit, read-only, or
     * over a block device does not shrink. No bio may be in flight past {@code size}.
     *
     * @param size the device size wanted, in bytes
     * @return true when the device is now at most that size, false when it cannot shrink
     * @throws IOException when ftruncate fails
     */
    @Override
    public synchronized boolean shrinkTo(long size) throws IOException {
        if (config.sizeLimit() > 0 || config.readOnly()) {
            return false;
        }
        int lbs = config.logicalBlockSize();
        long want = (size + lbs - 1) / lbs * lbs;
        if (!file.shrinkTo(config.offset() + want)) {
            return false;
        }
        refreshCapacity();
        return true;
    }

    /** Memory registered with the backing file's io_uring when it can be (see {@link BackingFile#allocateIoBuffers}). */
    @Override
    public MemorySegment allocateIoMemory(long bytes, Arena owner) {
        long align = Math.max(4096, limits.dmaAlignment());
        MemorySegment m = file.allocateIoBuffers(bytes, owner);
        return (m.address() & (align - 1)) == 0 ? m : BlockDevice.super.allocateIoMemory(bytes, owner);
    }

    /** Holes of the backing file, seen through the offset (SEEK_DATA / SEEK_HOLE). */
    @Override
    public Extent extentAt(long offset, long maxLength) {
        long len = Math.min(maxLength, size - offset);
        if (len <= 0) {
            return Extent.data(0);
        }
        long fileOff = offset + config.offset();
        long fileEnd = fileOff + len;
        long data = file.seekData(fileOff);
        if (data >= fileEnd) {
            return Extent.hole(len); // no data up to the end of the range (or of the file)
        }
        int b = config.logicalBlockSize();
        long holeLen = (data - fileOff) / b * b;
        if (holeLen > 0) {
            return Extent.hole(holeLen); // whole blocks before the data are holes
        }
        long hole = file.seekHole(fileOff);
        long end = hole < 0 ? fileEnd : Math.min(hole, fileEnd);
        long run = Math.max(end - fileOff, b);
        return Extent.data(Math.min(alignUp(run), len));
    }

    private long alignUp(long v) {
        int b = config.logicalBlockSize();
        return (v + b - 1) / b * b;
    }

    /** Waits for bios in flight, then closes the backing file. */
    @Override
    public void close() {
        file.close();
    }

    @Override
    public String toString() {
        return name + " (" + file.path() + ", " + Sizes.human(size) + ", direct-io=" + (file.isDirect() ? "on" : "off")
                + ", " + file.engineDescription() + ")";
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The leaf table line {@code loop FILE [direct-io=on|off|auto] [offset=N] [sizelimit=N]
     * [sector-size=N] [read-only] [size=N] [engine=uring|threads]}, in losetup's words;
     * {@code size=} creates a missing file, sparse.
     *
     * @param a the line's arguments
     * @return the spec
     */
    public static TableSpec parseTable(TableArgs a) {
        Path file = Path.of(a.next("FILE"));
        LoopConfig cfg = LoopConfig.defaults();
        while (a.hasNext()) {
            TableArgs.Option o = a.option();
            cfg = switch (o.key()) {
                case "read-only", "ro" -> cfg.withReadOnly(true);
                case "direct-io" -> cfg.withDirectIo(DirectIoMode.parse(a.value(o)));
                case "offset" -> cfg.withOffset(a.size(o));
                case "sizelimit" -> cfg.withSizeLimit(a.size(o));
                case "sector-size" -> cfg.withLogicalBlockSize((int) a.size(o));
                case "size" -> cfg.withCreateSize(a.size(o));
                case "engine" -> cfg.withEngine(engine(a, o));
                default -> throw a.bad("unknown option '" + o.text()
                        + "' (direct-io=, offset=, sizelimit=, sector-size=, read-only, size=, engine=)");
            };
        }
        LoopConfig c = cfg;
        return a.spec((name, len, r) -> open(name, file, c));
    }

    private static EngineKind engine(TableArgs a, TableArgs.Option o) {
        try {
            return EngineKind.parse(a.value(o));
        } catch (IllegalArgumentException e) {
            throw a.bad(e.getMessage());
        }
    }
}
