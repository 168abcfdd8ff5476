/* A C program built against an installed libkdens through pkg-config. */
#include <kdens.h>

#include <stdio.h>

int main(void)
{
    kdens_model *m;
    if (kdens_model_create("test", 28, 28, 1, 10, 1, &m) != KDENS_OK) {
        fprintf(stderr, "create: %s\n", kdens_errmsg());
        return 1;
    }
    static float image[28 * 28];
    float probs[10], sum = 0;
    if (kdens_model_predict(m, image, 1, probs) != KDENS_OK)
        return 1;
    for (int i = 0; i < 10; i++)
        sum += probs[i];
    printf("kdens %s from C: %zu params, probabilities sum to %.3f\n", kdens_version(),
           kdens_model_param_count(m), sum);
    kdens_model_free(m);
    return sum > 0.999f && sum < 1.001f ? 0 : 1;
}
