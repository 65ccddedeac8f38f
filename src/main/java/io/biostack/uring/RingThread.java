package io.biostack.uring;

/**
 * The platform thread of a {@link RingLoop}. A type of its own so that code on the I/O path can
 * ask "am I on a reactor, and which?" with one type check ({@link RingLoop#current()}), no
 * thread-local lookup.
 */
public final class RingThread extends Thread {
    private final RingLoop loop;

    RingThread(RingLoop loop, String name) {
        super(null, null, name, 0, false);
        this.loop = loop;
        setDaemon(true);
    }

    /** The loop this thread runs. */
    public RingLoop loop() {
        return loop;
    }

    @Override
    public void run() {
        loop.run();
    }
}
