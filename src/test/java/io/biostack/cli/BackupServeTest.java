package io.biostack.cli;

import io.biostack.nbd.Tools;
import io.biostack.stack.ControlServer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Backups of a {@code biostack serve --stack} child process with real NBD clients only (nbdcopy,
 * nbdinfo, qemu-io), the bitmaps driven by {@code dm message} over the control socket; and a
 * mirror with a disk log in such a process, SIGKILLed under writes and restarted.
 */
@Timeout(120)
class BackupServeTest {
    static final int SIZE = 16 << 20;

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

    String uri(String export) {
        return "nbd+unix:///" + export + "?socket=" + sock();
    }

    /** Starts {@code serve --stack} and waits for its "ready" line. */
    Process serve(Path stack) throws Exception {
        Process p = ServeProcess.startReady(dir, List.of("--stack", stack.toString(), "--export", "d",
                "--socket", sock().toString(), "--control", ctl().toString()));
        started.add(p);
        return p;
    }

    ControlServer.Reply dm(String... argv) throws IOException {
        return ControlServer.send(ctl(), List.of(argv));
    }

    void ok(String... argv) throws IOException {
        ControlServer.Reply r = dm(argv);
        assertThat(r.ok()).as("dm %s: %s", List.of(argv), r.text()).isTrue();
    }

    static void run(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).as("%s: %s", List.of(cmd), out).isZero();
    }

    /** qemu-io writes of random patterns at random 64k-aligned places, as the live workload. */
    static Process liveWrites(String uri, long seed, int n) throws IOException {
        Random r = new Random(seed);
        List<String> cmd = new ArrayList<>(List.of("qemu-io", "-f", "raw"));
        for (int i = 0; i < n; i++) {
            cmd.add("-c");
            cmd.add("write -P " + (1 + r.nextInt(250)) + " " + (long) r.nextInt(SIZE / 65536) * 65536 + " 64k");
        }
        cmd.add(uri);
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
    }

    Path stackFile(Path img, Path bitmaps) throws IOException {
        Path st = dir.resolve("s.stack");
        Files.writeString(st, "d: loop " + img + " size=" + SIZE + " direct-io=off bitmap-file=" + bitmaps + "\n");
        return st;
    }

    @Test
    void aFullBackupWithNbdcopyIsThePointInTimeWhileWritesGoOn() throws Exception {
        Tools.require("nbdcopy", "qemu-io");
        Path img = dir.resolve("d.img");
        Process srv = serve(stackFile(img, dir.resolve("d.bitmaps")));
        run("qemu-io", "-f", "raw", "-c", "write -P 7 0 " + SIZE, uri("d"));
        ok("message", "d", "bitmap add b0 persistent");
        ok("message", "d", "backup-begin full bitmap=b0 new=b1 cow-dir=" + dir);
        Process w = liveWrites(uri("d"), 1, 64);
        Path copy = dir.resolve("full.img");
        run("nbdcopy", uri("full"), copy.toString());
        assertThat(w.waitFor(60, TimeUnit.SECONDS)).isTrue();
        ok("message", "d", "backup-end full");
        byte[] expected = new byte[SIZE];
        java.util.Arrays.fill(expected, (byte) 7);
        assertThat(java.util.Arrays.mismatch(Files.readAllBytes(copy), expected)).as("first differing byte").isEqualTo(-1);
        // what the live writes changed is in b1, and nowhere else
        String status = dm("status", "d").text();
        assertThat(status).containsPattern("bitmap b1 granularity=65536 dirty=[1-9][0-9]* recording persistent consistent");
        srv.toHandle().destroy();
        assertThat(srv.waitFor(30, TimeUnit.SECONDS)).isTrue();
    }

    @Test
    void afterSigkillUnderWritesThePersistentBitmapIsInconsistentAndAnIncrementalIsRefused() throws Exception {
        Tools.require("qemu-io");
        Path img = dir.resolve("d.img");
        Path st = stackFile(img, dir.resolve("d.bitmaps"));
        Process srv = serve(st);
        ok("message", "d", "bitmap add b persistent");
        Process w = liveWrites(uri("d"), 2, 200);
        Thread.sleep(300);
        srv.destroyForcibly(); // SIGKILL, writes in flight
        srv.waitFor(10, TimeUnit.SECONDS);
        w.destroyForcibly();
        w.waitFor(10, TimeUnit.SECONDS);
        serve(st);
        assertThat(dm("status", "d").text()).contains("bitmap b granularity=65536 dirty=0 disabled persistent inconsistent");
        ControlServer.Reply r = dm("message", "d", "backup-begin inc bitmap=b cow-dir=" + dir);
        assertThat(r.ok()).isFalse();
        assertThat(r.text()).contains("inconsistent").contains("the next backup must be a full one");
        assertThat(dm("ls").text()).doesNotContain("inc");
    }

    @Test
    void serveBOnAnInconsistentBitmapSaysSoAndWhatToDo() throws Exception {
        Path bm = dir.resolve("d.bitmaps");
        Path st = stackFile(dir.resolve("d.img"), bm);
        try (io.biostack.stack.Stack s = io.biostack.stack.Stack.open(st)) {
            s.control(List.of("message", "d", "bitmap add b persistent"));
            s.control(List.of("message", "d", "bitmap add ok persistent disabled"));
            Files.copy(bm, dir.resolve("crashed")); // the side file as a SIGKILL leaves it: b in use
        }
        Files.move(dir.resolve("crashed"), bm, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        CliRun r = CliRun.of("serve", "--stack", st.toString(), "--export", "d", "--socket", sock().toString(), "-B", "b");
        assertThat(r.code()).isNotZero();
        // it has a bitmap b, and one other: "(it has ok)" said nothing of why b was not offered
        assertThat(r.err()).contains("bitmap b of d is inconsistent", "bitmap remove b", "full")
                .doesNotContain("it has ok").doesNotContain("\tat ");
        assertThat(sock()).doesNotExist();
    }

    @Test
    void aCleanStopKeepsTheBitmapConsistentAcrossARestart() throws Exception {
        Tools.require("qemu-io");
        Path st = stackFile(dir.resolve("d.img"), dir.resolve("d.bitmaps"));
        Process srv = serve(st);
        ok("message", "d", "bitmap add b persistent");
        run("qemu-io", "-f", "raw", "-c", "write -P 1 1M 64k", uri("d"));
        srv.toHandle().destroy(); // SIGTERM: a clean stop
        assertThat(srv.waitFor(30, TimeUnit.SECONDS)).isTrue();
        serve(st);
        assertThat(dm("status", "d").text()).contains("bitmap b granularity=65536 dirty=65536 recording persistent consistent");
    }

    /**
     * Three incrementals copying only what {@code nbdinfo --map=qemu:dirty-bitmap:BM} reports.
     */
    @Test
    void fullPlusThreeIncrementalsWithNbdinfoAndNbdcopyGiveEachPointInTime() throws Exception {
        Tools.require("nbdcopy", "nbdinfo", "nbdkit", "qemu-io");
        Path img = dir.resolve("d.img");
        serve(stackFile(img, dir.resolve("d.bitmaps")));
        run("qemu-io", "-f", "raw", "-c", "write -P 9 0 " + SIZE, uri("d"));
        ok("message", "d", "bitmap add b0 persistent");
        ok("message", "d", "backup-begin full bitmap=b0 new=b1 cow-dir=" + dir);
        Path backup = dir.resolve("backup.img");
        run("nbdcopy", uri("full"), backup.toString());
        ok("message", "d", "backup-end full");
        for (int i = 1; i <= 3; i++) {
            run(liveWritesCmd(uri("d"), 10 + i, 16));
            Path before = dir.resolve("pit" + i + ".img");
            Files.copy(img, before); // no writes in flight now: the point in time of backup i
            String bm = "b" + i;
            ok("message", "d", "backup-begin inc" + i + " bitmap=" + bm + " new=b" + (i + 1) + " cow-dir=" + dir);
            Process w = liveWrites(uri("d"), 100 + i, 32);
            Process map = new ProcessBuilder("nbdinfo", "--map=qemu:dirty-bitmap:" + bm, uri("inc" + i)).start();
            String out = new String(map.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertThat(map.waitFor(30, TimeUnit.SECONDS)).isTrue();
            assertThat(map.exitValue()).as(out).isZero();
            long copied = 0;
            try (java.nio.channels.FileChannel dst = java.nio.channels.FileChannel.open(backup, java.nio.file.StandardOpenOption.WRITE)) {
                for (String line : out.lines().toList()) {
                    String[] f = line.trim().split("\\s+");
                    if (f.length < 3 || !f[2].equals("1")) {
                        continue; // nbdinfo --map: OFFSET LENGTH TYPE [DESCRIPTION]; 1 is dirty
                    }
                    long off = Long.parseLong(f[0]);
                    long len = Long.parseLong(f[1]);
                    Path piece = dir.resolve("piece");
                    Files.deleteIfExists(piece);
                    // nbdcopy 1.14 has no --offset/--length: the range is an nbdkit offset
                    // filter over the export, run by nbdcopy itself ([ CMD ] as its source).
                    run("nbdcopy", "--", "[", "nbdkit", "--filter=offset", "nbd", "uri=" + uri("inc" + i),
                            "offset=" + off, "range=" + len, "]", piece.toString());
                    dst.write(java.nio.ByteBuffer.wrap(Files.readAllBytes(piece)), off);
                    copied += len;
                }
            }
            assertThat(w.waitFor(60, TimeUnit.SECONDS)).isTrue();
            ok("message", "d", "backup-end inc" + i);
            assertThat(java.util.Arrays.mismatch(Files.readAllBytes(backup), Files.readAllBytes(before)))
                    .as("backup %d: first differing byte", i).isEqualTo(-1);
            assertThat(copied).isLessThan(SIZE / 2);
        }
    }

    static String[] liveWritesCmd(String uri, long seed, int n) {
        Random r = new Random(seed);
        List<String> cmd = new ArrayList<>(List.of("qemu-io", "-f", "raw"));
        for (int i = 0; i < n; i++) {
            cmd.add("-c");
            cmd.add("write -P " + (1 + r.nextInt(250)) + " " + (long) r.nextInt(SIZE / 65536) * 65536 + " 64k");
        }
        cmd.add(uri);
        return cmd.toArray(String[]::new);
    }

    @Test
    void afterSigkillUnderWritesARestartResyncsOnlyTheMarkedRegions() throws Exception {
        Tools.require("qemu-io");
        Path st = dir.resolve("m.stack");
        Files.writeString(st, "a: loop " + dir.resolve("a.img") + " size=" + SIZE + " direct-io=off\n"
                + "b: loop " + dir.resolve("b.img") + " size=" + SIZE + " direct-io=off\n"
                + "log: loop " + dir.resolve("log.img") + " size=1M direct-io=off\n"
                + "d: mirror disk 3 log 64k nosync 2 a 0 b 0\n");
        Process srv = serve(st);
        // writes into the first 2 MiB only (32 regions): what the log may have marked at the crash
        java.util.Random rnd = new java.util.Random(5);
        List<String> cmd = new java.util.ArrayList<>(List.of("qemu-io", "-f", "raw"));
        for (int i = 0; i < 400; i++) {
            cmd.addAll(List.of("-c", "write -P " + (1 + rnd.nextInt(250)) + " " + rnd.nextInt(32) * 65536L + " 64k"));
        }
        cmd.add(uri("d"));
        Process w = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        Thread.sleep(700);
        srv.destroyForcibly(); // SIGKILL with writes in flight
        srv.waitFor(10, TimeUnit.SECONDS);
        w.destroyForcibly();
        w.waitFor(10, TimeUnit.SECONDS);

        Process again = serve(st);
        String status = "";
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            ControlServer.Reply r = ControlServer.send(ctl(), List.of("status", "d"));
            status = r.text();
            if (status.contains(" 256/256 1 AA ")) {
                break;
            }
            Thread.sleep(50);
        }
        assertThat(status).contains(" 256/256 1 AA 3 disk log A");
        Matcher m = Pattern.compile("resync_bytes=(\\d+)").matcher(status);
        assertThat(m.find()).isTrue();
        long copied = Long.parseLong(m.group(1));
        System.out.println("mirror restart after SIGKILL: " + status.strip());
        assertThat(copied % 65536).isZero();
        assertThat(copied).as("only regions written before the crash (32 of 64 KiB), not the %d-byte device", SIZE)
                .isLessThanOrEqualTo(32 * 65536);
        again.toHandle().destroy();
        assertThat(again.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(java.util.Arrays.mismatch(Files.readAllBytes(dir.resolve("a.img")), Files.readAllBytes(dir.resolve("b.img"))))
                .as("legs byte-equal after the resync (copied %d bytes)", copied).isEqualTo(-1);
    }

    /** {@code dm status NAME} every 50 ms until {@code want} shows, or 30 s; returns the last. */
    String awaitStatus(String dev, String want) throws Exception {
        String status = "";
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            status = ControlServer.send(ctl(), List.of("status", dev)).text();
            if (status.contains(want)) {
                break;
            }
            Thread.sleep(50);
        }
        return status;
    }

    /** qemu-nbd serving {@code img} raw on {@code sock}, persistent, as the remote leg. */
    Process remote(Path img, Path sock) throws Exception {
        Files.deleteIfExists(sock);
        Process p = new ProcessBuilder("qemu-nbd", "-f", "raw", "-t", "-k", sock.toString(), "--cache=none", img.toString())
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        started.add(p);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!Files.exists(sock) && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertThat(sock).as("qemu-nbd's socket").exists();
        return p;
    }

    static String[] writes(String uri, int firstRegion, int regions, int pattern) {
        List<String> cmd = new ArrayList<>(List.of("qemu-io", "-f", "raw"));
        for (int i = 0; i < regions; i++) {
            cmd.addAll(List.of("-c", "write -P " + (pattern + i) + " " + (firstRegion + i) * 65536L + " 64k"));
        }
        cmd.add(uri);
        return cmd.toArray(String[]::new);
    }

    @Test
    void aRemoteLegKilledAndDownAcrossARestartGetsOnlyTheRegionsWrittenWhileItWasAway() throws Exception {
        Tools.require("qemu-io", "qemu-nbd");
        Path a = dir.resolve("a.img");
        Path b = dir.resolve("b.img");
        Files.write(a, new byte[SIZE]);
        Files.write(b, new byte[SIZE]);
        Path rsock = dir.resolve("remote.sock");
        Process leg = remote(b, rsock);
        Path st = dir.resolve("m.stack");
        Files.writeString(st, "a: loop " + a + " size=" + SIZE + " direct-io=off\n"
                + "b: nbd nbd+unix:///?socket=" + rsock + " timeout=2s\n"
                + "log: loop " + dir.resolve("log.img") + " size=1M direct-io=off\n"
                + "d: mirror disk 3 log 64k nosync 2 a 0 b 0 2 handle_errors clear_delay=200ms\n");
        Process srv = serve(st);
        run(writes(uri("d"), 0, 10, 1)); // both legs take regions 0..9
        assertThat(awaitStatus("d", "marked=0")).as("marks cleared once both legs have the writes").contains("marked=0");

        leg.destroyForcibly(); // the remote leg dies
        leg.waitFor(10, TimeUnit.SECONDS);
        run(writes(uri("d"), 20, 5, 100)); // regions 20..24 while it is away: the client sees success
        String down = awaitStatus("d", " AD ");
        assertThat(down).as("leg b marked dead").contains(" 256/256 1 AD ").contains("marked=5");
        srv.destroyForcibly(); // SIGKILL with the leg still away
        srv.waitFor(10, TimeUnit.SECONDS);

        remote(b, rsock); // the leg is back before the stack opens again
        serve(st);
        String status = awaitStatus("d", " 256/256 1 AA ");
        System.out.println("mirror restart with a remote leg that was away: " + status.strip());
        assertThat(status).contains(" 256/256 1 AA 3 disk log A");
        Matcher m = Pattern.compile("resync_bytes=(\\d+)").matcher(status);
        assertThat(m.find()).isTrue();
        assertThat(Long.parseLong(m.group(1))).as("only the 5 regions written while the leg was away")
                .isEqualTo(5 * 65536L);
        byte[] av = Files.readAllBytes(a);
        byte[] bv = Files.readAllBytes(b);
        assertThat(java.util.Arrays.mismatch(av, bv)).as("legs byte-equal after the resync").isEqualTo(-1);
        assertThat(av[20 * 65536]).isEqualTo((byte) 100);
    }
}
