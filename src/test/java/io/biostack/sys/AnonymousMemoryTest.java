package io.biostack.sys;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * {@link AnonymousMemory#reserveHuge}: zero-filled memory on a huge-page boundary, of exactly
 * the size asked, which the kernel backs with huge pages where THP allows it, and which is
 * unmapped when its arena closes.
 */
class AnonymousMemoryTest {
    @Test
    void reserveHugeIsZeroedAlignedToAHugePageAndOfTheSizeAsked() {
        long size = 3 * AnonymousMemory.HUGE_PAGE + 12345;
        try (Arena a = Arena.ofShared()) {
            MemorySegment m = AnonymousMemory.reserveHuge(size, a);
            assertThat(m).isNotNull();
            assertThat(m.byteSize()).isEqualTo(size);
            assertThat(m.address() % AnonymousMemory.HUGE_PAGE).isZero();
            for (long off = 0; off < size; off += 4096) {
                assertThat(m.get(ValueLayout.JAVA_BYTE, off)).isZero();
                m.set(ValueLayout.JAVA_BYTE, off, (byte) 7);
            }
            m.set(ValueLayout.JAVA_BYTE, size - 1, (byte) 9);
            assertThat(m.get(ValueLayout.JAVA_BYTE, size - 1)).isEqualTo((byte) 9);
        }
    }

    @Test
    void reserveHugeIsBackedByHugePagesWhereTheKernelAllowsThem() throws Exception {
        Path thp = Path.of("/sys/kernel/mm/transparent_hugepage/enabled");
        io.biostack.TestEnv.require(Files.exists(thp) && !Files.readString(thp).contains("[never]"),
                "transparent huge pages (madvise or always)");
        long size = 8 * AnonymousMemory.HUGE_PAGE;
        try (Arena a = Arena.ofShared()) {
            MemorySegment m = AnonymousMemory.reserveHuge(size, a);
            m.fill((byte) 1);
            // smaps of the range: AnonHugePages counts what THP backs (fragmented memory may
            // leave some small pages; one huge page is enough to show the advice took).
            String smaps = Files.readString(Path.of("/proc/self/smaps"));
            String head = Long.toHexString(m.address()) + "-";
            int at = smaps.indexOf(head);
            assertThat(at).as("the mapping in smaps").isNotNegative();
            int huge = smaps.indexOf("AnonHugePages:", at);
            String line = smaps.substring(huge, smaps.indexOf('\n', huge));
            long kb = Long.parseLong(line.replaceAll("[^0-9]", ""));
            assertThat(kb).as(line).isGreaterThanOrEqualTo(2048);
        }
    }

    @Test
    void reserveHugeIsUnmappedWhenItsArenaCloses() {
        Arena a = Arena.ofShared();
        MemorySegment m = AnonymousMemory.reserveHuge(AnonymousMemory.HUGE_PAGE, a);
        m.fill((byte) 3);
        a.close();
        assertThatThrownBy(() -> m.get(ValueLayout.JAVA_BYTE, 0)).isInstanceOf(IllegalStateException.class);
    }

    @Test
    void reserveHugeOfNothingIsNull() {
        assertThat(AnonymousMemory.reserveHuge(0, Arena.global())).isNull();
    }
}
