package io.biostack.nbd;

import io.biostack.block.RamDisk;
import io.biostack.nbd.tls.TlsMode;
import io.biostack.nbd.tls.X509Credentials;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static io.biostack.nbd.proto.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Random pipelined requests over a real socket, valid and faulty mixed, against a model of the
 * export: every request gets exactly one final reply under its own cookie, with the error the
 * spec's rules give (doc/proto.md, "Request types" and "Error values"), reads return what the
 * model holds, a refused request changes nothing, and BLOCK_STATUS never calls data zero.
 *
 * <p>Each request carries at most one fault (past the end, misaligned to the 4 KiB minimum that
 * the client agreed to, over the maximum payload, an unknown command or flag, a flag on the wrong
 * command, a FLUSH with a range), so that the expected error is the one the spec names for it.
 * The requests of a batch are in flight together on disjoint ranges (the order of overlapping
 * ones is the server's to choose), and a batch moves at most 96 KiB, which the socket buffers
 * hold both ways while replies wait. A trimmed block reads back as anything (the spec leaves its
 * contents undefined) until something is written there again. One run goes through TLS, where
 * the replies of a batch share records.
 */
@Timeout(60)
class NbdRandomRequestsTest {
    private static final int SIZE = 4 << 20;
    private static final int BLOCK = 4096;
    private static final int MAX_PAYLOAD = 1 << 20;
    /** Disjoint slots a batch's requests are placed in. */
    private static final int SLOT = 256 << 10;
    private static final int SLOTS = SIZE / SLOT;

    @TempDir
    static Path keys;
    static TlsFixture tls;
    @TempDir
    Path dir;
    Path sock;
    RamDisk disk;
    NbdServer server;

    @BeforeAll
    static void keys() throws Exception {
        tls = TlsFixture.create(keys);
    }

    @BeforeEach
    void start() throws Exception {
        sock = dir.resolve("nbd.sock");
        disk = new RamDisk("disk", SIZE, BLOCK, false);
        server = NbdServer.builder().export(NbdExport.of("disk", disk)).unixSocket(sock).maxPayload(MAX_PAYLOAD)
                .tls(TlsMode.ON, X509Credentials.server(tls.x509, false, List.of())).start();
    }

    /** Structured replies, base:allocation, and GO agreeing to the block sizes; through TLS or not. */
    private RawNbdClient open(boolean withTls) throws Exception {
        RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
        if (withTls) {
            c.startTls(X509Credentials.client(tls.nocert));
        }
        c.option(OPT_STRUCTURED_REPLY, new byte[0]);
        c.expectType(c.optionReply(), REP_ACK);
        c.structured = true;
        c.option(OPT_SET_META_CONTEXT, RawNbdClient.metaRequest("disk", BASE_ALLOCATION));
        c.expectType(c.optionReply(), REP_META_CONTEXT);
        c.expectType(c.optionReply(), REP_ACK);
        assertThat(c.go(OPT_GO, "disk", INFO_BLOCK_SIZE).getLast().type()).isEqualTo(REP_ACK);
        return c;
    }

    @AfterEach
    void stop() {
        server.close();
        disk.close();
    }

    /** One request and what the model says of it. */
    private record Req(long cookie, int flags, int type, long offset, long length, byte[] data, int expect) {
    }

    @ParameterizedTest(name = "seed {0}, tls={1}")
    @CsvSource({"1, false", "2, true"})
    void randomPipelinedRequestsGetTheSpecsAnswersAndReadBackTheModel(long seed, boolean withTls) throws Exception {
        Random rnd = new Random(seed);
        byte[] model = new byte[SIZE];
        boolean[] known = new boolean[SIZE / BLOCK];
        Arrays.fill(known, true); // a fresh RAM disk reads as zeros
        long cookie = 1;
        Map<String, Integer> seen = new HashMap<>();
        try (RawNbdClient c = open(withTls)) {
            assertThat(c.minBlock).isEqualTo(BLOCK);
            for (int batch = 0; batch < 120; batch++) {
                List<Integer> slots = new ArrayList<>();
                for (int s = 0; s < SLOTS; s++) {
                    slots.add(s);
                }
                java.util.Collections.shuffle(slots, rnd);
                int n = 1 + rnd.nextInt(4);
                List<Req> reqs = new ArrayList<>();
                for (int i = 0; i < n; i++) {
                    reqs.add(request(rnd, cookie++, (long) slots.get(i) * SLOT));
                }
                for (Req r : reqs) {
                    if (r.type == CMD_WRITE) {
                        c.write(r.flags, r.cookie, r.offset, r.data);
                    } else {
                        c.request(r.flags, r.type, r.cookie, r.offset, r.length);
                    }
                }
                Map<Long, List<RawNbdClient.Reply>> replies = new HashMap<>();
                int done = 0;
                while (done < reqs.size()) {
                    RawNbdClient.Reply r = c.reply(0);
                    assertThat(reqs).as("a reply's cookie is one in flight").anyMatch(q -> q.cookie == r.cookie());
                    assertThat(replies.get(r.cookie()) == null || !replies.get(r.cookie()).getLast().done())
                            .as("nothing after the final reply of cookie %d", r.cookie()).isTrue();
                    replies.computeIfAbsent(r.cookie(), k -> new ArrayList<>()).add(r);
                    if (r.done()) {
                        done++;
                    }
                }
                for (Req q : reqs) {
                    check(q, replies.get(q.cookie), model, known);
                    seen.merge(commandName(q.type) + (q.expect == 0 ? "" : " " + q.expect), 1, Integer::sum);
                }
                for (Req q : reqs) {
                    apply(q, model, known);
                }
            }
            // The last word: the whole disk as the model has it, wherever the model knows it.
            for (long off = 0; off < SIZE; off += MAX_PAYLOAD) {
                byte[] got = c.read(off, MAX_PAYLOAD);
                for (int b = 0; b < MAX_PAYLOAD / BLOCK; b++) {
                    int at = (int) off + b * BLOCK;
                    if (known[at / BLOCK]) {
                        assertThat(Arrays.copyOfRange(got, b * BLOCK, (b + 1) * BLOCK))
                                .as("block at %d", at).isEqualTo(Arrays.copyOfRange(model, at, at + BLOCK));
                    }
                }
            }
        }
        // The mix covered what it claims to: successes and each kind of refusal.
        assertThat(seen).containsKeys("READ", "WRITE", "TRIM", "WRITE_ZEROES", "FLUSH", "BLOCK_STATUS", "READ " + EINVAL,
                "WRITE " + ENOSPC, "WRITE " + EINVAL, "BLOCK_STATUS " + EINVAL, "command 99 " + EINVAL);
    }

    /** A request in the slot at {@code base}: valid, or with one fault and the error it must get. */
    private static Req request(Random rnd, long cookie, long base) {
        int type = switch (rnd.nextInt(8)) {
            case 0, 1 -> CMD_READ;
            case 2, 3 -> CMD_WRITE;
            case 4 -> CMD_TRIM;
            case 5 -> CMD_WRITE_ZEROES;
            case 6 -> CMD_BLOCK_STATUS;
            default -> rnd.nextBoolean() ? CMD_FLUSH : CMD_CACHE;
        };
        long offset = base + (long) rnd.nextInt(SLOT / BLOCK / 2) * BLOCK;
        long length = (long) (1 + rnd.nextInt(6)) * BLOCK;
        int flags = 0;
        int expect = 0;
        if (type == CMD_FLUSH) {
            offset = 0;
            length = 0;
        }
        switch (rnd.nextInt(10)) {
            case 0 -> { // past the end: writes and zeroes ENOSPC, the rest EINVAL
                if (type != CMD_FLUSH && type != CMD_CACHE) {
                    offset = SIZE - BLOCK;
                    length = 2 * BLOCK;
                    expect = type == CMD_WRITE || type == CMD_WRITE_ZEROES ? ENOSPC : EINVAL;
                }
            }
            case 1 -> { // misaligned to the agreed minimum block
                if (type != CMD_FLUSH) {
                    offset += 512;
                    expect = EINVAL;
                }
            }
            case 2 -> { // over the maximum payload (a READ's answer would be too large)
                if (type == CMD_READ) {
                    offset = 0;
                    length = MAX_PAYLOAD + BLOCK;
                    expect = EINVAL;
                }
            }
            case 3 -> { // a flag no command has, or one that belongs to another command
                flags = rnd.nextBoolean() ? 1 << 9 : type == CMD_BLOCK_STATUS ? CMD_FLAG_DF : CMD_FLAG_REQ_ONE;
                expect = EINVAL;
            }
            case 4 -> { // an unknown command, or a FLUSH with a range
                if (type == CMD_FLUSH) {
                    length = BLOCK;
                } else {
                    type = 99;
                }
                expect = EINVAL;
            }
            default -> {
                if (type == CMD_BLOCK_STATUS && rnd.nextBoolean()) {
                    flags = CMD_FLAG_REQ_ONE;
                } else if (type == CMD_WRITE && rnd.nextInt(3) == 0) {
                    flags = CMD_FLAG_FUA;
                }
            }
        }
        byte[] data = null;
        if (type == CMD_WRITE) {
            data = new byte[(int) length];
            rnd.nextBytes(data);
        }
        return new Req(cookie, flags, type, offset, length, data, expect);
    }

    private static void check(Req q, List<RawNbdClient.Reply> chunks, byte[] model, boolean[] known) {
        String what = commandName(q.type) + " " + q.length + " at " + q.offset + " flags " + q.flags;
        assertThat(chunks).as(what).isNotEmpty();
        RawNbdClient.Reply last = chunks.getLast();
        assertThat(last.done()).as(what).isTrue();
        int error = 0;
        for (RawNbdClient.Reply r : chunks) {
            if (r.errorCode() != 0) {
                error = r.errorCode();
            }
        }
        assertThat(error).as("error of %s", what).isEqualTo(q.expect);
        if (error != 0) {
            return;
        }
        if (q.type == CMD_READ) {
            byte[] got = new byte[(int) q.length];
            long covered = 0;
            for (RawNbdClient.Reply r : chunks) {
                ByteBuffer b = r.buf();
                if (r.type() == REPLY_TYPE_OFFSET_DATA) {
                    long off = b.getLong();
                    covered += b.remaining();
                    b.get(got, (int) (off - q.offset), b.remaining());
                } else if (r.type() == REPLY_TYPE_OFFSET_HOLE) {
                    b.getLong();
                    covered += b.getInt();
                }
            }
            assertThat(covered).as("bytes answered for %s", what).isEqualTo(q.length);
            for (long b = q.offset; b < q.offset + q.length; b += BLOCK) {
                if (known[(int) (b / BLOCK)]) {
                    int i = (int) (b - q.offset);
                    assertThat(Arrays.copyOfRange(got, i, i + BLOCK)).as("%s, block at %d", what, b)
                            .isEqualTo(Arrays.copyOfRange(model, (int) b, (int) b + BLOCK));
                }
            }
        } else if (q.type == CMD_BLOCK_STATUS) {
            assertThat(chunks).as(what).hasSize(1);
            ByteBuffer b = chunks.getFirst().buf();
            assertThat(chunks.getFirst().type()).isEqualTo(REPLY_TYPE_BLOCK_STATUS);
            b.getInt(); // the context id
            long at = q.offset;
            int extents = 0;
            while (b.hasRemaining()) {
                long len = Integer.toUnsignedLong(b.getInt());
                int state = b.getInt();
                assertThat(len).as("extent length in %s", what).isPositive();
                if ((state & 2) != 0) { // NBD_STATE_ZERO: it must read as zeros
                    for (long x = at; x < Math.min(at + len, SIZE); x += BLOCK) {
                        if (known[(int) (x / BLOCK)]) {
                            assertThat(Arrays.copyOfRange(model, (int) x, (int) x + BLOCK))
                                    .as("%s: block at %d said zero", what, x).containsOnly(0);
                        }
                    }
                }
                at += len;
                extents++;
            }
            assertThat(extents).as(what).isPositive();
            if ((q.flags & CMD_FLAG_REQ_ONE) != 0) {
                assertThat(extents).as("REQ_ONE: %s", what).isEqualTo(1);
            }
        }
    }

    private static void apply(Req q, byte[] model, boolean[] known) {
        if (q.expect != 0) {
            return;
        }
        int from = (int) (q.offset / BLOCK);
        int to = (int) ((q.offset + q.length) / BLOCK);
        switch (q.type) {
            case CMD_WRITE -> {
                System.arraycopy(q.data, 0, model, (int) q.offset, q.data.length);
                Arrays.fill(known, from, to, true);
            }
            case CMD_WRITE_ZEROES -> {
                Arrays.fill(model, (int) q.offset, (int) (q.offset + q.length), (byte) 0);
                Arrays.fill(known, from, to, true);
            }
            case CMD_TRIM -> Arrays.fill(known, from, to, false);
            default -> {
            }
        }
    }
}
