package io.biostack.layer.logwrites;

import io.biostack.block.Bio;
import io.biostack.block.BioFlags;
import io.biostack.block.BlockDevice;
import io.biostack.block.Extent;
import io.biostack.block.IoIter;
import io.biostack.block.QueueLimits;
import io.biostack.block.RamDisk;
import io.biostack.stack.Stack;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The log-writes target: what reaches DEV, and the log it writes, decoded here field by field
 * with offsets and values written out from the kernel's structs (dm-log-writes.c), not from
 * {@link LogFormat}.
 */
@Timeout(30)
class LogWritesTest {
    static final long MAGIC = 0x6a736677736872L; // WRITE_LOG_MAGIC, dm-log-writes.c

    /** One decoded entry. */
    record E(long sector, long nr, long flags, long dataLen, byte[] data, String mark) {
    }

    /** Reads the log device back: the super block's four fields, then nr_entries entries. */
    static List<E> decode(BlockDevice log, long[] superOut) throws Exception {
        byte[] raw = new byte[(int) log.size()];
        MemorySegment m = Arena.ofAuto().allocate(raw.length, 4096);
        log.read(0, m).get(5, TimeUnit.SECONDS);
        MemorySegment.copy(m, 0, MemorySegment.ofArray(raw), 0, raw.length);
        ByteBuffer b = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        superOut[0] = b.getLong(0);
        superOut[1] = b.getLong(8);
        superOut[2] = b.getLong(16);
        superOut[3] = b.getInt(24) & 0xffffffffL;
        int ss = (int) superOut[3];
        List<E> out = new ArrayList<>();
        int at = ss;
        for (long i = 0; i < superOut[2]; i++) {
            long sector = b.getLong(at);
            long nr = b.getLong(at + 8);
            long flags = b.getLong(at + 16);
            long dlen = b.getLong(at + 24);
            String mark = (flags & 8) != 0 ? new String(raw, at + 32, (int) dlen, StandardCharsets.UTF_8) : null;
            at += ss;
            byte[] data = new byte[0];
            if ((flags & 4) == 0) {
                data = Arrays.copyOfRange(raw, at, at + (int) (nr * ss));
                at += (int) (nr * ss);
            }
            out.add(new E(sector, nr, flags, dlen, data, mark));
        }
        return out;
    }

    static MemorySegment pattern(int len, int seed) {
        MemorySegment m = Arena.ofAuto().allocate(len, 4096);
        for (int i = 0; i < len; i++) {
            m.set(java.lang.foreign.ValueLayout.JAVA_BYTE, i, (byte) (seed + i * 31));
        }
        return m;
    }

    static byte[] bytes(MemorySegment m) {
        return m.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }

    @Test
    void logHoldsEveryWriteFuaFlushDiscardAndMarkInTheKernelsFormat() throws Exception {
        RamDisk dev = new RamDisk("dev", 1 << 20);
        RamDisk logDev = new RamDisk("log", 4 << 20);
        long[] sup = new long[4];
        MemorySegment a = pattern(4096, 1);
        MemorySegment b = pattern(512, 2);
        try (LogWrites lw = new LogWrites("lw", dev, logDev)) {
            lw.write(8192, a).get(5, TimeUnit.SECONDS);
            lw.write(0, IoIter.of(b), BioFlags.FUA).get(5, TimeUnit.SECONDS);
            lw.flush().get(5, TimeUnit.SECONDS);
            lw.discard(65536, 4096).get(5, TimeUnit.SECONDS);
            lw.message(List.of("mark", "m1"));
            assertThat(lw.status()).startsWith("5 ");
            assertThat(lw.table()).isEqualTo("dev log");
        }
        List<E> es = decode(logDev, sup);
        assertThat(sup[0]).isEqualTo(MAGIC);
        assertThat(sup[1]).isEqualTo(1);
        assertThat(sup[3]).isEqualTo(512);
        // five entries and the end mark the destructor adds, as the kernel's log_writes_dtr
        assertThat(sup[2]).isEqualTo(6);
        assertThat(es.get(0)).extracting(E::sector, E::nr, E::flags, E::dataLen).containsExactly(16L, 8L, 0L, 0L);
        assertThat(es.get(0).data()).isEqualTo(bytes(a));
        assertThat(es.get(1)).extracting(E::sector, E::nr, E::flags, E::dataLen).containsExactly(0L, 1L, 2L, 0L);
        assertThat(es.get(1).data()).isEqualTo(bytes(b));
        assertThat(es.get(2)).extracting(E::sector, E::nr, E::flags, E::dataLen).containsExactly(0L, 0L, 1L, 0L);
        assertThat(es.get(3)).extracting(E::sector, E::nr, E::flags, E::dataLen).containsExactly(128L, 8L, 4L, 0L);
        assertThat(es.get(4)).extracting(E::flags, E::dataLen, E::mark).containsExactly(8L, 2L, "m1");
        assertThat(es.get(5).mark()).isEqualTo("dm-log-writes-end");
        // and DEV got the data
        MemorySegment back = Arena.ofAuto().allocate(4096, 4096);
        dev.read(8192, back).get(5, TimeUnit.SECONDS);
        assertThat(bytes(back)).isEqualTo(bytes(a));
    }

    /** Holds write completions from the device below until released, to order completions by hand. */
    static final class Holding implements BlockDevice {
        final RamDisk lower;
        final Queue<Bio> held = new ConcurrentLinkedQueue<>();
        volatile boolean hold;

        Holding(RamDisk lower) {
            this.lower = lower;
        }

        @Override public String name() { return lower.name(); }
        @Override public long size() { return lower.size(); }
        @Override public QueueLimits limits() { return lower.limits(); }
        @Override public boolean isReadOnly() { return false; }
        @Override public Extent extentAt(long o, long l) { return lower.extentAt(o, l); }
        @Override public void close() { }

        @Override
        public void submit(Bio bio) {
            if (hold && bio.op() == io.biostack.block.Op.WRITE) {
                held.add(bio);
            } else {
                lower.submit(bio);
            }
        }

        void release() {
            Bio b;
            while ((b = held.poll()) != null) {
                lower.submit(b);
            }
        }
    }

    @Test
    void flushIsLoggedAfterTheWritesThatCompletedBeforeItWasIssuedAndBeforeTheOthers() throws Exception {
        Holding dev = new Holding(new RamDisk("dev", 1 << 20));
        RamDisk logDev = new RamDisk("log", 4 << 20);
        long[] sup = new long[4];
        try (LogWrites lw = new LogWrites("lw", dev, logDev)) {
            lw.write(0, pattern(512, 1)).get(5, TimeUnit.SECONDS);           // W1 completes
            dev.hold = true;
            var w2 = lw.write(512, pattern(512, 2));                           // W2 issued, not completed
            dev.hold = false;
            lw.flush().get(5, TimeUnit.SECONDS);                               // flush issued and completed
            dev.release();                                                     // W2 completes after the flush
            w2.get(5, TimeUnit.SECONDS);
            lw.flush().get(5, TimeUnit.SECONDS);
        }
        List<E> es = decode(logDev, sup);
        assertThat(es).extracting(E::sector, E::flags)
                .startsWith(org.assertj.core.groups.Tuple.tuple(0L, 0L), org.assertj.core.groups.Tuple.tuple(0L, 1L),
                        org.assertj.core.groups.Tuple.tuple(1L, 0L), org.assertj.core.groups.Tuple.tuple(0L, 1L));
    }

    @Test
    void superBlockCountsEntriesOnlyUpToTheLastFlush() throws Exception {
        RamDisk dev = new RamDisk("dev", 1 << 20);
        RamDisk logDev = new RamDisk("log", 4 << 20);
        LogWrites lw = new LogWrites("lw", dev, logDev);
        try {
            lw.write(0, pattern(4096, 1)).get(5, TimeUnit.SECONDS);
            lw.flush().get(5, TimeUnit.SECONDS);
            assertThat(waitForSuper(logDev, 2)).isEqualTo(2);
            lw.write(4096, pattern(4096, 2)).get(5, TimeUnit.SECONDS);
            Thread.sleep(200);
            // a write without a flush is logged but not yet counted: a crash now leaves a log
            // that is whole up to its last flush
            assertThat(superEntries(logDev)).isEqualTo(2);
            assertThat(lw.loggedEntries()).isEqualTo(3);
            lw.flush().get(5, TimeUnit.SECONDS);
            assertThat(waitForSuper(logDev, 4)).isEqualTo(4);
        } finally {
            lw.close();
        }
    }

    static long superEntries(BlockDevice log) throws Exception {
        MemorySegment m = Arena.ofAuto().allocate(512, 4096);
        log.read(0, m).get(5, TimeUnit.SECONDS);
        return m.get(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 16);
    }

    static long waitForSuper(BlockDevice log, long want) throws Exception {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        long n;
        while ((n = superEntries(log)) < want && System.nanoTime() < end) {
            Thread.sleep(10);
        }
        return n;
    }

    @Test
    void fullLogDeviceDisablesLoggingAndWritesStillReachTheDevice() throws Exception {
        RamDisk dev = new RamDisk("dev", 1 << 20);
        RamDisk logDev = new RamDisk("log", 16 << 10);
        MemorySegment big = pattern(65536, 3);
        try (LogWrites lw = new LogWrites("lw", dev, logDev)) {
            lw.write(0, big).get(5, TimeUnit.SECONDS);
            lw.flush().get(5, TimeUnit.SECONDS);
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (lw.loggingEnabled() && System.nanoTime() < end) {
                Thread.sleep(10);
            }
            assertThat(lw.status()).endsWith("logging_disabled");
            assertThatThrownBy(() -> lw.message(List.of("mark", "x"))).hasMessageContaining("ran out of space");
            lw.write(65536, big).get(5, TimeUnit.SECONDS);
        }
        MemorySegment back = Arena.ofAuto().allocate(65536, 4096);
        dev.read(65536, back).get(5, TimeUnit.SECONDS);
        assertThat(bytes(back)).isEqualTo(bytes(big));
    }

    @Test
    void limitsLetWholeWritesThroughAsTheDeviceBelowDoes() throws Exception {
        // a write the device takes whole must reach the log whole: splitting it here would tear
        // it in every replay (ext4's superblock, torn in 512-byte halves, does not survive that)
        try (LogWrites lw = new LogWrites("lw", new RamDisk("dev", 4 << 20), new RamDisk("log", 8 << 20))) {
            assertThat(lw.limits().maxBytes()).isGreaterThanOrEqualTo(512 << 10);
            assertThat(lw.limits().logicalBlockSize()).isEqualTo(512);
        }
    }

    @Test
    void writeLargerThanTheLimitsIsLoggedInPiecesThatTogetherHoldItAll() throws Exception {
        RamDisk dev = new RamDisk("dev", 8 << 20);
        RamDisk logDev = new RamDisk("log", 16 << 20);
        MemorySegment big = pattern(3 << 20, 5);
        long[] sup = new long[4];
        try (LogWrites lw = new LogWrites("lw", dev, logDev)) {
            lw.write(4096, big).get(5, TimeUnit.SECONDS);
            lw.flush().get(5, TimeUnit.SECONDS);
        }
        List<E> es = decode(logDev, sup);
        java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();
        long next = 8;   // sector of byte 4096
        for (E e : es.subList(0, es.size() - 2)) {
            assertThat(e.sector()).isEqualTo(next);
            assertThat(e.flags()).isZero();
            next += e.nr();
            all.write(e.data());
        }
        assertThat(es.size()).isGreaterThan(3);
        assertThat(all.toByteArray()).isEqualTo(bytes(big));
        assertThat(es.get(es.size() - 2).flags()).isEqualTo(1L);
    }

    /** Fails every bio of one op with IOERR while {@code failing}; passes the rest to a ramdisk. */
    static final class Failing implements BlockDevice {
        final RamDisk lower;
        final io.biostack.block.Op op;
        volatile boolean failing;

        Failing(RamDisk lower, io.biostack.block.Op op) {
            this.lower = lower;
            this.op = op;
        }

        @Override public String name() { return lower.name(); }
        @Override public long size() { return lower.size(); }
        @Override public QueueLimits limits() { return lower.limits(); }
        @Override public boolean isReadOnly() { return false; }
        @Override public void close() { }

        @Override
        public void submit(Bio bio) {
            if (failing && bio.op() == op) {
                bio.fail(io.biostack.block.Status.IOERR, "failing " + op);
            } else {
                lower.submit(bio);
            }
        }
    }

    @Test
    void failingLogDeviceDisablesLoggingAndTheDataPathGoesOn() throws Exception {
        RamDisk dev = new RamDisk("dev", 1 << 20);
        Failing logDev = new Failing(new RamDisk("log", 4 << 20), io.biostack.block.Op.WRITE);
        MemorySegment a = pattern(4096, 8);
        try (LogWrites lw = new LogWrites("lw", dev, logDev)) {
            logDev.failing = true;
            lw.write(0, a).get(5, TimeUnit.SECONDS);
            lw.flush().get(5, TimeUnit.SECONDS);
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (lw.loggingEnabled() && System.nanoTime() < end) {
                Thread.sleep(10);
            }
            assertThat(lw.status()).endsWith("logging_disabled");
            // the first write to the log device fails: the fresh super block, written before the first entry
            assertThatThrownBy(() -> lw.message(List.of("mark", "x"))).hasMessageContaining("logging is disabled")
                    .hasMessageContaining("failing WRITE");
            lw.write(8192, a).get(5, TimeUnit.SECONDS);
        }
        MemorySegment back = Arena.ofAuto().allocate(4096, 4096);
        dev.read(8192, back).get(5, TimeUnit.SECONDS);
        assertThat(bytes(back)).isEqualTo(bytes(a));
    }

    @Test
    void flushThatFailsOnTheDeviceFailsItsCallerAndIsNotLogged() throws Exception {
        Failing dev = new Failing(new RamDisk("dev", 1 << 20), io.biostack.block.Op.FLUSH);
        RamDisk logDev = new RamDisk("log", 4 << 20);
        long[] sup = new long[4];
        try (LogWrites lw = new LogWrites("lw", dev, logDev)) {
            lw.write(0, pattern(512, 1)).get(5, TimeUnit.SECONDS);
            dev.failing = true;
            assertThatThrownBy(() -> lw.flush().get(5, TimeUnit.SECONDS)).hasMessageContaining("failing FLUSH");
            dev.failing = false;
            lw.flush().get(5, TimeUnit.SECONDS);
        }
        assertThat(decode(logDev, sup)).extracting(E::flags).containsExactly(0L, 1L, 8L);
    }

    @Test
    void badMessagesAndTablesAreRefusedWithAReason() throws Exception {
        try (LogWrites lw = new LogWrites("lw", new RamDisk("dev", 1 << 20), new RamDisk("log", 1 << 20))) {
            assertThatThrownBy(() -> lw.message(List.of("mark"))).hasMessageContaining("mark LABEL");
            assertThatThrownBy(() -> lw.message(List.of("flush", "x"))).hasMessageContaining("mark LABEL");
        }
        assertThatThrownBy(() -> Stack.open("d: ram 1M\nlw: log-writes d\n", "t")).hasMessageContaining("LOGDEV");
        assertThatThrownBy(() -> Stack.open("d: ram 1M\nlw: log-writes d d\n", "t")).hasMessageContaining("different");
        assertThatThrownBy(() -> new LogWrites("lw", new RamDisk("dev", 1 << 20), new RamDisk("log", 512)))
                .hasMessageContaining("too small");
    }

    @Test
    void stackFileLineMakesALogWritesDeviceThatTakesMarksByMessage() throws Exception {
        try (Stack s = Stack.open("d: ram 1M\nl: ram 1M\nlw: log-writes d l\n", "t")) {
            assertThat(s.table("lw")).singleElement().asString().contains("log-writes d l");
            s.device("lw").write(0, pattern(4096, 9)).get(5, TimeUnit.SECONDS);
            s.message("lw", List.of("mark", "after-first"));
            assertThat(s.status("lw")).singleElement().asString().contains("log-writes 2 ");
            assertThat(superEntries(s.device("l"))).isEqualTo(2);
        }
    }

    /**
     * The table line wrote a fresh super block (0 entries) as it opened, and the table's close
     * an end mark over the first entry: a reload whose other line failed, or a loaded table
     * cleared, reset the log the live table was writing. Nothing is written to the log device
     * until an entry is put in line.
     */
    @Test
    void aReloadThatFailsOrIsClearedLeavesTheLogOnTheLogDeviceAsItWas() throws Exception {
        try (Stack s = Stack.open("d: ram 1M\nl: ram 1M\nz: ram 1M\nlw: log-writes d l\n", "t")) {
            s.device("lw").write(0, pattern(4096, 9)).get(5, TimeUnit.SECONDS);
            s.message("lw", List.of("mark", "kept"));
            byte[] before = read(s.device("l"));
            assertThatThrownBy(() -> s.reload("lw", "0 2048 log-writes d l\n2048 8 linear z 2044")) // opens, then fails
                    .hasMessageContaining("reload lw:2").hasMessageContaining("beyond the end of z");
            assertThat(read(s.device("l"))).as("the log after a failed reload").isEqualTo(before);
            s.reload("lw", "log-writes z l");
            s.control(List.of("clear", "lw"));
            assertThat(read(s.device("l"))).as("the log after a cleared reload").isEqualTo(before);
            assertThat(superEntries(s.device("l"))).isEqualTo(2);
        }
    }

    static byte[] read(BlockDevice d) throws Exception {
        MemorySegment m = Arena.ofAuto().allocate(d.size(), 4096);
        d.read(0, m).get(5, TimeUnit.SECONDS);
        return bytes(m);
    }
}
