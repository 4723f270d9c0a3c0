/*
 * The flow controller in a closed loop on real processes: wlm-router in front
 * of two wlm-sampleapp applications (2 ms CPU + 80 ms delay per request),
 * "gold" (goal 130 ms) and "bronze" (goal 2 s), starting from a bad static
 * limit of 2; a load step from 10 to 50 requests/s per app, then back. The
 * controller (web profiler + flowctl core, one cycle per second) must bring
 * gold within its goal within a bounded number of cycles after the step up,
 * keep it there, and not oscillate the limit.
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
static int judge(void);
static int judge_saturated(void);

int main(int argc, char **argv)
{
    const char *bindir = getenv("WLM_BIN_DIR");
    if (!bindir) {
        fprintf(stderr, "it_flowctl_loop: WLM_BIN_DIR not set\n");
        return 2;
    }
    p.bindir = bindir;
    p.verbose = getenv("WLM_VERBOSE") != NULL;
    if (argc > 1 && !strcmp(argv[1], "--saturated")) {
        /* A CPU hog pinned beside gold: its CPU runs slower than its
         * allocation. Gold burns 8 ms per request, so the slowdown shows. */
        p.policy = LOOP_FLOWCTL;
        p.cycle_s = 1;
        p.goal[0] = 0.130;
        p.goal[1] = 2.0;
        p.cpu_ms[0] = 8;
        p.cpu_ms[1] = 2;
        p.delay_ms[0] = p.delay_ms[1] = 80;
        p.limit0 = 8;
        p.max_queue = 500;
        p.max_wait_ms = 5000;
        p.measured_cpu = 1;
        p.phases[0] = (struct loop_phase){8, {20, 10}};
        p.phases[1] = (struct loop_phase){20, {20, 10}};
        p.hog_phase[1] = 1;
        p.nphases = 2;
        return judge_saturated() ? 1 : 0;
    }
    p.policy = LOOP_FLOWCTL;
    p.cycle_s = 1;
    p.goal[0] = 0.130;
    p.goal[1] = 2.0;
    p.cpu_ms[0] = p.cpu_ms[1] = 2;
    p.delay_ms[0] = p.delay_ms[1] = 80;
    p.limit0 = 2;
    p.max_queue = 500;
    p.max_wait_ms = 5000;
    p.phases[0] = (struct loop_phase){10, {10, 10}};
    p.phases[1] = (struct loop_phase){20, {50, 50}};
    p.phases[2] = (struct loop_phase){8, {10, 10}};
    p.nphases = 3;
    return judge() ? 1 : 0;
}

/* Run the scenario and check it: 0 pass, 1 fail. */
static int judge(void)
{
    if (loop_run(&p, &r)) {
        fprintf(stderr, "FAIL: %s\n", r.error);
        return 1;
    }
    /* Print the trace: on failure it is the evidence. */
    for (size_t i = 0; i < r.ncycles; i++) {
        const struct loop_cycle *c = &r.cycles[i];
        printf("t=%5.1f phase=%zu limit=%3u gold rt=%7.1f ms (in app %6.1f, goal %.0f) 503=%3.0f | "
               "bronze rt=%7.1f ms 503=%3.0f | cost %.2f/%.2f ms\n",
               c->t, c->phase, c->limit, c->rt[0] * 1000, c->svc[0] * 1000, p.goal[0] * 1000,
               c->rejected[0], c->rt[1] * 1000, c->rejected[1], c->cost_est[0], c->cost_est[1]);
    }
    int fail = 0;
    /* 1. The web profiler learnt the sample app's known cost. */
    const struct loop_cycle *last = &r.cycles[r.ncycles - 1];
    for (int k = 0; k < 2; k++) {
        double err = fabs(last->cost_est[k] - p.cpu_ms[k]) / p.cpu_ms[k];
        printf("profiler: app %d cost %.3f ms, known %.3f ms, error %.1f %%\n", k,
               last->cost_est[k], p.cpu_ms[k], err * 100);
        if (!(err < 0.15)) {
            fprintf(stderr, "FAIL: profiler cost of app %d is %.3f ms, want %.3f ms within 15 %%\n",
                    k, last->cost_est[k], p.cpu_ms[k]);
            fail = 1;
        }
    }
    /* The machine is shared (CI runs other tests beside this one): when the
     * application itself is starved of CPU its in-app time balloons and no
     * router setting can help. What the flow controller owns is the time a
     * request spends at the router, so gold is judged on its response time
     * with the in-app part at its quiet level: rt - in_app + quiet in_app. */
    double base = 0;
    size_t nb = 0;
    for (size_t i = 0; i < r.ncycles; i++)
        if (r.cycles[i].phase == 0 && i >= 2 && isfinite(r.cycles[i].svc[0])) {
            base += r.cycles[i].svc[0];
            nb++;
        }
    base = nb ? base / nb : p.delay_ms[0] / 1000;
    size_t first = 0, n1 = 0, starved = 0;
    for (size_t i = 0; i < r.ncycles; i++)
        if (r.cycles[i].phase == 1) {
            if (!n1)
                first = i;
            n1++;
            starved += r.cycles[i].svc[0] > 1.5 * base;
        }
    double adj[LOOP_MAX_CYCLES];
    for (size_t i = 0; i < r.ncycles; i++) {
        const struct loop_cycle *c = &r.cycles[i];
        adj[i] = isfinite(c->svc[0]) ? c->rt[0] - fmax(0, c->svc[0] - base) : c->rt[0];
    }
    printf("quiet in-app time %.1f ms; %zu of %zu high-load cycles with the app starved of CPU\n",
           base * 1000, starved, n1);
    /* 2. After the step up, gold meets its goal within a bounded number of
     * cycles (a median of three consecutive cycles within the goal: one lucky
     * second right after the step does not count), and stays within it
     * (median over the second half of the phase). */
    const size_t bound = 12;
    size_t reach = 0;
    for (size_t i = first; i + 2 < first + n1; i++) {
        double w[3] = {adj[i], adj[i + 1], adj[i + 2]};
        qsort(w, 3, sizeof w[0], cmpd);
        if (w[1] <= p.goal[0]) {
            reach = i - first + 3;
            break;
        }
    }
    printf("gold within its goal %zu cycles after the step up (bound %zu)\n", reach, bound);
    if (!reach || reach > bound) {
        fprintf(stderr, "FAIL: gold did not reach its %.0f ms goal within %zu cycles of the step\n",
                p.goal[0] * 1000, bound);
        fail = 1;
    }
    double rts[LOOP_MAX_CYCLES];
    size_t nr = 0;
    for (size_t i = first + n1 / 2; i < first + n1; i++)
        if (isfinite(adj[i]))
            rts[nr++] = adj[i];
    if (nr) {
        qsort(rts, nr, sizeof rts[0], cmpd);
        double med = rts[nr / 2];
        printf("gold median response time (in-app part at its quiet level), second half of the "
               "high-load phase: %.1f ms\n",
               med * 1000);
        if (!(med <= p.goal[0])) {
            fprintf(stderr, "FAIL: gold median %.1f ms above its goal after settling\n",
                    med * 1000);
            fail = 1;
        }
    }
    /* 3. No oscillation: from the cycle gold first met its goal to the end of
     * the phase, the limit changes direction at most 3 times (moves made
     * right after a starved cycle are reactions to the disturbance and do
     * not count). */
    int dir = 0, reversals = 0;
    for (size_t i = first + (reach ? reach : 0) + 1; i < first + n1; i++) {
        int d = r.cycles[i].limit > r.cycles[i - 1].limit   ? 1
                : r.cycles[i].limit < r.cycles[i - 1].limit ? -1
                                                            : 0;
        int disturbed =
            r.cycles[i - 1].svc[0] > 1.5 * base || (i >= 2 && r.cycles[i - 2].svc[0] > 1.5 * base);
        if (d && dir && d != dir && !disturbed)
            reversals++;
        if (d)
            dir = d;
    }
    printf("limit direction reversals while settled: %d\n", reversals);
    if (reversals > 3) {
        fprintf(stderr, "FAIL: the limit oscillates (%d reversals)\n", reversals);
        fail = 1;
    }
    /* 4. Bronze is not starved: it keeps being served with no 503s. */
    double bronze_done = 0, rejected = 0;
    for (size_t i = first; i < first + n1; i++) {
        bronze_done += r.cycles[i].done[1];
        rejected += r.cycles[i].rejected[0] + r.cycles[i].rejected[1];
    }
    printf("phase 1: bronze served %.0f, 503s %.0f\n", bronze_done, rejected);
    if (bronze_done < 0.7 * p.phases[1].rate[1] * p.phases[1].seconds) {
        fprintf(stderr, "FAIL: bronze starved (%.0f served)\n", bronze_done);
        fail = 1;
    }
    if (!fail)
        printf("PASS\n");
    return fail;
}

static double median(double *v, size_t n)
{
    if (!n)
        return NAN;
    qsort(v, n, sizeof v[0], cmpd);
    return v[n / 2];
}

/* The saturated run: the flow controller must see the hog's slowdown as CPU
 * (measured CPU wait), not as a longer non-CPU delay; gold meets its goal,
 * or its prediction says it will not (the shortfall is reported). */
static int judge_saturated(void)
{
    if (loop_run(&p, &r)) {
        fprintf(stderr, "FAIL: %s\n", r.error);
        return 1;
    }
    for (size_t i = 0; i < r.ncycles; i++) {
        const struct loop_cycle *c = &r.cycles[i];
        printf("t=%5.1f phase=%zu limit=%3u gold rt=%6.1f ms pred %6.1f (blind %6.1f) in app %6.1f "
               "| cost %.2f ms wait %.2f ms/req share %.2f | d0 %.1f ms (blind %.1f)\n",
               c->t, c->phase, c->limit, c->rt[0] * 1000, c->pred_rt[0] * 1000,
               c->pred_blind[0] * 1000, c->svc[0] * 1000, c->cost_est[0], c->cpu_wait_ms[0],
               c->cpu_share[0], c->d0[0] * 1000, c->d0_blind[0] * 1000);
    }
    int fail = 0;
    /* Second half of the hog phase. */
    size_t first = 0, n1 = 0;
    for (size_t i = 0; i < r.ncycles; i++)
        if (r.cycles[i].phase == 1) {
            if (!n1)
                first = i;
            n1++;
        }
    double rt[LOOP_MAX_CYCLES], pred[LOOP_MAX_CYCLES], d0[LOOP_MAX_CYCLES], d0b[LOOP_MAX_CYCLES],
        share[LOOP_MAX_CYCLES], cost[LOOP_MAX_CYCLES];
    size_t n = 0, nd = 0, nb = 0, ns = 0, nc = 0;
    for (size_t i = first + n1 / 2; i < first + n1; i++) {
        const struct loop_cycle *c = &r.cycles[i];
        if (isfinite(c->rt[0]) && isfinite(c->pred_rt[0])) {
            rt[n] = c->rt[0];
            pred[n++] = c->pred_rt[0];
        }
        if (isfinite(c->d0[0]))
            d0[nd++] = c->d0[0];
        if (isfinite(c->d0_blind[0]))
            d0b[nb++] = c->d0_blind[0];
        share[ns++] = c->cpu_share[0];
        if (isfinite(c->cost_est[0]))
            cost[nc++] = c->cost_est[0];
    }
    double truth = p.delay_ms[0] / 1000;
    double md0 = median(d0, nd), md0b = median(d0b, nb), msh = median(share, ns);
    double mcost = median(cost, nc);
    /* pred and rt are paired: sort copies for their medians. */
    double rts[LOOP_MAX_CYCLES], preds[LOOP_MAX_CYCLES];
    memcpy(rts, rt, n * sizeof rt[0]);
    memcpy(preds, pred, n * sizeof pred[0]);
    double mrt = median(rts, n), mpred = median(preds, n);
    printf("profiler (measured CPU): gold cost %.2f ms per request, known %.2f ms, error %.1f %%\n",
           mcost, p.cpu_ms[0], fabs(mcost - p.cpu_ms[0]) / p.cpu_ms[0] * 100);
    printf("gold CPU share with the hog (measured): %.2f\n", msh);
    printf("gold non-CPU delay d0: %.1f ms with measured CPU wait, %.1f ms without; true %.1f ms\n",
           md0 * 1000, md0b * 1000, truth * 1000);
    printf("gold response time %.1f ms (goal %.0f ms), predicted %.1f ms\n", mrt * 1000,
           p.goal[0] * 1000, mpred * 1000);
    if (!(fabs(mcost - p.cpu_ms[0]) / p.cpu_ms[0] < 0.2)) {
        fprintf(stderr, "FAIL: measured cost %.2f ms, want %.2f ms within 20 %%\n", mcost,
                p.cpu_ms[0]);
        fail = 1;
    }
    if (!(msh < 0.85)) {
        fprintf(stderr, "FAIL: the hog beside gold was not measured (share %.2f)\n", msh);
        fail = 1;
    }
    /* Near the app's own delay, or at least half of the slowdown the blind
     * model takes for delay is now seen as CPU. (Other work on this shared
     * machine moves the hog's effect from run to run.) */
    double err = fabs(md0 - truth), err_blind = fabs(md0b - truth);
    if (!(err <= 0.040 || err <= 0.5 * err_blind)) {
        fprintf(stderr,
                "FAIL: d0 %.1f ms (blind %.1f ms) is not the app's %.0f ms delay: CPU "
                "slowdown taken for non-CPU delay\n",
                md0 * 1000, md0b * 1000, truth * 1000);
        fail = 1;
    }
    if (mrt <= p.goal[0]) {
        printf("gold meets its goal beside the hog\n");
    } else if (!(mpred > p.goal[0] && fabs(mpred - mrt) / mrt <= 0.35)) {
        fprintf(stderr,
                "FAIL: gold misses its goal (%.1f ms) and the prediction (%.1f ms) does "
                "not report the shortfall\n",
                mrt * 1000, mpred * 1000);
        fail = 1;
    } else {
        printf("gold misses its goal beside the hog and the prediction reports it\n");
    }
    if (!fail)
        printf("PASS\n");
    return fail;
}
