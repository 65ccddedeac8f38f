package io.biostack.nbd;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.SocketChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;

import io.biostack.nbd.tls.TlsChannel;
import io.biostack.nbd.tls.TlsException;
import io.biostack.nbd.tls.TlsPolicy;

import static io.biostack.nbd.NbdProtocol.*;

/**
 * The fixed newstyle handshake (doc/proto.md, "Fixed newstyle negotiation", "Option types") on a
 * blocking channel, from the server's greeting to the option that enters transmission. Not on
 * the I/O path: it allocates freely and reads options whole (up to {@link #MAX_OPTION} bytes).
 *
 * <p>Unknown options get {@code NBD_REP_ERR_UNSUP} and the haggling goes on; malformed options
 * {@code NBD_REP_ERR_INVALID}; INFO/GO for an export that does not exist {@code NBD_REP_ERR_UNKNOWN}.
 * A client that breaks a MUST (bad magic, unknown client flags, an option too large to be anything
 * but an attack) is hard-disconnected, as section "Termination of the session during option
 * haggling" allows.
 *
 * <p>TLS (section "TLS support"): {@link TlsPolicy} says what each option gets given the server's
 * mode; after NBD_OPT_STARTTLS is acknowledged the TLS handshake runs on this thread and the rest
 * of the haggling, and the transmission phase, go through the returned {@link TlsChannel}.
 */
final class Handshake {
    /** Largest option we read: a name and queries of 4096 bytes each fit many times. */
    static final int MAX_OPTION = 64 * 1024;

    /** What the client chose, when it entered transmission; {@code tls} is null without TLS. */
    record Session(NbdExport export, boolean structured, boolean noZeroes, boolean blockStatus, int transmissionFlags,
                   TlsChannel tls) {
    }

    /** Thrown when the TLS handshake refused the client: the message is the one log line. */
    static final class TlsRefused extends IOException {
        TlsRefused(String why) {
            super(why);
        }
    }

    /** Thrown to end the session without entering transmission. */
    static final class Disconnect extends IOException {
        Disconnect(String why) {
            super(why);
        }
    }

    private final NbdServer server;
    private final NbdConnection conn;
    private final SocketChannel ch;
    /** Where the haggling reads and writes: the socket, then the TLS channel after STARTTLS. */
    private ReadableByteChannel in;
    private WritableByteChannel out;
    private TlsChannel tls;
    /** Set once an option was answered NBD_REP_ERR_TLS_REQD (or EXPORT_NAME refused for want of TLS). */
    private boolean tlsRequired;
    private boolean structured;
    private boolean noZeroes;
    /** Export named in the last SET_META_CONTEXT that selected base:allocation, or null. */
    private String metaExport;

    Handshake(NbdServer server, NbdConnection conn, SocketChannel ch) {
        this.server = server;
        this.conn = conn;
        this.ch = ch;
        this.in = ch;
        this.out = ch;
    }

    /** Runs the handshake; returns the session, or throws when the client left or was sent away. */
    Session negotiate() throws IOException {
        ByteBuffer hello = ByteBuffer.allocate(18);
        hello.putLong(NBDMAGIC).putLong(IHAVEOPT).putShort((short) (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)).flip();
        writeFully(hello);
        int clientFlags = read(4).getInt();
        if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) != 0) {
            // Section "Client flags": the server MUST drop the connection on an unknown flag.
            throw new Disconnect("unknown client flags 0x" + Integer.toHexString(clientFlags));
        }
        noZeroes = (clientFlags & FLAG_C_NO_ZEROES) != 0;
        while (true) {
            ByteBuffer h = read(16);
            long magic = h.getLong();
            int option = h.getInt();
            long len = Integer.toUnsignedLong(h.getInt());
            if (magic != IHAVEOPT) {
                throw new Disconnect("bad option magic 0x" + Long.toHexString(magic));
            }
            if (len > MAX_OPTION) {
                throw new Disconnect("option " + option + " of " + len + " bytes is too large");
            }
            ByteBuffer data = read((int) len);
            Session s = option(option, data);
            if (s != null) {
                return s;
            }
        }
    }

    private Session option(int option, ByteBuffer data) throws IOException {
        if (server.isClosing() && option != OPT_ABORT) {
            reply(option, REP_ERR_SHUTDOWN, "server is shutting down");
            return null;
        }
        TlsPolicy.Verdict v = TlsPolicy.check(server.tlsMode(), tls != null, option, data.remaining());
        switch (v) {
            case GO_ON -> { }
            case START_TLS -> {
                ack(option);
                startTls();
                return null;
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

    private Session exportName(ByteBuffer data) throws IOException {
        String name = StandardCharsets.UTF_8.decode(data).toString();
        NbdExport e = server.export(name);
        if (e == null) {
            // Section "NBD_OPT_EXPORT_NAME": no way to report an error, the server MUST terminate.
            throw new Disconnect("no export named '" + name + "'");
        }
        if (!conn.reserveTransmission()) {
            throw new Disconnect("the server has its maximum of " + server.maxConnections() + " clients");
        }
        int flags = transmissionFlags(e);
        ByteBuffer b = ByteBuffer.allocate(10 + (noZeroes ? 0 : 124));
        b.putLong(e.device().size()).putShort((short) flags);
        b.position(b.capacity()).flip();
        writeFully(b);
        return session(e, name, flags);
    }

    private void list(ByteBuffer data) throws IOException {
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

    private Session infoOrGo(int option, ByteBuffer data) throws IOException {
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
        for (int i = 0; i < count; i++) {
            int t = Short.toUnsignedInt(data.getShort());
            wantName |= t == INFO_NAME;
            wantDescription |= t == INFO_DESCRIPTION;
        }
        NbdExport e = server.export(name);
        if (e == null) {
            reply(option, REP_ERR_UNKNOWN, "no export named '" + name + "'");
            return null;
        }
        if (option == OPT_GO && !conn.reserveTransmission()) {
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
        // Always sent: our minimum is stricter than the default of 1 (section "Size constraints").
        ByteBuffer bs = ByteBuffer.allocate(14);
        bs.putShort((short) INFO_BLOCK_SIZE).putInt(e.minimumBlock()).putInt(e.preferredBlock())
                .putInt(server.maxPayload()).flip();
        reply(option, REP_INFO, bs);
        ack(option);
        return option == OPT_GO ? session(e, name, flags) : null;
    }

    private void metaContext(int option, ByteBuffer data) throws IOException {
        boolean set = option == OPT_SET_META_CONTEXT;
        if (set) {
            metaExport = null; // replaced even when this request fails
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
        boolean allocation = !set && count == 0;
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
            String q = string(data, (int) qlen);
            // "base:" is a wildcard for LIST only; unknown namespaces and leaves are ignored.
            allocation |= q.equals(BASE_ALLOCATION) || (!set && q.equals("base:"));
        }
        if (data.hasRemaining()) {
            reply(option, REP_ERR_INVALID, "trailing bytes after the queries");
            return;
        }
        if (server.export(name) == null) {
            reply(option, REP_ERR_UNKNOWN, "no export named '" + name + "'");
            return;
        }
        if (allocation) {
            byte[] n = BASE_ALLOCATION.getBytes(StandardCharsets.US_ASCII);
            ByteBuffer b = ByteBuffer.allocate(4 + n.length);
            b.putInt(set ? BASE_ALLOCATION_ID : 0).put(n).flip();
            reply(option, REP_META_CONTEXT, b);
            if (set) {
                metaExport = name;
            }
        }
        ack(option);
    }

    /** True when the client was told TLS is required and never started it: a refused plain client. */
    boolean refusedPlain() {
        return tlsRequired && tls == null;
    }

    /**
     * The TLS handshake right after STARTTLS's ACK. What was negotiated in plain text is forgotten
     * (as qemu does): a man in the middle may have sent it.
     */
    private void startTls() throws IOException {
        try {
            tls = TlsChannel.handshake(ch, server.tlsCredentials().newServerSession(conn.peer()));
        } catch (TlsException e) {
            throw new TlsRefused(e.getMessage());
        }
        in = tls;
        out = tls;
        structured = false;
        metaExport = null;
        conn.tlsUp(tls);
    }

    private Session session(NbdExport e, String askedName, int flags) {
        boolean bs = structured && metaExport != null && server.export(metaExport) == e
                && metaExport.equals(askedName);
        return new Session(e, structured, noZeroes, bs, flags, tls);
    }

    /** Transmission flags for {@code e} as negotiated so far (section "Transmission flags"). */
    private int transmissionFlags(NbdExport e) {
        int f = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_WRITE_ZEROES | FLAG_SEND_FAST_ZERO
                | FLAG_CAN_MULTI_CONN | FLAG_SEND_CACHE;
        if (e.readOnly()) {
            f |= FLAG_READ_ONLY;
        }
        if (e.device().limits().discard()) {
            f |= FLAG_SEND_TRIM;
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

    private void ack(int option) throws IOException {
        reply(option, REP_ACK, (ByteBuffer) null);
    }

    private void reply(int option, int type, String message) throws IOException {
        ByteBuffer payload = null;
        if (message != null) {
            payload = ByteBuffer.wrap(message.getBytes(StandardCharsets.UTF_8));
        }
        reply(option, type, payload);
    }

    /** An option reply (section "Fixed newstyle negotiation"): magic, option, type, length, data. */
    private void reply(int option, int type, ByteBuffer payload) throws IOException {
        int n = payload == null ? 0 : payload.remaining();
        ByteBuffer b = ByteBuffer.allocate(20 + n);
        b.putLong(OPT_REPLY_MAGIC).putInt(option).putInt(type).putInt(n);
        if (payload != null) {
            b.put(payload);
        }
        b.flip();
        writeFully(b);
    }

    private ByteBuffer read(int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            if (in.read(b) < 0) {
                throw new EOFException("client closed the connection during the handshake");
            }
        }
        return b.flip();
    }

    private void writeFully(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            out.write(b);
        }
    }
}
