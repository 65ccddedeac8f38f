package io.biostack.nbd;

import io.biostack.file.reactor.FileRings;
import io.biostack.uring.RingLoop;

import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicReference;

/**
 * One thread that runs many connections (no thread per connection): the part every transport
 * shares. A transport ({@link UringReactor} over io_uring, {@link NioReactor} over a java.nio
 * Selector) moves the bytes; {@link NbdConnection} decides what they mean.
 *
 * <p>Each pass of the transport's loop calls {@link #pump()}: it takes the completions that other
 * threads queued (a lock-free stack, one CAS per completion, no allocation), then lets the
 * transport {@link #service} every connection whose state changed (an intrusive list, no
 * allocation). Send batches come from a free list of this reactor, so idle connections hold none.
 * Payload buffers come from this reactor's own {@link #buffers() pool}, registered with its ring
 * when the transport is io_uring.
 *
 * <p>Threads: everything here runs on the reactor thread, except {@link #completedFromBio},
 * {@link #execute} and {@link #connectionCount()}.
 */
abstract class Reactor {
    static final System.Logger LOG = System.getLogger("io.biostack.nbd");

    final NbdServer server;
    final String name;
    private NbdConnection[] conns = new NbdConnection[16];
    private int nconns;
    private volatile int count;
    /**
     * Connections handed to this reactor and not yet removed: counted when the acceptor picks it
     * (before the reactor adopts the connection), so that a burst of accepts spreads evenly.
     */
    final java.util.concurrent.atomic.AtomicInteger assigned = new java.util.concurrent.atomic.AtomicInteger();
    private NbdConnection dirtyHead;
    /** Connections to service on the next pass (cold: only when the SQ is full). */
    private final java.util.ArrayList<NbdConnection> deferred = new java.util.ArrayList<>();
    private SendBatch freeBatches;
    private final Arena batchArena = Arena.ofAuto();
    private final AtomicReference<NbdRequest> remote = new AtomicReference<>();
    /** Made on first use, on the loop thread (see {@link #buffers()}). */
    private BufferPool buffers;
    /** The ring loop this reactor's buffers are registered with, once they are; else null. */
    private volatile RingLoop registeredWith;

    Reactor(NbdServer server, String name) {
        this.server = server;
        this.name = name;
    }

    /** True on this reactor's thread. */
    abstract boolean inLoop();

    /** Wakes the loop from another thread. */
    abstract void wakeLoop();

    /** Runs {@code r} on the loop thread soon; from any thread (allocates: cold path). */
    abstract void execute(Runnable r);

    /** Starts or continues the socket I/O that the connection's state asks for. */
    abstract void service(NbdConnection c);

    /** Stops reading from the connection: it answers what is in flight, then closes. */
    abstract void stopInput(NbdConnection c);

    /** Starts the loop thread. */
    abstract void start() throws java.io.IOException;

    /** Stops the loop once its file I/O is done; waits up to {@code millis}. */
    abstract void stop(long millis);

    /** "io_uring reactor (...)" or "java.nio reactor". */
    abstract String describe();

    // ---- completions -----------------------------------------------------------------------

    /** A request's bio completed, on any thread: handled at once on this thread, else queued. */
    final void completedFromBio(NbdRequest r) {
        if (inLoop()) {
            r.conn.completed(r);
            return;
        }
        NbdRequest h;
        do {
            h = remote.get();
            r.next = h;
        } while (!remote.compareAndSet(h, r));
        if (h == null) {
            wakeLoop();
        }
    }

    /**
     * Gives {@code r} to this reactor's thread, from any thread, always through the queue (never
     * at once, even on this thread): a read-modify-write whose turn came starts on the next pass.
     */
    final void handOver(NbdRequest r) {
        NbdRequest h;
        do {
            h = remote.get();
            r.next = h;
        } while (!remote.compareAndSet(h, r));
        if (h == null && !inLoop()) {
            wakeLoop();
        }
    }

    final void markDirty(NbdConnection c) {
        if (!c.dirty) {
            c.dirty = true;
            c.nextDirty = dirtyHead;
            dirtyHead = c;
        }
    }

    /** Services {@code c} on the next pass, not this one (its SQE could not be queued now). */
    final void deferToNextPass(NbdConnection c) {
        deferred.add(c);
    }

    /** Takes queued completions and services changed connections. Loop thread. */
    final void pump() {
        for (int i = deferred.size() - 1; i >= 0; i--) {
            markDirty(deferred.remove(i));
        }
        NbdRequest h = remote.getAndSet(null);
        if (h != null) {
            NbdRequest prev = null; // oldest first
            while (h != null) {
                NbdRequest n = h.next;
                h.next = prev;
                prev = h;
                h = n;
            }
            for (NbdRequest r = prev; r != null; ) {
                NbdRequest n = r.next;
                r.conn.completed(r);
                r = n;
            }
        }
        while (dirtyHead != null) {
            NbdConnection c = dirtyHead;
            dirtyHead = c.nextDirty;
            c.nextDirty = null;
            c.dirty = false;
            service(c);
        }
    }

    /** True when connections wait to be serviced (the loop must not sleep). */
    final boolean hasWork() {
        return dirtyHead != null || remote.get() != null || !deferred.isEmpty();
    }

    // ---- payload buffers ----------------------------------------------------------------------

    /**
     * Idle payload buffers kept per size class, over all reactors (as one server-wide pool kept
     * before): each reactor keeps its share, at least 4 of a class. Connections spread evenly over
     * the reactors, so the server as a whole keeps about what it did.
     */
    static final long KEEP_BYTES = 16L << 20;

    /**
     * This reactor's payload buffers (loop thread only): WRITE payloads are received into them,
     * READ data is read into them by the file and sent from them. Made on first use, on the loop
     * thread, so that an io_uring reactor registers them with its own ring.
     */
    final BufferPool buffers() {
        BufferPool p = buffers;
        if (p == null) {
            if (!inLoop()) {
                throw new IllegalStateException("buffer pool of " + name + " used off its thread");
            }
            p = buffers = new BufferPool(server.maxPayload(), NbdConnection.LENIENT_MAX,
                    KEEP_BYTES / server.threads(), registrar());
        }
        return p;
    }

    /**
     * What registers this reactor's buffers with its ring, or null (the java.nio reactor). Called
     * once, on the loop thread, when the pool is made.
     */
    BufferPool.Registrar registrar() {
        return null;
    }

    /**
     * A registrar that registers pool buffers as fixed buffers of {@code loop}'s ring, so that file
     * I/O on them goes down as READ_FIXED/WRITE_FIXED; for a transport whose ring has a
     * fixed-buffer table ({@link FileRings#fixedBuffers}).
     */
    final BufferPool.Registrar registerWith(RingLoop loop) {
        registeredWith = loop;
        return new RingRegistrar(loop);
    }

    /**
     * File I/Os that went down fixed (READ_FIXED/WRITE_FIXED) on this reactor's ring; 0 while its
     * buffers are not registered. Any thread: read it after a reply you waited for.
     */
    final long fixedIos() {
        RingLoop l = registeredWith;
        return l == null ? 0 : FileRings.fixedIos(l);
    }

    /**
     * WRITEs this reactor's file ring held to submit with the rest of their pass (the write plug
     * of {@code io.biostack.file}); 0 on a transport without a file ring. Any thread: read it
     * after a reply you waited for.
     */
    long heldWrites() {
        return 0;
    }

    /** True once this reactor's payload buffers are registered with its ring. Any thread. */
    final boolean buffersRegistered() {
        return registeredWith != null;
    }

    /** Registers pool buffers as fixed buffers of one loop's ring ({@link FileRings}). */
    private record RingRegistrar(RingLoop loop) implements BufferPool.Registrar {
        @Override
        public int register(MemorySegment seg) {
            return FileRings.registerBuffer(loop, seg);
        }

        @Override
        public void unregister(int handle) {
            FileRings.unregisterBuffer(loop, handle);
        }
    }

    // ---- batches ------------------------------------------------------------------------------

    final SendBatch takeBatch() {
        SendBatch b = freeBatches;
        if (b == null) {
            return new SendBatch(batchArena);
        }
        freeBatches = b.nextFree;
        b.nextFree = null;
        return b;
    }

    final void giveBatch(SendBatch b) {
        b.clear();
        b.nextFree = freeBatches;
        freeBatches = b;
    }

    // ---- the connections of this reactor ---------------------------------------------------

    /** Takes a new connection (loop thread) and starts it: the greeting goes out. */
    final void adopt(NbdConnection c) {
        if (nconns == conns.length) {
            conns = Arrays.copyOf(conns, nconns * 2);
        }
        c.index = nconns;
        conns[nconns++] = c;
        count = nconns;
        markDirty(c);
    }

    /** The transport closed the connection's socket: forget it. */
    final void removed(NbdConnection c) {
        int i = c.index;
        if (i < 0 || i >= nconns || conns[i] != c) {
            return;
        }
        NbdConnection last = conns[--nconns];
        conns[i] = last;
        last.index = i;
        conns[nconns] = null;
        c.index = -1;
        count = nconns;
        assigned.decrementAndGet();
        server.connectionClosed(c);
    }

    /** Connections open on this reactor; from any thread. */
    final int connectionCount() {
        return count;
    }

    /**
     * Every {@code RingLoop.TICK_NANOS} or so: connections past the handshake timeout are closed,
     * whether they sent nothing or trickle a byte at a time (issue 7: no lockout by idle clients).
     */
    final void tick() {
        long now = System.nanoTime();
        long limit = server.handshakeTimeoutNanos();
        for (int i = nconns - 1; i >= 0; i--) {
            NbdConnection c = conns[i];
            if (c.phase == NbdConnection.HANDSHAKE && now - c.startNanos > limit) {
                LOG.log(Level.DEBUG, "{0}: handshake not done in {1} ms, closing", c,
                        java.util.concurrent.TimeUnit.NANOSECONDS.toMillis(limit));
                c.close("handshake timed out after " + c.handshakeBytes() + " bytes");
                service(c);
            }
        }
    }

    /** Server shutdown (loop thread): handshakes end now, transmissions stop reading and drain. */
    final void shutdownConnections() {
        for (int i = nconns - 1; i >= 0; i--) {
            NbdConnection c = conns[i];
            if (c.phase == NbdConnection.HANDSHAKE || c.phase == NbdConnection.CLOSED) {
                c.close("server is shutting down");
                service(c); // a lingering close ends now
            } else {
                stopInput(c);
            }
        }
    }

    /** Drain time is over (loop thread): close what is left. */
    final void closeAll(String why) {
        for (int i = nconns - 1; i >= 0; i--) {
            NbdConnection c = conns[i];
            c.close(why);
            service(c);
        }
    }
}
