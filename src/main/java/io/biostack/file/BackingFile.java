package io.biostack.file;

import io.biostack.block.Bio;
import io.biostack.block.BioPool;
import io.biostack.block.BioSplitter;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.file.reactor.FileRings;
import io.biostack.sys.Errno;
import io.biostack.sys.ErrnoException;
import io.biostack.sys.Fcntl;
import io.biostack.sys.Fs;
import io.biostack.sys.Libc;
import io.biostack.sys.Stat;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * A file that takes <em>file bios</em> ({@code ->submit_file_bio()} of the seed mail): bios
 * whose offsets are file offsets. Phase two of direct I/O happens here: memory the kernel can't
 * take as it is goes through {@link Bounce} buffers, bios are split to the file's limits, and
 * the pieces go to a {@link FileEngine} (io_uring, or threads where io_uring can't run).
 *
 * <p>Thread-safe: any thread may submit. Completions run on engine threads and must not block.
 * The file's descriptor and buffers live until {@link #close()}, which waits for bios in flight.
 */
public final class BackingFile implements AutoCloseable {
    /** Largest file bio (bigger ones are split): 8 MiB keeps 1M bios whole and bounds latency. */
    static final long MAX_BYTES = 8L << 20;
    private static final int BOUNCE_BUFFERS = 64;

    static {
        // The reactor bridge (io.biostack.file.reactor, not exported: it takes ring loops) makes
        // each reactor's queue through this; it initialises this class before its first use.
        FileRings.provide(ReactorQueue::new);
    }

    private final Path path;
    private final int fd;
    private final boolean direct;
    private final boolean readOnly;
    private final int dioOffsetAlign;
    private final int dioMemAlign;
    private final int blockSize;
    private final QueueLimits limits;
    private final QueueLimits bounceLimits;
    private final FileEngine engine;
    private final BioPool pool = new BioPool(1024);
    private final Bounce bounce;
    private final AtomicLong inflight = new AtomicLong();
    private final Consumer<Bio> toEngine = this::toEngine;
    private final Consumer<Bio> toBounce = this::toBounce;
    private volatile boolean closed;

    /**
     * The file engines running now, as "io_uring (...)" or "threads (...)", or "" when no file is
     * open: for a server's one log line about what its I/O runs on.
     *
     * @return the engines' descriptions
     */
    public static String runningEngines() {
        return Engines.running();
    }

    private BackingFile(Path path, int fd, boolean direct, boolean readOnly, Stat st, FileEngine engine) {
        this.path = path;
        this.fd = fd;
        this.direct = direct;
        this.readOnly = readOnly;
        this.blockSize = Math.max(512, st.blksize());
        this.dioOffsetAlign = st.hasDioAlignment() ? st.dioOffsetAlign() : blockSize;
        this.dioMemAlign = st.hasDioAlignment() ? st.dioMemAlign() : blockSize;
        this.engine = engine;
        int lbs = direct ? Math.max(512, dioOffsetAlign) : 512;
        this.limits = QueueLimits.builder()
                .logicalBlockSize(lbs)
                .physicalBlockSize(Math.max(lbs, blockSize))
                .dmaAlignment(direct ? dioMemAlign : 1)
                .maxBytes(MAX_BYTES)
                .maxSegments(UringEngine.MAX_SEGMENTS)
                .discardGranularity(blockSize)
                .maxDiscardBytes(Long.MAX_VALUE / 2)
                .maxWriteZeroesBytes(Long.MAX_VALUE / 2)
                .ioMin(blockSize)
                .writeCache(true)
                .fua(true)
                .build();
        this.bounceLimits = limits.toBuilder().maxBytes(Bounce.BUFFER_SIZE).build();
        this.bounce = new Bounce(BOUNCE_BUFFERS, Math.max(dioMemAlign, 4096), pool, engine);
    }

    /**
     * Opens {@code path} for file bios. With {@code direct} the file is opened O_DIRECT (no page
     * cache). The engine is shared with other open files of the same kind.
     *
     * @param path       a regular file or a block device
     * @param direct     open it O_DIRECT (no page cache)
     * @param readOnly   open it O_RDONLY: bios that change data fail with READONLY
     * @param engineKind the engine wanted (AUTO: io_uring where the kernel allows it)
     * @return the open file; the caller closes it
     * @throws IOException with the path and the errno's words when it can't be opened
     */
    public static BackingFile open(Path path, boolean direct, boolean readOnly, EngineKind engineKind)
            throws IOException {
        int flags = (readOnly ? Fcntl.O_RDONLY : Fcntl.O_RDWR) | Fcntl.O_CLOEXEC | (direct ? Fcntl.O_DIRECT : 0);
        int fd = Libc.open(path.toString(), flags, 0);
        if (fd < 0) {
            throw new IOException(openFailure(path, direct, readOnly, -fd));
        }
        Stat st;
        try {
            st = Libc.fstatx(fd);
        } catch (ErrnoException e) {
            Libc.close(fd);
            throw new IOException("cannot stat " + path + ": " + e.getMessage(), e);
        }
        if (!st.isRegularFile() && !st.isBlockDevice()) {
            Libc.close(fd);
            throw new IOException(path + " is not a regular file or block device");
        }
        FileEngine engine;
        try {
            engine = Engines.acquire(engineKind);
        } catch (RuntimeException e) {
            Libc.close(fd);
            throw e;
        }
        return new BackingFile(path, fd, direct, readOnly, st, engine);
    }

    /**
     * Why an open failed, in words that point at the fix: a file that may be read but not written
     * (its mode, chattr +i, a read-only mount) is named as such, with the read-only option, as
     * losetup says "write-protected"; O_DIRECT is named only when it can be the cause (EINVAL).
     */
    private static String openFailure(Path path, boolean direct, boolean readOnly, int errno) {
        String why = Errno.describe(errno) + " (" + Errno.name(errno) + ")";
        boolean writeRefused = errno == Errno.EACCES || errno == Errno.EPERM || errno == Errno.EROFS
                || errno == Errno.ETXTBSY;
        if (!readOnly && writeRefused && readable(path)) {
            return "cannot open " + path + " for writing: " + why + "; open it read-only (serve --read-only,"
                    + " the loop target's read-only) to use it as it is";
        }
        return "cannot open " + path + (direct && errno == Errno.EINVAL ? " with O_DIRECT" : "") + ": " + why;
    }

    private static boolean readable(Path path) {
        int fd = Libc.open(path.toString(), Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, 0);
        if (fd < 0) {
            return false;
        }
        Libc.close(fd);
        return true;
    }

    /**
     * Creates {@code path} sparse at {@code size} bytes when it does not exist.
     *
     * @param path the file to create
     * @param size its size in bytes
     * @return true if it was created, false when it existed (it is left as it is)
     * @throws IOException when it can't be created or sized
     */
    public static boolean createSparse(Path path, long size) throws IOException {
        int fd = Libc.open(path.toString(), Fcntl.O_RDWR | Fcntl.O_CREAT | Fcntl.O_EXCL | Fcntl.O_CLOEXEC, 0644);
        if (fd == -Errno.EEXIST) {
            return false;
        }
        if (fd < 0) {
            throw new IOException("cannot create " + path + ": " + Errno.describe(-fd));
        }
        try {
            int r = Libc.ftruncate(fd, size);
            if (r < 0) {
                throw new IOException("cannot size " + path + " to " + size + ": " + Errno.describe(-r));
            }
        } finally {
            Libc.close(fd);
        }
        return true;
    }

    /**
     * Alignment of file offsets and lengths for O_DIRECT (statx STATX_DIOALIGN, else the fs block size).
     *
     * @param path the file
     * @return the alignment in bytes
     * @throws IOException when it can't be opened or stat'ed
     */
    public static int directIoAlignment(Path path) throws IOException {
        int fd = Libc.open(path.toString(), Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, 0);
        if (fd < 0) {
            throw new IOException("cannot open " + path + ": " + Errno.describe(-fd) + " (" + Errno.name(-fd) + ")");
        }
        try {
            Stat st = Libc.fstatx(fd);
            return st.hasDioAlignment() ? st.dioOffsetAlign() : Math.max(512, st.blksize());
        } finally {
            Libc.close(fd);
        }
    }

    /**
     * Whether {@code path}'s file system takes O_DIRECT at all. Some refuse it at open with
     * EINVAL (ramfs, FUSE file systems without direct_io, some network file systems) while
     * statx still reports a block size: loop.c checks the open file's FMODE_CAN_ODIRECT for this.
     *
     * @param path the file
     * @return false when an O_DIRECT open fails with EINVAL, true when it succeeds
     * @throws IOException when the file can't be opened at all
     */
    public static boolean directIoSupported(Path path) throws IOException {
        int fd = Libc.open(path.toString(), Fcntl.O_RDONLY | Fcntl.O_CLOEXEC | Fcntl.O_DIRECT, 0);
        if (fd == -Errno.EINVAL) {
            return false;
        }
        if (fd < 0) {
            throw new IOException("cannot open " + path + ": " + Errno.describe(-fd) + " (" + Errno.name(-fd) + ")");
        }
        Libc.close(fd);
        return true;
    }

    /**
     * Takes a file bio: offsets are file offsets. The file owns the bio until it completes it,
     * exactly once, on an engine thread (or at once, on this thread, when the bio is bad).
     * Memory that is on the heap, not alive, or misaligned for O_DIRECT is bounced; bios bigger
     * than the file's limits are split and chained.
     *
     * @param bio the bio; the file owns it until it completes
     */
    public void submitFileBio(Bio bio) {
        if (closed) {
            bio.fail(Status.CANCELLED, "backing file " + path + " is closed");
            return;
        }
        if (readOnly && bio.op().changesData()) {
            bio.fail(Status.READONLY, bio.op() + " on read-only file " + path);
            return;
        }
        if (bio.op().hasData()) {
            if (direct && ((bio.offset() | bio.size()) & (dioOffsetAlign - 1)) != 0) {
                bio.fail(Status.INVAL, bio.op() + " of " + bio.size() + " bytes at file offset " + bio.offset()
                        + " is not aligned to " + path + "'s direct-I/O alignment of " + dioOffsetAlign);
                return;
            }
            String bad = unusableMemory(bio);
            if (bad != null) {
                bio.fail(Status.INVAL, bio.op() + " at file offset " + bio.offset() + ": " + bad);
                return;
            }
            if (!kernelCanTake(bio)) {
                BioSplitter.submitSplit(bio, bounceLimits, pool, toBounce);
                return;
            }
        }
        BioSplitter.submitSplit(bio, limits, pool, toEngine);
    }

    private void toEngine(Bio bio) {
        bio.setDriverData(this);
        inflight.incrementAndGet();
        engine.submit(bio);
    }

    private void toBounce(Bio bio) {
        bio.setDriverData(this);
        toEngine(bounce.bounce(bio));
    }

    /** Called by the engine when a bio is done (status already set): completes it. */
    void completed(Bio bio) {
        inflight.decrementAndGet();
        bio.endIo();
    }

    /** A never-started thread: memory it may access is memory any engine thread may access. */
    private static final Thread ANY_THREAD = Thread.ofPlatform().unstarted(() -> { });

    /**
     * Why the bio's memory can't be used from an engine thread at all (closed, or confined to the
     * submitting thread), or null when it can.
     */
    private static String unusableMemory(Bio bio) {
        for (int i = bio.iter().index(); i < bio.segmentCount(); i++) {
            MemorySegment v = bio.segment(i);
            if (!v.scope().isAlive()) {
                return "its memory was freed (closed arena)";
            }
            if (!v.isAccessibleBy(ANY_THREAD)) {
                return "its memory is confined to one thread; asynchronous I/O needs shared memory "
                        + "(Arena.ofShared, ofAuto or global)";
            }
        }
        return null;
    }

    /** True when every piece of the bio's memory is native, alive and aligned for this file. */
    private boolean kernelCanTake(Bio bio) {
        long mask = direct ? dioMemAlign - 1 : 0;
        long left = bio.size();
        int i = bio.iter().index();
        long skip = bio.iter().doneInSegment();
        while (left > 0) {
            MemorySegment v = bio.segment(i++);
            if (!v.isNative()) {
                return false;
            }
            long len = Math.min(v.byteSize() - skip, left);
            if ((((v.address() + skip) | len) & mask) != 0) {
                return false;
            }
            left -= len;
            skip = 0;
        }
        return true;
    }

    /**
     * The file's current size in bytes (a fresh statx: the file may have grown).
     *
     * @return the size in bytes
     * @throws IOException when statx fails
     */
    public long size() throws IOException {
        try {
            Stat st = Libc.fstatx(fd);
            return st.isBlockDevice() ? Libc.blockDeviceSize(fd) : st.size();
        } catch (ErrnoException e) {
            throw new IOException("cannot stat " + path + ": " + e.getMessage(), e);
        }
    }

    /**
     * The next offset at or after {@code offset} that holds data (SEEK_DATA), as
     * {@link Fs#nextData} reads it: {@link Long#MAX_VALUE} when none (holes to the end of the
     * file), {@code offset} itself where the file cannot tell (a block device).
     *
     * @param offset where to start looking
     * @return the offset of the next data, or {@link Long#MAX_VALUE}
     */
    public long seekData(long offset) {
        return Fs.nextData(Libc.lseek(fd, offset, Fs.SEEK_DATA), offset);
    }

    /**
     * The next hole at or after {@code offset} (SEEK_HOLE); the end of the file counts as one.
     *
     * @param offset where to start looking
     * @return the offset of the next hole, or -1 when lseek fails (past the end)
     */
    public long seekHole(long offset) {
        long r = Libc.lseek(fd, offset, Fs.SEEK_HOLE);
        return r < 0 ? -1 : r;
    }

    /**
     * Extends the file to {@code length} bytes with ftruncate (the new part is a hole). Never
     * shrinks; a block device cannot grow this way.
     *
     * @param length the size wanted in bytes
     * @throws IOException when the file is read-only, a block device, or ftruncate fails
     */
    public void extendTo(long length) throws IOException {
        if (readOnly) {
            throw new IOException(path + " is open read-only; it cannot grow");
        }
        if (size() >= length) {
            return;
        }
        int r = Libc.ftruncate(fd, length);
        if (r < 0) {
            throw new IOException("cannot grow " + path + " to " + length + " bytes: errno " + (-r));
        }
    }

    /**
     * Shrinks a regular file to {@code length} bytes with ftruncate, dropping what lies past it.
     * Never grows; a block device keeps its size.
     *
     * @param length the size wanted in bytes
     * @return true when the file is now at most {@code length} bytes, false for a block device
     *         (nothing changed)
     * @throws IOException when the file is read-only or ftruncate fails
     */
    public boolean shrinkTo(long length) throws IOException {
        Stat st;
        try {
            st = Libc.fstatx(fd);
        } catch (ErrnoException e) {
            throw new IOException("cannot stat " + path + ": " + e.getMessage(), e);
        }
        if (!st.isRegularFile()) {
            return false;
        }
        if (st.size() <= length) {
            return true;
        }
        if (readOnly) {
            throw new IOException(path + " is open read-only; it cannot shrink");
        }
        int r = Libc.ftruncate(fd, length);
        if (r < 0) {
            throw new IOException("cannot shrink " + path + " to " + length + " bytes: errno " + (-r));
        }
        return true;
    }

    /**
     * The file's path as opened.
     *
     * @return the path
     */
    public Path path() {
        return path;
    }

    int fd() {
        return fd;
    }

    /**
     * Takes qemu's image locks on this file for a format over it ({@link QemuLocks}): give them
     * back before closing this file.
     *
     * @param write true when the format writes
     * @return the locks, owned by the caller
     * @throws IOException when another user of the file conflicts
     */
    public io.biostack.block.ImageLocking.Held lockImage(boolean write) throws IOException {
        if (closed) {
            throw new IOException(path + " is closed");
        }
        return QemuLocks.take(this, write);
    }

    /** True once {@link #close} began: the descriptor is closed or about to be. */
    boolean isClosed() {
        return closed;
    }

    /**
     * Whether the file is open O_DIRECT.
     *
     * @return true when the file is open O_DIRECT (no page cache)
     */
    public boolean isDirect() {
        return direct;
    }

    /**
     * Whether the file is open read-only.
     *
     * @return true when the file is open read-only
     */
    public boolean isReadOnly() {
        return readOnly;
    }

    /**
     * O_DIRECT alignment of file offsets and lengths.
     *
     * @return the alignment in bytes
     */
    public int directIoAlignment() {
        return dioOffsetAlign;
    }

    /**
     * O_DIRECT alignment of memory addresses.
     *
     * @return the alignment in bytes
     */
    public int memoryAlignment() {
        return dioMemAlign;
    }

    /**
     * The limits of file bios: block size and memory alignment of O_DIRECT, largest bio.
     *
     * @return the limits
     */
    public QueueLimits limits() {
        return limits;
    }

    /**
     * The engine, for a log line.
     *
     * @return "io_uring (SINGLE_ISSUER|...)" or "threads (8)", and why that engine
     */
    public String engineDescription() {
        return engine.describe() + Engines.why(engine.kind());
    }

    /**
     * The engine that does this file's I/O.
     *
     * @return URING or THREADS, never AUTO
     */
    public EngineKind engineKind() {
        return engine.kind();
    }

    /**
     * Memory for bios to this file that the engine can do I/O on most cheaply: {@code bytes} of
     * native memory, aligned to 4096 and to {@link #memoryAlignment()}. With io_uring it is
     * registered with the ring (a bio whose memory is one piece inside it goes down as
     * READ_FIXED/WRITE_FIXED: no page pinning per I/O); otherwise, or when registration fails
     * (RLIMIT_MEMLOCK, old kernel, table full), it is plain memory and works the same.
     *
     * <p>Ownership: the memory belongs to {@code owner} and is freed, and unregistered, when
     * owner is closed; close it only after every bio over it has completed. It may outlive this
     * file. Use a shared or automatic arena (engine threads access it). Cold path: may wait for
     * the engine's thread; don't call it from an end-io callback.
     *
     * @param bytes the size wanted
     * @param owner the arena that owns (and frees) the memory
     * @return native memory of {@code bytes}, aligned as said
     */
    public MemorySegment allocateIoBuffers(long bytes, Arena owner) {
        return engine.allocateIoMemory(bytes, Math.max(4096, dioMemAlign), owner);
    }

    /** I/Os of this file's engine that used registered buffers (0 without io_uring). Tests. */
    long fixedIos() {
        return engine instanceof UringEngine u ? u.fixedIos() : 0;
    }

    /** True when the engine has a fixed-buffer table. Tests. */
    boolean engineHasFixedBuffers() {
        return engine instanceof UringEngine u && u.hasFixedBuffers();
    }

    /** True once a bio was bounced: the bounce slab is made by the first one. Tests. */
    boolean hasBounceSlab() {
        return bounce.hasSlab();
    }

    /**
     * Times the bounce pool ran dry (a buffer was allocated instead).
     *
     * @return the count so far
     */
    public long bounceOverflows() {
        return bounce.overflows();
    }

    /**
     * Waits for bios in flight (up to 30 s), then releases the engine, the bounce buffers and the
     * descriptor. Later submits fail with {@link Status#CANCELLED}. Idempotent.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (inflight.get() > 0 && System.nanoTime() < deadline) {
            Thread.onSpinWait();
            try {
                Thread.sleep(1);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        boolean quiet = inflight.get() == 0;
        Engines.release(engine);
        if (quiet) {
            bounce.close(); // never free memory the kernel may still write into
        }
        Libc.close(fd);
    }
}
