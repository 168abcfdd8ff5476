/* The trainer and evaluation: schedules, Keras' early-stopping semantics
 * (patience, restore best), the CSV log, NaN handling, reference defaults,
 * determinism, evaluation metrics against a direct computation, and
 * training on float feature rows. */
#include "testutil.h"

#include "data/data.h"
#include "nn/nn.h"
#include "train/train.h"

#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

enum { S = 8, K = 4 };

/* n images of S x S: class c has a bright c-th quadrant (learnable); with
 * flip, the labels are permuted (a validation set that disagrees). */
static kdens_dataset *make_set(size_t n, uint64_t seed, bool flip)
{
    kdens_dataset *ds;
    ASSERT_OK(kd_dataset_new(n, S, S, 1, K, &ds));
    uint64_t r = seed;
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % K);
        uint8_t *px = ds->store->pixels + i * S * S;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                r = r * 6364136223846793005ULL + 1442695040888963407ULL;
                int q = (y >= S / 2) * 2 + (x >= S / 2);
                px[y * S + x] = (uint8_t)((q == c ? 150 : 20) + (r >> 60));
            }
        ds->store->labels[i] = flip ? (c + 1) % K : c;
    }
    return ds;
}

static void test_schedules(void **state)
{
    (void)state;
    assert_true(kdens_schedule_lr(KDENS_SCHEDULE_CONSTANT, 0.1, 7, 10, 0, 0) == 0.1);
    assert_true(fabs(kdens_schedule_lr(KDENS_SCHEDULE_STEP, 0.1, 7, 10, 3, 0.5) - 0.025) < 1e-12);
    assert_true(fabs(kdens_schedule_lr(KDENS_SCHEDULE_COSINE, 0.1, 0, 10, 0, 0) - 0.1) < 1e-12);
    assert_true(fabs(kdens_schedule_lr(KDENS_SCHEDULE_COSINE, 0.1, 5, 10, 0, 0) - 0.05) < 1e-12);
    /* cyclic: restarts every period */
    double a = kdens_schedule_lr(KDENS_SCHEDULE_CYCLIC, 0.1, 1, 12, 4, 0);
    double b = kdens_schedule_lr(KDENS_SCHEDULE_CYCLIC, 0.1, 5, 12, 4, 0);
    assert_true(a == b);
    assert_true(kdens_schedule_lr(KDENS_SCHEDULE_CYCLIC, 0.1, 4, 12, 4, 0) == 0.1);
    assert_true(fabs(kdens_schedule_lr(KDENS_SCHEDULE_CYCLIC, 0.1, 2, 12, 4, 0) - 0.05) < 1e-12);
}

/* The trainer's own schedules: milestones, the floor, the triangle of fast
 * geometric ensembling stepped within epochs; and the epoch starts in the
 * log. */
static void test_trainer_schedules(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char log[4200];
    snprintf(log, sizeof log, "%s/log.csv", dir);
    kdens_dataset *tr = make_set(64, 1, false);
    kdens_model *m;
    ASSERT_OK(kdens_model_create("test", S, S, 1, K, 3, &m));
    kdens_trainer *t;
    ASSERT_OK(kdens_trainer_create(m, tr, NULL, &t));
    ASSERT_OK(kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, 0.01));
    ASSERT_OK(kdens_trainer_set_epochs(t, 8));
    const int miles[3] = {2, 3, 6};
    ASSERT_OK(kdens_trainer_set_milestones(t, miles, 3));
    ASSERT_OK(kdens_trainer_set_schedule(t, KDENS_SCHEDULE_MILESTONES, 0, 0.5));
    const double want_m[8] = {0.01, 0.01, 0.005, 0.0025, 0.0025, 0.0025, 0.00125, 0.00125};
    for (int e = 0; e < 8; e++)
        assert_true(fabs(kd_trainer_lr(t, e) - want_m[e]) < 1e-15);
    /* cosine down to a floor */
    ASSERT_OK(kdens_trainer_set_lr_floor(t, 0.002));
    ASSERT_OK(kdens_trainer_set_schedule(t, KDENS_SCHEDULE_COSINE, 0, 0));
    assert_true(fabs(kd_trainer_lr(t, 0) - 0.01) < 1e-15);
    assert_true(fabs(kd_trainer_lr(t, 4) - 0.006) < 1e-15); /* halfway: the middle */
    /* the triangle: a cycle of 4 epochs, down to the floor at 2, back at 4,
     * linear in between, also inside an epoch */
    ASSERT_OK(kdens_trainer_set_schedule(t, KDENS_SCHEDULE_TRIANGULAR, 4, 0));
    assert_true(fabs(kd_trainer_lr(t, 0) - 0.01) < 1e-15);
    assert_true(fabs(kd_trainer_lr(t, 1) - 0.006) < 1e-15);
    assert_true(fabs(kd_trainer_lr(t, 1.5) - 0.004) < 1e-15);
    assert_true(fabs(kd_trainer_lr(t, 2) - 0.002) < 1e-15);
    assert_true(fabs(kd_trainer_lr(t, 3.25) - 0.007) < 1e-15);
    assert_true(fabs(kd_trainer_lr(t, 4) - 0.01) < 1e-15);
    /* the log shows each epoch's starting rate */
    ASSERT_OK(kdens_trainer_set_log(t, log));
    ASSERT_OK(kdens_trainer_set_epochs(t, 4));
    ASSERT_OK(kdens_trainer_fit(t));
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char line[256];
    assert_non_null(fgets(line, sizeof line, f));
    const double want_t[4] = {0.01, 0.006, 0.002, 0.006};
    for (int e = 0; e < 4; e++) {
        assert_non_null(fgets(line, sizeof line, f));
        double lr;
        assert_int_equal(sscanf(line, "%*d,%*f,%*f,%*[^,],%*[^,],%lf", &lr), 1);
        assert_true(fabs(lr - want_t[e]) < 1e-9);
    }
    fclose(f);
    /* bad settings */
    const int unsorted[2] = {3, 2};
    ASSERT_STATUS(kdens_trainer_set_milestones(t, unsorted, 2), KDENS_E_ARG);
    ASSERT_STATUS(kdens_trainer_set_milestones(t, miles, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_trainer_set_lr_floor(t, 0.01), KDENS_E_ARG); /* not below lr */
    ASSERT_STATUS(kdens_trainer_set_lr_floor(t, -1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_trainer_set_schedule(t, KDENS_SCHEDULE_TRIANGULAR, 0, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_trainer_set_schedule(t, KDENS_SCHEDULE_MILESTONES, 0, 2), KDENS_E_ARG);
    kdens_trainer_free(t);
    kdens_model_free(m);
    kdens_dataset_free(tr);
    tu_rm_rf(dir);
}

static void test_evaluate(void **state)
{
    (void)state;
    kdens_dataset *ds = make_set(37, 1, false);
    kdens_model *m;
    ASSERT_OK(kdens_model_create("test", S, S, 1, K, 3, &m));
    double loss, top1, top5, per_class[K];
    uint64_t conf[K * K];
    ASSERT_OK(kdens_model_evaluate(m, ds, 10, &loss, &top1, &top5, per_class, conf));
    /* direct computation */
    float x[37 * S * S], z[37 * K];
    for (size_t i = 0; i < 37 * S * S; i++)
        x[i] = ds->store->pixels[i] / 255.0f;
    ASSERT_OK(kdens_model_predict_logits(m, x, 37, z));
    double want = 0;
    size_t right = 0;
    uint64_t total = 0;
    for (int i = 0; i < 37; i++) {
        int y = ds->store->labels[i], best = 0;
        double mx = z[i * K], sum = 0;
        for (int c = 1; c < K; c++) {
            mx = fmax(mx, z[i * K + c]);
            best = z[i * K + c] > z[i * K + best] ? c : best;
        }
        for (int c = 0; c < K; c++)
            sum += exp(z[i * K + c] - mx);
        want += -(z[i * K + y] - mx - log(sum));
        right += best == y;
    }
    assert_true(fabs(loss - want / 37) < 1e-6);
    assert_true(fabs(top1 - (double)right / 37) < 1e-12);
    assert_true(top5 == 1.0); /* 4 classes */
    for (int c = 0; c < K * K; c++)
        total += conf[c];
    assert_int_equal(total, 37);
    uint64_t diag = 0;
    for (int c = 0; c < K; c++)
        diag += conf[c * K + c];
    assert_int_equal(diag, right);
    /* the same samples as feature rows (scaled as the model does): the same
     * metrics */
    int32_t labels[37];
    static float scaled[37 * S * S];
    for (int i = 0; i < 37; i++)
        labels[i] = ds->store->labels[i];
    for (size_t i = 0; i < 37 * S * S; i++)
        scaled[i] = ds->store->pixels[i] * m->in_scale[0] + m->in_offset[0];
    kd_features rows = {scaled, labels, 37, S * S};
    double row_loss, row_top1;
    ASSERT_OK(kd_evaluate_features(m, &rows, 10, &row_loss, &row_top1));
    assert_true(row_loss == loss && row_top1 == top1);
    /* a dataset that does not fit */
    kdens_model *other;
    ASSERT_OK(kdens_model_create("test", S + 2, S, 1, K, 3, &other));
    ASSERT_STATUS(kdens_model_evaluate(other, ds, 10, &loss, NULL, NULL, NULL, NULL),
                  KDENS_E_SHAPE);
    kdens_model_free(other);
    kdens_model_free(m);
    kdens_dataset_free(ds);
}

static void test_fit_learns_and_logs(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char log[4200];
    snprintf(log, sizeof log, "%s/log.csv", dir);
    kdens_dataset *tr = make_set(200, 1, false), *va = make_set(40, 2, false);
    kdens_model *m;
    ASSERT_OK(kdens_model_create("test", S, S, 1, K, 3, &m));
    kdens_trainer *t;
    ASSERT_OK(kdens_trainer_create(m, tr, va, &t));
    ASSERT_OK(kdens_trainer_set_epochs(t, 4));
    ASSERT_OK(kdens_trainer_set_batch(t, 16));
    ASSERT_OK(kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, 0.01));
    ASSERT_OK(kdens_trainer_set_log(t, log));
    ASSERT_OK(kdens_trainer_fit(t));
    assert_int_equal(kdens_trainer_epochs_run(t), 4);
    double acc;
    ASSERT_OK(kdens_model_evaluate(m, va, 16, NULL, &acc, NULL, NULL, NULL));
    assert_true(acc > 0.9);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char line[256];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds\n");
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        int e;
        double l, a, vl, va_, lr, s;
        assert_int_equal(sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf,%lf", &e, &l, &a, &vl, &va_, &lr,
                                &s),
                         7);
        assert_int_equal(e, ++rows);
        assert_true(lr == 0.01);
    }
    fclose(f);
    assert_int_equal(rows, 4);
    kdens_trainer_free(t);
    kdens_model_free(m);
    kdens_dataset_free(tr);
    kdens_dataset_free(va);
    tu_rm_rf(dir);
}

/* Validation labels disagree with training: val_loss rises after epoch 1. */
static void run_diverging(bool restore, int *epochs_run, int *best_epoch, double *best_loss,
                          double *final_loss)
{
    kdens_dataset *tr = make_set(200, 1, false), *va = make_set(40, 2, true);
    kdens_model *m;
    ASSERT_OK(kdens_model_create("test", S, S, 1, K, 3, &m));
    kdens_trainer *t;
    ASSERT_OK(kdens_trainer_create(m, tr, va, &t));
    ASSERT_OK(kdens_trainer_set_epochs(t, 20));
    ASSERT_OK(kdens_trainer_set_batch(t, 16));
    ASSERT_OK(kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, 0.01));
    ASSERT_OK(kdens_trainer_set_early_stopping(t, 3, restore));
    ASSERT_OK(kdens_trainer_fit(t));
    *epochs_run = kdens_trainer_epochs_run(t);
    *best_epoch = kdens_trainer_best_epoch(t);
    *best_loss = kdens_trainer_best_val_loss(t);
    ASSERT_OK(kdens_model_evaluate(m, va, 16, final_loss, NULL, NULL, NULL, NULL));
    kdens_trainer_free(t);
    kdens_model_free(m);
    kdens_dataset_free(tr);
    kdens_dataset_free(va);
}

static void test_early_stopping(void **state)
{
    (void)state;
    int run, best;
    double best_loss, final_loss;
    run_diverging(true, &run, &best, &best_loss, &final_loss);
    assert_int_equal(run, best + 3); /* patience 3: three epochs without improvement */
    assert_true(run < 20);
    assert_true(final_loss == best_loss); /* the best weights are back, bit for bit */
    int run2, best2;
    double best_loss2, final_loss2;
    run_diverging(false, &run2, &best2, &best_loss2, &final_loss2);
    assert_int_equal(run2, run); /* same seed, same run */
    assert_true(final_loss2 > best_loss2); /* without restore, the last weights stay */
}

static void test_nan_and_arguments(void **state)
{
    (void)state;
    kdens_dataset *tr = make_set(64, 1, false);
    kdens_model *m;
    ASSERT_OK(kdens_model_create("test", S, S, 1, K, 3, &m));
    kdens_trainer *t;
    ASSERT_OK(kdens_trainer_create(m, tr, NULL, &t));
    ASSERT_OK(kdens_trainer_set_optimizer(t, KDENS_OPT_SGD, 1e30));
    ASSERT_OK(kdens_trainer_set_batch(t, 8));
    ASSERT_STATUS(kdens_trainer_fit(t), KDENS_E_NUMERIC);
    assert_non_null(strstr(kdens_errmsg(), "epoch 1"));
    ASSERT_STATUS(kdens_trainer_set_epochs(t, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_trainer_set_batch(t, 0), KDENS_E_ARG);
    ASSERT_STATUS(kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, -1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_trainer_set_schedule(t, KDENS_SCHEDULE_STEP, 0, 0.5), KDENS_E_ARG);
    ASSERT_STATUS(kdens_trainer_set_early_stopping(t, -1, 1), KDENS_E_ARG);
    ASSERT_STATUS(kdens_trainer_use_arch_defaults(t, "vgg16"), KDENS_E_NOTFOUND);
    kdens_trainer_free(t);
    /* the diverged weights are useless: a fresh model for the reference defaults */
    kdens_model *fresh;
    ASSERT_OK(kdens_model_create("test", S, S, 1, K, 3, &fresh));
    ASSERT_OK(kdens_trainer_create(fresh, tr, NULL, &t));
    ASSERT_OK(kdens_trainer_use_arch_defaults(t, "test")); /* 1 epoch, lr 0.005 */
    ASSERT_OK(kdens_trainer_fit(t));
    assert_int_equal(kdens_trainer_epochs_run(t), 1);
    kdens_trainer_free(t);
    kdens_model_free(fresh);
    kdens_model *wrong;
    ASSERT_OK(kdens_model_create("test", S, S, 1, K + 1, 3, &wrong));
    t = NULL;
    ASSERT_STATUS(kdens_trainer_create(wrong, tr, NULL, &t), KDENS_E_SHAPE);
    assert_null(t);
    kdens_model_free(wrong);
    kdens_model_free(m);
    kdens_dataset_free(tr);
}

/* Train resnet20 (batch norm) on an 8x8 task for 10 epochs; with a
 * checkpoint path, checkpoints every epoch and resumes when asked. */
static void checkpointed_run(const char *ckpt, bool resume, const char *log, float *weights,
                             size_t *n)
{
    kdens_dataset *tr = make_set(384, 1, false), *va = make_set(64, 2, false);
    kdens_model *m;
    ASSERT_OK(kdens_model_create("mobilenet_small", S, S, 1, K, 3, &m)); /* has dropout */
    kdens_trainer *t;
    ASSERT_OK(kdens_trainer_create(m, tr, va, &t));
    ASSERT_OK(kdens_trainer_set_epochs(t, 10));
    ASSERT_OK(kdens_trainer_set_batch(t, 32));
    ASSERT_OK(kdens_trainer_set_schedule(t, KDENS_SCHEDULE_COSINE, 0, 0));
    ASSERT_OK(kdens_trainer_set_early_stopping(t, 4, 1));
    ASSERT_OK(kdens_trainer_set_seed(t, 17));
    if (ckpt)
        ASSERT_OK(kdens_trainer_set_checkpoint(t, ckpt, resume));
    if (log)
        ASSERT_OK(kdens_trainer_set_log(t, log));
    ASSERT_OK(kdens_trainer_fit(t));
    if (weights) {
        memcpy(weights, m->weights, sizeof(float) * m->n_weights);
        *n = m->n_weights;
    }
    kdens_trainer_free(t);
    kdens_model_free(m);
    kdens_dataset_free(tr);
    kdens_dataset_free(va);
}

static int log_rows(const char *path)
{
    FILE *f = fopen(path, "r");
    int rows = 0, ch;
    if (!f)
        return 0;
    while ((ch = fgetc(f)) != EOF)
        rows += ch == '\n';
    fclose(f);
    return rows - 1;
}

static void test_sigkill_and_resume(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char ckpt[4200], log[4200];
    snprintf(ckpt, sizeof ckpt, "%s/run.ckpt", dir);
    snprintf(log, sizeof log, "%s/run.csv", dir);
    float *a = malloc(sizeof(float) * 100000), *b = malloc(sizeof(float) * 100000);
    size_t na = 0, nb = 0;
    checkpointed_run(NULL, false, NULL, a, &na); /* uninterrupted */
    assert_true(na < 100000);

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) { /* the run to be killed */
        checkpointed_run(ckpt, true, log, NULL, NULL);
        _exit(0);
    }
    struct timespec ms = {0, 1000000};
    while (log_rows(log) < 3) /* mid-way through epoch 4 or so */
        nanosleep(&ms, NULL);
    kill(child, SIGKILL);
    int status;
    waitpid(child, &status, 0);
    assert_true(WIFSIGNALED(status)); /* it really died mid-run */
    int done = log_rows(log);
    assert_true(done >= 3 && done < 10);

    checkpointed_run(ckpt, true, log, b, &nb); /* resume */
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, sizeof(float) * na);
    /* a damaged checkpoint is an error, not a silent restart */
    FILE *f = fopen(ckpt, "r+b");
    fseek(f, 40, SEEK_SET);
    fputc(0x5A, f);
    fclose(f);
    kdens_dataset *tr = make_set(64, 1, false);
    kdens_model *m;
    ASSERT_OK(kdens_model_create("mobilenet_small", S, S, 1, K, 3, &m));
    kdens_trainer *t;
    ASSERT_OK(kdens_trainer_create(m, tr, NULL, &t));
    ASSERT_OK(kdens_trainer_set_checkpoint(t, ckpt, 1));
    ASSERT_STATUS(kdens_trainer_fit(t), KDENS_E_FORMAT);
    kdens_trainer_free(t);
    kdens_model_free(m);
    kdens_dataset_free(tr);
    free(a);
    free(b);
    tu_rm_rf(dir);
}

struct soft_ctx {
    const kdens_dataset *ds;
    int calls;
    bool indices_ok;
};

/* Teacher outputs that say class (label + 1) % K, checked against the batch. */
static kdens_status flipped_teacher(void *user, const float *x, const size_t *indices, size_t n,
                                    float *targets)
{
    struct soft_ctx *c = user;
    c->calls++;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *px;
        int32_t label;
        if (kdens_dataset_get(c->ds, indices[i], &px, &label, NULL) != KDENS_OK ||
            fabsf(x[i * S * S] - px[0] / 255.0f) > 1e-6f)
            c->indices_ok = false;
        for (int k = 0; k < K; k++)
            targets[i * K + k] = k == (label + 1) % K ? 1.0f : 0.0f;
    }
    return KDENS_OK;
}

static void test_soft_targets(void **state)
{
    (void)state;
    kdens_dataset *tr = make_set(200, 1, false), *flipped = make_set(40, 2, true);
    kdens_model *m;
    ASSERT_OK(kdens_model_create("test", S, S, 1, K, 3, &m));
    ASSERT_OK(kdens_model_set_loss(m, 0.0f, 1.0f)); /* soft targets only */
    kdens_trainer *t;
    ASSERT_OK(kdens_trainer_create(m, tr, NULL, &t));
    struct soft_ctx ctx = {tr, 0, true};
    ASSERT_OK(kdens_trainer_set_soft_targets(t, flipped_teacher, &ctx));
    ASSERT_OK(kdens_trainer_set_epochs(t, 4));
    ASSERT_OK(kdens_trainer_set_batch(t, 16));
    ASSERT_OK(kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, 0.01));
    ASSERT_OK(kdens_trainer_fit(t));
    assert_int_equal(ctx.calls, 4 * 13);
    assert_true(ctx.indices_ok);
    double acc;
    ASSERT_OK(kdens_model_evaluate(m, flipped, 16, NULL, &acc, NULL, NULL, NULL));
    assert_true(acc > 0.9); /* it learned the teacher, not the labels */
    kdens_trainer_free(t);
    kdens_model_free(m);
    kdens_dataset_free(tr);
    kdens_dataset_free(flipped);
}

enum { D = 6 };

/* n rows of D floats: the class c = i % K of row i has feature c raised by
 * 1.5 over uniform noise in [-0.5, 0.5) (linearly separable). */
static void make_rows(size_t n, uint64_t seed, float *x, int32_t *y)
{
    uint64_t r = seed;
    for (size_t i = 0; i < n; i++) {
        y[i] = (int32_t)(i % K);
        for (int j = 0; j < D; j++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            x[i * D + j] = (j == y[i] ? 1.5f : 0.0f) + (float)(r >> 40) / (1 << 24) - 0.5f;
        }
    }
}

static kdens_model *row_model(void)
{
    kdens_model *m;
    ASSERT_OK(kdens_model_from_spec("dense units=classes\nsoftmax\n", 1, 1, D, K, 5, &m));
    return m;
}

struct row_ctx {
    const float *x;
    int calls;
    bool indices_ok;
};

/* Soft targets for rows: the one-hot labels' class, checking that the batch
 * holds the rows its indices name. */
static kdens_status row_targets(void *user, const float *x, const size_t *indices, size_t n,
                                float *targets)
{
    struct row_ctx *c = user;
    c->calls++;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(x + i * D, c->x + indices[i] * D, sizeof(float) * D) != 0)
            c->indices_ok = false;
        for (int k = 0; k < K; k++)
            targets[i * K + k] = k == (int)(indices[i] % K) ? 1.0f : 0.0f;
    }
    return KDENS_OK;
}

/* Train a fresh row model for at most 40 epochs (batch 32, Adam 0.01,
 * patience 5 with restore); its weights into w (n_weights floats). */
static int fit_rows(const float *x, const int32_t *y, const float *xv, const int32_t *yv,
                    uint64_t seed, const char *log, float *w, double *test_acc)
{
    kdens_model *m = row_model();
    kdens_trainer *t;
    ASSERT_OK(kd_trainer_create_features(m, x, y, 400, xv, yv, 100, &t));
    ASSERT_OK(kdens_trainer_set_epochs(t, 40));
    ASSERT_OK(kdens_trainer_set_batch(t, 32));
    ASSERT_OK(kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, 0.01));
    ASSERT_OK(kdens_trainer_set_early_stopping(t, 5, 1));
    ASSERT_OK(kdens_trainer_set_seed(t, seed));
    ASSERT_OK(kdens_trainer_set_log(t, log));
    ASSERT_OK(kdens_trainer_fit(t));
    int run = kdens_trainer_epochs_run(t);
    assert_true(kdens_trainer_best_epoch(t) >= 1);
    assert_true(isfinite(kdens_trainer_best_val_loss(t)));
    memcpy(w, m->weights, sizeof(float) * m->n_weights);
    float xt[200 * D];
    int32_t yt[200];
    make_rows(200, 3, xt, yt);
    kd_features held_out = {xt, yt, 200, D};
    ASSERT_OK(kd_evaluate_features(m, &held_out, 64, NULL, test_acc));
    kdens_trainer_free(t);
    kdens_model_free(m);
    return run;
}

/* A dense layer learns a linearly separable float problem through the
 * trainer, deterministically for a seed; bad arguments are refused. */
static void test_fit_features(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char log[4200];
    snprintf(log, sizeof log, "%s/log.csv", dir);
    static float x[400 * D], xv[100 * D];
    int32_t y[400], yv[100];
    make_rows(400, 1, x, y);
    make_rows(100, 2, xv, yv);
    kdens_model *m = row_model();
    size_t nw = m->n_weights;
    float *a = malloc(sizeof(float) * nw), *b = malloc(sizeof(float) * nw),
          *c = malloc(sizeof(float) * nw);
    double before, acc_a, acc_b, acc_c;
    kd_features rows = {x, y, 400, D};
    ASSERT_OK(kd_evaluate_features(m, &rows, 64, NULL, &before));
    int run_a = fit_rows(x, y, xv, yv, 9, log, a, &acc_a);
    assert_int_equal(log_rows(log), run_a);
    int run_b = fit_rows(x, y, xv, yv, 9, log, b, &acc_b);
    fit_rows(x, y, xv, yv, 10, log, c, &acc_c);
    if (!(acc_a >= 0.98 && before < 0.9))
        fail_msg("held-out accuracy %.3f after training (%.3f before)", acc_a, before);
    assert_int_equal(run_a, run_b); /* the same seed, the same run */
    assert_memory_equal(a, b, sizeof(float) * nw);
    assert_true(acc_a == acc_b);
    assert_memory_not_equal(a, c, sizeof(float) * nw); /* another seed, another order */
    /* without validation, with soft targets: row numbers for indices */
    kdens_trainer *t = NULL;
    ASSERT_OK(kdens_model_set_loss(m, 0.0f, 1.0f));
    ASSERT_OK(kd_trainer_create_features(m, x, y, 400, NULL, NULL, 0, &t));
    struct row_ctx ctx = {x, 0, true};
    ASSERT_OK(kdens_trainer_set_soft_targets(t, row_targets, &ctx));
    ASSERT_OK(kdens_trainer_set_epochs(t, 2));
    ASSERT_OK(kdens_trainer_set_early_stopping(t, 1, 1));
    ASSERT_OK(kdens_trainer_fit(t));
    assert_int_equal(kdens_trainer_epochs_run(t), 2);
    assert_int_equal(kdens_trainer_best_epoch(t), 0);
    assert_int_equal(ctx.calls, 2 * 4); /* 400 rows in batches of 128 */
    assert_true(ctx.indices_ok);
    /* no augmentation for rows: neither set nor from the reference defaults */
    kdens_augment *aug;
    ASSERT_OK(kdens_augment_create(&aug));
    ASSERT_STATUS(kdens_trainer_set_augment(t, aug), KDENS_E_ARG);
    ASSERT_OK(kdens_trainer_set_augment(t, NULL));
    ASSERT_OK(kdens_trainer_use_arch_defaults(t, "test"));
    ASSERT_STATUS(kdens_trainer_fit(t), KDENS_E_ARG);
    kdens_augment_free(aug);
    kdens_trainer_free(t);
    /* bad arguments */
    t = NULL;
    ASSERT_STATUS(kd_trainer_create_features(NULL, x, y, 400, xv, yv, 100, &t), KDENS_E_ARG);
    ASSERT_STATUS(kd_trainer_create_features(m, NULL, y, 400, xv, yv, 100, &t), KDENS_E_ARG);
    ASSERT_STATUS(kd_trainer_create_features(m, x, NULL, 400, xv, yv, 100, &t), KDENS_E_ARG);
    ASSERT_STATUS(kd_trainer_create_features(m, x, y, 400, xv, yv, 100, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kd_trainer_create_features(m, x, y, 0, xv, yv, 100, &t), KDENS_E_ARG);
    ASSERT_STATUS(kd_trainer_create_features(m, x, y, 400, NULL, yv, 100, &t), KDENS_E_ARG);
    y[17] = K;
    ASSERT_STATUS(kd_trainer_create_features(m, x, y, 400, xv, yv, 100, &t), KDENS_E_ARG);
    assert_non_null(strstr(kdens_errmsg(), "row 17"));
    y[17] = 1;
    yv[3] = -1;
    ASSERT_STATUS(kd_trainer_create_features(m, x, y, 400, xv, yv, 100, &t), KDENS_E_ARG);
    assert_null(t);
    free(a);
    free(b);
    free(c);
    kdens_model_free(m);
    tu_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_trainer_schedules),        cmocka_unit_test(test_evaluate),
        cmocka_unit_test(test_fit_learns_and_logs), cmocka_unit_test(test_early_stopping),
        cmocka_unit_test(test_nan_and_arguments),
        cmocka_unit_test(test_sigkill_and_resume),
        cmocka_unit_test(test_soft_targets),
        cmocka_unit_test(test_fit_features),
    };
    return cmocka_run_group_tests_name("trainer", tests, NULL, NULL);
}
