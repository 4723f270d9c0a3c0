/* wlm-loadgen - open-loop web load whose rate follows a profile over time.
 *
 *   wlm-loadgen --target 127.0.0.1:8080 --stream '/shop@40' \
 *               --stream '/shop@10@X-Class: gold' --profile '0:1,60:3,120:1' --loop
 *
 * Each stream is PATH@RATE[@HEADER]; the profile multiplies every rate:
 * "T:M,..." means multiplier M from second T on (piecewise constant); with
 * --loop the profile repeats after its last step plus one step's length. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"

#define MAX_STREAMS 16
#define MAX_STEPS 64

struct stream {
    char path[256], header[256], label[300];
    double rate;
    struct lg_stream *s;
};

static struct stream streams[MAX_STREAMS];
static size_t nstreams;
static double step_t[MAX_STEPS], step_m[MAX_STEPS];
static size_t nsteps;
static int loop_profile, quiet;
static double duration, report_s = 5, t0;
static struct lg *g;
static uv_timer_t tick;
static uv_signal_t sigint, sigterm;
static int stopping;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: wlm-loadgen --target HOST:PORT --stream PATH@RATE[@HEADER] ... [options]\n"
            "Open-loop Poisson HTTP load (keep-alive) whose rate follows a profile.\n\n"
            "  --target HOST:PORT   where to send (e.g. the wlm-router data port)\n"
            "  --stream SPEC        PATH@RATE[@Header: value]; repeatable\n"
            "  --profile T:M,...    rate multiplier M from second T on (default 0:1)\n"
            "  --loop               repeat the profile\n"
            "  --duration S         stop after S seconds (default: until Ctrl-C)\n"
            "  --report S           print a line every S seconds (default 5)\n"
            "  --quiet              no periodic lines, only the total\n"
            "  --help, --version\n");
}

static double multiplier(double t)
{
    if (!nsteps)
        return 1;
    if (loop_profile && nsteps > 1) {
        double period = step_t[nsteps - 1] + (step_t[nsteps - 1] - step_t[nsteps - 2]);
        if (period > 0)
            t = fmod(t, period);
    }
    double m = step_m[0];
    for (size_t i = 0; i < nsteps && step_t[i] <= t; i++)
        m = step_m[i];
    return m;
}

static void report(double t, int final);

static void finish(void)
{
    if (stopping)
        return;
    stopping = 1;
    report(lg_now() - t0, 1);
    uv_timer_stop(&tick);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    lg_free(g);
}

static struct lg_stats total[MAX_STREAMS];
static double last_report;

static void report(double t, int final)
{
    for (size_t i = 0; i < nstreams; i++) {
        struct lg_stats st;
        lg_stream_take(streams[i].s, &st);
        total[i].sent += st.sent;
        total[i].ok += st.ok;
        total[i].s503 += st.s503;
        total[i].other += st.other;
        total[i].errors += st.errors;
        total[i].sum_rt += st.sum_rt;
        if (!quiet && (!final || st.sent))
            printf("t=%5.0fs %-28s rate %6.1f/s ok %5llu 503 %4llu err %3llu mean %7.1f ms "
                   "p99 %7.1f ms\n",
                   t, streams[i].label,
                   streams[i].rate * multiplier(t), (unsigned long long)st.ok,
                   (unsigned long long)st.s503,
                   (unsigned long long)(st.errors + st.other), lg_stats_mean(&st) * 1e3,
                   lg_stats_pct(&st, 0.99) * 1e3);
    }
    if (final)
        for (size_t i = 0; i < nstreams; i++)
            printf("total %-24s sent %llu ok %llu 503 %llu errors %llu mean %.1f ms\n",
                   streams[i].label, (unsigned long long)total[i].sent, (unsigned long long)total[i].ok,
                   (unsigned long long)total[i].s503,
                   (unsigned long long)(total[i].errors + total[i].other),
                   total[i].ok ? total[i].sum_rt / (double)total[i].ok * 1e3 : 0.0);
    fflush(stdout);
}

static void on_tick(uv_timer_t *t)
{
    double now = lg_now() - t0;
    for (size_t i = 0; i < nstreams; i++)
        lg_stream_set_rate(streams[i].s, streams[i].rate * multiplier(now));
    if (now - last_report >= report_s) {
        report(now, 0);
        last_report = now;
    }
    if (duration > 0 && now >= duration)
        finish();
}

static void on_signal(uv_signal_t *s, int sig)
{
    finish();
}

static int parse_stream(const char *spec)
{
    if (nstreams == MAX_STREAMS)
        return -1;
    struct stream *st = &streams[nstreams];
    const char *at = strchr(spec, '@');
    if (!at || at == spec || (size_t)(at - spec) >= sizeof(st->path) || spec[0] != '/')
        return -1;
    snprintf(st->path, sizeof(st->path), "%.*s", (int)(at - spec), spec);
    char *end;
    st->rate = strtod(at + 1, &end);
    if (end == at + 1 || st->rate < 0 || (*end && *end != '@'))
        return -1;
    if (*end == '@') {
        if (!strchr(end + 1, ':') || strlen(end + 1) + 3 >= sizeof(st->header))
            return -1;
        snprintf(st->header, sizeof(st->header), "%s\r\n", end + 1);
    }
    size_t pl = strlen(st->path);
    memcpy(st->label, st->path, pl + 1);
    if (st->header[0] && pl + 2 + strlen(end + 1) < sizeof(st->label)) {
        st->label[pl] = ' ';
        strcpy(st->label + pl + 1, end + 1);
    }
    nstreams++;
    return 0;
}

static int parse_profile(const char *spec)
{
    const char *p = spec;
    while (*p) {
        char *end;
        double t = strtod(p, &end);
        if (end == p || *end != ':' || nsteps == MAX_STEPS)
            return -1;
        p = end + 1;
        double m = strtod(p, &end);
        if (end == p || m < 0 || (nsteps && t <= step_t[nsteps - 1]))
            return -1;
        step_t[nsteps] = t;
        step_m[nsteps++] = m;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return nsteps ? 0 : -1;
}

int main(int argc, char **argv)
{
    char host[64] = "";
    int port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("wlm-loadgen %s\n", WLM_VERSION);
            return 0;
        } else if (!strcmp(a, "--loop")) {
            loop_profile = 1;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!v) {
            fprintf(stderr, "wlm-loadgen: %s needs a value (see --help)\n", a);
            return 2;
        } else if (!strcmp(a, "--target")) {
            const char *colon = strrchr(v, ':');
            if (!colon || colon == v || (size_t)(colon - v) >= sizeof(host) ||
                (port = atoi(colon + 1)) <= 0 || port > 65535) {
                fprintf(stderr, "wlm-loadgen: --target '%s' is not HOST:PORT\n", v);
                return 2;
            }
            snprintf(host, sizeof(host), "%.*s", (int)(colon - v), v);
            i++;
        } else if (!strcmp(a, "--stream")) {
            if (parse_stream(v)) {
                fprintf(stderr, "wlm-loadgen: --stream '%s' is not PATH@RATE[@Header: value]\n",
                        v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--profile")) {
            if (parse_profile(v)) {
                fprintf(stderr, "wlm-loadgen: --profile '%s' is not T:M,T:M,... with rising T\n",
                        v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--duration") || !strcmp(a, "--report")) {
            char *end;
            double x = strtod(v, &end);
            if (end == v || *end || x <= 0) {
                fprintf(stderr, "wlm-loadgen: %s '%s' must be a positive number\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--duration"))
                duration = x;
            else
                report_s = x;
            i++;
        } else {
            fprintf(stderr, "wlm-loadgen: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!host[0] || !nstreams) {
        fprintf(stderr, "wlm-loadgen: --target and at least one --stream are required\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    g = lg_new(loop, host, port);
    if (!g) {
        fprintf(stderr, "wlm-loadgen: cannot use target %s:%d\n", host, port);
        return 1;
    }
    for (size_t i = 0; i < nstreams; i++)
        streams[i].s = lg_stream_add(g, streams[i].path, streams[i].header[0] ? streams[i].header
                                                                              : NULL,
                                     streams[i].rate * multiplier(0));
    t0 = lg_now();
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 200, 200);
    uv_signal_init(loop, &sigint);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
