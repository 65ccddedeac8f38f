package io.biostack.layer.crypt;

import org.bouncycastle.crypto.generators.Argon2BytesGenerator;
import org.bouncycastle.crypto.params.Argon2Parameters;

/**
 * Argon2 (RFC 9106), the key derivation of LUKS2 keyslots ({@code argon2i}, {@code argon2id}).
 *
 * <p>This first version delegates to BouncyCastle's {@link Argon2BytesGenerator}, which fills
 * the lanes one after another on the heap; the parallel off-heap implementation replaces the body
 * of {@link #derive} and keeps BouncyCastle as its test oracle. Stateless; nothing is kept.
 */
public final class Argon2 {
    private Argon2() {
    }

    /** The variant (RFC 9106 section 3.1, the {@code y} parameter). */
    public enum Type {
        /** Data-dependent addressing (y = 0). */
        ARGON2D(0),
        /** Data-independent addressing (y = 1): LUKS2's {@code argon2i}. */
        ARGON2I(1),
        /** Hybrid (y = 2): LUKS2's {@code argon2id}, cryptsetup's default. */
        ARGON2ID(2);

        /** The RFC's {@code y}. */
        public final int y;

        Type(int y) {
            this.y = y;
        }
    }

    /**
     * Derives {@code outLen} bytes (Argon2 version 0x13, no secret, no associated data).
     *
     * @param type       the variant
     * @param password   the passphrase or key file bytes; not kept
     * @param salt       the salt, at least 8 bytes
     * @param iterations passes over memory ({@code t}), at least 1
     * @param memoryKiB  memory in KiB ({@code m}), at least 8 x lanes
     * @param lanes      parallelism ({@code p}), 1 to 2^24-1
     * @param outLen     bytes wanted ({@code T}), at least 4
     * @return a new array of {@code outLen} bytes; the caller owns it and should wipe it
     */
    public static byte[] derive(Type type, byte[] password, byte[] salt, int iterations, int memoryKiB,
                                int lanes, int outLen) {
        Argon2Parameters params = new Argon2Parameters.Builder(type.y)
                .withVersion(Argon2Parameters.ARGON2_VERSION_13)
                .withSalt(salt)
                .withIterations(iterations)
                .withMemoryAsKB(memoryKiB)
                .withParallelism(lanes)
                .build();
        Argon2BytesGenerator gen = new Argon2BytesGenerator();
        gen.init(params);
        byte[] out = new byte[outLen];
        gen.generateBytes(password, out);
        return out;
    }
}
