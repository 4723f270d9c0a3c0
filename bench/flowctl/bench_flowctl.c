/*
 * bench-flowctl - figures for the flow controller.
 *
 * Part 1, prediction error: wlm-sampleapp (one CPU worker = a processor-sharing
 * server of one core, fixed CPU per request, fixed delay) under open-loop
 * Poisson load at several utilisations. The model is calibrated online the
 * way the controller does it: c from the application's own CPU counter over
 * requests served, d0 from the lowest load level; it then predicts the mean
 * response time at every level. Prints predicted vs measured and the mean
 * absolute percentage error.
 *
 * Part 2, against a gradient limiter: wlm-router + two sample apps (gold with
 * a tight goal, bronze with a lax one) under the same load steps, the limit
 * set each second either by flowctl (limit, weights, costs) or by Envoy's
 * adaptive-concurrency rule limit·(minRTT·1.25)/sampleRTT + √limit (equal
 * weights), or left static. Prints goal violations (seconds in which a flow's
 * mean response time exceeded its goal) and 503s per phase.
 */
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "flowctl.h"
#include "loadgen.h"
#include "loop.h"

static uv_loop_t *loop;

static void on_wake(uv_timer_t *t)
{
    (void)t;
}

/* Run the loop (load generation) for s seconds. */
static void run_for(double s)
{
    double end = lg_now() + s;
    uv_timer_t w;
    uv_timer_init(loop, &w);
    while (lg_now() < end) {
        uv_timer_start(&w, on_wake, (uint64_t)((end - lg_now()) * 1000) + 1, 0);
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&w);
    uv_close((uv_handle_t *)&w, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* Requests served and CPU burnt by the sample app so far. */
static int app_stats(struct lg *g, double *req, double *burn, double *busy)
{
    char *body = NULL;
    int st = lg_request_sync(g, "GET", "/stats", NULL, &body);
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    if (st != 200 || !j) {
        json_decref(j);
        return -1;
    }
    *req = json_number_value(json_object_get(j, "requests"));
    *burn = json_number_value(json_object_get(j, "burn_seconds"));
    *busy = json_number_value(json_object_get(j, "busy_seconds"));
    json_decref(j);
    return 0;
}

static int bench_predict(const char *bindir, double cpu_ms, double delay_ms, double secs,
                         int quick);
static int bench_loop(const char *bindir, int quick);

static void usage(void)
{
    printf("Usage: bench-flowctl [--cpu-ms X] [--delay-ms X] [--seconds S] [--quick]\n"
           "                     [--only predict|loop]\n"
           "Prints the flow controller's prediction error against wlm-sampleapp, then\n"
           "flowctl against Envoy's gradient limiter on load steps (needs wlm-router).\n");
}

int main(int argc, char **argv)
{
    double cpu_ms = 10, delay_ms = 20, secs = 10;
    int quick = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cpu-ms") && i + 1 < argc)
            cpu_ms = atof(argv[++i]);
        else if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc)
            delay_ms = atof(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            secs = atof(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("bench-flowctl %s\n", WLM_VERSION);
            return 0;
        } else {
            fprintf(stderr, "bench-flowctl: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!(cpu_ms > 0) || !(delay_ms >= 0) || !(secs > 0)) {
        fprintf(stderr, "bench-flowctl: --cpu-ms > 0, --delay-ms >= 0, --seconds > 0\n");
        return 2;
    }
    if (quick)
        secs = 3;
    if (only && strcmp(only, "predict") && strcmp(only, "loop")) {
        fprintf(stderr, "bench-flowctl: --only: expected predict or loop\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char self[4096], bindir[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
        return 1;
    self[n] = 0;
    snprintf(bindir, sizeof bindir, "%s", dirname(self));
    if (!only || !strcmp(only, "predict")) {
        if (bench_predict(bindir, cpu_ms, delay_ms, secs, quick))
            return 1;
    }
    if (!only || !strcmp(only, "loop"))
        return bench_loop(bindir, quick);
    return 0;
}

static int bench_predict(const char *bindir, double cpu_ms, double delay_ms, double secs, int quick)
{
    char app[4200], portfile[64], cpu_s[32], delay_s[32];
    snprintf(app, sizeof app, "%s/wlm-sampleapp", bindir);
    snprintf(portfile, sizeof portfile, "/tmp/bench-flowctl-%d.port", (int)getpid());
    snprintf(cpu_s, sizeof cpu_s, "%g", cpu_ms);
    snprintf(delay_s, sizeof delay_s, "%g", delay_ms);
    unlink(portfile);
    char *av[] = {app, "--port", "0", "--port-file", portfile, "--cpu-ms", cpu_s, "--delay-ms",
                  delay_s, "--workers", "1", NULL};
    int pid = lg_spawn(av, "/dev/null");
    int port = lg_wait_port(portfile, 10);
    unlink(portfile);
    if (pid < 0 || port < 0) {
        fprintf(stderr, "bench-flowctl: could not start %s\n", app);
        return 1;
    }
    loop = uv_default_loop();
    struct lg *g = lg_new(loop, "127.0.0.1", port);
    double levels[] = {0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9};
    size_t nl = sizeof levels / sizeof levels[0];
    double S = cpu_ms / 1000;
    struct lg_stream *s = lg_stream_add(g, "/work", NULL, 0);
    double meas[16], lam[16], cost[16], p95[16], share[16];
    uint64_t cnt[16];
    /* Levels are utilisations of the CPU the app actually gets: on a shared
     * machine that is less than a core, so each level's rate is scaled by
     * the share measured during the previous one. */
    double cap = 1;
    for (size_t i = 0; i < nl; i++) {
        lg_stream_set_rate(s, levels[i] * cap / S);
        run_for(quick ? 1 : 2); /* warm up to steady state */
        struct lg_stats st;
        lg_stream_take(s, &st);
        double r0, b0, r1, b1, w0, w1;
        app_stats(g, &r0, &b0, &w0);
        double t0 = lg_now();
        run_for(secs);
        lg_stream_take(s, &st);
        double t1 = lg_now();
        app_stats(g, &r1, &b1, &w1);
        /* The CPU share the app's worker actually got while it had work: on a
         * shared machine that is the allocation ω the model should use (in
         * production the hypervisor or cgroup enforces it). */
        share[i] = w1 > w0 ? fmin(1, (b1 - b0) / (w1 - w0)) : 1;
        cap = share[i];
        meas[i] = lg_stats_mean(&st);
        p95[i] = lg_stats_pct(&st, 0.95);
        lam[i] = st.sent / (t1 - t0);
        cost[i] = r1 > r0 ? (b1 - b0) / (r1 - r0) : S;
        cnt[i] = st.ok;
        fprintf(stderr, "  level %.2f: %llu ok, mean %.1f ms\n", levels[i],
                (unsigned long long)st.ok, meas[i] * 1000);
    }
    lg_stream_set_rate(s, 0);
    /* Calibrate d0 at the lowest level (what the controller's EWMA of
     * in-app time minus the CPU part converges to), then predict. */
    /* One core = 1000 MHz, so c in megacycles = CPU ms; ω = share · 1000. */
    double c0 = cost[0] * 1000;
    double d0 = fmax(0, meas[0] - flowctl_ps_rt(1000 * share[0], lam[0], c0, 0));
    printf("\nflowctl model vs wlm-sampleapp (processor sharing, 1 core, cpu %.1f ms, delay %.1f ms, "
           "%.0f s per level)\n",
           cpu_ms, delay_ms, secs);
    printf("calibrated: c = %.2f ms CPU/request (profiled), d0 = %.2f ms; cpu = share of a core the\n"
           "app's worker obtained while busy (the allocation ω used by the model; < 1 when the\n"
           "machine is shared); rho = λc/ω\n",
           c0, d0 * 1000);
    printf("%-6s %-8s %-8s %-8s %-8s %-10s %-10s %-8s %-8s\n", "rho", "lambda", "req", "c(ms)",
           "cpu", "meas(ms)", "pred(ms)", "err%", "p95(ms)");
    double mae = 0;
    size_t nm = 0;
    for (size_t i = 0; i < nl; i++) {
        struct flowctl_flow_model m = {lam[i], cost[i] * 1000, d0, 1, 0};
        struct flowctl_prediction p;
        flowctl_predict(&m, 1, 1000 * share[i], NULL, -1, &p, NULL);
        double err = (p.rt - meas[i]) / meas[i] * 100;
        /* A level at which the app got so little CPU that it was overloaded
         * (ρ >= 0.95 of what it obtained) has no steady state to predict. */
        int overloaded = !(lam[i] * cost[i] / share[i] < 0.95) || !isfinite(meas[i]);
        if (i > 0 && !overloaded) {
            mae += fabs(err);
            nm++;
        }
        printf("%-6.2f %-8.1f %-8llu %-8.2f %-8.2f %-10.1f %-10.1f %-+8.1f %-8.1f%s\n",
               lam[i] * cost[i] / share[i], lam[i], (unsigned long long)cnt[i], cost[i] * 1000,
               share[i], meas[i] * 1000, p.rt * 1000, err, p95[i] * 1000,
               i == 0 ? "  (calibration)" : overloaded ? "  (overloaded: excluded)" : "");
    }
    printf("mean absolute error over %zu levels (calibration and overloaded levels excluded): "
           "%.1f %%\n",
           nm, nm ? mae / nm : NAN);
    lg_free(g);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    uv_run(loop, UV_RUN_NOWAIT);
    return 0;
}

static int bench_loop(const char *bindir, int quick)
{
    static struct loop_params p;
    static struct loop_result r[3];
    const char *names[3] = {"flowctl", "gradient", "static"};
    p.bindir = bindir;
    p.cycle_s = 1;
    p.goal[0] = 0.100;
    p.goal[1] = 1.0;
    p.cpu_ms[0] = p.cpu_ms[1] = 3;
    p.delay_ms[0] = p.delay_ms[1] = 50;
    p.limit0 = 8;
    p.max_queue = 200;
    p.max_wait_ms = 1000;
    double f = quick ? 0.5 : 1;
    /* Quiet, a step up, bronze overloaded (1.2x its core), back to quiet. */
    p.phases[0] = (struct loop_phase){15 * f, {20, 20}};
    p.phases[1] = (struct loop_phase){30 * f, {60, 60}};
    p.phases[2] = (struct loop_phase){30 * f, {60, 400}};
    p.phases[3] = (struct loop_phase){15 * f, {20, 20}};
    p.nphases = 4;
    enum loop_policy pol[3] = {LOOP_FLOWCTL, LOOP_GRADIENT, LOOP_STATIC};
    for (int k = 0; k < 3; k++) {
        p.policy = pol[k];
        fprintf(stderr, "  running %s ...\n", names[k]);
        if (loop_run(&p, &r[k])) {
            fprintf(stderr, "  %s failed (%s); once more\n", names[k], r[k].error);
            if (loop_run(&p, &r[k])) {
                printf("\nflowctl vs gradient limiter: skipped (%s)\n", r[k].error);
                return 0;
            }
        }
    }
    printf("\nflowctl vs Envoy gradient limiter vs static limit %u (router + 2 sample apps, cpu "
           "3 ms, delay 50 ms; gold goal %.0f ms, bronze goal %.0f ms; 1 s cycles)\n",
           p.limit0, p.goal[0] * 1000, p.goal[1] * 1000);
    printf("%-5s %-13s %-9s | %-8s %-11s %-10s %-6s | %-11s %-10s %-6s | %-9s\n", "phase",
           "load g/b", "policy", "cycles", "gold viol.", "gold mean", "503", "bronze viol.",
           "bronze mean", "503", "limit end");
    int tot_v[3] = {0}, tot_503[3] = {0};
    for (size_t ph = 0; ph < p.nphases; ph++) {
        for (int k = 0; k < 3; k++) {
            int n = 0, viol[2] = {0}, rej[2] = {0};
            double sum[2] = {0}, cnt[2] = {0};
            unsigned lim = 0;
            for (size_t i = 0; i < r[k].ncycles; i++) {
                const struct loop_cycle *c = &r[k].cycles[i];
                if (c->phase != ph)
                    continue;
                n++;
                lim = c->limit;
                for (int a = 0; a < 2; a++) {
                    if (!(c->rt[a] <= p.goal[a]) && c->done[a] + c->rejected[a] > 0)
                        viol[a]++;
                    rej[a] += (int)c->rejected[a];
                    if (c->done[a] > 0) {
                        sum[a] += c->rt[a] * c->done[a];
                        cnt[a] += c->done[a];
                    }
                }
            }
            tot_v[k] += viol[0] + viol[1];
            tot_503[k] += rej[0] + rej[1];
            char load[32];
            snprintf(load, sizeof load, "%.0f/%.0f", p.phases[ph].rate[0], p.phases[ph].rate[1]);
            printf("%-5zu %-13s %-9s | %-8d %-11d %-10.1f %-6d | %-11d %-10.1f %-6d | %-9u\n", ph,
                   k ? "" : load, names[k], n, viol[0], cnt[0] ? sum[0] / cnt[0] * 1000 : NAN,
                   rej[0], viol[1], cnt[1] ? sum[1] / cnt[1] * 1000 : NAN, rej[1], lim);
        }
    }
    const struct loop_cycle *lc = &r[0].cycles[r[0].ncycles - 1];
    printf("web profiler (RLS on app CPU + router completions) at the end of the flowctl run: "
           "gold %.3f ms, bronze %.3f ms per request; known %.3f ms (error %.1f %% / %.1f %%)\n",
           lc->cost_est[0], lc->cost_est[1], p.cpu_ms[0],
           fabs(lc->cost_est[0] - p.cpu_ms[0]) / p.cpu_ms[0] * 100,
           fabs(lc->cost_est[1] - p.cpu_ms[1]) / p.cpu_ms[1] * 100);
    printf("totals: ");
    for (int k = 0; k < 3; k++)
        printf("%s %d goal-violation seconds, %d 503s%s", names[k], tot_v[k], tot_503[k],
               k < 2 ? "; " : "\n");
    return 0;
}
