/* Experiment grids (grid.c, grid_plan.c, grid_report.c).  Internal. */
#ifndef KD_GRID_H
#define KD_GRID_H

#include "experiment.h"

#define KD_GRID_MAX_AXIS 16 /* values per axis */

struct kdens_grid {
    char *dataset;                   /* the plan's dataset, for the caller; NULL if absent */
    char *teacher_arch, *student_arch;
    int teachers[KD_GRID_MAX_AXIS], n_teachers;
    double fractions[KD_GRID_MAX_AXIS];
    int n_fractions;
    kdens_distill_mode modes[KD_GRID_MAX_AXIS];
    int n_modes;
    double alphas[KD_GRID_MAX_AXIS], temperatures[KD_GRID_MAX_AXIS];
    int n_alphas, n_temperatures;
    int seeds;                       /* repetitions of every cell */
    uint64_t seed;                   /* the first; repetition r uses seed + r */
    int teacher_epochs, student_epochs, patience; /* patience < 0: the architecture's */
    size_t batch;
    double lr, val_fraction;
    kdens_comm *comm;                /* cells over its ranks; NULL alone */
};

/* One cell of the grid: a student configuration, run with every seed. */
typedef struct grid_cell {
    int n;
    double fraction, alpha, temperature;
    kdens_distill_mode mode;
} grid_cell;

/* Cell i (0 .. students / seeds - 1), the temperature varying fastest and n
 * slowest; false past the last. */
bool kd_grid_cell(const kdens_grid *g, size_t i, grid_cell *c);
/* The distillation job of a cell (names borrowed from g and the arguments). */
void kd_grid_job(const kdens_grid *g, const char *workdir, const char *name, const grid_cell *c,
                 kdens_distill_job *job);
int kd_grid_max_teachers(const kdens_grid *g);
/* WORKDIR/<name>/grid.csv, grid.md and the plots, from the students registered
 * so far (the others are counted as pending). */
kdens_status kd_grid_report(const kdens_grid *g, const char *workdir, const char *name,
                            const kdens_dataset *test);

#endif
