/*
 * apc_adapter.c - the one file through which the simulator reaches the
 * decision code: it translates the simulated cluster into a placement
 * problem (jobs valued by jobsched_placement_curve, the web application by
 * flowctl's model), calls placement_solve - the function the controller and
 * `wlm plan` call - and translates the decision back. The simulator has no
 * placement heuristic of its own.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "flowctl.h"
#include "jobsched.h"
#include "placement.h"

/* ---------------------------------------------------------------- production core */

/* The job as jobsched sees it, and its placement curve with the
 * controller's valuation (jobsched_valuation_init from the control cycle and
 * the action durations, then jobsched_placement_curve). */
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
    jobsched_valuation_init(&v, cfg->cycle_s, cfg->boot_s, cfg->resume_s);
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

/* The web application's placement curve: flowctl's (the controller's) from
 * one flow whose model is the simulated application's. */
static void web_curve(const struct sim_apc_web *w, double max_mhz, struct placement_utility *u)
{
    struct flowctl_flow_model m = {.lambda = w->c_mcycles > 0 ? w->demand_mhz / w->c_mcycles : 0,
                                   .cost = w->c_mcycles,
                                   .d0 = w->d0_s,
                                   .goal = w->tau_s};
    double imp = 1;
    struct flowctl_utility fu;
    if (flowctl_placement_curve(&m, &imp, 1, max_mhz, 16, -1, &fu, NULL))
        flowctl_indifferent_curve(&fu);
    u->npoints = fu.n < PLACEMENT_UTILITY_MAX_POINTS ? fu.n : PLACEMENT_UTILITY_MAX_POINTS;
    for (size_t k = 0; k < u->npoints; k++) {
        u->cpu_mhz[k] = fu.pts[k].x;
        u->util[k] = fu.pts[k].y;
    }
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
        pn->powered_on = !nodes[n].off;
        pn->can_power_off = d->node_on != NULL;
        pn->power_idle_w = cfg->idle_w;
        pn->power_max_w = cfg->max_w;
        pn->power_budget_w = nodes[n].budget_w;
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
            p.current[p.ncurrent++] =
                (struct placement_assign){.workload = w,
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
        size_t non = 0;
        for (size_t n = 0; n < nn; n++)
            non += !nodes[n].off;
        for (size_t n = 0; n < nn; n++)
            if (!nodes[n].off)
                p.current[p.ncurrent++] = (struct placement_assign){
                    .workload = w, .node = n, .cpu_mhz = web->cur_mhz / (double)non};
        wweb = w++;
    }
    p.nworkloads = w;
    placement_options_default(&p.opts);
    p.opts.solver = cfg->solver == 1   ? PLACEMENT_SOLVER_EXACT
                    : cfg->solver == 2 ? PLACEMENT_SOLVER_HEURISTIC
                                       : PLACEMENT_SOLVER_AUTO;
    if (d->node_on) {
        /* The controller's power saving, with its default headroom and
         * margin: the core decides which nodes are on. */
        p.opts.power_saving = 1;
    } else {
        p.opts.power_saving = 0; /* the simulator's other power rules own power */
        p.opts.headroom = 0;
    }
    p.opts.max_balance_moves = 0;
    p.opts.hysteresis = cfg->apc_hysteresis;
    p.opts.no_moves = !knobs;
    p.opts.cost[PLACEMENT_ACT_START_JOB].duration_s = cfg->boot_s;
    p.opts.cost[PLACEMENT_ACT_SUSPEND_JOB].duration_s = cfg->suspend_s;
    p.opts.cost[PLACEMENT_ACT_RESTORE_JOB].duration_s = cfg->resume_s;
    p.opts.cost[PLACEMENT_ACT_MIGRATE_JOB].duration_s = cfg->migrate_s;
    p.opts.cost[PLACEMENT_ACT_POWER_ON].duration_s = cfg->node_boot_s;
    if (w == 0 && !d->node_on) {
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
    for (size_t n = 0; d->node_on && n < nn; n++)
        d->node_on[n] = dec->node_on[n];
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
