package io.biostack.block;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class MpmcRingTest {

    @Test
    void capacityRoundsUpToAPowerOfTwo() {
        assertThat(new MpmcRing<>(1).capacity()).isGreaterThanOrEqualTo(1);
        assertThat(new MpmcRing<>(8).capacity()).isEqualTo(8);
        assertThat(new MpmcRing<>(9).capacity()).isEqualTo(16);
        assertThat(new MpmcRing<>(1000).capacity()).isEqualTo(1024);
    }

    @Test
    void offerUntilFullThenPollInFifoOrder() {
        MpmcRing<Integer> r = new MpmcRing<>(8);
        for (int i = 0; i < 8; i++) {
            assertThat(r.offer(i)).isTrue();
        }
        assertThat(r.offer(8)).as("full").isFalse();
        for (int i = 0; i < 8; i++) {
            assertThat(r.poll()).isEqualTo(i);
        }
        assertThat(r.poll()).as("empty").isNull();
    }

    @Test
    void wrapsAroundManyTimes() {
        MpmcRing<Integer> r = new MpmcRing<>(4);
        for (int i = 0; i < 1000; i++) {
            assertThat(r.offer(i)).isTrue();
            assertThat(r.offer(-i)).isTrue();
            assertThat(r.poll()).isEqualTo(i);
            assertThat(r.poll()).isEqualTo(-i);
        }
        assertThat(r.poll()).isNull();
    }

    @Test
    void concurrentProducersAndConsumersLoseAndDuplicateNothing() throws Exception {
        MpmcRing<Integer> r = new MpmcRing<>(64);
        int producers = 2;
        int consumers = 2;
        int perProducer = 50_000;
        int total = producers * perProducer;
        AtomicIntegerArray seen = new AtomicIntegerArray(total);
        AtomicLong taken = new AtomicLong();
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
        for (int p = 0; p < producers; p++) {
            int base = p * perProducer;
            ts.add(Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                } catch (InterruptedException e) {
                    return;
                }
                for (int i = 0; i < perProducer; i++) {
                    while (!r.offer(base + i)) {
                        Thread.onSpinWait();
                    }
                }
            }));
        }
        for (int c = 0; c < consumers; c++) {
            ts.add(Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                } catch (InterruptedException e) {
                    return;
                }
                while (taken.get() < total) {
                    Integer v = r.poll();
                    if (v == null) {
                        Thread.onSpinWait();
                        continue;
                    }
                    seen.incrementAndGet(v);
                    taken.incrementAndGet();
                }
            }));
        }
        go.countDown();
        for (Thread t : ts) {
            t.join(20_000);
        }
        assertThat(taken.get()).isEqualTo(total);
        for (int i = 0; i < total; i++) {
            if (seen.get(i) != 1) {
                assertThat(seen.get(i)).as("element %d taken", i).isEqualTo(1);
            }
        }
        assertThat(r.poll()).isNull();
    }
}
