package io.biostack.layer.crypt;

import static org.assertj.core.api.Assertions.assertThat;

import io.biostack.cli.CliRun;
import io.biostack.layer.logwrites.LogWrites;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A crash at any write of an add-key: the volume under a {@code log-writes} target, then
 * {@code biostack replay --at write} checks every crash state with cryptsetup: each opens with the
 * old passphrase, and from the first state where the new header is on disk, with the new one too
 * (the keyslot area is flushed before either header copy names it, and the copies are written one
 * after the other).
 */
@Timeout(120)
class Luks2CrashTest {
    @TempDir
    Path dir;

    @Test
    void everyCrashStateOfAnAddKeyOpensWithTheOldKeyAndTheLaterOnesWithTheNewToo() throws Exception {
        Luks2Volumes.requireCryptsetup();
        Path base = dir.resolve("base.img");
        Path img = dir.resolve("replayed.img");
        Path log = dir.resolve("log.img");
        Files.writeString(dir.resolve("old"), "old passphrase");
        Files.writeString(dir.resolve("new"), "new passphrase");
        Luks2.KdfOptions fast = new Luks2.KdfOptions("argon2id", "sha256", 0, 8192, 1, 4);
        try (LoopDevice d = LoopDevice.open(base, LoopConfig.defaults().withCreateSize(17 << 20))) {
            Luks2.format(d, d, "old passphrase".getBytes(), new Luks2.FormatOptions(64, fast, 4096, "", -1));
        }
        Files.copy(base, img);
        try (LoopDevice d = LoopDevice.open(base, LoopConfig.defaults());
             LoopDevice l = LoopDevice.open(log, LoopConfig.defaults().withCreateSize(8 << 20))) {
            LogWrites lw = new LogWrites("lw", d, l);
            Luks2.addKey(lw, "old passphrase".getBytes(), "new passphrase".getBytes(), fast, -1);
            lw.close();
        }
        Path results = dir.resolve("results");
        String check = "cryptsetup open --test-passphrase --key-file " + dir.resolve("old") + " {} && "
                + "{ if cryptsetup open --test-passphrase --key-file " + dir.resolve("new") + " {}; then echo new; "
                + "else echo old; fi; } >> " + results;
        CliRun r = CliRun.of("replay", log.toString(), "--to", img.toString(), "--at", "write", "--check", check,
                "-j", "1");
        assertThat(r.code()).as(r.out() + r.err()).isZero();
        List<String> states = Files.readAllLines(results);
        // a state after each write: the area, the primary copy, the secondary copy
        assertThat(states).as(r.out()).hasSizeGreaterThanOrEqualTo(3);
        int firstNew = states.indexOf("new");
        assertThat(firstNew).as(states.toString()).isPositive();
        assertThat(states.subList(0, firstNew)).containsOnly("old");
        assertThat(states.subList(firstNew, states.size())).containsOnly("new");
        assertThat(Files.mismatch(img, base)).as("the replay ends where the volume did").isEqualTo(-1);
    }
}
