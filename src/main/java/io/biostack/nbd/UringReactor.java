package io.biostack.nbd;

import io.biostack.file.reactor.FileRings;
import io.biostack.sys.Errno;
import io.biostack.sys.ErrnoException;
import io.biostack.uring.BufRing;
import io.biostack.sys.Libc;
import io.biostack.sys.Sockets;
import io.biostack.uring.CqeHandler;
import io.biostack.uring.IoUringConstants;
import io.biostack.uring.RingLoop;

import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * A reactor over io_uring: one {@link RingLoop} (one thread, one ring) that does its connections'
 * socket I/O with RECV and SENDMSG and, through the file engine's per-thread ring
 * ({@link FileRings}), the file I/O of the bios they submit. A request is parsed, its bio
 * submitted, its completion reaped and its reply sent on this one thread: no hop.
 *
 * <p>Each connection has at most one RECV and one SENDMSG in flight. In transmission the RECV is
 * multishot, into a ring of buffers the reactor provides to the kernel ({@link BufRing}): one SQE
 * serves a connection for as long as it keeps the budget, and an idle connection holds no buffer
 * in the kernel. The connection parses requests where they landed and copies only what it can't
 * parse yet. Before transmission (the handshake, STARTTLS) and under TLS, and for the rest of a
 * large WRITE payload, the RECV is single-shot into a buffer the connection names: its small
 * receive buffer, or the payload buffer that then goes to the file as it is. A multishot RECV is
 * cancelled when the connection must stop reading (budget spent, a large payload next). Where the
 * kernel has no buffer rings or multishot RECV (probed at start), every RECV is single-shot.
 * The SENDMSG gathers reply headers and the READ data where the device left it. User data: the
 * handler id, then (connection slot &lt;&lt; 3 | operation).
 *
 * <p>A closing connection's socket is shut down, which ends the operations in flight; the fd is
 * closed, and its slot reused, only once none is left (the kernel may still be writing into a
 * buffer until then).
 */
final class UringReactor extends Reactor implements CqeHandler {
    private static final int OP_RECV = 0;
    private static final int OP_SEND = 1;
    private static final int OP_ACCEPT = 2;
    /** The completion of an accept's cancel (the accept's own CQE says the rest). */
    private static final int OP_CANCEL = 3;
    /** The completion of a multishot RECV's cancel: only then may the slot's tag be reused. */
    private static final int OP_RECV_CANCEL = 4;
    private static final int OP_BITS = 3;
    /** Provided buffers per reactor, and their size: a 16 KiB receive holds 580 request headers. */
    static final int SHARED_BUFFERS = 128;
    static final int SHARED_BUFFER_SIZE = 16 * 1024;
    /** -Dbiostack.nbd.multishot=false: receive with single-shot RECVs into each connection's buffer. */
    static final boolean MULTISHOT_WANTED = !"false".equals(System.getProperty("biostack.nbd.multishot"));
    /** SQ entries of a reactor ring: sockets and file I/O share it. */
    static final int ENTRIES = 1024;

    /** Transport state of one connection. */
    private static final class Sock {
        final int fd;
        final int slot;
        final NbdConnection conn;
        boolean recvBusy;
        /** The RECV in flight is multishot, into the reactor's provided buffers. */
        boolean shared;
        /** A cancel of the multishot RECV is in flight (its CQE not yet reaped). */
        boolean cancelling;
        /** The last multishot ended for want of buffers: the next receive is single-shot. */
        boolean sharedStarved;
        boolean sendBusy;
        boolean eof;
        boolean shut;
        boolean inputStopped;
        /** Closed by us while the peer may still be sending: reading and dropping until EOF. */
        boolean lingering;
        long lingerBytes;
        long lingerSince;

        Sock(int fd, int slot, NbdConnection conn) {
            this.fd = fd;
            this.slot = slot;
            this.conn = conn;
        }
    }

    /** Most bytes read and dropped from a client we are closing on. */
    private static final long LINGER_BYTES = 1 << 20;
    /** Longest time spent reading from a client we are closing on. */
    private static final long LINGER_NANOS = 2_000_000_000L;

    /** Where lingering connections' input goes to be dropped (shared: nobody reads it). */
    private final java.lang.foreign.MemorySegment discard = java.lang.foreign.Arena.ofAuto().allocate(64 * 1024, 4096);
    private RingLoop loop;
    private int handler;
    /** Provided buffers for multishot RECV, or null (not wanted, or the kernel lacks them). */
    private BufRing shared;
    /** Counts for tests (the loop thread writes them, others read; not per request: per arm). */
    private volatile long multishotArmed;
    private volatile long multishotCancelled;
    private volatile long multishotStarved;
    /** How this reactor receives, for the engine's log line. */
    private String receiveMode = "single-shot RECV";
    /** The file ring has a fixed-buffer table: the per-reactor payload pool registers its buffers. */
    private boolean fixedPayloads;
    private Sock[] slots = new Sock[64];
    private int[] freeSlots = new int[64];
    private int freeTop;
    private int nextSlot;
    /** Listening sockets whose accepts this reactor runs: fd and kind ("tcp", "unix"). */
    private int[] listenFds = new int[0];
    private String[] listenKinds = new String[0];
    private int acceptsArmed;
    private boolean stopAccepting;

    UringReactor(NbdServer server, String name) {
        super(server, name);
    }

    @Override
    void start() throws IOException {
        try {
            loop = RingLoop.start(name, ENTRIES, l -> {
                FileRings.attach(l);
                handler = l.register(this);
                setUpSharedReceive(l);
                fixedPayloads = FileRings.fixedBuffers(l);
                l.setPollMaxNanos(server.pollNanos());
                l.addPoller(this::poll);
                l.addPendingCheck(this::hasWork); // completions queued by other threads

                l.addTicker(this::tick);
                l.addTicker(this::endLingering);
                l.setIdleCheck(() -> FileRings.inflight(l) == 0); // a stopping loop finishes its file I/O
            });
        } catch (ErrnoException e) {
            throw new IOException("io_uring reactor: " + e.getMessage(), e);
        }
    }

    /** Registers the provided-buffer ring and probes multishot RECV on it (loop thread, at start). */
    private void setUpSharedReceive(RingLoop l) {
        int count = server.sharedReceiveBuffers();
        if (count == 0) {
            receiveMode = "single-shot RECV (asked for: no shared receive buffers)";
            return;
        }
        BufRing b;
        try {
            b = BufRing.register(l.ring(), 0, count, SHARED_BUFFER_SIZE);
        } catch (ErrnoException e) {
            receiveMode = "single-shot RECV (no provided buffer rings: " + Errno.name(e.errno()) + ")";
            return;
        }
        String why = b.probeMultishotRecv(l.ring());
        if (why != null) {
            receiveMode = "single-shot RECV (" + why + ")";
            return;
        }
        shared = b;
        receiveMode = "multishot RECV into " + count + " x " + (SHARED_BUFFER_SIZE >> 10) + " KiB provided buffers";
    }

    /** Payload buffers are registered with this reactor's ring when its file ring has a table. */
    @Override
    BufferPool.Registrar registrar() {
        return fixedPayloads ? registerWith(loop) : null;
    }

    @Override
    long heldWrites() {
        RingLoop l = loop;
        return l == null ? 0 : FileRings.heldWrites(l);
    }

    /** Idle periods its polling ended, and its poll window now (ns). */
    long[] pollCounts() {
        return new long[] {loop.pollsCaught(), loop.pollWindowNanos()};
    }

    /** Multishot RECVs armed, cancelled, and ended by ENOBUFS so far. */
    long[] receiveCounts() {
        return new long[] {multishotArmed, multishotCancelled, multishotStarved};
    }

    @Override
    String describe() {
        return "io_uring reactors " + loop.describe().replace("io_uring (", "(").replaceFirst("\\)$", "")
                + "; " + receiveMode + (server.pollNanos() > 0 ? "; polls up to " + server.pollNanos() / 1000 + " us" : "")
                + (fixedPayloads ? "; payload buffers registered (READ_FIXED/WRITE_FIXED)"
                        : "; payload buffers not registered") + ")";
    }

    @Override
    boolean inLoop() {
        return loop.inLoop();
    }

    @Override
    void wakeLoop() {
        loop.wake();
    }

    @Override
    void execute(Runnable r) {
        loop.execute(r);
    }

    private void poll() {
        pump();
        if (hasWork()) {
            loop.markBusy();
        }
    }

    private long tag(int slot, int op) {
        return RingLoop.tag(handler, ((long) slot << OP_BITS) | op);
    }

    // ---- accepting ---------------------------------------------------------------------------

    /** Runs multishot ACCEPT on a listening socket (loop thread). */
    void listen(int fd, String kind) {
        listenFds = Arrays.copyOf(listenFds, listenFds.length + 1);
        listenKinds = Arrays.copyOf(listenKinds, listenKinds.length + 1);
        listenFds[listenFds.length - 1] = fd;
        listenKinds[listenKinds.length - 1] = kind;
        armAccept(listenFds.length - 1);
    }

    private void armAccept(int i) {
        loop.reserve(1);
        loop.ring().prepAccept(listenFds[i], Sockets.SOCK_CLOEXEC, true, tag(i, OP_ACCEPT));
        acceptsArmed++;
    }

    /** Cancels the accepts and closes the listening sockets (loop thread). */
    void stopListening() {
        stopAccepting = true;
        for (int i = 0; i < listenFds.length; i++) {
            loop.reserve(1);
            loop.ring().prepCancel(tag(i, OP_ACCEPT), tag(i, OP_CANCEL));
        }
        if (acceptsArmed == 0) {
            closeListeners();
        }
    }

    private void closeListeners() {
        for (int i = 0; i < listenFds.length; i++) {
            if (listenFds[i] >= 0) {
                Libc.close(listenFds[i]);
                listenFds[i] = -1;
            }
        }
        server.listenersClosed();
    }

    private void accepted(int i, int res, int flags) {
        if ((flags & IoUringConstants.IORING_CQE_F_MORE) == 0) {
            acceptsArmed--;
            if (!stopAccepting && res != -Errno.ECANCELED && listenFds[i] >= 0) {
                armAccept(i); // the kernel ended the multishot (e.g. CQ overflow): arm it again
            } else if (stopAccepting && acceptsArmed == 0) {
                closeListeners();
            }
        }
        if (res < 0) {
            if (res != -Errno.ECANCELED) {
                LOG.log(Level.WARNING, "nbd: accept failed: {0}", Errno.name(-res));
            }
            return;
        }
        server.accepted(res, listenKinds[i]);
    }

    /** Takes an accepted socket (loop thread). */
    void adoptFd(int fd, NbdConnection c) {
        int slot;
        if (freeTop > 0) {
            slot = freeSlots[--freeTop];
        } else {
            if (nextSlot == slots.length) {
                slots = Arrays.copyOf(slots, slots.length * 2);
                freeSlots = Arrays.copyOf(freeSlots, slots.length);
            }
            slot = nextSlot++;
        }
        Sock s = new Sock(fd, slot, c);
        slots[slot] = s;
        c.transport = s;
        adopt(c);
    }

    // ---- connections -------------------------------------------------------------------------

    @Override
    void service(NbdConnection c) {
        Sock s = (Sock) c.transport;
        if (s == null) {
            return;
        }
        if (c.finished()) {
            closeSock(s);
            return;
        }
        c.resume(); // requests left in the receive buffer while the budget was spent
        if (c.phase == NbdConnection.CLOSED) {
            closeSock(s);
            return;
        }
        if (!s.sendBusy && c.wireHasOutput()) {
            SendBatch b = takeBatch();
            c.wireFill(b);
            if (c.wireSending != b) { // the connection failed while encrypting
                giveBatch(b);
                closeSock(s);
                return;
            }
            send(s, b);
        }
        if (s.eof || s.inputStopped) {
            return;
        }
        if (s.shared) {
            if (!s.cancelling && !c.sharedReceiveOk()) {
                // Stop reading (the budget is spent, or a large payload goes straight to its buffer).
                // CQEs already on their way still bring bytes; the connection keeps them.
                loop.reserve(1);
                if (loop.ring().prepCancel(tag(s.slot, OP_RECV), tag(s.slot, OP_RECV_CANCEL))) {
                    s.cancelling = true;
                    multishotCancelled++;
                } else {
                    retry(c);
                }
            }
            return;
        }
        if (s.recvBusy) {
            return;
        }
        if (shared != null && !s.sharedStarved && c.sharedReceiveOk()) {
            loop.reserve(1);
            if (loop.ring().prepRecvMultishot(s.fd, shared.group(), 0, tag(s.slot, OP_RECV))) {
                s.recvBusy = true;
                s.shared = true;
                multishotArmed++;
            } else {
                retry(c);
            }
            return;
        }
        s.sharedStarved = false;
        ByteBuffer t = c.wireTarget();
        if (t != null) {
            loop.reserve(1);
            if (loop.ring().prepRecv(s.fd, c.targetAddress, t.remaining(), 0, tag(s.slot, OP_RECV))) {
                s.recvBusy = true;
            } else {
                retry(c); // the kernel would not take SQEs just now (a CQ overflow): next pass
            }
        }
    }

    private void send(Sock s, SendBatch b) {
        loop.reserve(1);
        while (!loop.ring().prepSendmsg(s.fd, b.prepareMsghdr(), Sockets.MSG_NOSIGNAL, tag(s.slot, OP_SEND))) {
            // The SQ is full and the kernel did not take it (a CQ overflow): reap, then again.
            loop.ring().submitAndWait(0);
        }
        s.sendBusy = true;
    }

    private void retry(NbdConnection c) {
        deferToNextPass(c);
        loop.markBusy();
    }

    @Override
    void stopInput(NbdConnection c) {
        Sock s = (Sock) c.transport;
        if (s == null || s.inputStopped) {
            return;
        }
        s.inputStopped = true;
        if (s.recvBusy) {
            Sockets.shutdown(s.fd, Sockets.SHUT_RD); // the RECV in flight ends with 0
        } else {
            c.inputEnded("server is shutting down");
            service(c);
        }
    }

    /**
     * Shuts the socket (ending what is in flight) and closes it once nothing is. When we end a
     * connection whose client may still be sending (a protocol error, a refused WRITE), the write
     * side is shut first and input is read and dropped for a moment (at most {@link #LINGER_BYTES},
     * {@link #LINGER_NANOS}): closing with unread data would reset the connection, and the client
     * would see a broken pipe instead of our end of the stream.
     */
    private void closeSock(Sock s) {
        if (!s.shut && !s.eof && !s.lingering && !server.isClosing()) {
            s.lingering = true;
            s.lingerSince = System.nanoTime();
            Sockets.shutdown(s.fd, Sockets.SHUT_WR);
        }
        if (s.lingering && !s.shut && server.isClosing()) {
            s.shut = true; // shutting down: no more lingering
            Sockets.shutdown(s.fd, Sockets.SHUT_RDWR);
        }
        if (s.lingering && !s.shut) {
            if (!s.recvBusy && !s.sendBusy) {
                loop.reserve(1);
                loop.ring().prepRecv(s.fd, discard.address(), (int) discard.byteSize(), 0, tag(s.slot, OP_RECV));
                s.recvBusy = true;
            }
            return;
        }
        if (!s.shut) {
            s.shut = true;
            if (s.recvBusy || s.sendBusy) {
                Sockets.shutdown(s.fd, Sockets.SHUT_RDWR);
            }
        }
        if (s.recvBusy || s.sendBusy || s.cancelling) {
            return;
        }
        s.conn.released();
        Libc.close(s.fd);
        slots[s.slot] = null;
        freeSlots[freeTop++] = s.slot;
        s.conn.transport = null;
        removed(s.conn);
    }

    @Override
    public void complete(long data, int res, int flags) {
        int op = (int) (data & ((1 << OP_BITS) - 1));
        int slot = (int) (data >>> OP_BITS);
        if (op == OP_ACCEPT) {
            accepted(slot, res, flags);
            return;
        }
        if (op == OP_CANCEL) {
            return;
        }
        Sock s = slots[slot];
        NbdConnection c = s.conn;
        if (op == OP_RECV_CANCEL) {
            s.cancelling = false;
            if (s.shut) {
                closeSock(s);
            }
            return;
        }
        if (op == OP_RECV) {
            int bid = (flags & IoUringConstants.IORING_CQE_F_BUFFER) != 0 ? BufRing.bufferId(flags) : -1;
            try {
                received(s, c, res, flags, bid);
            } finally {
                if (bid >= 0) {
                    shared.recycle(bid); // the connection copied what it keeps
                }
            }
            return;
        }
        s.sendBusy = false;
        SendBatch b = c.wireSending;
        if (res < 0) {
            c.wireSendFailed(b, "send failed: " + Errno.name(-res));
            giveBatch(b);
        } else if (!b.sent(res)) {
            if (!s.shut) {
                send(s, b); // a short send: the rest
                return;
            }
            c.wireSendFailed(b, "connection closed while sending");
            giveBatch(b);
        } else {
            c.wireSent(b);
            giveBatch(b);
        }
        if (s.shut) {
            closeSock(s);
            return;
        }
        markDirty(c);
    }

    /** A RECV completion: single-shot, or one of a multishot's (buffer {@code bid}, or -1). */
    private void received(Sock s, NbdConnection c, int res, int flags, int bid) {
        if ((flags & IoUringConstants.IORING_CQE_F_MORE) == 0) {
            s.recvBusy = false;
            s.shared = false;
        }
        if (s.lingering) {
            s.lingerBytes += Math.max(0, res);
            if (res <= 0 || s.lingerBytes > LINGER_BYTES || System.nanoTime() - s.lingerSince > LINGER_NANOS) {
                s.shut = true;
                s.eof = true;
                if (s.recvBusy) {
                    Sockets.shutdown(s.fd, Sockets.SHUT_RDWR); // a multishot RECV still armed: end it
                }
            }
            closeSock(s);
            return;
        }
        if (s.shut) {
            closeSock(s);
            return;
        }
        if (res > 0) {
            if (bid >= 0) {
                c.receivedShared(shared.segment(bid), shared.view(bid), res);
            } else {
                c.wireReceived(res);
            }
        } else if (res == -Errno.ECANCELED && !s.recvBusy) {
            // Our cancel ended the multishot RECV: service() picks the next way to receive.
        } else if (res == -Errno.ENOBUFS && !s.recvBusy) {
            s.sharedStarved = true; // every provided buffer is in use: one single-shot RECV
            multishotStarved++;
        } else {
            s.eof = true;
            if (res == 0 || res == -Errno.ECONNRESET) {
                c.inputEnded(s.inputStopped ? "server is shutting down" : "client went away");
            } else {
                c.close("receive failed: " + Errno.name(-res));
            }
        }
        markDirty(c);
    }

    /** Lingering closes past their time: shut them for good (the pending RECV then ends). */
    private void endLingering() {
        long now = System.nanoTime();
        for (int i = 0; i < nextSlot; i++) {
            Sock s = slots[i];
            if (s != null && s.lingering && !s.shut && now - s.lingerSince > LINGER_NANOS) {
                s.shut = true;
                Sockets.shutdown(s.fd, Sockets.SHUT_RDWR);
                if (!s.recvBusy && !s.sendBusy) {
                    closeSock(s);
                }
            }
        }
    }

    @Override
    void stop(long millis) {
        loop.stop(null);
        try {
            if (!loop.awaitStopped(millis)) {
                LOG.log(Level.WARNING, "{0} did not stop within {1} ms", name, millis);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

}
