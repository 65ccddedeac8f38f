package io.biostack.rbd;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
import io.biostack.block.Extent;
import io.biostack.block.IoIter;
import io.biostack.block.Op;
import io.biostack.block.Status;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.api.parallel.ResourceLock;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static io.biostack.TestData.random;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The RBD leaf against a real single-node Ceph ({@link CephCluster}): what it writes is what
 * {@code rbd export} reads, what {@code rbd import} wrote is what it reads, and discard,
 * write-zeroes, FUA, extents and bad input do what a block device must.
 */
@Timeout(60)
@ResourceLock(CephCluster.LOCK)
class RbdDeviceTest {
    static CephCluster ceph;

    @TempDir
    Path dir;

    @BeforeAll
    static void cluster() throws Exception {
        ceph = CephCluster.shared();
    }

    RbdOptions image(String prefix, long size) {
        return new RbdOptions("rbd", ceph.newImage(prefix), "admin", ceph.conf(), null, size);
    }

    byte[] export(RbdOptions o) throws Exception {
        Path out = dir.resolve(o.image() + ".export");
        ceph.rbd("export", o.spec(), out.toString());
        return Files.readAllBytes(out);
    }

    @Test
    void dataWrittenThroughTheLeafIsWhatRbdExportReads() throws Exception {
        RbdOptions o = image("write", 16L << 20);
        byte[] expect = new byte[16 << 20];
        try (RbdDevice d = RbdDevice.open("vol", o); Arena arena = Arena.ofShared()) {
            assertThat(d.size()).isEqualTo(16L << 20);
            assertThat(d.objectSize()).isEqualTo(4L << 20);
            assertThat(d.limits().ioOpt()).isEqualTo(4L << 20);
            assertThat(d.limits().logicalBlockSize()).isEqualTo(512);
            assertThat(d.limits().discard()).isTrue();
            // native memory, one segment, crossing an object boundary
            byte[] a = random(1 << 20, 1);
            MemorySegment na = d.allocateIoMemory(a.length, arena);
            na.copyFrom(MemorySegment.ofArray(a));
            d.write((4L << 20) - 4096, na).get(30, TimeUnit.SECONDS);
            System.arraycopy(a, 0, expect, (4 << 20) - 4096, a.length);
            // heap memory (bounced), bigger than one bounce buffer, at an odd 512-byte offset
            byte[] b = random(700 * 1024 + 512, 2);
            d.write(512, IoIter.of(b), 0).get(30, TimeUnit.SECONDS);
            System.arraycopy(b, 0, expect, 512, b.length);
            // three native segments in one bio
            byte[] c = random(3 * 8192, 3);
            MemorySegment[] segs = new MemorySegment[3];
            for (int i = 0; i < 3; i++) {
                segs[i] = arena.allocate(8192, 4096);
                segs[i].copyFrom(MemorySegment.ofArray(c).asSlice(i * 8192L, 8192));
            }
            d.write((15L << 20) - 24576 + 0, IoIter.of(segs), 0).get(30, TimeUnit.SECONDS);
            System.arraycopy(c, 0, expect, (15 << 20) - 24576, c.length);
            d.flush().get(30, TimeUnit.SECONDS);

            byte[] back = new byte[16 << 20];
            d.read(0, IoIter.of(back)).get(30, TimeUnit.SECONDS);
            assertThat(Arrays.mismatch(back, expect)).as("first differing byte read back through the leaf").isEqualTo(-1);
        }
        assertThat(Arrays.mismatch(export(o), expect)).as("first differing byte in rbd export").isEqualTo(-1);
    }

    @Test
    void growToResizesTheImageAsRbdSeesItAndWritesBeyondTheOldEndLand() throws Exception {
        RbdOptions o = image("grow", 8L << 20);
        try (RbdDevice d = RbdDevice.open("vol", o); Arena arena = Arena.ofShared()) {
            MemorySegment buf = d.allocateIoMemory(4096, arena).fill((byte) 0x6b);
            assertThatThrownBy(() -> d.write(12L << 20, buf).get(30, TimeUnit.SECONDS))
                    .hasMessageContaining("beyond the end");
            assertThat(d.growTo(4L << 20)).as("never shrinks").isEqualTo(8L << 20);
            assertThat(d.growTo((12L << 20) + 1)).as("rounded up to a 512-byte block").isEqualTo((12L << 20) + 512);
            assertThat(io.biostack.block.Resizable.grow(d, 16L << 20)).isEqualTo(16L << 20);
            assertThat(d.size()).isEqualTo(16L << 20);
            d.write(12L << 20, buf).get(30, TimeUnit.SECONDS);
            d.flush().get(30, TimeUnit.SECONDS);
        }
        assertThat(ceph.rbd("info", "--format", "json", o.spec()).out()).contains("\"size\":16777216");
        byte[] img = export(o);
        assertThat(img).hasSize(16 << 20);
        for (int i = 0; i < 4096; i++) {
            assertThat(img[(12 << 20) + i]).isEqualTo((byte) 0x6b);
        }
        assertThat(img[(12 << 20) - 1]).isZero();
    }

    @Test
    void growToAClosedDeviceFailsAndLeavesTheImageAsItWas() throws Exception {
        RbdOptions o = image("growclosed", 8L << 20);
        RbdDevice d = RbdDevice.open("vol", o);
        d.close();
        assertThatThrownBy(() -> d.growTo(16L << 20)).isInstanceOf(IOException.class)
                .hasMessageContaining("rbd " + o.spec() + " is closed");
        assertThat(ceph.rbd("info", "--format", "json", o.spec()).out()).contains("\"size\":8388608");
    }

    @Test
    void anImageMadeByRbdImportIsReadByteExact() throws Exception {
        byte[] data = random(6 << 20, 4);
        Arrays.fill(data, 1 << 20, 3 << 20, (byte) 0); // a hole in the middle
        Path src = dir.resolve("src.img");
        Files.write(src, data);
        String name = ceph.newImage("import");
        ceph.rbd("import", src.toString(), "rbd/" + name);
        try (RbdDevice d = RbdDevice.open("imp", new RbdOptions("rbd", name, "admin", ceph.conf(), null, -1));
                Arena arena = Arena.ofShared()) {
            assertThat(d.size()).isEqualTo(data.length);
            MemorySegment m = d.allocateIoMemory(data.length, arena);
            d.read(0, m).get(30, TimeUnit.SECONDS);
            assertThat(Arrays.mismatch(m.toArray(ValueLayout.JAVA_BYTE), data)).isEqualTo(-1);
        }
    }

    @Test
    void aFuaWriteIsVisibleToAnotherClientBeforeAnyFlushOrClose() throws Exception {
        RbdOptions o = image("fua", 4L << 20);
        byte[] a = random(64 * 1024, 5);
        try (RbdDevice d = RbdDevice.open("vol", o)) {
            d.write(0, IoIter.of(random(4096, 55)), 0).get(30, TimeUnit.SECONDS);
            d.write(8192, IoIter.of(a), BioFlags.FUA).get(30, TimeUnit.SECONDS);
            // Still open, never flushed or closed: only the FUA's flush can have pushed the write
            // out of librbd's writeback cache (the fixture's dirty age is 30 s) to the OSD that
            // rbd export reads.
            byte[] img = export(o);
            assertThat(Arrays.mismatch(Arrays.copyOfRange(img, 8192, 8192 + a.length), a)).isEqualTo(-1);
        }
    }

    @Test
    void aPreflushWriteAndAFlushComplete() throws Exception {
        RbdOptions o = image("preflush", 4L << 20);
        byte[] a = random(4096, 6);
        try (RbdDevice d = RbdDevice.open("vol", o)) {
            d.write(0, IoIter.of(a), BioFlags.PREFLUSH | BioFlags.FUA).get(30, TimeUnit.SECONDS);
            d.flush().get(30, TimeUnit.SECONDS);
            byte[] img = export(o);
            assertThat(Arrays.copyOf(img, 4096)).isEqualTo(a);
        }
    }

    @Test
    void discardOfWholeObjectsRemovesThemFromTheImage() throws Exception {
        RbdOptions o = image("discard", 16L << 20);
        try (RbdDevice d = RbdDevice.open("vol", o)) {
            byte[] a = random(12 << 20, 7);
            d.write(0, IoIter.of(a), 0).get(30, TimeUnit.SECONDS);
            d.flush().get(30, TimeUnit.SECONDS);
            assertThat(diff(o)).contains(4L << 20);
            d.discard(4L << 20, 4L << 20).get(30, TimeUnit.SECONDS);
            d.flush().get(30, TimeUnit.SECONDS);
            // rbd diff lists allocated extents: none may start inside the discarded object now
            assertThat(diff(o)).contains(0L, 8L << 20).allMatch(off -> off < (4L << 20) || off >= (8L << 20));
            byte[] img = export(o);
            byte[] zeros = new byte[4 << 20];
            assertThat(Arrays.mismatch(Arrays.copyOfRange(img, 4 << 20, 8 << 20), zeros)).isEqualTo(-1);
            assertThat(Arrays.mismatch(Arrays.copyOfRange(img, 0, 4 << 20), Arrays.copyOfRange(a, 0, 4 << 20))).isEqualTo(-1);
            assertThat(Arrays.mismatch(Arrays.copyOfRange(img, 8 << 20, 12 << 20), Arrays.copyOfRange(a, 8 << 20, 12 << 20)))
                    .isEqualTo(-1);
        }
    }

    /** The offsets of {@code rbd diff}'s extents. */
    java.util.List<Long> diff(RbdOptions o) throws Exception {
        return ceph.rbd("diff", o.spec()).out().lines().skip(1).map(l -> Long.parseLong(l.strip().split("\\s+")[0]))
                .toList();
    }

    @Test
    void writeZeroesReadsBackAsZerosExactlyInItsRange() throws Exception {
        RbdOptions o = image("zeroes", 8L << 20);
        byte[] a = random(2 << 20, 8);
        try (RbdDevice d = RbdDevice.open("vol", o)) {
            assertThat(d.limits().writeZeroes()).as("librbd 16 has rbd_aio_write_zeroes").isTrue();
            d.write(1L << 20, IoIter.of(a), 0).get(30, TimeUnit.SECONDS);
            d.writeZeroes((1L << 20) + 4096, 8192, false).get(30, TimeUnit.SECONDS);
            d.writeZeroes((2L << 20) + 512, 1024, true).get(30, TimeUnit.SECONDS); // NOUNMAP: thick
            d.flush().get(30, TimeUnit.SECONDS);
        }
        byte[] expect = new byte[8 << 20];
        System.arraycopy(a, 0, expect, 1 << 20, a.length);
        Arrays.fill(expect, (1 << 20) + 4096, (1 << 20) + 4096 + 8192, (byte) 0);
        Arrays.fill(expect, (2 << 20) + 512, (2 << 20) + 512 + 1024, (byte) 0);
        assertThat(Arrays.mismatch(export(o), expect)).isEqualTo(-1);
    }

    @Test
    void extentsShowHolesWhereNothingWasWritten() throws Exception {
        RbdOptions o = image("extents", 32L << 20);
        try (RbdDevice d = RbdDevice.open("vol", o)) {
            assertThat(d.extentAt(0, d.size())).as("a new image is one hole")
                    .isEqualTo(Extent.hole(d.size()));
            d.write(0, IoIter.of(random(8192, 9)), 0).get(30, TimeUnit.SECONDS);
            d.write(20L << 20, IoIter.of(random(4096, 10)), 0).get(30, TimeUnit.SECONDS);
            d.flush().get(30, TimeUnit.SECONDS);

            Extent first = d.extentAt(0, d.size());
            assertThat(first.flags()).isZero();
            assertThat(first.length()).isBetween(8192L, 4L << 20);
            // nothing was written between the first object and 20M
            long pos = first.length();
            while (pos < (20L << 20)) {
                Extent e = d.extentAt(pos, d.size() - pos);
                assertThat(e.flags()).as("at %d", pos).isEqualTo(Extent.HOLE | Extent.ZERO);
                assertThat(e.length()).isPositive();
                pos += e.length();
            }
            assertThat(pos).as("the hole ends where the second write starts").isEqualTo(20L << 20);
            Extent second = d.extentAt(20L << 20, 12L << 20);
            assertThat(second.flags()).isZero();
            assertThat(second.length()).isBetween(4096L, 4L << 20);
            Extent tail = d.extentAt(24L << 20, 8L << 20);
            assertThat(tail).isEqualTo(Extent.hole(8L << 20));
        }
    }

    @Test
    void manyIosInFlightAllCompleteAndTheSlotTableGrowsOnlyToTheDeepestQueue() throws Exception {
        RbdOptions o = image("deep", 8L << 20);
        int n = 600; // more than INITIAL_SLOTS
        try (RbdDevice d = RbdDevice.open("vol", o); Arena arena = Arena.ofShared()) {
            MemorySegment buf = d.allocateIoMemory((long) n * 4096, arena);
            for (int i = 0; i < n; i++) {
                buf.asSlice(i * 4096L, 4096).fill((byte) (i + 1));
            }
            CountDownLatch done = new CountDownLatch(n);
            AtomicInteger errors = new AtomicInteger();
            for (int i = 0; i < n; i++) {
                Bio b = new Bio().init(Op.WRITE, 0, i * 4096L, bio -> {
                    if (!bio.status().isOk()) {
                        errors.incrementAndGet();
                    }
                    done.countDown();
                });
                b.addSegment(buf.asSlice(i * 4096L, 4096));
                d.submit(b);
            }
            assertThat(done.await(30, TimeUnit.SECONDS)).isTrue();
            assertThat(errors.get()).isZero();
            assertThat(d.slotsMade()).isBetween(RbdDevice.INITIAL_SLOTS, n);
            int made = d.slotsMade();
            for (int round = 0; round < 3; round++) { // sequential I/O reuses slots, makes none
                d.read(round * 4096L, arena.allocate(4096, 4096)).get(30, TimeUnit.SECONDS);
            }
            assertThat(d.slotsMade()).isEqualTo(made);
            MemorySegment back = d.allocateIoMemory((long) n * 4096, arena);
            d.read(0, back).get(30, TimeUnit.SECONDS);
            assertThat(back.mismatch(buf)).isEqualTo(-1);
        }
    }

    @Test
    void endIoCallbacksThatSubmitAgainFromLibrbdsThreadsKeepGoing() throws Exception {
        RbdOptions o = image("chain", 4L << 20);
        int chains = 8;
        int perChain = 64;
        try (RbdDevice d = RbdDevice.open("vol", o); Arena arena = Arena.ofShared()) {
            MemorySegment buf = d.allocateIoMemory((long) chains * perChain * 4096, arena);
            for (int i = 0; i < chains * perChain; i++) {
                buf.asSlice(i * 4096L, 4096).fill((byte) (i * 7 + 1));
            }
            CountDownLatch done = new CountDownLatch(chains);
            AtomicInteger errors = new AtomicInteger();
            for (int c = 0; c < chains; c++) {
                int chain = c;
                Bio b = new Bio();
                io.biostack.block.EndIo[] next = new io.biostack.block.EndIo[1];
                next[0] = bio -> {
                    // on a librbd thread: submit the chain's next write from here
                    if (!bio.status().isOk()) {
                        errors.incrementAndGet();
                    }
                    long k = bio.privateLong() + 1;
                    if (k == perChain) {
                        done.countDown();
                        return;
                    }
                    long block = k * chains + chain;
                    bio.init(Op.WRITE, k % 5 == 0 ? BioFlags.FUA : 0, block * 4096, next[0]);
                    bio.setPrivateLong(k);
                    bio.addSegment(buf.asSlice(block * 4096, 4096));
                    d.submit(bio);
                };
                b.init(Op.WRITE, 0, chain * 4096L, next[0]).addSegment(buf.asSlice(chain * 4096L, 4096));
                d.submit(b);
            }
            assertThat(done.await(30, TimeUnit.SECONDS)).as("every chain finished").isTrue();
            assertThat(errors.get()).isZero();
            d.flush().get(30, TimeUnit.SECONDS);
        }
        byte[] img = export(o);
        assertThat(Arrays.mismatch(Arrays.copyOf(img, chains * perChain * 4096), buf(chains * perChain))).isEqualTo(-1);
    }

    static byte[] buf(int blocks) {
        byte[] b = new byte[blocks * 4096];
        for (int i = 0; i < blocks; i++) {
            Arrays.fill(b, i * 4096, (i + 1) * 4096, (byte) (i * 7 + 1));
        }
        return b;
    }

    @Test
    void aMirrorOfTwoImagesInOneStackWritesBothByteForByte() throws Exception {
        String a = ceph.newImage("leg-a");
        String b = ceph.newImage("leg-b");
        String conf = " conf=" + ceph.conf() + " size=8M\n";
        byte[] data = random(3 << 20, 15);
        try (io.biostack.stack.Stack st = io.biostack.stack.Stack.open(
                "a: rbd rbd/" + a + conf + "b: rbd rbd/" + b + conf + "m: mirror a 0 b 0\n", "two.stack")) {
            io.biostack.block.BlockDevice m = st.device("m");
            assertThat(m.size()).isEqualTo(8L << 20);
            m.write(1L << 20, IoIter.of(data), 0).get(30, TimeUnit.SECONDS);
            m.flush().get(30, TimeUnit.SECONDS);
        }
        byte[] expect = new byte[8 << 20];
        System.arraycopy(data, 0, expect, 1 << 20, data.length);
        assertThat(Arrays.mismatch(export(new RbdOptions("rbd", a, "admin", null, null, -1)), expect)).isEqualTo(-1);
        assertThat(Arrays.mismatch(export(new RbdOptions("rbd", b, "admin", null, null, -1)), expect)).isEqualTo(-1);
    }

    // ---- bad input ---------------------------------------------------------------------------

    @Test
    void anUnknownPoolIsAClearErrorNamingPoolAndImage() {
        assertThatThrownBy(() -> RbdDevice.open("x", new RbdOptions("nopool", "vol", "admin", ceph.conf(), null, -1)))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("rbd nopool/vol")
                .hasMessageContaining("pool 'nopool' does not exist");
    }

    @Test
    void anUnknownImageIsAClearErrorNamingPoolAndImage() {
        assertThatThrownBy(() -> RbdDevice.open("x", new RbdOptions("rbd", "nosuchimage", "admin", ceph.conf(), null, -1)))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("rbd rbd/nosuchimage")
                .hasMessageContaining("no image 'nosuchimage' in pool 'rbd'")
                .hasMessageContaining("size=");
    }

    @Test
    void aMissingConfigFileIsAClearErrorNamingIt() {
        Path missing = dir.resolve("nope/ceph.conf");
        assertThatThrownBy(() -> RbdDevice.open("x", new RbdOptions("rbd", "vol", "admin", missing, null, -1)))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("rbd rbd/vol")
                .hasMessageContaining(missing.toString())
                .hasMessageContaining("ENOENT");
    }

    @Test
    void sizeCreatesAMissingImageAndLeavesAnExistingOneAlone() throws Exception {
        RbdOptions o = image("create", 8L << 20);
        try (RbdDevice d = RbdDevice.open("vol", o)) {
            assertThat(d.size()).isEqualTo(8L << 20);
            d.write(0, IoIter.of(random(4096, 11)), BioFlags.FUA).get(30, TimeUnit.SECONDS);
        }
        assertThat(ceph.rbd("info", o.spec()).out()).contains("size 8 MiB").contains("format: 2")
                .contains("object-map");
        try (RbdDevice d = RbdDevice.open("vol", o.withSize(64L << 20))) {
            assertThat(d.size()).as("an existing image keeps its size").isEqualTo(8L << 20);
            byte[] back = new byte[4096];
            d.read(0, IoIter.of(back)).get(30, TimeUnit.SECONDS);
            assertThat(back).isEqualTo(random(4096, 11));
        }
    }

    @Test
    void outOfRangeAndMisalignedIoFailsAndWritesNothing() throws Exception {
        RbdOptions o = image("range", 4L << 20);
        try (RbdDevice d = RbdDevice.open("vol", o)) {
            CompletableFuture<Void> past = d.write((4L << 20) - 4096, IoIter.of(random(8192, 12)), 0);
            assertThat(status(past)).isEqualTo(Status.NOSPC);
            assertThat(rootMessage(past)).contains("beyond the end of vol");
            CompletableFuture<Void> odd = d.write(100, IoIter.of(random(512, 13)), 0);
            assertThat(status(odd)).isEqualTo(Status.INVAL);
            CompletableFuture<Void> read = d.read(4L << 20, IoIter.of(new byte[512]));
            assertThat(status(read)).isEqualTo(Status.INVAL);
            CompletableFuture<Void> disc = d.discard(0, 8L << 20);
            assertThat(status(disc)).isEqualTo(Status.NOSPC);
            d.flush().get(30, TimeUnit.SECONDS);
        }
        assertThat(diff(o)).as("rbd diff: nothing was written").isEmpty();
    }

    static Status status(CompletableFuture<Void> f) throws InterruptedException {
        try {
            f.get(30, TimeUnit.SECONDS);
            return Status.OK;
        } catch (java.util.concurrent.ExecutionException e) {
            Throwable c = e.getCause();
            assertThat(c).isInstanceOf(io.biostack.block.BioException.class);
            return ((io.biostack.block.BioException) c).status();
        } catch (java.util.concurrent.TimeoutException e) {
            throw new AssertionError("bio did not complete in 30 s");
        }
    }

    static String rootMessage(CompletableFuture<Void> f) {
        try {
            f.join();
            return null;
        } catch (java.util.concurrent.CompletionException e) {
            Throwable t = e;
            while (t.getCause() != null) {
                t = t.getCause();
            }
            return t.getMessage();
        }
    }

    @Test
    void withTimeoutAnIoTheClusterDoesNotAnswerFailsWithTimeoutInsteadOfHanging() throws Exception {
        RbdOptions o = new RbdOptions("rbd", ceph.newImage("timeout"), "admin", ceph.conf(), null, 4L << 20, 2);
        byte[] a = random(4096, 14);
        try (RbdDevice d = RbdDevice.open("vol", o)) {
            d.write(0, IoIter.of(a), BioFlags.FUA).get(30, TimeUnit.SECONDS);
            CompletableFuture<Void> read;
            CompletableFuture<Void> fua;
            long t0 = System.nanoTime();
            ceph.pauseOsd();
            try {
                read = d.read(512 * 1024, IoIter.of(new byte[4096])); // never read: not in the cache
                fua = d.write(8192, IoIter.of(a), BioFlags.FUA);
                assertThat(status(read)).isEqualTo(Status.TIMEOUT);
                assertThat(status(fua)).isEqualTo(Status.TIMEOUT);
            } finally {
                ceph.resumeOsd();
            }
            long waited = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
            assertThat(waited).as("failed after about timeout=2, not never").isBetween(1500L, 20_000L);
            assertThat(rootMessage(read)).contains("rbd rbd/" + o.image()).contains("ETIMEDOUT");
            // the OSD is back: the same device serves again
            byte[] back = new byte[4096];
            d.read(0, IoIter.of(back)).get(30, TimeUnit.SECONDS);
            assertThat(back).isEqualTo(a);
        }
    }

    @Test
    void aClosedDeviceCancelsNewBios() throws Exception {
        RbdDevice d = RbdDevice.open("vol", image("closed", 4L << 20));
        d.close();
        assertThat(status(d.read(0, IoIter.of(new byte[512])))).isEqualTo(Status.CANCELLED);
    }
}
