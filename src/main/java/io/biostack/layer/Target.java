package io.biostack.layer;

import io.biostack.block.BlockDevice;

import java.util.List;

/**
 * A device-mapper target: a {@link BlockDevice} that can also say its table line, report status
 * and take messages, as {@code dmsetup table|status|message} ask of the kernel's targets
 * ({@code struct target_type}: {@code status}, {@code message}).
 *
 * <p>A target built on other devices does not own them: closing it stops its own work (threads,
 * timers) and leaves the devices below to whoever opened them.
 */
public interface Target extends BlockDevice {
    /**
     * The target's name in a table line: "linear", "striped", "mirror", ...
     *
     * @return the name as it starts a table line
     */
    String targetType();

    /**
     * The table arguments after the target name, as {@code dmsetup table} prints them.
     *
     * @return the arguments, devices by name and offsets and lengths in 512-byte sectors
     */
    String table();

    /**
     * The status arguments, as {@code dmsetup status} prints them after the target name.
     *
     * @return the status words, empty when the target has nothing to report
     */
    default String status() {
        return "";
    }

    /**
     * Handles {@code dmsetup message}: returns the answer (may be empty), or throws
     * {@link IllegalArgumentException} with a message that says what is wrong.
     *
     * @param argv the message's words
     * @return the answer, empty when there is nothing to say
     * @throws IllegalArgumentException when the target takes no such message
     */
    default String message(List<String> argv) {
        throw new IllegalArgumentException(targetType() + " takes no messages");
    }
}
