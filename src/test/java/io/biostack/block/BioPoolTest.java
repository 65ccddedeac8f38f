package io.biostack.block;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

class BioPoolTest {

    @Test
    void getThenPutReusesTheSameBio() {
        BioPool pool = new BioPool(8);
        Bio a = pool.get();
        assertThat(pool.created()).isEqualTo(1);
        a.put();
        Bio b = pool.get();
        assertThat(b).isSameAs(a);
        assertThat(pool.created()).isEqualTo(1);
    }

    @Test
    void createdStopsGrowingOnceWarm() {
        BioPool pool = new BioPool(16);
        for (int round = 0; round < 100; round++) {
            List<Bio> held = new ArrayList<>();
            for (int i = 0; i < 10; i++) {
                held.add(pool.get().init(Op.READ, 0, 0, null));
            }
            held.forEach(Bio::put);
        }
        assertThat(pool.created()).isEqualTo(10);
    }

    @Test
    void putTwiceThrows() {
        BioPool pool = new BioPool(4);
        Bio a = pool.get();
        a.put();
        assertThatThrownBy(a::put).isInstanceOf(IllegalStateException.class).hasMessageContaining("twice");
    }

    @Test
    void putAfterGetAgainIsAllowed() {
        BioPool pool = new BioPool(4);
        Bio a = pool.get();
        a.put();
        Bio again = pool.get();
        assertThat(again).isSameAs(a);
        again.put(); // owned again, so a put is legal
        assertThat(pool.get()).isSameAs(a);
    }

    @Test
    void putClearsSegmentsAndCallback() {
        BioPool pool = new BioPool(4);
        Bio a = pool.get().init(Op.WRITE, 0, 0, x -> { });
        a.addSegment(java.lang.foreign.MemorySegment.ofArray(new byte[512]));
        a.setPrivateData("x");
        a.put();
        Bio b = pool.get();
        assertThat(b).isSameAs(a);
        assertThat(b.segmentCount()).isZero();
        assertThat(b.endIoCallback()).isNull();
        assertThat(b.privateData()).isNull();
    }

    @Test
    void poolFullLetsExtraBiosGoAndKeepsWorking() {
        BioPool pool = new BioPool(4); // holds 4 (power of two)
        List<Bio> held = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            held.add(pool.get());
        }
        held.forEach(Bio::put); // most don't fit and go to the GC
        Set<Bio> again = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        for (int i = 0; i < 20; i++) {
            again.add(pool.get());
        }
        assertThat(again).hasSize(20); // never the same bio twice
        assertThat(pool.created()).isLessThan(40).isGreaterThanOrEqualTo(20);
    }

    /**
     * Four threads, each getting one to three bios and putting them back, 50 000 rounds; returns
     * how many times a bio was seen with two owners at once (tagged while owned).
     */
    private static int hammer(BioPool pool, int threads, int rounds) throws Exception {
        Set<Bio> owned = ConcurrentHashMap.newKeySet();
        AtomicInteger doubleOwned = new AtomicInteger();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            long tag = t + 1;
            ts.add(Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                    Bio[] mine = new Bio[3];
                    for (int r = 0; r < rounds; r++) {
                        int k = 1 + r % 3;
                        for (int i = 0; i < k; i++) {
                            Bio b = pool.get();
                            if (!owned.add(b)) {
                                doubleOwned.incrementAndGet();
                            }
                            b.setPrivateLong(tag);
                            mine[i] = b;
                        }
                        for (int i = 0; i < k; i++) {
                            if (mine[i].privateLong() != tag) {
                                doubleOwned.incrementAndGet(); // someone else wrote their tag on ours
                            }
                            owned.remove(mine[i]);
                            mine[i].put();
                            mine[i] = null;
                        }
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }));
        }
        go.countDown();
        for (Thread t : ts) {
            t.join();
        }
        assertThat(failure.get()).isNull();
        return doubleOwned.get();
    }

    @Test
    void concurrentGetAndPutNeverHandsOneBioToTwoOwners() throws Exception {
        assertThat(hammer(new BioPool(64), 4, 50_000)).isZero();
        assertThat(hammer(new BioPool(4), 4, 50_000)).as("also when the pool overflows").isZero();
    }

    @Test
    void warmPoolStaysWarmWhenFourThreadsShareIt() throws Exception {
        // At most 4 x 3 bios are ever in flight and the pool has room for 64 idle ones: once warm,
        // gets should find bios. A thread descheduled inside the ring's offer or poll must not turn
        // every other thread's get into an allocation (this machine has two cores).
        BioPool pool = new BioPool(64);
        assertThat(hammer(pool, 4, 50_000)).isZero();
        long gets = 4L * 50_000 * 2; // 1 + 2 + 3 bios per 3 rounds = 2 per round on average
        assertThat(pool.created()).as("bios created for %d gets", gets).isLessThan(gets / 1000);
    }
}
