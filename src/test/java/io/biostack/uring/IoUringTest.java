package io.biostack.uring;

import io.biostack.TestEnv;

import static io.biostack.uring.IoUringConstants.*;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.biostack.sys.Errno;
import io.biostack.sys.ErrnoException;
import io.biostack.sys.Falloc;
import io.biostack.sys.Fcntl;
import io.biostack.sys.Iovec;
import io.biostack.sys.Libc;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class IoUringTest {
    @TempDir
    Path dir;

    private IoUring ring;
    private Arena arena;
    private final List<Integer> fds = new ArrayList<>();

    /** Completions collected by {@link #collect}: user_data, res, flags in parallel lists. */
    private final List<Long> userData = new ArrayList<>();
    private final List<Integer> results = new ArrayList<>();
    private final CqeHandler collect = (ud, res, flags) -> {
        userData.add(ud);
        results.add(res);
    };

    @BeforeAll
    static void requireIoUring() {
        TestEnv.require(IoUring.isAvailable(), "io_uring (" + IoUring.unavailableReason().orElse("?") + ")");
    }

    @BeforeEach
    void openRing() throws ErrnoException {
        ring = IoUring.open(32, 0, IoUring.RECOMMENDED_SETUP_FLAGS);
        arena = Arena.ofConfined();
    }

    @AfterEach
    void closeAll() {
        ring.close();
        fds.forEach(Libc::close);
        arena.close();
    }

    private int open(Path p, int flags) {
        int fd = Libc.open(p.toString(), flags | Fcntl.O_CLOEXEC, 0644);
        assertThat(fd).as("open %s: %s", p, Errno.name(fd)).isGreaterThanOrEqualTo(0);
        fds.add(fd);
        return fd;
    }

    /** Submits what is prepared and reaps until {@code n} completions have been collected. */
    private void awaitCompletions(IoUring r, int n) {
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (userData.size() < n) {
            assertThat(System.nanoTime()).as("completions in time").isLessThan(deadline);
            int s = r.submitAndWait(1, 100_000_000L);
            assertThat(s == -Errno.ETIME || s >= 0).as("submit: %s", Errno.name(s)).isTrue();
            r.reap(collect);
        }
    }

    private static void fillPattern(MemorySegment m, int seed) {
        for (long i = 0; i < m.byteSize(); i++) {
            m.set(JAVA_BYTE, i, (byte) (i * 31 + seed));
        }
    }

    @Test
    void opensOnThisKernelWithTheRecommendedFlagsInForce() {
        assertThat(ring.sqEntries()).isEqualTo(32);
        assertThat(ring.cqEntries()).isEqualTo(64);
        assertThat(ring.hasFeature(IORING_FEAT_SINGLE_MMAP | IORING_FEAT_NODROP
                | IORING_FEAT_SUBMIT_STABLE | IORING_FEAT_EXT_ARG)).isTrue();
        // Linux 6.6+ accepts every flag we ask for; older kernels get fewer (see open()).
        assertThat(ring.setupFlags()).isEqualTo(IoUring.RECOMMENDED_SETUP_FLAGS);
        assertThat(ring.toString()).contains("SINGLE_ISSUER", "DEFER_TASKRUN", "NO_SQARRAY");
    }

    @Test
    void opensWithoutOptionalFlagsAndWithExplicitCqSize() throws ErrnoException {
        try (IoUring plain = IoUring.open(5, 64, 0)) {
            assertThat(plain.sqEntries()).as("rounded up to a power of two").isEqualTo(8);
            assertThat(plain.cqEntries()).isEqualTo(64);
            assertThat(plain.setupFlags()).isEqualTo(IORING_SETUP_CQSIZE);
            assertThat(plain.prepNop(7)).isTrue();
            assertThat(plain.submitAndWait(1)).isEqualTo(1);
            assertThat(plain.reap(collect)).isEqualTo(1);
            assertThat(userData).containsExactly(7L);
        }
    }

    @Test
    void refusesFlagsItCannotDriveAndDeferTaskrunWithoutSingleIssuer() {
        assertThatThrownBy(() -> IoUring.open(8, 0, IORING_SETUP_SQPOLL))
                .isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> IoUring.open(8, 0, IORING_SETUP_DEFER_TASKRUN))
                .isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> IoUring.open(0, 0, 0))
                .isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void setupErrorOtherThanEinvalIsReportedWithItsErrno() {
        // CQ smaller than SQ is EINVAL even without any optional flag.
        assertThatThrownBy(() -> IoUring.open(64, 8, 0))
                .isInstanceOf(ErrnoException.class)
                .satisfies(e -> assertThat(((ErrnoException) e).errno()).isEqualTo(Errno.EINVAL));
    }

    @Test
    void nopRoundTripReturnsItsUserData() {
        assertThat(ring.prepNop(0xdead_beef_cafeL)).isTrue();
        assertThat(ring.sqReady()).isEqualTo(1);
        assertThat(ring.submitAndWait(1)).isEqualTo(1);
        assertThat(ring.reap(collect)).isEqualTo(1);
        assertThat(userData).containsExactly(0xdead_beef_cafeL);
        assertThat(results).containsExactly(0);
        assertThat(ring.reap(collect)).isZero();
    }

    @Test
    void registeredRingFdDrivesEveryKindOfEnterOnItsThreadAndOthersFallBackToTheFd()
            throws Exception {
        int r = ring.registerRingFd();
        TestEnv.require(r != -Errno.EINVAL, "IORING_REGISTER_RING_FDS (Linux 5.18)");
        assertThat(r).as("register ring fd: %s", Errno.name(r)).isZero();
        assertThat(ring.ringFdRegistered()).isTrue();
        assertThat(ring.registerRingFd()).as("idempotent").isZero();
        // submit, submitAndWait, timed wait and getEvents all go through the registered index.
        assertThat(ring.prepNop(1)).isTrue();
        assertThat(ring.submit()).isEqualTo(1);
        assertThat(ring.prepNop(2)).isTrue();
        assertThat(ring.submitAndWait(2)).isEqualTo(1);
        assertThat(ring.getEvents()).isZero();
        assertThat(ring.reap(collect)).isEqualTo(2);
        assertThat(ring.submitAndWait(1, 1_000_000L)).isEqualTo(-Errno.ETIME);
        assertThat(userData).containsExactly(1L, 2L);
        // Another thread may not use this thread's registration: it reports false, and (without
        // SINGLE_ISSUER) its enters use the plain fd.
        boolean[] elsewhere = new boolean[1];
        Thread t = Thread.ofPlatform().start(() -> elsewhere[0] = ring.ringFdRegistered());
        t.join();
        assertThat(elsewhere[0]).isFalse();
        try (IoUring plain = IoUring.open(4, 0, 0)) {
            assertThat(plain.registerRingFd()).isZero();
            int[] got = new int[2];
            Thread u = Thread.ofPlatform().start(() -> {
                got[0] = plain.prepNop(9) ? 1 : 0;
                got[1] = plain.submitAndWait(1);
            });
            u.join();
            assertThat(got).containsExactly(1, 1);
            assertThat(plain.reap(collect)).isEqualTo(1);
        }
        assertThat(userData).containsExactly(1L, 2L, 9L);
    }

    @Test
    void manyNopsBatchedInOneSubmitEachCompleteExactlyOnce() {
        for (int i = 0; i < 32; i++) {
            assertThat(ring.prepNop(1000 + i)).isTrue();
        }
        assertThat(ring.sqSpace()).isZero();
        assertThat(ring.submitAndWait(32)).isEqualTo(32);
        assertThat(ring.reap(collect)).isEqualTo(32);
        assertThat(userData).hasSize(32).doesNotHaveDuplicates();
        assertThat(userData).allMatch(ud -> ud >= 1000 && ud < 1032);
        assertThat(results).containsOnly(0);
    }

    @Test
    void prepReturnsFalseWhenSqIsFullAndWorksAgainAfterSubmit() {
        int prepared = 0;
        while (ring.prepNop(prepared)) {
            prepared++;
        }
        assertThat(prepared).isEqualTo(ring.sqEntries());
        assertThat(ring.sqSpace()).isZero();
        assertThat(ring.prepRead(0, 0, 0, 0, 0)).isFalse();

        assertThat(ring.submit()).isEqualTo(prepared);
        assertThat(ring.sqSpace()).isEqualTo(ring.sqEntries());
        assertThat(ring.prepNop(99)).isTrue();
        awaitCompletions(ring, prepared + 1);
        assertThat(userData).hasSize(prepared + 1).doesNotHaveDuplicates().contains(99L);
    }

    @Test
    void reapAloneCollectsAsyncCompletionsOnDeferTaskrunRings() throws Exception {
        int recommended = IoUring.RECOMMENDED_SETUP_FLAGS;
        int noTaskrunFlag = recommended & ~IORING_SETUP_TASKRUN_FLAG;
        Path p = dir.resolve("deferred");
        Files.write(p, new byte[256 * 1024]);
        int fd = open(p, Fcntl.O_RDONLY | Fcntl.O_DIRECT);
        MemorySegment buf = arena.allocate(256 * 1024, 4096);
        for (int flags : new int[] {recommended, noTaskrunFlag}) {
            userData.clear();
            results.clear();
            try (IoUring r = IoUring.open(8, 0, flags)) {
                assertThat(r.prepRead(fd, buf.address(), 256 * 1024, 0, 1)).isTrue();
                assertThat(r.submit()).isEqualTo(1);
                long deadline = System.nanoTime() + 5_000_000_000L;
                while (r.reap(collect) == 0) {
                    assertThat(System.nanoTime()).as(SetupFlagNames.describe(flags))
                            .isLessThan(deadline);
                    Thread.sleep(1);
                }
                assertThat(results).containsExactly(256 * 1024);
            }
        }
    }

    @Test
    void submitWithNothingPreparedIsZeroWithoutASyscall() {
        assertThat(ring.submit()).isZero();
        assertThat(ring.sqReady()).isZero();
    }

    @Test
    void moreCompletionsThanTheCqHoldsAreNeverLost() throws ErrnoException {
        try (IoUring small = IoUring.open(8, 16, IoUring.RECOMMENDED_SETUP_FLAGS)) {
            int total = 2000;
            int next = 0;
            int[] seen = new int[total];
            AtomicInteger reaped = new AtomicInteger();
            CqeHandler count = (ud, res, flags) -> {
                seen[(int) ud]++;
                reaped.incrementAndGet();
            };
            int round = 0;
            while (reaped.get() < total) {
                while (next < total && small.prepNop(next)) {
                    next++;
                }
                int s = small.submit();
                assertThat(s >= 0 || s == -Errno.EBUSY || s == -Errno.EAGAIN)
                        .as("submit: %s", Errno.name(s)).isTrue();
                // Reap only every fourth round, so that far more than 16 CQEs are outstanding
                // and the kernel has to hold the rest in its overflow list.
                if (++round % 4 == 0 || next == total) {
                    small.reap(count);
                }
            }
            assertThat(seen).containsOnly(1);
            assertThat(small.cqOverflow()).as("NODROP: nothing dropped").isZero();
            assertThat(small.sqDropped()).isZero();
        }
    }

    @Test
    void writevThroughODirectAtAnOffsetIsReadBackByFileChannel() throws IOException {
        Path p = dir.resolve("dio-write");
        int fd = open(p, Fcntl.O_RDWR | Fcntl.O_CREAT | Fcntl.O_DIRECT);
        MemorySegment a = arena.allocate(4096, 4096);
        MemorySegment b = arena.allocate(8192, 4096);
        fillPattern(a, 1);
        fillPattern(b, 2);
        MemorySegment iov = Iovec.allocate(arena, 2);
        Iovec.set(iov, 0, a);
        Iovec.set(iov, 1, b);
        long off = 3 * 4096;

        assertThat(ring.prepWritev(fd, iov.address(), 2, off, 0, 42)).isTrue();
        awaitCompletions(ring, 1);
        assertThat(userData).containsExactly(42L);
        assertThat(results).containsExactly(4096 + 8192);

        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            assertThat(ch.size()).isEqualTo(off + 4096 + 8192);
            ByteBuffer back = ByteBuffer.allocate(4096 + 8192);
            assertThat(ch.read(back, off)).isEqualTo(back.capacity());
            back.flip();
            assertThat(MemorySegment.ofBuffer(back.slice(0, 4096)).mismatch(a)).isEqualTo(-1);
            assertThat(MemorySegment.ofBuffer(back.slice(4096, 8192)).mismatch(b)).isEqualTo(-1);
            ByteBuffer head = ByteBuffer.allocate((int) off);
            ch.read(head, 0);
            assertThat(head.array()).containsOnly(0);
        }
    }

    @Test
    void readFixedIntoARegisteredBufferSeesWhatFileChannelWrote() throws IOException {
        Path p = dir.resolve("fixed-read");
        byte[] data = new byte[16384];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i ^ (i >> 8));
        }
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.CREATE,
                StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap(data), 8192);
        }
        int fd = open(p, Fcntl.O_RDONLY | Fcntl.O_DIRECT);
        MemorySegment buf = arena.allocate(4 * 4096, 4096);
        MemorySegment iov = Iovec.allocate(arena, 1);
        Iovec.set(iov, 0, buf);
        assertThat(ring.registerBuffers(iov, 1)).isZero();
        assertThat(ring.registerBuffers(iov, 1)).as("already registered")
                .isEqualTo(-Errno.EBUSY);

        // Read file bytes [8192 + 4096, + 8192) into the second and third page of the buffer.
        assertThat(ring.prepReadFixed(fd, buf.address() + 4096, 8192, 8192 + 4096, 0, 0, 5))
                .isTrue();
        awaitCompletions(ring, 1);
        assertThat(results).containsExactly(8192);
        assertThat(buf.asSlice(4096, 8192).mismatch(
                MemorySegment.ofArray(data).asSlice(4096, 8192))).isEqualTo(-1);
        assertThat(buf.asSlice(0, 4096).toArray(JAVA_BYTE)).containsOnly(0);

        assertThat(ring.unregisterBuffers()).isZero();
        assertThat(ring.unregisterBuffers()).isEqualTo(-Errno.ENXIO);
    }

    @Test
    void writeFixedAndReadThroughRegisteredFilesRoundTrip() throws IOException {
        Path p = dir.resolve("fixed-file");
        int fd = open(p, Fcntl.O_RDWR | Fcntl.O_CREAT | Fcntl.O_DIRECT);
        MemorySegment buf = arena.allocate(8192, 4096);
        fillPattern(buf.asSlice(0, 4096), 9);
        MemorySegment iov = Iovec.allocate(arena, 1);
        Iovec.set(iov, 0, buf);
        assertThat(ring.registerBuffers(iov, 1)).isZero();
        assertThat(ring.registerFiles(new int[] {fd})).isZero();

        assertThat(ring.prepRw(IORING_OP_WRITE_FIXED, 0, buf.address(), 4096, 0, 0, 1,
                IOSQE_FIXED_FILE | IOSQE_IO_LINK, 0)).isTrue();
        assertThat(ring.prepRw(IORING_OP_READ, 0, buf.address() + 4096, 4096, 0, 0, 2,
                IOSQE_FIXED_FILE, 0)).isTrue();
        awaitCompletions(ring, 2);
        assertThat(userData).containsExactly(1L, 2L);
        assertThat(results).containsExactly(4096, 4096);
        assertThat(buf.asSlice(4096).mismatch(buf.asSlice(0, 4096))).isEqualTo(-1);
        assertThat(Files.size(p)).isEqualTo(4096);
        assertThat(ring.unregisterFiles()).isZero();
    }

    @Test
    void readAndWriteOfOneBufferRoundTrip() {
        int fd = open(dir.resolve("rw"), Fcntl.O_RDWR | Fcntl.O_CREAT);
        MemorySegment out = arena.allocate(1000);
        fillPattern(out, 3);
        MemorySegment in = arena.allocate(1000);
        assertThat(ring.prepWrite(fd, out.address(), 1000, 77, 1)).isTrue();
        awaitCompletions(ring, 1);
        assertThat(ring.prepRead(fd, in.address(), 1000, 77, 2)).isTrue();
        awaitCompletions(ring, 2);
        assertThat(results).containsExactly(1000, 1000);
        assertThat(in.mismatch(out)).isEqualTo(-1);
    }

    @Test
    void fsyncWithDatasyncCompletesWithZero() {
        int fd = open(dir.resolve("sync"), Fcntl.O_RDWR | Fcntl.O_CREAT);
        MemorySegment out = arena.allocate(512);
        assertThat(ring.prepWrite(fd, out.address(), 512, 0, 1)).isTrue();
        awaitCompletions(ring, 1);
        assertThat(ring.prepFsync(fd, IORING_FSYNC_DATASYNC, 2)).isTrue();
        assertThat(ring.prepFsync(fd, 0, 3)).isTrue();
        awaitCompletions(ring, 3);
        assertThat(results).containsExactly(512, 0, 0);
    }

    @Test
    void fallocatePunchHoleKeepSizeLeavesZerosAndKeepsTheSize() throws IOException {
        Path p = dir.resolve("punch");
        byte[] ones = new byte[64 * 1024];
        java.util.Arrays.fill(ones, (byte) 0x5a);
        Files.write(p, ones);
        int fd = open(p, Fcntl.O_RDWR);

        assertThat(ring.prepFallocate(fd,
                Falloc.FALLOC_FL_PUNCH_HOLE | Falloc.FALLOC_FL_KEEP_SIZE, 8192, 16384, 1))
                .isTrue();
        awaitCompletions(ring, 1);
        assertThat(results).containsExactly(0);

        byte[] back = Files.readAllBytes(p);
        assertThat(back).hasSize(64 * 1024);
        for (int i = 0; i < back.length; i++) {
            byte want = i >= 8192 && i < 8192 + 16384 ? 0 : (byte) 0x5a;
            if (back[i] != want) {
                throw new AssertionError("byte " + i + " is " + back[i]);
            }
        }
    }

    @Test
    void fallocateModeZeroExtendsTheFile() throws IOException {
        Path p = dir.resolve("alloc");
        int fd = open(p, Fcntl.O_RDWR | Fcntl.O_CREAT);
        assertThat(ring.prepFallocate(fd, Falloc.FALLOC_FL_ALLOCATE_RANGE, 0, 1 << 20, 1))
                .isTrue();
        awaitCompletions(ring, 1);
        assertThat(results).containsExactly(0);
        assertThat(Files.size(p)).isEqualTo(1 << 20);
    }

    @Test
    void badFdCompletesWithMinusEbadfInTheCqe() {
        MemorySegment buf = arena.allocate(64);
        assertThat(ring.prepRead(9999, buf.address(), 64, 0, 11)).isTrue();
        assertThat(ring.prepFsync(9999, 0, 12)).isTrue();
        awaitCompletions(ring, 2);
        assertThat(userData).containsExactly(11L, 12L);
        assertThat(results).containsExactly(-Errno.EBADF, -Errno.EBADF);
    }

    @Test
    void pollAddOnEventfdCompletesWhenItBecomesReadable() {
        int efd = Libc.eventfd(0, io.biostack.sys.EventFd.EFD_CLOEXEC);
        fds.add(efd);
        assertThat(ring.prepPollAdd(efd, POLLIN, 8)).isTrue();
        assertThat(ring.submit()).isEqualTo(1);
        assertThat(ring.submitAndWait(1, 20_000_000L)).isEqualTo(-Errno.ETIME);
        MemorySegment one = arena.allocate(8).fill((byte) 0);
        one.set(java.lang.foreign.ValueLayout.JAVA_LONG, 0, 1L);
        assertThat(Libc.write(efd, one.address(), 8)).isEqualTo(8);
        awaitCompletions(ring, 1);
        assertThat(userData).containsExactly(8L);
        assertThat(results.get(0) & POLLIN).isEqualTo(POLLIN);
    }

    @Test
    void timedWaitOnAnIdleRingReturnsMinusEtime() {
        long t0 = System.nanoTime();
        assertThat(ring.submitAndWait(1, 10_000_000L)).isEqualTo(-Errno.ETIME);
        assertThat(System.nanoTime() - t0).isGreaterThanOrEqualTo(9_000_000L);
    }

    @Test
    void probeReportsTheFileOpcodesAsSupported() throws ErrnoException {
        Probe probe = ring.probe();
        assertThat(probe.lastOp()).isGreaterThanOrEqualTo(IORING_OP_PIPE);
        for (int op : new int[] {IORING_OP_NOP, IORING_OP_READV, IORING_OP_WRITEV,
            IORING_OP_FSYNC, IORING_OP_READ_FIXED, IORING_OP_WRITE_FIXED,
            IORING_OP_FALLOCATE, IORING_OP_READ, IORING_OP_WRITE, IORING_OP_SEND,
            IORING_OP_RECV, IORING_OP_ACCEPT}) {
            assertThat(probe.supports(op)).as(opName(op)).isTrue();
        }
        assertThat(probe.supports(250)).isFalse();
        assertThat(probe.supports(-1)).isFalse();
    }

    @Test
    void singleIssuerRingRefusesSubmissionFromAnotherThread() throws Exception {
        TestEnv.require(ring.hasSetupFlags(IORING_SETUP_SINGLE_ISSUER), "IORING_SETUP_SINGLE_ISSUER (Linux 6.0)");
        int[] r = new int[1];
        ring.prepNop(1);
        Thread t = Thread.ofPlatform().start(() -> r[0] = ring.submit());
        t.join();
        assertThat(r[0]).isEqualTo(-Errno.EEXIST);
        awaitCompletions(ring, 1);
        assertThat(userData).containsExactly(1L);
    }

    @Test
    void aHandlerThatThrowsConsumesOnlyWhatItWasGiven() {
        for (int i = 0; i < 3; i++) {
            ring.prepNop(i);
        }
        assertThat(ring.submitAndWait(3)).isEqualTo(3);
        assertThatThrownBy(() -> ring.reap((ud, res, fl) -> {
            if (ud == 1) {
                throw new IllegalStateException("boom");
            }
        })).hasMessage("boom");
        assertThat(ring.reap(collect)).isEqualTo(1);
        assertThat(userData).containsExactly(2L);
    }

    @Test
    void reapFromInsideAHandlerIsRefused() {
        ring.prepNop(1);
        ring.submitAndWait(1);
        assertThatThrownBy(() -> ring.reap((ud, res, fl) -> ring.reap(collect)))
                .isInstanceOf(IllegalStateException.class);
    }

    @Test
    void closeIsIdempotentAndUseAfterCloseThrows() {
        ring.close();
        ring.close();
        assertThat(ring.isClosed()).isTrue();
        assertThatThrownBy(() -> ring.prepNop(1)).isInstanceOf(IllegalStateException.class);
        assertThatThrownBy(ring::submit).isInstanceOf(IllegalStateException.class);
        assertThatThrownBy(() -> ring.reap(collect)).isInstanceOf(IllegalStateException.class);
        assertThat(ring.toString()).contains("closed");
    }

    @Test
    void availabilityIsProbedOnceAndExplainsErrnos() {
        assertThat(IoUring.unavailableReason()).isEmpty();
        assertThat(IoUring.explainSetupFailure(Errno.ENOSYS)).contains("ENOSYS");
        assertThat(IoUring.explainSetupFailure(Errno.EPERM)).containsAnyOf("seccomp",
                "io_uring_disabled");
    }
}
