package io.biostack.layer.crypt;

import io.biostack.block.Bio;
import io.biostack.block.BioChecks;
import io.biostack.block.BioPool;
import io.biostack.block.BioSplitter;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.MpmcRing;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.Status;
import io.biostack.layer.Linear;
import io.biostack.layer.Target;
import io.biostack.layer.crypt.BouncePool.Bounce;
import io.biostack.block.TableArgs;
import io.biostack.block.TableSpec;

import java.util.Arrays;
import java.util.HexFormat;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * The device-mapper {@code crypt} target (Documentation/admin-guide/device-mapper/dm-crypt.rst):
 * a device whose sectors are stored encrypted on {@code lower} from {@code startBytes} on.
 * Table semantics: {@code crypt <cipher> <key hex> <iv_offset> <device> <offset> [sector_size:N]
 * [iv_large_sectors]}, with the offset in bytes here.
 *
 * <h2>IVs</h2>
 * The IV of an encryption sector is {@code plain64}: the 512-byte sector number within this
 * device plus {@code iv_offset}. With {@code sector_size:4096} the second 4 KiB sector therefore
 * has IV 8, as in dm-crypt; with {@code iv_large_sectors} the sum is counted in
 * {@code sector_size} units instead (IV 1). Either way {@code iv_offset} must be a multiple of
 * {@code sector_size / 512}, as dm-crypt requires.
 *
 * <h2>Data path</h2>
 * <ul>
 *   <li>WRITE: each piece (at most {@link #BOUNCE_BYTES}, split and chained as
 *   {@link BioSplitter} does) is encrypted into a bounce buffer from a pool, never in the
 *   caller's memory; a new bio pointing at the buffer goes to {@code lower} (from the thread that
 *   finished the encryption), and its end-io gives the buffer back and completes the piece with
 *   the lower status.</li>
 *   <li>READ: a clone goes to {@code lower}; once it completes, the caller's memory is decrypted
 *   in place and the original completes.</li>
 *   <li>FLUSH passes through; DISCARD and WRITE_ZEROES are refused (NOTSUPP), as dm-crypt does
 *   without {@code allow_discards}: zeros below would not read back as zeros above.</li>
 * </ul>
 *
 * <h2>Threads (dm-crypt's kcryptd)</h2>
 * A piece of at most {@code inline} bytes (default {@link #DEFAULT_INLINE_BYTES}) is transformed
 * on the thread that has it: the one completing the lower READ (an io_uring worker, or the
 * submitter over a ramdisk), or the one submitting the WRITE. That is cheaper than any hand-off
 * for small I/O (a 4 KiB decrypt costs about half a microsecond, a futex wake-up several). A
 * larger piece becomes a {@link CipherJob} of {@code chunk}-byte chunks
 * ({@link #DEFAULT_CHUNK_BYTES}) that the device's {@link CryptWorkers} (default: one per
 * available processor, none on a single one) share, and the thread that had it goes on at once:
 * an io_uring worker goes back to its ring instead of spending the cipher time on it. Whichever
 * worker finishes the last chunk completes the READ or sends the WRITE down. So a READ's end-io
 * callback may run on a crypt worker, and a lower WRITE may be submitted from one. When no worker
 * can take the job (none, the device closing, the ring of jobs full, or memory of a confined arena,
 * which only its owner thread may touch), the thread that has it runs it. Nothing blocks, and the
 * path allocates nothing once warm.
 *
 * <p>Tuning ({@link Tuning}, or system properties for devices made from a stack file):
 * {@code biostack.crypt.workers}, {@code .inline}, {@code .chunk}, {@code .spin_us} (how long
 * one idle worker polls before it parks) and {@code .help} ({@code true}: work-stealing, the
 * thread that has a large piece runs chunks too, so the bio never waits for a sleeping worker;
 * better latency at low queue depth, but the cipher work stays partly on the ring thread).
 * Measured with CryptScaling over a loop device with direct I/O, 128 KiB reads at QD8: the
 * io_uring worker spent 8 us of CPU per I/O alone, 36 with the cipher inline, 27 with help and
 * 16 without.
 *
 * <p>The key is never kept as text and never printed: {@link #toString()} and {@link #table()}
 * show it as {@code -}. Closing this device does not close {@code lower}.
 */
public final class Crypt implements Target {
    /** Largest write sent down in one bounce buffer (dm-crypt caps its clones at BIO_MAX_VECS pages). */
    public static final int BOUNCE_BYTES = 128 * 1024;
    /** Idle bounce buffers kept per device. */
    private static final int BOUNCE_POOL = 64;
    /**
     * Pieces up to this size are transformed on the thread that has them. Measured on 2 vCPUs
     * (bench/crypt/run.sh): a 4 KiB decrypt costs a few microseconds, about one futex wake-up,
     * so handing it off only adds latency.
     */
    public static final int DEFAULT_INLINE_BYTES = 32 * 1024;
    /** Bytes per chunk of a larger piece: a 128 KiB bio makes four, enough to feed every core. */
    public static final int DEFAULT_CHUNK_BYTES = 32 * 1024;
    /**
     * How long an idle worker polls before parking: about one 128 KiB bio's cipher work (14 us at
     * 9 GB/s, measured with XtsThroughput), so a steady stream of large bios rarely pays a wake-up.
     */
    private static final long DEFAULT_SPIN_US = 20;
    /** Job references the worker ring holds; beyond that the starter runs the chunks itself. */
    private static final int WORK_RING = 1024;

    private final String name;
    private final BlockDevice lower;
    private final CipherSpec spec;
    private final Xts xts;
    private final long ivOffset;
    private final long start;
    private final int sectorSize;
    private final boolean ivLargeSectors;
    private final int ivShift;
    private final long ivStep;
    private final long size;
    private final QueueLimits limits;
    private final QueueLimits writeLimits;
    private final BioPool bios = new BioPool(256);
    private final BouncePool bounces = new BouncePool(BOUNCE_BYTES, BOUNCE_POOL);
    private final EndIo readDone = this::readDone;
    private final EndIo writeDone = this::writeDone;
    private final Consumer<Bio> readOne = this::readOne;
    private final Consumer<Bio> writeOne = this::writeOne;
    private final CryptWorkers workers;
    private final MpmcRing<CipherJob> jobs = new MpmcRing<>(256);
    private final AtomicLong jobsCreated = new AtomicLong();
    private final int inlineBytes;
    private final int chunkBytes;
    private final boolean starterHelps;
    /** Read-only although {@code lower} is writable ({@code luks ... read-only}). */
    private final boolean readOnly;

    private Crypt(String name, BlockDevice lower, CipherSpec spec, byte[] key, long ivOffset, long start,
                  int sectorSize, boolean ivLargeSectors, Tuning tuning, boolean readOnly) {
        if (sectorSize < 512 || sectorSize > 4096 || Integer.bitCount(sectorSize) != 1) {
            throw new IllegalArgumentException("crypt sector_size must be a power of two from 512 to 4096, not "
                    + sectorSize);
        }
        int lowerLbs = lower.limits().logicalBlockSize();
        if (start < 0 || start % 512 != 0 || start % lowerLbs != 0) {
            throw new IllegalArgumentException("crypt offset " + start + " is not a multiple of "
                    + Math.max(512, lowerLbs) + " bytes on " + lower.name());
        }
        if (start > lower.size()) {
            throw new IllegalArgumentException("crypt offset " + start + " is beyond the end of " + lower.name()
                    + " (" + lower.size() + " bytes)");
        }
        if (ivOffset < 0) {
            throw new IllegalArgumentException("negative crypt iv_offset " + ivOffset);
        }
        int shift = Integer.numberOfTrailingZeros(sectorSize / 512);
        // dm-crypt's crypt_ctr refuses it with or without iv_large_sectors ("Invalid iv_offset sector"):
        // every IV it makes is then a multiple of sector_size/512, so data written with any other
        // offset could never be read through the kernel
        if (ivOffset % (sectorSize / 512) != 0) {
            throw new IllegalArgumentException("the iv_offset " + ivOffset + " must be a multiple of "
                    + sectorSize / 512 + " (sector_size in 512-byte sectors), as dm-crypt requires");
        }
        this.name = name;
        this.lower = lower;
        this.readOnly = readOnly || lower.isReadOnly();
        this.spec = spec;
        this.xts = new Xts(key, spec);
        this.ivOffset = ivOffset;
        this.start = start;
        this.sectorSize = sectorSize;
        this.ivLargeSectors = ivLargeSectors;
        this.ivShift = shift;
        this.ivStep = ivLargeSectors ? 1 : sectorSize / 512;
        this.size = (lower.size() - start) / sectorSize * sectorSize;
        QueueLimits top = QueueLimits.builder()
                .logicalBlockSize(sectorSize)
                .physicalBlockSize(sectorSize)
                .fua(true)
                .build();
        this.limits = QueueLimits.stack(top, lower.limits());
        long cap = limits.maxBytes() == 0 ? BOUNCE_BYTES : Math.min(limits.maxBytes(), BOUNCE_BYTES);
        this.writeLimits = limits.toBuilder().maxBytes(cap).build();
        // chunks are whole encryption sectors and fit one Xts pass
        int chunk = Math.clamp(tuning.chunkBytes(), sectorSize, Xts.MAX_CHUNK);
        this.chunkBytes = chunk / sectorSize * sectorSize;
        this.inlineBytes = Math.max(0, tuning.inlineBytes());
        this.starterHelps = tuning.starterHelps();
        this.workers = new CryptWorkers(name, Math.max(0, tuning.workers()), WORK_RING, tuning.spinUs() * 1000L);
    }

    /**
     * How the cipher work is spread: {@code workers} threads (0: all on the I/O threads), pieces
     * up to {@code inlineBytes} done where they are, larger ones cut in {@code chunkBytes} chunks,
     * idle workers polling {@code spinUs} microseconds before they park.
     *
     * @param workers      cipher threads (0: the cipher work stays on the I/O threads)
     * @param inlineBytes  pieces up to this size are done where they are
     * @param chunkBytes   larger pieces are cut in chunks of this size
     * @param spinUs       how long an idle worker polls before it parks
     * @param starterHelps whether the thread with a large piece runs chunks too (work-stealing)
     */
    public record Tuning(int workers, int inlineBytes, int chunkBytes, int spinUs, boolean starterHelps) {
        /**
         * A tuning in which the thread that has a large piece runs chunks too (work-stealing).
         *
         * @param workers     cipher threads
         * @param inlineBytes pieces up to this size are done where they are
         * @param chunkBytes  larger pieces are cut in chunks of this size
         * @param spinUs      how long an idle worker polls before it parks
         */
        public Tuning(int workers, int inlineBytes, int chunkBytes, int spinUs) {
            this(workers, inlineBytes, chunkBytes, spinUs, true);
        }

        /**
         * The defaults, each overridable by a system property {@code biostack.crypt.*}: a worker per
         * available processor, and none on a single processor, where there is nothing to spread over
         * and a hand-off only adds context switches (measured with CryptScaling pinned to one core:
         * +10% CPU per 128 KiB read, +40% with a spinning worker).
         *
         * @return the tuning from the system properties and the processor count
         */
        public static Tuning defaults() {
            int cpus = Runtime.getRuntime().availableProcessors();
            return new Tuning(Integer.getInteger("biostack.crypt.workers", cpus > 1 ? cpus : 0),
                    Integer.getInteger("biostack.crypt.inline", DEFAULT_INLINE_BYTES),
                    Integer.getInteger("biostack.crypt.chunk", DEFAULT_CHUNK_BYTES),
                    Integer.getInteger("biostack.crypt.spin_us", (int) DEFAULT_SPIN_US),
                    Boolean.parseBoolean(System.getProperty("biostack.crypt.help", "false")));
        }

        /**
         * This tuning with another number of worker threads.
         *
         * @param n cipher threads
         * @return the new tuning
         */
        public Tuning withWorkers(int n) {
            return new Tuning(n, inlineBytes, chunkBytes, spinUs, starterHelps);
        }
    }

    /**
     * A crypt device over {@code lower} from {@code startBytes} to its end, as the dm table
     * {@code crypt <cipherSpec> <key> <ivOffsetSectors> <lower> <startBytes/512>
     * sector_size:<sectorSize>}. {@code key} is copied; the caller may wipe it.
     *
     * @param name            the device's name
     * @param lower           the device holding the ciphertext; not closed with this one
     * @param cipherSpec      e.g. aes-xts-plain64
     * @param key             the key; copied, the caller may wipe it
     * @param ivOffsetSectors added to the 512-byte sector number for the IV
     * @param startBytes      first byte of the ciphertext on {@code lower}
     * @param sectorSize      encryption sector size
     * @return the device; the caller owns it
     * @throws IllegalArgumentException for an unsupported cipher, a bad key length, sector size
     *                                  or offset
     */
    public static BlockDevice create(String name, BlockDevice lower, String cipherSpec, byte[] key,
                                     long ivOffsetSectors, long startBytes, int sectorSize) {
        return create(name, lower, cipherSpec, key, ivOffsetSectors, startBytes, sectorSize, false);
    }

    /**
     * As {@link #create(String, BlockDevice, String, byte[], long, long, int)}, with dm-crypt's
     * {@code iv_large_sectors}.
     *
     * @param name            the device's name
     * @param lower           the device holding the ciphertext; not closed with this one
     * @param cipherSpec      e.g. aes-xts-plain64
     * @param key             the key; copied, the caller may wipe it
     * @param ivOffsetSectors added to the 512-byte sector number for the IV
     * @param startBytes      first byte of the ciphertext on {@code lower}
     * @param sectorSize      encryption sector size
     * @param ivLargeSectors  count IVs in {@code sectorSize} units
     * @return the device; the caller owns it
     * @throws IllegalArgumentException for an unsupported cipher, a bad key length, sector size or offset
     */
    public static Crypt create(String name, BlockDevice lower, String cipherSpec, byte[] key, long ivOffsetSectors,
                               long startBytes, int sectorSize, boolean ivLargeSectors) {
        return create(name, lower, cipherSpec, key, ivOffsetSectors, startBytes, sectorSize, ivLargeSectors,
                Tuning.defaults());
    }

    /**
     * As {@link #create(String, BlockDevice, String, byte[], long, long, int, boolean)}, with its
     * threads tuned.
     *
     * @param name            the device's name
     * @param lower           the device holding the ciphertext; not closed with this one
     * @param cipherSpec      e.g. aes-xts-plain64
     * @param key             the key; copied, the caller may wipe it
     * @param ivOffsetSectors added to the 512-byte sector number for the IV
     * @param startBytes      first byte of the ciphertext on {@code lower}
     * @param sectorSize      encryption sector size
     * @param ivLargeSectors  count IVs in {@code sectorSize} units
     * @param tuning          the cipher threads
     * @return the device; the caller owns it
     * @throws IllegalArgumentException for an unsupported cipher, a bad key length, sector size or offset
     */
    public static Crypt create(String name, BlockDevice lower, String cipherSpec, byte[] key, long ivOffsetSectors,
                               long startBytes, int sectorSize, boolean ivLargeSectors, Tuning tuning) {
        return create(name, lower, cipherSpec, key, ivOffsetSectors, startBytes, sectorSize, ivLargeSectors, tuning,
                false);
    }

    /**
     * As {@link #create(String, BlockDevice, String, byte[], long, long, int, boolean, Tuning)}, and
     * read-only when {@code readOnly} even if {@code lower} is writable.
     *
     * @param name            the device's name
     * @param lower           the device holding the ciphertext; not closed with this one
     * @param cipherSpec      e.g. aes-xts-plain64
     * @param key             the key; copied, the caller may wipe it
     * @param ivOffsetSectors added to the 512-byte sector number for the IV
     * @param startBytes      first byte of the ciphertext on {@code lower}
     * @param sectorSize      encryption sector size
     * @param ivLargeSectors  count IVs in {@code sectorSize} units
     * @param tuning          the cipher threads
     * @param readOnly        refuse writes
     * @return the device; the caller owns it
     */
    public static Crypt create(String name, BlockDevice lower, String cipherSpec, byte[] key, long ivOffsetSectors,
                               long startBytes, int sectorSize, boolean ivLargeSectors, Tuning tuning,
                               boolean readOnly) {
        CipherSpec spec = CipherSpec.parse(cipherSpec);
        spec.checkKeyLength(key.length);
        return new Crypt(name, lower, spec, key, ivOffsetSectors, startBytes, sectorSize, ivLargeSectors, tuning,
                readOnly);
    }

    @Override public String name() { return name; }
    @Override public long size() { return size; }
    @Override public QueueLimits limits() { return limits; }
    @Override public boolean isReadOnly() { return readOnly; }

    /**
     * The device below.
     *
     * @return the ciphertext's device
     */
    public BlockDevice lower() {
        return lower;
    }

    /**
     * The encryption sector size in bytes.
     *
     * @return 512 to 4096
     */
    public int sectorSize() {
        return sectorSize;
    }

    @Override
    public String targetType() {
        return "crypt";
    }

    /**
     * The dm table arguments of this device with the key shown as {@code -} (as {@code dmsetup
     * table} without {@code --showkeys}): {@code aes-xts-plain64 - 0 disk0 4096 1 sector_size:4096}.
     */
    @Override
    public String table() {
        StringBuilder sb = new StringBuilder().append(spec).append(" - ").append(ivOffset).append(' ')
                .append(lower.name()).append(' ').append(start / 512);
        int opts = (sectorSize != 512 ? 1 : 0) + (ivLargeSectors ? 1 : 0);
        if (opts > 0) {
            sb.append(' ').append(opts);
            if (sectorSize != 512) {
                sb.append(" sector_size:").append(sectorSize);
            }
            if (ivLargeSectors) {
                sb.append(" iv_large_sectors");
            }
        }
        return sb.toString();
    }

    @Override
    public void submit(Bio bio) {
        if (!BioChecks.admit(bio, name, size, limits, readOnly)) {
            return;
        }
        switch (bio.op()) {
            case READ -> BioSplitter.submitSplit(bio, limits, bios, readOne);
            case WRITE -> BioSplitter.submitSplit(bio, writeLimits, bios, writeOne);
            case FLUSH -> lower.submit(bio); // no range to remap: the bio goes down as it is
            case DISCARD, WRITE_ZEROES -> bio.fail(Status.NOTSUPP, bio.op() + " is not supported by crypt device " + name);
        }
    }

    /** The IV of the encryption sector at byte {@code offset} of this device. */
    private long ivAt(long offset) {
        long s = (offset >>> 9) + ivOffset;
        return ivLargeSectors ? s >>> ivShift : s;
    }

    // ---- READ: clone down, decrypt in place on completion --------------------------------------

    private void readOne(Bio piece) {
        Bio clone = piece.cloneShallow(bios);
        clone.setOffset(start + piece.offset());
        clone.setPrivateData(piece);
        clone.setEndIo(readDone);
        lower.submit(clone);
    }

    private void readDone(Bio clone) {
        Bio piece = (Bio) clone.privateData();
        Status s = clone.status();
        String why = clone.detail();
        clone.put();
        if (!s.isOk()) {
            piece.fail(s, why);
        } else if (piece.size() > inlineBytes) {
            CipherJob.get(jobs, jobsCreated).init(this, false, piece, null, ivAt(piece.offset()), chunkBytes)
                    .start(workers, starterHelps);
        } else {
            try {
                workers.recordThread();
                xts.transform(false, piece, null, ivAt(piece.offset()), sectorSize, ivStep);
            } catch (RuntimeException e) {
                piece.setStatus(Status.IOERR, "decryption failed on " + name + ": " + e.getMessage());
            }
            piece.endIo();
        }
    }

    // ---- WRITE: encrypt into a bounce buffer, write that ---------------------------------------

    private void writeOne(Bio piece) {
        Bounce b = bounces.get();
        if (piece.size() > inlineBytes) {
            CipherJob.get(jobs, jobsCreated).init(this, true, piece, b, ivAt(piece.offset()), chunkBytes)
                    .start(workers, starterHelps);
            return;
        }
        try {
            workers.recordThread();
            xts.transform(true, piece, b.mem, ivAt(piece.offset()), sectorSize, ivStep);
        } catch (RuntimeException e) {
            bounces.put(b);
            piece.fail(Status.IOERR, "encryption failed on " + name + ": " + e.getMessage());
            return;
        }
        writeDown(piece, b);
    }

    /** Sends the ciphertext in {@code b} down in place of {@code piece}. */
    private void writeDown(Bio piece, Bounce b) {
        b.owner = piece;
        Bio w = bios.get().init(Op.WRITE, piece.flags(), start + piece.offset(), writeDone);
        w.addSegment(b.slice(piece.size()));
        w.setPrivateData(b);
        lower.submit(w);
    }

    private void writeDone(Bio w) {
        Bounce b = (Bounce) w.privateData();
        Bio piece = b.owner;
        Status s = w.status();
        String why = w.detail();
        w.put();
        bounces.put(b);
        piece.setStatus(s, why);
        piece.endIo();
    }

    // ---- chunked cipher work (CipherJob), on any thread ---------------------------------------

    /** Transforms bytes {@code [from, from + len)} of the job's piece; a failure is recorded in it. */
    void runChunk(CipherJob job, long from, int len) {
        workers.recordThread();
        try {
            Bounce b = job.bounce;
            xts.transformRange(job.encrypt, job.piece, from, len, b == null ? null : b.mem, job.iv0, sectorSize,
                    ivStep);
        } catch (RuntimeException e) {
            job.fail(Status.IOERR, (job.encrypt ? "encryption" : "decryption") + " failed on " + name + ": "
                    + e.getMessage());
        }
    }

    /** Called once per job, by the thread that finished its last chunk. */
    void cipherDone(CipherJob job) {
        Bio piece = job.piece;
        Bounce b = job.bounce;
        if (!job.encrypt) {
            piece.endIo();
        } else if (!piece.status().isOk()) {
            bounces.put(b);
            piece.endIo();
        } else {
            writeDown(piece, b);
        }
    }

    /** Cipher jobs made so far (a warm device stops making them). */
    long cipherJobsCreated() {
        return jobsCreated.get();
    }

    /** Test hook: from now on, the id of every thread that runs cipher work is added to {@code ids}. */
    void recordCipherThreads(Set<Long> ids) {
        workers.cipherThreads = ids;
    }

    /** Worker threads alive now (they start with the first large bio and end with {@link #close()}). */
    int liveWorkers() {
        return workers.liveThreads();
    }

    /** Bounce buffers made so far (a warm device stops making them). */
    long bounceBuffersCreated() {
        return bounces.created();
    }

    /**
     * Stops the cipher threads (work already handed to them is finished first), forgets the key
     * on this thread and refuses further I/O; {@code lower} stays open.
     */
    @Override
    public void close() {
        workers.close();
        xts.close();
    }

    /**
     * The {@code crypt} table line, as dm-crypt's constructor takes it: {@code crypt CIPHER KEYHEX
     * IV_OFFSET DEV OFFSET [[<#opts>] sector_size:N iv_large_sectors]}. The key is kept only until
     * the line is opened, then wiped.
     *
     * @param a the line's arguments
     * @return the spec that opens the device
     */
    public static TableSpec parseTable(TableArgs a) {
        String cipher = a.next("CIPHER");
        String keyHex = a.next("KEY (hex)");
        byte[] key;
        try {
            key = HexFormat.of().parseHex(keyHex);
        } catch (IllegalArgumentException e) {
            throw a.bad("KEY must be hex digits (the key itself is not repeated here)");
        }
        long ivOff = a.number("IV_OFFSET");
        String dev = a.dev("DEV");
        long off = a.bytes("OFFSET");
        int sectorSize = 512;
        boolean large = false;
        if (a.hasNext() && a.peek().chars().allMatch(Character::isDigit)) {
            long n = a.number("number of optional parameters");
            if (n != a.left()) {
                throw a.bad(n + " optional parameters announced, " + a.left() + " given");
            }
        }
        while (a.hasNext()) {
            String o = a.next("option");
            if (o.startsWith("sector_size:")) {
                try {
                    sectorSize = Integer.parseInt(o.substring(12));
                } catch (NumberFormatException e) {
                    throw a.bad("sector_size must be a number: " + o);
                }
            } else if (o.equals("iv_large_sectors")) {
                large = true;
            } else {
                throw a.bad("unknown option '" + o + "' (sector_size:N, iv_large_sectors)");
            }
        }
        int ss = sectorSize;
        boolean lg = large;
        return a.spec((name, len, r) -> {
            BlockDevice d = r.device(dev);
            BlockDevice lower = len < 0 ? d : new Linear(name, d, off, len);
            try {
                return create(name, lower, cipher, key, ivOff, len < 0 ? off : 0, ss, lg);
            } finally {
                Arrays.fill(key, (byte) 0);
            }
        });
    }


    @Override
    public String toString() {
        return "Crypt[" + name + " " + spec + " AES-" + xts.aesKeyBits() + " key=- over " + lower.name()
                + " start=" + start + " sector_size=" + sectorSize + (ivLargeSectors ? " iv_large_sectors" : "")
                + " size=" + size + "]";
    }
}
