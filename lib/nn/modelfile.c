/* The .kdm model file (docs/formats.md):
 *   "KDENSMDL" | u32 version | u32 section count | sections
 *   section = 4-byte tag | u64 payload length | payload | u32 CRC32
 * with the CRC over tag, length and payload.  All integers little-endian.
 * Sections: META (key=value lines), ARCH (canonical spec), TENS (tensors),
 * and in format 2 QNT8 (an int8 model's quantised layers, quant.c). */
#include "nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KDM_MAGIC "KDENSMDL"
/* Float models are written as format 1, which every release reads; int8
 * models as format 2, so that a reader that knows nothing of QNT8 refuses
 * them (KDENS_E_VERSION) instead of missing their weights. */
#define KDM_VERSION 2u
#define KDM_VERSION_FLOAT 1u

/* ---- writing ---------------------------------------------------------------- */

static void meta_section(const kdens_model *m, kd_buf *b)
{
    kd_buf_printf(b, "input=%dx%dx%d\nclasses=%d\n", m->in_h, m->in_w, m->in_c, m->classes);
    for (int c = 0; c < m->in_c; c++)
        kd_buf_printf(b, "scale.%d=%.9g\noffset.%d=%.9g\n", c, (double)m->in_scale[c], c,
                      (double)m->in_offset[c]);
    if (m->class_names)
        for (int i = 0; i < m->classes; i++)
            kd_buf_printf(b, "class.%d=%s\n", i, m->class_names[i]);
    for (int i = 0; i < m->n_meta; i++)
        kd_buf_printf(b, "meta.%s=%s\n", m->meta_keys[i], m->meta_values[i]);
}

/* An int8 model's folded layers keep their numbers in QNT8, not here. */
static void tensor_section(const kdens_model *m, kd_buf *b)
{
    uint32_t stored = 0;
    for (int i = 0; i < m->n_params; i++)
        stored += kd_qmodel_param_stored(m, i);
    kd_buf_u32(b, stored);
    for (int i = 0; i < m->n_params; i++) {
        const kd_param *p = &m->params[i];
        if (!kd_qmodel_param_stored(m, i))
            continue;
        uint32_t len = (uint32_t)strlen(p->name);
        kd_buf_u32(b, len);
        kd_buf_put(b, p->name, len);
        kd_buf_u32(b, (uint32_t)p->ndim);
        for (int d = 0; d < p->ndim; d++)
            kd_buf_u32(b, (uint32_t)p->shape[d]);
        const float *w = m->weights + p->offset;
        for (size_t k = 0; k < p->count; k++) {
            uint32_t bits;
            memcpy(&bits, &w[k], 4);
            kd_buf_u32(b, bits);
        }
    }
}

void kd_model_serialize(const kdens_model *m, kd_buf *file)
{
    kd_buf meta = {0}, arch = {0}, tens = {0}, qnt = {0};
    meta_section(m, &meta);
    kd_spec_write(m, &arch);
    tensor_section(m, &tens);
    if (m->q)
        kd_qmodel_write(m, &qnt);
    kd_buf_put(file, KDM_MAGIC, 8);
    kd_buf_u32(file, m->q ? KDM_VERSION : KDM_VERSION_FLOAT);
    kd_buf_u32(file, m->q ? 4 : 3);
    kd_section_put(file, "META", meta.data, meta.len);
    kd_section_put(file, "ARCH", arch.data, arch.len);
    kd_section_put(file, "TENS", tens.data, tens.len);
    if (m->q)
        kd_section_put(file, "QNT8", qnt.data, qnt.len);
    if (meta.failed || arch.failed || tens.failed || qnt.failed)
        file->failed = true;
    kd_buf_free(&meta);
    kd_buf_free(&arch);
    kd_buf_free(&tens);
    kd_buf_free(&qnt);
}

kdens_status kdens_model_save(const kdens_model *m, const char *path)
{
    if (!m || !path)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kd_buf file = {0};
    kd_model_serialize(m, &file);
    kdens_status st;
    if (file.failed)
        st = kd_fail(KDENS_E_NOMEM, "%s: out of memory serialising the model", path);
    else
        st = kd_write_file_atomic(path, file.data, file.len);
    kd_buf_free(&file);
    return st;
}

/* ---- reading ---------------------------------------------------------------------- */

typedef struct reader {
    const unsigned char *p;
    size_t len, pos;
} reader;

static bool rd_u32(reader *r, uint32_t *v)
{
    if (r->len - r->pos < 4)
        return false;
    const unsigned char *p = r->p + r->pos;
    *v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    r->pos += 4;
    return true;
}

static uint32_t le32_at(const char *d)
{
    const unsigned char *p = (const unsigned char *)d;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

typedef struct meta_info {
    int h, w, c, classes;
} meta_info;

static kdens_status parse_meta_shape(const char *path, const kd_section *s, meta_info *mi)
{
    mi->h = mi->w = mi->c = mi->classes = 0;
    char *text = malloc(s->len + 1);
    if (!text)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    memcpy(text, s->data, s->len);
    text[s->len] = '\0';
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "input=", 6) == 0 &&
            sscanf(line + 6, "%dx%dx%d", &mi->h, &mi->w, &mi->c) != 3)
            mi->h = 0;
        if (strncmp(line, "classes=", 8) == 0 && sscanf(line + 8, "%d", &mi->classes) != 1)
            mi->classes = 0;
    }
    free(text);
    if (mi->h < 1 || mi->w < 1 || mi->c < 1 || mi->classes < 1)
        return kd_fail(KDENS_E_FORMAT, "%s: META lacks a valid input shape or class count",
                       path);
    return KDENS_OK;
}

/* Metadata beyond the shape: scaling, class names, free-form keys. */
static kdens_status apply_meta(const char *path, kdens_model *m, const kd_section *s)
{
    char *text = malloc(s->len + 1);
    if (!text)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    memcpy(text, s->data, s->len);
    text[s->len] = '\0';
    char **names = calloc((size_t)m->classes, sizeof *names);
    kdens_status st = names ? KDENS_OK : kd_fail(KDENS_E_NOMEM, "out of memory");
    int n_names = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && st == KDENS_OK;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq) {
            st = kd_fail(KDENS_E_FORMAT, "%s: META line '%.40s' has no '='", path, line);
            break;
        }
        *eq = '\0';
        const char *key = line, *val = eq + 1;
        int idx;
        char extra;
        if (sscanf(key, "scale.%d%c", &idx, &extra) == 1 && idx >= 0 && idx < m->in_c)
            m->in_scale[idx] = strtof(val, NULL);
        else if (sscanf(key, "offset.%d%c", &idx, &extra) == 1 && idx >= 0 && idx < m->in_c)
            m->in_offset[idx] = strtof(val, NULL);
        else if (sscanf(key, "class.%d%c", &idx, &extra) == 1) {
            if (idx < 0 || idx >= m->classes || names[idx]) {
                st = kd_fail(KDENS_E_FORMAT, "%s: META has a bad class index %d", path, idx);
                break;
            }
            if (!(names[idx] = kd_strdup(val)))
                st = kd_fail(KDENS_E_NOMEM, "out of memory");
            n_names++;
        } else if (strncmp(key, "meta.", 5) == 0)
            st = kdens_model_set_meta(m, key + 5, val);
    }
    if (st == KDENS_OK && n_names > 0) {
        if (n_names != m->classes)
            st = kd_fail(KDENS_E_FORMAT, "%s: META names %d of %d classes", path, n_names,
                         m->classes);
        else
            st = kdens_model_set_class_names(m, (const char *const *)names, m->classes);
    }
    if (names)
        for (int i = 0; i < m->classes; i++)
            free(names[i]);
    free(names);
    free(text);
    return st;
}

static kdens_status read_tensors(const char *path, kdens_model *m, const kd_section *s)
{
    reader r = {(const unsigned char *)s->data, s->len, 0};
    uint32_t count, stored = 0;
    if (!rd_u32(&r, &count))
        return kd_fail(KDENS_E_FORMAT, "%s: TENS is empty", path);
    for (int i = 0; i < m->n_params; i++)
        stored += kd_qmodel_param_stored(m, i);
    if (count != stored)
        return kd_fail(KDENS_E_FORMAT, "%s: TENS holds %u tensors, the architecture has %u",
                       path, count, stored);
    for (uint32_t t = 0, i = 0; t < count; t++, i++) {
        while (!kd_qmodel_param_stored(m, (int)i))
            i++;
        uint32_t len, ndim;
        if (!rd_u32(&r, &len) || len > r.len - r.pos || len > 1024)
            return kd_fail(KDENS_E_FORMAT, "%s: TENS tensor %u has a bad name", path, i);
        char name[1025];
        memcpy(name, r.p + r.pos, len);
        name[len] = '\0';
        r.pos += len;
        const kd_param *p = &m->params[i];
        if (strcmp(name, p->name) != 0)
            return kd_fail(KDENS_E_FORMAT, "%s: tensor %u is '%s', expected '%s'", path, i,
                           name, p->name);
        if (!rd_u32(&r, &ndim) || ndim != (uint32_t)p->ndim)
            return kd_fail(KDENS_E_FORMAT, "%s: tensor '%s' has a wrong rank", path, name);
        for (uint32_t d = 0; d < ndim; d++) {
            uint32_t dim;
            if (!rd_u32(&r, &dim) || dim != (uint32_t)p->shape[d])
                return kd_fail(KDENS_E_FORMAT, "%s: tensor '%s' has a wrong shape", path, name);
        }
        if ((r.len - r.pos) / 4 < p->count)
            return kd_fail(KDENS_E_FORMAT, "%s: tensor '%s' is truncated", path, name);
        memcpy(m->weights + p->offset, r.p + r.pos, 4 * p->count); /* little-endian host */
        r.pos += 4 * p->count;
    }
    if (r.pos != r.len)
        return kd_fail(KDENS_E_FORMAT, "%s: TENS has trailing bytes", path);
    return KDENS_OK;
}

kdens_status kd_model_load_memory(const char *path, const char *data, size_t len,
                                  kdens_model **out)
{
    kd_section sections[16];
    int count;
    kdens_status st = kd_sections_parse(path, (const uint8_t *)data, len, KDM_MAGIC, KDM_VERSION,
                                        "model", sections, 16, &count);
    if (st != KDENS_OK)
        return st;
    /* unknown sections of the same major version are skipped */
    const kd_section *meta = kd_section_find(sections, count, "META"),
                     *arch = kd_section_find(sections, count, "ARCH"),
                     *tens = kd_section_find(sections, count, "TENS");
    if (!meta || !arch || !tens)
        return kd_fail(KDENS_E_FORMAT, "%s: a required section (META, ARCH, TENS) is missing",
                       path);
    meta_info mi;
    st = parse_meta_shape(path, meta, &mi);
    if (st != KDENS_OK)
        return st;
    char *spec = malloc(arch->len + 1);
    if (!spec)
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    memcpy(spec, arch->data, arch->len);
    spec[arch->len] = '\0';
    kdens_model *m = NULL;
    if (strlen(spec) != arch->len)
        st = kd_fail(KDENS_E_FORMAT, "%s: ARCH holds a NUL byte", path);
    else
        st = kdens_model_from_spec(spec, mi.h, mi.w, mi.c, mi.classes, 0, &m);
    free(spec);
    if (st != KDENS_OK && st != KDENS_E_NOMEM)
        return kd_fail_context(KDENS_E_FORMAT, "%s: ARCH does not build", path);
    if (st != KDENS_OK)
        return st;
    const kd_section *qnt = kd_section_find(sections, count, "QNT8");
    if (qnt && le32_at(data + 8) < 2)
        st = kd_fail(KDENS_E_FORMAT, "%s: a format-1 file holds a QNT8 section", path);
    else if (qnt)
        st = kd_qmodel_read(path, m, qnt->data, qnt->len);
    if (st == KDENS_OK)
        st = read_tensors(path, m, tens);
    if (st == KDENS_OK)
        st = apply_meta(path, m, meta);
    if (st != KDENS_OK) {
        kdens_model_free(m);
        return st;
    }
    *out = m;
    return KDENS_OK;
}

kdens_status kdens_model_load(const char *path, kdens_model **out)
{
    if (!path || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    kdens_model_reader other_format = kd_model_reader_for(path);
    if (other_format) /* another format (kdens_model_set_reader) */
        return other_format(path, out);
    char *data;
    size_t len;
    kdens_status st = kd_read_file(path, &data, &len);
    if (st != KDENS_OK)
        return st;
    st = kd_model_load_memory(path, data, len, out);
    free(data);
    size_t n = strlen(path);
    if (st == KDENS_E_FORMAT && n > 5 && strcasecmp(path + n - 5, ".onnx") == 0)
        return kd_fail_context(st, "%s is read as .kdm: ONNX files need libkdens_onnx "
                               "(make ONNX=1) and kdens_onnx_enable()", path);
    return st;
}

kdens_status kdens_model_load_memory(const void *data, size_t size, kdens_model **out)
{
    if (!data || !out)
        return kd_fail(KDENS_E_ARG, "NULL argument");
    return kd_model_load_memory("(memory)", data, size, out);
}
