/* Builders for placement problems in tests and the bench. */
#ifndef WLM_TEST_PLACEMENT_HELPERS_H
#define WLM_TEST_PLACEMENT_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement.h"

static inline struct placement_problem *tp_new(size_t nn, size_t nw)
{
    struct placement_problem *p = calloc(1, sizeof(*p));
    p->nodes = calloc(nn ? nn : 1, sizeof(*p->nodes));
    p->workloads = calloc(nw ? nw : 1, sizeof(*p->workloads));
    p->current = calloc(nw * 8 + 1, sizeof(*p->current));
    p->nnodes = nn;
    p->nworkloads = nw;
    placement_options_default(&p->opts);
    return p;
}

static inline void tp_node(struct placement_problem *p, size_t i, int cores, double mhz, double mem,
                           int on)
{
    struct placement_node *n = &p->nodes[i];
    snprintf(n->name, sizeof(n->name), "n%zu", i);
    n->cores = cores;
    n->mhz_per_core = mhz;
    n->memory_mb = mem;
    n->powered_on = on;
    n->can_power_off = 1;
    n->power_idle_w = 100;
    n->power_max_w = 250;
}

/* u(0) = u0, rising linearly to u1 at `full` MHz, flat after. */
static inline void tp_lin(struct placement_utility *u, double full, double u0, double u1)
{
    memset(u, 0, sizeof(*u));
    u->npoints = 2;
    u->cpu_mhz[0] = 0;
    u->util[0] = u0;
    u->cpu_mhz[1] = full;
    u->util[1] = u1;
}

static inline void tp_app(struct placement_problem *p, size_t i, double mem, double capi, int mn,
                          int mx, double full)
{
    struct placement_workload *w = &p->workloads[i];
    snprintf(w->name, sizeof(w->name), "app%zu", i);
    w->kind = PLACEMENT_APP;
    w->memory_mb = mem;
    w->max_cpu_per_instance = capi;
    w->min_instances = mn;
    w->max_instances = mx;
    w->cur_node = -1;
    tp_lin(&w->utility, full, -1, 1);
}

static inline void tp_job(struct placement_problem *p, size_t i, double mem, double capi,
                          double full)
{
    struct placement_workload *w = &p->workloads[i];
    snprintf(w->name, sizeof(w->name), "job%zu", i);
    w->kind = PLACEMENT_JOB;
    w->memory_mb = mem;
    w->max_cpu_per_instance = capi;
    w->max_instances = 1;
    w->migratable = 1;
    w->state = PLACEMENT_JOB_QUEUED;
    w->cur_node = -1;
    tp_lin(&w->utility, full, -1, 1);
}

/* Put workload w on node n today (jobs become running). */
static inline void tp_cur(struct placement_problem *p, size_t w, size_t n, double cpu)
{
    struct placement_workload *wl = &p->workloads[w];
    if (wl->kind == PLACEMENT_JOB) {
        wl->state = PLACEMENT_JOB_RUNNING;
        wl->cur_node = (int)n;
    }
    p->current[p->ncurrent++] = (struct placement_assign){w, n, cpu};
}

/* Deterministic generator (LCG) so tests and bench figures reproduce. */
static inline double tp_rand(unsigned long long *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 9007199254740992.0;
}

/* A concave 3-point utility: -1 at 0, 0.5 at `need` MHz, 1 at 2 x need. */
static inline void tp_concave(struct placement_utility *u, double need)
{
    u->npoints = 3;
    u->cpu_mhz[0] = 0;
    u->util[0] = -1;
    u->cpu_mhz[1] = need;
    u->util[1] = 0.5;
    u->cpu_mhz[2] = 2 * need;
    u->util[2] = 1;
}

/* A random mixed instance: nn nodes (4-16 cores of 2 GHz, 16-64 GB), nw
 * workloads (1/3 apps with up to 4 instances, 2/3 jobs), concave 3-point
 * utilities, sized so CPU is contended (the max-min level is below 1). */
static inline struct placement_problem *tp_random(size_t nn, size_t nw, unsigned long long seed,
                                                  double load)
{
    struct placement_problem *p = tp_new(nn, nw);
    unsigned long long s = seed;
    double total_cpu = 0;
    for (size_t i = 0; i < nn; i++) {
        int cores = 4 << (int)(tp_rand(&s) * 3); /* 4, 8, 16 */
        tp_node(p, i, cores, 2000, 16384.0 * (1 + (int)(tp_rand(&s) * 4)), 1);
        total_cpu += cores * 2000.0;
    }
    double per = total_cpu * load / (double)(nw ? nw : 1);
    for (size_t i = 0; i < nw; i++) {
        double need = per * (0.3 + 1.4 * tp_rand(&s)); /* CPU for utility 0.5 */
        double mem = 512.0 * (1 + (int)(tp_rand(&s) * 8));
        if (i % 3 == 0) {
            tp_app(p, i, mem, 8000, 1, 1 + (int)(tp_rand(&s) * 4), need);
        } else {
            double capi = 2000.0 * (1 + (int)(tp_rand(&s) * 4));
            if (need > capi * 0.9)
                need = capi * 0.9;
            tp_job(p, i, mem, capi, need);
        }
        tp_concave(&p->workloads[i].utility, need);
    }
    return p;
}

#endif
