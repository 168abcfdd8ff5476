/* kdens distill: the reference's distillation experiment driver
 * (kdens_distill_run) from the command line. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const usage_distill =
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

int cmd_distill(int argc, char **argv)
{
    kdens_distill_job job;
    kdens_distill_job_default(&job);
    const char *dataset = NULL, *workdir = NULL;
    int augment = 0, height = 0, width = 0;
    kdens_color color = KDENS_COLOR_RGB;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char extra;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_distill, stdout);
            return 0;
        } else if (!strcmp(a, "--augment")) {
            augment = 1;
            continue;
        } else if (!strcmp(a, "--no-cache")) {
            job.cache = 0;
            continue;
        } else if (!v || a[0] != '-') {
            fprintf(stderr, "kdens: unexpected or incomplete argument '%s'\n%s", a,
                    usage_distill);
            return 2;
        }
        i++;
        kdens_status st = KDENS_OK;
        if (!strcmp(a, "--workdir")) workdir = v;
        else if (!strcmp(a, "--dataset")) dataset = v;
        else if (!strcmp(a, "--arch")) job.student_arch = v;
        else if (!strcmp(a, "--teacher-arch")) job.teacher_arch = v;
        else if (!strcmp(a, "--mode")) st = kdens_distill_mode_from_name(v, &job.mode);
        else if (!strcmp(a, "--fusion")) st = kdens_fusion_from_name(v, &job.fusion);
        else if (!strcmp(a, "--teachers")) job.n_teachers = atoi(v);
        else if (!strcmp(a, "--fraction")) job.fraction = atof(v);
        else if (!strcmp(a, "--repetitions")) job.repetitions = atoi(v);
        else if (!strcmp(a, "--alpha")) job.alpha = (float)atof(v);
        else if (!strcmp(a, "--temperature")) job.temperature = (float)atof(v);
        else if (!strcmp(a, "--epochs")) job.epochs = atoi(v);
        else if (!strcmp(a, "--batch")) job.batch = (size_t)atol(v);
        else if (!strcmp(a, "--lr")) job.lr = atof(v);
        else if (!strcmp(a, "--patience")) job.patience = atoi(v);
        else if (!strcmp(a, "--seed")) job.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--schedule")) {
            if (strcmp(v, "constant") && strcmp(v, "cosine")) {
                fprintf(stderr, "kdens: --schedule is constant or cosine, not '%s'\n", v);
                return 2;
            }
            job.schedule = !strcmp(v, "cosine") ? KDENS_SCHEDULE_COSINE : KDENS_SCHEDULE_CONSTANT;
        }
        else if (!strcmp(a, "--color")) color = !strcmp(v, "gray") ? KDENS_COLOR_GRAY : KDENS_COLOR_RGB;
        else if (!strcmp(a, "--size")) {
            if (sscanf(v, "%dx%d%c", &height, &width, &extra) != 2) {
                fprintf(stderr, "kdens: --size wants HxW, got '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "kdens: unexpected argument '%s'\n%s", a, usage_distill);
            return 2;
        }
        if (st != KDENS_OK)
            return cli_fail(v, st);
    }
    if (!dataset || !workdir || !job.student_arch) {
        fputs(usage_distill, stderr);
        return 2;
    }
    if (!job.teacher_arch)
        job.teacher_arch = job.student_arch;
    char name[256];
    kdens_dataset *pool = NULL, *train = NULL, *val = NULL, *test = NULL;
    kdens_augment *aug = NULL;
    kdens_status st = cli_open_dataset(dataset, height, width, color, &pool, name, sizeof name);
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
