package io.biostack.layer.crypt;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.bouncycastle.crypto.generators.Argon2BytesGenerator;
import org.bouncycastle.crypto.params.Argon2Parameters;
import org.junit.jupiter.api.Test;

/**
 * Argon2 against the RFC 9106 section 5 test vectors, its BLAKE2b against RFC 7693, and the whole
 * against BouncyCastle's independent implementation over random parameters (the oracle); then the
 * parameter checks, the memory given back and the helper pool.
 */
class Argon2Test {
    private static final HexFormat HEX = HexFormat.of();

    private static byte[] filled(int n, int value) {
        byte[] b = new byte[n];
        Arrays.fill(b, (byte) value);
        return b;
    }

    private static byte[] hex(String spaced) {
        return HEX.parseHex(spaced.replace(" ", ""));
    }

    /** RFC 9106 section 5: password 32 x 01, salt 16 x 02, secret 8 x 03, ad 12 x 04, t=3, m=32, p=4, T=32. */
    private static byte[] rfcVector(Argon2.Type type) {
        return Argon2.derive(type, filled(32, 1), filled(16, 2), filled(8, 3), filled(12, 4), 3, 32, 4, 32);
    }

    @Test
    void argon2dMatchesRfc9106Section51() {
        assertThat(rfcVector(Argon2.Type.ARGON2D)).isEqualTo(
                hex("51 2b 39 1b 6f 11 62 97 53 71 d3 09 19 73 42 94 f8 68 e3 be 39 84 f3 c1 a1 3a 4d b9 fa be 4a cb"));
    }

    @Test
    void argon2iMatchesRfc9106Section52() {
        assertThat(rfcVector(Argon2.Type.ARGON2I)).isEqualTo(
                hex("c8 14 d9 d1 dc 7f 37 aa 13 f0 d7 7f 24 94 bd a1 c8 de 6b 01 6d d3 88 d2 99 52 a4 c4 67 2b 6c e8"));
    }

    @Test
    void argon2idMatchesRfc9106Section53() {
        assertThat(rfcVector(Argon2.Type.ARGON2ID)).isEqualTo(
                hex("0d 64 0d f5 8d 78 76 6c 08 c0 37 a3 4a 8b 53 c9 d0 1e f0 45 2d 75 b6 5e b5 25 20 e9 6b 01 e6 59"));
    }

    @Test
    void blake2bMatchesRfc7693AppendixA() {
        assertThat(Argon2Blake2b.hash(64, "abc".getBytes(StandardCharsets.US_ASCII))).isEqualTo(hex(
                "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
                + "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"));
    }

    @Test
    void blake2bMatchesBouncyCastleAcrossBlockBoundariesAndLengths() {
        Random rnd = new Random(7693);
        for (int len : new int[] {0, 1, 127, 128, 129, 255, 256, 257, 1000}) {
            byte[] in = new byte[len];
            rnd.nextBytes(in);
            for (int out : new int[] {1, 20, 32, 63, 64}) {
                org.bouncycastle.crypto.digests.Blake2bDigest bc = new org.bouncycastle.crypto.digests.Blake2bDigest(out * 8);
                bc.update(in, 0, in.length);
                byte[] want = new byte[out];
                bc.doFinal(want, 0);
                assertThat(Argon2Blake2b.hash(out, in)).as("len %d out %d", len, out).isEqualTo(want);
            }
        }
    }

    private static byte[] bouncyCastle(Argon2.Type type, byte[] password, byte[] salt, byte[] secret, byte[] ad,
                                       int t, int m, int p, int outLen) {
        Argon2Parameters params = new Argon2Parameters.Builder(type.y)
                .withVersion(Argon2Parameters.ARGON2_VERSION_13)
                .withSalt(salt).withSecret(secret).withAdditional(ad)
                .withIterations(t).withMemoryAsKB(m).withParallelism(p)
                .build();
        Argon2BytesGenerator gen = new Argon2BytesGenerator();
        gen.init(params);
        byte[] out = new byte[outLen];
        gen.generateBytes(password, out);
        return out;
    }

    private static byte[] random(Random rnd, int n) {
        byte[] b = new byte[n];
        rnd.nextBytes(b);
        return b;
    }

    @Test
    void matchesBouncyCastleOverRandomSmallParameters() {
        Random rnd = new Random(9106);
        Argon2.Type[] types = Argon2.Type.values();
        for (int c = 0; c < 60; c++) {
            Argon2.Type type = types[rnd.nextInt(types.length)];
            int p = 1 + rnd.nextInt(6);
            int m = 8 * p + rnd.nextInt(300); // often not a multiple of 4p: m' rounds down
            int t = 1 + rnd.nextInt(3);
            int outLen = 4 + rnd.nextInt(200); // H' with T above 64 chains hashes
            byte[] password = random(rnd, rnd.nextInt(80));
            byte[] salt = random(rnd, 8 + rnd.nextInt(40));
            byte[] secret = random(rnd, rnd.nextInt(3) == 0 ? 0 : rnd.nextInt(40));
            byte[] ad = random(rnd, rnd.nextInt(3) == 0 ? 0 : rnd.nextInt(40));
            assertThat(Argon2.derive(type, password, salt, secret, ad, t, m, p, outLen))
                    .as("case %d: %s t=%d m=%d p=%d T=%d", c, type, t, m, p, outLen)
                    .isEqualTo(bouncyCastle(type, password, salt, secret, ad, t, m, p, outLen));
        }
    }

    @Test
    void matchesBouncyCastleWithSegmentsSpanningSeveralAddressBlocks() {
        // 4096 KiB over 4 lanes: 256-block segments, so Argon2i makes a second address block
        // within a segment; more lanes than this machine has cores, so helpers share lanes.
        byte[] password = "correct horse battery staple".getBytes(StandardCharsets.UTF_8);
        byte[] salt = filled(32, 0x5a);
        for (Argon2.Type type : Argon2.Type.values()) {
            assertThat(Argon2.derive(type, password, salt, 2, 4096, 4, 64)).as("%s", type)
                    .isEqualTo(bouncyCastle(type, password, salt, new byte[0], new byte[0], 2, 4096, 4, 64));
        }
        assertThat(Argon2.derive(Argon2.Type.ARGON2ID, password, salt, 1, 2000, 7, 32))
                .isEqualTo(bouncyCastle(Argon2.Type.ARGON2ID, password, salt, new byte[0], new byte[0], 1, 2000, 7, 32));
    }

    @Test
    void concurrentDerivationsGiveTheSameKeysAsOneAtATime() throws Exception {
        byte[] salt = filled(16, 9);
        int n = 6;
        byte[][] want = new byte[n][];
        for (int i = 0; i < n; i++) {
            want[i] = Argon2.derive(Argon2.Type.ARGON2ID, new byte[] {(byte) i}, salt, 1, 1024, 1 + i % 4, 32);
        }
        ExecutorService ex = Executors.newFixedThreadPool(n);
        try {
            List<Future<byte[]>> got = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                int k = i;
                got.add(ex.submit(() -> Argon2.derive(Argon2.Type.ARGON2ID, new byte[] {(byte) k}, salt, 1, 1024, 1 + k % 4, 32)));
            }
            for (int i = 0; i < n; i++) {
                assertThat(got.get(i).get()).as("derivation %d", i).isEqualTo(want[i]);
            }
        } finally {
            ex.shutdownNow();
        }
    }

    private static long residentKiB() throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        throw new IllegalStateException("no VmRSS in /proc/self/status");
    }

    @Test
    void nativeMemoryIsGivenBackWhenDeriveReturns() throws IOException {
        Argon2.derive(Argon2.Type.ARGON2ID, new byte[] {1}, filled(16, 1), 1, 1024, 2, 32); // warm up
        long before = residentKiB();
        Argon2.derive(Argon2.Type.ARGON2ID, new byte[] {1}, filled(16, 1), 1, 128 * 1024, 2, 32);
        // Every one of the 128 MiB was touched: kept, it would show in the resident set.
        assertThat(residentKiB() - before).isLessThan(32 * 1024);
    }

    @Test
    void memoryOfBothKindsStartsZeroedAndIsUnreachableOnceClosed() {
        for (boolean map : new boolean[] {true, false}) {
            long bytes = 3 * 1024 * 1024 + 1024;
            Argon2Memory memory = Argon2Memory.allocate(bytes, map);
            MemorySegment seg = memory.segment();
            assertThat(memory.mapped()).isEqualTo(map && Argon2Memory.mapsHugePages());
            assertThat(seg.byteSize()).isEqualTo(bytes);
            assertThat(seg.address() % 64).isZero();
            assertThat(seg.mismatch(MemorySegment.ofArray(new byte[(int) bytes]))).isEqualTo(-1L);
            seg.fill((byte) 0x5a);
            memory.close();
            assertThatThrownBy(() -> seg.get(ValueLayout.JAVA_BYTE, 0)).isInstanceOf(IllegalStateException.class);
        }
        // This suite runs with native access on (pom argLine), so the mapping is what derive gets.
        assertThat(Argon2Memory.mapsHugePages()).isTrue();
    }

    @Test
    void helperThreadsAreFewAndDaemon() {
        Argon2.derive(Argon2.Type.ARGON2ID, new byte[] {1}, filled(16, 1), 1, 64 * 16, 16, 32);
        int cores = Runtime.getRuntime().availableProcessors();
        List<Thread> helpers = Thread.getAllStackTraces().keySet().stream()
                .filter(th -> th.getName().startsWith("argon2-")).toList();
        assertThat(helpers.size()).isLessThanOrEqualTo(Math.max(1, cores - 1));
        assertThat(helpers).allMatch(Thread::isDaemon);
    }

    @Test
    void memoryAbove4GiBIsRefusedBeforeAnythingIsAllocated() {
        assertThatThrownBy(() -> Argon2.derive(Argon2.Type.ARGON2ID, new byte[0], filled(16, 0), 4,
                Argon2.MAX_MEMORY_KIB + 1, 4, 32))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("4194305 KiB").hasMessageContaining("above the 4 GiB");
        assertThatThrownBy(() -> Argon2.derive(Argon2.Type.ARGON2ID, new byte[0], filled(16, 0), 4,
                Integer.MIN_VALUE, 4, 32))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("above the 4 GiB");
    }

    @Test
    void parametersOutsideTheRfcRangesAreRefusedWithTheirName() {
        byte[] salt = filled(16, 0);
        assertThatThrownBy(() -> Argon2.derive(Argon2.Type.ARGON2I, new byte[0], new byte[7], 1, 64, 1, 32))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("salt");
        assertThatThrownBy(() -> Argon2.derive(Argon2.Type.ARGON2I, new byte[0], salt, 0, 64, 1, 32))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("iterations");
        assertThatThrownBy(() -> Argon2.derive(Argon2.Type.ARGON2I, new byte[0], salt, 1, 64, 0, 32))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("lanes");
        assertThatThrownBy(() -> Argon2.derive(Argon2.Type.ARGON2I, new byte[0], salt, 1, 31, 4, 32))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("8 KiB per lane");
        assertThatThrownBy(() -> Argon2.derive(Argon2.Type.ARGON2I, new byte[0], salt, 1, 64, 1, 3))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("output");
        assertThatThrownBy(() -> Argon2.derive(null, new byte[0], salt, 1, 64, 1, 32))
                .isInstanceOf(IllegalArgumentException.class);
    }
}
