package io.biostack.bench;

import io.biostack.block.BlockDevice;
import io.biostack.block.RamDisk;
import io.biostack.file.EngineKind;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The in-process load generator: it drives real devices and counts what really completed. */
class LoadGeneratorTest {
    @TempDir
    Path dir;

    private static Workload w(Workload.Pattern p, int bs, int qd, long ms) {
        return new Workload(p, bs, qd, ms * 1_000_000L, 0, 50, 1);
    }

    @Test
    void ramdiskThatCompletesInsideSubmitDoesNotGrowTheStack() throws Exception {
        // RamDisk completes every bio before submit returns: the slot must loop, not recurse.
        try (BlockDevice dev = new RamDisk("ram0", 64 << 20)) {
            BenchResult r = new LoadGenerator(dev, w(Workload.Pattern.RANDRW, 4096, 8, 300)).run(null);
            assertThat(r.ios()).isGreaterThan(1000);
            assertThat(r.errors()).isZero();
            assertThat(r.readIos()).isPositive();
            assertThat(r.writeIos()).isPositive();
        }
    }

    @Test
    void randwriteOnALoopDeviceWritesTheFileAndReportsLatency() throws Exception {
        Path f = dir.resolve("w.img");
        try (LoopDevice dev = LoopDevice.open(f, LoopConfig.defaults().withCreateSize(16 << 20).withEngine(EngineKind.URING))) {
            BenchResult r = new LoadGenerator(dev, w(Workload.Pattern.RANDWRITE, 4096, 16, 500)).run(null);
            assertThat(r.errors()).isZero();
            assertThat(r.writeIos()).isEqualTo(r.ios()).isPositive();
            assertThat(r.writeLat().getValueAtPercentile(50)).isPositive();
            String json = r.toJson(null);
            assertThat(json).contains("\"iops\":", "\"bw_bytes\":", "\"lat_ns\":{\"p50\":", "\"p99\":", "\"p999\":",
                    "\"ios\":" + r.ios(), "\"errors\":0");
        }
        // The random pattern buffers were written: the file is no longer all zeros.
        byte[] all = Files.readAllBytes(f);
        int nonZero = 0;
        for (byte b : all) {
            if (b != 0) {
                nonZero++;
            }
        }
        assertThat(nonZero).isGreaterThan(4096);
    }

    @Test
    void sequentialReadCoversTheDeviceInOrder() throws Exception {
        try (BlockDevice dev = new RamDisk("ram1", 1 << 20)) {
            BenchResult r = new LoadGenerator(dev, w(Workload.Pattern.READ, 65536, 4, 200)).run(null);
            assertThat(r.errors()).isZero();
            assertThat(r.readIos()).isGreaterThan(16); // wrapped around the 16-block device
        }
    }

    @Test
    void writesToAReadOnlyDeviceAreRefusedBeforeTheRun() {
        try (BlockDevice dev = new RamDisk("ro", 1 << 20, 512, true)) {
            assertThatThrownBy(() -> new LoadGenerator(dev, w(Workload.Pattern.RANDWRITE, 4096, 1, 100)))
                    .hasMessageContaining("read-only");
        }
    }

    @Test
    void blockSizeNotAMultipleOfTheDeviceBlockIsRefused() {
        try (BlockDevice dev = new RamDisk("r4k", 1 << 20, 4096, false)) {
            assertThatThrownBy(() -> new LoadGenerator(dev, w(Workload.Pattern.RANDREAD, 512, 1, 100)))
                    .hasMessageContaining("not a multiple");
        }
    }

    @Test
    void badWorkloadsAreRefusedWithTheOptionName() {
        assertThatThrownBy(() -> Workload.Pattern.parse("sideways")).hasMessageContaining("--rw");
        assertThatThrownBy(() -> w(Workload.Pattern.READ, 4096, 0, 100)).hasMessageContaining("--iodepth");
    }

    @Test
    void rampRunsTheLoadButMeasuresOnlyAfterIt() throws Exception {
        java.util.concurrent.atomic.AtomicLong submitted = new java.util.concurrent.atomic.AtomicLong();
        try (RamDisk ram = new RamDisk("ram2", 8 << 20)) {
            BlockDevice counting = new BlockDevice() {
                @Override public String name() { return "counting"; }
                @Override public long size() { return ram.size(); }
                @Override public io.biostack.block.QueueLimits limits() { return ram.limits(); }
                @Override public boolean isReadOnly() { return false; }
                @Override public void close() { }
                @Override public void submit(io.biostack.block.Bio bio) {
                    submitted.incrementAndGet();
                    ram.submit(bio);
                }
            };
            BenchResult r = new LoadGenerator(counting, w(Workload.Pattern.RANDREAD, 4096, 4, 300))
                    .ramp(300_000_000L).run(null);
            assertThat(r.ios()).isPositive();
            // The ramp's I/Os went down but were not counted (even interpreted code does
            // thousands in 300 ms on a ramdisk).
            assertThat(submitted.get() - r.ios()).isGreaterThan(1000);
            assertThat(r.elapsedNs()).isLessThan(1_000_000_000L);
        }
    }

    @Test
    void numjobsRunsEveryJobWithItsOwnDepthAndReportsCpuPerIo() throws Exception {
        Path f = dir.resolve("j.img");
        try (LoopDevice dev = LoopDevice.open(f, LoopConfig.defaults().withCreateSize(16 << 20).withEngine(EngineKind.URING))) {
            LoadGenerator g = new LoadGenerator(dev, w(Workload.Pattern.RANDRW, 4096, 4, 500)).numJobs(2);
            Thread[] before = Thread.getAllStackTraces().keySet().toArray(new Thread[0]);
            BenchResult r = g.run(null);
            assertThat(r.errors()).isZero();
            assertThat(r.numJobs()).isEqualTo(2);
            assertThat(r.ios()).isGreaterThan(100);
            assertThat(r.cpuUsPerIo()).isPositive();
            assertThat(r.toJson(null)).contains("\"numjobs\":2", "\"cpu_us_per_io\":");
            // The job threads are gone once the run is over.
            assertThat(Thread.getAllStackTraces().keySet()).noneMatch(t -> t.getName().startsWith("biostack-bench-") && t.isAlive()
                    && java.util.Arrays.stream(before).noneMatch(b -> b == t));
        }
        assertThatThrownBy(() -> new LoadGenerator(new RamDisk("r", 1 << 20), w(Workload.Pattern.RANDREAD, 4096, 1, 10)).numJobs(0))
                .hasMessageContaining("--numjobs");
    }
}
