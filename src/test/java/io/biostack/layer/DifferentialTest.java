package io.biostack.layer;

import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;
import io.biostack.layer.crypt.Crypt;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Random reads and writes on a concatenation of linear, striped, mirror and crypt segments over
 * ramdisks (a seeded loop per seed), against a byte array holding what the device should hold; at the end, each lower
 * device is checked against where the model says the bytes belong.
 */
class DifferentialTest {
    static final int SEG = 256 * 1024;     // each segment's size
    static final int CHUNK = 8192;

    @ParameterizedTest(name = "seed {0}")
    @ValueSource(longs = {1, 2, 3, 4, 5, 6, 7, 8, 42, 1234, 99991, 31337})
    void stackReadsBackLikeTheModelAndPlacesBytesWhereTheMappingSays(long seed) throws Exception {
        Random rnd = new Random(seed);
        RamDisk lin = new RamDisk("lin", 1 << 20);
        RamDisk s0 = new RamDisk("s0", 1 << 20);
        RamDisk s1 = new RamDisk("s1", 1 << 20);
        RamDisk m0 = new RamDisk("m0", 1 << 20);
        RamDisk m1 = new RamDisk("m1", 1 << 20);
        RamDisk c0 = new RamDisk("c0", 1 << 20);
        long linOff = 4096L * rnd.nextInt(64);
        long sOff = (long) CHUNK * rnd.nextInt(8);
        byte[] key = new byte[64];
        rnd.nextBytes(key);
        MappedDevice dev = new MappedDevice("top", new MappedDevice.Table("top", List.of(
                new MappedDevice.Segment(0, SEG, new Linear("top", lin, linOff, SEG)),
                new MappedDevice.Segment(SEG, SEG, new Striped("top", List.of(new Leg(s0, sOff), new Leg(s1, 0)), CHUNK, SEG)),
                new MappedDevice.Segment(2L * SEG, SEG, Mirror.inSync("top", List.of(new Leg(m0, 0), new Leg(m1, 65536)), SEG)),
                new MappedDevice.Segment(3L * SEG, SEG, (Target) Crypt.create("top", new Linear("c", c0, 0, SEG),
                        "aes-xts-plain64", key, 0, 0, 512)))));
        // Stack one more layer on top: a linear window of the whole concatenation.
        BlockDevice top = new Linear("win", dev, 0, 4L * SEG);
        byte[] model = new byte[4 * SEG];
        // Ciphertext zeros don't decrypt to zeros: start the crypt segment from written zeros.
        top.write(3L * SEG, Arena.ofAuto().allocate(SEG, 4096)).get(10, TimeUnit.SECONDS);
        for (int round = 0; round < 40; round++) {
            // A batch of non-overlapping bios in flight at once.
            List<CompletableFuture<Void>> fs = new ArrayList<>();
            List<long[]> reads = new ArrayList<>();
            List<MemorySegment> bufs = new ArrayList<>();
            boolean[] used = new boolean[model.length / 512];
            for (int i = 0; i < 8; i++) {
                int len = 512 * (1 + rnd.nextInt(rnd.nextBoolean() ? 8 : 160));
                long off = 512L * rnd.nextInt((model.length - len) / 512 + 1);
                if (overlaps(used, off, len)) {
                    continue;
                }
                MemorySegment m = Arena.ofAuto().allocate(len, 512);
                if (rnd.nextInt(3) == 0) {
                    reads.add(new long[] {off, len});
                    bufs.add(m);
                    fs.add(top.read(off, m));
                } else {
                    byte[] data = new byte[len];
                    rnd.nextBytes(data);
                    MemorySegment.copy(data, 0, m, ValueLayout.JAVA_BYTE, 0, len);
                    System.arraycopy(data, 0, model, (int) off, len);
                    fs.add(top.write(off, m));
                }
            }
            CompletableFuture.allOf(fs.toArray(new CompletableFuture[0])).get(10, TimeUnit.SECONDS);
            for (int i = 0; i < reads.size(); i++) {
                int off = (int) reads.get(i)[0];
                int len = (int) reads.get(i)[1];
                assertThat(bufs.get(i).toArray(ValueLayout.JAVA_BYTE))
                        .as("read of %d at %d, seed %d", len, off, seed)
                        .isEqualTo(Arrays.copyOfRange(model, off, off + len));
            }
        }
        // Where the mapping says the bytes are.
        assertThat(bytes(lin, linOff, SEG)).isEqualTo(Arrays.copyOfRange(model, 0, SEG));
        byte[] striped = new byte[SEG];
        for (int c = 0; c < SEG / CHUNK; c++) {
            byte[] chunk = c % 2 == 0 ? bytes(s0, sOff + (long) (c / 2) * CHUNK, CHUNK) : bytes(s1, (long) (c / 2) * CHUNK, CHUNK);
            System.arraycopy(chunk, 0, striped, c * CHUNK, CHUNK);
        }
        assertThat(striped).isEqualTo(Arrays.copyOfRange(model, SEG, 2 * SEG));
        assertThat(bytes(m0, 0, SEG)).isEqualTo(Arrays.copyOfRange(model, 2 * SEG, 3 * SEG));
        assertThat(bytes(m1, 65536, SEG)).isEqualTo(Arrays.copyOfRange(model, 2 * SEG, 3 * SEG));
        assertThat(bytes(top, 3L * SEG, SEG)).isEqualTo(Arrays.copyOfRange(model, 3 * SEG, 4 * SEG));
        dev.close();
    }

    private static boolean overlaps(boolean[] used, long off, int len) {
        for (long s = off / 512; s < (off + len) / 512; s++) {
            if (used[(int) s]) {
                return true;
            }
        }
        for (long s = off / 512; s < (off + len) / 512; s++) {
            used[(int) s] = true;
        }
        return false;
    }

    private static byte[] bytes(BlockDevice d, long off, int len) throws Exception {
        MemorySegment m = Arena.ofAuto().allocate(len, 4096);
        d.read(off, m).get(10, TimeUnit.SECONDS);
        return m.toArray(ValueLayout.JAVA_BYTE);
    }
}
