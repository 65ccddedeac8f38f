package io.biostack.stack;

import io.biostack.layer.logwrites.LogWrites;

/**
 * The table line of {@link LogWrites}: {@code log-writes DEV LOGDEV}, as dm-log-writes' constructor
 * ({@code log_writes_ctr}: exactly a device and a log device). Whole-device only: the device is as
 * large as DEV.
 */
final class LogWritesParser {
    private LogWritesParser() {
    }

    static Targets.Spec parse(Targets.Args a) {
        String dev = a.dev("DEV");
        String log = a.dev("LOGDEV");
        a.end();
        if (dev.equals(log)) {
            throw a.bad("DEV and LOGDEV must be different devices");
        }
        return a.spec((name, len, r) -> {
            LogWrites lw = new LogWrites(name, r.device(dev), r.device(log));
            if (len >= 0 && len != lw.size()) {
                long have = lw.size();
                lw.close();
                throw new IllegalArgumentException("log-writes covers all of " + dev + " (" + have / 512
                        + " sectors), the segment is " + len / 512 + " sectors");
            }
            return lw;
        });
    }
}
