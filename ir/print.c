/*
 * print.c — the .kir text form and Graphviz output.
 *
 *   module @mnist_mlp
 *
 *   param @h1.kernel : f32[784,128] = glorot_uniform
 *   state @optimizer.iterations : i32[] = zeros
 *
 *   train {
 *     optimizer = adam(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07)
 *     epochs = 10
 *   }
 *
 *   func @infer(%x : f32[?,784]) -> f32[?,10] {
 *     %0 = matmul(%x, @h1.kernel) : f32[?,128]  # mnist_mlp.kiln:7:6
 *     %1 = fused(%0, @h1.bias) : f32[?,128] {
 *       %2 = add(%0, @h1.bias) : f32[?,128]
 *       %3 = relu(%2) : f32[?,128]
 *       yield %3
 *     }
 *     assign(@h1.bias, %3)
 *     return %1
 *   }
 *
 * Values are numbered in print order (a region node before its body); the
 * parser reads exactly this back, so print(parse(print(m))) == print(m).
 * Attributes equal to zero/false/empty are omitted (the parser's default).
 * A planned function carries "mem(...)" annotations that also read back.
 */
#include "ir/ir.h"

#include <math.h>
#include <string.h>

typedef struct printer {
    ir_sb *sb;
    const ir_print_opts *o;
    int *num; /* by serial: printed number, -1 if none yet */
    int limit;
    int next;
} printer;

static void print_value(printer *p, const ir_node *n) {
    if (n->op == IR_GLOBAL) {
        ir_sb_printf(p->sb, "@%s", n->name);
    } else if (n->op == IR_ARG) {
        ir_sb_printf(p->sb, "%%%s", n->name);
    } else if (n->serial < p->limit && p->num[n->serial] >= 0) {
        ir_sb_printf(p->sb, "%%%d", p->num[n->serial]);
    } else {
        ir_sb_printf(p->sb, "%%<undefined #%d>", (int)n->serial);
    }
}

static void print_mem(ir_sb *sb, const ir_node *n) {
    if (n->mem_offset < 0 && n->mem_ws < 0 && n->mem_wsb < 0) return;
    const char *sep = "";
    ir_sb_puts(sb, " mem(");
    if (n->mem_offset >= 0) {
        ir_sb_printf(sb, "%s%lld%s", n->mem_batch ? "b:" : "f:", (long long)n->mem_offset,
                     n->mem_inplace ? ",inplace" : "");
        sep = ",";
    }
    if (n->mem_ws >= 0) ir_sb_printf(sb, "%sws:%lld", sep, (long long)n->mem_ws);
    if (n->mem_ws >= 0) sep = ",";
    if (n->mem_wsb >= 0) ir_sb_printf(sb, "%swsb:%lld", sep, (long long)n->mem_wsb);
    ir_sb_putc(sb, ')');
}

static void indent(ir_sb *sb, int depth) {
    for (int i = 0; i < depth; i++) ir_sb_puts(sb, "  ");
}

static void print_node(printer *p, const ir_node *n, int depth) {
    ir_sb *sb = p->sb;
    indent(sb, depth);
    bool has_value = n->type.dtype != IR_VOID;
    if (has_value) {
        p->num[n->serial] = p->next++;
        ir_sb_printf(sb, "%%%d = ", p->num[n->serial]);
    }
    ir_sb_printf(sb, "%s(", ir_op_name(n->op));
    for (int k = 0; k < n->n_in; k++) {
        if (k) ir_sb_puts(sb, ", ");
        print_value(p, n->in[k]);
    }
    ir_sb_putc(sb, ')');
    ir_sb_attrs(sb, &n->attrs);
    if (has_value) {
        ir_sb_puts(sb, " : ");
        ir_sb_type(sb, &n->type);
    }
    print_mem(sb, n);
    if (n->region) ir_sb_puts(sb, " {");
    if (n->loc.file && !p->o->no_locs)
        ir_sb_printf(sb, "  # %s:%d:%d", n->loc.file, (int)n->loc.line, (int)n->loc.col);
    ir_sb_putc(sb, '\n');
    if (n->region) {
        for (int i = 0; i < n->region->n; i++) print_node(p, n->region->nodes[i], depth + 1);
        if (n->region->yield) {
            indent(sb, depth + 1);
            ir_sb_puts(sb, "yield ");
            print_value(p, n->region->yield);
            ir_sb_putc(sb, '\n');
        }
        indent(sb, depth);
        ir_sb_puts(sb, "}\n");
    }
}

void ir_print_func(ir_sb *sb, const kiln_func *f, const ir_print_opts *o) {
    ir_print_opts defaults = {0};
    printer p = {sb, o ? o : &defaults, NULL, f->m->next_serial, 0};
    p.num = ir_malloc(sizeof(int) * ((size_t)p.limit + 1));
    if (!p.num) {
        sb->oom = true;
        return;
    }
    memset(p.num, 0xff, sizeof(int) * ((size_t)p.limit + 1));
    ir_sb_printf(sb, "func @%s(", f->name);
    for (int i = 0; i < f->n_args; i++) {
        ir_sb_printf(sb, "%s%%%s : ", i ? ", " : "", f->args[i]->name);
        ir_sb_type(sb, &f->args[i]->type);
    }
    ir_sb_puts(sb, ") -> ");
    if (f->n_results != 1) ir_sb_putc(sb, '(');
    for (int i = 0; i < f->n_results; i++) {
        if (i) ir_sb_puts(sb, ", ");
        ir_sb_type(sb, &f->results[i]->type);
    }
    if (f->n_results != 1) ir_sb_putc(sb, ')');
    if (f->planned) {
        ir_sb_printf(sb, " mem(fixed=%lld, per_sample=%lld", (long long)f->mem_fixed,
                     (long long)f->mem_per_sample);
        if (f->mem_err >= 0) ir_sb_printf(sb, ", err=%lld", (long long)f->mem_err);
        if (f->mem_chunk > 0) ir_sb_printf(sb, ", chunk=%lld", (long long)f->mem_chunk);
        ir_sb_putc(sb, ')');
    }
    ir_sb_puts(sb, " {\n");
    if (f->planned) {
        /* The batch of the train block only when it is printed: the
         * comment must read the same after a round trip. */
        const ir_train_config *c = &f->m->train;
        int64_t b = c->present && c->batch_size > 0 ? c->batch_size : 128, total;
        ir_sb_printf(sb, "  # arena peak: %lld bytes + %lld bytes/sample = ",
                     (long long)f->mem_fixed, (long long)f->mem_per_sample);
        if (!__builtin_mul_overflow(f->mem_per_sample, b, &total) &&
            !__builtin_add_overflow(total, f->mem_fixed, &total))
            ir_sb_printf(sb, "%lld", (long long)total);
        else /* sizes from a .kir file reach 2^40 bytes, batches 2^31 */
            ir_sb_printf(sb, "%.4g", (double)f->mem_fixed + (double)f->mem_per_sample * (double)b);
        ir_sb_printf(sb, " bytes at batch %lld\n", (long long)b);
    }
    for (int i = 0; i < f->n_nodes; i++) print_node(&p, f->nodes[i], 1);
    ir_sb_puts(sb, "  return");
    for (int i = 0; i < f->n_results; i++) {
        ir_sb_puts(sb, i ? ", " : " ");
        print_value(&p, f->results[i]);
    }
    ir_sb_puts(sb, "\n}\n");
    ir_free(p.num);
}

static void print_init(ir_sb *sb, const kiln_init *in) {
    ir_sb_puts(sb, ir_init_name(in->kind));
    switch (in->kind) {
    case KILN_INIT_CONSTANT:
        ir_sb_putc(sb, '(');
        ir_sb_float(sb, in->a);
        ir_sb_putc(sb, ')');
        break;
    case KILN_INIT_NORMAL:
        ir_sb_puts(sb, "(mean=");
        ir_sb_float(sb, in->a);
        ir_sb_puts(sb, ", stddev=");
        ir_sb_float(sb, in->b);
        ir_sb_putc(sb, ')');
        break;
    case KILN_INIT_UNIFORM:
        ir_sb_puts(sb, "(min=");
        ir_sb_float(sb, in->a);
        ir_sb_puts(sb, ", max=");
        ir_sb_float(sb, in->b);
        ir_sb_putc(sb, ')');
        break;
    default: break;
    }
}

void ir_print_train_config(ir_sb *sb, const ir_train_config *c) {
    if (!c->present) return;
    ir_sb_puts(sb, "train {\n");
    const ir_optimizer *o = &c->opt;
    if (o->kind != IR_OPT_NONE) {
        ir_sb_printf(sb, "  optimizer = %s(lr=", ir_optimizer_name(o->kind));
        ir_sb_float(sb, o->lr);
        if (o->kind == IR_OPT_SGD) {
            ir_sb_puts(sb, ", momentum=");
            ir_sb_float(sb, o->momentum);
            ir_sb_printf(sb, ", nesterov=%s", o->nesterov ? "true" : "false");
        } else {
            ir_sb_puts(sb, ", beta_1=");
            ir_sb_float(sb, o->beta_1);
            ir_sb_puts(sb, ", beta_2=");
            ir_sb_float(sb, o->beta_2);
            ir_sb_puts(sb, ", epsilon=");
            ir_sb_float(sb, o->epsilon);
            if (o->kind == IR_OPT_ADAMW) {
                ir_sb_puts(sb, ", weight_decay=");
                ir_sb_float(sb, o->weight_decay);
            }
        }
        ir_sb_puts(sb, ")\n");
    }
    if (c->epochs) ir_sb_printf(sb, "  epochs = %lld\n", (long long)c->epochs);
    if (c->batch_size) ir_sb_printf(sb, "  batch_size = %lld\n", (long long)c->batch_size);
    if (c->seed) ir_sb_printf(sb, "  seed = %lld\n", (long long)c->seed);
    if (c->metric_accuracy) ir_sb_puts(sb, "  metrics = [accuracy]\n");
    ir_sb_puts(sb, "}\n");
}

void ir_print_module(ir_sb *sb, const kiln_module *m, const ir_print_opts *o) {
    ir_print_module_header(sb, m);
    for (int i = 0; i < m->n_funcs; i++) {
        ir_sb_putc(sb, '\n');
        ir_print_func(sb, m->funcs[i], o);
    }
}

void ir_print_module_header(ir_sb *sb, const kiln_module *m) {
    ir_sb_printf(sb, "module @%s\n", m->name);
    if (m->n_globals) ir_sb_putc(sb, '\n');
    for (int i = 0; i < m->n_globals; i++) {
        const ir_global *g = m->globals[i];
        ir_sb_printf(sb, "%s @%s : ", g->kind == IR_GLOBAL_PARAM ? "param" : "state", g->name);
        ir_sb_type(sb, &g->type);
        ir_sb_puts(sb, " = ");
        print_init(sb, &g->init);
        if (g->kind == IR_GLOBAL_PARAM && !g->trainable) ir_sb_puts(sb, " frozen");
        /* Imported weights (ONNX initializers) are not part of the text. */
        if (g->data) ir_sb_puts(sb, "  # initial value: imported data");
        ir_sb_putc(sb, '\n');
    }
    if (m->train.present) {
        ir_sb_putc(sb, '\n');
        ir_print_train_config(sb, &m->train);
    }
}

char *kiln_module_print(const kiln_module *m) {
    ir_sb sb;
    ir_sb_init(&sb);
    ir_print_module(&sb, m, NULL);
    return ir_sb_take(&sb);
}

void ir_sb_node_short(ir_sb *sb, const ir_node *n) {
    if (n->type.dtype != IR_VOID) ir_sb_printf(sb, "%%#%d = ", (int)n->serial);
    ir_sb_printf(sb, "%s(", ir_op_name(n->op));
    for (int k = 0; k < n->n_in; k++) {
        const ir_node *x = n->in[k];
        if (k) ir_sb_puts(sb, ", ");
        if (x->op == IR_GLOBAL)
            ir_sb_printf(sb, "@%s", x->name);
        else if (x->op == IR_ARG)
            ir_sb_printf(sb, "%%%s", x->name);
        else
            ir_sb_printf(sb, "%%#%d", (int)x->serial);
    }
    ir_sb_putc(sb, ')');
    if (n->type.dtype != IR_VOID) {
        ir_sb_puts(sb, " : ");
        ir_sb_type(sb, &n->type);
    }
}

/* ------------------------------------------------------------- graphviz */

static void dot_escape(ir_sb *sb, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') ir_sb_putc(sb, '\\');
        ir_sb_putc(sb, *s);
    }
}

static void dot_id(ir_sb *sb, const kiln_func *f, int fi, const ir_node *n) {
    (void)f;
    if (n->op == IR_GLOBAL)
        ir_sb_printf(sb, "g%d_%d", fi, (int)n->index);
    else
        ir_sb_printf(sb, "n%d_%d", fi, (int)n->serial);
}

static void dot_node(ir_sb *sb, const kiln_func *f, int fi, const ir_node *n, int depth,
                     int *cluster) {
    char ts[IR_TYPE_STR_MAX];
    if (n->region) {
        ir_sb_printf(sb, "%*ssubgraph cluster_%d_%d {\n", depth * 2, "", fi, (*cluster)++);
        ir_sb_printf(sb, "%*s  label=\"fused%s%s\"; style=\"rounded,filled\"; fillcolor=\"#eef4ff\"; color=\"#4a78c2\";\n",
                     depth * 2, "", n->type.dtype != IR_VOID ? " : " : "",
                     n->type.dtype != IR_VOID ? ir_type_str(&n->type, ts, sizeof ts) : "");
        for (int i = 0; i < n->region->n; i++)
            dot_node(sb, f, fi, n->region->nodes[i], depth + 1, cluster);
        ir_sb_printf(sb, "%*s}\n", depth * 2, "");
        /* The region's value is its yield: alias it with an invisible edge-free node. */
        return;
    }
    ir_sb_printf(sb, "%*s", depth * 2, "");
    dot_id(sb, f, fi, n);
    ir_sb_printf(sb, " [label=\"%s", ir_op_name(n->op));
    if (n->op == IR_OP_dense)
        ir_sb_printf(sb, " %s", ir_attr_op_name(ir_attr_i(n, "activation")));
    if (n->type.dtype != IR_VOID) ir_sb_printf(sb, "\\n%s", ir_type_str(&n->type, ts, sizeof ts));
    const char *fill = ir_op(n->op)->kind == IR_FK_OUTFUSE || n->op == IR_OP_softmax_cross_entropy
                           ? "#ffe9c7"
                           : "white";
    ir_sb_printf(sb, "\", shape=box, style=filled, fillcolor=\"%s\"];\n", fill);
}

/* The node that stands for `n` in the picture (a region is drawn as its yield). */
static const ir_node *dot_repr(const ir_node *n) {
    while (n->region && n->region->yield) n = n->region->yield;
    return n;
}

static void dot_edges(ir_sb *sb, const kiln_func *f, int fi, const ir_node *n) {
    if (n->region) {
        for (int i = 0; i < n->region->n; i++) dot_edges(sb, f, fi, n->region->nodes[i]);
        return;
    }
    for (int k = 0; k < n->n_in; k++) {
        ir_sb_puts(sb, "  ");
        dot_id(sb, f, fi, dot_repr(n->in[k]));
        ir_sb_puts(sb, " -> ");
        dot_id(sb, f, fi, n);
        ir_sb_puts(sb, ";\n");
    }
}

static void mark_globals(ir_node *n, void *ctx) {
    bool *used = ctx;
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k]->op == IR_GLOBAL) used[n->in[k]->index] = true;
}

void ir_print_dot(ir_sb *sb, const kiln_module *m, const char *only) {
    ir_sb_puts(sb, "digraph \"");
    dot_escape(sb, m->name);
    ir_sb_puts(sb, "\" {\n  rankdir=TB; node [fontname=\"Helvetica\", fontsize=10];\n");
    int cluster = 0;
    for (int fi = 0; fi < m->n_funcs; fi++) {
        const kiln_func *f = m->funcs[fi];
        if (only && strcmp(only, f->name) != 0) continue;
        ir_sb_printf(sb, "  subgraph cluster_func_%d {\n    label=\"@", fi);
        dot_escape(sb, f->name);
        ir_sb_puts(sb, "\"; style=dashed; color=gray;\n");
        char ts[IR_TYPE_STR_MAX];
        for (int i = 0; i < f->n_args; i++) {
            ir_sb_printf(sb, "    n%d_%d [label=\"%%", fi, (int)f->args[i]->serial);
            dot_escape(sb, f->args[i]->name);
            ir_sb_printf(sb, "\\n%s\", shape=ellipse];\n",
                         ir_type_str(&f->args[i]->type, ts, sizeof ts));
        }
        /* Globals this function uses. */
        bool *used = ir_calloc((size_t)m->n_globals + 1, 1);
        if (!used) {
            sb->oom = true;
            return;
        }
        ir_func_walk((kiln_func *)f, mark_globals, used);
        for (int gi = 0; gi < m->n_globals; gi++) {
            const ir_global *g = m->globals[gi];
            if (!used[gi]) continue;
            ir_sb_printf(sb, "    g%d_%d [label=\"@", fi, gi);
            dot_escape(sb, g->name);
            ir_sb_printf(sb, "\\n%s\", shape=note, fontcolor=\"#555555\"];\n",
                         ir_type_str(&g->type, ts, sizeof ts));
        }
        ir_free(used);
        for (int i = 0; i < f->n_nodes; i++) dot_node(sb, f, fi, f->nodes[i], 2, &cluster);
        for (int i = 0; i < f->n_results; i++) {
            ir_sb_printf(sb, "    r%d_%d [label=\"return %d\", shape=ellipse];\n", fi, i, i);
        }
        ir_sb_puts(sb, "  }\n");
        for (int i = 0; i < f->n_nodes; i++) dot_edges(sb, f, fi, f->nodes[i]);
        for (int i = 0; i < f->n_results; i++) {
            ir_sb_puts(sb, "  ");
            dot_id(sb, f, fi, dot_repr(f->results[i]));
            ir_sb_printf(sb, " -> r%d_%d;\n", fi, i);
        }
    }
    ir_sb_puts(sb, "}\n");
}
