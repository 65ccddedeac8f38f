package io.biostack.uring;

import static io.biostack.uring.IoUringConstants.IO_URING_BUF_RING_TAIL;
import static io.biostack.uring.IoUringConstants.IO_URING_BUF_SIZE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import io.biostack.sys.Errno;
import io.biostack.sys.ErrnoException;
import io.biostack.sys.Libc;
import io.biostack.sys.Sockets;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;

/**
 * A provided-buffer ring (IORING_REGISTER_PBUF_RING, 5.19): {@code count} buffers of
 * {@code size} bytes that the kernel picks from when a RECV with IOSQE_BUFFER_SELECT
 * completes, so that idle sockets hold no receive buffer of their own. The kernel takes buffers
 * at the ring's head; {@link #recycle} puts a buffer back at the tail once its bytes are
 * consumed.
 *
 * <p>Ownership: the ring and its buffers belong to the one thread that owns the io_uring; every
 * method is called there, and no buffer is handed to anyone past the call that consumes it.
 * Memory: the ring and the buffers come from an automatic arena that this object keeps; the
 * kernel stops using them when the io_uring is closed, and the io_uring's owner keeps this object
 * until then. Nothing is allocated after construction.
 */
public final class BufRing {
    /** The tail, a __u16 the kernel reads with an acquire load (include/uapi/linux/io_uring.h). */
    private static final VarHandle TAIL = JAVA_SHORT.varHandle();

    private final MemorySegment ring;
    private final MemorySegment buffers;
    private final MemorySegment[] segments;
    private final ByteBuffer[] views;
    private final int size;
    private final int mask;
    private final int group;
    private short tail;

    private BufRing(MemorySegment ring, MemorySegment buffers, int count, int size, int group) {
        this.ring = ring;
        this.buffers = buffers;
        this.size = size;
        this.mask = count - 1;
        this.group = group;
        this.segments = new MemorySegment[count];
        this.views = new ByteBuffer[count];
        for (int i = 0; i < count; i++) {
            segments[i] = buffers.asSlice((long) i * size, size);
            views[i] = segments[i].asByteBuffer();
            put(i);
        }
        publish();
    }

    /**
     * Registers a ring of {@code count} (a power of two, at most 32768) buffers of {@code size}
     * bytes as buffer group {@code group} of {@code uring}; on the ring's owner thread.
     *
     * @throws ErrnoException when the kernel has no buffer rings (before 5.19: EINVAL)
     */
    public static BufRing register(IoUring uring, int group, int count, int size) throws ErrnoException {
        if (Integer.bitCount(count) != 1 || count > 32768) {
            throw new IllegalArgumentException("buffer ring entries must be a power of two up to 32768: " + count);
        }
        Arena arena = Arena.ofAuto();
        MemorySegment ring = arena.allocate((long) count * IO_URING_BUF_SIZE, 4096);
        MemorySegment buffers = arena.allocate((long) count * size, 4096);
        int r = uring.registerBufRing(ring.address(), count, group);
        if (r < 0) {
            throw new ErrnoException("IORING_REGISTER_PBUF_RING", -r);
        }
        // The kernel reads entries only up to the tail, which publish() moves: filling them
        // after registration is the order liburing's io_uring_setup_buf_ring uses too.
        return new BufRing(ring, buffers, count, size, group);
    }

    /** The buffer group id for sqe->buf_group. */
    public int group() {
        return group;
    }

    /** Buffer {@code bid} (from a CQE's flags) as a segment; valid until {@link #recycle}. */
    public MemorySegment segment(int bid) {
        return segments[bid];
    }

    /** Buffer {@code bid} as a ByteBuffer (one cached view; its position and limit are the caller's). */
    public ByteBuffer view(int bid) {
        return views[bid];
    }

    /** The buffer id a CQE's flags name (IORING_CQE_BUFFER_SHIFT). */
    public static int bufferId(int cqeFlags) {
        return cqeFlags >>> IoUringConstants.IORING_CQE_BUFFER_SHIFT;
    }

    /** Gives buffer {@code bid} back to the kernel: its bytes have been consumed. */
    public void recycle(int bid) {
        put(bid);
        publish();
    }

    private void put(int bid) {
        long at = (long) (tail & mask) * IO_URING_BUF_SIZE;
        ring.set(JAVA_LONG, at, segments[bid].address());
        ring.set(JAVA_INT, at + 8, size);
        ring.set(JAVA_SHORT, at + 12, (short) bid);
        tail++;
    }

    /** Store-release of the tail: the entries written before it are visible to the kernel first. */
    private void publish() {
        TAIL.setRelease(ring, (long) IO_URING_BUF_RING_TAIL, tail);
    }

    /**
     * Probes multishot RECV over this ring (6.0; a kernel that has buffer rings may still lack
     * it): arms one on a socketpair, sends a byte, and checks that it arrives in a provided buffer
     * with the SQE still armed. Cold path, on the ring's owner thread, before the ring is used for
     * anything else (it reaps every CQE it finds); bounded by one second per wait.
     *
     * @return null when multishot RECV works, else why not (for the engine's log line)
     */
    public String probeMultishotRecv(IoUring uring) {
        int[] fds = new int[2];
        int r = Sockets.socketpair(fds);
        if (r < 0) {
            return "socketpair: " + Errno.name(-r);
        }
        final long probeTag = 0x6d73686f74L; // "mshot": nothing else is on the ring yet
        int[] got = {Integer.MIN_VALUE, 0};
        CqeHandler h = (data, res, flags) -> {
            if (data == probeTag && got[0] == Integer.MIN_VALUE) {
                got[0] = res;
                got[1] = flags;
            }
            if ((flags & IoUringConstants.IORING_CQE_F_BUFFER) != 0) {
                recycle(bufferId(flags));
            }
        };
        try (Arena a = Arena.ofConfined()) {
            MemorySegment one = a.allocate(1);
            if (!uring.prepRecvMultishot(fds[0], group, 0, probeTag)) {
                return "SQ full";
            }
            uring.submit();
            Libc.write(fds[1], one.address(), 1);
            for (int i = 0; i < 2 && got[0] == Integer.MIN_VALUE; i++) {
                uring.submitAndWait(1, 500_000_000L);
                uring.reap(h);
            }
            // End the probe's RECV (it completes with 0, no F_MORE) before its socket goes.
            Sockets.shutdown(fds[0], Sockets.SHUT_RDWR);
            boolean armed = (got[1] & IoUringConstants.IORING_CQE_F_MORE) != 0;
            int[] end = {armed ? 0 : 1};
            CqeHandler drain = (data, res, flags) -> {
                h.complete(data, res, flags);
                if (data == probeTag && (flags & IoUringConstants.IORING_CQE_F_MORE) == 0) {
                    end[0] = 1;
                }
            };
            for (int i = 0; i < 2 && end[0] == 0; i++) {
                uring.submitAndWait(1, 500_000_000L);
                uring.reap(drain);
            }
            if (got[0] == Integer.MIN_VALUE) {
                return "multishot RECV gave no completion";
            }
            if (got[0] < 0) {
                return "multishot RECV: " + Errno.name(-got[0]);
            }
            if ((got[1] & IoUringConstants.IORING_CQE_F_BUFFER) == 0 || !armed) {
                return "RECV stayed single-shot";
            }
            if (end[0] == 0) {
                return "multishot RECV did not end on shutdown";
            }
            return null;
        } finally {
            Libc.close(fds[0]);
            Libc.close(fds[1]);
        }
    }

    @Override
    public String toString() {
        return "buffer ring " + group + " (" + segments.length + " x " + size + " bytes at 0x"
                + Long.toHexString(buffers.address()) + ")";
    }
}
