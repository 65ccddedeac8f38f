package io.biostack.layer.crypt;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.biostack.block.BlockDevice;
import io.biostack.block.IoIter;
import io.biostack.cli.CliRun;
import io.biostack.layer.crypt.LuksException.Reason;
import io.biostack.layer.logwrites.LogWrites;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code convert --type luks2|luks1} judged by cryptsetup 2.6: the result is the layout
 * cryptsetup's own convert makes of the same volume, both ways round, it opens in cryptsetup with
 * every passphrase and gives the same volume key, and the payload reads back byte-exact through
 * biostack after a round trip that cryptsetup finishes. What cryptsetup refuses is refused too,
 * with the volume's bytes unchanged.
 */
@Timeout(120)
class Luks2ConvertTest {
    private static final int PAYLOAD = 1 << 20;
    /** A 4 MiB volume whose payload starts at 2 MiB (LUKS1) or 16 MiB (LUKS2). */
    private static final long LUKS1_SIZE = 4L << 20;
    private static final long LUKS2_SIZE = 18L << 20;

    @TempDir
    Path dir;
    Path pass;
    Path pass2;
    byte[] plain;

    @BeforeEach
    void keys() throws Exception {
        Luks2Volumes.requireCryptsetup();
        pass = dir.resolve("pass");
        pass2 = dir.resolve("pass2");
        Files.writeString(pass, "first passphrase");
        Files.writeString(pass2, "second passphrase");
        plain = Luks2Volumes.plaintext(16, PAYLOAD);
    }

    private static String cryptsetup(String... args) throws Exception {
        List<String> c = new ArrayList<>(List.of("cryptsetup"));
        c.addAll(List.of(args));
        return ImageFiles.run(c.toArray(String[]::new));
    }

    /** cryptsetup's exit code, for the cases where it must fail. */
    private static int cryptsetupCode(String... args) throws Exception {
        List<String> c = new ArrayList<>(List.of("/usr/sbin/cryptsetup"));
        c.addAll(List.of(args));
        Process p = new ProcessBuilder(c).redirectErrorStream(true).start();
        p.getInputStream().readAllBytes();
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
        return p.exitValue();
    }

    private Path file(String name, long size) throws Exception {
        Path f = dir.resolve(name);
        try (var ch = java.nio.channels.FileChannel.open(f, java.nio.file.StandardOpenOption.CREATE_NEW,
                java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(java.nio.ByteBuffer.wrap(new byte[1]), size - 1);
        }
        return f;
    }

    /** A LUKS1 volume by cryptsetup (pbkdf2, 1000 iterations), keys in slots 0 and 3, {@link #plain} written through biostack. */
    private Path luks1() throws Exception {
        Path f = file("v1.img", LUKS1_SIZE);
        cryptsetup("luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations", "1000", "--key-file",
                pass.toString(), f.toString());
        cryptsetup("luksAddKey", "-q", "--pbkdf-force-iterations", "1000", "--key-file", pass.toString(), "-S", "3",
                f.toString(), pass2.toString());
        writePlain(f);
        return f;
    }

    /** A LUKS2 volume by biostack with LUKS1-compatible keyslots (pbkdf2, 512-byte sectors), keys in slots 0 and 2. */
    private Path luks2() throws Exception {
        Path f = file("v2.img", LUKS2_SIZE);
        Luks2.KdfOptions pbkdf2 = new Luks2.KdfOptions("pbkdf2", "sha256", 0, 0, 1, 1000);
        try (LoopDevice d = LoopDevice.open(f, LoopConfig.defaults())) {
            Luks2.format(d, d, bytes(pass), new Luks2.FormatOptions(64, pbkdf2, 512, "", -1));
            Luks2.addKey(d, bytes(pass), bytes(pass2), pbkdf2, 2);
        }
        writePlain(f);
        return f;
    }

    private static byte[] bytes(Path p) throws Exception {
        return Files.readAllBytes(p);
    }

    private void writePlain(Path f) throws Exception {
        try (LoopDevice d = LoopDevice.open(f, LoopConfig.defaults());
             BlockDevice c = Luks.open("c", d, d, bytes(pass), -1, false)) {
            c.write(0, IoIter.of(plain), 0).join();
            c.flush().join();
        }
    }

    /** The payload's first {@link #PAYLOAD} bytes, through biostack, with {@code key}. */
    private byte[] readPlain(Path f, Path key) throws Exception {
        try (LoopDevice d = LoopDevice.open(f, LoopConfig.defaults().withReadOnly(true));
             BlockDevice c = Luks.open("c", d, d, bytes(key), -1, true)) {
            return Luks2Volumes.read(c, 0, PAYLOAD);
        }
    }

    private static <T> T onDevice(Path f, java.util.function.Function<BlockDevice, T> body) throws Exception {
        try (LoopDevice d = LoopDevice.open(f, LoopConfig.defaults())) {
            return body.apply(d);
        }
    }

    @Test
    void luks1ToLuks2IsCryptsetupsLayoutOpensEverywhereAndGoesBackWithCryptsetup() throws Exception {
        Path f = luks1();
        byte[] key = Luks2Volumes.dumpedKey(f, pass);
        Path theirs = dir.resolve("theirs.img");
        Files.copy(f, theirs);
        cryptsetup("convert", "-q", "--type", "luks2", theirs.toString());

        assertThat(onDevice(f, Luks2Convert::toLuks2)).containsExactly(0, 3);

        assertThat(cryptsetup("luksDump", f.toString())).contains("Version:       \t2").contains("Epoch:         \t2");
        // the same JSON as cryptsetup's convert, but for the fresh random header salts (not in the JSON)
        assertThat(cryptsetup("luksDump", "--dump-json-metadata", f.toString()))
                .isEqualTo(cryptsetup("luksDump", "--dump-json-metadata", theirs.toString()));
        // and the same bytes from the keyslots on: areas moved alike, payload untouched
        byte[] a = Files.readAllBytes(f);
        byte[] b = Files.readAllBytes(theirs);
        assertThat(Arrays.mismatch(a, 32768, a.length, b, 32768, b.length)).isEqualTo(-1);
        for (Path k : List.of(pass, pass2)) {
            cryptsetup("open", "--test-passphrase", "--key-file", k.toString(), f.toString());
            assertThat(readPlain(f, k)).isEqualTo(plain);
        }
        assertThat(Luks2Volumes.dumpedKey(f, pass2)).isEqualTo(key);

        cryptsetup("convert", "-q", "--type", "luks1", f.toString());
        assertThat(cryptsetup("luksDump", f.toString())).contains("Version:       \t1");
        assertThat(readPlain(f, pass2)).isEqualTo(plain);
    }

    @Test
    void luks2ToLuks1IsByteForByteCryptsetupsAndComesBackThroughCryptsetup() throws Exception {
        Path f = luks2();
        byte[] key = Luks2Volumes.dumpedKey(f, pass);
        Path theirs = dir.resolve("theirs.img");
        Files.copy(f, theirs);
        cryptsetup("convert", "-q", "--type", "luks1", theirs.toString());

        assertThat(onDevice(f, Luks2Convert::toLuks1)).containsExactly(0, 2);

        assertThat(Files.mismatch(f, theirs)).as("the whole volume, header, keyslots and payload").isEqualTo(-1);
        assertThat(cryptsetup("luksDump", f.toString())).contains("Version:       \t1");
        for (Path k : List.of(pass, pass2)) {
            cryptsetup("open", "--test-passphrase", "--key-file", k.toString(), f.toString());
            assertThat(readPlain(f, k)).isEqualTo(plain);
        }
        assertThat(Luks2Volumes.dumpedKey(f, pass2)).isEqualTo(key);

        cryptsetup("convert", "-q", "--type", "luks2", f.toString());
        assertThat(readPlain(f, pass)).isEqualTo(plain);
        // and biostack takes it back to LUKS1 again: the way cryptsetup's LUKS2 converts too
        assertThat(onDevice(f, Luks2Convert::toLuks1)).containsExactly(0, 2);
        assertThat(readPlain(f, pass2)).isEqualTo(plain);
    }

    @Test
    void aDetachedLuks1HeaderConvertsAndTheDataStaysWhereItWas() throws Exception {
        Path data = file("data.img", LUKS1_SIZE);
        Path hdr = file("hdr.img", 2068480); // what the LUKS1 keyslots take: no room for the shift yet
        cryptsetup("luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations", "1000", "--header",
                hdr.toString(), "--key-file", pass.toString(), data.toString());
        try (LoopDevice h = LoopDevice.open(hdr, LoopConfig.defaults())) {
            assertThat(Luks2Convert.luks2Bytes(h)).isEqualTo(2068480 + 28672);
            assertThatThrownBy(() -> Luks2Convert.toLuks2(h)).isInstanceOf(LuksException.class)
                    .hasMessageContaining("not enough space");
        }
        CliRun r = CliRun.of("luks", "convert", "--type", "luks2", "--header", hdr.toString(), data.toString());
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(Files.size(hdr)).isEqualTo(2068480 + 28672);
        cryptsetup("open", "--test-passphrase", "--header", hdr.toString(), "--key-file", pass.toString(),
                data.toString());
        assertThat(cryptsetup("luksDump", hdr.toString())).contains("Version:       \t2")
                .contains("offset: 0 [bytes]");
    }

    @Test
    void aDetachedLuks2HeaderGoesToLuks1AndTheDataStillReads() throws Exception {
        Path data = file("data.img", LUKS1_SIZE);
        Path hdr = file("hdr.img", 16L << 20);
        Luks2.KdfOptions pbkdf2 = new Luks2.KdfOptions("pbkdf2", "sha256", 0, 0, 1, 1000);
        try (LoopDevice d = LoopDevice.open(data, LoopConfig.defaults());
             LoopDevice h = LoopDevice.open(hdr, LoopConfig.defaults())) {
            Luks2.format(d, h, bytes(pass), new Luks2.FormatOptions(64, pbkdf2, 512, "", -1));
            try (BlockDevice c = Luks.open("c", d, h, bytes(pass), -1, false)) {
                c.write(0, IoIter.of(plain), 0).join();
                c.flush().join();
            }
            assertThat(Luks2Convert.toLuks1(h)).containsExactly(0);
        }
        assertThat(cryptsetup("luksDump", hdr.toString())).contains("Version:       \t1")
                .contains("Payload offset:\t0");
        cryptsetup("open", "--test-passphrase", "--header", hdr.toString(), "--key-file", pass.toString(),
                data.toString());
        try (LoopDevice d = LoopDevice.open(data, LoopConfig.defaults().withReadOnly(true));
             LoopDevice h = LoopDevice.open(hdr, LoopConfig.defaults().withReadOnly(true));
             BlockDevice c = Luks.open("c", d, h, bytes(pass), -1, true)) {
            assertThat(Luks2Volumes.read(c, 0, PAYLOAD)).isEqualTo(plain);
        }
    }

    // ---- refusals: cryptsetup refuses them as well, and nothing changes --------------------------------

    private void refused(Path f, boolean toLuks1, String why, boolean cryptsetupToo) throws Exception {
        String before = Luks2Volumes.sha256(f);
        try (LoopDevice d = LoopDevice.open(f, LoopConfig.defaults())) {
            assertThatThrownBy(() -> {
                if (toLuks1) {
                    Luks2Convert.toLuks1(d);
                } else {
                    Luks2Convert.toLuks2(d);
                }
            }).isInstanceOf(LuksException.class).hasMessageContaining(why)
                    .extracting(e -> ((LuksException) e).reason()).isEqualTo(Reason.UNSUPPORTED);
        }
        assertThat(Luks2Volumes.sha256(f)).as("nothing written").isEqualTo(before);
        if (cryptsetupToo) {
            assertThat(cryptsetupCode("convert", "-q", "--type", toLuks1 ? "luks1" : "luks2", f.toString()))
                    .as("cryptsetup refuses it too").isNotZero();
            assertThat(Luks2Volumes.sha256(f)).isEqualTo(before);
        }
    }

    private Path luks2With(Consumer<List<String>> opts) throws Exception {
        Path f = file("r.img", LUKS2_SIZE);
        List<String> a = new ArrayList<>(List.of("luksFormat", "-q", "--type", "luks2", "--key-file",
                pass.toString()));
        opts.accept(a);
        a.add(f.toString());
        cryptsetup(a.toArray(String[]::new));
        return f;
    }

    @Test
    void argon2KeyslotsDoNotGoToLuks1() throws Exception {
        Path f = luks2With(a -> {
            a.addAll(Luks2Volumes.FAST);
            a.addAll(List.of("--sector-size", "512"));
        });
        refused(f, true, "keyslot 0 uses argon2id; LUKS1 keyslots use pbkdf2", true);
    }

    @Test
    void sectorsOf4096DoNotGoToLuks1() throws Exception {
        Path f = luks2With(a -> a.addAll(List.of("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
                "--sector-size", "4096")));
        refused(f, true, "4096-byte sectors; LUKS1 has only 512", true);
    }

    @Test
    void aKeyslotAbove7DoesNotGoToLuks1() throws Exception {
        Path f = luks2With(a -> a.addAll(List.of("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
                "--sector-size", "512")));
        cryptsetup("luksAddKey", "-q", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file",
                pass.toString(), "-S", "9", f.toString(), pass2.toString());
        refused(f, true, "keyslot 9 is active, and LUKS1 has only keyslots 0 to 7", true);
    }

    @Test
    void tokensDoNotGoToLuks1() throws Exception {
        Path f = luks2With(a -> a.addAll(List.of("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
                "--sector-size", "512")));
        cryptsetup("token", "add", "--key-description", "biostack:test", f.toString());
        refused(f, true, "1 token(s)", true);
    }

    /**
     * A segment whose IVs start at iv_tweak: LUKS1 has no place for it, so the converted volume
     * would decrypt every sector with the wrong IV. cryptsetup converts it regardless; biostack
     * refuses, writing nothing.
     */
    @Test
    void anIvTweakDoesNotGoToLuks1() throws Exception {
        Path f = luks2With(a -> a.addAll(List.of("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
                "--sector-size", "512")));
        byte[] all = Files.readAllBytes(f);
        Luks2Header.Copy c = Luks2Header.parse(Arrays.copyOf(all, 16384), 0, false);
        byte[] json = c.json().replace("\"iv_tweak\":\"0\"", "\"iv_tweak\":\"2048\"")
                .getBytes(java.nio.charset.StandardCharsets.UTF_8);
        try (var ch = java.nio.channels.FileChannel.open(f, java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(java.nio.ByteBuffer.wrap(Luks2Header.build(false, c.hdrSize(), c.seqid(), "", "", c.uuid(),
                    c.salt(), json)), 0);
            ch.write(java.nio.ByteBuffer.wrap(Luks2Header.build(true, c.hdrSize(), c.seqid(), "", "", c.uuid(),
                    c.salt(), json)), c.hdrSize());
        }
        refused(f, true, "its segment has iv_tweak 2048, and LUKS1 has none", false);
    }

    @Test
    void aLuks1HeaderConvertedFromABigLuks2HeaderDoesNotGoBack() throws Exception {
        Path f = luks2With(a -> a.addAll(List.of("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
                "--sector-size", "512", "--luks2-metadata-size", "64k")));
        assertThat(onDevice(f, Luks2Convert::toLuks1)).containsExactly(0);
        cryptsetup("open", "--test-passphrase", "--key-file", pass.toString(), f.toString());
        refused(f, false, "its key material starts at sector 200, not 8", true);
    }

    @Test
    void aLuks1PayloadTooCloseToItsKeyslotsIsNotConverted() throws Exception {
        Path f = file("close.img", LUKS1_SIZE);
        cryptsetup("luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations", "1000", "--align-payload",
                "4040", "--key-file", pass.toString(), f.toString());
        refused(f, false, "not enough space", true);
    }

    @Test
    void aVolumeIsNotConvertedToTheTypeItHas() throws Exception {
        Path f = luks1();
        refused(f, true, "is already LUKS1", false);
        onDevice(f, Luks2Convert::toLuks2);
        refused(f, false, "is already LUKS2", false);
        Path junk = file("junk.img", LUKS1_SIZE);
        try (LoopDevice d = LoopDevice.open(junk, LoopConfig.defaults())) {
            assertThatThrownBy(() -> Luks2Convert.toLuks2(d)).isInstanceOf(LuksException.class)
                    .extracting(e -> ((LuksException) e).reason()).isEqualTo(Reason.NOT_LUKS);
        }
    }

    // ---- a crash during the conversion -------------------------------------------------------------------

    /**
     * Every write of a LUKS1 to LUKS2 conversion replayed as a crash point, each judged by
     * cryptsetup: before the first write the volume opens as LUKS1; from the LUKS2 primary copy on
     * (primary alone, then both) it opens as LUKS2 with either passphrase. The states in between
     * are the keyslot move, which overlaps the areas it moves as cryptsetup's does: they are
     * counted here, so that the window a crash must avoid is written down and cannot grow unseen.
     */
    @Test
    void aCrashAfterTheFirstLuks2CopyLeavesAVolumeThatOpens() throws Exception {
        Path base = luks1();
        Path img = dir.resolve("replayed.img");
        Path log = dir.resolve("log.img");
        Files.copy(base, img);
        try (LoopDevice d = LoopDevice.open(base, LoopConfig.defaults());
             LoopDevice l = LoopDevice.open(log, LoopConfig.defaults().withCreateSize(16 << 20))) {
            LogWrites lw = new LogWrites("lw", d, l);
            Luks2Convert.toLuks2(lw);
            lw.close();
        }
        Path results = dir.resolve("results");
        String check = "{ if cryptsetup open --test-passphrase --key-file " + pass + " {} && cryptsetup open"
                + " --test-passphrase --key-file " + pass2 + " {}; then cryptsetup luksDump {} | sed -n"
                + " 's/^Version:[[:space:]]*//p'; else echo none; fi; } >> " + results;
        CliRun r = CliRun.of("replay", log.toString(), "--to", img.toString(), "--at", "write", "--check", check,
                "-j", "1");
        assertThat(r.code()).as(r.out() + r.err()).isZero();
        // one state per write: the move's two 1 MiB writes (the upper one first, which leaves slots 0
        // and 3 whole), the primary copy, the secondary copy
        assertThat(Files.readAllLines(results)).as(r.out()).containsExactly("1", "none", "2", "2");
        assertThat(Files.mismatch(img, base)).as("the replay ends where the volume did").isEqualTo(-1);
    }
}
