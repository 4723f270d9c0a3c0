/*
 * leximin.c - max-min placement with whole jobs, by progressive filling.
 *
 * Level t is feasible when every workload can be at t or above at once: an
 * application gets u^-1(t) MHz over its instances, and a whole job that would
 * sit below t while waiting (u0 < t) runs, at its full cap. Bisection finds
 * the highest feasible level t1. Workloads that cannot go above t1 (their best
 * is t1) are frozen there and the bisection repeats for the rest (t2 >= t1,
 * ...): the second-lowest utility is raised, then the next. When capacity,
 * not a workload's ceiling, stops the level, the jobs still waiting are
 * admitted most urgent first (lowest utility while waiting) on the capacity
 * left, and the applications share what remains.
 *
 * Whole jobs: a job either runs at its cap (whole threads at full speed) or
 * waits. Max-min over CPU shares makes every job equally late; whole threads
 * finish the most urgent ones on time, as EDF does, while the level keeps
 * the applications at their goals.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "heuristic.h"

/* Candidates for extra admission, most urgent first. */
struct urg {
    size_t a;
    double u;
    int on;
};

static int cmp_urg(const void *x, const void *y)
{
    const struct urg *p = x, *q = y;
    if (p->u != q->u)
        return p->u < q->u ? -1 : 1;
    if (p->on != q->on)
        return q->on - p->on; /* running jobs win ties: equal plans do not churn */
    return p->a < q->a ? -1 : (p->a > q->a);
}

int pl_leximin(struct pl_packer *k, size_t K, const int *excluded, int mode, const int *usable,
               struct pl_sol *out, double *level)
{
    const struct pl_ctx *c = k->c;
    size_t W = c->W ? c->W : 1;
    double *lvcap = malloc(W * sizeof(double));
    unsigned char *admit = calloc(W, 1);
    struct urg *cand = malloc(W * sizeof(*cand));
    size_t *order = malloc(W * sizeof(size_t));
    struct pl_sol tmp = {0};
    int rc = -ENOMEM, stale = 0, fresh = 0;
    double t = -INFINITY;
    if (!lvcap || !admit || !cand || !order)
        goto out;
    for (size_t a = 0; a < c->W; a++)
        lvcap[a] = INFINITY;
    /* Progressive filling. A round that stops at a workload's ceiling
     * freezes it there (two packings: the bisection's ends). A round that
     * stops at capacity finds what binds: if the applications, held at the
     * level, let it rise, they are frozen and the jobs' levels go on
     * rising (more of them run, most urgent first); otherwise the jobs that
     * would have to start next do not fit and wait, and the level goes on
     * rising without them. Rounds are budgeted by the problem's size; what
     * is left then is admitted in the gaps below. */
    size_t budget = 4000000 / (40 * (c->W + c->N) + 1);
    if (budget < 4)
        budget = 4;
    if (budget > 2 * c->W + 8)
        budget = 2 * c->W + 8;
    double tgood = -INFINITY;
    for (size_t round = 0; round < budget; round++) {
        struct pl_pack_args pa = {K, 1.0, excluded, NULL, 0, lvcap, admit, mode};
        double fail = INFINITY;
        if ((rc = pl_best_level_fail(k, &pa, &tmp, &t, &fail)))
            goto out;
        if (!isfinite(t))
            break;
        tgood = t;
        struct pl_sol sw = *out;
        *out = tmp;
        tmp = sw;
        fresh = k->fresh_used;
        size_t newly = 0;
        for (size_t a = 0; a < c->W; a++) {
            if (!c->placeable[a] || (excluded && excluded[a]) || isfinite(lvcap[a]) || c->busy[a])
                continue;
            if (c->umax[a] <= t + 1e-9 * fmax(1, fabs(t))) {
                lvcap[a] = c->umax[a];
                if (c->whole[a])
                    admit[a] = 1;
                newly++;
            }
        }
        if (newly)
            continue;
        if (!isfinite(fail))
            break;
        /* Capacity binds at (t, fail]. Do the applications? */
        size_t napps = 0;
        for (size_t a = 0; a < c->W; a++)
            if (!c->whole[a] && !c->busy[a] && c->placeable[a] && !(excluded && excluded[a]) &&
                !isfinite(lvcap[a])) {
                lvcap[a] = t;
                napps++;
            }
        int apps_bind = 0;
        if (napps) {
            int failed = 1;
            if ((rc = pl_pack(k, &pa, fail, &tmp, &failed)))
                goto out;
            apps_bind = !failed;
            if (!apps_bind)
                for (size_t a = 0; a < c->W; a++)
                    if (!c->whole[a] && !c->busy[a] && lvcap[a] == t)
                        lvcap[a] = INFINITY;
        }
        if (apps_bind)
            continue;
        /* The jobs that would start between t and fail do not fit: they
         * wait (their level is held at their waiting utility). */
        size_t capped = 0;
        for (size_t a = 0; a < c->W; a++)
            if (c->whole[a] && !admit[a] && !c->busy[a] && c->placeable[a] &&
                !(excluded && excluded[a]) && !isfinite(lvcap[a]) &&
                !(mode == PL_PACK_KEEP && c->onnode[a]) && c->u0[a] >= t - 1e-12 &&
                c->u0[a] < fail + 1e-12) {
                lvcap[a] = c->u0[a];
                capped++;
            }
        if (!capped) {
            /* Nothing identifiable binds: hold the applications here. */
            for (size_t a = 0; a < c->W; a++)
                if (!c->whole[a] && !c->busy[a] && !isfinite(lvcap[a]))
                    lvcap[a] = t;
            break;
        }
    }
    t = tgood;
    if (!isfinite(t)) {
        *level = t;
        rc = 0;
        goto out;
    }
    /* The packer must describe `out` (the last round's packing) again. */
    if ((rc = pl_packer_load(k, K, out)))
        goto out;
    /* Extras: whole jobs still waiting, most urgent first. */
    size_t nc = 0;
    for (size_t a = 0; a < c->W; a++) {
        if (!c->whole[a] || !c->placeable[a] || (excluded && excluded[a]) || k->head[a] != PL_NONE)
            continue;
        cand[nc++] = (struct urg){a, c->umax[a], c->onnode[a]};
    }
    if (nc)
        qsort(cand, nc, sizeof(*cand), cmp_urg);
    for (size_t i = 0; i < nc; i++)
        order[i] = cand[i].a;
    if ((rc = pl_admit_extras(k, K, order, nc, admit, out)))
        goto out;
    /* A job that does not fit in the gaps may still fit when everything
     * admitted is packed again (a 2-thread job needs two 1-thread jobs on one
     * node instead of one on each): try repacking, most urgent first, within
     * a budget of packings that shrinks with the problem's size. */
    {
        size_t budget = 2000000 / (c->W + c->N + 1);
        if (budget > 64)
            budget = 64;
        struct pl_pack_args pa = {K, 1.0, excluded, NULL, 0, lvcap, admit, mode};
        for (size_t i = 0; i < nc && budget > 0; i++) {
            size_t a = order[i];
            if (admit[a])
                continue;
            budget--;
            admit[a] = 1;
            int failed = 1;
            if ((rc = pl_pack(k, &pa, t, &tmp, &failed)))
                goto out;
            stale = failed;
            if (failed) {
                admit[a] = 0;
                continue;
            }
            fresh = fresh || k->fresh_used;
            struct pl_sol sw = *out;
            *out = tmp;
            tmp = sw;
            /* the packer now reflects `out`: later candidates may fit the gaps */
            if ((rc = pl_admit_extras(k, K, order + i + 1, nc - i - 1, admit, out)))
                goto out;
        }
    }
    /* A failed try left the packer describing that try: make it describe
     * `out` again before pl_place_idle uses its free capacity. */
    if (stale && (rc = pl_packer_load(k, K, out)))
        goto out;
    if ((rc = pl_place_idle(k, K, excluded, out)))
        goto out;
    if (fresh && (rc = pl_relabel(c, usable, out)))
        goto out;
    if ((rc = pl_refine(c, usable, out)))
        goto out;
    pl_fill_idle(c, usable, out);
    *level = t;
    rc = 0;
out:
    free(lvcap);
    free(admit);
    free(cand);
    free(order);
    pl_sol_fini(&tmp);
    return rc;
}

/* ---------------------------------------------------------------- relabel */

struct ovl {
    size_t b, n;
    double w;
};

static int cmp_ovl(const void *x, const void *y)
{
    const struct ovl *p = x, *q = y;
    if (p->w != q->w)
        return p->w > q->w ? -1 : 1;
    if (p->b != q->b)
        return p->b < q->b ? -1 : 1;
    return p->n < q->n ? -1 : (p->n > q->n);
}

static int same_kind(const struct pl_ctx *c, size_t x, size_t y)
{
    const struct placement_node *a = &c->p->nodes[x], *b = &c->p->nodes[y];
    return c->cap[x] == c->cap[y] && c->mem[x] == c->mem[y] && a->powered_on == b->powered_on &&
           !strcmp(a->labels, b->labels);
}

/* Usable nodes are only interchangeable with usable ones. */
static int same_class(const struct pl_ctx *c, const int *usable, size_t x, size_t y)
{
    return same_kind(c, x, y) && (!usable || !usable[x] == !usable[y]);
}

/* Node kinds: kind[n] = smallest node index identical to n. Quadratic only in
 * the number of distinct kinds. */
static void node_kinds(const struct pl_ctx *c, const int *usable, size_t *kind, size_t *reps,
                       size_t *nreps)
{
    *nreps = 0;
    for (size_t n = 0; n < c->N; n++) {
        size_t r;
        for (r = 0; r < *nreps; r++)
            if (same_class(c, usable, reps[r], n))
                break;
        if (r == *nreps)
            reps[(*nreps)++] = n;
        kind[n] = reps[r];
    }
}

int pl_relabel(const struct pl_ctx *c, const int *usable, struct pl_sol *s)
{
    const struct placement_problem *p = c->p;
    size_t N = c->N ? c->N : 1, W = c->W ? c->W : 1;
    size_t *kind = malloc(N * sizeof(size_t)), *reps = malloc(N * sizeof(size_t));
    size_t *map = malloc(N * sizeof(size_t)), *head = malloc(W * sizeof(size_t));
    size_t *next = malloc((p->ncurrent ? p->ncurrent : 1) * sizeof(size_t));
    unsigned char *used = calloc(N, 1);
    struct ovl *ov = NULL;
    int rc = -ENOMEM;
    if (!kind || !reps || !map || !head || !next || !used)
        goto out;
    size_t nreps;
    node_kinds(c, usable, kind, reps, &nreps);
    if (nreps == c->N) { /* no two nodes alike: nothing to rename */
        rc = 0;
        goto out;
    }
    for (size_t a = 0; a < c->W; a++)
        head[a] = PL_NONE;
    for (size_t i = 0; i < p->ncurrent; i++) {
        size_t a = p->current[i].workload;
        next[i] = head[a];
        head[a] = i;
    }
    /* Overlap of bin b (a node of the new packing) with node n (same kind)
     * that runs the same workload today: an app with several instances gives
     * a pair for each instance here and each there. */
    size_t no = 0;
    for (size_t i = 0; i < s->n; i++)
        for (size_t j = head[s->a[i].workload]; j != PL_NONE; j = next[j])
            no++;
    ov = malloc((no ? no : 1) * sizeof(*ov));
    if (!ov)
        goto out;
    no = 0;
    for (size_t i = 0; i < s->n; i++) {
        size_t a = s->a[i].workload, b = s->a[i].node;
        for (size_t j = head[a]; j != PL_NONE; j = next[j]) {
            size_t n = p->current[j].node;
            if (kind[n] == kind[b])
                ov[no++] =
                    (struct ovl){b, n, s->a[i].cpu_mhz + p->workloads[a].memory_mb * 1e-3 + 1};
        }
    }
    /* Match greedily by weight; a node holding work whose action is in
     * flight keeps its name (that work cannot move). */
    if (no)
        qsort(ov, no, sizeof(*ov), cmp_ovl);
    for (size_t n = 0; n < c->N; n++)
        map[n] = PL_NONE;
    for (size_t i = 0; i < s->n; i++) {
        size_t b = s->a[i].node;
        if (c->busy[s->a[i].workload] && map[b] == PL_NONE && !used[b]) {
            map[b] = b;
            used[b] = 1;
        }
    }
    for (size_t i = 0; i < no; i++) {
        if (map[ov[i].b] != PL_NONE || used[ov[i].n])
            continue;
        map[ov[i].b] = ov[i].n;
        used[ov[i].n] = 1;
    }
    /* Bins without overlap keep their name when it is free, else take a free
     * node of their kind. */
    for (size_t b = 0; b < c->N; b++)
        if (map[b] == PL_NONE && !used[b]) {
            map[b] = b;
            used[b] = 1;
        }
    size_t *cursor = reps; /* reused: per kind (indexed by its first node), next node to try */
    for (size_t n = 0; n < c->N; n++)
        cursor[n] = n;
    for (size_t b = 0; b < c->N; b++) {
        if (map[b] != PL_NONE)
            continue;
        size_t n = cursor[kind[b]];
        while (n < c->N && (used[n] || kind[n] != kind[b]))
            n++;
        cursor[kind[b]] = n;
        if (n >= c->N) { /* cannot happen: bins and nodes of a kind are equinumerous */
            rc = 0;
            goto out;
        }
        map[b] = n;
        used[n] = 1;
    }
    for (size_t i = 0; i < s->n; i++)
        s->a[i].node = map[s->a[i].node];
    rc = 0;
out:
    free(kind);
    free(reps);
    free(map);
    free(head);
    free(next);
    free(used);
    free(ov);
    return rc;
}

/* ---------------------------------------------------------------- work conservation */

void pl_fill_idle(const struct pl_ctx *c, const int *usable, struct pl_sol *s)
{
    size_t N = c->N ? c->N : 1;
    double *fc = malloc(N * sizeof(double));
    if (!fc)
        return;
    for (size_t n = 0; n < c->N; n++)
        fc[n] = (!usable || usable[n]) ? c->cap[n] : 0;
    for (size_t i = 0; i < s->n; i++)
        fc[s->a[i].node] -= s->a[i].cpu_mhz;
    for (size_t i = 0; i < s->n; i++) {
        struct placement_assign *x = &s->a[i];
        if (c->whole[x->workload] || c->busy[x->workload] || fc[x->node] <= 1e-6)
            continue;
        double g = fmin(fc[x->node], c->capi[x->workload] - x->cpu_mhz);
        if (g > 1e-6) {
            x->cpu_mhz += g;
            fc[x->node] -= g;
        }
    }
    free(fc);
}

/* ---------------------------------------------------------------- evaluation */

double pl_stall_penalty(const struct pl_ctx *c, size_t a, const struct pl_sol *s, size_t inst)
{
    const struct placement_workload *w = &c->p->workloads[a];
    const struct placement_action_cost *k = c->o->cost;
    if (w->kind != PLACEMENT_JOB || w->stall_cost <= 0 || !c->onnode[a])
        return 0;
    double susp = k[PLACEMENT_ACT_SUSPEND_JOB].duration_s + k[PLACEMENT_ACT_RESTORE_JOB].duration_s;
    if (inst == PL_NONE)
        return w->stall_cost * susp;
    if ((int)s->a[inst].node == w->cur_node)
        return 0;
    int live = w->migratable && w->state == PLACEMENT_JOB_RUNNING;
    return w->stall_cost * (live ? k[PLACEMENT_ACT_MIGRATE_JOB].duration_s : susp);
}
