/*
 * test_jobsched_api.c - the /v1/jobs handlers through a real wlm_http_server
 * on loopback, and `wlm job` (cli/cmd_job.c) against it.
 *
 * The server and the scheduler live on a loop in a second thread; the test
 * thread only talks HTTP (blocking wlm_http_fetch), as a user would.
 */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cmd_job.h"
#include "jobsched.h"

#define TOKEN "s3cret"

struct srv {
    uv_loop_t loop;
    uv_async_t stop;
    struct wlm_http_server *http;
    pthread_t th;
    int port;
    char url[64];
    char path[256];
    struct jobsched_store *st;
    struct jobsched *js;
};

static double fake_now(void *ud)
{
    (void)ud;
    return 1e9; /* 2001-09-09: fixed, so goals and predictions are exact */
}

static void *loop_main(void *arg)
{
    struct srv *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void on_stop(uv_async_t *a)
{
    struct srv *s = a->data;
    wlm_http_server_close(s->http, NULL, NULL);
    uv_close((uv_handle_t *)&s->stop, NULL);
}

/* Prestate NOLOOP: submissions commit one by one instead of grouped. */
static int NOLOOP;

static int setup(void **state)
{
    int group = *state != &NOLOOP;
    struct srv *s = calloc(1, sizeof(*s));
    struct wlm_error err = {0};
    snprintf(s->path, sizeof(s->path), "/tmp/test_jobsched_api_%d_%p.db", (int)getpid(), (void *)s);
    unlink(s->path);
    assert_int_equal(jobsched_store_open(s->path, &s->st, &err), 0);
    assert_int_equal(jobsched_new(NULL, s->st, &s->js, &err), 0);
    jobsched_set_clock(s->js, fake_now, NULL);
    struct jobsched_node n = {"n1", 8, 2000, 16384, "x86_64", NULL, 0};
    assert_int_equal(jobsched_set_nodes(s->js, &n, 1), 0);
    assert_int_equal(uv_loop_init(&s->loop), 0);
    struct wlm_http_server_opts o = {.host = "127.0.0.1", .port = 0, .token = TOKEN};
    s->http = wlm_http_server_new(&s->loop, &o);
    assert_non_null(s->http);
    assert_int_equal(jobsched_api_register(s->http, s->js), 0);
    if (group)
        jobsched_api_set_loop(s->js, &s->loop);
    assert_int_equal(wlm_http_server_listen(s->http, &err), 0);
    s->port = wlm_http_server_port(s->http);
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
    uv_async_init(&s->loop, &s->stop, on_stop);
    s->stop.data = s;
    assert_int_equal(pthread_create(&s->th, NULL, loop_main, s), 0);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    struct srv *s = *state;
    uv_async_send(&s->stop);
    pthread_join(s->th, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    jobsched_free(s->js);
    jobsched_store_close(s->st);
    char p[300];
    unlink(s->path);
    snprintf(p, sizeof(p), "%s-wal", s->path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", s->path);
    unlink(p);
    free(s);
    return 0;
}

/* Blocking request; returns the status and the parsed body in *out. */
static int req(struct srv *s, const char *method, const char *path, const char *body,
               const char *token, json_t **out)
{
    char url[512];
    struct wlm_http_response r;
    struct wlm_error err = {0};
    memset(&r, 0, sizeof(r));
    snprintf(url, sizeof(url), "%s%s", s->url, path);
    int rc = wlm_http_fetch(method, url, token, body ? "application/json" : NULL, body,
                            body ? strlen(body) : 0, 10000, &r, &err);
    if (rc)
        fail_msg("%s %s: %s", method, path, err.msg);
    int status = r.status;
    json_t *v = r.body_len ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
    wlm_http_response_fini(&r);
    if (out)
        *out = v;
    else
        json_decref(v);
    return status;
}

static long long first_id(json_t *resp)
{
    return json_integer_value(json_object_get(json_array_get(json_object_get(resp, "jobs"), 0),
                                              "id"));
}

static void test_auth_required(void **state)
{
    struct srv *s = *state;
    assert_int_equal(req(s, "POST", "/v1/jobs", "{\"command\":\"x\"}", NULL, NULL), 401);
    assert_int_equal(req(s, "GET", "/v1/jobs", NULL, "wrong", NULL), 401);
    assert_int_equal(req(s, "DELETE", "/v1/jobs/1", NULL, NULL, NULL), 401);
    json_t *v;
    assert_int_equal(req(s, "GET", "/v1/jobs", NULL, TOKEN, &v), 200);
    assert_int_equal(json_integer_value(json_object_get(v, "total")), 0);
    json_decref(v);
}

static void test_submit_show_list_cancel(void **state)
{
    struct srv *s = *state;
    json_t *v;
    assert_int_equal(req(s, "POST", "/v1/jobs",
                         "{\"name\":\"sim\",\"command\":\"./sim\",\"class\":\"gold\","
                         "\"work_seconds\":100}",
                         TOKEN, &v),
                     201);
    long long id = first_id(v);
    assert_true(id > 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(v, "jobs"), 0), "state")),
                        "ELIGIBLE");
    json_decref(v);

    char path[64];
    snprintf(path, sizeof(path), "/v1/jobs/%lld", id);
    assert_int_equal(req(s, "GET", path, NULL, TOKEN, &v), 200);
    assert_string_equal(json_string_value(json_object_get(v, "name")), "sim");
    assert_true(fabs(json_number_value(json_object_get(v, "goal_time")) - (1e9 + 300)) < 1e-6);
    assert_int_equal(json_array_size(json_object_get(v, "history")), 2);
    json_decref(v);

    /* A batch: 201, all stored at once. */
    assert_int_equal(req(s, "POST", "/v1/jobs",
                         "{\"batch\":\"b1\",\"jobs\":[{\"name\":\"p\",\"command\":\"p\"},"
                         "{\"name\":\"q\",\"command\":\"q\",\"class\":\"bronze\","
                         "\"dependencies\":\"afterok:p\"}]}",
                         TOKEN, &v),
                     201);
    assert_int_equal(json_array_size(json_object_get(v, "jobs")), 2);
    json_decref(v);

    assert_int_equal(req(s, "GET", "/v1/jobs?state=PENDING", NULL, TOKEN, &v), 200);
    assert_int_equal(json_integer_value(json_object_get(v, "total")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(v, "jobs"), 0), "name")),
                        "q");
    json_decref(v);
    assert_int_equal(req(s, "GET", "/v1/jobs?class=gold", NULL, TOKEN, &v), 200);
    assert_int_equal(json_integer_value(json_object_get(v, "total")), 1);
    json_decref(v);
    assert_int_equal(req(s, "GET", "/v1/jobs?state=eligible,pending&limit=2", NULL, TOKEN, &v),
                     200);
    assert_int_equal(json_integer_value(json_object_get(v, "total")), 3);
    assert_int_equal(json_array_size(json_object_get(v, "jobs")), 2);
    json_decref(v);
    assert_int_equal(req(s, "GET", "/v1/jobs?state=SLEEPING", NULL, TOKEN, &v), 400);
    assert_non_null(strstr(json_string_value(json_object_get(v, "detail")), "SLEEPING"));
    json_decref(v);
    assert_int_equal(req(s, "GET", "/v1/jobs?class=diamond", NULL, TOKEN, NULL), 400);

    /* Cancel: 200, then 409 (already ended), 404 unknown, 400 not an id. */
    assert_int_equal(req(s, "DELETE", path, NULL, TOKEN, &v), 200);
    assert_string_equal(json_string_value(json_object_get(v, "state")), "CANCELLED");
    json_decref(v);
    assert_int_equal(req(s, "DELETE", path, NULL, TOKEN, NULL), 409);
    assert_int_equal(req(s, "DELETE", "/v1/jobs/999999", NULL, TOKEN, NULL), 404);
    assert_int_equal(req(s, "GET", "/v1/jobs/abc", NULL, TOKEN, NULL), 400);
}

static void test_bad_specs_store_nothing(void **state)
{
    struct srv *s = *state;
    json_t *v;
    assert_int_equal(req(s, "POST", "/v1/jobs", "{\"command\":\"x\",\"work_seconds\":-1}", TOKEN,
                         &v),
                     400);
    assert_string_equal(json_string_value(json_object_get(v, "field")), "work_seconds");
    json_decref(v);
    assert_int_equal(req(s, "POST", "/v1/jobs", "{\"command\":\"x\",\"priority\":3}", TOKEN, &v),
                     400);
    assert_string_equal(json_string_value(json_object_get(v, "field")), "priority");
    json_decref(v);
    assert_int_equal(req(s, "POST", "/v1/jobs",
                         "{\"jobs\":[{\"name\":\"a\",\"command\":\"a\",\"dependencies\":"
                         "\"afterok:b\"},{\"name\":\"b\",\"command\":\"b\",\"dependencies\":"
                         "\"afterany:a\"}]}",
                         TOKEN, &v),
                     400);
    assert_non_null(strstr(json_string_value(json_object_get(v, "detail")), "a -> b -> a"));
    json_decref(v);
    assert_int_equal(req(s, "POST", "/v1/jobs", "{\"command\":\"x\",\"dependencies\":\"afterok:5\"}",
                         TOKEN, &v),
                     400);
    assert_non_null(strstr(json_string_value(json_object_get(v, "detail")), "no job 5"));
    json_decref(v);
    assert_int_equal(req(s, "POST", "/v1/jobs", "{not json", TOKEN, NULL), 400);
    assert_int_equal(req(s, "GET", "/v1/jobs", NULL, TOKEN, &v), 200);
    assert_int_equal(json_integer_value(json_object_get(v, "total")), 0);
    json_decref(v);
}

static void test_idempotent_retry(void **state)
{
    struct srv *s = *state;
    json_t *v;
    const char *body = "{\"command\":\"x\",\"submit_id\":\"retry-1\"}";
    assert_int_equal(req(s, "POST", "/v1/jobs", body, TOKEN, &v), 201);
    long long id = first_id(v);
    json_decref(v);
    assert_int_equal(req(s, "POST", "/v1/jobs", body, TOKEN, &v), 200);
    assert_int_equal(first_id(v), id);
    assert_true(json_is_true(json_object_get(v, "duplicate")));
    json_decref(v);
    assert_int_equal(req(s, "GET", "/v1/jobs", NULL, TOKEN, &v), 200);
    assert_int_equal(json_integer_value(json_object_get(v, "total")), 1);
    json_decref(v);
}

static void test_state_usage_utility(void **state)
{
    struct srv *s = *state;
    json_t *v;
    assert_int_equal(req(s, "POST", "/v1/jobs",
                         "{\"name\":\"k\",\"command\":\"k\",\"work_seconds\":1000,\"threads\":2}",
                         TOKEN, &v),
                     201);
    long long id = first_id(v);
    json_decref(v);
    char path[96];
    snprintf(path, sizeof(path), "/v1/jobs/%lld/state", id);
    assert_int_equal(req(s, "POST", path, "{\"state\":\"RUNNING\"}", TOKEN, &v), 409);
    assert_non_null(strstr(json_string_value(json_object_get(v, "detail")), "ELIGIBLE -> RUNNING"));
    json_decref(v);
    assert_int_equal(req(s, "POST", path,
                         "{\"state\":\"STARTING\",\"reason\":\"placed\",\"node\":\"n1\","
                         "\"alloc_mhz\":1500}",
                         TOKEN, NULL),
                     200);
    assert_int_equal(req(s, "POST", path, "{\"state\":\"RUNNING\"}", TOKEN, NULL), 200);
    snprintf(path, sizeof(path), "/v1/jobs/%lld/usage", id);
    assert_int_equal(req(s, "POST", path, "{\"done_mcycles\":500000,\"threads\":2,\"speed_mhz\":"
                                          "750}",
                         TOKEN, &v),
                     200);
    assert_true(fabs(json_number_value(json_object_get(v, "done_mcycles")) - 500000) < 1e-6);
    json_decref(v);
    assert_int_equal(req(s, "POST", path, "{\"done_mcycles\":-1}", TOKEN, NULL), 400);
    snprintf(path, sizeof(path), "/v1/jobs/%lld/utility", id);
    assert_int_equal(req(s, "GET", path, NULL, TOKEN, &v), 200);
    json_t *pts = json_object_get(v, "points");
    assert_true(json_array_size(pts) >= 2);
    json_t *last = json_array_get(pts, json_array_size(pts) - 1);
    assert_true(fabs(json_number_value(json_array_get(last, 0)) - 2000) < 1e-6);
    json_decref(v);
    assert_int_equal(req(s, "GET", "/v1/jobqueue/hypothetical", NULL, TOKEN, &v), 200);
    assert_true(json_array_size(json_object_get(v, "levels")) >= 10);
    json_decref(v);
    snprintf(path, sizeof(path), "/v1/jobs/%lld/state", id);
    assert_int_equal(req(s, "POST", path, "{\"state\":\"COMPLETED\"}", TOKEN, NULL), 200);
    assert_int_equal(req(s, "GET", "/v1/jobprofiles", NULL, TOKEN, &v), 200);
    json_t *p0 = json_array_get(json_object_get(v, "profiles"), 0);
    assert_string_equal(json_string_value(json_object_get(p0, "kind")), "k");
    assert_true(fabs(json_number_value(json_object_get(p0, "mcycles")) - 500000) < 1e-6);
    json_decref(v);
}

/* Many submissions in flight at once (several land in one group), one bad
 * one among them: each gets its own answer, the good ones are all stored. */
struct conc {
    int done, created, bad;
};

static void conc_cb(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct conc *c = ud;
    c->done++;
    if (err && err->code)
        return;
    if (resp->status == 201)
        c->created++;
    else if (resp->status == 400)
        c->bad++;
}

static void test_group_commit_concurrent(void **state)
{
    struct srv *s = *state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct wlm_http_client *cl = wlm_http_client_new(&loop);
    struct conc c = {0, 0, 0};
    char url[128];
    snprintf(url, sizeof(url), "%s/v1/jobs", s->url);
    for (int i = 0; i < 40; i++) {
        char body[128];
        int len = i == 17 ? snprintf(body, sizeof(body), "{\"command\":\"x\",\"class\":\"tin\"}")
                          : snprintf(body, sizeof(body), "{\"command\":\"job%d\",\"submit_id\":\"c%d\"}", i, i);
        assert_int_equal(wlm_http_client_request(cl, "POST", url, TOKEN, "application/json", body,
                                                 (size_t)len, 10000, conc_cb, &c),
                         0);
    }
    while (c.done < 40)
        uv_run(&loop, UV_RUN_ONCE);
    wlm_http_client_free(cl);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    assert_int_equal(c.created, 39);
    assert_int_equal(c.bad, 1);
    json_t *v;
    assert_int_equal(req(s, "GET", "/v1/jobs", NULL, TOKEN, &v), 200);
    assert_int_equal(json_integer_value(json_object_get(v, "total")), 39);
    json_decref(v);
}

/* ------------------------------------------------------------ CLI */

/* Run wlm job with stdout captured into buf. */
static int run_cli(struct srv *s, char *buf, size_t size, const char *token, int argc, ...)
{
    char *argv[32];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[argc] = NULL;
    char tmp[] = "/tmp/test_jobsched_cli_XXXXXX";
    int fd = mkstemp(tmp);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    int rc = wlm_cmd_job(argc, argv, s->url, token);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, size - 1);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(tmp);
    return rc;
}

static void test_cli(void **state)
{
    struct srv *s = *state;
    char out[8192];
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 8, "job", "submit", "--name", "one",
                             "--class", "platinum", "--", "sleep 1"),
                     0);
    assert_non_null(strstr(out, "submitted job 1 (one) ELIGIBLE"));
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 6, "job", "submit", "--command", "x",
                             "--work-seconds", "-3"),
                     1);
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 3, "job", "submit", "--bogus"), 2);
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 2, "job", "frobnicate"), 2);
    assert_int_equal(run_cli(s, out, sizeof(out), NULL, 2, "job", "list"), 1);

    /* Batch file with a dependency by name. */
    char spec[] = "/tmp/test_jobsched_spec_XXXXXX";
    int fd = mkstemp(spec);
    const char *text = "{\"jobs\":[{\"name\":\"first\",\"command\":\"a\"},"
                       "{\"name\":\"second\",\"command\":\"b\",\"dependencies\":\"afterok:first\"}]}";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 4, "job", "submit", "-f", spec), 0);
    unlink(spec);
    assert_non_null(strstr(out, "submitted job 2 (first) ELIGIBLE"));
    assert_non_null(strstr(out, "submitted job 3 (second) PENDING: waiting for dependency afterok:2"));

    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 2, "job", "list"), 0);
    assert_non_null(strstr(out, "STATE"));
    assert_non_null(strstr(out, "second"));
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 4, "job", "list", "--state", "PENDING"),
                     0);
    assert_null(strstr(out, "first"));
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 3, "job", "list", "--json"), 0);
    json_t *v = json_loads(out, 0, NULL);
    assert_non_null(v);
    assert_int_equal(json_array_size(json_object_get(v, "jobs")), 3);
    json_decref(v);

    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 3, "job", "show", "3"), 0);
    assert_non_null(strstr(out, "state:       PENDING: waiting for dependency afterok:2"));
    assert_non_null(strstr(out, "afterok:2  (ELIGIBLE, waiting)"));
    assert_non_null(strstr(out, "history:"));
    assert_non_null(strstr(out, "goal:"));
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 3, "job", "show", "77"), 1);
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 3, "job", "show", "x"), 2);

    /* wait: timeout (4), then cancel 2 -> 3 fails -> wait says 1. */
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 8, "job", "wait", "3", "--timeout", "0.3",
                             "--interval", "0.1", "--quiet"),
                     4);
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 3, "job", "cancel", "2"), 0);
    assert_non_null(strstr(out, "cancelled job 2"));
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 5, "job", "wait", "2", "3", "--quiet"),
                     1);
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 3, "job", "cancel", "2"), 1);

    /* A completed job: wait exits 0. */
    assert_int_equal(req(s, "POST", "/v1/jobs/1/state", "{\"state\":\"STARTING\"}", TOKEN, NULL),
                     200);
    assert_int_equal(req(s, "POST", "/v1/jobs/1/state", "{\"state\":\"COMPLETED\"}", TOKEN, NULL),
                     200);
    assert_int_equal(run_cli(s, out, sizeof(out), TOKEN, 4, "job", "wait", "1", "--quiet"), 0);

    /* Nobody listening: exit 3. */
    char *argv[] = {"job", "list", NULL};
    assert_int_equal(wlm_cmd_job(2, argv, "http://127.0.0.1:1", TOKEN), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auth_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_show_list_cancel, setup, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_submit_show_list_cancel, setup, teardown,
                                                 &NOLOOP),
        cmocka_unit_test_prestate_setup_teardown(test_bad_specs_store_nothing, setup, teardown,
                                                 &NOLOOP),
        cmocka_unit_test_setup_teardown(test_group_commit_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_specs_store_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_usage_utility, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
    };
    return cmocka_run_group_tests_name("jobsched_api", tests, NULL, NULL);
}
