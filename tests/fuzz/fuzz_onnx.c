/* libFuzzer harness: the ONNX import (lib/onnx/import.c) on arbitrary
 * bytes, through its in-memory entry.  An import either fails with a
 * status and a message or yields a model that predicts.  The memory the
 * import holds at its peak is measured (the sanitizer's allocation hooks)
 * and must stay within a multiple of the input's size: a small file must
 * not make the importer allocate what its size does not justify
 * (kdens_onnx.h promises memory bounded by a multiple of the file's size). */
#include "nn/nn.h"
#include "onnx/import.h"

#include <sanitizer/allocator_interface.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);
const char *__asan_default_options(void);

/* An allocation the library cannot get must come back as NULL (and then
 * KDENS_E_NOMEM), not abort the process. */
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* The bound checked: IMPORT_FACTOR bytes per byte of input, plus a fixed
 * allowance.  protobuf-c may take 8 per byte plus 1 MiB; the rest is the
 * import's tables, the spec text and the model, which grow with the number
 * of nodes: a graph of nothing but minimal nodes (4,500 Relu in 63 KB)
 * peaks at 77 bytes per byte, libkdens' exports at 5 to 11. */
#define IMPORT_FACTOR 128
#define IMPORT_SLACK ((size_t)1 << 20)

static atomic_size_t live, peak;

static void on_malloc(const volatile void *ptr, size_t size)
{
    (void)ptr;
    size_t now = atomic_fetch_add(&live, size) + size;
    size_t top = atomic_load(&peak);
    while (now > top && !atomic_compare_exchange_weak(&peak, &top, now)) {
    }
}

static void on_free(const volatile void *ptr)
{
    if (ptr && __sanitizer_get_ownership((const void *)ptr))
        atomic_fetch_sub(&live, __sanitizer_get_allocated_size((const void *)ptr));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kdens_model *m = NULL;
    size_t base = atomic_load(&live);
    atomic_store(&peak, base);
    kdens_status st = kd_onnx_import_memory("fuzz.onnx", data, size, &m);
    size_t used = atomic_load(&peak) - base;
    if (used > IMPORT_FACTOR * size + IMPORT_SLACK) {
        fprintf(stderr, "fuzz_onnx: the import of %zu bytes held %zu bytes at its peak (> %d x + "
                        "%zu)\n", size, used, IMPORT_FACTOR, IMPORT_SLACK);
        abort();
    }
    if (st != KDENS_OK) {
        if (m || !kdens_errmsg()[0])
            abort(); /* a failure leaves no model and says why */
        return 0;
    }
    /* predict one zero image when the network is small enough to be quick */
    int h, w, c;
    kdens_model_input_shape(m, &h, &w, &c);
    size_t in = (size_t)h * w * c, acts = 0;
    for (int i = 0; i < m->n_nodes; i++)
        acts += (size_t)m->nodes[i].h * m->nodes[i].w * m->nodes[i].c;
    if (in <= 4096 && acts <= ((size_t)1 << 20) && kdens_model_num_classes(m) <= 1000 &&
        kdens_model_param_count(m) < 1000000) {
        float *x = calloc(in, sizeof(float));
        float *p = calloc((size_t)kdens_model_num_classes(m), sizeof(float));
        if (x && p)
            kdens_model_predict(m, x, 1, p);
        free(x);
        free(p);
    }
    kdens_model_free(m);
    return 0;
}
