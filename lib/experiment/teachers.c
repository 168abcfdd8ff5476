/* The teacher farm over a shared workspace (or, over the ranks of a
 * communicator, rank 0's workspace alone: see "over ranks" below):
 *   WORKDIR/<dataset>/subsets/subset_<digits>_<uuid>.csv   (kdens subset)
 *   WORKDIR/<dataset>/teachers/<arch>_<fraction>_<uuid>.kdm (+ .ckpt, .claim)
 *   WORKDIR/<dataset>/logs/<uuid>.csv
 *   WORKDIR/teachers.csv
 * Claims are files held under flock(): a process that dies drops its lock,
 * so another takes the subset over (and resumes from the checkpoint). */
#include "experiment.h"

#include "../data/data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct kdens_teachers {
    char *workdir, *name, *arch;
    const kdens_dataset *pool, *val, *test;
    int epochs, patience;
    size_t batch;
    double lr;
    uint64_t seed;
    kdens_schedule schedule;
    bool set_schedule;
    const kdens_augment *aug;
    bool set_aug;
    kdens_comm *comm;   /* over its ranks; NULL alone */
    char *spec;         /* over ranks: the architecture's spec from rank 0 (NULL built in) */
};

kdens_status kdens_teachers_create(const char *workdir, const char *name, const char *arch,
                                   const kdens_dataset *pool, const kdens_dataset *val,
                                   const kdens_dataset *test, kdens_teachers **out)
{
    if (!workdir || !name || !arch || !pool || !val || !test || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (strchr(name, '/') || strchr(arch, '/') || strchr(arch, ','))
        return kd_fail(KDENS_E_ARG, "dataset and architecture names hold no '/' or ','");
    kdens_teachers *tc = calloc(1, sizeof *tc);
    if (tc) {
        tc->workdir = kd_strdup(workdir);
        tc->name = kd_strdup(name);
        tc->arch = kd_strdup(arch);
    }
    if (!tc || !tc->workdir || !tc->name || !tc->arch) {
        kdens_teachers_free(tc);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    tc->pool = pool, tc->val = val, tc->test = test;
    tc->patience = -1; /* the architecture's */
    *out = tc;
    return KDENS_OK;
}

void kdens_teachers_free(kdens_teachers *tc)
{
    if (!tc)
        return;
    free(tc->workdir);
    free(tc->name);
    free(tc->arch);
    free(tc->spec);
    free(tc);
}

kdens_status kdens_teachers_set_comm(kdens_teachers *tc, kdens_comm *comm)
{
    if (!tc)
        return kd_fail(KDENS_E_ARG, "NULL handle");
    tc->comm = comm;
    return KDENS_OK;
}

/* A new model of the farm's architecture: from rank 0's spec over ranks,
 * else from the workspace (or built in). */
static kdens_status new_model(const kdens_teachers *tc, const kdens_dataset *data, uint64_t seed,
                              kdens_model **m)
{
    int h, w, c;
    kdens_dataset_shape(data, &h, &w, &c);
    int classes = kdens_dataset_num_classes(data);
    if (tc->spec)
        return kdens_model_from_spec(tc->spec, h, w, c, classes, seed, m);
    return kd_workspace_model(tc->workdir, tc->name, tc->arch, h, w, c, classes, seed, m);
}

KD_SETTER(kdens_teachers, kdens_teachers_set_epochs, int, epochs, v >= 1, "epochs")
KD_SETTER(kdens_teachers, kdens_teachers_set_batch, size_t, batch, v >= 1, "batch")
KD_SETTER(kdens_teachers, kdens_teachers_set_lr, double, lr, v > 0 && isfinite(v),
          "learning rate")
KD_SETTER(kdens_teachers, kdens_teachers_set_patience, int, patience, v >= 0, "patience")
KD_SETTER(kdens_teachers, kdens_teachers_set_seed, uint64_t, seed, true, "seed")

kdens_status kdens_teachers_set_schedule(kdens_teachers *tc, kdens_schedule schedule)
{
    if (!tc || (unsigned)schedule > KDENS_SCHEDULE_COSINE)
        return kd_fail(KDENS_E_ARG, "NULL argument or a schedule without parameters");
    tc->schedule = schedule;
    tc->set_schedule = true;
    return KDENS_OK;
}

kdens_status kdens_teachers_set_augment(kdens_teachers *tc, const kdens_augment *aug)
{
    if (!tc)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    tc->aug = aug;
    tc->set_aug = true;
    return KDENS_OK;
}

/* subset_<digits>_<uuid>.csv -> fraction (first digit is the integer part,
 * as str(0.25).replace(".", "")) and uuid; false for other names. */
static bool parse_subset_name(const char *file, double *fraction, char *uuid, size_t uuid_size)
{
    const char *p = file;
    if (strncmp(p, "subset_", 7) != 0)
        return false;
    p += 7;
    const char *us = strchr(p, '_'), *dot = strrchr(file, '.');
    if (!us || !dot || strcmp(dot, ".csv") != 0 || us == p || us + 1 >= dot)
        return false;
    char num[64];
    size_t nd = (size_t)(us - p);
    if (nd + 2 > sizeof num)
        return false;
    num[0] = p[0];
    num[1] = '.';
    memcpy(num + 2, p + 1, nd - 1);
    num[nd + 1] = '\0';
    char *end;
    *fraction = strtod(num, &end);
    if (*end || !(*fraction > 0 && *fraction <= 1))
        return false;
    size_t ul = (size_t)(dot - us - 1);
    if (ul + 1 > uuid_size)
        return false;
    memcpy(uuid, us + 1, ul);
    uuid[ul] = '\0';
    return true;
}

/* A file of the teacher of (fraction, uuid):
 * WORKDIR/<dataset>/teachers/<arch>_<fraction>_<uuid><ext>, ext ".kdm" for
 * the model (or ".kdm.ckpt", ".kdm.claim"); NULL when out of memory. */
static char *teacher_file(const kdens_teachers *tc, double fraction, const char *uuid,
                          const char *ext)
{
    return kd_path_fmt(tc->workdir, "%s/teachers/%s_%g_%s%s", tc->name, tc->arch, fraction, uuid,
                       ext);
}

/* A trainer for `m` on `data` with the run's settings. */
static kdens_status configure(kdens_teachers *tc, kdens_model *m, const kdens_dataset *data,
                              kdens_trainer **out)
{
    kdens_trainer *t;
    kdens_status st = kdens_trainer_create(m, data, tc->val, &t);
    if (st != KDENS_OK)
        return st;
    kd_train_overrides o = {tc->epochs, tc->batch, tc->lr, tc->patience,
                            tc->set_schedule ? (int)tc->schedule : -1, tc->seed};
    st = kd_trainer_configure(t, tc->arch, &o);
    if (st == KDENS_OK && tc->set_aug)
        st = kdens_trainer_set_augment(t, tc->aug);
    if (st != KDENS_OK) {
        kdens_trainer_free(t);
        return st;
    }
    *out = t;
    return KDENS_OK;
}

/* A teacher's loss and accuracy on its training data, validation, test. */
static kdens_status measure(const kdens_teachers *tc, kdens_model *m, const kdens_dataset *data,
                            double l[3], double a[3])
{
    const kdens_dataset *sets[3] = {data, tc->val, tc->test};
    kdens_status st = KDENS_OK;
    for (int i = 0; i < 3 && st == KDENS_OK; i++)
        st = kdens_model_evaluate(m, sets[i], 256, &l[i], &a[i], NULL, NULL, NULL);
    return st;
}

/* The registry row of the teacher in file `model`. */
static kdens_status append_row_of(const kdens_teachers *tc, const char *model, double fraction,
                                  const char *uuid, const double l[3], const double a[3])
{
    char *csv = kd_path_join(tc->workdir, "teachers.csv", NULL);
    kdens_status st = csv ? KDENS_OK : KDENS_E_NOMEM;
    kd_buf row = {0};
    if (st == KDENS_OK) {
        const char *text[3] = {model, tc->name, tc->arch};
        for (int i = 0; i < 3; i++) {
            kd_csv_put_field(&row, text[i]);
            kd_buf_put(&row, ",", 1);
        }
        kd_buf_printf(&row, "%g,", fraction);
        kd_csv_put_field(&row, uuid);
        kd_buf_printf(&row, ",%.6f,%.6f,%.6f,%.6f,%.6f,%.6f", l[0], a[0], l[1], a[1], l[2], a[2]);
        st = row.failed ? kd_fail(KDENS_E_NOMEM, "out of memory")
                        : kd_registry_append(csv, KD_TEACHERS_HEADER, row.data);
    }
    kd_buf_free(&row);
    free(csv);
    return st;
}

/* The registry row of the teacher of (fraction, uuid). */
static kdens_status append_row(const kdens_teachers *tc, double fraction, const char *uuid,
                               const double l[3], const double a[3])
{
    char *model = teacher_file(tc, fraction, uuid, ".kdm");
    kdens_status st = model ? append_row_of(tc, model, fraction, uuid, l, a) : KDENS_E_NOMEM;
    free(model);
    return st;
}

/* Save a trained model as a teacher and append its row. */
static kdens_status register_teacher(kdens_teachers *tc, kdens_model *m,
                                     const kdens_dataset *data, double fraction,
                                     const char *uuid, bool save)
{
    char *model = teacher_file(tc, fraction, uuid, ".kdm");
    kdens_status st = model ? KDENS_OK : KDENS_E_NOMEM;
    if (st == KDENS_OK && save) {
        kdens_model_set_meta(m, "dataset", tc->name);
        kdens_model_set_meta(m, "uuid", uuid);
        st = kdens_model_save(m, model);
    }
    double l[3], a[3];
    if (st == KDENS_OK)
        st = measure(tc, m, data, l, a);
    if (st == KDENS_OK)
        st = append_row(tc, fraction, uuid, l, a);
    free(model);
    return st;
}

static kdens_status train_new(kdens_teachers *tc, const kdens_dataset *data, double fraction,
                              const char *uuid);

/* Is model_path registered already (KDENS_OK, *found)?  A row of another
 * file under the same uuid and dataset is refused. */
static kdens_status registered(const kdens_teachers *tc, const char *csv, const char *model_path,
                               const char *uuid, bool *found)
{
    *found = false;
    if (access(csv, F_OK) != 0)
        return KDENS_OK;
    kd_registry_row *rows = NULL;
    size_t n = 0;
    kdens_status st = kd_registry_read(csv, &rows, &n);
    for (size_t i = 0; st == KDENS_OK && i < n && !*found; i++) {
        if (strcmp(rows[i].location, model_path) == 0)
            *found = true;
        else if (strcmp(rows[i].uuid, uuid) == 0 && strcmp(rows[i].dataset, tc->name) == 0)
            st = kd_fail(KDENS_E_ARG, "%s: line %zu registers %s under uuid %s already", csv,
                         rows[i].line, rows[i].location, uuid);
    }
    kd_registry_free(rows, n);
    return st;
}

kdens_status kdens_teachers_add(kdens_teachers *tc, const char *model_path, double fraction,
                                const char *uuid)
{
    if (!tc || !model_path || !uuid || !*model_path || !*uuid)
        return kd_fail(KDENS_E_ARG, "NULL or empty argument");
    if (!(fraction > 0 && fraction <= 1))
        return kd_fail(KDENS_E_ARG, "a teacher's fraction is in (0, 1], not %g", fraction);
    if (kdens_comm_size(tc->comm) > 1)
        return kd_fail(KDENS_E_STATE, "kdens_teachers_add runs in one process, not over ranks");
    char *csv = kd_path_join(tc->workdir, "teachers.csv", NULL);
    if (!csv)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    bool found = false;
    kdens_status st = registered(tc, csv, model_path, uuid, &found);
    free(csv);
    if (st != KDENS_OK || found)
        return st;
    kdens_model *m = NULL;
    double l[3], a[3];
    st = kdens_model_load(model_path, &m);
    if (st == KDENS_OK)
        st = measure(tc, m, tc->pool, l, a);
    if (st == KDENS_OK)
        st = kd_workspace_mkdir(tc->workdir, tc->name, "teachers");
    if (st == KDENS_OK)
        st = append_row_of(tc, model_path, fraction, uuid, l, a);
    kdens_model_free(m);
    return st;
}

/* Train (or resume) one teacher on `data`, save it, register it. */
static kdens_status train_one(kdens_teachers *tc, const kdens_dataset *data, double fraction,
                              const char *uuid)
{
    char *model = teacher_file(tc, fraction, uuid, ".kdm");
    if (!model)
        return KDENS_E_NOMEM;
    if (access(model, F_OK) == 0) { /* trained before a crash kept it from the registry */
        kdens_model *m = NULL;
        kdens_status st = kdens_model_load(model, &m);
        if (st == KDENS_OK)
            st = register_teacher(tc, m, data, fraction, uuid, false);
        kdens_model_free(m);
        free(model);
        return st;
    }
    free(model);
    return train_new(tc, data, fraction, uuid);
}

/* Train a new teacher (data-parallel over the farm's ranks, when every
 * rank calls: the baseline and one-run ensembles), rank 0 saving and
 * registering it. */
static kdens_status train_new(kdens_teachers *tc, const kdens_dataset *data, double fraction,
                              const char *uuid)
{
    char *ckpt = teacher_file(tc, fraction, uuid, ".kdm.ckpt");
    char *log = kd_path_fmt(tc->workdir, "%s/logs/%s.csv", tc->name, uuid);
    if (!ckpt || !log) {
        free(ckpt);
        free(log);
        return KDENS_E_NOMEM;
    }
    kdens_model *m = NULL;
    kdens_trainer *t = NULL;
    /* each teacher its own initialisation and batch order (as independently
     * initialised Keras models), reproducible from the seed and the subset */
    uint64_t seed = kd_fnv1a(tc->seed, uuid, strlen(uuid));
    kdens_status st = new_model(tc, data, seed, &m);
    if (st == KDENS_OK)
        st = configure(tc, m, data, &t);
    if (st == KDENS_OK)
        st = kdens_trainer_set_seed(t, seed);
    if (st == KDENS_OK)
        st = kdens_trainer_set_log(t, log);
    if (st == KDENS_OK)
        st = kdens_trainer_set_checkpoint(t, ckpt, 1);
    if (st == KDENS_OK)
        st = kdens_trainer_set_comm(t, tc->comm);
    if (st == KDENS_OK)
        st = kdens_trainer_fit(t);
    if (st == KDENS_OK && kdens_comm_rank(tc->comm) == 0) {
        st = register_teacher(tc, m, data, fraction, uuid, true);
        if (st == KDENS_OK)
            unlink(ckpt);
    }
    st = kdens_comm_agree(tc->comm, st);
    kdens_trainer_free(t);
    kdens_model_free(m);
    free(ckpt);
    free(log);
    return st;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* WORKDIR/<dataset>/{teachers,logs,students}. */
static kdens_status make_dirs(const kdens_teachers *tc)
{
    static const char *const parts[3] = {"teachers", "logs", "students"};
    kdens_status st = KDENS_OK;
    for (int i = 0; i < 3 && st == KDENS_OK; i++)
        st = kd_workspace_mkdir(tc->workdir, tc->name, parts[i]);
    return st;
}

/* One subset (or the baseline): skip if registered, else claim and train. */
static kdens_status run_subset(kdens_teachers *tc, const kdens_dataset *data, double fraction,
                               const char *uuid, bool *trained)
{
    *trained = false;
    char *model = teacher_file(tc, fraction, uuid, ".kdm");
    char *claim_path = teacher_file(tc, fraction, uuid, ".kdm.claim");
    char *csv = kd_path_join(tc->workdir, "teachers.csv", NULL);
    kdens_status st = model && claim_path && csv ? KDENS_OK : KDENS_E_NOMEM;
    /* skip a registered teacher; claim another (fd < 0: another process is on it) */
    int fd = -1;
    if (st == KDENS_OK && !kd_registry_has(csv, model))
        st = kd_claim(claim_path, &fd);
    if (st == KDENS_OK && fd >= 0 && !kd_registry_has(csv, model)) { /* done meanwhile? */
        st = train_one(tc, data, fraction, uuid);
        *trained = st == KDENS_OK;
    }
    kd_claim_release(fd, claim_path);
    free(model);
    free(claim_path);
    free(csv);
    return st;
}

/* The subset manifests of the fraction (all for fraction <= 0), sorted by
 * name, into *names (n of them); KDENS_E_NOTFOUND for none. */
static kdens_status list_subsets(const char *subsets, double fraction, char ***names_out,
                                 size_t *n_out)
{
    DIR *d = opendir(subsets);
    if (!d)
        return kd_fail(KDENS_E_NOTFOUND, "%s: no subsets folder (kdens subset makes it)",
                       subsets);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    kdens_status st = KDENS_OK;
    while (st == KDENS_OK && (e = readdir(d))) {
        double f;
        char uuid[256];
        if (!parse_subset_name(e->d_name, &f, uuid, sizeof uuid) ||
            (fraction > 0 && fabs(f - fraction) > 1e-9))
            continue;
        if (n == cap) {
            cap = kd_grown(cap, 16);
            if (!kd_resize(&names, cap, sizeof *names)) {
                st = kd_fail(KDENS_E_NOMEM, "out of memory");
                break;
            }
        }
        if (!(names[n] = kd_strdup(e->d_name)))
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
        else
            n++;
    }
    closedir(d);
    if (st == KDENS_OK && n == 0)
        st = kd_fail(KDENS_E_NOTFOUND, "%s: no subset manifests%s", subsets,
                     fraction > 0 ? " of that fraction" : "");
    if (n > 1)
        qsort(names, n, sizeof(char *), cmp_str);
    if (st != KDENS_OK) {
        free_names(names, n);
        names = NULL, n = 0;
    }
    *names_out = names;
    *n_out = n;
    return st;
}

/* Subset `name` of the folder as a view of the pool, its fraction and uuid. */
static kdens_status open_subset(const kdens_teachers *tc, const char *subsets, const char *name,
                                kdens_dataset **sub, double *fraction, char uuid[256])
{
    parse_subset_name(name, fraction, uuid, 256);
    char *path = kd_path_join(subsets, name, NULL);
    kdens_status st = path ? kdens_dataset_select(tc->pool, path, sub) : KDENS_E_NOMEM;
    free(path);
    return st;
}

static kdens_status train_over_ranks(kdens_teachers *tc, double fraction, int *trained);

kdens_status kdens_teachers_train(kdens_teachers *tc, double fraction, int *trained)
{
    if (!tc)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (kdens_comm_size(tc->comm) > 1)
        return train_over_ranks(tc, fraction, trained);
    kdens_status st = make_dirs(tc);
    char *subsets = st == KDENS_OK ? kd_path_join(tc->workdir, tc->name, "subsets", NULL) : NULL;
    if (st == KDENS_OK && !subsets)
        st = KDENS_E_NOMEM;
    char **names = NULL;
    size_t n = 0;
    if (st == KDENS_OK)
        st = list_subsets(subsets, fraction, &names, &n);
    int count = 0;
    for (size_t i = 0; st == KDENS_OK && i < n; i++) {
        double f;
        char uuid[256];
        kdens_dataset *sub = NULL;
        st = open_subset(tc, subsets, names[i], &sub, &f, uuid);
        bool did = false;
        if (st == KDENS_OK)
            st = run_subset(tc, sub, f, uuid, &did);
        kdens_dataset_free(sub);
        count += did;
    }
    free_names(names, n);
    free(subsets);
    if (trained)
        *trained = count;
    return st;
}

/* ---- over ranks: rank 0 the queue and the only writer ---------------------------------
 * A job: f64 fraction, bytes uuid, u64 n, n u64 store positions of the subset.
 * A result: 3 f64 losses, 3 f64 accuracies (its data, validation, test),
 * bytes of the .kdm, bytes of the training log. */

typedef struct farm {
    kdens_teachers *tc;
    kd_buf *jobs;
    size_t n_jobs;
    double *fraction;   /* per job */
    char **uuid;
    int *claim;         /* the claim file's descriptor, per job */
    int count;          /* teachers written */
} farm;

/* What every rank must agree on before a farm or a data-parallel run, and
 * the workspace architecture's spec from rank 0. */
static kdens_status share_settings(kdens_teachers *tc)
{
    char what[768];
    snprintf(what, sizeof what,
             "teachers of %s, dataset %s: epochs %d, batch %zu, lr %.17g, patience %d, seed "
             "%llu, schedule %d, augment %d; %zu/%zu/%zu samples (%zu loaded)",
             tc->arch, tc->name, tc->epochs, tc->batch, tc->lr, tc->patience,
             (unsigned long long)tc->seed, tc->set_schedule ? (int)tc->schedule : -1,
             tc->set_aug ? (tc->aug != NULL) : -1, kdens_dataset_count(tc->pool),
             kdens_dataset_count(tc->val), kdens_dataset_count(tc->test), tc->pool->store->n);
    kdens_status st = kdens_comm_check_same(tc->comm, what);
    char *spec = NULL;
    if (st == KDENS_OK && kdens_comm_rank(tc->comm) == 0)
        st = kd_workspace_arch_spec(tc->workdir, tc->name, tc->arch, &spec);
    st = kdens_comm_agree(tc->comm, st);
    kd_buf text = {0};
    uint8_t builtin = spec == NULL;
    if (st == KDENS_OK)
        st = kd_comm_broadcast(tc->comm, &builtin, 1, 0);
    if (st == KDENS_OK && !builtin) {
        if (spec)
            kd_buf_printf(&text, "%s", spec);
        st = text.failed ? kd_fail(KDENS_E_NOMEM, "out of memory") : KDENS_OK;
        st = kdens_comm_agree(tc->comm, st);
        if (st == KDENS_OK)
            st = kd_comm_broadcast_blob(tc->comm, &text, 0);
    }
    free(spec);
    free(tc->spec);
    tc->spec = NULL;
    if (st == KDENS_OK && !builtin)
        tc->spec = text.data, text.data = NULL;
    kd_buf_free(&text);
    return st;
}

/* Rank 0: a job for every subset that is neither registered nor claimed by
 * another process; each stays claimed until its result is written. */
static kdens_status plan_jobs(farm *f, double fraction)
{
    kdens_teachers *tc = f->tc;
    kdens_status st = make_dirs(tc);
    char *subsets = st == KDENS_OK ? kd_path_join(tc->workdir, tc->name, "subsets", NULL) : NULL;
    char *csv = kd_path_join(tc->workdir, "teachers.csv", NULL);
    if (st == KDENS_OK && (!subsets || !csv))
        st = KDENS_E_NOMEM;
    char **names = NULL;
    size_t n = 0;
    if (st == KDENS_OK)
        st = list_subsets(subsets, fraction, &names, &n);
    if (st == KDENS_OK && n &&
        (!(f->jobs = calloc(n, sizeof *f->jobs)) || !(f->fraction = calloc(n, sizeof(double))) ||
         !(f->uuid = calloc(n, sizeof(char *))) || !(f->claim = malloc(n * sizeof(int)))))
        st = kd_fail(KDENS_E_NOMEM, "out of memory");
    for (size_t i = 0; st == KDENS_OK && i < n; i++) {
        double fr;
        char uuid[256];
        kdens_dataset *sub = NULL;
        st = open_subset(tc, subsets, names[i], &sub, &fr, uuid);
        char *model = st == KDENS_OK ? teacher_file(tc, fr, uuid, ".kdm") : NULL;
        char *claim = st == KDENS_OK ? teacher_file(tc, fr, uuid, ".kdm.claim") : NULL;
        if (st == KDENS_OK && (!model || !claim))
            st = KDENS_E_NOMEM;
        int fd = -1;
        if (st == KDENS_OK && !kd_registry_has(csv, model))
            st = kd_claim(claim, &fd);
        if (st == KDENS_OK && fd >= 0 && access(model, F_OK) == 0) {
            /* trained before a crash kept it from the registry: register it here */
            bool did;
            kd_claim_release(fd, claim), fd = -1;
            st = run_subset(tc, sub, fr, uuid, &did);
        }
        if (st == KDENS_OK && fd >= 0) {
            kd_buf *job = &f->jobs[f->n_jobs];
            kd_buf_put(job, &fr, sizeof fr);
            kd_msg_put_bytes(job, uuid, strlen(uuid));
            size_t count = kdens_dataset_count(sub);
            kd_buf_u64(job, (uint64_t)count);
            for (size_t k = 0; k < count; k++)
                kd_buf_u64(job, (uint64_t)kd_dataset_at(sub, k));
            f->fraction[f->n_jobs] = fr;
            f->uuid[f->n_jobs] = kd_strdup(uuid);
            f->claim[f->n_jobs] = fd;
            f->n_jobs++;
            if (job->failed || !f->uuid[f->n_jobs - 1])
                st = kd_fail(KDENS_E_NOMEM, "out of memory");
        }
        kdens_dataset_free(sub);
        free(model);
        free(claim);
    }
    free_names(names, n);
    free(subsets);
    free(csv);
    if (st == KDENS_OK && f->n_jobs + 1 < (size_t)kdens_comm_size(tc->comm))
        kd_log(KDENS_LOG_WARN, "%zu teachers to train on %d ranks: %d ranks stay idle",
               f->n_jobs, kdens_comm_size(tc->comm) - 1,
               kdens_comm_size(tc->comm) - 1 - (int)f->n_jobs);
    return st;
}

/* A worker: train the job's teacher, send it back with its log and numbers. */
static kdens_status farm_work(void *user, const uint8_t *job, size_t len, kd_buf *result)
{
    const kdens_teachers *tc = ((farm *)user)->tc;
    kd_msg m = {job, len, 0, false};
    double fraction = 0;
    size_t uuid_len = 0;
    uint64_t count = 0;
    kd_msg_get(&m, &fraction, sizeof fraction);
    const uint8_t *uuid_bytes = kd_msg_bytes(&m, &uuid_len);
    kd_msg_get(&m, &count, 8);
    if (m.failed || uuid_len == 0 || uuid_len > 255 || count > (m.len - m.at) / 8)
        return kd_fail(KDENS_E_FORMAT, "a malformed teacher job (%zu bytes)", len);
    char uuid[256];
    memcpy(uuid, uuid_bytes, uuid_len);
    uuid[uuid_len] = '\0';
    uint64_t *positions = malloc(sizeof(uint64_t) * (count ? count : 1));
    if (!positions)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    kd_msg_get(&m, positions, sizeof(uint64_t) * count);
    kdens_dataset *sub = NULL;
    kdens_status st = kd_dataset_store_view(tc->pool, positions, (size_t)count, &sub);
    free(positions);
    kdens_model *model = NULL;
    kdens_trainer *t = NULL;
    uint64_t seed = kd_fnv1a(tc->seed, uuid, strlen(uuid));
    char *log = st == KDENS_OK ? kd_temp_log() : NULL;
    if (st == KDENS_OK && !log)
        st = kd_fail(KDENS_E_IO, "cannot create a temporary file for the training log");
    if (st == KDENS_OK)
        st = new_model(tc, sub, seed, &model);
    if (st == KDENS_OK)
        st = configure((kdens_teachers *)tc, model, sub, &t);
    if (st == KDENS_OK)
        st = kdens_trainer_set_seed(t, seed);
    if (st == KDENS_OK)
        st = kdens_trainer_set_log(t, log);
    if (st == KDENS_OK) {
        kd_log(KDENS_LOG_INFO, "rank %d: teacher %s (%zu images)", kdens_comm_rank(tc->comm),
               uuid, (size_t)count);
        st = kdens_trainer_fit(t);
    }
    double l[3], a[3];
    if (st == KDENS_OK)
        st = measure(tc, model, sub, l, a);
    if (st == KDENS_OK) {
        kdens_model_set_meta(model, "dataset", tc->name);
        kdens_model_set_meta(model, "uuid", uuid);
        st = kd_trained_pack(model, l, a, log, result);
    }
    if (log)
        unlink(log);
    free(log);
    kdens_trainer_free(t);
    kdens_model_free(model);
    kdens_dataset_free(sub);
    return st;
}

/* Rank 0: write a returned teacher -- model, log, registry row -- and drop
 * its claim. */
static kdens_status farm_done(void *user, size_t job, const uint8_t *result, size_t len)
{
    farm *f = user;
    kdens_teachers *tc = f->tc;
    const char *uuid = f->uuid[job];
    char *path = teacher_file(tc, f->fraction[job], uuid, ".kdm");
    char *log_path = kd_path_fmt(tc->workdir, "%s/logs/%s.csv", tc->name, uuid);
    double l[3], a[3];
    kdens_status st = path && log_path ? KDENS_OK : KDENS_E_NOMEM;
    if (st == KDENS_OK)
        st = kd_trained_write(result, len, path, log_path, l, a);
    if (st == KDENS_OK)
        st = append_row(tc, f->fraction[job], uuid, l, a);
    if (st == KDENS_OK) {
        f->count++;
        char *claim = teacher_file(tc, f->fraction[job], uuid, ".kdm.claim");
        kd_claim_release(f->claim[job], claim);
        f->claim[job] = -1;
        free(claim);
    }
    free(path);
    free(log_path);
    return st;
}

static void farm_free(farm *f)
{
    for (size_t i = 0; i < f->n_jobs; i++) {
        kd_buf_free(&f->jobs[i]);
        if (f->claim[i] >= 0) {
            char *claim = teacher_file(f->tc, f->fraction[i], f->uuid[i], ".kdm.claim");
            kd_claim_release(f->claim[i], claim);
            free(claim);
        }
        free(f->uuid[i]);
    }
    free(f->jobs);
    free(f->fraction);
    free(f->uuid);
    free(f->claim);
}

static kdens_status train_over_ranks(kdens_teachers *tc, double fraction, int *trained)
{
    farm f = {.tc = tc};
    kdens_status st = share_settings(tc);
    if (st == KDENS_OK && kdens_comm_rank(tc->comm) == 0)
        st = plan_jobs(&f, fraction);
    st = kdens_comm_agree(tc->comm, st); /* rank 0's plan */
    static const kd_queue_ops ops = {farm_work, farm_done};
    if (st == KDENS_OK)
        st = kd_queue_run(tc->comm, f.jobs, f.n_jobs, &ops, &f);
    if (trained)
        *trained = f.count;
    farm_free(&f);
    return st;
}

/* Before a run on the whole pool: the workspace's folders; over ranks rank
 * 0's, once the ranks agree on their settings. */
static kdens_status prepare_run(kdens_teachers *tc)
{
    if (kdens_comm_size(tc->comm) <= 1)
        return make_dirs(tc);
    kdens_status st = share_settings(tc);
    if (st == KDENS_OK && kdens_comm_rank(tc->comm) == 0)
        st = make_dirs(tc);
    return kdens_comm_agree(tc->comm, st);
}

/* The baseline over ranks: rank 0 decides (registered, claimed elsewhere,
 * or to train), then every rank trains it data-parallel. */
static kdens_status baseline_over_ranks(kdens_teachers *tc)
{
    const char *uuid = "all_trainset";
    kdens_status st = prepare_run(tc);
    char *claim = teacher_file(tc, 1.0, uuid, ".kdm.claim");
    char *model = teacher_file(tc, 1.0, uuid, ".kdm");
    char *csv = kd_path_join(tc->workdir, "teachers.csv", NULL);
    if (st == KDENS_OK && (!claim || !model || !csv))
        st = KDENS_E_NOMEM;
    int fd = -1;
    uint8_t todo = 0;
    if (st == KDENS_OK && kdens_comm_rank(tc->comm) == 0 && !kd_registry_has(csv, model))
        st = kd_claim(claim, &fd);
    if (st == KDENS_OK && fd >= 0 && access(model, F_OK) == 0)
        st = train_one(tc, tc->pool, 1.0, uuid); /* only to register: no training */
    else if (st == KDENS_OK && fd >= 0)
        todo = 1;
    st = kdens_comm_agree(tc->comm, st);
    if (st == KDENS_OK)
        st = kd_comm_broadcast(tc->comm, &todo, 1, 0);
    if (st == KDENS_OK && todo)
        st = train_new(tc, tc->pool, 1.0, uuid);
    kd_claim_release(fd, claim);
    free(claim);
    free(model);
    free(csv);
    return st;
}

kdens_status kdens_teachers_train_baseline(kdens_teachers *tc)
{
    if (!tc)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (kdens_comm_size(tc->comm) > 1)
        return baseline_over_ranks(tc);
    kdens_status st = make_dirs(tc);
    if (st != KDENS_OK)
        return st;
    bool did;
    return run_subset(tc, tc->pool, 1.0, "all_trainset", &did);
}

/* ---- submodels of one run ------------------------------------------------------------ */

struct snap_ctx {
    kdens_teachers *tc;
    int cycle_epochs, best_k, n_best;
    float **best;      /* best_k weight copies, by validation loss */
    double *best_loss;
    int *best_epoch;
};

/* Snapshots: save and register the model at the end of every cycle. */
static kdens_status on_snapshot(void *user, int epoch, double val_loss, const kdens_model *m)
{
    (void)val_loss;
    struct snap_ctx *c = user;
    if (epoch % c->cycle_epochs != 0)
        return KDENS_OK;
    char uuid[96];
    snprintf(uuid, sizeof uuid, "snapshot_%llu_%d", (unsigned long long)c->tc->seed,
             epoch / c->cycle_epochs);
    return register_teacher(c->tc, (kdens_model *)m, c->tc->pool, 1.0, uuid, true);
}

/* Fast geometric ensembling: save and register the model at every cycle's
 * low point, the middle of the cycle. */
static kdens_status on_fge(void *user, int epoch, double val_loss, const kdens_model *m)
{
    (void)val_loss;
    struct snap_ctx *c = user;
    int half = c->cycle_epochs / 2;
    if (epoch < half || (epoch - half) % c->cycle_epochs != 0)
        return KDENS_OK;
    char uuid[96];
    snprintf(uuid, sizeof uuid, "fge_%llu_%d", (unsigned long long)c->tc->seed,
             (epoch - half) / c->cycle_epochs + 1);
    return register_teacher(c->tc, (kdens_model *)m, c->tc->pool, 1.0, uuid, true);
}

/* Checkpoint ensemble: keep the best_k epochs' weights by validation loss. */
static kdens_status on_checkpoint(void *user, int epoch, double val_loss, const kdens_model *m)
{
    struct snap_ctx *c = user;
    int slot = c->n_best < c->best_k ? c->n_best++ : -1;
    if (slot < 0) { /* replace the worst kept, if this one is better */
        int worst = 0;
        for (int i = 1; i < c->best_k; i++)
            if (c->best_loss[i] > c->best_loss[worst])
                worst = i;
        if (!(val_loss < c->best_loss[worst]))
            return KDENS_OK;
        slot = worst;
    }
    memcpy(c->best[slot], m->weights, sizeof(float) * m->n_weights);
    c->best_loss[slot] = val_loss;
    c->best_epoch[slot] = epoch;
    return KDENS_OK;
}

static kdens_status one_run(kdens_teachers *tc, int epochs, kdens_schedule schedule, int period,
                            kdens_epoch_fn fn, struct snap_ctx *ctx, kdens_model **out)
{
    kdens_model *m = NULL;
    kdens_trainer *t = NULL;
    kdens_status st = new_model(tc, tc->pool, tc->seed, &m);
    if (st == KDENS_OK)
        st = configure(tc, m, tc->pool, &t);
    if (st == KDENS_OK) /* over ranks: data-parallel, the callback on rank 0 */
        st = kdens_trainer_set_comm(t, tc->comm);
    if (st == KDENS_OK)
        st = kdens_trainer_set_epochs(t, epochs);
    if (st == KDENS_OK)
        st = kdens_trainer_set_early_stopping(t, 0, 0); /* every epoch counts */
    if (st == KDENS_OK)
        st = kdens_trainer_set_schedule(t, schedule, period, 0);
    if (st == KDENS_OK)
        st = kdens_trainer_set_epoch_callback(t, fn, ctx);
    if (st == KDENS_OK)
        st = kdens_trainer_fit(t);
    kdens_trainer_free(t);
    if (st != KDENS_OK) {
        kdens_model_free(m);
        return st;
    }
    *out = m;
    return KDENS_OK;
}

kdens_status kdens_teachers_train_snapshots(kdens_teachers *tc, int cycles, int cycle_epochs)
{
    if (!tc || cycles < 1 || cycle_epochs < 1)
        return kd_fail(KDENS_E_ARG, "snapshots need cycles and cycle epochs >= 1");
    struct snap_ctx ctx = {tc, cycle_epochs, 0, 0, NULL, NULL, NULL};
    kdens_model *m;
    kdens_status st = prepare_run(tc);
    if (st != KDENS_OK)
        return st;
    st = one_run(tc, cycles * cycle_epochs, KDENS_SCHEDULE_CYCLIC, cycle_epochs,
                              on_snapshot, &ctx, &m);
    if (st == KDENS_OK)
        kdens_model_free(m);
    return st;
}

kdens_status kdens_teachers_train_fge(kdens_teachers *tc, int cycles, int cycle_epochs)
{
    if (!tc || cycles < 1 || cycle_epochs < 2 || cycle_epochs % 2)
        return kd_fail(KDENS_E_ARG, "fast geometric ensembling needs cycles >= 1 and an even "
                       "number of epochs per cycle (its low point is mid-cycle)");
    struct snap_ctx ctx = {tc, cycle_epochs, 0, 0, NULL, NULL, NULL};
    kdens_model *m;
    kdens_status st = prepare_run(tc);
    if (st == KDENS_OK) /* up to the last cycle's low point */
        st = one_run(tc, (cycles - 1) * cycle_epochs + cycle_epochs / 2,
                     KDENS_SCHEDULE_TRIANGULAR, cycle_epochs, on_fge, &ctx, &m);
    if (st == KDENS_OK)
        kdens_model_free(m);
    return st;
}

kdens_status kdens_teachers_train_checkpoints(kdens_teachers *tc, int epochs, int best_k)
{
    if (!tc || epochs < 1 || best_k < 1 || best_k > epochs)
        return kd_fail(KDENS_E_ARG, "a checkpoint ensemble needs 1 <= best_k <= epochs");
    struct snap_ctx ctx = {tc, 0, best_k, 0, NULL, NULL, NULL};
    ctx.best = calloc((size_t)best_k, sizeof(float *));
    ctx.best_loss = calloc((size_t)best_k, sizeof(double));
    ctx.best_epoch = calloc((size_t)best_k, sizeof(int));
    kdens_model *m = NULL;
    kdens_status st = ctx.best && ctx.best_loss && ctx.best_epoch
                          ? prepare_run(tc)
                          : kd_fail(KDENS_E_NOMEM, "out of memory");
    /* weight copies need the network's size: a probe model */
    kdens_model *probe = NULL;
    if (st == KDENS_OK)
        st = new_model(tc, tc->pool, 0, &probe);
    for (int i = 0; st == KDENS_OK && i < best_k; i++)
        if (!(ctx.best[i] = malloc(sizeof(float) * probe->n_weights)))
            st = kd_fail(KDENS_E_NOMEM, "out of memory");
    kdens_model_free(probe);
    st = kdens_comm_agree(tc->comm, st);
    if (st == KDENS_OK)
        st = one_run(tc, epochs, KDENS_SCHEDULE_CONSTANT, 0, on_checkpoint, &ctx, &m);
    /* (over ranks ctx holds weights on rank 0 only, which ran the callback) */
    for (int i = 0; st == KDENS_OK && i < ctx.n_best; i++) {
        char uuid[96];
        memcpy(m->weights, ctx.best[i], sizeof(float) * m->n_weights);
        snprintf(uuid, sizeof uuid, "checkpoint_%llu_e%d", (unsigned long long)tc->seed,
                 ctx.best_epoch[i]);
        st = register_teacher(tc, m, tc->pool, 1.0, uuid, true);
    }
    st = kdens_comm_agree(tc->comm, st);
    kdens_model_free(m);
    for (int i = 0; ctx.best && i < best_k; i++)
        free(ctx.best[i]);
    free(ctx.best);
    free(ctx.best_loss);
    free(ctx.best_epoch);
    return st;
}
