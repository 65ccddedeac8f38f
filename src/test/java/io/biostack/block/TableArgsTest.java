package io.biostack.block;

import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class TableArgsTest {
    private static TableArgs args(String... words) {
        return new TableArgs("t", List.of(words));
    }

    @Test
    void sectorsAreFiveHundredTwelveBytesAndSuffixesAreSizes() {
        assertThat(TableArgs.sectorsOrSize("8")).isEqualTo(4096);
        assertThat(TableArgs.sectorsOrSize("4k")).isEqualTo(4096);
        assertThat(TableArgs.sectorsOrSize("1M")).isEqualTo(1 << 20);
        assertThatThrownBy(() -> TableArgs.sectorsOrSize("99999999999999999999")).hasMessageContaining("too large");
        assertThatThrownBy(() -> TableArgs.sectorsOrSize(Long.toString(Long.MAX_VALUE / 256))).hasMessageContaining("too large");
        assertThatThrownBy(() -> TableArgs.sectorsOrSize("lots")).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void devicesReadAreTheSpecsDependenciesInOrder() throws Exception {
        TableArgs a = args("b", "0", "a");
        a.dev("DEV");
        a.bytes("OFFSET");
        a.dev("DEV");
        a.end();
        RamDisk ram = new RamDisk("x", 4096);
        TableSpec s = a.spec((name, len, r) -> r.device("a"));
        assertThat(s.deps()).containsExactly("b", "a");
        assertThat(s.open("n", -1, n -> ram)).isSameAs(ram);
    }

    @Test
    void messagesNameTheTargetAndTheArgument() {
        assertThatThrownBy(() -> args().next("DEV")).hasMessage("t: missing DEV");
        assertThatThrownBy(() -> args("-1").number("N")).hasMessage("t: N '-1' is not a number");
        assertThatThrownBy(() -> args("x").bytes("OFFSET")).hasMessage("t: OFFSET 'x' is not a number of sectors or a size (4k, 1M, 2G)");
        TableArgs extra = args("more");
        assertThatThrownBy(extra::end).hasMessage("t: unexpected argument 'more'");
    }

    @Test
    void optionsAreKeyEqualsValueOrABareKey() {
        TableArgs a = args("size=4k", "ro", "offset=", "a=b=c");
        TableArgs.Option size = a.option();
        assertThat(size).isEqualTo(new TableArgs.Option("size=4k", "size", "4k"));
        assertThat(a.size(size)).isEqualTo(4096);
        TableArgs.Option ro = a.option();
        assertThat(ro.key()).isEqualTo("ro");
        assertThat(ro.value()).isNull();
        assertThatThrownBy(() -> a.value(ro)).hasMessage("t: ro needs a value: ro=...");
        TableArgs.Option empty = a.option();
        assertThatThrownBy(() -> a.size(empty)).hasMessage("t: offset needs a value: offset=...");
        assertThat(a.option().value()).isEqualTo("b=c");
    }

    @Test
    void durationsTakeSecondsMillisecondsAndMinutesAndRefuseZero() {
        TableArgs a = args("t=30", "t=1.5s", "t=500ms", "t=2m", "t=0", "t=soon", "t");
        assertThat(a.duration(a.option())).isEqualTo(Duration.ofSeconds(30));
        assertThat(a.duration(a.option())).isEqualTo(Duration.ofMillis(1500));
        assertThat(a.duration(a.option())).isEqualTo(Duration.ofMillis(500));
        assertThat(a.duration(a.option())).isEqualTo(Duration.ofMinutes(2));
        for (String bad : List.of("0", "soon", "")) {
            TableArgs.Option o = a.option();
            assertThatThrownBy(() -> a.duration(o)).hasMessage("t: t= takes a positive duration such as 30s, 500ms or 2m, not '" + bad + "'");
        }
    }
}
