package io.biostack.nbd;

import io.biostack.nbd.tls.TlsChannel;
import io.biostack.nbd.tls.TlsCredentials;

import java.io.EOFException;
import java.io.IOException;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static io.biostack.nbd.proto.NbdProtocol.*;

/**
 * A small NBD client for protocol tests: speaks the handshake and transmission phase byte by byte
 * from a raw socket, so tests can send what real clients never would. Blocking; tests put a
 * timeout on themselves.
 */
final class RawNbdClient implements AutoCloseable {
    final SocketChannel ch;
    /** Where bytes go: the socket, or a TLS channel over it after {@link #startTls}. */
    java.nio.channels.ByteChannel io;
    /** Set by {@link #go}: export size and transmission flags. */
    long size;
    int transmissionFlags;
    int minBlock;
    int prefBlock;
    int maxPayload;
    boolean structured;

    private RawNbdClient(SocketChannel ch) {
        this.ch = ch;
        this.io = ch;
    }

    static RawNbdClient connect(java.net.SocketAddress a) throws IOException {
        return new RawNbdClient(SocketChannel.open(a));
    }

    /** NBD_OPT_STARTTLS, its ACK, then the TLS handshake; everything after goes through TLS. */
    void startTls(TlsCredentials creds) throws IOException {
        option(OPT_STARTTLS, new byte[0]);
        expectType(optionReply(), REP_ACK);
        io = TlsChannel.handshake(ch, creds.newClientSession("localhost"));
    }

    /** The same with a session made by the caller (a TLS version held, say). */
    void startTls(io.biostack.nbd.tls.TlsSession session) throws IOException {
        option(OPT_STARTTLS, new byte[0]);
        expectType(optionReply(), REP_ACK);
        io = TlsChannel.handshake(ch, session);
    }

    static RawNbdClient connect(Path socket) throws IOException {
        return new RawNbdClient(SocketChannel.open(UnixDomainSocketAddress.of(socket)));
    }

    /** Connects, reads the greeting, sends {@code clientFlags}. */
    static RawNbdClient handshake(Path socket, int clientFlags) throws IOException {
        RawNbdClient c = connect(socket);
        ByteBuffer g = c.read(18);
        if (g.getLong() != NBDMAGIC || g.getLong() != IHAVEOPT) {
            throw new IOException("bad greeting");
        }
        c.writeInt(clientFlags);
        return c;
    }

    /**
     * Connects and enters transmission with NBD_OPT_GO on {@code export}; optionally negotiates
     * structured replies and base:allocation first.
     */
    static RawNbdClient open(Path socket, String export, boolean structured, boolean metaContext) throws IOException {
        RawNbdClient c = handshake(socket, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
        if (structured) {
            c.option(OPT_STRUCTURED_REPLY, new byte[0]);
            c.expectType(c.optionReply(), REP_ACK);
            c.structured = true;
        }
        if (metaContext) {
            c.option(OPT_SET_META_CONTEXT, metaRequest(export, BASE_ALLOCATION));
            c.expectType(c.optionReply(), REP_META_CONTEXT);
            c.expectType(c.optionReply(), REP_ACK);
        }
        c.go(OPT_GO, export, INFO_BLOCK_SIZE);
        return c;
    }

    // ---- handshake ---------------------------------------------------------------------------

    record OptReply(int option, int type, byte[] data) {
        ByteBuffer buf() {
            return ByteBuffer.wrap(data);
        }

        String text() {
            return new String(data, StandardCharsets.UTF_8);
        }
    }

    void option(int option, byte[] data) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(16 + data.length);
        b.putLong(IHAVEOPT).putInt(option).putInt(data.length).put(data).flip();
        write(b);
    }

    /** An option header that claims {@code length} bytes, without sending them. */
    void optionHeader(long magic, int option, int length) throws IOException {
        write(ByteBuffer.allocate(16).putLong(magic).putInt(option).putInt(length).flip());
    }

    OptReply optionReply() throws IOException {
        ByteBuffer h = read(20);
        long magic = h.getLong();
        if (magic != OPT_REPLY_MAGIC) {
            throw new IOException("bad option reply magic 0x" + Long.toHexString(magic));
        }
        int opt = h.getInt();
        int type = h.getInt();
        int len = h.getInt();
        byte[] d = new byte[len];
        read(len).get(d);
        return new OptReply(opt, type, d);
    }

    OptReply expectType(OptReply r, int type) throws IOException {
        if (r.type() != type) {
            throw new IOException("expected reply type 0x" + Integer.toHexString(type) + " but got 0x"
                    + Integer.toHexString(r.type()) + " " + r.text());
        }
        return r;
    }

    /** NBD_OPT_INFO / NBD_OPT_GO data. */
    static byte[] infoRequest(String export, int... infos) {
        byte[] n = export.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(4 + n.length + 2 + 2 * infos.length);
        b.putInt(n.length).put(n).putShort((short) infos.length);
        for (int i : infos) {
            b.putShort((short) i);
        }
        return b.array();
    }

    /** LIST/SET_META_CONTEXT data. */
    static byte[] metaRequest(String export, String... queries) {
        byte[] n = export.getBytes(StandardCharsets.UTF_8);
        int len = 4 + n.length + 4;
        for (String q : queries) {
            len += 4 + q.getBytes(StandardCharsets.UTF_8).length;
        }
        ByteBuffer b = ByteBuffer.allocate(len);
        b.putInt(n.length).put(n).putInt(queries.length);
        for (String q : queries) {
            byte[] qb = q.getBytes(StandardCharsets.UTF_8);
            b.putInt(qb.length).put(qb);
        }
        return b.array();
    }

    /** Sends INFO or GO and reads the replies up to the final one, which it returns. */
    List<OptReply> go(int option, String export, int... infos) throws IOException {
        option(option, infoRequest(export, infos));
        List<OptReply> all = new ArrayList<>();
        while (true) {
            OptReply r = optionReply();
            all.add(r);
            if (r.type() == REP_INFO) {
                ByteBuffer b = r.buf();
                int t = Short.toUnsignedInt(b.getShort());
                if (t == INFO_EXPORT) {
                    size = b.getLong();
                    transmissionFlags = Short.toUnsignedInt(b.getShort());
                } else if (t == INFO_BLOCK_SIZE) {
                    minBlock = b.getInt();
                    prefBlock = b.getInt();
                    maxPayload = b.getInt();
                }
                continue;
            }
            if (r.type() != REP_ACK && option == OPT_GO && (r.type() & 0x8000_0000) == 0) {
                throw new IOException("unexpected reply " + r.type());
            }
            return all;
        }
    }

    // ---- transmission ------------------------------------------------------------------------

    void request(int flags, int type, long cookie, long offset, long length) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(REQUEST_SIZE);
        b.putInt(REQUEST_MAGIC).putShort((short) flags).putShort((short) type).putLong(cookie).putLong(offset)
                .putInt((int) length).flip();
        write(b);
    }

    void write(int flags, long cookie, long offset, byte[] data) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(REQUEST_SIZE + data.length);
        b.putInt(REQUEST_MAGIC).putShort((short) flags).putShort((short) CMD_WRITE).putLong(cookie).putLong(offset)
                .putInt(data.length).put(data).flip();
        write(b);
    }

    /** A reply of either kind; for simple replies to READ give the data length to expect. */
    record Reply(boolean simple, int error, long cookie, int flags, int type, byte[] payload) {
        boolean done() {
            return simple || (flags & REPLY_FLAG_DONE) != 0;
        }

        ByteBuffer buf() {
            return ByteBuffer.wrap(payload);
        }

        /** The error of a simple reply or of an error chunk, else 0. */
        int errorCode() {
            if (simple) {
                return error;
            }
            if ((type & 0x8000) != 0) {
                return buf().getInt();
            }
            return 0;
        }
    }

    Reply reply(int simpleReadLength) throws IOException {
        ByteBuffer m = read(4);
        int magic = m.getInt();
        if (magic == SIMPLE_REPLY_MAGIC) {
            ByteBuffer h = read(12);
            int err = h.getInt();
            long cookie = h.getLong();
            byte[] d = new byte[err == 0 ? simpleReadLength : 0];
            read(d.length).get(d);
            return new Reply(true, err, cookie, 0, 0, d);
        }
        if (magic == STRUCTURED_REPLY_MAGIC) {
            ByteBuffer h = read(16);
            int flags = Short.toUnsignedInt(h.getShort());
            int type = Short.toUnsignedInt(h.getShort());
            long cookie = h.getLong();
            int len = h.getInt();
            byte[] d = new byte[len];
            read(len).get(d);
            return new Reply(false, 0, cookie, flags, type, d);
        }
        throw new IOException("bad reply magic 0x" + Integer.toHexString(magic));
    }

    /** A reply to a non-READ request; returns its error (0 = success). */
    int replyError(long cookie) throws IOException {
        Reply r = reply(0);
        if (r.cookie() != cookie) {
            throw new IOException("reply for cookie " + r.cookie() + ", expected " + cookie);
        }
        if (!r.done()) {
            throw new IOException("more chunks than expected");
        }
        return r.errorCode();
    }

    /** All chunks of one structured reply (until DONE). */
    List<Reply> chunks(long cookie) throws IOException {
        List<Reply> l = new ArrayList<>();
        while (true) {
            Reply r = reply(0);
            if (r.cookie() != cookie) {
                throw new IOException("reply for cookie " + r.cookie() + ", expected " + cookie);
            }
            l.add(r);
            if (r.done()) {
                return l;
            }
        }
    }

    /** Reads and returns {@code length} bytes (structured or simple, whichever was negotiated). */
    byte[] read(long offset, int length) throws IOException {
        long cookie = System.nanoTime();
        request(0, CMD_READ, cookie, offset, length);
        if (!structured) {
            Reply r = reply(length);
            if (r.error() != 0) {
                throw new IOException("READ failed with error " + r.error());
            }
            return r.payload();
        }
        byte[] out = new byte[length];
        for (Reply r : chunks(cookie)) {
            ByteBuffer b = r.buf();
            switch (r.type()) {
                case REPLY_TYPE_OFFSET_DATA -> {
                    long off = b.getLong();
                    b.get(out, (int) (off - offset), b.remaining());
                }
                case REPLY_TYPE_OFFSET_HOLE -> b.getLong();
                case REPLY_TYPE_NONE -> { }
                default -> throw new IOException("READ failed with error " + r.errorCode());
            }
        }
        return out;
    }

    int writeAndWait(long offset, byte[] data) throws IOException {
        long cookie = System.nanoTime();
        write(0, cookie, offset, data);
        return replyError(cookie);
    }

    int command(int flags, int type, long offset, long length) throws IOException {
        long cookie = System.nanoTime();
        request(flags, type, cookie, offset, length);
        return replyError(cookie);
    }

    /** Sends a request and returns the error of its reply, for requests that get no data back. */
    int reply(int flags, int type, long offset, long length) throws IOException {
        long cookie = System.nanoTime();
        request(flags, type, cookie, offset, length);
        return replyError(cookie);
    }

    void disconnect() throws IOException {
        request(0, CMD_DISC, 0, 0, 0);
    }

    /** True when the server closed the connection (EOF or reset) within the test's timeout. */
    boolean closedByServer() {
        try {
            ByteBuffer b = ByteBuffer.allocate(1);
            while (true) {
                int n = io.read(b);
                if (n < 0) {
                    return true;
                }
                b.clear();
            }
        } catch (IOException e) {
            return true;
        }
    }

    // ---- bytes -----------------------------------------------------------------------------

    ByteBuffer read(int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            if (io.read(b) < 0) {
                throw new EOFException("server closed the connection");
            }
        }
        return b.flip();
    }

    void writeInt(int v) throws IOException {
        write(ByteBuffer.allocate(4).putInt(v).flip());
    }

    void write(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            io.write(b);
        }
    }

    @Override
    public void close() throws IOException {
        ch.close();
    }
}
