/*
 * ha_load - load for the HA benchmarks (bench/ha/run.py drives it).
 *
 *   ha_load submit --url U --jobs N [--batch B] [--conc C]
 *     POST /v1/jobs, B jobs per request, C requests in flight; prints
 *     "jobs_per_s=... req_p50_ms=... req_p99_ms=... errors=..." (a job
 *     counts when its request answered 201).
 *   ha_load heartbeats --url U --nodes N [--period-s P] [--duration-s D]
 *     registers N nodes, then each sends a heartbeat every P seconds
 *     (spread evenly) for D seconds; prints "hb_per_s=... p50_ms=...
 *     p99_ms=... errors=...".
 * The token comes from $WLM_TOKEN.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

struct load {
    uv_loop_t *loop;
    struct wlm_http_client *client;
    const char *url, *token;
    long total, sent, done, errors, ok_units;
    int batch, conc, inflight;
    char *body;
    double *lat;
    size_t nlat, caplat;
    /* heartbeats */
    long nodes, next_node;
    double period, duration, start, next_due;
    uv_timer_t tick;
    int registering;
    char *registered; /* per node: registration acknowledged (it beats from then on) */
    long nregistered;
    double measure_from; /* steady state: one period after the last registration */
};

struct req {
    struct load *l;
    double t0;
    int units;
};

static void add_lat(struct load *l, double ms)
{
    if (l->nlat == l->caplat) {
        size_t nc = l->caplat ? l->caplat * 2 : 4096;
        double *nv = realloc(l->lat, nc * sizeof(*nv));
        if (!nv)
            return;
        l->lat = nv;
        l->caplat = nc;
    }
    l->lat[l->nlat++] = ms;
}

static int dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(struct load *l, double p)
{
    if (!l->nlat)
        return 0;
    size_t i = (size_t)ceil(p * (double)l->nlat) - 1;
    return l->lat[i >= l->nlat ? l->nlat - 1 : i];
}

/* ------------------------------------------------------------ submit */

static void submit_next(struct load *l);

static void on_submitted(const struct wlm_http_response *resp, const struct wlm_error *err,
                         void *ud)
{
    struct req *r = ud;
    struct load *l = r->l;
    l->inflight--;
    l->done += r->units;
    if (err->code || resp->status != 201) {
        if (l->errors++ < 3)
            fprintf(stderr, "ha_load: %s\n", err->code ? err->msg : resp->body);
    } else {
        l->ok_units += r->units;
        add_lat(l, (wlm_now_mono() - r->t0) * 1000);
    }
    free(r);
    submit_next(l);
}

static void submit_next(struct load *l)
{
    while (l->inflight < l->conc && l->sent < l->total) {
        struct req *r = calloc(1, sizeof(*r));
        r->l = l;
        r->t0 = wlm_now_mono();
        r->units = l->batch;
        char url[300];
        snprintf(url, sizeof(url), "%s/v1/jobs", l->url);
        l->sent += l->batch;
        l->inflight++;
        if (wlm_http_client_request(l->client, "POST", url, l->token, "application/json", l->body,
                                    strlen(l->body), 30000, on_submitted, r)) {
            l->inflight--;
            l->errors++;
            free(r);
        }
    }
}

static char *make_body(int batch)
{
    struct wlm_buf b;
    wlm_buf_init(&b);
    const char *job = "{\"name\":\"ha-bench\",\"command\":\"/bin/true\",\"work_seconds\":30}";
    if (batch == 1)
        wlm_buf_printf(&b, "%s", job);
    else {
        wlm_buf_printf(&b, "{\"jobs\":[");
        for (int i = 0; i < batch; i++)
            wlm_buf_printf(&b, "%s%s", i ? "," : "", job);
        wlm_buf_printf(&b, "]}");
    }
    return wlm_buf_steal(&b);
}

/* ------------------------------------------------------------ heartbeats */

static void on_registered(const struct wlm_http_response *resp, const struct wlm_error *err,
                          void *ud);

static long reg_next, reg_inflight;

static void register_next(struct load *l)
{
    while (reg_inflight < 32 && reg_next < l->nodes) {
        char url[300], body[300];
        snprintf(url, sizeof(url), "%s/v1/nodes", l->url);
        snprintf(body, sizeof(body),
                 "{\"name\":\"hb-%06ld\",\"cores\":16,\"mhz\":2400,\"memory_mb\":65536,"
                 "\"agent_url\":\"http://127.0.0.1:9/\"}",
                 reg_next);
        struct req *r = calloc(1, sizeof(*r));
        r->l = l;
        r->units = (int)reg_next++;
        reg_inflight++;
        wlm_http_client_request(l->client, "POST", url, l->token, "application/json", body,
                                strlen(body), 30000, on_registered, r);
    }
}

static void on_registered(const struct wlm_http_response *resp, const struct wlm_error *err,
                          void *ud)
{
    struct req *r = ud;
    struct load *l = r->l;
    reg_inflight--;
    if (err->code || resp->status >= 300) {
        if (l->errors++ < 3)
            fprintf(stderr, "ha_load: register: %s\n", err->code ? err->msg : resp->body);
    } else {
        l->registered[r->units] = 1;
        l->nregistered++;
    }
    free(r);
    register_next(l);
}

static void on_beat(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct req *r = ud;
    struct load *l = r->l;
    l->inflight--;
    if (r->t0 < l->measure_from || l->registering) {
        free(r); /* warm-up */
        return;
    }
    l->done++;
    if (err->code || resp->status != 200) {
        if (l->errors++ < 3)
            fprintf(stderr, "ha_load: heartbeat: %s\n", err->code ? err->msg : resp->body);
    } else {
        l->ok_units++;
        add_lat(l, (wlm_now_mono() - r->t0) * 1000);
    }
    free(r);
}

static void on_tick(uv_timer_t *t)
{
    struct load *l = t->data;
    double now = wlm_now_mono();
    if (l->registering && reg_next >= l->nodes && reg_inflight == 0) {
        l->registering = 0;
        l->measure_from = now + l->period; /* every node has beaten once since */
        l->start = l->measure_from;
        fprintf(stderr, "ha_load: %ld nodes registered (%ld errors)\n", l->nregistered,
                l->errors);
    }
    if (!l->registering && now - l->start >= l->duration) {
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
        return;
    }
    /* Heartbeats due since the last tick: node k beats at start + k*P/N + m*P. */
    double gap = l->period / (double)l->nodes;
    while (l->next_due <= now) {
        long k = l->next_node++ % l->nodes;
        l->next_due += gap;
        if (!l->registered[k])
            continue;
        /* At most 512 heartbeats outstanding (a real agent has one): a beat
         * due while its predecessors are stuck counts as an error, instead
         * of opening ever more connections to a stalled controller. */
        if (l->inflight >= 512) {
            if (!l->registering && now >= l->measure_from) {
                l->errors++;
                l->done++;
            }
            continue;
        }
        char url[300];
        snprintf(url, sizeof(url), "%s/v1/nodes/hb-%06ld/heartbeat", l->url, k);
        const char *body = "{\"usage\":{\"cpu_mhz\":1200,\"memory_mb\":4096},"
                           "\"power\":{\"state\":\"on\",\"watts\":180}}";
        struct req *r = calloc(1, sizeof(*r));
        r->l = l;
        r->t0 = now;
        l->inflight++;
        l->sent++;
        if (wlm_http_client_request(l->client, "POST", url, l->token, "application/json", body,
                                    strlen(body), 10000, on_beat, r)) {
            l->inflight--;
            l->errors++;
            free(r);
        }
    }
}

/* ------------------------------------------------------------ main */

static void usage(FILE *out)
{
    fprintf(out, "Usage: ha_load submit --url URL --jobs N [--batch B] [--conc C]\n"
                 "       ha_load heartbeats --url URL --nodes N [--period-s P] [--duration-s D]\n"
                 "Load for bench/ha/run.py; the token comes from $WLM_TOKEN.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *mode = argv[1];
    struct load l = {0};
    l.batch = 1;
    l.conc = 1;
    l.period = 5;
    l.duration = 30;
    l.token = getenv("WLM_TOKEN");
    static const struct option opts[] = {
        {"url", required_argument, 0, 'u'},        {"jobs", required_argument, 0, 'n'},
        {"batch", required_argument, 0, 'b'},      {"conc", required_argument, 0, 'c'},
        {"nodes", required_argument, 0, 'N'},      {"period-s", required_argument, 0, 'p'},
        {"duration-s", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'u': l.url = optarg; break;
        case 'n': l.total = atol(optarg); break;
        case 'b': l.batch = atoi(optarg); break;
        case 'c': l.conc = atoi(optarg); break;
        case 'N': l.nodes = atol(optarg); break;
        case 'p': l.period = atof(optarg); break;
        case 'd': l.duration = atof(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!l.url || l.batch < 1 || l.conc < 1) {
        fprintf(stderr, "ha_load: --url is required; --batch and --conc must be >= 1\n");
        return 2;
    }
    l.loop = uv_default_loop();
    l.client = wlm_http_client_new(l.loop);
    double t0 = wlm_now_mono();
    if (!strcmp(mode, "submit")) {
        if (l.total < l.batch) {
            fprintf(stderr, "ha_load: --jobs must be >= --batch\n");
            return 2;
        }
        l.total -= l.total % l.batch;
        l.body = make_body(l.batch);
        submit_next(&l);
        uv_run(l.loop, UV_RUN_DEFAULT);
        double dt = wlm_now_mono() - t0;
        qsort(l.lat, l.nlat, sizeof(double), dcmp);
        printf("jobs=%ld batch=%d conc=%d seconds=%.2f jobs_per_s=%.0f req_p50_ms=%.1f "
               "req_p99_ms=%.1f errors=%ld\n",
               l.ok_units, l.batch, l.conc, dt, (double)l.ok_units / dt, pct(&l, 0.5),
               pct(&l, 0.99), l.errors);
    } else if (!strcmp(mode, "heartbeats")) {
        if (l.nodes < 1 || l.period <= 0 || l.duration <= 0) {
            fprintf(stderr, "ha_load: --nodes, --period-s and --duration-s must be > 0\n");
            return 2;
        }
        l.registering = 1;
        l.registered = calloc((size_t)l.nodes, 1);
        l.next_due = wlm_now_mono();
        l.measure_from = 1e300;
        register_next(&l);
        uv_timer_init(l.loop, &l.tick);
        l.tick.data = &l;
        uv_timer_start(&l.tick, on_tick, 5, 5);
        uv_run(l.loop, UV_RUN_DEFAULT);
        double dt = wlm_now_mono() - l.start;
        qsort(l.lat, l.nlat, sizeof(double), dcmp);
        printf("nodes=%ld period_s=%.1f seconds=%.1f hb_per_s=%.0f p50_ms=%.1f p99_ms=%.1f "
               "errors=%ld\n",
               l.nodes, l.period, dt, (double)l.ok_units / dt, pct(&l, 0.5), pct(&l, 0.99),
               l.errors);
    } else {
        usage(stderr);
        return 2;
    }
    wlm_http_client_free(l.client);
    uv_run(l.loop, UV_RUN_DEFAULT);
    free(l.lat);
    free(l.body);
    free(l.registered);
    return 0;
}
