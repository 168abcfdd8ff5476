/* kdens quantize: a saved float model to an int8 model file
 * (kdens_model_quantize), calibrated on images of a dataset's training part. */
#include "cli.h"

#include <stdio.h>

const char usage_quantize[] =
    "usage: kdens quantize --model FILE.kdm --calibrate D --out OUT.kdm\n"
    "                      [--samples N] [--method percentile|minmax]\n"
    "\n"
    "Quantises a trained model to int8 for inference: batch norms folded into the\n"
    "convolutions before them, int8 weights per output channel, uint8 activations\n"
    "whose ranges are calibrated on N images of the training part of D (evenly\n"
    "spaced over it). Convolutions, dense layers, residual adds and the max pooling\n"
    "between them run in int8, the other layers in float. kdens eval on both files\n"
    "compares their accuracy; the int8 file predicts through the same API and\n"
    "cannot be trained.\n"
    "\n"
    "  --model FILE.kdm  the float model\n"
    "  --calibrate D     a preset (mnist, fmnist, ...) or an image folder\n"
    "  --out OUT.kdm     the int8 model to write (atomically)\n"
    "  --samples N       calibration images (default 1000)\n"
    "  --method M        percentile (default: 0.01% clipped at each end) or minmax\n";

static const cli_choice methods[] = {
    {"percentile", KDENS_CALIB_PERCENTILE},
    {"minmax", KDENS_CALIB_MINMAX},
    {NULL, 0},
};

int cmd_quantize(const cli_command *cmd, int argc, char **argv)
{
    const char *model = NULL, *dataset = NULL, *out = NULL;
    size_t samples = 1000;
    int method = KDENS_CALIB_PERCENTILE;
    const cli_option opts[] = {
        OPT_STRING("model", &model, "FILE.kdm", "the float model"),
        OPT_STRING("calibrate", &dataset, "D", "a preset or an image folder"),
        OPT_STRING("out", &out, "OUT.kdm", "the int8 model to write"),
        OPT_SIZE("samples", &samples, "N", 1, CLI_NOLIMIT, "calibration images"),
        OPT_CHOICE("method", &method, "M", methods, "percentile or minmax"),
        OPT_END,
    };
    int rc = cli_parse(cmd, opts, argc, argv, NULL, 0, NULL);
    if (rc >= 0)
        return rc;
    if (!model || !dataset || !out) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    kdens_model *m = NULL, *q = NULL;
    kdens_dataset *ds = NULL;
    const char *stage = model; /* named should a step fail */
    kdens_status st = kdens_model_load(model, &m);
    if (st == KDENS_OK) {
        int h, w, c;
        char name[256];
        kdens_model_input_shape(m, &h, &w, &c);
        stage = dataset;
        st = cli_open_dataset(dataset, h, w, c == 1 ? KDENS_COLOR_GRAY : KDENS_COLOR_RGB, &ds,
                              name, sizeof name);
    }
    if (st == KDENS_OK) {
        stage = "quantisation";
        st = kdens_model_quantize(m, ds, (kdens_calibration)method, samples, &q);
    }
    if (st == KDENS_OK) {
        stage = out;
        st = kdens_model_save(q, out);
    }
    if (st == KDENS_OK)
        printf("wrote %s (%s; calibrated on %zu images of %s)\n", out,
               kdens_model_get_meta(q, "quantization"),
               samples < kdens_dataset_count(ds) ? samples : kdens_dataset_count(ds), dataset);
    kdens_model_free(q);
    kdens_model_free(m);
    kdens_dataset_free(ds);
    return st == KDENS_OK ? 0 : cli_fail(stage, st);
}
