package io.biostack.nbd;

/**
 * The read-modify-writes of one device, one at a time over every connection of the server, oldest
 * first. The export offers {@code NBD_FLAG_CAN_MULTI_CONN}, so two connections of a lenient client
 * may write disjoint bytes of one block at once: if both read the block as it was, each writes
 * back its own bytes over the other's. nbdkit's blocksize filter takes one lock for all its
 * read-modify-writes for the same reason (filters/blocksize/blocksize.c).
 *
 * <p>Only unaligned changes come here (each already costs two or three I/Os); aligned requests
 * never do. A request that has to wait is linked through {@link NbdRequest#rmwNext} (no
 * allocation) and handed back to its own reactor when its turn comes.
 *
 * <p>Threads: any reactor thread; the monitor is held for a few field writes only.
 */
final class RmwGate {
    private NbdRequest active;
    private NbdRequest head;
    private NbdRequest tail;

    /** True when {@code r} may start now; else it waits behind those before it. */
    synchronized boolean enter(NbdRequest r) {
        if (active == null) {
            active = r;
            return true;
        }
        r.rmwNext = null;
        if (tail == null) {
            head = r;
        } else {
            tail.rmwNext = r;
        }
        tail = r;
        return false;
    }

    /** The active read-modify-write is done: returns the next one, now active, or null. */
    synchronized NbdRequest leave() {
        NbdRequest n = head;
        if (n != null) {
            head = n.rmwNext;
            if (head == null) {
                tail = null;
            }
            n.rmwNext = null;
        }
        active = n;
        return n;
    }
}
