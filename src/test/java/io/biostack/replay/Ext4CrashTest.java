package io.biostack.replay;

import io.biostack.layer.logwrites.LogWrites;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.NbdExport;
import io.biostack.nbd.NbdServer;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * ext4 made and used through the log-writes target, the whole way a user would: the stack is
 * served over NBD, nbdfuse makes it a file, the kernel's loop driver makes that a block device;
 * mkfs, a mark, mount, files written and fsynced, unmount. Then the log is replayed up to the mark
 * and every flush point after it is checked, with a sample of reordered states, by recovering the
 * journal first on the scratch copy (as mounting would, and as xfstests' generic/482 does) and then
 * checking read-only. ext4 with its journal must survive every one of them.
 */
@Timeout(180)
class Ext4CrashTest {
    static final long SIZE = 48L << 20;
    static final String CHECK = "e2fsck -E journal_only -y {} 2>&1; e2fsck -fn {} 2>&1";

    @TempDir
    Path dir;

    @Test
    void everyFlushPointAfterMkfsAndASampleOfReorderedStatesAreConsistent() throws Exception {
        Tools.require("nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "mount", "umount", "e2fsck");
        Path devFile = dir.resolve("dev.img");
        Path logFile = dir.resolve("log.img");
        Path sock = dir.resolve("nbd.sock");
        Path fuseDir = Files.createDirectory(dir.resolve("fuse"));
        Path fs = Files.createDirectory(dir.resolve("fs"));
        byte[] payload = new byte[200 << 10];
        new Random(11).nextBytes(payload);

        try (LoopDevice dev = LoopDevice.open(devFile, LoopConfig.defaults().withCreateSize(SIZE));
             LoopDevice log = LoopDevice.open(logFile, LoopConfig.defaults().withCreateSize(256L << 20))) {
            LogWrites lw = new LogWrites("lw", dev, log);
            try (NbdServer server = NbdServer.builder().export(NbdExport.of("lw", lw)).unixSocket(sock).start()) {
                Process fuse = new ProcessBuilder("nbdfuse", fuseDir.toString(), "nbd+unix:///lw?socket=" + sock)
                        .redirectErrorStream(true).start();
                Path file = fuseDir.resolve("nbd");
                String loopDev = null;
                try {
                    long end = System.currentTimeMillis() + 10_000;
                    while (!Files.exists(file) && System.currentTimeMillis() < end && fuse.isAlive()) {
                        Thread.sleep(50);
                    }
                    assertThat(Files.exists(file)).as("nbdfuse mounted " + file).isTrue();
                    loopDev = Tools.ok(30, "losetup", "--find", "--show", file.toString()).out().trim();
                    Tools.ok(60, "mkfs.ext4", "-q", "-F", "-b", "4096", loopDev);
                    lw.message(List.of("mark", "mkfs"));
                    Tools.ok(30, "mount", "-t", "ext4", loopDev, fs.toString());
                    try {
                        for (int i = 0; i < 3; i++) {
                            Path f = fs.resolve("file" + i);
                            try (FileChannel ch = FileChannel.open(f, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
                                ch.write(ByteBuffer.wrap(payload));
                                ch.force(true);
                            }
                        }
                        Files.createDirectory(fs.resolve("dir"));
                        Files.move(fs.resolve("file0"), fs.resolve("dir").resolve("moved"));
                        try (FileChannel ch = FileChannel.open(fs.resolve("dir"), StandardOpenOption.READ)) {
                            ch.force(true);
                        }
                    } finally {
                        Tools.ok(30, "umount", fs.toString());
                    }
                    lw.message(List.of("mark", "umount"));
                } finally {
                    if (loopDev != null && loopDev.startsWith("/dev/loop")) {
                        Tools.run(30, "losetup", "-d", loopDev);
                    }
                    Tools.run(10, "fusermount3", "-u", fuseDir.toString());
                    if (!fuse.waitFor(10, TimeUnit.SECONDS)) {
                        fuse.destroyForcibly();
                    }
                }
            } finally {
                lw.close();
            }
            assertThat(lw.loggingEnabled()).isTrue();
        }

        Path img = dir.resolve("replay.img");
        Report r = Replayer.run(Replayer.Options.of(logFile, img).createSize(SIZE)
                .marks("mkfs", "umount").at(Replayer.At.FLUSH)
                .check(CHECK, Duration.ofSeconds(60))
                .reorder(2, 1, false));
        assertThat(r.passed()).as(r.toText()).isTrue();
        assertThat(r.points()).as(r.toText()).isGreaterThanOrEqualTo(5);
        assertThat(r.reorderedStates()).as(r.toText()).isGreaterThanOrEqualTo(5);
        // the replay at the last mark is the device as it was: the same bytes as the device file
        assertThat(Files.mismatch(img, devFile)).isEqualTo(-1);
        // Real crash states: at some of them the journal held transactions that the check's
        // recovery wrote home (the checker changed its copy), as mounting would have.
        assertThat(r.checkerWrote()).as(r.toText()).isGreaterThan(0);

        // The same with the recovery as --recover: it runs only where the journal has something
        // to replay, and the states and verdicts are the same. At the umount mark the journal is
        // clean (jbd2 empties it on unmount), so at least that state skips it.
        Path img2 = dir.resolve("replay2.img");
        Report q = Replayer.run(Replayer.Options.of(logFile, img2).createSize(SIZE)
                .marks("mkfs", "umount").at(Replayer.At.FLUSH)
                .recover("e2fsck -E journal_only -y {} 2>&1")
                .check("e2fsck -fn {} 2>&1", Duration.ofSeconds(60))
                .reorder(2, 1, false));
        assertThat(q.passed()).as(q.toText()).isTrue();
        assertThat(q.points()).isEqualTo(r.points());
        assertThat(q.reorderedStates()).isEqualTo(r.reorderedStates());
        assertThat(q.recoveries()).as(q.toText()).isGreaterThan(0);
        assertThat(q.recoveriesSkipped()).as(q.toText()).isGreaterThan(0);
        assertThat(q.recoveries() + q.recoveriesSkipped()).as(q.toText()).isEqualTo(q.checks());
        assertThat(Files.mismatch(img2, devFile)).isEqualTo(-1);
    }
}
