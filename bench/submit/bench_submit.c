/*
 * bench_submit - durable job submissions per second through the HTTP API.
 *
 * By default it starts the job scheduler's REST API in-process on loopback
 * with a fresh SQLite database on disk (WAL, synchronous=FULL: every 201 is
 * on disk), then submits jobs with the HTTP client: one job per request and
 * batches, with 1 and several requests in flight. With --url it measures a
 * running controller instead. The anchor is Slurm's documented sustained
 * rate of 500 simple jobs/s.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobsched.h"

#define SLURM_ANCHOR 500.0

struct server {
    uv_loop_t loop;
    uv_async_t stop;
    struct wlm_http_server *http;
    struct jobsched_store *st;
    struct jobsched *js;
    pthread_t th;
    char url[64];
};

static void *server_main(void *arg)
{
    struct server *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void server_stop_cb(uv_async_t *a)
{
    struct server *s = a->data;
    wlm_http_server_close(s->http, NULL, NULL);
    uv_close((uv_handle_t *)&s->stop, NULL);
}

static int server_start(struct server *s, const char *db, const char *token)
{
    struct wlm_error err;
    wlm_error_clear(&err);
    if (jobsched_store_open(db, &s->st, &err) || jobsched_new(NULL, s->st, &s->js, &err)) {
        fprintf(stderr, "bench_submit: %s\n", err.msg);
        return -1;
    }
    struct jobsched_node n = {"bench-node", 64, 2400, 262144, "x86_64", NULL, 0};
    jobsched_set_nodes(s->js, &n, 1);
    uv_loop_init(&s->loop);
    struct wlm_http_server_opts o = {.host = "127.0.0.1", .port = 0, .token = token};
    s->http = wlm_http_server_new(&s->loop, &o);
    if (s->http)
        jobsched_api_set_loop(s->js, &s->loop); /* group commit */
    if (!s->http || jobsched_api_register(s->http, s->js) || wlm_http_server_listen(s->http, &err)) {
        fprintf(stderr, "bench_submit: cannot start server: %s\n", err.msg);
        return -1;
    }
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", wlm_http_server_port(s->http));
    uv_async_init(&s->loop, &s->stop, server_stop_cb);
    s->stop.data = s;
    return pthread_create(&s->th, NULL, server_main, s);
}

static void server_stop(struct server *s)
{
    uv_async_send(&s->stop);
    pthread_join(s->th, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    size_t n;
    jobsched_jobs(s->js, &n);
    printf("# %zu jobs stored\n", n);
    jobsched_free(s->js);
    jobsched_store_close(s->st);
}

/* ---------------------------------------------------------------- client */

struct run {
    uv_loop_t loop;
    struct wlm_http_client *client;
    const char *url;
    const char *token;
    int batch, conc;
    long total_jobs;
    long sent_jobs, acked_jobs, errors;
    int inflight;
    char *body;
    size_t body_len;
};

static void issue(struct run *r);

static void on_done(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct run *r = ud;
    r->inflight--;
    if (err && err->code) {
        r->errors++;
        if (r->errors < 5)
            fprintf(stderr, "bench_submit: request failed: %s\n", err->msg);
    } else if (resp->status == 201) {
        r->acked_jobs += r->batch;
    } else {
        r->errors++;
        if (r->errors < 5)
            fprintf(stderr, "bench_submit: status %d: %.200s\n", resp->status,
                    resp->body ? resp->body : "");
    }
    issue(r);
}

static void issue(struct run *r)
{
    while (r->sent_jobs < r->total_jobs && r->errors < 100) {
        char url[256];
        snprintf(url, sizeof(url), "%s/v1/jobs", r->url);
        if (wlm_http_client_request(r->client, "POST", url, r->token, "application/json", r->body,
                                    r->body_len, 30000, on_done, r) != 0) {
            r->errors++;
            return;
        }
        r->sent_jobs += r->batch;
        if (++r->inflight >= r->conc)
            return;
    }
}

static char *make_body(int batch)
{
    struct wlm_buf b;
    wlm_buf_init(&b);
    const char *job = "{\"name\":\"bench\",\"command\":\"/bin/true\",\"work_seconds\":60,"
                      "\"class\":\"gold\",\"memory_mb\":256}";
    if (batch == 1) {
        wlm_buf_printf(&b, "%s", job);
    } else {
        wlm_buf_printf(&b, "{\"jobs\":[");
        for (int i = 0; i < batch; i++)
            wlm_buf_printf(&b, "%s%s", i ? "," : "", job);
        wlm_buf_printf(&b, "]}");
    }
    return wlm_buf_steal(&b);
}

/* Submit `jobs` jobs in requests of `batch`, `conc` requests in flight.
 * Returns jobs acknowledged per second. */
static double measure(const char *url, const char *token, long jobs, int batch, int conc,
                      long *errors)
{
    struct run r;
    memset(&r, 0, sizeof(r));
    uv_loop_init(&r.loop);
    r.conc = conc;
    r.client = wlm_http_client_new(&r.loop);
    r.url = url;
    r.token = token;
    r.batch = batch;
    r.total_jobs = jobs - jobs % batch;
    r.body = make_body(batch);
    r.body_len = strlen(r.body);
    double t0 = wlm_now_mono();
    issue(&r);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    double dt = wlm_now_mono() - t0;
    wlm_http_client_free(r.client);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    free(r.body);
    *errors = r.errors;
    return dt > 0 ? (double)r.acked_jobs / dt : 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: bench_submit [--jobs N] [--url URL --token T] [--db PATH]\n"
            "Durable job submissions per second through POST /v1/jobs.\n"
            "  --jobs N     jobs per configuration (default 2000)\n"
            "  --url URL    measure a running controller instead of an in-process server\n"
            "  --token T    bearer token for --url (default $WLM_TOKEN)\n"
            "  --db PATH    database of the in-process server (default a fresh temp file)\n"
            "  --quick      fewer configurations (for smoke runs)\n");
}

int main(int argc, char **argv)
{
    long jobs = 2000;
    const char *url = NULL, *token = getenv("WLM_TOKEN"), *db = NULL;
    int quick = 0;
    static const struct option opts[] = {
        {"jobs", required_argument, 0, 'n'}, {"url", required_argument, 0, 'u'},
        {"token", required_argument, 0, 't'}, {"db", required_argument, 0, 'd'},
        {"quick", no_argument, 0, 'q'},      {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},    {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'n': {
            char *end;
            jobs = strtol(optarg, &end, 10);
            if (*end || jobs < 1) {
                fprintf(stderr, "bench_submit: --jobs: '%s' is not a positive number\n", optarg);
                return 2;
            }
            break;
        }
        case 'u': url = optarg; break;
        case 't': token = optarg; break;
        case 'd': db = optarg; break;
        case 'q': quick = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("bench_submit %s\n", WLM_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_submit: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    wlm_log_set_level(WLM_LOG_WARN);
    struct server srv;
    memset(&srv, 0, sizeof(srv));
    char tmpdb[128] = "";
    if (!url) {
        if (!db) {
            snprintf(tmpdb, sizeof(tmpdb), "/tmp/bench_submit_%d.db", (int)getpid());
            db = tmpdb;
        }
        token = "bench-token";
        if (server_start(&srv, db, token))
            return 1;
        url = srv.url;
    }
    struct {
        int batch, conc;
    } cfgs[] = {{1, 1}, {1, 16}, {1, 64}, {10, 1}, {10, 16}, {100, 1}, {100, 4}, {1000, 1}};
    size_t ncfg = quick ? 2 : WLM_ARRAY_LEN(cfgs);
    printf("# durable submissions through POST /v1/jobs (%s, %ld jobs per row)\n",
           tmpdb[0] || db ? "in-process API, SQLite WAL synchronous=FULL" : url, jobs);
    printf("%-10s %-12s %12s %10s %8s\n", "batch", "in-flight", "jobs/s", "x Slurm", "errors");
    int rc = 0;
    for (size_t i = 0; i < ncfg; i++) {
        long n = jobs;
        if (n < cfgs[i].batch)
            n = cfgs[i].batch;
        long errors = 0;
        double rate = measure(url, token, n, cfgs[i].batch, cfgs[i].conc, &errors);
        printf("%-10d %-12d %12.0f %9.1fx %8ld\n", cfgs[i].batch, cfgs[i].conc, rate,
               rate / SLURM_ANCHOR, errors);
        fflush(stdout);
        if (errors)
            rc = 1;
    }
    printf("# anchor: Slurm documents ~%.0f simple jobs/s sustained\n", SLURM_ANCHOR);
    if (srv.js)
        server_stop(&srv);
    if (tmpdb[0]) {
        char p[160];
        unlink(tmpdb);
        snprintf(p, sizeof(p), "%s-wal", tmpdb);
        unlink(p);
        snprintf(p, sizeof(p), "%s-shm", tmpdb);
        unlink(p);
    }
    return rc;
}
