/*
 * aot_client.c — a C program that uses a model compiled ahead of time:
 * classifies the Fashion-MNIST test images and prints the accuracy. It
 * needs the generated libmnist.so and mnist.h and zlib, not Kiln:
 *
 *   kiln compile examples/mnist_mlp.kiln --load CKPT -o libmnist.so --header mnist.h
 *   cc examples/aot_client.c -o client -I. -L. -Wl,-rpath,'$ORIGIN' -lmnist -lz
 *   ./client
 *
 * Options: --data DIR (the four IDX files, gzipped or not; default
 * /usr/share/datasets/fashion-mnist), --batch N (default 128), --weights
 * CKPT (a library compiled with --weights file), --output FILE (writes
 * "class p0 p1 ..." per image, as `kiln predict --output` does).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "mnist.h"

#if MNIST_INPUT_COUNT != 1 || MNIST_OUTPUT_COUNT != 1
#error "this client expects a model with one input and one output"
#endif

/* Reads a whole IDX file (gzip or plain: zlib reads both). */
static unsigned char *read_idx(const char *path, size_t *len) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "client: %s: cannot open\n", path);
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n == cap) {
            unsigned char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
        }
        int r = gzread(f, buf + n, (unsigned)(cap - n > (1u << 30) ? (1u << 30) : cap - n));
        if (r < 0) {
            fprintf(stderr, "client: %s: read error\n", path);
            free(buf);
            buf = NULL;
            break;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    gzclose(f);
    if (!buf) return NULL;
    *len = n;
    return buf;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *dir = "/usr/share/datasets/fashion-mnist", *out_path = NULL, *weights = NULL;
    long batch = 128;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--data") == 0)
            dir = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--output") == 0)
            out_path = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--weights") == 0)
            weights = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--batch") == 0)
            batch = strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--data DIR] [--batch N] [--weights CKPT] [--output FILE]\n",
                    argv[0]);
            return 2;
        }
    }
    if (batch < 1) batch = 1;

    /* The library must come from the Kiln that wrote the header. */
    char msg[256];
    if (mnist_check_version(MNIST_KILN_VERSION_NUM, msg, sizeof msg) != MNIST_OK) {
        fprintf(stderr, "%s\n", msg);
        return 1;
    }

    char images_path[1024], labels_path[1024];
    snprintf(images_path, sizeof images_path, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(labels_path, sizeof labels_path, "%s/t10k-labels-idx1-ubyte.gz", dir);
    size_t ni = 0, nl = 0;
    unsigned char *images = read_idx(images_path, &ni), *labels = read_idx(labels_path, &nl);
    if (!images || !labels) return 1;
    if (ni < 16 || be32(images) != 0x803 || nl < 8 || be32(labels) != 0x801) {
        fprintf(stderr, "client: not IDX image and label files\n");
        return 1;
    }
    long n = (long)be32(images + 4), rows = (long)be32(images + 8), cols = (long)be32(images + 12);
    if ((size_t)(16 + n * rows * cols) > ni || (long)be32(labels + 4) != n ||
        (size_t)(8 + n) > nl || rows * cols != MNIST_INPUT_SIZE) {
        fprintf(stderr, "client: %ld images of %ldx%ld: the model takes %d values per sample\n", n,
                rows, cols, MNIST_INPUT_SIZE);
        return 1;
    }

    mnist_model *m;
    int st = mnist_create(batch, &m);
    if (st != MNIST_OK) {
        fprintf(stderr, "client: mnist_create: %s\n", mnist_status_string(st));
        return 1;
    }
    if (weights || !MNIST_WEIGHTS_EMBEDDED) {
        if (!weights) {
            fprintf(stderr, "client: this library has no embedded weights: pass --weights CKPT\n");
            return 1;
        }
        if (mnist_load(m, weights) != MNIST_OK) {
            fprintf(stderr, "client: %s\n", mnist_last_error(m));
            return 1;
        }
    }
    FILE *out = out_path ? fopen(out_path, "w") : NULL;
    if (out_path && !out) {
        fprintf(stderr, "client: %s: cannot write\n", out_path);
        return 1;
    }

    float *x = malloc(sizeof(float) * (size_t)batch * MNIST_INPUT_SIZE);
    float *p = malloc(sizeof(float) * (size_t)batch * MNIST_OUTPUT_SIZE);
    if (!x || !p) return 1;
    long correct = 0;
    double t_infer = 0;
    for (long first = 0; first < n; first += batch) {
        long nb = n - first < batch ? n - first : batch;
        const unsigned char *src = images + 16 + first * MNIST_INPUT_SIZE;
        for (long i = 0; i < nb * MNIST_INPUT_SIZE; i++) x[i] = (float)src[i] / 255.0f;
        double t0 = now_s();
        st = mnist_infer(m, nb, x, p);
        t_infer += now_s() - t0;
        if (st != MNIST_OK) {
            fprintf(stderr, "client: %s\n", mnist_last_error(m));
            return 1;
        }
        for (long i = 0; i < nb; i++) {
            const float *row = p + i * MNIST_OUTPUT_SIZE;
            int best = 0;
            for (int k = 1; k < MNIST_OUTPUT_SIZE; k++)
                if (row[k] > row[best]) best = k;
            correct += best == labels[8 + first + i];
            if (out) {
                fprintf(out, "%d", best);
                for (int k = 0; k < MNIST_OUTPUT_SIZE; k++) fprintf(out, " %.9g", row[k]);
                fputc('\n', out);
            }
        }
    }
    if (out && fclose(out) != 0) {
        fprintf(stderr, "client: %s: write failed\n", out_path);
        return 1;
    }
    printf("accuracy: %.4f (%ld/%ld test images), %.2f us per image in %s_infer\n",
           (double)correct / (double)n, correct, n, t_infer * 1e6 / (double)n, "mnist");
    mnist_destroy(m);
    free(x);
    free(p);
    free(images);
    free(labels);
    return 0;
}
