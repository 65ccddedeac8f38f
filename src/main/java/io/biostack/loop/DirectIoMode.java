package io.biostack.loop;

/** Whether a loop device bypasses the page cache ({@code losetup --direct-io=on|off}). */
public enum DirectIoMode {
    /** O_DIRECT; refused when the offset or block size does not fit the file's alignment. */
    ON,
    /** Through the page cache. */
    OFF,
    /** O_DIRECT when the offset and block size fit the file's direct-I/O alignment, as loop.c decides. */
    AUTO;

    /**
     * The mode {@code s} names (as {@code --direct-io} takes it).
     *
     * @param s on, off or auto, in any case (1/true and 0/false are taken too)
     * @return the mode
     * @throws IllegalArgumentException when {@code s} names no mode
     */
    public static DirectIoMode parse(String s) {
        return switch (s.toLowerCase(java.util.Locale.ROOT)) {
            case "on", "1", "true" -> ON;
            case "off", "0", "false" -> OFF;
            case "auto" -> AUTO;
            default -> throw new IllegalArgumentException("direct-io must be on, off or auto: " + s);
        };
    }
}
