/*
 * frontend.h — the .kiln model language: text in, kiln_module out.
 *
 * The folder's interface. The public entry points are kiln_model_file_parse()
 * and kiln_model_file_load() in kiln.h; the rest of Kiln calls those. The
 * frontend knows the IR and nothing else: no passes, no LLVM, and no file
 * but the model file.
 *
 * Inside, one small file per job (Lua's llex/lparser split):
 *   lex.c     tokens with file, line and column; errors with a caret
 *   parse.c   recursive descent into a syntax tree (ast.h)
 *   build.c   statements into a module: names, inputs, outputs, functions
 *   args.c    call arguments: binding by position or keyword, conversions
 *   layers.c  layers (dense, flatten, activations, add) as primitive ops
 *   train.c   losses, metrics, the optimizer and the train block
 *   capi.c    the other front end: Keras' Sequential and the compile step
 *             of graph-style modules, from C (kiln.h, "building models")
 * layers.c and train.c each read a call's arguments, then expand it with
 * plain-value helpers (expand.h) that capi.c calls too: one expansion for
 * both front ends. The grammar is in frontend/GRAMMAR.md.
 */
#ifndef KILN_FRONTEND_FRONTEND_H
#define KILN_FRONTEND_FRONTEND_H

#include "ir/ir.h"

/* Limits, checked before anything is allocated for what exceeds them. */
#define FE_MAX_FILE_BYTES ((size_t)16 << 20) /* a model file of 16 MiB */
#define FE_MAX_LAYERS     100000             /* layer (and other) calls per file */
#define FE_MAX_DEPTH      256                /* nesting of calls and lists */
#define FE_MAX_INPUTS     1024               /* inputs and labels */
#define FE_MAX_NAME       255                /* bytes in a name */

/* Appends what diag `from` collected to `to` (which may be NULL) when st
 * is an error; when the text was lost to a failed allocation, a line
 * "what: <status>" stands for it. Entry points build into a diag of their
 * own, so that the status of the first error is exact whatever the
 * caller's diag held before. */
void fe_diag_move(kiln_diag *from, kiln_diag *to, kiln_status st, const char *what);

/* Parses model-file text into a new module (see kiln_model_file_parse). */
kiln_status fe_parse_model(const char *text, size_t len, const char *filename, kiln_module **out,
                           kiln_diag *d);

#endif
