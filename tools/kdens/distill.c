/* kdens distill: the student driver of the experiment layer
 * (kdens_distill_job) from the command line. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char usage_distill[] =
    "usage: kdens distill --workdir W --dataset D --arch A [--teacher-arch TA]\n"
    "                     [--teacher FILE ...] [--mode M] [--teachers N] [--fraction F]\n"
    "                     [--repetitions R]\n"
    "                     [--alpha A] [--temperature T] [--fusion RULE]\n"
    "                     [--epochs E] [--batch B] [--lr LR] [--patience P] [--seed S]\n"
    "                     [--schedule constant|cosine] [--augment] [--no-cache]\n"
    "                     [--size HxW] [--color gray|rgb]\n"
    "\n"
    "Distils teachers of W/teachers.csv into students of architecture A: for each\n"
    "of R repetitions, N teachers of architecture TA (default A; of fraction F when\n"
    "given) are sampled with seed S + repetition, a student is trained with the\n"
    "loss alpha * CE + (1 - alpha) * T^2 * KL(teachers_T || student_T), evaluated\n"
    "on the training, validation and test sets, saved as\n"
    "W/<dataset>/students/<name>.kdm (mimic_all students exported single-head) and\n"
    "registered in W/students.csv.  Students already registered are skipped; an\n"
    "interrupted one resumes from its checkpoint.  Training uses W/<dataset>/train.csv\n"
    "and val.csv (kdens split) when they exist, else a seeded 10% validation split;\n"
    "testing uses the test part of D.  Teacher outputs are computed once and\n"
    "cached unless --augment or --no-cache.  --teacher (repeatable) distils the\n"
    "models given as files instead of sampling the registry: .kdm files, or ONNX\n"
    "files (a PyTorch or Keras model; make ONNX=1) taking raw pixels 0..255.\n"
    "\n"
    "  --mode M        output_avg (default), loss_avg, mimic_all, supernet,\n"
    "                  supernet2, fusion or mimic_all_probs\n"
    "  --teachers N    teachers per student (default 5)\n"
    "  --alpha A       weight of the hard-label loss (default 0.5)\n"
    "  --temperature T softening temperature (default 1, the reference)\n"
    "  --fusion RULE   the fusion mode's rule (default borda; kdens vote --list)\n"
    "  --epochs E ...  training settings (default: the student architecture's)\n";

/* The job's settings from the command line: numbers the parser has not
 * seen keep their "not given" values (0, -1, NaN), so that the job keeps its
 * defaults; the others go to the job's setters, which check them. */
typedef struct distill_args {
    const char *student_arch, *teacher_arch;
    int n_teachers, repetitions, epochs, patience;
    double fraction, lr;
    float alpha, temperature;
    size_t batch;
    uint64_t seed;
    kdens_distill_mode mode;
    kdens_fusion fusion;
    int schedule, cache;
    const kdens_augment *augment;
    cli_strings teachers; /* --teacher files */
} distill_args;

static kdens_status configure(kdens_distill_job *job, const distill_args *a)
{
    kdens_status st = KDENS_OK;
    for (int i = 0; st == KDENS_OK && i < a->teachers.n; i++)
        st = kdens_distill_job_add_teacher(job, a->teachers.items[i]);
    /* after the files: a count that differs from theirs is refused by the run */
    if (st == KDENS_OK && (a->n_teachers != INT_MIN || a->teachers.n == 0))
        st = kdens_distill_job_set_teachers(job, a->n_teachers == INT_MIN ? 5 : a->n_teachers);
    if (st == KDENS_OK)
        st = kdens_distill_job_set_fraction(job, a->fraction);
    if (st == KDENS_OK)
        st = kdens_distill_job_set_repetitions(job, a->repetitions);
    if (st == KDENS_OK)
        st = kdens_distill_job_set_mode(job, a->mode);
    if (st == KDENS_OK)
        st = kdens_distill_job_set_fusion(job, a->fusion);
    if (st == KDENS_OK)
        st = kdens_distill_job_set_alpha(job, a->alpha);
    if (st == KDENS_OK)
        st = kdens_distill_job_set_temperature(job, a->temperature);
    if (st == KDENS_OK && a->epochs > 0)
        st = kdens_distill_job_set_epochs(job, a->epochs);
    if (st == KDENS_OK && a->batch > 0)
        st = kdens_distill_job_set_batch(job, a->batch);
    if (st == KDENS_OK && a->lr > 0)
        st = kdens_distill_job_set_lr(job, a->lr);
    if (st == KDENS_OK && a->patience >= 0)
        st = kdens_distill_job_set_patience(job, a->patience);
    if (st == KDENS_OK)
        st = kdens_distill_job_set_schedule(job, (kdens_schedule)a->schedule);
    if (st == KDENS_OK)
        st = kdens_distill_job_set_seed(job, a->seed);
    if (st == KDENS_OK)
        st = kdens_distill_job_set_cache(job, a->cache);
    if (st == KDENS_OK)
        st = kdens_distill_job_set_augment(job, a->augment);
    return st;
}

int cmd_distill(const cli_command *cmd, int argc, char **argv)
{
    distill_args a = {.n_teachers = INT_MIN, .repetitions = 1, .patience = -1, .alpha = 0.5f,
                      .temperature = 1.0f, .mode = KDENS_DISTILL_OUTPUT_AVG,
                      .fusion = KDENS_FUSE_BORDA, .schedule = KDENS_SCHEDULE_CONSTANT,
                      .cache = 1};
    const char *dataset = NULL, *workdir = NULL, *mode = NULL, *fusion = NULL;
    int augment = 0, no_cache = 0, size[2] = {0, 0}, color = KDENS_COLOR_RGB;
    /* The job's values go to its setters as they are: they check them. */
    const double any = CLI_NOLIMIT;
    const cli_option opts[] = {
        OPT_STRING("workdir", &workdir, "W", "the workspace of W/teachers.csv"),
        OPT_STRING("dataset", &dataset, "D", "the dataset (a preset or an image folder)"),
        OPT_STRING("arch", &a.student_arch, "A", "the students' architecture"),
        OPT_STRING("teacher-arch", &a.teacher_arch, "TA", "the teachers' (default A)"),
        OPT_STRINGS("teacher", &a.teachers, "FILE", "a teacher given as a file (repeatable)"),
        OPT_STRING("mode", &mode, "M", "the distillation mode (default output_avg)"),
        OPT_INT("teachers", &a.n_teachers, "N", -any, any, "teachers per student (default 5)"),
        OPT_DOUBLE("fraction", &a.fraction, "F", -any, any, 0, "the teachers' fraction"),
        OPT_INT("repetitions", &a.repetitions, "R", -any, any, "students (default 1)"),
        OPT_FLOAT("alpha", &a.alpha, "A", -any, any, 0,
                  "weight of the hard-label loss (default 0.5)"),
        OPT_FLOAT("temperature", &a.temperature, "T", -any, any, 0,
                  "softening temperature (default 1)"),
        OPT_STRING("fusion", &fusion, "RULE", "the fusion mode's rule (default borda)"),
        OPT_INT("epochs", &a.epochs, "E", 1, any, "epochs (default: the architecture's)"),
        OPT_SIZE("batch", &a.batch, "B", 1, any, "batch size (default: the architecture's)"),
        OPT_DOUBLE("lr", &a.lr, "LR", 0, any, CLI_OPEN_MIN,
                   "learning rate (default: the architecture's)"),
        OPT_INT("patience", &a.patience, "P", 0, any,
                "early-stopping patience, 0 none (default: the architecture's)"),
        OPT_U64("seed", &a.seed, "S", "seed; repetition r samples with S + r"),
        OPT_CHOICE("schedule", &a.schedule, NULL, cli_schedules,
                   "the learning-rate schedule (default constant)"),
        OPT_FLAG("augment", &augment, "the dataset preset's augmentation (no cache)"),
        OPT_FLAG("no-cache", &no_cache, "compute the teachers' outputs every epoch"),
        OPT_HW("size", &size, "resize folder images (default: keep their size)"),
        OPT_CHOICE("color", &color, NULL, cli_colors,
                   "gray or rgb for folder images (default rgb)"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc >= 0)
        return rc;
    kdens_status st = KDENS_OK;
    if (mode && (st = kdens_distill_mode_from_name(mode, &a.mode)) != KDENS_OK)
        return cli_fail(mode, st);
    if (fusion && (st = kdens_fusion_from_name(fusion, &a.fusion)) != KDENS_OK)
        return cli_fail(fusion, st);
    a.cache = !no_cache;
    if (!dataset || !workdir || !a.student_arch) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    if (!a.teacher_arch)
        a.teacher_arch = a.student_arch;
    char name[256];
    kdens_dataset *pool = NULL, *train = NULL, *val = NULL, *test = NULL;
    kdens_augment *aug = NULL;
    kdens_distill_job *job = NULL;
    st = cli_open_dataset(dataset, size[0], size[1], (kdens_color)color, &pool, name, sizeof name);
    if (st == KDENS_OK)
        st = cli_open_parts(workdir, name, pool, a.seed, &train, &val);
    /* under mpirun: rank 0's workspace decides the parts; the students train
     * data-parallel, rank 0 writes */
    kdens_comm *comm = cli_comm();
    bool lead = kdens_comm_rank(comm) == 0;
    st = kdens_comm_agree(comm, st);
    if (st == KDENS_OK)
        st = cli_share_view(pool, &train);
    if (st == KDENS_OK)
        st = cli_share_view(pool, &val);
    int h, w, c;
    if (st == KDENS_OK) {
        kdens_dataset_shape(pool, &h, &w, &c);
        st = cli_open_test(dataset, h, w, c, &test);
    }
    st = kdens_comm_agree(comm, st);
    if (st == KDENS_OK && augment && kdens_augment_preset(name, &aug) != KDENS_OK)
        fprintf(stderr, "kdens: no augmentation policy for '%s'; training without\n", name);
    const char *stage = st == KDENS_OK ? "distill" : dataset; /* named should it fail */
    a.augment = aug;
    int done = 0;
    char student_arch[256], teacher_arch[256];
    if (st == KDENS_OK)
        st = lead ? cli_workspace_arch(a.student_arch, workdir, name, student_arch,
                                       sizeof student_arch)
                  : cli_arch_name(a.student_arch, student_arch, sizeof student_arch);
    if (st == KDENS_OK)
        st = lead ? cli_workspace_arch(a.teacher_arch, workdir, name, teacher_arch,
                                       sizeof teacher_arch)
                  : cli_arch_name(a.teacher_arch, teacher_arch, sizeof teacher_arch);
    st = kdens_comm_agree(comm, st);
    if (st == KDENS_OK)
        st = kdens_distill_job_create(workdir, name, teacher_arch, student_arch, &job);
    if (st == KDENS_OK)
        st = configure(job, &a);
    if (st == KDENS_OK)
        st = kdens_distill_job_set_comm(job, comm);
    if (st == KDENS_OK)
        st = kdens_distill_job_run(job, train, val, test, &done);
    kdens_distill_job_free(job);
    free(a.teachers.items);
    kdens_augment_free(aug);
    kdens_dataset_free(test);
    kdens_dataset_free(val);
    kdens_dataset_free(train);
    kdens_dataset_free(pool);
    if (st != KDENS_OK)
        return cli_fail(stage, st);
    if (lead)
        printf("trained %d students (%s, %d teachers each); registry %s/students.csv\n", done,
               kdens_distill_mode_name(a.mode),
               a.teachers.n ? a.teachers.n : a.n_teachers == INT_MIN ? 5 : a.n_teachers, workdir);
    return 0;
}
