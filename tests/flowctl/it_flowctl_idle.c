/*
 * Recovery after idle (issue 19, item 3): wlm-router in front of two
 * wlm-sampleapp applications (2 ms CPU + 80 ms delay per request, one core
 * each), the web profiler + flowctl core one cycle per second. A short warm
 * phase lets the profiler learn the cost; then 60 s with no request at all;
 * then a step to full load (150 requests/s on gold, 50 on bronze). While
 * idle the limit must stay at what the apps' CPU can serve (not fall to 1),
 * and gold must meet its 130 ms goal within two flow periods of the step.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

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
    p.phases[2] = (struct loop_phase){12, {150, 50}};
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
    /* Gold within its goal in the second cycle after the step (two flow
     * periods) and every cycle after it. The first cycle holds the requests
     * that arrived while the new statistics were not read yet. */
    double worst = 0, sum = 0;
    size_t ns = 0;
    for (size_t i = first + 1; i < first + n2; i++) {
        double rt = r.cycles[i].rt[0];
        if (!isfinite(rt))
            continue;
        worst = fmax(worst, rt);
        sum += rt;
        ns++;
    }
    double rt2 = r.cycles[first + 1].rt[0];
    printf("gold: first cycle after the step %.1f ms, second %.1f ms, worst after %.1f ms, "
           "mean after %.1f ms (goal %.0f ms)\n",
           r.cycles[first].rt[0] * 1000, rt2 * 1000, worst * 1000, ns ? sum / ns * 1000 : NAN,
           p.goal[0] * 1000);
    if (!(rt2 <= p.goal[0])) {
        fprintf(stderr, "FAIL: gold missed its goal two flow periods after the step (%.1f ms)\n",
                rt2 * 1000);
        fail = 1;
    }
    if (!(ns && sum / ns <= p.goal[0])) {
        fprintf(stderr, "FAIL: gold's mean after the step is above its goal\n");
        fail = 1;
    }
    if (!fail)
        printf("PASS\n");
    return fail;
}
