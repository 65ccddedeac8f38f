package io.biostack.block;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class BioListTest {

    private static Bio tagged(long tag) {
        Bio b = new Bio().init(Op.FLUSH, 0, 0, null);
        b.setPrivateLong(tag);
        return b;
    }

    private static List<Long> drain(BioList l) {
        List<Long> out = new ArrayList<>();
        for (Bio b = l.poll(); b != null; b = l.poll()) {
            out.add(b.privateLong());
        }
        return out;
    }

    @Test
    void pollReturnsBiosInTheOrderAdded() {
        BioList l = new BioList();
        assertThat(l.isEmpty()).isTrue();
        assertThat(l.poll()).isNull();
        for (long i = 0; i < 5; i++) {
            l.add(tagged(i));
        }
        assertThat(l.size()).isEqualTo(5);
        assertThat(drain(l)).containsExactly(0L, 1L, 2L, 3L, 4L);
        assertThat(l.isEmpty()).isTrue();
        assertThat(l.size()).isZero();
    }

    @Test
    void addFirstPutsABioBackInFront() {
        BioList l = new BioList();
        l.add(tagged(1));
        l.add(tagged(2));
        Bio first = l.poll();
        l.addFirst(first);
        assertThat(l.size()).isEqualTo(2);
        assertThat(drain(l)).containsExactly(1L, 2L);
        l.addFirst(tagged(9)); // into an empty list: also the tail
        l.add(tagged(10));
        assertThat(drain(l)).containsExactly(9L, 10L);
    }

    @Test
    void addAllAppendsAQueuesChainInSubmissionOrder() {
        BioQueue q = new BioQueue();
        for (long i = 0; i < 4; i++) {
            q.push(tagged(i));
        }
        BioList l = new BioList();
        l.add(tagged(100));
        l.addAll(q.takeAll());
        l.addAll(null);
        assertThat(l.size()).isEqualTo(5);
        assertThat(drain(l)).containsExactly(100L, 0L, 1L, 2L, 3L);
    }

    @Test
    void aPolledBioCanGoIntoAnotherListWithoutDraggingItsOldNeighbours() {
        BioList a = new BioList();
        a.add(tagged(1));
        a.add(tagged(2));
        Bio one = a.poll();
        BioList b = new BioList();
        b.add(one);
        assertThat(drain(b)).containsExactly(1L);
        assertThat(drain(a)).containsExactly(2L);
    }
}
