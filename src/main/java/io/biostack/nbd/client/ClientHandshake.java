package io.biostack.nbd.client;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

import static io.biostack.nbd.proto.NbdProtocol.*;

/**
 * The client side of fixed newstyle negotiation (doc/proto.md, "Fixed newstyle negotiation"):
 * the greeting, client flags, NBD_OPT_STRUCTURED_REPLY, NBD_OPT_SET_META_CONTEXT for
 * {@code base:allocation}, then NBD_OPT_GO asking for NBD_INFO_BLOCK_SIZE. Runs once per
 * (re)connection on the thread that connects; allocates freely (not the I/O path).
 */
final class ClientHandshake {
    /** Largest option reply we accept: a string of 4096 bytes plus headers, with room to spare. */
    private static final int MAX_OPTION_REPLY = 64 * 1024;

    /**
     * What the server said about the export.
     *
     * @param size       bytes
     * @param flags      transmission flags
     * @param minBlock   minimum block size (1 when the server gave none)
     * @param prefBlock  preferred block size
     * @param maxBlock   maximum payload (32 MiB when the server gave none, as the spec suggests)
     * @param structured structured replies were negotiated
     * @param metaId     the context id of base:allocation, or -1 when not negotiated
     */
    record ExportInfo(long size, int flags, int minBlock, int prefBlock, int maxBlock, boolean structured, int metaId) {
        boolean has(int flag) {
            return (flags & flag) != 0;
        }
    }

    /** Thrown for a server that answered but refused (wrong export, policy): no point retrying soon. */
    static final class Refused extends IOException {
        Refused(String why) {
            super(why);
        }
    }

    private final Transport t;
    private final String export;
    private final long deadline;

    private ClientHandshake(Transport t, String export, long deadline) {
        this.t = t;
        this.export = export;
        this.deadline = deadline;
    }

    /**
     * Negotiates {@code export} on a freshly connected {@code t} by {@code deadline}
     * (System.nanoTime). {@code tlsStart}, when not null, is called right after a successful
     * NBD_OPT_STARTTLS and returns the transport to continue on.
     */
    static Negotiated negotiate(Transport t, String export, long deadline, TlsStarter tlsStart) throws IOException {
        ClientHandshake h = new ClientHandshake(t, export, deadline);
        ExportInfo info = h.run(tlsStart);
        return new Negotiated(h.tr, info);
    }

    /** The transport to use from now on (the TLS one when STARTTLS ran) and the export. */
    record Negotiated(Transport transport, ExportInfo info) {
    }

    /** Upgrades a transport to TLS after NBD_OPT_STARTTLS was acknowledged. */
    @FunctionalInterface
    interface TlsStarter {
        Transport start(Transport plain, long deadline) throws IOException;
    }

    private Transport tr;

    private ExportInfo run(TlsStarter tlsStart) throws IOException {
        tr = t;
        ByteBuffer hello = ByteBuffer.allocate(18);
        tr.readFully(hello, deadline);
        hello.flip();
        long magic = hello.getLong();
        if (magic != NBDMAGIC) {
            throw new Refused("not an NBD server (greeting 0x" + Long.toHexString(magic) + ")");
        }
        long opt = hello.getLong();
        if (opt == OLDSTYLE_MAGIC) {
            throw new Refused("the server speaks oldstyle negotiation, which has no export names; only newstyle is supported");
        }
        if (opt != IHAVEOPT) {
            throw new Refused("not an NBD server (bad newstyle magic 0x" + Long.toHexString(opt) + ")");
        }
        int hflags = Short.toUnsignedInt(hello.getShort());
        if ((hflags & FLAG_FIXED_NEWSTYLE) == 0) {
            throw new Refused("the server does not offer fixed newstyle negotiation");
        }
        int cflags = FLAG_C_FIXED_NEWSTYLE | ((hflags & FLAG_NO_ZEROES) != 0 ? FLAG_C_NO_ZEROES : 0);
        tr.writeFully(ByteBuffer.allocate(4).putInt(cflags).flip(), deadline);

        if (tlsStart != null) {
            sendOption(OPT_STARTTLS, ByteBuffer.allocate(0));
            Reply r = readReply(OPT_STARTTLS);
            if (r.type != REP_ACK) {
                throw new Refused("the server refused TLS (" + describe(r) + ")");
            }
            tr = tlsStart.start(tr, deadline);
        }

        boolean structured;
        sendOption(OPT_STRUCTURED_REPLY, ByteBuffer.allocate(0));
        Reply sr = readReply(OPT_STRUCTURED_REPLY);
        if (sr.type == REP_ACK) {
            structured = true;
        } else if (sr.type == REP_ERR_TLS_REQD) {
            throw new Refused("the server requires TLS: use an nbds:// URI");
        } else if ((sr.type & REP_FLAG_ERROR) != 0) {
            structured = false;
        } else {
            throw new IOException("unexpected reply " + describe(sr) + " to NBD_OPT_STRUCTURED_REPLY");
        }

        byte[] name = export.getBytes(StandardCharsets.UTF_8);
        int metaId = -1;
        if (structured) {
            byte[] q = BASE_ALLOCATION.getBytes(StandardCharsets.US_ASCII);
            ByteBuffer b = ByteBuffer.allocate(4 + name.length + 4 + 4 + q.length);
            b.putInt(name.length).put(name).putInt(1).putInt(q.length).put(q).flip();
            sendOption(OPT_SET_META_CONTEXT, b);
            while (true) {
                Reply r = readReply(OPT_SET_META_CONTEXT);
                if (r.type == REP_META_CONTEXT) {
                    if (r.data.remaining() < 4) {
                        throw new IOException("short NBD_REP_META_CONTEXT");
                    }
                    int id = r.data.getInt();
                    String ctx = StandardCharsets.UTF_8.decode(r.data).toString();
                    if (ctx.equals(BASE_ALLOCATION)) {
                        metaId = id;
                    }
                } else if (r.type == REP_ACK || (r.type & REP_FLAG_ERROR) != 0) {
                    break; // an error just means no block status
                } else {
                    throw new IOException("unexpected reply " + describe(r) + " to NBD_OPT_SET_META_CONTEXT");
                }
            }
        }

        ByteBuffer go = ByteBuffer.allocate(4 + name.length + 2 + 2);
        go.putInt(name.length).put(name).putShort((short) 1).putShort((short) INFO_BLOCK_SIZE).flip();
        sendOption(OPT_GO, go);
        long size = -1;
        int tflags = 0;
        int min = 1;
        int pref = 4096;
        int max = 32 << 20;
        while (true) {
            Reply r = readReply(OPT_GO);
            if (r.type == REP_INFO) {
                if (r.data.remaining() < 2) {
                    throw new IOException("short NBD_REP_INFO");
                }
                int info = Short.toUnsignedInt(r.data.getShort());
                if (info == INFO_EXPORT && r.data.remaining() >= 10) {
                    size = r.data.getLong();
                    tflags = Short.toUnsignedInt(r.data.getShort());
                } else if (info == INFO_BLOCK_SIZE && r.data.remaining() >= 12) {
                    min = r.data.getInt();
                    pref = r.data.getInt();
                    // Unsigned: 0xffffffff means "no fixed limit" (doc/proto.md, "Size
                    // constraints"), so anything past int's range is no limit (MAX_DATA caps it).
                    max = (int) Math.min(Integer.toUnsignedLong(r.data.getInt()), Integer.MAX_VALUE);
                }
            } else if (r.type == REP_ACK) {
                break;
            } else if (r.type == REP_ERR_UNKNOWN) {
                throw new Refused("the server has no export '" + export + "'" + message(r));
            } else if (r.type == REP_ERR_TLS_REQD) {
                throw new Refused("the server requires TLS: use an nbds:// URI" + message(r));
            } else if ((r.type & REP_FLAG_ERROR) != 0) {
                throw new Refused("the server refused export '" + export + "' (" + describe(r) + ")");
            } else {
                throw new IOException("unexpected reply " + describe(r) + " to NBD_OPT_GO");
            }
        }
        if (size < 0) {
            throw new IOException("the server acknowledged NBD_OPT_GO without NBD_INFO_EXPORT");
        }
        if (min < 1 || Integer.bitCount(min) != 1 || min > 64 * 1024 || max < min) {
            throw new IOException("the server sent impossible block sizes min=" + min + " preferred=" + pref + " max=" + max);
        }
        tr.startTransmission();
        return new ExportInfo(size, tflags, min, pref, max, structured, metaId);
    }

    private void sendOption(int option, ByteBuffer data) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(16 + data.remaining());
        b.putLong(IHAVEOPT).putInt(option).putInt(data.remaining()).put(data).flip();
        tr.writeFully(b, deadline);
    }

    private record Reply(int type, ByteBuffer data) {
    }

    private Reply readReply(int option) throws IOException {
        ByteBuffer h = ByteBuffer.allocate(20);
        tr.readFully(h, deadline);
        h.flip();
        long magic = h.getLong();
        int opt = h.getInt();
        int type = h.getInt();
        int len = h.getInt();
        if (magic != OPT_REPLY_MAGIC) {
            throw new IOException("bad option reply magic 0x" + Long.toHexString(magic));
        }
        if (opt != option) {
            throw new IOException("the server answered option " + opt + " when asked " + option);
        }
        if (len < 0 || len > MAX_OPTION_REPLY) {
            throw new IOException("option reply of " + Integer.toUnsignedString(len) + " bytes is too long");
        }
        ByteBuffer d = ByteBuffer.allocate(len);
        tr.readFully(d, deadline);
        d.flip();
        return new Reply(type, d);
    }

    private static String message(Reply r) {
        String m = StandardCharsets.UTF_8.decode(r.data.duplicate()).toString();
        return m.isEmpty() ? "" : ": " + m;
    }

    private static String describe(Reply r) {
        String n = switch (r.type) {
            case REP_ACK -> "ACK";
            case REP_ERR_UNSUP -> "NBD_REP_ERR_UNSUP";
            case REP_ERR_POLICY -> "NBD_REP_ERR_POLICY";
            case REP_ERR_TLS_REQD -> "NBD_REP_ERR_TLS_REQD";
            case REP_ERR_UNKNOWN -> "NBD_REP_ERR_UNKNOWN";
            default -> "reply type 0x" + Integer.toHexString(r.type);
        };
        return n + message(r);
    }
}
