/* Image files into 8-bit grey or RGB: the format chosen by signature, the
 * binary netpbm formats (PGM P5, PPM P6) read here, PNG and JPEG by their
 * codecs (image_png.c, image_jpeg.c: libpng and libjpeg; in the
 * inference-only library lib/infer/image_codecs.c, which says they are not
 * there), and nearest-neighbour resizing.  This file is part of both
 * libraries, so a PGM or PPM file gives the same pixels in each. */
#include "data.h"

#include <stdlib.h>
#include <string.h>

/* ITU-R 601-2 luma, as PIL's convert("L"). */
static inline uint8_t luma(int r, int g, int b)
{
    return (uint8_t)((r * 299 + g * 587 + b * 114 + 500) / 1000);
}

void kd_image_from_rgb(const uint8_t *src, int in_c, size_t pixels, kdens_color color,
                       uint8_t *dst)
{
    for (size_t i = 0; i < pixels; i++) {
        const uint8_t *p = src + i * in_c;
        if (color == KDENS_COLOR_GRAY) {
            dst[i] = luma(p[0], p[1], p[2]);
        } else {
            dst[i * 3] = p[0];
            dst[i * 3 + 1] = p[1];
            dst[i * 3 + 2] = p[2];
        }
    }
}

/* ---- PGM and PPM (netpbm's binary formats) --------------------------------- */

static bool pnm_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* The next header number: whitespace and comments ('#' to the end of the
 * line) before it; at most 9 digits (values are checked by the caller). */
static bool pnm_number(const uint8_t *data, size_t len, size_t *pos, uint32_t *value)
{
    size_t p = *pos;
    for (;;) {
        if (p < len && pnm_space(data[p]))
            p++;
        else if (p < len && data[p] == '#')
            while (p < len && data[p] != '\n' && data[p] != '\r')
                p++;
        else
            break;
    }
    uint32_t v = 0;
    int digits = 0;
    for (; p < len && data[p] >= '0' && data[p] <= '9'; p++, digits++) {
        if (digits == 9)
            return false;
        v = v * 10 + (uint32_t)(data[p] - '0');
    }
    *pos = p;
    *value = v;
    return digits > 0;
}

static bool is_pnm(const uint8_t *data, size_t len)
{
    return len >= 3 && data[0] == 'P' && (data[1] == '5' || data[1] == '6') &&
           (pnm_space(data[2]) || data[2] == '#');
}

/* P5 (grey) or P6 (RGB), maxval 1..65535: samples above 255 are two bytes,
 * big-endian; every maxval other than 255 is scaled to 0..255, rounded (as
 * libpng's 16-to-8 scaling).  Bytes after the first image are ignored. */
static kdens_status decode_pnm(const char *name, const uint8_t *data, size_t len,
                               kdens_color color, uint8_t **pixels, int *h, int *w)
{
    int in_c = data[1] == '6' ? 3 : 1;
    const char *kind = in_c == 3 ? "PPM" : "PGM";
    size_t pos = 2;
    uint32_t width, height, maxval;
    if (!pnm_number(data, len, &pos, &width) || !pnm_number(data, len, &pos, &height) ||
        !pnm_number(data, len, &pos, &maxval) || pos >= len || !pnm_space(data[pos]))
        return kd_fail(KDENS_E_FORMAT, "%s: bad %s header", name, kind);
    pos++; /* the one whitespace byte before the samples */
    if (width == 0 || height == 0 || maxval == 0 || maxval > 65535)
        return kd_fail(KDENS_E_FORMAT, "%s: %s of %ux%u, maxval %u: out of range", name, kind,
                       width, height, maxval);
    size_t n = (size_t)width * height;
    if (n > KD_MAX_IMAGE_PIXELS)
        return kd_fail(KDENS_E_FORMAT, "%s: %s of %ux%u is too large", name, kind, width,
                       height);
    size_t bytes = maxval > 255 ? 2 : 1, samples = n * (size_t)in_c;
    if ((len - pos) / bytes < samples)
        return kd_fail(KDENS_E_FORMAT, "%s: %s is truncated", name, kind);
    uint8_t *out = malloc(n * 3); /* room for RGB whatever the file holds */
    if (!out)
        return kd_fail(KDENS_E_NOMEM, "%s: out of memory", name);
    const uint8_t *s = data + pos;
    for (size_t i = 0; i < samples; i++) {
        uint32_t v = bytes == 2 ? (uint32_t)s[2 * i] << 8 | s[2 * i + 1] : s[i];
        if (v > maxval) {
            free(out);
            return kd_fail(KDENS_E_FORMAT, "%s: %s sample %zu is %u, above maxval %u", name,
                           kind, i, v, maxval);
        }
        out[i] = (uint8_t)(maxval == 255 ? v : (v * 255 + maxval / 2) / maxval);
    }
    if (in_c == 3) {
        kd_image_from_rgb(out, 3, n, color, out);
    } else if (color == KDENS_COLOR_RGB) {
        for (size_t i = n; i-- > 0;) /* grey replicated, from the end: in place */
            out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = out[i];
    }
    *pixels = out;
    *h = (int)height;
    *w = (int)width;
    return KDENS_OK;
}

/* ---- by signature ------------------------------------------------------------ */

kdens_status kd_image_decode_memory(const char *name, const uint8_t *data, size_t len,
                                    kdens_color color, uint8_t **pixels, int *h, int *w)
{
    if (len >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0)
        return kd_image_decode_png(name, data, len, color, pixels, h, w);
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return kd_image_decode_jpeg(name, data, len, color, pixels, h, w);
    if (is_pnm(data, len))
        return decode_pnm(name, data, len, color, pixels, h, w);
    return kd_fail(KDENS_E_FORMAT, "%s: not a PNG, JPEG, PGM (P5) or PPM (P6) file", name);
}

kdens_status kd_image_decode_file(const char *path, kdens_color color, uint8_t **pixels, int *h,
                                  int *w)
{
    char *data;
    size_t len;
    kdens_status st = kd_read_file(path, &data, &len);
    if (st != KDENS_OK)
        return st;
    st = kd_image_decode_memory(path, (const uint8_t *)data, len, color, pixels, h, w);
    free(data);
    return st;
}

void kd_image_resize_nearest(const uint8_t *src, int sh, int sw, int c, uint8_t *dst, int dh,
                             int dw)
{
    for (int y = 0; y < dh; y++) {
        int sy = (int)(((double)y + 0.5) * sh / dh);
        sy = sy < sh ? sy : sh - 1;
        for (int x = 0; x < dw; x++) {
            int sx = (int)(((double)x + 0.5) * sw / dw);
            sx = sx < sw ? sx : sw - 1;
            memcpy(dst + ((size_t)y * dw + x) * c, src + ((size_t)sy * sw + sx) * c, (size_t)c);
        }
    }
}

kdens_status kdens_image_load(const char *path, int height, int width, kdens_color color,
                              uint8_t *pixels)
{
    if (!path || !pixels || height < 1 || width < 1 ||
        (color != KDENS_COLOR_GRAY && color != KDENS_COLOR_RGB))
        return kd_fail(KDENS_E_ARG, "NULL argument, or a bad size or colour");
    uint8_t *px;
    int ih, iw;
    kdens_status st = kd_image_decode_file(path, color, &px, &ih, &iw);
    if (st != KDENS_OK)
        return st;
    kd_image_resize_nearest(px, ih, iw, (int)color, pixels, height, width);
    free(px);
    return KDENS_OK;
}
