/* wlm_buf_read_file: a file larger than one read comes back whole, and a
 * read that fails says so instead of returning what it got. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

static void test_read_whole_file(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    size_t n = 200000; /* several of its 64 KiB reads */
    for (size_t i = 0; i < n; i++)
        fputc('a' + (int)(i % 26), f);
    rewind(f);
    struct wlm_buf b;
    wlm_buf_init(&b);
    assert_int_equal(wlm_buf_read_file(&b, f), 0);
    assert_int_equal(b.len, n);
    assert_int_equal(b.data[0], 'a');
    assert_int_equal(b.data[n - 1], 'a' + (int)((n - 1) % 26));
    assert_int_equal(b.data[n], '\0');
    fclose(f);
    wlm_buf_fini(&b);
}

static void test_read_error(void **state)
{
    (void)state;
    FILE *f = fopen("/", "r"); /* a directory: opens, but reading fails (EISDIR) */
    assert_non_null(f);
    struct wlm_buf b;
    wlm_buf_init(&b);
    assert_int_equal(wlm_buf_read_file(&b, f), -EISDIR);
    fclose(f);
    wlm_buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_whole_file),
        cmocka_unit_test(test_read_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
