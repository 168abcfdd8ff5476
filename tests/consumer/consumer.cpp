// A C++ program built against an installed libkdens through pkg-config:
// the header compiles as C++ and the API is usable with RAII.
#include <kdens.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <vector>

struct model_deleter {
    void operator()(kdens_model *m) const { kdens_model_free(m); }
};
using model_ptr = std::unique_ptr<kdens_model, model_deleter>;

int main()
{
    kdens_model *raw = nullptr;
    if (kdens_model_create("resnet20", 16, 16, 1, 4, 7, &raw) != KDENS_OK) {
        std::fprintf(stderr, "create: %s\n", kdens_errmsg());
        return 1;
    }
    model_ptr m(raw);
    std::vector<std::uint8_t> images(2 * 16 * 16, 128);
    std::vector<float> probs(2 * 4);
    if (kdens_model_predict_u8(m.get(), images.data(), 2, probs.data()) != KDENS_OK)
        return 1;
    std::printf("kdens %s from C++: %d layers, p[0] = %.3f\n", kdens_version(),
                kdens_model_num_layers(m.get()), probs[0]);
    return probs[0] > 0.0f && probs[0] < 1.0f ? 0 : 1;
}
