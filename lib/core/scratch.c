/* Per-thread scratch buffers (core.h: kd_scratch).  Each thread's record is
 * also linked into one global list, so that the buffers of a thread still
 * running at exit stay reachable (no false leak reports), and is freed by a
 * thread-specific destructor when its thread ends. */
#include "core.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct scratch {
    struct scratch *prev, *next;
    float *buf[KD_SCRATCH_SLOTS];
    size_t cap[KD_SCRATCH_SLOTS];
} scratch;

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static bool key_ok;
static pthread_mutex_t list_mu = PTHREAD_MUTEX_INITIALIZER;
static scratch *all;

static void release(void *p)
{
    scratch *s = p;
    pthread_mutex_lock(&list_mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        all = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&list_mu);
    for (int i = 0; i < KD_SCRATCH_SLOTS; i++)
        kd_free_aligned(s->buf[i]);
    free(s);
}

static void make_key(void) { key_ok = pthread_key_create(&key, release) == 0; }

static scratch *this_thread(void)
{
    pthread_once(&key_once, make_key);
    if (!key_ok)
        return NULL;
    scratch *s = pthread_getspecific(key);
    if (s)
        return s;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (pthread_setspecific(key, s) != 0) {
        free(s);
        return NULL;
    }
    pthread_mutex_lock(&list_mu);
    s->next = all;
    if (all)
        all->prev = s;
    all = s;
    pthread_mutex_unlock(&list_mu);
    return s;
}

float *kd_scratch(int slot, size_t floats)
{
    scratch *s = this_thread();
    if (!s || slot < 0 || slot >= KD_SCRATCH_SLOTS)
        return NULL;
    if (s->cap[slot] >= floats && s->buf[slot])
        return s->buf[slot];
    kd_free_aligned(s->buf[slot]);
    s->cap[slot] = 0;
    s->buf[slot] = kd_alloc_aligned(sizeof(float) * (floats ? floats : 1));
    if (s->buf[slot])
        s->cap[slot] = floats;
    return s->buf[slot];
}
