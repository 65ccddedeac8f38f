/**
 * Stacks of devices described in a file, and the control socket that works on them while they
 * serve ({@code biostack dm}).
 *
 * <h2>A stack file, one example per target</h2>
 * <pre>
 * # leaves
 * disk0: loop /var/tmp/a.img direct-io=auto            # also offset= sizelimit= sector-size= read-only size=
 * disk1: loop /var/tmp/b.img size=2G                   # size= creates a missing file, sparse
 * scratch: ram 256M                                     # sector-size=4096, read-only
 * p2:    partition disk0 2                              # as losetup -P's disk0p2
 * remote: nbd nbd://10.0.0.2/disk timeout=30s          # an NBD export; connections=N, nbds://, nbd+unix://
 *
 * # device-mapper targets (offsets/lengths: 512-byte sectors, or 4k/1M/2G)
 * lin:   linear disk0 1M                                # whole-device form: to the end of disk0
 * cat:   0 1G linear disk0 0                            # a concatenation: segments end to end
 * cat:   1G 1G linear disk1 0
 * both:  0 2G striped 2 64k disk0 0 disk1 0             # io_min 64k, io_opt 128k
 * pair:  0 1G mirror disk0 0 disk1 0                    # legs taken as in sync
 * pair2: mirror core 1 1024 2 disk0 0 disk1 0 1 handle_errors   # dm-raid1 form: leg 2 resynced
 * hole:  0 1G zero
 * bad:   0 1G error
 * flaky: flakey disk0 0 30 5 1 drop_writes              # up 30 s, down 5 s
 * slow:  delay disk0 0 50 disk0 0 0                     # reads +50 ms, writes not delayed
 * dusty: dust disk0 0 4096                              # then: dm message dusty 'addbadblock 7'
 * enc:   crypt aes-xts-plain64 &lt;64 or 128 hex digits&gt; 0 disk1 0 1 sector_size:4096
 * safe:  luks disk0 keyfile=/etc/biostack/key           # or passphrase=...
 * orig:  snapshot-origin disk0                          # write the origin through this
 * snap:  snapshot disk0 disk1 P 16                      # COW on disk1, persistent, 8k chunks
 * </pre>
 * A '#' starts a comment anywhere on a line (so a passphrase can't hold one: use a key file).
 *
 * <h2>Serving a stack</h2>
 * {@link io.biostack.stack.Stack#open(java.nio.file.Path)} checks and opens the file;
 * {@link io.biostack.stack.Stack#device(String)} gives a device to export or measure;
 * {@link io.biostack.stack.ControlServer#start(io.biostack.stack.Stack, java.nio.file.Path)}
 * opens the control socket; close the server, then the stack.
 */
package io.biostack.stack;
