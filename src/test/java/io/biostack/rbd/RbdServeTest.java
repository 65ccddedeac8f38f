package io.biostack.rbd;

import io.biostack.nbd.Tools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.api.parallel.ResourceLock;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code biostack serve --stack} with an {@code rbd} line, as a user runs it (a child JVM), read
 * and written by the real NBD clients: nbdcopy, nbdinfo, fio.
 */
@Timeout(90)
@ResourceLock(CephCluster.LOCK)
class RbdServeTest {
    static CephCluster ceph;

    @TempDir
    Path dir;
    final List<Process> started = new ArrayList<>();

    @BeforeAll
    static void cluster() throws Exception {
        ceph = CephCluster.shared();
    }

    @AfterEach
    void kill() throws InterruptedException {
        for (Process p : started) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    /**
     * Starts {@code serve --stack FILE --export vol --socket SOCK} with CEPH_CONF pointing at
     * the test cluster (so a bare {@code rbd POOL/IMAGE} line finds it, as librados' default
     * search does for a user); returns the NBD URI once serve says "ready".
     */
    String serve(String stackText) throws Exception {
        Path stack = dir.resolve("rbd.stack");
        Files.writeString(stack, stackText);
        return serveArgs("--stack", stack.toString());
    }

    /** Starts {@code serve WHAT... --export vol --socket SOCK}; returns the NBD URI once it says "ready". */
    String serveArgs(String... what) throws Exception {
        Path sock = dir.resolve("rbd.sock");
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "io.biostack.cli.Main", "serve"));
        cmd.addAll(List.of(what));
        cmd.addAll(List.of("--export", "vol", "--socket", sock.toString()));
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true);
        pb.environment().put("CEPH_CONF", ceph.conf().toString());
        Process p = pb.start();
        started.add(p);
        LinkedBlockingQueue<String> out = new LinkedBlockingQueue<>();
        Thread.ofPlatform().daemon(true).start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String l;
                while ((l = r.readLine()) != null) {
                    out.add(l);
                }
            } catch (IOException e) {
                // gone
            }
            out.add("\u0000EOF");
        });
        List<String> seen = new ArrayList<>();
        while (true) {
            String l = out.poll(30, TimeUnit.SECONDS);
            assertThat(l).as("serve said 'ready' (so far: %s)", seen).isNotNull();
            assertThat(l).as("serve exited early: %s", seen).isNotEqualTo("\u0000EOF");
            seen.add(l);
            if (l.equals("ready")) {
                return "nbd+unix:///vol?socket=" + sock;
            }
        }
    }

    void stop() throws InterruptedException {
        Process p = started.getLast();
        p.toHandle().destroy(); // SIGTERM: serve closes the stack, which flushes and closes the image
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).as("serve stops on SIGTERM").isTrue();
    }

    @Test
    void anImageMadeByRbdImportIsServedByteExactWithItsHoles() throws Exception {
        Tools.require("nbdcopy", "nbdinfo");
        byte[] data = new byte[24 << 20];
        new Random(21).nextBytes(data);
        Arrays.fill(data, 8 << 20, 16 << 20, (byte) 0); // two whole objects of zeros: rbd import skips them
        Path src = dir.resolve("src.img");
        Files.write(src, data);
        String name = ceph.newImage("served");
        ceph.rbd("import", src.toString(), "rbd/" + name);

        String uri = serve("vol: rbd rbd/" + name + "\n");
        assertThat(Tools.ok(30, "nbdinfo", "--size", uri).out().strip()).isEqualTo(String.valueOf(data.length));
        Path copy = dir.resolve("copy.img");
        Tools.ok(60, "nbdcopy", uri, copy.toString());
        assertThat(Arrays.mismatch(Files.readAllBytes(copy), data)).as("first differing byte").isEqualTo(-1);
        String map = Tools.ok(30, "nbdinfo", "--map", uri).out();
        assertThat(map.lines().map(String::strip))
                .as("nbdinfo --map:\n%s", map)
                .anyMatch(l -> l.matches("0\\s+\\d+\\s+0\\s+data"))
                .anyMatch(l -> l.matches((8 << 20) + "\\s+" + (8 << 20) + "\\s+3\\s+hole,zero"))
                .anyMatch(l -> l.matches((16 << 20) + "\\s+\\d+\\s+0\\s+data"));
        stop();
    }

    @Test
    void serveTakesQemuNbdsRbdSpellingWhereAFileGoes() throws Exception {
        Tools.require("nbdcopy", "nbdinfo");
        byte[] data = new byte[4 << 20];
        new Random(23).nextBytes(data);
        Path src = dir.resolve("spelled.img");
        Files.write(src, data);
        String name = ceph.newImage("spelled");
        ceph.rbd("import", src.toString(), "rbd/" + name);

        String uri = serveArgs("rbd:rbd/" + name); // as `qemu-nbd rbd:POOL/IMAGE`; CEPH_CONF finds the cluster
        assertThat(Tools.ok(30, "nbdinfo", "--size", uri).out().strip()).isEqualTo(String.valueOf(data.length));
        Path copy = dir.resolve("spelled-copy.img");
        Tools.ok(60, "nbdcopy", uri, copy.toString());
        assertThat(Arrays.mismatch(Files.readAllBytes(copy), data)).as("first differing byte").isEqualTo(-1);
        stop();
    }

    @Test
    void fioWithVerifyThroughServeOfAnRbdImageFindsNoError() throws Exception {
        Tools.require("fio", "qemu-img");
        String name = ceph.newImage("fio");
        String uri = serve("vol: rbd rbd/" + name + " conf=" + ceph.conf() + " size=32M\n");
        Process fio = new ProcessBuilder("fio", "--name=rbd-verify", "--ioengine=nbd", "--uri=" + uri,
                "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=16M", "--verify=crc32c", "--do_verify=1",
                "--verify_fatal=1", "--verify_state_save=0", "--output-format=terse")
                .directory(dir.toFile()).redirectErrorStream(true).start();
        assertThat(fio.waitFor(60, TimeUnit.SECONDS)).as("fio finished").isTrue();
        String out = new String(fio.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(fio.exitValue()).as(out).isZero();
        assertThat(out).doesNotContain("verify: bad").doesNotContainIgnoringCase("error=");
        // What fio wrote through serve is on the image: the same bytes through qemu-img's reader.
        Path viaNbd = dir.resolve("nbd.raw");
        Tools.ok(60, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, viaNbd.toString());
        stop();
        Path exported = dir.resolve("export.raw");
        ceph.rbd("export", "rbd/" + name, exported.toString());
        byte[] img = Files.readAllBytes(exported);
        assertThat(Arrays.mismatch(img, Files.readAllBytes(viaNbd))).isEqualTo(-1);
        assertThat(Arrays.mismatch(Arrays.copyOfRange(img, 16 << 20, 32 << 20), new byte[16 << 20]))
                .as("nothing beyond fio's 16M").isEqualTo(-1);
        assertThat(Arrays.equals(Arrays.copyOf(img, 4096), new byte[4096])).as("fio's data is there").isFalse();
    }

    @Test
    void anUnknownImageStopsServeWithAMessageNamingIt() throws Exception {
        Path stack = dir.resolve("bad.stack");
        Files.writeString(stack, "vol: rbd rbd/does-not-exist conf=" + ceph.conf() + "\n");
        Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "io.biostack.cli.Main", "serve", "--stack", stack.toString(), "--export", "vol",
                "--socket", dir.resolve("x.sock").toString()).redirectErrorStream(true).start();
        started.add(p);
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.exitValue()).isNotZero();
        assertThat(out).contains("rbd rbd/does-not-exist").contains("no image 'does-not-exist' in pool 'rbd'")
                .doesNotContain("\tat ");
    }
}
