package io.biostack.rbd;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BioFlags;
import io.biostack.block.BioPool;
import io.biostack.block.BioSplitter;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.MpmcRing;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;
import io.biostack.sys.Errno;
import io.biostack.sys.Iovec;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;

/**
 * A leaf on a Ceph RBD image, over librbd's asynchronous C API through FFM: the JVM's
 * counterpart of the kernel's {@code drivers/block/rbd.c} and of qemu's {@code block/rbd.c}.
 *
 * <h2>I/O path</h2>
 * {@link #submit} checks the bio ({@link BioChecks}), takes a <em>slot</em> from a table, and
 * hands the bio to {@code rbd_aio_readv/writev/flush/discard/write_zeroes} with a completion made
 * by {@code rbd_aio_create_completion}. The completion's callback is one FFM upcall stub, made
 * once for the whole process; its argument is the device's and the slot's index, so the callback
 * finds its bio with two array reads: no allocation, no lock, no map per I/O. The slot table
 * starts with {@value #INITIAL_SLOTS} slots and grows (never shrinks) to the most I/Os ever in
 * flight, at most {@value #MAX_SLOTS}; past that a bio fails with {@link Status#AGAIN}.
 *
 * <h2>Threads</h2>
 * {@link #submit} never blocks and may be called from any thread; from an ordinary thread it
 * calls librbd at once. Completions, and so the bios' end-io callbacks, run on librbd's own
 * threads, which end-io callbacks must not block. A librbd call due on one of its threads (an
 * end-io callback that submits again, the next step of a PREFLUSH or FUA request) is made there
 * too: rbd_aio_* only queue work and return. With {@code -Dbiostack.rbd.inline=false} such calls
 * are handed instead, through a lock-free queue, to the device's one submitter thread (as qemu,
 * which never nests them); measured on a quiet 2-core machine, that hop cost a third of the
 * IOPS of 4k random reads at QD32 (15.3k against 23.1k inline; fio's rbd engine 21-22k), and
 * on 4k random writes at QD32 with rbd_cache off it lost in three rounds out of three (12.8k,
 * 7.4k, 7.7k deferred against 15.0k, 9.3k, 8.2k inline; issue 19). With rbd_cache on (Ceph 16's
 * default policy, write-around) the two came out even: in 12 paired rounds of 4k random writes at
 * QD32, deferred won 7 and inline 5, median ratio 1.00; librbd's logs show no call of ours
 * waiting there (write-around parks a write it cannot take yet, it does not block the caller).
 *
 * <h2>Memory</h2>
 * librbd reads and writes the memory of a request until the request completes. Native memory is
 * handed over as it is (an iovec per bio, kept in the slot); heap memory, which the GC may move,
 * is bounced: copied into the slot's own native buffer of {@value #BOUNCE_BYTES} bytes (made
 * once per slot, on its first heap bio) before a write, and back into the heap after a read, on
 * the completion thread. Heap bios are split to that size. The caller keeps its memory valid
 * until its bio completes, as for any device.
 *
 * <h2>Durability</h2>
 * librbd keeps a writeback cache ({@code rbd_cache}, on by default), so the device says it has a
 * volatile write cache and FLUSH is {@code rbd_aio_flush}. librbd has no per-write FUA: a write
 * with {@link BioFlags#FUA} is sent, and once it has completed an {@code rbd_aio_flush} follows;
 * the bio completes after the flush. That makes the write durable when the bio completes (what
 * FUA promises) and, as a side effect, every write completed before it too (more than FUA
 * promises, never less). {@link BioFlags#PREFLUSH} is an {@code rbd_aio_flush} before the op.
 *
 * <h2>Errors</h2>
 * librbd answers with {@code -errno}; {@link Status#fromErrno} converts it, once, and the bio's
 * detail names the op, offset and image. An I/O that would go out of range, or is misaligned,
 * fails before librbd sees it and writes nothing.
 *
 * <h2>Limits</h2>
 * 512-byte logical blocks; io_opt is the image's object size and io_min librbd's discard
 * granularity ({@code rbd_discard_granularity_bytes}, 64 KiB), as krbd publishes them
 * ({@code rbd_init_disk}: {@code io_opt = objset_bytes}); DISCARD and WRITE_ZEROES are
 * supported (WRITE_ZEROES with {@link BioFlags#NOUNMAP} asks librbd for a thick, allocating
 * zero-write). Extents ({@link #extentAt}) come from {@code rbd_diff_iterate2}.
 */
public final class RbdDevice implements BlockDevice, io.biostack.block.Resizable {
    private static final System.Logger LOG = System.getLogger("biostack.rbd");

    /** Slots made when the device opens: enough for fio's usual queue depths without growing. */
    static final int INITIAL_SLOTS = 128;
    /** Most I/Os in flight on one image (the callback argument keeps 32 bits for the slot). */
    static final int MAX_SLOTS = 16384;
    /** Most segments of one bio: the length of each slot's iovec array. */
    static final int MAX_IOV = 64;
    /** One slot's bounce buffer for heap memory; heap bios are split to it. */
    static final int BOUNCE_BYTES = 256 * 1024;
    /** Devices open at once in this process (the upper 32 bits of the callback argument). */
    static final int MAX_DEVICES = 4096;
    /**
     * librbd's {@code rbd_discard_granularity_bytes} default (src/common/options.cc, Ceph 16):
     * discards smaller than this, or unaligned to it, are not guaranteed to free space.
     */
    static final int DISCARD_GRANULARITY = 64 * 1024;
    /** Objects {@link #extentAt} looks at per call: bounds one call's RADOS round trips. */
    static final int EXTENT_WINDOW_OBJECTS = 64;

    private static final AtomicReferenceArray<RbdDevice> DEVICES = new AtomicReferenceArray<>(MAX_DEVICES);

    /** {@code void (*rbd_callback_t)(rbd_completion_t cb, void *arg)}: made once per process. */
    private static final MemorySegment ON_COMPLETE;
    /** {@code int (*)(uint64_t off, size_t len, int exists, void *arg)} of rbd_diff_iterate2. */
    private static final MemorySegment ON_DIFF;
    private static final ConcurrentHashMap<Long, DiffScan> SCANS = new ConcurrentHashMap<>();
    private static final AtomicLong SCAN_IDS = new AtomicLong();

    static {
        try {
            Linker linker = Linker.nativeLinker();
            MethodHandles.Lookup l = MethodHandles.lookup();
            ON_COMPLETE = linker.upcallStub(
                    l.findStatic(RbdDevice.class, "onComplete", MethodType.methodType(void.class, long.class, long.class)),
                    FunctionDescriptor.ofVoid(JAVA_LONG, JAVA_LONG), Arena.global());
            ON_DIFF = linker.upcallStub(
                    l.findStatic(RbdDevice.class, "onDiff",
                            MethodType.methodType(int.class, long.class, long.class, int.class, long.class)),
                    FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG), Arena.global());
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private static final int PHASE_PREFLUSH = 0;
    private static final int PHASE_OP = 1;
    private static final int PHASE_FUA_FLUSH = 2;

    /** One request in flight: its bio, its phase, and the native memory librbd is given. */
    private static final class Slot {
        final int index;
        /** MAX_IOV iovecs, then one pointer where rbd_aio_create_completion stores the handle. */
        final MemorySegment iov;
        final long iovAddr;
        final long completionOut;
        MemorySegment bounce;
        Bio bio;
        int phase;
        boolean bounced;
        /** Link in {@link SlotQueue}; owned by the queue while the slot is in it. */
        Slot next;

        Slot(int index, Arena arena) {
            this.index = index;
            this.iov = arena.allocate(MAX_IOV * Iovec.SIZE + 8, 8);
            this.iovAddr = iov.address();
            this.completionOut = iovAddr + MAX_IOV * Iovec.SIZE;
        }
    }

    /**
     * A lock-free hand-off of slots from librbd's threads to the submitter thread, linked
     * through the slots (as {@link io.biostack.block.BioQueue} links bios): push is one CAS,
     * the consumer takes everything with one swap. Allocates nothing.
     */
    private static final class SlotQueue {
        private final AtomicReference<Slot> head = new AtomicReference<>();

        /** True when the queue was empty: the consumer may be parked. */
        boolean push(Slot s) {
            Slot h;
            do {
                h = head.get();
                s.next = h;
            } while (!head.compareAndSet(h, s));
            return h == null;
        }

        /** Everything queued, oldest first; null when empty. Single consumer. */
        Slot takeAll() {
            Slot h = head.getAndSet(null);
            Slot prev = null;
            while (h != null) {
                Slot n = h.next;
                h.next = prev;
                prev = h;
                h = n;
            }
            return prev;
        }
    }

    /** Marks librbd's threads while they run {@link #onComplete}; one array per thread, made once. */
    private static final ThreadLocal<boolean[]> IN_CALLBACK = ThreadLocal.withInitial(() -> new boolean[1]);

    private final String name;
    private final RbdOptions options;
    private final Librbd.Api api;
    private final long cluster;
    private final long ioctx;
    private final long image;
    /** Grows with {@link #growTo}; bios admitted before a resize keep the old bound, which is smaller. */
    private volatile long size;
    private final long objectSize;
    private final long features;
    private final QueueLimits limits;
    private final QueueLimits bounceLimits;
    private final int index;
    private final Arena arena = Arena.ofShared();
    private final AtomicReferenceArray<Slot> slots = new AtomicReferenceArray<>(MAX_SLOTS);
    private final AtomicInteger slotCount = new AtomicInteger();
    private final MpmcRing<Slot> free = new MpmcRing<>(MAX_SLOTS);
    private final AtomicInteger inflight = new AtomicInteger();
    private final BioPool pool = new BioPool(256, 4);
    private final Consumer<Bio> direct = b -> start(b, false);
    private final Consumer<Bio> bounced = b -> start(b, true);
    private final SlotQueue deferred = new SlotQueue();
    private final Thread submitter;
    private volatile boolean closed;

    private RbdDevice(String name, RbdOptions options, Librbd.Api api, long cluster, long ioctx, long image,
            long size, long objectSize, long features, int index) {
        this.name = name;
        this.options = options;
        this.api = api;
        this.cluster = cluster;
        this.ioctx = ioctx;
        this.image = image;
        this.size = size;
        this.objectSize = objectSize;
        this.features = features;
        this.index = index;
        QueueLimits.Builder b = QueueLimits.builder()
                .logicalBlockSize(512)
                .physicalBlockSize(4096)
                .maxSegments(MAX_IOV)
                .maxBytes(objectSize)
                .ioMin(DISCARD_GRANULARITY)
                .ioOpt(objectSize)
                .discardGranularity(DISCARD_GRANULARITY)
                .maxDiscardBytes(Long.MAX_VALUE)
                .writeCache(true)
                .fua(true);
        // Without rbd_aio_write_zeroes (Ceph < 15) WRITE_ZEROES is refused (NOTSUPP) up front;
        // upper layers and NBD then zero with plain writes.
        b.maxWriteZeroesBytes(api.hasWriteZeroes() ? Long.MAX_VALUE : 0);
        this.limits = b.build();
        this.bounceLimits = limits.toBuilder().maxBytes(BOUNCE_BYTES).build();
        for (int i = 0; i < INITIAL_SLOTS; i++) {
            free.offer(newSlot());
        }
        this.submitter = Thread.ofPlatform().daemon(true).name("rbd-submit-" + options.spec()).unstarted(this::submitLoop);
    }

    /**
     * Connects to the cluster and opens {@code options.spec()}; creates the image when it is
     * missing and {@code options.size()} is set. Blocks for the round trips to the monitors (a
     * missing cluster fails after {@code client_mount_timeout}, 30 s unless ceph.conf says
     * otherwise). Failures say what to fix and name POOL/IMAGE.
     *
     * @param name    the device's name in a stack
     * @param options the image and how to reach its cluster
     * @return the open device, owned by the caller (close it)
     * @throws IOException when the cluster, the pool or the image cannot be reached or opened
     */
    public static RbdDevice open(String name, RbdOptions options) throws IOException {
        Librbd.Api api = Librbd.api();
        String what = "rbd " + options.spec();
        long cluster = 0;
        long ioctx = 0;
        long image = 0;
        int index = -1;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(JAVA_LONG);
            check(api.radosCreate2(out.address(), cstr(a, "ceph"), cstr(a, options.entity()), 0),
                    what + ": rados_create2 as " + options.entity());
            cluster = out.get(JAVA_LONG, 0);
            // A missing cluster would otherwise hang for librados' default of 300 s; the file may say more.
            check(api.radosConfSet(cluster, cstr(a, "client_mount_timeout"), cstr(a, "30")), what + ": rados_conf_set");
            // librbd keeps its cache write-through until the first flush, to protect guests that
            // never flush. This device says it has a volatile write cache and passes FLUSH and FUA
            // on, so that guard only costs: writes wait for the OSDs until someone flushes (fio's
            // and qemu's rbd clients and the rbd tool turn it off too). Set before the file is
            // read, so a ceph.conf that says otherwise wins.
            check(api.radosConfSet(cluster, cstr(a, "rbd_cache_writethrough_until_flush"), cstr(a, "false")),
                    what + ": rados_conf_set");
            int r = api.radosConfReadFile(cluster, options.conf() == null ? 0 : cstr(a, options.conf().toString()));
            if (r < 0) {
                throw new IOException(what + ": cannot read the Ceph configuration "
                        + (options.conf() == null ? "($CEPH_CONF, /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf; or give conf=PATH)"
                        : options.conf().toString()) + ": " + err(r));
            }
            if (options.timeoutSeconds() > 0) {
                // After the file: the stack line's timeout= wins over ceph.conf.
                String t = Long.toString(options.timeoutSeconds());
                for (String key : new String[] {"rados_osd_op_timeout", "rados_mon_op_timeout", "client_mount_timeout"}) {
                    check(api.radosConfSet(cluster, cstr(a, key), cstr(a, t)), what + ": rados_conf_set " + key);
                }
            }
            if (options.keyring() != null) {
                check(api.radosConfSet(cluster, cstr(a, "keyring"), cstr(a, options.keyring().toString())),
                        what + ": keyring " + options.keyring());
            }
            r = api.radosConnect(cluster);
            if (r < 0) {
                throw new IOException(what + ": cannot connect to the Ceph cluster as " + options.entity()
                        + (options.conf() == null ? "" : " (configuration " + options.conf() + ")") + ": " + err(r)
                        + (r == -Errno.ENOENT ? " (no keyring for this user? give keyring=PATH)" : ""));
            }
            r = api.radosIoctxCreate(cluster, cstr(a, options.pool()), out.address());
            if (r < 0) {
                throw new IOException(what + ": " + (r == -Errno.ENOENT ? "pool '" + options.pool() + "' does not exist"
                        : "cannot open pool '" + options.pool() + "'") + " (" + err(r) + ")");
            }
            ioctx = out.get(JAVA_LONG, 0);
            long imgName = cstr(a, options.image());
            r = api.rbdOpen(ioctx, imgName, out.address(), 0);
            if (r == -Errno.ENOENT && options.size() > 0) {
                MemorySegment order = a.allocate(JAVA_INT); // 0: librbd's default (rbd_default_order, 4 MiB objects)
                r = api.rbdCreate(ioctx, imgName, options.size(), order.address());
                if (r < 0 && r != -Errno.EEXIST) {
                    throw new IOException(what + ": cannot create the image (" + err(r) + ")");
                }
                LOG.log(System.Logger.Level.INFO, "created " + what + " of " + options.size() + " bytes");
                r = api.rbdOpen(ioctx, imgName, out.address(), 0);
            }
            if (r < 0) {
                throw new IOException(what + ": " + (r == -Errno.ENOENT ? "no image '" + options.image() + "' in pool '"
                        + options.pool() + "' (give size=SIZE to create it)" : "cannot open the image") + " (" + err(r) + ")");
            }
            image = out.get(JAVA_LONG, 0);
            check(api.rbdGetSize(image, out.address()), what + ": rbd_get_size");
            long size = out.get(JAVA_LONG, 0);
            check(api.rbdGetFeatures(image, out.address()), what + ": rbd_get_features");
            long features = out.get(JAVA_LONG, 0);
            MemorySegment info = a.allocate(Librbd.IMAGE_INFO_SIZE, 8);
            check(api.rbdStat(image, info.address(), Librbd.IMAGE_INFO_SIZE), what + ": rbd_stat");
            long objectSize = info.get(JAVA_LONG, Librbd.IMAGE_INFO_OBJ_SIZE);
            if (size % 512 != 0) {
                LOG.log(System.Logger.Level.WARNING, what + " is " + size + " bytes; the last "
                        + size % 512 + " bytes are beyond the last whole 512-byte block and not served");
                size -= size % 512;
            }
            index = claimIndex();
            RbdDevice d = new RbdDevice(name, options, api, cluster, ioctx, image, size, objectSize, features, index);
            DEVICES.set(index, d);
            d.submitter.start();
            if (!api.hasWriteZeroes()) {
                LOG.log(System.Logger.Level.INFO, Librbd.LIBRBD + " has no rbd_aio_write_zeroes (Ceph < 15): "
                        + "WRITE_ZEROES on " + what + " is not supported");
            }
            return d;
        } catch (IOException | RuntimeException e) {
            if (index >= 0) {
                releaseIndex(index);
            }
            if (image != 0) {
                api.rbdClose(image);
            }
            if (ioctx != 0) {
                api.radosIoctxDestroy(ioctx);
            }
            if (cluster != 0) {
                api.radosShutdown(cluster);
            }
            throw e;
        }
    }

    /** Indices taken by open devices (or devices being opened); guarded by the class lock. */
    private static final java.util.BitSet INDICES = new java.util.BitSet(MAX_DEVICES);

    /** Reserves a device index until {@link #releaseIndex}; not on the I/O path. */
    private static synchronized int claimIndex() throws IOException {
        int i = INDICES.nextClearBit(0);
        if (i >= MAX_DEVICES) {
            throw new IOException("more than " + MAX_DEVICES + " RBD images open in this process");
        }
        INDICES.set(i);
        return i;
    }

    private static synchronized void releaseIndex(int i) {
        DEVICES.set(i, null);
        INDICES.clear(i);
    }

    private static long cstr(Arena a, String s) {
        return a.allocateFrom(s).address();
    }

    private static void check(long r, String what) throws IOException {
        if (r < 0) {
            throw new IOException(what + ": " + err(r));
        }
    }

    private static String err(long r) {
        int e = (int) -r;
        return Errno.name(e) + " (" + Errno.describe(e) + ")";
    }

    private Slot newSlot() {
        int i = slotCount.getAndIncrement();
        if (i >= MAX_SLOTS) {
            slotCount.decrementAndGet();
            return null;
        }
        Slot s = new Slot(i, arena);
        slots.set(i, s);
        return s;
    }

    @Override public String name() { return name; }
    @Override public long size() { return size; }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return false; }

    /**
     * The image, as {@code pool/image}.
     *
     * @return the spec
     */
    public String spec() {
        return options.spec();
    }

    /**
     * The image's object size in bytes (its io_opt).
     *
     * @return bytes per RADOS object
     */
    public long objectSize() {
        return objectSize;
    }

    /**
     * librbd's feature bits of the image ({@code RBD_FEATURE_*}, librbd/rbd_types.h).
     *
     * @return the bits
     */
    public long features() {
        return features;
    }

    /** Slots made so far (stops growing once the deepest queue has been seen). */
    int slotsMade() {
        return slotCount.get();
    }

    /**
     * Takes ownership of {@code bio} until it completes, on a librbd thread (or at once, on this
     * thread, when it is bad or librbd refuses it). Never blocks.
     */
    @Override
    public void submit(Bio bio) {
        if (closed) {
            bio.fail(Status.CANCELLED, "rbd " + options.spec() + " is closed");
            return;
        }
        if (!BioChecks.admit(bio, name, size, limits, false)) {
            return;
        }
        if (bio.op().hasData()) {
            String bad = unusableMemory(bio);
            if (bad != null) {
                bio.fail(Status.INVAL, bio.op() + " at offset " + bio.offset() + " of rbd " + options.spec() + ": " + bad);
                return;
            }
            if (!allNative(bio)) {
                BioSplitter.submitSplit(bio, bounceLimits, pool, bounced);
                return;
            }
            BioSplitter.submitSplit(bio, limits, pool, direct);
            return;
        }
        start(bio, false);
    }

    private static String unusableMemory(Bio bio) {
        for (int i = bio.iter().index(); i < bio.segmentCount(); i++) {
            if (!bio.segment(i).scope().isAlive()) {
                return "its memory was freed (closed arena)";
            }
        }
        return null;
    }

    private static boolean allNative(Bio bio) {
        for (int i = bio.iter().index(); i < bio.segmentCount(); i++) {
            if (!bio.segment(i).isNative()) {
                return false;
            }
        }
        return true;
    }

    private void start(Bio bio, boolean bounce) {
        Slot s = free.poll();
        if (s == null) {
            s = newSlot();
            if (s == null) {
                bio.fail(Status.AGAIN, "more than " + MAX_SLOTS + " I/Os in flight on rbd " + options.spec());
                return;
            }
        }
        s.bio = bio;
        s.bounced = bounce;
        if (bounce) {
            if (s.bounce == null) {
                s.bounce = arena.allocate(BOUNCE_BYTES, 4096);
            }
            if (bio.op() == Op.WRITE) {
                bio.copyTo(s.bounce);
            }
        }
        inflight.incrementAndGet();
        boolean preflush = bio.op() != Op.FLUSH && bio.hasFlag(BioFlags.PREFLUSH);
        s.phase = preflush ? PHASE_PREFLUSH : PHASE_OP;
        issueOrDefer(s);
    }

    /**
     * Sends the slot's current phase to librbd: at once, or, on one of librbd's own threads
     * (an end-io callback that submits again, or the next phase of a PREFLUSH/FUA request),
     * through the submitter thread when {@code -Dbiostack.rbd.inline=false} (see the class
     * comment for why inline is the default).
     */
    private void issueOrDefer(Slot s) {
        if (!INLINE_FROM_CALLBACK && IN_CALLBACK.get()[0]) {
            if (deferred.push(s)) {
                LockSupport.unpark(submitter);
            }
            return;
        }
        issue(s);
    }

    /** Call librbd from its own callback threads too (the default); {@code -Dbiostack.rbd.inline=false} defers. */
    private static final boolean INLINE_FROM_CALLBACK = !"false".equals(System.getProperty("biostack.rbd.inline"));

    private void issue(Slot s) {
        int r = s.phase == PHASE_OP ? issueOp(s) : issueFlush(s);
        if (r < 0) {
            finish(s, r);
        }
    }

    /** The submitter thread: issues what librbd's threads deferred, in order; parks when idle. */
    private void submitLoop() {
        while (true) {
            Slot s = deferred.takeAll();
            if (s == null) {
                if (closed && inflight.get() == 0) {
                    return;
                }
                LockSupport.parkNanos(this, closed ? 1_000_000L : 100_000_000L);
                continue;
            }
            while (s != null) {
                Slot n = s.next;
                s.next = null;
                issue(s);
                s = n;
            }
        }
    }

    private long completion(Slot s) {
        return ((long) index << 32) | s.index;
    }

    /** Makes a completion in the slot's out-pointer; returns 0 or -errno. */
    private int newCompletion(Slot s) {
        return api.aioCreateCompletion(completion(s), ON_COMPLETE.address(), s.completionOut);
    }

    private int issueFlush(Slot s) {
        int r = newCompletion(s);
        if (r < 0) {
            return r;
        }
        long c = s.iov.get(JAVA_LONG, MAX_IOV * Iovec.SIZE);
        r = api.aioFlush(image, c);
        if (r < 0) {
            api.aioRelease(c);
        }
        return r;
    }

    private int issueOp(Slot s) {
        Bio bio = s.bio;
        if (bio.op() == Op.FLUSH) {
            return issueFlush(s);
        }
        int r = newCompletion(s);
        if (r < 0) {
            return r;
        }
        long c = s.iov.get(JAVA_LONG, MAX_IOV * Iovec.SIZE);
        switch (bio.op()) {
            case READ, WRITE -> {
                int n = fillIovec(s, bio);
                r = bio.op() == Op.READ ? api.aioReadv(image, s.iovAddr, n, bio.offset(), c)
                        : api.aioWritev(image, s.iovAddr, n, bio.offset(), c);
            }
            case DISCARD -> r = api.aioDiscard(image, bio.offset(), bio.size(), c);
            case WRITE_ZEROES -> r = api.aioWriteZeroes(image, bio.offset(), bio.size(), c,
                    bio.hasFlag(BioFlags.NOUNMAP) ? Librbd.WRITE_ZEROES_FLAG_THICK_PROVISION : 0, 0);
            default -> r = -Errno.EOPNOTSUPP;
        }
        if (r < 0) {
            api.aioRelease(c);
        }
        return r;
    }

    private static int fillIovec(Slot s, Bio bio) {
        if (s.bounced) {
            Iovec.set(s.iov, 0, s.bounce.address(), bio.size());
            return 1;
        }
        int i = bio.iter().index();
        long skip = bio.iter().doneInSegment();
        long left = bio.size();
        int n = 0;
        while (left > 0 && n < MAX_IOV) {
            MemorySegment v = bio.segment(i++);
            long len = Math.min(v.byteSize() - skip, left);
            Iovec.set(s.iov, n++, v.address() + skip, len);
            left -= len;
            skip = 0;
        }
        return n;
    }

    /** The upcall of every completion, on a librbd thread. Must not throw into native code. */
    private static void onComplete(long c, long arg) {
        // The mark is only read when calls from librbd's threads are deferred; inline (the
        // default) the completion skips the thread-local lookup.
        boolean[] inCallback = INLINE_FROM_CALLBACK ? null : IN_CALLBACK.get();
        if (inCallback != null) {
            inCallback[0] = true;
        }
        try {
            RbdDevice d = DEVICES.get((int) (arg >>> 32));
            Librbd.Api api = d.api;
            long ret = api.aioGetReturnValue(c);
            api.aioRelease(c);
            d.step(d.slots.get((int) arg), ret);
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "rbd completion callback failed", t);
        } finally {
            if (inCallback != null) {
                inCallback[0] = false;
            }
        }
    }

    /** One librbd call of a request is done: go on to the next phase, or complete the bio. */
    private void step(Slot s, long ret) {
        if (ret < 0) {
            finish(s, ret);
            return;
        }
        switch (s.phase) {
            case PHASE_PREFLUSH -> {
                s.phase = PHASE_OP;
                issueOrDefer(s);
            }
            case PHASE_OP -> {
                if (s.bio.op() == Op.WRITE && s.bio.hasFlag(BioFlags.FUA)) {
                    s.phase = PHASE_FUA_FLUSH;
                    issueOrDefer(s);
                } else {
                    finish(s, 0);
                }
            }
            default -> finish(s, 0);
        }
    }

    private void finish(Slot s, long ret) {
        Bio bio = s.bio;
        s.bio = null;
        if (ret < 0) {
            int e = (int) -ret;
            String phase = s.phase == PHASE_OP ? "" : s.phase == PHASE_PREFLUSH ? " (its preflush)" : " (its FUA flush)";
            bio.setStatus(Status.fromErrno(e), bio.op() + phase + " of " + bio.size() + " bytes at offset "
                    + bio.offset() + " of rbd " + options.spec() + ": " + Errno.name(e) + " (" + Errno.describe(e) + ")");
        } else if (s.bounced && bio.op() == Op.READ) {
            bio.copyFrom(s.bounce);
        }
        s.bounced = false;
        free.offer(s);
        inflight.decrementAndGet();
        bio.endIo();
    }

    // ---- extents ---------------------------------------------------------------------------

    /** The extents one rbd_diff_iterate2 call reported; filled on whatever thread librbd calls back on. */
    private static final class DiffScan {
        final List<long[]> extents = new ArrayList<>();
    }

    private static int onDiff(long off, long len, int exists, long arg) {
        try {
            DiffScan s = SCANS.get(arg);
            if (s != null && exists != 0) {
                synchronized (s) {
                    s.extents.add(new long[] {off, len});
                }
            }
        } catch (Throwable t) {
            return -Errno.EIO;
        }
        return 0;
    }

    /**
     * The allocation state from {@code offset}, from {@code rbd_diff_iterate2} against the
     * image's beginning (no snapshot), {@code whole_object} false, so at the precision librbd
     * reports: objects never written are holes, and a written object is data from its start to
     * the end of what was written in it (librbd 16 reports each object's extent, not the
     * sparse runs inside it). Looks at most
     * {@value #EXTENT_WINDOW_OBJECTS} objects per call, so a run may be reported in pieces.
     * Where librbd can't tell, says "data". Blocks for RADOS round trips: not the I/O path.
     */
    @Override
    public Extent extentAt(long offset, long maxLength) {
        long len = Math.min(maxLength, size - offset);
        if (len <= 0 || closed) {
            return Extent.data(Math.max(len, 0));
        }
        long window = Math.min(len, objectSize * EXTENT_WINDOW_OBJECTS);
        long id = SCAN_IDS.incrementAndGet();
        DiffScan scan = new DiffScan();
        SCANS.put(id, scan);
        int r;
        try {
            r = api.diffIterate2(image, 0, offset, window, true, false, ON_DIFF.address(), id);
        } finally {
            SCANS.remove(id);
        }
        if (r < 0) {
            LOG.log(System.Logger.Level.DEBUG, "rbd_diff_iterate2 on " + options.spec() + ": " + err(r));
            return Extent.data(window);
        }
        long end = offset + window;
        List<long[]> ex;
        synchronized (scan) {
            ex = new ArrayList<>(scan.extents);
        }
        ex.sort((x, y) -> Long.compare(x[0], y[0]));
        long pos = offset;
        boolean data = false;
        for (long[] e : ex) {
            long s = Math.max(e[0], offset);
            long t = Math.min(e[0] + e[1], end);
            if (t <= pos) {
                continue;
            }
            if (s > pos) {
                if (!data) {
                    return Extent.hole(roundDown(s - offset));
                }
                break;
            }
            data = true;
            pos = t;
        }
        if (!data) {
            return Extent.hole(window);
        }
        return Extent.data(Math.min(roundUp(pos - offset), window));
    }

    private static long roundDown(long v) {
        return Math.max(v / 512 * 512, 512);
    }

    private static long roundUp(long v) {
        return (v + 511) / 512 * 512;
    }

    // ---- resize ----------------------------------------------------------------------------

    /**
     * Grows the image to at least {@code minSize} bytes (rounded up to 512) with {@code rbd_resize},
     * so that a format above (qcow2) can allocate at its end; never shrinks. A round trip to the
     * OSDs: not for the I/O path. Bios in flight are not disturbed: a bio is checked against the
     * size when it is submitted, and the size only grows.
     *
     * @param minSize the size wanted, in bytes
     * @return the image's size afterwards, at least {@code minSize}
     * @throws IOException when the device is closed or librbd refuses the resize (the message
     *         names the image and the errno)
     */
    @Override
    public synchronized long growTo(long minSize) throws IOException {
        if (closed) {
            throw new IOException("rbd " + options.spec() + " is closed");
        }
        if (minSize <= size) {
            return size;
        }
        long want = roundUp(minSize);
        int r = api.rbdResize(image, want);
        if (r < 0) {
            throw new IOException("rbd_resize of " + options.spec() + " to " + want + " bytes: " + err(r));
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(JAVA_LONG);
            r = api.rbdGetSize(image, out.address());
            if (r < 0) {
                throw new IOException("rbd_get_size of " + options.spec() + " after resize: " + err(r));
            }
            long now = out.get(JAVA_LONG, 0);
            size = now - now % 512;
        }
        LOG.log(System.Logger.Level.INFO, "rbd " + options.spec() + " grown to " + size + " bytes");
        return size;
    }

    // ---- shutdown --------------------------------------------------------------------------

    /**
     * Waits (up to 30 s) for I/O in flight, flushes librbd's cache, closes the image and the
     * cluster connection, then frees the slots' memory. Bios submitted afterwards fail with
     * CANCELLED.
     */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (inflight.get() > 0 && System.nanoTime() < deadline) {
            try {
                Thread.sleep(1);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        LockSupport.unpark(submitter);
        try {
            submitter.join(5_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        int r = api.rbdFlush(image);
        if (r < 0) {
            LOG.log(System.Logger.Level.WARNING, "flush of rbd " + options.spec() + " at close: " + err(r));
        }
        api.rbdClose(image);
        api.radosIoctxDestroy(ioctx);
        api.radosShutdown(cluster);
        releaseIndex(index);
        if (inflight.get() == 0) {
            arena.close(); // never free memory librbd may still write into
        } else {
            LOG.log(System.Logger.Level.WARNING, inflight.get() + " I/Os still in flight on rbd " + options.spec()
                    + " at close; their memory is left allocated");
        }
    }

    @Override
    public String toString() {
        return "rbd " + options.spec() + " (" + size + " bytes, objects of " + objectSize + ")";
    }

    // ---- the table line (dm keeps a target's constructor beside it) ----------------------------

    /**
     * The leaf table line {@code rbd POOL/IMAGE [id=NAME] [conf=PATH] [keyring=PATH] [size=SIZE]
     * [timeout=SECONDS]}, read by {@link RbdOptions#parse}.
     *
     * @param a the line's arguments
     * @return the spec
     */
    public static TableSpec parseTable(TableArgs a) {
        List<String> args = new ArrayList<>();
        while (a.hasNext()) {
            args.add(a.next("argument"));
        }
        RbdOptions o;
        try {
            o = RbdOptions.parse(args);
        } catch (IllegalArgumentException e) {
            throw a.bad(e.getMessage());
        }
        return a.spec((name, len, r) -> open(name, o));
    }
}
