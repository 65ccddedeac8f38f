package io.biostack.layer.crypt;

import static org.assertj.core.api.Assertions.assertThat;

import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * LUKS2 at cryptsetup's real defaults, not its fast test settings: argon2id benchmarked to 2 s,
 * with the memory (up to 1 GiB) and lanes (up to 4) each side picks on this machine. A volume
 * cryptsetup formats that way unlocks in biostack, and one biostack formats that way unlocks in
 * cryptsetup. Each unlock costs about 2 s by design.
 */
@Timeout(300)
class Luks2DefaultsTest {
    private static final Pattern MEMORY = Pattern.compile("Memory:\\s+(\\d+)");

    @TempDir
    Path dir;
    Path vol;
    Path pass;

    @BeforeEach
    void volume() throws Exception {
        Luks2Volumes.requireCryptsetup();
        vol = dir.resolve("vol.img");
        try (var ch = java.nio.channels.FileChannel.open(vol, java.nio.file.StandardOpenOption.CREATE_NEW,
                java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(java.nio.ByteBuffer.wrap(new byte[1]), (20 << 20) - 1);
        }
        pass = dir.resolve("pass");
        Files.writeString(pass, "a passphrase at the defaults");
    }

    /**
     * The machine's side of a phase, printed with its wall time: this test's time varies from
     * 10 s alone to 90 s inside the suite, and these say whether the host took the CPUs (steal),
     * the kernel compacted memory for the derivation's huge pages, this JVM burned CPU while a
     * cryptsetup child ran (threads left running by earlier tests), or none of these.
     */
    private record Machine(long nanos, long steal, long compactStall, long thpAlloc, long thpFallback, long jvmCpu) {
        static Machine now() throws java.io.IOException {
            String[] cpu = Files.readAllLines(Path.of("/proc/stat")).getFirst().trim().split("\\s+");
            java.util.Map<String, Long> vm = new java.util.HashMap<>();
            for (String l : Files.readAllLines(Path.of("/proc/vmstat"))) {
                String[] kv = l.split(" ");
                vm.put(kv[0], Long.parseLong(kv[1]));
            }
            // proc(5): the cpu line's 8th value is steal, in USER_HZ ticks (100 a second)
            return new Machine(System.nanoTime(), Long.parseLong(cpu[8]), vm.getOrDefault("compact_stall", 0L),
                    vm.getOrDefault("thp_fault_alloc", 0L), vm.getOrDefault("thp_fault_fallback", 0L),
                    ((com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory
                            .getOperatingSystemMXBean()).getProcessCpuTime());
        }

        String since(Machine a) {
            return String.format("%.1f s (this JVM's CPU %.1f s, steal %.1f s, compaction stalls %d, huge pages %d,"
                    + " fallbacks %d)", (nanos - a.nanos) / 1e9, (jvmCpu - a.jvmCpu) / 1e9, (steal - a.steal) / 100.0,
                    compactStall - a.compactStall, thpAlloc - a.thpAlloc, thpFallback - a.thpFallback);
        }
    }

    private static int memoryKiB(String dump) {
        Matcher m = MEMORY.matcher(dump);
        assertThat(m.find()).as(dump).isTrue();
        return Integer.parseInt(m.group(1));
    }

    @Test
    void aVolumeCryptsetupFormatsWithItsDefaultsUnlocksInBiostack() throws Exception {
        Machine t0 = Machine.now();
        ImageFiles.run("cryptsetup", "luksFormat", "-q", "--key-file", pass.toString(), vol.toString());
        Machine t1 = Machine.now();
        String dump = ImageFiles.run("cryptsetup", "luksDump", vol.toString());
        assertThat(dump).contains("Version:       \t2").contains("PBKDF:      argon2id");
        // cryptsetup's own choice: at most 1 GiB, less when 4 passes of that would exceed 2 s here
        assertThat(memoryKiB(dump)).isBetween(1, 1 << 20);
        try (LoopDevice d = LoopDevice.open(vol, LoopConfig.defaults().withReadOnly(true))) {
            Machine t2 = Machine.now();
            assertThat(Luks2.testPassphrase(d, Files.readAllBytes(pass), -1)).isZero();
            System.err.println("Luks2DefaultsTest: cryptsetup luksFormat " + t1.since(t0) + "; biostack unlock ("
                    + memoryKiB(dump) / 1024 + " MiB) " + Machine.now().since(t2));
        }
    }

    @Test
    void aVolumeBiostackFormatsWithTheDefaultsUnlocksInCryptsetup() throws Exception {
        Machine t0 = Machine.now();
        try (LoopDevice d = LoopDevice.open(vol, LoopConfig.defaults())) {
            Luks2.format(d, d, Files.readAllBytes(pass), Luks2.FormatOptions.defaults());
        }
        Machine t1 = Machine.now();
        String dump = ImageFiles.run("cryptsetup", "luksDump", vol.toString());
        assertThat(dump).contains("PBKDF:      argon2id").contains("sector: 4096 [bytes]")
                .contains("Cipher key: 512 bits");
        assertThat(memoryKiB(dump)).as("benchmarked, 32 MiB floor to 1 GiB").isBetween(32768, 1 << 20);
        Machine t2 = Machine.now();
        ImageFiles.run("cryptsetup", "open", "--test-passphrase", "--key-file", pass.toString(), vol.toString());
        System.err.println("Luks2DefaultsTest: biostack format " + t1.since(t0) + "; cryptsetup unlock ("
                + memoryKiB(dump) / 1024 + " MiB) " + Machine.now().since(t2));
    }
}
