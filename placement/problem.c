/*
 * problem.c - utility functions, options, validation and the working context.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

double placement_utility_eval(const struct placement_utility *u, double x)
{
    if (u->npoints == 0)
        return 0;
    if (x <= u->cpu_mhz[0])
        return u->util[0];
    for (size_t i = 1; i < u->npoints; i++) {
        if (x <= u->cpu_mhz[i]) {
            double dx = u->cpu_mhz[i] - u->cpu_mhz[i - 1];
            if (dx <= 0)
                return u->util[i];
            return u->util[i - 1] + (u->util[i] - u->util[i - 1]) * (x - u->cpu_mhz[i - 1]) / dx;
        }
    }
    return u->util[u->npoints - 1];
}

double placement_utility_inverse(const struct placement_utility *u, double level)
{
    if (u->npoints == 0)
        return level <= 0 ? 0 : INFINITY;
    if (level <= u->util[0])
        return 0;
    for (size_t i = 1; i < u->npoints; i++) {
        if (level <= u->util[i] + PL_EPS) {
            double dy = u->util[i] - u->util[i - 1];
            if (dy <= 0)
                return u->cpu_mhz[i - 1];
            double f = (level - u->util[i - 1]) / dy;
            if (f > 1)
                f = 1;
            return u->cpu_mhz[i - 1] + f * (u->cpu_mhz[i] - u->cpu_mhz[i - 1]);
        }
    }
    return INFINITY;
}

int placement_utility_check(const struct placement_utility *u, const char *what,
                            struct wlm_error *err)
{
    if (u->npoints < 1 || u->npoints > PLACEMENT_UTILITY_MAX_POINTS)
        return wlm_error_setf(err, WLM_EINVAL, what, "%s: needs 1..%d points", what,
                              PLACEMENT_UTILITY_MAX_POINTS);
    /* Below the first breakpoint the utility is flat, so a first breakpoint
     * above 0 MHz followed by a rise would not be concave. */
    double prev_slope = u->cpu_mhz[0] > 0 ? 0 : INFINITY;
    for (size_t i = 0; i < u->npoints; i++) {
        if (!isfinite(u->cpu_mhz[i]) || !isfinite(u->util[i]) || u->cpu_mhz[i] < 0)
            return wlm_error_setf(err, WLM_EINVAL, what, "%s[%zu]: cpu_mhz must be >= 0 and finite",
                                  what, i);
        if (i == 0)
            continue;
        double dx = u->cpu_mhz[i] - u->cpu_mhz[i - 1];
        double dy = u->util[i] - u->util[i - 1];
        if (dx <= 0)
            return wlm_error_setf(err, WLM_EINVAL, what, "%s[%zu]: cpu_mhz must increase", what, i);
        if (dy < -PL_EPS)
            return wlm_error_setf(err, WLM_EINVAL, what,
                                  "%s[%zu]: utility must not decrease with more CPU", what, i);
        double s = dy / dx;
        if (s > prev_slope * (1 + 1e-9) + 1e-12)
            return wlm_error_setf(err, WLM_EINVAL, what,
                                  "%s[%zu]: utility must be concave (slopes must not increase)",
                                  what, i);
        prev_slope = s;
    }
    return 0;
}

void placement_utility_make_concave(struct placement_utility *u)
{
    if (u->npoints == 0)
        return;
    double x[PLACEMENT_UTILITY_MAX_POINTS + 1], y[PLACEMENT_UTILITY_MAX_POINTS + 1];
    size_t n = 0;
    if (u->cpu_mhz[0] > 0) {
        x[n] = 0;
        y[n++] = u->util[0];
    }
    for (size_t i = 0; i < u->npoints; i++) {
        if (n && u->cpu_mhz[i] <= x[n - 1])
            continue;
        x[n] = u->cpu_mhz[i];
        y[n] = n && u->util[i] < y[n - 1] ? y[n - 1] : u->util[i];
        n++;
    }
    /* Upper hull, left to right: drop a point while it lies on or below the
     * chord from its predecessor to the new point. */
    size_t h = 0;
    double hx[PLACEMENT_UTILITY_MAX_POINTS + 1], hy[PLACEMENT_UTILITY_MAX_POINTS + 1];
    for (size_t i = 0; i < n; i++) {
        while (h >= 2) {
            double cross = (hx[h - 1] - hx[h - 2]) * (y[i] - hy[h - 2]) -
                           (hy[h - 1] - hy[h - 2]) * (x[i] - hx[h - 2]);
            if (cross < 0)
                break;
            h--;
        }
        hx[h] = x[i];
        hy[h] = y[i];
        h++;
    }
    if (h > PLACEMENT_UTILITY_MAX_POINTS) { /* only when a 0-MHz point was added */
        memmove(hx + 1, hx + 2, (h - 2) * sizeof(double));
        memmove(hy + 1, hy + 2, (h - 2) * sizeof(double));
        h--;
    }
    u->npoints = h;
    for (size_t i = 0; i < h; i++) {
        u->cpu_mhz[i] = hx[i];
        u->util[i] = hy[i];
    }
}

static const char *const action_names[PLACEMENT_ACT__COUNT] = {
    [PLACEMENT_ACT_POWER_ON] = "power_on",       [PLACEMENT_ACT_START_INSTANCE] = "start_instance",
    [PLACEMENT_ACT_STOP_INSTANCE] = "stop_instance", [PLACEMENT_ACT_START_JOB] = "start_job",
    [PLACEMENT_ACT_PAUSE_JOB] = "pause_job",     [PLACEMENT_ACT_RESUME_JOB] = "resume_job",
    [PLACEMENT_ACT_SUSPEND_JOB] = "suspend_job", [PLACEMENT_ACT_RESTORE_JOB] = "restore_job",
    [PLACEMENT_ACT_MIGRATE_JOB] = "migrate_job", [PLACEMENT_ACT_RESIZE] = "resize",
    [PLACEMENT_ACT_POWER_OFF] = "power_off",
};

const char *placement_action_name(enum placement_action_kind k)
{
    return (unsigned)k < PLACEMENT_ACT__COUNT ? action_names[k] : "unknown";
}

const char *placement_solver_name(enum placement_solver s)
{
    switch (s) {
    case PLACEMENT_SOLVER_AUTO: return "auto";
    case PLACEMENT_SOLVER_EXACT: return "exact";
    case PLACEMENT_SOLVER_HEURISTIC: return "heuristic";
    }
    return "unknown";
}

void placement_options_default(struct placement_options *o)
{
    memset(o, 0, sizeof(*o));
    o->solver = PLACEMENT_SOLVER_AUTO;
    o->exact_max_pairs = 2000;
    o->time_limit_s = 2.0;
    o->mip_gap = 1e-4;
    o->hysteresis = 0.02;
    o->goal_utility = 0.0;
    o->headroom = 0.10;
    o->power_off_margin = 0.05;
    o->power_saving = 1;
    o->balance_band = 0.10;
    o->max_balance_moves = 64;
    /* Durations follow the design description's measurements loosely: VM
     * operations take seconds, a checkpoint copy tens of seconds; the utility
     * cost is what a change must buy in minimum utility. Starting work that
     * is waiting costs nothing: it is the point of placing it. */
    o->cost[PLACEMENT_ACT_POWER_ON] = (struct placement_action_cost){120, 0, 0};
    o->cost[PLACEMENT_ACT_POWER_OFF] = (struct placement_action_cost){30, 0, 0};
    o->cost[PLACEMENT_ACT_START_INSTANCE] = (struct placement_action_cost){10, 200, 0};
    o->cost[PLACEMENT_ACT_STOP_INSTANCE] = (struct placement_action_cost){5, 0, 0.002};
    o->cost[PLACEMENT_ACT_START_JOB] = (struct placement_action_cost){5, 200, 0};
    o->cost[PLACEMENT_ACT_PAUSE_JOB] = (struct placement_action_cost){1, 0, 0.002};
    o->cost[PLACEMENT_ACT_RESUME_JOB] = (struct placement_action_cost){1, 0, 0};
    o->cost[PLACEMENT_ACT_SUSPEND_JOB] = (struct placement_action_cost){20, 500, 0.01};
    o->cost[PLACEMENT_ACT_RESTORE_JOB] = (struct placement_action_cost){20, 500, 0.005};
    o->cost[PLACEMENT_ACT_MIGRATE_JOB] = (struct placement_action_cost){30, 500, 0.005};
    o->cost[PLACEMENT_ACT_RESIZE] = (struct placement_action_cost){0.1, 0, 0};
}

void placement_problem_free(struct placement_problem *p)
{
    if (!p)
        return;
    free(p->nodes);
    free(p->workloads);
    free(p->current);
    free(p);
}

/* Label sets are short comma-separated lists: a linear scan is the cheapest
 * correct thing. Every token of `req` must appear as a whole token in `have`. */
static int labels_match(const char *have, const char *req)
{
    const char *r = req;
    while (*r) {
        while (*r == ',' || *r == ' ')
            r++;
        if (!*r)
            break;
        size_t rl = strcspn(r, ", ");
        int found = 0;
        const char *h = have;
        while (*h && !found) {
            while (*h == ',' || *h == ' ')
                h++;
            size_t hl = strcspn(h, ", ");
            if (hl == rl && hl > 0 && strncmp(h, r, rl) == 0)
                found = 1;
            h += hl;
        }
        if (!found)
            return 0;
        r += rl;
    }
    return 1;
}

int pl_eligible(const struct pl_ctx *c, size_t a, size_t n)
{
    const struct placement_workload *w = &c->p->workloads[a];
    if (w->memory_mb > c->mem[n] + PL_EPS)
        return 0;
    if (c->hasreq[a] && !labels_match(c->p->nodes[n].labels, w->requires))
        return 0;
    return 1;
}

static int cmp_assign(const void *x, const void *y)
{
    const struct placement_assign *a = x, *b = y;
    if (a->workload != b->workload)
        return a->workload < b->workload ? -1 : 1;
    if (a->node != b->node)
        return a->node < b->node ? -1 : 1;
    return 0;
}

/* Sorting a copy keeps this O(n log n) for snapshots of 30,000 instances. */
static int check_duplicates(const struct placement_problem *p, struct wlm_error *err)
{
    if (p->ncurrent < 2)
        return 0;
    struct placement_assign *s = malloc(p->ncurrent * sizeof(*s));
    if (!s)
        return wlm_error_set(err, ENOMEM, "out of memory");
    memcpy(s, p->current, p->ncurrent * sizeof(*s));
    qsort(s, p->ncurrent, sizeof(*s), cmp_assign);
    int rc = 0;
    for (size_t i = 1; i < p->ncurrent && !rc; i++) {
        if (s[i].workload != s[i - 1].workload)
            continue;
        const struct placement_workload *w = &p->workloads[s[i].workload];
        if (s[i].node == s[i - 1].node)
            rc = wlm_error_setf(err, WLM_EINVAL, "placement",
                                "placement: '%s' has two instances on node '%s'", w->name,
                                p->nodes[s[i].node].name);
        else if (w->kind == PLACEMENT_JOB)
            rc = wlm_error_setf(err, WLM_EINVAL, "placement",
                                "placement: job '%s' is placed on two nodes", w->name);
    }
    free(s);
    return rc;
}

int placement_problem_check(const struct placement_problem *p, struct wlm_error *err)
{
    char f[96];
    if (!p)
        return wlm_error_set(err, WLM_EINVAL, "no problem");
    if (p->nnodes && !p->nodes)
        return wlm_error_setf(err, WLM_EINVAL, "nodes", "nodes: missing");
    for (size_t i = 0; i < p->nnodes; i++) {
        const struct placement_node *n = &p->nodes[i];
#define NODE_FAIL(field, msg)                                                                      \
    do {                                                                                           \
        snprintf(f, sizeof(f), "nodes[%zu].%s", i, field);                                         \
        return wlm_error_setf(err, WLM_EINVAL, f, "%s: %s", f, msg);                               \
    } while (0)
        if (n->cores <= 0)
            NODE_FAIL("cores", "must be > 0");
        if (!(n->mhz_per_core > 0) || !isfinite(n->mhz_per_core))
            NODE_FAIL("mhz_per_core", "must be > 0");
        if (!(n->memory_mb > 0) || !isfinite(n->memory_mb))
            NODE_FAIL("memory_mb", "must be > 0");
        if (n->power_idle_w < 0 || n->power_max_w < 0 || n->power_budget_w < 0)
            NODE_FAIL("power", "power figures must be >= 0");
        if (n->power_max_w > 0 && n->power_max_w < n->power_idle_w)
            NODE_FAIL("power_max_w", "must be >= power_idle_w");
#undef NODE_FAIL
    }
    for (size_t i = 0; i < p->nworkloads; i++) {
        const struct placement_workload *w = &p->workloads[i];
        const char *kind = w->kind == PLACEMENT_APP ? "apps" : "jobs";
#define WL_FAIL(field, ...)                                                                        \
    do {                                                                                           \
        snprintf(f, sizeof(f), "%s[%s].%s", kind, w->name, field);                                 \
        char m_[256];                                                                              \
        snprintf(m_, sizeof(m_), __VA_ARGS__);                                                     \
        return wlm_error_setf(err, WLM_EINVAL, f, "%s: %s", f, m_);                                \
    } while (0)
        if (!(w->memory_mb > 0) || !isfinite(w->memory_mb))
            WL_FAIL("memory_mb", "must be > 0");
        if (!(w->max_cpu_per_instance > 0) || !isfinite(w->max_cpu_per_instance))
            WL_FAIL("max_cpu_mhz", "must be > 0");
        if (w->kind == PLACEMENT_APP) {
            if (w->min_instances < 0 || w->max_instances < 1 || w->min_instances > w->max_instances)
                WL_FAIL("max_instances", "need 0 <= min_instances <= max_instances, max >= 1");
        } else if (w->kind == PLACEMENT_JOB) {
            int on_node = w->state == PLACEMENT_JOB_RUNNING || w->state == PLACEMENT_JOB_PAUSED;
            if (on_node && (w->cur_node < 0 || (size_t)w->cur_node >= p->nnodes))
                WL_FAIL("node", "a running or paused job needs a valid node");
            if (!on_node && w->cur_node >= 0)
                WL_FAIL("node", "only running or paused jobs are on a node");
        } else {
            WL_FAIL("kind", "unknown workload kind");
        }
        char what[96];
        snprintf(what, sizeof(what), "%s[%s].utility", kind, w->name);
        int rc = placement_utility_check(&w->utility, what, err);
        if (rc)
            return rc;
#undef WL_FAIL
    }
    for (size_t i = 0; i < p->ncurrent; i++) {
        const struct placement_assign *a = &p->current[i];
        snprintf(f, sizeof(f), "placement[%zu]", i);
        if (a->workload >= p->nworkloads)
            return wlm_error_setf(err, WLM_EINVAL, f, "%s.workload: unknown workload", f);
        if (a->node >= p->nnodes)
            return wlm_error_setf(err, WLM_EINVAL, f, "%s.node: unknown node", f);
        if (!(a->cpu_mhz >= 0))
            return wlm_error_setf(err, WLM_EINVAL, f, "%s.cpu_mhz: must be >= 0", f);
        if (!p->nodes[a->node].powered_on)
            return wlm_error_setf(err, WLM_EINVAL, f, "%s.node: node '%s' is powered off", f,
                                  p->nodes[a->node].name);
        const struct placement_workload *w = &p->workloads[a->workload];
        if (w->kind == PLACEMENT_JOB) {
            if (w->state != PLACEMENT_JOB_RUNNING && w->state != PLACEMENT_JOB_PAUSED)
                return wlm_error_setf(err, WLM_EINVAL, f,
                                      "%s: job '%s' is placed but neither running nor paused", f,
                                      w->name);
            if ((size_t)w->cur_node != a->node)
                return wlm_error_setf(err, WLM_EINVAL, f, "%s: job '%s' placed on another node than its node", f,
                                      w->name);
        }
    }
    /* A running or paused job must appear in the placement exactly where it says. */
    unsigned char *has = calloc(p->nworkloads ? p->nworkloads : 1, 1);
    if (!has)
        return wlm_error_set(err, ENOMEM, "out of memory");
    for (size_t j = 0; j < p->ncurrent; j++)
        has[p->current[j].workload] = 1;
    for (size_t i = 0; i < p->nworkloads; i++) {
        const struct placement_workload *w = &p->workloads[i];
        if (w->kind == PLACEMENT_JOB && w->cur_node >= 0 && !has[i]) {
            free(has);
            return wlm_error_setf(err, WLM_EINVAL, "placement",
                                  "jobs[%s]: running or paused but missing from the placement",
                                  w->name);
        }
    }
    free(has);
    return check_duplicates(p, err);
    return 0;
}

int pl_ctx_init(struct pl_ctx *c, const struct placement_problem *p)
{
    memset(c, 0, sizeof(*c));
    c->p = p;
    c->o = &p->opts;
    c->N = p->nnodes;
    c->W = p->nworkloads;
    size_t N = c->N ? c->N : 1, W = c->W ? c->W : 1;
    c->cap = calloc(N, sizeof(double));
    c->mem = calloc(N, sizeof(double));
    c->capi = calloc(W, sizeof(double));
    c->maxinst = calloc(W, sizeof(int));
    c->mininst = calloc(W, sizeof(int));
    c->placeable = calloc(W, sizeof(int));
    c->hasreq = calloc(W, sizeof(int));
    c->umax = calloc(W, sizeof(double));
    c->u0 = calloc(W, sizeof(double));
    c->whole = calloc(W, 1);
    c->onnode = calloc(W, 1);
    c->busy = calloc(W, 1);
    c->busycpu = calloc(W, sizeof(double));
    if (!c->busy || !c->busycpu ||
        !c->cap || !c->mem || !c->capi || !c->maxinst || !c->mininst || !c->placeable ||
        !c->hasreq || !c->umax || !c->u0 || !c->whole || !c->onnode) {
        pl_ctx_fini(c);
        return -ENOMEM;
    }
    double maxcap = 0;
    for (size_t n = 0; n < c->N; n++) {
        const struct placement_node *nd = &p->nodes[n];
        double cap = nd->cores * nd->mhz_per_core;
        /* A power budget caps CPU through the linear power model. */
        if (nd->power_budget_w > 0 && nd->power_max_w > nd->power_idle_w) {
            double f = (nd->power_budget_w - nd->power_idle_w) / (nd->power_max_w - nd->power_idle_w);
            if (f < 0)
                f = 0;
            if (f < 1)
                cap *= f;
        }
        c->cap[n] = cap;
        c->mem[n] = nd->memory_mb;
        if (cap > maxcap)
            maxcap = cap;
    }
    for (size_t a = 0; a < c->W; a++) {
        const struct placement_workload *w = &p->workloads[a];
        c->hasreq[a] = strspn(w->requires, ", ") != strlen(w->requires);
        if (w->kind == PLACEMENT_JOB) {
            c->maxinst[a] = 1;
            c->mininst[a] = 0;
        } else {
            c->maxinst[a] = w->max_instances;
            c->mininst[a] = w->min_instances;
        }
        double best = 0;
        int count = 0;
        for (size_t n = 0; n < c->N; n++) {
            if (!pl_eligible(c, a, n))
                continue;
            count++;
            if (c->cap[n] > best)
                best = c->cap[n];
            /* Unconstrained workloads see every node alike past the first few:
             * stop scanning once we know enough (keeps this O(W) for 10k nodes). */
            if (!c->hasreq[a] && count >= c->maxinst[a] && best >= maxcap)
                break;
        }
        c->placeable[a] = count > 0;
        if (count < c->maxinst[a])
            c->maxinst[a] = count;
        if (c->mininst[a] > c->maxinst[a])
            c->mininst[a] = c->maxinst[a];
        c->capi[a] = w->max_cpu_per_instance < best ? w->max_cpu_per_instance : best;
        c->umax[a] = placement_utility_eval(&w->utility, c->capi[a] * c->maxinst[a]);
        c->u0[a] = placement_utility_eval(&w->utility, 0);
        c->whole[a] = w->kind == PLACEMENT_JOB && w->whole;
        c->onnode[a] = w->kind == PLACEMENT_JOB && w->cur_node >= 0 &&
                       (w->state == PLACEMENT_JOB_RUNNING || w->state == PLACEMENT_JOB_PAUSED);
        c->busy[a] = c->onnode[a] && w->busy;
        /* A job that runs today and is made to wait also loses the time its
         * suspend and restore take. */
        if (c->onnode[a] && w->stall_cost > 0)
            c->u0[a] -= w->stall_cost * (p->opts.cost[PLACEMENT_ACT_SUSPEND_JOB].duration_s +
                                         p->opts.cost[PLACEMENT_ACT_RESTORE_JOB].duration_s);
    }
    for (size_t i = 0; i < p->ncurrent; i++)
        if (p->current[i].workload < c->W && c->busy[p->current[i].workload])
            c->busycpu[p->current[i].workload] += p->current[i].cpu_mhz;
    return 0;
}

void pl_ctx_fini(struct pl_ctx *c)
{
    free(c->cap);
    free(c->mem);
    free(c->capi);
    free(c->maxinst);
    free(c->mininst);
    free(c->placeable);
    free(c->hasreq);
    free(c->umax);
    free(c->u0);
    free(c->whole);
    free(c->onnode);
    free(c->busy);
    free(c->busycpu);
    memset(c, 0, sizeof(*c));
}

int pl_sol_push(struct pl_sol *s, size_t w, size_t n, double cpu)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        struct placement_assign *na = realloc(s->a, nc * sizeof(*na));
        if (!na)
            return -ENOMEM;
        s->a = na;
        s->cap = nc;
    }
    s->a[s->n++] = (struct placement_assign){w, n, cpu};
    return 0;
}

void pl_sol_fini(struct pl_sol *s)
{
    free(s->a);
    memset(s, 0, sizeof(*s));
}

int pl_sol_copy(struct pl_sol *dst, const struct pl_sol *src)
{
    pl_sol_fini(dst);
    if (!src->n)
        return 0;
    dst->a = malloc(src->n * sizeof(*dst->a));
    if (!dst->a)
        return -ENOMEM;
    memcpy(dst->a, src->a, src->n * sizeof(*dst->a));
    dst->n = dst->cap = src->n;
    return 0;
}

void pl_sol_eval(const struct pl_ctx *c, const struct pl_sol *s, double *cpu, double *util,
                 double *min_placeable, double *min_all)
{
    for (size_t a = 0; a < c->W; a++)
        cpu[a] = 0;
    for (size_t i = 0; i < s->n; i++)
        cpu[s->a[i].workload] += s->a[i].cpu_mhz;
    double mp = INFINITY, ma = INFINITY;
    for (size_t a = 0; a < c->W; a++) {
        util[a] = placement_utility_eval(&c->p->workloads[a].utility, cpu[a]);
        if (util[a] < ma)
            ma = util[a];
        if (c->placeable[a] && util[a] < mp)
            mp = util[a];
    }
    if (min_placeable)
        *min_placeable = isfinite(mp) ? mp : 0;
    if (min_all)
        *min_all = isfinite(ma) ? ma : 0;
}

int pl_current(const struct pl_ctx *c, struct pl_sol *s)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < c->p->ncurrent; i++) {
        const struct placement_assign *a = &c->p->current[i];
        const struct placement_workload *w = &c->p->workloads[a->workload];
        double cpu = a->cpu_mhz;
        if (w->kind == PLACEMENT_JOB && w->state == PLACEMENT_JOB_PAUSED)
            cpu = 0;
        if (pl_sol_push(s, a->workload, a->node, cpu))
            return -ENOMEM;
    }
    return 0;
}
