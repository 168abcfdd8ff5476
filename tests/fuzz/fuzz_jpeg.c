/* libFuzzer harness: the JPEG decoder (seeds are JPEG files). */
#include "fuzz_image.inc"
