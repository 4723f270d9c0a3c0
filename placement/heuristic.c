/*
 * heuristic.c - the scalable placement heuristic.
 *
 * For a utility level t every workload needs d(t) = u^-1(t) MHz. That demand is
 * cut into instance-sized pieces, pieces go first back to the nodes that run
 * them today (no action needed), and the rest is packed first-fit decreasing
 * over the nodes in a preference order (busy powered-on nodes first, powered-off
 * nodes last). Bisection on t finds the highest level that packs. A segment
 * tree over the node order (max free CPU, max free memory) makes first-fit
 * O(log N) per piece in the common case, which is what lets 10,000 nodes x
 * 30,000 workloads solve in well under the 10 s budget.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "heuristic.h"

/* ---------------------------------------------------------------- packer */

struct piece {
    size_t w;
    double cpu, mem;
};

static int cmp_piece(const void *x, const void *y)
{
    const struct piece *a = x, *b = y;
    if (a->cpu != b->cpu)
        return a->cpu > b->cpu ? -1 : 1;
    if (a->mem != b->mem)
        return a->mem > b->mem ? -1 : 1;
    return a->w < b->w ? -1 : (a->w > b->w);
}

int pl_packer_init(struct pl_packer *k, const struct pl_ctx *c, const size_t *order)
{
    memset(k, 0, sizeof(*k));
    k->c = c;
    size_t N = c->N ? c->N : 1, W = c->W ? c->W : 1;
    k->order = malloc(N * sizeof(size_t));
    k->pos = malloc(N * sizeof(size_t));
    k->fc = malloc(N * sizeof(double));
    k->fm = malloc(N * sizeof(double));
    for (k->size = 1; k->size < N; k->size <<= 1)
        ;
    k->tc = malloc(2 * k->size * sizeof(double));
    k->tm = malloc(2 * k->size * sizeof(double));
    k->tb = malloc(2 * k->size * sizeof(double));
    k->head = malloc(W * sizeof(size_t));
    k->pieces = malloc(W * sizeof(struct piece));
    k->npieces_cap = W;
    k->left = malloc(W * sizeof(int));
    k->dem = malloc(W * sizeof(double));
    if (!k->order || !k->pos || !k->fc || !k->fm || !k->tc || !k->tm || !k->tb || !k->head ||
        !k->pieces || !k->left || !k->dem) {
        pl_packer_fini(k);
        return -ENOMEM;
    }
    double cs = 0, ms = 0;
    for (size_t i = 0; i < c->N; i++) {
        k->order[i] = order ? order[i] : i;
        k->pos[k->order[i]] = i;
        cs += c->cap[i];
        ms += c->mem[i];
    }
    k->cs = c->N && cs > 0 ? cs / c->N : 1;
    k->ms = c->N && ms > 0 ? ms / c->N : 1;
    return 0;
}

void pl_packer_fini(struct pl_packer *k)
{
    free(k->order);
    free(k->pos);
    free(k->fc);
    free(k->fm);
    free(k->tc);
    free(k->tm);
    free(k->tb);
    free(k->head);
    free(k->pieces);
    free(k->left);
    free(k->dem);
    free(k->next);
    memset(k, 0, sizeof(*k));
}

static inline double leaf_b(const struct pl_packer *k, double c, double m)
{
    return (c < 0 || m < 0) ? -1 : fmin(c / k->cs, m / k->ms);
}

static inline void tree_pull(struct pl_packer *k, size_t i)
{
    k->tc[i] = fmax(k->tc[2 * i], k->tc[2 * i + 1]);
    k->tm[i] = fmax(k->tm[2 * i], k->tm[2 * i + 1]);
    k->tb[i] = fmax(k->tb[2 * i], k->tb[2 * i + 1]);
}

static void tree_build(struct pl_packer *k, size_t K)
{
    for (size_t i = 0; i < k->size; i++) {
        double c = -1, m = -1;
        if (i < K) {
            size_t n = k->order[i];
            c = k->fc[n];
            m = k->fm[n];
        }
        k->tc[k->size + i] = c;
        k->tm[k->size + i] = m;
        k->tb[k->size + i] = leaf_b(k, c, m);
    }
    for (size_t i = k->size - 1; i >= 1; i--)
        tree_pull(k, i);
}

static void tree_update(struct pl_packer *k, size_t n)
{
    size_t i = k->size + k->pos[n];
    k->tc[i] = k->fc[n];
    k->tm[i] = k->fm[n];
    k->tb[i] = leaf_b(k, k->fc[n], k->fm[n]);
    for (i >>= 1; i >= 1; i >>= 1)
        tree_pull(k, i);
}

/* Leftmost position >= from in subtree i (covering [lo, hi)) with free CPU >= cpu
 * and free memory >= mem. Pruning is by the per-dimension maxima, so a subtree
 * may be entered and found wanting; in practice the first candidate fits. */
#ifndef FF_BUDGET
#define FF_BUDGET (1 << 30)
#endif

struct ffq {
    double cpu, mem, b; /* b = min(cpu / cs, mem / ms): no leaf below it fits */
    int budget;
};

static size_t tree_ff_rec(const struct pl_packer *k, size_t i, size_t lo, size_t hi, struct ffq *q)
{
    if (k->tc[i] < q->cpu - PL_EPS || k->tm[i] < q->mem - PL_EPS || k->tb[i] < q->b - 1e-12 ||
        q->budget <= 0)
        return PL_NONE;
    q->budget--;
    if (hi - lo == 1)
        return lo;
    size_t mid = (lo + hi) / 2;
    size_t r = tree_ff_rec(k, 2 * i, lo, mid, q);
    if (r != PL_NONE)
        return r;
    return tree_ff_rec(k, 2 * i + 1, mid, hi, q);
}

/* First fit. When CPU and memory are both fragmented the two maxima can
 * lead into many subtrees where no single node has both, so the search has
 * a budget; past it, the caller falls back to the most-free-CPU node. */
static size_t tree_find(const struct pl_packer *k, double cpu, double mem, int budget,
                        int *exhausted)
{
    struct ffq q = {cpu, mem, fmin(cpu / k->cs, mem / k->ms) * (1 - 1e-9), budget};
    size_t r = tree_ff_rec(k, 1, 0, k->size, &q);
    *exhausted = r == PL_NONE && q.budget <= 0;
    return r;
}

static int sol_has(const struct pl_packer *k, const struct pl_sol *s, size_t w, size_t n)
{
    for (size_t i = k->head[w]; i != PL_NONE; i = k->next[i])
        if (s->a[i].node == n)
            return 1;
    return 0;
}

static int place(struct pl_packer *k, struct pl_sol *s, size_t w, size_t n, double cpu, double mem,
                 int update)
{
    if (s->n == k->next_cap) {
        size_t nc = k->next_cap ? k->next_cap * 2 : 1024;
        size_t *nn = realloc(k->next, nc * sizeof(size_t));
        if (!nn)
            return -ENOMEM;
        k->next = nn;
        k->next_cap = nc;
    }
    if (pl_sol_push(s, w, n, cpu))
        return -ENOMEM;
    k->next[s->n - 1] = k->head[w];
    k->head[w] = s->n - 1;
    k->fc[n] -= cpu;
    k->fm[n] -= mem;
    if (update)
        tree_update(k, n);
    return 0;
}

/* Demand of workload a at level t, or -1 when the level is out of its reach. */
static double demand(const struct pl_ctx *c, size_t a, double t)
{
    double d = placement_utility_inverse(&c->p->workloads[a].utility, t);
    if (!isfinite(d))
        return -1;
    if (d > c->capi[a] * c->maxinst[a] * (1 + 1e-9) + 1e-6)
        return -1;
    return d;
}

/* Position with (nearly) the most free CPU among those with enough memory:
 * branch and bound over the tree, larger child first, pruning subtrees
 * whose CPU maximum cannot beat the best leaf found. When memory is tight
 * the search could visit many subtrees, so after a budget of visits it
 * settles for the best leaf found so far (it never gives up before finding
 * one, so a feasible node is always found if there is one). */
struct maxq {
    double mem;
    size_t best;
    double bestc;
    int budget;
};

static void tree_max_rec(const struct pl_packer *k, size_t i, size_t lo, size_t hi, struct maxq *q)
{
    if (k->tm[i] < q->mem - PL_EPS || k->tc[i] < 0 || k->tc[i] <= q->bestc)
        return;
    if (q->best != PL_NONE && q->budget <= 0)
        return;
    q->budget--;
    if (hi - lo == 1) {
        q->best = lo;
        q->bestc = k->tc[i];
        return;
    }
    size_t mid = (lo + hi) / 2;
    if (k->tc[2 * i] >= k->tc[2 * i + 1]) {
        tree_max_rec(k, 2 * i, lo, mid, q);
        tree_max_rec(k, 2 * i + 1, mid, hi, q);
    } else {
        tree_max_rec(k, 2 * i + 1, mid, hi, q);
        tree_max_rec(k, 2 * i, lo, mid, q);
    }
}

static size_t tree_find_max(const struct pl_packer *k, size_t i, size_t lo, size_t hi, double mem,
                            int budget)
{
    struct maxq q = {mem, PL_NONE, -0.5, budget};
    tree_max_rec(k, i, lo, hi, &q);
    return q.best;
}

/* Hide (or restore) the nodes already hosting app a from the tree, so
 * queries never return a second instance on one node. */
static void hide_hosts(struct pl_packer *k, const struct pl_sol *s, size_t a, int hide)
{
    for (size_t i = k->head[a]; i != PL_NONE; i = k->next[i]) {
        size_t n = s->a[i].node, q = k->size + k->pos[n];
        k->tc[q] = hide ? -1 : k->fc[n];
        k->tm[q] = hide ? -1 : k->fm[n];
        k->tb[q] = hide ? -1 : leaf_b(k, k->fc[n], k->fm[n]);
        for (q >>= 1; q >= 1; q >>= 1)
            tree_pull(k, q);
    }
}

/* Node for one instance of a needing cpu/mem: strategy 0 = first fit in the
 * preference order, 1 = the node with the most free CPU. */
static size_t pick(struct pl_packer *k, const struct pl_sol *out, size_t a, double cpu, double mem,
                   size_t K, int strategy)
{
    const struct pl_ctx *c = k->c;
    if (c->hasreq[a]) {
        size_t best = PL_NONE;
        for (size_t q = 0; q < K; q++) {
            size_t m = k->order[q];
            if (k->fc[m] < cpu - PL_EPS || k->fm[m] < mem - PL_EPS || !pl_eligible(c, a, m) ||
                sol_has(k, out, a, m))
                continue;
            if (strategy == 0)
                return m;
            if (best == PL_NONE || k->fc[m] > k->fc[best])
                best = m;
        }
        return best;
    }
    hide_hosts(k, out, a, 1);
    int exhausted = 0;
    size_t q = strategy == 0 ? tree_find(k, cpu, mem, FF_BUDGET, &exhausted)
                             : tree_find_max(k, 1, 0, k->size, mem, 256);
    /* The most-free-CPU search is approximate (budgeted) by design: it is
     * the fallback strategy, and an exact 2-D search can cost seconds when
     * both CPU and memory are fragmented. First fit stays exact. */
    if (exhausted)
        q = tree_find_max(k, 1, 0, k->size, mem, 256);
    hide_hosts(k, out, a, 0);
    if (q == PL_NONE || q >= K)
        return PL_NONE;
    size_t n = k->order[q];
    if (k->fc[n] < cpu - PL_EPS)
        return PL_NONE;
    return n;
}

static int cmp_demand_desc(const void *x, const void *y)
{
    const struct piece *a = x, *b = y;
    return cmp_piece(a, b);
}

/* Whether whole job a must run at level t: it would sit below t waiting,
 * or it is admitted (frozen by progressive filling, or an extra), or it runs
 * and the mode keeps running jobs. */
static int whole_must(const struct pl_ctx *c, const struct pl_pack_args *pa, size_t a, double t)
{
    if (pa->admit && pa->admit[a])
        return 1;
    if (pa->mode == PL_PACK_KEEP && c->onnode[a])
        return 1;
    return c->u0[a] < t - 1e-12;
}

static int pack_once(struct pl_packer *k, const struct pl_pack_args *pa, double t,
                     struct pl_sol *out, int *failed, int strategy, int fresh)
{
    const struct pl_ctx *c = k->c;
    const struct placement_problem *p = c->p;
    size_t K = pa->K;
    int best_effort = pa->failed_mark != NULL;
    *failed = 0;
    out->n = 0;
    for (size_t n = 0; n < c->N; n++) {
        int in = k->pos[n] < K;
        k->fc[n] = in ? c->cap[n] * pa->capfactor : -1;
        k->fm[n] = in ? c->mem[n] : -1;
    }
    for (size_t a = 0; a < c->W; a++) {
        k->head[a] = PL_NONE;
        k->left[a] = 0;
        k->dem[a] = 0;
        if (!c->placeable[a] || (pa->excluded && pa->excluded[a]))
            continue;
        double ta = pa->lvcap && pa->lvcap[a] < t ? pa->lvcap[a] : t;
        double d;
        if (c->busy[a]) {
            d = c->busycpu[a]; /* stays as it is, at any level */
        } else if (c->whole[a]) {
            /* All or nothing: placed at its cap, or left waiting at u0. */
            int must = whole_must(c, pa, a, ta);
            d = c->umax[a] < ta - 1e-9 && !(pa->admit && pa->admit[a]) ? -1 : must ? c->capi[a] : 0;
            if (d >= 0 && !must) {
                k->dem[a] = 0;
                continue; /* left = 0: not placed */
            }
        } else {
            d = demand(c, a, ta);
        }
        if (d < 0) {
            if (!best_effort)
                return (*failed = 1), 0;
            pa->failed_mark[a] = 1;
            continue;
        }
        k->dem[a] = d; /* remaining demand */
        /* A job that needs no CPU at this level but runs today keeps running:
         * suspending it would be an action with nothing to gain. */
        if (p->workloads[a].kind == PLACEMENT_JOB)
            k->left[a] = (d > 0 || p->workloads[a].cur_node >= 0) ? 1 : 0;
        else
            k->left[a] = c->maxinst[a];
    }
    /* Sticky phase: work returns to where it runs today, jobs first (they
     * cannot split), then app instances take what their node has left. A
     * fresh packing skips it (the caller relabels identical nodes after);
     * without knobs a running job that cannot stay makes the level fail. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < p->ncurrent; i++) {
            size_t a = p->current[i].workload, n = p->current[i].node;
            int is_job = p->workloads[a].kind == PLACEMENT_JOB;
            if (is_job != (pass == 0) || k->left[a] <= 0 || k->pos[n] >= K ||
                (fresh && !c->busy[a]))
                continue;
            int pinned = is_job && ((pa->mode == PL_PACK_KEEP && c->onnode[a]) || c->busy[a]);
            double mem = p->workloads[a].memory_mb;
            if (k->fm[n] < mem - PL_EPS || sol_has(k, out, a, n) || !pl_eligible(c, a, n)) {
                if (pinned)
                    return (*failed = 1), 0;
                continue;
            }
            double take = is_job ? k->dem[a] : fmin(k->dem[a], fmin(c->capi[a], k->fc[n]));
            if (take < 0)
                take = 0;
            if (k->fc[n] < take - PL_EPS) {
                /* Without knobs a running job stays, on what its node has
                 * left (it shares it today, e.g. beside work whose action is
                 * still in flight). */
                if (!pinned)
                    continue;
                take = fmax(0, k->fc[n]);
            }
            if (!is_job && take <= 1e-9 && k->dem[a] > 1e-9)
                continue; /* a full node: let the app grow elsewhere */
            if (place(k, out, a, n, take, mem, 0))
                return -ENOMEM;
            k->left[a]--;
            k->dem[a] -= take;
        }
    }
    tree_build(k, K);
    /* Jobs: one rigid piece each, decreasing CPU. Apps: splittable demand,
     * largest first, poured into the nodes with the most free CPU. */
    size_t np = 0;
    for (size_t a = 0; a < c->W; a++) {
        int is_job = p->workloads[a].kind == PLACEMENT_JOB;
        if (!is_job && k->left[a] <= 0 && k->dem[a] > 1e-6 && c->placeable[a] &&
            !(pa->excluded && pa->excluded[a])) {
            /* Every instance slot is used by the sticky phase and demand is
             * still unmet: this level does not pack (it used to be skipped
             * silently, so bisection believed an infeasible level). */
            if (!best_effort)
                return (*failed = 1), 0;
            pa->failed_mark[a] = 1;
            continue;
        }
        if (k->left[a] <= 0 ||
            (!is_job && k->dem[a] <= 1e-9 && k->head[a] != PL_NONE && 0 >= c->mininst[a]))
            continue;
        if (!is_job && k->dem[a] <= 1e-9 && c->mininst[a] == 0)
            continue;
        if (np == k->npieces_cap) {
            size_t nc = k->npieces_cap * 2;
            struct piece *pp = realloc(k->pieces, nc * sizeof(*pp));
            if (!pp)
                return -ENOMEM;
            k->pieces = pp;
            k->npieces_cap = nc;
        }
        ((struct piece *)k->pieces)[np++] = (struct piece){a, k->dem[a], p->workloads[a].memory_mb};
    }
    struct piece *pcs = k->pieces;
    if (np)
        qsort(pcs, np, sizeof(*pcs), cmp_demand_desc);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < np; i++) {
            size_t a = pcs[i].w;
            int is_job = p->workloads[a].kind == PLACEMENT_JOB;
            if (is_job != (pass == 0) || (pa->failed_mark && pa->failed_mark[a]))
                continue;
            int ok = 1;
            if (is_job) {
                size_t n = pick(k, out, a, pcs[i].cpu, pcs[i].mem, K, strategy);
                if (n == PL_NONE)
                    ok = 0;
                else if (place(k, out, a, n, pcs[i].cpu, pcs[i].mem, 1))
                    return -ENOMEM;
            } else {
                int inst = 0;
                for (size_t j = k->head[a]; j != PL_NONE; j = k->next[j])
                    inst++;
                while (ok && (k->dem[a] > 1e-6 || inst < c->mininst[a])) {
                    if (inst >= c->maxinst[a]) {
                        ok = 0;
                        break;
                    }
                    /* The whole remaining piece on one node if any node can
                     * take it (same strategy as jobs), else the node with the
                     * most free CPU takes what it can. */
                    double want = fmin(k->dem[a], c->capi[a]);
                    size_t n = pick(k, out, a, want, pcs[i].mem, K, strategy);
                    if (n == PL_NONE)
                        n = pick(k, out, a, k->dem[a] > 1e-6 ? 1e-6 : 0, pcs[i].mem, K, 1);
                    if (n == PL_NONE) {
                        ok = 0;
                        break;
                    }
                    double take = fmin(k->dem[a], fmin(c->capi[a], k->fc[n]));
                    if (take < 0)
                        take = 0;
                    if (place(k, out, a, n, take, pcs[i].mem, 1))
                        return -ENOMEM;
                    k->dem[a] -= take;
                    inst++;
                }
            }
            if (!ok) {
                if (!best_effort)
                    return (*failed = 1), 0;
                pa->failed_mark[a] = 1;
            }
        }
    }
    if (best_effort) {
        /* A workload that lost any piece is left out entirely (its other
         * pieces are dropped): half an application is reported, not hidden. */
        size_t j = 0;
        for (size_t i = 0; i < out->n; i++)
            if (!pa->failed_mark[out->a[i].workload])
                out->a[j++] = out->a[i];
        out->n = j;
        for (size_t a = 0; a < c->W; a++)
            if (pa->failed_mark[a])
                *failed = 1;
    }
    return 0;
}

int pl_pack(struct pl_packer *k, const struct pl_pack_args *pa, double t, struct pl_sol *out,
            int *failed)
{
    /* First fit keeps nodes full (good for consolidation and few moves);
     * when it fails, spreading jobs by free CPU often still fits. */
    k->fresh_used = 0;
    int rc = pack_once(k, pa, t, out, failed, 0, 0);
    if (rc || !*failed || pa->failed_mark)
        return rc;
    if (!pa->ff_only && ((rc = pack_once(k, pa, t, out, failed, 1, 0)) || !*failed))
        return rc;
    /* Moves allowed: today's placement may be what blocks the level (a
     * fragmented cluster); a fresh packing, relabelled afterwards, often
     * fits where the sticky one does not. */
    if (pa->mode != PL_PACK_STICKY)
        return rc;
    if ((rc = pack_once(k, pa, t, out, failed, 0, 1)) || !*failed) {
        k->fresh_used = !*failed;
        return rc;
    }
    if (pa->ff_only)
        return rc;
    rc = pack_once(k, pa, t, out, failed, 1, 1);
    k->fresh_used = !rc && !*failed;
    return rc;
}

int pl_best_level(struct pl_packer *k, const struct pl_pack_args *pa, struct pl_sol *out,
                  double *level)
{
    double fail;
    return pl_best_level_fail(k, pa, out, level, &fail);
}

int pl_best_level_fail(struct pl_packer *k, const struct pl_pack_args *pa, struct pl_sol *out,
                       double *level, double *fail)
{
    *fail = INFINITY;
    const struct pl_ctx *c = k->c;
    double lo = INFINITY, hi = INFINITY, capmax = -INFINITY;
    for (size_t a = 0; a < c->W; a++) {
        if (!c->placeable[a] || (pa->excluded && pa->excluded[a]))
            continue;
        double u0 = c->whole[a] ? c->u0[a] : c->p->workloads[a].utility.util[0];
        if (u0 < lo)
            lo = u0;
        if (c->busy[a])
            continue; /* fixed load: no level moves it */
        if (pa->lvcap && isfinite(pa->lvcap[a])) {
            capmax = fmax(capmax, pa->lvcap[a]); /* frozen: its level is capped */
            continue;
        }
        if (c->umax[a] < hi)
            hi = c->umax[a];
    }
    if (!isfinite(hi))
        hi = isfinite(capmax) ? capmax : lo;
    if (!isfinite(lo)) { /* nothing to place */
        out->n = 0;
        *level = 0;
        return 0;
    }
    int failed, rc;
    if ((rc = pl_pack(k, pa, lo, out, &failed)))
        return rc;
    if (failed) {
        *level = -INFINITY;
        return 0;
    }
    if ((rc = pl_pack(k, pa, hi, out, &failed)))
        return rc;
    if (!failed) {
        *level = hi;
        return 0;
    }
    for (int it = 0; it < 60 && hi - lo > 1e-6 * fmax(1, fabs(hi)); it++) {
        double mid = 0.5 * (lo + hi);
        if ((rc = pl_pack(k, pa, mid, out, &failed)))
            return rc;
        if (failed)
            hi = mid;
        else
            lo = mid;
    }
    *level = lo;
    *fail = hi;
    return pl_pack(k, pa, lo, out, &failed);
}

/* ---------------------------------------------------------------- refine */

/* Give workload a enough CPU on its own instances to reach `level` (or its
 * cap), taking from free CPU `fc`. Instances with the most room go first,
 * which is what a flow would do for the few instances an app has. With
 * `apply`, allocations are written into s and cpu[a]. Returns 1 when the
 * level (or the cap) is reached. */
static int grow_to(const struct pl_ctx *c, size_t a, double level, double *fc, struct pl_sol *s,
                   const size_t *head, const size_t *next, double *cpu, double capsum, int apply)
{
    double need = placement_utility_inverse(&c->p->workloads[a].utility, level);
    if (need > capsum)
        need = capsum;
    need -= cpu[a];
    while (need > 1e-9) {
        size_t best = PL_NONE;
        double room = 0;
        for (size_t i = head[a]; i != PL_NONE; i = next[i]) {
            double r = fmin(c->capi[a] - s->a[i].cpu_mhz, fc[s->a[i].node]);
            if (r > room + 1e-12) {
                room = r;
                best = i;
            }
        }
        if (best == PL_NONE || room <= 1e-9)
            break;
        double g = fmin(room, need);
        fc[s->a[best].node] -= g;
        need -= g;
        if (apply) {
            s->a[best].cpu_mhz += g;
            cpu[a] += g;
        } else {
            /* tentative: remember the grant in the instance so the next pick
             * sees it; undone by the caller */
            s->a[best].cpu_mhz += g;
            cpu[a] += g;
        }
    }
    return need <= 1e-6;
}

/* Progressive filling on a fixed placement: raise every unsaturated workload
 * to the highest common level the free CPU on its own nodes allows, freeze
 * the ones that cannot grow further, repeat. Rigid jobs are served before
 * apps, whose demand can flow to whichever instance has room. This
 * approximates the lexicographic max-min refinement without another solve. */
int pl_refine(const struct pl_ctx *c, const int *usable, struct pl_sol *s)
{
    size_t N = c->N ? c->N : 1, W = c->W ? c->W : 1;
    double *fc = malloc(N * sizeof(double)), *tmp = malloc(N * sizeof(double));
    double *cpu = calloc(W, sizeof(double)), *cpu_save = malloc(W * sizeof(double));
    double *inst_save = malloc((s->n ? s->n : 1) * sizeof(double));
    double *capsum = calloc(W, sizeof(double));
    size_t *head = malloc(W * sizeof(size_t)), *next = malloc((s->n ? s->n : 1) * sizeof(size_t));
    size_t *ord = malloc(W * sizeof(size_t));
    unsigned char *act = calloc(W, 1);
    int rc = -ENOMEM;
    if (!fc || !tmp || !cpu || !cpu_save || !inst_save || !capsum || !head || !next || !ord || !act)
        goto out;
    for (size_t n = 0; n < c->N; n++)
        fc[n] = (!usable || usable[n]) ? c->cap[n] : 0;
    for (size_t a = 0; a < c->W; a++)
        head[a] = PL_NONE;
    for (size_t i = 0; i < s->n; i++) {
        struct placement_assign *x = &s->a[i];
        fc[x->node] -= x->cpu_mhz;
        cpu[x->workload] += x->cpu_mhz;
        capsum[x->workload] += c->capi[x->workload];
        next[i] = head[x->workload];
        head[x->workload] = i;
    }
    size_t nact = 0, nord = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t a = 0; a < c->W; a++)
            if (head[a] != PL_NONE && (c->p->workloads[a].kind == PLACEMENT_JOB) == (pass == 0))
                ord[nord++] = a;
    for (size_t a = 0; a < c->W; a++) {
        if (head[a] == PL_NONE || c->busy[a])
            continue;
        act[a] = 1;
        nact++;
    }
    for (int round = 0; round < 12 && nact > 0; round++) {
        double lo = INFINITY, hi = -INFINITY;
        for (size_t a = 0; a < c->W; a++) {
            if (!act[a])
                continue;
            double u = placement_utility_eval(&c->p->workloads[a].utility, cpu[a]);
            double um = placement_utility_eval(&c->p->workloads[a].utility, capsum[a]);
            lo = fmin(lo, u);
            hi = fmax(hi, um);
        }
        /* feasible(level): every active workload below level gets what it
         * needs (or its cap) from free CPU on its own nodes. Tentative grants
         * are undone from the saved allocations. */
        double best = lo;
        memcpy(cpu_save, cpu, c->W * sizeof(double));
        for (size_t i = 0; i < s->n; i++)
            inst_save[i] = s->a[i].cpu_mhz;
        for (int it = 0; it < 50 && hi - lo > 1e-7; it++) {
            double mid = (it == 0) ? hi : 0.5 * (lo + hi);
            memcpy(tmp, fc, c->N * sizeof(double));
            int ok = 1;
            for (size_t k = 0; k < nord && ok; k++)
                if (act[ord[k]])
                    ok = grow_to(c, ord[k], mid, tmp, s, head, next, cpu, capsum[ord[k]], 0);
            memcpy(cpu, cpu_save, c->W * sizeof(double));
            for (size_t i = 0; i < s->n; i++)
                s->a[i].cpu_mhz = inst_save[i];
            if (ok) {
                best = mid;
                if (it == 0)
                    break;
                lo = mid;
            } else if (it > 0) {
                hi = mid;
            }
        }
        /* Apply `best`, then freeze workloads that cannot grow any further. */
        for (size_t k = 0; k < nord; k++)
            if (act[ord[k]])
                grow_to(c, ord[k], best, fc, s, head, next, cpu, capsum[ord[k]], 1);
        for (size_t a = 0; a < c->W; a++) {
            if (!act[a])
                continue;
            double u = placement_utility_eval(&c->p->workloads[a].utility, cpu[a]);
            double um = placement_utility_eval(&c->p->workloads[a].utility, capsum[a]);
            int grow = 0;
            if (u < um - 1e-9)
                for (size_t i = head[a]; i != PL_NONE && !grow; i = next[i])
                    grow = fc[s->a[i].node] > 1e-6 && s->a[i].cpu_mhz < c->capi[a] - 1e-6;
            if (!grow) {
                act[a] = 0;
                nact--;
            }
        }
    }
    rc = 0;
out:
    free(fc);
    free(tmp);
    free(cpu);
    free(cpu_save);
    free(inst_save);
    free(capsum);
    free(head);
    free(next);
    free(ord);
    free(act);
    return rc;
}

size_t pl_min_prefix(const struct pl_packer *k, const int *excluded, double t, double capfactor)
{
    const struct pl_ctx *c = k->c;
    double cpu = 0, mem = 0;
    for (size_t a = 0; a < c->W; a++) {
        if (!c->placeable[a] || (excluded && excluded[a]))
            continue;
        double d = demand(c, a, t);
        if (d < 0)
            return c->N;
        cpu += d;
        double inst = ceil(d / c->capi[a] - 1e-9);
        if (inst < c->mininst[a])
            inst = c->mininst[a];
        mem += inst * c->p->workloads[a].memory_mb;
    }
    double hc = 0, hm = 0;
    for (size_t i = 0; i < c->N; i++) {
        size_t n = k->order[i];
        hc += c->cap[n] * capfactor;
        hm += c->mem[n];
        if (hc >= cpu * (1 - 1e-9) && hm >= mem * (1 - 1e-9))
            return i + 1;
    }
    return c->N;
}

/* ---------------------------------------------------------------- bound */

/* Aggregate relaxation of the LP relaxation: all CPU pooled, all memory
 * pooled (an instance holding w MHz needs at least w / cap of an instance's
 * memory), every workload capped by its own instances. Any feasible MILP
 * solution satisfies these, so the highest level meeting them bounds t. */
static int fluid_ok(const struct pl_ctx *c, const int *excluded, double t, double capsum,
                    double memsum)
{
    double cpu = 0, mem = 0;
    for (size_t a = 0; a < c->W; a++) {
        if (!c->placeable[a] || (excluded && excluded[a]))
            continue;
        double d = demand(c, a, t);
        if (d < 0)
            return 0;
        cpu += d;
        double inst = d / c->capi[a];
        if (inst < c->mininst[a])
            inst = c->mininst[a];
        mem += inst * c->p->workloads[a].memory_mb;
    }
    return cpu <= capsum * (1 + 1e-9) && mem <= memsum * (1 + 1e-9);
}

double pl_fluid_bound(const struct pl_ctx *c, const int *excluded)
{
    double capsum = 0, memsum = 0, lo = INFINITY, hi = INFINITY;
    for (size_t n = 0; n < c->N; n++) {
        capsum += c->cap[n];
        memsum += c->mem[n];
    }
    for (size_t a = 0; a < c->W; a++) {
        if (!c->placeable[a] || (excluded && excluded[a]))
            continue;
        lo = fmin(lo, c->p->workloads[a].utility.util[0]);
        hi = fmin(hi, c->umax[a]);
    }
    if (!isfinite(lo))
        return 0;
    if (fluid_ok(c, excluded, hi, capsum, memsum))
        return hi;
    if (!fluid_ok(c, excluded, lo, capsum, memsum))
        return lo;
    for (int it = 0; it < 60 && hi - lo > 1e-9; it++) {
        double mid = 0.5 * (lo + hi);
        if (fluid_ok(c, excluded, mid, capsum, memsum))
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

double placement_fluid_bound(const struct placement_problem *p)
{
    struct pl_ctx c;
    if (pl_ctx_init(&c, p))
        return INFINITY;
    double b = pl_fluid_bound(&c, NULL);
    pl_ctx_fini(&c);
    return b;
}

/* Work that needed no CPU at the packing level (a queued job whose utility
 * at zero CPU is already above the minimum) still deserves spare CPU: start
 * it where free CPU and memory are largest, and let pl_refine size it. Must
 * follow the pl_pack that produced `s`. */
int pl_place_idle(struct pl_packer *k, size_t K, const int *excluded, struct pl_sol *s)
{
    const struct pl_ctx *c = k->c;
    for (size_t a = 0; a < c->W; a++) {
        /* Whole jobs run at their cap or not at all (pl_admit_extras). */
        if (!c->placeable[a] || (excluded && excluded[a]) || k->head[a] != PL_NONE || c->whole[a] ||
            c->busy[a])
            continue;
        const struct placement_workload *w = &c->p->workloads[a];
        if (c->umax[a] <= w->utility.util[0] + 1e-12)
            continue; /* CPU would not help it */
        size_t n = pick(k, s, a, 1.0, w->memory_mb, K, 1);
        if (n == PL_NONE)
            continue;
        if (place(k, s, a, n, 0, w->memory_mb, 1))
            return -ENOMEM;
    }
    return 0;
}

/* ---------------------------------------------------------------- extras */

int pl_admit_extras(struct pl_packer *k, size_t K, const size_t *cand, size_t ncand,
                    unsigned char *admit, struct pl_sol *s)
{
    const struct pl_ctx *c = k->c;
    const struct placement_problem *p = c->p;
    for (size_t i = 0; i < ncand; i++) {
        size_t a = cand[i];
        if (k->head[a] != PL_NONE || !c->whole[a])
            continue;
        double cpu = c->capi[a], mem = p->workloads[a].memory_mb;
        size_t n = PL_NONE;
        int cur = p->workloads[a].cur_node;
        if (cur >= 0 && (size_t)cur < c->N && k->pos[cur] < K && k->fc[cur] >= cpu - PL_EPS &&
            k->fm[cur] >= mem - PL_EPS && pl_eligible(c, a, (size_t)cur))
            n = (size_t)cur;
        if (n == PL_NONE)
            n = pick(k, s, a, cpu, mem, K, 0);
        if (n == PL_NONE)
            continue;
        if (place(k, s, a, n, cpu, mem, 1))
            return -ENOMEM;
        admit[a] = 1;
    }
    return 0;
}

int pl_packer_load(struct pl_packer *k, size_t K, const struct pl_sol *s)
{
    const struct pl_ctx *c = k->c;
    const struct placement_problem *p = c->p;
    if (s->n > k->next_cap) {
        size_t *nn = realloc(k->next, s->n * sizeof(size_t));
        if (!nn)
            return -ENOMEM;
        k->next = nn;
        k->next_cap = s->n;
    }
    for (size_t n = 0; n < c->N; n++) {
        int in = k->pos[n] < K;
        k->fc[n] = in ? c->cap[n] : -1;
        k->fm[n] = in ? c->mem[n] : -1;
    }
    for (size_t a = 0; a < c->W; a++)
        k->head[a] = PL_NONE;
    for (size_t i = 0; i < s->n; i++) {
        size_t a = s->a[i].workload, n = s->a[i].node;
        k->fc[n] -= s->a[i].cpu_mhz;
        k->fm[n] -= p->workloads[a].memory_mb;
        k->next[i] = k->head[a];
        k->head[a] = i;
    }
    tree_build(k, K);
    return 0;
}
