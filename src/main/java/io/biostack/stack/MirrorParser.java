package io.biostack.stack;

import io.biostack.layer.Leg;
import io.biostack.layer.Mirror;

import java.util.ArrayList;
import java.util.List;

/**
 * The table line of {@link Mirror}, as dm-raid1's constructor ({@code mirror_ctr}) reads it:
 * {@code [core <#args> REGION [sync|nosync] | disk <#args> LOGDEV REGION [sync|nosync]] [N]
 * (DEV OFFSET)+ [<#features> handle_errors]}. It lives in {@code stack} beside
 * {@link LogWritesParser} because it reads {@link Targets.Args}, and {@code layer} must not
 * import {@code stack}.
 */
final class MirrorParser {
    private MirrorParser() {
    }

    static Targets.Spec parse(Targets.Args a) {
        long region = Mirror.DEFAULT_REGION;
        boolean nosync = true;
        String logDev = null;
        int n;
        if (a.hasNext() && (a.peek().equals("core") || a.peek().equals("disk"))) {
            boolean disk = a.next("log type").equals("disk");
            long nargs = a.number("number of log arguments");
            long min = disk ? 2 : 1;
            if (nargs < min || nargs > min + 1) {
                throw a.bad(disk ? "disk log takes 2 or 3 arguments: <log device> <region size> [sync|nosync]"
                        : "core log takes 1 or 2 arguments: <region size> [sync|nosync]");
            }
            if (disk) {
                logDev = a.dev("log device");
            }
            region = a.bytes("region size");
            nosync = false;
            if (nargs == min + 1) {
                String s = a.next("sync|nosync");
                switch (s) {
                    case "nosync" -> nosync = true;
                    case "sync" -> nosync = false;
                    default -> throw a.bad("log argument must be sync or nosync, not '" + s + "'");
                }
            }
            n = (int) a.number("number of legs");
        } else if (a.hasNext() && a.peek().chars().allMatch(Character::isDigit) && a.left() % 2 == 1) {
            n = (int) a.number("number of legs");
        } else {
            n = a.left() / 2;
        }
        if (n < 1) {
            throw a.bad("a mirror needs at least one leg: DEV OFFSET ...");
        }
        List<String[]> legs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            String d = a.dev("DEV of leg " + (i + 1));
            String off = a.next("OFFSET of leg " + (i + 1));
            try {
                StackFile.parseSectorsOrSize(off);
            } catch (IllegalArgumentException e) {
                throw a.bad("OFFSET of leg " + (i + 1) + " '" + off + "' is not a number of sectors or a size");
            }
            if (d.equals(logDev)) {
                throw a.bad("the log device " + d + " can't be a leg too");
            }
            legs.add(new String[] {d, off});
        }
        if (a.hasNext()) {
            long nf = a.number("number of features");
            for (int i = 0; i < nf; i++) {
                String f = a.next("feature");
                if (!f.equals("handle_errors")) {
                    throw a.bad("unknown feature '" + f + "' (handle_errors)");
                }
            }
        }
        a.end();
        long reg = region;
        boolean ns = nosync;
        String lg = logDev;
        return a.spec((name, len, r) -> {
            List<Leg> ls = new ArrayList<>();
            long left = Long.MAX_VALUE;
            for (String[] l : legs) {
                Leg leg = new Leg(r.device(l[0]), StackFile.parseSectorsOrSize(l[1]));
                ls.add(leg);
                left = Math.min(left, leg.device().size() - leg.start());
            }
            return new Mirror(name, ls, len < 0 ? left : len, reg, ns, lg == null ? null : r.device(lg));
        });
    }
}
