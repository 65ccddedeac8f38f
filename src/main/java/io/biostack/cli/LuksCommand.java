package io.biostack.cli;

import io.biostack.block.BlockDevice;
import io.biostack.block.IoIter;
import io.biostack.block.RamDisk;
import io.biostack.layer.crypt.Luks;
import io.biostack.layer.crypt.Luks2;
import io.biostack.layer.crypt.LuksException;
import io.biostack.layer.crypt.LuksHeader;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.ByteArrayOutputStream;
import java.io.Console;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.concurrent.Callable;

/**
 * {@code biostack luks ...}: cryptsetup's LUKS commands on files and devices, in userspace, with
 * cryptsetup's names and flags: {@code format} (luksFormat), {@code add-key}, {@code remove-key},
 * {@code kill-slot}, {@code change-key}, {@code dump}, {@code test-passphrase},
 * {@code header-backup}, {@code header-restore}, {@code convert}. Every subcommand answers
 * {@code --help}; {@code -h} stays cryptsetup's {@code --hash}. Passphrases come from {@code --key-file} ({@code -}
 * for stdin, the whole content as cryptsetup takes a key file) or from the terminal without echo.
 * Exit codes as cryptsetup's: 0 done, 1 bad arguments or other errors, 2 no key slot opens with
 * the passphrase, 4 not a LUKS volume or a damaged or refused header.
 */
@Command(mixinStandardHelpOptions = true, name = "luks", description = {"LUKS1 and LUKS2 volumes in userspace, as cryptsetup makes them.", "",
        "Example: biostack luks format disk.img --key-file pass; biostack luks dump disk.img"},
        subcommands = {LuksCommand.Format.class, LuksCommand.AddKey.class, LuksCommand.RemoveKey.class,
            LuksCommand.KillSlot.class, LuksCommand.ChangeKey.class, LuksCommand.Dump.class,
            LuksCommand.TestPassphrase.class, LuksCommand.HeaderBackup.class, LuksCommand.HeaderRestore.class,
            LuksCommand.Convert.class})
public final class LuksCommand implements Runnable {
    @Override
    public void run() {
        System.out.println("biostack luks: format, add-key, remove-key, kill-slot, change-key, dump, test-passphrase,"
                + " header-backup, header-restore, convert (see --help of each)");
    }

    /**
     * {@code --help} for a subcommand. Only the long name: {@code -h} is {@code --hash} in
     * cryptsetup, and in the subcommands that take a KDF.
     */
    static final class Help {
        @Option(names = "--help", usageHelp = true, description = "show this help and exit")
        boolean help;
    }

    /** The volume, its detached header, and how the passphrase is read. */
    static final class Volume {
        @Parameters(index = "0", paramLabel = "DEV", description = "the LUKS volume (a file or block device)")
        Path dev;

        @Option(names = "--header", paramLabel = "FILE", description = "detached header (cryptsetup --header)")
        Path header;

        @Option(names = {"-d", "--key-file"}, paramLabel = "FILE", description = "read the passphrase from FILE (- for stdin)")
        String keyFile;

        @Option(names = {"-S", "--key-slot"}, paramLabel = "N", defaultValue = "-1", description = "use only keyslot N")
        int keySlot;

        LoopDevice open(Path p, boolean ro) throws IOException {
            return LoopDevice.open(p.getFileName().toString(), p, LoopConfig.defaults().withReadOnly(ro));
        }

        byte[] passphrase(String prompt) throws IOException {
            return secret(keyFile, prompt, false);
        }
    }

    /** How a new keyslot's key is derived (cryptsetup's PBKDF flags). */
    static final class KdfFlags {
        @Option(names = "--pbkdf", paramLabel = "KDF", description = "argon2id (default), argon2i or pbkdf2")
        String pbkdf;

        @Option(names = {"-i", "--iter-time"}, paramLabel = "MS", description = "unlock time to aim at (default 2000)")
        Integer iterTime;

        @Option(names = "--pbkdf-memory", paramLabel = "KIB", description = "Argon2 memory (default: 1 GiB, at most half the RAM)")
        Integer memory;

        @Option(names = "--pbkdf-parallel", paramLabel = "N", description = "Argon2 lanes (default: up to 4)")
        Integer parallel;

        @Option(names = "--pbkdf-force-iterations", paramLabel = "N", description = "take this cost, no benchmark")
        Integer force;

        @Option(names = {"-h", "--hash"}, paramLabel = "HASH", description = "PBKDF2 hash (default sha256)")
        String hash;

        Luks2.KdfOptions options() {
            Luks2.KdfOptions d = Luks2.KdfOptions.defaults();
            return new Luks2.KdfOptions(pbkdf != null ? pbkdf : d.type(), hash != null ? hash : d.hash(),
                    iterTime != null ? iterTime : d.iterTimeMs(), memory != null ? memory : d.maxMemoryKiB(),
                    parallel != null ? parallel : d.parallel(), force != null ? force : 0);
        }
    }

    /**
     * A secret from {@code keyFile} (- for stdin, the whole content) or, without one, from the
     * terminal without echo (asked twice when {@code confirm}), or one line of stdin when there is
     * no terminal.
     */
    static byte[] secret(String keyFile, String prompt, boolean confirm) throws IOException {
        if (keyFile != null) {
            return keyFile.equals("-") ? readAll(System.in) : Files.readAllBytes(Path.of(keyFile));
        }
        Console c = System.console();
        if (c == null) {
            ByteArrayOutputStream line = new ByteArrayOutputStream();
            for (int b; (b = System.in.read()) >= 0 && b != '\n'; ) {
                line.write(b);
            }
            return line.toByteArray();
        }
        char[] p = c.readPassword("%s", prompt);
        if (p == null) {
            throw new IllegalArgumentException("no passphrase given");
        }
        if (confirm) {
            char[] again = c.readPassword("Verify passphrase: ");
            if (again == null || !Arrays.equals(p, again)) {
                throw new IllegalArgumentException("passphrases do not match");
            }
            Arrays.fill(again, '\0');
        }
        byte[] out = StandardCharsets.UTF_8.encode(java.nio.CharBuffer.wrap(p)).array();
        byte[] exact = Arrays.copyOf(out, StandardCharsets.UTF_8.encode(java.nio.CharBuffer.wrap(p)).limit());
        Arrays.fill(p, '\0');
        Arrays.fill(out, (byte) 0);
        return exact;
    }

    private static byte[] readAll(InputStream in) throws IOException {
        return in.readAllBytes();
    }

    /** Runs {@code body}, turning refusals into cryptsetup's exit codes with one line on stderr. */
    static int guarded(Callable<Integer> body) throws Exception {
        try {
            return body.call();
        } catch (LuksException e) {
            System.err.println("biostack: " + e.getMessage());
            return switch (e.reason()) {
                case WRONG_PASSPHRASE -> 2;
                case NOT_LUKS, CORRUPT_HEADER, UNSUPPORTED -> 4;
                case IO -> 1;
            };
        }
    }

    private static BlockDevice hdr(BlockDevice data, BlockDevice header) {
        return header != null ? header : data;
    }

    private static void requireLuks2(BlockDevice hdr, String what) {
        if (!Luks2.isLuks2(hdr)) {
            throw new LuksException(LuksException.Reason.UNSUPPORTED, hdr.name() + " is not a LUKS2 volume: biostack's "
                    + what + " works on LUKS2 (LUKS1 volumes open and format only)");
        }
    }

    // ---- format -------------------------------------------------------------------------------

    /** {@code luksFormat}. */
    @Command(name = "format", description = "Write a new LUKS volume over DEV (everything on it is lost).")
    static final class Format implements Callable<Integer> {
        @Mixin
        Help help;

        @Mixin
        Volume vol;
        @Mixin
        KdfFlags kdf;

        @Option(names = {"-M", "--type"}, paramLabel = "TYPE", defaultValue = "luks2", description = "luks2 (default) or luks1")
        String type;

        @Option(names = "--sector-size", paramLabel = "BYTES", description = "512 or 4096 (default: 4096 where DEV allows it)")
        Integer sectorSize;

        @Option(names = {"-s", "--key-size"}, paramLabel = "BITS", defaultValue = "512", description = "512 (default) or 256")
        int keyBits;

        @Option(names = "--label", paramLabel = "LABEL", defaultValue = "", description = "the LUKS2 label")
        String label;

        @Override
        public Integer call() throws Exception {
            return guarded(() -> {
                byte[] pass = secret(vol.keyFile, "Enter passphrase for " + vol.dev + ": ", true);
                try {
                    if (type.equals("luks1")) {
                        return luks1(pass);
                    }
                    if (!type.equals("luks2")) {
                        throw new IllegalArgumentException("--type must be luks2 or luks1, not " + type);
                    }
                    if (vol.header != null && (!Files.exists(vol.header)
                            || Files.size(vol.header) < Luks2.DEFAULT_DATA_OFFSET)) {
                        try (FileChannel ch = FileChannel.open(vol.header, StandardOpenOption.CREATE,
                                StandardOpenOption.WRITE)) {
                            ch.write(ByteBuffer.wrap(new byte[1]), Luks2.DEFAULT_DATA_OFFSET - 1);
                        }
                    }
                    try (LoopDevice d = vol.open(vol.dev, false);
                         LoopDevice h = vol.header == null ? null : vol.open(vol.header, false)) {
                        String uuid = Luks2.format(d, hdr(d, h), pass, new Luks2.FormatOptions(keyBits / 8,
                                kdf.options(), sectorSize == null ? 0 : sectorSize, label, -1));
                        System.out.println("LUKS2 volume " + uuid + " written on " + vol.dev);
                    }
                    return 0;
                } finally {
                    Arrays.fill(pass, (byte) 0);
                }
            });
        }

        private int luks1(byte[] pass) throws IOException {
            if (vol.header != null || (sectorSize != null && sectorSize != 512)) {
                throw new IllegalArgumentException("LUKS1 has 512-byte sectors and no detached header here");
            }
            Luks2.KdfOptions k = kdf.options();
            if (kdf.pbkdf != null && !kdf.pbkdf.equals("pbkdf2")) {
                throw new IllegalArgumentException("LUKS1 keyslots use pbkdf2, not " + kdf.pbkdf);
            }
            int it = k.forceIterations() > 0 ? k.forceIterations() : Luks2.pbkdf2Iterations(k.hash(), k.iterTimeMs());
            try (LoopDevice d = vol.open(vol.dev, false)) {
                LuksHeader h = Luks.format(d, pass, new Luks.FormatOptions(keyBits / 8, k.hash(), it,
                        Math.max(1000, it / 16)));
                System.out.println("LUKS1 volume " + h.uuid() + " written on " + vol.dev);
            }
            return 0;
        }
    }

    // ---- keyslots -----------------------------------------------------------------------------

    /** {@code luksAddKey}. */
    @Command(name = "add-key", description = "Add a keyslot for a new passphrase (an existing one unlocks the volume key).")
    static final class AddKey implements Callable<Integer> {
        @Mixin
        Help help;

        @Mixin
        Volume vol;
        @Mixin
        KdfFlags kdf;

        @Parameters(index = "1", arity = "0..1", paramLabel = "NEW_KEY_FILE", description = "the new passphrase's file (default: asked)")
        String newKeyFile;

        @Option(names = "--new-keyfile", paramLabel = "FILE", description = "the new passphrase's file, as NEW_KEY_FILE")
        String newKeyFileOpt;

        @Override
        public Integer call() throws Exception {
            return guarded(() -> {
                byte[] old = vol.passphrase("Enter any existing passphrase: ");
                String nf = newKeyFile != null ? newKeyFile : newKeyFileOpt;
                byte[] neu = secret(nf, "Enter new passphrase for key slot: ", true);
                try (LoopDevice d = vol.open(vol.dev, false);
                     LoopDevice h = vol.header == null ? null : vol.open(vol.header, false)) {
                    requireLuks2(hdr(d, h), "add-key");
                    int slot = Luks2.addKey(hdr(d, h), old, neu, kdf.options(), vol.keySlot);
                    System.out.println("Key slot " + slot + " created.");
                    return 0;
                } finally {
                    Arrays.fill(old, (byte) 0);
                    Arrays.fill(neu, (byte) 0);
                }
            });
        }
    }

    /** {@code luksRemoveKey}. */
    @Command(name = "remove-key", description = "Remove the keyslot the passphrase opens.")
    static final class RemoveKey implements Callable<Integer> {
        @Mixin
        Help help;

        @Mixin
        Volume vol;

        @Override
        public Integer call() throws Exception {
            return guarded(() -> {
                byte[] pass = vol.passphrase("Enter passphrase to be deleted: ");
                try (LoopDevice d = vol.open(vol.dev, false);
                     LoopDevice h = vol.header == null ? null : vol.open(vol.header, false)) {
                    requireLuks2(hdr(d, h), "remove-key");
                    System.out.println("Key slot " + Luks2.removeKey(hdr(d, h), pass, -1) + " removed.");
                    return 0;
                } finally {
                    Arrays.fill(pass, (byte) 0);
                }
            });
        }
    }

    /** {@code luksKillSlot}. */
    @Command(name = "kill-slot", description = "Remove keyslot N (as cryptsetup -q luksKillSlot: no passphrase asked).")
    static final class KillSlot implements Callable<Integer> {
        @Mixin
        Help help;

        @Parameters(index = "0", paramLabel = "DEV", description = "the LUKS volume")
        Path dev;

        @Parameters(index = "1", paramLabel = "N", description = "the keyslot")
        int slot;

        @Option(names = "--header", paramLabel = "FILE", description = "detached header")
        Path header;

        @Override
        public Integer call() throws Exception {
            return guarded(() -> {
                Path p = header != null ? header : dev;
                try (LoopDevice h = LoopDevice.open(p.getFileName().toString(), p, LoopConfig.defaults())) {
                    requireLuks2(h, "kill-slot");
                    Luks2.removeKey(h, null, slot);
                    System.out.println("Key slot " + slot + " removed.");
                    return 0;
                }
            });
        }
    }

    /** {@code luksChangeKey}. */
    @Command(name = "change-key", description = "Replace the passphrase of the keyslot the current one opens.")
    static final class ChangeKey implements Callable<Integer> {
        @Mixin
        Help help;

        @Mixin
        Volume vol;
        @Mixin
        KdfFlags kdf;

        @Parameters(index = "1", arity = "0..1", paramLabel = "NEW_KEY_FILE", description = "the new passphrase's file (default: asked)")
        String newKeyFile;

        @Override
        public Integer call() throws Exception {
            return guarded(() -> {
                byte[] old = vol.passphrase("Enter passphrase to be changed: ");
                byte[] neu = secret(newKeyFile, "Enter new passphrase: ", true);
                try (LoopDevice d = vol.open(vol.dev, false);
                     LoopDevice h = vol.header == null ? null : vol.open(vol.header, false)) {
                    requireLuks2(hdr(d, h), "change-key");
                    System.out.println("Key slot " + Luks2.changeKey(hdr(d, h), old, neu, kdf.options()) + " changed.");
                    return 0;
                } finally {
                    Arrays.fill(old, (byte) 0);
                    Arrays.fill(neu, (byte) 0);
                }
            });
        }
    }

    // ---- inspection ---------------------------------------------------------------------------

    /** {@code luksDump}. */
    @Command(name = "dump", description = "Show the header (LUKS2: --json for the JSON metadata as on disk).")
    static final class Dump implements Callable<Integer> {
        @Mixin
        Help help;

        @Parameters(index = "0", paramLabel = "DEV", description = "the LUKS volume")
        Path dev;

        @Option(names = "--header", paramLabel = "FILE", description = "detached header")
        Path header;

        @Option(names = {"--json", "--dump-json-metadata"}, description = "print the LUKS2 JSON metadata")
        boolean json;

        @Option(names = {"--dump-volume-key", "--dump-master-key"}, description = "also print the volume key (asks a passphrase)")
        boolean volumeKey;

        @Option(names = {"-d", "--key-file"}, paramLabel = "FILE", description = "passphrase file for --dump-volume-key (- for stdin)")
        String keyFile;

        @Override
        public Integer call() throws Exception {
            return guarded(() -> {
                Path p = header != null ? header : dev;
                try (LoopDevice h = LoopDevice.open(p.getFileName().toString(), p,
                        LoopConfig.defaults().withReadOnly(true))) {
                    if (!Luks2.isLuks2(h)) {
                        if (json) {
                            throw new IllegalArgumentException(p + " is LUKS1: it has no JSON metadata");
                        }
                        System.out.print(Luks.readHeader(h).toString() + "\n");
                        return 0;
                    }
                    System.out.print(json ? Luks2.json(h) + "\n" : Luks2.dump(h));
                    if (volumeKey) {
                        byte[] pass = secret(keyFile, "Enter passphrase for " + dev + ": ", false);
                        byte[] k = Luks2.volumeKey(h, pass, -1);
                        System.out.println("MK dump:\t" + HexFormat.ofDelimiter(" ").formatHex(k));
                        Arrays.fill(k, (byte) 0);
                        Arrays.fill(pass, (byte) 0);
                    }
                    return 0;
                }
            });
        }
    }

    /** {@code open --test-passphrase}. */
    @Command(name = "test-passphrase", description = "Check that the passphrase opens a keyslot; nothing is written.")
    static final class TestPassphrase implements Callable<Integer> {
        @Mixin
        Help help;

        @Mixin
        Volume vol;

        @Override
        public Integer call() throws Exception {
            return guarded(() -> {
                byte[] pass = vol.passphrase("Enter passphrase for " + vol.dev + ": ");
                try (LoopDevice d = vol.open(vol.dev, true);
                     LoopDevice h = vol.header == null ? null : vol.open(vol.header, true)) {
                    // the header alone, as cryptsetup: a detached header or a backup tests without its data
                    System.out.println("Key slot " + Luks.testPassphrase(hdr(d, h), pass, vol.keySlot) + " unlocked.");
                    return 0;
                } finally {
                    Arrays.fill(pass, (byte) 0);
                }
            });
        }
    }

    /** {@code luksHeaderBackup}. */
    @Command(name = "header-backup", description = "Save the header and keyslots area to a file.")
    static final class HeaderBackup implements Callable<Integer> {
        @Mixin
        Help help;

        @Parameters(index = "0", paramLabel = "DEV", description = "the LUKS volume")
        Path dev;

        @Option(names = "--header-backup-file", required = true, paramLabel = "FILE", description = "the file to write (must not exist)")
        Path file;

        @Override
        public Integer call() throws Exception {
            return guarded(() -> {
                if (Files.exists(file)) {
                    throw new IllegalArgumentException(file + " exists; header-backup does not overwrite");
                }
                try (LoopDevice d = LoopDevice.open("dev", dev, LoopConfig.defaults().withReadOnly(true))) {
                    long n = headerBytes(d);
                    byte[] b = new byte[(int) n];
                    d.read(0, IoIter.of(b)).join();
                    Files.write(file, b, StandardOpenOption.CREATE_NEW);
                    System.out.println(n + " bytes of header saved to " + file);
                    return 0;
                }
            });
        }
    }

    /**
     * Bytes of header and keyslots, what cryptsetup's luksHeaderBackup saves: LUKS2's 2 x hdr_size +
     * keyslots_size; LUKS1's end of key material over all eight slots ({@code LUKS_device_sectors}),
     * rounded up to the 4 KiB page its backup is rounded to. Not the LUKS1 payload offset: that
     * is 0 on a detached header, and past the keyslots on most volumes.
     */
    static long headerBytes(BlockDevice d) {
        if (Luks2.isLuks2(d)) {
            return Luks2.headerBytes(d);
        }
        LuksHeader h = Luks.readHeader(d);
        long afSectors = ((long) h.keyBytes() * LuksHeader.STRIPES + LuksHeader.SECTOR - 1) / LuksHeader.SECTOR;
        long end = 0;
        for (LuksHeader.KeySlot s : h.slots()) {
            end = Math.max(end, (s.keyMaterialOffset() + afSectors) * LuksHeader.SECTOR);
        }
        return (end + 4095) / 4096 * 4096;
    }

    /** {@code luksHeaderRestore}. */
    @Command(name = "header-restore", description = "Write a header backup back over DEV's header.")
    static final class HeaderRestore implements Callable<Integer> {
        @Mixin
        Help help;

        @Parameters(index = "0", paramLabel = "DEV", description = "the LUKS volume")
        Path dev;

        @Option(names = "--header-backup-file", required = true, paramLabel = "FILE", description = "the backup")
        Path file;

        @Override
        public Integer call() throws Exception {
            return guarded(() -> {
                byte[] b = Files.readAllBytes(file);
                RamDisk check = new RamDisk("backup", (b.length + 4095) / 4096 * 4096);
                check.write(0, IoIter.of(Arrays.copyOf(b, (int) check.size())), 0).join();
                long n = headerBytes(check); // refuses a file that is not a good header, before any write
                if (b.length < n) {
                    throw new IllegalArgumentException(file + " is " + b.length + " bytes, its header says " + n);
                }
                // only the header and keyslots are written, as cryptsetup's restore does: a longer file
                // (a LUKS1 backup of an older biostack, up to the payload offset) restores too
                b = Arrays.copyOf(b, (int) n);
                try (LoopDevice d = LoopDevice.open("dev", dev, LoopConfig.defaults())) {
                    if (d.size() < n) {
                        throw new IllegalArgumentException(dev + " is smaller than the header");
                    }
                    sameLayout(d, check);
                    d.write(0, IoIter.of(b), 0).join();
                    d.flush().join();
                }
                System.out.println("header restored on " + dev);
                return 0;
            });
        }
    }

    /**
     * Refuses a backup whose layout differs from the LUKS header already on {@code dev}, as
     * cryptsetup's restore does: LUKS2, another data offset or header size
     * ({@link Luks2#checkRestore}); LUKS1, another payload offset or key size
     * ({@code LUKS_hdr_restore}). Writing it would put keyslots over the payload, or leave a
     * header that decrypts nothing. A device without a readable header of the backup's version
     * takes any backup.
     */
    private static void sameLayout(BlockDevice dev, BlockDevice backup) {
        if (Luks2.isLuks2(backup)) {
            Luks2.checkRestore(dev, backup);
            return;
        }
        LuksHeader have;
        try {
            have = Luks2.isLuks2(dev) ? null : Luks.readHeader(dev);
        } catch (LuksException e) {
            have = null;
        }
        LuksHeader want = Luks.readHeader(backup);
        if (have != null && (have.payloadOffset() != want.payloadOffset() || have.keyBytes() != want.keyBytes())) {
            throw new IllegalArgumentException("the data offset or key size differs on " + dev.name() + " (sector "
                    + have.payloadOffset() + ", " + have.keyBytes() + " bytes) and in the backup (sector "
                    + want.payloadOffset() + ", " + want.keyBytes() + " bytes): restore refused, nothing written");
        }
    }

    // ---- convert ------------------------------------------------------------------------------

    /** {@code cryptsetup convert --type luks2|luks1}. */
    @Command(name = "convert", description = {"Rewrite the header of DEV as LUKS2 or LUKS1, keys and data kept,"
        + " where the volume allows it (as cryptsetup convert).",
        "", "Refused, with nothing written: to LUKS1, argon2 keyslots, sectors other than 512, keyslots above 7,"
            + " tokens; to LUKS2, a non-standard LUKS1 layout or no room for the 28 KiB keyslot shift.",
        "A crash while the keyslots move leaves a volume neither header opens (as in cryptsetup): take a"
            + " header-backup first."})
    static final class Convert implements Callable<Integer> {
        @Mixin
        Help help;

        @Parameters(index = "0", paramLabel = "DEV", description = "the LUKS volume")
        Path dev;

        @Option(names = {"-M", "--type"}, required = true, paramLabel = "TYPE", description = "luks2 or luks1")
        String type;

        @Option(names = "--header", paramLabel = "FILE", description = "detached header (grown if LUKS2 needs more room)")
        Path header;

        @Override
        public Integer call() throws Exception {
            return guarded(() -> {
                if (!type.equals("luks2") && !type.equals("luks1")) {
                    throw new IllegalArgumentException("--type must be luks2 or luks1, not " + type);
                }
                Path p = header != null ? header : dev;
                long before = header != null && Files.isRegularFile(header) ? Files.size(header) : -1;
                boolean done = false;
                if (before >= 0 && type.equals("luks2")) {
                    growForLuks2(header);
                }
                try (LoopDevice h = LoopDevice.open(p.getFileName().toString(), p, LoopConfig.defaults())) {
                    java.util.List<Integer> slots = type.equals("luks2") ? io.biostack.layer.crypt.Luks2Convert.toLuks2(h)
                            : io.biostack.layer.crypt.Luks2Convert.toLuks1(h);
                    done = true;
                    System.out.println(dev + " converted to " + type.toUpperCase(java.util.Locale.ROOT) + " (keyslots "
                            + slots + ")");
                    return 0;
                } finally {
                    if (!done && before >= 0 && Files.size(header) > before) {
                        // a refused conversion leaves the header file as it was, size included
                        try (FileChannel ch = FileChannel.open(header, StandardOpenOption.WRITE)) {
                            ch.truncate(before);
                        }
                    }
                }
            });
        }

        /** A detached LUKS1 header file smaller than LUKS2 needs grows, as cryptsetup fallocates it. */
        private static void growForLuks2(Path file) throws IOException {
            long need;
            try (LoopDevice h = LoopDevice.open("header", file, LoopConfig.defaults().withReadOnly(true))) {
                if (Luks2.isLuks2(h) || Luks.readHeader(h).payloadOffset() != 0) {
                    return;
                }
                need = io.biostack.layer.crypt.Luks2Convert.luks2Bytes(h);
            }
            if (Files.size(file) < need) {
                try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
                    ch.write(ByteBuffer.wrap(new byte[1]), need - 1);
                }
            }
        }
    }
}
