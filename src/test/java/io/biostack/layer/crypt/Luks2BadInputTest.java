package io.biostack.layer.crypt;

import static io.biostack.layer.crypt.Luks2Volumes.PASS;
import static io.biostack.layer.crypt.Luks2Volumes.PAYLOAD;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.biostack.block.BlockDevice;
import io.biostack.layer.crypt.LuksException.Reason;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Damaged and refused LUKS2 volumes: each gets a clear error and stays as it was (its sha256
 * unchanged), even when opened read-write; a damaged copy is used from the other one and
 * repaired only by a read-write open.
 */
class Luks2BadInputTest {
    @TempDir
    static Path shared;
    @TempDir
    Path dir;

    private static Path template;
    private static byte[] plain;

    @BeforeAll
    static void makeOne() throws Exception {
        Luks2Volumes.requireCryptsetup();
        plain = Luks2Volumes.plaintext(11, PAYLOAD);
        template = Luks2Volumes.encrypt(shared, "template", plain, List.of("--sector-size", "4096"));
    }

    private Path copy() throws Exception {
        Path f = dir.resolve("v");
        Files.copy(template, f);
        return f;
    }

    private static void patch(Path f, long at, byte[] bytes) throws Exception {
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap(bytes), at);
        }
    }

    /** Rewrites both copies with {@code edit} applied to the JSON text, checksums valid. */
    private static void editJson(Path f, UnaryOperator<String> edit) throws Exception {
        byte[] all = Files.readAllBytes(f);
        Luks2Header.Copy c = Luks2Header.parse(java.util.Arrays.copyOf(all, 16384), 0, false);
        assertThat(c.good()).isTrue();
        byte[] json = edit.apply(c.json()).getBytes(StandardCharsets.UTF_8);
        patch(f, 0, Luks2Header.build(false, c.hdrSize(), c.seqid(), "", "", c.uuid(), c.salt(), json));
        patch(f, c.hdrSize(), Luks2Header.build(true, c.hdrSize(), c.seqid(), "", "", c.uuid(), c.salt(), json));
    }

    /** Opening read-write fails with {@code reason} and a message containing {@code text}; the file is unchanged. */
    private static void refused(Path f, byte[] secret, Reason reason, String text) throws Exception {
        String before = Luks2Volumes.sha256(f);
        try (LoopDevice d = LoopDevice.open("vol", f, LoopConfig.defaults())) {
            assertThatThrownBy(() -> Luks.open("x", d, d, secret, -1, false))
                    .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(reason))
                    .hasMessageContaining(text);
        }
        assertThat(Luks2Volumes.sha256(f)).isEqualTo(before);
    }

    @Test
    void damagedPrimaryOpensFromTheSecondaryAndOnlyAReadWriteOpenRepairsIt() throws Exception {
        Path f = copy();
        patch(f, 4096 + 20, "XXXX".getBytes(StandardCharsets.US_ASCII));
        String before = Luks2Volumes.sha256(f);
        try (LoopDevice d = LoopDevice.open("vol", f, LoopConfig.defaults())) {
            BlockDevice c = Luks.open("x", d, d, PASS, -1, true);
            assertThat(Luks2Volumes.read(c, 0, PAYLOAD)).isEqualTo(plain);
            c.close();
        }
        assertThat(Luks2Volumes.sha256(f)).isEqualTo(before);
        try (LoopDevice d = LoopDevice.open("vol", f, LoopConfig.defaults())) {
            assertThat(Luks2.read(d).damaged).contains("primary header is damaged: checksum mismatch");
            BlockDevice c = Luks.open("x", d, d, PASS, -1, false);
            assertThat(Luks2Volumes.read(c, 0, PAYLOAD)).isEqualTo(plain);
            c.close();
            assertThat(Luks2.read(d).damaged).isNull();
        }
        // cryptsetup agrees the repaired primary is good: it reads it without --header-backup help
        assertThat(ImageFiles.run("cryptsetup", "luksDump", f.toString())).contains("Version:       \t2");
        byte[] both = Files.readAllBytes(f);
        assertThat(Luks2Header.parse(java.util.Arrays.copyOf(both, 16384), 0, false).good()).isTrue();
    }

    @Test
    void bothCopiesDamagedIsRefused() throws Exception {
        Path f = copy();
        patch(f, 4096 + 20, "XXXX".getBytes(StandardCharsets.US_ASCII));
        patch(f, 16384 + 4096 + 20, "XXXX".getBytes(StandardCharsets.US_ASCII));
        refused(f, PASS, Reason.CORRUPT_HEADER, "primary: checksum mismatch; secondary: checksum mismatch");
    }

    @Test
    void wrongPassphraseIsRefused() throws Exception {
        refused(copy(), "not it".getBytes(StandardCharsets.UTF_8), Reason.WRONG_PASSPHRASE,
                "no keyslot of LUKS2 volume vol opens with this passphrase (1 tried)");
    }

    @Test
    void invalidJsonIsRefused() throws Exception {
        Path f = copy();
        editJson(f, j -> j.substring(0, j.length() - 3));
        refused(f, PASS, Reason.CORRUPT_HEADER, "not valid JSON");
    }

    @Test
    void jsonTooBigForItsAreaIsRefused() throws Exception {
        Path f = copy();
        byte[] all = Files.readAllBytes(f);
        Luks2Header.Copy c = Luks2Header.parse(java.util.Arrays.copyOf(all, 16384), 0, false);
        for (boolean secondary : new boolean[] {false, true}) {
            byte[] area = Luks2Header.build(secondary, 16384, c.seqid(), "", "", c.uuid(), c.salt(),
                    c.json().getBytes(StandardCharsets.UTF_8));
            // spaces up to the last byte: valid JSON text, but no NUL ends it inside the area
            for (int i = 4096 + c.json().length(); i < area.length; i++) {
                area[i] = ' ';
            }
            System.arraycopy(Luks2Header.checksum(area, area.length), 0, area, Luks2Header.OFF_CSUM, 32);
            patch(f, secondary ? 16384 : 0, area);
        }
        refused(f, PASS, Reason.CORRUPT_HEADER, "JSON too big for its 12288-byte area");
    }

    @Test
    void anUnknownMandatoryRequirementIsRefused() throws Exception {
        Path f = copy();
        editJson(f, j -> j.replace("\"config\":{", "\"config\":{\"requirements\":{\"mandatory\":[\"future-x\"]},"));
        refused(f, PASS, Reason.UNSUPPORTED, "mandatory requirements [future-x] (future-x: unknown)");
    }

    @Test
    void anIntegritySegmentIsRefused() throws Exception {
        Path f = copy();
        editJson(f, j -> j.replace("\"sector_size\":4096", "\"sector_size\":4096,\"integrity\":{\"type\":"
                + "\"hmac(sha256)\",\"journal_encryption\":\"none\",\"journal_integrity\":\"none\"}"));
        refused(f, PASS, Reason.UNSUPPORTED, "segment 0 has integrity {\"type\":\"hmac(sha256)\"");
    }

    /**
     * An iv_tweak that is not a multiple of the segment's sector size in 512-byte units, which
     * dm-crypt refuses ("Invalid iv_offset sector"): a LuksException that names the field, not an
     * IllegalArgumentException from the crypt layer; the passphrase still tests, as in cryptsetup.
     */
    @Test
    void anIvTweakNotAMultipleOfTheSectorSizeIsRefusedByName() throws Exception {
        Path f = copy();
        editJson(f, j -> j.replace("\"iv_tweak\":\"0\"", "\"iv_tweak\":\"3\""));
        refused(f, PASS, Reason.CORRUPT_HEADER, "segment 0 of vol has iv_tweak 3, not a multiple of 8");
        try (LoopDevice d = LoopDevice.open("vol", f, LoopConfig.defaults().withReadOnly(true))) {
            assertThat(Luks.testPassphrase(d, PASS, -1)).isZero();
        }
    }

    @Test
    void twoSegmentsAnUnknownCipherAndHugeArgon2MemoryAreRefused() throws Exception {
        Path f = copy();
        editJson(f, j -> j.replace("\"segments\":{\"0\":", "\"segments\":{\"1\":{\"type\":\"linear\"},\"0\":"));
        refused(f, PASS, Reason.UNSUPPORTED, "it has 2 segments [1, 0]");
        Path g = copy2();
        editJson(g, j -> j.replace("\"encryption\":\"aes-xts-plain64\",\"sector_size\"",
                "\"encryption\":\"serpent-xts-plain64\",\"sector_size\""));
        refused(g, PASS, Reason.UNSUPPORTED, "cipher 'serpent'");
        Path h = copy3();
        editJson(h, j -> j.replace("\"memory\":32768", "\"memory\":4194305"));
        refused(h, PASS, Reason.UNSUPPORTED, "asks 4194305 KiB of Argon2 memory");
    }

    private Path copy2() throws Exception {
        Path f = dir.resolve("v2");
        Files.copy(template, f);
        return f;
    }

    private Path copy3() throws Exception {
        Path f = dir.resolve("v3");
        Files.copy(template, f);
        return f;
    }

    @Test
    void reencryptionLeftHalfDoneIsRefused() throws Exception {
        Path f = copy();
        ImageFiles.run("cryptsetup", "reencrypt", "--init-only", "-q", "--key-file",
                Luks2Volumes.passFile(shared).toString(), "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
                f.toString());
        refused(f, PASS, Reason.UNSUPPORTED, "online-reencrypt");
    }
}
