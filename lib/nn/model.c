/* The public model handle: creation, queries, summary, metadata, inference. */
#include "nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kdens_model_free(kdens_model *m)
{
    if (!m)
        return;
    kd_model_release_buffers(m);
    for (int i = 0; i < m->n_nodes; i++) {
        free(m->nodes[i].name);
        free(m->nodes[i].in);
    }
    free(m->nodes);
    for (int i = 0; i < m->n_params; i++)
        free(m->params[i].name);
    free(m->params);
    kd_free_aligned(m->weights);
    kd_free_aligned(m->grads);
    if (m->class_names)
        for (int i = 0; i < m->classes; i++)
            free(m->class_names[i]);
    free(m->class_names);
    for (int i = 0; i < m->n_meta; i++) {
        free(m->meta_keys[i]);
        free(m->meta_values[i]);
    }
    free(m->meta_keys);
    free(m->meta_values);
    free(m->in_scale);
    free(m->in_offset);
    if (m->loss_free)
        m->loss_free(m->loss);
    kd_qmodel_free(m->q);
    free(m);
}

typedef kdens_status (*build_fn)(kdens_model *m, const char *what);

static kdens_status create(build_fn build, const char *what, int h, int w, int c, int classes,
                           uint64_t seed, kdens_model **out)
{
    if (!what || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kdens_model *m;
    kdens_status st = kd_model_new(h, w, c, classes, &m);
    if (st != KDENS_OK)
        return st;
    st = build(m, what);
    if (st == KDENS_OK)
        st = kd_model_finalize(m, seed);
    if (st != KDENS_OK) {
        kdens_model_free(m);
        return st;
    }
    *out = m;
    return KDENS_OK;
}

kdens_status kdens_model_create(const char *arch, int height, int width, int channels,
                                int classes, uint64_t seed, kdens_model **out)
{
    kdens_status st = create(kd_arch_build, arch, height, width, channels, classes, seed, out);
    if (st == KDENS_OK)
        kdens_model_set_meta(*out, "architecture", arch);
    return st;
}

kdens_status kdens_model_from_spec(const char *spec, int height, int width, int channels,
                                   int classes, uint64_t seed, kdens_model **out)
{
    return create(kd_spec_build, spec, height, width, channels, classes, seed, out);
}

kdens_status kdens_model_from_spec_file(const char *path, int height, int width, int channels,
                                        int classes, uint64_t seed, kdens_model **out)
{
    if (!path || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    char *text;
    kdens_status st = kd_read_text(path, KDENS_E_SPEC, "a spec", &text);
    if (st != KDENS_OK)
        return st;
    st = kdens_model_from_spec(text, height, width, channels, classes, seed, out);
    if (st != KDENS_OK && st != KDENS_E_NOMEM)
        kd_fail_context(st, "%s", path);
    free(text);
    return st;
}

size_t kdens_model_param_count(const kdens_model *m) { return m ? m->n_weights : 0; }
size_t kdens_model_trainable_count(const kdens_model *m) { return m ? m->n_trainable : 0; }
int kdens_model_num_classes(const kdens_model *m) { return m ? m->classes : 0; }
int kdens_model_num_layers(const kdens_model *m) { return m ? m->n_nodes : 0; }

kdens_status kdens_model_input_shape(const kdens_model *m, int *height, int *width,
                                     int *channels)
{
    if (!m)
        return kd_fail(KDENS_E_ARG, "NULL model");
    if (height)
        *height = m->in_h;
    if (width)
        *width = m->in_w;
    if (channels)
        *channels = m->in_c;
    return KDENS_OK;
}

/* 1234567 -> "1,234,567" */
static void with_commas(size_t v, char *out)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%zu", v), o = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

size_t kdens_model_summary(const kdens_model *m, char *buf, size_t size)
{
    if (!m) {
        if (buf && size)
            buf[0] = '\0';
        return 0;
    }
    kd_buf b = {0};
    char line[] = "________________________________________________________________"
                  "______________________________";
    kd_buf_printf(&b, "%-32s %-18s %12s  %s\n%s\n", "Layer (type)", "Output Shape", "Param #",
                  "Connected to", line);
    for (int i = 0; i < m->n_nodes; i++) {
        const kd_node *n = &m->nodes[i];
        char label[200], shape[64], params[32];
        const char *type = n->type == KD_L_ACT ? kd_act_name(n->a.act) : kd_layer_keyword(n->type);
        snprintf(label, sizeof label, "%s (%s)", n->name, type);
        snprintf(shape, sizeof shape, "(%d, %d, %d)", n->h, n->w, n->c);
        size_t count = 0;
        for (int k = 0; k < n->n_params; k++)
            count += m->params[n->param[k]].count;
        with_commas(count, params);
        kd_buf_printf(&b, "%-32s %-18s %12s  ", label, shape, params);
        for (int k = 0; k < n->n_in; k++)
            kd_buf_printf(&b, "%s%s", k ? ", " : "", m->nodes[n->in[k]].name);
        kd_buf_printf(&b, "\n");
    }
    char total[32], trainable[32], fixed[32];
    with_commas(m->n_weights, total);
    with_commas(m->n_trainable, trainable);
    with_commas(m->n_weights - m->n_trainable, fixed);
    kd_buf_printf(&b, "%s\nTotal params: %s\nTrainable params: %s\nNon-trainable params: %s\n",
                  line, total, trainable, fixed);
    size_t len = b.failed ? 0 : kd_buf_export(&b, buf, size);
    kd_buf_free(&b);
    return len;
}

size_t kdens_model_spec(const kdens_model *m, char *buf, size_t size)
{
    if (!m) {
        if (buf && size)
            buf[0] = '\0';
        return 0;
    }
    kd_buf b = {0};
    kd_spec_write(m, &b);
    size_t len = b.failed ? 0 : kd_buf_export(&b, buf, size);
    kd_buf_free(&b);
    return len;
}

/* ---- metadata ----------------------------------------------------------------- */

kdens_status kdens_model_set_input_scaling(kdens_model *m, const float *scale,
                                           const float *offset)
{
    if (!m || !scale || !offset)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    for (int i = 0; i < m->in_c; i++)
        if (!(scale[i] == scale[i]) || !(offset[i] == offset[i]))
            return kd_fail(KDENS_E_ARG, "input scaling of channel %d is NaN", i);
    for (int i = 0; i < m->in_c; i++) {
        m->in_scale[i] = scale[i];
        m->in_offset[i] = offset[i];
    }
    return KDENS_OK;
}

kdens_status kdens_model_get_input_scaling(const kdens_model *m, float *scale, float *offset)
{
    if (!m || !scale || !offset)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    for (int i = 0; i < m->in_c; i++) {
        scale[i] = m->in_scale[i];
        offset[i] = m->in_offset[i];
    }
    return KDENS_OK;
}

static bool one_line(const char *s) { return !strchr(s, '\n') && !strchr(s, '\r'); }

kdens_status kdens_model_set_class_names(kdens_model *m, const char *const *names, int n)
{
    if (!m || !names)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (n < 1 || n != m->classes)
        return kd_fail(KDENS_E_ARG, "%d class names given for %d classes", n, m->classes);
    for (int i = 0; i < n; i++)
        if (!names[i] || !one_line(names[i]))
            return kd_fail(KDENS_E_ARG, "class name %d is NULL or holds a newline", i);
    char **copy = calloc((size_t)n, sizeof *copy);
    if (!copy)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        if (!(copy[i] = kd_strdup(names[i]))) {
            for (int k = 0; k < i; k++)
                free(copy[k]);
            free(copy);
            return kd_fail(KDENS_E_NOMEM, "out of memory");
        }
    if (m->class_names)
        for (int i = 0; i < m->classes; i++)
            free(m->class_names[i]);
    free(m->class_names);
    m->class_names = copy;
    return KDENS_OK;
}

const char *kdens_model_class_name(const kdens_model *m, int i)
{
    if (!m || !m->class_names || i < 0 || i >= m->classes)
        return NULL;
    return m->class_names[i];
}

kdens_status kdens_model_set_meta(kdens_model *m, const char *key, const char *value)
{
    if (!m || !key)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (!*key || strchr(key, '=') || !one_line(key) || (value && !one_line(value)))
        return kd_fail(KDENS_E_ARG, "metadata key '%s' or its value is not a single line", key);
    int at = -1;
    for (int i = 0; i < m->n_meta; i++)
        if (strcmp(m->meta_keys[i], key) == 0)
            at = i;
    if (!value) {
        if (at >= 0) {
            free(m->meta_keys[at]);
            free(m->meta_values[at]);
            m->n_meta--;
            m->meta_keys[at] = m->meta_keys[m->n_meta];
            m->meta_values[at] = m->meta_values[m->n_meta];
        }
        return KDENS_OK;
    }
    char *v = kd_strdup(value);
    if (!v)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    if (at >= 0) {
        free(m->meta_values[at]);
        m->meta_values[at] = v;
        return KDENS_OK;
    }
    char *k = kd_strdup(key);
    char **nk = realloc(m->meta_keys, sizeof(char *) * (size_t)(m->n_meta + 1));
    if (nk)
        m->meta_keys = nk;
    char **nv = realloc(m->meta_values, sizeof(char *) * (size_t)(m->n_meta + 1));
    if (nv)
        m->meta_values = nv;
    if (!k || !nk || !nv) {
        free(k);
        free(v);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    m->meta_keys[m->n_meta] = k;
    m->meta_values[m->n_meta] = v;
    m->n_meta++;
    return KDENS_OK;
}

const char *kdens_model_get_meta(const kdens_model *m, const char *key)
{
    if (!m || !key)
        return NULL;
    for (int i = 0; i < m->n_meta; i++)
        if (strcmp(m->meta_keys[i], key) == 0)
            return m->meta_values[i];
    return NULL;
}

/* ---- inference ------------------------------------------------------------------- */

/* Samples per inference chunk: enough for GEMM efficiency, bounded so that
 * the activations of a large network stay within about 512 MiB. */
static size_t predict_chunk(const kdens_model *m)
{
    size_t per = 0;
    for (int i = 1; i < m->n_nodes; i++)
        per += kd_node_size(&m->nodes[i]);
    size_t chunk = ((size_t)128 << 20) / (per ? per : 1);
    if (m->cap_n > chunk)
        chunk = m->cap_n; /* buffers this large exist already */
    return KD_MAX((size_t)1, KD_MIN(chunk, (size_t)256));
}

typedef void (*input_fn)(const kdens_model *m, const void *src, size_t first, size_t n,
                         float *dst);

static kdens_status run_inference(kdens_model *m, const void *x, size_t n, float *out,
                                  bool probs, input_fn convert, int node)
{
    if (!m || !x || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    if (n == 0)
        return KDENS_OK;
    size_t chunk = KD_MIN(predict_chunk(m), n);
    kdens_status st = kd_model_plan(m, chunk, false);
    if (st != KDENS_OK)
        return st;
    size_t in_size = kd_node_size(&m->nodes[0]);
    if (convert && m->staging_floats < chunk * in_size) { /* kept for the next call */
        kd_free_aligned(m->staging);
        m->staging_floats = 0;
        if (!(m->staging = kd_alloc_aligned(sizeof(float) * chunk * in_size)))
            return kd_fail(KDENS_E_NOMEM, "out of memory");
        m->staging_floats = chunk * in_size;
    }
    float *staging = m->staging;
    bool was_training = m->training;
    m->training = false;
    const kd_node *logits = &m->nodes[node < 0 ? m->logits_node : node];
    size_t per_out = kd_node_size(logits);
    for (size_t first = 0; first < n; first += chunk) {
        size_t nc = KD_MIN(chunk, n - first);
        const float *batch;
        if (convert) {
            convert(m, x, first, nc, staging);
            batch = staging;
        } else {
            batch = (const float *)x + first * in_size;
        }
        kd_model_forward(m, batch, nc);
        float *dst = out + first * per_out;
        if (probs)
            kd_softmax_rows(nc, m->classes, logits->out, 1.0, dst);
        else
            memcpy(dst, logits->out, sizeof(float) * nc * per_out);
    }
    m->training = was_training;
    m->have_forward = m->have_grads = false;
    return KDENS_OK;
}

void kd_model_scale_u8(const kdens_model *m, const uint8_t *images, size_t n, float *dst)
{
    size_t pix = (size_t)m->in_h * m->in_w;
    int c = m->in_c;
    for (size_t i = 0; i < n * pix; i++)
        for (int ch = 0; ch < c; ch++)
            dst[i * c + ch] = images[i * c + ch] * m->in_scale[ch] + m->in_offset[ch];
}

static void u8_to_float(const kdens_model *m, const void *src, size_t first, size_t n,
                        float *dst)
{
    size_t per = (size_t)m->in_h * m->in_w * m->in_c;
    kd_model_scale_u8(m, (const uint8_t *)src + first * per, n, dst);
}

kdens_status kdens_model_predict(kdens_model *m, const float *x, size_t n, float *probs)
{
    return run_inference(m, x, n, probs, true, NULL, -1);
}

kdens_status kdens_model_predict_logits(kdens_model *m, const float *x, size_t n,
                                        float *logits)
{
    return run_inference(m, x, n, logits, false, NULL, -1);
}

kdens_status kdens_model_predict_u8(kdens_model *m, const uint8_t *images, size_t n,
                                    float *probs)
{
    return run_inference(m, images, n, probs, true, u8_to_float, -1);
}

kdens_status kd_model_infer_node(kdens_model *m, const float *x, size_t n, int node, float *out)
{
    if (node < 1 || node >= m->n_nodes)
        return kd_fail(KDENS_E_ARG, "node %d is not a layer of the model", node);
    if (!kd_qmodel_float_out(m, node))
        return kd_fail(KDENS_E_STATE, "layer '%s' is folded into an int8 layer of the "
                                      "quantised model", m->nodes[node].name);
    m->unfused = true; /* the node asked for may be a fused batch norm */
    kdens_status st = run_inference(m, x, n, out, false, NULL, node);
    m->unfused = false;
    return st;
}

kdens_status kd_model_copy_params(kdens_model *dst, const kdens_model *src, int *copied)
{
    int n = 0;
    for (int i = 0; i < dst->n_params; i++) {
        const kd_param *d = &dst->params[i];
        for (int j = 0; j < src->n_params; j++) {
            const kd_param *s = &src->params[j];
            if (strcmp(d->name, s->name) == 0 && d->count == s->count) {
                memcpy(dst->weights + d->offset, src->weights + s->offset,
                       sizeof(float) * d->count);
                n++;
                break;
            }
        }
    }
    if (copied)
        *copied = n;
    return KDENS_OK;
}

kdens_status kd_model_copy_meta(kdens_model *dst, const kdens_model *src)
{
    kdens_status st = kdens_model_set_input_scaling(dst, src->in_scale, src->in_offset);
    if (st == KDENS_OK && src->class_names && dst->classes == src->classes)
        st = kdens_model_set_class_names(dst, (const char *const *)src->class_names,
                                         src->classes);
    for (int i = 0; i < src->n_meta && st == KDENS_OK; i++)
        st = kdens_model_set_meta(dst, src->meta_keys[i], src->meta_values[i]);
    return st;
}

kd_param *kd_model_param(const kdens_model *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return &m->params[i];
    return NULL;
}
