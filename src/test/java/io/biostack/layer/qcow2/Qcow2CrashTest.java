package io.biostack.layer.qcow2;

import io.biostack.block.BlockDevice;
import io.biostack.cli.CliRun;
import io.biostack.layer.logwrites.LogWrites;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.nbd.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * qcow2 writes are crash-safe, proven with biostack's own crash tester (issue 15, "Crash
 * safety"): the container sits under a {@code log-writes} target while a seeded random workload
 * of writes, write-zeroes and discards, with a FLUSH after each epoch, runs through the qcow2
 * layer. Then {@code biostack replay --at flush --reorder N --check CMD} rebuilds the container at
 * every container flush, in order and with only some of the writes since the last flush on disk,
 * and the check passes only when
 * <ul>
 * <li>{@code qemu-img check} exits 0 or 3 (a leak is allowed, a corruption is not; an image
 *     whose dirty bit is set is first repaired as qemu's open would, with {@code -r all}), and</li>
 * <li>every write acknowledged before the last acknowledged guest FLUSH reads back: each
 *     sector shows its content at that flush, or the content of a later write to it.</li>
 * </ul>
 *
 * <p>Which guest flush a crash state follows is read from the state itself: every written sector
 * carries the number of the write that wrote it, and each epoch begins with a write to sector 0.
 * A write of epoch {@code e} is issued only after flush {@code e-1} was acknowledged, and the
 * replayer's states keep everything before the last container flush they include; so a state that
 * shows any sector of epoch {@code e} must hold every write of the epochs before {@code e}.
 *
 * <p>The container grows as the image allocates: {@link LogWrites} grows its device and logs the
 * size as a mark; the replay runs onto an image of the final size ({@code --size}; see LogWrites).
 */
@Timeout(240)
class Qcow2CrashTest {
    static final long SIZE = 8L << 20;
    static final int SECTOR = 512;
    static final int EPOCHS = 3;
    static final int OPS_PER_EPOCH = 8;
    static final int REORDER = 2;

    /**
     * The check, run by the replayer on each crash state: qemu-img check (0 or 3), then the
     * guest's bytes against the workload's history. Arguments: the state, the history file, the
     * initial guest content (raw), a work directory.
     */
    static final String VERIFY = """
            import os, struct, subprocess, sys, tempfile
            state, hist, initial, work = sys.argv[1:5]
            with open(state, 'rb') as f:
                hdr = f.read(80)
            version = struct.unpack('>I', hdr[4:8])[0]
            dirty = version >= 3 and (struct.unpack('>Q', hdr[72:80])[0] & 1) != 0
            if dirty:
                # the dirty bit (lazy refcounts): qemu rebuilds the refcounts on open; so does this
                r = subprocess.run(['qemu-img', 'check', '-r', 'all', '-f', 'qcow2', state], capture_output=True, text=True)
                print('dirty bit set; qemu-img check -r all exited', r.returncode)
            r = subprocess.run(['qemu-img', 'check', '-f', 'qcow2', state], capture_output=True, text=True)
            if r.returncode not in (0, 3):
                print(r.stdout, r.stderr)
                print('FAIL: qemu-img check exited', r.returncode)
                sys.exit(1)
            fd, raw = tempfile.mkstemp(dir=work, suffix='.raw')
            os.close(fd)
            try:
                r = subprocess.run(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', state, raw], capture_output=True, text=True)
                if r.returncode != 0:
                    print(r.stdout, r.stderr)
                    print('FAIL: qemu-img convert exited', r.returncode)
                    sys.exit(1)
                with open(raw, 'rb') as f:
                    got = f.read()
            finally:
                os.unlink(raw)
            with open(initial, 'rb') as f:
                init = f.read()
            ops = []
            with open(hist) as f:
                for line in f:
                    op, epoch, kind, off, ln = line.split()
                    ops.append((int(op), int(epoch), kind, int(off), int(ln)))
            epoch_of = {op: epoch for op, epoch, _, _, _ in ops}
            MAGIC = b'QCRASH01'
            def stamp(op, s):
                head = MAGIC + struct.pack('>QQ', op, s)
                return head + struct.pack('>Q', (op * 0x9E3779B97F4A7C15 ^ s) & 0xFFFFFFFFFFFFFFFF) * 61
            n = len(init) // 512
            if len(got) != len(init):
                print('FAIL: the guest is', len(got), 'bytes, not', len(init))
                sys.exit(1)
            # The last flush this state follows: a sector of epoch e means flush e-1 was acknowledged.
            seen = -1
            for s in range(n):
                b = got[s * 512:s * 512 + 24]
                if b[:8] == MAGIC:
                    op = struct.unpack('>Q', b[8:16])[0]
                    if op in epoch_of:
                        seen = max(seen, epoch_of[op])
            flushed = seen - 1
            at = [-1] * n      # value at the flush: -1 initial, -2 zeros, else the op
            later = [None] * n
            for op, epoch, kind, off, ln in ops:
                v = op if kind == 'w' else -2
                for s in range(off // 512, (off + ln) // 512):
                    if epoch <= flushed:
                        at[s] = v
                    else:
                        if later[s] is None:
                            later[s] = set()
                        later[s].add(v)
            zero = bytes(512)
            def value(v, s):
                return init[s * 512:(s + 1) * 512] if v == -1 else zero if v == -2 else stamp(v, s)
            bad = 0
            for s in range(n):
                g = got[s * 512:(s + 1) * 512]
                if g == value(at[s], s):
                    continue
                if later[s] is not None and any(g == value(v, s) for v in later[s]):
                    continue
                if bad < 5:
                    print('FAIL: sector', s, 'reads', g[:24], 'but flush', flushed, 'left', at[s],
                          'and later writes', sorted(later[s]) if later[s] else [])
                bad += 1
            if bad:
                print(bad, 'sectors lost writes acknowledged before flush', flushed)
                sys.exit(1)
            print('ok: after flush', flushed)
            """;

    @TempDir
    Path dir;

    /** One step of the workload, as the history file has it: w (write) or z (zeroes, discard). */
    record Step(int op, int epoch, char kind, long off, long len) {
    }

    @Test
    void everyCrashStateOfAPlainImageChecksCleanAndKeepsFlushedWrites() throws Exception {
        crashTest("cluster_size=4096", false, false, 1);
    }

    @Test
    void everyCrashStateOfALazyRefcountsImageLeftDirtyByQemuIsRepairedAndKeepsFlushedWrites() throws Exception {
        crashTest("cluster_size=4096,lazy_refcounts=on", false, true, 2);
    }

    @Test
    void everyCrashStateOfAnOverlayWithABackingFileChecksCleanAndKeepsFlushedWrites() throws Exception {
        crashTest("cluster_size=65536", true, false, 3);
    }

    @Test
    void everyCrashStateOfAnExtendedL2OverlayChecksCleanAndKeepsFlushedWrites() throws Exception {
        crashTest("cluster_size=65536,extended_l2=on", true, false, 4);
    }

    private void crashTest(String opts, boolean overlay, boolean leftDirty, long seed) throws Exception {
        Tools.require("qemu-img", "qemu-io", "python3");
        Path img = dir.resolve("img.qcow2");
        List<String> create = new ArrayList<>(List.of("qemu-img", "create", "-f", "qcow2", "-o", opts));
        if (overlay) {
            Path base = dir.resolve("base.raw");
            byte[] b = new byte[(int) SIZE];
            for (int s = 0; s < SIZE / SECTOR; s++) {
                // the backing file's sectors carry op 0's stamp: a lost COW shows as a wrong sector
                System.arraycopy(stamp(0, s), 0, b, s * SECTOR, SECTOR);
            }
            Files.write(base, b);
            // absolute: the checker's scratch copy lives in another folder
            create.addAll(List.of("-b", base.toAbsolutePath().toString(), "-F", "raw"));
        }
        create.addAll(List.of(img.toString(), Long.toString(SIZE)));
        Tools.ok(30, create.toArray(String[]::new));
        if (leftDirty) {
            // qemu-io writes with lazy refcounts (the dirty bit set, refcounts not yet written) and
            // dies: the image that biostack's read-write open must repair.
            Tools.Result r = Tools.run(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 64k 192k",
                    "-c", "write -P 0x5b 1M 4k", "-c", "sigraise 9", img.toString());
            assertNotEquals(0, r.exit(), r.all());
            assertTrue(Qcow2Header.parse(Files.readAllBytes(img), Files.size(img)).isDirty(),
                    "qemu-io left the dirty bit set");
        }
        Path initial = dir.resolve("initial.raw");
        Tools.ok(30, "qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", img.toString(), initial.toString());
        Path start = dir.resolve("start.qcow2");
        Files.copy(img, start);
        Path logFile = dir.resolve("log.img");
        List<Step> steps = new ArrayList<>();
        long finalSize;
        Random rnd = new Random(seed);
        int cs = 1 << Qcow2Header.parse(Files.readAllBytes(img), Files.size(img)).clusterBits();
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults());
             LoopDevice l = LoopDevice.open("l", logFile, LoopConfig.defaults().withCreateSize(128L << 20));
             Arena a = Arena.ofShared()) {
            LogWrites lw = new LogWrites("lw", c, l);
            try {
                Qcow2Device q = Qcow2Device.open("q", lw, new Qcow2Device.Options(false, -1, null, false, img,
                        Qcow2CrashTest::file, img.toString()));
                try {
                    assertTrue(!q.isReadOnly() && !q.header().isDirty(), "opened read-write, repaired");
                    int op = 1;
                    for (int e = 0; e < EPOCHS; e++) {
                        for (int k = 0; k < OPS_PER_EPOCH; k++) {
                            Step st = k == 0 ? new Step(op++, e, 'w', 0, SECTOR * (1 + rnd.nextInt(8)))
                                    : randomStep(rnd, op++, e, cs);
                            apply(q, a, st);
                            steps.add(st);
                        }
                        q.flush().join();
                    }
                } finally {
                    q.close();
                }
            } finally {
                lw.close();
            }
            assertTrue(lw.loggingEnabled(), "the log kept everything");
            finalSize = c.size();
        }
        assertTrue(finalSize > Files.size(start), "the container grew: " + Files.size(start) + " -> " + finalSize);
        Path hist = dir.resolve("history.txt");
        StringBuilder sb = new StringBuilder();
        for (Step s : steps) {
            sb.append(s.op).append(' ').append(s.epoch).append(' ').append(s.kind).append(' ').append(s.off)
                    .append(' ').append(s.len).append('\n');
        }
        Files.writeString(hist, sb);
        Path verify = dir.resolve("verify.py");
        Files.writeString(verify, VERIFY);
        Path work = Files.createDirectories(dir.resolve("work"));
        // the distribution's python3 when there is one: a version manager's shim costs seconds a state
        String python = Files.isExecutable(Path.of("/usr/bin/python3")) ? "/usr/bin/python3" : "python3";
        String check = python + " " + verify + " {} " + hist + " " + initial + " " + work;

        // The check has teeth: the image at the end verifies, and with a flushed write lost it does not.
        Tools.Result good = Tools.run(60, "sh", "-c", check.replace("{}", img.toString()));
        assertEquals(0, good.exit(), good.all());
        Path spoiled = dir.resolve("spoiled.qcow2");
        Tools.ok(30, "qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", img.toString(), spoiled.toString());
        Step lost = steps.stream().filter(s -> s.kind == 'w' && s.epoch == 0 && s.off > 0).findFirst().orElseThrow();
        Tools.ok(30, "qemu-io", "-f", "qcow2", "-c", "write -P 0x77 " + lost.off + " 512", spoiled.toString());
        Tools.Result bad = Tools.run(60, "sh", "-c", check.replace("{}", spoiled.toString()));
        assertNotEquals(0, bad.exit(), "a lost write must fail the check: " + bad.all());

        Path replayed = dir.resolve("replayed.qcow2");
        Files.copy(start, replayed);
        long t0 = System.nanoTime();
        CliRun r = CliRun.of("replay", logFile.toString(), "--to", replayed.toString(), "--size",
                Long.toString(finalSize), "--at", "flush", "--reorder", Integer.toString(REORDER), "--seed",
                Long.toString(seed), "--check", check, "-j", "2");
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(0, r.code(), r.out() + r.err());
        Matcher m = Pattern.compile("checked (\\d+) crash points \\((\\d+) unchanged, not re-run\\) and (\\d+) reordered")
                .matcher(r.out());
        assertTrue(m.find(), r.out());
        int points = Integer.parseInt(m.group(1));
        int reordered = Integer.parseInt(m.group(3));
        System.out.println("Qcow2CrashTest " + opts + (overlay ? " overlay" : "") + (leftDirty ? " left dirty" : "")
                + ": " + points + " crash points, " + reordered + " reordered states, " + ms + " ms");
        // every guest flush is several container flushes (Qcow2Writeback's stages)
        assertTrue(points >= EPOCHS * 2, r.out());
        assertTrue(reordered >= EPOCHS, r.out());
        assertEquals(-1, Files.mismatch(replayed, img), "the replay ends where the container did");
    }

    private static Step randomStep(Random rnd, int op, int epoch, int cs) {
        int p = rnd.nextInt(10);
        long sectors = SIZE / SECTOR;
        if (p < 7) {
            long off = rnd.nextLong(sectors) * SECTOR;
            long len = Math.min(SIZE - off, (1 + rnd.nextInt(160)) * (long) SECTOR);
            return new Step(op, epoch, 'w', off, len);
        }
        if (p < 9) {
            long off = rnd.nextLong(sectors) * SECTOR;
            long len = Math.min(SIZE - off, (1 + rnd.nextInt(300)) * (long) SECTOR);
            return new Step(op, epoch, 'z', off, len);
        }
        // discard whole clusters: they read as zeros afterwards (a part of one may stay as it was)
        long clusters = SIZE / cs;
        long first = rnd.nextLong(clusters);
        long n = Math.min(clusters - first, 1 + rnd.nextInt(4));
        return new Step(op, epoch, 'd', first * cs, n * cs);
    }

    private static void apply(Qcow2Device q, Arena a, Step st) {
        switch (st.kind) {
            case 'w' -> {
                MemorySegment m = a.allocate(st.len, 4096);
                for (long s = 0; s < st.len / SECTOR; s++) {
                    MemorySegment.copy(MemorySegment.ofArray(stamp(st.op, st.off / SECTOR + s)), 0, m, s * SECTOR, SECTOR);
                }
                q.write(st.off, m).join();
            }
            case 'z' -> q.writeZeroes(st.off, st.len, false).join();
            default -> q.discard(st.off, st.len).join();
        }
    }

    /** The sector stamp VERIFY recognises: magic, op, sector, then a fill derived from both. */
    static byte[] stamp(long op, long sector) {
        ByteBuffer b = ByteBuffer.allocate(SECTOR);
        b.put("QCRASH01".getBytes(java.nio.charset.StandardCharsets.US_ASCII)).putLong(op).putLong(sector);
        long fill = op * 0x9E3779B97F4A7C15L ^ sector;
        while (b.hasRemaining()) {
            b.putLong(fill);
        }
        return b.array();
    }

    private static BlockDevice file(Path p, String fmt) throws java.io.IOException {
        return LoopDevice.open(p.getFileName().toString(), p, LoopConfig.defaults().withReadOnly(fmt.equals("raw-ro")));
    }
}
