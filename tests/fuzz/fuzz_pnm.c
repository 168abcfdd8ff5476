/* libFuzzer harness: the PGM and PPM reader (seeds are P5 and P6 files). */
#include "fuzz_image.inc"
