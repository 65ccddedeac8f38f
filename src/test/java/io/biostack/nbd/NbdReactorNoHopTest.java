package io.biostack.nbd;

import io.biostack.TestEnv;
import io.biostack.block.Bio;
import io.biostack.block.BlockDevice;
import io.biostack.block.QueueLimits;
import io.biostack.file.EngineKind;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;
import io.biostack.uring.IoUring;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Path;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Issue 9's "no hop": on the io_uring reactors a request is parsed and its bio submitted on a
 * reactor thread, and the file I/O goes down that reactor's own ring: the file engine's shared
 * worker does no work for it. On the java.nio reactors, too, requests are submitted where they
 * are parsed.
 */
class NbdReactorNoHopTest {
    @TempDir
    Path dir;

    /** Passes bios through, noting the thread each was submitted on. */
    static final class Recording implements BlockDevice {
        final BlockDevice below;
        final Set<String> submitThreads = ConcurrentHashMap.newKeySet();

        Recording(BlockDevice below) {
            this.below = below;
        }

        @Override
        public String name() {
            return below.name();
        }

        @Override
        public long size() {
            return below.size();
        }

        @Override
        public QueueLimits limits() {
            return below.limits();
        }

        @Override
        public boolean isReadOnly() {
            return below.isReadOnly();
        }

        @Override
        public void submit(Bio bio) {
            submitThreads.add(Thread.currentThread().getName());
            below.submit(bio);
        }

        @Override
        public void close() {
            below.close();
        }
    }

    @Test
    void readsAreSubmittedOnReactorsAndTheSharedFileWorkerStaysIdle() throws Exception {
        TestEnv.require(IoUring.isAvailable(), "io_uring");
        // The build's second run forces the java.nio reactors: submissions are still on reactors,
        // but the file I/O is the thread engine's, so the worker check is for io_uring only.
        boolean uringLoop = !"threads".equals(System.getProperty("biostack.engine"));
        Path sock = dir.resolve("nohop.sock");
        try (LoopDevice loop = LoopDevice.open(dir.resolve("d.img"),
                     LoopConfig.defaults().withCreateSize(8 << 20).withEngine(uringLoop ? EngineKind.URING : EngineKind.THREADS));
             NbdServer server = NbdServer.builder().export("disk", new Recording(loop)).unixSocket(sock).threads(2).start();
             RawNbdClient c = RawNbdClient.open(sock, "disk", false, false)) {
            Recording dev = (Recording) server.export("disk").device();
            assertThat(c.read(0, 4096)).hasSize(4096); // the worker thread exists from here on
            ThreadMXBean mx = ManagementFactory.getThreadMXBean();
            long worker = workerCpu(mx);
            for (int i = 0; i < 3000; i++) {
                assertThat(c.read((i % 2048) * 4096L, 4096)).hasSize(4096);
            }
            long workerAfter = workerCpu(mx);
            assertThat(dev.submitThreads).allMatch(n -> n.startsWith("nbd-reactor-"));
            if (uringLoop) {
                assertThat(server.describeLoop()).contains("io_uring reactors");
                assertThat((workerAfter - worker) / 1_000_000).as("ms of CPU on the shared io_uring worker for 3000 reads")
                        .isLessThan(15);
            }
        }
    }

    /** CPU time of the file engine's shared worker thread ("biostack-uring"), or 0 when it has none. */
    private static long workerCpu(ThreadMXBean mx) {
        long sum = 0;
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().equals("biostack-uring")) {
                sum += Math.max(0, mx.getThreadCpuTime(t.threadId()));
            }
        }
        return sum;
    }
}
