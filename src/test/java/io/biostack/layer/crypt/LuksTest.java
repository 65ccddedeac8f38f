package io.biostack.layer.crypt;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.biostack.block.BlockDevice;
import io.biostack.block.IoIter;
import io.biostack.block.RamDisk;
import io.biostack.layer.crypt.LuksException.Reason;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.Random;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class LuksTest {
    private static final byte[] PASS = "correct horse".getBytes(StandardCharsets.UTF_8);
    private static final HexFormat HEX = HexFormat.of();

    private static final RamDisk TEMPLATE = new RamDisk("template", 4 << 20);

    @BeforeAll
    static void formatOnce() {
        Luks.format(TEMPLATE, PASS, Luks.FormatOptions.defaults());
    }

    /** A fresh copy of a volume formatted once (formatting costs an AF split and two PBKDF2 runs). */
    private static RamDisk formatted(long size) {
        RamDisk ram = new RamDisk("disk0", size);
        byte[] head = read(TEMPLATE, 0, 2 << 20);
        ram.write(0, MemorySegment.ofArray(head)).join();
        return ram;
    }

    private static byte[] read(BlockDevice d, long off, int len) {
        byte[] b = new byte[len];
        d.read(off, IoIter.of(b)).join();
        return b;
    }

    private static void patch(RamDisk ram, int offset, byte[] bytes) {
        byte[] sector = read(ram, 0, 4096);
        System.arraycopy(bytes, 0, sector, offset, bytes.length);
        ram.write(0, MemorySegment.ofArray(sector)).join();
    }

    private static void patchInt(RamDisk ram, int offset, int value) {
        patch(ram, offset, ByteBuffer.allocate(4).putInt(value).array());
    }

    // ---- key derivation ---------------------------------------------------------------------

    @Test
    void pbkdf2MatchesRfc6070() {
        byte[] p = "password".getBytes(StandardCharsets.US_ASCII);
        byte[] s = "salt".getBytes(StandardCharsets.US_ASCII);
        assertThat(HEX.formatHex(LuksKdf.pbkdf2("sha1", p, s, 1, 20))).isEqualTo("0c60c80f961f0e71f3a9b524af6012062fe037a6");
        assertThat(HEX.formatHex(LuksKdf.pbkdf2("sha1", p, s, 2, 20))).isEqualTo("ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957");
        assertThat(HEX.formatHex(LuksKdf.pbkdf2("sha1", p, s, 4096, 20))).isEqualTo("4b007901b765489abead49d926f721d065a429c1");
        assertThat(HEX.formatHex(LuksKdf.pbkdf2("sha1", "passwordPASSWORDpassword".getBytes(StandardCharsets.US_ASCII),
                "saltSALTsaltSALTsaltSALTsaltSALTsalt".getBytes(StandardCharsets.US_ASCII), 4096, 25)))
                .isEqualTo("3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038");
    }

    @Test
    void pbkdf2AgreesWithTheJdkFactoryForTextPasswords() throws Exception {
        byte[] salt = new byte[32];
        new Random(1).nextBytes(salt);
        for (String hash : new String[] {"sha256", "sha512"}) {
            String algo = "PBKDF2WithHmac" + hash.toUpperCase();
            byte[] jdk = SecretKeyFactory.getInstance(algo)
                    .generateSecret(new PBEKeySpec("hunter2".toCharArray(), salt, 1234, 64 * 8)).getEncoded();
            assertThat(LuksKdf.pbkdf2(hash, "hunter2".getBytes(StandardCharsets.US_ASCII), salt, 1234, 64))
                    .isEqualTo(jdk);
        }
    }

    @Test
    void afSplitMergesBackForEveryHash() {
        SecureRandom rnd = new SecureRandom();
        for (String hash : new String[] {"sha1", "sha256", "sha512"}) {
            for (int len : new int[] {64, 50}) {
                byte[] key = new byte[len];
                rnd.nextBytes(key);
                byte[] split = LuksKdf.afSplit(key, 4000, hash, rnd);
                assertThat(split).hasSize(len * 4000);
                assertThat(LuksKdf.afMerge(split, len, 4000, hash)).isEqualTo(key);
                split[len * 17] ^= 1; // one flipped bit anywhere spoils the key
                assertThat(LuksKdf.afMerge(split, len, 4000, hash)).isNotEqualTo(key);
            }
        }
    }

    // ---- open --------------------------------------------------------------------------------

    @Test
    void formattedVolumeOpensAndMapsThePayloadThroughCrypt() {
        RamDisk ram = new RamDisk("disk0", 8 << 20);
        Luks.format(ram, PASS, Luks.FormatOptions.defaults());
        LuksHeader h = Luks.readHeader(ram);
        assertThat(h.cipherName()).isEqualTo("aes");
        assertThat(h.cipherMode()).isEqualTo("xts-plain64");
        assertThat(h.keyBytes()).isEqualTo(64);
        assertThat(h.payloadOffset()).isEqualTo(4096);
        assertThat(h.slots().get(0).active()).isTrue();
        assertThat(h.slots().subList(1, 8)).noneMatch(LuksHeader.KeySlot::active);

        BlockDevice dev = Luks.open("secret", ram, PASS);
        assertThat(dev.name()).isEqualTo("secret");
        assertThat(dev.size()).isEqualTo((8 << 20) - 4096 * 512L);
        byte[] data = new byte[8192];
        new Random(2).nextBytes(data);
        dev.write(4096, MemorySegment.ofArray(data)).join();
        assertThat(read(dev, 4096, 8192)).isEqualTo(data);
        assertThat(read(ram, 4096 * 512L + 4096, 8192)).isNotEqualTo(data);

        BlockDevice again = Luks.open("secret2", ram, PASS.clone());
        assertThat(read(again, 4096, 8192)).isEqualTo(data);
    }

    @Test
    void binaryKeyFileBytesAreUsedAsTheyAre() {
        byte[] keyFile = new byte[256];
        new Random(3).nextBytes(keyFile); // not valid UTF-8
        RamDisk ram = new RamDisk("disk0", 4 << 20);
        Luks.format(ram, keyFile, Luks.FormatOptions.defaults());
        assertThat(Luks.open("k", ram, keyFile).size()).isEqualTo(2 << 20);
    }

    @Test
    void wrongPassphraseIsAClearErrorAndOpensNothing() {
        RamDisk ram = formatted(4 << 20);
        assertThatThrownBy(() -> Luks.open("secret", ram, "wrong".getBytes(StandardCharsets.UTF_8)))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.WRONG_PASSPHRASE))
                .hasMessage("no key slot of LUKS volume disk0 opens with this passphrase (1 active slot tried)")
                .hasMessageNotContaining("wrong");
        assertThatThrownBy(() -> Luks.open("secret", ram, new byte[0]))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.WRONG_PASSPHRASE));
    }

    @Test
    void damagedKeyMaterialDoesNotOpen() {
        RamDisk ram = formatted(4 << 20);
        byte[] sector = read(ram, 8 * 512 + 512 * 100, 512);
        sector[7] ^= 0x40;
        ram.write(8 * 512 + 512 * 100, MemorySegment.ofArray(sector)).join();
        assertThatThrownBy(() -> Luks.open("secret", ram, PASS))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.WRONG_PASSPHRASE));
    }

    @Test
    void notLuksIsSaidSo() {
        assertThatThrownBy(() -> Luks.open("x", new RamDisk("blank", 1 << 20), PASS))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.NOT_LUKS))
                .hasMessageContaining("blank is not a LUKS volume");
        assertThatThrownBy(() -> Luks.open("x", new RamDisk("tiny", 1024), PASS))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.NOT_LUKS))
                .hasMessageContaining("too small");
    }

    @Test
    void aLuks1HeaderClaimingVersion2IsReadAsADamagedLuks2Header() {
        RamDisk ram = formatted(4 << 20);
        patch(ram, 6, new byte[] {0, 2});
        assertThatThrownBy(() -> Luks.open("x", ram, PASS))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.CORRUPT_HEADER))
                .hasMessageContaining("both LUKS2 header copies of disk0 are damaged");
    }

    @Test
    void unsupportedCipherOrHashIsSaidSo() {
        RamDisk ram = formatted(4 << 20);
        patch(ram, LuksHeader.OFF_CIPHER_MODE, "cbc-essiv:sha256\0".getBytes(StandardCharsets.US_ASCII));
        assertThatThrownBy(() -> Luks.open("x", ram, PASS))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.UNSUPPORTED))
                .hasMessageContaining("chain mode 'cbc'");

        RamDisk ram2 = formatted(4 << 20);
        patch(ram2, LuksHeader.OFF_HASH_SPEC, "whirlpool\0".getBytes(StandardCharsets.US_ASCII));
        assertThatThrownBy(() -> Luks.open("x", ram2, PASS))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.UNSUPPORTED))
                .hasMessageContaining("'whirlpool'");
    }

    @Test
    void corruptHeadersAreRefusedBeforeAnyKeyWork() {
        RamDisk a = formatted(4 << 20);
        patchInt(a, LuksHeader.OFF_PAYLOAD, 1 << 30);
        assertThatThrownBy(() -> Luks.open("x", a, PASS))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.CORRUPT_HEADER))
                .hasMessageContaining("payload offset").hasMessageContaining("beyond the end");

        RamDisk b = formatted(4 << 20);
        patchInt(b, LuksHeader.OFF_SLOTS + 40, 1 << 20); // slot 0 material far past the end
        assertThatThrownBy(() -> Luks.open("x", b, PASS))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.CORRUPT_HEADER))
                .hasMessageContaining("key slot 0");

        RamDisk c = formatted(4 << 20);
        patchInt(c, LuksHeader.OFF_SLOTS + LuksHeader.SLOT_SIZE * 3, 0x12345678);
        assertThatThrownBy(() -> Luks.open("x", c, PASS))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.CORRUPT_HEADER))
                .hasMessageContaining("key slot 3 has state 0x12345678");

        RamDisk d = formatted(4 << 20);
        patchInt(d, LuksHeader.OFF_KEY_BYTES, 48);
        assertThatThrownBy(() -> Luks.open("x", d, PASS))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.UNSUPPORTED))
                .hasMessageContaining("48 bytes");

        RamDisk f = formatted(4 << 20);
        patchInt(f, LuksHeader.OFF_SLOTS + 44, 0); // zero stripes
        assertThatThrownBy(() -> Luks.open("x", f, PASS))
                .isInstanceOfSatisfying(LuksException.class, e -> assertThat(e.reason()).isEqualTo(Reason.CORRUPT_HEADER));
    }

    @Test
    void headerRoundTripsAndPrintsNoSecrets() {
        RamDisk ram = formatted(4 << 20);
        LuksHeader h = Luks.readHeader(ram);
        byte[] buf = new byte[LuksHeader.SIZE];
        h.writeTo(buf);
        assertThat(buf).isEqualTo(Arrays.copyOf(read(ram, 0, 1024), LuksHeader.SIZE));
        assertThat(h.toString()).contains("aes-xts-plain64").contains("active slots=[0]")
                .doesNotContain(HEX.formatHex(h.mkDigest()));
    }

    @Test
    void tooSmallDeviceCannotBeFormatted() {
        assertThatThrownBy(() -> Luks.format(new RamDisk("small", 1 << 20), PASS, Luks.FormatOptions.defaults()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("too small");
    }
}
