/* The dispatched kernels on every path this processor supports (each table
 * is called directly, whatever KDENS_CPU says): GEMM against a double
 * precision reference and against OpenBLAS for every transpose, edge sizes
 * and alpha/beta; and the promises the library builds on: a row of C does
 * not change with the number of rows or columns computed beside it, the
 * threaded GEMM equals the single-threaded kernel bit for bit, beta = 0
 * never reads C, and the paths agree with each other within rounding. */
#include "testutil.h"

#include "tensor/kernels.h"

#include <cblas.h>
#include <math.h>

static float at(bool trans, const float *x, int ld, int row, int col)
{
    return trans ? x[(size_t)col * ld + row] : x[(size_t)row * ld + col];
}

typedef struct gemm_case {
    bool ta, tb;
    int m, n, k;
    float alpha, beta;
} gemm_case;

/* Operands sized for op(A) m x k and op(B) k x n with padded leading
 * dimensions, and C with a padded one, filled from a seed. */
typedef struct operands {
    int lda, ldb, ldc;
    float *a, *b, *c0;
} operands;

static operands make_operands(const gemm_case *t, uint64_t seed)
{
    operands o;
    o.lda = (t->ta ? t->m : t->k) + 3;
    o.ldb = (t->tb ? t->k : t->n) + 5;
    o.ldc = t->n + 2;
    size_t a_rows = (size_t)(t->ta ? t->k : t->m), b_rows = (size_t)(t->tb ? t->n : t->k);
    o.a = malloc(sizeof(float) * (a_rows * o.lda + 1));
    o.b = malloc(sizeof(float) * (b_rows * o.ldb + 1));
    o.c0 = malloc(sizeof(float) * ((size_t)t->m * o.ldc + 1));
    tu_fill(o.a, a_rows * o.lda, 1.0f, seed);
    tu_fill(o.b, b_rows * o.ldb, 1.0f, seed + 1);
    tu_fill(o.c0, (size_t)t->m * o.ldc, 1.0f, seed + 2);
    if (t->beta == 0.0f) /* beta 0 must not read C: garbage there must not leak */
        for (size_t i = 0; i < (size_t)t->m * o.ldc; i++)
            o.c0[i] = NAN;
    return o;
}

static void free_operands(operands *o)
{
    free(o->a);
    free(o->b);
    free(o->c0);
}

static float *run(const kd_kernels *kern, const gemm_case *t, const operands *o)
{
    float *c = malloc(sizeof(float) * ((size_t)t->m * o->ldc + 1));
    memcpy(c, o->c0, sizeof(float) * (size_t)t->m * o->ldc);
    kern->gemm(t->ta, t->tb, t->m, t->n, t->k, t->alpha, o->a, o->lda, o->b, o->ldb, t->beta, c,
               o->ldc);
    return c;
}

static void check_case(const kd_kernels *kern, const gemm_case *t)
{
    operands o = make_operands(t, (uint64_t)(t->m * 131 + t->n * 7 + t->k));
    float *c = run(kern, t, &o);
    float *blas = malloc(sizeof(float) * ((size_t)t->m * o.ldc + 1));
    memcpy(blas, o.c0, sizeof(float) * (size_t)t->m * o.ldc);
    if (t->beta == 0.0f) /* OpenBLAS may read C when beta is 0 */
        memset(blas, 0, sizeof(float) * (size_t)t->m * o.ldc);
    cblas_sgemm(CblasRowMajor, t->ta ? CblasTrans : CblasNoTrans,
                t->tb ? CblasTrans : CblasNoTrans, t->m, t->n, t->k, t->alpha, o.a, o.lda, o.b,
                o.ldb, t->beta, blas, o.ldc);
    for (int i = 0; i < t->m; i++)
        for (int j = 0; j < t->n; j++) {
            double sum = 0, mag = 0;
            for (int p = 0; p < t->k; p++) {
                double v = (double)at(t->ta, o.a, o.lda, i, p) * at(t->tb, o.b, o.ldb, p, j);
                sum += v;
                mag += fabs(v);
            }
            double c0 = t->beta == 0.0f ? 0.0 : o.c0[(size_t)i * o.ldc + j];
            double want = t->alpha * sum + t->beta * c0;
            /* float rounding of k products and sums: k * eps * magnitude */
            double tol = 1e-6 + (t->k + 2) * 1.2e-7 * (fabs(t->alpha) * mag + fabs(t->beta * c0));
            float got = c[(size_t)i * o.ldc + j], ob = blas[(size_t)i * o.ldc + j];
            if (!(fabs(got - want) <= tol) || !(fabs(got - ob) <= 2 * tol))
                fail_msg("%s gemm %c%c m=%d n=%d k=%d alpha=%g beta=%g: C[%d][%d] = %.9g, "
                         "double %.9g, OpenBLAS %.9g (tolerance %.3g)",
                         kd_cpu_path_name(kern->path), t->ta ? 'T' : 'N', t->tb ? 'T' : 'N',
                         t->m, t->n, t->k, (double)t->alpha, (double)t->beta, i, j, (double)got,
                         want, (double)ob, tol);
        }
    /* columns beyond n are the caller's: untouched */
    for (int i = 0; i < t->m; i++)
        for (int j = t->n; j < o.ldc; j++) {
            float was = o.c0[(size_t)i * o.ldc + j], now = c[(size_t)i * o.ldc + j];
            assert_true(memcmp(&was, &now, sizeof was) == 0);
        }
    free(blas);
    free(c);
    free_operands(&o);
}

/* Run fn for the table of every path this processor supports. */
static void each_path(void (*fn)(const kd_kernels *kern))
{
    int ran = 0;
    for (int p = 0; p < KD_CPU_PATHS; p++) {
        const kd_kernels *kern = kd_kernels_for((kd_cpu_path)p);
        if (!kern)
            continue;
        assert_int_equal(kern->path, p);
        fn(kern);
        ran++;
    }
    assert_int_equal(ran, (int)kd_cpu_best() + 1);
}

static const int sizes_m[] = {1, 2, 5, 12, 13, 37, 150};
static const int sizes_n[] = {1, 7, 16, 32, 33, 70};
static const int sizes_k[] = {1, 3, 255, 256, 257, 600};

static void gemm_against_references(const kd_kernels *kern)
{
    static const float alphas[] = {1.0f, 0.5f}, betas[] = {0.0f, 1.0f, -0.75f};
    for (int tr = 0; tr < 4; tr++)
        for (size_t im = 0; im < KD_ARRAY_LEN(sizes_m); im++)
            for (size_t in = 0; in < KD_ARRAY_LEN(sizes_n); in++)
                for (size_t ik = 0; ik < KD_ARRAY_LEN(sizes_k); ik++) {
                    size_t pick = im + in + ik + (size_t)tr; /* vary alpha/beta cheaply */
                    gemm_case t = {tr & 1, tr >> 1, sizes_m[im], sizes_n[in], sizes_k[ik],
                                   alphas[pick % 2], betas[pick % 3]};
                    check_case(kern, &t);
                }
}

static void test_gemm_every_path(void **state)
{
    (void)state;
    each_path(gemm_against_references);
}

static void test_gemm_k_zero_and_empty(void **state)
{
    (void)state;
    float c[6] = {1, 2, 3, 4, 5, 6}, a[1] = {0}, b[1] = {0};
    for (int p = 0; p <= (int)kd_cpu_best(); p++) {
        const kd_kernels *kern = kd_kernels_for((kd_cpu_path)p);
        float x[6];
        memcpy(x, c, sizeof c);
        kern->gemm(false, false, 2, 3, 0, 1.0f, a, 1, b, 3, 0.5f, x, 3); /* C = beta C */
        for (int i = 0; i < 6; i++)
            assert_true(x[i] == 0.5f * c[i]);
        kern->gemm(false, false, 0, 3, 4, 1.0f, a, 1, b, 3, 0.0f, x, 3); /* nothing */
        assert_true(x[0] == 0.5f);
    }
}

/* Row i of C computed among m rows equals it computed alone, bit for bit,
 * and so do column blocks computed apart: the batch size cannot change a
 * prediction, and splitting work over threads changes nothing. */
static void rows_and_columns_independent(const kd_kernels *kern)
{
    for (int tr = 0; tr < 4; tr++) {
        gemm_case full = {tr & 1, tr >> 1, 37, 70, 600, 1.0f, 1.0f};
        operands o = make_operands(&full, 99 + (uint64_t)tr);
        float *c = run(kern, &full, &o);
        for (int i = 0; i < full.m; i += 6) {
            int rows = KD_MIN(i % 4 + 1, full.m - i);
            float *part = malloc(sizeof(float) * (size_t)rows * o.ldc);
            memcpy(part, o.c0 + (size_t)i * o.ldc, sizeof(float) * (size_t)rows * o.ldc);
            const float *a = full.ta ? o.a + i : o.a + (size_t)i * o.lda;
            kern->gemm(full.ta, full.tb, rows, full.n, full.k, 1.0f, a, o.lda, o.b, o.ldb, 1.0f,
                       part, o.ldc);
            if (memcmp(part, c + (size_t)i * o.ldc, sizeof(float) * (size_t)rows * o.ldc) != 0)
                fail_msg("%s %c%c: rows %d..%d differ when computed apart",
                         kd_cpu_path_name(kern->path), full.ta ? 'T' : 'N', full.tb ? 'T' : 'N',
                         i, i + rows - 1);
            free(part);
        }
        for (int j = 0; j < full.n; j += 23) {
            int cols = KD_MIN(23, full.n - j);
            float *part = malloc(sizeof(float) * (size_t)full.m * o.ldc);
            memcpy(part, o.c0, sizeof(float) * (size_t)full.m * o.ldc);
            const float *b = full.tb ? o.b + (size_t)j * o.ldb : o.b + j;
            kern->gemm(full.ta, full.tb, full.m, cols, full.k, 1.0f, o.a, o.lda, b, o.ldb, 1.0f,
                       part + j, o.ldc);
            for (int i = 0; i < full.m; i++)
                if (memcmp(part + (size_t)i * o.ldc + j, c + (size_t)i * o.ldc + j,
                           sizeof(float) * cols) != 0)
                    fail_msg("%s: columns %d..%d differ when computed apart",
                             kd_cpu_path_name(kern->path), j, j + cols - 1);
            free(part);
        }
        free(c);
        free_operands(&o);
    }
}

static void test_gemm_rows_and_columns_independent(void **state)
{
    (void)state;
    each_path(rows_and_columns_independent);
}

/* kd_gemm (the layers' entry, threaded) equals the active path's kernel. */
static void test_threaded_gemm_equals_kernel(void **state)
{
    (void)state;
    int before = kdens_get_num_threads();
    for (int threads = 1; threads <= 3; threads++) {
        ASSERT_OK(kdens_set_num_threads(threads));
        for (int tr = 0; tr < 4; tr++) {
            gemm_case t = {tr & 1, tr >> 1, tr < 2 ? 300 : 40, tr < 2 ? 40 : 300, 200, 1.0f,
                           1.0f};
            operands o = make_operands(&t, 5);
            float *want = run(kd_kernels_active(), &t, &o);
            float *got = malloc(sizeof(float) * (size_t)t.m * o.ldc);
            memcpy(got, o.c0, sizeof(float) * (size_t)t.m * o.ldc);
            kd_gemm(t.ta, t.tb, t.m, t.n, t.k, 1.0f, o.a, o.lda, o.b, o.ldb, 1.0f, got, o.ldc);
            assert_memory_equal(got, want, sizeof(float) * (size_t)t.m * o.ldc);
            free(got);
            free(want);
            free_operands(&o);
        }
    }
    ASSERT_OK(kdens_set_num_threads(before));
}

/* The paths differ only in rounding (fused multiply-adds): within a few
 * float ulps of the operands' magnitude. */
static void test_paths_agree(void **state)
{
    (void)state;
    gemm_case t = {false, true, 64, 48, 1000, 1.0f, 0.0f};
    operands o = make_operands(&t, 7);
    float *ref = run(kd_kernels_for(KD_CPU_GENERIC), &t, &o);
    for (int p = 1; p <= (int)kd_cpu_best(); p++) {
        float *c = run(kd_kernels_for((kd_cpu_path)p), &t, &o);
        for (int i = 0; i < t.m; i++)
            for (int j = 0; j < t.n; j++) {
                float x = c[(size_t)i * o.ldc + j], r = ref[(size_t)i * o.ldc + j];
                /* |sum| of 1000 unit normal products is ~30; ulp-level drift */
                if (fabsf(x - r) > 1e-4f * (1.0f + fabsf(r)))
                    fail_msg("%s vs generic: C[%d][%d] %.9g vs %.9g",
                             kd_cpu_path_name((kd_cpu_path)p), i, j, (double)x, (double)r);
            }
        free(c);
    }
    free(ref);
    free_operands(&o);
}

/* exp, sigmoid, swish and swish's derivative against double precision on
 * every path, over lengths with ragged tails, and at the edges. */
static void exp_family(const kd_kernels *kern)
{
    enum { N = 1003 };
    float x[N], y[N], dy[N], dx[N];
    for (int i = 0; i < N; i++) {
        x[i] = -90.0f + 179.0f * (float)i / (N - 1); /* across the whole range */
        dy[i] = 0.5f + (float)(i % 7) * 0.25f;
    }
    for (size_t len = 1; len <= N; len += len < 40 ? 1 : 321) {
        kern->exp(x, y, len);
        for (size_t i = 0; i < len; i++) {
            double want = exp((double)x[i]);
            if (x[i] < -87.33654f) /* flushed rather than denormal */
                want = 0;
            else if (x[i] > 88.72283f)
                want = INFINITY;
            if (!(y[i] == (float)want || fabs(y[i] - want) <= 3e-7 * want))
                fail_msg("%s exp(%.9g) = %.9g, want %.9g", kd_cpu_path_name(kern->path),
                         (double)x[i], (double)y[i], want);
        }
    }
    kern->sigmoid(x, y, N);
    for (int i = 0; i < N; i++) {
        double want = 1.0 / (1.0 + exp(-(double)x[i]));
        if (!(fabs(y[i] - want) <= 1e-6 * want + 1e-37))
            fail_msg("%s sigmoid(%.9g) = %.9g, want %.9g", kd_cpu_path_name(kern->path),
                     (double)x[i], (double)y[i], want);
    }
    kern->swish(x, y, N);
    memset(dx, 0, sizeof dx);
    kern->swish_backward(x, dy, dx, N, true);
    for (int i = 0; i < N; i++) {
        double s = 1.0 / (1.0 + exp(-(double)x[i])), sw = x[i] * s;
        double d = dy[i] * (s + x[i] * s * (1.0 - s));
        if (!(fabs(y[i] - sw) <= 1e-6 * fabs(sw) + 1e-30) ||
            !(fabs(dx[i] - d) <= 1e-5 * fabs(d) + 1e-6))
            fail_msg("%s swish(%.9g) = %.9g (want %.9g), gradient %.9g (want %.9g)",
                     kd_cpu_path_name(kern->path), (double)x[i], (double)y[i], sw,
                     (double)dx[i], d);
    }
    /* accumulate: adds to what is there */
    float before[N];
    memcpy(before, dx, sizeof dx);
    kern->swish_backward(x, dy, dx, N, false);
    for (int i = 0; i < N; i++)
        assert_true(fabsf(dx[i] - 2 * before[i]) <= 1e-6f * fabsf(before[i]) + 1e-30f);
    float edge[4] = {NAN, INFINITY, -INFINITY, 0.0f}, out[4];
    kern->exp(edge, out, 4);
    assert_true(isnan(out[0]) && isinf(out[1]) && out[1] > 0 && out[2] == 0.0f &&
                out[3] == 1.0f);
    kern->sigmoid(edge, out, 4);
    assert_true(isnan(out[0]) && out[1] == 1.0f && out[2] == 0.0f && out[3] == 0.5f);
}

static void test_exp_family_every_path(void **state)
{
    (void)state;
    each_path(exp_family);
}

static void test_path_selection(void **state)
{
    (void)state;
    const char *best = kd_cpu_path_name(kd_cpu_best());
    ASSERT_OK(kdens_set_cpu_path("generic"));
    assert_string_equal(kdens_cpu_path(), "generic");
    assert_int_equal(kd_kernels_active()->path, KD_CPU_GENERIC);
    ASSERT_STATUS(kdens_set_cpu_path("sse9"), KDENS_E_ARG);
    assert_non_null(strstr(kdens_errmsg(), "sse9"));
    if (kd_cpu_best() < KD_CPU_AVX512)
        ASSERT_STATUS(kdens_set_cpu_path("avx512"), KDENS_E_ARG);
    ASSERT_OK(kdens_set_cpu_path(NULL));
    assert_string_equal(kdens_cpu_path(), best);
    /* the supported list ends with the best path */
    const char *list = kdens_cpu_paths();
    size_t len = strlen(list), blen = strlen(best);
    assert_true(len >= blen && strcmp(list + len - blen, best) == 0);
    assert_true(strncmp(list, "generic", 7) == 0);
}

int main(void)
{
    printf("kernel paths of this processor: %s\n", kdens_cpu_paths());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_every_path),
        cmocka_unit_test(test_gemm_k_zero_and_empty),
        cmocka_unit_test(test_gemm_rows_and_columns_independent),
        cmocka_unit_test(test_threaded_gemm_equals_kernel),
        cmocka_unit_test(test_paths_agree),
        cmocka_unit_test(test_exp_family_every_path),
        cmocka_unit_test(test_path_selection),
    };
    return cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
}
