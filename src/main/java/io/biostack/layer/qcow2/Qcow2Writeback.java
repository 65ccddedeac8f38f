package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * The one place where qcow2 metadata writes are ordered against each other and against data
 * (qemu's {@code qcow2_cache_set_dependency} and {@code qcow2_cache_flush}, done with bios).
 *
 * <h2>The rules (qcow2.rst and qemu's allocation code)</h2>
 * <ol>
 * <li>A refcount block is durable before a refcount table entry points at it, and refcounts
 *     are durable before an L2 entry that uses the cluster they count.</li>
 * <li>Guest data is durable before an L2 entry points at it.</li>
 * <li>A new L2 table is durable before the L1 entry that points at it.</li>
 * <li>When a cluster is freed, the L2 (or L1) entry that pointed at it is cleared durably
 *     before its refcount drops.</li>
 * </ol>
 *
 * <h2>How</h2>
 * Metadata changes stay in memory (the L2 cache, the refcount blocks, the L1 table), marked
 * dirty. A guest FLUSH takes, under the metadata monitor and all at one instant, a copy of every
 * dirty piece, and writes the copies in <em>stages</em>: the writes of one stage go out
 * together, then a FLUSH of the container, then the next stage:
 * <pre>
 *   stage 1  refcount blocks           (rule 1; data written before the FLUSH began is made
 *   FLUSH                               durable by this flush too: rule 2)
 *   stage 2  refcount table entries
 *   FLUSH                              (rule 1: a block the table names counts from now on)
 *   stage 2b the header, when the refcount table moved (grew): the new table is durable first
 *   FLUSH
 *   stage 3  L2 tables
 *   FLUSH                              (rule 3)
 *   stage 4  L1 entries
 *   FLUSH
 *   stage 5  refcount blocks lowered by frees whose clearing was in stages 3-4 (rule 4)
 *   FLUSH
 * </pre>
 * An L2 entry changes in memory only when the data it points at has completed, and refcounts
 * rise when the cluster is allocated, before its data is written; so every L2 entry in the
 * instant's copy has its data completed and its refcount in the same copy. A stage with
 * nothing to write is skipped with its flush: one guest FLUSH costs one container flush when
 * only data was written, and serves every allocation since the last one. A crash between any
 * two bios leaves at worst clusters whose refcount is higher than their use (a leak).
 *
 * <p>Stateless: the caller builds the stages and runs one writeback at a time.
 */
final class Qcow2Writeback {
    private Qcow2Writeback() {
    }

    /**
     * One metadata write: {@code data} (a private copy, aligned memory) at {@code offset}.
     *
     * @param offset where in the container
     * @param data   the bytes, a multiple of the container's block size
     */
    record Write(long offset, MemorySegment data) {
    }

    /**
     * Writes {@code stages} in order, each followed by a FLUSH of {@code container} when it
     * wrote anything, and ends with one FLUSH in any case (the guest's own).
     *
     * @return completes when the last flush has, or with the first error
     */
    static CompletableFuture<Void> run(BlockDevice container, List<List<Write>> stages, List<Boolean> flushAfter) {
        CompletableFuture<Void> f = CompletableFuture.completedFuture(null);
        boolean pending = true;
        for (int i = 0; i < stages.size(); i++) {
            List<Write> s = stages.get(i);
            boolean flush = flushAfter.get(i);
            if (!s.isEmpty()) {
                f = f.thenCompose(v -> writeAll(container, s));
                pending = true;
            }
            if (flush && pending) {
                f = f.thenCompose(v -> container.flush());
                pending = false;
            }
        }
        if (pending) {
            f = f.thenCompose(v -> container.flush());
        }
        return f;
    }

    private static CompletableFuture<Void> writeAll(BlockDevice container, List<Write> s) {
        List<CompletableFuture<Void>> all = new ArrayList<>(s.size());
        for (Write w : s) {
            all.add(container.write(w.offset(), w.data()));
        }
        return CompletableFuture.allOf(all.toArray(CompletableFuture[]::new));
    }
}
