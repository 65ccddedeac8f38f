package io.biostack.block;

import java.util.concurrent.CompletableFuture;

/** Builds one bio for a {@code CompletableFuture} convenience and completes the future from its end-io. */
final class FutureBio {
    private static final EndIo COMPLETE = bio -> {
        @SuppressWarnings("unchecked")
        CompletableFuture<Void> f = (CompletableFuture<Void>) bio.privateData();
        Status s = bio.status();
        String why = bio.detail();
        bio.put();
        if (s == Status.OK) {
            f.complete(null);
        } else {
            f.completeExceptionally(new BioException(s, why));
        }
    };

    private FutureBio() {
    }

    static CompletableFuture<Void> submit(BlockDevice dev, Op op, int flags, long offset, IoIter mem, long length) {
        CompletableFuture<Void> f = new CompletableFuture<>();
        Bio bio = new Bio().init(op, flags, offset, COMPLETE);
        bio.setPrivateData(f);
        if (op.hasData()) {
            mem.copy().addTo(bio, length);
        } else if (op != Op.FLUSH) {
            bio.setSize(length);
        }
        try {
            dev.submit(bio);
        } catch (RuntimeException e) {
            f.completeExceptionally(e);
        }
        return f;
    }
}
