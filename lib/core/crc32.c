/* CRC-32 (ISO-HDLC: the polynomial, bit order and conditioning of zlib's
 * crc32(), PNG and gzip), the checksum of every section of the library's
 * files.  The library's own rather than zlib's, so that the inference-only
 * library (make lib-infer) needs nothing but libc; the values are zlib's
 * (tests/test_modelfile.c compares them at every length and alignment).
 *
 * Slicing by 8 (eight tables of 256 entries, one step per 8 bytes) is bound
 * by the latency of its one chain of table look-ups: ~1 GB/s, a third of
 * Debian's zlib.  So a long buffer is cut into four lanes whose chains run
 * interleaved in one loop, and their CRCs are joined as zlib's
 * crc32_combine() does: shifting a CRC past n zero bytes is a product with
 * x^(8n) modulo the polynomial.  As fast as zlib on a model file
 * (docs/benchmarks.md). */
#include "core.h"

#include <pthread.h>

#define KD_CRC_POLY 0xEDB88320u /* x^32 + x^26 + ... + 1, bit-reversed */
#define KD_CRC_LANES 4
#define KD_CRC_LANE_MIN 16384 /* shorter buffers: one chain (joining costs ~1 us) */

static uint32_t crc_table[8][256];
static uint32_t x2n_table[32]; /* x^(2^k) modulo the polynomial */
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* a * b modulo the polynomial, in the reflected order (bit 31 is x^0). */
static uint32_t mul_mod_poly(uint32_t a, uint32_t b)
{
    uint32_t product = 0;
    for (uint32_t bit = 1u << 31; bit; bit >>= 1) {
        if (a & bit)
            product ^= b;
        b = (b & 1) ? (b >> 1) ^ KD_CRC_POLY : b >> 1; /* b times x */
    }
    return product;
}

/* x^(8 n) modulo the polynomial: the shift of a CRC past n zero bytes. */
static uint32_t x_pow_8n(size_t n)
{
    uint32_t p = 1u << 31; /* x^0 */
    for (int k = 3; n; n >>= 1, k++)
        if (n & 1)
            p = mul_mod_poly(x2n_table[k & 31], p);
    return p;
}

/* crc_table[0][b]: the CRC of byte b; crc_table[s][b]: of b followed by s zero bytes. */
static void make_tables(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int bit = 0; bit < 8; bit++)
            c = (c & 1) ? KD_CRC_POLY ^ (c >> 1) : c >> 1;
        crc_table[0][b] = c;
    }
    for (int s = 1; s < 8; s++)
        for (uint32_t b = 0; b < 256; b++)
            crc_table[s][b] = (crc_table[s - 1][b] >> 8) ^ crc_table[0][crc_table[s - 1][b] & 0xFF];
    uint32_t p = 1u << 30; /* x^1 */
    for (int k = 0; k < 32; k++) {
        x2n_table[k] = p;
        p = mul_mod_poly(p, p);
    }
}

static inline uint32_t le32_at(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* One step of slicing by 8: the register c (not conditioned) past 8 bytes. */
static inline uint32_t step8(uint32_t c, const unsigned char *p)
{
    uint32_t lo = c ^ le32_at(p), hi = le32_at(p + 4);
    return (crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF]) ^
           (crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24]) ^
           ((crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF]) ^
            (crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24]));
}

static uint32_t crc_chain(uint32_t c, const unsigned char *p, size_t len)
{
    for (; len >= 8; p += 8, len -= 8)
        c = step8(c, p);
    for (; len > 0; p++, len--)
        c = crc_table[0][(c ^ *p) & 0xFF] ^ (c >> 8);
    return c;
}

uint32_t kd_crc32(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, make_tables);
    const unsigned char *p = data;
    if (len < KD_CRC_LANES * KD_CRC_LANE_MIN)
        return ~crc_chain(~crc, p, len);
    size_t lane = len / KD_CRC_LANES & ~(size_t)7;
    uint32_t c[KD_CRC_LANES] = {~crc, ~0u, ~0u, ~0u};
    for (size_t i = 0; i < lane; i += 8)
        for (int l = 0; l < KD_CRC_LANES; l++)
            c[l] = step8(c[l], p + (size_t)l * lane + i);
    /* crc(A B) = crc(A) x^(8 |B|) + crc(B), on conditioned CRCs */
    uint32_t shift = x_pow_8n(lane), joined = ~c[0];
    for (int l = 1; l < KD_CRC_LANES; l++)
        joined = mul_mod_poly(shift, joined) ^ ~c[l];
    size_t done = (size_t)KD_CRC_LANES * lane;
    return ~crc_chain(~joined, p + done, len - done);
}
