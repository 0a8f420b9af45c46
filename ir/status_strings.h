/*
 * status_strings.h — the text of each kiln_status, for kiln_status_string
 * (ir/support.c) and for P_status_string of AOT shared objects
 * (runtime/aotrt.c), which cannot call into libkiln. Header-only, libc-free.
 */
#ifndef KILN_IR_STATUS_STRINGS_H
#define KILN_IR_STATUS_STRINGS_H

#include "kiln/kiln.h"

static inline const char *kiln_status_text(int s) {
    switch (s) {
    case KILN_OK: return "ok";
    case KILN_ERR_INVALID: return "invalid argument";
    case KILN_ERR_SHAPE: return "shape mismatch";
    case KILN_ERR_PARSE: return "parse error";
    case KILN_ERR_IO: return "i/o error";
    case KILN_ERR_NOMEM: return "out of memory";
    case KILN_ERR_UNSUPPORTED: return "unsupported";
    case KILN_ERR_BACKEND: return "backend error";
    case KILN_ERR_NONFINITE: return "non-finite value";
    case KILN_ERR_LIMIT: return "limit exceeded";
    case KILN_ERR_VERSION: return "version mismatch";
    }
    return "unknown status";
}

#endif
