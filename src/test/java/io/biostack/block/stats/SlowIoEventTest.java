package io.biostack.block.stats;

import io.biostack.stack.Stack;
import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

@Timeout(60)
class SlowIoEventTest {
    @TempDir
    Path dir;

    @Test
    void aDelayTargetsReadsShowUpAsSlowIoEventsAndTheFastLeafsDoNot() throws Exception {
        // The default threshold is 10 ms; the delay target holds reads back 30 ms.
        assertThat(StatsConfig.SLOW_IO_NS).isEqualTo(10_000_000L);
        Path jfr = dir.resolve("slow.jfr");
        try (Recording rec = new Recording()) {
            rec.enable(SlowIoEvent.class);
            rec.enable("biostack.MirrorResync");
            rec.start();
            try (Stack st = Stack.open("r0: ram 1M\nslow: delay r0 0 30 r0 0 0\n", "t"); Arena a = Arena.ofShared()) {
                for (int i = 0; i < 3; i++) {
                    st.device("slow").read(8192L * i, a.allocate(4096, 4096)).get(10, java.util.concurrent.TimeUnit.SECONDS);
                }
                st.device("slow").write(0, a.allocate(4096, 4096)).get(10, java.util.concurrent.TimeUnit.SECONDS); // writes are not delayed
            }
            MirrorResyncEvent.emit("m0", "b", 1 << 20, "ok", System.nanoTime() - 5_000_000);
            rec.stop();
            rec.dump(jfr);
        }
        List<RecordedEvent> events = RecordingFile.readAllEvents(jfr);
        List<RecordedEvent> slow = events.stream().filter(e -> e.getEventType().getName().equals("biostack.SlowIo")).toList();
        assertThat(slow).hasSize(3);
        for (int i = 0; i < 3; i++) {
            RecordedEvent e = slow.get(i);
            assertThat(e.getString("device")).isEqualTo("slow");
            assertThat(e.getString("op")).isEqualTo("read");
            assertThat(e.getLong("offset")).isEqualTo(8192L * i);
            assertThat(e.getLong("length")).isEqualTo(4096);
            assertThat(e.getDuration("latency")).isGreaterThanOrEqualTo(Duration.ofMillis(30));
        }
        RecordedEvent resync = events.stream().filter(e -> e.getEventType().getName().equals("biostack.MirrorResync"))
                .findFirst().orElseThrow();
        assertThat(resync.getString("device")).isEqualTo("m0");
        assertThat(resync.getLong("bytes")).isEqualTo(1 << 20);
        assertThat(resync.getDuration("took")).isGreaterThanOrEqualTo(Duration.ofMillis(5));
    }

    @Test
    void theThresholdParsesUnitsAndOff() {
        assertThat(StatsConfig.parseDuration("10ms")).isEqualTo(10_000_000L);
        assertThat(StatsConfig.parseDuration("250us")).isEqualTo(250_000L);
        assertThat(StatsConfig.parseDuration("1.5s")).isEqualTo(1_500_000_000L);
        assertThat(StatsConfig.parseDuration("7")).isEqualTo(7_000_000L);
        assertThat(StatsConfig.parseDuration("off")).isEqualTo(Long.MAX_VALUE);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> StatsConfig.parseDuration("soon"))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("10ms");
    }
}
