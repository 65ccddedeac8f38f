package io.biostack.nbd;

import io.biostack.block.StatusContext;

/**
 * One metadata context a client selected with NBD_OPT_SET_META_CONTEXT (doc/proto.md, "Metadata
 * querying"): the id the server gave it in NBD_REP_META_CONTEXT, which every
 * NBD_REPLY_TYPE_BLOCK_STATUS chunk for it carries, its name, and what answers it.
 *
 * @param id     the context id of this session (base:allocation is always {@code BASE_ALLOCATION_ID})
 * @param name   the full name, namespace included
 * @param source what answers it, or null for {@code base:allocation} (the device's own extentAt)
 */
record MetaContext(int id, String name, StatusContext source) {
    /** Most contexts one session may select: every chunk of a BLOCK_STATUS reply fits one send's header area. */
    static final int MAX_SELECTED = 8;
    static final MetaContext[] NONE = new MetaContext[0];
}
