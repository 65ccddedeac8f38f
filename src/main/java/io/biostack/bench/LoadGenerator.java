package io.biostack.bench;

import io.biostack.block.Bio;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.Op;
import io.biostack.file.reactor.FileRings;
import io.biostack.uring.IoUring;
import io.biostack.uring.RingLoop;
import org.HdrHistogram.Histogram;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * An fio-like load generator inside the process, so the stack can be measured with nothing in
 * between. {@code ioDepth} slots each own one bio and one aligned buffer; a slot's end-io records
 * the latency and resubmits at once from the completing thread (for io_uring, the worker itself,
 * so the resubmissions of one pass go to the kernel in one {@code io_uring_enter}). The steady
 * state allocates nothing: no object per I/O, histograms and counters per slot. Each I/O's
 * latency takes two clock readings, shared with the stack's counting as the kernel shares one
 * reading per request end between iostat and its latency stats: the submit reading goes down as
 * {@link Bio#setIssueTime}, and the completion reading of a counted device comes back as
 * {@link Bio#completionTime}.
 *
 * <p>{@link #numJobs(int)} runs N submitting threads, fio's {@code numjobs}, each with
 * {@code ioDepth} slots. With io_uring each job thread is a reactor ({@link RingLoop}) with its own
 * file ring attached ({@link FileRings}): its bios go down its own ring and complete on it, as
 * fio's jobs each own a ring. With one job (the default) the slots are started from one thread
 * and complete on the file engine's worker, as before.
 *
 * <p>Not reusable: one generator, one run.
 */
public final class LoadGenerator {
    private static final int IDLE = 0;
    private static final int SUBMITTING = 1;
    private static final int RESTART = 2;
    /** The longest latency a histogram records: 60 s. */
    private static final long MAX_LATENCY_NS = 60_000_000_000L;
    /** Heap bytes of one slot's latency histogram (HdrHistogram's counts for 60 s at 3 digits: about 220 KiB). */
    private static final long HISTOGRAM_BYTES = new Histogram(MAX_LATENCY_NS, 3).getEstimatedFootprintInBytes();

    private final BlockDevice dev;
    private final Workload w;
    private Slot[] slots;
    private final long blocks;
    private CountDownLatch finished;
    private int numJobs = 1;
    private volatile boolean stop;
    /** False during the ramp: I/O runs but is not measured (fio's ramp_time). */
    private volatile boolean measuring = true;
    private long rampNs;
    private boolean endFsync;
    private volatile String firstError;
    /** Each block once per pass (fio's random map), or null for independent random offsets. */
    private BlockPermutation randomMap;
    /** Interval of the IOPS log in nanoseconds, 0 for none (fio's log_avg_msec). */
    private long logIntervalNs;
    /** I/Os completed (measured or not) at each tick of the IOPS log since the measured start; -1 past the end. */
    private long[] logSamples;
    /** Never recorded into: the histogram of a direction the workload does not do. */
    private final Histogram none = new Histogram(MAX_LATENCY_NS, 3);

    /**
     * A load of {@code w} on {@code dev}; nothing runs until {@link #run}. The device stays the
     * caller's.
     *
     * @param dev the device to load; it stays the caller's, who closes it after the run
     * @param w what to run: pattern, block size, depth, time, range
     */
    public LoadGenerator(BlockDevice dev, Workload w) {
        this.dev = dev;
        this.w = w;
        long range = w.rangeBytes() == 0 ? dev.size() : Math.min(w.rangeBytes(), dev.size());
        if (w.blockSize() % dev.limits().logicalBlockSize() != 0) {
            throw new IllegalArgumentException("--bs " + w.blockSize() + " is not a multiple of the device's "
                    + dev.limits().logicalBlockSize() + "-byte blocks");
        }
        this.blocks = range / w.blockSize();
        if (blocks <= 0) {
            throw new IllegalArgumentException("the device (" + range + " bytes) is smaller than one block of " + w.blockSize());
        }
        if (dev.isReadOnly() && w.rw().reads != 100) {
            throw new IllegalArgumentException(dev.name() + " is read-only: use --rw read or randread");
        }
        this.slots = newSlots(1);
        this.finished = new CountDownLatch(w.ioDepth());
    }

    /**
     * The slots of {@code jobs} jobs, refused before anything is allocated when their latency
     * histograms cannot fit in the heap: each slot keeps its own (one per direction it does), so
     * that its completions record without a lock, and thousands of slots are GiBs, which ended in
     * an OutOfMemoryError deep in the run.
     */
    private Slot[] newSlots(int jobs) {
        long n = (long) jobs * w.ioDepth();
        int reads = w.rw().reads;
        long need = n * (reads == 0 || reads == 100 ? 1 : 2) * HISTOGRAM_BYTES;
        Runtime rt = Runtime.getRuntime();
        long free = rt.maxMemory() - (rt.totalMemory() - rt.freeMemory());
        // A quarter of the free heap stays for the rest of the run (buffers of the merge, the
        // collector's own room): without it the histograms that just fit still ran out of heap.
        if (n > Integer.MAX_VALUE - 8 || need > free / 4 * 3) {
            throw new IllegalArgumentException(String.format(java.util.Locale.ROOT,
                    "--iodepth %d x --numjobs %d = %d I/Os in flight need %d MiB of heap for their latency histograms,"
                            + " more than three quarters of the %d MiB free: lower --iodepth or --numjobs (or raise the heap: BIOSTACK_JAVA_OPTS=-Xmx...)",
                    w.ioDepth(), jobs, n, need >> 20, free >> 20));
        }
        return new Slot[(int) n];
    }

    /**
     * Runs the load for {@code ns} before measuring (fio's {@code ramp_time}): the JIT compiles
     * the path and the device settles. Returns this generator.
     *
     * @param ns the ramp time in nanoseconds, 0 for none
     * @return this generator
     */
    public LoadGenerator ramp(long ns) {
        if (ns < 0) {
            throw new IllegalArgumentException("--ramp must not be negative");
        }
        this.rampNs = ns;
        return this;
    }

    /**
     * Ends the run with one FLUSH once the last I/O has completed, and counts the time until the
     * flush completes in the run, as fio's {@code end_fsync=1} does (its job's runtime ends after
     * the fsync). A device with a volatile write cache (librbd's {@code rbd_cache}) then pays for
     * writing back what its cache still holds, as the fio job it is compared with does. A flush
     * that fails counts as one error. Returns this generator.
     *
     * @param on true to flush at the end
     * @return this generator
     */
    public LoadGenerator endFsync(boolean on) {
        this.endFsync = on;
        return this;
    }

    /**
     * Random offsets that never repeat within a pass over the range, as fio's random map (its
     * default for random I/O; {@code norandommap} turns it off): the slots walk one pseudo-random
     * order of the range's blocks ({@link BlockPermutation}), slot {@code i} of {@code n} taking
     * positions {@code i, i+n, i+2n, ...}, so every block comes once before any comes again (up to
     * the slots' drift at the turn of a pass). Off, each slot draws offsets on its own and a block
     * may come again at any time, which a device that orders overlapping writes makes wait (see
     * {@link BlockPermutation}). Read and write choices for randrw are drawn as before. Returns
     * this generator.
     *
     * @param on true for the random map
     * @return this generator
     */
    public LoadGenerator randomMap(boolean on) {
        this.randomMap = on ? new BlockPermutation(blocks, w.seed()) : null;
        return this;
    }

    /**
     * Keeps a time series of completions: every {@code ms} milliseconds of the measured run (and
     * of its end flush), the reporting thread reads the slots' counters, as fio's
     * {@code write_iops_log} with {@code log_avg_msec} does; nothing is added to the I/O path.
     * Read it after {@link #run} with {@link #iopsLog()}. Returns this generator.
     *
     * @param ms the interval in milliseconds, at least 1
     * @return this generator
     * @throws IllegalArgumentException when {@code ms} is below 1
     */
    public LoadGenerator iopsLog(int ms) {
        if (ms < 1) {
            throw new IllegalArgumentException("the IOPS log interval must be at least 1 ms");
        }
        this.logIntervalNs = ms * 1_000_000L;
        return this;
    }

    /**
     * The IOPS log of the last {@link #run}: element {@code i} is the count of I/Os that completed
     * in interval {@code i} (from {@code i} to {@code i + 1} intervals after the measured start);
     * the last interval may be shorter. Empty when no log was asked for.
     *
     * @return completions per interval, a new array
     */
    public long[] iopsLog() {
        if (logSamples == null) {
            return new long[0];
        }
        int n = 0;
        while (n < logSamples.length && logSamples[n] >= 0) {
            n++;
        }
        long[] out = new long[Math.max(0, n - 1)];
        for (int i = 1; i < n; i++) {
            out[i - 1] = logSamples[i] - logSamples[i - 1];
        }
        return out;
    }

    /**
     * Runs {@code n} submitting threads, each with the workload's {@code iodepth} I/Os in flight
     * (fio's {@code numjobs}). Returns this generator.
     *
     * @param n submitting threads, at least 1
     * @return this generator
     * @throws IllegalArgumentException when {@code n} is below 1
     */
    public LoadGenerator numJobs(int n) {
        if (n < 1) {
            throw new IllegalArgumentException("--numjobs must be at least 1");
        }
        this.slots = newSlots(n);
        this.numJobs = n;
        this.finished = new CountDownLatch(slots.length);
        return this;
    }

    /** One bio in flight at a time: its buffer, its random state, its counters. */
    private final class Slot implements EndIo {
        final Bio bio = new Bio();
        final MemorySegment buf;
        /** Only the directions the workload does have their own: the other is the shared empty one. */
        final Histogram readLat = w.rw().reads != 0 ? new Histogram(MAX_LATENCY_NS, 3) : none;
        final Histogram writeLat = w.rw().reads != 100 ? new Histogram(MAX_LATENCY_NS, 3) : none;
        long rng;
        long seqBlock;
        /** This slot's next position in the random map's order. */
        long mapPos;
        volatile long ios;
        long readIos;
        long writeIos;
        long errors;
        final java.util.concurrent.atomic.AtomicInteger state = new java.util.concurrent.atomic.AtomicInteger();

        Slot(MemorySegment buf, long seed, long startBlock) {
            this.buf = buf;
            this.rng = seed == 0 ? 0x9E3779B97F4A7C15L : seed;
            this.seqBlock = startBlock;
        }

        /**
         * Submits the slot's next I/O. A device may complete a bio before submit returns (a
         * ramdisk, an error): the completion then only marks RESTART and this loop goes on, so
         * the stack never grows.
         */
        void start() {
            do {
                state.set(SUBMITTING);
                submitNext();
            } while (!state.compareAndSet(SUBMITTING, IDLE));
        }

        private void submitNext() {
            long block;
            if (w.rw().random) {
                long x = rng; // xorshift64*: no allocation, no shared state
                x ^= x >>> 12;
                x ^= x << 25;
                x ^= x >>> 27;
                rng = x;
                if (randomMap != null) {
                    block = randomMap.block(mapPos);
                    mapPos += slots.length;
                    if (mapPos >= blocks) {
                        mapPos %= blocks; // the next pass: the same order again
                    }
                } else {
                    block = Long.remainderUnsigned(x * 0x2545F4914F6CDD1DL, blocks);
                }
            } else {
                block = seqBlock;
                seqBlock += slots.length;
                if (seqBlock >= blocks) {
                    seqBlock %= blocks;
                }
            }
            boolean read;
            int reads = w.rw().reads;
            if (reads == 100) {
                read = true;
            } else if (reads == 0) {
                read = false;
            } else {
                read = Long.remainderUnsigned(rng >>> 7, 100) < w.readMixPercent();
            }
            bio.init(read ? Op.READ : Op.WRITE, 0, block * w.blockSize(), this);
            bio.addSegment(buf);
            long now = System.nanoTime();
            bio.setPrivateLong(now);
            bio.setIssueTime(now); // a counted device takes it as its start rather than read the clock again
            dev.submit(bio);
        }

        @Override
        public void endIo(Bio b) {
            long end = b.completionTime(); // read by the counted device that saw the completion, if any
            long lat = (end == 0 ? System.nanoTime() : end) - b.privateLong();
            if (!measuring) {
                // ramp: warm the JIT and the device, count nothing but errors
                if (!b.status().isOk()) {
                    errors++;
                    if (firstError == null) {
                        firstError = b.status() + ": " + b.detail();
                    }
                }
            } else if (b.status().isOk()) {
                if (b.op() == Op.READ) {
                    readLat.recordValue(lat);
                    readIos++;
                } else {
                    writeLat.recordValue(lat);
                    writeIos++;
                }
            } else {
                errors++;
                if (firstError == null) {
                    firstError = b.status() + ": " + b.detail();
                }
            }
            ios = ios + 1; // single writer: this slot's completions never overlap
            if (stop) {
                finished.countDown();
                return;
            }
            if (state.compareAndSet(SUBMITTING, RESTART)) {
                return; // completed inside submit: the submitting loop goes again
            }
            start();
        }
    }

    /**
     * Runs the workload; {@code progress} is called about once a second with the I/Os done so far
     * and the elapsed nanoseconds (on the calling thread). Blocks until the last I/O completes.
     *
     * @param progress called about once a second on the calling thread, or null for no progress
     * @return what the measured part of the run did
     * @throws InterruptedException when the calling thread is interrupted while it waits for the
     *         run
     */
    public BenchResult run(ProgressListener progress) throws InterruptedException {
        try (Arena arena = Arena.ofShared()) {
            // Registered with the ring where the device can (a loop device over io_uring).
            MemorySegment all = dev.allocateIoMemory((long) w.blockSize() * slots.length, arena);
            java.util.SplittableRandom fill = new java.util.SplittableRandom(w.seed());
            for (long i = 0; i < all.byteSize(); i += 8) {
                all.set(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, i, fill.nextLong());
            }
            long seedBase = w.seed() * 0x9E3779B97F4A7C15L;
            for (int i = 0; i < slots.length; i++) {
                slots[i] = new Slot(all.asSlice((long) i * w.blockSize(), w.blockSize()), seedBase + i * 0xBF58476D1CE4E5B9L + 1,
                        (long) (i % w.ioDepth()) * numJobs + i / w.ioDepth());
                slots[i].mapPos = i % blocks;
            }
            com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
            long self = Thread.currentThread().threadId();
            measuring = rampNs == 0;
            RingLoop[] loops = startJobs();
            if (rampNs > 0) {
                TimeUnit.NANOSECONDS.sleep(rampNs);
                measuring = true; // slots see it at their next completion
            }
            com.sun.management.OperatingSystemMXBean os =
                    (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
            long cpu0 = os.getProcessCpuTime();
            long ios0 = totalIos();
            long t0 = System.nanoTime();
            long deadline = t0 + w.runtimeNs();
            // Allocation is measured over the middle of the run: after warm-up, before the drain.
            long warm = t0 + w.runtimeNs() / 2; // JIT warm-up: interpreted and C1 code allocate a little
            long allocStart = -1;
            long iosStart = 0;
            long allocEnd = -1;
            long iosEnd = 0;
            long next = t0 + 1_000_000_000L;
            if (logIntervalNs > 0) {
                // One tick per interval of the run, and room for an end flush of up to 60 s.
                long ticks = (w.runtimeNs() + (endFsync ? 60_000_000_000L : 0)) / logIntervalNs + 3;
                logSamples = new long[Math.toIntExact(Math.min(ticks, 10_000_000L))];
                java.util.Arrays.fill(logSamples, -1);
                logSamples[0] = ios0;
            }
            int logTick = 1;
            while (true) {
                long now = System.nanoTime();
                logTick = sampleLog(t0, now, logTick);
                if (now >= deadline) {
                    break;
                }
                if (allocStart < 0 && now >= warm) {
                    allocStart = allocatedByOthers(mx, self);
                    iosStart = totalIos();
                }
                long sleepUntil = Math.min(deadline, Math.min(next, allocStart < 0 ? warm : deadline));
                if (logSamples != null) {
                    sleepUntil = Math.min(sleepUntil, t0 + logTick * logIntervalNs);
                }
                TimeUnit.NANOSECONDS.sleep(Math.max(1, sleepUntil - now));
                if (System.nanoTime() >= next) {
                    if (progress != null) {
                        progress.progress(totalIos(), System.nanoTime() - t0);
                    }
                    next += 1_000_000_000L;
                }
            }
            if (allocStart >= 0) {
                allocEnd = allocatedByOthers(mx, self);
                iosEnd = totalIos();
            }
            long cpu1 = os.getProcessCpuTime();
            long ios1 = totalIos();
            stop = true;
            long elapsed = System.nanoTime() - t0;
            boolean done = finished.await(60, TimeUnit.SECONDS);
            stopJobs(loops);
            if (!done) {
                throw new IllegalStateException("I/Os did not complete within 60 s of the end of the run");
            }
            long flushErrors = 0;
            if (endFsync) {
                String err = flush(t0, logTick);
                elapsed = System.nanoTime() - t0; // fio: the job's runtime ends after its end_fsync
                if (err != null) {
                    flushErrors = 1;
                    if (firstError == null) {
                        firstError = err;
                    }
                }
            }
            double cpuPerIo = cpu0 >= 0 && cpu1 >= 0 && ios1 > ios0 ? (cpu1 - cpu0) / 1e3 / (ios1 - ios0) : Double.NaN;
            Histogram reads = new Histogram(60_000_000_000L, 3);
            Histogram writes = new Histogram(60_000_000_000L, 3);
            long r = 0, wr = 0, err = flushErrors;
            for (Slot s : slots) {
                reads.add(s.readLat);
                writes.add(s.writeLat);
                r += s.readIos;
                wr += s.writeIos;
                err += s.errors;
            }
            double allocPerIo = allocStart >= 0 && iosEnd > iosStart
                    ? (double) (allocEnd - allocStart) / (iosEnd - iosStart) : Double.NaN;
            return new BenchResult(w, elapsed, r, wr, err, reads, writes, allocPerIo, firstError, cpuPerIo, numJobs);
        }
    }

    /** Sends one FLUSH and waits for it (60 s at most); null when it succeeded, else what failed. */
    private String flush(long t0, int logTick) throws InterruptedException {
        CountDownLatch done = new CountDownLatch(1);
        Bio b = new Bio().init(Op.FLUSH, 0, 0, x -> done.countDown());
        dev.submit(b);
        long limit = System.nanoTime() + 60_000_000_000L;
        while (!done.await(logSamples == null ? 60_000_000_000L : logIntervalNs, TimeUnit.NANOSECONDS)) {
            if (System.nanoTime() - limit >= 0) {
                throw new IllegalStateException("the end flush did not complete within 60 s");
            }
            logTick = sampleLog(t0, System.nanoTime(), logTick);
        }
        sampleLog(t0, System.nanoTime(), logTick);
        return b.status().isOk() ? null : "end flush: " + b.status() + ": " + b.detail();
    }

    /**
     * Starts the slots. One job: from one plain thread (a device that completes inside submit, a
     * ramdisk, keeps the starting thread busy for the whole run, so it is not this one). Several:
     * one reactor per job where io_uring runs (its own file ring), else one plain thread each.
     * Returns the reactors to stop, or null.
     */
    private RingLoop[] startJobs() {
        if (numJobs == 1 || !IoUring.isAvailable()) {
            for (int j = 0; j < numJobs; j++) {
                int job = j;
                Thread.ofPlatform().name("biostack-bench-" + j).daemon(true).start(() -> startJob(job));
            }
            return null;
        }
        RingLoop[] loops = new RingLoop[numJobs];
        for (int j = 0; j < numJobs; j++) {
            try {
                loops[j] = RingLoop.start("biostack-bench-" + j, 256, FileRings::attach);
            } catch (IOException e) { // RingLoop.start's ErrnoException: the ring could not be set up
                try {
                    stopJobs(loops);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                }
                throw new IllegalStateException("can't start job " + j + ": " + e.getMessage(), e);
            }
            int job = j;
            loops[j].execute(() -> startJob(job));
        }
        return loops;
    }

    private void startJob(int job) {
        for (int i = job * w.ioDepth(); i < (job + 1) * w.ioDepth(); i++) {
            slots[i].start();
        }
    }

    private static void stopJobs(RingLoop[] loops) throws InterruptedException {
        if (loops == null) {
            return;
        }
        for (RingLoop l : loops) {
            if (l != null) {
                l.stop(null);
            }
        }
        for (RingLoop l : loops) {
            if (l != null) {
                l.awaitStopped(30_000);
            }
        }
    }

    /** Records the I/O count at every log tick that {@code now} has passed; returns the next tick. */
    private int sampleLog(long t0, long now, int tick) {
        if (logSamples == null) {
            return tick;
        }
        while (tick < logSamples.length && now - (t0 + tick * logIntervalNs) >= 0) {
            logSamples[tick++] = totalIos();
        }
        return tick;
    }

    private long totalIos() {
        long n = 0;
        for (Slot s : slots) {
            n += s.ios;
        }
        return n;
    }

    /** Bytes allocated so far by every live thread but the one that only reports. */
    private static long allocatedByOthers(com.sun.management.ThreadMXBean mx, long self) {
        long[] ids = mx.getAllThreadIds();
        long[] bytes = mx.getThreadAllocatedBytes(ids);
        long sum = 0;
        boolean debug = System.getenv("BIOSTACK_ALLOC_DEBUG") != null;
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] != self && bytes[i] > 0) {
                sum += bytes[i];
                if (debug) {
                    java.lang.management.ThreadInfo ti = mx.getThreadInfo(ids[i]);
                    System.err.println("alloc " + (ti == null ? ids[i] : ti.getThreadName()) + " " + bytes[i]);
                }
            }
        }
        return sum;
    }

    /** Called about once a second while the run goes on. */
    @FunctionalInterface
    public interface ProgressListener {
        /**
         * I/Os done and nanoseconds elapsed so far; called on the thread in
         * {@link LoadGenerator#run}.
         *
         * @param ios the I/Os completed so far
         * @param elapsedNs the nanoseconds since the run (or the ramp) started
         */
        void progress(long ios, long elapsedNs);
    }
}
