package io.biostack.uring;

/**
 * Constants of the io_uring ABI, from include/uapi/linux/io_uring.h (Linux 6.18) unless a
 * comment names another file. Grouped by the field they go into. Opcodes are the positions in
 * {@code enum io_uring_op}; a kernel that lacks one fails the SQE with -EINVAL, so check
 * {@link IoUring#probe()} before relying on anything newer than READ/WRITE (5.6).
 */
public final class IoUringConstants {
    private IoUringConstants() {
    }

    // ---- sqe->opcode: enum io_uring_op ------------------------------------------------------
    /** io_uring.h enum io_uring_op: IORING_OP_NOP = 0. */
    public static final int IORING_OP_NOP = 0;
    /** io_uring.h enum io_uring_op: IORING_OP_READV = 1. */
    public static final int IORING_OP_READV = 1;
    /** io_uring.h enum io_uring_op: IORING_OP_WRITEV = 2. */
    public static final int IORING_OP_WRITEV = 2;
    /** io_uring.h enum io_uring_op: IORING_OP_FSYNC = 3. */
    public static final int IORING_OP_FSYNC = 3;
    /** io_uring.h enum io_uring_op: IORING_OP_READ_FIXED = 4. */
    public static final int IORING_OP_READ_FIXED = 4;
    /** io_uring.h enum io_uring_op: IORING_OP_WRITE_FIXED = 5. */
    public static final int IORING_OP_WRITE_FIXED = 5;
    /** io_uring.h enum io_uring_op: IORING_OP_POLL_ADD = 6. */
    public static final int IORING_OP_POLL_ADD = 6;
    /** io_uring.h enum io_uring_op: IORING_OP_POLL_REMOVE = 7. */
    public static final int IORING_OP_POLL_REMOVE = 7;
    /** io_uring.h enum io_uring_op: IORING_OP_SYNC_FILE_RANGE = 8. */
    public static final int IORING_OP_SYNC_FILE_RANGE = 8;
    /** io_uring.h enum io_uring_op: IORING_OP_SENDMSG = 9. */
    public static final int IORING_OP_SENDMSG = 9;
    /** io_uring.h enum io_uring_op: IORING_OP_RECVMSG = 10. */
    public static final int IORING_OP_RECVMSG = 10;
    /** io_uring.h enum io_uring_op: IORING_OP_TIMEOUT = 11. */
    public static final int IORING_OP_TIMEOUT = 11;
    /** io_uring.h enum io_uring_op: IORING_OP_TIMEOUT_REMOVE = 12. */
    public static final int IORING_OP_TIMEOUT_REMOVE = 12;
    /** io_uring.h enum io_uring_op: IORING_OP_ACCEPT = 13. */
    public static final int IORING_OP_ACCEPT = 13;
    /** io_uring.h enum io_uring_op: IORING_OP_ASYNC_CANCEL = 14. */
    public static final int IORING_OP_ASYNC_CANCEL = 14;
    /** io_uring.h enum io_uring_op: IORING_OP_LINK_TIMEOUT = 15. */
    public static final int IORING_OP_LINK_TIMEOUT = 15;
    /** io_uring.h enum io_uring_op: IORING_OP_CONNECT = 16. */
    public static final int IORING_OP_CONNECT = 16;
    /** io_uring.h enum io_uring_op: IORING_OP_FALLOCATE = 17. */
    public static final int IORING_OP_FALLOCATE = 17;
    /** io_uring.h enum io_uring_op: IORING_OP_OPENAT = 18. */
    public static final int IORING_OP_OPENAT = 18;
    /** io_uring.h enum io_uring_op: IORING_OP_CLOSE = 19. */
    public static final int IORING_OP_CLOSE = 19;
    /** io_uring.h enum io_uring_op: IORING_OP_FILES_UPDATE = 20. */
    public static final int IORING_OP_FILES_UPDATE = 20;
    /** io_uring.h enum io_uring_op: IORING_OP_STATX = 21. */
    public static final int IORING_OP_STATX = 21;
    /** io_uring.h enum io_uring_op: IORING_OP_READ = 22. */
    public static final int IORING_OP_READ = 22;
    /** io_uring.h enum io_uring_op: IORING_OP_WRITE = 23. */
    public static final int IORING_OP_WRITE = 23;
    /** io_uring.h enum io_uring_op: IORING_OP_FADVISE = 24. */
    public static final int IORING_OP_FADVISE = 24;
    /** io_uring.h enum io_uring_op: IORING_OP_MADVISE = 25. */
    public static final int IORING_OP_MADVISE = 25;
    /** io_uring.h enum io_uring_op: IORING_OP_SEND = 26. */
    public static final int IORING_OP_SEND = 26;
    /** io_uring.h enum io_uring_op: IORING_OP_RECV = 27. */
    public static final int IORING_OP_RECV = 27;
    /** io_uring.h enum io_uring_op: IORING_OP_OPENAT2 = 28. */
    public static final int IORING_OP_OPENAT2 = 28;
    /** io_uring.h enum io_uring_op: IORING_OP_EPOLL_CTL = 29. */
    public static final int IORING_OP_EPOLL_CTL = 29;
    /** io_uring.h enum io_uring_op: IORING_OP_SPLICE = 30. */
    public static final int IORING_OP_SPLICE = 30;
    /** io_uring.h enum io_uring_op: IORING_OP_PROVIDE_BUFFERS = 31. */
    public static final int IORING_OP_PROVIDE_BUFFERS = 31;
    /** io_uring.h enum io_uring_op: IORING_OP_REMOVE_BUFFERS = 32. */
    public static final int IORING_OP_REMOVE_BUFFERS = 32;
    /** io_uring.h enum io_uring_op: IORING_OP_TEE = 33. */
    public static final int IORING_OP_TEE = 33;
    /** io_uring.h enum io_uring_op: IORING_OP_SHUTDOWN = 34. */
    public static final int IORING_OP_SHUTDOWN = 34;
    /** io_uring.h enum io_uring_op: IORING_OP_RENAMEAT = 35. */
    public static final int IORING_OP_RENAMEAT = 35;
    /** io_uring.h enum io_uring_op: IORING_OP_UNLINKAT = 36. */
    public static final int IORING_OP_UNLINKAT = 36;
    /** io_uring.h enum io_uring_op: IORING_OP_MKDIRAT = 37. */
    public static final int IORING_OP_MKDIRAT = 37;
    /** io_uring.h enum io_uring_op: IORING_OP_SYMLINKAT = 38. */
    public static final int IORING_OP_SYMLINKAT = 38;
    /** io_uring.h enum io_uring_op: IORING_OP_LINKAT = 39. */
    public static final int IORING_OP_LINKAT = 39;
    /** io_uring.h enum io_uring_op: IORING_OP_MSG_RING = 40. */
    public static final int IORING_OP_MSG_RING = 40;
    /** io_uring.h enum io_uring_op: IORING_OP_FSETXATTR = 41. */
    public static final int IORING_OP_FSETXATTR = 41;
    /** io_uring.h enum io_uring_op: IORING_OP_SETXATTR = 42. */
    public static final int IORING_OP_SETXATTR = 42;
    /** io_uring.h enum io_uring_op: IORING_OP_FGETXATTR = 43. */
    public static final int IORING_OP_FGETXATTR = 43;
    /** io_uring.h enum io_uring_op: IORING_OP_GETXATTR = 44. */
    public static final int IORING_OP_GETXATTR = 44;
    /** io_uring.h enum io_uring_op: IORING_OP_SOCKET = 45. */
    public static final int IORING_OP_SOCKET = 45;
    /** io_uring.h enum io_uring_op: IORING_OP_URING_CMD = 46. */
    public static final int IORING_OP_URING_CMD = 46;
    /** io_uring.h enum io_uring_op: IORING_OP_SEND_ZC = 47. */
    public static final int IORING_OP_SEND_ZC = 47;
    /** io_uring.h enum io_uring_op: IORING_OP_SENDMSG_ZC = 48. */
    public static final int IORING_OP_SENDMSG_ZC = 48;
    /** io_uring.h enum io_uring_op: IORING_OP_READ_MULTISHOT = 49. */
    public static final int IORING_OP_READ_MULTISHOT = 49;
    /** io_uring.h enum io_uring_op: IORING_OP_WAITID = 50. */
    public static final int IORING_OP_WAITID = 50;
    /** io_uring.h enum io_uring_op: IORING_OP_FUTEX_WAIT = 51. */
    public static final int IORING_OP_FUTEX_WAIT = 51;
    /** io_uring.h enum io_uring_op: IORING_OP_FUTEX_WAKE = 52. */
    public static final int IORING_OP_FUTEX_WAKE = 52;
    /** io_uring.h enum io_uring_op: IORING_OP_FUTEX_WAITV = 53. */
    public static final int IORING_OP_FUTEX_WAITV = 53;
    /** io_uring.h enum io_uring_op: IORING_OP_FIXED_FD_INSTALL = 54. */
    public static final int IORING_OP_FIXED_FD_INSTALL = 54;
    /** io_uring.h enum io_uring_op: IORING_OP_FTRUNCATE = 55. */
    public static final int IORING_OP_FTRUNCATE = 55;
    /** io_uring.h enum io_uring_op: IORING_OP_BIND = 56. */
    public static final int IORING_OP_BIND = 56;
    /** io_uring.h enum io_uring_op: IORING_OP_LISTEN = 57. */
    public static final int IORING_OP_LISTEN = 57;
    /** io_uring.h enum io_uring_op: IORING_OP_RECV_ZC = 58. */
    public static final int IORING_OP_RECV_ZC = 58;
    /** io_uring.h enum io_uring_op: IORING_OP_EPOLL_WAIT = 59. */
    public static final int IORING_OP_EPOLL_WAIT = 59;
    /** io_uring.h enum io_uring_op: IORING_OP_READV_FIXED = 60. */
    public static final int IORING_OP_READV_FIXED = 60;
    /** io_uring.h enum io_uring_op: IORING_OP_WRITEV_FIXED = 61. */
    public static final int IORING_OP_WRITEV_FIXED = 61;
    /** io_uring.h enum io_uring_op: IORING_OP_PIPE = 62. */
    public static final int IORING_OP_PIPE = 62;

    private static final String[] OP_NAMES = {
        "NOP",
        "READV",
        "WRITEV",
        "FSYNC",
        "READ_FIXED",
        "WRITE_FIXED",
        "POLL_ADD",
        "POLL_REMOVE",
        "SYNC_FILE_RANGE",
        "SENDMSG",
        "RECVMSG",
        "TIMEOUT",
        "TIMEOUT_REMOVE",
        "ACCEPT",
        "ASYNC_CANCEL",
        "LINK_TIMEOUT",
        "CONNECT",
        "FALLOCATE",
        "OPENAT",
        "CLOSE",
        "FILES_UPDATE",
        "STATX",
        "READ",
        "WRITE",
        "FADVISE",
        "MADVISE",
        "SEND",
        "RECV",
        "OPENAT2",
        "EPOLL_CTL",
        "SPLICE",
        "PROVIDE_BUFFERS",
        "REMOVE_BUFFERS",
        "TEE",
        "SHUTDOWN",
        "RENAMEAT",
        "UNLINKAT",
        "MKDIRAT",
        "SYMLINKAT",
        "LINKAT",
        "MSG_RING",
        "FSETXATTR",
        "SETXATTR",
        "FGETXATTR",
        "GETXATTR",
        "SOCKET",
        "URING_CMD",
        "SEND_ZC",
        "SENDMSG_ZC",
        "READ_MULTISHOT",
        "WAITID",
        "FUTEX_WAIT",
        "FUTEX_WAKE",
        "FUTEX_WAITV",
        "FIXED_FD_INSTALL",
        "FTRUNCATE",
        "BIND",
        "LISTEN",
        "RECV_ZC",
        "EPOLL_WAIT",
        "READV_FIXED",
        "WRITEV_FIXED",
        "PIPE"
    };

    /** The name of an opcode without the IORING_OP_ prefix ("WRITEV"), or "OP_n". */
    public static String opName(int opcode) {
        return opcode >= 0 && opcode < OP_NAMES.length ? OP_NAMES[opcode] : "OP_" + opcode;
    }

    // ---- sqe->flags: IOSQE_* (enum io_uring_sqe_flags_bit) -----------------------------------
    /** io_uring.h: IOSQE_FIXED_FILE (1 &lt;&lt; 0), fd is an index into the registered files. */
    public static final int IOSQE_FIXED_FILE = 1 << 0;
    /** io_uring.h: IOSQE_IO_DRAIN (1 &lt;&lt; 1), issue after all earlier SQEs complete. */
    public static final int IOSQE_IO_DRAIN = 1 << 1;
    /** io_uring.h: IOSQE_IO_LINK (1 &lt;&lt; 2), the next SQE starts after this one succeeds. */
    public static final int IOSQE_IO_LINK = 1 << 2;
    /** io_uring.h: IOSQE_IO_HARDLINK (1 &lt;&lt; 3), like LINK but not broken by an error. */
    public static final int IOSQE_IO_HARDLINK = 1 << 3;
    /** io_uring.h: IOSQE_ASYNC (1 &lt;&lt; 4), always go to the async worker. */
    public static final int IOSQE_ASYNC = 1 << 4;
    /** io_uring.h: IOSQE_BUFFER_SELECT (1 &lt;&lt; 5), pick a buffer from sqe->buf_group. */
    public static final int IOSQE_BUFFER_SELECT = 1 << 5;
    /** io_uring.h: IOSQE_CQE_SKIP_SUCCESS (1 &lt;&lt; 6), no CQE when it succeeds. */
    public static final int IOSQE_CQE_SKIP_SUCCESS = 1 << 6;

    // ---- sqe->fsync_flags ---------------------------------------------------------------------
    /** io_uring.h: IORING_FSYNC_DATASYNC (1 &lt;&lt; 0), fdatasync semantics. */
    public static final int IORING_FSYNC_DATASYNC = 1 << 0;

    // ---- io_uring_params->flags: io_uring_setup() flags ---------------------------------------
    /** io_uring.h: IORING_SETUP_IOPOLL (1 &lt;&lt; 0), busy-poll for completions (O_DIRECT only). */
    public static final int IORING_SETUP_IOPOLL = 1 << 0;
    /** io_uring.h: IORING_SETUP_SQPOLL (1 &lt;&lt; 1), kernel thread polls the SQ. */
    public static final int IORING_SETUP_SQPOLL = 1 << 1;
    /** io_uring.h: IORING_SETUP_SQ_AFF (1 &lt;&lt; 2), sq_thread_cpu is valid. */
    public static final int IORING_SETUP_SQ_AFF = 1 << 2;
    /** io_uring.h: IORING_SETUP_CQSIZE (1 &lt;&lt; 3), app defines CQ size. */
    public static final int IORING_SETUP_CQSIZE = 1 << 3;
    /** io_uring.h: IORING_SETUP_CLAMP (1 &lt;&lt; 4), clamp SQ/CQ ring sizes (5.6). */
    public static final int IORING_SETUP_CLAMP = 1 << 4;
    /** io_uring.h: IORING_SETUP_ATTACH_WQ (1 &lt;&lt; 5), attach to existing wq. */
    public static final int IORING_SETUP_ATTACH_WQ = 1 << 5;
    /** io_uring.h: IORING_SETUP_R_DISABLED (1 &lt;&lt; 6), start with ring disabled. */
    public static final int IORING_SETUP_R_DISABLED = 1 << 6;
    /** io_uring.h: IORING_SETUP_SUBMIT_ALL (1 &lt;&lt; 7), continue submit on error (5.18). */
    public static final int IORING_SETUP_SUBMIT_ALL = 1 << 7;
    /** io_uring.h: IORING_SETUP_COOP_TASKRUN (1 &lt;&lt; 8), no IPI to run task work (5.19). */
    public static final int IORING_SETUP_COOP_TASKRUN = 1 << 8;
    /** io_uring.h: IORING_SETUP_TASKRUN_FLAG (1 &lt;&lt; 9), IORING_SQ_TASKRUN when work waits. */
    public static final int IORING_SETUP_TASKRUN_FLAG = 1 << 9;
    /** io_uring.h: IORING_SETUP_SQE128 (1 &lt;&lt; 10), 128-byte SQEs (not supported here). */
    public static final int IORING_SETUP_SQE128 = 1 << 10;
    /** io_uring.h: IORING_SETUP_CQE32 (1 &lt;&lt; 11), 32-byte CQEs (not supported here). */
    public static final int IORING_SETUP_CQE32 = 1 << 11;
    /** io_uring.h: IORING_SETUP_SINGLE_ISSUER (1 &lt;&lt; 12), one task submits (6.0). */
    public static final int IORING_SETUP_SINGLE_ISSUER = 1 << 12;
    /**
     * io_uring.h: IORING_SETUP_DEFER_TASKRUN (1 &lt;&lt; 13), completions are posted only when
     * the submitter enters with GETEVENTS (6.1); requires SINGLE_ISSUER.
     */
    public static final int IORING_SETUP_DEFER_TASKRUN = 1 << 13;
    /** io_uring.h: IORING_SETUP_NO_MMAP (1 &lt;&lt; 14), app provides ring memory. */
    public static final int IORING_SETUP_NO_MMAP = 1 << 14;
    /** io_uring.h: IORING_SETUP_REGISTERED_FD_ONLY (1 &lt;&lt; 15). */
    public static final int IORING_SETUP_REGISTERED_FD_ONLY = 1 << 15;
    /** io_uring.h: IORING_SETUP_NO_SQARRAY (1 &lt;&lt; 16), no SQ index array (6.6). */
    public static final int IORING_SETUP_NO_SQARRAY = 1 << 16;
    /** io_uring.h: IORING_SETUP_HYBRID_IOPOLL (1 &lt;&lt; 17). */
    public static final int IORING_SETUP_HYBRID_IOPOLL = 1 << 17;

    // ---- io_uring_enter(2) flags --------------------------------------------------------------
    /** io_uring.h: IORING_ENTER_GETEVENTS (1 &lt;&lt; 0), wait for min_complete CQEs. */
    public static final int IORING_ENTER_GETEVENTS = 1 << 0;
    /** io_uring.h: IORING_ENTER_SQ_WAKEUP (1 &lt;&lt; 1). */
    public static final int IORING_ENTER_SQ_WAKEUP = 1 << 1;
    /** io_uring.h: IORING_ENTER_SQ_WAIT (1 &lt;&lt; 2). */
    public static final int IORING_ENTER_SQ_WAIT = 1 << 2;
    /** io_uring.h: IORING_ENTER_EXT_ARG (1 &lt;&lt; 3), arg is io_uring_getevents_arg. */
    public static final int IORING_ENTER_EXT_ARG = 1 << 3;
    /** io_uring.h: IORING_ENTER_REGISTERED_RING (1 &lt;&lt; 4). */
    public static final int IORING_ENTER_REGISTERED_RING = 1 << 4;

    // ---- sq_ring->flags -----------------------------------------------------------------------
    /** io_uring.h: IORING_SQ_NEED_WAKEUP (1 &lt;&lt; 0), SQPOLL thread sleeps. */
    public static final int IORING_SQ_NEED_WAKEUP = 1 << 0;
    /** io_uring.h: IORING_SQ_CQ_OVERFLOW (1 &lt;&lt; 1), CQEs wait in the overflow list. */
    public static final int IORING_SQ_CQ_OVERFLOW = 1 << 1;
    /** io_uring.h: IORING_SQ_TASKRUN (1 &lt;&lt; 2), task work pending (TASKRUN_FLAG rings). */
    public static final int IORING_SQ_TASKRUN = 1 << 2;

    // ---- cqe->flags ---------------------------------------------------------------------------
    /** io_uring.h: IORING_CQE_F_BUFFER (1 &lt;&lt; 0), upper 16 bits are the buffer id. */
    public static final int IORING_CQE_F_BUFFER = 1 << 0;
    /** io_uring.h: IORING_CQE_F_MORE (1 &lt;&lt; 1), more CQEs follow for this SQE. */
    public static final int IORING_CQE_F_MORE = 1 << 1;
    /** io_uring.h: IORING_CQE_F_SOCK_NONEMPTY (1 &lt;&lt; 2). */
    public static final int IORING_CQE_F_SOCK_NONEMPTY = 1 << 2;
    /** io_uring.h: IORING_CQE_F_NOTIF (1 &lt;&lt; 3), zero-copy send notification. */
    public static final int IORING_CQE_F_NOTIF = 1 << 3;
    /** io_uring.h: IORING_CQE_BUFFER_SHIFT 16. */
    public static final int IORING_CQE_BUFFER_SHIFT = 16;

    // ---- io_uring_params->features --------------------------------------------------------------
    /** io_uring.h: IORING_FEAT_SINGLE_MMAP (1 &lt;&lt; 0), SQ and CQ rings share one mmap. */
    public static final int IORING_FEAT_SINGLE_MMAP = 1 << 0;
    /** io_uring.h: IORING_FEAT_NODROP (1 &lt;&lt; 1), CQ overflow is buffered, not dropped. */
    public static final int IORING_FEAT_NODROP = 1 << 1;
    /** io_uring.h: IORING_FEAT_SUBMIT_STABLE (1 &lt;&lt; 2), SQE data is copied at submit. */
    public static final int IORING_FEAT_SUBMIT_STABLE = 1 << 2;
    /** io_uring.h: IORING_FEAT_RW_CUR_POS (1 &lt;&lt; 3), offset -1 means current position. */
    public static final int IORING_FEAT_RW_CUR_POS = 1 << 3;
    /** io_uring.h: IORING_FEAT_CUR_PERSONALITY (1 &lt;&lt; 4). */
    public static final int IORING_FEAT_CUR_PERSONALITY = 1 << 4;
    /** io_uring.h: IORING_FEAT_FAST_POLL (1 &lt;&lt; 5). */
    public static final int IORING_FEAT_FAST_POLL = 1 << 5;
    /** io_uring.h: IORING_FEAT_POLL_32BITS (1 &lt;&lt; 6). */
    public static final int IORING_FEAT_POLL_32BITS = 1 << 6;
    /** io_uring.h: IORING_FEAT_SQPOLL_NONFIXED (1 &lt;&lt; 7). */
    public static final int IORING_FEAT_SQPOLL_NONFIXED = 1 << 7;
    /** io_uring.h: IORING_FEAT_EXT_ARG (1 &lt;&lt; 8), io_uring_enter takes a timeout. */
    public static final int IORING_FEAT_EXT_ARG = 1 << 8;
    /** io_uring.h: IORING_FEAT_NATIVE_WORKERS (1 &lt;&lt; 9). */
    public static final int IORING_FEAT_NATIVE_WORKERS = 1 << 9;
    /** io_uring.h: IORING_FEAT_RSRC_TAGS (1 &lt;&lt; 10). */
    public static final int IORING_FEAT_RSRC_TAGS = 1 << 10;
    /** io_uring.h: IORING_FEAT_CQE_SKIP (1 &lt;&lt; 11). */
    public static final int IORING_FEAT_CQE_SKIP = 1 << 11;
    /** io_uring.h: IORING_FEAT_LINKED_FILE (1 &lt;&lt; 12). */
    public static final int IORING_FEAT_LINKED_FILE = 1 << 12;
    /** io_uring.h: IORING_FEAT_REG_REG_RING (1 &lt;&lt; 13). */
    public static final int IORING_FEAT_REG_REG_RING = 1 << 13;
    /** io_uring.h: IORING_FEAT_RECVSEND_BUNDLE (1 &lt;&lt; 14). */
    public static final int IORING_FEAT_RECVSEND_BUNDLE = 1 << 14;
    /** io_uring.h: IORING_FEAT_MIN_TIMEOUT (1 &lt;&lt; 15). */
    public static final int IORING_FEAT_MIN_TIMEOUT = 1 << 15;
    /** io_uring.h: IORING_FEAT_RW_ATTR (1 &lt;&lt; 16). */
    public static final int IORING_FEAT_RW_ATTR = 1 << 16;
    /** io_uring.h: IORING_FEAT_NO_IOWAIT (1 &lt;&lt; 17). */
    public static final int IORING_FEAT_NO_IOWAIT = 1 << 17;

    // ---- io_uring_register(2) opcodes: enum io_uring_register_op ------------------------------
    /** io_uring.h: IORING_REGISTER_BUFFERS 0, arg is an iovec array. */
    public static final int IORING_REGISTER_BUFFERS = 0;
    /** io_uring.h: IORING_UNREGISTER_BUFFERS 1. */
    public static final int IORING_UNREGISTER_BUFFERS = 1;
    /** io_uring.h: IORING_REGISTER_FILES 2, arg is an __s32 fd array. */
    public static final int IORING_REGISTER_FILES = 2;
    /** io_uring.h: IORING_UNREGISTER_FILES 3. */
    public static final int IORING_UNREGISTER_FILES = 3;
    /** io_uring.h: IORING_REGISTER_EVENTFD 4. */
    public static final int IORING_REGISTER_EVENTFD = 4;
    /** io_uring.h: IORING_UNREGISTER_EVENTFD 5. */
    public static final int IORING_UNREGISTER_EVENTFD = 5;
    /** io_uring.h: IORING_REGISTER_FILES_UPDATE 6. */
    public static final int IORING_REGISTER_FILES_UPDATE = 6;
    /** io_uring.h: IORING_REGISTER_EVENTFD_ASYNC 7. */
    public static final int IORING_REGISTER_EVENTFD_ASYNC = 7;
    /** io_uring.h: IORING_REGISTER_PROBE 8, arg is struct io_uring_probe. */
    public static final int IORING_REGISTER_PROBE = 8;
    /** io_uring.h: IORING_REGISTER_PERSONALITY 9. */
    public static final int IORING_REGISTER_PERSONALITY = 9;
    /** io_uring.h: IORING_UNREGISTER_PERSONALITY 10. */
    public static final int IORING_UNREGISTER_PERSONALITY = 10;
    /** io_uring.h: IORING_REGISTER_RESTRICTIONS 11. */
    public static final int IORING_REGISTER_RESTRICTIONS = 11;
    /** io_uring.h: IORING_REGISTER_ENABLE_RINGS 12, enables an R_DISABLED ring. */
    public static final int IORING_REGISTER_ENABLE_RINGS = 12;
    /** io_uring.h: IORING_REGISTER_FILES2 13. */
    public static final int IORING_REGISTER_FILES2 = 13;
    /** io_uring.h: IORING_REGISTER_FILES_UPDATE2 14. */
    public static final int IORING_REGISTER_FILES_UPDATE2 = 14;
    /** io_uring.h: IORING_REGISTER_BUFFERS2 15. */
    public static final int IORING_REGISTER_BUFFERS2 = 15;
    /** io_uring.h: IORING_REGISTER_BUFFERS_UPDATE 16. */
    public static final int IORING_REGISTER_BUFFERS_UPDATE = 16;
    /** io_uring.h: IORING_REGISTER_IOWQ_AFF 17. */
    public static final int IORING_REGISTER_IOWQ_AFF = 17;
    /** io_uring.h: IORING_UNREGISTER_IOWQ_AFF 18. */
    public static final int IORING_UNREGISTER_IOWQ_AFF = 18;
    /** io_uring.h: IORING_REGISTER_IOWQ_MAX_WORKERS 19. */
    public static final int IORING_REGISTER_IOWQ_MAX_WORKERS = 19;
    /** io_uring.h: IORING_REGISTER_RING_FDS 20. */
    public static final int IORING_REGISTER_RING_FDS = 20;
    /** io_uring.h: IORING_UNREGISTER_RING_FDS 21. */
    public static final int IORING_UNREGISTER_RING_FDS = 21;
    /** io_uring.h: IORING_REGISTER_PBUF_RING 22. */
    public static final int IORING_REGISTER_PBUF_RING = 22;
    /** io_uring.h: IORING_UNREGISTER_PBUF_RING 23. */
    public static final int IORING_UNREGISTER_PBUF_RING = 23;
    /** io_uring.h: IORING_REGISTER_SYNC_CANCEL 24. */
    public static final int IORING_REGISTER_SYNC_CANCEL = 24;
    /** io_uring.h: IORING_REGISTER_FILE_ALLOC_RANGE 25. */
    public static final int IORING_REGISTER_FILE_ALLOC_RANGE = 25;

    /**
     * io_uring.h: IORING_RSRC_REGISTER_SPARSE (1U &lt;&lt; 0), in io_uring_rsrc_register.flags
     * (5.19): registers an empty table of {@code nr} slots, filled later with
     * IORING_REGISTER_BUFFERS_UPDATE / IORING_REGISTER_FILES_UPDATE2.
     */
    public static final int IORING_RSRC_REGISTER_SPARSE = 1 << 0;

    /** io_uring.h: IO_URING_OP_SUPPORTED (1 &lt;&lt; 0), in io_uring_probe_op.flags. */
    public static final int IO_URING_OP_SUPPORTED = 1 << 0;

    // ---- mmap offsets ---------------------------------------------------------------------------
    /** io_uring.h: IORING_OFF_SQ_RING 0. */
    public static final long IORING_OFF_SQ_RING = 0L;
    /** io_uring.h: IORING_OFF_CQ_RING 0x8000000. */
    public static final long IORING_OFF_CQ_RING = 0x8000000L;
    /** io_uring.h: IORING_OFF_SQES 0x10000000. */
    public static final long IORING_OFF_SQES = 0x10000000L;

    // ---- poll events for IORING_OP_POLL_ADD (include/uapi/asm-generic/poll.h) -----------------
    /** asm-generic/poll.h: POLLIN 0x0001. */
    public static final int POLLIN = 0x0001;
    /** asm-generic/poll.h: POLLOUT 0x0004. */
    public static final int POLLOUT = 0x0004;
    /** asm-generic/poll.h: POLLERR 0x0008. */
    public static final int POLLERR = 0x0008;
    /** asm-generic/poll.h: POLLHUP 0x0010. */
    public static final int POLLHUP = 0x0010;

    // ---- socket ops ---------------------------------------------------------------------------
    /** io_uring.h: IORING_ACCEPT_MULTISHOT (1U &lt;&lt; 0), in sqe->ioprio of an ACCEPT (5.19). */
    public static final int IORING_ACCEPT_MULTISHOT = 1 << 0;
    /**
     * io_uring.h: IORING_RECV_MULTISHOT (1U &lt;&lt; 1), in sqe->ioprio of a RECV (6.0): one SQE
     * receives until it fails, each CQE into a buffer picked from sqe->buf_group.
     */
    public static final int IORING_RECV_MULTISHOT = 1 << 1;
    /** io_uring.h: sizeof(struct io_uring_buf): __u64 addr, __u32 len, __u16 bid, __u16 resv. */
    public static final int IO_URING_BUF_SIZE = 16;
    /**
     * io_uring.h: offset of {@code tail} in struct io_uring_buf_ring (it overlays bufs[0].resv:
     * __u64 resv1, __u32 resv2, __u16 resv3, __u16 tail).
     */
    public static final int IO_URING_BUF_RING_TAIL = 14;
    /** io_uring.h: sizeof(struct io_uring_buf_reg): __u64 ring_addr, __u32 ring_entries, __u16 bgid, __u16 flags, __u64 resv[3]. */
    public static final int IO_URING_BUF_REG_SIZE = 40;
}
