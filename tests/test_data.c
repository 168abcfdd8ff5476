/* Datasets: every source with fixtures this test writes itself (IDX plain
 * and gzip, CIFAR-10/100, PNG in every colour type and depth, JPEG grey,
 * RGB and CMYK, folders, manifests), presets, splits and subsets, and every
 * kind of bad input named in issue #3. */
#include "testutil.h"

#include "data/data.h"

#include <jpeglib.h>
#include <png.h>
#include <sys/stat.h>
#include <zlib.h>

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_tmpdir();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_rf(dir);
    return 0;
}

static char *path_of(const char *name)
{
    static char buf[8][4400];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void write_gz(const char *path, const void *data, size_t len)
{
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
    gzclose(f);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* n images of h x w with pixel (i, y, x) = i + y * w + x, labels i % 3. */
static void write_idx(const char *images, const char *labels, int n, int h, int w, bool gz)
{
    size_t ilen = 16 + (size_t)n * h * w, llen = 8 + (size_t)n;
    uint8_t *ib = malloc(ilen), *lb = malloc(llen);
    put_be32(ib, 0x803), put_be32(ib + 4, (uint32_t)n), put_be32(ib + 8, (uint32_t)h);
    put_be32(ib + 12, (uint32_t)w);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < h * w; p++)
            ib[16 + (size_t)i * h * w + p] = (uint8_t)(i + p);
    put_be32(lb, 0x801), put_be32(lb + 4, (uint32_t)n);
    for (int i = 0; i < n; i++)
        lb[8 + i] = (uint8_t)(i % 3);
    if (gz) {
        write_gz(images, ib, ilen);
        write_gz(labels, lb, llen);
    } else {
        write_file(images, ib, ilen);
        write_file(labels, lb, llen);
    }
    free(ib);
    free(lb);
}

static void test_idx(void **state)
{
    (void)state;
    for (int gz = 0; gz < 2; gz++) {
        write_idx(path_of("i.idx"), path_of("l.idx"), 7, 5, 4, gz);
        kdens_dataset *ds;
        ASSERT_OK(kdens_dataset_load_idx(path_of("i.idx"), path_of("l.idx"), &ds));
        assert_int_equal(kdens_dataset_count(ds), 7);
        int h, w, c;
        ASSERT_OK(kdens_dataset_shape(ds, &h, &w, &c));
        assert_true(h == 5 && w == 4 && c == 1);
        assert_int_equal(kdens_dataset_num_classes(ds), 3);
        const uint8_t *px;
        int32_t label;
        const char *file;
        ASSERT_OK(kdens_dataset_get(ds, 6, &px, &label, &file));
        assert_int_equal(label, 0);
        assert_int_equal(px[0], 6);
        assert_int_equal(px[5 * 4 - 1], 6 + 19);
        assert_string_equal(file, "6");
        ASSERT_STATUS(kdens_dataset_get(ds, 7, &px, &label, NULL), KDENS_E_ARG);
        kdens_dataset_free(ds);
    }
}

static void test_idx_bad(void **state)
{
    (void)state;
    kdens_dataset *ds = NULL;
    write_idx(path_of("i.idx"), path_of("l.idx"), 7, 5, 4, false);
    /* wrong magic: labels given as images */
    ASSERT_STATUS(kdens_dataset_load_idx(path_of("l.idx"), path_of("l.idx"), &ds),
                  KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "magic"));
    assert_non_null(strstr(kdens_errmsg(), "l.idx"));
    /* counts larger than the file */
    uint8_t hdr[16 + 20];
    put_be32(hdr, 0x803), put_be32(hdr + 4, 1000), put_be32(hdr + 8, 5), put_be32(hdr + 12, 4);
    memset(hdr + 16, 0, 20);
    write_file(path_of("short.idx"), hdr, sizeof hdr);
    ASSERT_STATUS(kdens_dataset_load_idx(path_of("short.idx"), path_of("l.idx"), &ds),
                  KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "holds"));
    /* image and label counts differ */
    write_idx(path_of("i2.idx"), path_of("l2.idx"), 6, 5, 4, false);
    ASSERT_STATUS(kdens_dataset_load_idx(path_of("i.idx"), path_of("l2.idx"), &ds),
                  KDENS_E_FORMAT);
    /* a truncated gzip stream */
    write_idx(path_of("i.gz"), path_of("l.gz"), 50, 28, 28, true);
    FILE *f = fopen(path_of("i.gz"), "rb");
    uint8_t buf[4096];
    size_t got = fread(buf, 1, sizeof buf, f);
    fclose(f);
    write_file(path_of("cut.gz"), buf, got / 2);
    kdens_status st = kdens_dataset_load_idx(path_of("cut.gz"), path_of("l.gz"), &ds);
    assert_true(st == KDENS_E_FORMAT);
    ASSERT_STATUS(kdens_dataset_load_idx(path_of("missing"), path_of("l.gz"), &ds), KDENS_E_IO);
    ASSERT_STATUS(kdens_dataset_load_idx(NULL, path_of("l.gz"), &ds), KDENS_E_ARG);
    assert_null(ds);
}

/* CIFAR records: label(s), then R, G, B planes; pixel value = plane * 50 + i % 50. */
static void write_cifar(const char *path, int n, bool hundred, int bad_label_at)
{
    size_t rec = (hundred ? 2 : 1) + 3072;
    uint8_t *b = calloc((size_t)n, rec);
    for (int r = 0; r < n; r++) {
        uint8_t *p = b + r * rec;
        if (hundred) {
            p[0] = (uint8_t)(r % 20);
            p[1] = (uint8_t)(r * 7 % 100);
        } else {
            p[0] = (uint8_t)(r % 10);
        }
        if (r == bad_label_at)
            p[hundred ? 1 : 0] = 200;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 1024; i++)
                p[rec - 3072 + c * 1024 + i] = (uint8_t)(c * 50 + i % 50);
    }
    write_file(path, b, (size_t)n * rec);
    free(b);
}

static void test_cifar(void **state)
{
    (void)state;
    write_cifar(path_of("c1.bin"), 3, false, -1);
    write_cifar(path_of("c2.bin"), 2, false, -1);
    write_file(path_of("batches.meta.txt"), "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n", 20);
    const char *paths[2] = {path_of("c1.bin"), path_of("c2.bin")};
    kdens_dataset *ds;
    ASSERT_OK(kdens_dataset_load_cifar(paths, 2, KDENS_CIFAR10, &ds));
    assert_int_equal(kdens_dataset_count(ds), 5);
    const uint8_t *px;
    int32_t label;
    ASSERT_OK(kdens_dataset_get(ds, 4, &px, &label, NULL));
    assert_int_equal(label, 1); /* second file, record 1 */
    assert_int_equal(px[0], 0);
    assert_int_equal(px[1], 50);
    assert_int_equal(px[2], 100);
    assert_int_equal(px[3 * 7 + 2], 107);
    assert_string_equal(kdens_dataset_class_name(ds, 9), "j");
    kdens_dataset_free(ds);

    write_cifar(path_of("c100.bin"), 4, true, -1);
    const char *p100[1] = {path_of("c100.bin")};
    ASSERT_OK(kdens_dataset_load_cifar(p100, 1, KDENS_CIFAR100_FINE, &ds));
    ASSERT_OK(kdens_dataset_get(ds, 3, NULL, &label, NULL));
    assert_int_equal(label, 21);
    assert_int_equal(kdens_dataset_num_classes(ds), 100);
    kdens_dataset_free(ds);
    ASSERT_OK(kdens_dataset_load_cifar(p100, 1, KDENS_CIFAR100_COARSE, &ds));
    ASSERT_OK(kdens_dataset_get(ds, 3, NULL, &label, NULL));
    assert_int_equal(label, 3);
    assert_int_equal(kdens_dataset_num_classes(ds), 20);
    kdens_dataset_free(ds);
}

static void test_cifar_bad(void **state)
{
    (void)state;
    kdens_dataset *ds = NULL;
    write_cifar(path_of("ok.bin"), 2, false, -1);
    FILE *f = fopen(path_of("ok.bin"), "rb");
    uint8_t *b = malloc(2 * 3073);
    assert_int_equal(fread(b, 1, 2 * 3073, f), 2 * 3073);
    fclose(f);
    write_file(path_of("trunc.bin"), b, 3073 + 100); /* a truncated record */
    free(b);
    const char *t[1] = {path_of("trunc.bin")};
    ASSERT_STATUS(kdens_dataset_load_cifar(t, 1, KDENS_CIFAR10, &ds), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "trunc.bin"));
    write_cifar(path_of("badlabel.bin"), 3, false, 2);
    const char *bl[1] = {path_of("badlabel.bin")};
    ASSERT_STATUS(kdens_dataset_load_cifar(bl, 1, KDENS_CIFAR10, &ds), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "record 2"));
    const char *ok100[1] = {path_of("ok.bin")}; /* CIFAR-10 records read as CIFAR-100 */
    ASSERT_STATUS(kdens_dataset_load_cifar(ok100, 1, KDENS_CIFAR100_FINE, &ds), KDENS_E_FORMAT);
    ASSERT_STATUS(kdens_dataset_load_cifar(NULL, 1, KDENS_CIFAR10, &ds), KDENS_E_ARG);
    assert_null(ds);
}

/* ---- PNG and JPEG writers for fixtures ---------------------------------------------- */

/* A PNG of the given libpng colour type and depth from an RGB(A) pattern. */
static void write_png(const char *path, int w, int h, int color_type, int depth)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_int_equal(setjmp(png_jmpbuf(png)), 0);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {10, 20, 30}};
        png_set_PLTE(png, info, pal, 4);
    }
    png_write_info(png, info);
    if (depth == 16)
        png_set_swap(png); /* rows are given little-endian below */
    int channels = color_type == PNG_COLOR_TYPE_GRAY         ? 1
                   : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                   : color_type == PNG_COLOR_TYPE_RGB        ? 3
                   : color_type == PNG_COLOR_TYPE_RGBA       ? 4
                                                             : 1;
    size_t bpp = (size_t)channels * depth / 8;
    uint8_t *row = malloc((size_t)w * bpp);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++)
            for (int c = 0; c < channels; c++) {
                int v = color_type == PNG_COLOR_TYPE_PALETTE ? (x + y) % 4 : (x * 40 + y * 10 + c * 60) % 256;
                if (depth == 16) {
                    uint16_t v16 = (uint16_t)(v * 257);
                    memcpy(row + (size_t)x * bpp + c * 2, &v16, 2);
                } else {
                    row[(size_t)x * bpp + c] = (uint8_t)v;
                }
            }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    fclose(f);
}

static void write_jpeg(const char *path, int w, int h, J_COLOR_SPACE space, int components)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = components;
    c.in_color_space = space;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    uint8_t *row = malloc((size_t)w * components);
    while (c.next_scanline < c.image_height) {
        for (int x = 0; x < w; x++)
            for (int k = 0; k < components; k++)
                row[x * components + k] = (uint8_t)(k == 3 ? 255 : 100 + k * 40);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    fclose(f);
}

static void test_png_variants(void **state)
{
    (void)state;
    static const struct {
        int type, depth;
    } kinds[] = {{PNG_COLOR_TYPE_GRAY, 8},       {PNG_COLOR_TYPE_GRAY, 16},
                 {PNG_COLOR_TYPE_GRAY_ALPHA, 8}, {PNG_COLOR_TYPE_RGB, 8},
                 {PNG_COLOR_TYPE_RGB, 16},       {PNG_COLOR_TYPE_RGBA, 8},
                 {PNG_COLOR_TYPE_RGBA, 16},      {PNG_COLOR_TYPE_PALETTE, 8}};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        write_png(path_of("v.png"), 6, 4, kinds[k].type, kinds[k].depth);
        for (int color = 1; color <= 3; color += 2) {
            uint8_t *px;
            int h, w;
            ASSERT_OK(kd_image_decode_file(path_of("v.png"), (kdens_color)color, &px, &h, &w));
            assert_true(h == 4 && w == 6);
            /* pixel (x=2, y=1): channel c of the pattern is (80 + 10 + 60c) */
            const uint8_t *p = px + (1 * 6 + 2) * color;
            bool grey_src = kinds[k].type == PNG_COLOR_TYPE_GRAY ||
                            kinds[k].type == PNG_COLOR_TYPE_GRAY_ALPHA;
            if (kinds[k].type == PNG_COLOR_TYPE_PALETTE) { /* index (2+1)%4 = 3 -> (10,20,30) */
                if (color == 3)
                    assert_true(p[0] == 10 && p[1] == 20 && p[2] == 30);
                else
                    assert_int_equal(p[0], (10 * 299 + 20 * 587 + 30 * 114 + 500) / 1000);
            } else if (grey_src) {
                for (int c = 0; c < color; c++)
                    assert_int_equal(p[c], 90);
            } else if (color == 3) {
                assert_true(p[0] == 90 && p[1] == 150 && p[2] == 210);
            } else {
                assert_int_equal(p[0], (90 * 299 + 150 * 587 + 210 * 114 + 500) / 1000);
            }
            free(px);
        }
    }
}

static void test_jpeg_variants(void **state)
{
    (void)state;
    uint8_t *px;
    int h, w;
    write_jpeg(path_of("g.jpg"), 8, 8, JCS_GRAYSCALE, 1);
    ASSERT_OK(kd_image_decode_file(path_of("g.jpg"), KDENS_COLOR_RGB, &px, &h, &w));
    assert_true(h == 8 && w == 8 && abs(px[0] - 100) <= 1 && px[0] == px[1] && px[1] == px[2]);
    free(px);
    write_jpeg(path_of("c.jpg"), 8, 8, JCS_RGB, 3);
    ASSERT_OK(kd_image_decode_file(path_of("c.jpg"), KDENS_COLOR_RGB, &px, &h, &w));
    assert_true(abs(px[0] - 100) <= 2 && abs(px[1] - 140) <= 2 && abs(px[2] - 180) <= 2);
    free(px);
    ASSERT_OK(kd_image_decode_file(path_of("c.jpg"), KDENS_COLOR_GRAY, &px, &h, &w));
    assert_true(abs(px[0] - (100 * 299 + 140 * 587 + 180 * 114) / 1000) <= 2);
    free(px);
    /* CMYK written plainly (no Adobe marker): C=100, M=140, Y=180, K=255 -> RGB = 255 - CMY */
    write_jpeg(path_of("k.jpg"), 8, 8, JCS_CMYK, 4);
    ASSERT_OK(kd_image_decode_file(path_of("k.jpg"), KDENS_COLOR_RGB, &px, &h, &w));
    assert_true(h == 8 && w == 8);
    free(px);
}

static void test_corrupt_images(void **state)
{
    (void)state;
    uint8_t *px = NULL;
    int h, w;
    write_png(path_of("t.png"), 16, 16, PNG_COLOR_TYPE_RGB, 8);
    FILE *f = fopen(path_of("t.png"), "rb");
    uint8_t buf[4096];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    write_file(path_of("cut.png"), buf, len / 2);
    ASSERT_STATUS(kd_image_decode_file(path_of("cut.png"), KDENS_COLOR_RGB, &px, &h, &w),
                  KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "cut.png"));
    write_jpeg(path_of("t.jpg"), 16, 16, JCS_RGB, 3);
    f = fopen(path_of("t.jpg"), "rb");
    len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    write_file(path_of("cut.jpg"), buf, 40);
    ASSERT_STATUS(kd_image_decode_file(path_of("cut.jpg"), KDENS_COLOR_RGB, &px, &h, &w),
                  KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "cut.jpg"));
    /* cut inside the scan: libjpeg would fill the rest with grey; we refuse */
    write_file(path_of("half.jpg"), buf, len * 3 / 4);
    ASSERT_STATUS(kd_image_decode_file(path_of("half.jpg"), KDENS_COLOR_RGB, &px, &h, &w),
                  KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "half.jpg"));
    write_file(path_of("text.png"), "hello", 5);
    ASSERT_STATUS(kd_image_decode_file(path_of("text.png"), KDENS_COLOR_RGB, &px, &h, &w),
                  KDENS_E_FORMAT);
    assert_null(px);
}

static void test_resize_nearest(void **state)
{
    (void)state;
    uint8_t src[4 * 4], dst[2 * 2], up[8 * 8];
    for (int i = 0; i < 16; i++)
        src[i] = (uint8_t)i;
    kd_image_resize_nearest(src, 4, 4, 1, dst, 2, 2);
    /* centres 0.5*2 = 1 and 1.5*2 = 3 */
    assert_true(dst[0] == 5 && dst[1] == 7 && dst[2] == 13 && dst[3] == 15);
    kd_image_resize_nearest(src, 4, 4, 1, up, 8, 8);
    assert_true(up[0] == 0 && up[1] == 0 && up[2] == 1 && up[63] == 15);
}

static void make_folder(const char *root, bool with_bad, bool mixed_sizes)
{
    char p[4700];
    mkdir(root, 0755);
    snprintf(p, sizeof p, "%s/zebra", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/apple", root);
    mkdir(p, 0755);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/apple/a%d.png", root, i);
        write_png(p, mixed_sizes && i == 2 ? 9 : 8, 8, PNG_COLOR_TYPE_RGB, 8);
        snprintf(p, sizeof p, "%s/zebra/z%d.JPG", root, i);
        write_jpeg(p, 8, 8, JCS_RGB, 3);
    }
    snprintf(p, sizeof p, "%s/zebra/notes.txt", root);
    write_file(p, "not an image", 12);
    if (with_bad) {
        snprintf(p, sizeof p, "%s/zebra/broken.png", root);
        write_file(p, "\x89PNG\r\n\x1a\nbroken", 14);
    }
}

static void test_folder(void **state)
{
    (void)state;
    char root[4600];
    snprintf(root, sizeof root, "%s", path_of("folder"));
    make_folder(root, false, false);
    kdens_dataset *ds;
    ASSERT_OK(kdens_dataset_load_folder(root, 4, 6, KDENS_COLOR_GRAY, 0, &ds));
    assert_int_equal(kdens_dataset_count(ds), 6);
    assert_int_equal(kdens_dataset_num_classes(ds), 2);
    assert_string_equal(kdens_dataset_class_name(ds, 0), "apple");
    assert_string_equal(kdens_dataset_class_name(ds, 1), "zebra");
    int h, w, c;
    ASSERT_OK(kdens_dataset_shape(ds, &h, &w, &c));
    assert_true(h == 4 && w == 6 && c == 1);
    const char *file;
    int32_t label;
    ASSERT_OK(kdens_dataset_get(ds, 4, NULL, &label, &file));
    assert_int_equal(label, 1);
    assert_string_equal(file, "zebra/z1.JPG");
    /* manifest round trip */
    ASSERT_OK(kdens_dataset_write_manifest(ds, path_of("m.csv")));
    kdens_dataset *again;
    ASSERT_OK(kdens_dataset_load_manifest(path_of("m.csv"), root, 4, 6, KDENS_COLOR_GRAY, 0,
                                          &again));
    assert_int_equal(kdens_dataset_count(again), 6);
    for (size_t i = 0; i < 6; i++) {
        const uint8_t *a, *b;
        int32_t la, lb;
        ASSERT_OK(kdens_dataset_get(ds, i, &a, &la, NULL));
        ASSERT_OK(kdens_dataset_get(again, i, &b, &lb, NULL));
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, 24);
    }
    kdens_dataset_free(again);
    kdens_dataset_free(ds);
    /* native size when no resize is asked */
    ASSERT_OK(kdens_dataset_load_folder(root, 0, 0, KDENS_COLOR_RGB, 0, &ds));
    ASSERT_OK(kdens_dataset_shape(ds, &h, &w, &c));
    assert_true(h == 8 && w == 8 && c == 3);
    kdens_dataset_free(ds);
}

static void test_folder_lazy_and_threads(void **state)
{
    (void)state;
    char root[4600], bad[4600];
    snprintf(root, sizeof root, "%s", path_of("lazyfolder"));
    make_folder(root, false, false);
    kdens_dataset *eager, *lazy, *one;
    int before = kdens_get_num_threads();
    ASSERT_OK(kdens_set_num_threads(3));
    ASSERT_OK(kdens_dataset_load_folder(root, 5, 7, KDENS_COLOR_RGB, 0, &eager));
    ASSERT_OK(kdens_set_num_threads(1)); /* decoding does not depend on the threads */
    ASSERT_OK(kdens_dataset_load_folder(root, 5, 7, KDENS_COLOR_RGB, 0, &one));
    ASSERT_OK(kdens_set_num_threads(before));
    ASSERT_OK(kdens_dataset_load_folder(root, 5, 7, KDENS_COLOR_RGB, KDENS_LOAD_LAZY, &lazy));
    assert_int_equal(kdens_dataset_count(lazy), 6);
    for (size_t i = 0; i < 6; i++) {
        const uint8_t *a, *b, *p;
        uint8_t buf[5 * 7 * 3];
        ASSERT_OK(kdens_dataset_get(eager, i, &a, NULL, NULL));
        ASSERT_OK(kdens_dataset_get(one, i, &b, NULL, NULL));
        assert_memory_equal(a, b, sizeof buf);
        ASSERT_OK(kdens_dataset_get(lazy, i, &p, NULL, NULL));
        assert_null(p);
        ASSERT_OK(kdens_dataset_read(lazy, i, buf));
        assert_memory_equal(a, buf, sizeof buf);
    }
    /* the loader decodes lazy datasets on its threads: the same batches */
    kdens_loader *le, *ll;
    ASSERT_OK(kdens_loader_create(eager, 4, 3, &le));
    ASSERT_OK(kdens_loader_create(lazy, 4, 3, &ll));
    ASSERT_OK(kdens_loader_set_threads(ll, 2));
    ASSERT_OK(kdens_loader_start_epoch(le, 1));
    ASSERT_OK(kdens_loader_start_epoch(ll, 1));
    for (;;) {
        const float *xe, *xl;
        size_t ne, nl;
        ASSERT_OK(kdens_loader_next(le, &xe, NULL, &ne));
        ASSERT_OK(kdens_loader_next(ll, &xl, NULL, &nl));
        assert_int_equal(ne, nl);
        if (ne == 0)
            break;
        assert_memory_equal(xe, xl, sizeof(float) * ne * 5 * 7 * 3);
    }
    kdens_loader_free(le);
    kdens_loader_free(ll);
    kdens_dataset_free(eager);
    kdens_dataset_free(one);
    kdens_dataset_free(lazy);
    /* a bad image in a lazy dataset fails the batch that reads it, naming the file */
    snprintf(bad, sizeof bad, "%s", path_of("lazybad"));
    make_folder(bad, true, false);
    ASSERT_OK(kdens_dataset_load_folder(bad, 8, 8, KDENS_COLOR_RGB, KDENS_LOAD_LAZY, &lazy));
    ASSERT_OK(kdens_loader_create(lazy, 7, 1, &ll));
    ASSERT_OK(kdens_loader_start_epoch(ll, 0));
    size_t n;
    ASSERT_STATUS(kdens_loader_next(ll, NULL, NULL, &n), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "broken.png"));
    kdens_loader_free(ll);
    kdens_dataset_free(lazy);
    lazy = NULL;
    ASSERT_STATUS(kdens_dataset_load_folder(bad, 0, 0, KDENS_COLOR_RGB, KDENS_LOAD_LAZY, &lazy),
                  KDENS_E_ARG);
}

static void test_folder_bad(void **state)
{
    (void)state;
    kdens_dataset *ds = NULL;
    char root[4600], mixed[4600];
    snprintf(root, sizeof root, "%s", path_of("badfolder"));
    make_folder(root, true, false);
    ASSERT_STATUS(kdens_dataset_load_folder(root, 8, 8, KDENS_COLOR_RGB, 0, &ds), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "broken.png"));
    ASSERT_OK(kdens_dataset_load_folder(root, 8, 8, KDENS_COLOR_RGB, KDENS_LOAD_SKIP_BAD, &ds));
    const char *first;
    assert_int_equal(kdens_dataset_skipped(ds, &first), 1);
    assert_string_equal(first, "zebra/broken.png");
    assert_int_equal(kdens_dataset_count(ds), 6);
    kdens_dataset_free(ds);
    ds = NULL;
    /* sizes differ and no resize was asked */
    snprintf(mixed, sizeof mixed, "%s", path_of("mixed"));
    make_folder(mixed, false, true);
    ASSERT_STATUS(kdens_dataset_load_folder(mixed, 0, 0, KDENS_COLOR_RGB, 0, &ds), KDENS_E_SHAPE);
    assert_non_null(strstr(kdens_errmsg(), "a2.png"));
    /* an empty class folder */
    char p[4700];
    snprintf(p, sizeof p, "%s/empty", mixed);
    mkdir(p, 0755);
    ASSERT_STATUS(kdens_dataset_load_folder(mixed, 8, 8, KDENS_COLOR_RGB, 0, &ds),
                  KDENS_E_NOTFOUND);
    assert_non_null(strstr(kdens_errmsg(), "empty"));
    /* no class folders, an unreadable root, bad arguments */
    const char *flat = path_of("flat");
    mkdir(flat, 0755);
    ASSERT_STATUS(kdens_dataset_load_folder(flat, 8, 8, KDENS_COLOR_RGB, 0, &ds),
                  KDENS_E_NOTFOUND);
    ASSERT_STATUS(kdens_dataset_load_folder(path_of("nowhere"), 8, 8, KDENS_COLOR_RGB, 0, &ds),
                  KDENS_E_IO);
    ASSERT_STATUS(kdens_dataset_load_folder(root, 8, 0, KDENS_COLOR_RGB, 0, &ds), KDENS_E_ARG);
    ASSERT_STATUS(kdens_dataset_load_folder(root, 8, 8, (kdens_color)2, 0, &ds), KDENS_E_ARG);
    assert_null(ds);
}

static void test_manifest_bad(void **state)
{
    (void)state;
    char root[4600];
    snprintf(root, sizeof root, "%s", path_of("mfolder"));
    make_folder(root, false, false);
    kdens_dataset *ds = NULL;
    write_file(path_of("h.csv"), "file,label\napple/a0.png,apple\n", 30);
    ASSERT_STATUS(kdens_dataset_load_manifest(path_of("h.csv"), root, 8, 8, KDENS_COLOR_RGB, 0, &ds),
                  KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "header"));
    const char unknown[] = "filename,class\napple/a0.png,apple\nzebra/z0.JPG,horse\n";
    write_file(path_of("u.csv"), unknown, sizeof unknown - 1);
    ASSERT_STATUS(kdens_dataset_load_manifest(path_of("u.csv"), root, 8, 8, KDENS_COLOR_RGB, 0, &ds),
                  KDENS_E_NOTFOUND);
    assert_non_null(strstr(kdens_errmsg(), "line 3"));
    assert_non_null(strstr(kdens_errmsg(), "horse"));
    const char row[] = "filename,class\r\napple/a0.png\r\n";
    write_file(path_of("r.csv"), row, sizeof row - 1);
    ASSERT_STATUS(kdens_dataset_load_manifest(path_of("r.csv"), root, 8, 8, KDENS_COLOR_RGB, 0, &ds),
                  KDENS_E_FORMAT);
    const char quoted[] = "filename,class\r\n\"apple/a0.png\",\"apple\"\r\n\r\nzebra/z2.JPG,zebra\r\n";
    write_file(path_of("q.csv"), quoted, sizeof quoted - 1);
    ASSERT_OK(kdens_dataset_load_manifest(path_of("q.csv"), root, 8, 8, KDENS_COLOR_RGB, 0, &ds));
    assert_int_equal(kdens_dataset_count(ds), 2);
    kdens_dataset_free(ds);
    ds = NULL;
    /* the reference's "<folder>_class" names */
    const char ref[] = "filename,class\napple/a1.png,apple_class\nzebra/z1.JPG,zebra_class\n";
    write_file(path_of("ref.csv"), ref, sizeof ref - 1);
    ASSERT_OK(kdens_dataset_load_manifest(path_of("ref.csv"), root, 8, 8, KDENS_COLOR_RGB, 0, &ds));
    int32_t lab;
    ASSERT_OK(kdens_dataset_get(ds, 1, NULL, &lab, NULL));
    assert_int_equal(lab, 1);
    kdens_dataset_free(ds);
    ds = NULL;
    const char missing[] = "filename,class\napple/nothere.png,apple\n";
    write_file(path_of("x.csv"), missing, sizeof missing - 1);
    ASSERT_STATUS(kdens_dataset_load_manifest(path_of("x.csv"), root, 8, 8, KDENS_COLOR_RGB, 0, &ds),
                  KDENS_E_IO);
    assert_non_null(strstr(kdens_errmsg(), "nothere.png"));
    assert_null(ds);
}

static void test_split_and_subset(void **state)
{
    (void)state;
    write_idx(path_of("si.idx"), path_of("sl.idx"), 300, 2, 2, false);
    kdens_dataset *ds, *tr, *va, *tr2, *va2, *sub, *sub2;
    ASSERT_OK(kdens_dataset_load_idx(path_of("si.idx"), path_of("sl.idx"), &ds));
    ASSERT_OK(kdens_dataset_split(ds, 0.2, 9, &tr, &va));
    assert_int_equal(kdens_dataset_count(va), 60); /* 20 of each of the 3 classes */
    assert_int_equal(kdens_dataset_count(tr), 240);
    int per_class[3] = {0};
    for (size_t i = 0; i < 60; i++) {
        int32_t l;
        ASSERT_OK(kdens_dataset_get(va, i, NULL, &l, NULL));
        per_class[l]++;
    }
    assert_true(per_class[0] == 20 && per_class[1] == 20 && per_class[2] == 20);
    ASSERT_OK(kdens_dataset_split(ds, 0.2, 9, &tr2, &va2)); /* same seed, same split */
    for (size_t i = 0; i < 60; i++) {
        const uint8_t *a, *b;
        ASSERT_OK(kdens_dataset_get(va, i, &a, NULL, NULL));
        ASSERT_OK(kdens_dataset_get(va2, i, &b, NULL, NULL));
        assert_ptr_equal(a, b); /* views share the pixels */
    }
    ASSERT_OK(kdens_dataset_subset(tr, 0.0, 50, 3, &sub));
    assert_int_equal(kdens_dataset_count(sub), 50);
    ASSERT_OK(kdens_dataset_subset(tr, 0.5, 0, 3, &sub2));
    size_t n = kdens_dataset_count(sub2);
    assert_true(n > 80 && n < 160); /* Binomial(240, 0.5) */
    kdens_dataset_free(ds); /* views outlive their parent */
    kdens_dataset_free(tr);
    const uint8_t *px;
    ASSERT_OK(kdens_dataset_get(sub, 49, &px, NULL, NULL));
    ASSERT_STATUS(kdens_dataset_split(va, 0.0, 1, &tr, &tr2), KDENS_E_ARG);
    ASSERT_STATUS(kdens_dataset_subset(va, 1.5, 0, 1, &tr), KDENS_E_ARG);
    ASSERT_STATUS(kdens_dataset_subset(va, 0.5, 61, 1, &tr), KDENS_E_ARG);
    /* a subset manifest of an IDX dataset loads again as a view */
    ASSERT_OK(kdens_dataset_write_manifest(sub, path_of("sub.csv")));
    kdens_dataset *parent, *back;
    ASSERT_OK(kdens_dataset_load_idx(path_of("si.idx"), path_of("sl.idx"), &parent));
    ASSERT_OK(kdens_dataset_select(parent, path_of("sub.csv"), &back));
    assert_int_equal(kdens_dataset_count(back), 50);
    for (size_t i = 0; i < 50; i++) {
        const uint8_t *a, *b;
        int32_t la, lb;
        const char *fa, *fb;
        ASSERT_OK(kdens_dataset_get(sub, i, &a, &la, &fa));
        ASSERT_OK(kdens_dataset_get(back, i, &b, &lb, &fb));
        assert_memory_equal(a, b, 4);
        assert_int_equal(la, lb);
        assert_string_equal(fa, fb);
    }
    kdens_dataset_free(back);
    const char wrong[] = "filename,class\n5,2\n7,0\n"; /* sample 7 has label 1 */
    write_file(path_of("wrong.csv"), wrong, sizeof wrong - 1);
    back = NULL;
    ASSERT_STATUS(kdens_dataset_select(parent, path_of("wrong.csv"), &back), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "line 3"));
    const char nothere[] = "filename,class\n300,0\n";
    write_file(path_of("nothere.csv"), nothere, sizeof nothere - 1);
    ASSERT_STATUS(kdens_dataset_select(parent, path_of("nothere.csv"), &back), KDENS_E_NOTFOUND);
    assert_null(back);
    kdens_dataset_free(parent);
    kdens_dataset_free(va);
    kdens_dataset_free(tr2);
    kdens_dataset_free(va2);
    kdens_dataset_free(sub);
    kdens_dataset_free(sub2);
}

/* Subset manifests under a folder of 200-character names, 4000 characters
 * long, near the system's limit (PATH_MAX, 4096 on Linux), given with a trailing slash:
 * the manifest lands where its path says, one slash after the folder, and
 * loads again; a caller buffer one byte short is refused, never filled with
 * a shorter path. */
static void test_long_paths(void **state)
{
    (void)state;
    char part[201];
    memset(part, 'd', 200);
    part[200] = '\0';
    char *deep = kd_path_join(dir, NULL);
    for (size_t len; (len = strlen(deep)) + 2 <= 4000;) { /* a shorter last part fills up */
        size_t room = 4000 - len - 1;
        char *longer = kd_path_join(deep, part + (room < 200 ? 200 - room : 0), NULL);
        free(deep);
        deep = longer;
    }
    assert_true(strlen(deep) >= 3999);
    assert_int_equal(kd_mkdirs(deep), 0);
    char *slashed = kd_path_fmt(NULL, "%s/", deep);
    write_idx(path_of("li.idx"), path_of("ll.idx"), 60, 2, 2, false);
    kdens_dataset *ds, *back;
    ASSERT_OK(kdens_dataset_load_idx(path_of("li.idx"), path_of("ll.idx"), &ds));
    size_t len = strlen(deep), size = len + 100, n = 0;
    char *path = malloc(size);
    ASSERT_OK(kdens_dataset_write_subset(ds, slashed, 0.5, 0, 4, path, size, &n));
    /* deep/subset_05_<32 hex digits>.csv */
    assert_memory_equal(path, deep, len);
    assert_int_equal(strlen(path), len + strlen("/subset_05_") + 32 + strlen(".csv"));
    assert_memory_equal(path + len, "/subset_05_", strlen("/subset_05_"));
    assert_string_equal(path + strlen(path) - 4, ".csv");
    assert_true(strlen(path) > 4040);
    ASSERT_OK(kdens_dataset_select(ds, path, &back));
    assert_int_equal(kdens_dataset_count(back), n);
    kdens_dataset_free(back);
    /* the same subset into a buffer of exactly its size, then one byte short */
    size_t need = strlen(path) + 1;
    char *exact = malloc(need);
    ASSERT_OK(kdens_dataset_write_subset(ds, deep, 0.5, 0, 4, exact, need, NULL));
    assert_string_equal(exact, path);
    ASSERT_STATUS(kdens_dataset_write_subset(ds, deep, 0.5, 0, 5, exact, need - 1, NULL),
                  KDENS_E_ARG);
    assert_string_equal(exact, ""); /* not a shorter path */
    free(exact);
    free(path);
    free(slashed);
    free(deep);
    kdens_dataset_free(ds);
}

static void test_presets(void **state)
{
    (void)state;
    const char *mn = path_of("mnist");
    mkdir(mn, 0755);
    char a[4600], b[4600];
    snprintf(a, sizeof a, "%s/train-images-idx3-ubyte.gz", mn);
    snprintf(b, sizeof b, "%s/train-labels-idx1-ubyte.gz", mn);
    write_idx(a, b, 9, 28, 28, true);
    snprintf(a, sizeof a, "%s/t10k-images-idx3-ubyte", mn);
    snprintf(b, sizeof b, "%s/t10k-labels-idx1-ubyte", mn);
    write_idx(a, b, 4, 28, 28, false);
    kdens_dataset *tr = NULL, *te = NULL;
    ASSERT_OK(kdens_dataset_preset("mnist", mn, &tr, &te));
    assert_int_equal(kdens_dataset_count(tr), 9);
    assert_int_equal(kdens_dataset_count(te), 4);
    assert_int_equal(kdens_dataset_num_classes(tr), 10);
    kdens_dataset_free(tr);
    kdens_dataset_free(te);
    /* EMNIST images are stored transposed: the preset turns them upright */
    snprintf(a, sizeof a, "%s/emnist-balanced-train-images-idx3-ubyte", mn);
    snprintf(b, sizeof b, "%s/emnist-balanced-train-labels-idx1-ubyte", mn);
    write_idx(a, b, 2, 28, 28, false);
    ASSERT_OK(kdens_dataset_preset("emnist", mn, &tr, NULL));
    const uint8_t *px;
    ASSERT_OK(kdens_dataset_get(tr, 1, &px, NULL, NULL));
    assert_int_equal(px[0 * 28 + 1], (uint8_t)(1 + 1 * 28)); /* (y=0,x=1) was (y=1,x=0) */
    assert_int_equal(kdens_dataset_num_classes(tr), 47);
    assert_string_equal(kdens_dataset_class_name(tr, 46), "t");
    kdens_dataset_free(tr);
    const char *cf = path_of("cifar");
    mkdir(cf, 0755);
    for (int i = 1; i <= 5; i++) {
        snprintf(a, sizeof a, "%s/data_batch_%d.bin", cf, i);
        write_cifar(a, 2, false, -1);
    }
    snprintf(a, sizeof a, "%s/test_batch.bin", cf);
    write_cifar(a, 3, false, -1);
    ASSERT_OK(kdens_dataset_preset("cifar10", cf, &tr, &te));
    assert_int_equal(kdens_dataset_count(tr), 10);
    assert_string_equal(kdens_dataset_class_name(te, 0), "airplane");
    kdens_dataset_free(tr);
    kdens_dataset_free(te);
    tr = NULL;
    ASSERT_STATUS(kdens_dataset_preset("cifar100", cf, &tr, NULL), KDENS_E_NOTFOUND);
    snprintf(a, sizeof a, "%s/train.bin", cf);
    write_cifar(a, 5, true, -1);
    snprintf(a, sizeof a, "%s/test.bin", cf);
    write_cifar(a, 2, true, -1);
    ASSERT_OK(kdens_dataset_preset("cifar100", cf, &tr, &te));
    assert_int_equal(kdens_dataset_count(tr), 5);
    assert_int_equal(kdens_dataset_num_classes(te), 100);
    kdens_dataset_free(tr);
    kdens_dataset_free(te);
    tr = NULL;
    ASSERT_STATUS(kdens_dataset_preset("imagenet", cf, &tr, NULL), KDENS_E_NOTFOUND);
    ASSERT_STATUS(kdens_dataset_preset("mnist", NULL, &tr, NULL), KDENS_E_NOTFOUND);
    assert_null(tr);
}

static void test_fmnist_preset(void **state)
{
    (void)state;
    kdens_dataset *te;
    if (kdens_dataset_preset("fmnist", NULL, NULL, &te) != KDENS_OK)
        skip(); /* dataset-fashion-mnist not installed */
    assert_int_equal(kdens_dataset_count(te), 10000);
    assert_string_equal(kdens_dataset_class_name(te, 9), "Ankle boot");
    kdens_dataset_free(te);
}

/* The one CSV reader and writer (lib/core/csv.c): quoting, line breaks
 * inside quotes, CRLF, a byte-order mark, blank lines, line numbers, every
 * malformed case, and the writer's output read back. */
static void test_csv(void **state)
{
    (void)state;
    const char text[] = "\xEF\xBB\xBF" "a,b,c\r\n"
                        "\r\n"
                        "\"x,1\",\"say \"\"hi\"\"\",\n"
                        "\"two\nlines\",plain,\n"
                        "last,row,end";
    kd_csv c;
    kd_csv_open(&c, text, sizeof text - 1);
    assert_int_equal(kd_csv_next(&c), 1);
    assert_int_equal(c.line, 1);
    assert_int_equal(c.n_fields, 3);
    assert_string_equal(c.fields[0], "a");
    assert_string_equal(c.fields[2], "c");
    assert_int_equal(kd_csv_next(&c), 1);
    assert_int_equal(c.line, 3);
    assert_int_equal(c.n_fields, 3);
    assert_string_equal(c.fields[0], "x,1");
    assert_string_equal(c.fields[1], "say \"hi\"");
    assert_string_equal(c.fields[2], "");
    assert_int_equal(kd_csv_next(&c), 1);
    assert_int_equal(c.line, 4);
    assert_string_equal(c.fields[0], "two\nlines");
    assert_int_equal(kd_csv_next(&c), 1);
    assert_int_equal(c.line, 6);
    assert_string_equal(c.fields[2], "end");
    assert_int_equal(kd_csv_next(&c), 0);
    kd_csv_close(&c);

    static const char *const bad[] = {"\"open,1\n", "a\"b,1\n", "\"x\"y,1\n", "a,b\rc\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_csv_open(&c, bad[i], strlen(bad[i]));
        assert_int_equal(kd_csv_next(&c), -1);
        assert_non_null(c.error);
        kd_csv_close(&c);
    }
    const char nul[] = "a,b\0c\n";
    kd_csv_open(&c, nul, sizeof nul - 1);
    assert_int_equal(kd_csv_next(&c), -1);
    kd_csv_close(&c);

    /* what the writer quotes, the reader gives back */
    static const char *const fields[] = {"plain", "with,comma", "with \"quote\"", "two\nlines",
                                         "cr\rhere", ""};
    kd_buf b = {0};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (i)
            kd_buf_put(&b, ",", 1);
        kd_csv_put_field(&b, fields[i]);
    }
    kd_buf_put(&b, "\n", 1);
    assert_false(b.failed);
    kd_csv_open(&c, b.data, b.len);
    assert_int_equal(kd_csv_next(&c), 1);
    assert_int_equal(c.n_fields, sizeof fields / sizeof fields[0]);
    for (size_t i = 0; i < c.n_fields; i++)
        assert_string_equal(c.fields[i], fields[i]);
    assert_int_equal(kd_csv_next(&c), 0);
    kd_csv_close(&c);
    kd_buf_free(&b);
}

/* The one path joiner (lib/core/path.c): one slash where parts meet,
 * whatever slashes they bring; empty parts; the root; formatted rests; a
 * path far longer than any buffer the library used to build paths in. */
static void expect_path(char *got, const char *want)
{
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_path(void **state)
{
    (void)state;
    expect_path(kd_path_join("ws", "toy", "teachers.csv", NULL), "ws/toy/teachers.csv");
    expect_path(kd_path_join("ws/", "toy", NULL), "ws/toy");
    expect_path(kd_path_join("ws///", "/toy//", "/x", NULL), "ws/toy/x");
    expect_path(kd_path_join("/", "toy", NULL), "/toy");
    expect_path(kd_path_join("//", "/toy", NULL), "/toy");
    expect_path(kd_path_join("", "toy", NULL), "toy");
    expect_path(kd_path_join("ws", "", "toy", "/", NULL), "ws/toy");
    expect_path(kd_path_join("ws/", NULL), "ws/"); /* one part: as given */
    expect_path(kd_path_join("ws", "logs/", NULL), "ws/logs/");
    expect_path(kd_path_join("a//b", "c", NULL), "a//b/c"); /* slashes inside a part stay */
    expect_path(kd_path_join("", NULL), "");
    expect_path(kd_path_fmt("ws/", "%s/logs/%s.csv", "toy", "a1"), "ws/toy/logs/a1.csv");
    expect_path(kd_path_fmt("ws", "/%s_%g.kdm", "test", 0.5), "ws/test_0.5.kdm");
    expect_path(kd_path_fmt(NULL, "%s.ckpt", "ws/m.kdm"), "ws/m.kdm.ckpt");
    expect_path(kd_path_fmt("/", "%d", 7), "/7");

    /* 10,000 characters: 50 parts of 199, and a formatted rest as long again */
    char part[200];
    memset(part, 'p', 199);
    part[199] = '\0';
    char *p = kd_path_join(part, part, part, part, part, part, part, part, part, part, NULL);
    for (int round = 0; round < 4; round++) {
        char *longer = kd_path_join(p, part, part, part, part, part, part, part, part, part, part,
                                    NULL);
        free(p);
        p = longer;
    }
    assert_non_null(p);
    assert_int_equal(strlen(p), 50 * 199 + 49);
    for (size_t i = 0; i < 50; i++) {
        assert_memory_equal(p + i * 200, part, 199);
        if (i < 49)
            assert_int_equal(p[i * 200 + 199], '/');
    }
    char *q = kd_path_fmt(p, "%s/%s_%d.kdm", p, part, 3);
    assert_non_null(q);
    assert_int_equal(strlen(q), 2 * (50 * 199 + 49) + 2 + 199 + 6);
    assert_memory_equal(q, p, strlen(p));
    assert_string_equal(q + strlen(q) - 6, "_3.kdm");
    free(q);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx),
        cmocka_unit_test(test_idx_bad),
        cmocka_unit_test(test_cifar),
        cmocka_unit_test(test_cifar_bad),
        cmocka_unit_test(test_png_variants),
        cmocka_unit_test(test_jpeg_variants),
        cmocka_unit_test(test_corrupt_images),
        cmocka_unit_test(test_resize_nearest),
        cmocka_unit_test(test_folder),
        cmocka_unit_test(test_folder_lazy_and_threads),
        cmocka_unit_test(test_folder_bad),
        cmocka_unit_test(test_manifest_bad),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_split_and_subset),
        cmocka_unit_test(test_long_paths),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_fmnist_preset),
    };
    return cmocka_run_group_tests_name("datasets", tests, setup, teardown);
}
