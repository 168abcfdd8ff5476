/* onnx_teachers: distil teachers trained elsewhere -- PyTorch or Keras
 * models written as ONNX files -- into one libkdens student, then write the
 * student as .kdm (to embed in C with libkdens) and as .onnx (for ONNX
 * Runtime or any other runtime).  docs/guide.md tells the whole story.
 *
 *   make ONNX=1
 *   python3 examples/torch_teachers.py --out teachers     # PyTorch teachers
 *   cc onnx_teachers.c $(pkg-config --cflags --libs kdens-onnx) -o onnx_teachers
 *   ./onnx_teachers --out student teachers/t0.onnx teachers/t1.onnx teachers/t2.onnx
 *
 * Options: --data fmnist (a preset, the default) or a folder with train/
 * and test/ class folders; --arch NAME the student's architecture (default
 * test); --mode output_avg (or any kdens_distill_mode_from_name name);
 * --epochs E (default 5).  The teachers must take the data's images as raw
 * pixels 0..255 (torch_teachers.py shows how) and have its class count. */
#define _POSIX_C_SOURCE 200809L
#include <kdens.h>
#include <kdens_onnx.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int fail(const char *what)
{
    fprintf(stderr, "onnx_teachers: %s: %s\n", what, kdens_errmsg());
    return 1;
}

static void show_log(kdens_log_level level, const char *message, void *user)
{
    (void)user;
    if (level <= KDENS_LOG_INFO)
        printf("%s\n", message);
    fflush(stdout);
}

/* The training and test parts: a preset, or DIR/train and DIR/test decoded
 * at the teachers' input shape. */
static kdens_status open_data(const char *data, const kdens_model *t0, kdens_dataset **train,
                              kdens_dataset **test)
{
    struct stat sb;
    if (stat(data, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return kdens_dataset_preset(data, NULL, train, test);
    int h, w, c;
    kdens_model_input_shape(t0, &h, &w, &c);
    kdens_color color = c == 1 ? KDENS_COLOR_GRAY : KDENS_COLOR_RGB;
    char path[4096];
    snprintf(path, sizeof path, "%s/train", data);
    kdens_status st = kdens_dataset_load_folder(path, h, w, color, 0, train);
    snprintf(path, sizeof path, "%s/test", data);
    if (st == KDENS_OK)
        st = kdens_dataset_load_folder(path, h, w, color, 0, test);
    return st;
}

int main(int argc, char **argv)
{
    const char *data = "fmnist", *arch = "test", *mode_name = "output_avg", *out = NULL;
    int epochs = 5, first = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--data") && v) data = v, i++;
        else if (!strcmp(a, "--arch") && v) arch = v, i++;
        else if (!strcmp(a, "--mode") && v) mode_name = v, i++;
        else if (!strcmp(a, "--epochs") && v) epochs = atoi(v), i++;
        else if (!strcmp(a, "--out") && v) out = v, i++;
        else if (a[0] != '-') {
            first = i;
            break;
        } else
            first = argc + 1; /* an unknown option */
    }
    if (!out || first >= argc) {
        fprintf(stderr, "usage: onnx_teachers [--data fmnist|DIR] [--arch A] [--mode M] "
                        "[--epochs E] --out PREFIX TEACHER.onnx...\n");
        return 2;
    }
    kdens_set_log_callback(show_log, NULL);
    kdens_distill_mode mode;
    if (kdens_distill_mode_from_name(mode_name, &mode) != KDENS_OK)
        return fail(mode_name);
    /* From here on kdens_model_load -- and kdens_ensemble_add -- read .onnx. */
    if (kdens_onnx_enable() != KDENS_OK)
        return fail("kdens_onnx_enable");

    kdens_ensemble *teachers = NULL;
    kdens_dataset *train = NULL, *test = NULL, *fit = NULL, *val = NULL;
    kdens_model *tmpl = NULL, *student = NULL;
    kdens_distiller *d = NULL;
    int rc = 0;
    if (kdens_ensemble_create(&teachers) != KDENS_OK)
        return fail("ensemble");
    for (int i = first; i < argc && rc == 0; i++)
        if (kdens_ensemble_add(teachers, argv[i]) != KDENS_OK)
            rc = fail(argv[i]);
    const kdens_model *t0 = rc == 0 ? kdens_ensemble_member(teachers, 0) : NULL;
    if (rc == 0 && open_data(data, t0, &train, &test) != KDENS_OK)
        rc = fail(data);
    if (rc == 0 && kdens_dataset_split(train, 0.1, 1, &fit, &val) != KDENS_OK)
        rc = fail("validation split");

    /* the teachers as they are, and as an ensemble */
    for (int i = 0; rc == 0 && i < kdens_ensemble_size(teachers); i++) {
        double acc;
        if (kdens_model_evaluate(kdens_ensemble_member(teachers, i), test, 256, NULL, &acc,
                                 NULL, NULL, NULL) != KDENS_OK)
            rc = fail(kdens_ensemble_member_name(teachers, i));
        else
            printf("teacher %s: test accuracy %.4f\n", kdens_ensemble_member_name(teachers, i),
                   acc);
    }
    kdens_predictions *pr = NULL;
    double ens_acc = 0;
    if (rc == 0 && (kdens_ensemble_predict(teachers, test, &pr) != KDENS_OK ||
                    kdens_predictions_accuracy(pr, KDENS_FUSE_MEAN, NULL, 0, &ens_acc) !=
                        KDENS_OK))
        rc = fail("ensemble predictions");
    kdens_predictions_free(pr);
    if (rc == 0)
        printf("ensemble of %d (mean of probabilities): test accuracy %.4f\n",
               kdens_ensemble_size(teachers), ens_acc);

    /* one student distilled from all of them */
    int h, w, c;
    if (rc == 0)
        kdens_model_input_shape(t0, &h, &w, &c);
    if (rc == 0 && kdens_model_create(arch, h, w, c, kdens_model_num_classes(t0), 1, &tmpl) !=
                       KDENS_OK)
        rc = fail(arch);
    if (rc == 0 && kdens_distiller_create(teachers, tmpl, mode, fit, val, &d) != KDENS_OK)
        rc = fail("distiller");
    if (rc == 0 && kdens_trainer_set_epochs(kdens_distiller_trainer(d), epochs) != KDENS_OK)
        rc = fail("epochs");
    if (rc == 0 && kdens_distiller_fit(d) != KDENS_OK)
        rc = fail("distillation");
    if (rc == 0 && kdens_distiller_export(d, &student) != KDENS_OK)
        rc = fail("export");
    double acc = 0;
    if (rc == 0 &&
        kdens_model_evaluate(student, test, 256, NULL, &acc, NULL, NULL, NULL) != KDENS_OK)
        rc = fail("student evaluation");
    char path[4096];
    if (rc == 0) {
        printf("student (%s, %s): test accuracy %.4f\n", arch, mode_name, acc);
        snprintf(path, sizeof path, "%s.kdm", out);
        if (kdens_model_save(student, path) != KDENS_OK)
            rc = fail(path);
        else
            printf("wrote %s\n", path);
    }
    if (rc == 0) {
        snprintf(path, sizeof path, "%s.onnx", out);
        if (kdens_onnx_export(student, path) != KDENS_OK)
            rc = fail(path);
        else
            printf("wrote %s\n", path);
    }
    kdens_model_free(student);
    kdens_distiller_free(d);
    kdens_model_free(tmpl);
    kdens_dataset_free(val);
    kdens_dataset_free(fit);
    kdens_dataset_free(test);
    kdens_dataset_free(train);
    kdens_ensemble_free(teachers);
    return rc;
}
