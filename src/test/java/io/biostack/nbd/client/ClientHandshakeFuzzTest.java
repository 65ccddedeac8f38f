package io.biostack.nbd.client;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.biostack.TestData;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.SocketTimeoutException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static io.biostack.nbd.proto.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

/**
 * A coverage-guided fuzz target over the NBD leaf's side of the handshake
 * ({@link ClientHandshake}): what a server, or whoever sits between it and us without TLS, sends
 * before transmission. Every input is the server's whole byte stream, written to a real unix
 * socket that is then shut for writing.
 *
 * <p>What must hold for every input: the negotiation ends in an export or an
 * {@link IOException} (a refusal, a protocol error, the end of the stream), never another
 * exception, and never a timeout (the stream's end is there to be seen); and an export it accepts
 * has a size, block sizes that {@link NbdClient#limitsOf} turns into queue limits without
 * complaint, and a minimum block that is a power of two up to 64 KiB.
 *
 * <p>With Jazzer ({@code scripts/fuzz.sh nbd-client}) it fuzzes from seeds made by {@link #seeds()}
 * (kept under {@code src/test/resources/io/biostack/nbd/client/ClientHandshakeFuzzTestInputs});
 * the suite runs the seeds and blind mutations of them.
 */
class ClientHandshakeFuzzTest {
    private static final Path SEED_DIR = Path.of("src/test/resources/io/biostack/nbd/client/ClientHandshakeFuzzTestInputs/"
            + "everyServerStreamEndsInAnExportOrAnIoError");
    /** Larger inputs could fill the socket's buffer before the client reads. */
    private static final int MAX_INPUT = 64 << 10;

    @TempDir
    static Path dir;
    private static ServerSocketChannel listen;
    private static UnixDomainSocketAddress address;

    @Tag("jazzer") // not in the suite: see jazzer.excluded in the pom
    @FuzzTest(maxDuration = "30s")
    @EnabledIfEnvironmentVariable(named = "JAZZER_FUZZ", matches = ".+")
    void everyServerStreamEndsInAnExportOrAnIoError(byte[] stream) throws Exception {
        target(stream);
    }

    /** The suite's brief run: every seed, then 2000 blind mutations of them. */
    @Test
    void mutatedServerStreamsEndInAnExportOrAnIoError() throws Exception {
        List<byte[]> seeds = seeds();
        assertThat(target(seeds.get(0))).as("a well-behaved server's export").isNotNull();
        assertThat(target(seeds.get(0)).structured()).isTrue();
        assertThat(target(seeds.get(1))).as("an export without structured replies").isNotNull();
        assertThat(target(seeds.get(2))).as("an unknown export").isNull();
        Random rnd = new Random(16);
        for (int i = 0; i < 2000; i++) {
            byte[] m = seeds.get(rnd.nextInt(seeds.size())).clone();
            for (int k = 1 + rnd.nextInt(3); k > 0; k--) {
                int at = rnd.nextInt(m.length);
                switch (rnd.nextInt(3)) {
                    case 0 -> m[at] ^= (byte) (1 << rnd.nextInt(8));
                    case 1 -> m[at] = (byte) (rnd.nextBoolean() ? 0xff : 0);
                    default -> m = java.util.Arrays.copyOf(m, at);
                }
                if (m.length == 0) {
                    break;
                }
            }
            target(m);
        }
    }

    /** The seeds Jazzer starts from are these very streams. */
    @Test
    void seedFilesMatchTheSeeds() throws Exception {
        TestData.seedFilesMatch(SEED_DIR, seeds());
    }

    @AfterAll
    static synchronized void stop() throws IOException {
        if (listen != null) {
            listen.close();
            listen = null;
        }
    }

    /** The export the leaf accepted, or null when it ended in an IOException. */
    static ClientHandshake.ExportInfo target(byte[] stream) throws Exception {
        if (stream.length > MAX_INPUT) {
            return null;
        }
        synchronized (ClientHandshakeFuzzTest.class) {
            // On first use, not in a @BeforeAll: see NbdHandshakeFuzzTest on Jazzer's start.
            if (listen == null) {
                address = UnixDomainSocketAddress.of(dir.resolve("server.sock"));
                listen = ServerSocketChannel.open(StandardProtocolFamily.UNIX).bind(address);
            }
        }
        try (SocketChannel client = SocketChannel.open(address); SocketChannel server = listen.accept()) {
            server.write(ByteBuffer.wrap(stream));
            server.shutdownOutput();
            client.configureBlocking(false);
            Transport t = new Transport(client);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            ClientHandshake.ExportInfo info;
            try {
                info = ClientHandshake.negotiate(t, "disk", deadline, null).info();
            } catch (SocketTimeoutException e) {
                throw new AssertionError("the negotiation waited for bytes after the stream's end", e);
            } catch (IOException e) {
                return null;
            }
            assertThat(info.size()).as("export size").isNotNegative();
            assertThat(Integer.bitCount(info.minBlock())).as("minimum block %d", info.minBlock()).isEqualTo(1);
            assertThat(info.minBlock()).isLessThanOrEqualTo(64 << 10);
            assertThat(info.maxBlock()).isGreaterThanOrEqualTo(info.minBlock());
            try {
                NbdClient.limitsOf(info);
            } catch (RuntimeException e) {
                fail("queue limits from an accepted export " + info, e);
            }
            return info;
        }
    }

    static List<byte[]> seeds() {
        List<byte[]> seeds = new ArrayList<>();
        // A server that does everything: structured replies, base:allocation, GO with sizes.
        seeds.add(concat(greeting(),
                reply(OPT_STRUCTURED_REPLY, REP_ACK, new byte[0]),
                reply(OPT_SET_META_CONTEXT, REP_META_CONTEXT, metaContext(1, BASE_ALLOCATION)),
                reply(OPT_SET_META_CONTEXT, REP_ACK, new byte[0]),
                reply(OPT_GO, REP_INFO, exportInfo(1 << 20, FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_TRIM)),
                reply(OPT_GO, REP_INFO, blockSizes(512, 4096, 32 << 20)),
                reply(OPT_GO, REP_ACK, new byte[0])));
        // One without structured replies or block sizes.
        seeds.add(concat(greeting(),
                reply(OPT_STRUCTURED_REPLY, REP_ERR_UNSUP, new byte[0]),
                reply(OPT_GO, REP_INFO, exportInfo(8 << 20, FLAG_HAS_FLAGS | FLAG_READ_ONLY)),
                reply(OPT_GO, REP_ACK, new byte[0])));
        // One that has no such export, and says why.
        seeds.add(concat(greeting(),
                reply(OPT_STRUCTURED_REPLY, REP_ACK, new byte[0]),
                reply(OPT_SET_META_CONTEXT, REP_ACK, new byte[0]),
                reply(OPT_GO, REP_ERR_UNKNOWN, "no disk here".getBytes(StandardCharsets.UTF_8))));
        return seeds;
    }

    private static byte[] greeting() {
        return ByteBuffer.allocate(18).putLong(NBDMAGIC).putLong(IHAVEOPT)
                .putShort((short) (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)).array();
    }

    private static byte[] reply(int option, int type, byte[] data) {
        return ByteBuffer.allocate(20 + data.length).putLong(OPT_REPLY_MAGIC).putInt(option).putInt(type)
                .putInt(data.length).put(data).array();
    }

    private static byte[] metaContext(int id, String name) {
        byte[] n = name.getBytes(StandardCharsets.US_ASCII);
        return ByteBuffer.allocate(4 + n.length).putInt(id).put(n).array();
    }

    private static byte[] exportInfo(long size, int flags) {
        return ByteBuffer.allocate(12).putShort((short) INFO_EXPORT).putLong(size).putShort((short) flags).array();
    }

    private static byte[] blockSizes(int min, int pref, int max) {
        return ByteBuffer.allocate(14).putShort((short) INFO_BLOCK_SIZE).putInt(min).putInt(pref).putInt(max).array();
    }

    private static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        ByteBuffer b = ByteBuffer.allocate(n);
        for (byte[] p : parts) {
            b.put(p);
        }
        return b.array();
    }
}
