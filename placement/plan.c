/*
 * plan.c - turn (current placement, target placement) into ordered actions.
 *
 * Memory is the hard constraint: an instance cannot start, restore or migrate
 * into a node before that node has the memory free. The planner simulates
 * free memory per node while it emits actions:
 *   1. power on the nodes the target needs;
 *   2. lower CPU allocations (frees CPU for what arrives next);
 *   3. arrivals (start, restore, migrate in), smallest memory first, each as
 *      soon as its destination has room. When nothing fits, it applies the
 *      pending departures (stop, suspend) on the blocked destinations; when
 *      only a cycle of migrations remains, one of them goes through shared
 *      storage (suspend, then restore). Moving the small VM first is exactly
 *      the "juggling" that frees space for a large one;
 *   4. the remaining departures (late, so an application keeps serving until
 *      its new instance is up), raised CPU allocations and resumes;
 *   5. power off the nodes that were emptied.
 * Every action lists the earlier actions it depends on: the power-on of its
 * node, departures that freed memory on its destination, the suspend that a
 * restore continues. Executors may run independent actions in parallel.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct vec {
    size_t *v;
    size_t n, cap;
};

static int vec_push(struct vec *x, size_t i)
{
    if (x->n == x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 4;
        size_t *nv = realloc(x->v, nc * sizeof(size_t));
        if (!nv)
            return -ENOMEM;
        x->v = nv;
        x->cap = nc;
    }
    x->v[x->n++] = i;
    return 0;
}

enum { IT_ARRIVE, IT_DEPART };

struct item {
    int type;
    enum placement_action_kind kind;
    size_t w;
    int node, from;
    double cpu, mem;
    size_t after; /* item that must be applied first (restore after suspend) */
    size_t action; /* emitted action index */
    int done;
};

struct planner {
    const struct pl_ctx *c;
    struct placement_decision *d;
    size_t acap;
    double *fm;
    struct vec *frees;   /* per node: departures/migrations-out that freed memory */
    struct vec *cpudown; /* per node: CPU reductions */
    size_t *power_on;    /* per node: action index or PL_NONE */
    struct item *it;
    size_t nit, itcap;
};

static int emit(struct planner *pl, enum placement_action_kind kind, size_t w, int node, int from,
                double cpu, double mem, size_t *idx)
{
    struct placement_decision *d = pl->d;
    if (d->nactions == pl->acap) {
        size_t nc = pl->acap ? pl->acap * 2 : 64;
        struct placement_action *na = realloc(d->actions, nc * sizeof(*na));
        if (!na)
            return -ENOMEM;
        d->actions = na;
        pl->acap = nc;
    }
    struct placement_action *a = &d->actions[d->nactions];
    memset(a, 0, sizeof(*a));
    a->kind = kind;
    a->workload = w;
    a->node = node;
    a->from_node = from;
    a->cpu_mhz = cpu;
    a->memory_mb = mem;
    a->duration_s = pl->c->o->cost[kind].duration_s;
    *idx = d->nactions++;
    return 0;
}

static int dep(struct planner *pl, size_t i, size_t j)
{
    struct placement_action *a = &pl->d->actions[i];
    if (j == PL_NONE || j >= i)
        return 0;
    for (size_t k = 0; k < a->ndeps; k++)
        if (a->deps[k] == j)
            return 0;
    size_t *nd = realloc(a->deps, (a->ndeps + 1) * sizeof(size_t));
    if (!nd)
        return -ENOMEM;
    nd[a->ndeps++] = j;
    a->deps = nd;
    return 0;
}

static int deps_vec(struct planner *pl, size_t i, const struct vec *v)
{
    for (size_t k = 0; k < v->n; k++)
        if (dep(pl, i, v->v[k]))
            return -ENOMEM;
    return 0;
}

static int add_item(struct planner *pl, struct item x)
{
    if (pl->nit == pl->itcap) {
        size_t nc = pl->itcap ? pl->itcap * 2 : 64;
        struct item *ni = realloc(pl->it, nc * sizeof(*ni));
        if (!ni)
            return -ENOMEM;
        pl->it = ni;
        pl->itcap = nc;
    }
    x.action = PL_NONE;
    x.done = 0;
    pl->it[pl->nit++] = x;
    return 0;
}

static int apply_depart(struct planner *pl, struct item *x)
{
    size_t i;
    if (emit(pl, x->kind, x->w, x->node, -1, 0, -x->mem, &i))
        return -ENOMEM;
    pl->fm[x->node] += x->mem;
    x->action = i;
    x->done = 1;
    return vec_push(&pl->frees[x->node], i);
}

static int apply_arrive(struct planner *pl, struct item *x)
{
    size_t i;
    if (emit(pl, x->kind, x->w, x->node, x->from, x->cpu, x->mem, &i))
        return -ENOMEM;
    pl->fm[x->node] -= x->mem;
    if (dep(pl, i, pl->power_on[x->node]) || deps_vec(pl, i, &pl->frees[x->node]) ||
        deps_vec(pl, i, &pl->cpudown[x->node]))
        return -ENOMEM;
    if (x->after != PL_NONE && dep(pl, i, pl->it[x->after].action))
        return -ENOMEM;
    if (x->from >= 0) {
        pl->fm[x->from] += x->mem;
        if (vec_push(&pl->frees[x->from], i))
            return -ENOMEM;
    }
    x->action = i;
    x->done = 1;
    return 0;
}

static int cmp_item(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    if (x->type != y->type)
        return x->type - y->type;
    if (x->mem != y->mem)
        return x->mem < y->mem ? -1 : 1;
    if (x->w != y->w)
        return x->w < y->w ? -1 : 1;
    return x->node - y->node;
}

int pl_plan(const struct pl_ctx *c, const struct pl_sol *tgt, const int *node_on,
            struct placement_decision *d)
{
    const struct placement_problem *p = c->p;
    struct planner pl;
    memset(&pl, 0, sizeof(pl));
    pl.c = c;
    pl.d = d;
    size_t N = c->N ? c->N : 1, W = c->W ? c->W : 1;
    int rc = -ENOMEM;
    pl.fm = malloc(N * sizeof(double));
    pl.frees = calloc(N, sizeof(struct vec));
    pl.cpudown = calloc(N, sizeof(struct vec));
    pl.power_on = malloc(N * sizeof(size_t));
    size_t *th = malloc(W * sizeof(size_t)), *tn = malloc((tgt->n ? tgt->n : 1) * sizeof(size_t));
    size_t *ch = malloc(W * sizeof(size_t)),
           *cn = malloc((p->ncurrent ? p->ncurrent : 1) * sizeof(size_t));
    struct vec ups = {0};
    if (!pl.fm || !pl.frees || !pl.cpudown || !pl.power_on || !th || !tn || !ch || !cn)
        goto out;
    for (size_t n = 0; n < c->N; n++) {
        pl.fm[n] = c->mem[n];
        pl.power_on[n] = PL_NONE;
    }
    for (size_t a = 0; a < c->W; a++)
        th[a] = ch[a] = PL_NONE;
    for (size_t i = 0; i < tgt->n; i++) {
        tn[i] = th[tgt->a[i].workload];
        th[tgt->a[i].workload] = i;
    }
    for (size_t i = 0; i < p->ncurrent; i++) {
        cn[i] = ch[p->current[i].workload];
        ch[p->current[i].workload] = i;
        pl.fm[p->current[i].node] -= p->workloads[p->current[i].workload].memory_mb;
    }

    /* 1. Power on. */
    for (size_t n = 0; n < c->N; n++) {
        if (node_on[n] && !p->nodes[n].powered_on) {
            if (emit(&pl, PLACEMENT_ACT_POWER_ON, PL_NONE, (int)n, -1, 0, 0, &pl.power_on[n]))
                goto out;
        }
    }

    /* Diff current against target, per workload. */
    for (size_t a = 0; a < c->W; a++) {
        const struct placement_workload *w = &p->workloads[a];
        double mem = w->memory_mb;
        if (w->kind == PLACEMENT_APP) {
            for (size_t i = ch[a]; i != PL_NONE; i = cn[i]) {
                size_t n = p->current[i].node, j;
                for (j = th[a]; j != PL_NONE && tgt->a[j].node != n; j = tn[j])
                    ;
                if (j == PL_NONE) {
                    if (add_item(&pl, (struct item){IT_DEPART, PLACEMENT_ACT_STOP_INSTANCE, a,
                                                     (int)n, -1, 0, mem, PL_NONE, 0, 0}))
                        goto out;
                } else if (tgt->a[j].cpu_mhz < p->current[i].cpu_mhz - 0.5) {
                    size_t k;
                    if (emit(&pl, PLACEMENT_ACT_RESIZE, a, (int)n, -1, tgt->a[j].cpu_mhz, 0, &k) ||
                        vec_push(&pl.cpudown[n], k))
                        goto out;
                } else if (tgt->a[j].cpu_mhz > p->current[i].cpu_mhz + 0.5) {
                    if (vec_push(&ups, j))
                        goto out;
                }
            }
            for (size_t j = th[a]; j != PL_NONE; j = tn[j]) {
                size_t n = tgt->a[j].node, i;
                for (i = ch[a]; i != PL_NONE && p->current[i].node != n; i = cn[i])
                    ;
                if (i == PL_NONE &&
                    add_item(&pl, (struct item){IT_ARRIVE, PLACEMENT_ACT_START_INSTANCE, a, (int)n,
                                                -1, tgt->a[j].cpu_mhz, mem, PL_NONE, 0, 0}))
                    goto out;
            }
            continue;
        }
        /* Jobs. */
        int cur = w->cur_node;
        size_t j = th[a];
        int to = j == PL_NONE ? -1 : (int)tgt->a[j].node;
        double cur_cpu = ch[a] == PL_NONE ? 0 : p->current[ch[a]].cpu_mhz;
        if (cur >= 0 && to == cur) {
            if (w->state == PLACEMENT_JOB_PAUSED) {
                if (vec_push(&ups, j))
                    goto out;
            } else if (tgt->a[j].cpu_mhz < cur_cpu - 0.5) {
                size_t k;
                if (emit(&pl, PLACEMENT_ACT_RESIZE, a, cur, -1, tgt->a[j].cpu_mhz, 0, &k) ||
                    vec_push(&pl.cpudown[cur], k))
                    goto out;
            } else if (tgt->a[j].cpu_mhz > cur_cpu + 0.5) {
                if (vec_push(&ups, j))
                    goto out;
            }
        } else if (cur >= 0 && to >= 0) {
            if (w->migratable && w->state == PLACEMENT_JOB_RUNNING) {
                if (add_item(&pl, (struct item){IT_ARRIVE, PLACEMENT_ACT_MIGRATE_JOB, a, to, cur,
                                                tgt->a[j].cpu_mhz, mem, PL_NONE, 0, 0}))
                    goto out;
            } else {
                if (add_item(&pl, (struct item){IT_DEPART, PLACEMENT_ACT_SUSPEND_JOB, a, cur, -1, 0,
                                                mem, PL_NONE, 0, 0}))
                    goto out;
                size_t s = pl.nit - 1;
                if (add_item(&pl, (struct item){IT_ARRIVE, PLACEMENT_ACT_RESTORE_JOB, a, to, -1,
                                                tgt->a[j].cpu_mhz, mem, PL_NONE, 0, 0}))
                    goto out;
                pl.it[pl.nit - 1].after = s; /* resolved to the action index when applied */
            }
        } else if (cur >= 0) {
            if (add_item(&pl, (struct item){IT_DEPART, PLACEMENT_ACT_SUSPEND_JOB, a, cur, -1, 0, mem,
                                            PL_NONE, 0, 0}))
                goto out;
        } else if (to >= 0) {
            enum placement_action_kind k = w->state == PLACEMENT_JOB_SUSPENDED
                                               ? PLACEMENT_ACT_RESTORE_JOB
                                               : PLACEMENT_ACT_START_JOB;
            if (add_item(&pl, (struct item){IT_ARRIVE, k, a, to, -1, tgt->a[j].cpu_mhz, mem, PL_NONE,
                                            0, 0}))
                goto out;
        }
    }

    /* Items are sorted (arrivals first, small memory first); `after` links
     * are item indices, so remap them through a permutation. */
    {
        size_t *perm = malloc((pl.nit ? pl.nit : 1) * sizeof(size_t));
        size_t *inv = malloc((pl.nit ? pl.nit : 1) * sizeof(size_t));
        if (!perm || !inv) {
            free(perm);
            free(inv);
            goto out;
        }
        for (size_t i = 0; i < pl.nit; i++)
            pl.it[i].action = i; /* temporarily: original index */
        if (pl.nit)
            qsort(pl.it, pl.nit, sizeof(*pl.it), cmp_item);
        for (size_t i = 0; i < pl.nit; i++)
            inv[pl.it[i].action] = i;
        for (size_t i = 0; i < pl.nit; i++) {
            if (pl.it[i].after != PL_NONE)
                pl.it[i].after = inv[pl.it[i].after];
            pl.it[i].action = PL_NONE;
        }
        free(perm);
        free(inv);
    }

    /* 3. Arrivals as memory allows. */
    for (;;) {
        int progress = 0, pending = 0;
        for (size_t i = 0; i < pl.nit; i++) {
            struct item *x = &pl.it[i];
            if (x->type != IT_ARRIVE || x->done)
                continue;
            pending = 1;
            if (x->after != PL_NONE && !pl.it[x->after].done)
                continue;
            if (pl.fm[x->node] >= x->mem - 1e-6) {
                if (apply_arrive(&pl, x))
                    goto out;
                progress = 1;
            }
        }
        if (!pending)
            break;
        if (progress)
            continue;
        /* Stuck: free memory where blocked arrivals want to go. */
        for (size_t i = 0; i < pl.nit; i++) {
            struct item *x = &pl.it[i];
            if (x->type != IT_ARRIVE || x->done)
                continue;
            for (size_t k = 0; k < pl.nit; k++) {
                struct item *y = &pl.it[k];
                if (y->type == IT_DEPART && !y->done &&
                    (y->node == x->node || k == x->after)) {
                    if (apply_depart(&pl, y))
                        goto out;
                    progress = 1;
                }
            }
        }
        if (progress)
            continue;
        /* Only a cycle of migrations is left: send the smallest through storage. */
        size_t mi = PL_NONE;
        for (size_t i = 0; i < pl.nit; i++) {
            const struct item *x = &pl.it[i];
            if (x->type == IT_ARRIVE && !x->done && x->kind == PLACEMENT_ACT_MIGRATE_JOB &&
                (mi == PL_NONE || x->mem < pl.it[mi].mem))
                mi = i;
        }
        if (mi == PL_NONE) {
            /* The target itself over-commits a node: a solver bug. */
            rc = -WLM_EINTERNAL;
            goto out;
        }
        size_t s, w = pl.it[mi].w;
        int from = pl.it[mi].from;
        double mem = pl.it[mi].mem;
        if (emit(&pl, PLACEMENT_ACT_SUSPEND_JOB, w, from, -1, 0, -mem, &s) ||
            vec_push(&pl.frees[from], s))
            goto out;
        pl.fm[from] += mem;
        pl.it[mi].kind = PLACEMENT_ACT_RESTORE_JOB;
        pl.it[mi].from = -1;
        /* A finished pseudo-item carries the suspend, so the restore can
         * depend on it like any other suspend-then-restore pair. */
        if (add_item(&pl, (struct item){IT_DEPART, PLACEMENT_ACT_SUSPEND_JOB, w, -1, -1, 0, 0,
                                        PL_NONE, 0, 0}))
            goto out;
        pl.it[pl.nit - 1].done = 1;
        pl.it[pl.nit - 1].action = s;
        pl.it[mi].after = pl.nit - 1;
    }

    /* 4. Remaining departures, CPU increases, resumes. An app instance that
     * is not in the way of anything stops only once the app's new instances
     * have started (make before break: a moved app keeps serving). */
    for (size_t i = 0; i < pl.nit; i++) {
        struct item *x = &pl.it[i];
        if (x->type != IT_DEPART || x->done)
            continue;
        if (apply_depart(&pl, x))
            goto out;
        if (x->kind != PLACEMENT_ACT_STOP_INSTANCE)
            continue;
        for (size_t k = 0; k < pl.nit; k++) {
            const struct item *y = &pl.it[k];
            if (y->kind == PLACEMENT_ACT_START_INSTANCE && y->w == x->w && y->done &&
                dep(&pl, x->action, y->action))
                goto out;
        }
    }
    for (size_t k = 0; k < ups.n; k++) {
        const struct placement_assign *x = &tgt->a[ups.v[k]];
        const struct placement_workload *w = &p->workloads[x->workload];
        enum placement_action_kind kind = (w->kind == PLACEMENT_JOB && w->state == PLACEMENT_JOB_PAUSED)
                                              ? PLACEMENT_ACT_RESUME_JOB
                                              : PLACEMENT_ACT_RESIZE;
        size_t i;
        if (emit(&pl, kind, x->workload, (int)x->node, -1, x->cpu_mhz, 0, &i) ||
            deps_vec(&pl, i, &pl.cpudown[x->node]) || deps_vec(&pl, i, &pl.frees[x->node]))
            goto out;
    }

    /* 5. Power off emptied nodes. */
    for (size_t n = 0; n < c->N; n++) {
        if (!node_on[n] && p->nodes[n].powered_on) {
            size_t i;
            if (emit(&pl, PLACEMENT_ACT_POWER_OFF, PL_NONE, (int)n, -1, 0, 0, &i) ||
                deps_vec(&pl, i, &pl.frees[n]))
                goto out;
        }
    }

    /* Critical path through the dependencies. */
    {
        double *fin = calloc(d->nactions ? d->nactions : 1, sizeof(double));
        if (!fin)
            goto out;
        double total = 0;
        for (size_t i = 0; i < d->nactions; i++) {
            double start = 0;
            for (size_t k = 0; k < d->actions[i].ndeps; k++)
                start = fmax(start, fin[d->actions[i].deps[k]]);
            fin[i] = start + d->actions[i].duration_s;
            total = fmax(total, fin[i]);
        }
        d->plan_duration_s = total;
        free(fin);
    }
    rc = 0;
out:
    if (pl.frees)
        for (size_t n = 0; n < c->N; n++)
            free(pl.frees[n].v);
    if (pl.cpudown)
        for (size_t n = 0; n < c->N; n++)
            free(pl.cpudown[n].v);
    free(pl.frees);
    free(pl.cpudown);
    free(pl.fm);
    free(pl.power_on);
    free(pl.it);
    free(th);
    free(tn);
    free(ch);
    free(cn);
    free(ups.v);
    return rc;
}

/* ---------------------------------------------------------------- verify */

int placement_plan_verify(const struct placement_problem *p, const struct placement_decision *d,
                          struct wlm_error *err)
{
    size_t N = p->nnodes ? p->nnodes : 1, W = p->nworkloads ? p->nworkloads : 1;
    double *fm = malloc(N * sizeof(double));
    int *on = malloc(N * sizeof(int)), *count = calloc(N, sizeof(int));
    /* Instances per workload as a small list of nodes (apps have few). */
    struct vec *inst = calloc(W, sizeof(struct vec));
    int rc = 0;
    if (!fm || !on || !count || !inst) {
        rc = wlm_error_set(err, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t n = 0; n < p->nnodes; n++) {
        fm[n] = p->nodes[n].memory_mb;
        on[n] = p->nodes[n].powered_on;
    }
    for (size_t i = 0; i < p->ncurrent; i++) {
        const struct placement_assign *a = &p->current[i];
        fm[a->node] -= p->workloads[a->workload].memory_mb;
        count[a->node]++;
        if (vec_push(&inst[a->workload], a->node)) {
            rc = wlm_error_set(err, ENOMEM, "out of memory");
            goto out;
        }
    }
#define BAD(...)                                                                                   \
    do {                                                                                           \
        rc = wlm_error_set(err, WLM_ECONFLICT, __VA_ARGS__);                                       \
        goto out;                                                                                  \
    } while (0)
    for (size_t i = 0; i < d->nactions; i++) {
        const struct placement_action *a = &d->actions[i];
        for (size_t k = 0; k < a->ndeps; k++)
            if (a->deps[k] >= i)
                BAD("action %zu depends on a later action %zu", i, a->deps[k]);
        if (a->node < 0 || (size_t)a->node >= p->nnodes)
            BAD("action %zu: bad node", i);
        size_t n = (size_t)a->node;
        double mem = a->workload < p->nworkloads ? p->workloads[a->workload].memory_mb : 0;
        struct vec *v = a->workload < p->nworkloads ? &inst[a->workload] : NULL;
        int take = 0, release = -1;
        switch (a->kind) {
        case PLACEMENT_ACT_POWER_ON: on[n] = 1; break;
        case PLACEMENT_ACT_POWER_OFF:
            if (count[n])
                BAD("action %zu: powers off node '%s' which still holds %d instance(s)", i,
                    p->nodes[n].name, count[n]);
            on[n] = 0;
            break;
        case PLACEMENT_ACT_START_INSTANCE:
        case PLACEMENT_ACT_START_JOB:
        case PLACEMENT_ACT_RESTORE_JOB: take = 1; break;
        case PLACEMENT_ACT_STOP_INSTANCE:
        case PLACEMENT_ACT_SUSPEND_JOB: release = (int)n; break;
        case PLACEMENT_ACT_MIGRATE_JOB:
            take = 1;
            release = a->from_node;
            break;
        default: break;
        }
        if (take) {
            if (!on[n])
                BAD("action %zu (%s): node '%s' is powered off", i, placement_action_name(a->kind),
                    p->nodes[n].name);
            fm[n] -= mem;
            count[n]++;
            if (fm[n] < -1e-6)
                BAD("action %zu (%s of '%s'): over-commits memory on node '%s' by %.0f MB", i,
                    placement_action_name(a->kind), p->workloads[a->workload].name,
                    p->nodes[n].name, -fm[n]);
        }
        if (release >= 0) {
            if (!v)
                BAD("action %zu: no workload", i);
            size_t k;
            for (k = 0; k < v->n && v->v[k] != (size_t)release; k++)
                ;
            if (k == v->n)
                BAD("action %zu (%s): '%s' is not on node %d", i, placement_action_name(a->kind),
                    p->workloads[a->workload].name, release);
            v->v[k] = v->v[--v->n];
            fm[release] += mem;
            count[release]--;
        }
        if (take && vec_push(v, n)) {
            rc = wlm_error_set(err, ENOMEM, "out of memory");
            goto out;
        }
    }
    /* The end state must be the target. */
    for (size_t i = 0; i < d->nassign; i++) {
        const struct placement_assign *a = &d->assign[i];
        struct vec *v = &inst[a->workload];
        size_t k;
        for (k = 0; k < v->n && v->v[k] != a->node; k++)
            ;
        if (k == v->n)
            BAD("after the plan '%s' is not on node '%s' as the target says",
                p->workloads[a->workload].name, p->nodes[a->node].name);
    }
    {
        size_t total = 0;
        for (size_t a = 0; a < p->nworkloads; a++)
            total += inst[a].n;
        if (total != d->nassign)
            BAD("after the plan %zu instances exist, the target has %zu", total, d->nassign);
    }
#undef BAD
out:
    if (inst)
        for (size_t a = 0; a < p->nworkloads; a++)
            free(inst[a].v);
    free(inst);
    free(fm);
    free(on);
    free(count);
    return rc;
}

int placement_plan_target(const struct placement_problem *p, const struct placement_assign *target,
                          size_t ntarget, const int *node_on, struct placement_decision **out,
                          struct wlm_error *err)
{
    *out = NULL;
    int rc = placement_problem_check(p, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < ntarget; i++)
        if (target[i].workload >= p->nworkloads || target[i].node >= p->nnodes)
            return wlm_error_setf(err, WLM_EINVAL, "target", "target[%zu]: unknown workload or node",
                                  i);
    struct pl_ctx c;
    struct placement_decision *d = calloc(1, sizeof(*d));
    if (!d || pl_ctx_init(&c, p)) {
        free(d);
        return wlm_error_set(err, ENOMEM, "out of memory");
    }
    rc = -ENOMEM;
    d->assign = malloc((ntarget ? ntarget : 1) * sizeof(*d->assign));
    d->node_on = calloc(p->nnodes ? p->nnodes : 1, sizeof(int));
    if (!d->assign || !d->node_on)
        goto out;
    memcpy(d->assign, target, ntarget * sizeof(*target));
    d->nassign = ntarget;
    for (size_t n = 0; n < p->nnodes; n++)
        d->node_on[n] = node_on ? node_on[n] : p->nodes[n].powered_on;
    for (size_t i = 0; i < ntarget; i++)
        d->node_on[target[i].node] = 1;
    struct pl_sol view = {d->assign, d->nassign, d->nassign};
    rc = pl_plan(&c, &view, d->node_on, d);
out:
    pl_ctx_fini(&c);
    if (rc) {
        placement_decision_free(d);
        if (rc == -ENOMEM)
            return wlm_error_set(err, ENOMEM, "out of memory");
        return wlm_error_set(err, WLM_ECONFLICT,
                             "target over-commits memory on some node: no plan exists");
    }
    *out = d;
    return 0;
}
