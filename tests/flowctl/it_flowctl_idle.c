/*
 * Recovery after idle (issue 19, item 3): wlm-router in front of two
 * wlm-sampleapp applications (2 ms CPU + 80 ms delay per request, one core
 * each), the web profiler + flowctl core one cycle per second. A short warm
 * phase lets the profiler learn the cost; then 60 s with no request at all;
 * then a step to full load (150 requests/s on gold, 50 on bronze). While
 * idle the limit must stay at what the apps' CPU can serve (not fall to 1),
 * and gold must meet its 130 ms goal within two flow periods of the step
 * and stay there (median), judged like it_flowctl_loop with the in-app part
 * at its quiet level (the machine is shared).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static struct loop_params p;
static struct loop_result r;

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const char *bindir = getenv("WLM_BIN_DIR");
    if (!bindir) {
        fprintf(stderr, "it_flowctl_idle: WLM_BIN_DIR not set\n");
        return 2;
    }
    p.bindir = bindir;
    p.policy = LOOP_FLOWCTL;
    p.cycle_s = 1;
    p.goal[0] = 0.130;
    p.goal[1] = 2.0;
    p.cpu_ms[0] = p.cpu_ms[1] = 2;
    p.delay_ms[0] = p.delay_ms[1] = 80;
    p.limit0 = 2;
    p.max_queue = 2000;
    p.max_wait_ms = 10000;
    double idle = getenv("WLM_IDLE_S") ? atof(getenv("WLM_IDLE_S")) : 60;
    p.phases[0] = (struct loop_phase){10, {20, 20}};
    p.phases[1] = (struct loop_phase){idle, {0, 0}};
    p.phases[2] = (struct loop_phase){16, {150, 50}};
    p.nphases = 3;
    p.verbose = getenv("WLM_VERBOSE") != NULL;
    if (loop_run(&p, &r)) {
        fprintf(stderr, "FAIL: %s\n", r.error);
        return 1;
    }
    size_t first = 0, n2 = 0;
    unsigned idle_min = 1000000;
    for (size_t i = 0; i < r.ncycles; i++) {
        const struct loop_cycle *c = &r.cycles[i];
        if (c->phase == 1 && c->limit < idle_min)
            idle_min = c->limit;
        if (c->phase == 2 && !n2++)
            first = i;
        if (c->phase != 1 || (size_t)(c->t) % 10 == 0)
            printf("t=%5.1f phase=%zu limit=%3u gold rt=%7.1f ms (in app %6.1f, goal %.0f) | "
                   "bronze rt=%7.1f ms | 503 %.0f/%.0f\n",
                   c->t, c->phase, c->limit, c->rt[0] * 1000, c->svc[0] * 1000, p.goal[0] * 1000,
                   c->rt[1] * 1000, c->rejected[0], c->rejected[1]);
    }
    int fail = 0;
    printf("lowest limit while idle: %u\n", idle_min);
    if (!n2 || n2 < 4) {
        fprintf(stderr, "FAIL: the load phase ran %zu cycles\n", n2);
        return 1;
    }
    /* The machine is shared (other tests run beside this one): when the
     * app itself is starved of CPU its in-app time balloons and no router
     * setting can help. What the flow controller owns is the time a request
     * waits at the router, so gold is judged, as in it_flowctl_loop, on its
     * response time with the in-app part at its quiet level (phase 0). */
    double base = 0;
    size_t nb = 0;
    for (size_t i = 2; i < r.ncycles && r.cycles[i].phase == 0; i++)
        if (isfinite(r.cycles[i].svc[0])) {
            base += r.cycles[i].svc[0];
            nb++;
        }
    base = nb ? base / nb : p.delay_ms[0] / 1000;
    double adj[LOOP_MAX_CYCLES];
    for (size_t i = 0; i < r.ncycles; i++) {
        const struct loop_cycle *c = &r.cycles[i];
        adj[i] = isfinite(c->svc[0]) ? c->rt[0] - fmax(0, c->svc[0] - base) : c->rt[0];
    }
    /* A cycle in which the app was starved of CPU (in-app time over 1.5 x
     * quiet), or one of the two after it (the queue it left), is disturbed:
     * the router's limit is not what is measured there. */
    int dist[LOOP_MAX_CYCLES];
    for (size_t i = 0; i < r.ncycles; i++) {
        int st = isfinite(r.cycles[i].svc[0]) && r.cycles[i].svc[0] > 1.5 * base;
        dist[i] = st || (i >= 1 && dist[i - 1] == 2) || (i >= 2 && dist[i - 2] == 2);
        if (st)
            dist[i] = 2;
    }
    /* Gold within its goal in the second cycle after the step (two flow
     * periods; the first holds the requests that arrived before the new
     * statistics were read), or in the first undisturbed one after it. */
    size_t judge = first + 1;
    while (judge < first + n2 && dist[judge])
        judge++;
    double v[LOOP_MAX_CYCLES];
    size_t nv = 0, nd = 0;
    for (size_t i = first + 1; i < first + n2; i++) {
        if (dist[i]) {
            nd++;
            continue;
        }
        if (isfinite(adj[i]))
            v[nv++] = adj[i];
    }
    qsort(v, nv, sizeof v[0], cmpd);
    printf("quiet in-app time %.1f ms; %zu of %zu cycles after the step disturbed by CPU "
           "starvation\n",
           base * 1000, nd, n2 - 1);
    for (size_t i = first; i < first + n2; i++)
        printf("  cycle %zu after the step: response %.1f ms, in app %.1f ms, limit %u%s\n",
               i - first + 1, r.cycles[i].rt[0] * 1000, r.cycles[i].svc[0] * 1000,
               r.cycles[i].limit, dist[i] ? " (disturbed)" : "");
    if (judge >= first + n2 || nv < 3) {
        fprintf(stderr, "FAIL: the machine starved the app in %zu of %zu cycles: nothing to judge\n",
                nd, n2 - 1);
        return 1;
    }
    double med = v[nv / 2];
    printf("gold (in-app part at its quiet level): cycle %zu after the step %.1f ms; median of "
           "the undisturbed cycles after the step %.1f ms (goal %.0f ms)\n",
           judge - first + 1, adj[judge] * 1000, med * 1000, p.goal[0] * 1000);
    if (!(adj[judge] <= p.goal[0])) {
        fprintf(stderr, "FAIL: gold missed its goal %zu flow periods after the step (%.1f ms)\n",
                judge - first + 1, adj[judge] * 1000);
        fail = 1;
    }
    if (!(med <= p.goal[0])) {
        fprintf(stderr, "FAIL: gold's median after the step is above its goal\n");
        fail = 1;
    }
    if (!fail)
        printf("PASS\n");
    return fail;
}
