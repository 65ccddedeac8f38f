package io.biostack.block;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;

class BioQueueTest {

    private static Bio tagged(long tag) {
        Bio b = new Bio().init(Op.FLUSH, 0, 0, null);
        b.setPrivateLong(tag);
        return b;
    }

    private static List<Long> drain(BioQueue q) {
        List<Long> out = new ArrayList<>();
        for (Bio b = q.takeAll(); b != null; b = BioQueue.next(b)) {
            out.add(b.privateLong());
        }
        return out;
    }

    @Test
    void takeAllOfAnEmptyQueueIsNull() {
        BioQueue q = new BioQueue();
        assertThat(q.isEmpty()).isTrue();
        assertThat(q.takeAll()).isNull();
    }

    @Test
    void takeAllReturnsOneProducersBiosInFifoOrder() {
        BioQueue q = new BioQueue();
        for (long i = 0; i < 10; i++) {
            q.push(tagged(i));
        }
        assertThat(q.isEmpty()).isFalse();
        assertThat(drain(q)).containsExactly(0L, 1L, 2L, 3L, 4L, 5L, 6L, 7L, 8L, 9L);
        assertThat(q.isEmpty()).isTrue();
        assertThat(q.takeAll()).isNull();
    }

    @Test
    void pushReturnsTrueOnlyWhenTheQueueWasEmpty() {
        BioQueue q = new BioQueue();
        assertThat(q.push(tagged(1))).isTrue();
        assertThat(q.push(tagged(2))).isFalse();
        assertThat(q.push(tagged(3))).isFalse();
        assertThat(drain(q)).containsExactly(1L, 2L, 3L);
        assertThat(q.push(tagged(4))).isTrue();
        assertThat(q.push(tagged(5))).isFalse();
        assertThat(drain(q)).containsExactly(4L, 5L);
    }

    @Test
    void nextClearsTheLinkSoABioCanBeQueuedAgain() {
        BioQueue q = new BioQueue();
        Bio a = tagged(1);
        Bio b = tagged(2);
        q.push(a);
        q.push(b);
        Bio first = q.takeAll();
        assertThat(first).isSameAs(a);
        assertThat(BioQueue.next(first)).isSameAs(b);
        assertThat(BioQueue.next(b)).isNull();
        q.push(a);
        assertThat(drain(q)).containsExactly(1L);
    }

    @Test
    void severalProducersBiosAllArriveExactlyOnceInEachProducersOrder() throws Exception {
        BioQueue q = new BioQueue();
        int producers = 4;
        int perProducer = 20_000;
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
        for (int p = 0; p < producers; p++) {
            long base = (long) p << 32;
            ts.add(Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                } catch (InterruptedException e) {
                    return;
                }
                for (int i = 0; i < perProducer; i++) {
                    q.push(tagged(base | i));
                }
            }));
        }
        AtomicBoolean done = new AtomicBoolean();
        Thread joiner = Thread.ofPlatform().start(() -> {
            for (Thread t : ts) {
                try {
                    t.join();
                } catch (InterruptedException e) {
                    return;
                }
            }
            done.set(true);
        });
        go.countDown();
        Map<Long, Long> nextExpected = new HashMap<>();
        long received = 0;
        boolean orderOk = true;
        while (true) {
            boolean finished = done.get();
            for (Bio b = q.takeAll(); b != null; b = BioQueue.next(b)) {
                long tag = b.privateLong();
                long producer = tag >>> 32;
                long seqNo = tag & 0xffffffffL;
                long want = nextExpected.getOrDefault(producer, 0L);
                if (seqNo != want) {
                    orderOk = false;
                }
                nextExpected.put(producer, seqNo + 1);
                received++;
            }
            if (finished) {
                break;
            }
            Thread.onSpinWait();
        }
        joiner.join();
        assertThat(orderOk).as("each producer's bios arrive in its order, none twice, none lost").isTrue();
        assertThat(received).isEqualTo((long) producers * perProducer);
        for (long p = 0; p < producers; p++) {
            assertThat(nextExpected.get(p)).isEqualTo(perProducer);
        }
    }
}
