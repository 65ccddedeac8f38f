package io.biostack.replay;

import io.biostack.file.FileClone;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The journal state that decides whether {@code --recover} runs, judged on file systems that
 * mkfs.ext4 and debugfs made, and checked against what e2fsprogs itself says (dumpe2fs).
 */
@Timeout(60)
class JournalStateTest {
    @TempDir
    Path dir;

    JournalState state(Path img) throws Exception {
        try (FileClone f = FileClone.open(img); Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(64 << 10, 4096);
            return JournalState.of(f, Files.size(img), buf);
        }
    }

    Path mkfs(String name, String... opts) throws Exception {
        Tools.require("mkfs.ext4", "debugfs", "dumpe2fs");
        Path img = dir.resolve(name);
        Tools.ok(30, "truncate", "-s", "32M", img.toString());
        String[] cmd = new String[4 + opts.length];
        cmd[0] = "mkfs.ext4";
        cmd[1] = "-q";
        cmd[2] = "-F";
        System.arraycopy(opts, 0, cmd, 3, opts.length);
        cmd[cmd.length - 1] = img.toString();
        Tools.ok(30, cmd);
        return img;
    }

    @Test
    void aFreshExt4HasACleanJournal() throws Exception {
        assertThat(state(mkfs("fresh.img"))).isEqualTo(JournalState.CLEAN);
        assertThat(state(mkfs("fresh1k.img", "-b", "1024"))).isEqualTo(JournalState.CLEAN);
    }

    @Test
    void needsRecoveryWithAnEmptyLogIsClean() throws Exception {
        // what a crash right after mount leaves: the flag is set, the log holds nothing
        Path img = mkfs("flag.img");
        Tools.ok(30, "debugfs", "-w", "-R", "feature needs_recovery", img.toString());
        assertThat(Tools.ok(30, "dumpe2fs", "-h", img.toString()).out()).contains("needs_recovery").contains("Journal start:            0");
        assertThat(state(img)).isEqualTo(JournalState.CLEAN);
    }

    @Test
    void aJournalHoldingATransactionIsDirtyAndCleanAfterRecovery() throws Exception {
        for (String bs : new String[] {"4096", "1024"}) {
            Path img = mkfs("tx" + bs + ".img", "-b", bs);
            Path blk = dir.resolve("blk" + bs);
            byte[] b = new byte[Integer.parseInt(bs)];
            new Random(5).nextBytes(b);
            Files.write(blk, b);
            Path script = dir.resolve("jw" + bs);
            Files.writeString(script, "jo\njw -b 3000 " + blk + "\njc\n");
            Tools.ok(30, "debugfs", "-w", "-f", script.toString(), img.toString());
            assertThat(Tools.ok(30, "dumpe2fs", "-h", img.toString()).out()).doesNotContain("Journal start:            0");
            assertThat(state(img)).as("block size " + bs).isEqualTo(JournalState.DIRTY);
            Tools.run(30, "e2fsck", "-E", "journal_only", "-y", img.toString());
            assertThat(state(img)).as("block size " + bs).isEqualTo(JournalState.CLEAN);
        }
    }

    @Test
    void anythingButExtIsDirty() throws Exception {
        Path img = dir.resolve("zeros.img");
        Tools.ok(30, "truncate", "-s", "4M", img.toString());
        assertThat(state(img)).isEqualTo(JournalState.DIRTY);
        Path tiny = dir.resolve("tiny.img");
        Files.write(tiny, new byte[100]);
        assertThat(state(tiny)).isEqualTo(JournalState.DIRTY);
    }
}
