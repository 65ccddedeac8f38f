package io.biostack.cli;

import io.biostack.block.Sizes;

/** A size on the command line (4k, 1M, 2G), parsed by {@link Sizes}. */
public record SizeArg(long bytes) {
    public static SizeArg parse(String s) {
        return new SizeArg(Sizes.parse(s));
    }

    @Override
    public String toString() {
        return Long.toString(bytes);
    }
}
