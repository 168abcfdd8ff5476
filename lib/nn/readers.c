/* Readers of model formats other than .kdm (kdens_model_set_reader): the
 * engine knows no other format itself, so that an optional library
 * (libkdens_onnx) can teach kdens_model_load -- and with it ensembles,
 * registries and every tool that loads models -- to read its files without
 * the engine linking it. */
#include "nn.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>

#define KD_MAX_READERS 8
#define KD_MAX_SUFFIX 15

typedef struct kd_reader {
    char suffix[KD_MAX_SUFFIX + 1];
    kdens_model_reader read;
} kd_reader;

static kd_reader readers[KD_MAX_READERS];
static int n_readers;
static pthread_mutex_t readers_lock = PTHREAD_MUTEX_INITIALIZER;

/* The slot of suffix, or -1; with readers_lock held. */
static int slot_of(const char *suffix)
{
    for (int i = 0; i < n_readers; i++)
        if (strcasecmp(readers[i].suffix, suffix) == 0)
            return i;
    return -1;
}

kdens_status kdens_model_set_reader(const char *suffix, kdens_model_reader reader)
{
    if (!suffix || !*suffix)
        return kd_fail(KDENS_E_ARG, "NULL or empty suffix");
    if (strlen(suffix) > KD_MAX_SUFFIX)
        return kd_fail(KDENS_E_ARG, "suffix '%.20s...' is longer than %d bytes", suffix,
                       KD_MAX_SUFFIX);
    if (strcasecmp(suffix, ".kdm") == 0)
        return kd_fail(KDENS_E_ARG, ".kdm files are libkdens' own; their reader is fixed");
    kdens_status st = KDENS_OK;
    pthread_mutex_lock(&readers_lock);
    int i = slot_of(suffix);
    if (i >= 0 && reader)
        readers[i].read = reader;
    else if (i >= 0) /* removed: the last slot takes its place */
        readers[i] = readers[--n_readers];
    else if (reader && n_readers == KD_MAX_READERS)
        st = kd_fail(KDENS_E_NOMEM, "%d model readers are registered already, the most there "
                     "can be", KD_MAX_READERS);
    else if (reader) {
        strcpy(readers[n_readers].suffix, suffix);
        readers[n_readers++].read = reader;
    }
    pthread_mutex_unlock(&readers_lock);
    return st;
}

kdens_model_reader kd_model_reader_for(const char *path)
{
    size_t len = strlen(path);
    kdens_model_reader found = NULL;
    pthread_mutex_lock(&readers_lock);
    for (int i = 0; i < n_readers && !found; i++) {
        size_t n = strlen(readers[i].suffix);
        if (len >= n && strcasecmp(path + len - n, readers[i].suffix) == 0)
            found = readers[i].read;
    }
    pthread_mutex_unlock(&readers_lock);
    return found;
}
