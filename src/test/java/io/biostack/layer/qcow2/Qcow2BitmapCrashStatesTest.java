package io.biostack.layer.qcow2;

import io.biostack.block.bitmap.DeviceBitmaps;
import io.biostack.block.stats.CountedDevice;
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
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A qcow2 image's persistent bitmap at every crash state (issue 17, "Crash"): the container sits
 * under {@code log-writes} while writes go through a counted device whose bitmap lives in the
 * image, with flushes, and then a clean stop saves the bitmap. {@code biostack replay --at flush
 * --reorder} rebuilds every crash state, and the check passes only when the state's bitmap is
 * either marked in use or left with the bitmaps autoclear bit clear (inconsistent either way:
 * biostack refuses it for an incremental, qemu ignores it) or,
 * once marked consistent, covers every sector of the state that differs from the last backup (the
 * empty image the bitmap was added to), as qemu-nbd -B reads it.
 */
@Timeout(240)
class Qcow2BitmapCrashStatesTest {
    static final long SIZE = 4L << 20;

    static final String VERIFY = """
            import json, os, subprocess, sys, tempfile, time
            state, work = sys.argv[1:3]
            r = subprocess.run(['qemu-img', 'check', '-f', 'qcow2', state], capture_output=True, text=True)
            if r.returncode not in (0, 3):
                print(r.stdout, r.stderr); print('FAIL: qemu-img check exited', r.returncode); sys.exit(1)
            import struct
            with open(state, 'rb') as f:
                hdr = f.read(96)
            if (struct.unpack('>Q', hdr[88:96])[0] & 1) == 0:
                # autoclear bit 0 clear: the bitmaps extension is inconsistent (qcow2.rst), qemu
                # ignores it and biostack loads it stale; that is an in-use state too
                open(os.path.join(work, 'in-use'), 'a').write('1\\n')
                print('ok: bitmaps bit clear (inconsistent)'); sys.exit(0)
            info = json.loads(subprocess.run(['qemu-img', 'info', '-U', '--output=json', state],
                                             capture_output=True, text=True, check=True).stdout)
            bms = info.get('format-specific', {}).get('data', {}).get('bitmaps', [])
            b0 = [b for b in bms if b['name'] == 'b0']
            if not b0:
                print('FAIL: bitmap b0 is gone'); sys.exit(1)
            if 'in-use' in b0[0]['flags']:
                open(os.path.join(work, 'in-use'), 'a').write('1\\n')
                print('ok: b0 in use (inconsistent)'); sys.exit(0)
            fd, raw = tempfile.mkstemp(dir=work, suffix='.raw'); os.close(fd)
            subprocess.run(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', state, raw], check=True)
            data = open(raw, 'rb').read(); os.unlink(raw)
            sock = os.path.join(work, 'q%d.sock' % os.getpid())
            q = subprocess.Popen(['qemu-nbd', '-r', '-f', 'qcow2', '-B', 'b0', '-k', sock, state],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                for _ in range(400):
                    if os.path.exists(sock): break
                    time.sleep(0.025)
                m = subprocess.run(['nbdinfo', '--map=qemu:dirty-bitmap:b0', 'nbd+unix:///?socket=' + sock],
                                   capture_output=True, text=True, check=True).stdout
            finally:
                q.kill(); q.wait()
            dirty = []
            for line in m.splitlines():
                f = line.split()
                if len(f) >= 3 and f[2] == '1':
                    dirty.append((int(f[0]), int(f[0]) + int(f[1])))
            zero = bytes(512)
            for s in range(len(data) // 512):
                if data[s * 512:(s + 1) * 512] != zero:
                    o = s * 512
                    if not any(a <= o < b for a, b in dirty):
                        print('FAIL: sector', s, 'was written but the consistent bitmap b0 does not cover it', dirty[:5])
                        sys.exit(1)
            open(os.path.join(work, 'consistent'), 'a').write('1\\n')
            print('ok: consistent b0 covers every written sector')
            """;

    @TempDir
    Path dir;

    @Test
    void everyCrashStateHasAnInUseBitmapOrOneThatCoversEveryWrite() throws Exception {
        Tools.require("qemu-img", "qemu-nbd", "nbdinfo", "python3");
        Path img = dir.resolve("img.qcow2");
        Tools.ok(30, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", img.toString(), Long.toString(SIZE));
        Tools.ok(30, "qemu-img", "bitmap", "--add", "-g", "16k", img.toString(), "b0");
        Path start = dir.resolve("start.qcow2");
        Files.copy(img, start);
        Path logFile = dir.resolve("log.img");
        Random rnd = new Random(7);
        long finalSize;
        try (LoopDevice c = LoopDevice.open("c", img, LoopConfig.defaults());
             LoopDevice l = LoopDevice.open("l", logFile, LoopConfig.defaults().withCreateSize(64L << 20));
             Arena a = Arena.ofShared()) {
            LogWrites lw = new LogWrites("lw", c, l);
            try {
                Qcow2Device q = Qcow2Device.open("q", lw, new Qcow2Device.Options(false, -1, null, false, img,
                        (p, f) -> { throw new java.io.IOException("no backing file here"); }, img.toString()));
                CountedDevice counted = new CountedDevice(q);
                DeviceBitmaps bm = new DeviceBitmaps("q", q.size(), new Qcow2BitmapStore(q), counted::submitBelow);
                assertTrue(bm.loadProblems().isEmpty(), bm.loadProblems().toString());
                counted.setBitmaps(bm);
                try {
                    for (int e = 0; e < 3; e++) {
                        for (int k = 0; k < 6; k++) {
                            long off = rnd.nextLong(SIZE / 512) * 512;
                            long len = Math.min(SIZE - off, (1 + rnd.nextInt(64)) * 512L);
                            MemorySegment m = a.allocate(len, 4096);
                            m.fill((byte) (1 + rnd.nextInt(250)));
                            counted.write(off, m).join();
                        }
                        counted.flush().join();
                    }
                } finally {
                    bm.close(); // a clean stop: the bits, tables and directory are saved
                    q.close();
                }
            } finally {
                lw.close();
            }
            assertTrue(lw.loggingEnabled(), "the log kept everything");
            finalSize = c.size();
        }
        Path verify = dir.resolve("verify.py");
        Files.writeString(verify, VERIFY);
        Path work = Files.createDirectories(dir.resolve("work"));
        String python = Files.isExecutable(Path.of("/usr/bin/python3")) ? "/usr/bin/python3" : "python3";
        String check = python + " " + verify + " {} " + work;
        // the final image passes as consistent
        Tools.Result fin = Tools.run(60, "sh", "-c", check.replace("{}", img.toString()));
        assertEquals(0, fin.exit(), fin.all());
        assertTrue(fin.out().contains("consistent b0 covers"), fin.all());
        // and it has teeth: the same data with the bitmap cleared (consistent, empty) fails
        Path cleared = dir.resolve("cleared.qcow2");
        Files.copy(img, cleared);
        Tools.ok(30, "qemu-img", "bitmap", "--clear", cleared.toString(), "b0");
        Tools.Result bad = Tools.run(60, "sh", "-c", check.replace("{}", cleared.toString()));
        assertTrue(bad.exit() != 0 && bad.out().contains("does not cover"), bad.all());
        Files.deleteIfExists(work.resolve("consistent"));

        Path replayed = dir.resolve("replayed.qcow2");
        Files.copy(start, replayed);
        CliRun r = CliRun.of("replay", logFile.toString(), "--to", replayed.toString(), "--size", Long.toString(finalSize),
                "--at", "flush", "--reorder", "2", "--seed", "7", "--check", check, "-j", "2");
        assertEquals(0, r.code(), r.out() + r.err());
        System.out.println("Qcow2BitmapCrashStatesTest: " + r.out().lines().filter(x -> x.contains("checked")).findFirst().orElse(r.out()));
        assertTrue(Files.exists(work.resolve("in-use")), "some states caught the bitmap in use: " + r.out());
        assertTrue(Files.exists(work.resolve("consistent")), "some states have the saved bitmap: " + r.out());
        assertEquals(-1, Files.mismatch(replayed, img), "the replay ends where the container did");
    }
}
