/* libFuzzer harness: the PNG decoder (seeds are PNG files). */
#include "fuzz_image.inc"
