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

    @Test
    void moreIosInFlightThanTheHeapHoldsHistogramsForAreRefusedBeforeAllocating() throws Exception {
        // Each I/O in flight keeps its own latency histogram (about 220 KiB): 256 x 1024 of them
        // are about 56 GiB, 3000000 x 1024 overflow an int.
        try (BlockDevice dev = new RamDisk("r", 1 << 20)) {
            for (int jobs : new int[] {256, 3_000_000}) {
                LoadGenerator g = new LoadGenerator(dev, w(Workload.Pattern.RANDREAD, 4096, 1024, 10));
                assertThatThrownBy(() -> g.numJobs(jobs)).isInstanceOf(IllegalArgumentException.class)
                        .hasMessageContaining("--iodepth 1024 x --numjobs " + jobs).hasMessageContaining("MiB of heap");
            }
            // What fits still runs.
            BenchResult r = new LoadGenerator(dev, w(Workload.Pattern.RANDREAD, 4096, 64, 50)).numJobs(2).run(null);
            assertThat(r.errors()).isZero();
            assertThat(r.readIos()).isPositive();
        }
    }

    /** A test device over a RamDisk: its size and limits, writable; subclasses say how bios go to it. */
    private abstract static class OverRam implements BlockDevice {
        final RamDisk ram;

        OverRam(RamDisk ram) {
            this.ram = ram;
        }

        @Override public long size() { return ram.size(); }
        @Override public io.biostack.block.QueueLimits limits() { return ram.limits(); }
        @Override public boolean isReadOnly() { return false; }
        @Override public void close() { }
    }

    /** A RamDisk that records the order of ops and completes FLUSH late (or fails it), from another thread. */
    private static BlockDevice flushRecorder(RamDisk ram, java.util.List<io.biostack.block.Op> ops,
            java.util.concurrent.atomic.AtomicInteger inflightAtFlush, long flushDelayMs, boolean failFlush) {
        java.util.concurrent.atomic.AtomicInteger inflight = new java.util.concurrent.atomic.AtomicInteger();
        return new OverRam(ram) {
            @Override public String name() { return "flushes"; }
            @Override public void submit(io.biostack.block.Bio bio) {
                synchronized (ops) {
                    ops.add(bio.op());
                }
                if (bio.op() == io.biostack.block.Op.FLUSH) {
                    inflightAtFlush.set(inflight.get());
                    Thread.ofPlatform().start(() -> {
                        try {
                            Thread.sleep(flushDelayMs);
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
                        if (failFlush) {
                            bio.fail(io.biostack.block.Status.IOERR, "flush refused by the test device");
                        } else {
                            ram.submit(bio);
                        }
                    });
                    return;
                }
                inflight.incrementAndGet();
                io.biostack.block.EndIo up = bio.endIoCallback();
                bio.setEndIo(b -> {
                    inflight.decrementAndGet();
                    up.endIo(b);
                });
                ram.submit(bio);
            }
        };
    }

    @Test
    void endFsyncFlushesOnceAfterTheLastWriteAndCountsTheFlushInTheRun() throws Exception {
        java.util.List<io.biostack.block.Op> ops = new java.util.ArrayList<>();
        java.util.concurrent.atomic.AtomicInteger atFlush = new java.util.concurrent.atomic.AtomicInteger(-1);
        try (RamDisk ram = new RamDisk("ram3", 8 << 20)) {
            BenchResult r = new LoadGenerator(flushRecorder(ram, ops, atFlush, 400, false),
                    w(Workload.Pattern.RANDWRITE, 4096, 8, 200)).endFsync(true).run(null);
            assertThat(r.errors()).isZero();
            assertThat(r.writeIos()).isPositive();
            // One flush, the last op, sent when no write was in flight; its 400 ms are in the run.
            assertThat(ops.stream().filter(o -> o == io.biostack.block.Op.FLUSH).count()).isOne();
            assertThat(ops.getLast()).isEqualTo(io.biostack.block.Op.FLUSH);
            assertThat(atFlush.get()).isZero();
            assertThat(r.elapsedNs()).isGreaterThanOrEqualTo(600_000_000L);
        }
        ops.clear();
        try (RamDisk ram = new RamDisk("ram4", 8 << 20)) {
            BenchResult r = new LoadGenerator(flushRecorder(ram, ops, atFlush, 0, false),
                    w(Workload.Pattern.RANDWRITE, 4096, 8, 100)).run(null);
            assertThat(ops).doesNotContain(io.biostack.block.Op.FLUSH);
            assertThat(r.elapsedNs()).isLessThan(400_000_000L);
        }
    }

    @Test
    void aFailedEndFsyncCountsAsAnErrorAndSaysWhy() throws Exception {
        java.util.List<io.biostack.block.Op> ops = new java.util.ArrayList<>();
        try (RamDisk ram = new RamDisk("ram5", 8 << 20)) {
            BenchResult r = new LoadGenerator(flushRecorder(ram, ops, new java.util.concurrent.atomic.AtomicInteger(), 0, true),
                    w(Workload.Pattern.RANDWRITE, 4096, 4, 100)).endFsync(true).run(null);
            assertThat(r.errors()).isOne();
            assertThat(r.firstError()).contains("end flush", "flush refused by the test device");
        }
    }

    /** A RamDisk that records the block of every write, in submission order. */
    private static BlockDevice writeRecorder(RamDisk ram, java.util.List<Long> blocks) {
        return new OverRam(ram) {
            @Override public String name() { return "writes"; }
            @Override public void submit(io.biostack.block.Bio bio) {
                synchronized (blocks) {
                    blocks.add(bio.offset() / 4096);
                }
                ram.submit(bio);
            }
        };
    }

    @Test
    void randomMapWritesEveryBlockOnceBeforeAnyBlockAgain() throws Exception {
        java.util.List<Long> blocks = new java.util.ArrayList<>();
        try (RamDisk ram = new RamDisk("ram6", 1 << 20)) { // 256 blocks of 4 KiB
            BenchResult r = new LoadGenerator(writeRecorder(ram, blocks), w(Workload.Pattern.RANDWRITE, 4096, 1, 100))
                    .randomMap(true).run(null);
            assertThat(r.errors()).isZero();
        }
        assertThat(blocks.size()).isGreaterThan(2 * 256);
        // Each pass of 256 writes covers the 256 blocks, each once; and the order is not sequential.
        for (int pass = 0; pass < 2; pass++) {
            assertThat(new java.util.HashSet<>(blocks.subList(pass * 256, pass * 256 + 256))).hasSize(256);
        }
        assertThat(blocks.subList(0, 256)).isNotEqualTo(java.util.stream.LongStream.range(0, 256).boxed().toList());
    }

    @Test
    void withoutTheRandomMapOffsetsRepeatWithinAPass() throws Exception {
        java.util.List<Long> blocks = new java.util.ArrayList<>();
        try (RamDisk ram = new RamDisk("ram7", 1 << 20)) {
            new LoadGenerator(writeRecorder(ram, blocks), w(Workload.Pattern.RANDWRITE, 4096, 1, 100)).run(null);
        }
        assertThat(blocks.size()).isGreaterThan(256);
        // 256 draws from 256 blocks: about 256/e blocks are missed (the birthday effect).
        assertThat(new java.util.HashSet<>(blocks.subList(0, 256)).size()).isLessThan(200);
    }

    @Test
    void iopsLogCountsEveryCompletionOfTheMeasuredRunPerInterval() throws Exception {
        try (RamDisk ram = new RamDisk("ram8", 8 << 20)) {
            LoadGenerator g = new LoadGenerator(ram, w(Workload.Pattern.RANDWRITE, 4096, 4, 500)).iopsLog(100);
            BenchResult r = g.run(null);
            long[] log = g.iopsLog();
            // 500 ms in 100 ms intervals (the last one may be cut short or missing at the edge).
            assertThat(log.length).isBetween(4, 6);
            long sum = java.util.Arrays.stream(log).sum();
            // The log counts completions up to its last tick; the run counts until the drain.
            assertThat(sum).isPositive().isLessThanOrEqualTo(r.ios() + 4);
            assertThat(sum).isGreaterThan(r.ios() * 7 / 10);
        }
        assertThatThrownBy(() -> new LoadGenerator(new RamDisk("r", 1 << 20), w(Workload.Pattern.RANDREAD, 4096, 1, 10)).iopsLog(0))
                .hasMessageContaining("at least 1 ms");
        assertThat(new LoadGenerator(new RamDisk("r2", 1 << 20), w(Workload.Pattern.RANDREAD, 4096, 1, 10)).iopsLog()).isEmpty();
    }
}
