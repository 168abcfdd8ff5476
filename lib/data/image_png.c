/* PNG through libpng (the full library only: the inference-only library
 * links lib/infer/image_codecs.c in its place). */
#include "data.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

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

kdens_status kd_image_decode_png(const char *name, const uint8_t *data, size_t len,
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
    kd_image_from_rgb(rgba, 4, n, color, rgba);
    *pixels = rgba;
    *h = (int)height;
    *w = (int)width;
    return KDENS_OK;
}
