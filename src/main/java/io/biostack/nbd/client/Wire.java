package io.biostack.nbd.client;

/**
 * The parts of the NBD protocol a client speaks, each from the NetworkBlockDevice/nbd
 * specification ({@code doc/proto.md}); the section is named beside each group. Everything on the
 * wire is big-endian. (The server's copy, {@code io.biostack.nbd.NbdProtocol}, is private to its
 * package; these are the same numbers from the same spec.)
 *
 * <pre>
 * Request (section "Request message"), 28 bytes, + length bytes for WRITE:
 *  0        4       6       8               16              24      28
 *  | magic  | flags | type  |    cookie     |    offset     | length|
 *
 * Simple reply (section "Simple reply message"), 16 bytes, + length bytes for a good READ:
 *  0        4        8               16
 *  | magic  | error  |    cookie     |
 *
 * Structured reply chunk (section "Structured reply chunk message"), 20 bytes + payload:
 *  0        4       6       8               16       20
 *  | magic  | flags | type  |    cookie     | length |
 * </pre>
 */
final class Wire {
    private Wire() {
    }

    // ---- Handshake (sections "Newstyle negotiation", "Fixed newstyle negotiation") ----
    static final long NBDMAGIC = 0x4e42444d41474943L;
    static final long IHAVEOPT = 0x49484156454F5054L;
    /** The oldstyle magic a server sends instead of IHAVEOPT (section "Oldstyle negotiation"). */
    static final long OLDSTYLE_MAGIC = 0x00420281861253L;
    static final long OPT_REPLY_MAGIC = 0x3e889045565a9L;
    static final int FLAG_FIXED_NEWSTYLE = 1;
    static final int FLAG_NO_ZEROES = 1 << 1;
    static final int FLAG_C_FIXED_NEWSTYLE = 1;
    static final int FLAG_C_NO_ZEROES = 1 << 1;

    // ---- Transmission flags (section "Transmission flags") ----
    static final int FLAG_HAS_FLAGS = 1;
    static final int FLAG_READ_ONLY = 1 << 1;
    static final int FLAG_SEND_FLUSH = 1 << 2;
    static final int FLAG_SEND_FUA = 1 << 3;
    static final int FLAG_SEND_TRIM = 1 << 5;
    static final int FLAG_SEND_WRITE_ZEROES = 1 << 6;
    static final int FLAG_CAN_MULTI_CONN = 1 << 8;
    static final int FLAG_SEND_CACHE = 1 << 10;

    // ---- Options and replies (sections "Option types", "Option reply types") ----
    static final int OPT_ABORT = 2;
    static final int OPT_STARTTLS = 5;
    static final int OPT_GO = 7;
    static final int OPT_STRUCTURED_REPLY = 8;
    static final int OPT_SET_META_CONTEXT = 10;
    static final int REP_ACK = 1;
    static final int REP_INFO = 3;
    static final int REP_META_CONTEXT = 4;
    static final int REP_FLAG_ERROR = 0x8000_0000;
    static final int REP_ERR_UNSUP = 0x8000_0001;
    static final int REP_ERR_POLICY = 0x8000_0002;
    static final int REP_ERR_TLS_REQD = 0x8000_0005;
    static final int REP_ERR_UNKNOWN = 0x8000_0006;
    static final int INFO_EXPORT = 0;
    static final int INFO_BLOCK_SIZE = 3;

    // ---- Transmission (sections "Request message", "Simple reply message", ...) ----
    static final int REQUEST_MAGIC = 0x25609513;
    static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;
    static final int REQUEST_SIZE = 28;
    static final int SIMPLE_REPLY_SIZE = 16;
    static final int CHUNK_HEADER_SIZE = 20;

    // ---- Command flags (section "Command flags") ----
    static final int CMD_FLAG_FUA = 1;
    static final int CMD_FLAG_NO_HOLE = 1 << 1;
    static final int CMD_FLAG_REQ_ONE = 1 << 3;

    // ---- Structured replies (sections "Structured reply flags", "Structured reply types") ----
    static final int REPLY_FLAG_DONE = 1;
    static final int REPLY_TYPE_NONE = 0;
    static final int REPLY_TYPE_OFFSET_DATA = 1;
    static final int REPLY_TYPE_OFFSET_HOLE = 2;
    static final int REPLY_TYPE_BLOCK_STATUS = 5;
    static final int REPLY_TYPE_ERROR = 0x8001;
    static final int REPLY_TYPE_ERROR_OFFSET = 0x8002;
    /** Bit 15 of a reply type marks an error chunk, known or not (section "Structured reply types"). */
    static final int REPLY_TYPE_ERROR_BIT = 0x8000;

    // ---- Request types (section "Request types") ----
    static final int CMD_READ = 0;
    static final int CMD_WRITE = 1;
    static final int CMD_DISC = 2;
    static final int CMD_FLUSH = 3;
    static final int CMD_TRIM = 4;
    static final int CMD_CACHE = 5;
    static final int CMD_WRITE_ZEROES = 6;
    static final int CMD_BLOCK_STATUS = 7;

    /** ESHUTDOWN (section "Error values"): the server is going away; the request is reissued. */
    static final int ESHUTDOWN = 108;

    /** Section "The base: metadata namespace". */
    static final String BASE_ALLOCATION = "base:allocation";

    /** Strings MUST be no longer than 4096 bytes (section "Conventions"). */
    static final int MAX_STRING = 4096;

    static String commandName(int type) {
        return switch (type) {
            case CMD_READ -> "READ";
            case CMD_WRITE -> "WRITE";
            case CMD_FLUSH -> "FLUSH";
            case CMD_TRIM -> "TRIM";
            case CMD_CACHE -> "CACHE";
            case CMD_WRITE_ZEROES -> "WRITE_ZEROES";
            case CMD_BLOCK_STATUS -> "BLOCK_STATUS";
            default -> "command " + type;
        };
    }
}
