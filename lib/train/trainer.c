/* The trainer: the one training loop (epochs of loader batches, from a
 * dataset or from float feature rows, through kdens_model_train_step),
 * learning-rate schedules, Keras' early stopping, the per-epoch CSV log and
 * progress reports. */
#include "train.h"

#include "../data/data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct kdens_trainer {
    kdens_model *model;
    /* the samples: datasets (val NULL: none), or with train NULL feature rows
     * (fval.n 0: no validation) */
    const kdens_dataset *train, *val;
    kd_features ftrain, fval;
    int epochs;
    size_t batch;
    kdens_optimizer_type opt_type;
    double lr;
    kdens_schedule schedule;
    int period;
    double factor;
    int milestones[16], n_milestones;
    double floor;           /* the lowest rate of cosine-like schedules; < 0: the default */
    int patience;
    bool restore_best;
    uint64_t seed;
    const kdens_augment *aug;
    kdens_augment *own_aug; /* from the architecture's defaults */
    char *log_path;
    char *checkpoint;
    bool resume;
    kdens_soft_targets_fn soft_fn;
    void *soft_user;
    kdens_epoch_fn epoch_fn;
    void *epoch_user;
    kdens_comm *comm;       /* data-parallel over its ranks; NULL alone */
    kd_bn_sync sync;        /* the model's batch norms during a data-parallel fit */
    /* results */
    int epochs_run, best_epoch;
    double best_val_loss;
};

double kdens_schedule_lr(kdens_schedule schedule, double lr, int epoch, int epochs, int period,
                         double factor)
{
    const double pi = 3.14159265358979323846;
    switch (schedule) {
    case KDENS_SCHEDULE_STEP:
        return period > 0 ? lr * pow(factor, epoch / period) : lr;
    case KDENS_SCHEDULE_COSINE:
        return epochs > 0 ? lr * 0.5 * (1 + cos(pi * epoch / epochs)) : lr;
    case KDENS_SCHEDULE_CYCLIC:
        return period > 0 ? lr * 0.5 * (1 + cos(pi * (epoch % period) / period)) : lr;
    default:
        return lr;
    }
}

/* The trainer's rate at position x in epochs (e + batch / batches): the
 * public schedules with the floor, milestones, and the triangle of fast
 * geometric ensembling (the only one that moves within an epoch). */
double kd_trainer_lr(const kdens_trainer *t, double x)
{
    const double pi = 3.14159265358979323846;
    double lo = t->floor >= 0 ? t->floor : t->schedule == KDENS_SCHEDULE_TRIANGULAR ? t->lr / 100
                                                                                     : 0;
    int e = (int)x;
    switch (t->schedule) {
    case KDENS_SCHEDULE_COSINE:
        return lo + (t->lr - lo) * 0.5 * (1 + cos(pi * e / t->epochs));
    case KDENS_SCHEDULE_CYCLIC:
        return lo + (t->lr - lo) * 0.5 * (1 + cos(pi * (e % t->period) / t->period));
    case KDENS_SCHEDULE_MILESTONES: {
        int passed = 0;
        while (passed < t->n_milestones && t->milestones[passed] <= e)
            passed++;
        return t->lr * pow(t->factor, passed);
    }
    case KDENS_SCHEDULE_TRIANGULAR: { /* u in [0, 1) through the cycle; lowest at 1/2 */
        double u = fmod(x, t->period) / t->period;
        double down = u < 0.5 ? 2 * u : 2 - 2 * u;
        return t->lr + (lo - t->lr) * down;
    }
    default:
        return kdens_schedule_lr(t->schedule, t->lr, e, t->epochs, t->period, t->factor);
    }
}

/* A trainer for model with the defaults; the caller sets its samples. */
static kdens_status trainer_new(kdens_model *model, kdens_trainer **out)
{
    kdens_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    t->model = model;
    t->epochs = 10;
    t->batch = 128;
    t->opt_type = KDENS_OPT_ADAM;
    t->lr = 1e-3;
    t->factor = 0.1;
    t->floor = -1;
    t->restore_best = true;
    *out = t;
    return KDENS_OK;
}

kdens_status kdens_trainer_create(kdens_model *model, const kdens_dataset *train,
                                  const kdens_dataset *val, kdens_trainer **out)
{
    if (!model || !train || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (model->q)
        return kd_refuse_quantized(model);
    kdens_status st = kd_check_fit(model, train, "training");
    if (st == KDENS_OK && val)
        st = kd_check_fit(model, val, "validation");
    if (st == KDENS_OK && train->n == 0)
        st = kd_fail(KDENS_E_ARG, "the training set is empty");
    if (st != KDENS_OK)
        return st;
    if (!model->class_names && train->store->class_names && /* name the classes it learns */
        kdens_model_set_class_names(model, (const char *const *)train->store->class_names,
                                    model->classes) != KDENS_OK)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    st = trainer_new(model, out);
    if (st == KDENS_OK) {
        (*out)->train = train;
        (*out)->val = val && val->n ? val : NULL;
    }
    return st;
}

kdens_status kd_trainer_create_features(kdens_model *model, const float *x,
                                        const int32_t *labels, size_t n, const float *x_val,
                                        const int32_t *labels_val, size_t n_val,
                                        kdens_trainer **out)
{
    if (!model || !x || !labels || !out || (n_val && (!x_val || !labels_val)))
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (n == 0)
        return kd_fail(KDENS_E_ARG, "the training set is empty");
    size_t dim = (size_t)model->in_h * model->in_w * model->in_c;
    kd_features tr = {x, labels, n, dim}, va = {x_val, labels_val, n_val, dim};
    kdens_status st = kd_check_features(model, &tr, "training");
    if (st == KDENS_OK)
        st = kd_check_features(model, &va, "validation");
    if (st == KDENS_OK)
        st = trainer_new(model, out);
    if (st == KDENS_OK) {
        (*out)->ftrain = tr;
        (*out)->fval = va;
    }
    return st;
}

void kdens_trainer_free(kdens_trainer *t)
{
    if (!t)
        return;
    kdens_augment_free(t->own_aug);
    free(t->log_path);
    free(t->checkpoint);
    free(t);
}

kdens_status kdens_trainer_set_epoch_callback(kdens_trainer *t, kdens_epoch_fn fn, void *user)
{
    if (!t)
        return kd_fail(KDENS_E_ARG, "NULL trainer");
    t->epoch_fn = fn;
    t->epoch_user = user;
    return KDENS_OK;
}

kdens_status kdens_trainer_set_soft_targets(kdens_trainer *t, kdens_soft_targets_fn fn,
                                            void *user)
{
    if (!t)
        return kd_fail(KDENS_E_ARG, "NULL trainer");
    t->soft_fn = fn;
    t->soft_user = user;
    return KDENS_OK;
}

kdens_status kdens_trainer_set_comm(kdens_trainer *t, kdens_comm *comm)
{
    if (!t)
        return kd_fail(KDENS_E_ARG, "NULL trainer");
    t->comm = comm;
    return KDENS_OK;
}

/* Ranks beyond one: every step is shared. */
static bool parallel(const kdens_trainer *t) { return kdens_comm_size(t->comm) > 1; }
/* The rank that writes (logs, checkpoints) and validates: rank 0, or alone. */
static bool leads(const kdens_trainer *t) { return kdens_comm_rank(t->comm) == 0; }

kdens_status kdens_trainer_set_checkpoint(kdens_trainer *t, const char *path, int resume)
{
    if (!t)
        return kd_fail(KDENS_E_ARG, "NULL trainer");
    char *copy = path ? kd_strdup(path) : NULL;
    if (path && !copy)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    free(t->checkpoint);
    t->checkpoint = copy;
    t->resume = resume != 0;
    return KDENS_OK;
}

/* ---- checkpoints: "KDENSCKP" sections MODL (a .kdm), OPTM, TRNR, LOGT ------------- */

#define CKP_MAGIC "KDENSCKP"

typedef struct run_state {
    uint32_t epochs_done, wait, best_epoch;
    double best_val_loss;
    float *best; /* NULL when restore-best is off */
} run_state;

static kdens_status save_checkpoint(kdens_trainer *t, const kdens_optimizer *opt,
                                    const run_state *rs, const kd_buf *log)
{
    kd_buf model = {0}, optim = {0}, trnr = {0}, file = {0};
    const kdens_model *m = t->model;
    kd_model_serialize(m, &model);
    kd_optimizer_save(opt, &optim);
    kd_buf_u32(&trnr, rs->epochs_done);
    kd_buf_u32(&trnr, rs->wait);
    kd_buf_u32(&trnr, rs->best_epoch);
    kd_buf_put(&trnr, &rs->best_val_loss, sizeof(double));
    kd_buf_put(&trnr, m->rng.s, sizeof m->rng.s);
    kd_buf_u32(&trnr, rs->best ? 1 : 0);
    if (rs->best)
        kd_buf_put(&trnr, rs->best, sizeof(float) * m->n_weights);
    kd_buf_put(&file, CKP_MAGIC, 8);
    kd_buf_u32(&file, 1);
    kd_buf_u32(&file, 4);
    kd_section_put(&file, "MODL", model.data, model.len);
    kd_section_put(&file, "OPTM", optim.data, optim.len);
    kd_section_put(&file, "TRNR", trnr.data, trnr.len);
    kd_section_put(&file, "LOGT", log->data, log->len);
    kdens_status st = file.failed || model.failed || optim.failed || trnr.failed
                          ? kd_fail(KDENS_E_NOMEM, "out of memory writing a checkpoint")
                          : kd_write_file_atomic(t->checkpoint, file.data, file.len);
    kd_buf_free(&model);
    kd_buf_free(&optim);
    kd_buf_free(&trnr);
    kd_buf_free(&file);
    return st;
}

/* The checkpoint file's bytes into file (left empty when there is none);
 * data-parallel, rank 0 reads it and every rank receives it. */
static kdens_status read_checkpoint(kdens_trainer *t, kd_buf *file)
{
    kdens_status st = KDENS_OK;
    if (leads(t) && access(t->checkpoint, F_OK) == 0) {
        char *data;
        size_t len;
        st = kd_read_file(t->checkpoint, &data, &len);
        if (st == KDENS_OK) {
            kd_buf_put(file, data, len);
            free(data);
            if (file->failed)
                st = kd_fail(KDENS_E_NOMEM, "out of memory reading a checkpoint");
        }
    }
    st = kdens_comm_agree(t->comm, st);
    if (st == KDENS_OK)
        st = kd_comm_broadcast_blob(t->comm, file, 0);
    return st;
}

/* Restore everything a checkpoint holds; *found is false when there is none. */
static kdens_status load_checkpoint(kdens_trainer *t, kdens_optimizer *opt, run_state *rs,
                                    kd_buf *log, bool *found)
{
    *found = false;
    kd_buf file = {0};
    kdens_status st = read_checkpoint(t, &file);
    if (st != KDENS_OK || file.len == 0) {
        kd_buf_free(&file);
        return st;
    }
    const char *data = file.data;
    size_t len = file.len;
    kd_section sec[8];
    int count;
    kdens_model *saved = NULL;
    kdens_model *m = t->model;
    st = kd_sections_parse(t->checkpoint, (const uint8_t *)data, len, CKP_MAGIC, 1, "checkpoint",
                           sec, 8, &count);
    const kd_section *modl = NULL, *optm = NULL, *trnr = NULL, *logt = NULL;
    if (st == KDENS_OK) {
        modl = kd_section_find(sec, count, "MODL");
        optm = kd_section_find(sec, count, "OPTM");
        trnr = kd_section_find(sec, count, "TRNR");
        logt = kd_section_find(sec, count, "LOGT");
        if (!modl || !optm || !trnr || !logt)
            st = kd_fail(KDENS_E_FORMAT, "%s: a checkpoint section is missing", t->checkpoint);
    }
    if (st == KDENS_OK)
        st = kd_model_load_memory(t->checkpoint, (const char *)modl->data, modl->len, &saved);
    if (st == KDENS_OK && saved->n_weights != m->n_weights)
        st = kd_fail(KDENS_E_FORMAT, "%s: the checkpoint holds another network", t->checkpoint);
    size_t head = 4 + 4 + 4 + sizeof(double) + sizeof m->rng.s + 4;
    if (st == KDENS_OK && trnr->len < head)
        st = kd_fail(KDENS_E_FORMAT, "%s: the trainer state is truncated", t->checkpoint);
    if (st == KDENS_OK) {
        const uint8_t *p = trnr->data;
        uint32_t has_best;
        memcpy(&rs->epochs_done, p, 4);
        memcpy(&rs->wait, p + 4, 4);
        memcpy(&rs->best_epoch, p + 8, 4);
        memcpy(&rs->best_val_loss, p + 12, sizeof(double));
        memcpy(m->rng.s, p + 12 + sizeof(double), sizeof m->rng.s);
        memcpy(&has_best, p + head - 4, 4);
        size_t want = head + (has_best ? sizeof(float) * m->n_weights : 0);
        if (trnr->len != want || (has_best && !rs->best))
            st = kd_fail(KDENS_E_FORMAT, "%s: the trainer state does not match this run",
                         t->checkpoint);
        else if (has_best)
            memcpy(rs->best, p + head, sizeof(float) * m->n_weights);
    }
    if (st == KDENS_OK)
        st = kd_optimizer_restore(opt, m, optm->data, optm->len, t->checkpoint);
    if (st == KDENS_OK) {
        memcpy(m->weights, saved->weights, sizeof(float) * m->n_weights);
        log->len = 0;
        kd_buf_put(log, logt->data, logt->len);
        *found = true;
    }
    kdens_model_free(saved);
    kd_buf_free(&file);
    return kdens_comm_agree(t->comm, st);
}

/* The training settings of the dissertation's code (config/models.py) for the built-in
 * architectures it trained. */
static const struct {
    const char *arch;
    int epochs;
    double lr;
    int batch, patience, ra_n, ra_m;
} arch_defaults[] = {
    {"test", 1, 0.005, 128, 20, 3, 7},           {"resnet50v2", 300, 0.001, 128, 30, 3, 7},
    {"efficientnetb0", 300, 0.001, 64, 30, 3, 7}, {"efficientnetb3", 300, 0.001, 64, 30, 3, 7},
    {"densenet121", 300, 0.005, 128, 30, 3, 7},   {"mobilenetv3large", 200, 0.005, 32, 20, 3, 7},
};

kdens_status kdens_trainer_use_arch_defaults(kdens_trainer *t, const char *arch)
{
    if (!t || !arch)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    for (size_t i = 0; i < KD_ARRAY_LEN(arch_defaults); i++)
        if (strcmp(arch_defaults[i].arch, arch) == 0) {
            kdens_augment *a;
            kdens_status st = kdens_augment_create(&a);
            if (st != KDENS_OK)
                return st;
            kdens_augment_set_randaugment(a, arch_defaults[i].ra_n, arch_defaults[i].ra_m);
            kdens_augment_free(t->own_aug);
            t->own_aug = a;
            t->aug = a;
            t->epochs = arch_defaults[i].epochs;
            t->lr = arch_defaults[i].lr;
            t->batch = (size_t)arch_defaults[i].batch;
            t->patience = arch_defaults[i].patience;
            t->opt_type = KDENS_OPT_ADAM;
            return KDENS_OK;
        }
    return kd_fail(KDENS_E_NOTFOUND, "no training defaults are known for '%s'", arch);
}

kdens_status kdens_trainer_set_epochs(kdens_trainer *t, int epochs)
{
    if (!t || epochs < 1)
        return kd_fail(KDENS_E_ARG, "epochs must be >= 1");
    t->epochs = epochs;
    return KDENS_OK;
}

kdens_status kdens_trainer_set_batch(kdens_trainer *t, size_t batch)
{
    if (!t || batch < 1)
        return kd_fail(KDENS_E_ARG, "batch must be >= 1");
    t->batch = batch;
    return KDENS_OK;
}

kdens_status kdens_trainer_set_optimizer(kdens_trainer *t, kdens_optimizer_type type, double lr)
{
    if (!t || (type != KDENS_OPT_SGD && type != KDENS_OPT_ADAM && type != KDENS_OPT_ADAMW) ||
        !(lr > 0) || !isfinite(lr))
        return kd_fail(KDENS_E_ARG, "unknown optimizer or learning rate %g not above 0", lr);
    t->opt_type = type;
    t->lr = lr;
    return KDENS_OK;
}

kdens_status kdens_trainer_set_schedule(kdens_trainer *t, kdens_schedule schedule, int period,
                                        double factor)
{
    if (!t || (unsigned)schedule > KDENS_SCHEDULE_TRIANGULAR)
        return kd_fail(KDENS_E_ARG, "unknown schedule");
    if ((schedule == KDENS_SCHEDULE_STEP || schedule == KDENS_SCHEDULE_CYCLIC ||
         schedule == KDENS_SCHEDULE_TRIANGULAR) &&
        period < 1)
        return kd_fail(KDENS_E_ARG, "the schedule needs a period >= 1 epoch");
    if ((schedule == KDENS_SCHEDULE_STEP || schedule == KDENS_SCHEDULE_MILESTONES) &&
        !(factor > 0 && factor <= 1))
        return kd_fail(KDENS_E_ARG, "step factor %g is outside (0, 1]", factor);
    t->schedule = schedule;
    t->period = period;
    t->factor = factor;
    return KDENS_OK;
}

kdens_status kdens_trainer_set_milestones(kdens_trainer *t, const int *epochs, int n)
{
    if (!t || !epochs || n < 1 || n > (int)KD_ARRAY_LEN(t->milestones))
        return kd_fail(KDENS_E_ARG, "NULL, or %d milestones (1 to %d)", n,
                       (int)KD_ARRAY_LEN(t->milestones));
    for (int i = 0; i < n; i++)
        if (epochs[i] < 1 || (i > 0 && epochs[i] <= epochs[i - 1]))
            return kd_fail(KDENS_E_ARG, "milestone %d (epoch %d) is not above 0 and the one "
                           "before", i, epochs[i]);
    memcpy(t->milestones, epochs, sizeof(int) * (size_t)n);
    t->n_milestones = n;
    return KDENS_OK;
}

kdens_status kdens_trainer_set_lr_floor(kdens_trainer *t, double floor)
{
    if (!t || !(floor >= 0 && floor < t->lr))
        return kd_fail(KDENS_E_ARG, "NULL trainer or a floor %g outside [0, lr)", floor);
    t->floor = floor;
    return KDENS_OK;
}

kdens_status kdens_trainer_set_early_stopping(kdens_trainer *t, int patience, int restore_best)
{
    if (!t || patience < 0)
        return kd_fail(KDENS_E_ARG, "patience must be >= 0");
    t->patience = patience;
    t->restore_best = restore_best != 0;
    return KDENS_OK;
}

kdens_status kdens_trainer_set_seed(kdens_trainer *t, uint64_t seed)
{
    if (!t)
        return kd_fail(KDENS_E_ARG, "NULL trainer");
    t->seed = seed;
    return KDENS_OK;
}

kdens_status kdens_trainer_set_augment(kdens_trainer *t, const kdens_augment *aug)
{
    if (!t)
        return kd_fail(KDENS_E_ARG, "NULL trainer");
    if (aug && !t->train)
        return kd_fail(KDENS_E_ARG, "a trainer over feature rows takes no augmentation");
    t->aug = aug;
    return KDENS_OK;
}

kdens_status kdens_trainer_set_log(kdens_trainer *t, const char *csv_path)
{
    if (!t)
        return kd_fail(KDENS_E_ARG, "NULL trainer");
    char *copy = csv_path ? kd_strdup(csv_path) : NULL;
    if (csv_path && !copy)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    free(t->log_path);
    t->log_path = copy;
    return KDENS_OK;
}

int kdens_trainer_epochs_run(const kdens_trainer *t) { return t ? t->epochs_run : 0; }
int kdens_trainer_best_epoch(const kdens_trainer *t) { return t ? t->best_epoch : 0; }
double kdens_trainer_best_val_loss(const kdens_trainer *t) { return t ? t->best_val_loss : NAN; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool validates(const kdens_trainer *t) { return t->val || t->fval.n; }

/* The loader of the training samples, set up for this run (data-parallel:
 * this rank's slice of every batch). */
static kdens_status make_loader(const kdens_trainer *t, kdens_loader **ld)
{
    kdens_status st = t->train ? kdens_loader_create(t->train, t->batch, t->seed, ld)
                               : kd_loader_create_features(&t->ftrain, t->batch, t->seed, ld);
    if (st == KDENS_OK && parallel(t))
        st = kd_loader_set_shard(*ld, kdens_comm_rank(t->comm), kdens_comm_size(t->comm));
    if (st == KDENS_OK)
        st = kdens_loader_set_augment(*ld, t->aug);
    if (st == KDENS_OK && t->train)
        st = kdens_loader_set_scaling(*ld, t->model->in_scale, t->model->in_offset);
    return st;
}

/* The validation loss and accuracy; data-parallel, rank 0's, so that every
 * rank takes the same early-stopping decisions. */
static kdens_status validate(kdens_trainer *t, double *loss, double *acc)
{
    kdens_status st = KDENS_OK;
    if (leads(t))
        st = t->val ? kdens_model_evaluate(t->model, t->val, t->batch, loss, acc, NULL, NULL,
                                           NULL)
                    : kd_evaluate_features(t->model, &t->fval, t->batch, loss, acc);
    st = kdens_comm_agree(t->comm, st);
    double both[2] = {*loss, *acc};
    if (st == KDENS_OK)
        st = kd_comm_broadcast(t->comm, both, sizeof both, 0);
    *loss = both[0], *acc = both[1];
    return st;
}

/* A failure of the batch norms' sums over the ranks, as a status. */
static kdens_status sync_status(kdens_trainer *t)
{
    kdens_status st = t->sync.failed;
    t->sync.failed = KDENS_OK;
    return st == KDENS_OK ? KDENS_OK
                          : kd_fail_context(st, "summing batch statistics over the ranks: ");
}

/* One data-parallel step on this rank's slice (n images) of a global batch
 * of `global`: the ranks agree that each may go on before every pass that
 * meets in collectives, so that one rank's failure stops them all instead
 * of leaving the others waiting.  The gradients of the mean loss over the
 * global batch are summed over the ranks in a fixed order, and every rank
 * then takes the same optimizer step: the weights stay identical. */
static kdens_status parallel_step(kdens_trainer *t, kdens_optimizer *opt, kdens_status st,
                                  const float *x, size_t n, size_t global, const int32_t *y,
                                  const float *soft, float *loss, size_t *correct)
{
    kdens_model *m = t->model;
    m->sync_global_n = global;
    if (st == KDENS_OK)
        st = kd_forward_prepare(m, n, y, soft);
    st = kdens_comm_agree(t->comm, st);
    if (st != KDENS_OK)
        return st;
    st = kdens_model_forward_loss(m, x, n, y, soft, loss, correct);
    if (st == KDENS_OK)
        st = sync_status(t);
    st = kdens_comm_agree(t->comm, st);
    if (st == KDENS_OK)
        st = kdens_model_backward(m);
    if (st == KDENS_OK)
        st = sync_status(t);
    if (st == KDENS_OK)
        st = kd_comm_allreduce_float(t->comm, m->grads, m->n_trainable);
    st = kdens_comm_agree(t->comm, st);
    if (st == KDENS_OK)
        st = kdens_optimizer_step(opt, m);
    return st;
}

/* One epoch over the loader; mean loss and accuracy. */
static kdens_status run_epoch(kdens_trainer *t, kdens_loader *ld, kdens_optimizer *opt, int e,
                              float *soft, double *loss, double *acc)
{
    kdens_status st = kdens_loader_start_epoch(ld, (uint64_t)e);
    double sum = 0, t0 = now(), batches = (double)kdens_loader_batches(ld);
    size_t right = 0, seen = 0, total = t->train ? t->train->n : t->ftrain.n;
    size_t b = 0;
    bool par = parallel(t);
    while (st == KDENS_OK) {
        const float *x = NULL;
        const int32_t *y = NULL;
        size_t n = 0, correct = 0;
        float l = 0;
        st = kdens_loader_next(ld, &x, &y, &n);
        if (st == KDENS_OK && n == 0) /* the epoch's end: on every rank at once */
            break;
        if (st == KDENS_OK && t->soft_fn)
            st = t->soft_fn(t->soft_user, x, kdens_loader_batch_indices(ld), n, soft);
        if (st != KDENS_OK && !par)
            break;
        if (t->schedule == KDENS_SCHEDULE_TRIANGULAR) /* stepped per batch */
            kdens_optimizer_set_lr(opt, kd_trainer_lr(t, e + (double)b / batches));
        const float *targets = t->soft_fn ? soft : NULL;
        st = par ? parallel_step(t, opt, st, x, n, kd_loader_global_batch(ld, b), y, targets,
                                 &l, &correct)
                 : kdens_model_train_step(t->model, opt, x, n, y, targets, &l, &correct);
        if (st == KDENS_E_NUMERIC)
            return kd_fail(KDENS_E_NUMERIC, "epoch %d, batch %zu: the loss is not finite; "
                           "training stopped", e + 1, b + 1);
        if (st != KDENS_OK)
            break;
        sum += (double)l * n, right += correct, seen += n, b++;
        double secs = now() - t0, rate = seen / (secs > 0 ? secs : 1e-9);
        char task[160];
        snprintf(task, sizeof task, "epoch %d/%d loss %.4f img/s %.0f eta %.0f", e + 1,
                 t->epochs, sum / seen, rate, (double)(total - seen) / rate);
        if (leads(t))
            kd_progress(task, seen, total);
    }
    double totals[3] = {sum, (double)right, (double)seen}; /* over every rank */
    if (st == KDENS_OK)
        st = kd_comm_allreduce_double(t->comm, totals, 3);
    *loss = totals[2] > 0 ? totals[0] / totals[2] : NAN;
    *acc = totals[2] > 0 ? totals[1] / totals[2] : NAN;
    return st;
}

/* What every rank of a data-parallel fit must share: the settings and the
 * data's size, then rank 0's starting weights. */
static kdens_status start_parallel(kdens_trainer *t)
{
    kdens_model *m = t->model;
    char what[512];
    snprintf(what, sizeof what,
             "trainer: %d epochs, batch %zu, optimizer %d lr %.17g, schedule %d/%d/%.17g, "
             "patience %d, seed %llu, %zu training and %zu validation samples, model of "
             "%zu weights (%zu trainable), %s soft targets",
             t->epochs, t->batch, (int)t->opt_type, t->lr, (int)t->schedule, t->period,
             t->factor, t->patience, (unsigned long long)t->seed,
             t->train ? t->train->n : t->ftrain.n,
             t->val ? t->val->n : t->fval.n, m->n_weights, m->n_trainable,
             t->soft_fn ? "with" : "without");
    kdens_status st = kdens_comm_check_same(t->comm, what);
    if (st == KDENS_OK) /* the same start everywhere, whatever each rank's seed did */
        st = kd_comm_broadcast(t->comm, m->weights, sizeof(float) * m->n_weights, 0);
    if (st == KDENS_OK) {
        memset(&t->sync, 0, sizeof t->sync);
        t->sync.comm = t->comm;
        m->sync = &t->sync;
    }
    return st;
}

static kdens_status fit(kdens_trainer *t);

kdens_status kdens_trainer_fit(kdens_trainer *t)
{
    if (!t)
        return kd_fail(KDENS_E_ARG, "NULL trainer");
    if (!parallel(t))
        return fit(t);
    kdens_status st = start_parallel(t);
    if (st == KDENS_OK)
        st = fit(t);
    t->model->sync = NULL;
    return st;
}

static kdens_status fit(kdens_trainer *t)
{
    kdens_model *m = t->model;
    kdens_optimizer *opt = NULL;
    kdens_loader *ld = NULL;
    float *best = NULL;
    kd_buf log = {0};
    kdens_status st = kdens_optimizer_create(t->opt_type, (float)t->lr, &opt);
    if (st == KDENS_OK)
        st = make_loader(t, &ld);
    float *soft = NULL;
    if (st == KDENS_OK && t->soft_fn &&
        !(soft = malloc(sizeof(float) * t->batch * (size_t)kd_loss_of(m)->soft_sets * m->classes)))
        st = kd_fail(KDENS_E_NOMEM, "out of memory for soft targets");
    if (st == KDENS_OK && validates(t) && t->patience > 0 && t->restore_best &&
        !(best = malloc(sizeof(float) * (m->n_weights ? m->n_weights : 1))))
        st = kd_fail(KDENS_E_NOMEM, "out of memory for the best weights");
    /* the dropout masks: a stream of each rank's own */
    kdens_model_set_seed(m, t->seed ^ 0xd1ce ^ (0x9e3779b97f4a7c15ULL *
                                                (uint64_t)kdens_comm_rank(t->comm)));
    kd_buf_printf(&log, "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds\n");
    run_state rs = {0, 0, 0, INFINITY, best};
    bool resumed = false;
    st = kdens_comm_agree(t->comm, st);
    /* checkpoints are rank 0's: whether to resume too */
    uint8_t resume = t->checkpoint && t->resume;
    if (st == KDENS_OK)
        st = kd_comm_broadcast(t->comm, &resume, 1, 0);
    if (st == KDENS_OK && resume)
        st = load_checkpoint(t, opt, &rs, &log, &resumed);
    t->epochs_run = (int)rs.epochs_done;
    t->best_epoch = (int)rs.best_epoch;
    t->best_val_loss = rs.best_val_loss;
    int wait = (int)rs.wait;
    bool stopped = resumed && validates(t) && t->patience > 0 && wait >= t->patience;
    if (stopped && best) /* killed between the last checkpoint and the restore */
        memcpy(m->weights, best, sizeof(float) * m->n_weights);
    for (int e = (int)rs.epochs_done; st == KDENS_OK && !stopped && e < t->epochs; e++) {
        double lr = kd_trainer_lr(t, e);
        kdens_optimizer_set_lr(opt, lr);
        kdens_model_set_training(m, 1);
        double t0 = now(), loss = NAN, acc = NAN, val_loss = NAN, val_acc = NAN;
        st = run_epoch(t, ld, opt, e, soft, &loss, &acc);
        kdens_model_set_training(m, 0);
        if (st == KDENS_OK && validates(t))
            st = validate(t, &val_loss, &val_acc);
        if (st != KDENS_OK)
            break;
        t->epochs_run = e + 1;
        kd_buf_printf(&log, "%d,%.6f,%.6f,%.6f,%.6f,%.8g,%.3f\n", e + 1, loss, acc, val_loss,
                      val_acc, lr, now() - t0);
        if (t->log_path && leads(t))
            st = log.failed ? kd_fail(KDENS_E_NOMEM, "out of memory")
                            : kd_write_file_atomic(t->log_path, log.data, log.len);
        if (leads(t))
            kd_log(KDENS_LOG_INFO, "epoch %d/%d: loss %.4f acc %.4f val_loss %.4f val_acc %.4f",
                   e + 1, t->epochs, loss, acc, val_loss, val_acc);
        if (validates(t)) {
            if (val_loss < t->best_val_loss) { /* Keras: strictly better than the best */
                t->best_val_loss = val_loss;
                t->best_epoch = e + 1;
                wait = 0;
                if (best)
                    memcpy(best, m->weights, sizeof(float) * m->n_weights);
            } else if (t->patience > 0) {
                stopped = ++wait >= t->patience;
            }
        }
        if (st == KDENS_OK && t->epoch_fn && leads(t))
            st = t->epoch_fn(t->epoch_user, e + 1, val_loss, m);
        if (st == KDENS_OK && t->checkpoint && leads(t)) {
            run_state now_state = {(uint32_t)(e + 1), (uint32_t)wait, (uint32_t)t->best_epoch,
                                   t->best_val_loss, best};
            st = save_checkpoint(t, opt, &now_state, &log);
        }
        st = kdens_comm_agree(t->comm, st); /* the log, the callback, the checkpoint */
        if (stopped) {
            if (best) /* Keras restores the best weights when it stops */
                memcpy(m->weights, best, sizeof(float) * m->n_weights);
            kd_log(KDENS_LOG_INFO, "early stopping after epoch %d (best %d)", e + 1,
                   t->best_epoch);
        }
    }
    kd_buf_free(&log);
    free(best);
    free(soft);
    kdens_loader_free(ld);
    kdens_optimizer_free(opt);
    return st;
}

const kdens_augment *kd_trainer_augment(const kdens_trainer *t) { return t->aug; }

kdens_status kd_trainer_configure(kdens_trainer *t, const char *arch, const kd_train_overrides *o)
{
    if (kdens_trainer_use_arch_defaults(t, arch) != KDENS_OK)
        kdens_trainer_set_early_stopping(t, 10, 1); /* not in the table: plain */
    kdens_status st = KDENS_OK;
    if (o->epochs > 0)
        st = kdens_trainer_set_epochs(t, o->epochs);
    if (st == KDENS_OK && o->batch > 0)
        st = kdens_trainer_set_batch(t, o->batch);
    if (st == KDENS_OK && o->lr > 0)
        st = kdens_trainer_set_optimizer(t, KDENS_OPT_ADAM, o->lr);
    if (st == KDENS_OK && o->patience >= 0)
        st = kdens_trainer_set_early_stopping(t, o->patience, 1);
    if (st == KDENS_OK && o->schedule >= 0)
        st = kdens_trainer_set_schedule(t, (kdens_schedule)o->schedule, 0, 0.1);
    if (st == KDENS_OK)
        st = kdens_trainer_set_seed(t, o->seed);
    return st;
}
