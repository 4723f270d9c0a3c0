/* Clients of several controllers: a URL naming a list of servers fails over
 * past a dead one, follows a standby's 307 to the leader, retries a 503 on
 * the next server, and a single URL still gets one try. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/http_test_util.h"

static int leader_port;

static void leader_jobs(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    wlm_http_respond_json(req, 201, json_pack("{s:s,s:s}", "from", "leader", "method",
                                              req->method));
}

static void standby_any(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    char hdr[128];
    snprintf(hdr, sizeof(hdr), "Location: http://127.0.0.1:%d%s", leader_port, req->url);
    wlm_http_respond(req, 307, "text/plain", hdr, "see the leader\n", 15);
}

static void busy_any(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    wlm_http_respond_error(req, 503, "unavailable", "no leader elected yet");
}

static void setup_leader(struct test_server *ts, void *arg)
{
    (void)arg;
    wlm_http_server_route(ts->srv, "POST", "/v1/jobs", 0, leader_jobs, NULL);
}
static void setup_standby(struct test_server *ts, void *arg)
{
    (void)arg;
    wlm_http_server_route(ts->srv, NULL, "/*", 0, standby_any, NULL);
}
static void setup_busy(struct test_server *ts, void *arg)
{
    (void)arg;
    wlm_http_server_route(ts->srv, NULL, "/*", 0, busy_any, NULL);
}

static void test_list_failover_and_redirect(void **state)
{
    (void)state;
    struct test_server leader, standby, busy;
    struct wlm_http_server_opts o = {.host = "127.0.0.1"};
    assert_int_equal(test_server_start(&leader, &o, setup_leader, NULL), 0);
    leader_port = leader.port;
    assert_int_equal(test_server_start(&standby, &o, setup_standby, NULL), 0);
    assert_int_equal(test_server_start(&busy, &o, setup_busy, NULL), 0);
    int dead = free_port();
    char url[256];
    struct wlm_http_response r;
    struct wlm_error err;

    /* dead first, then a standby: the POST arrives at the leader */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d,127.0.0.1:%d/v1/jobs", dead, standby.port);
    assert_int_equal(wlm_http_fetch("POST", url, NULL, NULL, "{}", 2, 3000, &r, &err), 0);
    assert_int_equal(r.status, 201);
    assert_non_null(strstr(r.body, "\"POST\""));
    wlm_http_response_fini(&r);

    /* full URLs in the list; a 503 (no leader yet) moves on to the next */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d,http://127.0.0.1:%d/v1/jobs", busy.port,
             leader.port);
    assert_int_equal(wlm_http_fetch("POST", url, NULL, NULL, "{}", 2, 3000, &r, &err), 0);
    assert_int_equal(r.status, 201);
    wlm_http_response_fini(&r);

    /* nobody answers: an error naming the last server, within the timeout */
    int dead2 = free_port();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d,127.0.0.1:%d/v1/jobs", dead, dead2);
    double t0 = wlm_now_mono();
    assert_true(wlm_http_fetch("POST", url, NULL, NULL, "{}", 2, 800, &r, &err) < 0);
    assert_true(wlm_now_mono() - t0 < 3.0);
    assert_non_null(strstr(err.msg, "connection refused"));
    wlm_http_response_fini(&r);

    /* one server that redirects: followed too */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/jobs", standby.port);
    assert_int_equal(wlm_http_fetch("POST", url, NULL, NULL, "{}", 2, 3000, &r, &err), 0);
    assert_int_equal(r.status, 201);
    wlm_http_response_fini(&r);

    /* one server answering 503: returned as is (no list to fail over to) */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/jobs", busy.port);
    assert_int_equal(wlm_http_fetch("POST", url, NULL, NULL, "{}", 2, 3000, &r, &err), 0);
    assert_int_equal(r.status, 503);
    wlm_http_response_fini(&r);

    test_server_stop(&leader);
    test_server_stop(&standby);
    test_server_stop(&busy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_failover_and_redirect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
