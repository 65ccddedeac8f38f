package io.biostack.layer.crypt;

import static org.assertj.core.api.Assertions.fail;

import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Test helpers for image files made by outside tools: copy a file into a {@link RamDisk} and
 * back, and run a tool. A tool that is missing skips the test, except under {@code CI=true},
 * where it fails it: CI installs the tools, so missing one there is a broken set-up.
 */
public final class ImageFiles {
    private static final int CHUNK = 1 << 20;

    private ImageFiles() {
    }

    /** A ramdisk holding a copy of {@code file} (its size rounded up to 512 bytes). */
    public static RamDisk load(Path file, String name) throws IOException {
        long size = Files.size(file);
        RamDisk ram = new RamDisk(name, (size + 511) / 512 * 512);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            ByteBuffer buf = ByteBuffer.allocate(CHUNK);
            long pos = 0;
            while (pos < size) {
                buf.clear();
                int n = ch.read(buf, pos);
                if (n <= 0) {
                    break;
                }
                byte[] block = new byte[(n + 511) / 512 * 512];
                System.arraycopy(buf.array(), 0, block, 0, n);
                ram.write(pos, MemorySegment.ofArray(block)).join();
                pos += n;
            }
        }
        return ram;
    }

    /** Writes the first {@code length} bytes of {@code dev} over {@code file}. */
    public static void save(BlockDevice dev, Path file, long length) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
            byte[] block = new byte[CHUNK];
            for (long pos = 0; pos < length; pos += CHUNK) {
                int n = (int) Math.min(CHUNK, length - pos);
                byte[] b = n == CHUNK ? block : new byte[n];
                dev.read(pos, MemorySegment.ofArray(b)).join();
                ch.write(ByteBuffer.wrap(b, 0, n), pos);
            }
        }
    }

    /** Skips (or under CI=true fails) the test when {@code tool} is not on the PATH. */
    public static void requireTool(String tool) {
        boolean found = false;
        for (String dir : System.getenv().getOrDefault("PATH", "").split(":")) {
            if (Files.isExecutable(Path.of(dir, tool))) {
                found = true;
                break;
            }
        }
        if (!found) {
            for (String dir : List.of("/usr/sbin", "/sbin")) {
                found |= Files.isExecutable(Path.of(dir, tool));
            }
        }
        io.biostack.TestEnv.require(found, tool);
    }

    /** Runs a command; returns its output (stdout and stderr); fails the test on a non-zero exit. */
    public static String run(String... cmd) throws IOException, InterruptedException {
        List<String> c = new ArrayList<>(List.of(cmd));
        if (!c.get(0).contains("/")) {
            for (String dir : List.of("/usr/sbin", "/sbin")) {
                if (Files.isExecutable(Path.of(dir, c.get(0))) && !onPath(c.get(0))) {
                    c.set(0, dir + "/" + c.get(0));
                }
            }
        }
        Process p = new ProcessBuilder(c).redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail(String.join(" ", cmd) + " did not finish");
        }
        String text = new String(out);
        if (p.exitValue() != 0) {
            fail(String.join(" ", cmd) + " exited with " + p.exitValue() + ":\n" + text);
        }
        return text;
    }

    private static boolean onPath(String tool) {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(":")) {
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, tool))) {
                return true;
            }
        }
        return false;
    }
}
