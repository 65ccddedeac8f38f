package io.biostack.layer.crypt;

import static org.assertj.core.api.Assertions.assertThat;

import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * LUKS2 at cryptsetup's real defaults, not its fast test settings: argon2id benchmarked to 2 s,
 * with the memory (up to 1 GiB) and lanes (up to 4) each side picks on this machine. A volume
 * cryptsetup formats that way unlocks in biostack, and one biostack formats that way unlocks in
 * cryptsetup. Each unlock costs about 2 s by design.
 */
@Timeout(300)
class Luks2DefaultsTest {
    private static final Pattern MEMORY = Pattern.compile("Memory:\\s+(\\d+)");

    @TempDir
    Path dir;
    Path vol;
    Path pass;

    @BeforeEach
    void volume() throws Exception {
        Luks2Volumes.requireCryptsetup();
        vol = dir.resolve("vol.img");
        try (var ch = java.nio.channels.FileChannel.open(vol, java.nio.file.StandardOpenOption.CREATE_NEW,
                java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(java.nio.ByteBuffer.wrap(new byte[1]), (20 << 20) - 1);
        }
        pass = dir.resolve("pass");
        Files.writeString(pass, "a passphrase at the defaults");
    }

    private static int memoryKiB(String dump) {
        Matcher m = MEMORY.matcher(dump);
        assertThat(m.find()).as(dump).isTrue();
        return Integer.parseInt(m.group(1));
    }

    @Test
    void aVolumeCryptsetupFormatsWithItsDefaultsUnlocksInBiostack() throws Exception {
        ImageFiles.run("cryptsetup", "luksFormat", "-q", "--key-file", pass.toString(), vol.toString());
        String dump = ImageFiles.run("cryptsetup", "luksDump", vol.toString());
        assertThat(dump).contains("Version:       \t2").contains("PBKDF:      argon2id");
        // cryptsetup's own choice: at most 1 GiB, less when 4 passes of that would exceed 2 s here
        assertThat(memoryKiB(dump)).isBetween(1, 1 << 20);
        try (LoopDevice d = LoopDevice.open(vol, LoopConfig.defaults().withReadOnly(true))) {
            assertThat(Luks2.testPassphrase(d, Files.readAllBytes(pass), -1)).isZero();
        }
    }

    @Test
    void aVolumeBiostackFormatsWithTheDefaultsUnlocksInCryptsetup() throws Exception {
        try (LoopDevice d = LoopDevice.open(vol, LoopConfig.defaults())) {
            Luks2.format(d, d, Files.readAllBytes(pass), Luks2.FormatOptions.defaults());
        }
        String dump = ImageFiles.run("cryptsetup", "luksDump", vol.toString());
        assertThat(dump).contains("PBKDF:      argon2id").contains("sector: 4096 [bytes]")
                .contains("Cipher key: 512 bits");
        assertThat(memoryKiB(dump)).as("benchmarked, 32 MiB floor to 1 GiB").isBetween(32768, 1 << 20);
        ImageFiles.run("cryptsetup", "open", "--test-passphrase", "--key-file", pass.toString(), vol.toString());
    }
}
