/* Metrics registry renders valid Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

static void test_render(void **state)
{
    struct wlm_metrics *m = wlm_metrics_new();
    struct wlm_counter *c = wlm_metrics_counter(m, "wlm_requests_total", "Requests.", "code=\"2xx\"");
    wlm_counter_add(c, 3);
    wlm_counter_add(c, -5); /* counters never go down */
    assert_ptr_equal(c, wlm_metrics_counter(m, "wlm_requests_total", "Requests.", "code=\"2xx\""));
    wlm_counter_add(wlm_metrics_counter(m, "wlm_requests_total", "Requests.", "code=\"4xx\""), 1);
    struct wlm_gauge *g = wlm_metrics_gauge(m, "wlm_nodes", "Nodes.", NULL);
    wlm_gauge_set(g, 2);
    wlm_gauge_add(g, 0.5);
    const double b[] = {0.1, 1};
    struct wlm_histogram *h = wlm_metrics_histogram(m, "wlm_latency_seconds", "Latency.", NULL, b, 2);
    wlm_histogram_observe(h, 0.05);
    wlm_histogram_observe(h, 0.5);
    wlm_histogram_observe(h, 5);
    /* Same name with another type is refused rather than corrupting output. */
    assert_null(wlm_metrics_gauge(m, "wlm_requests_total", "x", NULL));
    char *text = wlm_metrics_render(m);
    const char *expect =
        "# HELP wlm_requests_total Requests.\n"
        "# TYPE wlm_requests_total counter\n"
        "wlm_requests_total{code=\"2xx\"} 3\n"
        "wlm_requests_total{code=\"4xx\"} 1\n"
        "# HELP wlm_nodes Nodes.\n"
        "# TYPE wlm_nodes gauge\n"
        "wlm_nodes 2.5\n"
        "# HELP wlm_latency_seconds Latency.\n"
        "# TYPE wlm_latency_seconds histogram\n"
        "wlm_latency_seconds_bucket{le=\"0.1\"} 1\n"
        "wlm_latency_seconds_bucket{le=\"1\"} 2\n"
        "wlm_latency_seconds_bucket{le=\"+Inf\"} 3\n"
        "wlm_latency_seconds_sum 5.55\n"
        "wlm_latency_seconds_count 3\n";
    assert_string_equal(text, expect);
    free(text);
    wlm_metrics_free(m);
}

static void test_escape(void **state)
{
    char *e = wlm_metrics_escape_label("a\"b\\c\nd");
    assert_string_equal(e, "a\\\"b\\\\c\\nd");
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_render), cmocka_unit_test(test_escape)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
