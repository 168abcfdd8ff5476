/* kdens export and kdens import: models exchanged with other frameworks.
 * ONNX is the one format so far; it needs libkdens_onnx (make ONNX=1), which
 * the tool links only when built with it (KDENS_WITH_ONNX), so that a default
 * build needs no protobuf-c.  The help texts are the same in both builds
 * (docs/cli.md). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef KDENS_WITH_ONNX
#include <kdens_onnx.h>
#endif

#ifndef KDENS_WITH_ONNX
static int without_onnx(const char *command)
{
    fprintf(stderr, "kdens %s: this kdens is built without ONNX support; rebuild it with "
            "make ONNX=1\n(make deps ONNX=1 installs what that needs)\n", command);
    return 1;
}
#endif

const char usage_export[] =
    "usage: kdens export --onnx OUT.onnx --model FILE.kdm\n"
    "\n"
    "Writes a saved model as an ONNX file (opset 13) that ONNX Runtime and other\n"
    "runtimes run: input 'input', float [batch, C, H, W] raw pixel values 0..255\n"
    "(the model's input scaling is inside the file); output 'probabilities',\n"
    "float [batch, classes].  Needs the tool built with make ONNX=1.\n"
    "\n"
    "  --onnx OUT.onnx  the ONNX file to write (atomically)\n"
    "  --model FILE.kdm the model to export\n";

int cmd_export(const cli_command *cmd, int argc, char **argv)
{
    const char *onnx = NULL, *model = NULL;
    const cli_option opts[] = {
        OPT_STRING("onnx", &onnx, "OUT.onnx", "the ONNX file to write (atomically)"),
        OPT_STRING("model", &model, "FILE.kdm", "the model to export"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc >= 0)
        return rc;
    if (!onnx || !model) {
        fputs(cmd->usage, stderr);
        return 2;
    }
#ifdef KDENS_WITH_ONNX
    kdens_model *m = NULL;
    kdens_status st = kdens_model_load(model, &m);
    if (st == KDENS_OK)
        st = kdens_onnx_export(m, onnx);
    kdens_model_free(m);
    if (st != KDENS_OK) { /* the library's messages name the file at fault */
        fprintf(stderr, "kdens export: %s\n", kdens_errmsg());
        return 1;
    }
    printf("wrote %s\n", onnx);
    return 0;
#else
    return without_onnx("export");
#endif
}

const char usage_import[] =
    "usage: kdens import --onnx FILE.onnx (--out FILE.kdm | --workdir W --dataset D --arch A)\n"
    "                    [--input-scale S[,S,S]] [--input-offset O[,O,O]]\n"
    "                    [--fraction F] [--uuid U] [--size HxW] [--color gray|rgb]\n"
    "\n"
    "Reads an ONNX image classifier (opset 13 or later, e.g. a PyTorch model written\n"
    "by torch.onnx.export; docs/onnx.md lists the operators) into a libkdens model.\n"
    "--out saves it as a .kdm file.  --workdir registers it as a teacher of dataset\n"
    "D in W/teachers.csv under the architecture name A (the file --out wrote, else\n"
    "the .onnx file itself, as given), measured on D's training, validation and test\n"
    "parts: kdens ensemble, kdens eval and kdens distill --teacher-arch A then use it\n"
    "like a teacher libkdens trained.  Needs the tool built with make ONNX=1.\n"
    "\n"
    "  --input-scale S, --input-offset O\n"
    "                  the input scaling x = pixel * S + O (one value, or one per\n"
    "                  channel; needs --out) of a graph that takes normalised images\n"
    "                  instead of raw pixels 0..255, e.g. torchvision's ToTensor and\n"
    "                  Normalize(mean, std): S = 1/(255 std), O = -mean/std\n"
    "  --fraction F    the fraction of the training data the model saw (default 1)\n"
    "  --uuid U        its registry uuid (default: the file's name without .onnx)\n"
    "  --size HxW, --color gray|rgb  how folder images are decoded (as kdens train)\n";

typedef struct import_args {
    const char *onnx, *out, *workdir, *dataset, *arch, *uuid;
    double fraction;
    int size[2], color;
} import_args;

#ifdef KDENS_WITH_ONNX
/* "S" or "S1,S2,...": 1 or `channels` finite numbers into v[channels]. */
static int parse_per_channel(const char *text, int channels, float *v)
{
    int n = 0;
    for (const char *p = text; n < 16;) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x) || (*end && *end != ','))
            return -1;
        v[n++] = (float)x;
        if (!*end)
            break;
        p = end + 1;
    }
    if (n == 1)
        for (int c = 1; c < channels; c++)
            v[c] = v[0];
    return n == 1 || n == channels ? 0 : -1;
}

/* The model's input scaling from --input-scale / --input-offset. */
static int set_scaling(kdens_model *m, const char *scale, const char *offset)
{
    int h, w, c;
    float s[16], o[16];
    kdens_model_input_shape(m, &h, &w, &c);
    kdens_model_get_input_scaling(m, s, o);
    if (c > 16 || (scale && parse_per_channel(scale, c, s) != 0) ||
        (offset && parse_per_channel(offset, c, o) != 0)) {
        fprintf(stderr, "kdens import: --input-scale and --input-offset take 1 or %d finite "
                "numbers (the model's channels)\n", c);
        return 2;
    }
    kdens_status st = kdens_model_set_input_scaling(m, s, o);
    return st == KDENS_OK ? 0 : cli_fail("input scaling", st);
}

/* The uuid of --uuid, else the file's base name without its suffix. */
static void default_uuid(const char *onnx, char *uuid, size_t size)
{
    const char *base = strrchr(onnx, '/');
    base = base ? base + 1 : onnx;
    snprintf(uuid, size, "%s", base);
    char *dot = strrchr(uuid, '.');
    if (dot && dot != uuid)
        *dot = '\0';
}

/* Register `location` as a teacher of the dataset (kdens_teachers_add). */
static kdens_status register_teacher(const import_args *a, const char *location)
{
    char name[256], uuid[256];
    if (a->uuid)
        snprintf(uuid, sizeof uuid, "%s", a->uuid);
    else
        default_uuid(a->onnx, uuid, sizeof uuid);
    kdens_dataset *pool = NULL, *train = NULL, *val = NULL, *test = NULL;
    kdens_teachers *tc = NULL;
    kdens_status st = cli_open_dataset(a->dataset, a->size[0], a->size[1],
                                       (kdens_color)a->color, &pool, name, sizeof name);
    if (st == KDENS_OK)
        st = cli_open_parts(a->workdir, name, pool, 0, &train, &val);
    if (st == KDENS_OK) {
        int h, w, c;
        kdens_dataset_shape(pool, &h, &w, &c);
        st = cli_open_test(a->dataset, h, w, c, &test);
    }
    if (st == KDENS_OK)
        st = kdens_teachers_create(a->workdir, name, a->arch, train, val, test, &tc);
    if (st == KDENS_OK)
        st = kdens_teachers_add(tc, location, a->fraction, uuid);
    if (st == KDENS_OK)
        printf("registered %s as teacher %s of %s (%s) in %s/teachers.csv\n", location, uuid,
               name, a->arch, a->workdir);
    kdens_teachers_free(tc);
    kdens_dataset_free(test);
    kdens_dataset_free(val);
    kdens_dataset_free(train);
    kdens_dataset_free(pool);
    return st;
}
#endif

int cmd_import(const cli_command *cmd, int argc, char **argv)
{
    import_args a = {.fraction = 1, .color = KDENS_COLOR_RGB};
    const char *scale = NULL, *offset = NULL;
    const cli_option opts[] = {
        OPT_STRING("onnx", &a.onnx, "FILE.onnx", "the ONNX file to read"),
        OPT_STRING("out", &a.out, "FILE.kdm", "the .kdm file to write (atomically)"),
        OPT_STRING("workdir", &a.workdir, "W", "register it in W/teachers.csv"),
        OPT_STRING("dataset", &a.dataset, "D", "the dataset it is a teacher of"),
        OPT_STRING("arch", &a.arch, "A", "its architecture name in the registry"),
        OPT_STRING("input-scale", &scale, "S", "the input scaling's factors"),
        OPT_STRING("input-offset", &offset, "O", "the input scaling's offsets"),
        OPT_DOUBLE("fraction", &a.fraction, "F", 0, 1, CLI_OPEN_MIN,
                   "the fraction of the training data it saw (default 1)"),
        OPT_STRING("uuid", &a.uuid, "U", "its registry uuid"),
        OPT_HW("size", &a.size, "resize folder images (default: keep their size)"),
        OPT_CHOICE("color", &a.color, NULL, cli_colors,
                   "gray or rgb for folder images (default rgb)"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc >= 0)
        return rc;
    int registering = a.workdir || a.dataset || a.arch;
    if (!a.onnx || (!a.out && !registering) ||
        (registering && (!a.workdir || !a.dataset || !a.arch))) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    if ((scale || offset) && !a.out) {
        fputs("kdens import: --input-scale and --input-offset need --out: an .onnx file "
              "cannot carry them\n", stderr);
        return 2;
    }
#ifdef KDENS_WITH_ONNX
    kdens_model *m = NULL;
    kdens_status st = kdens_onnx_import(a.onnx, &m);
    if (st != KDENS_OK) {
        fprintf(stderr, "kdens import: %s\n", kdens_errmsg());
        return 1;
    }
    rc = scale || offset ? set_scaling(m, scale, offset) : 0;
    if (rc == 0 && a.out) {
        kdens_model_set_meta(m, "imported_from", a.onnx);
        st = kdens_model_save(m, a.out);
        if (st == KDENS_OK)
            printf("wrote %s\n", a.out);
        else
            rc = cli_fail(a.out, st);
    }
    kdens_model_free(m);
    if (rc == 0 && registering && (st = register_teacher(&a, a.out ? a.out : a.onnx)) != KDENS_OK)
        rc = cli_fail(a.onnx, st);
    return rc;
#else
    return without_onnx("import");
#endif
}
