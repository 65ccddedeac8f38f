import java.lang.instrument.ClassFileTransformer;
import java.lang.instrument.Instrumentation;
import java.security.ProtectionDomain;

/**
 * A Java agent for the fuzz runs only ({@code scripts/fuzz.sh}): it relabels biostack's class
 * files from version 69 (Java 25) to 65 (Java 21) as they load, so that Jazzer 0.24's agent,
 * whose ASM stops at version 68 ("Unsupported class file major version 69"), can instrument
 * them for coverage. Without it Jazzer fuzzes blind: every class of the target is left out, no
 * input adds coverage, and its corpus stays at one empty input.
 *
 * <p>Why a relabel is enough: javac 25 emits no instruction, constant or attribute that
 * version 65 lacks (the last bytecode-level additions, condy and nest mates, came with versions
 * 55 and 56; records and sealed classes with 60 and 61), and the verifier's rules are the same
 * for both versions. The JVM of the run is still 25, so the code runs as compiled. Only classes
 * under {@code io/biostack/} are touched; the JDK's own stay as they are (Jazzer leaves java.*
 * alone).
 *
 * <p>It must be loaded before Jazzer's agent (a {@code -javaagent} on the command line, which
 * the JVM loads before the test attaches Jazzer), since transformers run in the order they were
 * added.
 */
public final class FuzzClassVersionAgent {
    /** JVMS 4.1: u4 magic, u2 minor_version, u2 major_version. */
    private static final int MAJOR_OFFSET = 6;
    /** Java 21's class-file version, which Jazzer's ASM reads. */
    private static final int TARGET_MAJOR = 65;

    private FuzzClassVersionAgent() {
    }

    /**
     * Adds the transformer.
     *
     * @param args unused
     * @param inst the JVM's instrumentation
     */
    public static void premain(String args, Instrumentation inst) {
        inst.addTransformer(new ClassFileTransformer() {
            @Override
            public byte[] transform(ClassLoader loader, String name, Class<?> redefined, ProtectionDomain pd, byte[] b) {
                if (name == null || !name.startsWith("io/biostack/") || b.length < 8
                        || (b[0] & 0xff) != 0xca || (b[1] & 0xff) != 0xfe || (b[2] & 0xff) != 0xba || (b[3] & 0xff) != 0xbe) {
                    return null;
                }
                int major = (b[MAJOR_OFFSET] & 0xff) << 8 | (b[MAJOR_OFFSET + 1] & 0xff);
                if (major <= TARGET_MAJOR) {
                    return null;
                }
                byte[] out = b.clone();
                out[MAJOR_OFFSET] = (byte) (TARGET_MAJOR >>> 8);
                out[MAJOR_OFFSET + 1] = (byte) TARGET_MAJOR;
                return out;
            }
        });
    }
}
