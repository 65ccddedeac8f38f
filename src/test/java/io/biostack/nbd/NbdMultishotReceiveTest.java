package io.biostack.nbd;

import io.biostack.file.EngineKind;
import io.biostack.loop.DirectIoMode;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static io.biostack.nbd.proto.NbdProtocol.CMD_READ;
import static io.biostack.nbd.proto.NbdProtocol.CMD_WRITE;
import static io.biostack.nbd.proto.NbdProtocol.REPLY_TYPE_OFFSET_DATA;
import static io.biostack.nbd.proto.NbdProtocol.REQUEST_MAGIC;
import static io.biostack.nbd.proto.NbdProtocol.REQUEST_SIZE;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Issue 9's receive path on the io_uring reactors: with provided buffers, multishot RECV; without
 * (or when the kernel lacks them), single-shot RECV. Either way a client that pipelines a burst of
 * WRITEs (one of 1 MiB, whose payload is received straight into its own buffer after the multishot
 * is cancelled) and READs past the connection's budget gets every reply right and the file gets
 * every byte. On the java.nio reactors (the build's second run) the same bytes are checked.
 */
class NbdMultishotReceiveTest {
    private static final int FILE = 16 << 20;
    /** Where the burst writes (A) and what it reads, filled beforehand (B). */
    private static final long A = 0;
    private static final long B = 8 << 20;
    private static final int SMALL = 4096;
    private static final int SMALLS = 48;
    private static final int BIG = 1 << 20;

    @TempDir
    Path dir;

    private static boolean uringReactors() {
        return !"threads".equals(System.getProperty("biostack.engine"));
    }

    @ParameterizedTest(name = "{0} shared receive buffers")
    @ValueSource(ints = {128, 0, 1})
    void aPipelinedBurstBeyondTheBudgetIsAnsweredAndLandsWhicheverWayItIsReceived(int buffers) throws Exception {
        Path img = dir.resolve("d.img");
        Path sock = dir.resolve("r.sock");
        LoopConfig cfg = LoopConfig.defaults().withCreateSize(FILE).withDirectIo(DirectIoMode.ON)
                .withEngine(uringReactors() ? EngineKind.AUTO : EngineKind.THREADS);
        Random rnd = new Random(buffers);
        byte[] big = new byte[BIG];
        rnd.nextBytes(big);
        byte[][] smalls = new byte[SMALLS][SMALL];
        for (byte[] s : smalls) {
            rnd.nextBytes(s);
        }
        byte[] before = new byte[BIG + SMALLS * SMALL];
        rnd.nextBytes(before);
        try (LoopDevice loop = LoopDevice.open(img, cfg);
             NbdServer server = NbdServer.builder().export("disk", loop).unixSocket(sock).threads(1)
                     .sharedReceiveBuffers(buffers).maxRequestsPerConnection(16).start();
             RawNbdClient c = RawNbdClient.open(sock, "disk", true, false)) {
            if (uringReactors()) {
                assertThat(server.describeLoop()).contains(buffers == 0 ? "single-shot RECV" : "multishot RECV");
            }
            assertThat(c.writeAndWait(B, before)).isZero();

            // One burst, written while the replies are read (the server stops reading at its
            // budget of 16 requests, so a client that only wrote would never finish writing).
            ByteBuffer burst = ByteBuffer.allocate(BIG + SMALLS * SMALL + (2 * SMALLS + 2) * REQUEST_SIZE);
            Map<Long, Integer> readLength = new HashMap<>();
            header(burst, CMD_WRITE, 1, A, BIG).put(big);
            for (int i = 0; i < SMALLS; i++) {
                header(burst, CMD_WRITE, 100 + i, A + BIG + (long) i * SMALL, SMALL).put(smalls[i]);
                header(burst, CMD_READ, 200 + i, B + (long) i * SMALL, SMALL);
                readLength.put(200L + i, SMALL);
            }
            header(burst, CMD_READ, 2, B + SMALLS * SMALL, BIG);
            readLength.put(2L, BIG);
            burst.flip();
            CompletableFuture<Void> writer = CompletableFuture.runAsync(() -> {
                try {
                    c.write(burst);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            Map<Long, byte[]> reads = new HashMap<>();
            int done = 0;
            while (done < 2 * SMALLS + 2) {
                RawNbdClient.Reply r = c.reply(0);
                assertThat(r.errorCode()).as("reply to %d", r.cookie()).isZero();
                if (r.type() == REPLY_TYPE_OFFSET_DATA) {
                    ByteBuffer b = r.buf();
                    long off = b.getLong();
                    long base = r.cookie() == 2 ? B + SMALLS * SMALL : B + (r.cookie() - 200) * SMALL;
                    byte[] into = reads.computeIfAbsent(r.cookie(), k -> new byte[readLength.get(k)]);
                    b.get(into, (int) (off - base), b.remaining());
                }
                if (r.done()) {
                    done++;
                }
            }
            writer.get(10, TimeUnit.SECONDS);

            for (int i = 0; i < SMALLS; i++) {
                assertThat(reads.get(200L + i)).as("READ %d", i)
                        .isEqualTo(Arrays.copyOfRange(before, i * SMALL, (i + 1) * SMALL));
            }
            assertThat(reads.get(2L)).isEqualTo(Arrays.copyOfRange(before, SMALLS * SMALL, SMALLS * SMALL + BIG));
            assertThat(c.read(A, BIG)).isEqualTo(big);
            assertThat(fileBytes(img, A, BIG)).isEqualTo(big);
            for (int i = 0; i < SMALLS; i++) {
                assertThat(fileBytes(img, A + BIG + (long) i * SMALL, SMALL)).as("WRITE %d on disk", i).isEqualTo(smalls[i]);
            }

            long[] n = server.receiveCounts(); // armed, cancelled, starved
            if (!uringReactors() || buffers == 0) {
                assertThat(n).containsExactly(0, 0, 0);
            } else {
                assertThat(n[0]).as("multishot RECVs armed").isPositive();
                if (buffers == 1) {
                    // One 16 KiB buffer: the burst runs the ring dry, and single-shot RECVs go on.
                    assertThat(n[2]).as("multishot RECVs ended for want of a buffer").isPositive();
                } else {
                    assertThat(n[1]).as("multishot RECVs cancelled (budget, a 1 MiB payload)").isPositive();
                }
            }
        }
    }

    private static ByteBuffer header(ByteBuffer b, int type, long cookie, long offset, int length) {
        return b.putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) type).putLong(cookie).putLong(offset).putInt(length);
    }

    private static byte[] fileBytes(Path p, long pos, int n) throws Exception {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            ByteBuffer bb = ByteBuffer.allocate(n);
            while (bb.hasRemaining() && ch.read(bb, pos + bb.position()) > 0) {
            }
            return bb.array();
        }
    }
}
