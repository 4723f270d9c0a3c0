/*
 * instances.h - contended placement instances for the GLPK figures and tests.
 *
 * Heterogeneous nodes (six types: 8-32 cores, 2.0-3.0 GHz, 32-256 GB, some
 * labelled "fast"), nodes x 3 workloads: a third web applications with 1-5
 * instances and concave utilities, two thirds jobs of 1-4 threads at 2 GHz
 * per thread that get CPU all or nothing (whole), with a utility rising
 * linearly from u(0) (how late the job gets if it waits: -0.8 ... 0.3) to
 * u(cap). Some jobs need a "fast" node. CPU demand at the apps' mid-level
 * plus the jobs' caps is `load` x the cluster's CPU. Deterministic per seed.
 */
#ifndef WLM_BENCH_PLACEMENT_INSTANCES_H
#define WLM_BENCH_PLACEMENT_INSTANCES_H

#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "../../tests/placement/helpers.h" /* tp_rand, tp_concave */
#include "placement.h"

static inline struct placement_problem *bi_contended(size_t nn, unsigned long long seed, double load)
{
    static const struct {
        int cores;
        double mhz, mem_gb;
        const char *labels;
    } types[] = {{8, 2000, 32, "x86"},   {16, 2000, 64, "x86"},        {16, 2600, 64, "x86"},
                 {32, 2600, 128, "x86"}, {8, 3000, 32, "x86,fast"},    {32, 2000, 256, "x86"}};
    size_t nw = 3 * nn;
    struct placement_problem *p = calloc(1, sizeof(*p));
    p->nodes = calloc(nn ? nn : 1, sizeof(*p->nodes));
    p->workloads = calloc(nw ? nw : 1, sizeof(*p->workloads));
    p->current = calloc(nw * 8 + 1, sizeof(*p->current));
    p->nnodes = nn;
    p->nworkloads = nw;
    placement_options_default(&p->opts);
    p->opts.power_saving = 0;
    p->opts.max_balance_moves = 0;
    unsigned long long s = seed * 2654435761ULL + 12345;
    double total = 0;
    for (size_t i = 0; i < nn; i++) {
        size_t t = (size_t)(tp_rand(&s) * 6);
        struct placement_node *n = &p->nodes[i];
        snprintf(n->name, sizeof(n->name), "n%zu", i);
        n->cores = types[t].cores;
        n->mhz_per_core = types[t].mhz;
        n->memory_mb = types[t].mem_gb * 1024;
        snprintf(n->labels, sizeof(n->labels), "%s", types[t].labels);
        n->powered_on = 1;
        n->can_power_off = 1;
        n->power_idle_w = 100;
        n->power_max_w = 250;
        total += n->cores * n->mhz_per_core;
    }
    /* jobs first, to know what is left for the apps */
    double jobs_cpu = 0;
    size_t napps = 0;
    for (size_t i = 0; i < nw; i++) {
        struct placement_workload *w = &p->workloads[i];
        w->cur_node = -1;
        if (i % 3 == 0) {
            napps++;
            continue;
        }
        snprintf(w->name, sizeof(w->name), "job%zu", i);
        w->kind = PLACEMENT_JOB;
        int threads = 1 + (int)(tp_rand(&s) * 4);
        w->max_cpu_per_instance = threads * 2000.0;
        w->memory_mb = 1024.0 * (2 + (int)(tp_rand(&s) * 15));
        w->max_instances = 1;
        w->migratable = 1;
        w->whole = 1;
        w->stall_cost = 0.0001;
        w->state = PLACEMENT_JOB_QUEUED;
        if (tp_rand(&s) < 0.1)
            snprintf(w->requires, sizeof(w->requires), "fast");
        double u0 = -0.8 + 1.1 * tp_rand(&s);
        double u1 = u0 + 0.4 + 0.8 * tp_rand(&s);
        if (u1 > 1)
            u1 = 1;
        w->utility.npoints = 2;
        w->utility.cpu_mhz[0] = 0;
        w->utility.util[0] = u0;
        w->utility.cpu_mhz[1] = w->max_cpu_per_instance;
        w->utility.util[1] = u1;
        jobs_cpu += w->max_cpu_per_instance;
    }
    double per = (load * total - 0.6 * jobs_cpu) / (double)(napps ? napps : 1);
    if (per < 1000)
        per = 1000;
    for (size_t i = 0; i < nw; i += 3) {
        struct placement_workload *w = &p->workloads[i];
        snprintf(w->name, sizeof(w->name), "app%zu", i);
        w->kind = PLACEMENT_APP;
        w->memory_mb = 1024.0 * (1 + (int)(tp_rand(&s) * 4));
        w->max_cpu_per_instance = 8000;
        w->min_instances = 1;
        w->max_instances = 1 + (int)(tp_rand(&s) * 5);
        double need = per * (0.3 + 1.4 * tp_rand(&s)); /* CPU for utility 0.5 */
        w->utility.npoints = 3;
        w->utility.cpu_mhz[0] = 0;
        w->utility.util[0] = -1;
        w->utility.cpu_mhz[1] = need;
        w->utility.util[1] = 0.5;
        w->utility.cpu_mhz[2] = 2 * need;
        w->utility.util[2] = 1;
    }
    return p;
}

/* Packing-bound instances: every job is urgent (u(0) = -1: a job left
 * waiting sets the minimum at -1), jobs' whole caps add up to `fill` of the
 * cluster's CPU (jobs of 1-16 threads, 8-48 GB: large next to the nodes),
 * and the apps (a sixth of the workloads, 1-3 instances)
 * share what the jobs leave. Whether every job fits is a bin-packing
 * question over CPU and memory, which is where a greedy packing falls short
 * of the LP bound. */
static inline struct placement_problem *bi_urgent(size_t nn, unsigned long long seed, double fill)
{
    struct placement_problem *p = bi_contended(nn, seed, 1.0);
    unsigned long long s = seed * 7919ULL + 17;
    double total = 0;
    for (size_t i = 0; i < p->nnodes; i++)
        total += p->nodes[i].cores * p->nodes[i].mhz_per_core;
    double jobs = 0;
    for (size_t i = 0; i < p->nworkloads; i++) {
        struct placement_workload *w = &p->workloads[i];
        if (i % 6 == 0) { /* an app */
            memset(w, 0, sizeof(*w));
            snprintf(w->name, sizeof(w->name), "app%zu", i);
            w->kind = PLACEMENT_APP;
            w->cur_node = -1;
            w->memory_mb = 2048;
            w->max_cpu_per_instance = 8000;
            w->min_instances = 1;
            w->max_instances = 1 + (int)(tp_rand(&s) * 3);
            continue;
        }
        memset(w, 0, sizeof(*w));
        snprintf(w->name, sizeof(w->name), "job%zu", i);
        w->kind = PLACEMENT_JOB;
        w->cur_node = -1;
        w->state = PLACEMENT_JOB_QUEUED;
        w->max_instances = 1;
        w->migratable = 1;
        w->whole = 1;
        int threads = 1 + (int)(tp_rand(&s) * 12);
        w->max_cpu_per_instance = threads * 2000.0;
        w->memory_mb = 1024.0 * (8 + (int)(tp_rand(&s) * 40));
        jobs += w->max_cpu_per_instance;
    }
    /* scale the job sizes so their caps add up to `fill` of the CPU */
    double k = fill * total / (jobs > 0 ? jobs : 1);
    for (size_t i = 0; i < p->nworkloads; i++) {
        struct placement_workload *w = &p->workloads[i];
        if (w->kind != PLACEMENT_JOB)
            continue;
        double t = round(w->max_cpu_per_instance * k / 2000.0);
        w->max_cpu_per_instance = 2000.0 * (t < 1 ? 1 : t > 16 ? 16 : t);
        w->utility.npoints = 2;
        w->utility.cpu_mhz[0] = 0;
        w->utility.util[0] = -1;
        w->utility.cpu_mhz[1] = w->max_cpu_per_instance;
        w->utility.util[1] = 0.2 + 0.8 * tp_rand(&s);
    }
    double left = total * fmax(0.02, 1 - fill) / (double)((p->nworkloads + 5) / 6);
    for (size_t i = 0; i < p->nworkloads; i += 6) {
        double need = left * (0.5 + tp_rand(&s)); /* CPU for utility 0.5 */
        tp_concave(&p->workloads[i].utility, need);
    }
    return p;
}

#endif
