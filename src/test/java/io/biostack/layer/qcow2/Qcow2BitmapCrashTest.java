package io.biostack.layer.qcow2;

import io.biostack.nbd.Tools;
import io.biostack.stack.ControlServer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A qcow2 image's bitmap in a {@code biostack serve --stack} child process that is SIGKILLed
 * under writes: the bitmap is left in use on disk, so at the restart it is inconsistent, offered
 * to no NBD client, refused for an incremental backup, and qemu sees it in use too.
 */
@Timeout(120)
class Qcow2BitmapCrashTest {
    static final long SIZE = 16L << 20;

    @TempDir
    Path dir;
    final List<Process> started = new ArrayList<>();

    @AfterEach
    void kill() throws InterruptedException {
        for (Process p : started) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    Path sock() {
        return dir.resolve("nbd.sock");
    }

    Path ctl() {
        return dir.resolve("ctl.sock");
    }

    String uri() {
        return "nbd+unix:///q?socket=" + sock();
    }

    /** Starts {@code serve --stack} on the image and waits for its "ready" line. */
    Process serve(Path img) throws Exception {
        Path stack = dir.resolve("s.stack");
        Files.writeString(stack, "c: loop " + img + " direct-io=off\nq: qcow2 c\n");
        Process p = io.biostack.cli.ServeProcess.startReady(dir, List.of("--stack", stack.toString(), "--export", "q",
                "--socket", sock().toString(), "--control", ctl().toString()));
        started.add(p);
        return p;
    }

    ControlServer.Reply dm(String... argv) throws IOException {
        return ControlServer.send(ctl(), List.of(argv));
    }

    @Test
    void afterSigkillUnderWritesTheImageBitmapIsInconsistentNeverExportedAndRefusedForAnIncremental() throws Exception {
        Tools.require("qemu-img", "qemu-io", "nbdinfo");
        Path img = dir.resolve("d.qcow2");
        Tools.ok(30, "qemu-img", "create", "-f", "qcow2", img.toString(), String.valueOf(SIZE));
        Tools.ok(30, "qemu-img", "bitmap", "--add", img.toString(), "b");
        Process srv = serve(img);
        assertThat(dm("status", "q").text()).contains("bitmap b granularity=65536 dirty=0 recording persistent consistent");
        Tools.ok(60, "qemu-io", "-f", "raw", "-c", "write -P 1 1M 64k", uri());
        List<String> writes = new ArrayList<>(List.of("qemu-io", "-f", "raw"));
        for (int i = 0; i < 200; i++) {
            writes.addAll(List.of("-c", "write -P 2 " + (i % 200) * 65536L + " 64k"));
        }
        writes.add(uri());
        Process w = new ProcessBuilder(writes).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD)
                .start();
        Thread.sleep(300);
        srv.destroyForcibly(); // SIGKILL, writes in flight
        assertThat(srv.waitFor(10, TimeUnit.SECONDS)).isTrue();
        w.destroyForcibly();
        w.waitFor(10, TimeUnit.SECONDS);
        // On disk the bitmap is in use, so qemu does not trust it either.
        String info = Tools.ok(30, "qemu-img", "info", "-U", "--output=json", img.toString()).out().replaceAll("\\s+", "");
        assertThat(info).contains("\"flags\":[\"in-use\",\"auto\"],\"name\":\"b\"");

        serve(img);
        assertThat(dm("status", "q").text()).contains("bitmap b granularity=65536 dirty=0 disabled persistent inconsistent");
        ControlServer.Reply r = dm("message", "q", "backup-begin inc bitmap=b cow-dir=" + dir);
        assertThat(r.ok()).isFalse();
        assertThat(r.text()).contains("inconsistent").contains("the next backup must be a full one");
        assertThat(dm("ls").text()).doesNotContain("inc");
        // No client is offered it as a context: nothing reads it as clean.
        Tools.Result map = Tools.run(30, "nbdinfo", "--map=qemu:dirty-bitmap:b", uri());
        assertThat(map.exit()).as(map.all()).isNotZero();
        Tools.Result list = Tools.ok(30, "nbdinfo", "--list", uri());
        assertThat(list.all()).doesNotContain("qemu:dirty-bitmap:b");
        // It can only be removed; then a clean stop leaves an image qemu-img check passes
        // (leaked clusters from the kill are allowed: exit 3).
        assertThat(dm("message", "q", "bitmap clear b").ok()).isFalse();
        assertThat(dm("message", "q", "bitmap remove b").ok()).isTrue();
        Process again = started.getLast();
        again.toHandle().destroy();
        assertThat(again.waitFor(30, TimeUnit.SECONDS)).isTrue();
        Tools.Result check = Tools.run(60, "qemu-img", "check", img.toString());
        assertThat(check.exit()).as(check.all()).isIn(0, 3);
        assertThat(check.all()).doesNotContain("ERROR");
        assertThat(Tools.ok(30, "qemu-img", "info", img.toString()).out()).doesNotContain("bitmaps:");
    }
}
