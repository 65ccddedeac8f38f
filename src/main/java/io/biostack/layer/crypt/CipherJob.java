package io.biostack.layer.crypt;

import io.biostack.block.Bio;
import io.biostack.block.MpmcRing;
import io.biostack.block.Status;
import io.biostack.layer.crypt.BouncePool.Bounce;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The cipher work of one bio piece, cut into chunks that several threads may run at once
 * (dm-crypt's {@code struct dm_crypt_io} with its {@code io_pending} count). Pooled: the I/O path
 * allocates none once warm.
 *
 * <h2>Counts</h2>
 * Two counted hand-shakes, as a bio has:
 * <ul>
 *   <li>{@code next} hands out chunk numbers: whoever takes a number runs that chunk, so each
 *   chunk runs exactly once however many threads look at the job;</li>
 *   <li>{@code left} counts chunks not yet done: the thread that finishes the last one calls
 *   {@link Crypt#cipherDone} exactly once (first error wins: a failing chunk records its status
 *   in the piece, see {@link Bio#setStatus});</li>
 *   <li>{@code refs} counts who may still look at the job (its starter and each reference in the
 *   worker ring): the last {@link #release} puts it back in its pool, so a worker that polls a
 *   reference late never sees a recycled job.</li>
 * </ul>
 *
 * <p>Fields other than the counts are written by the starter before the job is published
 * (through the ring's release/acquire, or by the same thread) and only read afterwards.
 */
final class CipherJob {
    private final MpmcRing<CipherJob> pool;
    private final AtomicInteger next = new AtomicInteger();
    private final AtomicInteger left = new AtomicInteger();
    private final AtomicInteger refs = new AtomicInteger();

    Crypt owner;
    boolean encrypt;
    /** The piece whose memory is read (WRITE) or transformed in place (READ). */
    Bio piece;
    /** WRITE: the buffer the ciphertext goes to; null for READ (in place). */
    Bounce bounce;
    long iv0;
    int chunkBytes;
    int chunks;

    CipherJob(MpmcRing<CipherJob> pool) {
        this.pool = pool;
    }

    /** Takes a job from {@code pool}, or makes one (warm-up), counted in {@code created}. */
    static CipherJob get(MpmcRing<CipherJob> pool, AtomicLong created) {
        CipherJob j = pool.poll();
        if (j == null) {
            created.incrementAndGet();
            j = new CipherJob(pool);
        }
        return j;
    }

    /** Sets the job up; the caller holds the one reference. */
    CipherJob init(Crypt owner, boolean encrypt, Bio piece, Bounce bounce, long iv0, int chunkBytes) {
        this.owner = owner;
        this.encrypt = encrypt;
        this.piece = piece;
        this.bounce = bounce;
        this.iv0 = iv0;
        this.chunkBytes = chunkBytes;
        this.chunks = (int) ((piece.size() + chunkBytes - 1) / chunkBytes);
        next.set(0);
        left.set(chunks);
        refs.set(1);
        return this;
    }

    /**
     * Runs the job from the thread that has it (the one completing a READ or submitting a WRITE):
     * offers it to the workers and, with {@code help} and several chunks, takes chunks too until
     * none is left (work-stealing, so the bio never waits on a sleeping worker). Otherwise the job
     * is left to the workers that took it, and this thread is free at once (an io_uring worker
     * goes back to its ring). When no worker took it, this thread runs it all. Drops the caller's
     * reference. Never blocks (a wake-up is a futex syscall that does not wait).
     */
    void start(CryptWorkers workers, boolean help) {
        boolean helping = help && chunks > 1;
        int posted = workers.post(this, helping ? chunks - 1 : chunks, !helping);
        if (posted == 0 || helping) {
            work();
        }
        release();
    }

    /** Runs chunks until every one is taken; the thread that finishes the last completes the job. */
    void work() {
        int i;
        while ((i = next.getAndIncrement()) < chunks) {
            long from = (long) i * chunkBytes;
            owner.runChunk(this, from, (int) Math.min(chunkBytes, piece.size() - from));
            if (left.decrementAndGet() == 0) {
                owner.cipherDone(this);
            }
        }
    }

    /** Records a chunk's failure in the piece (first error wins). */
    void fail(Status s, String why) {
        piece.setStatus(s, why);
    }

    void retain(int n) {
        refs.getAndAdd(n);
    }

    void dropRefs(int n) {
        if (refs.addAndGet(-n) == 0) {
            recycle();
        }
    }

    /** Gives up one reference; the last one returns the job to its pool. */
    void release() {
        dropRefs(1);
    }

    private void recycle() {
        owner = null;
        piece = null;
        bounce = null;
        pool.offer(this);
    }
}
