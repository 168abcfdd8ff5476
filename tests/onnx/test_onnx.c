/* The ONNX export checked by others (make check-onnx):
 *  - every built-in architecture, a spec with every layer family and one
 *    of dilated convolutions are exported;
 *  - ONNX's own checker (python3-onnx, tests/onnx/check_onnx.py) accepts
 *    every file;
 *  - ONNX Runtime (onnxruntime-node, tests/onnx/run_ort.js) gives the
 *    probabilities kdens_model_predict_u8 gives on the same random pixels,
 *    within 1e-4;
 *  - the import reads every exported file back into a model whose
 *    predictions equal the original's within 1e-6, and refuses corrupt,
 *    truncated and unsupported files with clear errors.
 * The two outside tools are skipped with a message when missing (make deps
 * ONNX=1 installs them).  Weights are randomised beyond their
 * initialisation (batch-norm statistics, biases, input scaling) so that no
 * parameter is written as a no-op by chance. */
#include "../testutil.h"

#include "kdens_onnx.h"
#include "data/data.h"
#include "ensemble/ensemble.h"
#include "nn/nn.h"
#include "onnx.pb-c.h"

#include <math.h>

#define N_SAMPLES 3
#define CLASSES 10
#define TOLERANCE 1e-4
#define ROUND_TRIP_TOLERANCE 1e-6

/* Every layer family of docs/spec.md, with grouped, strided, padded
 * convolutions, both pool kinds with padding, broadcast multiply, 3-way
 * add, concat, a flatten of a 2-D map and every activation. */
static const char every_layer_spec[] =
    "normalize\n"
    "rescale scale=0.5 offset=0.1\n"
    "conv filters=8 kernel=3 padding=same name=c1\n"
    "bn\n"
    "relu name=r1\n"
    "zeropad pad=1,0,2,1\n"
    "conv filters=8 kernel=3x2 stride=2 groups=2 padding=1,1,0,1 name=c2\n"
    "relu6\n"
    "depthwise kernel=3 padding=same multiplier=2 name=dw\n"
    "hard_swish\n"
    "maxpool size=3 stride=2 padding=same name=mp\n"
    "swish name=sw\n"
    "gap\n"
    "dense units=16\n"
    "sigmoid\n"
    "dense units=16 bias=0\n"
    "hard_sigmoid name=se\n"
    "multiply in=sw,se name=mul\n"
    "avgpool size=2 stride=1 padding=same\n"
    "tanh name=t\n"
    "add in=t,mul,sw name=sum\n"
    "concat in=sum,mul name=cat\n"
    "dropout rate=0.5\n"
    "softmax name=chsoft\n"
    "log\n"
    "flatten\n"
    "bn name=bnflat\n"
    "dense units=classes\n"
    "softmax\n";

/* Dilated convolutions: 'same' padding of a dilated span, rectangular
 * dilation with strides, groups and explicit padding, a dilated depthwise
 * layer (multiplier 2) and a dilated layer of a shape that would take the
 * Winograd kernels undilated. */
static const char dilated_spec[] =
    "conv filters=8 kernel=3 dilation=2 padding=same name=c1\n"
    "bn\n"
    "relu\n"
    "conv filters=16 kernel=3x2 stride=2 dilation=2x3 padding=1,0,2,1 groups=2 name=c2\n"
    "relu6\n"
    "depthwise kernel=3 dilation=3 multiplier=2 padding=same name=dw\n"
    "swish\n"
    "conv filters=32 kernel=3 dilation=2 padding=same name=c3\n"
    "gap\n"
    "dense units=classes name=fc\n"
    "softmax\n";

/* Where the files go: the build folder's onnx-test/. */
static char *out_dir(void)
{
    static char dir[4400];
    snprintf(dir, sizeof dir, "%s/%s/onnx-test", tu_root(), tu_build());
    char cmd[4500];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return dir;
}

static float uniform(uint64_t *s, float lo, float hi)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)((*s >> 40) / 16777216.0);
}

static bool ends_with(const char *s, const char *end)
{
    size_t n = strlen(s), k = strlen(end);
    return n >= k && strcmp(s + n - k, end) == 0;
}

/* Parameters away from their initial values, and a scaling per channel. */
static void randomise(kdens_model *m, uint64_t seed)
{
    for (int p = 0; p < m->n_params; p++) {
        const kd_param *pr = &m->params[p];
        float *w = m->weights + pr->offset;
        for (size_t i = 0; i < pr->count; i++) {
            if (ends_with(pr->name, "variance"))
                w[i] = uniform(&seed, 0.5f, 1.5f);
            else if (ends_with(pr->name, "gamma"))
                w[i] = uniform(&seed, 0.8f, 1.2f);
            else if (ends_with(pr->name, "bias") || ends_with(pr->name, "beta") ||
                     ends_with(pr->name, "mean"))
                w[i] = uniform(&seed, -0.1f, 0.1f);
        }
    }
    float scale[4], offset[4];
    for (int c = 0; c < m->in_c; c++) {
        scale[c] = 1.0f / (127.5f + 10.0f * (float)c);
        offset[c] = -1.0f + 0.05f * (float)c;
    }
    ASSERT_OK(kdens_model_set_input_scaling(m, scale, offset));
}

static bool write_floats(const char *path, const float *x, size_t n)
{
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(x, sizeof(float), n, f) == n;
    return f && fclose(f) == 0 && ok;
}

static bool read_floats(const char *path, float *x, size_t n)
{
    FILE *f = fopen(path, "rb");
    bool ok = f && fread(x, sizeof(float), n, f) == n && fgetc(f) == EOF;
    if (f)
        fclose(f);
    return ok;
}

/* The node and package to run ONNX Runtime, or NULL (with the reason). */
static const char *ort_missing(void)
{
    static char why[200];
    char cmd[4600];
    if (system("command -v node >/dev/null 2>&1") != 0)
        return "node is not installed";
    snprintf(cmd, sizeof cmd,
             "NODE_PATH='%s/%s/onnx-node/node_modules' node -e "
             "\"require('onnxruntime-node')\" >/dev/null 2>&1",
             tu_root(), tu_build());
    if (system(cmd) != 0) {
        snprintf(why, sizeof why, "onnxruntime-node is not in %s/onnx-node", tu_build());
        return why;
    }
    return NULL;
}

/* The largest |difference| between libkdens' probabilities and ONNX
 * Runtime's on N_SAMPLES random images. */
static double compare_with_ort(kdens_model *m, const char *onnx, const char *dir,
                               const char *name, uint64_t seed, double *spread)
{
    int h = m->in_h, w = m->in_w, c = m->in_c;
    size_t pix = (size_t)h * w * c;
    uint8_t *img = malloc(N_SAMPLES * pix);
    float *nchw = malloc(sizeof(float) * N_SAMPLES * pix);
    float *want = malloc(sizeof(float) * N_SAMPLES * CLASSES);
    float *got = malloc(sizeof(float) * N_SAMPLES * CLASSES);
    assert_true(img && nchw && want && got);
    for (size_t i = 0; i < N_SAMPLES * pix; i++)
        img[i] = (uint8_t)(uniform(&seed, 0.0f, 256.0f));
    ASSERT_OK(kdens_model_predict_u8(m, img, N_SAMPLES, want));
    /* the same pixels as ONNX's input: NCHW floats 0..255 */
    for (int n = 0; n < N_SAMPLES; n++)
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    nchw[(((size_t)n * c + ch) * h + y) * w + x] =
                        img[n * pix + ((size_t)y * w + x) * c + ch];
    char in_path[4500], out_path[4500], cmd[14000];
    snprintf(in_path, sizeof in_path, "%s/%s.in", dir, name);
    snprintf(out_path, sizeof out_path, "%s/%s.out", dir, name);
    assert_true(write_floats(in_path, nchw, N_SAMPLES * pix));
    snprintf(cmd, sizeof cmd,
             "NODE_PATH='%s/%s/onnx-node/node_modules' node '%s/tests/onnx/run_ort.js' "
             "'%s' '%s' %d %d %d %d '%s'",
             tu_root(), tu_build(), tu_root(), onnx, in_path, N_SAMPLES, c, h, w, out_path);
    if (system(cmd) != 0)
        fail_msg("%s: ONNX Runtime failed: %s", name, cmd);
    assert_true(read_floats(out_path, got, N_SAMPLES * CLASSES));
    double worst = 0, lo = 1, hi = 0;
    for (int i = 0; i < N_SAMPLES * CLASSES; i++) {
        worst = fmax(worst, fabs((double)got[i] - want[i]));
        lo = fmin(lo, want[i]);
        hi = fmax(hi, want[i]);
    }
    *spread = hi - lo;
    free(img);
    free(nchw);
    free(want);
    free(got);
    return worst;
}

/* The largest |difference| of the probabilities of the model and of its
 * export imported again, on N_SAMPLES random images. */
static double round_trip(kdens_model *m, const char *onnx, uint64_t seed)
{
    kdens_model *back = NULL;
    ASSERT_OK(kdens_onnx_import(onnx, &back));
    int h, w, c;
    ASSERT_OK(kdens_model_input_shape(back, &h, &w, &c));
    assert_true(h == m->in_h && w == m->in_w && c == m->in_c);
    assert_int_equal(kdens_model_num_classes(back), m->classes);
    size_t pix = (size_t)h * w * c;
    uint8_t *img = malloc(N_SAMPLES * pix);
    float *want = malloc(sizeof(float) * N_SAMPLES * CLASSES);
    float *got = malloc(sizeof(float) * N_SAMPLES * CLASSES);
    assert_true(img && want && got);
    for (size_t i = 0; i < N_SAMPLES * pix; i++)
        img[i] = (uint8_t)(uniform(&seed, 0.0f, 256.0f));
    ASSERT_OK(kdens_model_predict_u8(m, img, N_SAMPLES, want));
    ASSERT_OK(kdens_model_predict_u8(back, img, N_SAMPLES, got));
    double worst = 0;
    for (int i = 0; i < N_SAMPLES * CLASSES; i++)
        worst = fmax(worst, fabs((double)got[i] - want[i]));
    free(img);
    free(want);
    free(got);
    kdens_model_free(back);
    return worst;
}

/* The exported files, for the checker at the end. */
static char exported[32][4500];
static int n_exported;

/* Export one model, check it against ONNX Runtime, remember the file. */
static void check_export(kdens_model *m, const char *name, uint64_t seed);

/* The same after randomising the weights beyond their initialisation. */
static void export_and_compare(kdens_model *m, const char *name, uint64_t seed)
{
    randomise(m, seed);
    check_export(m, name, seed);
}

/* Export m as it is, check it against ONNX Runtime, remember the file. */
static void check_export(kdens_model *m, const char *name, uint64_t seed)
{
    const char *dir = out_dir();
    assert_true(n_exported < 32);
    char *path = exported[n_exported++];
    snprintf(path, sizeof exported[0], "%s/%s.onnx", dir, name);
    ASSERT_OK(kdens_onnx_export(m, path));
    double back = round_trip(m, path, seed + 2);
    print_message("%-18s %dx%dx%d: export -> import, max |p - p'| = %.3g\n", name, m->in_h,
                  m->in_w, m->in_c, back);
    if (!(back <= ROUND_TRIP_TOLERANCE))
        fail_msg("%s: the imported model's probabilities differ by %g (> %g)", name, back,
                 ROUND_TRIP_TOLERANCE);
    const char *missing = ort_missing();
    if (missing) {
        print_message("%-18s exported; ONNX Runtime comparison skipped: %s (make deps ONNX=1)\n",
                      name, missing);
        return;
    }
    double spread;
    double diff = compare_with_ort(m, path, dir, name, seed + 1, &spread);
    /* the spread shows that the probabilities compared are not all 1/classes */
    print_message("%-18s max |p_kdens - p_onnxruntime| = %.3g (probabilities spread over %.3f)\n",
                  name, diff, spread);
    if (!(diff <= TOLERANCE))
        fail_msg("%s: ONNX Runtime's probabilities differ by %g (> %g)", name, diff, TOLERANCE);
}

static void test_architectures(void **state)
{
    (void)state;
    for (int i = 0; i < kdens_arch_count(); i++) {
        const char *arch = kdens_arch_name(i);
        kdens_model *m = NULL;
        /* 32x32x3 where the architecture allows it, else its minimum */
        int size = 32;
        kdens_status st;
        while ((st = kdens_model_create(arch, size, size, 3, CLASSES, 7, &m)) == KDENS_E_SHAPE &&
               size < 256)
            size *= 2;
        ASSERT_OK(st);
        export_and_compare(m, arch, 100 + (uint64_t)i);
        kdens_model_free(m);
    }
}

/* Students as distillation exports them (a mimic_all student folded to
 * one head, an output_avg one), trained a little from three teachers on
 * random images: their files run in ONNX Runtime as in libkdens. */
static void test_distilled_students(void **state)
{
    (void)state;
    enum { N = 24, S = 16 };
    kdens_dataset *ds;
    ASSERT_OK(kd_dataset_new(N, S, S, 3, CLASSES, &ds));
    uint64_t seed = 5;
    for (size_t i = 0; i < (size_t)N * S * S * 3; i++)
        ds->store->pixels[i] = (uint8_t)uniform(&seed, 0.0f, 256.0f);
    for (size_t i = 0; i < N; i++)
        ds->store->labels[i] = (int32_t)(i % CLASSES);
    kdens_ensemble *ens;
    ASSERT_OK(kdens_ensemble_create(&ens));
    for (int t = 0; t < 3; t++) {
        kdens_model *m;
        ASSERT_OK(kdens_model_create("test", S, S, 3, CLASSES, 40 + (uint64_t)t, &m));
        randomise(m, 50 + (uint64_t)t);
        char name[16];
        snprintf(name, sizeof name, "t%d", t);
        ASSERT_OK(kd_ensemble_adopt(ens, m, name));
    }
    kdens_distill_mode modes[2] = {KDENS_DISTILL_MIMIC_ALL, KDENS_DISTILL_OUTPUT_AVG};
    for (int k = 0; k < 2; k++) {
        kdens_model *tmpl, *student;
        kdens_distiller *d;
        ASSERT_OK(kdens_model_create("test", S, S, 3, CLASSES, 60, &tmpl));
        ASSERT_OK(kdens_distiller_create(ens, tmpl, modes[k], ds, NULL, &d));
        ASSERT_OK(kdens_distiller_set_loss(d, 0.5, 2.0));
        ASSERT_OK(kdens_trainer_set_epochs(kdens_distiller_trainer(d), 2));
        ASSERT_OK(kdens_trainer_set_batch(kdens_distiller_trainer(d), 8));
        ASSERT_OK(kdens_distiller_fit(d));
        ASSERT_OK(kdens_distiller_export(d, &student));
        char name[40];
        snprintf(name, sizeof name, "student_%s", kdens_distill_mode_name(modes[k]));
        check_export(student, name, 70 + (uint64_t)k);
        kdens_model_free(student);
        kdens_distiller_free(d);
        kdens_model_free(tmpl);
    }
    kdens_ensemble_free(ens);
    kdens_dataset_free(ds);
}

static void test_every_layer(void **state)
{
    (void)state;
    kdens_model *m = NULL;
    ASSERT_OK(kdens_model_from_spec(every_layer_spec, 12, 10, 3, CLASSES, 3, &m));
    bool seen[KD_L_COUNT] = {false};
    for (int i = 0; i < m->n_nodes; i++)
        seen[m->nodes[i].type] = true;
    for (int t = 0; t < KD_L_COUNT; t++)
        if (!seen[t])
            fail_msg("the spec lacks layer type %d", t);
    export_and_compare(m, "every_layer", 11);
    kdens_model_free(m);
    /* one channel, an output written straight by a dense layer, named as the
     * graph's output is */
    ASSERT_OK(kdens_model_from_spec("conv filters=4 kernel=3\nflatten\n"
                                    "dense units=classes name=probabilities\n",
                                    6, 5, 1, CLASSES, 4, &m));
    export_and_compare(m, "no_softmax_gray", 12);
    kdens_model_free(m);
}

static void test_dilated(void **state)
{
    (void)state;
    kdens_model *m = NULL;
    ASSERT_OK(kdens_model_from_spec(dilated_spec, 16, 14, 3, CLASSES, 5, &m));
    /* logits spread wide: probabilities far from 1/classes */
    kd_param *fc = kd_model_param(m, "fc/kernel");
    assert_non_null(fc);
    for (size_t i = 0; i < fc->count; i++)
        m->weights[fc->offset + i] *= 40.0f;
    export_and_compare(m, "dilated", 13);
    /* the import writes the dilations back into the spec */
    kdens_model *back = NULL;
    ASSERT_OK(kdens_onnx_import(exported[n_exported - 1], &back));
    size_t len = kdens_model_spec(back, NULL, 0);
    char *spec = malloc(len + 1);
    assert_non_null(spec);
    kdens_model_spec(back, spec, len + 1);
    assert_non_null(strstr(spec, "kernel=3x3 stride=1x1 dilation=2x2 padding=2,2,2,2"));
    assert_non_null(strstr(spec, "kernel=3x2 stride=2x2 dilation=2x3 padding=1,0,2,1 groups=2"));
    assert_non_null(strstr(spec, "kernel=3x3 stride=1x1 dilation=3x3 padding=3,3,3,3 groups=16"));
    free(spec);
    kdens_model_free(back);
    kdens_model_free(m);
}

static void test_errors(void **state)
{
    (void)state;
    kdens_model *m = NULL;
    ASSERT_OK(kdens_model_create("test", 8, 8, 1, CLASSES, 1, &m));
    ASSERT_STATUS(kdens_onnx_export(NULL, "x.onnx"), KDENS_E_ARG);
    ASSERT_STATUS(kdens_onnx_export(m, NULL), KDENS_E_ARG);
    ASSERT_STATUS(kdens_onnx_export(m, "/nonexistent-dir/x.onnx"), KDENS_E_IO);
    assert_non_null(strstr(kdens_errmsg(), "/nonexistent-dir/x.onnx"));
    kdens_model_free(m);
}

static bool same_bytes(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

/* kdens export --onnx (the tool built with ONNX=1, as check-onnx builds it)
 * writes the bytes kdens_onnx_export writes. */
static void test_cli_export(void **state)
{
    (void)state;
    const char *dir = out_dir();
    kdens_model *m = NULL;
    ASSERT_OK(kdens_model_create("resnet20", 32, 32, 3, CLASSES, 5, &m));
    randomise(m, 21);
    char kdm[4500], lib[4500], cli[4500], cmd[14000];
    snprintf(kdm, sizeof kdm, "%s/cli.kdm", dir);
    snprintf(lib, sizeof lib, "%s/cli-lib.onnx", dir);
    snprintf(cli, sizeof cli, "%s/cli-tool.onnx", dir);
    ASSERT_OK(kdens_model_save(m, kdm));
    kdens_model_free(m);
    ASSERT_OK(kdens_model_load(kdm, &m)); /* what the tool exports: the saved model */
    ASSERT_OK(kdens_onnx_export(m, lib));
    kdens_model_free(m);
    snprintf(cmd, sizeof cmd, "'%s/%s/kdens' export --onnx '%s' --model '%s' >/dev/null",
             tu_root(), tu_build(), cli, kdm);
    if (system(cmd) != 0)
        fail_msg("%s failed (is the tool built with make ONNX=1?)", cmd);
    assert_true(same_bytes(lib, cli));
}

/* A one-node model (input [N, 3, 4, 4] -> op) written with protobuf-c. */
static void write_one_node(const char *path, const char *op, int64_t opset)
{
    Onnx__TensorShapeProto__Dimension dims[4];
    Onnx__TensorShapeProto__Dimension *pd[4];
    for (int i = 0; i < 4; i++) {
        onnx__tensor_shape_proto__dimension__init(&dims[i]);
        dims[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        dims[i].dim_value = i == 1 ? 3 : i == 0 ? 1 : 4;
        pd[i] = &dims[i];
    }
    Onnx__TensorShapeProto shape = ONNX__TENSOR_SHAPE_PROTO__INIT;
    shape.n_dim = 4;
    shape.dim = pd;
    Onnx__TypeProto__Tensor tt = ONNX__TYPE_PROTO__TENSOR__INIT;
    tt.has_elem_type = true;
    tt.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt.shape = &shape;
    Onnx__TypeProto type = ONNX__TYPE_PROTO__INIT;
    type.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type.tensor_type = &tt;
    Onnx__ValueInfoProto in = ONNX__VALUE_INFO_PROTO__INIT, out = ONNX__VALUE_INFO_PROTO__INIT;
    in.name = "input";
    in.type = &type;
    out.name = "y";
    Onnx__ValueInfoProto *ins[1] = {&in}, *outs[1] = {&out};
    char *node_in[1] = {"input"}, *node_out[1] = {"y"};
    Onnx__NodeProto node = ONNX__NODE_PROTO__INIT;
    node.name = "strange";
    node.op_type = (char *)op;
    node.n_input = 1;
    node.input = node_in;
    node.n_output = 1;
    node.output = node_out;
    Onnx__NodeProto *nodes[1] = {&node};
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    graph.n_node = 1;
    graph.node = nodes;
    graph.n_input = 1;
    graph.input = ins;
    graph.n_output = 1;
    graph.output = outs;
    Onnx__OperatorSetIdProto set = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    set.domain = "";
    set.has_version = true;
    set.version = opset;
    Onnx__OperatorSetIdProto *sets[1] = {&set};
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    model.has_ir_version = true;
    model.ir_version = 7;
    model.n_opset_import = 1;
    model.opset_import = sets;
    model.graph = &graph;
    size_t len = onnx__model_proto__get_packed_size(&model);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    onnx__model_proto__pack(&model, buf);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(buf);
}

static void write_bytes(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* A small graph written with protobuf-c: float input [in_dims], nodes of
 * up to 3 inputs and one output, float initializers whose declared dims
 * and stored values (raw_data) are set apart, and one graph output. */
typedef struct test_node {
    const char *op, *name, *in[3], *out;
} test_node;

typedef struct test_init {
    const char *name;
    int n_dims;
    int64_t dims[4];
    size_t n_values; /* floats stored, whatever dims declare */
} test_init;

static void write_graph(const char *path, int64_t opset, const int64_t in_dims[4],
                        const test_node *nodes, int n_nodes, const test_init *inits,
                        int n_inits, const char *output)
{
    Onnx__TensorShapeProto__Dimension dims[4];
    Onnx__TensorShapeProto__Dimension *pd[4];
    for (int i = 0; i < 4; i++) {
        onnx__tensor_shape_proto__dimension__init(&dims[i]);
        dims[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        dims[i].dim_value = in_dims[i];
        pd[i] = &dims[i];
    }
    Onnx__TensorShapeProto shape = ONNX__TENSOR_SHAPE_PROTO__INIT;
    shape.n_dim = 4;
    shape.dim = pd;
    Onnx__TypeProto__Tensor tt = ONNX__TYPE_PROTO__TENSOR__INIT;
    tt.has_elem_type = true;
    tt.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt.shape = &shape;
    Onnx__TypeProto type = ONNX__TYPE_PROTO__INIT;
    type.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type.tensor_type = &tt;
    Onnx__ValueInfoProto in = ONNX__VALUE_INFO_PROTO__INIT, out = ONNX__VALUE_INFO_PROTO__INIT;
    in.name = "input";
    in.type = &type;
    out.name = (char *)output;
    Onnx__ValueInfoProto *ins[1] = {&in}, *outs[1] = {&out};
    Onnx__NodeProto node[8], *pn[8];
    char *node_out[8];
    assert_true(n_nodes <= 8 && n_inits <= 8);
    for (int i = 0; i < n_nodes; i++) {
        onnx__node_proto__init(&node[i]);
        node[i].name = (char *)nodes[i].name;
        node[i].op_type = (char *)nodes[i].op;
        while (node[i].n_input < 3 && nodes[i].in[node[i].n_input])
            node[i].n_input++;
        node[i].input = (char **)nodes[i].in;
        node_out[i] = (char *)nodes[i].out;
        node[i].n_output = 1;
        node[i].output = &node_out[i];
        pn[i] = &node[i];
    }
    Onnx__TensorProto init[8], *pi[8];
    float *values[8];
    for (int i = 0; i < n_inits; i++) {
        onnx__tensor_proto__init(&init[i]);
        init[i].name = (char *)inits[i].name;
        init[i].has_data_type = true;
        init[i].data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
        init[i].n_dims = (size_t)inits[i].n_dims;
        init[i].dims = (int64_t *)inits[i].dims;
        values[i] = malloc(sizeof(float) * (inits[i].n_values + 1));
        assert_non_null(values[i]);
        for (size_t k = 0; k < inits[i].n_values; k++)
            values[i][k] = 0.01f * (float)(k % 7);
        init[i].has_raw_data = true;
        init[i].raw_data.len = sizeof(float) * inits[i].n_values;
        init[i].raw_data.data = (uint8_t *)values[i];
        pi[i] = &init[i];
    }
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    graph.name = "test";
    graph.n_node = (size_t)n_nodes;
    graph.node = pn;
    graph.n_initializer = (size_t)n_inits;
    graph.initializer = pi;
    graph.n_input = 1;
    graph.input = ins;
    graph.n_output = 1;
    graph.output = outs;
    Onnx__OperatorSetIdProto set = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    set.domain = "";
    set.has_version = true;
    set.version = opset;
    Onnx__OperatorSetIdProto *sets[1] = {&set};
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    model.has_ir_version = true;
    model.ir_version = 7;
    model.n_opset_import = opset > 0 ? 1 : 0; /* opset <= 0: none declared */
    model.opset_import = sets;
    model.graph = &graph;
    size_t len = onnx__model_proto__get_packed_size(&model);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    onnx__model_proto__pack(&model, buf);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(buf);
    for (int i = 0; i < n_inits; i++)
        free(values[i]);
}

/* The import of path fails with `want`, leaves no model, and says why:
 * the message names the file and holds each of the given words. */
static void expect_refusal(const char *path, kdens_status want, const char *word1,
                           const char *word2)
{
    kdens_model *m = NULL;
    kdens_status st = kdens_onnx_import(path, &m);
    if (st != want)
        fail_msg("%s: %s (%s), expected %s", path, kdens_status_str(st), kdens_errmsg(),
                 kdens_status_str(want));
    assert_null(m);
    const char *msg = kdens_errmsg();
    if (!strstr(msg, path) || (word1 && !strstr(msg, word1)) || (word2 && !strstr(msg, word2)))
        fail_msg("%s: the message '%s' does not name the file, '%s' and '%s'", path, msg,
                 word1 ? word1 : "", word2 ? word2 : "");
    print_message("refused (%s): %s\n", kdens_status_str(st), msg);
}

/* Hand-written graphs that must be refused with a clear status and
 * message: opsets below 13 (or none), a cycle, initializers whose declared
 * dims disagree with their data, absurd dimensions (2^40 elements), and
 * an input too large for the engine. */
static void test_import_bad_graphs(void **state)
{
    (void)state;
    char path[4500];
    snprintf(path, sizeof path, "%s/bad-graph.onnx", out_dir());
    const int64_t small[4] = {1, 3, 4, 4};
    /* relu then a global average: [N, 3, 1, 1], a valid model's output */
    const test_node relu[2] = {{"Relu", "act", {"input"}, "r"},
                               {"GlobalAveragePool", "gap", {"r"}, "y"}};
    /* the same graph imports at opset 13: what follows is refused for its fault alone */
    write_graph(path, 13, small, relu, 2, NULL, 0, "y");
    kdens_model *m = NULL;
    ASSERT_OK(kdens_onnx_import(path, &m));
    kdens_model_free(m);

    write_graph(path, 12, small, relu, 2, NULL, 0, "y");
    expect_refusal(path, KDENS_E_VERSION, "opset 12", "13 and later");
    write_graph(path, 1, small, relu, 2, NULL, 0, "y");
    expect_refusal(path, KDENS_E_VERSION, "opset 1;", NULL);
    write_graph(path, 0, small, relu, 2, NULL, 0, "y"); /* no opset declared */
    expect_refusal(path, KDENS_E_VERSION, "no opset", "13 and later");

    /* a cycle: y = relu(x), x = relu(y) (no order computes either first) */
    const test_node cycle[2] = {{"Relu", "first", {"y"}, "x"}, {"Relu", "second", {"x"}, "y"}};
    write_graph(path, 13, small, cycle, 2, NULL, 0, "y");
    expect_refusal(path, KDENS_E_FORMAT, "'first'", "cycle");
    /* and one through an Add that also reads the input */
    const test_node cycle2[2] = {{"Add", "sum", {"input", "z"}, "x"},
                                 {"Relu", "back", {"x"}, "z"}};
    write_graph(path, 13, small, cycle2, 2, NULL, 0, "z");
    expect_refusal(path, KDENS_E_FORMAT, "'sum'", "'z'");

    /* initializers whose declared dims disagree with the values stored */
    const test_node conv[2] = {{"Conv", "conv", {"input", "w", "b"}, "c"},
                               {"GlobalAveragePool", "gap", {"c"}, "y"}};
    test_init w = {"w", 4, {2, 3, 3, 3}, 54}, b = {"b", 1, {2}, 2};
    test_init wb[2] = {w, b};
    write_graph(path, 13, small, conv, 2, wb, 2, "y"); /* consistent: the conv alone is fine */
    ASSERT_OK(kdens_onnx_import(path, &m));
    kdens_model_free(m);
    wb[0].n_values = 53; /* one float short */
    write_graph(path, 13, small, conv, 2, wb, 2, "y");
    expect_refusal(path, KDENS_E_FORMAT, "'conv'", "does not hold 54 floats");
    wb[0].n_values = 54;
    wb[1].n_values = 3; /* one too many */
    write_graph(path, 13, small, conv, 2, wb, 2, "y");
    expect_refusal(path, KDENS_E_FORMAT, "bias", "does not hold 2 floats");
    wb[1].n_values = 2;
    wb[0].dims[0] = 4; /* declares 108 values, holds 54 */
    write_graph(path, 13, small, conv, 2, wb, 2, "y");
    expect_refusal(path, KDENS_E_FORMAT, "'conv'", "does not hold 108 floats");

    /* absurd dimensions: 2^40 weights declared, 54 stored */
    wb[0].dims[0] = (int64_t)1 << 20;
    wb[0].dims[1] = (int64_t)1 << 20;
    wb[0].dims[2] = wb[0].dims[3] = 1;
    write_graph(path, 13, small, conv, 2, wb, 2, "y");
    expect_refusal(path, KDENS_E_FORMAT, "'conv'", "out of range");
    /* ... and 2^40 for a Gemm: [2^20, 2^20] on a flat input of 48 features */
    const test_node gemm[2] = {{"Flatten", "flat", {"input"}, "f"},
                               {"Gemm", "fc", {"f", "w"}, "y"}};
    test_init gw = {"w", 2, {(int64_t)1 << 20, (int64_t)1 << 20}, 48};
    write_graph(path, 13, small, gemm, 2, &gw, 1, "y");
    expect_refusal(path, KDENS_E_SHAPE, "'fc'", "units out of range");
    /* ... and of a tensor whose dims overflow 64 bits (2^96), for a bias */
    test_init huge = {"b", 3, {(int64_t)1 << 32, (int64_t)1 << 32, (int64_t)1 << 32}, 2};
    wb[0] = w;
    wb[1] = huge;
    write_graph(path, 13, small, conv, 2, wb, 2, "y");
    expect_refusal(path, KDENS_E_FORMAT, "bias", "expected a float initializer of 2 values");
    /* ... and a negative dimension */
    wb[1] = b;
    wb[1].dims[0] = -2;
    write_graph(path, 13, small, conv, 2, wb, 2, "y");
    expect_refusal(path, KDENS_E_FORMAT, "bias", "expected a float initializer of 2 values");

    /* an input of 2^40 values per image (256 x 65536 x 65536): each size is
     * one the engine takes, their product is not */
    const int64_t absurd[4] = {1, 256, 65536, 65536};
    write_graph(path, 13, absurd, relu, 2, NULL, 0, "y");
    expect_refusal(path, KDENS_E_SHAPE, "65536x65536 pixels", "at most 2^28");
    /* 2^36 values (256 x 16384 x 16384): an input the engine takes, a relu
     * over it the engine refuses (its output is too large) */
    const int64_t big[4] = {1, 256, 16384, 16384};
    write_graph(path, 13, big, relu, 2, NULL, 0, "y");
    expect_refusal(path, KDENS_E_SHAPE, "translated network is refused", "too large");
    const int64_t too_wide[4] = {1, 3, 4, (int64_t)1 << 40};
    write_graph(path, 13, too_wide, relu, 2, NULL, 0, "y");
    expect_refusal(path, KDENS_E_FORMAT, "fixed sizes", NULL);
}

/* Unsupported operators are named with their node; old opsets, random
 * bytes, every truncation and flipped bytes of a real export give an
 * error (or, by chance, a model), never a crash. */
static void test_import_errors(void **state)
{
    (void)state;
    const char *dir = out_dir();
    char path[4500], bad[4500];
    kdens_model *m = NULL;
    snprintf(path, sizeof path, "%s/one-node.onnx", dir);
    write_one_node(path, "Einsum", 13);
    ASSERT_STATUS(kdens_onnx_import(path, &m), KDENS_E_NOTFOUND);
    assert_null(m);
    assert_non_null(strstr(kdens_errmsg(), "Einsum"));
    assert_non_null(strstr(kdens_errmsg(), "strange"));
    write_one_node(path, "Relu", 11);
    ASSERT_STATUS(kdens_onnx_import(path, &m), KDENS_E_VERSION);
    ASSERT_STATUS(kdens_onnx_import(NULL, &m), KDENS_E_ARG);
    ASSERT_STATUS(kdens_onnx_import("/nonexistent-dir/x.onnx", &m), KDENS_E_IO);
    uint8_t junk[4096];
    uint64_t seed = 99;
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)uniform(&seed, 0.0f, 256.0f);
    snprintf(bad, sizeof bad, "%s/bad.onnx", dir);
    write_bytes(bad, junk, sizeof junk);
    ASSERT_STATUS(kdens_onnx_import(bad, &m), KDENS_E_FORMAT);

    /* a real export, cut short everywhere and with bytes flipped */
    kdens_model *src = NULL;
    ASSERT_OK(kdens_model_from_spec(every_layer_spec, 12, 10, 3, CLASSES, 3, &src));
    snprintf(path, sizeof path, "%s/fuzz-src.onnx", dir);
    ASSERT_OK(kdens_onnx_export(src, path));
    kdens_model_free(src);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *file = malloc(1 << 20);
    assert_non_null(file);
    size_t len = fread(file, 1, 1 << 20, f);
    fclose(f);
    int refused = 0, tries = 0;
    /* every truncation is refused, with a status of bad input and a message
     * naming the file */
    for (size_t cut = 0; cut < len; cut += 1 + cut / 40, tries++) {
        write_bytes(bad, file, cut);
        kdens_status st = kdens_onnx_import(bad, &m);
        if (st == KDENS_OK || m)
            fail_msg("%zu of %zu bytes: imported", cut, len);
        if (!(st == KDENS_E_FORMAT || st == KDENS_E_SHAPE || st == KDENS_E_NOTFOUND) ||
            !strstr(kdens_errmsg(), bad))
            fail_msg("%zu of %zu bytes: %s (%s)", cut, len, kdens_status_str(st),
                     kdens_errmsg());
        refused++;
    }
    for (int i = 0; i < 200; i++, tries++) {
        uint8_t *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, file, len);
        for (int k = 0; k < 4; k++)
            copy[(size_t)uniform(&seed, 0.0f, (float)len) % len] ^=
                (uint8_t)(1u << ((unsigned)uniform(&seed, 0.0f, 8.0f) & 7));
        write_bytes(bad, copy, len);
        kdens_status st = kdens_onnx_import(bad, &m);
        refused += st != KDENS_OK;
        kdens_model_free(m);
        m = NULL;
        free(copy);
    }
    print_message("import of %d damaged files: %d refused, none crashed\n", tries, refused);
    free(file);
}

/* Last: ONNX's checker over every file exported above. */
static void test_checker(void **state)
{
    (void)state;
    assert_true(n_exported > 0);
    static char cmd[32 * 4600 + 200];
    const char *python = getenv("KDENS_PYTHON");
    if (!python || !*python) /* Debian's python3-onnx: /usr/bin/python3's */
        python = system("python3 -c 'import onnx' >/dev/null 2>&1") == 0 ? "python3"
                                                                        : "/usr/bin/python3";
    int len = snprintf(cmd, sizeof cmd, "%s '%s/tests/onnx/check_onnx.py'", python, tu_root());
    for (int i = 0; i < n_exported; i++)
        len += snprintf(cmd + len, sizeof cmd - (size_t)len, " '%s'", exported[i]);
    int rc = system(cmd);
    if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
        print_message("ONNX checker skipped: python3-onnx is missing (make deps ONNX=1)\n");
        return;
    }
    if (rc != 0)
        fail_msg("ONNX's checker refused a file (see above)");
    print_message("ONNX checker: %d files pass\n", n_exported);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_every_layer),
        cmocka_unit_test(test_dilated),
        cmocka_unit_test(test_architectures),
        cmocka_unit_test(test_distilled_students),
        cmocka_unit_test(test_cli_export),
        cmocka_unit_test(test_import_errors),
        cmocka_unit_test(test_import_bad_graphs),
        cmocka_unit_test(test_checker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
