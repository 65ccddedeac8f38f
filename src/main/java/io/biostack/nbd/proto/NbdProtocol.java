package io.biostack.nbd.proto;

import io.biostack.block.Status;

/**
 * Constants of the NBD protocol, each from the NetworkBlockDevice/nbd specification
 * ({@code doc/proto.md}); the section is named beside each group. All fields on the wire are
 * big-endian ("network byte order").
 *
 * <pre>
 * Request (section "Request message"), 28 bytes:
 *  0        4       6       8               16              24      28
 *  +--------+-------+-------+---------------+---------------+-------+
 *  | magic  | flags | type  |    cookie     |    offset     | length| (+ length bytes for WRITE)
 *  +--------+-------+-------+---------------+---------------+-------+
 *
 * Simple reply (section "Simple reply message"), 16 bytes:
 *  0        4        8               16
 *  +--------+--------+---------------+
 *  | magic  | error  |    cookie     |  (+ length bytes for a successful READ)
 *  +--------+--------+---------------+
 *
 * Structured reply chunk (section "Structured reply chunk message"), 20 bytes:
 *  0        4       6       8               16       20
 *  +--------+-------+-------+---------------+--------+
 *  | magic  | flags | type  |    cookie     | length |  (+ length bytes of payload)
 *  +--------+-------+-------+---------------+--------+
 * </pre>
 */
public final class NbdProtocol {
    private NbdProtocol() {
    }

    /** The IANA port for NBD (section "Newstyle negotiation"). */
    public static final int DEFAULT_PORT = 10809;

    // ---- Handshake magics (sections "Newstyle negotiation", "Fixed newstyle negotiation") ----
    /** 'NBDMAGIC', the INIT_PASSWD. */
    public static final long NBDMAGIC = 0x4e42444d41474943L;
    /** 'IHAVEOPT', newstyle magic and the magic of every option request. */
    public static final long IHAVEOPT = 0x49484156454F5054L;
    /** Magic of every option reply. */
    public static final long OPT_REPLY_MAGIC = 0x3e889045565a9L;

    // ---- Handshake flags and client flags (section "Handshake flags", "Client flags") ----
    public static final int FLAG_FIXED_NEWSTYLE = 1;
    public static final int FLAG_NO_ZEROES = 1 << 1;
    public static final int FLAG_C_FIXED_NEWSTYLE = 1;
    public static final int FLAG_C_NO_ZEROES = 1 << 1;

    // ---- Transmission flags (section "Transmission flags") ----
    public static final int FLAG_HAS_FLAGS = 1;
    public static final int FLAG_READ_ONLY = 1 << 1;
    public static final int FLAG_SEND_FLUSH = 1 << 2;
    public static final int FLAG_SEND_FUA = 1 << 3;
    public static final int FLAG_ROTATIONAL = 1 << 4;
    public static final int FLAG_SEND_TRIM = 1 << 5;
    public static final int FLAG_SEND_WRITE_ZEROES = 1 << 6;
    public static final int FLAG_SEND_DF = 1 << 7;
    public static final int FLAG_CAN_MULTI_CONN = 1 << 8;
    public static final int FLAG_SEND_CACHE = 1 << 10;
    public static final int FLAG_SEND_FAST_ZERO = 1 << 11;

    // ---- Option types (section "Option types") ----
    public static final int OPT_EXPORT_NAME = 1;
    public static final int OPT_ABORT = 2;
    public static final int OPT_LIST = 3;
    public static final int OPT_STARTTLS = 5;
    public static final int OPT_INFO = 6;
    public static final int OPT_GO = 7;
    public static final int OPT_STRUCTURED_REPLY = 8;
    public static final int OPT_LIST_META_CONTEXT = 9;
    public static final int OPT_SET_META_CONTEXT = 10;
    public static final int OPT_EXTENDED_HEADERS = 11;

    // ---- Option reply types (section "Option reply types") ----
    public static final int REP_ACK = 1;
    public static final int REP_SERVER = 2;
    public static final int REP_INFO = 3;
    public static final int REP_META_CONTEXT = 4;
    public static final int REP_ERR_UNSUP = 0x8000_0001;
    public static final int REP_ERR_POLICY = 0x8000_0002;
    public static final int REP_ERR_INVALID = 0x8000_0003;
    public static final int REP_ERR_PLATFORM = 0x8000_0004;
    public static final int REP_ERR_TLS_REQD = 0x8000_0005;
    public static final int REP_ERR_UNKNOWN = 0x8000_0006;
    public static final int REP_ERR_SHUTDOWN = 0x8000_0007;
    public static final int REP_ERR_BLOCK_SIZE_REQD = 0x8000_0008;
    public static final int REP_ERR_TOO_BIG = 0x8000_0009;

    // ---- Information types of NBD_REP_INFO (section "Option reply types", NBD_REP_INFO) ----
    public static final int INFO_EXPORT = 0;
    public static final int INFO_NAME = 1;
    public static final int INFO_DESCRIPTION = 2;
    public static final int INFO_BLOCK_SIZE = 3;

    // ---- Transmission magics (sections "Request message", "Simple reply message", ...) ----
    public static final int REQUEST_MAGIC = 0x25609513;
    public static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    public static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;
    public static final int REQUEST_SIZE = 28;
    public static final int SIMPLE_REPLY_SIZE = 16;
    public static final int CHUNK_HEADER_SIZE = 20;

    // ---- Command flags (section "Command flags") ----
    public static final int CMD_FLAG_FUA = 1;
    public static final int CMD_FLAG_NO_HOLE = 1 << 1;
    public static final int CMD_FLAG_DF = 1 << 2;
    public static final int CMD_FLAG_REQ_ONE = 1 << 3;
    public static final int CMD_FLAG_FAST_ZERO = 1 << 4;

    // ---- Structured reply flags and types (sections "Structured reply flags", "... types") ----
    public static final int REPLY_FLAG_DONE = 1;
    public static final int REPLY_TYPE_NONE = 0;
    public static final int REPLY_TYPE_OFFSET_DATA = 1;
    public static final int REPLY_TYPE_OFFSET_HOLE = 2;
    public static final int REPLY_TYPE_BLOCK_STATUS = 5;
    public static final int REPLY_TYPE_ERROR = 0x8001;
    public static final int REPLY_TYPE_ERROR_OFFSET = 0x8002;

    // ---- Request types (section "Request types") ----
    public static final int CMD_READ = 0;
    public static final int CMD_WRITE = 1;
    public static final int CMD_DISC = 2;
    public static final int CMD_FLUSH = 3;
    public static final int CMD_TRIM = 4;
    public static final int CMD_CACHE = 5;
    public static final int CMD_WRITE_ZEROES = 6;
    public static final int CMD_BLOCK_STATUS = 7;

    // ---- Error values (section "Error values") ----
    public static final int EPERM = 1;
    public static final int EIO = 5;
    public static final int ENOMEM = 12;
    public static final int EINVAL = 22;
    public static final int ENOSPC = 28;
    public static final int EOVERFLOW = 75;
    public static final int ENOTSUP = 95;
    public static final int ESHUTDOWN = 108;

    /** The only metadata context this server knows (section "The base: metadata namespace"). */
    public static final String BASE_ALLOCATION = "base:allocation";
    /** Our id for base:allocation in NBD_REP_META_CONTEXT and block status chunks. */
    public static final int BASE_ALLOCATION_ID = 1;

    /** Strings (names, messages) MUST be no longer than 4096 bytes (section "Conventions"). */
    public static final int MAX_STRING = 4096;

    /**
     * The NBD error for a bio status. {@link Status#errno()} is Linux's errno; the protocol only
     * allows the values of section "Error values", so anything else is an I/O error, and a bio
     * cancelled at shutdown reports ESHUTDOWN as section "Terminating the transmission phase" asks.
     */
    public static int errorOf(Status s) {
        if (s == Status.OK) {
            return 0;
        }
        if (s == Status.CANCELLED) {
            return ESHUTDOWN;
        }
        int e = s.errno();
        return switch (e) {
            case EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN -> e;
            default -> EIO;
        };
    }

    public static String commandName(int type) {
        return switch (type) {
            case CMD_READ -> "READ";
            case CMD_WRITE -> "WRITE";
            case CMD_DISC -> "DISC";
            case CMD_FLUSH -> "FLUSH";
            case CMD_TRIM -> "TRIM";
            case CMD_CACHE -> "CACHE";
            case CMD_WRITE_ZEROES -> "WRITE_ZEROES";
            case CMD_BLOCK_STATUS -> "BLOCK_STATUS";
            default -> "command " + type;
        };
    }

    // ---- Used by the client leaf only -----------------------------------------------------------
    /** The oldstyle magic a server sends instead of IHAVEOPT (section "Oldstyle negotiation"). */
    public static final long OLDSTYLE_MAGIC = 0x00420281861253L;
    /** The bit every error reply type has (section "Option reply types"). */
    public static final int REP_FLAG_ERROR = 0x8000_0000;
    /** The bit every error chunk type has (section "Structured reply types"). */
    public static final int REPLY_TYPE_ERROR_BIT = 0x8000;
}
