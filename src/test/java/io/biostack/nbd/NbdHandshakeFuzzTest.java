package io.biostack.nbd;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.biostack.TestData;
import io.biostack.block.RamDisk;
import io.biostack.nbd.tls.TlsMode;
import io.biostack.nbd.tls.X509Credentials;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static io.biostack.nbd.proto.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

/**
 * A coverage-guided fuzz target over the server's side of the NBD handshake ({@link Handshake}),
 * the first code that reads what any peer sends, before authentication. Every input is the byte
 * stream a client sends after the greeting, fed to a plain server and to one that requires TLS
 * (after an acknowledged STARTTLS the same stream goes on, as the TLS session's plaintext would).
 *
 * <p>What must hold for every input:
 * <ul>
 *   <li>{@link Handshake#feed} answers with more-input-needed, a session, or
 *       {@link Handshake.Disconnect}; never another exception;</li>
 *   <li>the server's output is a sequence of well-formed option replies (doc/proto.md, "Option
 *       reply types": magic, option, type, length, that many bytes), each answering the option
 *       the client sent at that point, with a known reply type, and, for NBD_OPT_EXPORT_NAME, the
 *       export's size and flags at the end;</li>
 *   <li>a session names an export of the server, and the bytes after the option that entered
 *       transmission are left unread;</li>
 *   <li>the stream given a byte at a time gives the same output and the same outcome as given
 *       whole: the state machine does not depend on how the socket cut the bytes.</li>
 * </ul>
 *
 * <p>With Jazzer ({@code scripts/fuzz.sh nbd}) it fuzzes from seeds made by {@link #seeds()}
 * (written under {@code src/test/resources/io/biostack/nbd/NbdHandshakeFuzzTestInputs} by
 * {@link #seedFilesMatchTheSeeds}); the suite runs the seeds and blind mutations of them.
 */
class NbdHandshakeFuzzTest {
    private static final Path SEED_DIR = Path.of("src/test/resources/io/biostack/nbd/NbdHandshakeFuzzTestInputs/"
            + "everyClientStreamGetsWellFormedRepliesOrADisconnect");
    private static final int REPLY_HEADER = 20;

    @TempDir
    static Path dir;
    static RamDisk disk;
    static RamDisk small;
    static NbdServer plain;
    static NbdServer tls;

    /**
     * Starts the two servers on first use rather than in a {@code @BeforeAll}: under Jazzer their
     * reactor threads would run instrumented code while Jazzer's runtime is still loading its own
     * classes, which ends in a ClassCircularityError.
     */
    static synchronized void servers() throws Exception {
        if (plain != null) {
            return;
        }
        disk = new RamDisk("disk", 16 << 20);
        small = new RamDisk("small", 1 << 20, 4096, true);
        plain = NbdServer.builder()
                .export(new NbdExport("disk", "a test disk", disk, false))
                .export(NbdExport.of("small", small))
                .unixSocket(dir.resolve("plain.sock"))
                .start();
        TlsFixture f = TlsFixture.create(dir.resolve("tls"));
        tls = NbdServer.builder()
                .export(new NbdExport("disk", "a test disk", disk, false))
                .unixSocket(dir.resolve("tls.sock"))
                .tls(TlsMode.REQUIRE, X509Credentials.server(f.x509, false, List.of()))
                .start();
    }

    @AfterAll
    static synchronized void stop() {
        if (plain != null) {
            plain.close();
            tls.close();
            disk.close();
            small.close();
            plain = null;
        }
    }

    @Tag("jazzer") // not in the suite: see jazzer.excluded in the pom
    @FuzzTest(maxDuration = "30s")
    @EnabledIfEnvironmentVariable(named = "JAZZER_FUZZ", matches = ".+")
    void everyClientStreamGetsWellFormedRepliesOrADisconnect(byte[] stream) {
        target(stream);
    }

    /**
     * The suite's brief run: every seed, then 5000 deterministic mutations of them (bytes
     * flipped or set to edge values, lengths bent, ranges deleted, repeated or spliced from
     * another seed), each through the same target. Not coverage-guided: the {@code @FuzzTest}
     * above is, from {@code scripts/fuzz.sh nbd}.
     */
    @Test
    void mutatedNegotiationsGetWellFormedRepliesOrADisconnect() {
        List<byte[]> seeds = seeds();
        // What each seed is, on the plain server and on the TLS one: the target sees what a
        // client would.
        boolean[] plainEnters = {true, true, true, true, false};
        boolean[] tlsEnters = {false, false, true, false, false};
        for (int i = 0; i < seeds.size(); i++) {
            Outcome[] o = target(seeds.get(i));
            assertThat(o[0].session != null).as("seed %d enters transmission on the plain server", i).isEqualTo(plainEnters[i]);
            assertThat(o[1].session != null).as("seed %d enters transmission on the TLS server", i).isEqualTo(tlsEnters[i]);
        }
        assertThat(target(seeds.get(4))[0].disconnect).as("NBD_OPT_ABORT ends the session").isNotNull();
        assertThat(target(seeds.get(1))[1].disconnect).as("EXPORT_NAME before STARTTLS").contains("TLS");
        Random rnd = new Random(19);
        for (int i = 0; i < 5000; i++) {
            target(mutate(seeds.get(rnd.nextInt(seeds.size())), seeds.get(rnd.nextInt(seeds.size())), rnd));
        }
    }

    /** The seeds Jazzer starts from are these very streams. */
    @Test
    void seedFilesMatchTheSeeds() throws Exception {
        TestData.seedFilesMatch(SEED_DIR, seeds());
    }

    @Test
    void theTargetCatchesAMalformedReply() {
        // The checker itself: a reply whose length runs past the output is not well-formed.
        ByteBuffer bad = ByteBuffer.allocate(REPLY_HEADER + 2);
        bad.putLong(OPT_REPLY_MAGIC).putInt(OPT_LIST).putInt(REP_ACK).putInt(100).putShort((short) 0).flip();
        List<Integer> sent = List.of(OPT_LIST);
        try {
            checkReplies(bad, sent, false, null);
        } catch (AssertionError expected) {
            return;
        }
        fail("a reply longer than the output passed the check");
    }

    /** What one server made of one stream. */
    record Outcome(byte[] output, Handshake.Session session, String disconnect, int left) {
    }

    /** The outcomes on the plain server and on the one that requires TLS. */
    static Outcome[] target(byte[] stream) {
        try {
            servers();
        } catch (Exception e) {
            throw new AssertionError("starting the servers", e);
        }
        Outcome[] outcomes = new Outcome[2];
        NbdServer[] servers = {plain, tls};
        for (int i = 0; i < 2; i++) {
            Outcome whole = run(servers[i], stream, stream.length);
            Outcome bytewise = run(servers[i], stream, 1);
            assertThat(bytewise.output).as("output, a byte at a time").isEqualTo(whole.output);
            assertThat(bytewise.disconnect).as("disconnect, a byte at a time").isEqualTo(whole.disconnect);
            assertThat(bytewise.left).as("bytes left, a byte at a time").isEqualTo(whole.left);
            assertThat(bytewise.session == null).isEqualTo(whole.session == null);
            outcomes[i] = whole;
        }
        return outcomes;
    }

    private static Outcome run(NbdServer server, byte[] stream, int chunk) {
        Handshake h = new Handshake(server);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        drain(h, out);
        List<Integer> sent = new ArrayList<>();
        Handshake.Session session = null;
        String disconnect = null;
        try {
            int pos = 0;
            while (pos < stream.length && session == null) {
                ByteBuffer in = ByteBuffer.wrap(stream, pos, Math.min(chunk, stream.length - pos));
                while (in.hasRemaining()) {
                    Handshake.Session s = h.feed(in);
                    assertThat(h.consumed()).as("bytes taken").isEqualTo(in.position());
                    drain(h, out);
                    if (s == Handshake.START_TLS) {
                        continue; // the rest of the stream stands for the TLS session's plaintext
                    }
                    if (s != null) {
                        session = s;
                        break;
                    }
                }
                pos = in.position();
            }
        } catch (Handshake.Disconnect d) {
            disconnect = d.getMessage();
            drain(h, out);
        }
        int pos = (int) h.consumed();
        if (session != null) {
            assertThat(session.export()).as("a session's export").isNotNull();
            assertThat(server.exports()).contains(session.export());
            server.transmissionEnded(null);
        }
        byte[] o = out.toByteArray();
        ByteBuffer b = ByteBuffer.wrap(o);
        assertThat(b.getLong()).isEqualTo(NBDMAGIC);
        assertThat(b.getLong()).isEqualTo(IHAVEOPT);
        b.getShort();
        options(stream, pos, sent);
        checkReplies(b, sent, session != null, session);
        return new Outcome(o, session, disconnect, stream.length - pos);
    }

    private static void drain(Handshake h, ByteArrayOutputStream out) {
        ByteBuffer b = h.takeOutput();
        if (b != null) {
            out.write(b.array(), b.arrayOffset() + b.position(), b.remaining());
        }
    }

    /** The options of the client's stream up to {@code end}, in order (what the replies answer). */
    private static void options(byte[] stream, int end, List<Integer> sent) {
        ByteBuffer b = ByteBuffer.wrap(stream, 0, end);
        if (b.remaining() < 4) {
            return;
        }
        b.getInt();
        while (b.remaining() >= 16) {
            b.getLong();
            int option = b.getInt();
            long len = Integer.toUnsignedLong(b.getInt());
            if (len > b.remaining()) {
                return;
            }
            sent.add(option);
            b.position(b.position() + (int) len);
        }
    }

    /**
     * Each reply well-formed and answering the option sent at that point: the replies to one
     * option come together, in the order the options were sent.
     */
    static void checkReplies(ByteBuffer b, List<Integer> sent, boolean entered, Handshake.Session s) {
        if (entered && sent.get(sent.size() - 1) == OPT_EXPORT_NAME) {
            // doc/proto.md, NBD_OPT_EXPORT_NAME: the answer is the export's size, its
            // transmission flags, and 124 zeros unless NBD_FLAG_C_NO_ZEROES; nothing follows it.
            int tail = s.noZeroes() ? 10 : 134;
            assertThat(b.remaining()).as("EXPORT_NAME's answer").isGreaterThanOrEqualTo(tail);
            ByteBuffer end = b.duplicate().position(b.limit() - tail);
            assertThat(end.getLong()).as("EXPORT_NAME's size").isEqualTo(s.export().device().size());
            assertThat(end.getShort() & 0xffff).as("EXPORT_NAME's flags").isEqualTo(s.transmissionFlags());
            while (end.hasRemaining()) {
                assertThat(end.get()).isZero();
            }
            b.limit(b.limit() - tail);
        }
        int at = 0;
        while (b.hasRemaining()) {
            assertThat(b.remaining()).as("a reply header").isGreaterThanOrEqualTo(REPLY_HEADER);
            assertThat(b.getLong()).as("reply magic").isEqualTo(OPT_REPLY_MAGIC);
            int option = b.getInt();
            int type = b.getInt();
            long len = Integer.toUnsignedLong(b.getInt());
            assertThat(len).as("reply length").isLessThanOrEqualTo(b.remaining());
            while (at < sent.size() && sent.get(at) != option) {
                at++;
            }
            assertThat(at).as("reply to option %d answers an option sent, in order", option).isLessThan(sent.size());
            assertThat(type == REP_ACK || type == REP_SERVER || type == REP_INFO || type == REP_META_CONTEXT
                    || (type & REP_FLAG_ERROR) != 0).as("reply type 0x%x", type).isTrue();
            b.position(b.position() + (int) len);
        }
    }

    static List<byte[]> seeds() {
        List<byte[]> seeds = new ArrayList<>();
        int flags = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES;
        seeds.add(stream(flags,
                opt(OPT_LIST, new byte[0]),
                opt(OPT_INFO, nameAndInfos("disk", INFO_BLOCK_SIZE, INFO_NAME, INFO_DESCRIPTION)),
                opt(OPT_STRUCTURED_REPLY, new byte[0]),
                opt(OPT_SET_META_CONTEXT, nameAndQueries("disk", "base:allocation", "qemu:allocation-depth")),
                opt(OPT_LIST_META_CONTEXT, nameAndQueries("disk", "qemu:")),
                opt(OPT_GO, nameAndInfos("disk", INFO_BLOCK_SIZE))));
        seeds.add(stream(FLAG_C_FIXED_NEWSTYLE, opt(OPT_EXPORT_NAME, "small".getBytes(StandardCharsets.UTF_8))));
        seeds.add(stream(flags, opt(OPT_STARTTLS, new byte[0]), opt(OPT_GO, nameAndInfos("disk"))));
        seeds.add(stream(flags, opt(99, new byte[] {1, 2, 3}), opt(OPT_EXTENDED_HEADERS, new byte[0]),
                opt(OPT_LIST_META_CONTEXT, nameAndQueries("disk")), opt(OPT_GO, nameAndInfos(""))));
        seeds.add(stream(flags, opt(OPT_INFO, nameAndInfos("nonesuch")), opt(OPT_ABORT, new byte[0])));
        return seeds;
    }

    private static byte[] stream(int flags, byte[]... options) {
        int n = 4;
        for (byte[] o : options) {
            n += o.length;
        }
        ByteBuffer b = ByteBuffer.allocate(n).putInt(flags);
        for (byte[] o : options) {
            b.put(o);
        }
        return b.array();
    }

    private static byte[] opt(int option, byte[] data) {
        return ByteBuffer.allocate(16 + data.length).putLong(IHAVEOPT).putInt(option).putInt(data.length).put(data).array();
    }

    /** INFO/GO data: name length, name, number of info requests, the requests (u16 each). */
    private static byte[] nameAndInfos(String name, int... infos) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(4 + n.length + 2 + 2 * infos.length).putInt(n.length).put(n).putShort((short) infos.length);
        for (int i : infos) {
            b.putShort((short) i);
        }
        return b.array();
    }

    /** META_CONTEXT data: export name length and name, number of queries, each length and query. */
    private static byte[] nameAndQueries(String name, String... queries) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        int len = 4 + n.length + 4;
        for (String q : queries) {
            len += 4 + q.getBytes(StandardCharsets.UTF_8).length;
        }
        ByteBuffer b = ByteBuffer.allocate(len).putInt(n.length).put(n).putInt(queries.length);
        for (String q : queries) {
            byte[] qb = q.getBytes(StandardCharsets.UTF_8);
            b.putInt(qb.length).put(qb);
        }
        return b.array();
    }

    /** Values that bend lengths and counts: zero, one, signs, the option limit's edges. */
    private static final int[] EDGES = {0, 1, 2, 3, 4, 0xff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff,
            Handshake.MAX_OPTION, Handshake.MAX_OPTION + 1, 4096, 4097};

    private static byte[] mutate(byte[] a, byte[] other, Random rnd) {
        byte[] m = a.clone();
        int steps = 1 + rnd.nextInt(4);
        for (int s = 0; s < steps && m.length > 0; s++) {
            int at = rnd.nextInt(m.length);
            switch (rnd.nextInt(6)) {
                case 0 -> m[at] ^= (byte) (1 << rnd.nextInt(8));
                case 1 -> m[at] = (byte) rnd.nextInt(256);
                case 2 -> {
                    if (at + 4 <= m.length) {
                        ByteBuffer.wrap(m, at, 4).putInt(EDGES[rnd.nextInt(EDGES.length)]);
                    }
                }
                case 3 -> {
                    int len = rnd.nextInt(Math.min(64, m.length - at) + 1);
                    byte[] d = new byte[m.length - len];
                    System.arraycopy(m, 0, d, 0, at);
                    System.arraycopy(m, at + len, d, at, m.length - at - len);
                    m = d;
                }
                case 4 -> {
                    int len = Math.min(1 + rnd.nextInt(32), m.length - at);
                    byte[] d = new byte[m.length + len];
                    System.arraycopy(m, 0, d, 0, at + len);
                    System.arraycopy(m, at, d, at + len, m.length - at);
                    m = d;
                }
                default -> {
                    int from = rnd.nextInt(other.length);
                    int len = rnd.nextInt(other.length - from + 1);
                    byte[] d = new byte[at + len];
                    System.arraycopy(m, 0, d, 0, at);
                    System.arraycopy(other, from, d, at, len);
                    m = d;
                }
            }
        }
        return m;
    }
}
