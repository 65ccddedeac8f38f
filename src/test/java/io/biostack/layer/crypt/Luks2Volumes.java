package io.biostack.layer.crypt;

import io.biostack.block.BlockDevice;
import io.biostack.block.IoIter;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;

/** Test helpers: LUKS2 volumes made by cryptsetup from files of known plaintext. */
final class Luks2Volumes {
    /** cryptsetup's fast test settings (the issue's): argon2id, 4 passes, 32 MiB, one lane. */
    static final List<String> FAST = List.of("--pbkdf", "argon2id", "--pbkdf-force-iterations", "4",
            "--pbkdf-memory", "32768", "--pbkdf-parallel", "1");
    static final byte[] PASS = "correct horse battery".getBytes(StandardCharsets.UTF_8);
    /** Bytes of plaintext that survive {@code --reduce-device-size 32M}: the file is 32 MiB + this. */
    static final int PAYLOAD = 2 << 20;

    private Luks2Volumes() {
    }

    static void requireCryptsetup() {
        ImageFiles.requireTool("cryptsetup");
    }

    /** A file of {@code size} pseudo-random bytes from {@code seed}. */
    static byte[] plaintext(long seed, int size) {
        byte[] b = new byte[size];
        new Random(seed).nextBytes(b);
        return b;
    }

    static Path passFile(Path dir) throws IOException {
        Path p = dir.resolve("pass");
        if (!Files.exists(p)) {
            Files.write(p, PASS);
        }
        return p;
    }

    /**
     * {@code cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 32M
     * --force-offline-reencrypt} over a file whose first {@link #PAYLOAD} bytes are {@code plain},
     * with {@code extra} options (FAST unless they name a pbkdf).
     */
    static Path encrypt(Path dir, String name, byte[] plain, List<String> extra) throws Exception {
        Path f = dir.resolve(name);
        byte[] whole = new byte[(32 << 20) + plain.length];
        System.arraycopy(plain, 0, whole, 0, plain.length);
        Files.write(f, whole);
        List<String> cmd = new ArrayList<>(List.of("cryptsetup", "reencrypt", "--encrypt", "--type", "luks2",
                "--reduce-device-size", "32M", "--force-offline-reencrypt", "-q", "--key-file",
                passFile(dir).toString()));
        if (!extra.contains("--pbkdf")) {
            cmd.addAll(FAST);
        }
        cmd.addAll(extra);
        cmd.add(f.toString());
        ImageFiles.run(cmd.toArray(String[]::new));
        return f;
    }

    static byte[] read(BlockDevice d, long off, int len) {
        byte[] b = new byte[len];
        d.read(off, IoIter.of(b)).join();
        return b;
    }

    static String sha256(Path f) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f)));
    }

    /** The volume key {@code cryptsetup luksDump --dump-volume-key} prints. */
    static byte[] dumpedKey(Path volume, Path keyFile, String... extra) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("cryptsetup", "luksDump", "--dump-volume-key", "-q", "--key-file",
                keyFile.toString()));
        cmd.addAll(List.of(extra));
        cmd.add(volume.toString());
        String out = ImageFiles.run(cmd.toArray(String[]::new));
        int at = out.indexOf("MK dump:");
        StringBuilder hex = new StringBuilder();
        for (String line : out.substring(at + 8).split("\n")) {
            String t = line.trim().replace(" ", "");
            if (t.isEmpty() || !t.chars().allMatch(c -> Character.digit(c, 16) >= 0)) {
                if (hex.length() > 0) {
                    break;
                }
                continue;
            }
            hex.append(t);
        }
        return HexFormat.of().parseHex(hex);
    }
}
