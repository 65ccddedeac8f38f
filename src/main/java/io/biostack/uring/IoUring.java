package io.biostack.uring;

import static io.biostack.uring.IoUringConstants.*;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import io.biostack.sys.Arch;
import io.biostack.sys.Errno;
import io.biostack.sys.ErrnoException;
import io.biostack.sys.Libc;
import io.biostack.sys.Mman;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * One io_uring instance: its submission and completion rings mapped into this process, driven
 * through FFM without liburing.
 *
 * <p><b>Threads.</b> Not thread-safe. One thread prepares SQEs, submits, and reaps. When
 * {@link #setupFlags()} contains IORING_SETUP_SINGLE_ISSUER, the kernel binds the ring to the
 * thread that created it: call {@link #open} on the thread that will use the ring, or every
 * io_uring_enter from another thread fails with -EEXIST (registration still works). With
 * IORING_SETUP_DEFER_TASKRUN, completions are posted to the CQ only while that thread is inside
 * io_uring_enter with GETEVENTS ({@link #submitAndWait(int)}, {@link #getEvents()});
 * {@link #reap(CqeHandler)} does that enter for you when the CQ is empty but the kernel holds
 * completions: it sees them through IORING_SQ_TASKRUN when TASKRUN_FLAG is in force (as in
 * {@link #RECOMMENDED_SETUP_FLAGS}), and otherwise enters on every empty reap.
 * {@link #close()} may be called from any thread once the ring is idle.
 *
 * <p><b>Allocation.</b> Preparing, submitting and reaping allocate nothing; the prep methods
 * return {@code false} when the SQ is full and never block. Submission and registration return
 * {@code -errno} rather than throw. Only {@link #open}, {@link #probe()} and
 * {@link #registerFiles(int[])} allocate (once).
 *
 * <p><b>Memory ownership.</b> Every buffer or iovec address handed to a prep method belongs to
 * the caller and must stay valid and unmoved until its CQE is reaped; the ring keeps no
 * reference to it. With IORING_FEAT_SUBMIT_STABLE (5.5+) the iovec array itself may be reused
 * once {@link #submit()} has returned, the data buffers may not.
 *
 * <p><b>Memory order.</b> The head/tail rule of io_uring/io_uring.c (top-of-file comment): the
 * application must order its SQE stores before the SQ tail store, and its CQE loads before the
 * CQ head store; and it must read the CQ tail with acquire semantics to pair with the kernel's
 * write barrier before it publishes a CQE. liburing does this with
 * {@code io_uring_smp_store_release} and {@code io_uring_smp_load_acquire}; here the same is
 * {@link VarHandle#setRelease} and {@link VarHandle#getAcquire} on the ring words.
 */
@SuppressWarnings("restricted")
public final class IoUring implements AutoCloseable {
    /** 32-bit ring words (head, tail, flags), coordinates (MemorySegment, long offset). */
    private static final VarHandle U32 = JAVA_INT.varHandle();

    /**
     * Setup flags this class can drive. SQPOLL, SQE128, CQE32, NO_MMAP and the like change the
     * submission or memory protocol and are refused.
     */
    public static final int SUPPORTED_SETUP_FLAGS = IORING_SETUP_IOPOLL | IORING_SETUP_CLAMP
            | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG
            | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
            | IORING_SETUP_NO_SQARRAY;

    /**
     * The flags a worker ring should ask for (DESIGN.md, "Threads and the ring"): the ring is
     * owned by one thread that submits and reaps. Those the kernel lacks are dropped by
     * {@link #open}.
     */
    public static final int RECOMMENDED_SETUP_FLAGS = IORING_SETUP_CLAMP
            | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG
            | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
            | IORING_SETUP_NO_SQARRAY;

    /**
     * Optional flags in the order they are given up when io_uring_setup says EINVAL: newest
     * kernel feature first (NO_SQARRAY 6.6, DEFER_TASKRUN 6.1, SINGLE_ISSUER 6.0,
     * TASKRUN_FLAG and COOP_TASKRUN 5.19, SUBMIT_ALL 5.18, CLAMP 5.6). DEFER_TASKRUN goes before
     * SINGLE_ISSUER (it requires it), TASKRUN_FLAG before COOP_TASKRUN (it requires it or
     * DEFER_TASKRUN).
     */
    private static final int[] DROP_ORDER = {
        IORING_SETUP_NO_SQARRAY, IORING_SETUP_DEFER_TASKRUN, IORING_SETUP_SINGLE_ISSUER,
        IORING_SETUP_TASKRUN_FLAG, IORING_SETUP_COOP_TASKRUN, IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_CLAMP,
    };

    /** sizeof(struct io_uring_getevents_arg): u64 sigmask, u32 sigmask_sz, u32 pad, u64 ts. */
    private static final long GETEVENTS_ARG_SIZE = 24;
    /** _NSIG / 8, what liburing passes as sigmask_sz. */
    private static final int SIGSET_SIZE = 8;

    private final Arena arena;
    private final int ringFd;
    private final int setupFlags;
    private final int features;
    private final int sqEntries;
    private final int cqEntries;
    private final int sqMask;
    private final int cqMask;

    private final MemorySegment sqRing;
    private final MemorySegment cqRing;
    private final MemorySegment sqes;
    private final long sqHeadOff;
    private final long sqTailOff;
    private final long sqFlagsOff;
    private final long sqDroppedOff;
    private final long cqHeadOff;
    private final long cqTailOff;
    private final long cqOverflowOff;
    private final long cqesOff;

    /** io_uring_getevents_arg and its __kernel_timespec, for timed waits. */
    private final MemorySegment extArg;
    private final MemorySegment timespec;

    /** Next SQE slot to fill (free-running u32 counter, masked on use). */
    private int sqeTail;
    /** Last SQ head read from the kernel; refreshed only when the SQ looks full. */
    private int cachedSqHead;
    /** Our CQ head; only this side writes it. */
    private int cqHead;
    /** DEFER_TASKRUN without TASKRUN_FLAG: the kernel gives no sign of held completions. */
    private final boolean blindDeferred;
    private boolean reaping;
    private boolean closed;
    /**
     * The ring as io_uring_enter names it: the fd, or after {@link #registerRingFd()} the index
     * of the registered ring (with IORING_ENTER_REGISTERED_RING in {@link #enterFlag}) for
     * {@link #enterThread} only, since a registered ring is private to the task that registered it.
     */
    private int enterFd;
    private int enterFlag;
    private Thread enterThread;

    private IoUring(Arena arena, int ringFd, MemorySegment params) throws ErrnoException {
        this.arena = arena;
        this.ringFd = ringFd;
        this.enterFd = ringFd;
        this.setupFlags = UringParams.flags(params);
        this.features = UringParams.features(params);
        this.sqEntries = UringParams.sqEntries(params);
        this.cqEntries = UringParams.cqEntries(params);
        this.blindDeferred = (setupFlags & IORING_SETUP_DEFER_TASKRUN) != 0
                && (setupFlags & IORING_SETUP_TASKRUN_FLAG) == 0;

        long sqSize = UringParams.sqOff(params, UringParams.SQ_OFF_ARRAY) + 4L * sqEntries;
        long cqSize = UringParams.cqOff(params, UringParams.CQ_OFF_CQES) + Cqe.SIZE * cqEntries;
        boolean single = (features & IORING_FEAT_SINGLE_MMAP) != 0;
        if (single) {
            sqSize = cqSize = Math.max(sqSize, cqSize);
        }
        long sqesSize = Sqe.SIZE * sqEntries;
        long sqAddr = map(sqSize, IORING_OFF_SQ_RING);
        long cqAddr = 0;
        long sqesAddr = 0;
        try {
            cqAddr = single ? sqAddr : map(cqSize, IORING_OFF_CQ_RING);
            sqesAddr = map(sqesSize, IORING_OFF_SQES);
        } catch (ErrnoException e) {
            if (cqAddr != 0 && cqAddr != sqAddr) {
                Libc.munmap(cqAddr, cqSize);
            }
            Libc.munmap(sqAddr, sqSize);
            throw e;
        }
        this.sqRing = MemorySegment.ofAddress(sqAddr).reinterpret(sqSize);
        this.cqRing = single ? sqRing : MemorySegment.ofAddress(cqAddr).reinterpret(cqSize);
        this.sqes = MemorySegment.ofAddress(sqesAddr).reinterpret(sqesSize);

        this.sqHeadOff = UringParams.sqOff(params, UringParams.SQ_OFF_HEAD);
        this.sqTailOff = UringParams.sqOff(params, UringParams.SQ_OFF_TAIL);
        this.sqFlagsOff = UringParams.sqOff(params, UringParams.SQ_OFF_FLAGS);
        this.sqDroppedOff = UringParams.sqOff(params, UringParams.SQ_OFF_DROPPED);
        this.sqMask = sqRing.get(JAVA_INT, UringParams.sqOff(params, UringParams.SQ_OFF_RING_MASK));
        this.cqHeadOff = UringParams.cqOff(params, UringParams.CQ_OFF_HEAD);
        this.cqTailOff = UringParams.cqOff(params, UringParams.CQ_OFF_TAIL);
        this.cqOverflowOff = UringParams.cqOff(params, UringParams.CQ_OFF_OVERFLOW);
        this.cqesOff = UringParams.cqOff(params, UringParams.CQ_OFF_CQES);
        this.cqMask = cqRing.get(JAVA_INT, UringParams.cqOff(params, UringParams.CQ_OFF_RING_MASK));

        if ((setupFlags & IORING_SETUP_NO_SQARRAY) == 0) {
            // Slot i of the index array names SQE i, once and for all (as liburing does), so
            // that the SQ tail alone says which SQEs are new.
            long arrayOff = UringParams.sqOff(params, UringParams.SQ_OFF_ARRAY);
            for (int i = 0; i < sqEntries; i++) {
                sqRing.set(JAVA_INT, arrayOff + 4L * i, i);
            }
        }
        this.sqeTail = (int) U32.getAcquire(sqRing, sqTailOff);
        this.cachedSqHead = (int) U32.getAcquire(sqRing, sqHeadOff);
        this.cqHead = (int) U32.getAcquire(cqRing, cqHeadOff);

        this.timespec = arena.allocate(16, 8);
        this.extArg = arena.allocate(GETEVENTS_ARG_SIZE, 8);
        extArg.set(JAVA_LONG, 0, 0L);
        extArg.set(JAVA_INT, 8, SIGSET_SIZE);
        extArg.set(JAVA_INT, 12, 0);
        extArg.set(JAVA_LONG, 16, timespec.address());
    }

    private long map(long size, long offset) throws ErrnoException {
        long addr = Libc.mmap(0, size, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_SHARED | Mman.MAP_POPULATE, ringFd, offset);
        if (addr < 0) {
            throw new ErrnoException("mmap io_uring offset 0x" + Long.toHexString(offset),
                    (int) addr);
        }
        return addr;
    }

    /**
     * Creates a ring with at least {@code entries} SQEs (the kernel rounds up to a power of two,
     * and with IORING_SETUP_CLAMP clamps to its maximum).
     *
     * <p>Flags are probed, never assumed: when the kernel answers EINVAL, the optional flags
     * (NO_SQARRAY, DEFER_TASKRUN, SINGLE_ISSUER, TASKRUN_FLAG, COOP_TASKRUN, SUBMIT_ALL, CLAMP)
     * are given up one at a time, newest first, and setup is retried. {@link #setupFlags()}
     * says what is in force. IOPOLL is never dropped.
     *
     * <p>Call it on the thread that will drive the ring (see the class comment).
     *
     * @param entries          SQ size wanted, &gt; 0
     * @param cqEntries        CQ size wanted (must be &ge; entries), or 0 for the kernel
     *                         default of twice the SQ
     * @param wantedSetupFlags IORING_SETUP_* flags from {@link #SUPPORTED_SETUP_FLAGS}, e.g.
     *                         {@link #RECOMMENDED_SETUP_FLAGS}
     * @throws ErrnoException           when io_uring_setup or mmap fails for another reason
     *                                  (ENOSYS, EPERM, ENOMEM, ...), or EINVAL persists
     * @throws IllegalArgumentException for sizes out of range or unsupported flags
     */
    public static IoUring open(int entries, int cqEntries, int wantedSetupFlags)
            throws ErrnoException {
        if (entries <= 0) {
            throw new IllegalArgumentException("entries must be positive: " + entries);
        }
        if (cqEntries < 0) {
            throw new IllegalArgumentException("cqEntries must not be negative: " + cqEntries);
        }
        if ((wantedSetupFlags & ~SUPPORTED_SETUP_FLAGS) != 0) {
            throw new IllegalArgumentException("unsupported setup flags 0x"
                    + Integer.toHexString(wantedSetupFlags & ~SUPPORTED_SETUP_FLAGS));
        }
        if ((wantedSetupFlags & IORING_SETUP_DEFER_TASKRUN) != 0
                && (wantedSetupFlags & IORING_SETUP_SINGLE_ISSUER) == 0) {
            throw new IllegalArgumentException("DEFER_TASKRUN requires SINGLE_ISSUER");
        }
        Arena arena = Arena.ofShared();
        try {
            MemorySegment params = arena.allocate(UringParams.SIZE, 8);
            int flags = wantedSetupFlags | (cqEntries > 0 ? IORING_SETUP_CQSIZE : 0);
            int fd;
            while (true) {
                params.fill((byte) 0);
                UringParams.setFlags(params, flags);
                UringParams.setCqEntries(params, cqEntries);
                fd = Libc.ioUringSetup(entries, params.address());
                if (fd >= 0) {
                    break;
                }
                int drop = fd == -Errno.EINVAL ? nextToDrop(flags) : 0;
                if (drop == 0) {
                    throw new ErrnoException("io_uring_setup(entries " + entries + ", cq "
                            + cqEntries + ", flags 0x" + Integer.toHexString(flags) + ")", fd);
                }
                flags &= ~drop;
            }
            try {
                return new IoUring(arena, fd, params);
            } catch (ErrnoException | RuntimeException e) {
                Libc.close(fd);
                throw e;
            }
        } catch (ErrnoException | RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    private static int nextToDrop(int flags) {
        for (int f : DROP_ORDER) {
            if ((flags & f) != 0) {
                return f;
            }
        }
        return 0;
    }

    // ---- availability -----------------------------------------------------------------------

    private static final class Availability {
        static final Optional<String> REASON = probeAvailability();
    }

    /**
     * Why io_uring cannot be used in this process, or empty when it can. Probed once (a
     * one-entry io_uring_setup, closed again) and cached.
     */
    public static Optional<String> unavailableReason() {
        return Availability.REASON;
    }

    /** True when io_uring can be set up here (see {@link #unavailableReason()}). */
    public static boolean isAvailable() {
        return Availability.REASON.isEmpty();
    }

    private static Optional<String> probeAvailability() {
        if (!Arch.CURRENT.isSupported()) {
            return Optional.of("io_uring support is not built for architecture "
                    + System.getProperty("os.arch"));
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(UringParams.SIZE, 8);
            int fd = Libc.ioUringSetup(1, p.address());
            if (fd >= 0) {
                Libc.close(fd);
                return Optional.empty();
            }
            return Optional.of(explainSetupFailure(-fd));
        } catch (RuntimeException | LinkageError e) {
            return Optional.of("native calls through FFM are not available ("
                    + e + "); run with --enable-native-access=ALL-UNNAMED");
        }
    }

    static String explainSetupFailure(int errno) {
        return switch (errno) {
            case Errno.ENOSYS -> "io_uring_setup returned ENOSYS: the kernel is older than 5.1, "
                    + "was built without CONFIG_IO_URING, or a seccomp filter answers ENOSYS";
            case Errno.EPERM -> explainEperm();
            case Errno.ENOMEM -> "io_uring_setup returned ENOMEM: before Linux 5.12 rings count "
                    + "against RLIMIT_MEMLOCK (raise 'ulimit -l')";
            default -> "io_uring_setup failed: " + Errno.format(errno);
        };
    }

    private static String explainEperm() {
        String disabled;
        try {
            disabled = Files.readString(Path.of("/proc/sys/kernel/io_uring_disabled"),
                    StandardCharsets.US_ASCII).strip();
        } catch (IOException | RuntimeException e) {
            disabled = "";
        }
        return switch (disabled) {
            case "2" -> "io_uring is disabled on this host (sysctl kernel.io_uring_disabled=2)";
            case "1" -> "io_uring is restricted to privileged processes and the group in "
                    + "kernel.io_uring_group (sysctl kernel.io_uring_disabled=1)";
            default -> "io_uring_setup returned EPERM: most likely a seccomp filter (container "
                    + "runtimes' default profiles block io_uring)";
        };
    }

    // ---- ring facts -------------------------------------------------------------------------

    /** The ring's file descriptor. */
    public int fd() {
        return ringFd;
    }

    /** The IORING_SETUP_* flags in force (after probing), including CQSIZE when given. */
    public int setupFlags() {
        return setupFlags;
    }

    /** True when all of {@code flags} are in force. */
    public boolean hasSetupFlags(int flags) {
        return (setupFlags & flags) == flags;
    }

    /** The IORING_FEAT_* bits the kernel reported. */
    public int features() {
        return features;
    }

    /** True when the kernel reported all of {@code feature}. */
    public boolean hasFeature(int feature) {
        return (features & feature) == feature;
    }

    /** SQ size in entries (a power of two). */
    public int sqEntries() {
        return sqEntries;
    }

    /** CQ size in entries (a power of two). */
    public int cqEntries() {
        return cqEntries;
    }

    // ---- SQ -----------------------------------------------------------------------------------

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("io_uring is closed");
        }
    }

    /** Byte offset of the next free SQE in {@link #sqes}, claimed; or -1 when the SQ is full. */
    private long claimSqe() {
        ensureOpen();
        int tail = sqeTail;
        if (tail - cachedSqHead >= sqEntries) {
            cachedSqHead = (int) U32.getAcquire(sqRing, sqHeadOff);
            if (tail - cachedSqHead >= sqEntries) {
                return -1;
            }
        }
        sqeTail = tail + 1;
        return (long) (tail & sqMask) * Sqe.SIZE;
    }

    /** Free SQE slots: how many more preps succeed before a submit. */
    public int sqSpace() {
        ensureOpen();
        return sqEntries - sqReady();
    }

    /** SQEs prepared but not yet consumed by the kernel. */
    public int sqReady() {
        ensureOpen();
        cachedSqHead = (int) U32.getAcquire(sqRing, sqHeadOff);
        return sqeTail - cachedSqHead;
    }

    /**
     * Prepares a generic read/write style SQE.
     *
     * @param opcode   an IORING_OP_*
     * @param fd       file descriptor, or registered file index with IOSQE_FIXED_FILE
     * @param addr     buffer (or iovec array) address, native memory owned by the caller until
     *                 the CQE
     * @param len      byte count (or number of iovecs)
     * @param offset   file offset (sqe->off)
     * @param rwFlags  op-specific flags (RWF_*, fsync flags, poll events)
     * @param userData returned in the CQE
     * @param sqeFlags IOSQE_* flags
     * @param bufIndex registered buffer index for READ_FIXED/WRITE_FIXED, else 0
     * @return false when the SQ is full (nothing written)
     */
    public boolean prepRw(int opcode, int fd, long addr, int len, long offset, int rwFlags,
            long userData, int sqeFlags, int bufIndex) {
        long at = claimSqe();
        if (at < 0) {
            return false;
        }
        Sqe.prep(sqes, at, opcode, sqeFlags, fd, offset, addr, len, rwFlags, userData, bufIndex,
                0);
        return true;
    }

    /** IORING_OP_READV into {@code nrVecs} iovecs at {@code iovAddr}; false when SQ full. */
    public boolean prepReadv(int fd, long iovAddr, int nrVecs, long off, int rwFlags,
            long userData) {
        return prepRw(IORING_OP_READV, fd, iovAddr, nrVecs, off, rwFlags, userData, 0, 0);
    }

    /** IORING_OP_WRITEV from {@code nrVecs} iovecs at {@code iovAddr}; false when SQ full. */
    public boolean prepWritev(int fd, long iovAddr, int nrVecs, long off, int rwFlags,
            long userData) {
        return prepRw(IORING_OP_WRITEV, fd, iovAddr, nrVecs, off, rwFlags, userData, 0, 0);
    }

    /**
     * IORING_OP_READ_FIXED into registered buffer {@code bufIndex}; {@code addr..addr+len}
     * must lie inside that buffer. False when SQ full.
     */
    public boolean prepReadFixed(int fd, long addr, int len, long off, int bufIndex,
            int rwFlags, long userData) {
        return prepRw(IORING_OP_READ_FIXED, fd, addr, len, off, rwFlags, userData, 0, bufIndex);
    }

    /** IORING_OP_WRITE_FIXED from registered buffer {@code bufIndex}; false when SQ full. */
    public boolean prepWriteFixed(int fd, long addr, int len, long off, int bufIndex,
            int rwFlags, long userData) {
        return prepRw(IORING_OP_WRITE_FIXED, fd, addr, len, off, rwFlags, userData, 0,
                bufIndex);
    }

    /** IORING_OP_READ (5.6+) into one buffer; false when SQ full. */
    public boolean prepRead(int fd, long addr, int len, long off, long userData) {
        return prepRw(IORING_OP_READ, fd, addr, len, off, 0, userData, 0, 0);
    }

    /** IORING_OP_WRITE (5.6+) from one buffer; false when SQ full. */
    public boolean prepWrite(int fd, long addr, int len, long off, long userData) {
        return prepRw(IORING_OP_WRITE, fd, addr, len, off, 0, userData, 0, 0);
    }

    /**
     * IORING_OP_FSYNC of the whole file; {@code fsyncFlags} 0 (fsync) or
     * IORING_FSYNC_DATASYNC (fdatasync). False when SQ full.
     */
    public boolean prepFsync(int fd, int fsyncFlags, long userData) {
        return prepRw(IORING_OP_FSYNC, fd, 0, 0, 0, fsyncFlags, userData, 0, 0);
    }

    /**
     * IORING_OP_FALLOCATE with a {@code Falloc.FALLOC_FL_*} mode. Note the unusual encoding, as
     * io_fallocate_prep reads it (io_uring/sync.c) and liburing's io_uring_prep_fallocate
     * writes it: offset in sqe->off, <em>length in sqe->addr, mode in sqe->len</em>.
     * False when SQ full.
     */
    public boolean prepFallocate(int fd, int mode, long off, long len, long userData) {
        return prepRw(IORING_OP_FALLOCATE, fd, len, mode, off, 0, userData, 0, 0);
    }

    /** IORING_OP_NOP: completes with res 0. False when SQ full. */
    public boolean prepNop(long userData) {
        return prepRw(IORING_OP_NOP, -1, 0, 0, 0, 0, userData, 0, 0);
    }

    /**
     * IORING_OP_POLL_ADD, one shot: completes with the ready POLL* events. The events go in
     * sqe->poll32_events, which on little-endian machines (x86_64, aarch64) is the plain u32.
     * False when SQ full.
     */
    public boolean prepPollAdd(int fd, int events, long userData) {
        return prepRw(IORING_OP_POLL_ADD, fd, 0, 0, 0, events, userData, 0, 0);
    }

    /**
     * IORING_OP_RECV (5.6) of up to {@code len} bytes into {@code addr}; {@code msgFlags} are
     * MSG_* flags. False when the SQ is full.
     */
    public boolean prepRecv(int fd, long addr, int len, int msgFlags, long userData) {
        return prepRw(IORING_OP_RECV, fd, addr, len, 0, msgFlags, userData, 0, 0);
    }

    /**
     * IORING_OP_RECV with IORING_RECV_MULTISHOT (6.0) and IOSQE_BUFFER_SELECT: one SQE that
     * receives into buffers the kernel picks from the provided-buffer ring {@code bufGroup} (see
     * {@link BufRing}), a CQE per receive with IORING_CQE_F_BUFFER and the buffer id in the upper
     * 16 bits of cqe->flags, and IORING_CQE_F_MORE while it stays armed. It ends (a CQE without
     * F_MORE) on EOF, an error, a cancel, or -ENOBUFS when the ring has no buffer left. False
     * when the SQ is full.
     */
    public boolean prepRecvMultishot(int fd, int bufGroup, int msgFlags, long userData) {
        long at = claimSqe();
        if (at < 0) {
            return false;
        }
        Sqe.prep(sqes, at, IORING_OP_RECV, IOSQE_BUFFER_SELECT, fd, 0, 0, 0, msgFlags, userData, bufGroup, 0);
        Sqe.setIoprio(sqes, at, IORING_RECV_MULTISHOT);
        return true;
    }

    /** IORING_OP_SEND (5.6) of {@code len} bytes from {@code addr}; false when the SQ is full. */
    public boolean prepSend(int fd, long addr, int len, int msgFlags, long userData) {
        return prepRw(IORING_OP_SEND, fd, addr, len, 0, msgFlags, userData, 0, 0);
    }

    /**
     * IORING_OP_SENDMSG (5.3) of the {@code struct msghdr} at {@code msghdrAddr} (a gathering
     * send: header and data from separate buffers). False when the SQ is full.
     */
    public boolean prepSendmsg(int fd, long msghdrAddr, int msgFlags, long userData) {
        return prepRw(IORING_OP_SENDMSG, fd, msghdrAddr, 1, 0, msgFlags, userData, 0, 0);
    }

    /**
     * IORING_OP_ACCEPT (5.5) on a listening socket, the peer address not wanted; with
     * {@code multishot} (IORING_ACCEPT_MULTISHOT in sqe->ioprio, 5.19) one SQE accepts until it
     * fails, each CQE flagged IORING_CQE_F_MORE while it stays armed. False when the SQ is full.
     */
    public boolean prepAccept(int fd, int acceptFlags, boolean multishot, long userData) {
        long at = claimSqe();
        if (at < 0) {
            return false;
        }
        Sqe.prep(sqes, at, IORING_OP_ACCEPT, 0, fd, 0, 0, 0, acceptFlags, userData, 0, 0);
        if (multishot) {
            Sqe.setIoprio(sqes, at, IORING_ACCEPT_MULTISHOT);
        }
        return true;
    }

    /**
     * IORING_OP_ASYNC_CANCEL (5.5) of the request with {@code targetUserData}; completes with 0,
     * -ENOENT (not found) or -EALREADY. False when the SQ is full.
     */
    public boolean prepCancel(long targetUserData, long userData) {
        return prepRw(IORING_OP_ASYNC_CANCEL, -1, targetUserData, 0, 0, 0, userData, 0, 0);
    }

    // ---- submit -------------------------------------------------------------------------------

    /**
     * Publishes the prepared SQEs (release store of the SQ tail) and returns how many the
     * kernel has not consumed yet.
     */
    private int flushSq() {
        U32.setRelease(sqRing, sqTailOff, sqeTail);
        cachedSqHead = (int) U32.getAcquire(sqRing, sqHeadOff);
        return sqeTail - cachedSqHead;
    }

    /**
     * Hands all prepared SQEs to the kernel in one io_uring_enter (no wait).
     *
     * @return SQEs consumed (0 when none were ready, without a syscall), or -errno: -EAGAIN or
     *         -EBUSY mean "reap completions, then submit again"; unconsumed SQEs stay queued
     *         and go with the next submit
     */
    public int submit() {
        ensureOpen();
        return enter(0, 0, true);
    }

    /**
     * Submits all prepared SQEs and waits until at least {@code waitNr} completions are in the
     * CQ (IORING_ENTER_GETEVENTS). With {@code waitNr == 0} it does not block but still runs
     * deferred task work and flushes overflowed CQEs: the call to make before
     * {@link #reap(CqeHandler)} on a DEFER_TASKRUN ring. EINTR is retried.
     *
     * @return SQEs consumed, or -errno (-EAGAIN/-EBUSY: reap, then retry)
     */
    public int submitAndWait(int waitNr) {
        ensureOpen();
        return enter(waitNr, IORING_ENTER_GETEVENTS, true);
    }

    /**
     * Like {@link #submitAndWait(int)} but gives up after {@code timeoutNanos}; needs
     * IORING_FEAT_EXT_ARG (5.11).
     *
     * @return SQEs consumed, or -errno: -ETIME when the time ran out before {@code waitNr}
     *         completions and nothing was submitted; -EOPNOTSUPP without EXT_ARG. An EINTR
     *         is retried with the full timeout again.
     */
    public int submitAndWait(int waitNr, long timeoutNanos) {
        ensureOpen();
        if ((features & IORING_FEAT_EXT_ARG) == 0) {
            return -Errno.EOPNOTSUPP;
        }
        long t = Math.max(0, timeoutNanos);
        timespec.set(JAVA_LONG, 0, t / 1_000_000_000L);
        timespec.set(JAVA_LONG, 8, t % 1_000_000_000L);
        for (;;) {
            int toSubmit = flushSq();
            int r = ioUringEnter(toSubmit, waitNr,
                    IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, extArg.address(),
                    GETEVENTS_ARG_SIZE);
            if (r != -Errno.EINTR) {
                return r;
            }
        }
    }

    /**
     * io_uring_enter(0, 0, GETEVENTS) without submitting: runs deferred task work (posting
     * DEFER_TASKRUN completions) and flushes overflowed CQEs. 0 or -errno.
     */
    public int getEvents() {
        ensureOpen();
        return enter(0, IORING_ENTER_GETEVENTS, false);
    }

    private int enter(int waitNr, int flags, boolean submit) {
        for (;;) {
            int toSubmit = submit ? flushSq() : 0;
            if (toSubmit == 0 && flags == 0) {
                return 0;
            }
            int r = ioUringEnter(toSubmit, waitNr, flags, 0, 0);
            if (r != -Errno.EINTR) {
                return r;
            }
        }
    }

    /** io_uring_enter through the registered ring when this thread registered it. */
    private int ioUringEnter(int toSubmit, int waitNr, int flags, long arg, long argSize) {
        if (enterFlag != 0 && Thread.currentThread() == enterThread) {
            return Libc.ioUringEnter(enterFd, toSubmit, waitNr, flags | enterFlag, arg, argSize);
        }
        return Libc.ioUringEnter(ringFd, toSubmit, waitNr, flags, arg, argSize);
    }

    // ---- CQ -----------------------------------------------------------------------------------

    /** Completions posted and not yet reaped. */
    public int cqReady() {
        ensureOpen();
        return (int) U32.getAcquire(cqRing, cqTailOff) - cqHead;
    }

    /**
     * True when the kernel holds completions that are not in the CQ yet: overflowed ones
     * (IORING_SQ_CQ_OVERFLOW) or pending task work (IORING_SQ_TASKRUN, with TASKRUN_FLAG).
     * {@link #getEvents()} moves them in.
     */
    public boolean cqNeedsFlush() {
        ensureOpen();
        int f = (int) U32.getAcquire(sqRing, sqFlagsOff);
        return (f & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) != 0;
    }

    /** Calls {@code handler} for every completion in the CQ; see {@link #reap(CqeHandler, int)}. */
    public int reap(CqeHandler handler) {
        return reap(handler, Integer.MAX_VALUE);
    }

    /**
     * Calls {@code handler} for up to {@code max} completions, oldest first, then releases
     * their CQ slots (one release store of the CQ head). When the CQ is empty but the kernel
     * signals held-back completions ({@link #cqNeedsFlush()}), or the ring is DEFER_TASKRUN
     * without TASKRUN_FLAG (no such signal), enters once with GETEVENTS to fetch them.
     * Allocates nothing.
     *
     * <p>The handler runs on this thread and may prepare and submit SQEs, but must not call
     * {@code reap} (IllegalStateException). If it throws, the completions handed out so far,
     * including the one that threw, count as consumed, and the exception propagates.
     *
     * @return the number of completions handed to {@code handler}
     */
    public int reap(CqeHandler handler, int max) {
        ensureOpen();
        if (reaping) {
            throw new IllegalStateException("reap called from inside a CqeHandler");
        }
        int n = reapPosted(handler, max);
        // Completions the kernel still holds as task work (DEFER_TASKRUN) are fetched now, not
        // on the next idle pass: on a busy reactor they would otherwise wait behind its sockets.
        if (n < max && (cqNeedsFlush() || (n == 0 && blindDeferred))) {
            getEvents();
            n += reapPosted(handler, max - n);
        }
        return n;
    }

    private int reapPosted(CqeHandler handler, int max) {
        int head = cqHead;
        int tail = (int) U32.getAcquire(cqRing, cqTailOff);
        int n = Math.min(tail - head, max);
        int done = 0;
        reaping = true;
        try {
            while (done < n) {
                long at = cqesOff + (long) ((head + done) & cqMask) * Cqe.SIZE;
                long userData = Cqe.userData(cqRing, at);
                int res = Cqe.res(cqRing, at);
                int flags = Cqe.flags(cqRing, at);
                done++;
                handler.complete(userData, res, flags);
            }
        } finally {
            reaping = false;
            if (done > 0) {
                cqHead = head + done;
                U32.setRelease(cqRing, cqHeadOff, cqHead);
            }
        }
        return done;
    }

    /** SQEs the kernel dropped as invalid (sq_ring->dropped). */
    public int sqDropped() {
        ensureOpen();
        return (int) U32.getAcquire(sqRing, sqDroppedOff);
    }

    /** CQEs lost to overflow (cq_ring->overflow); stays 0 with IORING_FEAT_NODROP. */
    public int cqOverflow() {
        ensureOpen();
        return (int) U32.getAcquire(cqRing, cqOverflowOff);
    }

    // ---- registration -------------------------------------------------------------------------

    /**
     * IORING_REGISTER_BUFFERS: registers {@code count} buffers described by an
     * {@code Iovec} array. The buffers must be native, stay mapped while registered, and are
     * then addressed by index in {@link #prepReadFixed}/{@link #prepWriteFixed}.
     *
     * @return 0 or -errno (-EBUSY when buffers are already registered, -ENOMEM over the
     *         locked-memory limit on old kernels)
     */
    public int registerBuffers(MemorySegment iovecArray, int count) {
        ensureOpen();
        return Libc.ioUringRegister(ringFd, IORING_REGISTER_BUFFERS, iovecArray.address(), count);
    }

    /** IORING_UNREGISTER_BUFFERS: 0 or -errno (-ENXIO when none are registered). */
    public int unregisterBuffers() {
        ensureOpen();
        return Libc.ioUringRegister(ringFd, IORING_UNREGISTER_BUFFERS, 0, 0);
    }

    /**
     * IORING_REGISTER_BUFFERS2 with IORING_RSRC_REGISTER_SPARSE (5.19): registers an empty
     * table of {@code slots} fixed buffers, to be filled one by one with
     * {@link #updateBuffer}. Cold path.
     *
     * <p>include/uapi/linux/io_uring.h: {@code struct io_uring_rsrc_register { __u32 nr;
     * __u32 flags; __u64 resv2; __aligned_u64 data; __aligned_u64 tags; }} (32 bytes), passed
     * with its size as nr_args.
     *
     * @return 0 or -errno (-EINVAL on kernels without sparse tables, -EBUSY when buffers are
     *         already registered, -EEXIST from a thread other than a SINGLE_ISSUER ring's owner)
     */
    public int registerBuffersSparse(int slots) {
        ensureOpen();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment rr = a.allocate(RSRC_REGISTER_SIZE, 8); // zeroed: resv2, data, tags
            rr.set(JAVA_INT, 0, slots);
            rr.set(JAVA_INT, 4, IORING_RSRC_REGISTER_SPARSE);
            return Libc.ioUringRegister(ringFd, IORING_REGISTER_BUFFERS2, rr.address(),
                    (int) RSRC_REGISTER_SIZE);
        }
    }

    /** sizeof(struct io_uring_rsrc_register) and sizeof(struct io_uring_rsrc_update2). */
    private static final long RSRC_REGISTER_SIZE = 32;
    private static final long RSRC_UPDATE2_SIZE = 32;

    /**
     * IORING_REGISTER_BUFFERS_UPDATE (5.13): puts buffer {@code addr..addr+len} in slot
     * {@code index} of the fixed-buffer table ({@code addr == 0 && len == 0} empties the slot;
     * requests already in flight keep the old buffer until they complete). The kernel pins the
     * pages now; the memory must stay mapped while it is registered. Cold path.
     *
     * <p>include/uapi/linux/io_uring.h: {@code struct io_uring_rsrc_update2 { __u32 offset;
     * __u32 resv; __aligned_u64 data; __aligned_u64 tags; __u32 nr; __u32 resv2; }} (32
     * bytes; data points at {@code nr} iovecs), passed with its size as nr_args.
     *
     * @return 1 (slots updated) or -errno (-ENOMEM over RLIMIT_MEMLOCK, -EFAULT for a buffer
     *         over 1 GiB or memory that can't be pinned, -EINVAL for a bad slot)
     */
    public int updateBuffer(int index, long addr, long len) {
        ensureOpen();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment iov = a.allocate(16, 8);
            iov.set(JAVA_LONG, 0, addr);
            iov.set(JAVA_LONG, 8, len);
            MemorySegment up = a.allocate(RSRC_UPDATE2_SIZE, 8); // zeroed: resv, tags, resv2
            up.set(JAVA_INT, 0, index);
            up.set(JAVA_LONG, 8, iov.address());
            up.set(JAVA_INT, 24, 1);
            return Libc.ioUringRegister(ringFd, IORING_REGISTER_BUFFERS_UPDATE, up.address(),
                    (int) RSRC_UPDATE2_SIZE);
        }
    }

    /**
     * IORING_REGISTER_PBUF_RING (5.19): registers the provided-buffer ring at {@code ringAddr}
     * ({@code entries} struct io_uring_buf, a power of two, page-aligned memory that stays mapped
     * until the ring is unregistered or closed) as buffer group {@code bgid}. Cold path.
     *
     * @return 0 or -errno (-EINVAL on kernels without buffer rings, -EEXIST when the group exists)
     */
    public int registerBufRing(long ringAddr, int entries, int bgid) {
        ensureOpen();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment reg = a.allocate(IO_URING_BUF_REG_SIZE, 8); // zeroed: flags, resv
            reg.set(JAVA_LONG, 0, ringAddr);
            reg.set(JAVA_INT, 8, entries);
            reg.set(JAVA_SHORT, 12, (short) bgid);
            return Libc.ioUringRegister(ringFd, IORING_REGISTER_PBUF_RING, reg.address(), 1);
        }
    }

    /**
     * IORING_REGISTER_FILES: afterwards SQEs with IOSQE_FIXED_FILE name a file by its index in
     * {@code fds}. Cold path (copies the array). 0 or -errno.
     */
    public int registerFiles(int[] fds) {
        ensureOpen();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment arr = a.allocate(JAVA_INT, Math.max(1, fds.length));
            MemorySegment.copy(fds, 0, arr, JAVA_INT, 0, fds.length);
            return Libc.ioUringRegister(ringFd, IORING_REGISTER_FILES, arr.address(), fds.length);
        }
    }

    /** IORING_UNREGISTER_FILES: 0 or -errno. */
    public int unregisterFiles() {
        ensureOpen();
        return Libc.ioUringRegister(ringFd, IORING_UNREGISTER_FILES, 0, 0);
    }

    /**
     * IORING_REGISTER_RING_FDS (5.18): registers this ring with the calling thread, so that its
     * io_uring_enter calls skip the fd lookup (fget/fput) that every enter otherwise pays, as
     * liburing's io_uring_register_ring_fd does. Only the calling thread's enters use it (the
     * registration is per task); other threads keep using the plain fd. Call it on the thread
     * that drives the ring; {@link #close()} on that thread unregisters it (from another thread
     * the kernel drops it when the registering thread exits). Cold path.
     *
     * @return 0 (also when already registered), or -errno (-EINVAL on kernels before 5.18:
     *         the ring works as before)
     */
    public int registerRingFd() {
        ensureOpen();
        if (enterFlag != 0) {
            return 0;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment up = rsrcUpdate(a, -1, ringFd); // offset -1: any free slot
            int r = Libc.ioUringRegister(ringFd, IORING_REGISTER_RING_FDS, up.address(), 1);
            if (r < 0) {
                return r;
            }
            if (r != 1) {
                return -Errno.EINVAL;
            }
            enterFd = up.get(JAVA_INT, 0);
            enterThread = Thread.currentThread();
            enterFlag = IORING_ENTER_REGISTERED_RING;
            return 0;
        }
    }

    /** True when this thread's io_uring_enter calls go through a registered ring fd. */
    public boolean ringFdRegistered() {
        return enterFlag != 0 && Thread.currentThread() == enterThread;
    }

    /** struct io_uring_rsrc_update { __u32 offset; __u32 resv; __aligned_u64 data; }. */
    private static MemorySegment rsrcUpdate(Arena a, int offset, long data) {
        MemorySegment up = a.allocate(16, 8);
        up.set(JAVA_INT, 0, offset);
        up.set(JAVA_INT, 4, 0);
        up.set(JAVA_LONG, 8, data);
        return up;
    }

    private void unregisterRingFd() {
        if (enterFlag == 0 || Thread.currentThread() != enterThread) {
            return;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment up = rsrcUpdate(a, enterFd, 0);
            Libc.ioUringRegister(ringFd, IORING_UNREGISTER_RING_FDS, up.address(), 1);
        }
        enterFlag = 0;
        enterFd = ringFd;
        enterThread = null;
    }

    /** IORING_REGISTER_EVENTFD: the kernel signals {@code eventFd} on each completion. */
    public int registerEventFd(int eventFd) {
        ensureOpen();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment arr = a.allocate(JAVA_INT);
            arr.set(JAVA_INT, 0, eventFd);
            return Libc.ioUringRegister(ringFd, IORING_REGISTER_EVENTFD, arr.address(), 1);
        }
    }

    /** io_uring_probe header (16 bytes) then io_uring_probe_op[] of 8 bytes each. */
    private static final int PROBE_OPS = 256;

    /**
     * IORING_REGISTER_PROBE (5.6): which opcodes this kernel supports. Cold path.
     *
     * @throws ErrnoException when the kernel has no probe (EINVAL before 5.6)
     */
    public Probe probe() throws ErrnoException {
        ensureOpen();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(16 + 8L * PROBE_OPS, 8);
            int r = Libc.ioUringRegister(ringFd, IORING_REGISTER_PROBE, p.address(), PROBE_OPS);
            if (r < 0) {
                throw new ErrnoException("IORING_REGISTER_PROBE", r);
            }
            int lastOp = Byte.toUnsignedInt(p.get(JAVA_BYTE, 0));
            int opsLen = Math.min(PROBE_OPS, Byte.toUnsignedInt(p.get(JAVA_BYTE, 1)));
            boolean[] supported = new boolean[PROBE_OPS];
            for (int i = 0; i < opsLen; i++) {
                long at = 16 + 8L * i;
                int op = Byte.toUnsignedInt(p.get(JAVA_BYTE, at));
                int flags = Short.toUnsignedInt(p.get(JAVA_SHORT, at + 2));
                supported[op] = (flags & IO_URING_OP_SUPPORTED) != 0;
            }
            return new Probe(lastOp, supported);
        }
    }

    // ---- lifecycle ----------------------------------------------------------------------------

    /** True once {@link #close()} has run. */
    public boolean isClosed() {
        return closed;
    }

    /**
     * Unmaps the rings and closes the ring fd (the kernel then cancels what is still in
     * flight). Idempotent. Afterwards every method but this, {@link #isClosed()} and the
     * fact getters throws IllegalStateException. Buffers still under I/O when the ring closes
     * must not be freed until the kernel is done with them; close an idle ring.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        unregisterRingFd();
        closed = true;
        Libc.munmap(sqes.address(), sqes.byteSize());
        if (cqRing != sqRing) {
            Libc.munmap(cqRing.address(), cqRing.byteSize());
        }
        Libc.munmap(sqRing.address(), sqRing.byteSize());
        Libc.close(ringFd);
        arena.close();
    }

    @Override
    public String toString() {
        return "IoUring[fd=" + ringFd + ", sq=" + sqEntries + ", cq=" + cqEntries
                + ", setup=" + SetupFlagNames.describe(setupFlags)
                + ", features=0x" + Integer.toHexString(features)
                + (closed ? ", closed]" : "]");
    }
}
