/* A small raster plotter: a canvas, lines, rectangles, a 5x7 bitmap font,
 * line charts with bands and heatmaps, written as PNG through libpng. */
#include "plot.h"

#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kdens_status kd_canvas_new(int w, int h, kd_canvas *c)
{
    c->w = w;
    c->h = h;
    c->rgb = malloc((size_t)w * h * 3);
    if (!c->rgb)
        return kd_fail(KDENS_E_NOMEM, "out of memory for a %dx%d image", w, h);
    memset(c->rgb, 255, (size_t)w * h * 3);
    return KDENS_OK;
}

void kd_canvas_free(kd_canvas *c)
{
    free(c->rgb);
    c->rgb = NULL;
}

static void blend(kd_canvas *c, int x, int y, uint32_t color, double alpha)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h)
        return;
    uint8_t *p = c->rgb + ((size_t)y * c->w + x) * 3;
    for (int i = 0; i < 3; i++) {
        double v = (color >> (16 - 8 * i)) & 0xff;
        p[i] = (uint8_t)lround(p[i] * (1 - alpha) + v * alpha);
    }
}

void kd_fill_rect(kd_canvas *c, int x0, int y0, int x1, int y1, uint32_t color, double alpha)
{
    if (x0 > x1) {
        int t = x0;
        x0 = x1, x1 = t;
    }
    if (y0 > y1) {
        int t = y0;
        y0 = y1, y1 = t;
    }
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++)
            blend(c, x, y, color, alpha);
}

void kd_line(kd_canvas *c, double x0, double y0, double x1, double y1, uint32_t color,
             int thickness)
{
    double dx = x1 - x0, dy = y1 - y0;
    int steps = (int)ceil(fmax(fabs(dx), fabs(dy))) + 1;
    int r0 = -(thickness - 1) / 2, r1 = thickness / 2;
    for (int s = 0; s <= steps; s++) {
        double t = (double)s / steps;
        int x = (int)lround(x0 + t * dx), y = (int)lround(y0 + t * dy);
        for (int a = r0; a <= r1; a++)
            for (int b = r0; b <= r1; b++)
                blend(c, x + a, y + b, color, 1.0);
    }
}

/* 5x7 glyphs, one byte per row (bit 4 = leftmost column). */
static const struct {
    char ch;
    uint8_t rows[7];
} font[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {' ', {0, 0, 0, 0, 0, 0, 0}},
    {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},
    {',', {0, 0, 0, 0, 0x0C, 0x04, 0x08}},
    {'-', {0, 0, 0, 0x1F, 0, 0, 0}},
    {'_', {0, 0, 0, 0, 0, 0, 0x1F}},
    {':', {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'/', {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0}},
    {'=', {0, 0, 0x1F, 0, 0x1F, 0, 0}},
    {'+', {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0}},
    {'\'', {0x04, 0x04, 0x08, 0, 0, 0, 0}},
    {'#', {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}},
};

static const uint8_t *glyph(char ch)
{
    static const uint8_t box[7] = {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F};
    if (ch >= 'a' && ch <= 'z')
        ch = (char)(ch - 'a' + 'A');
    for (size_t i = 0; i < sizeof font / sizeof *font; i++)
        if (font[i].ch == ch)
            return font[i].rows;
    return box;
}

int kd_text_width(const char *s, int scale) { return (int)strlen(s) * 6 * scale; }

int kd_text(kd_canvas *c, int x, int y, const char *s, uint32_t color, int scale, int vertical)
{
    int pos = 0;
    for (const char *p = s; *p; p++, pos += 6 * scale) {
        const uint8_t *g = glyph(*p);
        for (int row = 0; row < 7; row++)
            for (int col = 0; col < 5; col++) {
                if (!(g[row] >> (4 - col) & 1))
                    continue;
                int gx = pos + col * scale, gy = row * scale;
                for (int a = 0; a < scale; a++)
                    for (int b = 0; b < scale; b++) {
                        if (vertical) /* reading upwards from (x, y) */
                            blend(c, x + gy + b, y - gx - a, color, 1.0);
                        else
                            blend(c, x + gx + a, y + gy + b, color, 1.0);
                    }
            }
    }
    return pos;
}

uint32_t kd_palette(int n)
{
    static const uint32_t colors[10] = {0x1f77b4, 0xd62728, 0x2ca02c, 0xff7f0e, 0x9467bd,
                                        0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
    return colors[(n % 10 + 10) % 10];
}

/* ---- PNG ----------------------------------------------------------------------- */

typedef struct png_sink {
    kd_buf buf;
    jmp_buf jump;
    char message[200];
} png_sink;

static void on_write(png_structp png, png_bytep data, size_t len)
{
    png_sink *s = png_get_io_ptr(png);
    kd_buf_put(&s->buf, data, len);
}

static void on_flush(png_structp png) { (void)png; }

static void on_error(png_structp png, png_const_charp msg)
{
    png_sink *s = png_get_error_ptr(png);
    snprintf(s->message, sizeof s->message, "%s", msg);
    longjmp(s->jump, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

kdens_status kd_canvas_write_png(const kd_canvas *c, const char *path)
{
    png_sink *sink = calloc(1, sizeof *sink);
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)c->h);
    if (!sink || !rows) {
        free(sink);
        free(rows);
        return kd_fail(KDENS_E_NOMEM, "out of memory");
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, sink, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    kdens_status st = KDENS_OK;
    if (!png || !info) {
        st = kd_fail(KDENS_E_NOMEM, "out of memory for libpng");
    } else if (setjmp(sink->jump)) {
        st = kd_fail(KDENS_E_IO, "%s: libpng: %s", path, sink->message);
    } else {
        png_set_write_fn(png, sink, on_write, on_flush);
        png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB,
                     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        for (int y = 0; y < c->h; y++)
            rows[y] = c->rgb + (size_t)y * c->w * 3;
        png_set_rows(png, info, rows);
        png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    }
    png_destroy_write_struct(&png, &info);
    if (st == KDENS_OK)
        st = sink->buf.failed ? kd_fail(KDENS_E_NOMEM, "out of memory")
                              : kd_write_file_atomic(path, sink->buf.data, sink->buf.len);
    kd_buf_free(&sink->buf);
    free(sink);
    free(rows);
    return st;
}

/* ---- charts ---------------------------------------------------------------------- */

/* A "nice" tick step near range / 5 (1, 2 or 5 times a power of ten). */
static double nice_step(double range)
{
    double raw = range / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void tick_label(double v, double step, char *buf, size_t size)
{
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, size, "%.*f", decimals, v);
}

enum { W = 800, HGT = 500, LEFT = 80, RIGHT = 200, TOP = 40, BOTTOM = 60 };

kdens_status kd_plot_lines(const char *path, const char *title, const char *xlabel,
                           const char *ylabel, const kd_series *series, int n_series)
{
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < n_series; s++)
        for (int i = 0; i < series[s].n; i++) {
            double lo = series[s].lo ? series[s].lo[i] : series[s].y[i];
            double hi = series[s].hi ? series[s].hi[i] : series[s].y[i];
            if (!isfinite(series[s].x[i]) || !isfinite(lo) || !isfinite(hi))
                continue;
            x0 = fmin(x0, series[s].x[i]), x1 = fmax(x1, series[s].x[i]);
            y0 = fmin(y0, lo), y1 = fmax(y1, hi);
        }
    if (!(x0 <= x1)) /* no finite data: an empty frame */
        x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 == x0)
        x0 -= 0.5, x1 += 0.5;
    double pad = (y1 - y0) * 0.05;
    if (pad == 0)
        pad = fabs(y0) * 0.01 + 0.01;
    y0 -= pad, y1 += pad;
    kd_canvas c;
    kdens_status st = kd_canvas_new(W, HGT, &c);
    if (st != KDENS_OK)
        return st;
    int pw = W - LEFT - RIGHT, ph = HGT - TOP - BOTTOM;
#define PX(v) (LEFT + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (TOP + ph - ((v) - y0) / (y1 - y0) * ph)
    /* grid and ticks */
    char label[64];
    double ys = nice_step(y1 - y0), xs = nice_step(x1 - x0);
    if (x1 - x0 <= 20 && xs < 1)
        xs = 1; /* integer x (sizes, epochs) */
    for (double v = ceil(y0 / ys) * ys; v <= y1 + 1e-12; v += ys) {
        int y = (int)lround(PY(v));
        kd_line(&c, LEFT, y, LEFT + pw, y, 0xe0e0e0, 1);
        tick_label(v, ys, label, sizeof label);
        kd_text(&c, LEFT - 8 - kd_text_width(label, 1), y - 3, label, 0x333333, 1, 0);
    }
    for (double v = ceil(x0 / xs) * xs; v <= x1 + 1e-12; v += xs) {
        int x = (int)lround(PX(v));
        kd_line(&c, x, TOP, x, TOP + ph, 0xeeeeee, 1);
        tick_label(v, xs, label, sizeof label);
        kd_text(&c, x - kd_text_width(label, 1) / 2, TOP + ph + 8, label, 0x333333, 1, 0);
    }
    /* bands, then lines over them */
    for (int s = 0; s < n_series; s++) {
        const kd_series *se = &series[s];
        if (!se->lo || !se->hi)
            continue;
        for (int i = 0; i + 1 < se->n; i++) {
            double xa = PX(se->x[i]), xb = PX(se->x[i + 1]);
            for (int x = (int)ceil(xa); x <= (int)floor(xb); x++) {
                double t = xb > xa ? (x - xa) / (xb - xa) : 0;
                double lo = se->lo[i] + t * (se->lo[i + 1] - se->lo[i]);
                double hi = se->hi[i] + t * (se->hi[i + 1] - se->hi[i]);
                if (isfinite(lo) && isfinite(hi))
                    kd_fill_rect(&c, x, (int)lround(PY(hi)), x, (int)lround(PY(lo)),
                                 kd_palette(s), 0.18);
            }
        }
    }
    for (int s = 0; s < n_series; s++) {
        const kd_series *se = &series[s];
        for (int i = 0; i < se->n; i++) {
            if (!isfinite(se->y[i]))
                continue;
            double x = PX(se->x[i]), y = PY(se->y[i]);
            if (i + 1 < se->n && isfinite(se->y[i + 1]))
                kd_line(&c, x, y, PX(se->x[i + 1]), PY(se->y[i + 1]), kd_palette(s), 2);
            if (se->n <= 30)
                kd_fill_rect(&c, (int)x - 2, (int)y - 2, (int)x + 2, (int)y + 2, kd_palette(s),
                             1.0);
        }
        /* legend */
        int ly = TOP + 10 + s * 16;
        if (ly < HGT - 20) {
            kd_fill_rect(&c, LEFT + pw + 15, ly, LEFT + pw + 35, ly + 6, kd_palette(s), 1.0);
            kd_text(&c, LEFT + pw + 42, ly, se->name ? se->name : "", 0x222222, 1, 0);
        }
    }
#undef PX
#undef PY
    /* frame and labels */
    kd_line(&c, LEFT, TOP, LEFT, TOP + ph, 0x000000, 1);
    kd_line(&c, LEFT, TOP + ph, LEFT + pw, TOP + ph, 0x000000, 1);
    kd_text(&c, LEFT + (pw - kd_text_width(title, 2)) / 2, 12, title, 0x000000, 2, 0);
    kd_text(&c, LEFT + (pw - kd_text_width(xlabel, 1)) / 2, HGT - 25, xlabel, 0x000000, 1, 0);
    kd_text(&c, 15, TOP + (ph + kd_text_width(ylabel, 1)) / 2, ylabel, 0x000000, 1, 1);
    st = kd_canvas_write_png(&c, path);
    kd_canvas_free(&c);
    return st;
}

/* A blue-to-yellow ramp (close to viridis at its ends). */
static uint32_t ramp(double t)
{
    static const double stops[5][3] = {
        {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
    t = fmin(fmax(t, 0), 1) * 4;
    int i = (int)fmin(floor(t), 3);
    double f = t - i;
    uint32_t c = 0;
    for (int k = 0; k < 3; k++)
        c = c << 8 | (uint32_t)lround(stops[i][k] + f * (stops[i + 1][k] - stops[i][k]));
    return c;
}

kdens_status kd_plot_heatmap(const char *path, const char *title, const double *values, int n,
                             double vmin, double vmax, const char *const *labels)
{
    if (n < 1)
        return kd_fail(KDENS_E_ARG, "an empty heatmap");
    int cell = n <= 10 ? 40 : n <= 25 ? 20 : 8, size = cell * n;
    int left = 90, top = 50, w = left + size + 120, h = top + size + 90;
    kd_canvas c;
    kdens_status st = kd_canvas_new(w, h, &c);
    if (st != KDENS_OK)
        return st;
    double span = vmax > vmin ? vmax - vmin : 1;
    char label[64];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double v = values[(size_t)i * n + j], t = (v - vmin) / span;
            kd_fill_rect(&c, left + j * cell, top + i * cell, left + (j + 1) * cell - 1,
                         top + (i + 1) * cell - 1, ramp(t), 1.0);
            if (cell >= 40) {
                snprintf(label, sizeof label, "%.3f", v);
                kd_text(&c, left + j * cell + (cell - kd_text_width(label, 1)) / 2,
                        top + i * cell + cell / 2 - 3, label, t > 0.6 ? 0x000000 : 0xffffff, 1,
                        0);
            }
        }
    for (int i = 0; i < n && cell >= 20; i++) {
        char idx[32];
        const char *name = labels && labels[i] ? labels[i] : (snprintf(idx, sizeof idx, "%d", i), idx);
        snprintf(label, sizeof label, "%.8s", name);
        kd_text(&c, left - 6 - kd_text_width(label, 1), top + i * cell + cell / 2 - 3, label,
                0x222222, 1, 0);
        kd_text(&c, left + i * cell + cell / 2 - 3, top + size + 6 + kd_text_width(label, 1),
                label, 0x222222, 1, 1);
    }
    /* colour bar */
    int bx = left + size + 30;
    for (int y = 0; y < size; y++)
        kd_fill_rect(&c, bx, top + y, bx + 20, top + y, ramp(1.0 - (double)y / (size - 1 ? size - 1 : 1)), 1.0);
    snprintf(label, sizeof label, "%.3f", vmax);
    kd_text(&c, bx + 26, top, label, 0x222222, 1, 0);
    snprintf(label, sizeof label, "%.3f", vmin);
    kd_text(&c, bx + 26, top + size - 7, label, 0x222222, 1, 0);
    kd_text(&c, (w - kd_text_width(title, 2)) / 2, 14, title, 0x000000, 2, 0);
    st = kd_canvas_write_png(&c, path);
    kd_canvas_free(&c);
    return st;
}
