package io.biostack.layer.crypt;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.biostack.block.IoIter;
import io.biostack.block.RamDisk;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A coverage-guided fuzz target over the LUKS2 header and JSON parser. Any input is either a raw
 * header area (the binary checks: magic, sizes, offsets, checksum) or a JSON text wrapped in two
 * correctly checksummed copies (the JSON reader and every metadata check behind the checksum,
 * which random bytes would never pass). The parser must answer with a {@link LuksException}
 * or a result, never another exception, a hang or an allocation the input asks for.
 *
 * <p>With Jazzer ({@code scripts/fuzz.sh luks2}: {@code JAZZER_FUZZ=1} and the class-version agent
 * that lets Jazzer instrument Java 25 classes) it fuzzes from the seeds under
 * {@code src/test/resources/io/biostack/layer/crypt/Luks2HeaderFuzzTestInputs} for
 * {@code maxDuration}; the suite runs the seeds and their mutations without it (see below).
 */
class Luks2HeaderFuzzTest {
    private static final long HDR = 16384;
    /** Bytes that make JSON structure, for the mutations. */
    private static final String TOKENS = "{}[]\",:0123456789-\\u ";

    @Tag("jazzer") // not in the suite: see jazzer.excluded in the pom
    @FuzzTest(maxDuration = "20s")
    @EnabledIfEnvironmentVariable(named = "JAZZER_FUZZ", matches = ".+")
    void parserAnswersEveryInputWithAResultOrALuksException(FuzzedDataProvider in) {
        target(in.consumeBoolean(), in.consumeRemainingAsBytes());
    }

    /**
     * The suite's brief run: every seed, then 3000 deterministic mutations of them (bytes
     * flipped, inserted, deleted, spliced), each through the same target. Not coverage-guided:
     * the {@code @FuzzTest} above is, from {@code scripts/fuzz.sh luks2}, outside the suite (see the
     * pom).
     */
    @Test
    void mutatedSeedsAreAnsweredWithAResultOrALuksException() throws Exception {
        Path seeds = Path.of("src/test/resources/io/biostack/layer/crypt/Luks2HeaderFuzzTestInputs/"
                + "parserAnswersEveryInputWithAResultOrALuksException");
        List<byte[]> corpus = new ArrayList<>();
        try (var files = Files.list(seeds)) {
            for (Path p : files.sorted().toList()) {
                corpus.add(Files.readAllBytes(p));
            }
        }
        assertThat(corpus).hasSizeGreaterThanOrEqualTo(4);
        Random r = new Random(16);
        long deadline = System.nanoTime() + 10_000_000_000L;
        for (int i = 0; i < 3000 && System.nanoTime() < deadline; i++) {
            byte[] b = corpus.get(r.nextInt(corpus.size())).clone();
            int edits = 1 + r.nextInt(4);
            for (int e = 0; e < edits && b.length > 1; e++) {
                int at = r.nextInt(b.length - 1);
                switch (r.nextInt(4)) {
                    case 0 -> b[at] ^= (byte) (1 << r.nextInt(8));
                    case 1 -> b[at] = (byte) TOKENS.charAt(r.nextInt(TOKENS.length()));
                    case 2 -> b = splice(b, at, r.nextInt(Math.min(64, b.length - at)));
                    default -> b = dup(b, at, r.nextInt(Math.min(64, b.length - at)));
                }
            }
            boolean json = (b[b.length - 1] & 1) != 0;
            target(json, Arrays.copyOf(b, b.length - 1));
        }
    }

    private static byte[] splice(byte[] b, int at, int n) {
        byte[] out = new byte[b.length - n];
        System.arraycopy(b, 0, out, 0, at);
        System.arraycopy(b, at + n, out, at, b.length - at - n);
        return out;
    }

    private static byte[] dup(byte[] b, int at, int n) {
        byte[] out = new byte[b.length + n];
        System.arraycopy(b, 0, out, 0, at + n);
        System.arraycopy(b, at, out, at + n, b.length - at);
        return out;
    }

    private static void target(boolean json, byte[] input) {
        RamDisk dev = new RamDisk("fuzz", 64 * 1024);
        if (json) {
            byte[] text = input;
            if (text.length >= HDR - Luks2Header.BIN_SIZE) {
                return;
            }
            byte[] salt = new byte[64];
            dev.write(0, IoIter.of(Luks2Header.build(false, HDR, 1, "", "", "u", salt, text)), 0).join();
            dev.write(HDR, IoIter.of(Luks2Header.build(true, HDR, 1, "", "", "u", salt, text)), 0).join();
        } else {
            byte[] raw = input;
            byte[] area = new byte[(int) dev.size()];
            System.arraycopy(raw, 0, area, 0, Math.min(raw.length, area.length));
            dev.write(0, IoIter.of(area), 0).join();
        }
        try {
            Luks2.Volume v = Luks2.read(dev);
            v.meta.checkUsable();
            v.meta.keyslots();
            v.meta.digests();
            v.meta.segment();
            v.meta.toBytes();
        } catch (LuksException expected) {
            // a refusal with a message is the right answer to bad input
        }
    }
}
