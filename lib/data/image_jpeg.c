/* JPEG through libjpeg, its error exit replaced by a longjmp so that a
 * corrupt file is a status, never exit() (the full library only: the
 * inference-only library links lib/infer/image_codecs.c in its place). */
#include "data.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

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

kdens_status kd_image_decode_jpeg(const char *name, const uint8_t *data, size_t len,
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
        kd_image_from_rgb(buf, 4, n, color, buf);
    }
    *h = (int)cinfo.output_height;
    *w = (int)cinfo.output_width;
    jpeg_destroy_decompress(&cinfo);
    *pixels = buf;
    return KDENS_OK;
}
