/* Workspaces: their architectures, and the steps the pipeline and the grid
 * share (folders, claims, the split, subset manifests, test decisions).
 *
 * Architectures of a workspace: a network described by a text spec
 * (docs/spec.md) is stored as WORKDIR/<dataset>/archs/<name>.spec, so that
 * registries name it like a built-in architecture and the workspace can be
 * re-read, resumed and extended later without the original file. */
#include "experiment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static char *spec_path(const char *workdir, const char *dataset, const char *name)
{
    return kd_path_fmt(workdir, "%s/archs/%s.spec", dataset, name);
}

static bool is_builtin(const char *name)
{
    for (int i = 0; i < kdens_arch_count(); i++)
        if (strcmp(kdens_arch_name(i), name) == 0)
            return true;
    return false;
}

kdens_status kdens_workspace_add_arch(const char *workdir, const char *dataset, const char *name,
                                      const char *spec)
{
    if (!workdir || !dataset || !name || !spec)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (!*name || strchr(name, '/') || strchr(name, ',') || strchr(dataset, '/'))
        return kd_fail(KDENS_E_ARG, "architecture '%s' and dataset '%s': names without '/' or ','",
                       name, dataset);
    if (is_builtin(name))
        return kd_fail(KDENS_E_ARG, "'%s' is a built-in architecture: give the spec another name",
                       name);
    char *path = spec_path(workdir, dataset, name), *dir = NULL;
    if (!path)
        return KDENS_E_NOMEM;
    char *old = NULL;
    size_t old_len;
    kdens_status st = KDENS_OK;
    if (access(path, F_OK) == 0) { /* the same spec again is fine; another one is not */
        st = kd_read_file(path, &old, &old_len);
        if (st == KDENS_OK && strcmp(old, spec) != 0)
            st = kd_fail(KDENS_E_STATE, "%s holds a different spec for '%s': a workspace's "
                                        "architecture names must stay unique",
                         path, name);
        free(old);
        free(path);
        return st;
    }
    if (!(dir = kd_path_fmt(workdir, "%s/archs", dataset)))
        st = KDENS_E_NOMEM;
    else if (kd_mkdirs(dir) != 0)
        st = kd_fail(KDENS_E_IO, "%s: cannot create: %s", dir, strerror(errno));
    if (st == KDENS_OK)
        st = kd_write_file_atomic(path, spec, strlen(spec));
    free(dir);
    free(path);
    return st;
}

kdens_status kd_workspace_arch_spec(const char *workdir, const char *dataset, const char *arch,
                                   char **text)
{
    *text = NULL;
    if (is_builtin(arch))
        return KDENS_OK;
    char *path = spec_path(workdir, dataset, arch);
    if (!path)
        return KDENS_E_NOMEM;
    kdens_status st = access(path, F_OK) != 0
                          ? kd_fail(KDENS_E_NOTFOUND, "architecture '%s' is neither built in nor "
                                    "a spec of the workspace (%s)", arch, path)
                          : kd_read_text(path, KDENS_E_SPEC, "spec", text);
    free(path);
    return st;
}

kdens_status kd_workspace_model(const char *workdir, const char *dataset, const char *arch, int h,
                                int w, int c, int classes, uint64_t seed, kdens_model **out)
{
    if (is_builtin(arch))
        return kdens_model_create(arch, h, w, c, classes, seed, out);
    char *path = spec_path(workdir, dataset, arch);
    if (!path)
        return KDENS_E_NOMEM;
    kdens_status st;
    if (access(path, F_OK) != 0)
        st = kd_fail(KDENS_E_NOTFOUND, "architecture '%s' is neither built in nor a spec of the "
                                       "workspace (%s)", arch, path);
    else
        st = kdens_model_from_spec_file(path, h, w, c, classes, seed, out);
    free(path);
    return st;
}

/* ---- shared steps of the pipeline and the grid ------------------------------------ */

kdens_status kd_workspace_mkdir(const char *workdir, const char *dataset, const char *part)
{
    char *dir = kd_path_join(workdir, dataset, part, NULL);
    kdens_status st = !dir                  ? KDENS_E_NOMEM
                      : kd_mkdirs(dir) != 0 ? kd_fail(KDENS_E_IO, "%s: cannot create: %s", dir,
                                                      strerror(errno))
                                            : KDENS_OK;
    free(dir);
    return st;
}

kdens_status kd_claim(const char *path, int *fd)
{
    *fd = open(path, O_RDWR | O_CREAT, 0644);
    if (*fd < 0)
        return kd_fail(KDENS_E_IO, "%s: cannot create the claim: %s", path, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(*fd);
        *fd = -1;
        if (e != EWOULDBLOCK)
            return kd_fail(KDENS_E_IO, "%s: cannot lock the claim: %s", path, strerror(e));
    }
    return KDENS_OK;
}

void kd_claim_release(int fd, const char *path)
{
    if (fd < 0)
        return;
    unlink(path);
    close(fd);
}

kdens_status kd_workspace_split(const char *dir, const kdens_dataset *pool, double val_fraction,
                                uint64_t seed, kdens_dataset **train, kdens_dataset **val)
{
    char *tr = kd_path_join(dir, "train.csv", NULL), *va = kd_path_join(dir, "val.csv", NULL);
    kdens_status st;
    if (!tr || !va) {
        st = KDENS_E_NOMEM;
    } else if (access(tr, F_OK) == 0 && access(va, F_OK) == 0) {
        st = kdens_dataset_select(pool, tr, train);
        if (st == KDENS_OK && (st = kdens_dataset_select(pool, va, val)) != KDENS_OK)
            kdens_dataset_free(*train);
    } else {
        st = kdens_dataset_split(pool, val_fraction, seed, train, val);
        if (st == KDENS_OK)
            st = kdens_dataset_write_manifest(*train, tr);
        if (st == KDENS_OK)
            st = kdens_dataset_write_manifest(*val, va);
    }
    free(tr);
    free(va);
    return st;
}

kdens_status kd_workspace_subsets(const char *dir, const kdens_dataset *train, double fraction,
                                  int n, uint64_t seed)
{
    char *sub = kd_path_join(dir, "subsets", NULL);
    if (!sub)
        return KDENS_E_NOMEM;
    /* room for the manifest's name after sub (kdens_dataset_write_subset
     * says KDENS_E_ARG, never truncates, should it not fit) */
    size_t size = strlen(sub) + 256;
    char *path = malloc(size);
    kdens_status st = !path                  ? kd_fail(KDENS_E_NOMEM, "out of memory")
                      : kd_mkdirs(sub) != 0 ? kd_fail(KDENS_E_IO, "%s: cannot create: %s", sub,
                                                      strerror(errno))
                                            : KDENS_OK;
    for (int k = 0; k < n && st == KDENS_OK; k++)
        st = kdens_dataset_write_subset(train, sub, fraction, 0, seed * 1000 + (uint64_t)k, path,
                                        size, NULL);
    free(path);
    free(sub);
    return st;
}

kdens_status kd_decide_all(kdens_model *m, const kdens_dataset *ds, int32_t **out)
{
    enum { BATCH = 256 };
    size_t n = kdens_dataset_count(ds);
    int h, w, ch, k = kdens_model_num_classes(m);
    kdens_dataset_shape(ds, &h, &w, &ch);
    size_t per = (size_t)h * w * ch;
    int32_t *d = malloc(sizeof *d * (n ? n : 1));
    uint8_t *px = malloc(per * BATCH);
    float *probs = malloc(sizeof(float) * BATCH * (size_t)k);
    kdens_status st = d && px && probs ? KDENS_OK : kd_fail(KDENS_E_NOMEM, "out of memory");
    for (size_t first = 0; first < n && st == KDENS_OK; first += BATCH) {
        size_t nb = n - first < BATCH ? n - first : BATCH;
        for (size_t i = 0; i < nb && st == KDENS_OK; i++)
            st = kdens_dataset_read(ds, first + i, px + i * per);
        if (st == KDENS_OK)
            st = kdens_model_predict_u8(m, px, nb, probs);
        for (size_t i = 0; i < nb && st == KDENS_OK; i++) {
            const float *p = probs + i * k;
            int best = 0;
            for (int c = 1; c < k; c++)
                best = p[c] > p[best] ? c : best;
            d[first + i] = best;
        }
    }
    free(px);
    free(probs);
    if (st != KDENS_OK) {
        free(d);
        return st;
    }
    *out = d;
    return KDENS_OK;
}

kdens_status kd_save_text(char *path, kd_buf *b)
{
    kdens_status st = !path        ? kd_fail(KDENS_E_NOMEM, "out of memory")
                      : b->failed ? kd_fail(KDENS_E_NOMEM, "out of memory")
                                  : kd_write_file_atomic(path, b->data, b->len);
    free(path);
    kd_buf_free(b);
    return st;
}

/* Rank 0's view in *view on every rank (the one before freed). */
static kdens_status share_view(kdens_comm *comm, const kdens_dataset *pool, kdens_dataset **view)
{
    kdens_dataset *shared = NULL;
    kdens_status st = kdens_dataset_share(comm, pool, *view, &shared);
    kdens_dataset_free(*view);
    *view = shared;
    return st;
}

kdens_status kd_workspace_share_parts(kdens_comm *comm, const kdens_dataset *pool,
                                      kdens_dataset **train, kdens_dataset **val)
{
    kdens_status st = share_view(comm, pool, train);
    return st == KDENS_OK ? share_view(comm, pool, val) : st;
}
