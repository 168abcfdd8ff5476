/* Architectures of a workspace: a network described by a text spec
 * (docs/spec.md) is stored as WORKDIR/<dataset>/archs/<name>.spec, so that
 * registries name it like a built-in architecture and the workspace can be
 * re-read, resumed and extended later without the original file. */
#include "experiment.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
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
