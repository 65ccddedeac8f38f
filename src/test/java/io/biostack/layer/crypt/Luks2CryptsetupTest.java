package io.biostack.layer.crypt;

import static io.biostack.layer.crypt.Luks2Volumes.PASS;
import static io.biostack.layer.crypt.Luks2Volumes.PAYLOAD;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.biostack.block.BlockDevice;
import io.biostack.block.IoIter;
import io.biostack.cli.CliRun;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** LUKS2 volumes that cryptsetup encrypted in userspace read back through biostack byte-exact. */
class Luks2CryptsetupTest {
    @TempDir
    Path dir;

    @BeforeEach
    void tools() {
        Luks2Volumes.requireCryptsetup();
    }

    private static LoopDevice loop(String name, Path f, boolean ro) throws Exception {
        return LoopDevice.open(name, f, LoopConfig.defaults().withReadOnly(ro));
    }

    /** Opens {@code f} with {@code secret} and checks the first PAYLOAD bytes equal {@code plain}. */
    private static void readsBack(Path f, Path header, byte[] secret, int keyslot, byte[] plain, int sectorSize)
            throws Exception {
        try (LoopDevice data = loop("data", f, true);
             LoopDevice hdr = header == null ? null : loop("hdr", header, true)) {
            BlockDevice c = Luks.open("plain", data, hdr == null ? data : hdr, secret, keyslot, true);
            try {
                assertThat(c.limits().logicalBlockSize()).isEqualTo(sectorSize);
                assertThat(c.isReadOnly()).isTrue();
                assertThat(Luks2Volumes.read(c, 0, PAYLOAD)).isEqualTo(plain);
            } finally {
                c.close();
            }
        }
    }

    @Test
    void argon2idWith4096ByteSectorsReadsBackTheEncryptedPlaintext() throws Exception {
        byte[] plain = Luks2Volumes.plaintext(1, PAYLOAD);
        Path f = Luks2Volumes.encrypt(dir, "v", plain, List.of("--sector-size", "4096"));
        readsBack(f, null, PASS, -1, plain, 4096);
    }

    @Test
    void argon2iWith512ByteSectorsReadsBack() throws Exception {
        byte[] plain = Luks2Volumes.plaintext(2, PAYLOAD);
        Path f = Luks2Volumes.encrypt(dir, "v", plain, List.of("--sector-size", "512", "--pbkdf", "argon2i",
                "--pbkdf-force-iterations", "4", "--pbkdf-memory", "32768", "--pbkdf-parallel", "2"));
        readsBack(f, null, PASS, -1, plain, 512);
    }

    @Test
    void pbkdf2KeyslotsOfEachHashReadBack() throws Exception {
        byte[] plain = Luks2Volumes.plaintext(3, PAYLOAD);
        Path f = Luks2Volumes.encrypt(dir, "v", plain, List.of("--pbkdf", "pbkdf2", "--hash", "sha512",
                "--pbkdf-force-iterations", "1000"));
        Path pass = Luks2Volumes.passFile(dir);
        for (String hash : new String[] {"sha1", "sha256"}) {
            Path kf = dir.resolve("k-" + hash);
            Files.writeString(kf, "pass-" + hash);
            ImageFiles.run("cryptsetup", "luksAddKey", "-q", "--key-file", pass.toString(), "--pbkdf", "pbkdf2",
                    "--hash", hash, "--pbkdf-force-iterations", "1000", f.toString(), kf.toString());
            readsBack(f, null, Files.readAllBytes(kf), -1, plain, 4096 == 0 ? 0 : sectorOf(f));
        }
        readsBack(f, null, PASS, 0, plain, sectorOf(f));
    }

    private static int sectorOf(Path f) throws Exception {
        return ImageFiles.run("cryptsetup", "luksDump", f.toString()).contains("sector: 4096") ? 4096 : 512;
    }

    @Test
    void severalKeyslotsAndABinaryKeyFileEachOpenAndKeyslotNamesOne() throws Exception {
        byte[] plain = Luks2Volumes.plaintext(4, PAYLOAD);
        Path f = Luks2Volumes.encrypt(dir, "v", plain, List.of("--sector-size", "4096"));
        Path pass = Luks2Volumes.passFile(dir);
        Path kf = dir.resolve("keyfile");
        byte[] key = Luks2Volumes.plaintext(99, 4096); // binary, NULs and newlines included
        Files.write(kf, key);
        Path p2 = dir.resolve("p2");
        Files.writeString(p2, "second");
        List<String> fast = Luks2Volumes.FAST;
        run("cryptsetup", "luksAddKey", "-q", "--key-file", pass.toString(), fast, f.toString(), p2.toString());
        run("cryptsetup", "luksAddKey", "-q", "--key-file", pass.toString(), fast, "--key-slot", "5",
                f.toString(), kf.toString());
        readsBack(f, null, "second".getBytes(), -1, plain, 4096);
        readsBack(f, null, key, 5, plain, 4096);
        readsBack(f, null, key, -1, plain, 4096);
        try (LoopDevice d = loop("d", f, true)) {
            assertThat(Luks2.testPassphrase(d, key, -1)).isEqualTo(5);
            assertThat(Luks2.testPassphrase(d, "second".getBytes(), -1)).isEqualTo(1);
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> Luks2.testPassphrase(d, key, 0))
                    .isInstanceOf(LuksException.class).hasMessageContaining("no keyslot");
        }
    }

    private static void run(Object... parts) throws Exception {
        List<String> cmd = new java.util.ArrayList<>();
        for (Object o : parts) {
            if (o instanceof List<?> l) {
                l.forEach(x -> cmd.add((String) x));
            } else {
                cmd.add((String) o);
            }
        }
        ImageFiles.run(cmd.toArray(String[]::new));
    }

    @Test
    void detachedHeaderOpensTheDataDevice() throws Exception {
        byte[] plain = Luks2Volumes.plaintext(5, PAYLOAD);
        Path f = dir.resolve("data");
        byte[] whole = new byte[PAYLOAD * 2];
        System.arraycopy(plain, 0, whole, 0, PAYLOAD);
        Files.write(f, whole);
        Path h = dir.resolve("header");
        run("cryptsetup", "reencrypt", "--encrypt", "--type", "luks2", "--force-offline-reencrypt", "-q",
                "--header", h.toString(), "--key-file", Luks2Volumes.passFile(dir).toString(), Luks2Volumes.FAST,
                "--sector-size", "4096", f.toString());
        readsBack(f, h, PASS, -1, plain, 4096);
    }

    @Test
    void volumeConvertedFromLuks1ReadsBackWith20ByteDigest() throws Exception {
        // LUKS1 reencryption needs device-mapper: format LUKS1 with a known volume key instead and
        // write the ciphertext of the plaintext at the payload with that key (dm-crypt's plain64)
        byte[] plain = Luks2Volumes.plaintext(6, PAYLOAD);
        byte[] vk = Luks2Volumes.plaintext(66, 64);
        Path vkf = dir.resolve("vk");
        Files.write(vkf, vk);
        Path f = dir.resolve("v");
        Files.write(f, new byte[(4 << 20) + PAYLOAD]);
        run("cryptsetup", "luksFormat", "--type", "luks1", "-q", "--key-file", Luks2Volumes.passFile(dir).toString(),
                "--pbkdf-force-iterations", "1000", "--volume-key-file", vkf.toString(), f.toString());
        long payload = Long.parseLong(ImageFiles.run("cryptsetup", "luksDump", f.toString())
                .replaceAll("(?s).*Payload offset:\\s*(\\d+).*", "$1")) * 512;
        byte[] ct = plain.clone();
        try (Xts x = new Xts(vk)) {
            x.encrypt(ct, 0, ct.length, 0, 512, 1);
        }
        try (var ch = java.nio.channels.FileChannel.open(f, java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(java.nio.ByteBuffer.wrap(ct), payload);
        }
        run("cryptsetup", "convert", "--type", "luks2", "-q", f.toString());
        try (LoopDevice d = loop("d", f, true)) {
            Luks2.Volume v = Luks2.read(d);
            assertThat(v.meta.digests().get(0).digest()).hasSize(20);
            assertThat(Luks2.volumeKey(d, PASS, -1)).isEqualTo(vk);
        }
        readsBack(f, null, PASS, -1, plain, 512);
    }

    @Test
    void theVolumeKeyIsTheOneCryptsetupDumps() throws Exception {
        byte[] plain = Luks2Volumes.plaintext(7, PAYLOAD);
        Path f = Luks2Volumes.encrypt(dir, "v", plain, List.of());
        byte[] theirs = Luks2Volumes.dumpedKey(f, Luks2Volumes.passFile(dir));
        try (LoopDevice d = loop("d", f, true)) {
            assertThat(Luks2.volumeKey(d, PASS, -1)).isEqualTo(theirs);
        }
    }

    /**
     * A detached header (its data offset 0) given as its own data device: cryptsetup refuses to
     * open it ("Reduced data offset is allowed only for detached LUKS header"), since the payload
     * would start on the header, and the first write would wipe the header and its keyslots, the
     * only copy of the volume key. Read-only too: it would decrypt the header as data.
     */
    @Test
    void aDetachedHeaderIsNotOpenedAsItsOwnData() throws Exception {
        Path pass = Luks2Volumes.passFile(dir);
        Path data = dir.resolve("data.img");
        Files.write(data, new byte[4 << 20]);
        for (String type : List.of("luks1", "luks2")) {
            Path hdr = dir.resolve(type + ".hdr");
            Files.write(hdr, new byte[16 << 20]);
            ImageFiles.run("cryptsetup", "luksFormat", "-q", "--type", type, "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", "1000", "--key-file", pass.toString(), "--header", hdr.toString(),
                    data.toString());
            String before = Luks2Volumes.sha256(hdr);
            for (boolean ro : List.of(false, true)) {
                try (LoopDevice h = loop("hdr", hdr, false)) {
                    assertThatThrownBy(() -> {
                        BlockDevice c = Luks.open("c", h, h, PASS, -1, ro);
                        try {
                            c.write(0, IoIter.of(new byte[64 << 10]), 0).join();
                        } finally {
                            c.close();
                        }
                    }).as(type + (ro ? " read-only" : "")).isInstanceOf(LuksException.class)
                            .hasMessageContaining("detached header");
                }
            }
            assertThat(Luks2Volumes.sha256(hdr)).as(type + " header untouched").isEqualTo(before);
            ImageFiles.run("cryptsetup", "open", "--test-passphrase", "--key-file", pass.toString(), "--header",
                    hdr.toString(), data.toString());
            // a passphrase test reads the header alone, and so takes it without its data device, as cryptsetup's
            CliRun r = CliRun.of("luks", "test-passphrase", hdr.toString(),
                    "--key-file", pass.toString());
            assertThat(r.code()).as(r.err()).isZero();
            assertThat(r.out()).contains("Key slot 0 unlocked.");
            // the header and its data device, apart, open as before
            try (LoopDevice h = loop("hdr", hdr, false); LoopDevice d = loop("data", data, false);
                 BlockDevice c = Luks.open("c", d, h, PASS, -1, false)) {
                assertThat(c.size()).isEqualTo(4 << 20);
            }
        }
    }

    /**
     * A stack's {@code luks DEV header=FILE} whose FILE is DEV's own file, by its path, another path
     * or a hard link: the header is DEV, as cryptsetup takes {@code --header} naming the data device,
     * so a detached header is refused as its own data. Opened as a second device, it passed as
     * detached, and the first write to the payload wiped the header and its keyslots.
     */
    @Test
    void aDetachedHeaderNamedAgainAsItsOwnHeaderFileIsRefusedInAStack() throws Exception {
        Path pass = Luks2Volumes.passFile(dir);
        Path data = dir.resolve("data.img");
        Files.write(data, new byte[4 << 20]);
        Path hdr = dir.resolve("v.hdr");
        Files.write(hdr, new byte[16 << 20]);
        ImageFiles.run("cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2",
                "--pbkdf-force-iterations", "1000", "--key-file", pass.toString(), "--header", hdr.toString(),
                data.toString());
        Path link = dir.resolve("link.hdr");
        Files.createLink(link, hdr);
        String before = Luks2Volumes.sha256(hdr);
        for (Path named : List.of(hdr, link, dir.resolve(".").resolve("v.hdr"))) {
            String text = "h: loop " + hdr + "\nc: luks h keyfile=" + pass + " header=" + named + "\n";
            assertThatThrownBy(() -> {
                try (io.biostack.stack.Stack s = io.biostack.stack.Stack.open(text, "t")) {
                    s.device("c").write(0, IoIter.of(new byte[64 << 10]), 0).join();
                }
            }).as(named.toString()).hasMessageContaining("detached header");
            assertThat(Luks2Volumes.sha256(hdr)).as("header untouched, " + named).isEqualTo(before);
        }
        // its data device with the header apart opens as before
        String apart = "d: loop " + data + "\nc: luks d keyfile=" + pass + " header=" + hdr + "\n";
        try (io.biostack.stack.Stack s = io.biostack.stack.Stack.open(apart, "t")) {
            assertThat(s.device("c").size()).isEqualTo(4 << 20);
        }
    }

    /**
     * A LUKS1 header backup ends with the keyslots, before the payload offset its header names:
     * a passphrase test reads only the header and keyslots, so it takes the backup, as cryptsetup.
     */
    @Test
    void aLuks1HeaderBackupTestsItsPassphraseWithoutThePayload() throws Exception {
        Path pass = Luks2Volumes.passFile(dir);
        Path vol = dir.resolve("v1.img");
        Files.write(vol, new byte[4 << 20]);
        ImageFiles.run("cryptsetup", "luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations", "1000",
                "--key-file", pass.toString(), vol.toString());
        Path backup = dir.resolve("v1.bak");
        ImageFiles.run("cryptsetup", "luksHeaderBackup", vol.toString(), "--header-backup-file", backup.toString());
        assertThat(Files.size(backup)).isLessThan(2 << 20); // the payload starts at 2 MiB
        ImageFiles.run("cryptsetup", "open", "--test-passphrase", "--key-file", pass.toString(), backup.toString());
        CliRun r = CliRun.of("luks", "test-passphrase", backup.toString(), "--key-file", pass.toString());
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains("Key slot 0 unlocked.");
    }
}
