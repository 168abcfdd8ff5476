/* kdens distill: the reference's distillation experiment driver
 * (kdens_distill_run) from the command line. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char usage_distill[] =
    "usage: kdens distill --workdir W --dataset D --arch A [--teacher-arch TA]\n"
    "                     [--mode M] [--teachers N] [--fraction F] [--repetitions R]\n"
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
    "cached unless --augment or --no-cache.\n"
    "\n"
    "  --mode M        output_avg (default), loss_avg, mimic_all, supernet,\n"
    "                  supernet2 or fusion\n"
    "  --teachers N    teachers per student (default 5)\n"
    "  --alpha A       weight of the hard-label loss (default 0.5)\n"
    "  --temperature T softening temperature (default 1, the reference)\n"
    "  --fusion RULE   the fusion mode's rule (default borda; kdens vote --list)\n"
    "  --epochs E ...  training settings (default: the student architecture's)\n";

int cmd_distill(const cli_command *cmd, int argc, char **argv)
{
    kdens_distill_job job;
    kdens_distill_job_default(&job);
    const char *dataset = NULL, *workdir = NULL, *mode = NULL, *fusion = NULL;
    int augment = 0, no_cache = 0, size[2] = {0, 0}, color = KDENS_COLOR_RGB,
        schedule = (int)job.schedule;
    /* The job's numbers go to kdens_distill_run as they are: it checks them. */
    const double any = CLI_NOLIMIT;
    const cli_option opts[] = {
        OPT_STRING("workdir", &workdir, "W", "the workspace of W/teachers.csv"),
        OPT_STRING("dataset", &dataset, "D", "the dataset (a preset or an image folder)"),
        OPT_STRING("arch", &job.student_arch, "A", "the students' architecture"),
        OPT_STRING("teacher-arch", &job.teacher_arch, "TA", "the teachers' (default A)"),
        OPT_STRING("mode", &mode, "M", "the distillation mode (default output_avg)"),
        OPT_INT("teachers", &job.n_teachers, "N", -any, any, "teachers per student (default 5)"),
        OPT_DOUBLE("fraction", &job.fraction, "F", -any, any, 0, "the teachers' fraction"),
        OPT_INT("repetitions", &job.repetitions, "R", -any, any, "students (default 1)"),
        OPT_FLOAT("alpha", &job.alpha, "A", -any, any, 0,
                  "weight of the hard-label loss (default 0.5)"),
        OPT_FLOAT("temperature", &job.temperature, "T", -any, any, 0,
                  "softening temperature (default 1)"),
        OPT_STRING("fusion", &fusion, "RULE", "the fusion mode's rule (default borda)"),
        OPT_INT("epochs", &job.epochs, "E", -any, any, "epochs (default: the architecture's)"),
        OPT_SIZE("batch", &job.batch, "B", 0, any, "batch size (default: the architecture's)"),
        OPT_DOUBLE("lr", &job.lr, "LR", -any, any, 0,
                   "learning rate (default: the architecture's)"),
        OPT_INT("patience", &job.patience, "P", -any, any, "early-stopping patience"),
        OPT_U64("seed", &job.seed, "S", "seed; repetition r samples with S + r"),
        OPT_CHOICE("schedule", &schedule, NULL, cli_schedules,
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
    if (mode && (st = kdens_distill_mode_from_name(mode, &job.mode)) != KDENS_OK)
        return cli_fail(mode, st);
    if (fusion && (st = kdens_fusion_from_name(fusion, &job.fusion)) != KDENS_OK)
        return cli_fail(fusion, st);
    job.schedule = (kdens_schedule)schedule;
    if (no_cache)
        job.cache = 0;
    if (!dataset || !workdir || !job.student_arch) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    if (!job.teacher_arch)
        job.teacher_arch = job.student_arch;
    char name[256];
    kdens_dataset *pool = NULL, *train = NULL, *val = NULL, *test = NULL;
    kdens_augment *aug = NULL;
    st = cli_open_dataset(dataset, size[0], size[1], (kdens_color)color, &pool, name, sizeof name);
    if (st == KDENS_OK)
        st = cli_open_parts(workdir, name, pool, job.seed, &train, &val);
    int h, w, c;
    if (st == KDENS_OK) {
        kdens_dataset_shape(pool, &h, &w, &c);
        st = cli_open_test(dataset, h, w, c, &test);
    }
    if (st == KDENS_OK && augment && kdens_augment_preset(name, &aug) != KDENS_OK)
        fprintf(stderr, "kdens: no augmentation policy for '%s'; training without\n", name);
    if (st != KDENS_OK)
        return cli_fail(dataset, st);
    job.workdir = workdir;
    job.dataset = name;
    job.augment = aug;
    int done = 0;
    st = kdens_distill_run(&job, train, val, test, &done);
    kdens_augment_free(aug);
    kdens_dataset_free(test);
    kdens_dataset_free(val);
    kdens_dataset_free(train);
    kdens_dataset_free(pool);
    if (st != KDENS_OK)
        return cli_fail("distill", st);
    printf("trained %d students (%s, %d teachers each); registry %s/students.csv\n", done,
           kdens_distill_mode_name(job.mode), job.n_teachers, workdir);
    return 0;
}
