/* JSON helpers: typed getters, unknown keys, parse errors with positions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

static json_t *parse(const char *s)
{
    struct wlm_error err = {0};
    json_t *v = wlm_json_parse_object(s, strlen(s), &err);
    assert_non_null(v);
    return v;
}

static void test_getters(void **state)
{
    json_t *o = parse("{\"name\":\"a\",\"cores\":4,\"mhz\":2400.5,\"on\":true,\"n\":null}");
    struct wlm_error err = {0};
    const char *s = "default";
    long long i = -1;
    double d = 0;
    int b = 0;
    assert_int_equal(wlm_json_get_str(o, "name", 1, &s, &err), 0);
    assert_string_equal(s, "a");
    assert_int_equal(wlm_json_get_int(o, "cores", 1, 1, 1024, &i, &err), 0);
    assert_int_equal(i, 4);
    assert_int_equal(wlm_json_get_num(o, "mhz", 1, 0, 1e6, &d, &err), 0);
    assert_true(d == 2400.5);
    assert_int_equal(wlm_json_get_bool(o, "on", 1, &b, &err), 0);
    assert_int_equal(b, 1);
    /* Optional and absent (or null) keeps the default. */
    s = "keep";
    assert_int_equal(wlm_json_get_str(o, "missing", 0, &s, &err), 0);
    assert_string_equal(s, "keep");
    assert_int_equal(wlm_json_get_str(o, "n", 0, &s, &err), 0);
    assert_string_equal(s, "keep");
    json_decref(o);
}

static void test_getter_errors(void **state)
{
    json_t *o = parse("{\"cores\":-2,\"name\":7,\"mhz\":\"fast\"}");
    struct wlm_error err = {0};
    long long i;
    const char *s;
    double d;
    assert_int_equal(wlm_json_get_int(o, "cores", 1, 1, 1024, &i, &err), -WLM_EINVAL);
    assert_string_equal(err.field, "cores");
    assert_non_null(strstr(err.msg, "out of range"));
    assert_int_equal(wlm_json_get_str(o, "name", 1, &s, &err), -WLM_EINVAL);
    assert_non_null(strstr(err.msg, "expected a string, got integer"));
    assert_int_equal(wlm_json_get_num(o, "mhz", 1, 0, 1, &d, &err), -WLM_EINVAL);
    assert_int_equal(wlm_json_get_int(o, "absent", 1, 0, 1, &i, &err), -WLM_EINVAL);
    assert_string_equal(err.msg, "absent: required");
    json_decref(o);
}

static void test_unknown_keys(void **state)
{
    json_t *o = parse("{\"name\":\"a\",\"colour\":\"red\"}");
    static const char *const allowed[] = {"name", "cores", NULL};
    struct wlm_error err = {0};
    assert_int_equal(wlm_json_check_keys(o, allowed, "spec", &err), -WLM_EINVAL);
    assert_string_equal(err.msg, "spec.colour: unknown field");
    json_decref(o);
}

static void test_parse_errors(void **state)
{
    struct wlm_error err = {0};
    assert_null(wlm_json_parse_object("{\"a\":", 5, &err));
    assert_non_null(strstr(err.msg, "line 1"));
    assert_null(wlm_json_parse_object("[1,2]", 5, &err));
    assert_non_null(strstr(err.msg, "expected a JSON object"));
    assert_null(wlm_json_parse_object("{\"a\":1,\"a\":2}", 13, &err));
}

static void test_error_body(void **state)
{
    json_t *e = wlm_json_error_body("invalid", "cores: required");
    char *s = wlm_json_dumps(e);
    assert_string_equal(s, "{\"error\":\"invalid\",\"detail\":\"cores: required\"}");
    free(s);
    json_decref(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_getters),      cmocka_unit_test(test_getter_errors),
        cmocka_unit_test(test_unknown_keys), cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_error_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
