/*
 * test_http_client.c - the HTTP client against the wlm server: blocking fetch,
 * keep-alive reuse, timeouts, transport errors, chunked responses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_test_util.h"

#define TOKEN "tok-123"

static atomic_int g_aborted;

/* ---------------------------------------------------------------- handlers (loop thread) */

static void h_peer(struct wlm_http_req *req, void *ud)
{
    json_t *v = json_pack("{s:s, s:s, s:s%}", "peer", req->peer, "method", req->method, "body",
                          req->body, req->body_len);
    wlm_http_respond_json(req, 200, v);
}

static void h_hang_abort(struct wlm_http_req *req)
{
    atomic_fetch_add(&g_aborted, 1);
}

static void h_hang(struct wlm_http_req *req, void *ud)
{
    req->on_abort = h_hang_abort;
}

static void h_chunked(struct wlm_http_req *req, void *ud)
{
    wlm_http_stream_begin(req, 200, "text/plain", NULL);
    for (int i = 0; i < 50; i++) {
        char line[32];
        int n = snprintf(line, sizeof(line), "line %d\n", i);
        wlm_http_stream_write(req, line, (size_t)n);
    }
    wlm_http_stream_end(req);
}

static void h_close(struct wlm_http_req *req, void *ud)
{
    wlm_http_respond(req, 200, "text/plain", "Connection: close", "bye", 3);
}

static void setup_routes(struct test_server *ts, void *arg)
{
    wlm_http_server_route(ts->srv, NULL, "/peer", 0, h_peer, ts);
    wlm_http_server_route(ts->srv, "POST", "/secure", 1, h_peer, ts);
    wlm_http_server_route(ts->srv, "GET", "/hang", 0, h_hang, ts);
    wlm_http_server_route(ts->srv, "GET", "/chunked", 0, h_chunked, ts);
    wlm_http_server_route(ts->srv, "GET", "/close", 0, h_close, ts);
}

static struct test_server g_ts;

static int setup(void **state)
{
    struct wlm_http_server_opts o = {.token = TOKEN, .idle_timeout_ms = 5000};
    atomic_store(&g_aborted, 0);
    return test_server_start(&g_ts, &o, setup_routes, NULL);
}

static int teardown(void **state)
{
    test_server_stop(&g_ts);
    return 0;
}

static char *url(const char *path)
{
    return wlm_asprintf("http://127.0.0.1:%d%s", g_ts.port, path);
}

/* ---------------------------------------------------------------- tests */

static void test_fetch_json(void **state)
{
    char *u = url("/secure");
    struct wlm_http_response resp;
    struct wlm_error err;
    assert_int_equal(wlm_http_fetch("POST", u, TOKEN, NULL, "{\"a\":1}", 7, 2000, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(wlm_http_response_header(&resp, "content-type"), "application/json");
    json_t *v = json_loadb(resp.body, resp.body_len, 0, NULL);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "body")), "{\"a\":1}");
    assert_string_equal(json_string_value(json_object_get(v, "method")), "POST");
    json_decref(v);
    wlm_http_response_fini(&resp);

    assert_int_equal(wlm_http_fetch("POST", u, "bad", NULL, "{}", 2, 2000, &resp, &err), 0);
    assert_int_equal(resp.status, 401);
    wlm_http_response_fini(&resp);
    free(u);

    /* A name, resolved asynchronously (and tried address by address). */
    u = wlm_asprintf("http://localhost:%d/peer?x=1", g_ts.port);
    assert_int_equal(wlm_http_fetch("GET", u, NULL, NULL, NULL, 0, 2000, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    wlm_http_response_fini(&resp);
    free(u);
}

static void test_fetch_chunked_and_head(void **state)
{
    char *u = url("/chunked");
    struct wlm_http_response resp;
    struct wlm_error err;
    assert_int_equal(wlm_http_fetch("GET", u, NULL, NULL, NULL, 0, 2000, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_true(strncmp(resp.body, "line 0\nline 1\n", 14) == 0);
    assert_non_null(strstr(resp.body, "line 49\n"));
    wlm_http_response_fini(&resp);
    free(u);

    u = url("/peer");
    assert_int_equal(wlm_http_fetch("HEAD", u, NULL, NULL, NULL, 0, 2000, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body_len, 0);
    wlm_http_response_fini(&resp);
    free(u);
}

static void test_fetch_refused(void **state)
{
    int port = free_port();
    char *u = wlm_asprintf("http://127.0.0.1:%d/x", port);
    struct wlm_http_response resp;
    struct wlm_error err;
    assert_int_not_equal(wlm_http_fetch("GET", u, NULL, NULL, NULL, 0, 2000, &resp, &err), 0);
    assert_int_equal(resp.status, 0);
    char want[96];
    snprintf(want, sizeof(want), "connect 127.0.0.1:%d: connection refused", port);
    assert_string_equal(err.msg, want);
    free(u);

    assert_int_equal(wlm_http_fetch("GET", "ftp://x/y", NULL, NULL, NULL, 0, 2000, &resp, &err),
                     -WLM_EINVAL);
    assert_string_equal(err.field, "url");
}

static void test_fetch_timeout(void **state)
{
    char *u = url("/hang");
    struct wlm_http_response resp;
    struct wlm_error err;
    assert_int_equal(wlm_http_fetch("GET", u, NULL, NULL, NULL, 0, 150, &resp, &err),
                     -WLM_ETIMEOUT);
    assert_non_null(strstr(err.msg, "timed out after 150 ms"));
    free(u);
    /* The server noticed the client hang up. */
    for (int i = 0; i < 300 && atomic_load(&g_aborted) < 1; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&g_aborted), 1);
}

/* Asynchronous requests on one client loop. */
struct seq {
    struct wlm_http_client *c;
    char *url;
    int left, ok;
    char peers[8][64];
    int npeers;
    int last_status;
    struct wlm_error last_err;
};

static void seq_cb(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct seq *s = ud;
    s->last_status = resp->status;
    s->last_err = *err;
    if (err->code)
        return;
    s->ok++;
    json_t *v = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *peer = json_string_value(json_object_get(v, "peer"));
    int seen = 0;
    for (int i = 0; peer && i < s->npeers; i++)
        seen |= strcmp(s->peers[i], peer) == 0;
    if (peer && !seen && s->npeers < 8)
        snprintf(s->peers[s->npeers++], sizeof(s->peers[0]), "%s", peer);
    json_decref(v);
    if (--s->left > 0)
        wlm_http_client_request(s->c, "GET", s->url, NULL, NULL, NULL, 0, 2000, seq_cb, s);
}

static void test_client_keepalive_reuse(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct seq s = {.c = wlm_http_client_new(&loop), .url = url("/peer"), .left = 5};
    assert_int_equal(
        wlm_http_client_request(s.c, "GET", s.url, NULL, NULL, NULL, 0, 2000, seq_cb, &s), 0);
    uv_run(&loop, UV_RUN_DEFAULT); /* idle connections do not keep the loop alive */
    assert_int_equal(s.ok, 5);
    assert_int_equal(s.npeers, 1); /* one TCP connection served all five */

    /* A response with Connection: close is not reused. */
    char *cu = url("/close");
    s.left = 1;
    assert_int_equal(wlm_http_client_request(s.c, "GET", cu, NULL, NULL, NULL, 0, 2000, seq_cb, &s),
                     0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s.last_status, 200);
    s.left = 1;
    s.npeers = 0;
    assert_int_equal(
        wlm_http_client_request(s.c, "GET", s.url, NULL, NULL, NULL, 0, 2000, seq_cb, &s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s.ok, 7);
    free(cu);

    wlm_http_client_free(s.c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(s.url);
}

static void test_client_retries_stale_idle(void **state)
{
    /* The server drops idle connections quickly; the client's pooled one is
     * then stale and the next request must still succeed. */
    struct test_server ts;
    struct wlm_http_server_opts o = {.idle_timeout_ms = 50};
    assert_int_equal(test_server_start(&ts, &o, setup_routes, NULL), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct seq s = {.c = wlm_http_client_new(&loop), .left = 1};
    s.url = wlm_asprintf("http://127.0.0.1:%d/peer", ts.port);
    for (int i = 0; i < 3; i++) {
        s.left = 1;
        assert_int_equal(
            wlm_http_client_request(s.c, "GET", s.url, NULL, NULL, NULL, 0, 2000, seq_cb, &s), 0);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(s.last_err.code, 0);
        usleep(120000);
    }
    assert_int_equal(s.ok, 3);
    wlm_http_client_free(s.c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(s.url);
    test_server_stop(&ts);
}

static void free_cb(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct wlm_error *out = ud;
    *out = *err;
}

static void test_client_free_aborts(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct wlm_http_client *c = wlm_http_client_new(&loop);
    char *u = url("/hang");
    struct wlm_error err = {0};
    assert_int_equal(wlm_http_client_request(c, "GET", u, NULL, NULL, NULL, 0, 0, free_cb, &err), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    wlm_http_client_free(c);
    assert_int_not_equal(err.code, 0);
    assert_non_null(strstr(err.msg, "client closed"));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fetch_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_chunked_and_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_keepalive_reuse, setup, teardown),
        cmocka_unit_test(test_client_retries_stale_idle),
        cmocka_unit_test_setup_teardown(test_client_free_aborts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
