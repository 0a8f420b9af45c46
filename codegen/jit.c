/*
 * jit.c — compiles a module in memory with ORC LLJIT and hands out entry
 * points.
 *
 * cblas_sgemm / cblas_sgemv (and the allreduce shim's
 * kiln_allreduce_mean_f32, kiln_allreduce_wait_f32 and
 * kiln_collective_first_row) are defined in the JIT as absolute symbols
 * with the addresses this library was linked against: the reference keeps
 * libopenblas in the link even under --as-needed, and the JIT finds it
 * whatever the host binary's own symbol table holds. Everything else
 * (memcpy, memset, ...) resolves through a search generator over the
 * process.
 *
 * A compile goes through the persistent compile cache (cache.h): on a hit
 * the stored object is linked straight away (no LLVM module, no
 * optimizer); on a miss the module is built, optimized and emitted to
 * memory, stored, and linked the same way.
 */
#include "codegen/cache.h"
#include "codegen/lower.h"
#include "codegen/pool.h"
#include "ir/collective.h"

#include <cblas.h>
#include <llvm-c/ExecutionEngine.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/OrcEE.h>
#include <llvm-c/TargetMachine.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct cg_program {
    LLVMOrcLLJITRef jit;
    cg_module_info *info;
    cg_entry_fn *entries;
    double compile_ms;
    double phase_ms[4]; /* build, optimize, native code (or the cache hit), and the
                           kernels' optimization + native code, summed over their modules */
    double kernels_cpu_ms; /* the CPU time of the last */
    int kern_compiled, kern_on_main; /* kernel modules compiled, and of them on the
                                        compiling thread */
    cg_cache_status cache;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static kiln_status define_blas(LLVMOrcLLJITRef jit, LLVMOrcJITDylibRef jd, kiln_diag *d) {
    static const struct {
        const char *name;
        void (*addr)(void);
    } syms[] = {
        {"cblas_sgemm", (void (*)(void))cblas_sgemm},
        {"cblas_sgemv", (void (*)(void))cblas_sgemv},
        {"kiln_allreduce_mean_f32", (void (*)(void))kiln_allreduce_mean_f32},
        {"kiln_allreduce_wait_f32", (void (*)(void))kiln_allreduce_wait_f32},
        {"kiln_collective_first_row", (void (*)(void))kiln_collective_first_row},
        {"kiln_parallel_for", (void (*)(void))kiln_parallel_for},
        {"kiln_pool_width", (void (*)(void))kiln_pool_width},
        {"kiln_pool_scratch", (void (*)(void))kiln_pool_scratch},
    };
    LLVMJITCSymbolMapPair pairs[KILN_ARRAY_LEN(syms)];
    for (size_t i = 0; i < KILN_ARRAY_LEN(syms); i++) {
        pairs[i].Name = LLVMOrcLLJITMangleAndIntern(jit, syms[i].name);
        pairs[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)syms[i].addr;
        pairs[i].Sym.Flags.GenericFlags =
            LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
        pairs[i].Sym.Flags.TargetFlags = 0;
    }
    LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(pairs, KILN_ARRAY_LEN(syms));
    LLVMErrorRef err = LLVMOrcJITDylibDefine(jd, mu);
    if (err) {
        LLVMOrcDisposeMaterializationUnit(mu);
        return cg_llvm_error(d, "defining the BLAS symbols", err);
    }
    return KILN_OK;
}

/* For profiling (o->perf_jit): an RTDyld linking layer that tells `perf`
 * about the generated functions (a jitdump for `perf inject --jit`). */
static LLVMOrcObjectLayerRef perf_layer(void *ctx, LLVMOrcExecutionSessionRef es,
                                        const char *triple) {
    (void)ctx;
    (void)triple;
    LLVMOrcObjectLayerRef layer = LLVMOrcCreateRTDyldObjectLinkingLayerWithSectionMemoryManager(es);
    LLVMJITEventListenerRef perf = LLVMCreatePerfJITEventListener();
    if (perf) LLVMOrcRTDyldObjectLinkingLayerRegisterJITEventListener(layer, perf);
    return layer;
}

void cg_program_dispose(cg_program *p) {
    if (!p) return;
    if (p->jit) {
        LLVMErrorRef err = LLVMOrcDisposeLLJIT(p->jit);
        if (err) LLVMConsumeError(err);
    }
    cg_module_info_dispose(p->info);
    ir_free(p->entries);
    ir_free(p);
}

/* An LLJIT for the target of `o`, with the BLAS symbols and the process's
 * own; *jd is its main dylib. */
static kiln_status jit_create(cg_program *p, const cg_options *o, LLVMOrcJITDylibRef *jd,
                              kiln_diag *d) {
    /* The JIT only links objects (compiled with cg_target_machine): its
     * own target machine is the host's, which LLJIT detects itself. */
    LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
    if (o->perf_jit) LLVMOrcLLJITBuilderSetObjectLinkingLayerCreator(jb, perf_layer, NULL);
    LLVMErrorRef err = LLVMOrcCreateLLJIT(&p->jit, jb);
    if (err) {
        p->jit = NULL;
        return cg_llvm_error(d, "creating the JIT", err);
    }
    *jd = LLVMOrcLLJITGetMainJITDylib(p->jit);
    kiln_status st = define_blas(p->jit, *jd, d);
    if (st) return st;
    LLVMOrcDefinitionGeneratorRef gen = NULL;
    err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
        &gen, LLVMOrcLLJITGetGlobalPrefix(p->jit), NULL, NULL);
    if (err) return cg_llvm_error(d, "searching the process for symbols", err);
    LLVMOrcJITDylibAddGenerator(*jd, gen);
    return KILN_OK;
}

/* The objects of one compile: the functions', then Kiln's GEMM kernels'
 * (one per kernel module of cg_build_modules). */
typedef struct objects {
    const void *obj;
    size_t len;
    int n_kern;
    const void **kern;
    size_t *kern_len;
} objects;

/* Links the objects into a fresh JIT and looks up (materializes) every
 * entry point of p->info. */
static kiln_status jit_load(cg_program *p, const cg_options *o, const objects *ob, kiln_diag *d) {
    LLVMOrcJITDylibRef jd = NULL;
    kiln_status st = jit_create(p, o, &jd, d);
    if (st) return st;
    for (int i = 0; i <= ob->n_kern; i++) {
        const void *bytes = i ? ob->kern[i - 1] : ob->obj;
        size_t len = i ? ob->kern_len[i - 1] : ob->len;
        LLVMMemoryBufferRef buf =
            LLVMCreateMemoryBufferWithMemoryRangeCopy(bytes, len, i ? "kiln.kernels.o" : "kiln.o");
        if (!buf) return ir_oom(d);
        LLVMErrorRef err = LLVMOrcLLJITAddObjectFile(p->jit, jd, buf); /* takes buf */
        if (err) return cg_llvm_error(d, "adding the object to the JIT", err);
    }
    LLVMErrorRef err;
    p->entries = ir_calloc((size_t)p->info->n_funcs + 1, sizeof *p->entries);
    if (!p->entries) return ir_oom(d);
    for (int i = 0; i < p->info->n_funcs; i++) {
        LLVMOrcExecutorAddress addr = 0;
        err = LLVMOrcLLJITLookup(p->jit, &addr, p->info->funcs[i].symbol);
        if (err) return cg_llvm_error(d, "linking", err);
        p->entries[i] = (cg_entry_fn)(uintptr_t)addr;
    }
    return KILN_OK;
}

static void diag_merge(kiln_diag *to, const kiln_diag *from);

/* Entries of Kiln's GEMM kernels: one pseudo-function, KERNELS_NAME, whose
 * symbol says what the object is:
 * - KERNELS_OBJECT: the object of one kernel module, stored under the
 *   module's own key (cg_cache_key_of_module), so another function or model
 *   with the same kinds of GEMM loads it instead of compiling it;
 * - KERNELS_LIST: the keys of a compile's kernel modules, 32 bytes each,
 *   stored under a key derived from the functions' (kernels_key: a hit
 *   needs no module), or KERNELS_NONE and a placeholder byte when the
 *   compile had none (an entry holds at least one function and one byte). */
#define KERNELS_NAME ".kernels"
#define KERNELS_OBJECT "kiln.gemm"
#define KERNELS_LIST "kiln.gemm.keys"
#define KERNELS_NONE "none"

static bool kernels_store(const cg_cache_cfg *cfg, const cg_cache_key *key, const char *symbol,
                          const void *obj, size_t len, kiln_diag *d) {
    cg_func_info kf = {.name = KERNELS_NAME, .symbol = len ? (char *)symbol : KERNELS_NONE};
    cg_module_info ki = {&kf, 1};
    return cg_cache_store(cfg, key, &ki, len ? obj : "", len ? len : 1, d);
}

/* A stored entry of `symbol`'s kind: *buf (ir_free) holds it at *obj, *len
 * bytes (0: KERNELS_NONE). */
static bool kernels_lookup(const cg_cache_cfg *cfg, const cg_cache_key *key, const char *symbol,
                           char **buf, const void **obj, size_t *len) {
    cg_module_info *kinfo = NULL;
    if (!cg_cache_lookup(cfg, key, &kinfo, buf, obj, len)) return false;
    bool ok = kinfo->n_funcs == 1 && !strcmp(kinfo->funcs[0].name, KERNELS_NAME);
    if (ok && !strcmp(kinfo->funcs[0].symbol, KERNELS_NONE))
        *len = 0;
    else if (ok)
        ok = !strcmp(kinfo->funcs[0].symbol, symbol);
    cg_module_info_dispose(kinfo);
    if (!ok) {
        ir_free(*buf);
        *buf = NULL;
    }
    return ok;
}

/* One of Kiln's GEMM kernel modules: loaded from the cache, or optimized
 * with its own pipeline and emitted. */
typedef struct kern_job {
    LLVMModuleRef mod;
    LLVMContextRef ctx;
    LLVMMemoryBufferRef obj;
    cg_cache_key key;
    bool keyed; /* key holds the module's */
    bool on_main; /* done by the compiling thread */
    int size;     /* instructions */
    kiln_diag *d;
    kiln_status st;
    double ms, cpu_ms; /* 0 when loaded */
} kern_job;

/* The kernel modules of a compile, taken in turn by whichever thread is
 * free: helper threads from the start, the compiling thread once its own
 * module (the functions') is done. */
typedef struct kern_queue {
    kern_job *jobs;
    int n;
    atomic_int next;
    const cg_options *o;
    const cg_cache_cfg *cfg; /* NULL: the cache is off */
} kern_queue;

static double thread_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* tm: the thread's target machine, made at its first compile (kept for the
 * next: its subtargets are made once, not per module). */
static void kern_job_run(const kern_queue *q, kern_job *j, LLVMTargetMachineRef *tm) {
    double t0 = now_ms(), c0 = thread_cpu_ms();
    bool loaded = false;
    if (q->cfg) {
        /* Kernels of these kinds compiled before. */
        j->keyed = cg_cache_key_of_module(j->mod, q->o, &j->key, j->d) == KILN_OK;
        char *buf = NULL;
        const void *bytes;
        size_t len;
        if (j->keyed && kernels_lookup(q->cfg, &j->key, KERNELS_OBJECT, &buf, &bytes, &len) &&
            len) {
            j->obj = LLVMCreateMemoryBufferWithMemoryRangeCopy(bytes, len, "kiln.kernels.o");
            loaded = j->obj != NULL;
        }
        ir_free(buf);
    }
    if (!loaded) {
        if (!*tm) j->st = cg_target_machine(q->o, tm, j->d);
        if (!j->st) j->st = cg_compile_kernels(j->mod, q->o, *tm, &j->obj, j->d);
        if (!j->st && j->keyed)
            kernels_store(q->cfg, &j->key, KERNELS_OBJECT, LLVMGetBufferStart(j->obj),
                          LLVMGetBufferSize(j->obj), j->d);
    }
    /* Its context is no other thread's: freed here. */
    LLVMDisposeModule(j->mod);
    LLVMContextDispose(j->ctx);
    j->mod = NULL;
    j->ctx = NULL;
    if (!loaded) {
        j->ms = now_ms() - t0;
        j->cpu_ms = thread_cpu_ms() - c0;
    }
}

static void kern_queue_drain(kern_queue *q, bool on_main) {
    LLVMTargetMachineRef tm = NULL;
    for (int i; (i = atomic_fetch_add(&q->next, 1)) < q->n;) {
        q->jobs[i].on_main = on_main;
        kern_job_run(q, &q->jobs[i], &tm);
    }
    if (tm) LLVMDisposeTargetMachine(tm);
}

static void *kern_worker(void *arg) {
    kern_queue_drain(arg, false);
    return NULL;
}

static void kern_queue_free(kern_queue *q) {
    for (int i = 0; i < q->n; i++) {
        kern_job *j = &q->jobs[i];
        if (j->mod) LLVMDisposeModule(j->mod);
        if (j->ctx) LLVMContextDispose(j->ctx);
        if (j->obj) LLVMDisposeMemoryBuffer(j->obj);
        kiln_diag_dispose(j->d);
    }
    ir_free(q->jobs);
    q->jobs = NULL;
    q->n = 0;
}

static int by_size_desc(const void *a, const void *b) {
    const kern_job *x = a, *y = b;
    return (y->size > x->size) - (y->size < x->size);
}

/* The jobs of the kernel modules km (which they take over), the largest
 * first: the last taken are the short ones, so that the threads finish at
 * about the same time. */
static kiln_status kern_queue_init(kern_queue *q, cg_kernel_modules *km, kiln_diag *d) {
    q->jobs = ir_calloc((size_t)km->n + 1, sizeof *q->jobs);
    if (!q->jobs) return ir_oom(d);
    q->n = km->n;
    for (int i = 0; i < km->n; i++) {
        q->jobs[i].mod = km->mod[i];
        q->jobs[i].ctx = km->ctx[i];
        q->jobs[i].size = cg_module_size(km->mod[i]);
        km->mod[i] = NULL;
        km->ctx[i] = NULL;
        if (!(q->jobs[i].d = kiln_diag_create())) return ir_oom(d);
    }
    qsort(q->jobs, (size_t)q->n, sizeof *q->jobs, by_size_desc);
    return KILN_OK;
}

/* Helper threads for the kernels: one fewer than the processors (the
 * compiling thread is one), at most KERN_THREADS. */
#define KERN_THREADS 3

static int kern_threads(int jobs) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus > 1 ? (int)cpus - 1 : 0;
    if (n > KERN_THREADS) n = KERN_THREADS;
    return n < jobs ? n : jobs;
}

/* Builds, optimizes and emits the objects of `m` (o->only_func): the
 * functions' with O3 on this thread, Kiln's GEMM kernels' (q, cached under
 * their modules' own keys when cfg) with their own lighter pipeline, on
 * helper threads meanwhile and on this one after; times the phases into
 * p->phase_ms. */
static kiln_status compile_object(cg_program *p, kiln_module *m, const cg_options *o,
                                  LLVMMemoryBufferRef *obj, kern_queue *q, kiln_diag *d) {
    double t0 = now_ms();
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = NULL;
    cg_kernel_modules km;
    kiln_status st = cg_build_modules(m, o, ctx, &km, &mod, &p->info, d);
    if (!st) st = kern_queue_init(q, &km, d);
    cg_kernel_modules_dispose(&km);
    double t1 = now_ms();
    pthread_t threads[KERN_THREADS];
    int nt = 0;
    for (int want = st ? 0 : kern_threads(q->n); nt < want; nt++)
        if (pthread_create(&threads[nt], NULL, kern_worker, q) != 0) break;
    double opt_ms = 0;
    if (!st) st = cg_compile_module(mod, o, obj, &opt_ms, d);
    double t3 = now_ms(), t2 = t1 + opt_ms;
    if (mod) LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    if (st) atomic_store(&q->next, q->n); /* no more */
    kern_queue_drain(q, true); /* what the helpers have not taken (all of it without one) */
    for (int i = 0; i < nt; i++) pthread_join(threads[i], NULL);
    p->phase_ms[3] = p->kernels_cpu_ms = 0;
    for (int i = 0; i < q->n; i++) {
        kern_job *j = &q->jobs[i];
        diag_merge(d, j->d);
        if (!st && j->st) st = j->st;
        p->phase_ms[3] += j->ms;
        p->kernels_cpu_ms += j->cpu_ms;
        p->kern_compiled += j->ms > 0;
        p->kern_on_main += j->ms > 0 && j->on_main;
    }
    p->phase_ms[0] = t1 - t0;
    p->phase_ms[1] = t2 - t1;
    p->phase_ms[2] = t3 - t2; /* native code; linking is added later */
    return st;
}

/* The key of the entry listing the kernels' modules of the compile keyed
 * `key` (KERNELS_LIST). */
static cg_cache_key kernels_key(const cg_cache_key *key) {
    cg_sha256 h;
    cg_sha256_init(&h);
    cg_sha256_update(&h, key->b, sizeof key->b);
    cg_sha256_update(&h, "kernels", 7);
    cg_cache_key k;
    cg_sha256_final(&h, k.b);
    return k;
}

/* Stores the list of q's kernel modules' keys under kernels_key(key);
 * false when a key is missing (the compile is then not stored). */
static bool kernels_list_store(const cg_cache_cfg *cfg, const cg_cache_key *key,
                               const kern_queue *q, kiln_diag *d) {
    uint8_t *keys = ir_malloc((size_t)q->n * CG_SHA256_BYTES + 1);
    bool ok = keys != NULL;
    for (int i = 0; i < q->n && ok; i++) {
        ok = q->jobs[i].keyed;
        memcpy(keys + (size_t)i * CG_SHA256_BYTES, q->jobs[i].key.b, CG_SHA256_BYTES);
    }
    cg_cache_key kkey = kernels_key(key);
    if (ok) ok = kernels_store(cfg, &kkey, KERNELS_LIST, keys, (size_t)q->n * CG_SHA256_BYTES, d);
    ir_free(keys);
    return ok;
}

/* The cache's side of a compile: a verified entry loaded into the JIT,
 * with the kernel modules its list names. Anything wrong on the way (a
 * missing or bad entry, a bad object) discards it: a miss. */
static bool try_hit(cg_program *p, const cg_cache_cfg *cfg, const cg_cache_key *key,
                    const cg_options *o) {
    char *buf = NULL, *lbuf = NULL, **kbufs = NULL;
    const void *list;
    size_t list_len;
    objects ob = {0};
    cg_cache_key kkey = kernels_key(key);
    if (!kernels_lookup(cfg, &kkey, KERNELS_LIST, &lbuf, &list, &list_len)) return false;
    bool ok = list_len % CG_SHA256_BYTES == 0;
    int n = (int)(list_len / CG_SHA256_BYTES);
    if (ok) {
        kbufs = ir_calloc((size_t)n + 1, sizeof *kbufs);
        ob.kern = ir_calloc((size_t)n + 1, sizeof *ob.kern);
        ob.kern_len = ir_calloc((size_t)n + 1, sizeof *ob.kern_len);
        ok = kbufs && ob.kern && ob.kern_len;
    }
    for (int i = 0; i < n && ok; i++) {
        cg_cache_key k;
        memcpy(k.b, (const uint8_t *)list + (size_t)i * CG_SHA256_BYTES, CG_SHA256_BYTES);
        ok = kernels_lookup(cfg, &k, KERNELS_OBJECT, &kbufs[i], &ob.kern[i], &ob.kern_len[i]) &&
             ob.kern_len[i];
        ob.n_kern = i + 1;
    }
    if (ok) ok = cg_cache_lookup(cfg, key, &p->info, &buf, &ob.obj, &ob.len);
    if (ok) {
        kiln_diag *quiet = kiln_diag_create();
        ok = quiet && jit_load(p, o, &ob, quiet) == KILN_OK;
        kiln_diag_dispose(quiet);
    }
    for (int i = 0; kbufs && i < n; i++) ir_free(kbufs[i]);
    ir_free(kbufs);
    ir_free(ob.kern);
    ir_free(ob.kern_len);
    ir_free(buf);
    ir_free(lbuf);
    if (ok) return true;
    LLVMErrorRef err = p->jit ? LLVMOrcDisposeLLJIT(p->jit) : NULL;
    if (err) LLVMConsumeError(err);
    p->jit = NULL;
    cg_module_info_dispose(p->info);
    p->info = NULL;
    ir_free(p->entries);
    p->entries = NULL;
    return false;
}

kiln_status cg_jit_compile(kiln_module *m, const cg_options *o, cg_program **out, kiln_diag *d) {
    cg_options opts;
    memset(&opts, 0, sizeof opts);
    if (o) opts = *o;
    *out = NULL;
    double t0 = now_ms();
    cg_program *p = ir_calloc(1, sizeof *p);
    if (!p) return ir_oom(d);
    cg_cache_cfg cfg;
    cg_cache_key key;
    /* Before the cache: an unplanned function has no code, cached or not. */
    kiln_status st = cg_check_planned(m, opts.only_func, d);
    if (!st && cg_cache_enabled(m, &opts, &cfg)) {
        st = cg_cache_key_of(m, &opts, &key, d);
        p->cache = CG_CACHE_MISS;
    }
    if (!st && p->cache == CG_CACHE_MISS && try_hit(p, &cfg, &key, &opts)) {
        p->cache = CG_CACHE_HIT;
        p->phase_ms[2] = now_ms() - t0;
    } else if (!st) {
        LLVMMemoryBufferRef obj = NULL;
        kern_queue q = {.o = &opts, .cfg = p->cache == CG_CACHE_MISS ? &cfg : NULL};
        st = compile_object(p, m, &opts, &obj, &q, d);
        double t2 = now_ms();
        objects ob = {obj ? LLVMGetBufferStart(obj) : NULL, obj ? LLVMGetBufferSize(obj) : 0,
                      q.n, NULL, NULL};
        ob.kern = ir_calloc((size_t)q.n + 1, sizeof *ob.kern);
        ob.kern_len = ir_calloc((size_t)q.n + 1, sizeof *ob.kern_len);
        if (!st && (!ob.kern || !ob.kern_len)) st = ir_oom(d);
        for (int i = 0; i < q.n && !st; i++) {
            ob.kern[i] = LLVMGetBufferStart(q.jobs[i].obj);
            ob.kern_len[i] = LLVMGetBufferSize(q.jobs[i].obj);
        }
        /* The kernels' list first: a reader finds both or not the functions'. */
        if (!st && p->cache == CG_CACHE_MISS && kernels_list_store(&cfg, &key, &q, d))
            cg_cache_store(&cfg, &key, p->info, ob.obj, ob.len, d);
        if (!st) st = jit_load(p, &opts, &ob, d);
        if (obj) LLVMDisposeMemoryBuffer(obj);
        ir_free(ob.kern);
        ir_free(ob.kern_len);
        kern_queue_free(&q);
        p->phase_ms[2] += now_ms() - t2;
    }
    if (st) {
        cg_program_dispose(p);
        return st;
    }
    p->compile_ms = now_ms() - t0;
    *out = p;
    return KILN_OK;
}

/* ------------------------------------------- several functions at once */

typedef struct compile_job {
    kiln_module *m;
    cg_options o;
    cg_program *prog;
    kiln_diag d;
    kiln_status st;
} compile_job;

static void *compile_job_run(void *arg) {
    compile_job *j = arg;
    j->st = cg_jit_compile(j->m, &j->o, &j->prog, &j->d);
    return NULL;
}

/* Appends what `from` holds to `to`. */
static void diag_merge(kiln_diag *to, const kiln_diag *from) {
    if (!to || !from) return;
    if (from->text.len) ir_sb_putn(&to->text, from->text.buf, from->text.len);
    if (from->text.oom) to->text.oom = true;
    if (!from->errors) return;
    if (to->errors == 0) to->first = from->first;
    to->errors += from->errors;
}

kiln_status cg_jit_compile_each(kiln_module *m, const char *const *funcs, int n,
                                const cg_options *o, cg_program **out, kiln_diag *d) {
    if (n < 0 || n > 16)
        return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "cg_jit_compile_each: %d functions", n);
    compile_job jobs[16];
    pthread_t threads[16];
    bool started[16] = {false};
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < n; i++) {
        out[i] = NULL;
        jobs[i].m = m;
        if (o) jobs[i].o = *o;
        jobs[i].o.only_func = funcs[i];
        /* The first runs here, the others on threads of their own. */
        if (i > 0) started[i] = pthread_create(&threads[i], NULL, compile_job_run, &jobs[i]) == 0;
    }
    if (n > 0) compile_job_run(&jobs[0]);
    for (int i = 1; i < n; i++) {
        if (started[i])
            pthread_join(threads[i], NULL);
        else
            compile_job_run(&jobs[i]); /* no thread to be had: here, in turn */
    }
    kiln_status st = KILN_OK;
    for (int i = 0; i < n; i++) {
        diag_merge(d, &jobs[i].d);
        ir_sb_free(&jobs[i].d.text);
        if (jobs[i].st && !st) st = jobs[i].st;
        out[i] = jobs[i].prog;
    }
    if (st)
        for (int i = 0; i < n; i++) {
            cg_program_dispose(out[i]);
            out[i] = NULL;
        }
    return st;
}

const char *cg_program_cache_status(const cg_program *p) {
    return cg_cache_status_name(p->cache);
}

static int func_index(const cg_program *p, const char *name) {
    for (int i = 0; i < p->info->n_funcs; i++)
        if (strcmp(p->info->funcs[i].name, name) == 0) return i;
    return -1;
}

const cg_func_info *cg_program_func(const cg_program *p, const char *name) {
    int i = func_index(p, name);
    return i < 0 ? NULL : &p->info->funcs[i];
}

cg_entry_fn cg_program_entry(const cg_program *p, const char *name) {
    int i = func_index(p, name);
    return i < 0 ? NULL : p->entries[i];
}

int64_t cg_program_workspace_bytes(const cg_program *p, const char *name, int64_t batch) {
    const cg_func_info *fi = cg_program_func(p, name);
    return fi ? cg_workspace_bytes(fi, batch) : -1;
}

double cg_program_compile_ms(const cg_program *p) {
    return p->compile_ms;
}

void cg_program_phase_ms(const cg_program *p, double *build, double *optimize, double *native) {
    *build = p->phase_ms[0];
    *optimize = p->phase_ms[1];
    *native = p->phase_ms[2];
}

double cg_program_kernels_ms(const cg_program *p, double *cpu_ms) {
    if (cpu_ms) *cpu_ms = p->kernels_cpu_ms;
    return p->phase_ms[3];
}

int cg_program_kernel_modules(const cg_program *p, int *on_main) {
    if (on_main) *on_main = p->kern_on_main;
    return p->kern_compiled;
}

kiln_status cg_program_run(const cg_program *p, const char *name, int64_t batch, void *const *args,
                           void *const *results, void *const *globals, void *workspace,
                           kiln_diag *d) {
    int i = func_index(p, name);
    if (i < 0) return ir_error(d, KILN_ERR_INVALID, ir_loc_none(), "no function named '%s'", name);
    const cg_func_info *fi = &p->info->funcs[i];
    if (batch < 0 || batch > INT32_MAX) /* refused before a workspace is sized */
        return cg_func_error(fi, NULL, batch, KILN_ERR_INVALID, d);
    void *ws = workspace;
    if (!ws) {
        ws = ir_aligned_alloc((size_t)cg_workspace_bytes(fi, batch));
        if (!ws) return ir_oom(d);
    }
    int32_t rc = p->entries[i](batch, args, results, globals, ws);
    kiln_status st = rc ? cg_func_error(fi, ws, batch, rc, d) : KILN_OK;
    if (ws != workspace) ir_aligned_free(ws);
    return st;
}
