/* The shared library exports the public API and nothing else: the defined
 * dynamic symbols are exactly the functions declared KDENS_API in the two
 * public headers, kdens.h (the engine) and kdens_experiment.h (the
 * workflow).  (make check-abi compares their types and signatures with the
 * recorded baseline; make check-layers, which layer defines them.) */
#include "testutil.h"

#include <ctype.h>

static char header_names[512][64];
static int n_header;

static void read_header_api(const char *header)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/include/%s", tu_root(), header);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "KDENS_API", 9) != 0)
            continue;
        /* the declared name is the kdens_ identifier followed by '(' */
        char *k = strstr(line, "kdens_");
        int len = 0;
        for (; k; k = strstr(k + 1, "kdens_")) {
            len = 0;
            while (isalnum((unsigned char)k[len]) || k[len] == '_')
                len++;
            if (k[len] == '(')
                break;
        }
        assert_non_null(k);
        assert_true(len < 64 && n_header < 512);
        memcpy(header_names[n_header], k, (size_t)len);
        header_names[n_header++][len] = '\0';
    }
    fclose(f);
}

static bool in_header(const char *name)
{
    for (int i = 0; i < n_header; i++)
        if (strcmp(header_names[i], name) == 0)
            return true;
    return false;
}

static void test_only_kdens_symbols(void **state)
{
    (void)state;
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s/libkdens.so' 2>&1", tu_build());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    n_header = 0;
    read_header_api("kdens.h");
    read_header_api("kdens_experiment.h");
    char line[512];
    int exported = 0;
    while (fgets(line, sizeof line, p)) {
        char addr[64], type[8], name[400];
        if (sscanf(line, "%63s %7s %399s", addr, type, name) != 3)
            fail_msg("unexpected nm output: %s", line);
        if (strcmp(type, "A") == 0) /* the version node, KDENS_0 */
            continue;
        char *at = strchr(name, '@'); /* versioned: name@@KDENS_0 */
        if (at)
            *at = '\0';
        if (strncmp(name, "kdens_", 6) != 0 || !in_header(name))
            fail_msg("the shared library exports '%s', which no public header declares", name);
        exported++;
    }
    assert_int_equal(WEXITSTATUS(pclose(p)), 0);
    if (exported != n_header)
        fail_msg("the headers declare %d functions, the library exports %d", n_header, exported);
}

static void test_soname(void **state)
{
    (void)state;
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "objdump -p '%s/libkdens.so' | grep SONAME", tu_build());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[256] = "";
    assert_non_null(fgets(line, sizeof line, p));
    pclose(p);
    char want[64];
    snprintf(want, sizeof want, "libkdens.so.%d", KDENS_VERSION_MAJOR);
    assert_non_null(strstr(line, want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_kdens_symbols),
        cmocka_unit_test(test_soname),
    };
    return cmocka_run_group_tests_name("abi", tests, NULL, NULL);
}
