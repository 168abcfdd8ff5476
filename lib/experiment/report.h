/* The pipeline's results and the report written from them.  Internal. */
#ifndef KD_REPORT_H
#define KD_REPORT_H

#include "plot.h"

#include "experiment.h"

/* One row of results.csv. */
typedef struct kd_result {
    char kind[16];   /* baseline, teacher, ensemble, student */
    char name[256];  /* teacher uuid (at most 255 bytes), fusion rule or mode */
    double accuracy, loss; /* test set; loss NaN where the rule has none */
    size_t params;
    double ms_per_image;
    char *log;       /* the training log (CSV), NULL for none: the report's once added */
    int32_t *decisions; /* the class decided for every test image (n_test), NULL for
                           none: the report's once added */
    /* McNemar's exact test against the baseline on the same test images:
     * images only this row gets right, only the baseline, the two-sided p
     * (NaN before kd_report_compare, and for the baseline itself) */
    uint64_t wins, losses;
    double p_value;
} kd_result;

/* One candidate pair of loss settings and its student's validation accuracy. */
typedef struct kd_setting_trial {
    double alpha, temperature, val_accuracy;
} kd_setting_trial;

typedef struct kd_report {
    const kdens_pipeline *cfg;
    const char *dir;          /* the workspace (cfg->workdir): the report goes here */
    size_t n_train, n_val, n_test;
    int32_t *labels;          /* the test images' classes (n_test) */
    /* the students' loss: alpha and T, given or chosen on the validation part */
    double alpha, temperature;
    int alpha_chosen, temperature_chosen;
    kd_setting_trial settings[16]; /* the candidate pairs tried */
    int n_settings;
    kd_result *rows;
    int n_rows, cap_rows;
    /* accuracy versus size, for each plotted rule */
    int n_sizes, n_curve_rules;
    int sizes[64];
    kdens_fusion curve_rules[8];
    double curve_mean[8][64], curve_ci[8][64];
    /* the ensemble's members: agreement, oracle, votes */
    int members;
    double *agreement;        /* members x members */
    char (*member_names)[40];
    double oracle;
    kdens_vote_stats votes;
    kdens_vote_stats votes_by_size[64]; /* for sizes[], over random sub-ensembles */
    double seconds;           /* the whole run */
} kd_report;

/* Add a row; the report takes row->log (and frees it, even on failure). */
kdens_status kd_report_add(kd_report *r, const kd_result *row);
/* Every row with decisions against the baseline's (McNemar). */
kdens_status kd_report_compare(kd_report *r);
/* results.csv, the plots, report.md and report.html into r->dir. */
kdens_status kd_report_write(const kd_report *r);
void kd_report_free(kd_report *r);

#endif
