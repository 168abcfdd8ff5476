/* The inference-only library (make lib-infer) in place of lib/data's
 * image_png.c and image_jpeg.c: it links no libpng or libjpeg, so a PNG or
 * JPEG image is a clear status (naming the library that reads it), while
 * the binary PGM and PPM files that lib/data/image.c reads itself work in
 * both libraries. */
#include "../data/data.h"

static kdens_status not_here(const char *name, const char *format)
{
    return kd_fail(KDENS_E_UNSUPPORTED,
                   "%s: a %s image; the inference-only library (libkdens_infer) reads PGM (P5) "
                   "and PPM (P6) images, %s needs the full library (libkdens)", name, format,
                   format);
}

kdens_status kd_image_decode_png(const char *name, const uint8_t *data, size_t len,
                                 kdens_color color, uint8_t **pixels, int *h, int *w)
{
    (void)data, (void)len, (void)color, (void)pixels, (void)h, (void)w;
    return not_here(name, "PNG");
}

kdens_status kd_image_decode_jpeg(const char *name, const uint8_t *data, size_t len,
                                  kdens_color color, uint8_t **pixels, int *h, int *w)
{
    (void)data, (void)len, (void)color, (void)pixels, (void)h, (void)w;
    return not_here(name, "JPEG");
}
