package io.biostack.block;

/**
 * A FIFO of bios linked through the bios themselves, for one thread (a worker's backlog). Adds
 * and removes allocate nothing. While listed, a bio belongs to the list's owner.
 */
public final class BioList {
    /** An empty list, owned by one thread. */
    public BioList() {
    }

    private Bio head;
    private Bio tail;
    private int size;

    /**
     * Appends {@code bio}; the list holds it until {@link #poll()} hands it out.
     *
     * @param bio a bio not in any other list or queue
     */
    public void add(Bio bio) {
        bio.next = null;
        if (tail == null) {
            head = bio;
        } else {
            tail.next = bio;
        }
        tail = bio;
        size++;
    }

    /**
     * Appends a chain from {@link BioQueue#takeAll()}.
     *
     * @param first the first bio of the chain, or null for an empty one
     */
    public void addAll(Bio first) {
        while (first != null) {
            Bio n = first.next;
            add(first);
            first = n;
        }
    }

    /**
     * Puts {@code bio} back at the front (it could not be started after all).
     *
     * @param bio the bio to put back
     */
    public void addFirst(Bio bio) {
        bio.next = head;
        head = bio;
        if (tail == null) {
            tail = bio;
        }
        size++;
    }

    /**
     * Removes and returns the first bio, or null when empty.
     *
     * @return the oldest bio held, or null when the list is empty
     */
    public Bio poll() {
        Bio b = head;
        if (b != null) {
            head = b.next;
            if (head == null) {
                tail = null;
            }
            b.next = null;
            size--;
        }
        return b;
    }

    /**
     * True when no bio is held.
     *
     * @return true when the list holds no bio
     */
    public boolean isEmpty() {
        return head == null;
    }

    /**
     * Bios held.
     *
     * @return the number of bios held
     */
    public int size() {
        return size;
    }
}
