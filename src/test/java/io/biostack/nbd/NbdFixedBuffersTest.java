package io.biostack.nbd;

import io.biostack.TestEnv;
import io.biostack.file.EngineKind;
import io.biostack.loop.DirectIoMode;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.uring.IoUring;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Issue 9's registered buffers: on the io_uring reactors with the io_uring file engine and
 * O_DIRECT, WRITE payloads go to the file from the registered buffer they were received into and
 * READs are read into a registered buffer that is then sent (READ_FIXED/WRITE_FIXED on the
 * reactor's ring); the bytes on disk are the client's. On the java.nio reactors (the build's
 * second run) and with the thread file engine nothing is registered or fixed, and the same bytes
 * land.
 */
class NbdFixedBuffersTest {
    private static final int FILE = 8 << 20;

    @TempDir
    Path dir;

    private static boolean uringReactors() {
        return !"threads".equals(System.getProperty("biostack.engine"));
    }

    /** WRITEs of several sizes, READs of them back, and the file's bytes; the file I/Os done. */
    private static int writeAndReadBack(RawNbdClient c, Path file) throws Exception {
        Random rnd = new Random(42);
        int ios = 0;
        int[] sizes = {4096, 65536, 1 << 20, 12288};
        for (int k = 0; k < 24; k++) {
            int n = sizes[k % sizes.length];
            long pos = (long) rnd.nextInt((FILE - n) / 4096) * 4096;
            byte[] data = new byte[n];
            rnd.nextBytes(data);
            assertThat(c.writeAndWait(pos, data)).isZero();
            assertThat(c.read(pos, n)).isEqualTo(data);
            assertThat(fileBytes(file, pos, n)).isEqualTo(data);
            ios += 2;
        }
        return ios;
    }

    private static byte[] fileBytes(Path p, long pos, int n) throws Exception {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            ByteBuffer bb = ByteBuffer.allocate(n);
            while (bb.hasRemaining() && ch.read(bb, pos + bb.position()) > 0) {
            }
            return bb.array();
        }
    }

    @Test
    void writesAndReadsGoToTheFileFromRegisteredBuffers() throws Exception {
        Path img = dir.resolve("d.img");
        Path sock = dir.resolve("fixed.sock");
        boolean uring = uringReactors() && IoUring.isAvailable();
        LoopConfig cfg = LoopConfig.defaults().withCreateSize(FILE).withDirectIo(DirectIoMode.ON)
                .withEngine(uring ? EngineKind.URING : EngineKind.THREADS);
        try (LoopDevice loop = LoopDevice.open(img, cfg);
             NbdServer server = NbdServer.builder().export("disk", loop).unixSocket(sock).threads(2).start();
             RawNbdClient c = RawNbdClient.open(sock, "disk", false, false)) {
            assertThat(loop.isDirectIo()).isTrue();
            int ios = writeAndReadBack(c, img);
            if (!uring) {
                assertThat(server.fixedIos()).isZero();
                assertThat(server.reactorsWithRegisteredBuffers()).isZero();
                return;
            }
            TestEnv.require(server.reactorsWithRegisteredBuffers() > 0, "a sparse fixed-buffer table (5.19)");
            // Every WRITE and READ went down fixed (a 1 MiB one may be split: at least one each).
            assertThat(server.fixedIos()).isGreaterThanOrEqualTo(ios);
        }
    }

    @Test
    void withTheThreadFileEngineNothingGoesDownFixedAndTheBytesLand() throws Exception {
        Path img = dir.resolve("t.img");
        Path sock = dir.resolve("threads.sock");
        LoopConfig cfg = LoopConfig.defaults().withCreateSize(FILE).withDirectIo(DirectIoMode.ON)
                .withEngine(EngineKind.THREADS);
        try (LoopDevice loop = LoopDevice.open(img, cfg);
             NbdServer server = NbdServer.builder().export("disk", loop).unixSocket(sock).threads(1).start();
             RawNbdClient c = RawNbdClient.open(sock, "disk", false, false)) {
            writeAndReadBack(c, img);
            assertThat(server.fixedIos()).isZero();
        }
    }
}
