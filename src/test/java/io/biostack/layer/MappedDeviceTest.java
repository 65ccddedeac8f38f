package io.biostack.layer;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
import io.biostack.block.Op;
import io.biostack.block.RamDisk;
import io.biostack.block.Status;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;

import static io.biostack.layer.TestDevices.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The dm core: concatenation, suspend, reload, resume. */
class MappedDeviceTest {
    final RamDisk a = new RamDisk("a", 1 << 20);
    final RamDisk b = new RamDisk("b", 1 << 20);

    MappedDevice.Table concat() {
        return new MappedDevice.Table("c", List.of(
                new MappedDevice.Segment(0, 65536, new Linear("c", a, 0, 65536)),
                new MappedDevice.Segment(65536, 65536, new Linear("c", b, 4096, 65536))));
    }

    @Test
    void aBioAcrossSegmentsIsSplitAndEachPieceRemapped() {
        MappedDevice c = new MappedDevice("c", concat());
        assertThat(c.size()).isEqualTo(131072);
        MemorySegment d = pattern(16384, 1);
        write(c, 65536 - 8192, d);
        byte[] all = bytes(d);
        assertThat(read(a, 65536 - 8192, 8192)).isEqualTo(Arrays.copyOfRange(all, 0, 8192));
        assertThat(read(b, 4096, 8192)).isEqualTo(Arrays.copyOfRange(all, 8192, 16384));
        assertThat(read(c, 65536 - 8192, 16384)).isEqualTo(all);
        assertThat(c.table()).containsExactly("0 128 linear a 0", "128 128 linear b 8");
        assertThat(statusOf(c.write(131072 - 512, pattern(1024, 2)))).isEqualTo(Status.NOSPC);
    }

    @Test
    void flushGoesToEverySegmentsTarget() {
        var pa = new TestDevices.Probe(a);
        var pb = new TestDevices.Probe(b);
        MappedDevice c = new MappedDevice("c", new MappedDevice.Table("c", List.of(
                new MappedDevice.Segment(0, 65536, new Linear("c", pa, 0, 65536)),
                new MappedDevice.Segment(65536, 65536, new Linear("c", pb, 0, 65536)))));
        join(c.flush());
        assertThat(pa.count(Op.FLUSH)).isEqualTo(1);
        assertThat(pb.count(Op.FLUSH)).isEqualTo(1);
    }

    @Test
    void gapsOverlapsAndSizeMismatchesAreRefused() {
        assertThatThrownBy(() -> new MappedDevice.Table("c", List.of(
                new MappedDevice.Segment(0, 4096, new Linear("c", a, 0, 4096)),
                new MappedDevice.Segment(8192, 4096, new Linear("c", b, 0, 4096)))))
                .hasMessageContaining("leaves a gap");
        assertThatThrownBy(() -> new MappedDevice.Table("c", List.of(
                new MappedDevice.Segment(512, 4096, new Linear("c", a, 0, 4096)))))
                .hasMessageContaining("segments must follow each other from 0");
        assertThatThrownBy(() -> new MappedDevice.Table("c", List.of(
                new MappedDevice.Segment(0, 8192, new Linear("c", a, 0, 4096)))))
                .hasMessageContaining("is 4096 bytes, its segment 8192");
        assertThatThrownBy(() -> new MappedDevice.Table("c", List.of())).hasMessageContaining("at least one");
    }

    @Test
    void aWriteWithPreflushAcrossSegmentsFlushesEveryTargetThenWritesBothPieces() {
        var pa = new TestDevices.Probe(a);
        var pb = new TestDevices.Probe(b);
        MappedDevice c = new MappedDevice("c", new MappedDevice.Table("c", List.of(
                new MappedDevice.Segment(0, 65536, new Linear("c", pa, 0, 65536)),
                new MappedDevice.Segment(65536, 65536, new Linear("c", pb, 0, 65536)))));
        MemorySegment data = pattern(8192, 21);
        join(c.write(65536 - 4096, io.biostack.block.IoIter.of(data), BioFlags.PREFLUSH));
        assertThat(pa.count(Op.FLUSH)).isEqualTo(1);
        assertThat(pb.count(Op.FLUSH)).isEqualTo(1);
        assertThat(read(c, 65536 - 4096, 8192)).isEqualTo(bytes(data));
        assertThat(c.inFlight()).isZero();
        pb.failing = true;
        assertThat(statusOf(c.write(0, io.biostack.block.IoIter.of(data), BioFlags.PREFLUSH))).isEqualTo(Status.IOERR);
        assertThat(pa.count(Op.WRITE)).isEqualTo(1); // a failed flush: the data went nowhere
        assertThat(c.inFlight()).isZero();
    }

    @Test
    void aTableThatEndsInsideALogicalBlockIsRefused() {
        // dm's validate_hardware_logical_block_alignment: every target boundary, the end too,
        // must fall on the table's logical block; else the tail can never be read or written
        RamDisk disk4k = new RamDisk("d4k", 1 << 20, 4096, false);
        assertThatThrownBy(() -> new MappedDevice.Table("c", List.of(
                new MappedDevice.Segment(0, 8192, new Linear("c", disk4k, 0, 8192)),
                new MappedDevice.Segment(8192, 512, new Zero("c", 512)))))
                .hasMessageContaining("ends at sector 17")
                .hasMessageContaining("4096-byte logical blocks");
    }

    @Test
    void suspendedDeviceQueuesBiosAndResumeSendsThemToTheNewTable() throws Exception {
        MappedDevice m = new MappedDevice("m", MappedDevice.Table.of("m", new Linear("m", a, 0, 65536)));
        m.suspend(1, TimeUnit.SECONDS);
        var f = m.write(0, pattern(4096, 3));
        assertThat(f).isNotDone();
        assertThat(m.waiting()).isEqualTo(1);
        m.reload(MappedDevice.Table.of("m", new Linear("m", b, 0, 65536)));
        assertThat(m.hasInactiveTable()).isTrue();
        assertThat(m.table()).containsExactly("0 128 linear a 0");
        m.resume(1, TimeUnit.SECONDS);
        join(f);
        assertThat(read(b, 0, 4096)).isEqualTo(bytes(pattern(4096, 3)));
        assertThat(read(a, 0, 4096)).containsOnly(0);
        assertThat(m.table()).containsExactly("0 128 linear b 0");
    }

    @Test
    void nowaitBiosFailWithAgainWhileSuspendedAndClosingFailsTheQueue() throws Exception {
        MappedDevice m = new MappedDevice("m", MappedDevice.Table.of("m", new Zero("m", 65536)));
        m.suspend(1, TimeUnit.SECONDS);
        var f = m.write(0, io.biostack.block.IoIter.of(pattern(512, 1)), BioFlags.NOWAIT);
        assertThat(statusOf(f)).isEqualTo(Status.AGAIN);
        var g = m.read(0, buffer(512));
        m.close();
        assertThat(statusOf(g)).isEqualTo(Status.IOERR);
        assertThat(statusOf(m.read(0, buffer(512)))).isEqualTo(Status.IOERR);
    }

    @Test
    void suspendWaitsForBiosInFlightAndTimesOutClearly() throws Exception {
        Delay slow = new Delay("m", 65536, List.of(new Delay.Path(new Leg(a, 0), 300)));
        MappedDevice m = new MappedDevice("m", MappedDevice.Table.of("m", slow));
        var f = m.read(0, buffer(512));
        assertThatThrownBy(() -> m.suspend(20, TimeUnit.MILLISECONDS)).hasMessageContaining("1 bios still in flight");
        m.suspend(5, TimeUnit.SECONDS);
        assertThat(f).isDone();
        m.resume(1, TimeUnit.SECONDS);
    }

    @Test
    @org.junit.jupiter.api.Timeout(30)
    void aSuspendOvertakenByAResumeSaysSoAtOnceRatherThanThatTheDeviceStaysSuspended() throws Exception {
        // dm suspend waiting on a stuck bio, then dm resume from another terminal: the suspend
        // waited out its whole timeout and then said the device stays suspended, while it ran.
        Holding h = new Holding();
        MappedDevice m = new MappedDevice("m", MappedDevice.Table.of("m", h));
        var f = m.read(0, buffer(512));
        var suspend = java.util.concurrent.CompletableFuture.runAsync(() -> {
            try {
                m.suspend(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                throw new java.util.concurrent.CompletionException(e);
            }
        });
        while (m.state() != MappedDevice.State.SUSPENDED) {
            Thread.onSpinWait();
        }
        m.resume(1, TimeUnit.SECONDS);
        assertThatThrownBy(() -> suspend.get(5, TimeUnit.SECONDS)).hasRootCauseInstanceOf(IllegalStateException.class)
                .rootCause().hasMessageContaining("m was resumed");
        assertThat(m.state()).isEqualTo(MappedDevice.State.RUNNING);
        h.release();
        assertThat(statusOf(f)).isEqualTo(Status.OK);
    }

    /** A target that keeps its bios until {@link #release}, and tells whether it was closed holding one. */
    static final class Holding implements Target {
        final RamDisk ram = new RamDisk("h", 65536);
        final java.util.concurrent.ConcurrentLinkedQueue<Bio> held = new java.util.concurrent.ConcurrentLinkedQueue<>();
        volatile boolean closedHolding;

        @Override public String targetType() { return "holding"; }
        @Override public String table() { return ""; }
        @Override public String name() { return "h"; }
        @Override public long size() { return ram.size(); }
        @Override public io.biostack.block.QueueLimits limits() { return ram.limits(); }
        @Override public boolean isReadOnly() { return false; }
        @Override public void submit(Bio bio) { held.add(bio); }
        @Override public void close() { closedHolding |= !held.isEmpty(); }

        void release() {
            for (Bio x; (x = held.poll()) != null; ) {
                ram.submit(x);
            }
        }
    }

    /**
     * The device's lock, made to stop one thread before its second acquisition until told to go
     * on: resume's decision (swap or not) and its swap were two sections of the lock.
     */
    static final class PausingLock extends java.util.concurrent.locks.ReentrantLock {
        volatile Thread who;
        final CountDownLatch paused = new CountDownLatch(1);
        final CountDownLatch go = new CountDownLatch(1);
        int calls;

        @Override
        public void lock() {
            if (Thread.currentThread() == who && ++calls == 2) {
                paused.countDown();
                try {
                    go.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            super.lock();
        }
    }

    @Test
    @org.junit.jupiter.api.Timeout(30)
    void aReloadDuringTheResumeOfARunningDeviceNeverSwapsUnderABioInFlight() throws Exception {
        Holding old = new Holding();
        PausingLock lock = new PausingLock();
        MappedDevice m = new MappedDevice("m", MappedDevice.Table.of("m", old), lock);
        var read = m.read(0, buffer(512)); // in flight on the old table
        CountDownLatch resumed = new CountDownLatch(1);
        Thread r = Thread.ofPlatform().unstarted(() -> {
            try {
                m.resume(10, TimeUnit.SECONDS); // a running device, no table loaded: nothing to swap yet
            } catch (Exception e) {
                throw new IllegalStateException(e);
            } finally {
                resumed.countDown();
            }
        });
        lock.who = r;
        r.start();
        // Either resume stops before a second section (the window) or it is already done.
        while (lock.paused.getCount() > 0 && resumed.getCount() > 0) {
            Thread.onSpinWait();
        }
        m.reload(MappedDevice.Table.of("m", new Linear("m", b, 0, 65536))); // dmsetup reload, meanwhile
        lock.go.countDown();
        // The new table may go live only once the bio on the old one has completed: resume must
        // now wait for the drain (a timed wait), not return with the table swapped.
        while (resumed.getCount() > 0 && r.getState() != Thread.State.TIMED_WAITING) {
            Thread.onSpinWait();
        }
        assertThat(old.closedHolding).as("the old table's target closed with a bio in flight").isFalse();
        old.release();
        resumed.await();
        r.join();
        assertThat(statusOf(read)).isEqualTo(Status.OK);
        m.resume(1, TimeUnit.SECONDS);
        assertThat(m.liveTable().targets()).doesNotContain(old);
        assertThat(old.closedHolding).isFalse();
    }

    /**
     * Four threads keep bios going while the table is swapped back and forth; each bio's
     * callback counts itself, and every bio must complete exactly once with OK.
     */
    @Test
    @org.junit.jupiter.api.Timeout(60)
    void reloadUnderLoadLosesNoBioAndCompletesNoneTwice() throws Exception {
        Delay d = new Delay("m", 1 << 20, List.of(new Delay.Path(new Leg(a, 0), 1)));
        MappedDevice m = new MappedDevice("m", MappedDevice.Table.of("m", d));
        int threads = 4;
        // ids to spare: the load runs until the swaps are done (stop), so every swap is under load
        int perThread = 250_000;
        AtomicIntegerArray done = new AtomicIntegerArray(threads * perThread);
        AtomicLong errors = new AtomicLong();
        AtomicLong twice = new AtomicLong();
        AtomicLong completed = new AtomicLong();
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong submitted = new AtomicLong();
        MemorySegment page = buffer(4096);
        CountDownLatch started = new CountDownLatch(threads);
        Thread[] ts = new Thread[threads];
        for (int t = 0; t < threads; t++) {
            int base = t * perThread;
            ts[t] = Thread.ofPlatform().daemon().start(() -> {
                started.countDown();
                java.util.concurrent.Semaphore window = new java.util.concurrent.Semaphore(64);
                for (int i = 0; i < perThread && !stop.get(); i++) {
                    window.acquireUninterruptibly();
                    submitted.incrementAndGet();
                    int id = base + i;
                    Bio bio = new Bio().init(i % 2 == 0 ? Op.READ : Op.WRITE, 0, (long) (id % 256) * 4096, x -> {
                        if (done.getAndIncrement((int) x.privateLong()) != 0) {
                            twice.incrementAndGet();
                        }
                        if (x.status() != Status.OK) {
                            errors.incrementAndGet();
                        }
                        completed.incrementAndGet();
                        window.release();
                    });
                    bio.addSegment(page);
                    bio.setPrivateLong(id);
                    m.submit(bio);
                }
            });
        }
        started.await();
        int swaps = 0;
        while (completed.get() < (long) threads * perThread && swaps < 20) {
            RamDisk target = swaps % 2 == 0 ? b : a;
            m.reload(MappedDevice.Table.of("m", new Delay("m", 1 << 20, List.of(new Delay.Path(new Leg(target, 0), swaps % 3)))));
            m.suspend(5, TimeUnit.SECONDS);
            Thread.sleep(1);
            m.resume(5, TimeUnit.SECONDS);
            swaps++;
        }
        stop.set(true);
        for (Thread t : ts) {
            t.join(30_000);
        }
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (completed.get() < submitted.get() && System.nanoTime() < end) {
            Thread.sleep(5);
        }
        assertThat(completed.get()).isEqualTo(submitted.get());
        assertThat(twice.get()).isZero();
        assertThat(errors.get()).isZero();
        long n = 0;
        for (int i = 0; i < done.length(); i++) {
            assertThat(done.get(i)).as("bio %d", i).isLessThanOrEqualTo(1);
            n += done.get(i);
        }
        assertThat(n).as("bios completed once each").isEqualTo(submitted.get());
        assertThat(swaps).as("swaps under load").isEqualTo(20);
        m.close();
    }
}
