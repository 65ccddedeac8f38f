package io.biostack.nbd;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.GatheringByteChannel;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

import static io.biostack.nbd.NbdProtocol.*;

/**
 * Sends a connection's replies. Completions on any thread {@link #enqueue} requests onto a
 * lock-free stack (one CAS, no allocation); whoever holds the <em>send role</em> takes the whole
 * stack at once, encodes the replies into one send buffer and writes them with as few syscalls as
 * the data allows, so replies leave in the order their bios completed.
 *
 * <p>Two threads may hold the role, one at a time (a CAS on {@link #role}): the connection's reader,
 * just before it would block on the socket (so that a batch of requests completed inline, as on a
 * ramdisk, is answered with one write and no thread switch), and this class's own writer thread,
 * woken when a completion on another thread (an io_uring worker) finds the stack empty. The holder
 * looks at the stack again after giving the role up, so no reply is left behind. Completion threads
 * never write to the socket: they only push and wake.
 *
 * <p>Small READ data is copied behind its header into the send buffer; large data goes out from the
 * request's own buffer in a gathering write. After a batch is written the requests go back to the
 * connection (their buffers to the pool).
 */
final class ReplyWriter implements Runnable {
    private static final int SEND_BUFFER = 256 * 1024;
    /** READ data up to this size is copied into the send buffer rather than written on its own. */
    private static final int COPY_MAX = 64 * 1024;

    private final NbdConnection conn;
    /** The socket, or a TLS channel over it (both write all of a gather on a blocking socket). */
    private final GatheringByteChannel ch;
    private final boolean structured;
    private final AtomicReference<NbdRequest> queue = new AtomicReference<>();
    private final ByteBuffer out = ByteBuffer.allocateDirect(SEND_BUFFER);
    private final MemorySegment outSeg = MemorySegment.ofBuffer(out);
    private final ByteBuffer[] gather = new ByteBuffer[2];
    /** 1 while a thread is sending (the send role); guards {@link #out} and the socket's write side. */
    private final java.util.concurrent.atomic.AtomicInteger role = new java.util.concurrent.atomic.AtomicInteger();
    private volatile Thread thread;
    /** The connection's reader: it sends for itself before blocking, so its pushes wake nobody. */
    private volatile Thread reader;
    private volatile boolean stop;
    /** Set when a write failed: the peer is gone, replies are dropped but requests still recycled. */
    private volatile boolean broken;

    ReplyWriter(NbdConnection conn, GatheringByteChannel ch, boolean structured) {
        this.conn = conn;
        this.ch = ch;
        this.structured = structured;
    }

    void start(String name, Thread reader) {
        this.reader = reader;
        Thread t = Thread.ofPlatform().name(name).daemon(true).unstarted(this);
        thread = t;
        t.start();
    }

    /** Queues a reply; any thread, never blocks. Wakes the writer when it may be asleep. */
    void enqueue(NbdRequest r) {
        NbdRequest h;
        do {
            h = queue.get();
            r.next = h;
        } while (!queue.compareAndSet(h, r));
        if (h == null && Thread.currentThread() != reader) {
            LockSupport.unpark(thread);
        }
    }

    /** True when replies wait to be sent. */
    boolean hasPending() {
        return queue.get() != null;
    }

    /**
     * Sends what is queued, unless another thread holds the send role (it will see what is queued
     * when it lets go). Called by the reader before it blocks, and by the writer thread.
     */
    void sendPending() {
        while (queue.get() != null && role.compareAndSet(0, 1)) {
            try {
                sendBatch(takeAll());
            } finally {
                role.set(0);
            }
        }
    }

    /** Asks the writer to exit once its queue is empty. */
    void stop() {
        stop = true;
        LockSupport.unpark(thread);
    }

    void join(long millis) throws InterruptedException {
        Thread t = thread;
        if (t != null) {
            t.join(millis);
        }
    }

    @Override
    public void run() {
        while (true) {
            if (queue.get() == null) {
                if (stop) {
                    return;
                }
                LockSupport.park(this);
                continue;
            }
            sendPending();
            if (queue.get() != null) {
                // The reader holds the role; it looks at the queue again when it lets go.
                LockSupport.park(this);
            }
        }
    }

    private void sendBatch(NbdRequest list) {
        for (NbdRequest r = list; r != null; r = r.next) {
            if (!broken) {
                try {
                    encode(r);
                } catch (IOException e) {
                    brokenPipe(e);
                }
            }
        }
        if (!broken) {
            try {
                flush();
            } catch (IOException e) {
                brokenPipe(e);
            }
        }
        NbdRequest r = list;
        while (r != null) {
            NbdRequest n = r.next;
            conn.recycle(r);
            r = n;
        }
        if (Thread.currentThread() != reader) {
            conn.wakeReader();
        }
    }

    private void brokenPipe(IOException e) {
        broken = true;
        out.clear();
        conn.peerGone(e);
    }

    /** The queued requests, oldest first (the stack reversed). */
    private NbdRequest takeAll() {
        NbdRequest h = queue.getAndSet(null);
        NbdRequest prev = null;
        while (h != null) {
            NbdRequest n = h.next;
            h.next = prev;
            prev = h;
            h = n;
        }
        return prev;
    }

    // ---- encoding --------------------------------------------------------------------------

    private void encode(NbdRequest r) throws IOException {
        if (r.type == CMD_READ) {
            encodeRead(r);
        } else if (r.type == CMD_BLOCK_STATUS && r.error == 0) {
            encodeBlockStatus(r);
        } else if (r.error != 0 && structured) {
            errorChunk(r);
        } else {
            simple(r.cookie, r.error);
        }
    }

    private void encodeRead(NbdRequest r) throws IOException {
        if (r.error != 0) {
            if (structured) {
                errorChunk(r);
            } else {
                simple(r.cookie, r.error); // no payload after an error (section "NBD_CMD_READ")
            }
            return;
        }
        int len = (int) r.length;
        if (!structured) {
            simple(r.cookie, 0);
            if (len > 0) {
                data(r, 0, len);
            }
            return;
        }
        if (len == 0) {
            chunkHeader(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_NONE, 0);
            return;
        }
        if (r.nruns == 0) {
            chunkHeader(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 8 + len);
            out.putLong(r.offset);
            data(r, 0, len);
            return;
        }
        long pos = 0;
        for (int i = 0; i < r.nruns; i++) {
            int n = (int) r.runs[2 * i];
            boolean hole = (r.runs[2 * i + 1] & io.biostack.block.Extent.ZERO) != 0;
            int done = i == r.nruns - 1 ? REPLY_FLAG_DONE : 0;
            if (hole) {
                chunkHeader(r.cookie, done, REPLY_TYPE_OFFSET_HOLE, 12);
                out.putLong(r.offset + pos);
                out.putInt(n);
            } else {
                chunkHeader(r.cookie, done, REPLY_TYPE_OFFSET_DATA, 8 + n);
                out.putLong(r.offset + pos);
                data(r, (int) pos, n);
            }
            pos += n;
        }
    }

    private void encodeBlockStatus(NbdRequest r) throws IOException {
        room(CHUNK_HEADER_SIZE + 4 + 8 * r.nruns);
        chunkHeader(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, 4 + 8 * r.nruns);
        out.putInt(BASE_ALLOCATION_ID);
        for (int i = 0; i < r.nruns; i++) {
            out.putInt((int) r.runs[2 * i]);
            out.putInt((int) r.runs[2 * i + 1]);
        }
    }

    private void errorChunk(NbdRequest r) throws IOException {
        byte[] msg = r.message == null ? new byte[0] : r.message.getBytes(StandardCharsets.UTF_8);
        int n = Math.min(msg.length, 1024);
        chunkHeader(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 6 + n);
        out.putInt(r.error);
        out.putShort((short) n);
        out.put(msg, 0, n);
    }

    private void simple(long cookie, int error) throws IOException {
        room(SIMPLE_REPLY_SIZE);
        out.putInt(SIMPLE_REPLY_MAGIC);
        out.putInt(error);
        out.putLong(cookie);
    }

    /** A chunk header, with room reserved for up to 1 KiB + 16 of fixed payload after it. */
    private void chunkHeader(long cookie, int flags, int type, int length) throws IOException {
        room(CHUNK_HEADER_SIZE + 16 + 1024 + 8 * 2 * NbdRequest.MAX_RUNS);
        out.putInt(STRUCTURED_REPLY_MAGIC);
        out.putShort((short) flags);
        out.putShort((short) type);
        out.putLong(cookie);
        out.putInt(length);
    }

    /** Sends {@code n} bytes of the request's buffer from {@code from}, behind what is buffered. */
    private void data(NbdRequest r, int from, int n) throws IOException {
        if (n <= COPY_MAX) {
            room(n);
            MemorySegment.copy(r.buf.segment, from, outSeg, out.position(), n);
            out.position(out.position() + n);
            return;
        }
        ByteBuffer d = r.buf.bytes;
        d.limit(from + n).position(from);
        out.flip();
        gather[0] = out;
        gather[1] = d;
        while (d.hasRemaining()) {
            ch.write(gather);
        }
        gather[1] = null;
        out.clear();
    }

    private void room(int n) throws IOException {
        if (out.remaining() < n) {
            flush();
        }
    }

    private void flush() throws IOException {
        out.flip();
        while (out.hasRemaining()) {
            ch.write(out);
        }
        out.clear();
    }
}
