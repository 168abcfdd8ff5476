/* kdens export: a saved model written in another format.  ONNX is the one
 * format so far; it needs libkdens_onnx (make ONNX=1), which the tool links
 * only when built with it (KDENS_WITH_ONNX), so that a default build needs
 * no protobuf-c.  The help text is the same in both builds (docs/cli.md). */
#include "cli.h"

#include <stdio.h>

#ifdef KDENS_WITH_ONNX
#include <kdens_onnx.h>
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
    fputs("kdens export: this kdens is built without ONNX support; rebuild it with "
          "make ONNX=1\n(make deps ONNX=1 installs what that needs)\n",
          stderr);
    return 1;
#endif
}
