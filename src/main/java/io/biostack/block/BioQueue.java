package io.biostack.block;

import java.util.concurrent.atomic.AtomicReference;

/**
 * A lock-free hand-off of bios from any thread to one consumer (a ring worker), linked through the
 * bios themselves so that queueing allocates nothing.
 *
 * <p>Producers push onto a stack with one CAS; the consumer takes the whole stack at once with
 * one swap and reverses it into submission order. Because the consumer never pops single
 * elements, the stack has no ABA problem even though bios are reused.
 *
 * <p>While queued, the bio belongs to the queue; {@link #takeAll()} hands the list to the
 * consumer.
 */
public final class BioQueue {
    /** An empty queue: any thread may offer, one thread takes. */
    public BioQueue() {
    }

    private final AtomicReference<Bio> head = new AtomicReference<>();

    /**
     * Adds a bio; returns true when the queue was empty before, i.e. when the consumer may be
     * asleep and needs a wake-up.
     *
     * @param bio a bio the queue now holds until {@link #takeAll()} hands it to the consumer
     * @return true when the queue was empty, so the producer must wake the consumer
     */
    public boolean push(Bio bio) {
        Bio h;
        do {
            h = head.get();
            bio.next = h;
        } while (!head.compareAndSet(h, bio));
        return h == null;
    }

    /**
     * True when nothing is queued (a racy hint for the consumer's sleep decision).
     *
     * @return true when the queue looked empty at the moment of the read
     */
    public boolean isEmpty() {
        return head.get() == null;
    }

    /**
     * Takes every queued bio, oldest first, linked through {@link #next(Bio)}; null when empty.
     * Only the single consumer calls this.
     *
     * @return the oldest bio of a linked list of all the queued ones, or null when none was queued
     */
    public Bio takeAll() {
        Bio h = head.getAndSet(null);
        Bio prev = null;
        while (h != null) {
            Bio n = h.next;
            h.next = prev;
            prev = h;
            h = n;
        }
        return prev;
    }

    /**
     * The bio after {@code bio} in a list from {@link #takeAll()}; clears the link.
     *
     * @param bio a bio from such a list
     * @return the next bio in the list, or null at its end
     */
    public static Bio next(Bio bio) {
        Bio n = bio.next;
        bio.next = null;
        return n;
    }
}
