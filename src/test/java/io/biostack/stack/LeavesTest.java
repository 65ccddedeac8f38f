package io.biostack.stack;

import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;
import io.biostack.nbd.NbdExport;
import io.biostack.nbd.NbdServer;
import io.biostack.nbd.Tools;
import io.biostack.nbd.client.NbdClient;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Remote leaves by name: the {@code nbd} stack target, and URIs where a FILE goes
 * ({@code serve nbd+unix://...} in a child JVM, looked at with nbdinfo).
 */
@Timeout(60)
class LeavesTest {
    @TempDir
    Path dir;
    RamDisk ram;
    NbdServer server;
    Path sock;
    final List<Process> started = new ArrayList<>();

    @BeforeEach
    void start() throws Exception {
        sock = dir.resolve("up.sock");
        ram = new RamDisk("ram", 8 << 20);
        server = NbdServer.builder().export(NbdExport.of("disk", ram)).unixSocket(sock).start();
    }

    @AfterEach
    void stop() throws Exception {
        for (Process p : started) {
            p.destroy();
            if (!p.waitFor(10, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
        }
        server.close();
        ram.close();
    }

    String uri() {
        return "nbd+unix:///disk?socket=" + sock;
    }

    @Test
    void theNbdTargetOpensALeafWithItsOptionsAndLayersStackOnIt() throws Exception {
        String text = "remote: nbd " + uri() + " connections=2 timeout=5s\nhalf: linear remote 4M\n";
        try (Stack s = Stack.open(text, "t.conf"); Arena arena = Arena.ofConfined()) {
            BlockDevice r = s.device("remote");
            if (r instanceof io.biostack.block.stats.CountedDevice c) {
                r = c.inner();
            }
            assertThat(r).isInstanceOf(NbdClient.class);
            assertThat(((NbdClient) r).connections()).isEqualTo(2);
            BlockDevice half = s.device("half");
            assertThat(half.size()).isEqualTo(4 << 20);
            MemorySegment m = arena.allocate(4096, 4096).fill((byte) 0x5a);
            half.write(0, m).get(5, TimeUnit.SECONDS);
            MemorySegment back = arena.allocate(4096, 4096);
            ram.read(4 << 20, back).get(5, TimeUnit.SECONDS);
            assertThat(back.mismatch(m)).isEqualTo(-1);
        }
    }

    private static void refused(String text, String... words) {
        assertThatThrownBy(() -> Stack.open(text, "t.conf"))
                .isInstanceOf(StackException.class)
                .hasMessageStartingWith("t.conf:1: ")
                .hasMessageContainingAll(words);
    }

    @Test
    void badNbdLinesAreRefusedBeforeAnythingConnects() {
        refused("r: nbd\n", "missing URI");
        refused("r: nbd nbd://h:99999/x\n", "bad NBD URI", "port '99999'");
        refused("r: nbd nbd+unix:///x\n", "needs ?socket=PATH");
        refused("r: nbd nbd://h/x retries=3\n", "unknown option 'retries=3'");
        refused("r: nbd nbd://h/x timeout=soon\n", "timeout= takes a positive duration");
        refused("r: nbd nbd://h/x timeout=0\n", "timeout= takes a positive duration");
        refused("r: nbd nbd://h/x connections=0\n", "connections= takes a number from 1 to 64");
    }

    @Test
    void anUnreachableServerFailsTheStackWithTheUri() {
        String gone = "nbd+unix:///x?socket=" + dir.resolve("nobody.sock");
        assertThatThrownBy(() -> Stack.open("r: nbd " + gone + "\n", "t.conf")).hasMessageContaining(gone + ":");
    }

    @Test
    void specsThatAreNotFilesAreRecognised() {
        assertThat(Leaves.isRemote("nbd://h/e")).isTrue();
        assertThat(Leaves.isRemote("nbds+unix:///e?socket=/s")).isTrue();
        assertThat(Leaves.isRemote("rbd:rbd/vol1")).isTrue();
        assertThat(Leaves.isRemote("disk.img")).isFalse();
        assertThat(Leaves.isRemote("./nbd:thing")).isFalse();
        if (Targets.kind("rbd") == null) {
            assertThatThrownBy(() -> Leaves.open("x", "rbd:rbd/vol1")).hasMessageContaining("no rbd target");
        }
    }

    @Test
    void serveTakesAnNbdUriWhereAFileGoesAndHolesStayHoles() throws Exception {
        Tools.require("nbdinfo");
        try (Arena arena = Arena.ofConfined()) {
            ram.write(1 << 20, arena.allocate(1 << 20, 4096).fill((byte) 7)).get(5, TimeUnit.SECONDS);
        }
        Path out = dir.resolve("front.sock");
        String java = ProcessHandle.current().info().command().orElse("java");
        Process p = new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "io.biostack.cli.Main", "serve", uri(), "--socket", out.toString())
                .redirectError(dir.resolve("serve.err").toFile()).start();
        started.add(p);
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        StringBuilder said = new StringBuilder();
        for (String l; (l = r.readLine()) != null && !l.equals("ready"); ) {
            said.append(l).append('\n');
        }
        assertThat(said.toString()).contains("serving " + uri());
        Tools.Result map = Tools.ok(30, "nbdinfo", "--map", "nbd+unix:///?socket=" + out);
        assertThat(map.out()).containsPattern("0\\s+1048576\\s+3\\s+hole,zero")
                .containsPattern("1048576\\s+1048576\\s+0\\s+data");
        assertThat(Files.readString(dir.resolve("serve.err"))).doesNotContain("Exception");
    }
}
