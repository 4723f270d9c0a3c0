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
    struct wlm_counter *c =
        wlm_metrics_counter(m, "wlm_requests_total", "Requests.", "code=\"2xx\"");
    wlm_counter_add(c, 3);
    wlm_counter_add(c, -5); /* counters never go down */
    assert_ptr_equal(c, wlm_metrics_counter(m, "wlm_requests_total", "Requests.", "code=\"2xx\""));
    wlm_counter_add(wlm_metrics_counter(m, "wlm_requests_total", "Requests.", "code=\"4xx\""), 1);
    struct wlm_gauge *g = wlm_metrics_gauge(m, "wlm_nodes", "Nodes.", NULL);
    wlm_gauge_set(g, 2);
    wlm_gauge_add(g, 0.5);
    const double b[] = {0.1, 1};
    struct wlm_histogram *h =
        wlm_metrics_histogram(m, "wlm_latency_seconds", "Latency.", NULL, b, 2);
    wlm_histogram_observe(h, 0.05);
    wlm_histogram_observe(h, 0.5);
    wlm_histogram_observe(h, 5);
    /* Same name with another type is refused rather than corrupting output. */
    assert_null(wlm_metrics_gauge(m, "wlm_requests_total", "x", NULL));
    char *text = wlm_metrics_render(m);
    const char *expect = "# HELP wlm_requests_total Requests.\n"
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

/* Thousands of per-node series: each name and label string finds its own
 * series again (the registry indexes them), another type under a taken name
 * is refused, and every series is rendered once, in creation order. */
static void test_many_series(void **state)
{
    (void)state;
    struct wlm_metrics *m = wlm_metrics_new();
    enum { N = 3000 };
    static struct wlm_gauge *power[N];
    static struct wlm_counter *beats[N];
    char l[64];
    for (int i = 0; i < N; i++) {
        snprintf(l, sizeof(l), "node=\"n%d\"", i);
        power[i] = wlm_metrics_gauge(m, "wlm_node_power_watts", "Power.", l);
        beats[i] = wlm_metrics_counter(m, "wlm_node_heartbeats_total", "Beats.", l);
        assert_non_null(power[i]);
        assert_non_null(beats[i]);
        assert_ptr_not_equal((void *)power[i], (void *)beats[i]);
        wlm_gauge_set(power[i], i);
    }
    for (int i = N - 1; i >= 0; i--) {
        snprintf(l, sizeof(l), "node=\"n%d\"", i);
        assert_ptr_equal(power[i], wlm_metrics_gauge(m, "wlm_node_power_watts", "Power.", l));
        assert_ptr_equal(beats[i],
                         wlm_metrics_counter(m, "wlm_node_heartbeats_total", "Beats.", l));
        assert_null(wlm_metrics_counter(m, "wlm_node_power_watts", "Power.", l));
    }
    char *text = wlm_metrics_render(m);
    assert_non_null(text);
    assert_non_null(strstr(text, "wlm_node_power_watts{node=\"n2999\"} 2999\n"));
    const char *first = strstr(text, "wlm_node_power_watts{node=\"n0\"}");
    const char *last = strstr(text, "wlm_node_power_watts{node=\"n2999\"}");
    assert_true(first && last && first < last);
    int lines = 0;
    for (const char *c = strstr(text, "wlm_node_power_watts{"); c;
         c = strstr(c + 1, "wlm_node_power_watts{"))
        lines++;
    assert_int_equal(lines, N);
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
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_render),
                                       cmocka_unit_test(test_many_series),
                                       cmocka_unit_test(test_escape)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
