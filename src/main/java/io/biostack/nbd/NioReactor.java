package io.biostack.nbd;

import java.io.IOException;
import java.lang.System.Logger.Level;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.Iterator;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * The fallback reactor for machines without io_uring (old kernels, a container's seccomp): one
 * thread with a java.nio {@link Selector} runs many non-blocking connections, still no thread per
 * connection. The connection logic is the same {@link NbdConnection}; bios go to whatever engine
 * the device uses (the thread engine, here) and complete through the reactor's queue.
 */
final class NioReactor extends Reactor implements Runnable {
    /** Reads per connection per wake-up before others get their turn. */
    private static final int READS_PER_TURN = 16;

    private static final long LINGER_BYTES = 1 << 20;
    private static final long LINGER_NANOS = 2_000_000_000L;

    private final ByteBuffer discard = ByteBuffer.allocateDirect(64 * 1024);
    private final java.util.ArrayList<NbdConnection> lingering = new java.util.ArrayList<>();
    private Selector selector;
    private Thread thread;
    private final ConcurrentLinkedQueue<Runnable> tasks = new ConcurrentLinkedQueue<>();
    private volatile boolean stopping;
    private volatile boolean sleeping;
    private long lastTick = System.nanoTime();

    /** Transport state of one connection. */
    private static final class Chan {
        final SocketChannel ch;
        SelectionKey key;
        boolean eof;
        boolean inputStopped;
        /** Closed by us while the peer may still be sending (see UringReactor#closeSock). */
        boolean lingering;
        long lingerBytes;
        long lingerSince;

        Chan(SocketChannel ch) {
            this.ch = ch;
        }
    }

    NioReactor(NbdServer server, String name) {
        super(server, name);
    }

    @Override
    void start() throws IOException {
        selector = Selector.open();
        thread = Thread.ofPlatform().name(name).daemon(true).unstarted(this);
        thread.start();
    }

    @Override
    String describe() {
        return "java.nio reactors";
    }

    @Override
    boolean inLoop() {
        return Thread.currentThread() == thread;
    }

    @Override
    void wakeLoop() {
        if (sleeping) {
            selector.wakeup();
        }
    }

    @Override
    void execute(Runnable r) {
        tasks.add(r);
        selector.wakeup();
    }

    /** Accepts on a listening channel (loop thread). */
    void listen(ServerSocketChannel s, String kind) throws IOException {
        s.configureBlocking(false);
        s.register(selector, SelectionKey.OP_ACCEPT, kind);
    }

    /** Takes an accepted channel (loop thread). */
    void adoptChannel(SocketChannel ch, NbdConnection c) {
        Chan k = new Chan(ch);
        try {
            ch.configureBlocking(false);
            k.key = ch.register(selector, 0, c);
        } catch (IOException e) {
            closeQuietly(ch);
            c.close("can't register with the selector: " + e.getMessage());
            server.connectionClosed(c);
            return;
        }
        c.transport = k;
        adopt(c);
    }

    @Override
    public void run() {
        try {
            while (true) {
                Runnable r;
                while ((r = tasks.poll()) != null) {
                    try {
                        r.run();
                    } catch (RuntimeException e) {
                        LOG.log(Level.ERROR, name + ": task failed", e);
                    }
                }
                pump();
                if (stopping && connectionCount() == 0) {
                    return;
                }
                long now = System.nanoTime();
                if (now - lastTick >= 100_000_000L) {
                    lastTick = now;
                    tick();
                    endLingering();
                }
                sleeping = true;
                if (hasWork() || !tasks.isEmpty()) {
                    sleeping = false;
                    selector.selectNow();
                } else {
                    selector.select(100);
                    sleeping = false;
                }
                Iterator<SelectionKey> it = selector.selectedKeys().iterator();
                while (it.hasNext()) {
                    SelectionKey key = it.next();
                    it.remove();
                    if (!key.isValid()) {
                        continue;
                    }
                    if (key.channel() instanceof ServerSocketChannel s) {
                        acceptAll(s, (String) key.attachment());
                    } else {
                        ready((NbdConnection) key.attachment(), key);
                    }
                }
            }
        } catch (IOException | RuntimeException e) {
            LOG.log(Level.ERROR, name + " died", e);
        } finally {
            try {
                selector.close();
            } catch (IOException e) {
                // nothing more to do
            }
        }
    }

    private void acceptAll(ServerSocketChannel s, String kind) {
        for (int i = 0; i < 64; i++) {
            SocketChannel ch;
            try {
                ch = s.accept();
            } catch (IOException e) {
                LOG.log(Level.WARNING, "nbd: accept failed: {0}", e.toString());
                return;
            }
            if (ch == null) {
                return;
            }
            server.acceptedChannel(ch, kind);
        }
    }

    private void ready(NbdConnection c, SelectionKey key) {
        Chan k = (Chan) c.transport;
        if (k == null) {
            return;
        }
        if (k.lingering) {
            linger(c, k);
            return;
        }
        if (key.isReadable()) {
            for (int i = 0; i < READS_PER_TURN && !k.eof && !k.inputStopped; i++) {
                ByteBuffer t = c.wireTarget();
                if (t == null) {
                    break;
                }
                int n;
                try {
                    n = k.ch.read(t);
                } catch (IOException e) {
                    k.eof = true;
                    c.close("receive failed: " + e.getMessage());
                    break;
                }
                if (n < 0) {
                    k.eof = true;
                    c.inputEnded("client went away");
                    break;
                }
                if (n == 0) {
                    break;
                }
                c.wireReceived(n);
                pump(); // answer what completed inline before reading more
                if (c.transport == null) {
                    return;
                }
            }
        }
        service(c);
    }

    @Override
    void service(NbdConnection c) {
        Chan k = (Chan) c.transport;
        if (k == null) {
            return;
        }
        if (c.finished()) {
            close(c, k);
            return;
        }
        c.resume(); // requests left in the receive buffer while the budget was spent
        if (c.finished()) {
            close(c, k);
            return;
        }
        int interest = 0;
        while (true) {
            SendBatch b = c.wireSending;
            if (b == null) {
                if (!c.wireHasOutput()) {
                    break;
                }
                b = takeBatch();
                c.wireFill(b);
                if (c.wireSending != b) { // the connection failed while encrypting
                    giveBatch(b);
                    close(c, k);
                    return;
                }
            }
            try {
                if (!write(k, b)) {
                    interest |= SelectionKey.OP_WRITE;
                    break;
                }
            } catch (IOException e) {
                c.wireSendFailed(b, "send failed: " + e.getMessage());
                giveBatch(b);
                close(c, k);
                return;
            }
            c.wireSent(b);
            giveBatch(b);
            if (c.finished()) {
                close(c, k);
                return;
            }
        }
        if (!k.eof && !k.inputStopped && c.wireTarget() != null) {
            interest |= SelectionKey.OP_READ;
        }
        if (k.key.isValid() && k.key.interestOps() != interest) {
            k.key.interestOps(interest);
        }
    }

    /** Writes what the channel takes; true when the batch is sent in full. */
    private static boolean write(Chan k, SendBatch b) throws IOException {
        while (true) {
            int from = b.sentPieces;
            for (int i = from; i < b.pieces; i++) {
                b.view(i);
            }
            long n = k.ch.write(b.views, from, b.pieces - from);
            if (b.sent(n)) {
                return true;
            }
            if (n == 0) {
                return false;
            }
        }
    }

    /** Reads and drops what a client we are closing on still sends, then closes (bounded). */
    private void linger(NbdConnection c, Chan k) {
        try {
            while (true) {
                discard.clear();
                int n = k.ch.read(discard);
                if (n < 0) {
                    k.eof = true;
                    break;
                }
                k.lingerBytes += n;
                if (n == 0 && k.lingerBytes <= LINGER_BYTES) {
                    return;
                }
                if (k.lingerBytes > LINGER_BYTES) {
                    break;
                }
            }
        } catch (IOException e) {
            // gone: close
        }
        lingering.remove(c);
        k.lingering = false;
        k.eof = true;
        close(c, k);
    }

    private void endLingering() {
        long now = System.nanoTime();
        for (int i = lingering.size() - 1; i >= 0; i--) {
            NbdConnection c = lingering.get(i);
            Chan k = (Chan) c.transport;
            if (k != null && now - k.lingerSince > LINGER_NANOS) {
                lingering.remove(i);
                k.lingering = false;
                k.eof = true;
                close(c, k);
            }
        }
    }

    @Override
    void stopInput(NbdConnection c) {
        Chan k = (Chan) c.transport;
        if (k == null || k.inputStopped) {
            return;
        }
        k.inputStopped = true;
        c.inputEnded("server is shutting down");
        service(c);
    }

    private void close(NbdConnection c, Chan k) {
        if (k.lingering && server.isClosing()) {
            lingering.remove(c);
            k.lingering = false;
            k.eof = true; // shutting down: no more lingering
        }
        if (k.lingering) {
            return; // linger() or endLingering() closes it
        }
        if (!k.eof && !server.isClosing() && k.key.isValid()) {
            k.lingering = true;
            k.lingerSince = System.nanoTime();
            try {
                k.ch.shutdownOutput();
                k.key.interestOps(SelectionKey.OP_READ);
                lingering.add(c);
                return;
            } catch (IOException e) {
                // closing at once is all that is left
            }
        }
        c.released();
        k.key.cancel();
        closeQuietly(k.ch);
        c.transport = null;
        removed(c);
    }

    @Override
    void stop(long millis) {
        stopping = true;
        selector.wakeup();
        try {
            thread.join(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Sets TCP_NODELAY and says who the peer is (cold path). */
    static String prepare(SocketChannel ch, String kind) throws IOException {
        if (kind.equals("tcp")) {
            ch.setOption(StandardSocketOptions.TCP_NODELAY, true);
            return String.valueOf(ch.getRemoteAddress());
        }
        return "unix socket";
    }

    private static void closeQuietly(java.io.Closeable c) {
        try {
            c.close();
        } catch (IOException e) {
            // nothing more to do
        } catch (RuntimeException e) {
            // a channel of a closed selector
        }
    }
}
