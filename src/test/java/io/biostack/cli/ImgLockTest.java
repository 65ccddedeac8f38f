package io.biostack.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.biostack.nbd.Tools;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code biostack img} takes qemu's image locks (block/file-posix.c) as qemu-img does: a command
 * that writes an image refuses one that qemu-nbd serves, with qemu-img's words, and changes
 * nothing on disk. qemu-img create and convert truncate their destination only after taking its
 * write locks; without them biostack emptied an image under a running server.
 */
@Timeout(60)
class ImgLockTest {
    @TempDir
    Path dir;

    private Path served;
    private long serverPid = -1;

    @BeforeEach
    void serve() throws Exception {
        Tools.require("qemu-img", "qemu-io", "qemu-nbd");
        served = dir.resolve("served.qcow2");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", served.toString(), "4M");
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", served.toString());
        // --fork returns once the server listens and holds its locks: nothing to wait for
        Path pid = dir.resolve("nbd.pid");
        Tools.ok(30, "qemu-nbd", "--fork", "--pid-file", pid.toString(), "-f", "qcow2",
                "-k", dir.resolve("s.sock").toString(), served.toString());
        serverPid = Long.parseLong(Files.readString(pid).trim());
    }

    @AfterEach
    void stop() {
        ProcessHandle.of(serverPid).ifPresent(p -> {
            p.destroy();
            p.onExit().join();
        });
    }

    private void refusedUnchanged(String... args) throws Exception {
        byte[] before = Files.readAllBytes(served);
        CliRun r = CliRun.of(args);
        assertThat(r.code()).as(r.out() + r.err()).isNotZero();
        assertThat(r.err()).contains(served + ": Failed to get \"write\" lock");
        assertThat(Files.readAllBytes(served)).as("the refused command wrote nothing").isEqualTo(before);
    }

    @Test
    void createOverAnImageQemuNbdServesIsRefusedAndChangesNothing() throws Exception {
        refusedUnchanged("img", "create", "-q", "-f", "qcow2", served.toString(), "1M");
        refusedUnchanged("img", "create", "-q", "-f", "raw", served.toString(), "1M");
        Tools.ok(30, "qemu-io", "-r", "-U", "-f", "qcow2", "-c", "read -P 0x5a 0 64k", served.toString());
    }

    @Test
    void convertOntoAnImageQemuNbdServesIsRefusedAndChangesNothing() throws Exception {
        Path src = dir.resolve("src.raw");
        Files.write(src, new byte[1 << 20]);
        for (String fmt : new String[] {"raw", "qcow2"}) {
            refusedUnchanged("img", "convert", "-f", "raw", "-O", fmt, src.toString(), served.toString());
        }
        refusedUnchanged("img", "convert", "-c", "-f", "raw", "-O", "qcow2", src.toString(), served.toString());
    }

    @Test
    void readersOfAnImageQemuNbdWritesAreRefusedUnlessForceShareAsQemuImgs() throws Exception {
        Path out = dir.resolve("out.raw");
        String img = served.toString();
        String[][] readers = {
            {"img", "info", img},
            {"img", "info", "--output=json", "--backing-chain", img},
            {"img", "map", img},
            {"img", "check", img},
            {"img", "convert", "-O", "raw", img, out.toString()},
        };
        for (String[] args : readers) {
            String[] qemuArgs = args.clone();
            qemuArgs[0] = "qemu-img";
            Tools.Result q = Tools.run(30, qemuArgs);
            assertThat(q.exit()).as("qemu-img refuses it: " + q.all()).isNotZero();
            assertThat(q.all()).contains("Failed to get shared \"write\" lock");
            CliRun r = CliRun.of(args);
            assertThat(r.code()).as(String.join(" ", args) + ": " + r.out() + r.err()).isNotZero();
            assertThat(r.err()).contains(img + ": Failed to get shared \"write\" lock");
            String[] shared = new String[args.length + 1];
            shared[0] = "img";
            shared[1] = args[1];
            shared[2] = "-U";
            System.arraycopy(args, 2, shared, 3, args.length - 2);
            CliRun u = CliRun.of(shared);
            assertThat(u.code()).as(String.join(" ", shared) + ": " + u.out() + u.err()).isZero();
        }
        assertThat(Files.size(out)).isEqualTo(4 << 20);
        // an overlay over an image in use is how a live snapshot starts: qemu-img create opens
        // the backing file shared
        Path top = dir.resolve("top.qcow2");
        CliRun c = CliRun.of("img", "create", "-q", "-f", "qcow2", "-b", img, "-F", "qcow2", top.toString());
        assertThat(c.code()).as(c.err()).isZero();
    }

    @Test
    void createAndConvertTakeTheImageOnceTheServerIsGone() throws Exception {
        stop();
        assertThat(CliRun.of("img", "create", "-q", "-f", "qcow2", served.toString(), "1M").code()).isZero();
        Tools.ok(30, "qemu-img", "check", served.toString());
        Path src = dir.resolve("src.raw");
        Files.write(src, new byte[1 << 20]);
        assertThat(CliRun.of("img", "convert", "-f", "raw", "-O", "qcow2", src.toString(), served.toString()).code())
                .isZero();
        // the locks went with the commands: qemu-io writes the image
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write -P 1 0 4k", served.toString());
    }
}
