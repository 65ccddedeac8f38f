package io.biostack.layer.qcow2;

import io.biostack.block.RamDisk;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The lock-free L2 lookup against eviction, reuse and change of the tables it reads: threads read
 * and write in place through a cache of two tables while others evict them, read other tables
 * into their memory and discard and reallocate clusters. Every 512-byte block of the image holds
 * its own guest offset, so a stale or torn mapping (a table read after its memory took another
 * table) shows as a block that names another offset.
 */
class Qcow2L2CacheRaceTest {
    /** 512-byte clusters: 64 entries per L2 table, so 8 MiB is 256 tables for a 2-table cache. */
    private static final int CS = 512;
    private static final long SIZE = 8L << 20;
    private static final long TABLE_SPAN = (long) CS / 8 * CS;
    /** Clusters whose index is a multiple of this are discarded and rewritten while others read. */
    private static final int CHURN = 7;
    private static final long RUN_NANOS = TimeUnit.SECONDS.toNanos(3);

    @TempDir
    Path dir;

    private static void stamp(ByteBuffer b, long off) {
        for (int i = 0; i < CS; i += 8) {
            b.putLong(i, off ^ ((long) i << 48));
        }
    }

    /** What block {@code off} should hold; null when it holds that. */
    private static String check(MemorySegment m, long off, boolean zeroAllowed) {
        long first = m.get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
        if (zeroAllowed && first == 0 && m.get(ValueLayout.JAVA_LONG_UNALIGNED, CS - 8) == 0) {
            return null;
        }
        for (int i = 0; i < CS; i += 8) {
            long want = off ^ ((long) i << 48);
            long got = m.get(ValueLayout.JAVA_LONG_UNALIGNED, i);
            if (got != want) {
                return "block " + off + " word " + i / 8 + " holds 0x" + Long.toHexString(got) + ", wanted 0x"
                        + Long.toHexString(want);
            }
        }
        return null;
    }

    private Path image() throws Exception {
        Path raw = dir.resolve("marks.raw");
        ByteBuffer b = ByteBuffer.allocate((int) SIZE).order(java.nio.ByteOrder.nativeOrder());
        for (long off = 0; off < SIZE; off += CS) {
            stamp(b.slice((int) off, CS).order(java.nio.ByteOrder.nativeOrder()), off);
        }
        Files.write(raw, b.array());
        Path img = dir.resolve("race.qcow2");
        Tools.ok(60, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=" + CS, raw.toString(),
                img.toString());
        return img;
    }

    /** A cache of {@code tables} tables over a RAM disk whose table at cluster i holds words i. */
    private static Qcow2Cache cache(RamDisk ram, int tables) {
        return new Qcow2Cache(ram, CS, (long) tables * CS, 16);
    }

    private static RamDisk tablesDisk() {
        RamDisk ram = new RamDisk("tables", 16L * CS);
        byte[] b = new byte[16 * CS];
        ByteBuffer bb = ByteBuffer.wrap(b);
        for (int i = 0; i < 16; i++) {
            for (int w = 0; w < CS / 8; w++) {
                bb.putLong(i * CS + w * 8, 1000L * i + w);
            }
        }
        ram.write(0, io.biostack.block.IoIter.of(b), 0).join();
        return ram;
    }

    private static Qcow2Cache.Entry load(Qcow2Cache c, Object monitor, int cluster) {
        java.util.concurrent.CompletableFuture<Throwable> done = new java.util.concurrent.CompletableFuture<>();
        synchronized (monitor) {
            c.load((long) cluster * CS, monitor, done::complete);
        }
        assertEquals(null, done.orTimeout(10, TimeUnit.SECONDS).join());
        synchronized (monitor) {
            Qcow2Cache.Entry e = c.lookup((long) cluster * CS);
            c.publish(cluster, e);
            return e;
        }
    }

    @Test
    void aReadThatBeganBeforeItsTableWasEvictedAndItsMemoryReusedIsInvalid() {
        Object monitor = new Object();
        try (RamDisk ram = tablesDisk()) {
            Qcow2Cache c = cache(ram, 2);
            Qcow2Cache.Entry e = load(c, monitor, 1);
            long s = e.readBegin();
            assertTrue(s >= 0);
            assertEquals(1000L + 5, e.word(5));
            assertTrue(c.published(1) == e);
            // two other tables: the first one is evicted
            load(c, monitor, 2);
            load(c, monitor, 3);
            assertTrue(c.published(1) == null, "an evicted table is no longer published");
            assertEquals(-1, e.readBegin(), "an evicted table can never be read lock-free again");
            assertTrue(!e.readValid(s), "a read that spanned the eviction is invalid");
            // the next table read goes into the freed memory: the words a late reader would see
            // are another table's, exactly why it must retry
            load(c, monitor, 4);
            assertEquals(4000L + 5, e.word(5));
            assertTrue(!e.readValid(s));
            c.close();
        }
    }

    @Test
    void aReadThatSpannedAChangeOfItsTableIsInvalidAndTheNextOneSeesTheChange() {
        Object monitor = new Object();
        try (RamDisk ram = tablesDisk()) {
            Qcow2Cache c = cache(ram, 4);
            Qcow2Cache.Entry e = load(c, monitor, 1);
            long s = e.readBegin();
            synchronized (monitor) {
                e.setWord(5, 77);
            }
            assertTrue(!e.readValid(s));
            long s2 = e.readBegin();
            assertTrue(s2 >= 0 && s2 != s);
            assertEquals(77, e.word(5));
            assertTrue(e.readValid(s2));
            synchronized (monitor) {
                e.setWords(6, 88, 99);
            }
            assertTrue(!e.readValid(s2));
            c.close();
        }
    }

    @Test
    void aTableHitLockFreeGetsASecondChanceAtEviction() {
        Object monitor = new Object();
        try (RamDisk ram = tablesDisk()) {
            Qcow2Cache c = cache(ram, 2);
            Qcow2Cache.Entry a = load(c, monitor, 1);
            Qcow2Cache.Entry b = load(c, monitor, 2);
            c.countFastHit(a); // a is the least recently used by the monitor's order, but was hit
            load(c, monitor, 3);
            assertTrue(a.readBegin() >= 0, "the table hit lock-free stays");
            assertEquals(-1, b.readBegin(), "the other one goes");
            c.close();
        }
    }

    @Test
    void concurrentFirstWritesToOneNewClusterAllocateItOnceAndAllLand() throws Exception {
        Path img = dir.resolve("once.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", img.toString(), "1M");
        int pieces = 16;
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults());
             Qcow2Device q = Qcow2Device.open("q", c, new Qcow2Device.Options(false, -1, null, true, img, null,
                     img.toString()));
             Arena a = Arena.ofShared()) {
            MemorySegment m = a.allocate(64L << 10, 4096);
            List<java.util.concurrent.CompletableFuture<Void>> all = new ArrayList<>();
            for (int i = 0; i < pieces; i++) {
                MemorySegment p = m.asSlice(i * 4096L, 4096);
                p.fill((byte) (i + 1));
                all.add(q.write(i * 4096L, p)); // all in flight at once, on one new 64 KiB cluster
            }
            for (var f : all) {
                f.orTimeout(10, TimeUnit.SECONDS).join();
            }
            q.flush().join();
            MemorySegment back = a.allocate(64L << 10, 4096);
            q.read(0, back).join();
            assertEquals(-1, m.mismatch(back), "every piece landed");
        }
        // one L2 table and one data cluster, nothing leaked (a second allocation would leak one)
        Tools.ok(60, "qemu-img", "check", img.toString());
        String json = Tools.ok(60, "qemu-img", "check", "--output=json", img.toString()).out();
        Matcher n = Pattern.compile("\"allocated-clusters\": *(\\d+)").matcher(json);
        assertTrue(n.find(), json);
        // one guest cluster mapped; check's exit 0 says no second host cluster leaked
        assertEquals(1, Integer.parseInt(n.group(1)), json);
        assertTrue(!json.contains("\"leaks\""), json);
    }

    @Test
    void lockFreeLookupsNeverUseAnEvictedOrChangedTable() throws Exception {
        Path img = image();
        ConcurrentLinkedQueue<String> errors = new ConcurrentLinkedQueue<>();
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults());
             Qcow2Device q = Qcow2Device.open("q", c, new Qcow2Device.Options(false, 2L * CS, null, true, img, null,
                     img.toString()))) {
            long deadline = System.nanoTime() + RUN_NANOS;
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                boolean writer = t == 3;
                long seed = 42 + t;
                threads.add(Thread.ofPlatform().name("race-" + t).start(() -> {
                    SplittableRandom r = new SplittableRandom(seed);
                    try (Arena a = Arena.ofShared()) {
                        MemorySegment m = a.allocate(CS, 4096);
                        ByteBuffer w = ByteBuffer.allocate(CS).order(java.nio.ByteOrder.nativeOrder());
                        for (int round = 0; round < 1_000_000 && System.nanoTime() < deadline && errors.isEmpty(); round++) {
                            // a burst in one table: lock-free hits while other threads evict it
                            long table = r.nextLong(SIZE / TABLE_SPAN) * TABLE_SPAN;
                            for (int i = 0; i < 16; i++) {
                                long off = table + r.nextLong(TABLE_SPAN / CS) * CS;
                                boolean churn = (off / CS) % CHURN == 0;
                                if (writer && churn) {
                                    // discard, then rewrite: the table's words change under readers
                                    q.discard(off, CS).join();
                                    stamp(w, off);
                                    m.copyFrom(MemorySegment.ofBuffer(w));
                                    q.write(off, m).join();
                                    if (r.nextInt(64) == 0) {
                                        q.flush().join(); // dirty tables become evictable again
                                    }
                                } else if (writer) {
                                    // in place: the same bytes, so only a wrong mapping shows
                                    stamp(w, off);
                                    m.copyFrom(MemorySegment.ofBuffer(w));
                                    q.write(off, m).join();
                                } else {
                                    q.read(off, m).join();
                                    String bad = check(m, off, churn);
                                    if (bad != null) {
                                        errors.add(bad);
                                    }
                                }
                            }
                        }
                    } catch (RuntimeException e) {
                        errors.add(e.toString());
                    }
                }));
            }
            for (Thread t : threads) {
                t.join(TimeUnit.SECONDS.toMillis(30));
                assertTrue(!t.isAlive(), () -> t.getName() + " hangs at " + java.util.Arrays.toString(t.getStackTrace())
                        + "; " + q.status());
            }
            assertTrue(errors.isEmpty(), "wrong data: " + errors.peek() + " (" + errors.size() + " in all)");
            String status = q.status();
            Matcher h = Pattern.compile("hits=(\\d+) misses=(\\d+)").matcher(status);
            assertTrue(h.find(), status);
            // the race happened: tables were evicted and read again many times, and hit too
            assertTrue(Long.parseLong(h.group(1)) > 1_000, status);
            assertTrue(Long.parseLong(h.group(2)) > 1_000, status);
            // the metadata memory is reported, and the cache's is its tables: whole clusters
            Matcher mem = Pattern.compile("l2_cache_mem=(\\d+) refcount_mem=(\\d+)").matcher(status);
            assertTrue(mem.find(), status);
            assertEquals(0, Long.parseLong(mem.group(1)) % CS, status);
            assertTrue(Long.parseLong(mem.group(1)) >= 2L * CS && Long.parseLong(mem.group(2)) > 0, status);
            // Every block, read back one by one, holds its own offset (the churned ones rewritten).
            try (Arena a = Arena.ofShared()) {
                MemorySegment m = a.allocate(CS, 4096);
                for (long off = 0; off < SIZE; off += CS) {
                    q.read(off, m).join();
                    String bad = check(m, off, false);
                    assertEquals(null, bad);
                }
            }
            q.flush().join();
        }
        Tools.ok(60, "qemu-img", "check", img.toString());
    }
}
