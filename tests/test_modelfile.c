/* Bad model files: every truncation, bit flips all over the file, wrong
 * magic, a future version, unreadable paths; and atomic saves that never
 * destroy the previous file, even when the disk is full. */
#include "testutil.h"

#include "core/core.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <zlib.h>

static char *dir;
static char model_path[4200];
static unsigned char *good;
static size_t good_len;

static int setup(void **state)
{
    (void)state;
    dir = tu_tmpdir();
    snprintf(model_path, sizeof model_path, "%s/good.kdm", dir);
    kdens_model *m;
    if (kdens_model_create("test", 6, 6, 1, 3, 1, &m) != KDENS_OK)
        return -1;
    const char *names[3] = {"a", "b", "c"};
    kdens_model_set_class_names(m, names, 3);
    if (kdens_model_save(m, model_path) != KDENS_OK)
        return -1;
    kdens_model_free(m);
    FILE *f = fopen(model_path, "rb");
    fseek(f, 0, SEEK_END);
    good_len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    good = malloc(good_len);
    if (fread(good, 1, good_len, f) != good_len)
        return -1;
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(good);
    tu_rm_rf(dir);
    return 0;
}

static void write_bytes(const char *path, const unsigned char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static kdens_status load_bytes(const unsigned char *data, size_t len)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.kdm", dir);
    write_bytes(path, data, len);
    kdens_model *m = NULL;
    kdens_status st = kdens_model_load(path, &m);
    if (st == KDENS_OK)
        kdens_model_free(m);
    else
        assert_null(m);
    return st;
}

static void test_every_truncation(void **state)
{
    (void)state;
    for (size_t len = 0; len < good_len; len++) {
        kdens_status st = load_bytes(good, len);
        if (st != KDENS_E_FORMAT)
            fail_msg("truncated to %zu of %zu bytes: %s (%s)", len, good_len,
                     kdens_status_str(st), kdens_errmsg());
        assert_non_null(strstr(kdens_errmsg(), "bad.kdm"));
    }
    assert_int_equal(load_bytes(good, good_len), KDENS_OK);
}

static void test_bit_flips(void **state)
{
    (void)state;
    unsigned char *copy = malloc(good_len);
    size_t step = good_len > 3000 ? good_len / 3000 : 1;
    for (size_t pos = 0; pos < good_len; pos += step) {
        memcpy(copy, good, good_len);
        copy[pos] ^= (unsigned char)(1u << (pos % 8));
        kdens_status st = load_bytes(copy, good_len);
        if (st != KDENS_E_FORMAT && st != KDENS_E_VERSION)
            fail_msg("bit flip at byte %zu: %s (%s)", pos, kdens_status_str(st),
                     kdens_errmsg());
    }
    free(copy);
}

static void test_magic_version_and_paths(void **state)
{
    (void)state;
    unsigned char *copy = malloc(good_len);
    memcpy(copy, good, good_len);
    copy[0] = 'X';
    assert_int_equal(load_bytes(copy, good_len), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "bad magic"));
    memcpy(copy, good, good_len);
    copy[8] = 7; /* format version 7 */
    assert_int_equal(load_bytes(copy, good_len), KDENS_E_VERSION);
    assert_non_null(strstr(kdens_errmsg(), "version 7"));
    memcpy(copy, good, good_len);
    copy[good_len - 20] ^= 0x55; /* inside the tensor payload */
    assert_int_equal(load_bytes(copy, good_len), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "CRC"));
    free(copy);
    kdens_model *m = NULL;
    ASSERT_STATUS(kdens_model_load("/nonexistent/dir/m.kdm", &m), KDENS_E_IO);
    assert_non_null(strstr(kdens_errmsg(), "/nonexistent/dir/m.kdm"));
    ASSERT_STATUS(kdens_model_load(dir, &m), KDENS_E_IO); /* a directory */
    assert_null(m);
}

static int read_all(const char *path, unsigned char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc(*len + 1);
    size_t got = fread(*data, 1, *len, f);
    fclose(f);
    return got == *len ? 0 : -1;
}

static int count_files(const char *d)
{
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", d);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

/* A full disk, simulated with a file-size limit: the save fails cleanly,
 * the old model is intact and no temporary file is left behind. */
static void test_save_on_full_disk_keeps_old_file(void **state)
{
    (void)state;
    char sub[4200], path[4300];
    snprintf(sub, sizeof sub, "%s/full", dir);
    mkdir(sub, 0755);
    snprintf(path, sizeof path, "%s/model.kdm", sub);
    kdens_model *small, *big;
    ASSERT_OK(kdens_model_create("test", 6, 6, 1, 3, 1, &small));
    ASSERT_OK(kdens_model_create("resnet20", 16, 16, 1, 3, 1, &big));
    ASSERT_OK(kdens_model_save(small, path));
    unsigned char *before = NULL, *after = NULL;
    size_t blen, alen;
    assert_int_equal(read_all(path, &before, &blen), 0);

    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    kdens_status st = kdens_model_save(big, path);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    assert_int_equal(st, KDENS_E_IO);
    assert_non_null(strstr(kdens_errmsg(), "model.kdm"));

    assert_int_equal(read_all(path, &after, &alen), 0);
    assert_int_equal(alen, blen);
    assert_memory_equal(before, after, blen);
    assert_int_equal(count_files(sub), 1);
    /* a save into a missing folder fails without side effects */
    ASSERT_STATUS(kdens_model_save(small, "/nonexistent/dir/m.kdm"), KDENS_E_IO);
    free(before);
    free(after);
    kdens_model_free(small);
    kdens_model_free(big);
}

static void test_save_replaces_atomically(void **state)
{
    (void)state;
    char path[4300];
    snprintf(path, sizeof path, "%s/replace.kdm", dir);
    kdens_model *a, *b, *l;
    ASSERT_OK(kdens_model_create("test", 6, 6, 1, 3, 1, &a));
    ASSERT_OK(kdens_model_create("mobilenet_small", 8, 8, 1, 3, 1, &b));
    ASSERT_OK(kdens_model_save(a, path));
    ASSERT_OK(kdens_model_save(b, path));
    ASSERT_OK(kdens_model_load(path, &l));
    assert_int_equal(kdens_model_param_count(l), kdens_model_param_count(b));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    kdens_model_free(a);
    kdens_model_free(b);
    kdens_model_free(l);
}

/* A reader of a made-up format: its files hold a .kdm's path. */
static int fake_calls;
static kdens_status read_fake(const char *path, kdens_model **out)
{
    fake_calls++;
    char target[4300];
    FILE *f = fopen(path, "r");
    if (!f)
        return KDENS_E_IO;
    size_t n = fread(target, 1, sizeof target - 1, f);
    fclose(f);
    target[n] = '\0';
    return kdens_model_load(target, out);
}

static kdens_status refuse_fake(const char *path, kdens_model **out)
{
    (void)out;
    fake_calls += 100;
    kdens_set_error(KDENS_E_FORMAT, "%s: not today", path);
    return KDENS_E_FORMAT;
}

static void test_other_format_readers(void **state)
{
    (void)state;
    char fake[4300], onnx[4300];
    snprintf(fake, sizeof fake, "%s/m.FaKe", dir);
    snprintf(onnx, sizeof onnx, "%s/m.onnx", dir);
    FILE *f = fopen(fake, "w");
    fputs(model_path, f);
    fclose(f);
    f = fopen(onnx, "w");
    fputs("not protobuf", f);
    fclose(f);
    kdens_model *m = NULL;
    /* no reader: read as .kdm, which it is not */
    assert_int_equal(kdens_model_load(fake, &m), KDENS_E_FORMAT);
    /* an .onnx file without libkdens_onnx says what it needs */
    assert_int_equal(kdens_model_load(onnx, &m), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "kdens_onnx_enable"));
    assert_null(m);
    /* registered: by suffix, regardless of case */
    assert_int_equal(kdens_model_set_reader(".fake", read_fake), KDENS_OK);
    assert_int_equal(kdens_model_load(fake, &m), KDENS_OK);
    assert_int_equal(fake_calls, 1);
    assert_int_equal(kdens_model_num_classes(m), 3);
    kdens_model_free(m);
    m = NULL;
    /* .kdm files are untouched by it */
    assert_int_equal(kdens_model_load(model_path, &m), KDENS_OK);
    assert_int_equal(fake_calls, 1);
    kdens_model_free(m);
    m = NULL;
    /* replaced, and its error is the load's */
    assert_int_equal(kdens_model_set_reader(".FAKE", refuse_fake), KDENS_OK);
    assert_int_equal(kdens_model_load(fake, &m), KDENS_E_FORMAT);
    assert_non_null(strstr(kdens_errmsg(), "not today"));
    assert_int_equal(fake_calls, 101);
    assert_null(m);
    /* bad registrations */
    assert_int_equal(kdens_model_set_reader(NULL, read_fake), KDENS_E_ARG);
    assert_int_equal(kdens_model_set_reader("", read_fake), KDENS_E_ARG);
    assert_int_equal(kdens_model_set_reader(".KDM", read_fake), KDENS_E_ARG);
    assert_int_equal(kdens_model_set_reader(".a-suffix-too-long", read_fake), KDENS_E_ARG);
    /* at most 8 */
    char suffix[8][16];
    int added = 0;
    for (int i = 0; i < 8; i++) {
        snprintf(suffix[i], sizeof suffix[i], ".x%d", i);
        kdens_status st = kdens_model_set_reader(suffix[i], read_fake);
        if (st == KDENS_OK)
            added++;
        else
            assert_int_equal(st, KDENS_E_NOMEM);
    }
    assert_int_equal(added, 7); /* ".fake" holds the eighth place */
    for (int i = 0; i < 8; i++)
        kdens_model_set_reader(suffix[i], NULL);
    /* removed: read as .kdm again */
    assert_int_equal(kdens_model_set_reader(".fake", NULL), KDENS_OK);
    assert_int_equal(kdens_model_load(fake, &m), KDENS_E_FORMAT);
    assert_int_equal(fake_calls, 101);
}

/* The library's own CRC-32 (what the inference-only library checks files
 * with) gives zlib's values: every length up to 300 at every alignment, long
 * runs, continued sums, and the standard check value. */
static void test_crc32_is_zlibs(void **state)
{
    (void)state;
    static unsigned char buf[300000]; /* past the length where it runs in lanes */
    uint64_t s = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        buf[i] = (unsigned char)(s >> 56);
    }
    assert_int_equal(kd_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(kd_crc32(0, buf, 0), 0);
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len <= 300; len++)
            assert_int_equal(kd_crc32(0, buf + off, len), (uint32_t)crc32(0, buf + off, (uInt)len));
    for (size_t len = 4096; len <= sizeof buf - 8; len += 4099)
        for (size_t off = 0; off < 8; off += 3)
            assert_int_equal(kd_crc32(0, buf + off, len), (uint32_t)crc32(0, buf + off, (uInt)len));
    for (size_t len = 65536 - 40; len <= 65536 + 40; len++)
        assert_int_equal(kd_crc32(7, buf + 1, len), (uint32_t)crc32(7, buf + 1, (uInt)len));
    for (size_t cut = 0; cut <= 64; cut++) {
        uint32_t whole = (uint32_t)crc32(0, buf, 1000);
        assert_int_equal(kd_crc32(kd_crc32(0, buf, cut), buf + cut, 1000 - cut), whole);
        assert_int_equal(kd_crc32(0xDEADBEEFu, buf, cut), (uint32_t)crc32(0xDEADBEEFu, buf, (uInt)cut));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32_is_zlibs),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_magic_version_and_paths),
        cmocka_unit_test(test_save_on_full_disk_keeps_old_file),
        cmocka_unit_test(test_save_replaces_atomically),
        cmocka_unit_test(test_other_format_readers),
    };
    return cmocka_run_group_tests_name("model files", tests, setup, teardown);
}
