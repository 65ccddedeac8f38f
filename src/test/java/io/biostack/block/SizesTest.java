package io.biostack.block;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

class SizesTest {

    @ParameterizedTest
    @CsvSource({
        "512, 512",
        "0, 0",
        "4k, 4096",
        "4K, 4096",
        "4KiB, 4096",
        "4kb, 4096",
        "1M, 1048576",
        "1MiB, 1048576",
        "1m, 1048576",
        "2G, 2147483648",
        "2GiB, 2147483648",
        "1T, 1099511627776",
        "1P, 1125899906842624",
        "512b, 512",
        "' 64k ', 65536",
    })
    void parseReadsPowersOf1024(String text, long expected) {
        assertThat(Sizes.parse(text)).isEqualTo(expected);
    }

    @ParameterizedTest
    @ValueSource(strings = {"abc", "1.5M", "4x", "k", "M", "4 k", "--1", "1kk", "0x10"})
    void parseRefusesGarbageWithAMessageThatQuotesTheInputAndShowsExamples(String text) {
        assertThatThrownBy(() -> Sizes.parse(text))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("'" + text + "'")
                .hasMessageContaining("4k");
    }

    @Test
    void parseRefusesEmptyAndBlank() {
        assertThatThrownBy(() -> Sizes.parse("")).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("empty");
        assertThatThrownBy(() -> Sizes.parse("   ")).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("empty");
        assertThatThrownBy(() -> Sizes.parse(null)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("empty");
    }

    @Test
    void parseRefusesNegativeSizes() {
        assertThatThrownBy(() -> Sizes.parse("-4k")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("negative").hasMessageContaining("'-4k'");
    }

    @Test
    void parseRefusesSizesThatOverflow() {
        assertThatThrownBy(() -> Sizes.parse("8192P")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("too large");
        assertThat(Sizes.parse("8191P")).isEqualTo(8191L << 50);
    }

    @ParameterizedTest
    @CsvSource({
        "0, 0 B",
        "1, 1 B",
        "1023, 1023 B",
        "1024, 1 KiB",
        "1536, 1.5 KiB",
        "4096, 4 KiB",
        "1048576, 1 MiB",
        "1572864, 1.5 MiB",
        "2147483648, 2 GiB",
        "1099511627776, 1 TiB",
        "1125899906842624, 1 PiB",
        "2305843009213693952, 2048 PiB",
    })
    void humanShowsTheLargestUnitAndOneDecimalWhenNeeded(long bytes, String expected) {
        assertThat(Sizes.human(bytes)).isEqualTo(expected);
    }

    @Test
    void humanNeverRoundsUpToAFullNextUnitInTheSmallerOne() {
        // 1 MiB - 1 byte is 1023.999 KiB: "1024.0 KiB" is the next unit spelled in the wrong one
        assertThat(Sizes.human((1L << 20) - 1)).isEqualTo("1.0 MiB");
        assertThat(Sizes.human((1L << 30) - 1)).isEqualTo("1.0 GiB");
    }

    @Test
    void humanOfParsedSizeReadsBack() {
        for (String s : new String[] {"4k", "64k", "1M", "512M", "2G", "3T"}) {
            long n = Sizes.parse(s);
            assertThat(Sizes.parse(Sizes.human(n).replace(" ", ""))).isEqualTo(n);
        }
    }
}
