package io.biostack.nbd;

import io.biostack.file.FileRings;
import io.biostack.sys.Errno;
import io.biostack.sys.ErrnoException;
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
 * <p>Each connection has at most one RECV and one SENDMSG in flight. The RECV lands in the
 * connection's small receive buffer, or, for the rest of a WRITE payload, straight in the payload
 * buffer that then goes to the file. The SENDMSG gathers reply headers and the READ data where the
 * device left it. User data: the handler id, then (connection slot &lt;&lt; 2 | operation).
 *
 * <p>A closing connection's socket is shut down, which ends the operations in flight; the fd is
 * closed, and its slot reused, only once none is left (the kernel may still be writing into a
 * buffer until then).
 */
final class UringReactor extends Reactor implements CqeHandler {
    private static final int OP_RECV = 0;
    private static final int OP_SEND = 1;
    private static final int OP_ACCEPT = 2;
    private static final int OP_CANCEL = 3;
    /** SQ entries of a reactor ring: sockets and file I/O share it. */
    static final int ENTRIES = 1024;

    /** Transport state of one connection. */
    private static final class Sock {
        final int fd;
        final int slot;
        final NbdConnection conn;
        boolean recvBusy;
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

    @Override
    String describe() {
        return "io_uring reactors, " + loop.describe().replace("io_uring (", "(");
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
        return RingLoop.tag(handler, ((long) slot << 2) | op);
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
        if (!s.recvBusy && !s.eof && !s.inputStopped) {
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
        if (s.recvBusy || s.sendBusy) {
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
        int op = (int) (data & 3);
        int slot = (int) (data >>> 2);
        if (op == OP_ACCEPT) {
            accepted(slot, res, flags);
            return;
        }
        if (op == OP_CANCEL) {
            return;
        }
        Sock s = slots[slot];
        NbdConnection c = s.conn;
        if (op == OP_RECV) {
            s.recvBusy = false;
            if (s.lingering) {
                s.lingerBytes += Math.max(0, res);
                if (res <= 0 || s.lingerBytes > LINGER_BYTES || System.nanoTime() - s.lingerSince > LINGER_NANOS) {
                    s.shut = true;
                    s.eof = true;
                }
                closeSock(s);
                return;
            }
            if (s.shut) {
                closeSock(s);
                return;
            }
            if (res > 0) {
                c.wireReceived(res);
            } else {
                s.eof = true;
                if (res == 0 || res == -Errno.ECONNRESET) {
                    c.inputEnded(s.inputStopped ? "server is shutting down" : "client went away");
                } else {
                    c.close("receive failed: " + Errno.name(-res));
                }
            }
        } else {
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
