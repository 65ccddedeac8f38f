import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.classfile.ClassFile;
import java.lang.classfile.ClassFileVersion;
import java.lang.classfile.ClassHierarchyResolver;
import java.lang.classfile.ClassModel;
import java.lang.classfile.ClassTransform;
import java.lang.classfile.CodeTransform;
import java.lang.classfile.instruction.DiscontinuedInstruction;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Enumeration;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.jar.JarOutputStream;

/**
 * Rewrites the old class files of a jar (class-file version below 50, Java 6) to version 52
 * (Java 8) with stack maps, so that the JDK's ahead-of-time cache can store them loaded and linked
 * (JEP 483: "Old class has been linked" is skipped for versions below 50, which only the old
 * type-inferring verifier checks). The code itself is unchanged: every instruction is copied as
 * it is, and the StackMapTable that version 50 and later require (JVMS 4.7.4) is computed by the
 * JDK's class-file API (JEP 484) from the jar's own class hierarchy and the runtime's.
 *
 * <p>Run at release time, as a single-file program (no build step):
 * {@code java scripts/UpgradeClassFiles.java IN.jar OUT.jar}. picocli 4.7 targets Java 5; its
 * 169 classes that the short commands load were the part of their start-up the cache could not
 * take. Refuses (exit 1, nothing written) a jar whose code uses JSR/RET, which versions 51 and
 * later forbid (JVMS 4.9.1), rather than write a class the JVM would reject.
 */
public final class UpgradeClassFiles {
    /** Java 8: the oldest version that every JDK 25 feature of the cache accepts, with stack maps. */
    private static final int TARGET_MAJOR = ClassFile.JAVA_8_VERSION;
    /** Java 6: from this version on, the split verifier checks stack maps (JVMS 4.10.1). */
    private static final int FIRST_WITH_STACK_MAPS = ClassFile.JAVA_6_VERSION;

    private UpgradeClassFiles() {
    }

    public static void main(String[] args) throws IOException {
        if (args.length != 2) {
            System.err.println("usage: java UpgradeClassFiles.java IN.jar OUT.jar");
            System.exit(2);
        }
        Path in = Path.of(args[0]);
        Path out = Path.of(args[1]);
        Path tmp = Files.createTempFile(out.toAbsolutePath().getParent(), "upgrade", ".jar");
        int upgraded = 0;
        try (URLClassLoader loader = new URLClassLoader(new URL[] {in.toUri().toURL()}, null);
             JarFile jar = new JarFile(in.toFile());
             OutputStream os = Files.newOutputStream(tmp);
             JarOutputStream jos = new JarOutputStream(os)) {
            // The jar's own classes first, then the runtime's: stack maps need common supertypes.
            ClassFile cf = ClassFile.of(
                    ClassFile.ClassHierarchyResolverOption.of(
                            ClassHierarchyResolver.ofResourceParsing(loader).orElse(ClassHierarchyResolver.defaultResolver())),
                    ClassFile.StackMapsOption.GENERATE_STACK_MAPS);
            // The manifest stays first, as JarInputStream readers expect.
            for (Enumeration<JarEntry> e = jar.entries(); e.hasMoreElements(); ) {
                JarEntry entry = e.nextElement();
                JarEntry copy = new JarEntry(entry.getName());
                copy.setTime(entry.getTime());
                jos.putNextEntry(copy);
                byte[] bytes;
                try (InputStream is = jar.getInputStream(entry)) {
                    bytes = is.readAllBytes();
                }
                if (!entry.isDirectory() && entry.getName().endsWith(".class")
                        && !entry.getName().endsWith("module-info.class")) {
                    ClassModel model = cf.parse(bytes);
                    if (model.majorVersion() < FIRST_WITH_STACK_MAPS) {
                        bytes = upgrade(cf, model, entry.getName());
                        upgraded++;
                    }
                }
                jos.write(bytes);
                jos.closeEntry();
            }
        } catch (IOException | RuntimeException ex) {
            Files.deleteIfExists(tmp);
            throw ex;
        }
        Files.move(tmp, out, StandardCopyOption.REPLACE_EXISTING);
        System.err.println("UpgradeClassFiles: " + upgraded + " classes of " + in.getFileName()
                + " rewritten to class-file version " + TARGET_MAJOR + " with stack maps");
    }

    /** One class: the same members and code, version 52, every method body rebuilt (stack maps). */
    private static byte[] upgrade(ClassFile cf, ClassModel model, String name) {
        CodeTransform refuseJsr = (cb, el) -> {
            if (el instanceof DiscontinuedInstruction) {
                throw new IllegalStateException(name + " uses JSR/RET, which class-file version "
                        + TARGET_MAJOR + " forbids (JVMS 4.9.1): not upgraded");
            }
            cb.with(el);
        };
        ClassTransform version = (cb, el) -> {
            if (el instanceof ClassFileVersion) {
                cb.withVersion(TARGET_MAJOR, 0);
            } else {
                cb.with(el);
            }
        };
        // Rebuilding each body (rather than copying it whole) is what makes the API compute the
        // StackMapTable; an unchanged body would be copied byte for byte, without one.
        return cf.transformClass(model, version.andThen(ClassTransform.transformingMethodBodies(refuseJsr)));
    }
}
