package io.biostack.layer.crypt;

import static io.biostack.layer.crypt.Luks2Volumes.PASS;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.biostack.block.BlockDevice;
import io.biostack.block.IoIter;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Volumes biostack formats and keys biostack adds, judged by cryptsetup (and by AES-XTS in Python). */
class Luks2FormatTest {
    static final Luks2.KdfOptions FAST = new Luks2.KdfOptions("argon2id", "sha256", 2000, 32768, 1, 4);

    @TempDir
    Path dir;

    @BeforeEach
    void tools() {
        Luks2Volumes.requireCryptsetup();
    }

    private Path file(String name, long size) throws Exception {
        Path f = dir.resolve(name);
        try (var ch = java.nio.channels.FileChannel.open(f, java.nio.file.StandardOpenOption.CREATE_NEW,
                java.nio.file.StandardOpenOption.WRITE)) {
            ch.truncate(size);
            ch.write(java.nio.ByteBuffer.wrap(new byte[1]), size - 1);
        }
        return f;
    }

    private Path keyFile(String name, String text) throws Exception {
        Path p = dir.resolve(name);
        Files.writeString(p, text);
        return p;
    }

    private static LoopDevice loop(Path f) throws Exception {
        return LoopDevice.open(f.getFileName().toString(), f, LoopConfig.defaults());
    }

    @Test
    void cryptsetupSeesTheOptionsOpensTheSlotAndDumpsTheSameKey() throws Exception {
        Path f = file("v", 20 << 20);
        try (LoopDevice d = loop(f)) {
            Luks2.format(d, d, PASS, new Luks2.FormatOptions(64, FAST, 4096, "biolabel", -1));
        }
        String dump = ImageFiles.run("cryptsetup", "luksDump", f.toString());
        assertThat(dump).contains("Version:       \t2").contains("Label:         \tbiolabel")
                .contains("offset: 16777216 [bytes]").contains("sector: 4096 [bytes]")
                .contains("cipher: aes-xts-plain64").contains("PBKDF:      argon2id").contains("Time cost:  4")
                .contains("Memory:     32768").contains("Threads:    1").contains("Key:        512 bits")
                .contains("AF stripes: 4000").contains("Metadata area: \t16384 [bytes]")
                .contains("Keyslots area: \t16744448 [bytes]");
        Path pass = Luks2Volumes.passFile(dir);
        ImageFiles.run("cryptsetup", "open", "--test-passphrase", "--key-file", pass.toString(), f.toString());
        byte[] theirs = Luks2Volumes.dumpedKey(f, pass);
        try (LoopDevice d = loop(f)) {
            assertThat(Luks2.volumeKey(d, PASS, 0)).isEqualTo(theirs);
        }
    }

    @Test
    void aFormatRefusedForItsOptionsLeavesTheVolumeThatWasThere() throws Exception {
        Path f = file("v", 20 << 20);
        Path pass = Luks2Volumes.passFile(dir);
        ImageFiles.run("cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "argon2id",
                "--pbkdf-force-iterations", "4", "--pbkdf-memory", "32768", "--pbkdf-parallel", "1", "--key-file",
                pass.toString(), f.toString());
        Path before = Files.copy(f, dir.resolve("before"));
        java.util.List<Luks2.FormatOptions> refused = java.util.List.of(
                new Luks2.FormatOptions(64, new Luks2.KdfOptions("argon2id", "sha256", 2000, 5_000_000, 1, 4), 0, "", -1),
                new Luks2.FormatOptions(64, new Luks2.KdfOptions("argon2id", "sha256", 2000, 32768, 0, 4), 0, "", -1),
                new Luks2.FormatOptions(64, new Luks2.KdfOptions("scrypt", "sha256", 2000, 32768, 1, 4), 0, "", -1),
                new Luks2.FormatOptions(64, new Luks2.KdfOptions("pbkdf2", "whirlpool", 2000, 0, 0, 1000), 0, "", -1),
                new Luks2.FormatOptions(64, FAST, 0, "x".repeat(48), -1));
        for (Luks2.FormatOptions o : refused) {
            try (LoopDevice d = loop(f)) {
                assertThatThrownBy(() -> Luks2.format(d, d, "new".getBytes(), o)).as(o.toString())
                        .isInstanceOfAny(IllegalArgumentException.class, LuksException.class);
            }
            assertThat(Files.mismatch(f, before)).as("first byte written by " + o).isEqualTo(-1L);
        }
        ImageFiles.run("cryptsetup", "open", "--test-passphrase", "--key-file", pass.toString(), f.toString());
    }

    @Test
    void changeKeyToAnEmptyPassphraseIsRefusedWithNothingWritten() throws Exception {
        Path f = file("v", 20 << 20);
        try (LoopDevice d = loop(f)) {
            Luks2.format(d, d, PASS, new Luks2.FormatOptions(64, FAST, 0, "", -1));
        }
        Path before = Files.copy(f, dir.resolve("before"));
        try (LoopDevice d = loop(f)) {
            assertThatThrownBy(() -> Luks2.changeKey(d, PASS, new byte[0], FAST))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("empty new passphrase");
        }
        assertThat(Files.mismatch(f, before)).as("first byte written").isEqualTo(-1L);
        try (LoopDevice d = loop(f)) {
            assertThat(Luks2.testPassphrase(d, PASS, -1)).isZero();
        }
    }

    @Test
    void keysAddedByEachToolOpenInTheOtherAndRemovedKeysNoLonger() throws Exception {
        Path f = file("v", 20 << 20);
        Path pass = Luks2Volumes.passFile(dir);
        try (LoopDevice d = loop(f)) {
            Luks2.format(d, d, PASS, new Luks2.FormatOptions(64, FAST, 0, "", -1));
            assertThat(Luks2.addKey(d, PASS, "pbkdf2-key".getBytes(), new Luks2.KdfOptions("pbkdf2", "sha512", 0, 0,
                    0, 1000), -1)).isEqualTo(1);
            assertThat(Luks2.addKey(d, PASS, "argon2i-key".getBytes(), new Luks2.KdfOptions("argon2i", null, 0,
                    16384, 2, 4), 7)).isEqualTo(7);
        }
        Path k1 = keyFile("k1", "pbkdf2-key");
        Path k7 = keyFile("k7", "argon2i-key");
        ImageFiles.run("cryptsetup", "open", "--test-passphrase", "--key-slot", "0", "--key-file", pass.toString(),
                f.toString());
        ImageFiles.run("cryptsetup", "open", "--test-passphrase", "--key-slot", "1", "--key-file", k1.toString(),
                f.toString());
        ImageFiles.run("cryptsetup", "open", "--test-passphrase", "--key-slot", "7", "--key-file", k7.toString(),
                f.toString());
        assertThat(ImageFiles.run("cryptsetup", "luksDump", f.toString())).contains("PBKDF:      pbkdf2")
                .contains("Hash:       sha512").contains("PBKDF:      argon2i\n");

        Path theirs = keyFile("theirs", "added by cryptsetup");
        ImageFiles.run("cryptsetup", "luksAddKey", "-q", "--key-file", k7.toString(), "--pbkdf", "argon2id",
                "--pbkdf-force-iterations", "4", "--pbkdf-memory", "32768", "--pbkdf-parallel", "1", f.toString(),
                theirs.toString());
        try (LoopDevice d = loop(f)) {
            assertThat(Luks2.testPassphrase(d, "added by cryptsetup".getBytes(), -1)).isEqualTo(2);
            assertThat(Luks2.removeKey(d, "pbkdf2-key".getBytes(), -1)).isEqualTo(1);
            assertThat(Luks2.changeKey(d, "argon2i-key".getBytes(), "changed".getBytes(), FAST)).isEqualTo(7);
            assertThatThrownBy(() -> Luks2.testPassphrase(d, "argon2i-key".getBytes(), -1))
                    .isInstanceOf(LuksException.class);
        }
        Process p = new ProcessBuilder("cryptsetup", "open", "--test-passphrase", "--key-file", k1.toString(),
                f.toString()).redirectErrorStream(true).start();
        p.getInputStream().readAllBytes();
        assertThat(p.waitFor()).as("the removed key no longer opens in cryptsetup").isNotZero();
        ImageFiles.run("cryptsetup", "open", "--test-passphrase", "--key-slot", "7", "--key-file",
                keyFile("ch", "changed").toString(), f.toString());
        ImageFiles.run("cryptsetup", "open", "--test-passphrase", "--key-slot", "2", "--key-file",
                theirs.toString(), f.toString());
    }

    @Test
    void unknownTokensAndKeysSurviveAHeaderRewriteByteForByte() throws Exception {
        Path f = file("v", 20 << 20);
        try (LoopDevice d = loop(f)) {
            Luks2.format(d, d, PASS, new Luks2.FormatOptions(64, FAST, 0, "", -1));
        }
        Path tok = dir.resolve("token.json");
        Files.writeString(tok, "{\"type\":\"x-biostack-test\",\"keyslots\":[\"0\"],\"blob\":{\"n\":1.50e3,"
                + "\"list\":[true,null,\"\\u00e9\"]}}");
        ImageFiles.run("cryptsetup", "token", "import", "--json-file", tok.toString(), f.toString());
        String before;
        try (LoopDevice d = loop(f)) {
            before = Luks2.json(d);
            assertThat(before).contains("x-biostack-test");
            Luks2.addKey(d, PASS, "another".getBytes(), FAST, -1);
            String after = Luks2.json(d);
            String tokens = before.substring(before.indexOf("\"tokens\":"), before.indexOf(",\"segments\""));
            assertThat(after).contains(tokens);
            assertThat(after.substring(after.indexOf("\"segments\""), after.indexOf(",\"digests\"")))
                    .isEqualTo(before.substring(before.indexOf("\"segments\""), before.indexOf(",\"digests\"")));
        }
        assertThat(ImageFiles.run("cryptsetup", "luksDump", f.toString())).contains("x-biostack-test");
    }

    @Test
    void removingAKeyslotATokenNamesLeavesAHeaderCryptsetupAcceptsWithTheTokenKept() throws Exception {
        Path f = file("v", 20 << 20);
        Path pass = Luks2Volumes.passFile(dir);
        Path second = keyFile("second", "second key");
        try (LoopDevice d = loop(f)) {
            Luks2.format(d, d, PASS, new Luks2.FormatOptions(64, FAST, 0, "", -1));
            Luks2.addKey(d, PASS, "second key".getBytes(), FAST, -1);
            Luks2.addKey(d, PASS, "third key".getBytes(), FAST, -1);
        }
        // a token bound to keyslots 1 and 2, as systemd-cryptenroll or cryptsetup token add leave one
        ImageFiles.run("cryptsetup", "token", "add", "--key-description", "biostack-test", "--key-slot", "1",
                f.toString());
        ImageFiles.run("cryptsetup", "token", "add", "--key-description", "biostack-test2", "--key-slot", "2",
                f.toString());
        try (LoopDevice d = loop(f)) {
            assertThat(Luks2.removeKey(d, "second key".getBytes(), -1)).isEqualTo(1);
            assertThat(Luks2.removeKey(d, null, 2)).isEqualTo(2);
        }
        String dump = ImageFiles.run("cryptsetup", "luksDump", f.toString());
        assertThat(dump).contains("luks2-keyring").contains("biostack-test").contains("biostack-test2")
                .doesNotContain("  1: luks2\n").doesNotContain("  2: luks2\n");
        String json = ImageFiles.run("cryptsetup", "luksDump", "--dump-json-metadata", f.toString())
                .replaceAll("\\s", "");
        assertThat(json).contains("\"keyslots\":[],\"key_description\":\"biostack-test\"");
        ImageFiles.run("cryptsetup", "open", "--test-passphrase", "--key-file", pass.toString(), f.toString());
        // and cryptsetup can go on changing it
        ImageFiles.run("cryptsetup", "luksAddKey", "-q", "--key-file", pass.toString(), "--pbkdf", "pbkdf2",
                "--pbkdf-force-iterations", "1000", f.toString(), second.toString());
    }

    @Test
    void dataWrittenThroughADetachedHeaderIsDecryptedByCryptsetupReencrypt() throws Exception {
        int size = 4 << 20;
        Path data = file("data", size);
        Path hdr = file("header", 16 << 20);
        byte[] plain = Luks2Volumes.plaintext(21, size);
        try (LoopDevice d = loop(data); LoopDevice h = loop(hdr)) {
            Luks2.format(d, h, PASS, new Luks2.FormatOptions(64, FAST, 4096, "", -1));
            BlockDevice c = Luks.open("c", d, h, PASS, -1, false);
            assertThat(c.size()).isEqualTo(size);
            c.write(0, IoIter.of(plain), 0).join();
            c.flush().join();
            c.close();
        }
        assertThat(Files.readAllBytes(data)).isNotEqualTo(plain);
        Path copy = dir.resolve("copy");
        Files.copy(data, copy);
        ImageFiles.run("cryptsetup", "reencrypt", "--decrypt", "--force-offline-reencrypt", "-q", "--header", hdr.toString(), "--key-file",
                Luks2Volumes.passFile(dir).toString(), copy.toString());
        assertThat(Files.readAllBytes(copy)).isEqualTo(plain);
    }

    @Test
    void dataWrittenWithTheHeaderInsideDecryptsWithTheDumpedKeyInPython() throws Exception {
        Path f = file("v", (16 << 20) + (1 << 20));
        byte[] plain = Luks2Volumes.plaintext(22, 1 << 20);
        try (LoopDevice d = loop(f)) {
            Luks2.format(d, d, PASS, new Luks2.FormatOptions(64, FAST, 4096, "", -1));
            BlockDevice c = Luks.open("c", d, d, PASS, -1, false);
            c.write(0, IoIter.of(plain), 0).join();
            c.close();
        }
        Path pf = dir.resolve("plain");
        Files.write(pf, plain);
        String key = HexFormat.of().formatHex(Luks2Volumes.dumpedKey(f, Luks2Volumes.passFile(dir)));
        String py = """
                import sys
                from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
                key = bytes.fromhex(sys.argv[1]); vol = open(sys.argv[2], 'rb').read(); plain = open(sys.argv[3], 'rb').read()
                off = 16 << 20; out = b''
                for s in range(0, len(plain), 4096):
                    d = Cipher(algorithms.AES(key), modes.XTS((s // 512).to_bytes(16, 'little'))).decryptor()
                    out += d.update(vol[off + s:off + s + 4096]) + d.finalize()
                print('SAME' if out == plain else 'DIFFERENT')
                """;
        ImageFiles.requireTool("python3");
        assertThat(ImageFiles.run("python3", "-c", py, key, f.toString(), pf.toString()).trim()).isEqualTo("SAME");
    }
}
