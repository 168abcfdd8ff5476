/* Helpers shared by the kdens tool's commands. */
#ifndef KDENS_CLI_H
#define KDENS_CLI_H

#include <kdens.h>

/* Print "kdens: what: status: message" and return 1. */
int cli_fail(const char *what, kdens_status st);
/* Open the training part of a dataset given as a preset name or a folder
 * (ROOT/train/<class>/... when ROOT/train exists, else ROOT/<class>/...).
 * *name receives the dataset's name for the workspace (preset or folder
 * base name). */
kdens_status cli_open_dataset(const char *spec, int height, int width, kdens_color color,
                              kdens_dataset **out, char *name, size_t name_size);
/* The test part of a dataset spec: a preset's test set, or SPEC/test of an
 * image folder, decoded to height x width x channels (a model's input). */
kdens_status cli_open_test(const char *spec, int height, int width, int channels,
                           kdens_dataset **test);
kdens_status cli_open_test_for(const char *spec, const kdens_model *m, kdens_dataset **test);
/* After kdens split (W/<name>/train.csv exists): *all replaced by its
 * training part, so that subsets and baselines never see validation data. */
kdens_status cli_training_pool(const char *workdir, const char *name, kdens_dataset **all);
/* Training and validation parts of pool: the manifests W/<name>/train.csv
 * and val.csv of kdens split when both exist, else a seeded 10% split. */
kdens_status cli_open_parts(const char *workdir, const char *name, const kdens_dataset *pool,
                            uint64_t seed, kdens_dataset **train, kdens_dataset **val);
/* mkdir -p */
int cli_mkdirs(const char *path);

int cmd_subset(int argc, char **argv);
int cmd_split(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_teachers(int argc, char **argv);
int cmd_ensemble(int argc, char **argv);
int cmd_diversity(int argc, char **argv);
int cmd_vote(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_pipeline(int argc, char **argv);
extern const char *const usage_subset, *const usage_split, *const usage_train, *const usage_eval,
    *const usage_teachers, *const usage_ensemble, *const usage_diversity, *const usage_vote, *const usage_distill, *const usage_pipeline;

#endif
