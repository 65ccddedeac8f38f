package io.biostack.block;

/**
 * A bio's progress, kept apart from its segments ({@code struct bvec_iter}): the device offset,
 * the bytes left, the current segment and the bytes already done in it. Segments never change
 * once a bio is submitted, so splitting and cloning only copy or advance this small record.
 *
 * <p>Owned by its bio; not thread-safe: only the current holder of the bio touches it.
 */
public final class BioIter {
    /** Made by its bio only; a bio has one iterator for its whole life. */
    BioIter() {
    }

    long offset;
    long size;
    int idx;
    long done;

    /**
     * Device offset in bytes of the next byte ({@code bi_sector}, in bytes).
     *
     * @return the offset in bytes
     */
    public long offset() {
        return offset;
    }

    /**
     * Bytes left ({@code bi_size}).
     *
     * @return the bytes the bio still covers
     */
    public long size() {
        return size;
    }

    /**
     * Index of the current segment ({@code bi_idx}).
     *
     * @return the index in the bio's segment table
     */
    public int index() {
        return idx;
    }

    /**
     * Bytes already consumed of the current segment ({@code bi_bvec_done}).
     *
     * @return the bytes of that segment already done
     */
    public long doneInSegment() {
        return done;
    }

    void copyFrom(BioIter other) {
        offset = other.offset;
        size = other.size;
        idx = other.idx;
        done = other.done;
    }

    void reset() {
        offset = 0;
        size = 0;
        idx = 0;
        done = 0;
    }

    @Override
    public String toString() {
        return "BioIter[offset=" + offset + ", size=" + size + ", idx=" + idx + ", done=" + done + "]";
    }
}
