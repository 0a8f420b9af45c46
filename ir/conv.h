/*
 * conv.h — the geometry of the 2-D window ops over NHWC images (conv2d,
 * max_pool2d, avg_pool2d and their gradient rows), shared by shape
 * inference, the interpreter, the workspace column and the lowerings.
 *
 * Padding follows TensorFlow/Keras: `valid` has none; `same` gives
 * ceil(in / stride) outputs and pads in total max((out-1)·s + dk - in, 0),
 * the odd cell at the bottom/right (top = total / 2). dk = (k-1)·d + 1 is
 * the dilated window.
 */
#ifndef KILN_IR_CONV_H
#define KILN_IR_CONV_H

#include "ir/ir.h"

typedef struct ir_win {
    int64_t n, h, w, c;     /* the image operand; n may be KILN_BATCH */
    int64_t kh, kw, co;     /* window (conv: kernel [kh,kw,c,co]; pools: co = c) */
    int64_t sh, sw, dh, dw; /* strides, dilation */
    int64_t oh, ow;         /* output rows, columns */
    int64_t pt, pl;         /* padding at the top, at the left */
    bool conv;
} ir_win;

/* The geometry of window node n (any of the rows above), from its operand
 * types and attributes. Does not validate: infer_* do (ir_win_check). */
void ir_win_of(const ir_node *n, ir_win *g);

/* The output of n's window op: [n, oh, ow, co]. */
ir_type ir_win_out_type(const ir_win *g);

/* im2col + sgemm lowering of the conv gradient rows (conv2d's forward is a
 * direct convolution in registers, codegen/lower_conv.c): the columns of a chunk of
 * output pixels (K = kh·kw·in floats each) go through a buffer, and the
 * chunk's GEMM output (co floats a pixel) gets its epilogue (bias,
 * activation) right after the GEMM. A chunk's columns and output together
 * take at most IR_IM2COL_FLOATS floats (256 KB: half of a Zen 3 core's L2),
 * so the epilogue reads the tile the GEMM has just written from cache.
 * ir_win_im2col_rows: the pixels of a chunk, or 0 when the lowering uses
 * direct loops instead; ir_win_im2col_floats: the column buffer's floats. */
#define IR_IM2COL_FLOATS (1 << 16)
int64_t ir_win_im2col_rows(const ir_win *g);
int64_t ir_win_im2col_floats(const ir_win *g);

/* The window ops run as tasks of the worker pool over ranges of images
 * (codegen/task.h: at most IR_CONV_TASKS = T; the filter and bias gradients
 * always T), each task on one thread with a slot of the workspace of its
 * own: its column buffer and, for the filter gradient, its partial sum
 * (K·co floats), summed over the tasks in task order afterwards. The split
 * depends on the batch, not the thread count: results are the same bits for
 * any --threads, in the JIT and in a .so. ir_win_task_floats: one slot,
 * 64-byte multiple. */
#define IR_CONV_TASKS 8
/* The filter gradient of at most IR_CONV_DIRECT_IN input channels sums in
 * registers (codegen/lower_conv.c): its slot is the partial sum alone. */
#define IR_CONV_DIRECT_IN 4
int64_t ir_win_task_floats(const ir_win *g, bool filter_grad);
/* The ws column of the conv rows: IR_CONV_TASKS slots, fixed bytes. */
void ws_conv2d(const ir_node *n, int64_t *fixed, int64_t *per_sample);
/* conv2d_grad_bias: IR_CONV_TASKS partial sums of co floats (64-byte multiples). */
void ws_conv2d_grad_bias(const ir_node *n, int64_t *fixed, int64_t *per_sample);

#endif
