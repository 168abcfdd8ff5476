/* A program built against the installed libkdens_onnx through pkg-config
 * kdens-onnx (no protobuf-c flags): exports a model to ONNX, imports it
 * back and compares the predictions. */
#include <kdens.h>
#include <kdens_onnx.h>

#include <math.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "consumer.onnx";
    kdens_model *m = NULL, *back = NULL;
    if (kdens_model_create("test", 8, 8, 1, 4, 1, &m) != KDENS_OK ||
        kdens_onnx_export(m, path) != KDENS_OK || kdens_onnx_import(path, &back) != KDENS_OK) {
        fprintf(stderr, "consumer_onnx: %s\n", kdens_errmsg());
        return 1;
    }
    unsigned char img[64];
    for (int i = 0; i < 64; i++)
        img[i] = (unsigned char)(i * 4);
    float p[4], q[4];
    int rc = kdens_model_predict_u8(m, img, 1, p) != KDENS_OK ||
             kdens_model_predict_u8(back, img, 1, q) != KDENS_OK;
    for (int k = 0; k < 4 && !rc; k++)
        rc = fabsf(p[k] - q[k]) > 1e-6f;
    kdens_model_free(m);
    kdens_model_free(back);
    puts(rc ? "differ" : "ok");
    return rc;
}
