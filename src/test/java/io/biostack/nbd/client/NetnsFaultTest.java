package io.biostack.nbd.client;

import io.biostack.block.Bio;
import io.biostack.block.BlockDevice;
import io.biostack.block.Op;
import io.biostack.block.Status;
import io.biostack.layer.Mirror;
import io.biostack.nbd.NbdExport;
import io.biostack.nbd.NbdServer;
import io.biostack.nbd.Tools;
import io.biostack.stack.Stack;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Faults on a real network path: the remote {@code biostack serve} runs in a network namespace
 * this test makes, joined by a veth pair; the local side exports a stack with the NBD leaf
 * (in this process) on a Unix socket, and fio's nbd engine with verify puts load through it.
 * Faults: the link taken down and up, and the remote server killed and restarted.
 */
@Timeout(120)
class NetnsFaultTest {
    @TempDir
    Path dir;

    @BeforeEach
    void need() {
        Netns.require();
        Tools.require("fio");
    }

    /** Starts fio (randwrite + verify, rate-limited so that the fault falls inside the run). */
    Process fio(Path sock, String size, int rateIops, String rw) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("fio", "--name=leaf", "--ioengine=nbd",
                "--uri=nbd+unix:///?socket=" + sock, "--rw=" + rw, "--bs=4k", "--iodepth=8", "--size=" + size,
                "--randrepeat=1"));
        if (rateIops > 0) {
            cmd.add("--rate_iops=" + rateIops);
        }
        if (rw.contains("write")) {
            cmd.addAll(List.of("--verify=crc32c", "--verify_fatal=1", "--do_verify=1"));
        }
        // In the test folder: fio leaves its verify state file (local-*-verify.state) where it runs.
        return new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true)
                .redirectOutput(dir.resolve("fio.log").toFile()).start();
    }

    String fioLog() throws Exception {
        return Files.readString(dir.resolve("fio.log"), StandardCharsets.UTF_8);
    }

    int await(Process p, int seconds) throws Exception {
        if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("fio hung (killed after " + seconds + " s): " + fioLog());
        }
        return p.exitValue();
    }

    /** The device under the stack's counting wrapper. */
    static BlockDevice bare(BlockDevice d) {
        return d instanceof io.biostack.block.stats.CountedDevice c ? c.inner() : d;
    }

    @Test
    void linkDownForAFewSecondsUnderFioVerifyLosesNothing() throws Exception {
        try (Netns n = Netns.create()) {
            n.serve(dir.resolve("remote.log"), "--ram", "64M", "--listen", n.nsAddr + ":10809");
            Path sock = dir.resolve("local.sock");
            try (Stack st = Stack.open("remote: nbd nbd://" + n.nsAddr + ":10809/ timeout=20s\n", "t");
                 NbdServer srv = NbdServer.builder().export(NbdExport.of("", st.device("remote"))).unixSocket(sock).start()) {
                Process fio = fio(sock, "16m", 1500, "randwrite");
                Thread.sleep(1000);
                n.linkDown();
                Thread.sleep(3000);
                n.linkUp();
                int rc = await(fio, 60);
                String out = fioLog();
                assertThat(rc).as(out).isZero();
                assertThat(out).contains("err= 0").doesNotContain("verify:").doesNotContain("bad magic");
                assertThat(((NbdClient) bare(st.device("remote"))).isConnected()).isTrue();
            }
        }
    }

    @Test
    void linkDownPastTheTimeoutFailsBiosWithTimeoutAndNothingHangs() throws Exception {
        try (Netns n = Netns.create()) {
            n.serve(dir.resolve("remote.log"), "--ram", "64M", "--listen", n.nsAddr + ":10809");
            Path sock = dir.resolve("local.sock");
            NbdUri uri = NbdUri.parse("nbd://" + n.nsAddr + ":10809/");
            try (Arena arena = Arena.ofShared();
                 NbdClient c = NbdClient.open("remote", uri, NbdClient.Options.defaults().withTimeout(Duration.ofSeconds(2)));
                 NbdServer srv = NbdServer.builder().export(NbdExport.of("", c)).unixSocket(sock).start()) {
                c.write(0, arena.allocate(1 << 20, 4096)).get(10, TimeUnit.SECONDS);
                n.linkDown();
                long t0 = System.nanoTime();
                List<CompletableFuture<Bio>> fs = new ArrayList<>();
                for (int i = 0; i < 32; i++) {
                    CompletableFuture<Bio> f = new CompletableFuture<>();
                    Bio b = new Bio().init(i % 2 == 0 ? Op.READ : Op.WRITE, 0, i * 4096L, f::complete);
                    b.addSegment(arena.allocate(4096, 4096));
                    c.submit(b);
                    fs.add(f);
                }
                for (CompletableFuture<Bio> f : fs) {
                    Bio b = f.get(15, TimeUnit.SECONDS);
                    assertThat(b.status()).isEqualTo(Status.TIMEOUT);
                    assertThat(b.detail()).contains(uri.toString()).contains("no reply within 2 s");
                }
                long ms = (System.nanoTime() - t0) / 1_000_000;
                assertThat(ms).as("every bio failed near the 2 s timeout").isBetween(1500L, 8000L);
                // fio through serve sees errors and ends; it does not hang.
                Process fio = fio(sock, "1m", 0, "randread");
                int rc = await(fio, 60);
                assertThat(rc).as(fioLog()).isNotZero();
                n.linkUp();
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (!c.isConnected() && System.nanoTime() < end) {
                    Thread.sleep(50);
                }
                assertThat(c.isConnected()).as("reconnected by itself after the link came back").isTrue();
                MemorySegment m = arena.allocate(4096, 4096);
                c.read(0, m).get(10, TimeUnit.SECONDS);
            }
        }
    }

    @Test
    void aMirrorKeepsServingWhileTheRemoteIsKilledAndResyncsAfterItsRestart() throws Exception {
        try (Netns n = Netns.create()) {
            Path img = dir.resolve("remote.img");
            String listen = n.nsAddr + ":10809";
            Process remote = n.serve(dir.resolve("remote.log"), img.toString(), "--size", "16M", "--listen", listen);
            Path sock = dir.resolve("local.sock");
            String table = """
                    local: ram 16M
                    remote: nbd nbd://%s/ timeout=3s
                    pair: mirror core 2 1024 nosync 2 local 0 remote 0
                    """.formatted(listen);
            try (Stack st = Stack.open(table, "t");
                 NbdServer srv = NbdServer.builder().export(NbdExport.of("", st.device("pair"))).unixSocket(sock).start()) {
                BlockDevice pair = st.device("pair");
                Mirror m = (Mirror) ((io.biostack.layer.MappedDevice) bare(pair)).liveTable().segments().getFirst().target();
                Process fio = fio(sock, "16m", 800, "randwrite");
                Thread.sleep(1500);
                Netns.kill(remote);
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
                while (!st.status("pair").getFirst().contains(" AD ") && System.nanoTime() < end) {
                    Thread.sleep(50);
                }
                assertThat(st.status("pair").getFirst()).as("dm status says the remote leg is down").contains(" AD ");
                Thread.sleep(1000);
                n.serve(dir.resolve("remote2.log"), img.toString(), "--listen", listen);
                int rc = await(fio, 90);
                assertThat(rc).as(fioLog()).isZero();
                assertThat(fioLog()).contains("err= 0").doesNotContain("verify:");
                end = System.nanoTime() + TimeUnit.SECONDS.toNanos(40);
                while ((m.legState(1) != Mirror.LegState.IN_SYNC || m.isResyncing()) && System.nanoTime() < end) {
                    Thread.sleep(50);
                }
                assertThat(m.legState(1)).as("resynced by itself").isEqualTo(Mirror.LegState.IN_SYNC);
                assertThat(st.status("pair").getFirst()).contains(" AA ").contains(" " + m.regionCount() + "/" + m.regionCount() + " ");
                pair.flush().get(10, TimeUnit.SECONDS);
                BlockDevice local = st.device("local");
                try (Arena arena = Arena.ofConfined()) {
                    MemorySegment a = arena.allocate(local.size(), 4096);
                    local.read(0, a).get(10, TimeUnit.SECONDS);
                    byte[] remoteBytes = Files.readAllBytes(img);
                    assertThat(remoteBytes.length).isEqualTo((int) local.size());
                    assertThat(a.mismatch(MemorySegment.ofArray(remoteBytes))).as("the legs are byte-equal").isEqualTo(-1);
                    assertThat(a.toArray(ValueLayout.JAVA_BYTE)).as("fio wrote something").isNotEqualTo(new byte[(int) local.size()]);
                }
            }
        }
    }
}
