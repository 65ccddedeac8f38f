package io.biostack.nbd.client;

import io.biostack.nbd.proto.NbdProtocol;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A scripted NBD server that negotiates properly (fixed newstyle, structured replies, no meta
 * context unless asked for base:allocation's, an export of {@link #SIZE} bytes) and then answers
 * the first request with whatever
 * {@link Answer} writes: garbage, a reply to a cookie never sent, an oversized chunk. Counts the
 * WRITE payload bytes it received, so a test can check that nothing was written.
 */
final class BadServer implements AutoCloseable {
    static final long SIZE = 1 << 20;

    /** Writes the reply to a request (given its cookie, type, offset and length). */
    @FunctionalInterface
    interface Answer {
        void reply(DataOutputStream out, long cookie, int type, long offset, int length) throws IOException;
    }

    private final ServerSocket listen;
    private final Answer answer;
    final AtomicInteger requests = new AtomicInteger();
    final AtomicInteger connections = new AtomicInteger();

    /** Context id it gives base:allocation when {@link #BadServer(Answer, boolean)} says so. */
    static final int META_ID = 1;
    private final boolean metaContext;

    BadServer(Answer answer) throws IOException {
        this(answer, false);
    }

    /** With {@code metaContext}, NBD_OPT_SET_META_CONTEXT selects base:allocation as {@link #META_ID}. */
    BadServer(Answer answer, boolean metaContext) throws IOException {
        this.answer = answer;
        this.metaContext = metaContext;
        this.listen = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        Thread.ofPlatform().daemon().name("bad-server").start(this::run);
    }

    String uri() {
        return "nbd://127.0.0.1:" + listen.getLocalPort() + "/";
    }

    private void run() {
        while (!listen.isClosed()) {
            try {
                Socket s = listen.accept();
                connections.incrementAndGet();
                Thread.ofPlatform().daemon().start(() -> serve(s));
            } catch (IOException e) {
                return;
            }
        }
    }

    private void serve(Socket s) {
        try (s; DataInputStream in = new DataInputStream(s.getInputStream());
             DataOutputStream out = new DataOutputStream(s.getOutputStream())) {
            out.writeLong(NbdProtocol.NBDMAGIC);
            out.writeLong(NbdProtocol.IHAVEOPT);
            out.writeShort(NbdProtocol.FLAG_FIXED_NEWSTYLE | NbdProtocol.FLAG_NO_ZEROES);
            out.flush();
            in.readInt();
            while (true) {
                in.readLong();
                int opt = in.readInt();
                int len = in.readInt();
                in.skipNBytes(len);
                if (opt == NbdProtocol.OPT_GO) {
                    optReply(out, opt, NbdProtocol.REP_INFO, 12);
                    out.writeShort(NbdProtocol.INFO_EXPORT);
                    out.writeLong(SIZE);
                    out.writeShort(NbdProtocol.FLAG_HAS_FLAGS | NbdProtocol.FLAG_SEND_FLUSH);
                    optReply(out, opt, NbdProtocol.REP_ACK, 0);
                    out.flush();
                    break;
                }
                if (opt == NbdProtocol.OPT_SET_META_CONTEXT && metaContext) {
                    byte[] name = NbdProtocol.BASE_ALLOCATION.getBytes(java.nio.charset.StandardCharsets.US_ASCII);
                    optReply(out, opt, NbdProtocol.REP_META_CONTEXT, 4 + name.length);
                    out.writeInt(META_ID);
                    out.write(name);
                }
                optReply(out, opt, NbdProtocol.REP_ACK, 0);
                out.flush();
            }
            while (true) {
                in.readInt();
                in.readShort();
                int type = in.readShort();
                long cookie = in.readLong();
                long off = in.readLong();
                int len = in.readInt();
                if (type == NbdProtocol.CMD_WRITE) {
                    in.skipNBytes(len);
                }
                if (type == NbdProtocol.CMD_DISC) {
                    return;
                }
                requests.incrementAndGet();
                answer.reply(out, cookie, type, off, len);
                out.flush();
            }
        } catch (IOException e) {
            // the client hung up
        }
    }

    private static void optReply(DataOutputStream out, int opt, int type, int len) throws IOException {
        out.writeLong(NbdProtocol.OPT_REPLY_MAGIC);
        out.writeInt(opt);
        out.writeInt(type);
        out.writeInt(len);
    }

    @Override
    public void close() throws IOException {
        listen.close();
    }
}
