/*
 * run.c - the simulation proper: jobs progressing on simulated nodes, the
 * actions that move them (each taking its configured time, during which the
 * job makes no progress), the policies under test and the power rules.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "placement.h"
#include "sim.h"

/* ---------------------------------------------------------------- names */

static const char *const policy_names[] = {"fcfs", "edf", "apc", "apc-noknobs"};
static const char *const power_names[] = {"always-on", "utilsum", "wlm"};

const char *sim_policy_name(int p)
{
    return p >= 0 && p < SIM_POLICY_COUNT ? policy_names[p] : "?";
}

int sim_policy_parse(const char *s)
{
    for (int i = 0; i < SIM_POLICY_COUNT; i++)
        if (strcmp(s, policy_names[i]) == 0)
            return i;
    return -WLM_EINVAL;
}

const char *sim_power_name(int p)
{
    return p >= 0 && p < SIM_POWER_COUNT ? power_names[p] : "?";
}

int sim_power_parse(const char *s)
{
    for (int i = 0; i < SIM_POWER_COUNT; i++)
        if (strcmp(s, power_names[i]) == 0)
            return i;
    return -WLM_EINVAL;
}

/* ---------------------------------------------------------------- web */

double sim_web_demand(const struct sim_web *w, double t)
{
    if (w->peak_mhz <= 0)
        return 0;
    double ph = w->period_s > 0 ? 2 * M_PI * t / w->period_s : 0;
    return w->min_mhz + (w->peak_mhz - w->min_mhz) * (1 - cos(ph)) / 2;
}

double sim_web_utility(const struct sim_web *w, double t, double omega)
{
    double um = (w->tau_s - w->d0_s) / w->tau_s;
    double d = sim_web_demand(w, t);
    if (omega <= d)
        return -1;
    double rt = w->d0_s + w->c_mcycles / (omega - d);
    double u = (w->tau_s - rt) / w->tau_s;
    return fmax(-1, fmin(um, u));
}

/* ---------------------------------------------------------------- config */

void sim_config_defaults(struct sim_config *c)
{
    memset(c, 0, sizeof(*c));
    c->nodes = 4;
    c->cores = 2;
    c->mhz = 3000;
    c->mem_mb = 4096;
    c->idle_w = 150;
    c->max_w = 250;
    c->off_w = 5;
    c->boot_s = 35;
    c->suspend_s = 20;
    c->resume_s = 25;
    c->migrate_s = 60;
    c->node_boot_s = 120;
    c->cycle_s = 300;
    c->policy = SIM_POLICY_APC;
    c->solver = 2;
    c->power = SIM_POWER_ALWAYS_ON;
    c->headroom = 0.25;
    {
        /* the controller's hysteresis: one decision core, one setting */
        struct placement_options po;
        placement_options_default(&po);
        c->apc_hysteresis = po.hysteresis;
    }
    c->web.period_s = 86400;
    c->web.c_mcycles = 150;
    c->web.tau_s = 0.5;
    c->web.d0_s = 0.05;
}

void sim_result_fini(struct sim_result *r)
{
    if (!r)
        return;
    free(r->finish);
    r->finish = NULL;
}

/* ---------------------------------------------------------------- workload */

int sim_workload_mix(uint64_t seed, double mean_ia_s, size_t njobs, double mem_mb,
                     struct sim_job_spec **out, size_t *n, struct wlm_error *err)
{
    static const struct {
        int count, threads;
        double minutes;
    } mix[] = {{25, 2, 32}, {25, 2, 23}, {25, 1, 66}, {15, 1, 45}, {10, 1, 127}};
    static const double factor[] = {1.5, 3, 10};
    if (mean_ia_s <= 0)
        return wlm_error_setf(err, WLM_EINVAL, "mean_interarrival", "must be > 0");
    if (njobs == 0 || njobs > 1000000)
        return wlm_error_setf(err, WLM_EINVAL, "jobs", "must be 1..1000000");
    struct sim_job_spec *v = calloc(njobs, sizeof(*v));
    int *cls = calloc(njobs, sizeof(int));
    if (!v || !cls) {
        free(v);
        free(cls);
        return wlm_error_set(err, ENOMEM, "out of memory");
    }
    struct sim_rng r;
    sim_rng_seed(&r, seed);
    /* the canonical 100-job list, repeated as needed, then shuffled */
    for (size_t i = 0; i < njobs; i++) {
        size_t k = i % 100, m = 0, acc = 0;
        while (k >= acc + (size_t)mix[m].count) {
            acc += (size_t)mix[m].count;
            m++;
        }
        v[i].threads = mix[m].threads;
        v[i].runtime_s = mix[m].minutes * 60;
        v[i].mem_mb = mem_mb;
        cls[i] = k < 50 ? SIM_PLATINUM : k < 90 ? SIM_GOLD : SIM_SILVER;
    }
    for (size_t i = njobs; i > 1; i--) {
        size_t j = (size_t)(sim_rng_u64(&r) % i);
        struct sim_job_spec t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
    for (size_t i = njobs; i > 1; i--) {
        size_t j = (size_t)(sim_rng_u64(&r) % i);
        int t = cls[i - 1];
        cls[i - 1] = cls[j];
        cls[j] = t;
    }
    double t = 0;
    for (size_t i = 0; i < njobs; i++) {
        t += sim_rng_exp(&r, mean_ia_s);
        v[i].arrival = t;
        v[i].svc_class = cls[i];
        v[i].goal_factor = factor[cls[i]];
    }
    free(cls);
    *out = v;
    *n = njobs;
    return 0;
}

/* ---------------------------------------------------------------- state */

enum jstate {
    JS_PENDING, /* not arrived yet */
    JS_QUEUED,
    JS_BOOT,
    JS_RUN,
    JS_SUSPENDING,
    JS_SUSPENDED,
    JS_RESUMING,
    JS_MIGRATING,
    JS_DONE,
};

struct job {
    struct sim_job_spec s;
    double cap, work, done_w, deadline, span;
    int state, node, last_node;
    double alloc;       /* MHz: current when running, target during an action */
    double sched_alloc; /* alloc the pending JOB_DONE event was computed for */
    double moved_at;    /* when its last migration or resume began */
    uint64_t gen;
};

struct sim {
    const struct sim_config *cfg;
    struct sim_node *nodes;
    int *draining;
    size_t nn;
    struct job *jobs;
    size_t nj;
    struct sim_evq *q;
    double now;
    double web_alloc;
    int web_on;
    struct sim_result *res;
    size_t remaining;
    int periodic;
    /* scratch for decisions */
    struct sim_apc_job *aj;
    struct sim_apc_node *an;
    int *jmap, *nmap, *dnode;
    double *dalloc;
    struct sim_apc_web wv;
    struct wlm_error *err;
    size_t want_hist[3]; /* power rule's last wants: nodes go off only when all agree */
};

static int usable(const struct sim *s, size_t n)
{
    return s->nodes[n].on && !s->nodes[n].booting && !s->draining[n];
}

/* A job holds memory (and, unless suspending, CPU) on s->node in these states. */
static int on_node(const struct job *j)
{
    return j->state == JS_BOOT || j->state == JS_RUN || j->state == JS_SUSPENDING ||
           j->state == JS_RESUMING || j->state == JS_MIGRATING;
}

static int push(struct sim *s, double t, int kind, int a, uint64_t gen)
{
    struct sim_event ev = {.t = t, .kind = kind, .a = a, .gen = gen};
    return sim_evq_push(s->q, &ev);
}

static void advance(struct sim *s, double t)
{
    double dt = t - s->now;
    if (dt <= 0)
        return;
    for (size_t i = 0; i < s->nj; i++) {
        struct job *j = &s->jobs[i];
        if (j->state == JS_RUN)
            j->done_w = fmin(j->work, j->done_w + j->alloc * dt);
    }
    for (size_t n = 0; n < s->nn; n++)
        sim_node_account(&s->nodes[n], dt);
    if (s->web_on && sim_web_utility(&s->cfg->web, s->now, s->web_alloc) < 0)
        s->res->web_violation_s += dt;
    s->now = t;
}

/* Recompute what each node consumes: its running jobs' shares plus its part of
 * the web load (spread over usable nodes in proportion to their spare CPU). */
static void recompute_usage(struct sim *s)
{
    double spare_total = 0, jobs_on_usable = 0, cap_usable = 0;
    for (size_t n = 0; n < s->nn; n++)
        s->nodes[n].used_mhz = 0;
    for (size_t i = 0; i < s->nj; i++) {
        struct job *j = &s->jobs[i];
        if (j->state == JS_RUN)
            s->nodes[j->node].used_mhz += j->alloc;
    }
    for (size_t n = 0; n < s->nn; n++)
        if (usable(s, n)) {
            double cap = sim_node_capacity(&s->nodes[n]);
            if (s->nodes[n].budgeted && s->nodes[n].budget_mhz < cap)
                cap = s->nodes[n].budget_mhz; /* a power cap: the web gets no more */
            cap_usable += cap;
            jobs_on_usable += s->nodes[n].used_mhz;
            spare_total += fmax(0, cap - s->nodes[n].used_mhz);
        }
    if (!s->web_on)
        return;
    if (s->cfg->policy == SIM_POLICY_FCFS || s->cfg->policy == SIM_POLICY_EDF)
        s->web_alloc = fmax(0, cap_usable - jobs_on_usable);
    double use = fmin(sim_web_demand(&s->cfg->web, s->now), fmin(s->web_alloc, spare_total));
    if (spare_total <= 0)
        return;
    for (size_t n = 0; n < s->nn; n++)
        if (usable(s, n)) {
            double cap = sim_node_capacity(&s->nodes[n]);
            if (s->nodes[n].budgeted && s->nodes[n].budget_mhz < cap)
                cap = s->nodes[n].budget_mhz;
            s->nodes[n].used_mhz += use * fmax(0, cap - s->nodes[n].used_mhz) / spare_total;
        }
}

/* (Re)schedule completion of running jobs whose share changed. */
static int reschedule(struct sim *s)
{
    for (size_t i = 0; i < s->nj; i++) {
        struct job *j = &s->jobs[i];
        if (j->state != JS_RUN || j->alloc == j->sched_alloc)
            continue;
        j->gen++;
        j->sched_alloc = j->alloc;
        if (j->alloc <= 0)
            continue;
        int rc =
            push(s, s->now + (j->work - j->done_w) / j->alloc, SIM_EV_JOB_DONE, (int)i, j->gen);
        if (rc)
            return rc;
    }
    return 0;
}

static int begin_action(struct sim *s, size_t i, int state, double dur)
{
    struct job *j = &s->jobs[i];
    j->state = state;
    j->gen++;
    j->sched_alloc = -1;
    return push(s, s->now + dur, SIM_EV_ACTION_DONE, (int)i, j->gen);
}

/* ---------------------------------------------------------------- power */

/* Switch a node on (it boots for node_boot_s) and keep it from draining. */
static int power_on(struct sim *s, size_t n)
{
    struct sim_node *nd = &s->nodes[n];
    s->draining[n] = 0;
    if (nd->on)
        return 0;
    nd->on = 1;
    nd->booting = 1;
    s->res->node_boots++;
    return push(s, s->now + s->cfg->node_boot_s, SIM_EV_NODE_READY, (int)n, 0);
}

/* The core's power states (wlm power rule): a node it wants on boots if it
 * is off; one it wants off takes no new work and powers off once its last
 * VM has left (power_off_empty). */
static int apply_power(struct sim *s, const int *nlist, size_t nn, const int *node_on)
{
    for (size_t k = 0; k < nn; k++) {
        size_t n = (size_t)nlist[k];
        if (node_on[k]) {
            int rc = power_on(s, n);
            if (rc)
                return rc;
        } else if (s->nodes[n].on) {
            s->draining[n] = 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- decisions */

/* FCFS and EDF: list scheduling. Jobs in queue order start on the first node
 * with whole cores free for all their threads; a job that does not fit does
 * not block those behind it. Started jobs run to completion in place. */
static int decide_list(struct sim *s)
{
    size_t nq = 0;
    for (size_t i = 0; i < s->nj; i++)
        if (s->jobs[i].state == JS_QUEUED)
            s->jmap[nq++] = (int)i;
    if (nq == 0)
        return 0;
    /* insertion sort by key, index breaks ties */
    for (size_t a = 1; a < nq; a++) {
        int x = s->jmap[a];
        size_t k = a;
        while (k > 0) {
            int y = s->jmap[k - 1];
            double kx =
                s->cfg->policy == SIM_POLICY_EDF ? s->jobs[x].deadline : s->jobs[x].s.arrival;
            double ky =
                s->cfg->policy == SIM_POLICY_EDF ? s->jobs[y].deadline : s->jobs[y].s.arrival;
            if (ky < kx || (ky == kx && y < x))
                break;
            s->jmap[k] = y;
            k--;
        }
        s->jmap[k] = x;
    }
    double *cpu = s->dalloc, *mem = s->dalloc + s->nn;
    for (size_t n = 0; n < s->nn; n++) {
        cpu[n] = sim_node_capacity(&s->nodes[n]);
        mem[n] = s->nodes[n].mem_mb;
    }
    for (size_t i = 0; i < s->nj; i++) {
        struct job *j = &s->jobs[i];
        if (on_node(j)) {
            cpu[j->node] -= j->alloc;
            mem[j->node] -= j->s.mem_mb;
        }
    }
    for (size_t k = 0; k < nq; k++) {
        struct job *j = &s->jobs[s->jmap[k]];
        for (size_t n = 0; n < s->nn; n++) {
            if (!usable(s, n) || cpu[n] + 1e-9 < j->cap || mem[n] + 1e-9 < j->s.mem_mb)
                continue;
            cpu[n] -= j->cap;
            mem[n] -= j->s.mem_mb;
            j->node = (int)n;
            j->alloc = j->cap;
            s->res->starts++;
            int rc = begin_action(s, (size_t)s->jmap[k], JS_BOOT, s->cfg->boot_s);
            if (rc)
                return rc;
            break;
        }
    }
    return 0;
}

/* Build the APC view over the nodes listed in nlist[0..nn); jobs outside
 * those nodes are not movable into the view unless queued/suspended/running.
 * Returns the number of jobs in the view. */
static size_t build_view(struct sim *s, const int *nlist, size_t nn, int noknobs)
{
    for (size_t n = 0; n < s->nn; n++)
        s->nmap[n] = -1;
    for (size_t k = 0; k < nn; k++) {
        int n = nlist[k];
        s->nmap[n] = (int)k;
        s->an[k].cap_mhz = sim_node_capacity(&s->nodes[n]);
        s->an[k].mem_mb = s->nodes[n].mem_mb;
        s->an[k].cores = s->nodes[n].cores;
        s->an[k].mhz = s->nodes[n].mhz;
        s->an[k].off = !s->nodes[n].on;
    }
    size_t m = 0;
    for (size_t i = 0; i < s->nj; i++) {
        struct job *j = &s->jobs[i];
        if (j->state == JS_PENDING || j->state == JS_DONE)
            continue;
        int vn = on_node(j) ? s->nmap[j->node] : -1;
        int in_action = j->state != JS_RUN && j->state != JS_QUEUED && j->state != JS_SUSPENDED;
        if (in_action && vn < 0)
            continue; /* busy on a node outside the view: not ours to count */
        struct sim_apc_job *a = &s->aj[m];
        memset(a, 0, sizeof(*a));
        a->cap_mhz = j->cap;
        a->mem_mb = j->s.mem_mb;
        a->work_rem = fmax(1e-9, j->work - j->done_w);
        a->deadline = j->deadline;
        a->span = j->span;
        a->cur_node = vn;
        a->started = j->last_node >= 0 || on_node(j);
        a->cur_mhz = on_node(j) ? j->alloc : 0;
        /* a job that just moved stays put for a cycle: without this, moves
         * that complete at the same instant can chase each other forever */
        int settling = j->state == JS_RUN && s->now - j->moved_at < s->cfg->cycle_s;
        if (in_action || (settling && j->state == JS_RUN && vn >= 0)) {
            a->fixed = 1;
            a->fixed_mhz = j->alloc;
            if (j->state == JS_SUSPENDING) {
                /* leaving: its room is promised to whoever the plan puts
                 * there (the move itself waits until the room is free) */
                a->fixed_mhz = 0;
                a->mem_mb = 0;
            }
        }
        s->jmap[m++] = (int)i;
    }
    return m;
}

/* The web application as the controller sees it: current demand plus its
 * recent rise extrapolated over one control cycle and a node boot (what a
 * trend forecast from the web profiler gives), so capacity is planned for
 * where the load is going, not where it was. */
static const struct sim_apc_web *web_view(struct sim *s)
{
    if (!s->web_on)
        return NULL;
    const struct sim_web *w = &s->cfg->web;
    double ahead = s->cfg->cycle_s + s->cfg->node_boot_s;
    double d = sim_web_demand(w, s->now);
    double prev = sim_web_demand(w, fmax(0, s->now - ahead));
    s->wv = (struct sim_apc_web){.demand_mhz = d + fmax(0, d - prev),
                                 .c_mcycles = w->c_mcycles,
                                 .tau_s = w->tau_s,
                                 .d0_s = w->d0_s,
                                 .cur_mhz = s->web_alloc};
    return &s->wv;
}

static int decide_apc(struct sim *s)
{
    int noknobs = s->cfg->policy == SIM_POLICY_APC_NOKNOBS;
    int core_power = s->cfg->power == SIM_POWER_WLM;
    int *nlist = s->dnode + s->nj; /* scratch after the per-job part */
    int *node_on = nlist + s->nn;
    size_t nn = 0;
    /* Under the wlm power rule the core sees every node with its power
     * state (a booting node counts as on) and decides which are on, as the
     * controller's does; otherwise it places on the usable nodes. */
    for (size_t n = 0; n < s->nn; n++)
        if (core_power || usable(s, n))
            nlist[nn++] = (int)n;
    size_t m = build_view(s, nlist, nn, noknobs);
    if (m == 0 && !s->web_on && !core_power)
        return 0;
    struct sim_apc_decision d = {
        .node = s->dnode, .alloc = s->dalloc, .node_on = core_power ? node_on : NULL};
    int rc;
    if (s->cfg->power_cap_w > 0) {
        /* A power cap: the plan without it says where CPU is wanted; each
         * node's budget follows from that (sim/powercap.c), then the
         * decision is taken under the budgets. */
        double *planned = calloc(nn + 1, sizeof(double));
        if (!planned)
            return wlm_error_set(s->err, ENOMEM, "out of memory");
        for (size_t k = 0; k < nn; k++)
            s->an[k].budget_w = 0;
        if (!s->cfg->power_cap_equal) {
            rc = sim_apc_decide_core(s->an, nn, s->aj, m, web_view(s), s->now, !noknobs, s->cfg,
                                     &d, s->err);
            if (rc) {
                free(planned);
                return rc;
            }
            size_t non = 0;
            for (size_t k = 0; k < nn; k++)
                non += d.node_on ? d.node_on[k] != 0 : !s->an[k].off;
            for (size_t k = 0; k < m; k++)
                if (d.node[k] >= 0)
                    planned[d.node[k]] += d.alloc[k];
            for (size_t k = 0; k < nn && non; k++)
                if (d.node_on ? d.node_on[k] : !s->an[k].off)
                    planned[k] += d.web_mhz / (double)non;
        }
        sim_powercap_budgets(s->cfg, s->an, nn, planned);
        free(planned);
        for (size_t k = 0; k < nn; k++) {
            struct sim_node *sn = &s->nodes[nlist[k]];
            double f = (s->an[k].budget_w - s->cfg->idle_w) / (s->cfg->max_w - s->cfg->idle_w);
            sn->budgeted = s->cfg->max_w > s->cfg->idle_w;
            sn->budget_mhz = sim_node_capacity(sn) * (f < 0 ? 0 : f > 1 ? 1 : f);
        }
    }
    rc = sim_apc_decide_core(s->an, nn, s->aj, m, web_view(s), s->now, !noknobs, s->cfg, &d, s->err);
    if (rc)
        return rc;
    s->res->decisions++;
    s->res->min_utility_sum += d.min_utility;
    if (s->res->decisions == 1 || d.min_utility < s->res->min_utility_worst)
        s->res->min_utility_worst = d.min_utility;
    s->web_alloc = d.web_mhz;
    if (core_power)
        sim_powercap_power_off(s->cfg, s->an, nn, node_on);
    if (core_power && (rc = apply_power(s, nlist, nn, node_on)))
        return rc;
    /* What each node holds right now, including VMs still on their way out:
     * a move into a node waits until there is room (free space before
     * moving into it); the decision after the blocking action completes
     * starts it. */
    double *cpu = s->dalloc + s->nj, *mem = cpu + s->nn;
    for (size_t n = 0; n < s->nn; n++) {
        cpu[n] = sim_node_capacity(&s->nodes[n]);
        mem[n] = s->nodes[n].mem_mb;
    }
    for (size_t i = 0; i < s->nj; i++)
        if (on_node(&s->jobs[i])) {
            cpu[s->jobs[i].node] -= s->jobs[i].alloc;
            mem[s->jobs[i].node] -= s->jobs[i].s.mem_mb;
        }
    for (size_t k = 0; k < m; k++) {
        size_t i = (size_t)s->jmap[k];
        struct job *j = &s->jobs[i];
        int dn = d.node[k] >= 0 ? nlist[d.node[k]] : -1;
        if (j->state == JS_RUN && dn == j->node) {
            cpu[dn] += j->alloc - d.alloc[k];
            j->alloc = d.alloc[k];
        }
    }
    for (size_t k = 0; k < m; k++) {
        size_t i = (size_t)s->jmap[k];
        struct job *j = &s->jobs[i];
        int dn = d.node[k] >= 0 ? nlist[d.node[k]] : -1;
        double al = d.alloc[k];
        if (dn >= 0 && dn != (on_node(j) ? j->node : -1)) {
            if (!usable(s, (size_t)dn) || cpu[dn] + 1e-6 < al || mem[dn] + 1e-6 < j->s.mem_mb)
                continue; /* deferred: the node is booting, or room is still being freed */
            cpu[dn] -= al;
            mem[dn] -= j->s.mem_mb;
        }
        switch (j->state) {
        case JS_QUEUED:
            if (dn >= 0) {
                j->node = dn;
                j->alloc = al;
                s->res->starts++;
                rc = begin_action(s, i, JS_BOOT, s->cfg->boot_s);
            }
            break;
        case JS_SUSPENDED:
            if (dn >= 0) {
                if (dn != j->last_node)
                    s->res->moves++;
                j->node = dn;
                j->alloc = al;
                s->res->resumes++;
                j->moved_at = s->now;
                rc = begin_action(s, i, JS_RESUMING, s->cfg->resume_s);
            }
            break;
        case JS_RUN:
            if (dn == j->node) {
                j->alloc = al;
            } else if (dn >= 0) {
                j->node = dn;
                j->alloc = al;
                s->res->migrations++;
                j->moved_at = s->now;
                rc = begin_action(s, i, JS_MIGRATING, s->cfg->migrate_s);
            } else if (noknobs) {
                /* no knobs: a started job is never suspended */
            } else {
                /* keeps its CPU and memory until the checkpoint is written */
                s->res->suspends++;
                rc = begin_action(s, i, JS_SUSPENDING, s->cfg->suspend_s);
            }
            break;
        default: break;
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int decide(struct sim *s)
{
    if (s->cfg->policy == SIM_POLICY_FCFS || s->cfg->policy == SIM_POLICY_EDF) {
        s->res->decisions++;
        return decide_list(s);
    }
    return decide_apc(s);
}

/* ---------------------------------------------------------------- utilsum */

static double node_load(const struct sim *s, size_t n)
{
    double l = 0;
    for (size_t i = 0; i < s->nj; i++)
        if (on_node(&s->jobs[i]) && s->jobs[i].node == (int)n)
            l += s->jobs[i].alloc + 1; /* +1: an occupied node beats an empty one */
    return l;
}

static int power_control(struct sim *s)
{
    const struct sim_config *c = s->cfg;
    size_t N = s->nn, want = N;
    if (c->power != SIM_POWER_UTILSUM)
        return 0; /* always on, or the core's (decide_apc) */
    /* preference order: usable nodes by load, then booting, then the rest */
    int *pref = s->dnode + s->nj + s->nn;
    size_t np = 0;
    for (int pass = 0; pass < 3; pass++)
        for (size_t n = 0; n < N; n++) {
            int u = usable(s, n), b = s->nodes[n].on && s->nodes[n].booting && !s->draining[n];
            if ((pass == 0 && u) || (pass == 1 && b) || (pass == 2 && !u && !b))
                pref[np++] = (int)n;
        }
    for (size_t a = 1; a < np; a++) { /* stable sort of the usable prefix by load */
        int x = pref[a];
        if (!usable(s, (size_t)x))
            break;
        size_t k = a;
        while (k > 0 && node_load(s, (size_t)pref[k - 1]) < node_load(s, (size_t)x)) {
            pref[k] = pref[k - 1];
            k--;
        }
        pref[k] = x;
    }
    double used = 0;
    for (size_t n = 0; n < N; n++)
        if (s->nodes[n].on)
            used += s->nodes[n].used_mhz;
    double U = used / sim_node_capacity(&s->nodes[0]);
    want = (size_t)fmax(1, ceil(U + c->headroom - 1e-9));
    if (want > N)
        want = N;
    /* power on at once, power off only after three cycles agree (a node
     * boot costs minutes; flapping would cost more than it saves) */
    size_t w0 = want;
    for (size_t k = 0; k < 3; k++)
        if (s->want_hist[k] > want)
            want = s->want_hist[k];
    s->want_hist[2] = s->want_hist[1];
    s->want_hist[1] = s->want_hist[0];
    s->want_hist[0] = w0;
    for (size_t k = 0; k < N; k++) {
        size_t n = (size_t)pref[k];
        struct sim_node *nd = &s->nodes[n];
        if (k < want) {
            s->draining[n] = 0;
            int rc = power_on(s, n);
            if (rc)
                return rc;
        } else if (nd->on) {
            s->draining[n] = 1;
        }
    }
    return 0;
}

/* A draining node powers off once nothing is left on it. */
static void power_off_empty(struct sim *s)
{
    for (size_t n = 0; n < s->nn; n++) {
        if (!s->draining[n] || !s->nodes[n].on || s->nodes[n].booting)
            continue;
        int busy = 0;
        for (size_t i = 0; i < s->nj && !busy; i++)
            busy = on_node(&s->jobs[i]) && s->jobs[i].node == (int)n;
        if (!busy) {
            s->nodes[n].on = 0;
            s->draining[n] = 0;
            s->res->node_shutdowns++;
        }
    }
}

/* ---------------------------------------------------------------- run */

static int check_config(const struct sim_config *c, struct wlm_error *err)
{
    if (c->nodes < 1 || c->nodes > 100000)
        return wlm_error_setf(err, WLM_EINVAL, "nodes", "must be 1..100000");
    if (!(c->cores > 0) || !(c->mhz > 0) || !(c->mem_mb > 0))
        return wlm_error_setf(err, WLM_EINVAL, "cores", "cores, mhz and mem_mb must be > 0");
    if (c->idle_w < 0 || c->max_w < c->idle_w || c->off_w < 0)
        return wlm_error_setf(err, WLM_EINVAL, "max_w", "need 0 <= idle_w <= max_w, off_w >= 0");
    if (c->boot_s < 0 || c->suspend_s < 0 || c->resume_s < 0 || c->migrate_s < 0 ||
        c->node_boot_s < 0)
        return wlm_error_setf(err, WLM_EINVAL, "boot_s", "action durations must be >= 0");
    if (!(c->cycle_s > 0))
        return wlm_error_setf(err, WLM_EINVAL, "cycle_s", "must be > 0");
    if (c->policy < 0 || c->policy >= SIM_POLICY_COUNT)
        return wlm_error_setf(err, WLM_EINVAL, "policy", "unknown policy");
    if (c->power < 0 || c->power >= SIM_POWER_COUNT)
        return wlm_error_setf(err, WLM_EINVAL, "power", "unknown power rule");
    if (c->power == SIM_POWER_WLM && (c->policy == SIM_POLICY_FCFS || c->policy == SIM_POLICY_EDF))
        return wlm_error_setf(err, WLM_EINVAL, "power",
                              "the wlm power rule is the placement core's: it needs policy apc "
                              "or apc-noknobs");
    if (c->web.peak_mhz > 0 &&
        (!(c->web.tau_s > c->web.d0_s) || !(c->web.c_mcycles > 0) || c->web.min_mhz < 0))
        return wlm_error_setf(err, WLM_EINVAL, "web", "need tau > d0 >= 0 and c > 0");
    return 0;
}

static int handle(struct sim *s, const struct sim_event *ev)
{
    struct job *j =
        ev->kind <= SIM_EV_ACTION_DONE || ev->kind == SIM_EV_ARRIVAL ? &s->jobs[ev->a] : NULL;
    switch (ev->kind) {
    case SIM_EV_ARRIVAL: j->state = JS_QUEUED; return 0;
    case SIM_EV_JOB_DONE:
        if (ev->gen != j->gen || j->state != JS_RUN)
            return 1; /* stale */
        j->done_w = j->work;
        j->state = JS_DONE;
        j->gen++;
        s->res->finish[ev->a] = s->now;
        s->res->done++;
        if (s->now > j->deadline + 1e-6)
            s->res->missed++;
        s->remaining--;
        return 0;
    case SIM_EV_ACTION_DONE:
        if (ev->gen != j->gen)
            return 1;
        if (j->state == JS_SUSPENDING) {
            j->alloc = 0;
            j->last_node = j->node;
            j->node = -1;
            j->state = JS_SUSPENDED;
        } else {
            j->state = JS_RUN;
            j->sched_alloc = -1;
        }
        return 0;
    case SIM_EV_END:
        for (size_t k = 0; k < s->nn; k++)
            s->res->energy_horizon_kwh += s->nodes[k].energy_j / 3.6e6;
        return 0;
    case SIM_EV_NODE_READY: s->nodes[ev->a].booting = 0; return 0;
    case SIM_EV_CYCLE: {
        int rc = power_control(s);
        if (rc)
            return rc;
        if (s->remaining > 0 || (s->cfg->horizon_s > 0 && s->now < s->cfg->horizon_s))
            rc = push(s, s->now + s->cfg->cycle_s, SIM_EV_CYCLE, 0, 0);
        return rc;
    }
    default: return 0;
    }
}

int sim_run(const struct sim_config *cfg, const struct sim_job_spec *jobs, size_t n,
            struct sim_result *res, struct wlm_error *err)
{
    memset(res, 0, sizeof(*res));
    int rc = check_config(cfg, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const struct sim_job_spec *j = &jobs[i];
        if (j->threads < 1 || j->threads > cfg->cores)
            return wlm_error_setf(err, WLM_EINVAL, "threads",
                                  "job %zu: threads must be 1..cores per node", i);
        if (!(j->runtime_s > 0) || !(j->goal_factor > 0) || j->arrival < 0 || j->mem_mb < 0 ||
            j->mem_mb > cfg->mem_mb)
            return wlm_error_setf(err, WLM_EINVAL, "runtime_s",
                                  "job %zu: need runtime > 0, goal factor > 0, arrival >= 0, "
                                  "0 <= mem <= node memory",
                                  i);
    }
    struct sim s = {.cfg = cfg, .nn = cfg->nodes, .nj = n, .res = res, .remaining = n, .err = err};
    size_t big = n + 3 * cfg->nodes + 1;
    s.nodes = calloc(s.nn, sizeof(*s.nodes));
    s.draining = calloc(s.nn, sizeof(int));
    s.jobs = calloc(n + 1, sizeof(*s.jobs));
    s.q = sim_evq_new();
    s.aj = calloc(n + 1, sizeof(*s.aj));
    s.an = calloc(s.nn, sizeof(*s.an));
    s.jmap = calloc(n + 1, sizeof(int));
    s.nmap = calloc(s.nn, sizeof(int));
    s.dnode = calloc(big, sizeof(int));
    s.dalloc = calloc(big + s.nn, sizeof(double));
    res->finish = calloc(n + 1, sizeof(double));
    res->jobs = n;
    rc = -ENOMEM;
    if (!s.nodes || !s.draining || !s.jobs || !s.q || !s.aj || !s.an || !s.jmap || !s.nmap ||
        !s.dnode || !s.dalloc || !res->finish) {
        wlm_error_set(err, ENOMEM, "out of memory");
        goto out;
    }
    s.web_on = cfg->web.peak_mhz > 0;
    s.periodic = cfg->policy == SIM_POLICY_APC || cfg->policy == SIM_POLICY_APC_NOKNOBS ||
                 cfg->power != SIM_POWER_ALWAYS_ON || s.web_on;
    for (size_t k = 0; k < s.nn; k++) {
        struct sim_node *nd = &s.nodes[k];
        nd->cores = cfg->cores;
        nd->mhz = cfg->mhz;
        nd->mem_mb = cfg->mem_mb;
        nd->idle_w = cfg->idle_w;
        nd->max_w = cfg->max_w;
        nd->off_w = cfg->off_w;
        nd->on = 1;
    }
    for (size_t i = 0; i < n; i++) {
        struct job *j = &s.jobs[i];
        j->s = jobs[i];
        j->cap = jobs[i].threads * cfg->mhz;
        j->work = jobs[i].runtime_s * j->cap;
        j->span = jobs[i].goal_factor * jobs[i].runtime_s;
        j->deadline = jobs[i].arrival + j->span;
        j->node = j->last_node = -1;
        j->sched_alloc = -1;
        j->moved_at = -INFINITY;
        res->finish[i] = -1;
        if ((rc = push(&s, jobs[i].arrival, SIM_EV_ARRIVAL, (int)i, 0)))
            goto nomem;
    }
    if (s.periodic && (rc = push(&s, 0, SIM_EV_CYCLE, 0, 0)))
        goto nomem;
    if (cfg->horizon_s > 0 && (rc = push(&s, cfg->horizon_s, SIM_EV_END, 0, 0)))
        goto nomem;
    /* Safety limit: a policy may starve a job forever (it keeps deciding
     * every cycle); stop well after any sane completion and report the
     * jobs that never finished. */
    double t_limit = cfg->horizon_s, last_arrival = 0;
    for (size_t i = 0; i < n; i++)
        last_arrival = fmax(last_arrival, jobs[i].arrival);
    for (size_t i = 0; i < n; i++)
        t_limit = fmax(t_limit, jobs[i].arrival + 20 * jobs[i].goal_factor * jobs[i].runtime_s);
    t_limit += 2 * 86400;
    recompute_usage(&s);
    struct sim_event ev;
    unsigned long same_instant = 0;
    while (sim_evq_pop(s.q, &ev) == 0) {
        if (s.remaining == 0 && (cfg->horizon_s <= 0 || ev.t > cfg->horizon_s))
            break;
        if (ev.t > t_limit)
            break;
        /* a policy that keeps acting at one instant (zero-length actions
         * undoing each other) would never let time advance */
        if (ev.t == res->end_t && ++same_instant > 1000000) {
            rc = wlm_error_set(err, WLM_EINTERNAL, "policy livelock at t=%.3f s", ev.t);
            goto out;
        } else if (ev.t != res->end_t) {
            same_instant = 0;
        }
        advance(&s, ev.t);
        res->end_t = s.now;
        rc = handle(&s, &ev);
        if (rc == 1)
            continue; /* stale event: nothing changed */
        if (rc < 0)
            goto nomem;
        power_off_empty(&s);
        if ((rc = decide(&s)) < 0)
            goto nomem;
        power_off_empty(&s);
        recompute_usage(&s);
        if ((rc = reschedule(&s)) < 0)
            goto nomem;
        /* Stalled: every job has arrived, nothing runs or moves, yet jobs
         * wait on a cluster that is idle. Job utility only falls with time,
         * so a policy that starts none of them now never will. */
        if (s.remaining > 0 && ev.t >= last_arrival && ev.kind == SIM_EV_CYCLE) {
            int busy = 0;
            for (size_t i = 0; i < n && !busy; i++)
                busy = on_node(&s.jobs[i]) || s.jobs[i].state == JS_PENDING;
            for (size_t k = 0; k < s.nn && !busy; k++)
                busy = s.nodes[k].booting;
            if (!busy && (cfg->horizon_s <= 0 || ev.t >= cfg->horizon_s))
                break;
        }
    }
    for (size_t k = 0; k < s.nn; k++)
        res->energy_kwh += s.nodes[k].energy_j / 3.6e6;
    res->unfinished = res->jobs - res->done;
    rc = 0;
    goto out;
nomem:
    if (!err || !err->code)
        wlm_error_set(err, rc == -ENOMEM ? ENOMEM : WLM_EINTERNAL, "simulation failed: %s",
                      rc == -ENOMEM ? "out of memory" : "decision core error");
out:
    free(s.nodes);
    free(s.draining);
    free(s.jobs);
    sim_evq_free(s.q);
    free(s.aj);
    free(s.an);
    free(s.jmap);
    free(s.nmap);
    free(s.dnode);
    free(s.dalloc);
    if (rc)
        sim_result_fini(res);
    return rc;
}
