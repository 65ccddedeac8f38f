package io.biostack.layer.crypt;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.HexFormat;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** XTS-AES against the IEEE Std 1619 annex B test vectors, and its properties. */
class XtsTest {
    private static final HexFormat HEX = HexFormat.of();

    /** Vectors 4, 5 and 10 encrypt 512 bytes of 00 01 ... ff 00 01 ... ff. */
    private static byte[] pattern512() {
        byte[] p = new byte[512];
        for (int i = 0; i < p.length; i++) {
            p[i] = (byte) i;
        }
        return p;
    }

    private static final String KEY_4_5 = "27182818284590452353602874713526" + "31415926535897932384626433832795";

    private static final String CT_4 =
              "27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89cc78cf7f5e543445f8333d8fa7f560000"
            + "05279fa5d8b5e4ad40e736ddb4d35412328063fd2aab53e5ea1e0a9f332500a5df9487d07a5c92cc512c8866c7e860ce"
            + "93fdf166a24912b422976146ae20ce846bb7dc9ba94a767aaef20c0d61ad02655ea92dc4c4e41a8952c651d33174be51"
            + "a10c421110e6d81588ede82103a252d8a750e8768defffed9122810aaeb99f9172af82b604dc4b8e51bcb08235a6f434"
            + "1332e4ca60482a4ba1a03b3e65008fc5da76b70bf1690db4eae29c5f1badd03c5ccf2a55d705ddcd86d449511ceb7ec3"
            + "0bf12b1fa35b913f9f747a8afd1b130e94bff94effd01a91735ca1726acd0b197c4e5b03393697e126826fb6bbde8ecc"
            + "1e08298516e2c9ed03ff3c1b7860f6de76d4cecd94c8119855ef5297ca67e9f3e7ff72b1e99785ca0a7e7720c5b36dc6"
            + "d72cac9574c8cbbc2f801e23e56fd344b07f22154beba0f08ce8891e643ed995c94d9a69c9f1b5f499027a78572aeebd"
            + "74d20cc39881c213ee770b1010e4bea718846977ae119f7a023ab58cca0ad752afe656bb3c17256a9f6e9bf19fdd5a38"
            + "fc82bbe872c5539edb609ef4f79c203ebb140f2e583cb2ad15b4aa5b655016a8449277dbd477ef2c8d6c017db738b18d"
            + "eb4a427d1923ce3ff262735779a418f20a282df920147beabe421ee5319d0568";

    private static final String CT_5 =
              "264d3ca8512194fec312c8c9891f279fefdd608d0c027b60483a3fa811d65ee59d52d9e40ec5672d81532b38b6b089ce"
            + "951f0f9c35590b8b978d175213f329bb1c2fd30f2f7f30492a61a532a79f51d36f5e31a7c9a12c286082ff7d2394d18f"
            + "783e1a8e72c722caaaa52d8f065657d2631fd25bfd8e5baad6e527d763517501c68c5edc3cdd55435c532d7125c8614d"
            + "eed9adaa3acade5888b87bef641c4c994c8091b5bcd387f3963fb5bc37aa922fbfe3df4e5b915e6eb514717bdd2a7407"
            + "9a5073f5c4bfd46adf7d282e7a393a52579d11a028da4d9cd9c77124f9648ee383b1ac763930e7162a8d37f350b2f74b"
            + "8472cf09902063c6b32e8c2d9290cefbd7346d1c779a0df50edcde4531da07b099c638e83a755944df2aef1aa31752fd"
            + "323dcb710fb4bfbb9d22b925bc3577e1b8949e729a90bbafeacf7f7879e7b1147e28ba0bae940db795a61b15ecf4df8d"
            + "b07b824bb062802cc98a9545bb2aaeed77cb3fc6db15dcd7d80d7d5bc406c4970a3478ada8899b329198eb61c193fb62"
            + "75aa8ca340344a75a862aebe92eee1ce032fd950b47d7704a3876923b4ad62844bf4a09c4dbe8b4397184b7471360c95"
            + "64880aedddb9baa4af2e75394b08cd32ff479c57a07d3eab5d54de5f9738b8d27f27a9f0ab11799d7b7ffefb2704c95c"
            + "6ad12c39f1e867a4b7b1d7818a4b753dfd2a89ccb45e001a03a867b187f225dd";

    private static final String KEY_10 = "2718281828459045235360287471352662497757247093699959574966967627"
            + "3141592653589793238462643383279502884197169399375105820974944592";

    private static final String CT_10 =
              "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b5d31e276f8fe4a8d66b317f9ac683f44"
            + "680a86ac35adfc3345befecb4bb188fd5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0"
            + "c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca2a3e7a7d7df7b10355165c8b9a6d0a7d"
            + "e8b062c4500dc4cd120c0f7418dae3d0b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f"
            + "93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec583e9645e07b8d9670655ba5bbcfecc6"
            + "dc3966380ad8fecb17b6ba02469a020a84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1"
            + "505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae9be69a2ffeceb1bec9de244fbe15992b"
            + "11b77c040f12bd8f6a975a44a0f90c29a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac"
            + "6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f645e8b7e9bfdef33943054ff84011493"
            + "c27b3429eaedb4ed5376441a77ed43851ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa"
            + "773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151";

    private static void check(String key, long dataUnit, byte[] plain, String cipher) {
        Xts xts = new Xts(HEX.parseHex(key));
        byte[] buf = plain.clone();
        xts.encrypt(buf, 0, buf.length, dataUnit, buf.length, 1);
        assertThat(HEX.formatHex(buf)).isEqualTo(cipher);
        xts.decrypt(buf, 0, buf.length, dataUnit, buf.length, 1);
        assertThat(buf).isEqualTo(plain);
    }

    @Test
    void vector1AllZeroKeysAndData() {
        check("00".repeat(32), 0, new byte[32],
                "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e");
    }

    @Test
    void vector2() {
        check("11".repeat(16) + "22".repeat(16), 0x3333333333L, HEX.parseHex("44".repeat(32)),
                "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0");
    }

    @Test
    void vector3() {
        check("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0" + "22".repeat(16), 0x3333333333L, HEX.parseHex("44".repeat(32)),
                "af85336b597afc1a900b2eb21ec949d292df4c047e0b21532186a5971a227a89");
    }

    @Test
    void vector4FullSector() {
        check(KEY_4_5, 0, pattern512(), CT_4);
    }

    @Test
    void vector5IsVector4EncryptedAgainAtDataUnit1() {
        check(KEY_4_5, 1, HEX.parseHex(CT_4), CT_5);
    }

    @Test
    void vector10WithA512BitKey() {
        check(KEY_10, 0xff, pattern512(), CT_10);
        assertThat(new Xts(HEX.parseHex(KEY_10)).aesKeyBits()).isEqualTo(256);
    }

    @Test
    void manySectorsInOneCallEqualOneCallPerSector() {
        Random r = new Random(7);
        byte[] key = new byte[64];
        r.nextBytes(key);
        Xts xts = new Xts(key);
        byte[] data = new byte[3 * Xts.MAX_CHUNK + 4096];
        r.nextBytes(data);
        byte[] whole = data.clone();
        xts.encrypt(whole, 0, whole.length, 1000, 512, 1);
        byte[] bySector = data.clone();
        for (int s = 0; s < data.length / 512; s++) {
            xts.encrypt(bySector, s * 512, 512, 1000 + s, 512, 1);
        }
        assertThat(whole).isEqualTo(bySector);
        xts.decrypt(whole, 0, whole.length, 1000, 512, 1);
        assertThat(whole).isEqualTo(data);
    }

    @Test
    void plainIvKeepsOnlyTheLow32BitsOfTheSector() {
        byte[] key = new byte[32];
        key[0] = 1;
        Xts plain = new Xts(key, CipherSpec.parse("aes-xts-plain"));
        Xts plain64 = new Xts(key);
        byte[] a = new byte[512];
        byte[] b = new byte[512];
        plain.encrypt(a, 0, 512, 0x1_0000_0005L, 512, 1);
        plain64.encrypt(b, 0, 512, 5, 512, 1);
        assertThat(a).isEqualTo(b);
    }

    @Test
    void keyOfWrongLengthIsRefused() {
        assertThatThrownBy(() -> new Xts(new byte[48]))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("32 bytes").hasMessageContaining("not 48 bytes");
        assertThatThrownBy(() -> new Xts(new byte[16])).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void partialSectorIsRefused() {
        Xts xts = new Xts(new byte[32]);
        assertThatThrownBy(() -> xts.encrypt(new byte[600], 0, 600, 0, 512, 1))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("512-byte sectors");
    }

    @Test
    void toStringNeverShowsTheKey() {
        byte[] key = HEX.parseHex(KEY_10);
        assertThat(new Xts(key).toString()).doesNotContain(KEY_10.substring(0, 8)).contains("AES-256-XTS");
    }
}
