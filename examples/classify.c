/* classify: the embedding use case.  Load a (student) model and print the
 * top-3 classes of each PNG or JPEG image given on the command line.
 *
 *   cc classify.c $(pkg-config --cflags --libs kdens) -o classify
 *   ./classify student.kdm shirt.png boot.jpg
 */
#include <kdens.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.kdm IMAGE...\n", argv[0]);
        return 2;
    }
    kdens_model *model;
    kdens_status st = kdens_model_load(argv[1], &model);
    if (st != KDENS_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], kdens_errmsg());
        return 1;
    }
    int h, w, c, k = kdens_model_num_classes(model);
    kdens_model_input_shape(model, &h, &w, &c);
    uint8_t *pixels = malloc((size_t)h * w * c);
    float *probs = malloc(sizeof(float) * (size_t)k);
    int failed = 0;
    for (int i = 2; i < argc && pixels && probs; i++) {
        /* decoded and resized to the model's input, grey or RGB as it expects */
        st = kdens_image_load(argv[i], h, w, c == 1 ? KDENS_COLOR_GRAY : KDENS_COLOR_RGB, pixels);
        if (st == KDENS_OK)
            st = kdens_model_predict_u8(model, pixels, 1, probs);
        if (st != KDENS_OK) {
            fprintf(stderr, "%s: %s\n", argv[i], kdens_errmsg());
            failed = 1;
            continue;
        }
        printf("%s:", argv[i]);
        for (int rank = 0; rank < 3 && rank < k; rank++) {
            int best = -1; /* the rank-th largest probability */
            for (int j = 0; j < k; j++) {
                int above = 0;
                for (int q = 0; q < k; q++)
                    above += probs[q] > probs[j] || (q < j && probs[q] == probs[j]);
                if (above == rank)
                    best = j;
            }
            const char *name = kdens_model_class_name(model, best);
            printf("%s ", rank ? "," : "");
            if (name)
                printf("%s %.3f", name, probs[best]);
            else
                printf("class %d %.3f", best, probs[best]);
        }
        printf("\n");
    }
    free(pixels);
    free(probs);
    kdens_model_free(model);
    return failed;
}
