package io.biostack.nbd;

import io.biostack.TestEnv;
import io.biostack.file.EngineKind;
import io.biostack.loop.DirectIoMode;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.uring.IoUring;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Random;
import java.util.Set;

import static io.biostack.nbd.proto.NbdProtocol.CMD_FLAG_FUA;
import static io.biostack.nbd.proto.NbdProtocol.CMD_FLUSH;
import static io.biostack.nbd.proto.NbdProtocol.CMD_WRITE;
import static io.biostack.nbd.proto.NbdProtocol.REQUEST_MAGIC;
import static io.biostack.nbd.proto.NbdProtocol.REQUEST_SIZE;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Batched submission of WRITEs on the NBD file path (issue 19): a client that pipelines many
 * WRITEs in one burst (the requests of one receive pass) has every one answered once, without
 * error, and every byte of the file is what the client wrote, on both reactor kinds. On the
 * io_uring reactors the writes went through the write plug of the reactor's file ring.
 */
class NbdWritePlugTest {
    private static final int FILE = 4 << 20;
    private static final int WRITES = 96;

    @TempDir
    Path dir;

    @Test
    @Timeout(60)
    void aBurstOfPipelinedWritesLandsByteForByte() throws Exception {
        boolean uring = !"threads".equals(System.getProperty("biostack.engine"));
        if (uring) {
            TestEnv.require(IoUring.isAvailable(), "io_uring");
        }
        Path img = dir.resolve("d.img");
        Path sock = dir.resolve("plug.sock");
        LoopConfig cfg = LoopConfig.defaults().withCreateSize(FILE).withDirectIo(DirectIoMode.ON)
                .withEngine(uring ? EngineKind.URING : EngineKind.THREADS);
        Random rnd = new Random(19);
        byte[] want = new byte[FILE];
        // Distinct blocks (two writes of one block in flight at once have no order); sizes of
        // 4 KiB to 16 KiB, some FUA.
        int blocks = FILE / 4096;
        int[] order = new int[blocks / 4];
        for (int i = 0; i < order.length; i++) {
            order[i] = i * 4;
        }
        for (int i = order.length - 1; i > 0; i--) {
            int j = rnd.nextInt(i + 1);
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        ByteBuffer burst = ByteBuffer.allocate(WRITES * (REQUEST_SIZE + 16384));
        for (int i = 0; i < WRITES; i++) {
            int n = 4096 * (1 + rnd.nextInt(4));
            long pos = (long) order[i] * 4096;
            byte[] data = new byte[n];
            rnd.nextBytes(data);
            System.arraycopy(data, 0, want, (int) pos, n);
            burst.putInt(REQUEST_MAGIC).putShort((short) (i % 7 == 0 ? CMD_FLAG_FUA : 0)).putShort((short) CMD_WRITE)
                    .putLong(1000 + i).putLong(pos).putInt(n).put(data);
        }
        burst.flip();
        try (LoopDevice loop = LoopDevice.open(img, cfg);
             NbdServer server = NbdServer.builder().export("disk", loop).unixSocket(sock).threads(2).start();
             RawNbdClient c = RawNbdClient.open(sock, "disk", false, false)) {
            long heldBefore = server.heldWrites();
            c.write(burst);
            Set<Long> answered = new HashSet<>();
            for (int i = 0; i < WRITES; i++) {
                RawNbdClient.Reply r = c.reply(0);
                assertThat(r.error()).as("reply to %d", r.cookie()).isZero();
                assertThat(answered.add(r.cookie())).as("answered once: %d", r.cookie()).isTrue();
            }
            assertThat(answered).hasSize(WRITES);
            assertThat(c.command(0, CMD_FLUSH, 0, 0)).isZero();
            byte[] got = Files.readAllBytes(img);
            assertThat(Arrays.mismatch(got, want)).as("first byte that differs").isEqualTo(-1);
            if (uring) {
                assertThat(server.heldWrites() - heldBefore).as("writes through the plug").isEqualTo(WRITES);
            } else {
                assertThat(server.heldWrites()).isZero();
            }
        }
    }
}
