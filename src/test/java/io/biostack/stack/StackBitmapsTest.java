package io.biostack.stack;

import io.biostack.block.BlockDevice;
import io.biostack.block.StatusContext;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class StackBitmapsTest {
    static String ctl(Stack s, String... argv) throws Exception {
        return s.control(List.of(argv));
    }

    static String bitmapLine(Stack s, String dev, String bm) throws Exception {
        return ctl(s, "status", dev).lines().filter(l -> l.startsWith("bitmap " + bm + " ")).findFirst().orElseThrow();
    }

    @Test
    void writesDiscardsAndWriteZeroesMarkBitmapsOnLeavesAndMappedDevices() throws Exception {
        try (Stack s = Stack.open("d: ram 8M\nlin: linear d 1M\n", "t")) {
            ctl(s, "message", "d", "bitmap add leaf granularity=4k");
            ctl(s, "message", "lin", "bitmap add top");
            BlockDevice lin = s.device("lin");
            lin.write(0, StackTest.fill(4096, 1)).get();
            lin.discard(1 << 20, 8192).get();
            lin.writeZeroes(2 << 20, 4096, false).get();
            // lin is d from 1M on: the leaf sees the same writes 1M further
            assertThat(bitmapLine(s, "d", "leaf")).isEqualTo("bitmap leaf granularity=4096 dirty=16384 recording transient consistent");
            assertThat(bitmapLine(s, "lin", "top")).isEqualTo("bitmap top granularity=65536 dirty=196608 recording transient consistent");
            assertThat(ctl(s, "status", "lin")).startsWith("0 14336 linear\n");
            assertThat(s.device("d").statusContexts()).extracting(StatusContext::name).containsExactly("qemu:dirty-bitmap:leaf");
            StatusContext leaf = s.device("d").statusContexts().getFirst();
            assertThat(leaf.extentAt(1 << 20, 8 << 20).length()).isEqualTo(4096);
            assertThat(leaf.extentAt(1 << 20, 8 << 20).flags()).isEqualTo(1);
            assertThat(leaf.extentAt(0, 8 << 20).flags()).isZero();
            assertThat(ctl(s, "status", "d", "--json")).isEqualTo("{\"device\":\"d\",\"targets\":[],\"bitmaps\":[{\"name\":\"leaf\","
                    + "\"granularity\":4096,\"dirty_bytes\":16384,\"recording\":true,\"persistent\":false,\"consistent\":true,\"busy\":null}]}\n");
            // reads don't mark
            lin.read(4 << 20, java.lang.foreign.Arena.ofAuto().allocate(4096, 4096)).get();
            assertThat(bitmapLine(s, "lin", "top")).contains("dirty=196608");
        }
    }

    @Test
    void aDeviceWithBitmapsIsNotResizedUnderThemAndABitmapAddedAfterAResizeCoversAllOfIt(@TempDir Path dir)
            throws Exception {
        String stack = "d: ram 8M\nlin: 0 SIZE linear d 0 bitmap-file=" + dir.resolve("bm") + "\n";
        try (Stack s = Stack.open(stack.replace("SIZE", "4M"), "t")) {
            ctl(s, "message", "lin", "bitmap add b persistent");
            // grown by a reload, as dmsetup does it: the bitmap covers 4M of it
            assertThatThrownBy(() -> ctl(s, "reload", "lin", "0 8M linear d 0"))
                    .hasMessageContaining("lin has dirty bitmaps (b)").hasMessageContaining("'bitmap remove' them");
            ctl(s, "resume", "lin");
            assertThat(s.device("lin").size()).isEqualTo(4 << 20);
            ctl(s, "reload", "lin", "0 4M linear d 4M"); // the same size is fine
            ctl(s, "resume", "lin");
            ctl(s, "message", "lin", "bitmap remove b");
            ctl(s, "reload", "lin", "0 8M linear d 0");
            ctl(s, "resume", "lin");
            assertThat(s.device("lin").size()).isEqualTo(8 << 20);
        }
        // the side file, without a bitmap now, doesn't stop the grown device from opening
        try (Stack s = Stack.open(stack.replace("SIZE", "8M"), "t")) {
            ctl(s, "message", "lin", "bitmap add b persistent");
            s.device("lin").write(6 << 20, StackTest.fill(4096, 1)).get();
            assertThat(bitmapLine(s, "lin", "b")).as("a write past the old end").contains("dirty=65536");
            ctl(s, "message", "lin", "bitmap remove b");
            ctl(s, "reload", "lin", "0 4M linear d 0");
            ctl(s, "resume", "lin");
            ctl(s, "message", "lin", "bitmap add b persistent");
            s.device("lin").write(3 << 20, StackTest.fill(4096, 1)).get();
            assertThat(bitmapLine(s, "lin", "b")).as("made for the device as it is").contains("dirty=65536");
        }
        try (Stack s = Stack.open(stack.replace("SIZE", "4M"), "t")) {
            assertThat(bitmapLine(s, "lin", "b")).isEqualTo("bitmap b granularity=65536 dirty=65536 recording persistent consistent");
        }
    }

    @Test
    void disabledBitmapsDontRecordAndClearEnableMergeDoWhatTheySay() throws Exception {
        try (Stack s = Stack.open("d: ram 4M\n", "t")) {
            ctl(s, "message", "d", "bitmap add a disabled");
            ctl(s, "message", "d", "bitmap add b granularity=64k");
            s.device("d").write(0, StackTest.fill(4096, 1)).get();
            assertThat(bitmapLine(s, "d", "a")).contains("dirty=0 disabled");
            ctl(s, "message", "d", "bitmap enable a");
            s.device("d").write(1 << 20, StackTest.fill(4096, 1)).get();
            assertThat(bitmapLine(s, "d", "a")).contains("dirty=65536 recording");
            ctl(s, "message", "d", "bitmap merge b a");
            assertThat(bitmapLine(s, "d", "a")).contains("dirty=131072");
            ctl(s, "message", "d", "bitmap clear b");
            assertThat(bitmapLine(s, "d", "b")).contains("dirty=0");
            ctl(s, "message", "d", "bitmap disable a");
            s.device("d").write(2 << 20, StackTest.fill(4096, 1)).get();
            assertThat(bitmapLine(s, "d", "a")).contains("dirty=131072 disabled");
            ctl(s, "message", "d", "bitmap remove a");
            assertThat(ctl(s, "status", "d")).doesNotContain("bitmap a ");
        }
    }

    @Test
    void badBitmapMessagesAreRefusedClearlyAndChangeNothing() throws Exception {
        try (Stack s = Stack.open("d: ram 4M\n", "t")) {
            ctl(s, "message", "d", "bitmap add a granularity=4k");
            ctl(s, "message", "d", "bitmap add b");
            assertThatThrownBy(() -> ctl(s, "message", "d", "bitmap merge a b")).hasMessageContaining("granularities must match");
            assertThatThrownBy(() -> ctl(s, "message", "d", "bitmap add a")).hasMessageContaining("already");
            assertThatThrownBy(() -> ctl(s, "message", "d", "bitmap add c granularity=1k")).hasMessageContaining("power of two from 4k");
            assertThatThrownBy(() -> ctl(s, "message", "d", "bitmap add c persistent")).hasMessageContaining("bitmap-file=PATH");
            assertThatThrownBy(() -> ctl(s, "message", "d", "bitmap frob a")).hasMessageContaining("unknown bitmap verb");
            assertThatThrownBy(() -> ctl(s, "message", "d", "bitmap clear zz")).hasMessageContaining("no bitmap 'zz' (bitmaps: a, b)");
            assertThatThrownBy(() -> ctl(s, "message", "nope", "bitmap add x")).hasMessageContaining("no device 'nope'");
            assertThat(ctl(s, "status", "d").lines().count()).isEqualTo(2);
        }
    }

    // ---- persistence ------------------------------------------------------------------------

    @Test
    void aPersistentBitmapSurvivesACleanStopConsistent(@TempDir Path dir) throws Exception {
        Path img = dir.resolve("d.img");
        Path bm = dir.resolve("d.bitmaps");
        String text = "d: loop " + img + " size=8M direct-io=off bitmap-file=" + bm + "\n";
        try (Stack s = Stack.open(text, "t")) {
            ctl(s, "message", "d", "bitmap add nightly persistent");
            ctl(s, "message", "d", "bitmap add scratch");
            s.device("d").write(3 << 20, StackTest.fill(8192, 1)).get();
        }
        try (Stack s = Stack.open(text, "t")) {
            assertThat(ctl(s, "status", "d")).startsWith(
                    "bitmap nightly granularity=65536 dirty=65536 recording persistent consistent\n");
            assertThat(ctl(s, "status", "d")).doesNotContain("scratch");
            assertThat(s.device("d").statusContexts()).extracting(StatusContext::name).contains("qemu:dirty-bitmap:nightly");
        }
    }

    @Test
    void theFirstWriteToACleanChunkCostsOneMetadataWriteAndLaterOnesNone(@TempDir Path dir) throws Exception {
        String text = "d: ram 8M bitmap-file=" + dir.resolve("b") + "\n";
        try (Stack s = Stack.open(text, "t")) {
            ctl(s, "message", "d", "bitmap add p persistent");
            BlockDevice d = s.device("d");
            d.write(0, StackTest.fill(4096, 1)).get();
            assertThat(ctl(s, "status", "d")).contains("metadata_writes=1");
            for (int i = 0; i < 10; i++) {
                d.write(4096L * i, StackTest.fill(4096, 1)).get();
            }
            assertThat(ctl(s, "status", "d")).contains("metadata_writes=1");
            // the mark is on disk now, before close: the store's block holds bit 0
            byte[] f = Files.readAllBytes(dir.resolve("b"));
            assertThat(f[4096] & 1).isEqualTo(1);
        }
    }

    @Test
    void aBitmapOpenWhenBiostackStoppedLoadsInconsistentAndCanOnlyBeRemoved(@TempDir Path dir) throws Exception {
        Path bm = dir.resolve("b");
        Path crashed = dir.resolve("crashed");
        try (Stack s = Stack.open("d: ram 8M bitmap-file=" + bm + "\n", "t")) {
            ctl(s, "message", "d", "bitmap add p persistent");
            s.device("d").write(0, StackTest.fill(4096, 1)).get();
            Files.copy(bm, crashed); // the file as a SIGKILL would leave it: in use
        }
        try (Stack s = Stack.open("d: ram 8M bitmap-file=" + crashed + "\n", "t")) {
            assertThat(ctl(s, "status", "d")).contains("bitmap p granularity=65536 dirty=0 disabled persistent inconsistent");
            assertThat(s.device("d").statusContexts()).isEmpty();
            for (String verb : List.of("clear", "enable", "disable")) {
                assertThatThrownBy(() -> ctl(s, "message", "d", "bitmap " + verb + " p"))
                        .hasMessageContaining("inconsistent").hasMessageContaining("next backup must be a full one");
            }
            ctl(s, "message", "d", "bitmap add q");
            assertThatThrownBy(() -> ctl(s, "message", "d", "bitmap merge p q")).hasMessageContaining("inconsistent");
            ctl(s, "message", "d", "bitmap remove p");
        }
        try (Stack s = Stack.open("d: ram 8M bitmap-file=" + crashed + "\n", "t")) {
            assertThat(ctl(s, "status", "d")).doesNotContain("bitmap p ");
        }
    }

    @Test
    void twoDevicesNamingOneBitmapFileAreRefusedBeforeEitherWritesIt(@TempDir Path dir) throws Exception {
        // Each device's store rewrites the whole file with its own bitmaps: with one file for two,
        // the last save wins, and at the next open both devices load the same bitmaps, so an
        // incremental backup of one copies what the other changed (a script's "nightly" on both).
        Path bm = dir.resolve("stack.bitmaps");
        String text = "a: ram 8M bitmap-file=" + bm + "\nb: ram 8M bitmap-file=" + dir + "/./stack.bitmaps\n";
        assertThatThrownBy(() -> Stack.open(text, "t")).isInstanceOf(StackException.class)
                .hasMessageContaining("t:2: b: bitmap-file=")
                .hasMessageContaining("is a's too").hasMessageContaining("one file per device");
        assertThat(bm).doesNotExist();
        // one device on several lines (segments) naming its one file is fine
        try (Stack s = Stack.open("a: 0 8192 zero bitmap-file=" + bm + "\na: 8192 8192 zero bitmap-file=" + bm + "\n", "t")) {
            ctl(s, "message", "a", "bitmap add p persistent");
        }
        assertThat(bm).exists();
    }

    @Test
    void aDamagedBitmapFileIsRefusedWithWhatToDo(@TempDir Path dir) throws Exception {
        Path bm = dir.resolve("b");
        try (Stack s = Stack.open("d: ram 8M bitmap-file=" + bm + "\n", "t")) {
            ctl(s, "message", "d", "bitmap add p persistent");
        }
        byte[] good = Files.readAllBytes(bm);
        // a bad header checksum
        byte[] bad = good.clone();
        bad[40] ^= 1;
        Files.write(bm, bad);
        assertThatThrownBy(() -> Stack.open("d: ram 8M bitmap-file=" + bm + "\n", "t"))
                .hasMessageContaining("header checksum mismatch").hasMessageContaining("next backup a full one");
        // truncated in the header
        Files.write(bm, java.util.Arrays.copyOf(good, 100));
        assertThatThrownBy(() -> Stack.open("d: ram 8M bitmap-file=" + bm + "\n", "t"))
                .hasMessageContaining("truncated");
        // another device's file
        Files.write(bm, good);
        assertThatThrownBy(() -> Stack.open("d: ram 4M bitmap-file=" + bm + "\n", "t"))
                .hasMessageContaining("made for a device of 8388608 bytes");
        // truncated bits, or bits that fail their checksum: that bitmap is inconsistent
        Files.write(bm, java.util.Arrays.copyOf(good, 4096));
        try (Stack s = Stack.open("d: ram 8M bitmap-file=" + bm + "\n", "t")) {
            assertThat(ctl(s, "status", "d")).contains("persistent inconsistent");
            assertThat(s.device("d").statusContexts()).isEmpty();
        }
        bad = good.clone();
        bad[4096] ^= 1;
        Files.write(bm, bad);
        try (Stack s = Stack.open("d: ram 8M bitmap-file=" + bm + "\n", "t")) {
            assertThat(ctl(s, "status", "d")).contains("persistent inconsistent");
        }
        // a data offset so large that offset + length wraps past Long.MAX_VALUE, under a header
        // checksum that matches: the bits are missing (inconsistent), not a read far past the end
        bad = good.clone();
        ByteBuffer h = ByteBuffer.wrap(bad, 0, 4096);
        h.putLong(32 + 56, Long.MAX_VALUE & ~4095L).putInt(12, 0);
        java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        crc.update(bad, 0, 4096);
        h.putInt(12, (int) crc.getValue());
        Files.write(bm, bad);
        try (Stack s = Stack.open("d: ram 8M bitmap-file=" + bm + "\n", "t")) {
            assertThat(ctl(s, "status", "d")).contains("persistent inconsistent");
        }
    }
}
