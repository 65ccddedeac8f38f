package io.biostack.layer.snapshot;

import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.Map;
import java.util.Objects;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.fail;

class LongMapTest {
    @Test
    void agreesWithAHashMapThroughGrowthAndBackwardShiftRemovals() {
        // Dense keys (as chunk numbers are) and a few huge ones, many removals: every removal
        // moves the entries after it, and a lookup after it must still find each of them.
        LongMap<Long> m = new LongMap<>();
        Map<Long, Long> model = new HashMap<>();
        Random r = new Random(17);
        for (int i = 0; i < 60_000; i++) {
            long k = r.nextInt(4) == 0 ? r.nextLong(Long.MAX_VALUE) : r.nextInt(5_000);
            switch (r.nextInt(3)) {
                case 0, 1 -> {
                    m.put(k, (long) i);
                    model.put(k, (long) i);
                }
                default -> {
                    Long got = m.remove(k);
                    Long want = model.remove(k);
                    if (!Objects.equals(got, want)) {
                        fail("remove(" + k + ") gave " + got + ", not " + want);
                    }
                }
            }
            if (i % 997 == 0) {
                assertThat(m.size()).isEqualTo(model.size());
            }
        }
        assertThat(m.size()).isEqualTo(model.size());
        for (Map.Entry<Long, Long> e : model.entrySet()) {
            if (!e.getValue().equals(m.get(e.getKey()))) {
                fail("get(" + e.getKey() + ") gave " + m.get(e.getKey()) + ", not " + e.getValue());
            }
        }
        for (long k = 0; k < 5_000; k++) {
            if (m.containsKey(k) != model.containsKey(k)) {
                fail("containsKey(" + k + ") is " + m.containsKey(k));
            }
        }
        long[] keys = m.keys();
        assertThat(keys).hasSize(model.size());
        assertThat(java.util.Arrays.stream(keys).boxed().collect(java.util.stream.Collectors.toSet())).isEqualTo(model.keySet());
    }

    @Test
    void negativeKeysAndNullValuesAreRefused() {
        LongMap<String> m = new LongMap<>();
        assertThatThrownBy(() -> m.put(-1, "x")).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("keys >= 0");
        assertThatThrownBy(() -> m.put(1, null)).isInstanceOf(IllegalArgumentException.class);
        assertThat(m.size()).isZero();
        assertThat(m.get(1)).isNull();
        assertThat(m.remove(1)).isNull();
    }
}
