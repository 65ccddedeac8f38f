package io.biostack.block;

import java.io.IOException;
import java.util.List;

/**
 * One table line, parsed and checked, ready to open once the devices it names are open: what a
 * target's static {@code parseTable} method returns (see {@link TableArgs}). Parsing and opening
 * are two steps so that a stack file's mistakes are found before anything opens.
 */
public interface TableSpec {
    /**
     * The devices this line is built on, in the order the line names them.
     *
     * @return the device names (not to be modified)
     */
    List<String> deps();

    /**
     * Builds the device. Mapped targets return a {@code Target} of the layer package; leaves
     * return any {@link BlockDevice}. The caller owns the device returned and closes it; the
     * devices {@code devices} gives stay owned by whoever opened them.
     *
     * @param name    the name of the device being built
     * @param length  the segment's bytes, or -1 for the target's natural size (whole-device lines)
     * @param devices the devices opened before this one, by name
     * @return the open device
     * @throws IOException when a file or a remote leaf can't be opened
     */
    BlockDevice open(String name, long length, Resolver devices) throws IOException;

    /** Looks up devices opened before this one. */
    @FunctionalInterface
    interface Resolver {
        /**
         * The open device called {@code name}.
         *
         * @param name a name the line listed in {@link TableSpec#deps()}
         * @return the device, owned by whoever opened it
         */
        BlockDevice device(String name);
    }

    /** The open step of a spec, as a lambda: {@link TableArgs#spec} adds the dependencies. */
    @FunctionalInterface
    interface Opener {
        /**
         * As {@link TableSpec#open}.
         *
         * @param name    the name of the device being built
         * @param length  the segment's bytes, or -1 for the natural size
         * @param devices the devices opened before this one
         * @return the open device, owned by the caller
         * @throws IOException when a file or a remote leaf can't be opened
         */
        BlockDevice open(String name, long length, Resolver devices) throws IOException;
    }
}
