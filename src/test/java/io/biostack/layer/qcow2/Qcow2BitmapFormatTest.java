package io.biostack.layer.qcow2;

import io.biostack.layer.qcow2.Qcow2Bitmaps.Entry;
import io.biostack.layer.qcow2.Qcow2Bitmaps.Ext;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.function.Consumer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The bitmap directory and extension codec against qcow2.rst's limits: what it writes it reads
 * back, and each "must refuse" is refused with its own message.
 */
class Qcow2BitmapFormatTest {
    static final int CS = 65536;
    static final long DISK = 16L << 20;
    static final long CONTAINER = 64L << 20;

    static Entry entry(String name) {
        return new Entry(name, 5L * CS, 1, Qcow2Bitmaps.FLAG_AUTO, 16);
    }

    static List<Entry> parse(byte[] dir, int count) {
        return Qcow2Bitmaps.parseDirectory(dir, new Ext(count, dir.length, 4L * CS), CS, DISK, CONTAINER);
    }

    /** A one-entry directory changed by {@code change}. */
    static byte[] damaged(Consumer<ByteBuffer> change) {
        byte[] d = Qcow2Bitmaps.encodeDirectory(List.of(entry("b0")));
        change.accept(ByteBuffer.wrap(d));
        return d;
    }

    @Test
    void aDirectoryWrittenReadsBackEntryForEntryWithNamesPaddedToEightBytes() {
        List<Entry> es = List.of(entry("b0"), new Entry("a-much-longer-name", 9L * CS, 1,
                Qcow2Bitmaps.FLAG_IN_USE, 20));
        byte[] d = Qcow2Bitmaps.encodeDirectory(es);
        assertThat(d.length).isEqualTo(32 + 48);
        assertThat(parse(d, 2)).containsExactlyElementsOf(es);
        Ext e = new Ext(2, d.length, 7L * CS);
        assertThat(Ext.parse(e.encode(), CS, CONTAINER)).isEqualTo(e);
    }

    @Test
    void theTableSizeIsQemusSerialisationInSixtyFourBitWords() {
        // 16 MiB at 64 KiB: 256 bits, 32 bytes, one cluster; 1 TiB at 4 KiB: 2^28 bits, 32 MiB, 512 clusters
        assertThat(Qcow2Bitmaps.tableSize(DISK, 16, CS)).isEqualTo(1);
        assertThat(Qcow2Bitmaps.tableSize(1L << 40, 12, CS)).isEqualTo(512);
        assertThat(Qcow2Bitmaps.tableSize((1L << 40) + 1, 12, CS)).isEqualTo(513);
    }

    @Test
    void eachBrokenDirectoryIsRefusedNamingWhatIsWrong() {
        assertThatThrownBy(() -> parse(damaged(b -> b.put(17, (byte) 8)), 1))
                .hasMessage("bitmap 'b0' has a granularity of 2^8 bytes (2^9 to 2^31)");
        assertThatThrownBy(() -> parse(damaged(b -> b.put(16, (byte) 2)), 1))
                .hasMessage("bitmap 'b0' has type 2 (1, dirty tracking, is the only one)");
        assertThatThrownBy(() -> parse(damaged(b -> b.putInt(12, 4)), 1))
                .hasMessage("bitmap 'b0' has unknown flags 0x4");
        assertThatThrownBy(() -> parse(damaged(b -> b.putInt(20, 8)), 1))
                .hasMessageContaining("has extra data");
        assertThatThrownBy(() -> parse(damaged(b -> b.putShort(18, (short) 200)), 1))
                .hasMessageContaining("entry 0 has a name of 200 bytes, past its end");
        assertThatThrownBy(() -> parse(damaged(b -> b.putInt(8, 2)), 1))
                .hasMessage("bitmap 'b0' has a bitmap table of 2 entries; a disk of 16777216 bytes needs 1");
        assertThatThrownBy(() -> parse(damaged(b -> b.putInt(8, 0)), 1))
                .hasMessage("bitmap 'b0' has a bitmap table of 0 entries");
        assertThatThrownBy(() -> parse(damaged(b -> b.putLong(0, 5L * CS + 512)), 1))
                .hasMessageContaining("bitmap table at 328192 is not cluster aligned");
        assertThatThrownBy(() -> parse(damaged(b -> b.putLong(0, CONTAINER)), 1))
                .hasMessageContaining("bitmap table at 67108864 is past the end of the image");
        assertThatThrownBy(() -> parse(damaged(b -> { }), 2))
                .hasMessage("the bitmap directory holds 1 bitmaps, the header says 2");
        byte[] two = Qcow2Bitmaps.encodeDirectory(List.of(entry("b0"), entry("b1")));
        assertThatThrownBy(() -> parse(two, 1))
                .hasMessage("the bitmap directory holds more bitmaps than the 1 the header says");
        assertThatThrownBy(() -> parse(java.util.Arrays.copyOf(two, 40), 2))
                .hasMessageContaining("entry 1 runs past its end");
    }

    @Test
    void aBitmapInUseMayKeepATableOfAnotherSizeAsQemuAllows() {
        byte[] d = damaged(b -> b.putInt(8, 2).putInt(12, Qcow2Bitmaps.FLAG_IN_USE));
        assertThat(parse(d, 1).getFirst().tableSize()).isEqualTo(2);
    }

    @Test
    void eachBrokenExtensionIsRefusedNamingWhatIsWrong() {
        assertThatThrownBy(() -> Ext.parse(new byte[16], CS, CONTAINER)).hasMessageContaining("16 bytes, not 24");
        assertThatThrownBy(() -> Ext.parse(new Ext(0, 32, CS).encode(), CS, CONTAINER))
                .hasMessageContaining("says 0 bitmaps");
        assertThatThrownBy(() -> Ext.parse(new Ext(1, 0, CS).encode(), CS, CONTAINER))
                .hasMessageContaining("the bitmap directory is 0 bytes");
        assertThatThrownBy(() -> Ext.parse(new Ext(1, 32, CS + 8).encode(), CS, CONTAINER))
                .hasMessageContaining("not cluster aligned");
        assertThatThrownBy(() -> Ext.parse(new Ext(1, 32, CONTAINER).encode(), CS, CONTAINER))
                .hasMessageContaining("past the end of the image");
        byte[] reserved = new Ext(1, 32, CS).encode();
        reserved[7] = 1;
        assertThatThrownBy(() -> Ext.parse(reserved, CS, CONTAINER)).hasMessageContaining("reserved field is not zero");
    }

    @Test
    void eachBadTableEntryIsRefusedAndAZeroEntryHasNoCluster() {
        assertThat(Qcow2Bitmaps.checkTableEntry(0, CS, CONTAINER, "e")).isZero();
        assertThat(Qcow2Bitmaps.checkTableEntry(Qcow2Bitmaps.TABLE_ALL_ONES, CS, CONTAINER, "e")).isZero();
        assertThat(Qcow2Bitmaps.checkTableEntry(3L * CS, CS, CONTAINER, "e")).isEqualTo(3L * CS);
        assertThatThrownBy(() -> Qcow2Bitmaps.checkTableEntry(1L << 60, CS, CONTAINER, "e"))
                .hasMessageContaining("reserved bits");
        assertThatThrownBy(() -> Qcow2Bitmaps.checkTableEntry(3L * CS + 1, CS, CONTAINER, "e"))
                .hasMessageContaining("malformed");
        assertThatThrownBy(() -> Qcow2Bitmaps.checkTableEntry(3L * CS + 512, CS, CONTAINER, "e"))
                .hasMessageContaining("malformed");
        assertThatThrownBy(() -> Qcow2Bitmaps.checkTableEntry(CONTAINER, CS, CONTAINER, "e"))
                .hasMessageContaining("points past the end of the image");
    }
}
