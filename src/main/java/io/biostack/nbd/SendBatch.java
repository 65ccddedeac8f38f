package io.biostack.nbd;

import io.biostack.nbd.proto.NbdProtocol;
import io.biostack.sys.Iovec;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One gathered send of a connection: reply headers (and handshake replies) encoded into a small
 * native area, and READ data referenced where the device left it (no copy), as a list of pieces
 * that io_uring sends with one SENDMSG (an iovec each) and java.nio with one gathering write (a
 * ByteBuffer each). The requests whose replies it carries are given back once it has been sent.
 *
 * <p>Owned by one reactor thread: taken from its pool when a connection has something to send,
 * given back when the send is done, so an idle connection holds none. Allocates only when
 * created; {@link #clear()} readies it for reuse.
 */
final class SendBatch {
    /** Bytes of encoded headers per batch: the largest reply header (an error chunk of 1 KiB, 32 runs) fits many times. */
    static final int HEADER_BYTES = 8192;
    /** Pieces per batch (UIO_MAXIOV is 1024; a few dozen replies per send is plenty). */
    static final int MAX_PIECES = 64;
    /** Header room a reply may need at most: 32 runs of OFFSET_HOLE/DATA chunk headers, or an error chunk. */
    static final int MAX_REPLY_HEADER = NbdProtocol.CHUNK_HEADER_SIZE * 2 * NbdRequest.MAX_RUNS + 1100;
    /** sizeof(struct msghdr) on LP64: name, namelen(+pad), iov, iovlen, control, controllen, flags(+pad). */
    static final int MSGHDR_SIZE = 56;

    final MemorySegment header;
    /** The header area as a big-endian view (NBD is in network byte order). */
    final ByteBuffer headerBuf;
    final MemorySegment iovecs;
    final MemorySegment msghdr;
    /** java.nio views of the pieces; header pieces use their own duplicates of {@link #headerBuf}. */
    final ByteBuffer[] views = new ByteBuffer[MAX_PIECES];
    private final ByteBuffer[] headerViews = new ByteBuffer[MAX_PIECES];
    private final long[] addr = new long[MAX_PIECES];
    private final int[] len = new int[MAX_PIECES];
    /** -1 for a data piece, else the header offset where the piece starts. */
    private final int[] headerStart = new int[MAX_PIECES];
    private final BufferPool.Buf[] owner = new BufferPool.Buf[MAX_PIECES];
    int pieces;
    long bytes;
    /** First piece not yet sent in full, and bytes of it already sent (partial sends). */
    int sentPieces;
    /** Requests whose replies are in this batch, given back once it is sent; linked by next. */
    NbdRequest head;
    NbdRequest tail;
    /** Link in the reactor's free list. */
    SendBatch nextFree;

    SendBatch(Arena arena) {
        header = arena.allocate(HEADER_BYTES, 64);
        headerBuf = header.asByteBuffer().order(ByteOrder.BIG_ENDIAN);
        iovecs = arena.allocate((long) MAX_PIECES * Iovec.SIZE, 8);
        msghdr = arena.allocate(MSGHDR_SIZE, 8);
        for (int i = 0; i < MAX_PIECES; i++) {
            headerViews[i] = headerBuf.duplicate();
        }
    }

    void clear() {
        headerBuf.clear();
        pieces = 0;
        bytes = 0;
        sentPieces = 0;
        head = null;
        tail = null;
        java.util.Arrays.fill(owner, null);
    }

    boolean isEmpty() {
        return pieces == 0;
    }

    /** True when one more reply of any kind fits. */
    boolean roomForReply(int dataPieces) {
        return headerBuf.remaining() >= MAX_REPLY_HEADER && pieces + 2 * dataPieces + 1 <= MAX_PIECES;
    }

    /** The header area to encode into at its position; call {@link #headerWritten()} after. */
    ByteBuffer headers() {
        return headerBuf;
    }

    /** Makes the header bytes written since the last piece a piece (merging with a header piece before). */
    void headerWritten() {
        int end = headerBuf.position();
        int start;
        if (pieces > 0 && headerStart[pieces - 1] >= 0) {
            int p = pieces - 1;
            start = headerStart[p];
            bytes += end - start - len[p];
            len[p] = end - start;
            return;
        }
        start = pieces == 0 ? 0 : lastHeaderEnd();
        if (end == start) {
            return;
        }
        headerStart[pieces] = start;
        addr[pieces] = header.address() + start;
        len[pieces] = end - start;
        bytes += end - start;
        pieces++;
    }

    private int lastHeaderEnd() {
        for (int i = pieces - 1; i >= 0; i--) {
            if (headerStart[i] >= 0) {
                return headerStart[i] + len[i];
            }
        }
        return 0;
    }

    /** Adds {@code n} bytes of {@code buf} from {@code from} as a piece (the request keeps the buffer until sent). */
    void data(BufferPool.Buf buf, int from, int n) {
        headerWritten();
        headerStart[pieces] = -1;
        owner[pieces] = buf;
        addr[pieces] = buf.segment.address() + from;
        len[pieces] = n;
        bytes += n;
        pieces++;
    }

    /** Queues the request for return once the batch is sent. */
    void carry(NbdRequest r) {
        r.next = null;
        if (tail == null) {
            head = r;
        } else {
            tail.next = r;
        }
        tail = r;
    }

    /**
     * Writes the iovecs of what is not yet sent, and the msghdr over them, for one SENDMSG;
     * returns the msghdr's address.
     */
    long prepareMsghdr() {
        int n = 0;
        for (int i = sentPieces; i < pieces; i++) {
            Iovec.set(iovecs, n++, addr[i], len[i]);
        }
        msghdr.fill((byte) 0);
        msghdr.set(ValueLayout.JAVA_LONG, 16, iovecs.address());
        msghdr.set(ValueLayout.JAVA_LONG, 24, n);
        return msghdr.address();
    }

    /**
     * The java.nio view of piece {@code i} as it stands (what is left of it after partial sends),
     * stored in {@link #views}. A data piece uses its buffer's own view, or a duplicate when an
     * earlier piece of the same buffer is also being written (a sparse READ: rare).
     */
    ByteBuffer view(int i) {
        ByteBuffer v;
        if (headerStart[i] >= 0) {
            v = headerViews[i];
            v.limit(headerStart[i] + len[i]).position(headerStart[i]);
        } else {
            BufferPool.Buf b = owner[i];
            v = b.bytes;
            for (int j = sentPieces; j < i; j++) {
                if (owner[j] == b) {
                    v = b.bytes.duplicate();
                    break;
                }
            }
            int from = (int) (addr[i] - b.segment.address());
            v.limit(from + len[i]).position(from);
        }
        views[i] = v;
        return v;
    }

    boolean isHeader(int i) {
        return headerStart[i] >= 0;
    }

    long address(int i) {
        return addr[i];
    }

    int length(int i) {
        return len[i];
    }

    /**
     * Records that {@code n} more bytes were sent; true when everything is. A piece sent in part
     * is shortened in place, so the next {@link #prepareMsghdr()} starts where the send stopped.
     */
    boolean sent(long n) {
        bytes -= n;
        while (n > 0 && sentPieces < pieces) {
            int l = len[sentPieces];
            if (n >= l) {
                n -= l;
                sentPieces++;
            } else {
                addr[sentPieces] += n;
                len[sentPieces] = (int) (l - n);
                if (headerStart[sentPieces] >= 0) {
                    headerStart[sentPieces] += (int) n;
                }
                n = 0;
            }
        }
        return sentPieces == pieces;
    }
}
