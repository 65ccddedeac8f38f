package io.biostack.layer.crypt;

import static io.biostack.TestData.random;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.biostack.block.Bio;
import io.biostack.block.BioException;
import io.biostack.block.BlockDevice;
import io.biostack.block.IoIter;
import io.biostack.block.QueueLimits;
import io.biostack.block.RamDisk;
import io.biostack.block.Status;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.Random;
import java.util.concurrent.CompletionException;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import org.junit.jupiter.api.Test;

class CryptTest {
    private static final String SPEC = "aes-xts-plain64";

    private static byte[] key(int len, int seed) {
        byte[] k = new byte[len];
        new Random(seed).nextBytes(k);
        return k;
    }

    private static byte[] readBytes(BlockDevice dev, long off, int len) {
        byte[] out = new byte[len];
        dev.read(off, IoIter.of(out)).join();
        return out;
    }

    @Test
    void writtenDataReadsBackAndIsStoredEncryptedWithPlain64Ivs() {
        RamDisk ram = new RamDisk("ram0", 1 << 20);
        byte[] k = key(64, 1);
        BlockDevice c = Crypt.create("c0", ram, SPEC, k, 0, 4096, 512);
        assertThat(c.size()).isEqualTo((1 << 20) - 4096);
        byte[] data = random(8192, 2);
        c.write(512 * 3, MemorySegment.ofArray(data)).join();
        assertThat(readBytes(c, 512 * 3, 8192)).isEqualTo(data);

        byte[] stored = readBytes(ram, 4096 + 512 * 3, 8192);
        assertThat(stored).isNotEqualTo(data);
        byte[] expect = data.clone();
        new Xts(k).encrypt(expect, 0, expect.length, 3, 512, 1); // IV = sector within the crypt device
        assertThat(stored).isEqualTo(expect);
    }

    @Test
    void ivOffsetIsAddedToTheSectorNumber() {
        RamDisk ram = new RamDisk("ram0", 1 << 16);
        byte[] k = key(32, 3);
        BlockDevice c = Crypt.create("c0", ram, SPEC, k, 100, 0, 512);
        byte[] data = random(1024, 4);
        c.write(2048, MemorySegment.ofArray(data)).join();
        byte[] expect = data.clone();
        new Xts(k).encrypt(expect, 0, 1024, 100 + 4, 512, 1);
        assertThat(readBytes(ram, 2048, 1024)).isEqualTo(expect);
    }

    @Test
    void sectorSize4096CountsIvsIn512ByteUnitsByDefault() {
        RamDisk ram = new RamDisk("ram0", 1 << 20);
        byte[] k = key(64, 5);
        BlockDevice c = Crypt.create("c0", ram, SPEC, k, 0, 0, 4096);
        assertThat(c.limits().logicalBlockSize()).isEqualTo(4096);
        byte[] data = random(3 * 4096, 6);
        c.write(4096, MemorySegment.ofArray(data)).join();
        byte[] expect = data.clone();
        new Xts(k).encrypt(expect, 0, expect.length, 8, 4096, 8); // the second 4k sector has IV 8
        assertThat(readBytes(ram, 4096, data.length)).isEqualTo(expect);
        assertThat(readBytes(c, 4096, data.length)).isEqualTo(data);
    }

    @Test
    void ivLargeSectorsCountsIvsInSectorSizeUnits() {
        RamDisk ram = new RamDisk("ram0", 1 << 20);
        byte[] k = key(64, 7);
        Crypt c = Crypt.create("c0", ram, SPEC, k, 16, 0, 4096, true);
        byte[] data = random(2 * 4096, 8);
        c.write(4096, MemorySegment.ofArray(data)).join();
        byte[] expect = data.clone();
        new Xts(k).encrypt(expect, 0, expect.length, 1 + 16 / 8, 4096, 1);
        assertThat(readBytes(ram, 4096, data.length)).isEqualTo(expect);
        assertThat(c.table()).isEqualTo("aes-xts-plain64 - 16 ram0 0 2 sector_size:4096 iv_large_sectors");
        assertThatThrownBy(() -> Crypt.create("c1", ram, SPEC, k, 3, 0, 4096, true))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("multiple of 8");
    }

    @Test
    void writeNeverEncryptsTheCallersMemory() {
        BlockDevice c = Crypt.create("c0", new RamDisk("ram0", 1 << 20), SPEC, key(64, 9), 0, 0, 512);
        byte[] data = random(64 * 1024, 10);
        byte[] copy = data.clone();
        c.write(0, MemorySegment.ofArray(data)).join();
        assertThat(data).isEqualTo(copy);
    }

    @Test
    void segmentsThatCrossSectorBoundariesAndLargeWritesAreHandled() {
        RamDisk ram = new RamDisk("ram0", 4 << 20);
        Crypt c = Crypt.create("c0", ram, SPEC, key(64, 11), 0, 0, 512, false);
        byte[] data = random(3 * Crypt.BOUNCE_BYTES + 1536, 12); // split into several bounce buffers
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment native1 = arena.allocate(100);
            MemorySegment native2 = arena.allocate(data.length - 100 - 7000);
            MemorySegment heap = MemorySegment.ofArray(new byte[7000]);
            MemorySegment all = MemorySegment.ofArray(data);
            native1.copyFrom(all.asSlice(0, 100));
            native2.copyFrom(all.asSlice(100, native2.byteSize()));
            heap.copyFrom(all.asSlice(100 + native2.byteSize()));
            c.write(1024, IoIter.of(native1, native2, heap), 0).join();

            MemorySegment r1 = arena.allocate(333);
            MemorySegment r2 = MemorySegment.ofArray(new byte[data.length - 333]);
            c.read(1024, IoIter.of(r1, r2)).join();
            byte[] back = new byte[data.length];
            MemorySegment.copy(r1, 0, MemorySegment.ofArray(back), 0, 333);
            MemorySegment.copy(r2, 0, MemorySegment.ofArray(back), 333, r2.byteSize());
            assertThat(back).isEqualTo(data);
        }
        assertThat(c.bounceBuffersCreated()).isBetween(1L, 4L);
    }

    @Test
    void bounceBuffersAreReusedOnceWarm() {
        Crypt c = Crypt.create("c0", new RamDisk("ram0", 1 << 20), SPEC, key(64, 13), 0, 0, 512, false);
        byte[] data = random(4096, 14);
        for (int i = 0; i < 100; i++) {
            c.write(4096L * (i % 16), MemorySegment.ofArray(data)).join();
        }
        assertThat(c.bounceBuffersCreated()).isEqualTo(1);
    }

    @Test
    void sameDataAtDifferentSectorsEncryptsDifferently() {
        RamDisk ram = new RamDisk("ram0", 1 << 16);
        BlockDevice c = Crypt.create("c0", ram, SPEC, key(32, 15), 0, 0, 512);
        byte[] data = new byte[1024];
        c.write(0, MemorySegment.ofArray(data)).join();
        byte[] stored = readBytes(ram, 0, 1024);
        assertThat(Arrays.copyOfRange(stored, 0, 512)).isNotEqualTo(Arrays.copyOfRange(stored, 512, 1024));
    }

    @Test
    void badKeyLengthIsRefused() {
        RamDisk ram = new RamDisk("ram0", 1 << 16);
        assertThatThrownBy(() -> Crypt.create("c0", ram, SPEC, new byte[16], 0, 0, 512))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("not 16 bytes");
        assertThatThrownBy(() -> Crypt.create("c0", ram, SPEC, new byte[63], 0, 0, 512))
                .isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void unsupportedCipherIsRefusedByName() {
        RamDisk ram = new RamDisk("ram0", 1 << 16);
        assertThatThrownBy(() -> Crypt.create("c0", ram, "aes-cbc-essiv:sha256", new byte[32], 0, 0, 512))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("chain mode 'cbc'");
        assertThatThrownBy(() -> Crypt.create("c0", ram, "twofish-xts-plain64", new byte[32], 0, 0, 512))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("cipher 'twofish'");
        assertThatThrownBy(() -> Crypt.create("c0", ram, "aes-xts-benbi", new byte[32], 0, 0, 512))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("IV mode 'benbi'");
        assertThatThrownBy(() -> Crypt.create("c0", ram, "aes", new byte[32], 0, 0, 512))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("cipher-chainmode-ivmode");
        assertThat(Crypt.create("c0", ram, "capi:xts(aes)-plain64", new byte[32], 0, 0, 512)).isNotNull();
    }

    @Test
    void badSectorSizeAndOffsetAreRefused() {
        RamDisk ram = new RamDisk("ram0", 1 << 16);
        assertThatThrownBy(() -> Crypt.create("c0", ram, SPEC, new byte[32], 0, 0, 1000))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("sector_size");
        assertThatThrownBy(() -> Crypt.create("c0", ram, SPEC, new byte[32], 0, 100, 512))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("offset 100");
        assertThatThrownBy(() -> Crypt.create("c0", ram, SPEC, new byte[32], 0, 1 << 20, 512))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("beyond the end");
    }

    @Test
    void anIvOffsetThatIsNotWholeSectorsIsRefusedAsDmCryptRefusesIt() {
        // dm-crypt: iv_offset & (sector_size/512 - 1) is "Invalid iv_offset sector", iv_large_sectors or
        // not; the kernel makes only IVs that are multiples of 8 on 4k sectors, so IV 3 + 8n never reads back
        RamDisk ram = new RamDisk("ram0", 1 << 16);
        for (boolean large : new boolean[] {false, true}) {
            assertThatThrownBy(() -> Crypt.create("c0", ram, SPEC, new byte[32], 3, 0, 4096, large))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("iv_offset 3")
                    .hasMessageContaining("multiple of 8");
            assertThatThrownBy(() -> Crypt.create("c0", ram, SPEC, new byte[32], 2, 0, 2048, large))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("multiple of 4");
            assertThat(Crypt.create("c0", ram, SPEC, new byte[32], 16, 0, 4096, large).size()).isEqualTo(1 << 16);
        }
        assertThat(Crypt.create("c0", ram, SPEC, new byte[32], 3, 0, 512).size()).isEqualTo(1 << 16);
    }

    @Test
    void misalignedIoOn4kSectorsFailsWithInval() {
        BlockDevice c = Crypt.create("c0", new RamDisk("ram0", 1 << 16), SPEC, new byte[32], 0, 0, 4096);
        assertThatThrownBy(() -> c.write(512, MemorySegment.ofArray(new byte[4096])).join())
                .isInstanceOf(CompletionException.class)
                .hasCauseInstanceOf(BioException.class)
                .cause().hasMessageContaining("4096-byte logical blocks");
    }

    @Test
    void discardAndWriteZeroesAreNotSupported() {
        BlockDevice c = Crypt.create("c0", new RamDisk("ram0", 1 << 16), SPEC, new byte[32], 0, 0, 512);
        assertThat(c.limits().discard()).isFalse();
        assertThat(c.limits().writeZeroes()).isFalse();
        assertThatThrownBy(() -> c.discard(0, 4096).join()).cause()
                .isInstanceOfSatisfying(BioException.class, e -> assertThat(e.status()).isEqualTo(Status.NOTSUPP));
    }

    @Test
    void flushPassesThrough() {
        int[] flushes = {0};
        RamDisk ram = new RamDisk("ram0", 1 << 16);
        BlockDevice counting = new Forwarding(ram) {
            @Override
            public void submit(Bio bio) {
                if (bio.op() == io.biostack.block.Op.FLUSH) {
                    flushes[0]++;
                }
                super.submit(bio);
            }
        };
        BlockDevice c = Crypt.create("c0", counting, SPEC, new byte[32], 0, 0, 512);
        c.flush().join();
        assertThat(flushes[0]).isEqualTo(1);
    }

    @Test
    void writeToReadOnlyLowerFails() {
        BlockDevice c = Crypt.create("c0", new RamDisk("ram0", 1 << 16, 512, true), SPEC, new byte[32], 0, 0, 512);
        assertThat(c.isReadOnly()).isTrue();
        assertThatThrownBy(() -> c.write(0, MemorySegment.ofArray(new byte[512])).join()).cause()
                .isInstanceOfSatisfying(BioException.class, e -> assertThat(e.status()).isEqualTo(Status.READONLY));
    }

    @Test
    void lowerErrorsReachTheCallerAndTheDeviceKeepsServing() {
        RamDisk ram = new RamDisk("ram0", 1 << 20);
        BlockDevice failing = new Forwarding(ram) {
            @Override
            public void submit(Bio bio) {
                if (bio.op().hasData() && bio.offset() < 8192 && bio.offset() + bio.size() > 4096) {
                    bio.fail(Status.MEDIUM, "bad sector");
                    return;
                }
                super.submit(bio);
            }
        };
        BlockDevice c = Crypt.create("c0", failing, SPEC, key(64, 16), 0, 0, 512);
        // a write split in bounce-sized pieces: one bad piece fails the whole bio
        assertThatThrownBy(() -> c.write(0, MemorySegment.ofArray(new byte[4 * Crypt.BOUNCE_BYTES])).join())
                .cause().isInstanceOfSatisfying(BioException.class, e -> assertThat(e.status()).isEqualTo(Status.MEDIUM));
        assertThatThrownBy(() -> c.read(4096, MemorySegment.ofArray(new byte[512])).join())
                .cause().isInstanceOfSatisfying(BioException.class, e -> assertThat(e.status()).isEqualTo(Status.MEDIUM));
        byte[] data = random(4096, 17);
        c.write(65536, MemorySegment.ofArray(data)).join();
        assertThat(readBytes(c, 65536, 4096)).isEqualTo(data);
    }

    @Test
    void keyNeverAppearsInToStringOrTable() {
        byte[] k = HexFormat.of().parseHex("0123456789abcdef".repeat(8));
        Crypt c = Crypt.create("c0", new RamDisk("ram0", 1 << 16), SPEC, k, 0, 0, 512, false);
        assertThat(c.toString()).doesNotContain("0123456789").doesNotContain("abcdef");
        assertThat(c.table()).isEqualTo("aes-xts-plain64 - 0 ram0 0");
        assertThat(c.targetType()).isEqualTo("crypt");
    }

    @Test
    void limitsStackOnTheLowerDevice() {
        QueueLimits l = Crypt.create("c0", new RamDisk("ram0", 1 << 16, 4096, false), SPEC, new byte[32], 0, 0, 512)
                .limits();
        assertThat(l.logicalBlockSize()).isEqualTo(4096);
    }

    @Test
    void closedDeviceFailsIoInsteadOfThrowing() {
        Crypt c = Crypt.create("c0", new RamDisk("ram0", 1 << 16), SPEC, new byte[32], 0, 0, 512, false);
        c.close();
        assertThatThrownBy(() -> c.write(0, MemorySegment.ofArray(new byte[512])).join())
                .cause().isInstanceOfSatisfying(BioException.class, e -> assertThat(e.status()).isEqualTo(Status.IOERR));
    }

    @Property(tries = 30)
    void behavesLikeAPlainDevice(@ForAll @IntRange(min = 0, max = 200) int sector,
                                 @ForAll @IntRange(min = 1, max = 300) int sectors,
                                 @ForAll boolean bigSectors, @ForAll long seed) {
        int ss = bigSectors ? 4096 : 512;
        RamDisk ram = new RamDisk("ram0", 2 << 20);
        RamDisk model = new RamDisk("model", 2 << 20);
        try (BlockDevice c = Crypt.create("c0", ram, SPEC, key(64, (int) seed), 8, 8192, ss)) {
            long off = (long) sector * ss;
            int len = Math.min(sectors * ss, (int) (c.size() - off));
            byte[] data = random(len, seed);
            c.write(off, MemorySegment.ofArray(data)).join();
            model.write(off, MemorySegment.ofArray(data)).join();
            assertThat(readBytes(c, off, len)).isEqualTo(readBytes(model, off, len));
        }
    }

    /** Passes every call to a device below; tests override {@link #submit}. */
    static class Forwarding implements BlockDevice {
        final BlockDevice below;

        Forwarding(BlockDevice below) {
            this.below = below;
        }

        @Override public String name() { return below.name(); }
        @Override public long size() { return below.size(); }
        @Override public QueueLimits limits() { return below.limits(); }
        @Override public boolean isReadOnly() { return below.isReadOnly(); }
        @Override public void submit(Bio bio) { below.submit(bio); }
        @Override public void close() { below.close(); }
    }
}
