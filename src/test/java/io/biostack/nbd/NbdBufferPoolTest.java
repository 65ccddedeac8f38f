package io.biostack.nbd;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The per-reactor payload pool: size classes, reuse without making new buffers, and with a
 * registrar every buffer is registered when made and unregistered exactly when dropped.
 */
class NbdBufferPoolTest {
    /** Hands out handles and remembers which are live. */
    static final class Recorder implements BufferPool.Registrar {
        final Map<Integer, MemorySegment> live = new HashMap<>();
        int next;
        int unregistered;

        @Override
        public int register(MemorySegment seg) {
            if (next == 5) {
                next++;
                return -1; // the table is full, say: this one stays unregistered
            }
            live.put(next, seg);
            return next++;
        }

        @Override
        public void unregister(int handle) {
            assertThat(live.remove(handle)).as("handle %d live", handle).isNotNull();
            unregistered++;
        }
    }

    @Test
    void buffersAreAlignedAndSizedByClass() {
        BufferPool pool = new BufferPool(1 << 20, 1 << 20, null);
        BufferPool.Buf b = pool.get(5000);
        assertThat(b.segment.byteSize()).isEqualTo(8192);
        assertThat(b.segment.address() % 4096).isZero();
        assertThat(pool.get(1).segment.byteSize()).isEqualTo(4096);
        assertThat(pool.get(1 << 20).segment.byteSize()).isEqualTo(1 << 20);
        assertThat(b.handle).isEqualTo(-1);
    }

    @Test
    void aWarmPoolMakesNoNewBuffers() {
        BufferPool pool = new BufferPool(1 << 20, 1 << 20, null);
        for (int round = 0; round < 100; round++) {
            BufferPool.Buf a = pool.get(4096);
            BufferPool.Buf b = pool.get(65536);
            pool.put(a);
            pool.put(b);
        }
        assertThat(pool.made()).isEqualTo(2);
    }

    @Test
    void everyBufferIsRegisteredWhenMadeAndUnregisteredOnlyWhenDropped() {
        Recorder reg = new Recorder();
        // 64 KiB kept per class: 16 of 4 KiB; at least 4 of every class.
        BufferPool pool = new BufferPool(1 << 20, 64 << 10, reg);
        List<BufferPool.Buf> out = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            out.add(pool.get(4096));
        }
        assertThat(reg.live).hasSize(19); // one refused: it works unregistered
        assertThat(out).filteredOn(b -> b.handle < 0).hasSize(1);
        for (BufferPool.Buf b : out) {
            assertThat(b.handle < 0 || reg.live.get(b.handle) == b.segment).isTrue();
        }
        for (BufferPool.Buf b : out) {
            pool.put(b);
        }
        // 16 kept, 4 dropped: the dropped ones that were registered are unregistered.
        assertThat(pool.dropped()).isEqualTo(4);
        assertThat(reg.live.size() + reg.unregistered).isEqualTo(19);
        assertThat(reg.live.size()).isBetween(15, 16);
        for (BufferPool.Buf b : out) {
            if (b.handle >= 0) {
                assertThat(reg.live.get(b.handle)).isSameAs(b.segment);
            }
        }
        // Taken again: the kept ones, still registered, and nothing new is made.
        long made = pool.made();
        for (int i = 0; i < 16; i++) {
            pool.get(4096);
        }
        assertThat(pool.made()).isEqualTo(made);
        // The largest class keeps at least 4.
        List<BufferPool.Buf> big = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            big.add(pool.get(1 << 20));
        }
        big.forEach(pool::put);
        assertThat(pool.dropped()).isEqualTo(4);
    }
}
