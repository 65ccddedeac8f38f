package io.biostack.layer.part;

/**
 * One partition found on a disk.
 *
 * @param number      the kernel's number: 1-4 for MBR primaries (and the extended container),
 *                    5 and up for logical partitions; the entry index + 1 for GPT
 * @param startBytes  where it starts on the disk
 * @param lengthBytes how long it is
 * @param type        MBR: the type byte as {@code 0x83}; GPT: the type GUID in lower case, as
 *                    {@code 0fc63daf-8483-4772-8e79-3d69d8477de4}
 */
public record Partition(int number, long startBytes, long lengthBytes, String type) {
    /**
     * The MBR type bytes of extended partitions (DOS 0x05, Windows LBA 0x0f, Linux 0x85).
     *
     * @return true when the type is an MBR extended-partition type (the container of logical ones)
     */
    public boolean isExtended() {
        return type.equals("0x05") || type.equals("0x0f") || type.equals("0x85");
    }

    /**
     * The device name losetup -P gives it: {@code <disk>p<number>}.
     *
     * @param disk the whole disk's device name
     * @return the partition's device name
     */
    public String deviceName(String disk) {
        return disk + "p" + number;
    }
}
