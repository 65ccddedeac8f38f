package io.biostack.nbd;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static io.biostack.nbd.proto.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Metadata contexts beyond base:allocation (doc/proto.md "Metadata querying"; qemu's
 * docs/interop/nbd.txt for the qemu: namespace): the server offers what the exported device
 * answers, lists them for the base:, qemu: and qemu:dirty-bitmap: queries, selects several with
 * their own ids, and answers BLOCK_STATUS with one chunk per context; checked on the wire and with
 * nbdinfo and qemu-img.
 */
@Timeout(60)
class NbdMetaContextTest {
    static final long SIZE = 4L << 20;
    static final int G = ContextDevice.GRANULE;

    @TempDir
    Path dir;
    Path sock;
    ContextDevice dev;
    NbdServer server;
    String uri;

    @BeforeEach
    void start() throws Exception {
        sock = dir.resolve("nbd.sock");
        dev = new ContextDevice(SIZE, true, "nightly", "weekly");
        dev.depth(0, 4L * G, 1);
        dev.depth(8L * G, 2L * G, 2);
        server = NbdServer.builder().export(NbdExport.of("disk", dev)).unixSocket(sock).start();
        uri = "nbd+unix:///disk?socket=" + sock;
    }

    @AfterEach
    void stop() {
        server.close();
        dev.close();
    }

    private static RawNbdClient structured(Path sock) throws IOException {
        RawNbdClient c = RawNbdClient.handshake(sock, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
        c.option(OPT_STRUCTURED_REPLY, new byte[0]);
        c.expectType(c.optionReply(), REP_ACK);
        c.structured = true;
        return c;
    }

    /** Sends a LIST or SET and returns name -> id of the contexts answered, up to the ACK. */
    private static Map<String, Integer> meta(RawNbdClient c, int option, String... queries) throws IOException {
        c.option(option, RawNbdClient.metaRequest("disk", queries));
        Map<String, Integer> m = new LinkedHashMap<>();
        while (true) {
            RawNbdClient.OptReply r = c.optionReply();
            if (r.type() == REP_ACK) {
                return m;
            }
            c.expectType(r, REP_META_CONTEXT);
            ByteBuffer b = r.buf();
            int id = b.getInt();
            m.put(StandardCharsets.UTF_8.decode(b).toString(), id);
        }
    }

    @Test
    void listAnswersTheBaseQemuAndDirtyBitmapQueriesAndEverythingForNoQuery() throws Exception {
        try (RawNbdClient c = structured(sock)) {
            assertThat(meta(c, OPT_LIST_META_CONTEXT).keySet()).containsExactly("base:allocation",
                    "qemu:allocation-depth", "qemu:dirty-bitmap:nightly", "qemu:dirty-bitmap:weekly");
            assertThat(meta(c, OPT_LIST_META_CONTEXT, "base:").keySet()).containsExactly("base:allocation");
            assertThat(meta(c, OPT_LIST_META_CONTEXT, "qemu:").keySet()).containsExactly("qemu:allocation-depth",
                    "qemu:dirty-bitmap:nightly", "qemu:dirty-bitmap:weekly");
            assertThat(meta(c, OPT_LIST_META_CONTEXT, "qemu:dirty-bitmap:").keySet())
                    .containsExactly("qemu:dirty-bitmap:nightly", "qemu:dirty-bitmap:weekly");
            assertThat(meta(c, OPT_LIST_META_CONTEXT, "qemu:dirty-bitmap:weekly", "qemu:nothing").keySet())
                    .containsExactly("qemu:dirty-bitmap:weekly");
        }
    }

    @Test
    void setSelectsSeveralContextsWithTheirOwnIdsAndSkipsUnknownNames() throws Exception {
        try (RawNbdClient c = structured(sock)) {
            Map<String, Integer> set = meta(c, OPT_SET_META_CONTEXT, "qemu:dirty-bitmap:nightly", "qemu:nope",
                    "base:allocation", "qemu:", "qemu:allocation-depth", "base:allocation");
            assertThat(set.keySet()).containsExactly("qemu:dirty-bitmap:nightly", "base:allocation",
                    "qemu:allocation-depth");
            assertThat(set.values()).doesNotHaveDuplicates();
            assertThat(set.get("base:allocation")).isEqualTo(BASE_ALLOCATION_ID);
        }
    }

    /** Reads one BLOCK_STATUS reply: context id -> runs as {length, flags} pairs, checking chunk order. */
    private static Map<Integer, List<long[]>> blockStatus(RawNbdClient c, int flags, long cookie, long offset,
                                                         long length) throws IOException {
        c.request(flags, CMD_BLOCK_STATUS, cookie, offset, length);
        List<RawNbdClient.Reply> chunks = c.chunks(cookie);
        Map<Integer, List<long[]>> m = new LinkedHashMap<>();
        for (RawNbdClient.Reply r : chunks) {
            assertThat(r.type()).isEqualTo(REPLY_TYPE_BLOCK_STATUS);
            ByteBuffer b = r.buf();
            int id = b.getInt();
            List<long[]> runs = new ArrayList<>();
            while (b.hasRemaining()) {
                runs.add(new long[] {Integer.toUnsignedLong(b.getInt()), b.getInt()});
            }
            assertThat(m.put(id, runs)).as("one chunk per context").isNull();
        }
        assertThat(chunks.getLast().done()).isTrue();
        return m;
    }

    @Test
    void blockStatusWithTwoContextsGetsOneChunkEachAndReqOneOneExtentEach() throws Exception {
        try (RawNbdClient c = structured(sock)) {
            Map<String, Integer> set = meta(c, OPT_SET_META_CONTEXT, "base:allocation", "qemu:dirty-bitmap:nightly",
                    "qemu:allocation-depth");
            c.go(OPT_GO, "disk", INFO_BLOCK_SIZE);
            byte[] data = new byte[G];
            java.util.Arrays.fill(data, (byte) 7);
            assertThat(c.writeAndWait(2L * G, data)).isZero();
            assertThat(c.writeAndWait(3L * G, data)).isZero();

            Map<Integer, List<long[]>> all = blockStatus(c, 0, 1, 0, 12L * G);
            assertThat(all.keySet()).containsExactly(set.get("base:allocation"),
                    set.get("qemu:dirty-bitmap:nightly"), set.get("qemu:allocation-depth"));
            assertThat(all.get(set.get("base:allocation"))).containsExactly(
                    new long[] {2L * G, 3}, new long[] {2L * G, 0}, new long[] {8L * G, 3});
            assertThat(all.get(set.get("qemu:dirty-bitmap:nightly"))).containsExactly(
                    new long[] {2L * G, 0}, new long[] {2L * G, 1}, new long[] {8L * G, 0});
            assertThat(all.get(set.get("qemu:allocation-depth"))).containsExactly(
                    new long[] {4L * G, 1}, new long[] {4L * G, 0}, new long[] {2L * G, 2}, new long[] {2L * G, 0});

            Map<Integer, List<long[]>> one = blockStatus(c, CMD_FLAG_REQ_ONE, 2, G, 12L * G);
            assertThat(one.get(set.get("base:allocation"))).containsExactly(new long[] {G, 3});
            assertThat(one.get(set.get("qemu:dirty-bitmap:nightly"))).containsExactly(new long[] {G, 0});
            assertThat(one.get(set.get("qemu:allocation-depth"))).containsExactly(new long[] {3L * G, 1});
        }
    }

    @Test
    void blockStatusWithoutAContextStaysEinval() throws Exception {
        try (RawNbdClient c = structured(sock)) {
            assertThat(meta(c, OPT_SET_META_CONTEXT, "qemu:dirty-bitmap:none")).isEmpty();
            c.go(OPT_GO, "disk", INFO_BLOCK_SIZE);
            assertThat(c.command(0, CMD_BLOCK_STATUS, 0, 4096)).isEqualTo(EINVAL);
        }
    }

    @Test
    void bitmapsOfferOnlyTheNamedBitmapAndAMissingOneFailsAtStart() throws Exception {
        ContextDevice other = new ContextDevice(SIZE, true, "a", "b");
        try (NbdServer s = NbdServer.builder().export(NbdExport.of("disk", other)).bitmaps(List.of("b"))
                .unixSocket(dir.resolve("b.sock")).start();
             RawNbdClient c = structured(dir.resolve("b.sock"))) {
            assertThat(meta(c, OPT_LIST_META_CONTEXT).keySet()).containsExactly("base:allocation",
                    "qemu:allocation-depth", "qemu:dirty-bitmap:b");
            assertThat(meta(c, OPT_SET_META_CONTEXT, "qemu:dirty-bitmap:a")).isEmpty();
        } finally {
            other.close();
        }
        assertThatThrownBy(() -> NbdServer.builder().export(NbdExport.of("disk", dev)).bitmaps(List.of("monthly"))
                .unixSocket(dir.resolve("c.sock")).start())
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("no dirty bitmap 'monthly'").hasMessageContaining("nightly, weekly");
    }

    @Test
    void serveBitmapOnADeviceWithoutThatBitmapFailsAtStartClearly() {
        io.biostack.cli.CliRun r = io.biostack.cli.CliRun.of("serve", "--ram", "1M", "--socket",
                dir.resolve("s.sock").toString(), "-B", "nightly");
        assertThat(r.code()).isNotZero();
        assertThat(r.err()).contains("has no dirty bitmap 'nightly'", "qemu:dirty-bitmap:nightly", "it has none")
                .doesNotContain("\tat ");
    }

    // ---- real clients -------------------------------------------------------------------------

    @Test
    void nbdinfoListsTheContextsAndMapsDepthAndBitmap() throws Exception {
        Tools.require("nbdinfo", "qemu-io");
        Tools.ok(30, "qemu-io", "-f", "raw", "-c", "write -P 3 128k 128k", uri);
        Tools.Result list = Tools.ok(30, "nbdinfo", "--list", "nbd+unix:///?socket=" + sock);
        assertThat(list.out()).contains("base:allocation", "qemu:allocation-depth", "qemu:dirty-bitmap:nightly",
                "qemu:dirty-bitmap:weekly");
        Tools.Result depth = Tools.ok(30, "nbdinfo", "--map=qemu:allocation-depth", uri);
        assertThat(depth.out().lines().map(String::strip).map(l -> l.replaceAll("\\s+", " ")).toList())
                .containsExactly("0 262144 1 local", "262144 262144 0 absent", "524288 131072 2 backing depth 2",
                        "655360 3538944 0 absent");
        Tools.Result dirty = Tools.ok(30, "nbdinfo", "--map=qemu:dirty-bitmap:nightly", uri);
        assertThat(dirty.out().lines().map(String::strip).map(l -> l.replaceAll("\\s+", " ")).toList())
                .containsExactly("0 131072 0 clean", "131072 131072 1 dirty", "262144 3932160 0 clean");
    }

    @Test
    void qemuImgMapWithXDirtyBitmapShowsDirtyRangesAsDataFalse() throws Exception {
        Tools.require("qemu-img", "qemu-io");
        String opts = "driver=nbd,server.type=unix,server.path=" + sock + ",export=disk";
        Tools.ok(30, "qemu-io", "-f", "raw", "-c", "write -P 5 1M 64k", uri);
        Tools.Result map = Tools.ok(30, "qemu-img", "map", "--output=json", "--image-opts",
                opts + ",x-dirty-bitmap=qemu:dirty-bitmap:weekly");
        String json = map.out().replaceAll("\\s+", "");
        // qemu reads the bitmap in place of base:allocation, so dirty (bit 0 set) comes out as a hole.
        assertThat(json).contains("{\"start\":0,\"length\":1048576,\"depth\":0,\"present\":true,\"zero\":false,\"data\":true");
        assertThat(json).contains("{\"start\":1048576,\"length\":65536,\"depth\":0,\"present\":false,\"zero\":false,\"data\":false");
        assertThat(json).contains("{\"start\":1114112,\"length\":3080192,\"depth\":0,\"present\":true,\"zero\":false,\"data\":true");
    }
}
