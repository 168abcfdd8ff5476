/* The section container of libkdens' binary files (.kdm models, training
 * checkpoints):  8-byte magic | u32 version | u32 section count | sections,
 * a section being  4-byte tag | u64 length | payload | u32 CRC-32 of tag,
 * length and payload.  Little-endian throughout. */
#include "core.h"

#include <string.h>

void kd_section_put(kd_buf *file, const char tag[4], const void *data, size_t len)
{
    size_t start = file->len;
    kd_buf_put(file, tag, 4);
    kd_buf_u64(file, len);
    kd_buf_put(file, data ? data : "", len);
    if (file->failed)
        return;
    kd_buf_u32(file, kd_crc32(0, file->data + start, file->len - start));
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

kdens_status kd_sections_parse(const char *path, const uint8_t *data, size_t len,
                               const char magic[8], uint32_t max_version, const char *what,
                               kd_section *out, int max, int *count)
{
    if (len < 16 || memcmp(data, magic, 8) != 0)
        return kd_fail(KDENS_E_FORMAT, "%s: not a libkdens %s (bad magic)", path, what);
    uint32_t version = le32(data + 8), n = le32(data + 12);
    if (version > max_version)
        return kd_fail(KDENS_E_VERSION,
                       "%s: %s format version %u is newer than this library reads (%u)", path,
                       what, version, max_version);
    if (version == 0)
        return kd_fail(KDENS_E_FORMAT, "%s: %s format version 0 is not valid", path, what);
    if (n > 1024)
        return kd_fail(KDENS_E_FORMAT, "%s: implausible section count %u", path, n);
    size_t pos = 16;
    int kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t start = pos;
        if (len - pos < 12)
            return kd_fail(KDENS_E_FORMAT, "%s: truncated in the header of section %u", path,
                           i + 1);
        char tag[5] = {0};
        memcpy(tag, data + pos, 4);
        uint64_t plen = (uint64_t)le32(data + pos + 4) | (uint64_t)le32(data + pos + 8) << 32;
        pos += 12;
        if (plen > len - pos || len - pos - plen < 4)
            return kd_fail(KDENS_E_FORMAT, "%s: truncated in section %u (%s)", path, i + 1, tag);
        const uint8_t *payload = data + pos;
        pos += plen;
        if (kd_crc32(0, data + start, 12 + plen) != le32(data + pos))
            return kd_fail(KDENS_E_FORMAT,
                           "%s: CRC mismatch in section %u (%s): the file is corrupt", path,
                           i + 1, tag);
        pos += 4;
        for (int k = 0; k < kept; k++)
            if (strcmp(out[k].tag, tag) == 0)
                return kd_fail(KDENS_E_FORMAT, "%s: section %s appears twice", path, tag);
        if (kept < max) {
            memcpy(out[kept].tag, tag, 5);
            out[kept].data = payload;
            out[kept].len = (size_t)plen;
            kept++;
        }
    }
    if (pos != len)
        return kd_fail(KDENS_E_FORMAT, "%s: %zu unexpected bytes after the last section", path,
                       len - pos);
    *count = kept;
    return KDENS_OK;
}

const kd_section *kd_section_find(const kd_section *s, int count, const char *tag)
{
    for (int i = 0; i < count; i++)
        if (strcmp(s[i].tag, tag) == 0)
            return &s[i];
    return NULL;
}
