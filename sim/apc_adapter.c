/*
 * apc_adapter.c - the one file through which the simulator reaches the
 * placement decision (APC) and the job utility estimator.
 *
 * Job utility is the production estimator (jobsched_utility). Until
 * placement/placement.h is usable this file holds a self-contained
 * implementation of the APC policy: max-min utility
 * placement by bisection on the utility level t, with each job's CPU demand
 * u^-1(t), packed from the current placement to minimise changes (the
 * heuristic of DESIGN.md). Swapping in the production core means rewriting
 * only this file against the internal.h contract.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "jobsched.h"
#include "placement.h"

#define APC_T_LO (-10.0)   /* utility floor searched */
#define APC_MIN_SHARE 0.05 /* a placed job gets at least this share of its cap */
#define APC_EPS 1e-9

/* The production estimator (jobsched/estimator.c) on a stack copy of the
 * job. Its clamp to [-1, 1] is widened: the simulator ranks jobs by how far
 * past hopeless they are, which a clamp would turn into ties. */
static double js_utility(const struct sim_apc_job *j, double now, double alloc)
{
    struct jobsched_config cfg;
    jobsched_config_default(&cfg);
    cfg.utility_min = -1e9;
    cfg.utility_max = 1e9;
    struct jobsched_job js;
    memset(&js, 0, sizeof(js));
    js.work_mcycles = j->work_rem;
    js.threads = 1;
    js.max_speed_mhz = j->cap_mhz;
    js.submit_time = j->deadline - j->span;
    js.goal_time = j->deadline;
    js.state = JOBSCHED_RUNNING;
    return jobsched_utility(&js, alloc, now, &cfg);
}

double sim_job_utility(const struct sim_apc_job *j, double now, double alloc)
{
    return js_utility(j, now, alloc);
}

double sim_job_umax(const struct sim_apc_job *j, double now)
{
    return js_utility(j, now, j->cap_mhz);
}

/* CPU a job needs to reach utility t: the inverse of the estimator, at least
 * a minimal share (a VM that gets nothing makes no sense to keep placed), at
 * most what its threads can use. */
static double job_demand(const struct sim_apc_job *j, double now, double umax, double t)
{
    if (t >= umax || j->whole)
        return j->cap_mhz;
    double d = j->work_rem / (j->deadline - now - t * j->span);
    return fmin(j->cap_mhz, fmax(d, APC_MIN_SHARE * j->cap_mhz));
}

static double web_umax(const struct sim_apc_web *w)
{
    return (w->tau_s - w->d0_s) / w->tau_s;
}

/* CPU the web application needs for utility t (processor-sharing model). */
static double web_need(const struct sim_apc_web *w, double now, double t)
{
    double um = web_umax(w) - 0.02;
    if (t > um)
        t = um;
    if (t < -1)
        t = -1;
    (void)now;
    return w->demand_mhz + w->c_mcycles / (w->tau_s * (1 - t) - w->d0_s);
}

enum { MODE_KEEP, MODE_STICKY, MODE_FRESH };

struct apc {
    const struct sim_apc_node *nodes;
    size_t nn;
    const struct sim_apc_job *jobs;
    size_t nj;
    const struct sim_apc_web *web;
    double now;
    double *umax, *dem, *cpu, *mem;
    int *asg, *order, *sel;
    size_t norder;
};

static void isort_demand(struct apc *c, int *v, size_t n)
{
    /* insertion sort: n is small and this avoids global state */
    for (size_t i = 1; i < n; i++) {
        int x = v[i];
        size_t k = i;
        while (k > 0) {
            int y = v[k - 1];
            double dx = c->dem[x], dy = c->dem[y];
            if (dy > dx || (dy == dx && y < x))
                break;
            v[k] = y;
            k--;
        }
        v[k] = x;
    }
}

static int best_fit(struct apc *c, double d, double m)
{
    int best = -1;
    for (size_t n = 0; n < c->nn; n++) {
        if (c->cpu[n] + APC_EPS < d || c->mem[n] + APC_EPS < m)
            continue;
        if (best < 0 || c->cpu[n] < c->cpu[best])
            best = (int)n;
    }
    return best;
}

/* Try to pack the selected jobs at utility level t; fills asg. */
static int pack(struct apc *c, double t, int mode)
{
    int *place = c->order; /* scratch */
    size_t np = 0;
    for (size_t n = 0; n < c->nn; n++) {
        c->cpu[n] = c->nodes[n].cap_mhz;
        c->mem[n] = c->nodes[n].mem_mb;
    }
    for (size_t i = 0; i < c->nj; i++) {
        const struct sim_apc_job *j = &c->jobs[i];
        c->asg[i] = -1;
        if (j->fixed) {
            c->asg[i] = j->cur_node;
            c->cpu[j->cur_node] -= j->fixed_mhz;
            c->mem[j->cur_node] -= j->mem_mb;
            continue;
        }
        if (!c->sel[i])
            continue;
        c->dem[i] = job_demand(j, c->now, c->umax[i], t);
    }
    /* Running jobs first: in KEEP mode they must stay; in STICKY mode they
     * stay when they still fit (largest first, so the fewest move). */
    if (mode != MODE_FRESH) {
        for (size_t i = 0; i < c->nj; i++)
            if (c->sel[i] && !c->jobs[i].fixed && c->jobs[i].cur_node >= 0)
                place[np++] = (int)i;
        isort_demand(c, place, np);
        size_t nmove = 0;
        for (size_t k = 0; k < np; k++) {
            int i = place[k], n = c->jobs[i].cur_node;
            if (mode == MODE_KEEP ||
                (c->cpu[n] + APC_EPS >= c->dem[i] && c->mem[n] + APC_EPS >= c->jobs[i].mem_mb)) {
                c->asg[i] = n;
                c->cpu[n] -= c->dem[i];
                c->mem[n] -= c->jobs[i].mem_mb;
            } else {
                place[nmove++] = i;
            }
        }
        np = nmove;
        if (mode == MODE_KEEP)
            for (size_t n = 0; n < c->nn; n++)
                if (c->cpu[n] < -APC_EPS || c->mem[n] < -APC_EPS)
                    return 0;
    }
    for (size_t i = 0; i < c->nj; i++)
        if (c->sel[i] && !c->jobs[i].fixed && (mode == MODE_FRESH || c->jobs[i].cur_node < 0))
            place[np++] = (int)i;
    isort_demand(c, place, np);
    for (size_t k = 0; k < np; k++) {
        int i = place[k];
        int n = best_fit(c, c->dem[i], c->jobs[i].mem_mb);
        if (n < 0)
            return 0;
        c->asg[i] = n;
        c->cpu[n] -= c->dem[i];
        c->mem[n] -= c->jobs[i].mem_mb;
    }
    if (c->web) {
        double left = 0;
        for (size_t n = 0; n < c->nn; n++)
            left += fmax(0, c->cpu[n]);
        if (left + APC_EPS < web_need(c->web, c->now, t))
            return 0;
    }
    return 1;
}

/* A fresh packing labels its bins arbitrarily. Identical nodes are
 * interchangeable, so rename the bins to the nodes that already run most of
 * their jobs (greedy on shared CPU demand): the plan is the same, the number
 * of migrations drops to what the new packing really needs. */
static void relabel(struct apc *c)
{
    size_t nn = c->nn;
    double *ov = calloc(nn * nn + 1, sizeof(double));
    int *map = malloc((nn + 1) * sizeof(int)), *used = calloc(nn + 1, sizeof(int));
    double *cpu = malloc((nn + 1) * sizeof(double)), *mem = malloc((nn + 1) * sizeof(double));
    if (!ov || !map || !used || !cpu || !mem)
        goto out;
    for (size_t i = 0; i < c->nj; i++) {
        const struct sim_apc_job *j = &c->jobs[i];
        if (c->sel[i] && !j->fixed && j->cur_node >= 0 && c->asg[i] >= 0)
            ov[(size_t)c->asg[i] * nn + (size_t)j->cur_node] += c->dem[i] + 1;
    }
    for (size_t b = 0; b < nn; b++)
        map[b] = -1;
    for (size_t round = 0; round < nn; round++) {
        double best = 0;
        int bb = -1, bn = -1;
        for (size_t b = 0; b < nn; b++) {
            if (map[b] >= 0)
                continue;
            for (size_t n = 0; n < nn; n++) {
                if (used[n] || c->nodes[n].cap_mhz != c->nodes[b].cap_mhz ||
                    c->nodes[n].mem_mb != c->nodes[b].mem_mb)
                    continue;
                if (ov[b * nn + n] > best) {
                    best = ov[b * nn + n];
                    bb = (int)b;
                    bn = (int)n;
                }
            }
        }
        if (bb < 0)
            break;
        map[bb] = bn;
        used[bn] = 1;
    }
    /* bins with no overlap keep their label if free, else take any free
     * identical node */
    for (size_t b = 0; b < nn; b++) {
        if (map[b] >= 0)
            continue;
        if (!used[b]) {
            map[b] = (int)b;
            used[b] = 1;
            continue;
        }
        for (size_t n = 0; n < nn; n++)
            if (!used[n] && c->nodes[n].cap_mhz == c->nodes[b].cap_mhz &&
                c->nodes[n].mem_mb == c->nodes[b].mem_mb) {
                map[b] = (int)n;
                used[n] = 1;
                break;
            }
        if (map[b] < 0)
            goto out; /* cannot happen with a consistent matching; keep labels */
    }
    /* fixed jobs pin their node: a bin holding one must keep its label */
    for (size_t i = 0; i < c->nj; i++)
        if (c->jobs[i].fixed && map[c->jobs[i].cur_node] != c->jobs[i].cur_node)
            goto out;
    for (size_t i = 0; i < c->nj; i++)
        if (c->asg[i] >= 0)
            c->asg[i] = map[c->asg[i]];
    for (size_t b = 0; b < nn; b++) {
        cpu[map[b]] = c->cpu[b];
        mem[map[b]] = c->mem[b];
    }
    memcpy(c->cpu, cpu, nn * sizeof(double));
    memcpy(c->mem, mem, nn * sizeof(double));
out:
    free(ov);
    free(map);
    free(used);
    free(cpu);
    free(mem);
}

static int pack_mode(struct apc *c, double t, int knobs)
{
    if (!knobs)
        return pack(c, t, MODE_KEEP);
    if (pack(c, t, MODE_STICKY))
        return 1;
    if (!pack(c, t, MODE_FRESH))
        return 0;
    relabel(c);
    return 1;
}

struct plan {
    double t;
    int *sel;
    double *u; /* sorted utility vector, for lexicographic comparison */
    size_t nu;
};

/* Choose which jobs get placed (most urgent first), then bisect on t. */
static void solve(struct apc *c, int knobs, double cycle_s, struct plan *p)
{
    int *cand = malloc(c->nj * sizeof(int) + 1);
    size_t nc = 0;
    memset(c->sel, 0, c->nj * sizeof(int));
    for (size_t i = 0; i < c->nj; i++) {
        if (c->jobs[i].fixed)
            continue;
        if (!knobs && c->jobs[i].cur_node >= 0)
            c->sel[i] = 1; /* cannot be suspended: stays placed */
        else if (cand)
            cand[nc++] = (int)i;
    }
    /* urgency order: lowest best-reachable utility first; running jobs win
     * ties so that equal plans do not churn */
    for (size_t a = 1; a < nc; a++) {
        int x = cand[a];
        size_t k = a;
        while (k > 0) {
            int y = cand[k - 1];
            double ux = c->umax[x], uy = c->umax[y];
            int rx = c->jobs[x].cur_node >= 0, ry = c->jobs[y].cur_node >= 0;
            if (uy < ux || (uy == ux && (ry > rx || (ry == rx && y < x))))
                break;
            cand[k] = y;
            k--;
        }
        cand[k] = x;
    }
    for (size_t k = 0; k < nc; k++) {
        c->sel[cand[k]] = 1;
        if (!pack_mode(c, APC_T_LO, knobs))
            c->sel[cand[k]] = 0;
    }
    free(cand);
    double hi = APC_T_LO;
    for (size_t i = 0; i < c->nj; i++)
        if (c->sel[i] && !c->jobs[i].fixed)
            hi = fmax(hi, c->umax[i]);
    if (c->web)
        hi = fmax(hi, web_umax(c->web));
    hi += 0.01;
    double lo = APC_T_LO;
    if (pack_mode(c, hi, knobs)) {
        lo = hi;
    } else {
        for (int it = 0; it < 50 && hi - lo > 1e-4; it++) {
            double mid = 0.5 * (lo + hi);
            if (pack_mode(c, mid, knobs))
                lo = mid;
            else
                hi = mid;
        }
    }
    p->t = lo;
    memcpy(p->sel, c->sel, c->nj * sizeof(int));
    p->nu = 0;
    for (size_t i = 0; i < c->nj; i++) {
        if (c->jobs[i].fixed)
            continue;
        double u = c->sel[i] ? fmin(lo, c->umax[i]) : c->umax[i] - cycle_s / c->jobs[i].span;
        p->u[p->nu++] = u;
    }
    if (c->web)
        p->u[p->nu++] = fmin(lo, web_umax(c->web));
    for (size_t a = 1; a < p->nu; a++) {
        double x = p->u[a];
        size_t k = a;
        while (k > 0 && p->u[k - 1] > x) {
            p->u[k] = p->u[k - 1];
            k--;
        }
        p->u[k] = x;
    }
}

/* 1 if plan a is better than b: at the first rank where the sorted utility
 * vectors really differ, a must be ahead by more than h. Ranks held by the
 * same (e.g. already hopeless) jobs in both plans do not mask improvements
 * further up, yet a small gain never justifies suspending or migrating. */
static int lex_better(const struct plan *a, const struct plan *b, double h)
{
    for (size_t k = 0; k < a->nu && k < b->nu; k++) {
        if (fabs(a->u[k] - b->u[k]) <= 1e-6)
            continue;
        return a->u[k] > b->u[k] + h;
    }
    return 0;
}

int sim_apc_decide(const struct sim_apc_node *nodes, size_t nn, const struct sim_apc_job *jobs,
                   size_t nj, const struct sim_apc_web *web, double now, int knobs,
                   double hysteresis, double cycle_s, struct sim_apc_decision *d)
{
    struct apc c = {.nodes = nodes, .nn = nn, .jobs = jobs, .nj = nj, .web = web, .now = now};
    struct plan keep = {0}, freep = {0};
    size_t m = nj + 1;
    int rc = -ENOMEM;
    c.umax = calloc(m, sizeof(double));
    c.dem = calloc(m, sizeof(double));
    c.cpu = calloc(nn + 1, sizeof(double));
    c.mem = calloc(nn + 1, sizeof(double));
    c.asg = calloc(m, sizeof(int));
    c.order = calloc(m, sizeof(int));
    c.sel = calloc(m, sizeof(int));
    keep.sel = calloc(m, sizeof(int));
    freep.sel = calloc(m, sizeof(int));
    keep.u = calloc(m + 1, sizeof(double));
    freep.u = calloc(m + 1, sizeof(double));
    if (!c.umax || !c.dem || !c.cpu || !c.mem || !c.asg || !c.order || !c.sel || !keep.sel ||
        !freep.sel || !keep.u || !freep.u)
        goto out;
    for (size_t i = 0; i < nj; i++)
        c.umax[i] = sim_job_umax(&jobs[i], now);

    solve(&c, 0, cycle_s, &keep);
    struct plan *best = &keep;
    int bknobs = 0;
    if (knobs) {
        solve(&c, 1, cycle_s, &freep);
        if (lex_better(&freep, &keep, hysteresis)) {
            best = &freep;
            bknobs = 1;
        }
    }
    memcpy(c.sel, best->sel, nj * sizeof(int));
    if (!pack_mode(&c, best->t, bknobs)) {
        /* Only possible when even the floor is infeasible in KEEP mode
         * (running jobs overcommit a node): keep them where they are and
         * share each node proportionally below. */
        pack(&c, best->t, MODE_KEEP);
    }
    /* Allocations: demand at t, scaled down on an overcommitted node, then
     * leftover CPU to jobs up to their cap (work-conserving) once the web
     * application's need at t is covered; the rest goes to the web. */
    double total = 0, used = 0;
    for (size_t n = 0; n < nn; n++) {
        double sum = 0;
        for (size_t i = 0; i < nj; i++)
            if (c.asg[i] == (int)n)
                sum += jobs[i].fixed ? jobs[i].fixed_mhz : c.dem[i];
        double scale = sum > nodes[n].cap_mhz && sum > 0 ? nodes[n].cap_mhz / sum : 1;
        for (size_t i = 0; i < nj; i++)
            if (c.asg[i] == (int)n)
                d->alloc[i] = jobs[i].fixed ? jobs[i].fixed_mhz : c.dem[i] * scale;
        total += nodes[n].cap_mhz;
        used += fmin(sum, nodes[n].cap_mhz);
    }
    double spare = total - used - (web ? web_need(web, now, best->t) : 0);
    for (size_t n = 0; n < nn && spare > APC_EPS; n++) {
        double left = nodes[n].cap_mhz;
        for (size_t i = 0; i < nj; i++)
            if (c.asg[i] == (int)n)
                left -= d->alloc[i];
        for (size_t i = 0; i < nj && left > APC_EPS && spare > APC_EPS; i++) {
            if (c.asg[i] != (int)n || jobs[i].fixed)
                continue;
            double give = fmin(fmin(left, spare), jobs[i].cap_mhz - d->alloc[i]);
            if (give > 0) {
                d->alloc[i] += give;
                left -= give;
                spare -= give;
            }
        }
    }
    double jobsum = 0;
    for (size_t i = 0; i < nj; i++) {
        d->node[i] = c.asg[i];
        if (c.asg[i] < 0)
            d->alloc[i] = 0;
        jobsum += d->alloc[i];
    }
    d->web_mhz = web ? fmax(0, total - jobsum) : 0;
    d->min_utility = best->nu ? best->u[0] : best->t;
    rc = 0;
out:
    free(c.umax);
    free(c.dem);
    free(c.cpu);
    free(c.mem);
    free(c.asg);
    free(c.order);
    free(c.sel);
    free(keep.sel);
    free(freep.sel);
    free(keep.u);
    free(freep.u);
    return rc;
}

/* ---------------------------------------------------------------- production core */

/* The job as jobsched sees it, and its placement curve with the
 * controller's valuation (jobsched_placement_curve): the decision horizon is
 * the control cycle, starts and restores delay progress by their duration. */
static void job_view(const struct sim_apc_job *j, struct jobsched_job *js)
{
    memset(js, 0, sizeof(*js));
    js->work_mcycles = j->work_rem;
    js->threads = 1;
    js->max_speed_mhz = j->cap_mhz;
    js->submit_time = j->deadline - j->span;
    js->goal_time = j->deadline;
    js->state = j->cur_node >= 0 ? JOBSCHED_RUNNING
                : j->started     ? JOBSCHED_SUSPENDED
                                 : JOBSCHED_ELIGIBLE;
}

static void job_curve(const struct sim_apc_job *j, double now, const struct sim_config *cfg,
                      struct placement_utility *u)
{
    struct jobsched_valuation v;
    jobsched_valuation_default(&v);
    v.horizon_s = cfg->cycle_s;
    v.start_s = cfg->boot_s;
    v.restore_s = cfg->resume_s;
    if (cfg->job_utility_floor < v.floor)
        v.floor = cfg->job_utility_floor;
    struct jobsched_job js;
    job_view(j, &js);
    struct jobsched_point pts[PLACEMENT_UTILITY_MAX_POINTS];
    size_t n = jobsched_placement_curve(&js, now, &v, pts, PLACEMENT_UTILITY_MAX_POINTS);
    u->npoints = n;
    for (size_t k = 0; k < n; k++) {
        u->cpu_mhz[k] = pts[k].x;
        u->util[k] = pts[k].y;
    }
}

/* The processor-sharing web utility sampled at utility levels -1 .. u_max.
 * Below its demand the model is flat at the -1 clamp, a convex knee the core
 * cannot take and that a concave envelope from 0 MHz would paper over (it
 * reports utility 0.4 for an overloaded application). Instead the curve
 * continues below the knee with the steepest slope of the model, down to a
 * very negative utility at 0 MHz: CPU below demand is what the application
 * needs most. */
static void web_curve(const struct sim_apc_web *w, double max_mhz, struct placement_utility *u)
{
    double um = web_umax(w);
    size_t n = 1;
    for (int k = 0; k <= 24 && n < PLACEMENT_UTILITY_MAX_POINTS; k++) {
        double lvl = -1 + (um - 0.01 + 1) * k / 24.0;
        double x = w->demand_mhz + w->c_mcycles / (w->tau_s * (1 - lvl) - w->d0_s);
        if (n > 1 && (x <= u->cpu_mhz[n - 1] + 1e-6 || x > max_mhz))
            continue;
        u->cpu_mhz[n] = x;
        u->util[n++] = lvl;
    }
    double s1 = n > 2 ? (u->util[2] - u->util[1]) / (u->cpu_mhz[2] - u->cpu_mhz[1]) : 1e-3;
    u->cpu_mhz[0] = 0;
    u->util[0] = u->util[1] - s1 * u->cpu_mhz[1];
    u->npoints = n;
}

int sim_apc_decide_core(const struct sim_apc_node *nodes, size_t nn, const struct sim_apc_job *jobs,
                        size_t nj, const struct sim_apc_web *web, double now, int knobs,
                        const struct sim_config *cfg, struct sim_apc_decision *d,
                        struct wlm_error *err)
{
    struct placement_problem p;
    memset(&p, 0, sizeof(p));
    size_t nw = nj + (web ? 1 : 0);
    int rc = -ENOMEM;
    struct placement_decision *dec = NULL;
    p.nodes = calloc(nn + 1, sizeof(*p.nodes));
    p.workloads = calloc(nw + 1, sizeof(*p.workloads));
    p.current = calloc(nw + nn + 1, sizeof(*p.current));
    size_t *widx = calloc(nj + 1, sizeof(size_t)); /* job -> workload, or SIZE_MAX */
    if (!p.nodes || !p.workloads || !p.current || !widx) {
        wlm_error_set(err, ENOMEM, "out of memory");
        goto out;
    }
    double total = 0;
    p.nnodes = nn;
    for (size_t n = 0; n < nn; n++) {
        struct placement_node *pn = &p.nodes[n];
        snprintf(pn->name, sizeof(pn->name), "n%zu", n);
        snprintf(pn->labels, sizeof(pn->labels), "n%zu", n);
        pn->cores = (int)nodes[n].cores;
        pn->mhz_per_core = nodes[n].mhz;
        pn->memory_mb = nodes[n].mem_mb;
        pn->powered_on = 1;
        pn->power_idle_w = cfg->idle_w;
        pn->power_max_w = cfg->max_w;
        total += pn->cores * pn->mhz_per_core;
    }
    size_t w = 0;
    for (size_t i = 0; i < nj; i++) {
        const struct sim_apc_job *j = &jobs[i];
        widx[i] = SIZE_MAX;
        /* A job on its way out (suspending) promised its room away. */
        if (j->fixed && j->mem_mb <= 0)
            continue;
        struct placement_workload *pw = &p.workloads[w];
        snprintf(pw->name, sizeof(pw->name), "j%zu", i);
        pw->kind = PLACEMENT_JOB;
        pw->memory_mb = fmax(1, j->mem_mb);
        pw->max_cpu_per_instance = j->cap_mhz;
        pw->min_instances = 0;
        pw->max_instances = 1;
        job_curve(j, now, cfg, &pw->utility);
        pw->migratable = 1;
        pw->whole = 1;
        /* In an action, or settling after a move: it stays as it is. */
        pw->busy = j->fixed;
        {
            struct jobsched_job js;
            job_view(j, &js);
            pw->stall_cost = jobsched_stall_cost(&js);
        }
        pw->cur_node = j->cur_node;
        pw->state = j->cur_node >= 0 ? PLACEMENT_JOB_RUNNING
                    : j->started     ? PLACEMENT_JOB_SUSPENDED
                                     : PLACEMENT_JOB_QUEUED;
        if (j->cur_node >= 0)
            p.current[p.ncurrent++] = (struct placement_assign){
                .workload = w,
                .node = (size_t)j->cur_node,
                .cpu_mhz = j->fixed ? j->fixed_mhz : j->cur_mhz};
        widx[i] = w++;
    }
    size_t wweb = SIZE_MAX;
    if (web) {
        struct placement_workload *pw = &p.workloads[w];
        snprintf(pw->name, sizeof(pw->name), "web");
        pw->kind = PLACEMENT_APP;
        pw->memory_mb = 1;
        double maxn = 0;
        for (size_t n = 0; n < nn; n++)
            maxn = fmax(maxn, nodes[n].cap_mhz);
        pw->max_cpu_per_instance = maxn;
        pw->min_instances = nn ? 1 : 0;
        pw->max_instances = nn ? (int)nn : 1;
        web_curve(web, total, &pw->utility);
        pw->cur_node = -1;
        for (size_t n = 0; n < nn; n++)
            p.current[p.ncurrent++] = (struct placement_assign){
                .workload = w, .node = n, .cpu_mhz = web->cur_mhz / (double)nn};
        wweb = w++;
    }
    p.nworkloads = w;
    placement_options_default(&p.opts);
    p.opts.solver = cfg->solver == 1   ? PLACEMENT_SOLVER_EXACT
                    : cfg->solver == 2 ? PLACEMENT_SOLVER_HEURISTIC
                                       : PLACEMENT_SOLVER_AUTO;
    p.opts.power_saving = 0; /* the simulator's power rules own power */
    p.opts.headroom = 0;
    p.opts.max_balance_moves = 0;
    p.opts.hysteresis = cfg->apc_hysteresis;
    p.opts.no_moves = !knobs;
    p.opts.cost[PLACEMENT_ACT_START_JOB].duration_s = cfg->boot_s;
    p.opts.cost[PLACEMENT_ACT_SUSPEND_JOB].duration_s = cfg->suspend_s;
    p.opts.cost[PLACEMENT_ACT_RESTORE_JOB].duration_s = cfg->resume_s;
    p.opts.cost[PLACEMENT_ACT_MIGRATE_JOB].duration_s = cfg->migrate_s;
    p.opts.cost[PLACEMENT_ACT_POWER_ON].duration_s = cfg->node_boot_s;
    if (w == 0) {
        d->web_mhz = 0;
        d->min_utility = INFINITY;
        for (size_t i = 0; i < nj; i++) {
            d->node[i] = jobs[i].fixed ? jobs[i].cur_node : -1;
            d->alloc[i] = jobs[i].fixed ? jobs[i].fixed_mhz : 0;
        }
        rc = 0;
        goto out;
    }
    if ((rc = placement_solve(&p, &dec, err)))
        goto out;
    for (size_t i = 0; i < nj; i++) {
        d->node[i] = jobs[i].fixed ? jobs[i].cur_node : -1;
        d->alloc[i] = jobs[i].fixed ? jobs[i].fixed_mhz : 0;
    }
    for (size_t a = 0; a < dec->nassign; a++) {
        const struct placement_assign *as = &dec->assign[a];
        if (as->workload == wweb)
            continue;
        for (size_t i = 0; i < nj; i++)
            if (widx[i] == as->workload) {
                d->node[i] = (int)as->node;
                d->alloc[i] = as->cpu_mhz;
                break;
            }
    }
    d->web_mhz = web ? dec->cpu_mhz[wweb] : 0;
    d->min_utility = dec->min_utility;
    rc = 0;
out:
    placement_decision_free(dec);
    free(p.nodes);
    free(p.workloads);
    free(p.current);
    free(widx);
    return rc;
}

/* ---------------------------------------------------------------- balancing by the core */

/* Each round is one placement_solve over VMs that all fit (so every VM gets
 * its load and max-min has nothing to improve); what moves is the core's
 * band balancer (max_balance_moves per decision). Rounds stop when the
 * strict moderate band is reached or the core stops moving VMs. */
int sim_balance_wlm_core(const double *vm_load, int *vm_host, size_t nvm, size_t nh,
                         unsigned max_rounds, struct sim_bal_result *out)
{
    const double cap = 10000; /* MHz of one host; loads are fractions of it */
    memset(out, 0, sizeof(*out));
    if (nh == 0)
        return -WLM_EINVAL;
    for (size_t i = 0; i < nvm; i++)
        if (vm_host[i] < 0 || (size_t)vm_host[i] >= nh)
            return -WLM_EINVAL;
    struct placement_problem p;
    memset(&p, 0, sizeof(p));
    p.nodes = calloc(nh, sizeof(*p.nodes));
    p.workloads = calloc(nvm + 1, sizeof(*p.workloads));
    p.current = calloc(nvm + 1, sizeof(*p.current));
    double *l = calloc(nh, sizeof(double));
    int rc = -ENOMEM;
    if (!p.nodes || !p.workloads || !p.current || !l)
        goto out;
    p.nnodes = nh;
    for (size_t n = 0; n < nh; n++) {
        struct placement_node *pn = &p.nodes[n];
        snprintf(pn->name, sizeof(pn->name), "h%zu", n);
        pn->cores = 1;
        pn->mhz_per_core = cap;
        pn->memory_mb = 1e6;
        pn->powered_on = 1;
        pn->power_idle_w = 150;
        pn->power_max_w = 250;
    }
    p.nworkloads = nvm;
    for (size_t i = 0; i < nvm; i++) {
        struct placement_workload *pw = &p.workloads[i];
        snprintf(pw->name, sizeof(pw->name), "vm%zu", i);
        pw->kind = PLACEMENT_JOB;
        pw->memory_mb = 512;
        pw->max_cpu_per_instance = vm_load[i] * cap;
        pw->max_instances = 1;
        pw->migratable = 1;
        pw->utility.npoints = 2;
        pw->utility.cpu_mhz[0] = 0;
        pw->utility.util[0] = -1;
        pw->utility.cpu_mhz[1] = vm_load[i] * cap;
        pw->utility.util[1] = 1;
    }
    placement_options_default(&p.opts);
    p.opts.solver = PLACEMENT_SOLVER_HEURISTIC;
    p.opts.power_saving = 0;
    p.opts.headroom = 0;
    for (;;) {
        double lo, hi, dev = 0;
        memset(l, 0, nh * sizeof(double));
        for (size_t i = 0; i < nvm; i++)
            l[vm_host[i]] += vm_load[i];
        sim_band(l, nh, &lo, &hi);
        for (size_t n = 0; n < nh; n++)
            dev += l[n] > hi + 1e-12 || l[n] < lo - 1e-12;
        if (dev == 0) {
            out->converged = 1;
            break;
        }
        if (out->rounds >= max_rounds)
            break;
        p.ncurrent = 0;
        for (size_t i = 0; i < nvm; i++) {
            p.workloads[i].state = PLACEMENT_JOB_RUNNING;
            p.workloads[i].cur_node = vm_host[i];
            p.current[p.ncurrent++] = (struct placement_assign){
                .workload = i, .node = (size_t)vm_host[i], .cpu_mhz = vm_load[i] * cap};
        }
        struct placement_decision *d = NULL;
        if ((rc = placement_solve(&p, &d, NULL)))
            goto out;
        out->rounds++;
        unsigned moved = 0;
        for (size_t a = 0; a < d->nassign; a++) {
            size_t w = d->assign[a].workload;
            if (w < nvm && (int)d->assign[a].node != vm_host[w]) {
                vm_host[w] = (int)d->assign[a].node;
                moved++;
            }
        }
        placement_decision_free(d);
        out->migrations += moved;
        if (!moved)
            break;
    }
    rc = 0;
out:
    free(p.nodes);
    free(p.workloads);
    free(p.current);
    free(l);
    return rc;
}
