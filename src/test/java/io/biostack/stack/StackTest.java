package io.biostack.stack;

import io.biostack.block.BioException;
import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;
import io.biostack.layer.MappedDevice;
import io.biostack.layer.Mirror;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class StackTest {
    static MemorySegment fill(int size, int value) {
        MemorySegment m = Arena.ofAuto().allocate(size, 4096);
        m.fill((byte) value);
        return m;
    }

    static byte[] read(BlockDevice d, long off, int len) throws Exception {
        MemorySegment m = Arena.ofAuto().allocate(len, 4096);
        d.read(off, m).get(5, TimeUnit.SECONDS);
        return m.toArray(ValueLayout.JAVA_BYTE);
    }

    @Test
    void aHashInsideAWordIsPartOfItAndOnlyOneAfterABlankStartsAComment(@TempDir Path dir) throws Exception {
        // Every '#' started a comment: 'loop .../d#1.img size=1M' became 'loop .../d', and a
        // passphrase with a '#' was cut short without a word.
        Path img = dir.resolve("d#1.img");
        String text = "d: loop " + img + " size=1M   # the image\n#whole-line comment\nlin: linear d 0#not a comment\n";
        assertThatThrownBy(() -> Stack.open(text, "t.conf")).isInstanceOf(StackException.class)
                .hasMessageContaining("OFFSET '0#not'");
        try (Stack s = Stack.open(text.replace("0#not a comment", "0 # a comment"), "t.conf")) {
            assertThat(s.device("d").size()).isEqualTo(1 << 20);
            assertThat(Files.size(img)).isEqualTo(1 << 20);
            assertThat(s.device("lin").size()).isEqualTo(1 << 20);
        }
    }

    @Test
    void opensDevicesInDependencyOrderWhateverTheFileOrder() throws Exception {
        String text = """
                # a stack defined top-down
                both:  0 2M striped 2 64k r0 0 r1 0   # striped over two ramdisks
                pair:  0 1M mirror r0 2M r1 2M
                cat:   0 1024 linear r0 4M
                cat:   1024 1M zero
                r0: ram 8M
                r1: ram 8M
                lin: linear both 1M
                """;
        try (Stack s = Stack.open(text, "t.conf")) {
            assertThat(s.names().indexOf("r0")).isLessThan(s.names().indexOf("both"));
            assertThat(s.names().indexOf("both")).isLessThan(s.names().indexOf("lin"));
            assertThat(s.device("both").size()).isEqualTo(2 << 20);
            assertThat(s.device("both").limits().ioOpt()).isEqualTo(128 * 1024);
            assertThat(s.device("cat").size()).isEqualTo(512 * 1024 + (1 << 20));
            assertThat(s.device("lin").size()).isEqualTo(1 << 20);
            // Stack hands out each device counted (CountedDevice); underneath are the devices themselves.
            assertThat(s.device("r0")).isInstanceOfSatisfying(io.biostack.block.stats.CountedDevice.class,
                    c -> assertThat(c.inner()).isInstanceOf(RamDisk.class));
            assertThat(s.device("pair")).isInstanceOfSatisfying(io.biostack.block.stats.CountedDevice.class,
                    c -> assertThat(c.inner()).isInstanceOf(MappedDevice.class));
            assertThat(s.table("both")).containsExactly("0 4096 striped 2 128 r0 0 r1 0");
            assertThat(s.table("cat")).containsExactly("0 1024 linear r0 8192", "1024 2048 zero ");
            assertThat(s.status("pair")).containsExactly("0 2048 mirror 2 r0 r1 2/2 1 AA 1 core");
            s.device("lin").write(0, fill(4096, 7)).get();
            // lin starts 1M into both = chunk 16 → stripe 0 (r0), chunk-in-stripe 8 → r0 at 512k
            assertThat(read(s.device("r0"), 512 * 1024, 4096)).containsOnly(7);
            assertThat(s.ls()).hasSize(6).anyMatch(l -> l.startsWith("pair\t1048576\t1 MiB\tmapped running"));
        }
    }

    @Test
    void wholeDeviceLayersTakeTheirNaturalSize() throws Exception {
        try (Stack s = Stack.open("d: ram 1M\nw: linear d 256k\nm: mirror d 0 d 0\n", "t")) {
            assertThat(s.device("w").size()).isEqualTo(768 * 1024);
            assertThat(s.device("m").size()).isEqualTo(1 << 20);
        }
    }

    @Test
    void loopLeavesOpenFiles(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("a.img");
        String text = "disk0: loop " + f + " size=4M direct-io=off\nlin: 0 2048 linear disk0 2048\n";
        try (Stack s = Stack.open(text, "t")) {
            s.device("lin").write(0, fill(4096, 9)).get(5, TimeUnit.SECONDS);
            s.device("lin").flush().get(5, TimeUnit.SECONDS);
        }
        byte[] file = Files.readAllBytes(f);
        assertThat(file.length).isEqualTo(4 << 20);
        assertThat(file[1 << 20]).isEqualTo((byte) 9);
        assertThat(file[(1 << 20) - 1]).isZero();
    }

    // ---- errors name the line --------------------------------------------------------------

    private static void refused(String text, int line, String... words) {
        assertThatThrownBy(() -> Stack.open(text, "t.conf"))
                .isInstanceOf(StackException.class)
                .satisfies(e -> assertThat(((StackException) e).line()).isEqualTo(line))
                .hasMessageStartingWith("t.conf:" + line + ": ")
                .hasMessageContainingAll(words);
    }

    @Test
    void stackFileMistakesAreRefusedWithTheirLine() {
        refused("a: ram 1M\n\nb linear a 0\n", 3, "expected 'NAME: TARGET ARGS");
        refused("a: ram 1M\nb: frobnicate a\n", 2, "unknown target 'frobnicate'", "linear");
        refused("a: ram 1M\nb: linear a\n", 2, "b: linear: missing OFFSET");
        refused("a: ram 1M\nb: linear a 0 extra\n", 2, "unexpected argument 'extra'");
        refused("a: ram 1M\nb: 0 x linear a 0\n", 2, "LENGTH 'x'");
        refused("a: ram lots\n", 1, "SIZE");
        refused("a: ram 1M\nb: striped 2 64k a 0\n", 2, "missing DEV of leg 2");
        refused("a: ram 1M\nb: 0 1M ram 1M\n", 2, "makes a device of its own");
        refused("a: ram 1M\nb: linear a 0\nb: 0 8 zero\n", 2, "can't be mixed");
        refused("a: ram 1M\nb: flakey a 0 1 1 1 explode\n", 2, "unknown flakey feature 'explode'");
        refused("a b: ram 1M\n", 1, "device name 'a b'");
        refused("a: ram 1M\nb: error\n", 2, "needs a length");
        refused("a: ram 1M\nb: mirror core 1 1k sometimes 2 a 0 a 0\n", 2, "number of legs 'sometimes' is not a number");
        refused("a: ram 1M\nb: luks a secret\n", 2, "keyfile=PATH or passphrase=TEXT");
        refused("a: loop /x direct-io=sometimes\n", 1, "direct-io must be on, off or auto");
    }

    @Test
    void optionMistakesOfLeavesNameTheOption() {
        refused("a: ram 1M sector-size\n", 1, "ram: sector-size needs a value");
        refused("a: ram 1M sector-size=lots\n", 1, "ram: sector-size:");
        refused("a: ram 1M fast\n", 1, "unknown option 'fast'");
        refused("a: loop /x engine=warp\n", 1, "loop: engine must be uring, threads or auto: warp");
        refused("a: loop /x offset=\n", 1, "loop: offset needs a value");
    }

    @Test
    void aWholeDeviceStripeWithAZeroChunkIsRefusedNotDividedByZero() {
        refused("a: ram 1M\nb: striped 2 0 a 0 a 512k\n", 2, "chunk size 0 must be a positive multiple");
    }

    @Test
    void missingDevicesAndCyclesAreRefusedBeforeAnythingOpens(@TempDir Path dir) {
        Path f = dir.resolve("never.img");
        refused("d: loop " + f + " size=1M\nb: linear nosuch 0\n", 2, "device 'nosuch' is not defined");
        refused("d: loop " + f + " size=1M\na: linear b 0\nb: linear c 0\nc: linear a 0\n", 2, "cycle", "a -> b -> c -> a");
        refused("a: linear a 0\n", 1, "cycle", "a -> a");
        assertThat(f).doesNotExist();
    }

    @Test
    void aDeviceThatDoesNotFitIsRefusedWithItsLineAndTheOthersAreClosed() {
        refused("a: ram 1M\nb: 0 4M linear a 0\n", 2, "beyond the end of a");
        refused("a: ram 1M\nb: 0 1M linear a 0\nb: 4096 1k zero\n", 2, "leaves a gap");
        refused("a: ram 1M\nb: 0 1M striped 2 64k a 0 a 512k\nc: 0 3 striped 2 1k a 0 a 0\n", 3, "does not divide by 2 stripes");
    }

    // ---- control ---------------------------------------------------------------------------

    @Test
    void reloadSwapsTheTableAtResumeAndDevicesAboveSeeIt() throws Exception {
        try (Stack s = Stack.open("a: ram 1M\nb: ram 1M\nm: 0 1M linear a 0\ntop: linear m 0\n", "t")) {
            s.control(List.of("reload", "m", "0 1M linear b 0"));
            assertThat(s.ls()).anyMatch(l -> l.contains("inactive table loaded"));
            assertThat(s.control(List.of("table", "m"))).isEqualTo("0 2048 linear a 0\n");
            s.control(List.of("suspend", "m"));
            var f = s.device("top").write(0, fill(512, 5));
            assertThat(f).isNotDone();
            s.control(List.of("resume", "m"));
            f.get(5, TimeUnit.SECONDS);
            assertThat(read(s.device("b"), 0, 512)).containsOnly(5);
            assertThat(read(s.device("a"), 0, 512)).containsOnly(0);
            assertThat(s.control(List.of("table", "m"))).isEqualTo("0 2048 linear b 0\n");
        }
    }

    /**
     * A resume swaps the table outside the stack's lock, then records what the device is built
     * on: a reload of the same device in between used to take that record for its own table, so
     * the stack forgot that the live table is built on b, and let b be built on it (a cycle).
     * A bio held below (a suspended) keeps the resume waiting for its drain; the test then takes
     * the stack's monitor (reentrant for its own resume and reload) to stop the resume after its
     * swap.
     */
    @Test
    @org.junit.jupiter.api.Timeout(30)
    void aReloadWhileAResumeSwapsKeepsTrackOfWhatTheLiveTableIsBuiltOn() throws Exception {
        try (Stack s = Stack.open("l1: ram 1M\nl2: ram 1M\na: linear l1 0\nb: linear l2 0\ntop: linear a 0\n", "t")) {
            MappedDevice top = s.mapped("top");
            MappedDevice.Table before = top.liveTable();
            s.reload("top", "linear b 0");
            s.suspend("a");
            var held = s.device("top").write(0, fill(512, 5)); // in flight on top, waiting in a
            Thread r = Thread.ofPlatform().start(() -> {
                try {
                    s.resume("top");
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            });
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (top.state() != MappedDevice.State.SUSPENDED) { // the resume waits for the drain
                assertThat(System.nanoTime()).isLessThan(end);
                Thread.onSpinWait();
            }
            synchronized (s) {
                s.resume("a"); // the bio completes: the resume swaps, then waits for the monitor
                while (top.liveTable() == before) {
                    assertThat(System.nanoTime()).isLessThan(end);
                    Thread.onSpinWait();
                }
                s.reload("top", "linear a 0"); // dmsetup reload, meanwhile
            }
            r.join();
            held.get(5, TimeUnit.SECONDS);
            assertThat(s.table("top")).containsExactly("0 2048 linear b 0");
            assertThatThrownBy(() -> s.reload("b", "linear top 0")).isInstanceOf(StackException.class)
                    .hasMessageContaining("top is built on b");
            s.control(List.of("clear", "top"));
            assertThatThrownBy(() -> s.reload("b", "linear top 0")).hasMessageContaining("top is built on b");
            s.reload("a", "linear top 0"); // a is under neither of top's tables now: no cycle
        }
    }

    /**
     * A reload table was split at every ';', a passphrase's too: 'passphrase=pa;ss' opened with
     * the passphrase 'pa' and a line 'ss'. A table with newlines is split at them only; in a
     * one-line table a ';' inside a value is refused, saying what to write instead.
     */
    @Test
    void aSemicolonInAReloadedPassphraseIsItsOwnOnSeparateLinesAndRefusedOnOne() throws Exception {
        try (Stack s = Stack.open("d: ram 4M\nz: ram 4M\nm: linear z 0\n", "t")) {
            io.biostack.layer.crypt.Luks.format(s.device("d"), "pa;ss".getBytes(java.nio.charset.StandardCharsets.UTF_8),
                    io.biostack.layer.crypt.Luks.FormatOptions.defaults());
            assertThatThrownBy(() -> s.control(List.of("reload", "m", "luks d passphrase=pa;ss")))
                    .isInstanceOf(StackException.class).hasMessageContaining("'passphrase=...' holds a ';'")
                    .hasMessageContaining("newline").hasMessageContaining("keyfile=").hasMessageNotContaining("pa;ss");
            assertThat(s.mapped("m").hasInactiveTable()).isFalse();
            s.control(List.of("reload", "m", "luks d passphrase=pa;ss\n"));
            s.control(List.of("resume", "m"));
            assertThat(s.table("m")).containsExactly("0 " + s.device("m").size() / 512 + " luks d passphrase=-");
            assertThat(s.device("m").size()).isPositive().isLessThan(4 << 20); // the payload, opened
            s.control(List.of("reload", "m", "0 2M zero;2M 2M zero")); // a ';' that ends a line, as before
            s.control(List.of("resume", "m"));
            assertThat(s.table("m")).containsExactly("0 4096 zero ", "4096 4096 zero ");
        }
    }

    @Test
    void reloadRefusesLeavesCyclesUnknownDevicesAndBadTables() throws Exception {
        try (Stack s = Stack.open("a: ram 1M\nm: linear a 0\ntop: linear m 0\n", "t")) {
            assertThatThrownBy(() -> s.reload("a", "0 1M zero")).hasMessageContaining("not a mapped device");
            assertThatThrownBy(() -> s.reload("m", "linear top 0")).hasMessageContaining("top is built on m");
            assertThatThrownBy(() -> s.reload("m", "linear m 0")).hasMessageContaining("itself");
            assertThatThrownBy(() -> s.reload("m", "linear zz 0")).hasMessageContaining("'zz' is not in the stack");
            assertThatThrownBy(() -> s.reload("m", "0 1M zero; 4M 1M zero")).hasMessageContaining("reload m:1").hasMessageContaining("gap");
            assertThatThrownBy(() -> s.reload("m", "0 1M ram 1M")).hasMessageContaining("makes a device of its own");
            assertThatThrownBy(() -> s.control(List.of("frob", "m"))).hasMessageContaining("unknown command");
            assertThatThrownBy(() -> s.control(List.of("table", "nosuch"))).hasMessageContaining("no device 'nosuch'");
            assertThat(s.table("m")).containsExactly("0 2048 linear a 0");
            s.reload("m", "0 512k zero;512k 512k linear a 0");
            s.resume("m");
            assertThat(s.table("m")).containsExactly("0 1024 zero ", "1024 1024 linear a 0");
        }
    }

    @Test
    void reloadingASnapshotOntoTheCowItsLiveTableUsesIsRefusedAndTheSnapshotKeepsItsData() throws Exception {
        String text = "o: ram 1M\ncow: ram 1M\norig: snapshot-origin o\nsnap: snapshot o cow P 16\n";
        try (Stack s = Stack.open(text, "t")) {
            int chunk = 8192;
            s.device("snap").write(1024, fill(512, 1)).get(5, TimeUnit.SECONDS);
            assertThatThrownBy(() -> s.reload("snap", "snapshot o cow P 16"))
                    .hasMessageContaining("reload snap:1").hasMessageContaining("cow").hasMessageContaining("in use");
            assertThat(s.mapped("snap").hasInactiveTable()).isFalse();
            // writes go on as before: to the origin (copied out once) and to the snapshot
            s.device("orig").write(chunk, fill(512, 2)).get(5, TimeUnit.SECONDS);
            s.device("snap").write(2L * chunk, fill(512, 3)).get(5, TimeUnit.SECONDS);
            s.device("orig").write(3L * chunk, fill(512, 4)).get(5, TimeUnit.SECONDS);
            assertThat(read(s.device("snap"), 0, 512)).containsOnly(0);
            assertThat(read(s.device("snap"), 2L * chunk, 512)).containsOnly(3);
            assertThat(read(s.device("snap"), 3L * chunk, 512)).containsOnly(0);
            // the way that works: take the snapshot table down, then load it again from its store
            s.reload("snap", "0 1M zero");
            s.resume("snap");
            s.reload("snap", "snapshot o cow P 16");
            s.resume("snap");
            assertThat(read(s.device("snap"), 2L * chunk, 512)).containsOnly(3);
            assertThat(read(s.device("snap"), 3L * chunk, 512)).containsOnly(0);
            assertThat(read(s.device("snap"), chunk, 512)).containsOnly(0);
        }
    }

    @Test
    void reloadingAQcow2OntoTheImageItsLiveTableHasOpenIsRefusedAndNoWriteIsLost(@TempDir Path dir) throws Exception {
        // The reload opened a second qcow2 device on the image while the first was live: a write
        // before the resume allocated an L2 table the second never saw, and after the resume the
        // data read as zeros, on the stack and in the image qemu-io reads.
        io.biostack.nbd.Tools.require("qemu-img", "qemu-io");
        Path img = dir.resolve("d.qcow2");
        io.biostack.nbd.Tools.ok(30, "qemu-img", "create", "-f", "qcow2", img.toString(), "64M");
        String text = "disk: loop " + img + "\nq: qcow2 disk\n";
        assertThatThrownBy(() -> Stack.open(text + "q2: qcow2 disk\n", "t")).isInstanceOf(StackException.class)
                .hasMessageContaining("t:3").hasMessageContaining("open already in q");
        try (Stack s = Stack.open(text, "t")) {
            assertThatThrownBy(() -> s.reload("q", "qcow2 disk l2-cache-size=1M"))
                    .hasMessageContaining("reload q:1").hasMessageContaining("open already in q")
                    .hasMessageContaining("load another table into q and resume it");
            assertThat(s.mapped("q").hasInactiveTable()).isFalse();
            s.device("q").write(0, fill(65536, 1)).get(5, TimeUnit.SECONDS);
            s.resume("q");
            s.device("q").write(32L << 20, fill(65536, 2)).get(5, TimeUnit.SECONDS);
            assertThat(read(s.device("q"), 0, 65536)).containsOnly(1);
            // the way that works: another table first, then the image again, opened after the first closed
            s.reload("q", "0 64M zero");
            s.resume("q");
            s.reload("q", "qcow2 disk");
            assertThatThrownBy(() -> s.reload("q", "qcow2 disk l2-cache-size=1M")).hasMessageContaining("or clear its loaded table");
            s.control(List.of("clear", "q"));
            s.reload("q", "qcow2 disk l2-cache-size=1M");
            s.resume("q");
            assertThat(s.table("q")).containsExactly("0 131072 qcow2 disk l2-cache-size=1M");
            assertThat(read(s.device("q"), 0, 65536)).containsOnly(1);
            assertThat(read(s.device("q"), 32L << 20, 65536)).containsOnly(2);
        }
        io.biostack.nbd.Tools.Result check = io.biostack.nbd.Tools.run(60, "qemu-img", "check", img.toString());
        assertThat(check.exit()).as(check.all()).isZero();
        io.biostack.nbd.Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "read -P 1 0 64k", "-c", "read -P 2 32M 64k", img.toString());
    }

    @Test
    void aCopyOfAQcow2ImageTakenWhileItsDeviceIsSuspendedHoldsTheWritesBefore(@TempDir Path dir) throws Exception {
        // dm suspend only waited for the bios in flight: the qcow2 target kept the new L2 table
        // in memory, and the image copied while suspended read zeros where the write was.
        io.biostack.nbd.Tools.require("qemu-img", "qemu-io");
        Path img = dir.resolve("d.qcow2");
        Path copy = dir.resolve("copy.qcow2");
        io.biostack.nbd.Tools.ok(30, "qemu-img", "create", "-f", "qcow2", img.toString(), "64M");
        try (Stack s = Stack.open("disk: loop " + img + "\nq: qcow2 disk\n", "t")) {
            s.device("q").write(1 << 20, fill(65536, 5)).get(5, TimeUnit.SECONDS);
            assertThat(s.control(List.of("suspend", "q"))).isEmpty();
            Files.copy(img, copy);
            s.control(List.of("resume", "q"));
            s.device("q").write(0, fill(4096, 6)).get(5, TimeUnit.SECONDS);
            assertThat(read(s.device("q"), 1 << 20, 65536)).containsOnly(5);
        }
        io.biostack.nbd.Tools.Result check = io.biostack.nbd.Tools.run(60, "qemu-img", "check", copy.toString());
        assertThat(check.exit()).as(check.all()).isZero();
        io.biostack.nbd.Tools.ok(30, "qemu-io", "-r", "-f", "qcow2", "-c", "read -P 5 1M 64k", copy.toString());
    }

    @Test
    void aMissingKeyFileIsSaidToBeMissingAndAFailedReloadLeavesTheLiveTable(@TempDir Path dir) throws Exception {
        // The JDK's NoSuchFileException holds only the path: "m: luks: /dir/none.key".
        Path key = dir.resolve("none.key");
        try (Stack s = Stack.open("a: ram 4M\nb: ram 4M\nm: linear a 0\n", "t")) {
            assertThatThrownBy(() -> s.reload("m", "0 1M linear a 0; 1M 3M luks b keyfile=" + key))
                    .hasMessage("reload m:2: m: luks: " + key + ": no such file");
            assertThat(s.table("m")).containsExactly("0 8192 linear a 0");
            assertThat(s.mapped("m").hasInactiveTable()).isFalse();
        }
        assertThatThrownBy(() -> Stack.open("a: ram 4M\nm: luks a keyfile=" + key + "\n", "t"))
                .hasMessage("t:2: m: luks: " + key + ": no such file");
    }

    @Test
    void messagesReachTargetsAndMirrorStatusShowsResync() throws Exception {
        try (Stack s = Stack.open("a: ram 4M\nb: ram 4M\nd: dust a 0 512\nm: mirror core 1 128 2 a 0 b 0\n", "t")) {
            s.control(List.of("message", "d", "addbadblock 3"));
            s.control(List.of("message", "d", "0", "enable"));
            assertThat(s.control(List.of("message", "d", "countbadblocks"))).isEqualTo("countbadblocks: 1 badblock(s) found");
            var f = s.device("d").read(1024, fill(1024, 0));
            assertThatThrownBy(f::get).hasCauseInstanceOf(BioException.class);
            MappedDevice m = s.mapped("m");
            Mirror mir = (Mirror) m.liveTable().segments().getFirst().target();
            assertThat(mir.awaitResync(10, TimeUnit.SECONDS)).isTrue();
            s.control(List.of("message", "m", "fail", "1"));
            assertThat(s.control(List.of("status", "m"))).contains(" AD ");
            s.control(List.of("message", "m", "reinstate b"));
            assertThat(mir.awaitResync(10, TimeUnit.SECONDS)).isTrue();
            assertThat(s.control(List.of("status", "m"))).isEqualTo("0 8192 mirror 2 a b 64/64 1 AA 1 core\n");
            assertThatThrownBy(() -> s.control(List.of("message", "d", "explode"))).hasMessageContaining("unknown message");
        }
    }
}
