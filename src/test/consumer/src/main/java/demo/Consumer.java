package demo;

import io.biostack.block.BioFlags;
import io.biostack.block.IoIter;
import io.biostack.file.BackingFile;
import io.biostack.file.DirectIo;
import io.biostack.file.EngineKind;
import io.biostack.loop.LoopConfig;
import io.biostack.loop.LoopDevice;

import java.nio.file.Path;
import java.util.Arrays;

/** Writes through a loop device, reads back with direct I/O, and says where it ran. */
public final class Consumer {
    public static void main(String[] args) throws Exception {
        Path image = Path.of(args[0]);
        byte[] written = new byte[4096];
        Arrays.fill(written, (byte) 0x5a);
        try (LoopDevice dev = LoopDevice.open(image, LoopConfig.defaults().withCreateSize(1 << 20))) {
            dev.write(8192, IoIter.of(written), BioFlags.FUA).join();
            byte[] read = new byte[4096];
            dev.read(8192, IoIter.of(read)).join();
            System.out.println("loop size=" + dev.size() + " same=" + Arrays.equals(read, written));
        }
        try (BackingFile file = BackingFile.open(image, true, true, EngineKind.AUTO)) {
            byte[] read = new byte[4096];
            long n = DirectIo.read(file, 8192, IoIter.of(read)).join();
            System.out.println("directio bytes=" + n + " same=" + Arrays.equals(read, written));
        }
        System.out.println("module " + Consumer.class.getModule().getName()
                + " uses " + LoopDevice.class.getModule().getName());
        System.out.println("picocli " + (present("picocli.CommandLine") ? "present" : "absent"));
    }

    private static boolean present(String className) {
        try {
            Class.forName(className);
            return true;
        } catch (ClassNotFoundException e) {
            return false;
        }
    }
}
