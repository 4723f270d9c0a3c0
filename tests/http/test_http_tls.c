/*
 * test_http_tls.c - HTTPS between common's client and server (issue 17):
 * a round trip with keep-alive reuse, verification failures (another CA,
 * another name) with the reason in the error, plain HTTP to the HTTPS port,
 * a key that does not match its certificate, and $WLM_CA for wlm_http_fetch.
 * Certificates come from scripts/lib.sh (the openssl command line).
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

static char g_dir[64];
static char g_cert[128], g_key[128], g_ca[128], g_other_ca[128], g_ip_only[128], g_ip_only_key[128];
static struct test_server g_ts;

static void h_peer(struct wlm_http_req *req, void *ud)
{
    (void)ud;
    wlm_http_respond_json(req, 200, json_pack("{s:s, s:b}", "peer", req->peer, "tls", req->tls));
}

static void setup_routes(struct test_server *ts, void *arg)
{
    (void)arg;
    wlm_http_server_route(ts->srv, "GET", "/peer", 0, h_peer, ts);
}

static int group_setup(void **state)
{
    (void)state;
    const char *src = getenv("WLM_SOURCE_DIR");
    snprintf(g_dir, sizeof g_dir, "/tmp/wlm-test-tls-XXXXXX");
    if (!src || !mkdtemp(g_dir))
        return -1;
    char *cmd = wlm_asprintf(". '%s/scripts/lib.sh' && wlm_make_ca '%s' && "
                             "wlm_make_cert '%s' srv 'IP:127.0.0.1,DNS:localhost' && "
                             "wlm_make_cert '%s' iponly 'IP:127.0.0.1' && "
                             "wlm_make_ca '%s/other' 'other CA'",
                             src, g_dir, g_dir, g_dir, g_dir);
    char *bash = wlm_asprintf("bash -c \"%s\"", cmd);
    int rc = system(bash);
    free(cmd);
    free(bash);
    snprintf(g_cert, sizeof g_cert, "%s/srv.pem", g_dir);
    snprintf(g_key, sizeof g_key, "%s/srv.key", g_dir);
    snprintf(g_ca, sizeof g_ca, "%s/ca.pem", g_dir);
    snprintf(g_other_ca, sizeof g_other_ca, "%s/other/ca.pem", g_dir);
    snprintf(g_ip_only, sizeof g_ip_only, "%s/iponly.pem", g_dir);
    snprintf(g_ip_only_key, sizeof g_ip_only_key, "%s/iponly.key", g_dir);
    return rc == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char *cmd = wlm_asprintf("rm -rf '%s'", g_dir);
    int rc = system(cmd);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

static int start(const char *cert, const char *key)
{
    struct wlm_http_server_opts o = {.tls_cert = cert, .tls_key = key, .idle_timeout_ms = 5000};
    return test_server_start(&g_ts, &o, setup_routes, NULL);
}

static int setup(void **state)
{
    (void)state;
    return start(g_cert, g_key);
}

static int teardown(void **state)
{
    (void)state;
    test_server_stop(&g_ts);
    return 0;
}

struct seq {
    struct wlm_http_client *c;
    char *url;
    int left, ok, tls;
    char first_peer[64];
    int same_peer;
    char err[512];
};

static void seq_cb(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct seq *s = ud;
    if (err && err->code) {
        wlm_strlcpy(s->err, err->msg, sizeof s->err);
        return;
    }
    json_t *v = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *peer = json_string_value(json_object_get(v, "peer"));
    if (resp->status == 200 && peer) {
        s->ok++;
        s->tls += json_is_true(json_object_get(v, "tls"));
        if (!s->first_peer[0])
            wlm_strlcpy(s->first_peer, peer, sizeof s->first_peer);
        else
            s->same_peer += strcmp(peer, s->first_peer) == 0;
    }
    json_decref(v);
    if (--s->left > 0)
        wlm_http_client_request(s->c, "GET", s->url, NULL, NULL, NULL, 0, 3000, seq_cb, s);
}

/* Run `n` sequential GETs of `url` with a client trusting `ca`. */
static void run_seq(struct seq *s, const char *url, const char *ca, int n)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    memset(s, 0, sizeof *s);
    s->c = wlm_http_client_new(&loop);
    s->url = strdup(url);
    s->left = n;
    struct wlm_error err = {0};
    assert_int_equal(wlm_http_client_set_ca(s->c, ca, &err), 0);
    assert_int_equal(
        wlm_http_client_request(s->c, "GET", s->url, NULL, NULL, NULL, 0, 3000, seq_cb, s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    wlm_http_client_free(s->c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(s->url);
}

static void test_tls_round_trip_and_reuse(void **state)
{
    (void)state;
    char *u = wlm_asprintf("https://127.0.0.1:%d/peer", g_ts.port);
    struct seq s;
    run_seq(&s, u, g_ca, 5);
    assert_string_equal(s.err, "");
    assert_int_equal(s.ok, 5);
    assert_int_equal(s.tls, 5);       /* the server saw TLS every time */
    assert_int_equal(s.same_peer, 4); /* one TLS connection served all five */
    free(u);
}

static void test_tls_other_ca_refused(void **state)
{
    (void)state;
    char *u = wlm_asprintf("https://127.0.0.1:%d/peer", g_ts.port);
    struct seq s;
    run_seq(&s, u, g_other_ca, 1);
    assert_int_equal(s.ok, 0);
    assert_non_null(strstr(s.err, "certificate verify failed"));
    assert_non_null(strstr(s.err, "local issuer"));
    free(u);
}

static void test_tls_wrong_name_refused(void **state)
{
    (void)state;
    test_server_stop(&g_ts);
    assert_int_equal(start(g_ip_only, g_ip_only_key), 0); /* names 127.0.0.1, not localhost */
    char *u = wlm_asprintf("https://localhost:%d/peer", g_ts.port);
    struct seq s;
    run_seq(&s, u, g_ca, 1);
    assert_int_equal(s.ok, 0);
    assert_non_null(strstr(s.err, "hostname mismatch"));
    free(u);
    u = wlm_asprintf("https://127.0.0.1:%d/peer", g_ts.port);
    run_seq(&s, u, g_ca, 1); /* the name it does carry works */
    assert_int_equal(s.ok, 1);
    free(u);
}

static void test_plain_http_to_https_port(void **state)
{
    (void)state;
    char *u = wlm_asprintf("http://127.0.0.1:%d/peer", g_ts.port);
    struct wlm_http_response resp;
    struct wlm_error err;
    assert_int_equal(wlm_http_fetch("GET", u, NULL, NULL, NULL, 0, 3000, &resp, &err), 0);
    assert_int_equal(resp.status, 400);
    assert_non_null(strstr(resp.body, "this port speaks HTTPS"));
    wlm_http_response_fini(&resp);
    free(u);
}

static void test_fetch_uses_wlm_ca(void **state)
{
    (void)state;
    char *u = wlm_asprintf("https://127.0.0.1:%d/peer", g_ts.port);
    struct wlm_http_response resp;
    struct wlm_error err;
    setenv("WLM_CA", g_ca, 1);
    assert_int_equal(wlm_http_fetch("GET", u, NULL, NULL, NULL, 0, 3000, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    wlm_http_response_fini(&resp);
    setenv("WLM_CA", g_other_ca, 1);
    assert_int_not_equal(wlm_http_fetch("GET", u, NULL, NULL, NULL, 0, 3000, &resp, &err), 0);
    assert_non_null(strstr(err.msg, "certificate verify failed"));
    unsetenv("WLM_CA");
    free(u);
}

static void test_mismatched_key_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct wlm_http_server_opts o = {.tls_cert = g_cert, .tls_key = g_ip_only_key};
    struct wlm_http_server *srv = wlm_http_server_new(&loop, &o);
    assert_non_null(srv);
    struct wlm_error err = {0};
    assert_int_not_equal(wlm_http_server_listen(srv, &err), 0);
    assert_non_null(strstr(err.msg, "iponly.key"));
    assert_non_null(strstr(err.msg, "mismatch"));
    struct wlm_http_server_opts half = {.tls_cert = g_cert};
    struct wlm_http_server *srv2 = wlm_http_server_new(&loop, &half);
    assert_int_not_equal(wlm_http_server_listen(srv2, &err), 0);
    assert_non_null(strstr(err.msg, "--tls-key"));
    wlm_http_server_close(srv, NULL, NULL);
    wlm_http_server_close(srv2, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tls_round_trip_and_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_other_ca_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_wrong_name_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_http_to_https_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_uses_wlm_ca, setup, teardown),
        cmocka_unit_test(test_mismatched_key_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
