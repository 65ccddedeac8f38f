package io.biostack.layer.part;

import java.util.List;

/**
 * What {@link Partitions#read} found on a disk.
 *
 * @param scheme     "mbr", "gpt" or "none"
 * @param partitions by number
 * @param warnings   what the kernel would log while scanning: entries skipped or truncated at
 *                   the end of the disk, a broken EBR chain, a primary GPT header replaced by its
 *                   backup
 */
public record PartitionTable(String scheme, List<Partition> partitions, List<String> warnings) {
    /** Copies the lists (the table is immutable). */
    public PartitionTable {
        partitions = List.copyOf(partitions);
        warnings = List.copyOf(warnings);
    }
}
