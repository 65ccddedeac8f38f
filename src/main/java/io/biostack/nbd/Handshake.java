package io.biostack.nbd;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import io.biostack.block.StatusContext;

import io.biostack.nbd.tls.TlsPolicy;

import static io.biostack.nbd.proto.NbdProtocol.*;

/**
 * The fixed newstyle handshake (doc/proto.md, "Fixed newstyle negotiation", "Option types") as a
 * state machine over buffers, independent of the transport: the connection's loop feeds it the
 * plaintext bytes the client sent ({@link #feed}) and sends what it wrote to {@link #output()}.
 * Not on the I/O path: it allocates freely and holds options whole (up to {@link #MAX_OPTION}
 * bytes). It never consumes a byte past the option that enters transmission, so the bytes left
 * in the buffer given to {@link #feed} are the first requests.
 *
 * <p>TLS (section "TLS support"): {@link TlsPolicy} says what each option gets given the server's
 * mode; after NBD_OPT_STARTTLS is acknowledged {@link #feed} returns {@link #START_TLS}, and the
 * connection puts a TLS session between the socket and this machine's bytes.
 *
 * <p>Unknown options get {@code NBD_REP_ERR_UNSUP} and the haggling goes on; malformed options
 * {@code NBD_REP_ERR_INVALID}; INFO/GO for an export that does not exist {@code NBD_REP_ERR_UNKNOWN}.
 * A client that breaks a MUST (bad magic, unknown client flags, an option too large to be anything
 * but an attack) is hard-disconnected, as section "Termination of the session during option
 * haggling" allows.
 */
final class Handshake {
    /** Largest option we read: a name and queries of 4096 bytes each fit many times. */
    static final int MAX_OPTION = 64 * 1024;

    /** What the client chose, when it entered transmission. */
    /**
     * What the client chose, when it entered transmission.
     *
     * @param contexts         the metadata contexts selected for this export (empty: no BLOCK_STATUS)
     * @param blockSizeAgreed  the client entered with NBD_OPT_GO asking for NBD_INFO_BLOCK_SIZE, so it
     *                         promised to keep to the constraints sent (doc/proto.md, "Block size
     *                         constraints"); without that promise the spec's defaults apply
     */
    record Session(NbdExport export, boolean structured, boolean noZeroes, MetaContext[] contexts,
                   boolean blockSizeAgreed, int transmissionFlags) {
    }

    /**
     * Returned by {@link #feed} when NBD_OPT_STARTTLS was acknowledged: once the ACK is sent, the
     * bytes that follow (in the buffer given to feed and after) are TLS, and the haggling goes on
     * through the TLS session's plaintext.
     */
    static final Session START_TLS = new Session(null, false, false, MetaContext.NONE, false, 0);

    /** Thrown to end the session without entering transmission. */
    static final class Disconnect extends IOException {
        Disconnect(String why) {
            super(why);
        }
    }

    private static final int S_FLAGS = 0;
    private static final int S_HEADER = 1;
    private static final int S_DATA = 2;

    private final NbdServer server;
    private boolean structured;
    private boolean noZeroes;
    /** STARTTLS was acknowledged: the rest of the haggling is inside TLS. */
    private boolean tlsActive;
    /** Set once an option was answered NBD_REP_ERR_TLS_REQD (or EXPORT_NAME refused for want of TLS). */
    private boolean tlsRequired;
    /** Export named in the last SET_META_CONTEXT that selected a context, or null. */
    private String metaExport;
    /** The contexts that SET_META_CONTEXT selected for {@link #metaExport}. */
    private MetaContext[] metaSelected = MetaContext.NONE;

    private int state = S_FLAGS;
    /** Bytes of the current item (client flags, option header, option data) gathered so far. */
    private ByteBuffer item = ByteBuffer.allocate(4);
    private int option;
    /** Replies not yet taken by the loop; grows as needed. */
    private ByteBuffer out = ByteBuffer.allocate(256);
    /** Bytes of client input taken so far (a byte-a-second trickler shows up here). */
    private long consumed;

    Handshake(NbdServer server) {
        this.server = server;
        ByteBuffer hello = ByteBuffer.allocate(18);
        hello.putLong(NBDMAGIC).putLong(IHAVEOPT).putShort((short) (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)).flip();
        writeFully(hello);
    }

    /** Replies not yet sent, as a new buffer ready to read (the caller owns it), or null. */
    ByteBuffer takeOutput() {
        if (out.position() == 0) {
            return null;
        }
        ByteBuffer b = ByteBuffer.allocate(out.position());
        b.put(out.flip()).flip();
        out.clear();
        return b;
    }

    /** Bytes still needed to finish the current item: the most a blocking caller should read. */
    int need() {
        return item.remaining();
    }

    /** True when the client was told TLS is required and never started it: a refused plain client. */
    boolean refusedPlain() {
        return tlsRequired && !tlsActive;
    }

    /** Client bytes consumed so far. */
    long consumed() {
        return consumed;
    }

    /**
     * Takes bytes from {@code in} (advancing its position) and answers the options they complete.
     *
     * @return the session once an option entered transmission (bytes after it stay in {@code in}),
     *     else null (more input needed)
     * @throws Disconnect when the client must be disconnected
     */
    Session feed(ByteBuffer in) throws Disconnect {
        while (in.hasRemaining()) {
            int n = Math.min(item.remaining(), in.remaining());
            int lim = in.limit();
            in.limit(in.position() + n);
            item.put(in);
            in.limit(lim);
            consumed += n;
            if (item.hasRemaining()) {
                return null;
            }
            item.flip();
            Session s = step();
            if (s != null) {
                return s;
            }
        }
        return null;
    }

    private Session step() throws Disconnect {
        switch (state) {
            case S_FLAGS -> {
                int clientFlags = item.getInt();
                if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) != 0) {
                    // Section "Client flags": the server MUST drop the connection on an unknown flag.
                    throw new Disconnect("unknown client flags 0x" + Integer.toHexString(clientFlags));
                }
                noZeroes = (clientFlags & FLAG_C_NO_ZEROES) != 0;
                expect(S_HEADER, 16);
                return null;
            }
            case S_HEADER -> {
                long magic = item.getLong();
                option = item.getInt();
                long len = Integer.toUnsignedLong(item.getInt());
                if (magic != IHAVEOPT) {
                    throw new Disconnect("bad option magic 0x" + Long.toHexString(magic));
                }
                if (len > MAX_OPTION) {
                    throw new Disconnect("option " + option + " of " + len + " bytes is too large");
                }
                if (len == 0) {
                    return done(option(option, ByteBuffer.allocate(0)));
                }
                expect(S_DATA, (int) len);
                return null;
            }
            default -> {
                return done(option(option, item));
            }
        }
    }

    private Session done(Session s) {
        if (s == null || s == START_TLS) {
            expect(S_HEADER, 16);
        }
        return s;
    }

    private void expect(int next, int bytes) {
        state = next;
        item = ByteBuffer.allocate(bytes);
    }

    private Session option(int option, ByteBuffer data) throws Disconnect {
        if (server.isClosing() && option != OPT_ABORT) {
            reply(option, REP_ERR_SHUTDOWN, "server is shutting down");
            return null;
        }
        // TLS (doc/proto.md, "TLS support"): what the option gets given the mode and whether TLS is up.
        TlsPolicy.Verdict v = TlsPolicy.check(server.tlsMode(), tlsActive, option, data.remaining());
        switch (v) {
            case GO_ON -> { }
            case START_TLS -> {
                ack(option);
                // What was negotiated in plain text is forgotten (as qemu does): a man in the
                // middle may have sent it.
                tlsActive = true;
                structured = false;
                metaExport = null;
                metaSelected = MetaContext.NONE;
                return START_TLS;
            }
            case TLS_REQUIRED -> {
                tlsRequired = true;
                reply(option, REP_ERR_TLS_REQD, TlsPolicy.message(v));
                return null;
            }
            case POLICY -> {
                reply(option, REP_ERR_POLICY, TlsPolicy.message(v));
                return null;
            }
            case INVALID -> {
                reply(option, REP_ERR_INVALID, TlsPolicy.message(v));
                return null;
            }
            case DISCONNECT -> {
                tlsRequired = true;
                throw new Disconnect(TlsPolicy.message(v));
            }
        }
        switch (option) {
            case OPT_EXPORT_NAME -> {
                return exportName(data);
            }
            case OPT_ABORT -> {
                ack(option);
                throw new Disconnect("client aborted the handshake");
            }
            case OPT_LIST -> list(data);
            case OPT_INFO, OPT_GO -> {
                return infoOrGo(option, data);
            }
            case OPT_STRUCTURED_REPLY -> {
                if (data.hasRemaining()) {
                    reply(option, REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
                } else {
                    structured = true;
                    ack(option);
                }
            }
            case OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT -> metaContext(option, data);
            default -> reply(option, REP_ERR_UNSUP, "option " + option + " is not supported");
        }
        return null;
    }

    private Session exportName(ByteBuffer data) throws Disconnect {
        String name = StandardCharsets.UTF_8.decode(data).toString();
        NbdExport e = server.export(name);
        if (e == null) {
            // Section "NBD_OPT_EXPORT_NAME": no way to report an error, the server MUST terminate.
            throw new Disconnect("no export named '" + name + "'");
        }
        if (!server.enterTransmission()) {
            throw new Disconnect("the server has its maximum of " + server.maxConnections() + " clients");
        }
        int flags = transmissionFlags(e);
        ByteBuffer b = ByteBuffer.allocate(10 + (noZeroes ? 0 : 124));
        b.putLong(e.device().size()).putShort((short) flags);
        b.position(b.capacity()).flip();
        writeFully(b);
        return session(e, name, flags, false);
    }

    private void list(ByteBuffer data) throws Disconnect {
        if (data.hasRemaining()) {
            reply(OPT_LIST, REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
            return;
        }
        for (NbdExport e : server.exports()) {
            byte[] n = e.name().getBytes(StandardCharsets.UTF_8);
            byte[] d = e.description().getBytes(StandardCharsets.UTF_8);
            ByteBuffer b = ByteBuffer.allocate(4 + n.length + d.length);
            b.putInt(n.length).put(n).put(d).flip();
            reply(OPT_LIST, REP_SERVER, b);
        }
        ack(OPT_LIST);
    }

    private Session infoOrGo(int option, ByteBuffer data) throws Disconnect {
        // Data: u32 name length, name, u16 count, count x u16 (section "NBD_OPT_INFO and NBD_OPT_GO").
        if (data.remaining() < 6) {
            reply(option, REP_ERR_INVALID, "option too short");
            return null;
        }
        long nlen = Integer.toUnsignedLong(data.getInt());
        if (nlen > data.remaining() - 2) {
            reply(option, REP_ERR_INVALID, "export name length beyond the option");
            return null;
        }
        String name = string(data, (int) nlen);
        int count = Short.toUnsignedInt(data.getShort());
        if (data.remaining() != 2 * count) {
            reply(option, REP_ERR_INVALID, "information request count does not match the option length");
            return null;
        }
        boolean wantName = false;
        boolean wantDescription = false;
        boolean wantBlockSize = false;
        for (int i = 0; i < count; i++) {
            int t = Short.toUnsignedInt(data.getShort());
            wantName |= t == INFO_NAME;
            wantDescription |= t == INFO_DESCRIPTION;
            wantBlockSize |= t == INFO_BLOCK_SIZE;
        }
        NbdExport e = server.export(name);
        if (e == null) {
            reply(option, REP_ERR_UNKNOWN, "no export named '" + name + "'");
            return null;
        }
        if (option == OPT_GO && !server.enterTransmission()) {
            // --max-connections counts clients in transmission; the client may try again later.
            reply(option, REP_ERR_POLICY, "the server has its maximum of " + server.maxConnections()
                    + " clients (--max-connections)");
            return null;
        }
        int flags = transmissionFlags(e);
        ByteBuffer info = ByteBuffer.allocate(12);
        info.putShort((short) INFO_EXPORT).putLong(e.device().size()).putShort((short) flags).flip();
        reply(option, REP_INFO, info);
        if (wantName) {
            byte[] n = e.name().getBytes(StandardCharsets.UTF_8);
            reply(option, REP_INFO, ByteBuffer.allocate(2 + n.length).putShort((short) INFO_NAME).put(n).flip());
        }
        if (wantDescription && !e.description().isEmpty()) {
            byte[] d = e.description().getBytes(StandardCharsets.UTF_8);
            reply(option, REP_INFO, ByteBuffer.allocate(2 + d.length).putShort((short) INFO_DESCRIPTION).put(d).flip());
        }
        // Always sent (the spec allows it unasked), but binding only on a client that asked for it in
        // NBD_OPT_GO; others get the defaults, served by read-modify-write and splitting
        // (section "Block size constraints").
        ByteBuffer bs = ByteBuffer.allocate(14);
        bs.putShort((short) INFO_BLOCK_SIZE).putInt(e.minimumBlock()).putInt(e.preferredBlock())
                .putInt(server.maxPayload()).flip();
        reply(option, REP_INFO, bs);
        ack(option);
        return option == OPT_GO ? session(e, name, flags, wantBlockSize) : null;
    }

    /**
     * NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT (doc/proto.md, "Metadata querying"; the
     * {@code qemu:} namespace as qemu's docs/interop/nbd.txt has it). The export offers
     * {@code base:allocation} and whatever its device answers ({@link NbdServer#contextsOf}). LIST
     * takes a query ending in ':' as every context under that prefix ({@code base:}, {@code qemu:},
     * {@code qemu:dirty-bitmap:}) and no query as all; SET takes full names only, each selected
     * once with its own id. A name the export doesn't answer is simply not selected.
     */
    private void metaContext(int option, ByteBuffer data) throws Disconnect {
        boolean set = option == OPT_SET_META_CONTEXT;
        if (set) {
            metaExport = null; // replaced even when this request fails
            metaSelected = MetaContext.NONE;
        }
        if (!structured) {
            reply(option, REP_ERR_INVALID, "negotiate NBD_OPT_STRUCTURED_REPLY first");
            return;
        }
        // Data: u32 name length, name, u32 query count, queries of u32 length + string.
        if (data.remaining() < 8) {
            reply(option, REP_ERR_INVALID, "option too short");
            return;
        }
        long nlen = Integer.toUnsignedLong(data.getInt());
        if (nlen > data.remaining() - 4) {
            reply(option, REP_ERR_INVALID, "export name length beyond the option");
            return;
        }
        String name = string(data, (int) nlen);
        long count = Integer.toUnsignedLong(data.getInt());
        List<String> queries = new ArrayList<>();
        for (long i = 0; i < count; i++) {
            if (data.remaining() < 4) {
                reply(option, REP_ERR_INVALID, "query beyond the option");
                return;
            }
            long qlen = Integer.toUnsignedLong(data.getInt());
            if (qlen > data.remaining()) {
                reply(option, REP_ERR_INVALID, "query length beyond the option");
                return;
            }
            queries.add(string(data, (int) qlen));
        }
        if (data.hasRemaining()) {
            reply(option, REP_ERR_INVALID, "trailing bytes after the queries");
            return;
        }
        NbdExport e = server.export(name);
        if (e == null) {
            reply(option, REP_ERR_UNKNOWN, "no export named '" + name + "'");
            return;
        }
        Map<String, StatusContext> offered = new LinkedHashMap<>();
        offered.put(BASE_ALLOCATION, null);
        for (StatusContext c : server.contextsOf(e)) {
            offered.putIfAbsent(c.name(), c);
        }
        if (!set) {
            Set<String> found = new LinkedHashSet<>();
            for (String n : offered.keySet()) {
                if (queries.isEmpty()) {
                    found.add(n);
                }
                for (String q : queries) {
                    if (q.equals(n) || (q.endsWith(":") && n.startsWith(q))) {
                        found.add(n);
                    }
                }
            }
            for (String n : found) {
                metaContextReply(option, 0, n); // ids of a LIST mean nothing (section "NBD_REP_META_CONTEXT")
            }
            ack(option);
            return;
        }
        List<MetaContext> chosen = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        for (String q : queries) {
            if (!offered.containsKey(q) || !seen.add(q)) {
                continue;
            }
            int id = q.equals(BASE_ALLOCATION) ? BASE_ALLOCATION_ID : BASE_ALLOCATION_ID + 1 + chosen.size();
            chosen.add(new MetaContext(id, q, offered.get(q)));
        }
        if (chosen.size() > MetaContext.MAX_SELECTED) {
            reply(option, REP_ERR_TOO_BIG, "at most " + MetaContext.MAX_SELECTED + " metadata contexts at once");
            return;
        }
        for (MetaContext c : chosen) {
            metaContextReply(option, c.id(), c.name());
        }
        if (!chosen.isEmpty()) {
            metaExport = name;
            metaSelected = chosen.toArray(MetaContext.NONE);
        }
        ack(option);
    }

    private void metaContextReply(int option, int id, String contextName) throws Disconnect {
        byte[] n = contextName.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(4 + n.length);
        b.putInt(id).put(n).flip();
        reply(option, REP_META_CONTEXT, b);
    }

    private Session session(NbdExport e, String askedName, int flags, boolean blockSizeAgreed) {
        boolean bs = structured && metaExport != null && server.export(metaExport) == e
                && metaExport.equals(askedName);
        return new Session(e, structured, noZeroes, bs ? metaSelected : MetaContext.NONE, blockSizeAgreed, flags);
    }

    /** Transmission flags for {@code e} as negotiated so far (section "Transmission flags"). */
    private int transmissionFlags(NbdExport e) {
        int f = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_CAN_MULTI_CONN | FLAG_SEND_CACHE;
        if (e.readOnly()) {
            // No TRIM, WRITE_ZEROES or FAST_ZERO on a read-only export, as qemu-nbd
            // (nbd_export_create) and nbdkit offer none: they could only fail with EPERM.
            f |= FLAG_READ_ONLY;
        } else {
            f |= FLAG_SEND_WRITE_ZEROES | FLAG_SEND_FAST_ZERO;
            if (e.device().limits().discard()) {
                f |= FLAG_SEND_TRIM;
            }
        }
        if (structured) {
            f |= FLAG_SEND_DF; // MUST be clear without structured replies
        }
        return f;
    }

    // ---- wire helpers --------------------------------------------------------------------

    private static String string(ByteBuffer b, int n) {
        byte[] s = new byte[n];
        b.get(s);
        return new String(s, StandardCharsets.UTF_8);
    }

    private void ack(int option) throws Disconnect {
        reply(option, REP_ACK, (ByteBuffer) null);
    }

    private void reply(int option, int type, String message) throws Disconnect {
        ByteBuffer payload = null;
        if (message != null) {
            payload = ByteBuffer.wrap(message.getBytes(StandardCharsets.UTF_8));
        }
        reply(option, type, payload);
    }

    /** An option reply (section "Fixed newstyle negotiation"): magic, option, type, length, data. */
    private void reply(int option, int type, ByteBuffer payload) throws Disconnect {
        int n = payload == null ? 0 : payload.remaining();
        ByteBuffer b = ByteBuffer.allocate(20 + n);
        b.putLong(OPT_REPLY_MAGIC).putInt(option).putInt(type).putInt(n);
        if (payload != null) {
            b.put(payload);
        }
        b.flip();
        writeFully(b);
    }

    private void writeFully(ByteBuffer b) {
        if (out.remaining() < b.remaining()) {
            ByteBuffer bigger = ByteBuffer.allocate(Math.max(out.capacity() * 2, out.position() + b.remaining()));
            out.flip();
            bigger.put(out);
            out = bigger;
        }
        out.put(b);
    }
}
