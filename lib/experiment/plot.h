/* report: a small raster plotting library (line charts with confidence
 * bands, heatmaps) written to PNG through libpng, for the pipeline's
 * report.  Internal; uses core. */
#ifndef KD_PLOT_H
#define KD_PLOT_H

#include "../core/core.h"

typedef struct kd_canvas {
    int w, h;
    uint8_t *rgb; /* w x h x 3, row-major */
} kd_canvas;

kdens_status kd_canvas_new(int w, int h, kd_canvas *c); /* white */
void kd_canvas_free(kd_canvas *c);
/* Colours are 0xRRGGBB; alpha in [0, 1] blends over what is there. */
void kd_fill_rect(kd_canvas *c, int x0, int y0, int x1, int y1, uint32_t color, double alpha);
void kd_line(kd_canvas *c, double x0, double y0, double x1, double y1, uint32_t color,
             int thickness);
/* Text in a 5x7 pixel font scaled by `scale` (letters drawn as capitals);
 * returns its width in pixels.  vertical: rotated 90 degrees, reading up. */
int kd_text(kd_canvas *c, int x, int y, const char *s, uint32_t color, int scale, int vertical);
int kd_text_width(const char *s, int scale);
/* An 8-bit RGB PNG, written atomically. */
kdens_status kd_canvas_write_png(const kd_canvas *c, const char *path);

/* The n-th colour of the series palette. */
uint32_t kd_palette(int n);

/* One line of a chart: n points, optionally a band [lo, hi] around it. */
typedef struct kd_series {
    const char *name;
    int n;
    const double *x, *y;
    const double *lo, *hi; /* both NULL: no band */
} kd_series;

/* A line chart with axes, ticks, labels and a legend. */
kdens_status kd_plot_lines(const char *path, const char *title, const char *xlabel,
                           const char *ylabel, const kd_series *series, int n_series);
/* An n x n heatmap of values in [vmin, vmax] with a colour bar; labels[i]
 * (may be NULL) name the rows and columns. */
kdens_status kd_plot_heatmap(const char *path, const char *title, const double *values, int n,
                             double vmin, double vmax, const char *const *labels);

#endif
