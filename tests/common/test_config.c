/* Config: defaults, file, environment and flags, each validated by field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"

struct cfg {
    char host[32];
    long long port;
    double ratio;
    int debug;
};

static const struct wlm_cfg_field fields[] = {
    {"host", WLM_CFG_STR, offsetof(struct cfg, host), 32, "TEST_HOST", "127.0.0.1", 0, -1, "host"},
    {"port", WLM_CFG_INT, offsetof(struct cfg, port), 0, "TEST_PORT", "7700", 0, 65535, "port"},
    {"ratio", WLM_CFG_NUM, offsetof(struct cfg, ratio), 0, NULL, "0.5", 0, 1, "ratio"},
    {"debug", WLM_CFG_BOOL, offsetof(struct cfg, debug), 0, NULL, "false", 0, -1, "debug"},
};
#define NF WLM_ARRAY_LEN(fields)

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/wlm-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_defaults(void **state)
{
    struct cfg c;
    struct wlm_error err = {0};
    unsetenv("TEST_HOST");
    unsetenv("TEST_PORT");
    assert_int_equal(wlm_config_load(fields, NF, &c, NULL, &err), 0);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 7700);
    assert_true(c.ratio == 0.5);
    assert_int_equal(c.debug, 0);
}

static void test_file_then_env(void **state)
{
    char *p = write_tmp("{\"host\": \"0.0.0.0\", \"port\": 9000, \"debug\": true}");
    struct cfg c;
    struct wlm_error err = {0};
    setenv("TEST_PORT", "9100", 1);
    assert_int_equal(wlm_config_load(fields, NF, &c, p, &err), 0);
    assert_string_equal(c.host, "0.0.0.0");
    assert_int_equal(c.port, 9100); /* environment beats the file */
    assert_int_equal(c.debug, 1);
    unsetenv("TEST_PORT");
    unlink(p);
    free(p);
}

static void expect_error(const char *json, const char *field, const char *needle)
{
    char *p = write_tmp(json);
    struct cfg c;
    struct wlm_error err = {0};
    assert_int_equal(wlm_config_load(fields, NF, &c, p, &err), -WLM_EINVAL);
    assert_string_equal(err.field, field);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    unlink(p);
    free(p);
}

static void test_file_errors_name_field(void **state)
{
    expect_error("{\"prot\": 1}", "prot", "unknown field");
    expect_error("{\"port\": \"x\"}", "port", "expected an integer");
    expect_error("{\"port\": 70000}", "port", "out of range");
    expect_error("{\"ratio\": 2.5}", "ratio", "out of range");
    expect_error("{\"debug\": 1}", "debug", "true or false");
}

static void test_malformed_file(void **state)
{
    char *p = write_tmp("{\"port\": 1,,}");
    struct cfg c;
    struct wlm_error err = {0};
    assert_int_equal(wlm_config_load(fields, NF, &c, p, &err), -WLM_EINVAL);
    assert_non_null(strstr(err.msg, ":1:"));
    unlink(p);
    free(p);
    assert_int_equal(wlm_config_load(fields, NF, &c, "/nonexistent/x.json", &err), -WLM_EIO);
}

static void test_env_bad_value(void **state)
{
    struct cfg c;
    struct wlm_error err = {0};
    setenv("TEST_PORT", "12ab", 1);
    assert_int_equal(wlm_config_load(fields, NF, &c, NULL, &err), -WLM_EINVAL);
    assert_non_null(strstr(err.msg, "TEST_PORT"));
    unsetenv("TEST_PORT");
}

static void test_daemon_args(void **state)
{
    struct cfg c;
    struct wlm_error err = {0};
    char *argv[] = {"prog", "--port", "8080", "--host=::1", "--debug", "--ratio", "0.25", NULL};
    assert_int_equal(wlm_daemon_args(7, argv, "prog", "test", fields, NF, &c, &err), 0);
    assert_int_equal(c.port, 8080);
    assert_string_equal(c.host, "::1");
    assert_int_equal(c.debug, 1);
    assert_true(c.ratio == 0.25);

    char *bad[] = {"prog", "--nope", "1", NULL};
    assert_int_equal(wlm_daemon_args(3, bad, "prog", "t", fields, NF, &c, &err), -WLM_EINVAL);
    assert_non_null(strstr(err.msg, "unknown option '--nope'"));
    char *missing[] = {"prog", "--port", NULL};
    assert_int_equal(wlm_daemon_args(2, missing, "prog", "t", fields, NF, &c, &err), -WLM_EINVAL);
    assert_non_null(strstr(err.msg, "needs a value"));
    char *stray[] = {"prog", "extra", NULL};
    assert_int_equal(wlm_daemon_args(2, stray, "prog", "t", fields, NF, &c, &err), -WLM_EINVAL);
    char *lvl[] = {"prog", "--log-level", "loud", NULL};
    assert_int_equal(wlm_daemon_args(3, lvl, "prog", "t", fields, NF, &c, &err), -WLM_EINVAL);
}

static void test_secret_equal(void **state)
{
    assert_true(wlm_secret_equal("s3cret", "s3cret"));
    assert_false(wlm_secret_equal("s3cre", "s3cret"));
    assert_false(wlm_secret_equal("s3cretx", "s3cret"));
    assert_false(wlm_secret_equal("S3cret", "s3cret"));
    assert_false(wlm_secret_equal("", "s3cret"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),        cmocka_unit_test(test_file_then_env),
        cmocka_unit_test(test_file_errors_name_field), cmocka_unit_test(test_malformed_file),
        cmocka_unit_test(test_env_bad_value),   cmocka_unit_test(test_daemon_args),
        cmocka_unit_test(test_secret_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
