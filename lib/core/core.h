/* core: status messages, allocation, seeded RNG, threads, file helpers.
 * Internal to libkdens; depends on libc and pthreads only. */
#ifndef KD_CORE_H
#define KD_CORE_H

#include "kdens.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Element-wise and data-movement loops outside the dispatched kernels are
 * compiled by the compiler for AVX-512, AVX2 and baseline x86-64 alike
 * (function multi-versioning: the loader picks by cpuid).  Their results
 * cannot depend on the version: FMA contraction is off outside
 * lib/tensor/isa/ (-std=c11) and floating-point sums are never reordered,
 * so each version performs the same operations on each element. */
#if defined(__x86_64__) && !defined(KD_GENERIC_ONLY) && (defined(__GNUC__) || defined(__clang__))
#define KD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KD_CLONES
#endif

#define KD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define KD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KD_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Set the thread-local message and return status, so that error paths read
 * `return kd_fail(KDENS_E_ARG, "...", ...);`. */
kdens_status kd_fail(kdens_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefix the current message with context ("loading x.kdm: ") and return status. */
kdens_status kd_fail_context(kdens_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void kd_log(kdens_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kd_progress(const char *task, uint64_t done, uint64_t total);

/* Allocation of float buffers aligned for AVX-512; NULL on failure. */
void *kd_alloc_aligned(size_t bytes);
void kd_free_aligned(void *p);
char *kd_strdup(const char *s);

/* Seeded pseudo-random stream (xoshiro256**, seeded through splitmix64). */
typedef struct kd_rng {
    uint64_t s[4];
} kd_rng;
void kd_rng_seed(kd_rng *rng, uint64_t seed);
uint64_t kd_rng_next(kd_rng *rng);
/* Uniform in [0, 1). */
double kd_rng_uniform(kd_rng *rng);
/* Uniform integer in [0, n). */
uint64_t kd_rng_below(kd_rng *rng, uint64_t n);
float kd_rng_normal(kd_rng *rng);

/* The library owns all parallelism: kd_threads() workers run the parts of
 * each kernel. */
int kd_threads(void);
/* Run fn(part, parts, arg) for every part in [0, parts) on the pool. */
typedef void (*kd_part_fn)(int part, int parts, void *arg);
void kd_parallel_parts(int parts, kd_part_fn fn, void *arg);
/* Run fn(begin, end, arg) over [0, n) split into contiguous ranges of at
 * least min_chunk.  Each index is written by exactly one call. */
typedef void (*kd_range_fn)(size_t begin, size_t end, void *arg);
void kd_parallel_for(size_t n, size_t min_chunk, kd_range_fn fn, void *arg);
/* The range [*begin, *end) of part `part` of `parts` over n items. */
static inline void kd_split(size_t n, int part, int parts, size_t *begin, size_t *end)
{
    *begin = n * (size_t)part / (size_t)parts;
    *end = n * (size_t)(part + 1) / (size_t)parts;
}

/* Per-thread scratch memory for kernels that pack their operands: at least
 * `floats` floats, 64-byte aligned, one buffer per slot and thread, kept and
 * grown across calls, freed when the thread exits.  NULL when it cannot grow
 * (the caller then falls back to small stack buffers).  The contents do not
 * survive a call that grows the buffer. */
enum { KD_SCRATCH_GEMM, KD_SCRATCH_SLOTS };
float *kd_scratch(int slot, size_t floats);

/* The instruction-set paths of the dispatched kernels (lib/core/cpu.c), in
 * increasing order of what they need from the processor. */
typedef enum kd_cpu_path { KD_CPU_GENERIC, KD_CPU_AVX2, KD_CPU_AVX512, KD_CPU_PATHS } kd_cpu_path;
/* The best path this processor and operating system support. */
kd_cpu_path kd_cpu_best(void);
/* The path in use: the best one, or a lower one forced by KDENS_CPU or
 * kdens_set_cpu_path(). */
kd_cpu_path kd_cpu_active(void);
const char *kd_cpu_path_name(kd_cpu_path path);
/* Whether the processor has the int8 dot-product instruction of a path's
 * registers: AVX-VNNI (ymm) for avx2, AVX512-VNNI (zmm) for avx512; never
 * for generic.  The path's own register state is checked by kd_cpu_best(). */
bool kd_cpu_has_vnni(kd_cpu_path path);

/* Files. */
/* CRC-32 as zlib's crc32() computes it, continuing from crc (0 to start afresh). */
uint32_t kd_crc32(uint32_t crc, const void *data, size_t len);
/* FNV-1a over len bytes, continuing from h (KD_FNV_BASIS to start afresh). */
#define KD_FNV_BASIS 1469598103934665603ull
uint64_t kd_fnv1a(uint64_t h, const void *data, size_t len);
/* Read a whole file (a NUL is appended, not counted in *len). */
kdens_status kd_read_file(const char *path, char **data, size_t *len);
/* A whole text file (a spec, a plan): as kd_read_file, and a NUL byte inside
 * is refused with `status`, naming the file and `what` it should be. */
kdens_status kd_read_text(const char *path, kdens_status status, const char *what, char **text);
/* Write data atomically: temp file in the same folder, fsync, rename, fsync
 * of the folder.  The previous file at path survives any failure. */
kdens_status kd_write_file_atomic(const char *path, const void *data, size_t len);



/* mkdir -p; 0 or -1 with errno. */
int kd_mkdirs(const char *path);

/* Paths (lib/core/path.c), the one way the library builds them: allocated
 * to their length (free() them), never cut short; NULL, with the message
 * set (kd_fail, KDENS_E_NOMEM), when out of memory, so that a caller
 * returns KDENS_E_NOMEM.  Where two parts meet, their slashes become
 * exactly one ("ws/" + "/logs" is "ws/logs"; the root "/" stays); empty
 * parts add nothing; slashes elsewhere are kept.
 * kd_path_join: the parts, up to a NULL: kd_path_join(ws, "teachers.csv", NULL).
 * kd_path_fmt: dir joined so with a printf-formatted rest, or the formatted
 * text alone when dir is NULL:
 *   kd_path_fmt(ws, "%s/logs/%s.csv", dataset, uuid)
 *   kd_path_fmt(NULL, "%s.ckpt", model) */
char *kd_path_join(const char *first, ...) __attribute__((sentinel));
char *kd_path_fmt(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A growable byte buffer used to build file contents and texts. */
typedef struct kd_buf {
    char *data;
    size_t len, cap;
    bool failed; /* an allocation failed: contents are incomplete */
} kd_buf;
void kd_buf_put(kd_buf *b, const void *data, size_t len);
void kd_buf_printf(kd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kd_buf_u32(kd_buf *b, uint32_t v);
void kd_buf_u64(kd_buf *b, uint64_t v);
void kd_buf_free(kd_buf *b);
/* Copy into a caller buffer with snprintf semantics; returns b->len. */
size_t kd_buf_export(const kd_buf *b, char *out, size_t size);

/* Communicators (comm.c).  A NULL communicator is one process alone: the
 * collectives do nothing and return KDENS_OK. */
kdens_status kd_comm_allreduce_float(kdens_comm *c, float *v, size_t n);
kdens_status kd_comm_allreduce_double(kdens_comm *c, double *v, size_t n);
kdens_status kd_comm_broadcast(kdens_comm *c, void *buf, size_t bytes, int root);
/* Root's b->len bytes of b into b on every other rank (b NUL-terminated
 * there; its former contents dropped). */
kdens_status kd_comm_broadcast_blob(kdens_comm *c, kd_buf *b, int root);
kdens_status kd_comm_send(kdens_comm *c, int to, int tag, const void *buf, size_t bytes);
/* The next message with the tag from any other rank (*buf malloc'd). */
kdens_status kd_comm_recv(kdens_comm *c, int tag, void **buf, size_t *bytes, int *from);
void kd_comm_abort(kdens_comm *c, int code);

/* Growable arrays, one way everywhere: when n == cap, take
 * cap = kd_grown(cap, first) and kd_resize every array that shares the
 * capacity.  kd_resize points *items_ptr (the address of a T * holding a
 * malloc'd array or NULL) at room for count elements of size bytes; false
 * when out of memory or the size overflows (the array is then unchanged). */
static inline size_t kd_grown(size_t cap, size_t first) { return cap ? 2 * cap : first; }
bool kd_resize(void *items_ptr, size_t count, size_t size);

/* The index of the entry called `name` in a table of n entries of `stride`
 * bytes whose first member is their `const char *` name, or -1: the one
 * lookup of the name-keyed tables (fusion rules, distillation modes). */
static inline int kd_table_find(const void *table, size_t n, size_t stride, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        const char *entry = *(const char *const *)(const void *)((const char *)table + i * stride);
        if (strcmp(entry, name) == 0)
            return (int)i;
    }
    return -1;
}

/* The one CSV reader and writer (lib/core/csv.c, RFC 4180: quoted fields
 * may hold commas, line breaks and "" for a quote; rows end at LF or CRLF;
 * a UTF-8 byte-order mark is skipped).  The reader walks a text in memory:
 *   kd_csv c; kd_csv_open(&c, text, len);
 *   while ((r = kd_csv_next(&c)) > 0) use c.fields[0 .. c.n_fields), c.line
 *   kd_csv_close(&c);
 * kd_csv_next returns 1 for a row, 0 at the end, -1 for a malformed row
 * (c.error says why: an unterminated quote, a quote inside a bare field, a
 * NUL byte, out of memory); blank lines are skipped.  Fields stay valid
 * until the next call. */
typedef struct kd_csv {
    const char *p, *end;
    size_t line, next_line; /* 1-based: where the current row starts, the next */
    char **fields;
    size_t n_fields;
    const char *error;
    kd_buf text; /* the current row's fields, each NUL-terminated */
    size_t *offsets, cap;
} kd_csv;
void kd_csv_open(kd_csv *c, const char *text, size_t len);
int kd_csv_next(kd_csv *c);
void kd_csv_close(kd_csv *c);
/* s as one CSV field, quoted when it holds a comma, a quote or a line break. */
void kd_csv_put_field(kd_buf *b, const char *s);

/* The section container of binary files (lib/core/sections.c). */
typedef struct kd_section {
    char tag[5];
    const uint8_t *data;
    size_t len;
} kd_section;
void kd_section_put(kd_buf *file, const char tag[4], const void *data, size_t len);
/* Check magic, version (at most max_version), bounds and CRCs; up to max
 * sections are returned (pointing into data).  `what` names the file kind in
 * messages ("model", "checkpoint"). */
kdens_status kd_sections_parse(const char *path, const uint8_t *data, size_t len,
                               const char magic[8], uint32_t max_version, const char *what,
                               kd_section *out, int max, int *count);
const kd_section *kd_section_find(const kd_section *s, int count, const char *tag);

#endif
