package io.biostack.stack;

import io.biostack.block.BlockDevice;
import io.biostack.nbd.client.NbdClient;
import io.biostack.nbd.client.NbdUri;

import java.io.IOException;
import java.util.List;

/**
 * Leaves named by one string, everywhere a FILE goes ({@code serve}, {@code bench}), in the
 * spellings qemu-nbd and libnbd use: an NBD URI ({@code nbd://}, {@code nbds://},
 * {@code nbd+unix://}, {@code nbds+unix://}) opens the NBD client leaf; {@code rbd:POOL/IMAGE}
 * opens the target registered as {@code rbd}; anything else is a file, and the caller opens it as
 * it always did. (The stack target {@code nbd URI ...} is {@link NbdClient#parseTable}.)
 */
public final class Leaves {
    private Leaves() {
    }

    /**
     * True when {@code spec} names a remote leaf rather than a file.
     *
     * @param spec a leaf's path or URI as a stack file gives it, or null
     * @return true for {@code nbd://}, {@code nbds://}, {@code nbd+unix://}, {@code nbds+unix://}
     *         and {@code rbd:} specs
     */
    public static boolean isRemote(String spec) {
        return spec != null && (NbdUri.looksLikeNbd(spec) || spec.startsWith("rbd:"));
    }

    /**
     * Opens the remote leaf {@code spec} names as device {@code name}. The caller owns the device
     * and closes it. Throws {@link IllegalArgumentException} for a malformed spec and
     * {@link IOException} (naming the URI) for one that can't be reached.
     *
     * @param name the device's name in the stack
     * @param spec an NBD URI or an {@code rbd:POOL/IMAGE[...]} spec
     * @return the open device, owned by the caller
     * @throws IOException when the export or image can't be reached or opened; the message names
     *         the URI
     * @throws IllegalArgumentException when the spec is malformed
     */
    public static BlockDevice open(String name, String spec) throws IOException {
        if (NbdUri.looksLikeNbd(spec)) {
            return NbdClient.open(name, NbdUri.parse(spec), NbdClient.Options.defaults());
        }
        if (spec.startsWith("rbd:")) {
            Targets.Kind rbd = Targets.kind("rbd");
            if (rbd == null) {
                throw new IllegalArgumentException(spec + ": this build has no rbd target");
            }
            return rbd.parse(List.of(spec.substring(4))).open(name, -1, n -> {
                throw new IllegalArgumentException("rbd:POOL/IMAGE names no other device");
            });
        }
        throw new IllegalArgumentException("'" + spec + "' is not an NBD URI or rbd:POOL/IMAGE");
    }
}
