/* runtime.h — internals shared by the runtime's files. */
#ifndef KILN_RUNTIME_RUNTIME_H
#define KILN_RUNTIME_RUNTIME_H

#include "ir/ir.h"

/* Formats one progress line (no newline, no carriage return). On a
 * terminal, with the bar; else the plain form that starts with the epoch. */
void rt_progress_format(ir_sb *sb, const kiln_progress *p, bool tty);

#endif
