package io.biostack;

import io.biostack.block.Bio;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.lang.module.ModuleDescriptor;
import java.lang.reflect.Constructor;
import java.lang.reflect.Executable;
import java.lang.reflect.Field;
import java.lang.reflect.GenericArrayType;
import java.lang.reflect.Member;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.lang.reflect.TypeVariable;
import java.lang.reflect.WildcardType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The exported API names no internal type: every public or protected signature of every package
 * that module-info exports (supertypes, type parameters' bounds, fields, constructors, methods,
 * thrown types, and every generic argument inside them) is walked by reflection, and a type from
 * a package that is not exported ({@code sys}, {@code uring}, {@code nbd.proto}, {@code cli}, or
 * any other) fails the test, naming the member; so does a class of an exported package that is not
 * public. A library user could not even name such a type.
 */
class ExportedApiTest {
    /** The packages DESIGN.md calls internal; also caught by the general rule, named for clarity. */
    private static final List<String> INTERNAL = List.of("io.biostack.sys", "io.biostack.uring",
            "io.biostack.nbd.proto", "io.biostack.cli");

    @Test
    void noPublicSignatureOfAnExportedPackageNamesAnInternalType() throws Exception {
        Path classes = Path.of(Bio.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        ModuleDescriptor md = descriptor(classes);
        Set<String> exported = new HashSet<>();
        md.exports().stream().filter(e -> !e.isQualified()).forEach(e -> exported.add(e.source()));
        assertThat(exported).contains("io.biostack.block").doesNotContainAnyElementsOf(INTERNAL);
        assertThat(md.packages()).containsAll(INTERNAL);

        Set<String> found = new TreeSet<>();
        int classesSeen = 0;
        for (String pkg : exported) {
            for (Class<?> c : classesOf(classes, pkg)) {
                if (isApi(c)) {
                    classesSeen++;
                    new Walker(c, md.packages(), exported, found).walkClass();
                }
            }
        }
        assertThat(classesSeen).as("API classes walked").isGreaterThan(100);
        assertThat(found).as("public signatures naming a type a library user can't see").isEmpty();
    }

    /** The walker catches what it should: a class built to leak a RingLoop is reported by name. */
    @Test
    void theWalkerReportsAnInternalTypeInsideAGenericArgument() {
        Set<String> found = new TreeSet<>();
        Set<String> all = Set.of("io.biostack", "io.biostack.uring");
        new Walker(Leaky.class, all, Set.of("io.biostack"), found).walkClass();
        assertThat(found).singleElement().asString()
                .contains("loops").contains("io.biostack.uring.RingLoop");
    }

    /** A fixture that leaks: public, so the walker reads it. */
    public static final class Leaky {
        /** Leaks through a generic argument. */
        public List<? extends io.biostack.uring.RingLoop> loops() {
            return List.of();
        }
    }

    private static ModuleDescriptor descriptor(Path classes) throws IOException {
        Module m = Bio.class.getModule();
        if (m.isNamed()) {
            return m.getDescriptor();
        }
        try (InputStream in = Files.newInputStream(classes.resolve("module-info.class"))) {
            return ModuleDescriptor.read(in, () -> packagesUnder(classes));
        }
    }

    private static Set<String> packagesUnder(Path classes) {
        try (Stream<Path> s = Files.walk(classes)) {
            Set<String> out = new HashSet<>();
            s.filter(p -> p.toString().endsWith(".class") && !p.getFileName().toString().equals("module-info.class"))
                    .forEach(p -> out.add(classes.relativize(p.getParent()).toString().replace('/', '.')));
            return out;
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    private static List<Class<?>> classesOf(Path classes, String pkg) throws IOException, ClassNotFoundException {
        List<Class<?>> out = new ArrayList<>();
        try (Stream<Path> s = Files.list(classes.resolve(pkg.replace('.', '/')))) {
            for (Path p : s.sorted().toList()) {
                String f = p.getFileName().toString();
                if (f.endsWith(".class") && !f.equals("package-info.class")) {
                    out.add(Class.forName(pkg + "." + f.substring(0, f.length() - 6), false,
                            ExportedApiTest.class.getClassLoader()));
                }
            }
        }
        return out;
    }

    /** Public, and every class it is nested in is public or protected too. */
    private static boolean isApi(Class<?> c) {
        if (c.isSynthetic() || c.isAnonymousClass() || c.isLocalClass()) {
            return false;
        }
        for (Class<?> k = c; k != null; k = k.getDeclaringClass()) {
            int m = k.getModifiers();
            boolean open = k.getDeclaringClass() == null ? Modifier.isPublic(m) : Modifier.isPublic(m) || Modifier.isProtected(m);
            if (!open) {
                return false;
            }
        }
        return true;
    }

    private static final class Walker {
        private final Class<?> api;
        private final Set<String> modulePackages;
        private final Set<String> exported;
        private final Set<String> found;
        private final Set<TypeVariable<?>> seen = new HashSet<>();

        Walker(Class<?> api, Set<String> modulePackages, Set<String> exported, Set<String> found) {
            this.api = api;
            this.modulePackages = modulePackages;
            this.exported = exported;
            this.found = found;
        }

        void walkClass() {
            String where = api.getName();
            for (TypeVariable<?> v : api.getTypeParameters()) {
                type(v, where + "<" + v.getName() + ">");
            }
            if (api.getGenericSuperclass() != null) {
                type(api.getGenericSuperclass(), where + " extends");
            }
            for (Type t : api.getGenericInterfaces()) {
                type(t, where + " implements");
            }
            for (Field f : api.getDeclaredFields()) {
                if (visible(f) && !f.isSynthetic()) {
                    type(f.getGenericType(), where + "." + f.getName());
                }
            }
            for (Constructor<?> c : api.getDeclaredConstructors()) {
                if (visible(c) && !c.isSynthetic() && !api.isEnum()) {
                    executable(c, where + ".<init>");
                }
            }
            Set<Method> methods = new HashSet<>(List.of(api.getMethods())); // inherited public ones too
            for (Method m : api.getDeclaredMethods()) {
                if (Modifier.isProtected(m.getModifiers())) {
                    methods.add(m);
                }
            }
            for (Method m : methods) {
                if (!m.isSynthetic() && !m.isBridge() && m.getDeclaringClass() != Object.class) {
                    executable(m, where + "." + m.getName());
                }
            }
        }

        private static boolean visible(Member m) {
            return Modifier.isPublic(m.getModifiers()) || Modifier.isProtected(m.getModifiers());
        }

        private void executable(Executable e, String where) {
            String sig = where + "(" + String.join(", ", Stream.of(e.getParameterTypes()).map(Class::getSimpleName).toList()) + ")";
            for (TypeVariable<?> v : e.getTypeParameters()) {
                type(v, sig + " <" + v.getName() + ">");
            }
            if (e instanceof Method m) {
                type(m.getGenericReturnType(), sig + " returns");
            }
            for (Type p : e.getGenericParameterTypes()) {
                type(p, sig + " parameter");
            }
            for (Type x : e.getGenericExceptionTypes()) {
                type(x, sig + " throws");
            }
        }

        private void type(Type t, String where) {
            switch (t) {
                case Class<?> c when c.isArray() -> type(c.getComponentType(), where);
                case Class<?> c -> check(c, where);
                case ParameterizedType p -> {
                    type(p.getRawType(), where);
                    if (p.getOwnerType() != null) {
                        type(p.getOwnerType(), where);
                    }
                    for (Type a : p.getActualTypeArguments()) {
                        type(a, where);
                    }
                }
                case WildcardType w -> {
                    for (Type b : w.getUpperBounds()) {
                        type(b, where);
                    }
                    for (Type b : w.getLowerBounds()) {
                        type(b, where);
                    }
                }
                case GenericArrayType g -> type(g.getGenericComponentType(), where);
                case TypeVariable<?> v -> {
                    if (seen.add(v)) {
                        for (Type b : v.getBounds()) {
                            type(b, where);
                        }
                    }
                }
                default -> throw new IllegalStateException("unknown kind of type " + t + " at " + where);
            }
        }

        private void check(Class<?> c, String where) {
            if (c.isPrimitive()) {
                return;
            }
            String pkg = c.getPackageName();
            if (modulePackages.contains(pkg) && !exported.contains(pkg)) {
                found.add(where + " names " + c.getName() + " (package " + pkg + " is not exported)");
            } else if (modulePackages.contains(pkg) && !isApi(c)) {
                found.add(where + " names " + c.getName() + " (not public)");
            }
        }
    }
}
