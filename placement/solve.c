/*
 * solve.c - the decision pipeline: mode, solver, hysteresis, balance, plan.
 *
 *  1. Workloads that fit on no node at all are reported unplaced (utility at
 *     zero CPU) and left out of the optimisation, so one impossible request
 *     does not drag every other workload down to its level.
 *  2. The best level over all nodes (powered-off ones included) decides the
 *     mode. If every workload can meet its goal and power saving is on, we
 *     consolidate: the fewest nodes (busiest first) that hold every workload
 *     at its goal with `headroom` CPU to spare. This also powers nodes back on
 *     before the powered-on ones run out (the headroom is the early warning).
 *     Otherwise we maximise the minimum utility, powering nodes on only when
 *     that buys more than the hysteresis.
 *  3. The exact MILP, where the problem is small enough, starts from the
 *     heuristic's placement and replaces it when it finishes.
 *  4. Hysteresis: the new placement must beat what the current placement can
 *     give (after merely re-dividing CPU) by `hysteresis` plus the utility cost
 *     of its disruptive actions; otherwise the current placement stays.
 *  5. The band balancer and the action planner finish the decision.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heuristic.h"

struct order_key {
    size_t n;
    int cls;
    double load;
};

static int cmp_order(const void *x, const void *y)
{
    const struct order_key *a = x, *b = y;
    if (a->cls != b->cls)
        return a->cls - b->cls;
    if (a->load != b->load)
        return a->load > b->load ? -1 : 1;
    return a->n < b->n ? -1 : (a->n > b->n);
}

/* Preference order for packing: nodes that must stay on, then powered-on
 * nodes by current load (busiest first, so the idle ones are the ones that
 * empty), then powered-off nodes by capacity. */
static int build_order(const struct pl_ctx *c, size_t *order, size_t *n_must, size_t *n_on)
{
    const struct placement_problem *p = c->p;
    struct order_key *k = calloc(c->N ? c->N : 1, sizeof(*k));
    double *load = calloc(c->N ? c->N : 1, sizeof(double));
    if (!k || !load) {
        free(k);
        free(load);
        return -ENOMEM;
    }
    for (size_t i = 0; i < p->ncurrent; i++)
        load[p->current[i].node] +=
            p->workloads[p->current[i].workload].memory_mb * 1e-6 + p->current[i].cpu_mhz;
    *n_must = *n_on = 0;
    for (size_t n = 0; n < c->N; n++) {
        const struct placement_node *nd = &p->nodes[n];
        k[n].n = n;
        if (nd->powered_on && (!nd->can_power_off || !p->opts.power_saving)) {
            k[n].cls = 0;
            (*n_must)++;
        } else if (nd->powered_on) {
            k[n].cls = 1;
        } else {
            k[n].cls = 2;
        }
        if (nd->powered_on)
            (*n_on)++;
        k[n].load = nd->powered_on ? load[n] / (c->cap[n] > 0 ? c->cap[n] : 1) : c->cap[n];
    }
    qsort(k, c->N, sizeof(*k), cmp_order);
    for (size_t i = 0; i < c->N; i++)
        order[i] = k[i].n;
    free(k);
    free(load);
    return 0;
}

/* Per-workload instance lists of a solution, for "is w on n" lookups. */
struct sol_index {
    size_t *head, *next;
};

static int sol_index_build(struct sol_index *x, size_t W, const struct pl_sol *s)
{
    x->head = malloc((W ? W : 1) * sizeof(size_t));
    x->next = malloc((s->n ? s->n : 1) * sizeof(size_t));
    if (!x->head || !x->next)
        return -ENOMEM;
    for (size_t a = 0; a < W; a++)
        x->head[a] = PL_NONE;
    for (size_t i = 0; i < s->n; i++) {
        x->next[i] = x->head[s->a[i].workload];
        x->head[s->a[i].workload] = i;
    }
    return 0;
}

static void sol_index_fini(struct sol_index *x)
{
    free(x->head);
    free(x->next);
}

static size_t sol_find(const struct sol_index *x, const struct pl_sol *s, size_t w, size_t n)
{
    for (size_t i = x->head[w]; i != PL_NONE; i = x->next[i])
        if (s->a[i].node == n)
            return i;
    return PL_NONE;
}

/* Utility cost of the disruptive actions that turn `cur` into `tgt`. */
static double change_cost(const struct pl_ctx *c, const struct pl_sol *cur,
                          const struct pl_sol *tgt, int *nchanges)
{
    struct sol_index xt = {0};
    double cost = 0;
    *nchanges = 0;
    if (sol_index_build(&xt, c->W, tgt)) {
        sol_index_fini(&xt);
        return INFINITY;
    }
    const struct placement_action_cost *k = c->o->cost;
    for (size_t i = 0; i < cur->n; i++) {
        size_t w = cur->a[i].workload, n = cur->a[i].node;
        if (sol_find(&xt, tgt, w, n) != PL_NONE)
            continue;
        const struct placement_workload *wl = &c->p->workloads[w];
        (*nchanges)++;
        if (wl->kind == PLACEMENT_JOB && wl->stall_cost > 0)
            continue; /* its lost progress is charged in its utility (pl_stall_penalty) */
        if (wl->kind == PLACEMENT_APP)
            cost += k[PLACEMENT_ACT_STOP_INSTANCE].utility;
        else if (xt.head[w] == PL_NONE)
            cost += k[PLACEMENT_ACT_SUSPEND_JOB].utility;
        else if (wl->migratable && wl->state == PLACEMENT_JOB_RUNNING)
            cost += k[PLACEMENT_ACT_MIGRATE_JOB].utility;
        else
            cost += k[PLACEMENT_ACT_SUSPEND_JOB].utility + k[PLACEMENT_ACT_RESTORE_JOB].utility;
    }
    sol_index_fini(&xt);
    return cost;
}

static double min_over(const struct pl_ctx *c, const int *excluded, const struct pl_sol *s,
                       double *cpu, double *util)
{
    pl_sol_eval(c, s, cpu, util, NULL, NULL);
    double m = INFINITY;
    for (size_t a = 0; a < c->W; a++)
        if (c->placeable[a] && !excluded[a] && util[a] < m)
            m = util[a];
    return isfinite(m) ? m : 0;
}

static double node_power(const struct placement_node *nd, double cap, double used)
{
    if (nd->power_max_w <= 0)
        return 0;
    double f = cap > 0 ? used / (nd->cores * nd->mhz_per_core) : 0;
    return nd->power_idle_w + (nd->power_max_w - nd->power_idle_w) * fmin(1, f);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Utilities of the workloads in the optimisation, ascending. */
static size_t sorted_utils(const struct pl_ctx *c, const int *excluded, const double *util,
                           double *out)
{
    size_t n = 0;
    for (size_t a = 0; a < c->W; a++)
        if (c->placeable[a] && !excluded[a])
            out[n++] = util[a];
    if (n)
        qsort(out, n, sizeof(double), cmp_double);
    return n;
}

/* Lexicographic max-min comparison of two sorted utility vectors: the
 * difference at the first position where they differ. Comparing only the
 * minimum would leave work waiting forever when its start needs a move but
 * the minimum belongs to someone else. */
static double lex_gain(const double *a, const double *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i] - b[i]) > 1e-6)
            return a[i] - b[i];
    return 0;
}

void placement_decision_free(struct placement_decision *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nactions; i++)
        free(d->actions[i].deps);
    free(d->actions);
    free(d->assign);
    free(d->utility);
    free(d->cpu_mhz);
    free(d->node_on);
    free(d->unplaced);
    free(d);
}

struct run {
    struct pl_ctx c;
    struct pl_packer k;
    size_t *order, *order_w;
    int *excluded, *usable, *node_on;
    unsigned char *runadmit; /* whole jobs that run today: consolidation keeps them running */
    double *cpu, *util;
    struct pl_sol sol, cur, probe;
    size_t n_must, n_on;
};

static double level_at(struct run *r, size_t K, struct pl_sol *out, int *rc)
{
    struct pl_pack_args pa = {K, 1.0, r->excluded, NULL, 0, NULL, NULL, PL_PACK_STICKY};
    double lv;
    *rc = pl_best_level(&r->k, &pa, out, &lv);
    return lv;
}

static int pack_ok(struct run *r, size_t K, double level, double capf, struct pl_sol *out, int *rc)
{
    struct pl_pack_args pa = {K, capf, r->excluded, NULL, 0, NULL, r->runadmit, PL_PACK_STICKY};
    *rc = 0;
    if (!out) /* a probe: the result is not kept */
        out = &r->probe;
    int failed = 1;
    *rc = pl_pack(&r->k, &pa, level, out, &failed);
    return !*rc && !failed;
}

/* Smallest prefix in [lo, hi] that packs at `level` (hi is assumed to pack).
 * Galloping from the aggregate lower bound: the answer is usually a few
 * percent above it, so this needs far fewer probes than bisecting [lo, N].
 * Returns hi when nothing smaller packs; *found says whether a probe
 * succeeded (so the caller can replay exactly that packing). */
static size_t smallest_prefix(struct run *r, size_t lo, size_t hi, double level, double capf,
                              int *found, int *rc)
{
    *found = 0;
    size_t prev = lo, step = lo / 64 + 1, cur = lo;
    for (;;) {
        if (cur >= hi)
            break;
        if (pack_ok(r, cur, level, capf, NULL, rc)) {
            *found = 1;
            hi = cur;
            break;
        }
        if (*rc)
            return hi;
        prev = cur + 1;
        cur += step;
        step *= 2;
    }
    lo = prev;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (pack_ok(r, mid, level, capf, NULL, rc)) {
            hi = mid;
            *found = 1;
        } else if (*rc) {
            return hi;
        } else {
            lo = mid + 1;
        }
    }
    return hi;
}

static void set_usable(struct run *r, size_t K)
{
    for (size_t i = 0; i < r->c.N; i++)
        r->usable[r->order[i]] = i < K;
}

/* Sorted utilities of s as the comparison sees them: each job's utility less
 * what its actions cost it in lost progress (pl_stall_penalty). */
static int adjusted_sorted(const struct pl_ctx *c, const int *excluded, const struct pl_sol *s,
                           double *cpu, double *util, double *out, size_t *n)
{
    size_t W = c->W ? c->W : 1;
    size_t *inst = malloc(W * sizeof(size_t));
    if (!inst)
        return -ENOMEM;
    pl_sol_eval(c, s, cpu, util, NULL, NULL);
    for (size_t a = 0; a < c->W; a++)
        inst[a] = PL_NONE;
    for (size_t i = 0; i < s->n; i++)
        inst[s->a[i].workload] = i;
    for (size_t a = 0; a < c->W; a++)
        util[a] -= pl_stall_penalty(c, a, s, inst[a]);
    free(inst);
    *n = sorted_utils(c, excluded, util, out);
    return 0;
}

/* The current placement with its CPU re-divided: whole jobs keep their cap
 * while their node has it (in the order they are listed; one that finds its
 * node full gets what is left), jobs in flight keep their CPU, the rest is
 * shared by progressive filling and any idle CPU handed out. Fills *s. */
static int current_redivided(const struct pl_ctx *c, const int *on, struct pl_sol *s)
{
    size_t N = c->N ? c->N : 1;
    int rc = pl_current(c, s);
    double *fc = malloc(N * sizeof(double));
    if (rc || !fc) {
        free(fc);
        return rc ? rc : -ENOMEM;
    }
    for (size_t n = 0; n < c->N; n++)
        fc[n] = on[n] ? c->cap[n] : 0;
    for (size_t i = 0; i < s->n; i++)
        if (c->busy[s->a[i].workload])
            fc[s->a[i].node] -= s->a[i].cpu_mhz;
    for (size_t i = 0; i < s->n; i++) {
        struct placement_assign *x = &s->a[i];
        if (c->busy[x->workload])
            continue;
        if (!c->whole[x->workload] || c->p->workloads[x->workload].state == PLACEMENT_JOB_PAUSED) {
            x->cpu_mhz = 0;
            continue;
        }
        x->cpu_mhz = fmax(0, fmin(c->capi[x->workload], fc[x->node]));
        fc[x->node] -= x->cpu_mhz;
    }
    free(fc);
    if ((rc = pl_refine(c, on, s)))
        return rc;
    pl_fill_idle(c, on, s);
    return 0;
}

/* Start waiting whole jobs, most urgent first, where s leaves room (first
 * node in index order with enough CPU and memory). Bounded work: on very
 * large problems only the most urgent candidates are tried. */
static int admit_waiting(const struct pl_ctx *c, const int *excluded, const int *on,
                         struct pl_sol *s)
{
    size_t N = c->N ? c->N : 1, W = c->W ? c->W : 1;
    double *fc = malloc(N * sizeof(double)), *fm = malloc(N * sizeof(double));
    unsigned char *placed = calloc(W, 1);
    size_t *cand = malloc(W * sizeof(size_t));
    int rc = -ENOMEM;
    if (!fc || !fm || !placed || !cand)
        goto out;
    for (size_t n = 0; n < c->N; n++) {
        fc[n] = on[n] ? c->cap[n] : 0;
        fm[n] = on[n] ? c->mem[n] : 0;
    }
    for (size_t i = 0; i < s->n; i++) {
        fc[s->a[i].node] -= s->a[i].cpu_mhz;
        fm[s->a[i].node] -= c->p->workloads[s->a[i].workload].memory_mb;
        placed[s->a[i].workload] = 1;
    }
    size_t nc = 0;
    for (size_t a = 0; a < c->W; a++)
        if (c->whole[a] && c->placeable[a] && !excluded[a] && !placed[a])
            cand[nc++] = a;
    /* most urgent first: insertion by u0 is fine for the sizes this runs at */
    size_t budget = 4000000 / N + 1;
    if (nc > budget)
        nc = budget;
    for (size_t i = 1; i < nc; i++)
        for (size_t j = i; j > 0 && c->u0[cand[j]] < c->u0[cand[j - 1]]; j--) {
            size_t t = cand[j];
            cand[j] = cand[j - 1];
            cand[j - 1] = t;
        }
    for (size_t i = 0; i < nc; i++) {
        size_t a = cand[i];
        double mem = c->p->workloads[a].memory_mb;
        for (size_t n = 0; n < c->N; n++) {
            if (fc[n] < c->capi[a] - PL_EPS || fm[n] < mem - PL_EPS || !pl_eligible(c, a, n))
                continue;
            if (pl_sol_push(s, a, n, c->capi[a]))
                goto out;
            fc[n] -= c->capi[a];
            fm[n] -= mem;
            break;
        }
    }
    rc = 0;
out:
    free(fc);
    free(fm);
    free(placed);
    free(cand);
    return rc;
}

/* Contention: the best plan without moving running jobs (KEEP), the best
 * plan with suspend/resume/migrate (MOVE) and the current placement with CPU
 * re-divided (CUR) are compared on their sorted utility vectors, each job
 * charged the progress its actions cost it. The base is KEEP unless CUR is
 * better (a decision never does worse than standing still); MOVE replaces it
 * only when it wins by the hysteresis plus the utility cost of its extra
 * disruptive actions. Leaves the chosen plan in r->sol. */
static int choose_contention(struct run *r, size_t K, struct placement_decision *d, char *note,
                             size_t notesz)
{
    struct pl_ctx *c = &r->c;
    const struct placement_options *o = c->o;
    size_t W = c->W ? c->W : 1, N = c->N ? c->N : 1;
    struct pl_sol keep = {0}, move = {0}, cur = {0};
    double *vk = malloc(W * sizeof(double)), *vm = malloc(W * sizeof(double));
    double *vc = malloc(W * sizeof(double));
    int *on = calloc(N, sizeof(int));
    double lk = -INFINITY, lm = -INFINITY;
    size_t nv = 0;
    int rc = -ENOMEM;
    if (!vk || !vm || !vc || !on)
        goto out;
    if ((rc = pl_leximin(&r->k, K, r->excluded, PL_PACK_KEEP, r->usable, &keep, &lk)) ||
        (!o->no_moves &&
         (rc = pl_leximin(&r->k, K, r->excluded, PL_PACK_STICKY, r->usable, &move, &lm))))
        goto out;
    for (size_t n = 0; n < c->N; n++)
        on[n] = c->p->nodes[n].powered_on;
    if ((rc = current_redivided(c, on, &cur)))
        goto out;
    /* CUR is a fair alternative only where it runs whole jobs whole (time
     * sharing is what the plans avoid); it starts waiting work too. */
    int cur_ok = 1;
    for (size_t i = 0; i < cur.n; i++)
        if (c->whole[cur.a[i].workload] && !c->busy[cur.a[i].workload] &&
            cur.a[i].cpu_mhz < c->capi[cur.a[i].workload] - 1e-6)
            cur_ok = 0;
    if (cur_ok && (rc = admit_waiting(c, r->excluded, on, &cur)))
        goto out;
    if ((rc = adjusted_sorted(c, r->excluded, &cur, r->cpu, r->util, vc, &nv)))
        goto out;
    d->current_min_utility = nv ? vc[0] : 0;
    if ((rc = adjusted_sorted(c, r->excluded, &keep, r->cpu, r->util, vk, &nv)) ||
        (rc = adjusted_sorted(c, r->excluded, &move, r->cpu, r->util, vm, &nv)))
        goto out;
    /* Base: KEEP, or CUR when KEEP is infeasible or worse. */
    struct pl_sol *base = &keep;
    double *vb = vk;
    const char *why = "";
    if (!isfinite(lk) || (cur_ok && lex_gain(vc, vk, nv) > 1e-6)) {
        base = &cur;
        vb = vc;
        why = isfinite(lk) ? "current placement kept (better than any plan without moves)" : "";
    }
    int nb = 0, nm = 0;
    double cb = change_cost(c, &cur, base, &nb), cm = change_cost(c, &cur, &move, &nm);
    double gain = lex_gain(vm, vb, nv);
    double need = nm > nb ? o->hysteresis + fmax(0, cm - cb) : 1e-6;
    int take_move = isfinite(lm) && (gain > need - 1e-12 || (!isfinite(lk) && base != &cur));
    struct pl_sol *chosen = take_move ? &move : base;
    if (!take_move && base == &cur) {
        d->kept_current = 1;
        if (why[0])
            wlm_strlcpy(note, why, notesz);
    } else if (!take_move && nm > nb && isfinite(lm)) {
        d->kept_current = 1; /* the moves did not pay for themselves */
        size_t l = strlen(note);
        snprintf(note + l, notesz - l,
                 "%skept current placement: gain %.4f < hysteresis %.4f + action cost %.4f "
                 "(%d changes)",
                 l ? "; " : "", gain, o->hysteresis, fmax(0, cm - cb), nm - nb);
    } else if (take_move && nm > nb) {
        size_t l = strlen(note);
        snprintf(note + l, notesz - l, "%smoves pay: gain %.4f > %.4f", l ? "; " : "", gain, need);
    }
    pl_sol_fini(&r->sol);
    r->sol = *chosen;
    *chosen = (struct pl_sol){0};
    rc = 0;
out:
    pl_sol_fini(&keep);
    pl_sol_fini(&move);
    pl_sol_fini(&cur);
    free(vk);
    free(vm);
    free(vc);
    free(on);
    return rc;
}

/* Whether the exact solver's placement `ex` is worth taking over the
 * heuristic's `hs`: better in the sorted (stall-adjusted) utilities, by the
 * hysteresis plus the cost of its extra disruptive actions when it makes more
 * changes to the current placement. */
static int exact_pays(struct run *r, const struct pl_sol *hs, const struct pl_sol *ex, int *better)
{
    struct pl_ctx *c = &r->c;
    size_t W = c->W ? c->W : 1;
    struct pl_sol cur = {0};
    double *vh = malloc(W * sizeof(double)), *ve = malloc(W * sizeof(double));
    size_t nv = 0;
    int rc = -ENOMEM, nh = 0, ne = 0;
    if (!vh || !ve || (rc = pl_current(c, &cur)) ||
        (rc = adjusted_sorted(c, r->excluded, hs, r->cpu, r->util, vh, &nv)) ||
        (rc = adjusted_sorted(c, r->excluded, ex, r->cpu, r->util, ve, &nv)))
        goto out;
    /* Without moves, a running job stays where it runs. */
    if (c->o->no_moves) {
        for (size_t a = 0; a < c->W; a++) {
            if (!c->onnode[a])
                continue;
            int stays = 0;
            for (size_t i = 0; i < ex->n && !stays; i++)
                stays = ex->a[i].workload == a && (int)ex->a[i].node == c->p->workloads[a].cur_node;
            if (!stays) {
                *better = 0;
                rc = 0;
                goto out;
            }
        }
    }
    /* A MILP that splits a whole job's CPU describes a placement the core
     * does not make: keep the heuristic's. */
    for (size_t i = 0; i < ex->n; i++)
        if (c->whole[ex->a[i].workload] && !c->busy[ex->a[i].workload] &&
            fabs(ex->a[i].cpu_mhz - c->capi[ex->a[i].workload]) > 1e-6) {
            *better = 0;
            rc = 0;
            goto out;
        }
    double ch = change_cost(c, &cur, hs, &nh), ce = change_cost(c, &cur, ex, &ne);
    double gain = lex_gain(ve, vh, nv);
    double need = ne > nh ? c->o->hysteresis + fmax(0, ce - ch) : -1e-9;
    *better = gain > need - 1e-12;
    rc = 0;
out:
    pl_sol_fini(&cur);
    free(vh);
    free(ve);
    return rc;
}

int placement_solve(const struct placement_problem *p, struct placement_decision **out,
                    struct wlm_error *err)
{
    *out = NULL;
    int rc = placement_problem_check(p, err);
    if (rc)
        return rc;
    struct run r;
    memset(&r, 0, sizeof(r));
    struct placement_decision *d = calloc(1, sizeof(*d));
    if (!d || pl_ctx_init(&r.c, p)) {
        free(d);
        return wlm_error_set(err, ENOMEM, "out of memory");
    }
    const struct placement_options *o = &p->opts;
    struct pl_ctx *c = &r.c;
    size_t N = c->N ? c->N : 1, W = c->W ? c->W : 1;
    r.order = malloc(N * sizeof(size_t));
    r.excluded = calloc(W, sizeof(int));
    r.usable = calloc(N, sizeof(int));
    r.node_on = calloc(N, sizeof(int));
    r.cpu = calloc(W, sizeof(double));
    r.util = calloc(W, sizeof(double));
    r.runadmit = calloc(W, 1);
    r.order_w = malloc(W * sizeof(size_t));
    rc = -ENOMEM;
    if (!r.order || !r.excluded || !r.usable || !r.node_on || !r.cpu || !r.util || !r.runadmit ||
        !r.order_w)
        goto fail;
    for (size_t a = 0; a < c->W; a++)
        r.runadmit[a] = c->whole[a] && c->onnode[a];
    if ((rc = build_order(c, r.order, &r.n_must, &r.n_on)) ||
        (rc = pl_packer_init(&r.k, c, r.order)))
        goto fail;

    /* 1. Memory feasibility: if not even the minimum instance counts pack,
     * drop the workloads that do not fit (best effort) and report them. */
    /* Running jobs count where they are (KEEP): one that shares its node's
     * CPU today is not "unplaceable". */
    for (int tries = 0; tries < 4; tries++) {
        struct pl_pack_args pa = {c->N, 1.0, r.excluded, NULL, 0, NULL, r.runadmit, PL_PACK_KEEP};
        int failed;
        if ((rc = pl_pack(&r.k, &pa, -INFINITY, &r.sol, &failed)))
            goto fail;
        if (!failed)
            break;
        pa.failed_mark = r.excluded;
        if ((rc = pl_pack(&r.k, &pa, -INFINITY, &r.sol, &failed)))
            goto fail;
    }
    /* The mode needs only one packing when goals are reachable; the best
     * level over all nodes is computed only when they are not. */
    double L_all = INFINITY;
    int goals_met = o->power_saving && pack_ok(&r, c->N, o->goal_utility, 1.0, &r.sol, &rc);
    if (rc)
        goto fail;
    if (!goals_met) {
        L_all = level_at(&r, c->N, &r.sol, &rc);
        if (rc)
            goto fail;
        /* -INFINITY: not even the floor packs with moves (running work
         * overcommits its nodes); the plans below still keep what runs. */
    }

    /* 2. Mode and node set. */
    size_t K = c->N;
    double capf = 1.0;
    char note[256] = "";
    if (goals_met) {
        d->consolidated = 1;
        size_t lo = r.n_must ? r.n_must : 1, hi = c->N;
        capf = 1.0 - o->headroom;
        if (!pack_ok(&r, hi, o->goal_utility, capf, &r.sol, &rc)) {
            if (rc)
                goto fail;
            capf = 1.0; /* goals reachable only without headroom: use every node */
        }
        /* Aggregate CPU and memory give a lower bound on the node count;
         * packing probes then find the smallest prefix that packs. */
        size_t agg = pl_min_prefix(&r.k, r.excluded, o->goal_utility, capf);
        if (agg > lo)
            lo = agg;
        if (lo > hi)
            lo = hi;
        /* Remember the exact parameters that packed K: packing is not
         * monotone in node count or capacity, so only a replay of the
         * successful probe is sure to pack again. */
        double K_capf = capf;
        int K_ff = 0, found = 0; /* K_ff: 1 = a probe packed K, 0 = K = N is known to pack */
        K = smallest_prefix(&r, lo, hi, o->goal_utility, capf, &found, &rc);
        if (rc)
            goto fail;
        K_ff = found;
        /* Switching nodes off must also fit with a further margin, so demand
         * hovering at the threshold does not power the same node off and on
         * every cycle. */
        size_t n_on_now = r.n_on ? r.n_on : 1;
        double capf_off = capf - o->power_off_margin;
        if (K < n_on_now && capf_off > 0) {
            size_t lo2 = pl_min_prefix(&r.k, r.excluded, o->goal_utility, capf_off);
            if (lo2 < K)
                lo2 = K;
            size_t K2 = smallest_prefix(&r, lo2, n_on_now, o->goal_utility, capf_off, &found, &rc);
            if (rc)
                goto fail;
            if (found) {
                K = K2;
                K_capf = capf_off;
                K_ff = 1;
            } else {
                K = n_on_now; /* keep what is on; the walk below checks it packs */
                K_ff = -1;
            }
        }
        struct pl_pack_args pa = {K, K_capf, r.excluded, NULL, 0, NULL, r.runadmit, PL_PACK_STICKY};
        int failed = 1;
        if (K_ff >= 0 && (rc = pl_pack(&r.k, &pa, o->goal_utility, &r.sol, &failed)))
            goto fail;
        /* Safety net (the replay cannot fail): walk up to all nodes, which
         * are known to pack at full capacity. */
        while (failed) {
            if (K >= c->N) {
                K = c->N;
                capf = 1.0;
            }
            if (pack_ok(&r, K, o->goal_utility, capf, &r.sol, &rc))
                break;
            if (rc)
                goto fail;
            if (K == c->N) {
                rc = wlm_error_set(err, WLM_EINTERNAL, "placement: consolidation packing lost");
                goto fail;
            }
            K++;
        }
        snprintf(note, sizeof(note),
                 "all workloads meet their goal: consolidated onto %zu of %zu nodes", K, c->N);
    } else if (!o->power_saving) {
        /* Power saving is off (the controller turns it off while work
         * waits): every node may take work; one that receives none stays
         * off. */
        K = c->N;
        set_usable(&r, K);
        if ((rc = choose_contention(&r, K, d, note, sizeof(note))))
            goto fail;
    } else {
        K = r.n_on;
        if (K < c->N) {
            double L_on = r.n_on ? level_at(&r, r.n_on, &r.sol, &rc) : -INFINITY;
            if (rc)
                goto fail;
            if (!(L_on >= L_all - o->hysteresis)) {
                size_t lo = r.n_on + 1, hi = c->N;
                while (lo < hi) {
                    size_t mid = (lo + hi) / 2;
                    double lv = level_at(&r, mid, &r.sol, &rc);
                    if (rc)
                        goto fail;
                    if (lv >= L_all - o->hysteresis)
                        hi = mid;
                    else
                        lo = mid + 1;
                }
                K = hi;
            }
        }
        if (K == 0)
            K = c->N;
        double lv = level_at(&r, K, &r.sol, &rc);
        if (rc)
            goto fail;
        if (!isfinite(lv)) /* minimum instances need more nodes */
            K = c->N;
        set_usable(&r, K);
        if ((rc = choose_contention(&r, K, d, note, sizeof(note))))
            goto fail;
    }
    if (d->consolidated) {
        set_usable(&r, K);
        /* Emptying a node may need work to move between the nodes that stay
         * (juggling): a fresh packing does that; renaming its bins after
         * today's nodes keeps every move it does not need from happening. */
        if (r.k.fresh_used &&
            ((rc = pl_relabel(c, r.usable, &r.sol)) || (rc = pl_packer_load(&r.k, K, &r.sol))))
            goto fail;
        /* Waiting whole jobs take what the consolidated nodes have spare. */
        size_t nc = 0;
        for (size_t a = 0; a < c->W; a++)
            if (c->whole[a] && c->placeable[a] && !r.excluded[a] && !r.runadmit[a])
                r.order_w[nc++] = a;
        if ((rc = pl_admit_extras(&r.k, K, r.order_w, nc, r.runadmit, &r.sol)) ||
            (rc = pl_place_idle(&r.k, K, r.excluded, &r.sol)) ||
            (rc = pl_refine(c, r.usable, &r.sol)))
            goto fail;
        pl_fill_idle(c, r.usable, &r.sol);
    }
    d->solver = PLACEMENT_SOLVER_HEURISTIC;
    /* 3. GLPK: the bound, and the exact solver where the options ask for it
     * (exact.c). It never leaves r.sol worse than the heuristic's. */
    {
        struct pl_exact_args ea = {r.usable, r.excluded, K == c->N, d->consolidated};
        struct pl_sol heur = {0};
        if ((rc = pl_sol_copy(&heur, &r.sol)) ||
            (rc = pl_exact_stage(c, &ea, &r.sol, d, note, sizeof(note)))) {
            pl_sol_fini(&heur);
            goto fail;
        }
        /* The MILP knows nothing of hysteresis or of what moves cost in lost
         * progress: its placement replaces the heuristic's only when it pays
         * as the heuristic's own moves must. */
        if (d->solver == PLACEMENT_SOLVER_EXACT && !d->consolidated) {
            int better = 0;
            if ((rc = exact_pays(&r, &heur, &r.sol, &better))) {
                pl_sol_fini(&heur);
                goto fail;
            }
            if (!better) {
                pl_sol_fini(&r.sol);
                r.sol = heur;
                heur = (struct pl_sol){0};
                d->solver = PLACEMENT_SOLVER_HEURISTIC;
            }
        }
        pl_sol_fini(&heur);
    }
    min_over(c, r.excluded, &r.sol, r.cpu, r.util); /* fills r.util */
    double *sorted_new = malloc(W * sizeof(double));
    if (!sorted_new) {
        rc = -ENOMEM;
        goto fail;
    }
    size_t nsorted = sorted_utils(c, r.excluded, r.util, sorted_new);

    /* 4. Hysteresis against the current placement with CPU re-divided. */
    {
        int *on = calloc(N, sizeof(int));
        if (!on) {
            rc = -ENOMEM;
            goto fail;
        }
        for (size_t n = 0; n < c->N; n++)
            on[n] = p->nodes[n].powered_on;
        rc = current_redivided(c, on, &r.cur);
        free(on);
        if (rc)
            goto fail;
    }
    double t_keep = min_over(c, r.excluded, &r.cur, r.cpu, r.util);
    d->current_min_utility = t_keep;
    double gain;
    {
        double *sorted_keep = malloc(W * sizeof(double));
        if (!sorted_keep) {
            free(sorted_new);
            rc = -ENOMEM;
            goto fail;
        }
        sorted_utils(c, r.excluded, r.util, sorted_keep);
        gain = lex_gain(sorted_new, sorted_keep, nsorted);
        free(sorted_keep);
        free(sorted_new);
    }
    int nchanges = 0;
    double cost = change_cost(c, &r.cur, &r.sol, &nchanges);
    size_t on_new = 0;
    for (size_t i = 0; i < c->N; i++) {
        size_t n = r.order[i];
        const struct placement_node *nd = &p->nodes[n];
        if (i < K)
            r.node_on[n] = nd->powered_on || d->consolidated;
        else
            r.node_on[n] = nd->powered_on && !(d->consolidated && nd->can_power_off);
    }
    /* Powered-off nodes inside the set that received nothing stay off. */
    {
        int *hosts = calloc(N, sizeof(int));
        if (!hosts) {
            rc = -ENOMEM;
            goto fail;
        }
        for (size_t i = 0; i < r.sol.n; i++)
            hosts[r.sol.a[i].node] = 1;
        for (size_t n = 0; n < c->N; n++) {
            if (!p->nodes[n].powered_on && !hosts[n] && !d->consolidated)
                r.node_on[n] = 0;
            if (hosts[n])
                r.node_on[n] = 1;
            on_new += r.node_on[n];
        }
        free(hosts);
    }
    int accept;
    if (!d->consolidated)
        accept = 1; /* contention: choose_contention compared the plans */
    else if (nchanges == 0 && on_new == r.n_on)
        accept = 1; /* only CPU shares and starts of waiting work change */
    else if (d->consolidated && on_new != r.n_on)
        accept = 1; /* power nodes off, or on before the headroom runs out */
    else
        accept = gain >= o->hysteresis + cost - 1e-9;
    if (!accept) {
        d->kept_current = 1;
        snprintf(
            note, sizeof(note),
            "kept current placement: gain %.4f < hysteresis %.4f + action cost %.4f (%d changes)",
            gain, o->hysteresis, cost, nchanges);
        struct pl_sol tmp = r.sol;
        r.sol = r.cur;
        r.cur = tmp;
        d->consolidated = 0;
        for (size_t n = 0; n < c->N; n++)
            r.node_on[n] = p->nodes[n].powered_on;
    }

    /* 5. Balance, evaluate, plan. */
    /* Balance only when every workload meets its goal. Under contention
     * CPU is elastic and every node is as full as max-min makes it; gaps in
     * utilisation come from capped workloads, which moving cannot fix, so
     * moves there would repeat every cycle. */
    if (o->max_balance_moves > 0) {
        struct pl_sol view = {r.sol.a, r.sol.n, r.sol.cap};
        double *bc = malloc(W * sizeof(double)), *bu = malloc(W * sizeof(double));
        if (!bc || !bu) {
            free(bc);
            free(bu);
            rc = -ENOMEM;
            goto fail;
        }
        double tmin = min_over(c, r.excluded, &view, bc, bu);
        free(bc);
        free(bu);
        /* A moved instance may find room to grow where it lands. */
        if (tmin >= o->goal_utility - 1e-9 && pl_balance(c, &r.sol, r.node_on) > 0) {
            if ((rc = pl_refine(c, r.node_on, &r.sol)))
                goto fail;
            pl_fill_idle(c, r.node_on, &r.sol);
        }
    }
    d->nassign = r.sol.n;
    d->assign = r.sol.a;
    r.sol.a = NULL;
    r.sol.n = r.sol.cap = 0;
    d->utility = r.util;
    d->cpu_mhz = r.cpu;
    d->node_on = r.node_on;
    r.util = r.cpu = NULL;
    r.node_on = NULL;
    {
        struct pl_sol view = {d->assign, d->nassign, d->nassign};
        pl_sol_eval(c, &view, d->cpu_mhz, d->utility, NULL, &d->min_utility);
        d->min_utility_placeable = min_over(c, r.excluded, &view, d->cpu_mhz, d->utility);
        size_t nu = 0;
        for (size_t a = 0; a < c->W; a++)
            nu += !c->placeable[a] || r.excluded[a];
        d->unplaced = calloc(nu ? nu : 1, sizeof(size_t));
        if (!d->unplaced) {
            rc = -ENOMEM;
            goto fail;
        }
        for (size_t a = 0; a < c->W; a++)
            if (!c->placeable[a] || r.excluded[a])
                d->unplaced[d->nunplaced++] = a;
        d->status = nu ? PLACEMENT_PARTIAL : PLACEMENT_OK;
        double *used = calloc(N, sizeof(double));
        if (!used) {
            rc = -ENOMEM;
            goto fail;
        }
        for (size_t i = 0; i < d->nassign; i++)
            used[d->assign[i].node] += d->assign[i].cpu_mhz;
        for (size_t n = 0; n < c->N; n++)
            if (d->node_on[n])
                d->power_w += node_power(&p->nodes[n], c->cap[n], used[n]);
        free(used);
        d->gap = fmax(0, d->upper_bound - d->min_utility_placeable);
        if (nu) {
            snprintf(note + strlen(note), sizeof(note) - strlen(note),
                     "%s%zu workload(s) fit nowhere and are left out", note[0] ? "; " : "", nu);
        }
        wlm_strlcpy(d->note, note, sizeof(d->note));
        if ((rc = pl_plan(c, &view, d->node_on, d)))
            goto fail;
    }
    rc = 0;
    *out = d;
    d = NULL;
fail:
    if (rc && d)
        placement_decision_free(d);
    if (rc == -ENOMEM)
        wlm_error_set(err, ENOMEM, "out of memory");
    else if (rc && err && !err->code)
        wlm_error_set(err, WLM_EINTERNAL, "placement failed (%d)", rc);
    pl_packer_fini(&r.k);
    pl_sol_fini(&r.sol);
    pl_sol_fini(&r.cur);
    pl_sol_fini(&r.probe);
    free(r.order);
    free(r.excluded);
    free(r.usable);
    free(r.node_on);
    free(r.cpu);
    free(r.util);
    free(r.runadmit);
    free(r.order_w);
    pl_ctx_fini(&r.c);
    return rc;
}
