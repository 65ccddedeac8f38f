package io.biostack.layer.crypt;

import static io.biostack.TestData.random;
import static org.assertj.core.api.Assertions.assertThat;

import io.biostack.TestEnv;
import io.biostack.block.Bio;
import io.biostack.block.BlockDevice;
import io.biostack.block.EndIo;
import io.biostack.block.IoIter;
import io.biostack.block.Op;
import io.biostack.block.QueueLimits;
import io.biostack.block.RamDisk;
import io.biostack.block.Status;

import com.sun.management.ThreadMXBean;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The crypt worker pool (dm-crypt's kcryptd): cipher work of large bios spread over threads,
 * bit-exact against a reference encryption, every bio completed exactly once.
 */
class CryptWorkersTest {
    private static final String SPEC = "aes-xts-plain64";
    /** Small inline limit and chunks, so that even modest bios are cut and shared. */
    private static final Crypt.Tuning SHARED = new Crypt.Tuning(3, 4096, 4096, 20);

    private final ExecutorService completions = Executors.newFixedThreadPool(2,
            r -> Thread.ofPlatform().daemon().name("test-lower-completion").unstarted(r));
    private final List<Crypt> open = new ArrayList<>();

    @AfterEach
    void closeAll() throws InterruptedException {
        open.forEach(Crypt::close);
        completions.shutdownNow();
        assertThat(completions.awaitTermination(10, TimeUnit.SECONDS)).isTrue();
    }

    private Crypt crypt(BlockDevice lower, byte[] key, Crypt.Tuning t) {
        Crypt c = Crypt.create("c0", lower, SPEC, key, 0, 0, 512, false, t);
        open.add(c);
        return c;
    }

    /** A bio submitted with a callback that counts its calls; waits for the first. */
    private static final class Counted implements EndIo {
        final Bio bio = new Bio();
        final AtomicInteger calls = new AtomicInteger();
        final CountDownLatch done = new CountDownLatch(1);
        volatile Status status;

        Counted(Op op, long offset, MemorySegment mem) {
            bio.init(op, 0, offset, this);
            bio.addSegment(mem);
        }

        @Override
        public void endIo(Bio b) {
            status = b.status();
            calls.incrementAndGet();
            done.countDown();
        }

        Status await() throws InterruptedException {
            assertThat(done.await(20, TimeUnit.SECONDS)).as("bio completed").isTrue();
            return status;
        }
    }

    @Test
    void manyConcurrentBiosOfMixedSizesAreBitExactAgainstAReferenceEncryption() throws Exception {
        mixedSizes(SHARED);
    }

    @Test
    void withoutStarterHelpAndWithoutSpinningEveryBioIsHandedOffAndStillBitExact() throws Exception {
        // every piece is a job, one-chunk jobs too; workers park between jobs and are woken
        mixedSizes(new Crypt.Tuning(2, 0, 64 << 10, 0, false));
    }

    private void mixedSizes(Crypt.Tuning tuning) throws Exception {
        int region = 2 << 20;
        int threads = 4;
        RamDisk ram = new RamDisk("ram0", (long) region * threads);
        byte[] key = random(64, 1);
        Crypt c = crypt(new AsyncLower(ram, completions), key, tuning);
        int[] sizes = {512, 4096, 8704, 36864, 131072, 307200, 1 << 20};
        byte[][] model = new byte[threads][];
        List<Counted> all = new ArrayList<>();
        try (Arena arena = Arena.ofShared(); ExecutorService submitters = Executors.newFixedThreadPool(threads)) {
            // each thread writes its region as back-to-back extents of mixed sizes, all in flight at once
            List<Future<List<Counted>>> writers = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int id = t;
                model[t] = random(region, 100 + t);
                writers.add(submitters.submit(() -> {
                    Random r = new Random(id);
                    List<Counted> mine = new ArrayList<>();
                    for (int pos = 0; pos < region; ) {
                        int len = Math.min(sizes[r.nextInt(sizes.length)], region - pos);
                        MemorySegment src;
                        if (r.nextBoolean()) {
                            src = MemorySegment.ofArray(Arrays.copyOfRange(model[id], pos, pos + len));
                        } else {
                            src = arena.allocate(len, 4096);
                            MemorySegment.copy(model[id], pos, src, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, len);
                        }
                        Counted w = new Counted(Op.WRITE, (long) id * region + pos, src);
                        mine.add(w);
                        c.submit(w.bio);
                        pos += len;
                    }
                    return mine;
                }));
            }
            for (Future<List<Counted>> f : writers) {
                all.addAll(f.get(30, TimeUnit.SECONDS));
            }
            for (Counted w : all) {
                assertThat(w.await()).isEqualTo(Status.OK);
            }
            // the device holds exactly what a one-thread reference encryption gives
            for (int t = 0; t < threads; t++) {
                byte[] expect = model[t].clone();
                new Xts(key).encrypt(expect, 0, region, (long) t * region / 512, 512, 1);
                byte[] stored = new byte[region];
                ram.read((long) t * region, IoIter.of(stored)).get(20, TimeUnit.SECONDS);
                assertThat(Arrays.mismatch(stored, expect)).as("first wrong ciphertext byte of region %d", t)
                        .isEqualTo(-1);
            }
            // read back in other extents, all at once, into heap and native memory
            List<Counted> reads = new ArrayList<>();
            List<Integer> at = new ArrayList<>();
            Random r = new Random(7);
            for (long pos = 0; pos < (long) region * threads; ) {
                int len = (int) Math.min(sizes[r.nextInt(sizes.length)], (long) region * threads - pos);
                MemorySegment dst = r.nextBoolean() ? MemorySegment.ofArray(new byte[len]) : arena.allocate(len, 4096);
                Counted rd = new Counted(Op.READ, pos, dst);
                reads.add(rd);
                at.add((int) pos);
                c.submit(rd.bio);
                pos += len;
            }
            byte[] whole = new byte[region * threads];
            for (int t = 0; t < threads; t++) {
                System.arraycopy(model[t], 0, whole, t * region, region);
            }
            for (int i = 0; i < reads.size(); i++) {
                Counted rd = reads.get(i);
                assertThat(rd.await()).isEqualTo(Status.OK);
                int pos = at.get(i);
                byte[] got = rd.bio.segment(0).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
                assertThat(Arrays.mismatch(got, Arrays.copyOfRange(whole, pos, pos + got.length)))
                        .as("first wrong byte of the read of %d bytes at %d", got.length, pos).isEqualTo(-1);
            }
            all.addAll(reads);
        }
        assertThat(all).allSatisfy(b -> assertThat(b.calls.get()).as("completions of one bio").isEqualTo(1));
    }

    @Test
    void aLowerErrorInTheMiddleOfAChunkedBioCompletesItOnceWithThatError() throws Exception {
        RamDisk ram = new RamDisk("ram0", 4 << 20);
        // pieces of at most 64k below: a 1 MiB bio becomes 16 pieces of 16 chunks each; the 7th fails
        BlockDevice failing = new AsyncLower(ram, completions) {
            @Override
            public QueueLimits limits() {
                return ram.limits().toBuilder().maxBytes(64 << 10).build();
            }

            @Override
            public void submit(Bio bio) {
                if (bio.op().hasData() && bio.offset() == 6 * (64 << 10)) {
                    completions.execute(() -> bio.fail(Status.MEDIUM, "bad sector"));
                    return;
                }
                super.submit(bio);
            }
        };
        Crypt c = crypt(failing, random(64, 2), SHARED);
        for (Op op : new Op[] {Op.WRITE, Op.READ}) {
            Counted b = new Counted(op, 0, MemorySegment.ofArray(random(1 << 20, 3)));
            c.submit(b.bio);
            assertThat(b.await()).as(op.toString()).isEqualTo(Status.MEDIUM);
            Thread.sleep(50); // a second completion would show up by now
            assertThat(b.calls.get()).as("completions of the %s", op).isEqualTo(1);
        }
        // the rest of the device keeps serving
        byte[] data = random(256 << 10, 4);
        c.write(1 << 20, MemorySegment.ofArray(data)).get(20, TimeUnit.SECONDS);
        byte[] back = new byte[data.length];
        c.read(1 << 20, IoIter.of(back)).get(20, TimeUnit.SECONDS);
        assertThat(back).isEqualTo(data);
    }

    @Test
    void cipherWorkOfLargeBiosRunsOnMoreThanOneThread() throws Exception {
        RamDisk ram = new RamDisk("ram0", 8 << 20);
        Crypt c = crypt(ram, random(64, 5), new Crypt.Tuning(2, 32 << 10, 32 << 10, 50));
        Set<Long> ids = ConcurrentHashMap.newKeySet();
        c.recordCipherThreads(ids);
        MemorySegment buf = MemorySegment.ofArray(new byte[4 << 20]);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        for (int i = 0; i < 200 && ids.size() < 2 && System.nanoTime() < deadline; i++) {
            c.read(0, buf).get(20, TimeUnit.SECONDS);
        }
        assertThat(ids).as("threads that ran cipher work").hasSizeGreaterThanOrEqualTo(2);
        // small bios stay on the thread that has them
        ids.clear();
        for (int i = 0; i < 20; i++) {
            c.read(4096L * i, MemorySegment.ofArray(new byte[4096])).get(20, TimeUnit.SECONDS);
        }
        assertThat(ids).containsExactly(Thread.currentThread().threadId());
    }

    @Test
    void closeWhileIdleStopsTheWorkersAndLaterIoFailsCleanly() throws Exception {
        Crypt c = crypt(new RamDisk("ram0", 4 << 20), random(64, 6), SHARED);
        assertThat(c.liveWorkers()).as("no threads before the first large bio").isZero();
        byte[] data = random(1 << 20, 7);
        c.write(0, MemorySegment.ofArray(data)).get(20, TimeUnit.SECONDS);
        assertThat(c.liveWorkers()).isEqualTo(3);
        Thread.sleep(20); // idle: the workers have parked
        c.close();
        assertThat(c.liveWorkers()).isZero();
        Counted after = new Counted(Op.READ, 0, MemorySegment.ofArray(new byte[1 << 20]));
        c.submit(after.bio);
        assertThat(after.await()).isEqualTo(Status.IOERR);
        assertThat(after.calls.get()).isEqualTo(1);
    }

    @Test
    void closeWithBiosInFlightCompletesEachOfThemOnce() throws Exception {
        Crypt c = crypt(new AsyncLower(new RamDisk("ram0", 8 << 20), completions), random(64, 8), SHARED);
        List<Counted> bios = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
            Counted b = new Counted(i % 2 == 0 ? Op.WRITE : Op.READ, (long) i << 19,
                    MemorySegment.ofArray(new byte[512 << 10]));
            bios.add(b);
            c.submit(b.bio);
        }
        c.close();
        for (Counted b : bios) {
            assertThat(b.await()).isIn(Status.OK, Status.IOERR);
        }
        Thread.sleep(50);
        assertThat(bios).allSatisfy(b -> assertThat(b.calls.get()).isEqualTo(1));
    }

    @Test
    void memoryOfAConfinedArenaIsTransformedByItsOwnerOnly() throws Exception {
        Crypt c = crypt(new RamDisk("ram0", 4 << 20), random(64, 9), SHARED);
        Set<Long> ids = ConcurrentHashMap.newKeySet();
        c.recordCipherThreads(ids);
        byte[] data = random(1 << 20, 10);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment m = arena.allocate(data.length);
            m.copyFrom(MemorySegment.ofArray(data));
            c.write(0, m).get(20, TimeUnit.SECONDS);
            m.fill((byte) 0);
            c.read(0, m).get(20, TimeUnit.SECONDS);
            assertThat(m.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).isEqualTo(data);
        }
        assertThat(ids).containsExactly(Thread.currentThread().threadId());
    }

    @Test
    void aWarmDeviceAllocatesNothingPerChunkedIo() throws Exception {
        ThreadMXBean mx = (ThreadMXBean) ManagementFactory.getThreadMXBean();
        TestEnv.require(mx.isThreadAllocatedMemorySupported(), "per-thread allocation counters");
        // below: a device that completes every bio at once and touches no memory, so that what is
        // measured is crypt's own path (a ramdisk's copies allocate a slice where the JIT does not
        // inline them)
        BlockDevice nothing = new CryptTest.Forwarding(new RamDisk("ram0", 4 << 20)) {
            @Override
            public void submit(Bio bio) {
                bio.endIo();
            }
        };
        Crypt c = crypt(nothing, random(64, 11), new Crypt.Tuning(2, 32 << 10, 32 << 10, 50));
        try (Arena arena = Arena.ofShared()) {
            MemorySegment buf = arena.allocate(256 << 10, 4096);
            Bio bio = new Bio();
            AtomicInteger completed = new AtomicInteger();
            EndIo done = b -> completed.incrementAndGet();
            int round = 2000;
            long perRound = Long.MAX_VALUE;
            long[] ids = null;
            for (int r = 0; r < 15 && perRound >= 4096; r++) {
                long before = ids == null ? 0 : sum(mx.getThreadAllocatedBytes(ids));
                for (int i = 0; i < round; i++) {
                    Op op = i % 2 == 0 ? Op.WRITE : Op.READ;
                    bio.init(op, 0, (long) (i % 8) * buf.byteSize(), done);
                    bio.addSegment(buf);
                    int want = completed.get() + 1;
                    c.submit(bio);
                    long limit = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                    while (completed.get() < want) { // bounded: fails below if it never completes
                        if (System.nanoTime() > limit) {
                            throw new AssertionError("bio did not complete");
                        }
                        Thread.onSpinWait();
                    }
                }
                if (ids == null) {
                    ids = threadIds("crypt-c0-"); // the workers exist once warm
                } else {
                    perRound = sum(mx.getThreadAllocatedBytes(ids)) - before;
                }
            }
            assertThat(ids).as("this thread and the crypt workers").hasSizeGreaterThan(1);
            assertThat(perRound).as("bytes allocated by %d chunked I/Os on every thread involved", round)
                    .isLessThan(4096);
            assertThat(c.cipherJobsCreated()).isLessThan(16);
        }
    }

    private static long[] threadIds(String prefix) {
        List<Long> ids = new ArrayList<>();
        ids.add(Thread.currentThread().threadId());
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().startsWith(prefix)) {
                ids.add(t.threadId());
            }
        }
        return ids.stream().mapToLong(Long::longValue).toArray();
    }

    private static long sum(long[] v) {
        long s = 0;
        for (long x : v) {
            s += Math.max(0, x);
        }
        return s;
    }

    /**
     * A device that completes every bio on another thread, as an io_uring worker does: the bio goes
     * to {@code below} from an executor thread, so its end-io (and crypt's READ decryption) never
     * runs on the submitter.
     */
    static class AsyncLower extends CryptTest.Forwarding {
        private final ExecutorService exec;

        AsyncLower(BlockDevice below, ExecutorService exec) {
            super(below);
            this.exec = exec;
        }

        @Override
        public void submit(Bio bio) {
            exec.execute(() -> below.submit(bio));
        }
    }
}
