/* The distiller: an ensemble of teachers compressed into one student
 * (the reference's distillation/train.py; docs/distillation.md).
 *
 * Distillation is training: the one trainer runs the student, and the
 * distiller only supplies soft targets through the trainer's hook.  Each
 * mode turns the teachers' outputs on a batch into S target distributions
 * per sample (S = 1, or one per teacher for loss_avg and mimic_all), which
 * the student's loss (lib/train/loss.c) consumes.  Targets come from the
 * teachers run on every batch (online), or from a cache filled once. */
#include "distill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kdens_distill_mode_count(void)
{
    return KD_DISTILL_MODE_COUNT;
}

const char *kdens_distill_mode_name(kdens_distill_mode mode)
{
    const kd_distill_mode_ops *ops = kd_distill_mode_ops_of(mode);
    return ops ? ops->name : NULL;
}

kdens_status kdens_distill_mode_from_name(const char *name, kdens_distill_mode *mode)
{
    if (!name || !mode)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (kd_distill_mode_ops_named(name, mode))
        return KDENS_OK;
    return kd_fail(KDENS_E_NOTFOUND, "unknown distillation mode '%s' (output_avg, loss_avg, "
                   "mimic_all, supernet, supernet2, fusion)", name);
}

/* ---- the student ------------------------------------------------------------------ */

/* The template's spec with its final dense layer (and the softmax reading
 * it) replaced by `heads` dense heads whose logits are averaged. */
static kdens_status mimic_spec(const kdens_model *t, int heads, bool average_probs, kd_buf *out)
{
    const kd_node *logits = &t->nodes[t->logits_node];
    if (logits->type != KD_L_DENSE)
        return kd_fail(KDENS_E_ARG, "mimic_all needs a student whose logits come from a dense "
                       "layer; '%s' is not one", logits->name);
    for (int i = 0; i < t->n_nodes; i++)
        for (int j = 0; j < t->nodes[i].n_in; j++)
            if (t->nodes[i].in[j] == t->logits_node &&
                !(t->nodes[i].type == KD_L_ACT && t->nodes[i].a.act == KD_ACT_SOFTMAX))
                return kd_fail(KDENS_E_ARG, "mimic_all: the student's logits '%s' feed '%s'",
                               logits->name, t->nodes[i].name);
    size_t len = kdens_model_spec(t, NULL, 0);
    char *text = malloc(len + 1);
    if (!text)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    kdens_model_spec(t, text, len + 1);
    char own[300], reader[300];
    snprintf(own, sizeof own, " name=%s ", logits->name);
    snprintf(reader, sizeof reader, " in=%s", logits->name);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *in = strstr(line, reader);
        bool reads = in && (in[strlen(reader)] == '\0' || in[strlen(reader)] == ' ');
        if (!strstr(line, own) && !reads)
            kd_buf_printf(out, "%s\n", line);
    }
    free(text);
    const char *body = t->nodes[logits->in[0]].name;
    /* what is averaged: the heads' logits, or (average_probs) their softmax */
    const char *avg = average_probs ? "_p" : "";
    for (int h = 0; h < heads; h++) {
        kd_buf_printf(out, "dense name=head_%d in=%s units=%d bias=1\n", h, body, t->classes);
        if (average_probs)
            kd_buf_printf(out, "softmax name=head_%d_p in=head_%d\n", h, h);
    }
    if (heads > 1) {
        kd_buf_printf(out, "add name=heads_sum in=");
        for (int h = 0; h < heads; h++)
            kd_buf_printf(out, "%shead_%d%s", h ? "," : "", h, avg);
        kd_buf_printf(out, "\nrescale name=heads_mean in=heads_sum scale=%.9g offset=0\n",
                      1.0 / heads);
    } else {
        kd_buf_printf(out, "rescale name=heads_mean in=head_0%s scale=1 offset=0\n", avg);
    }
    if (average_probs) /* logits again, log(mean p): their softmax is the mean */
        kd_buf_printf(out, "log name=heads_log in=heads_mean\nsoftmax name=probs in=heads_log\n");
    else
        kd_buf_printf(out, "softmax name=probs in=heads_mean\n");
    return out->failed ? kd_fail(KDENS_E_NOMEM, "out of memory") : KDENS_OK;
}

/* A model rebuilt from spec text with src's parameters (by name) and metadata. */
static kdens_status rebuild(const char *spec, const kdens_model *src, uint64_t seed,
                            kdens_model **out)
{
    kdens_model *m;
    kdens_status st = kdens_model_from_spec(spec, src->in_h, src->in_w, src->in_c, src->classes,
                                            seed, &m);
    if (st == KDENS_OK)
        st = kd_model_copy_params(m, src, NULL);
    if (st == KDENS_OK)
        st = kd_model_copy_meta(m, src);
    if (st != KDENS_OK) {
        kdens_model_free(m);
        return st;
    }
    *out = m;
    return KDENS_OK;
}

static char *spec_of(const kdens_model *m)
{
    size_t len = kdens_model_spec(m, NULL, 0);
    char *text = malloc(len + 1);
    if (text)
        kdens_model_spec(m, text, len + 1);
    return text;
}

/* ---- the distiller ------------------------------------------------------------------- */

kdens_status kdens_distiller_create(kdens_ensemble *teachers, const kdens_model *student,
                                    kdens_distill_mode mode, const kdens_dataset *train,
                                    const kdens_dataset *val, kdens_distiller **out)
{
    if (!teachers || !student || !train || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    const kd_distill_mode_ops *ops = kd_distill_mode_ops_of(mode);
    if (!ops)
        return kd_fail(KDENS_E_ARG, "unknown distillation mode %d", (int)mode);
    int n = kdens_ensemble_size(teachers);
    if (n < 1)
        return kd_fail(KDENS_E_ARG, "the ensemble of teachers is empty");
    for (int i = 0; i < n; i++) {
        const kdens_model *t = kdens_ensemble_member(teachers, i);
        if (t->classes != student->classes || t->in_h != student->in_h ||
            t->in_w != student->in_w || t->in_c != student->in_c)
            return kd_fail(KDENS_E_SHAPE, "teacher %s takes %dx%dx%d images and %d classes, the "
                           "student %dx%dx%d and %d", kdens_ensemble_member_name(teachers, i),
                           t->in_h, t->in_w, t->in_c, t->classes, student->in_h, student->in_w,
                           student->in_c, student->classes);
    }
    kdens_distiller *d = calloc(1, sizeof *d);
    if (!d)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    d->teachers = teachers;
    d->n_teachers = n;
    d->classes = student->classes;
    d->mode = mode;
    d->train = train;
    d->val = val;
    d->alpha = 0.5f;
    d->temperature = 1.0f;
    d->rule = KDENS_FUSE_BORDA;
    d->cache = 1;
    d->sets = ops->per_teacher ? n : 1;
    kdens_status st = KDENS_OK;
    d->template_spec = spec_of(student);
    if (!d->template_spec)
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    if (st == KDENS_OK && ops->heads) {
        kd_buf spec = {0};
        st = mimic_spec(student, n, ops->average_probs, &spec);
        if (st == KDENS_OK)
            st = rebuild(spec.data, student, student->seed, &d->student);
        kd_buf_free(&spec);
        if (st == KDENS_OK)
            st = kd_loss_set_heads(d->student, n);
    } else if (st == KDENS_OK) {
        st = rebuild(d->template_spec, student, student->seed, &d->student);
    }
    if (st == KDENS_OK)
        st = kd_loss_set_soft_sets(d->student, d->sets);
    if (st == KDENS_OK)
        st = kdens_model_set_loss(d->student, d->alpha, d->temperature);
    if (st == KDENS_OK)
        st = kdens_trainer_create(d->student, train, val, &d->trainer);
    if (st == KDENS_OK)
        st = kdens_trainer_set_soft_targets(d->trainer, kd_distill_targets, d);
    if (st != KDENS_OK) {
        kdens_distiller_free(d);
        return st;
    }
    *out = d;
    return KDENS_OK;
}

void kdens_distiller_free(kdens_distiller *d)
{
    if (!d)
        return;
    kd_distill_release_targets(d);
    kdens_trainer_free(d->trainer);
    kdens_model_free(d->student);
    kdens_model_free(d->aggregator);
    free(d->template_spec);
    free(d->cache_path);
    free(d->feature_node);
    free(d->scratch);
    free(d->decisions);
    free(d);
}

kdens_status kdens_distiller_set_loss(kdens_distiller *d, double alpha, double temperature)
{
    if (!d)
        return kd_fail(KDENS_E_ARG, "NULL distiller");
    kdens_status st = kdens_model_set_loss(d->student, alpha, temperature);
    if (st == KDENS_OK)
        d->alpha = (float)alpha, d->temperature = (float)temperature;
    return st;
}

kdens_status kdens_distiller_set_fusion(kdens_distiller *d, kdens_fusion rule)
{
    if (!d)
        return kd_fail(KDENS_E_ARG, "NULL distiller");
    if ((unsigned)rule >= KD_FUSE_COUNT || rule == KDENS_FUSE_KEMENY)
        return kd_fail(KDENS_E_ARG, "fusion rule %s has no scores to distil from",
                       (unsigned)rule < KD_FUSE_COUNT ? kdens_fusion_name(rule) : "?");
    d->rule = rule;
    return KDENS_OK;
}

kdens_status kdens_distiller_set_cache(kdens_distiller *d, int cache, const char *path)
{
    if (!d)
        return kd_fail(KDENS_E_ARG, "NULL distiller");
    char *copy = path ? kd_strdup(path) : NULL;
    if (path && !copy)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    free(d->cache_path);
    d->cache_path = copy;
    d->cache = cache != 0;
    return KDENS_OK;
}

kdens_trainer *kdens_distiller_trainer(kdens_distiller *d) { return d ? d->trainer : NULL; }
kdens_model *kdens_distiller_student(kdens_distiller *d) { return d ? d->student : NULL; }

kdens_status kdens_distiller_set_comm(kdens_distiller *d, kdens_comm *comm)
{
    if (!d)
        return kd_fail(KDENS_E_ARG, "NULL distiller");
    d->comm = comm;
    return kdens_trainer_set_comm(d->trainer, comm);
}

kdens_status kdens_distiller_fit(kdens_distiller *d)
{
    if (!d)
        return kd_fail(KDENS_E_ARG, "NULL distiller");
    /* over several ranks, a cache file of each rank's own beside the path */
    char *shared = d->cache_path, *own = NULL;
    int ranks = kdens_comm_size(d->comm);
    if (shared && ranks > 1) {
        size_t len = strlen(shared) + 24;
        if (!(own = malloc(len)))
            return kd_fail(KDENS_E_NOMEM, "out of memory");
        snprintf(own, len, "%s.rank%d", shared, kdens_comm_rank(d->comm));
        d->cache_path = own;
    }
    kdens_status st = kd_distill_prepare(d);
    if (st == KDENS_OK)
        st = kdens_trainer_fit(d->trainer);
    kd_distill_release_targets(d);
    d->cache_path = shared;
    free(own);
    return st;
}

kdens_status kdens_distiller_export(kdens_distiller *d, kdens_model **out)
{
    if (!d || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    const kd_distill_mode_ops *ops = kd_distill_mode_ops_of(d->mode);
    kdens_model *m = NULL;
    if (ops->average_probs) { /* a mean of softmaxes does not fold: the student itself */
        char *spec = spec_of(d->student);
        kdens_status st = spec ? rebuild(spec, d->student, d->student->seed, &m)
                               : kd_fail(KDENS_E_NOMEM, "out of memory");
        free(spec);
        if (st == KDENS_OK)
            *out = m;
        return st;
    }
    kdens_status st = rebuild(d->template_spec, d->student, d->student->seed, &m);
    if (st != KDENS_OK || !ops->heads) {
        if (st == KDENS_OK)
            *out = m;
        return st;
    }
    /* fold the heads: mean(W_h x + b_h) = mean(W_h) x + mean(b_h) */
    const kd_node *logits = &m->nodes[m->logits_node];
    const char *part[2] = {"kernel", "bias"};
    for (int p = 0; p < 2; p++) {
        char name[300];
        snprintf(name, sizeof name, "%s/%s", logits->name, part[p]);
        kd_param *dst = kd_model_param(m, name);
        if (!dst)
            continue; /* a dense layer without bias */
        float *w = m->weights + dst->offset;
        memset(w, 0, sizeof(float) * dst->count);
        for (int h = 0; h < d->n_teachers; h++) {
            snprintf(name, sizeof name, "head_%d/%s", h, part[p]);
            const kd_param *src = kd_model_param(d->student, name);
            if (!src || src->count != dst->count) {
                kdens_model_free(m);
                return kd_fail(KDENS_E_STATE, "the student has no head parameter %s", name);
            }
            const float *v = d->student->weights + src->offset;
            for (size_t i = 0; i < dst->count; i++)
                w[i] += v[i] / (float)d->n_teachers;
        }
    }
    *out = m;
    return KDENS_OK;
}
