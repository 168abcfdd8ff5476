/* PNG (libpng's simplified API) and JPEG (libjpeg with its error exit
 * replaced by a longjmp, so a corrupt file is a status, never exit()) into
 * 8-bit grey or RGB, and nearest-neighbour resizing. */
#include "data.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#define KD_MAX_IMAGE_PIXELS ((size_t)1 << 28)

/* ITU-R 601-2 luma, as PIL's convert("L"). */
static inline uint8_t luma(int r, int g, int b)
{
    return (uint8_t)((r * 299 + g * 587 + b * 114 + 500) / 1000);
}

/* RGBA or RGB (in_c) to the wanted channels, in place-safe order. */
static void from_rgb(const uint8_t *src, int in_c, size_t pixels, kdens_color color,
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

/* libpng's classic API: its simplified API treats 16-bit data as linear
 * light and gamma-encodes it, where image libraries (and PIL, which the
 * reference uses) scale 16 bits to 8.  Errors longjmp to here; warnings are
 * dropped (libpng would print them). */
struct png_fail {
    jmp_buf jump;
    char message[256];
};

struct png_src {
    const uint8_t *data;
    size_t len, pos;
};

static void png_error_exit(png_structp png, png_const_charp msg)
{
    struct png_fail *f = png_get_error_ptr(png);
    snprintf(f->message, sizeof f->message, "%s", msg);
    longjmp(f->jump, 1);
}

static void png_quiet(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void png_read_memory(png_structp png, png_bytep out, size_t n)
{
    struct png_src *src = png_get_io_ptr(png);
    if (src->len - src->pos < n)
        png_error(png, "the file is truncated");
    memcpy(out, src->data + src->pos, n);
    src->pos += n;
}

static kdens_status decode_png(const char *name, const uint8_t *data, size_t len,
                               kdens_color color, uint8_t **pixels, int *h, int *w)
{
    struct png_fail fail;
    struct png_src src = {data, len, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &fail, png_error_exit,
                                             png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    uint8_t *volatile rgba = NULL;
    png_bytep *volatile rows = NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        return kd_fail(KDENS_E_NOMEM, "%s: out of memory", name);
    }
    if (setjmp(fail.jump)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(rgba);
        free(rows);
        return kd_fail(KDENS_E_FORMAT, "%s: bad PNG: %s", name, fail.message);
    }
    png_set_read_fn(png, &src, png_read_memory);
    png_read_info(png, info);
    png_uint_32 width, height;
    int depth, type;
    png_get_IHDR(png, info, &width, &height, &depth, &type, NULL, NULL, NULL);
    if ((size_t)width * height > KD_MAX_IMAGE_PIXELS)
        png_error(png, "the image is too large");
    if (depth == 16)
        png_set_scale_16(png);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);
    if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_filler(png, 0xFF, PNG_FILLER_AFTER); /* RGBA always */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)width * 4)
        png_error(png, "unexpected row layout");
    size_t n = (size_t)width * height;
    rgba = malloc(n * 4);
    rows = malloc(sizeof(png_bytep) * height);
    if (!rgba || !rows)
        png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++)
        rows[y] = rgba + (size_t)y * width * 4;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    /* alpha is dropped, not composited, as PIL's convert("RGB") */
    from_rgb(rgba, 4, n, color, rgba);
    *pixels = rgba;
    *h = (int)height;
    *w = (int)width;
    return KDENS_OK;
}

struct jpeg_fail {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void jpeg_error_exit(j_common_ptr cinfo)
{
    struct jpeg_fail *f = (struct jpeg_fail *)cinfo->err;
    f->mgr.format_message(cinfo, f->message);
    longjmp(f->jump, 1);
}

static void jpeg_quiet(j_common_ptr cinfo) { (void)cinfo; } /* never print */

/* libjpeg reports corrupt or truncated data as a warning and goes on filling
 * the image with grey; a damaged training image is an error here, and
 * stopping early also keeps a corrupt header that claims a huge image from
 * costing a huge decode. */
static void jpeg_warning_is_error(j_common_ptr cinfo, int level)
{
    if (level < 0)
        jpeg_error_exit(cinfo);
}

static kdens_status decode_jpeg(const char *name, const uint8_t *data, size_t len,
                                kdens_color color, uint8_t **pixels, int *h, int *w)
{
    struct jpeg_decompress_struct cinfo;
    struct jpeg_fail fail;
    uint8_t *volatile buf = NULL;
    cinfo.err = jpeg_std_error(&fail.mgr);
    fail.mgr.error_exit = jpeg_error_exit;
    fail.mgr.output_message = jpeg_quiet;
    fail.mgr.emit_message = jpeg_warning_is_error;
    if (setjmp(fail.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(buf);
        return kd_fail(KDENS_E_FORMAT, "%s: bad JPEG: %s", name, fail.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    if (cmyk)
        cinfo.out_color_space = JCS_CMYK;
    else
        cinfo.out_color_space = color == KDENS_COLOR_GRAY ? JCS_GRAYSCALE : JCS_RGB;
    if ((size_t)cinfo.image_width * cinfo.image_height > KD_MAX_IMAGE_PIXELS) {
        jpeg_destroy_decompress(&cinfo);
        return kd_fail(KDENS_E_FORMAT, "%s: JPEG of %ux%u is too large", name,
                       cinfo.image_width, cinfo.image_height);
    }
    jpeg_start_decompress(&cinfo);
    size_t row = (size_t)cinfo.output_width * cinfo.output_components;
    buf = malloc(row * cinfo.output_height + 1);
    if (!buf) {
        jpeg_destroy_decompress(&cinfo);
        return kd_fail(KDENS_E_NOMEM, "%s: out of memory", name);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW line = buf + row * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &line, 1);
    }
    jpeg_finish_decompress(&cinfo);
    size_t n = (size_t)cinfo.output_width * cinfo.output_height;
    if (cmyk) {
        /* Adobe writes CMYK inverted (as most CMYK JPEGs are): R = C K / 255 */
        bool inverted = cinfo.saw_Adobe_marker;
        for (size_t i = 0; i < n; i++) {
            uint8_t *p = buf + i * 4;
            int c = inverted ? p[0] : 255 - p[0], m = inverted ? p[1] : 255 - p[1],
                y = inverted ? p[2] : 255 - p[2], k = inverted ? p[3] : 255 - p[3];
            p[0] = (uint8_t)(c * k / 255);
            p[1] = (uint8_t)(m * k / 255);
            p[2] = (uint8_t)(y * k / 255);
        }
        from_rgb(buf, 4, n, color, buf);
    }
    *h = (int)cinfo.output_height;
    *w = (int)cinfo.output_width;
    jpeg_destroy_decompress(&cinfo);
    *pixels = buf;
    return KDENS_OK;
}

kdens_status kd_image_decode_memory(const char *name, const uint8_t *data, size_t len,
                                    kdens_color color, uint8_t **pixels, int *h, int *w)
{
    if (len >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0)
        return decode_png(name, data, len, color, pixels, h, w);
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return decode_jpeg(name, data, len, color, pixels, h, w);
    return kd_fail(KDENS_E_FORMAT, "%s: not a PNG or JPEG file", name);
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
