package io.biostack.block.bitmap;

import io.biostack.block.Extent;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class DirtyBitmapTest {
    @Test
    void aWriteMarksEveryChunkItTouchesAndOnlyThose() {
        DirtyBitmap b = new DirtyBitmap("b", 64 * 1024, 10L << 20);
        assertThat(b.mark(64 * 1024 - 512, 1024)).isTrue(); // straddles chunks 0 and 1
        assertThat(b.mark(100, 10)).isFalse(); // chunk 0 is dirty already
        assertThat(b.dirtyBits()).isEqualTo(2);
        assertThat(b.extentAt(0, 10L << 20)).isEqualTo(new Extent(128 * 1024, DirtyBitmap.NBD_DIRTY));
        assertThat(b.extentAt(128 * 1024, 10L << 20)).isEqualTo(new Extent((10L << 20) - 128 * 1024, 0));
        assertThat(b.extentAt(4096, 8192)).isEqualTo(new Extent(8192, DirtyBitmap.NBD_DIRTY));
    }

    @Test
    void extentsAgreeWithAPlainModelOverManyWordBoundaries() {
        long size = 5_000L * 4096 + 1000; // a partial last chunk
        DirtyBitmap b = new DirtyBitmap("b", 4096, size);
        boolean[] model = new boolean[(int) ((size + 4095) / 4096)];
        Random r = new Random(7);
        for (int i = 0; i < 300; i++) {
            long off = r.nextLong(size);
            long len = 1 + r.nextLong(Math.min(300_000, size - off));
            b.mark(off, len);
            for (long c = off / 4096; c <= (off + len - 1) / 4096; c++) {
                model[(int) c] = true;
            }
        }
        long pos = 0;
        while (pos < size) {
            Extent e = b.extentAt(pos, size - pos);
            assertThat(e.length()).isPositive();
            for (long p = pos; p < pos + e.length(); p += 4096 - (p % 4096)) {
                assertThat(model[(int) (p / 4096)]).as("chunk %d", p / 4096).isEqualTo(e.flags() == DirtyBitmap.NBD_DIRTY);
            }
            long next = pos + e.length();
            if (next < size) {
                assertThat(model[(int) (next / 4096)]).isNotEqualTo(e.flags() == DirtyBitmap.NBD_DIRTY);
            }
            pos = next;
        }
        long dirty = 0;
        for (int c = 0; c < model.length; c++) {
            if (model[c]) {
                dirty += Math.min(4096, size - c * 4096L);
            }
        }
        assertThat(b.dirtyBytes()).isEqualTo(dirty);
    }

    @Test
    void mergeIsAnOrAndRefusesAnotherGranularity() {
        DirtyBitmap a = new DirtyBitmap("a", 4096, 1 << 20);
        DirtyBitmap b = new DirtyBitmap("b", 4096, 1 << 20);
        a.mark(0, 4096);
        b.mark(8192, 4096);
        b.merge(a);
        assertThat(b.dirtyBytes()).isEqualTo(8192);
        assertThat(b.isMarked(0, 4096)).isTrue();
        DirtyBitmap c = new DirtyBitmap("c", 65536, 1 << 20);
        assertThatThrownBy(() -> c.merge(a)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("granularities");
        assertThat(c.dirtyBytes()).isZero();
    }

    @Test
    void badNamesAndGranularitiesAreRefused() {
        assertThatThrownBy(() -> new DirtyBitmap("a b", 4096, 1 << 20)).hasMessageContaining("only letters");
        assertThatThrownBy(() -> new DirtyBitmap("a", 2048, 1 << 20)).hasMessageContaining("power of two from 4k");
        assertThatThrownBy(() -> new DirtyBitmap("a", 3 * 4096, 1 << 20)).hasMessageContaining("power of two");
    }

    @Test
    void concurrentMarksAreNeverLost() throws Exception {
        DirtyBitmap b = new DirtyBitmap("b", 4096, 4096L * 64 * 16);
        Thread[] ts = new Thread[4];
        for (int t = 0; t < ts.length; t++) {
            int id = t;
            ts[t] = Thread.ofPlatform().start(() -> {
                for (long c = id; c < 64 * 16; c += ts.length) {
                    b.mark(c * 4096, 1);
                }
            });
        }
        for (Thread t : ts) {
            t.join();
        }
        assertThat(b.dirtyBits()).isEqualTo(64 * 16);
    }

    @Test
    void markAndIsMarkedAgreeWithAModelAtEveryWordEdge() {
        // Ranges that start and end on bits 0, 1, 62 and 63 of a word, in one word and across
        // words, on a device whose last chunk is partial: the one-word fast path and the loop
        // must set and test exactly the chunks a range touches.
        long g = 4096;
        long size = 64 * 4 * g - 100;
        int chunks = (int) ((size + g - 1) / g);
        long[] edges = {0, 1, 62, 63, 64, 65, 126, 127, 128, 191, 192, 255};
        for (long f : edges) {
            for (long l : edges) {
                if (l < f) {
                    continue;
                }
                DirtyBitmap b = new DirtyBitmap("b", g, size);
                long off = f * g + 7;
                long end = Math.min(size, l * g + g - 1);
                assertThat(b.isMarked(off, end - off)).isFalse();
                assertThat(b.mark(off, end - off)).as("%d..%d", f, l).isTrue();
                assertThat(b.mark(off, end - off)).isFalse();
                assertThat(b.isMarked(off, end - off)).isTrue();
                assertThat(b.dirtyBits()).as("%d..%d", f, l).isEqualTo(l - f + 1);
                for (int c = 0; c < chunks; c++) {
                    assertThat(b.isMarked(c * g, 1)).as("chunk %d after %d..%d", c, f, l).isEqualTo(c >= f && c <= l);
                }
                if (f > 0) {
                    assertThat(b.isMarked((f - 1) * g, 2 * g)).isFalse(); // one clean chunk spoils the range
                    assertThat(b.mark((f - 1) * g, 2 * g)).isTrue();
                }
            }
        }
    }
}
