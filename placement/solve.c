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
 *     Under contention the plans that keep running jobs in place and that
 *     may move them are compared with the current placement (compare.c).
 *  3. GLPK (exact.c): the bound, and where the options ask for it a MILP
 *     that improves the heuristic's placement; it is taken only when it pays
 *     like any other move (compare.c: pl_exact_pays).
 *  4. Consolidation's hysteresis: the new placement must beat the current
 *     one (CPU re-divided, whole jobs kept whole) by `hysteresis` plus the
 *     utility cost of its disruptive actions, unless power states change.
 *  5. The band balancer (balance.c) and the action planner (plan.c) finish
 *     the decision.
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
static int build_order(const struct pl_ctx *c, int saving, size_t *order, size_t *n_must,
                       size_t *n_on)
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
        if (nd->powered_on && (!nd->can_power_off || !saving)) {
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
    int saving; /* power saving applies to this decision */
};

/* Power saving packs what runs; it must not switch a node off while work
 * waits (queued or suspended jobs that fit some node), or a job would wait
 * for the same node to boot again. While work waits, no node is switched off
 * and nodes are switched on as the waiting work needs them (nodes_needed). */
static int power_saving_applies(const struct pl_ctx *c)
{
    const struct placement_problem *p = c->p;
    if (!p->opts.power_saving)
        return 0;
    for (size_t w = 0; w < p->nworkloads; w++)
        if (p->workloads[w].kind == PLACEMENT_JOB && c->placeable[w] &&
            (p->workloads[w].state == PLACEMENT_JOB_QUEUED ||
             p->workloads[w].state == PLACEMENT_JOB_SUSPENDED))
            return 0;
    return 1;
}

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

/* Whether the plan on K nodes leaves no workload more than the hysteresis
 * worse off than the plan on all of them, rank by rank (sorted), where that
 * plan has it below the goal: power saving promises goals, not maxima. */
static int within(const double *vk, const double *vall, size_t n, const struct placement_options *o)
{
    for (size_t i = 0; i < n; i++)
        if (vk[i] < fmin(vall[i], o->goal_utility) - o->hysteresis - 1e-9)
            return 0;
    return 1;
}

/* Waiting work deferred by the plan on K nodes (CPU the plan on every node
 * gives waiting jobs, less what the K-node plan gives them) may wait for
 * room on the nodes that are on while the next node to boot could run all
 * of it: a node is switched on for more waiting work than one node holds
 * (a queue builds up), or for a job that would otherwise miss its goal
 * (within), not for a job that can start in the next gap. */
static int enough(const struct run *r, size_t K, double deferred)
{
    size_t next = r->order[K < r->c.N ? K : r->c.N - 1];
    return deferred <= r->c.cap[next] + 1e-6;
}

/* The fewest nodes (at least *K, the ones on) whose plan is within the
 * hysteresis of the plan on every node (within): a node boots for a waiting
 * job, or for an application or a late job that needs it to reach its goal,
 * not for its own sake. */
static int nodes_needed(struct run *r, const struct pl_choice *ch, size_t *K)
{
    size_t N = r->c.N, W = r->c.W ? r->c.W : 1, nv = 0, nk = 0;
    double sall = 0, sk = 0;
    double *vall = malloc(W * sizeof(double)), *vk = malloc(W * sizeof(double));
    int rc = -ENOMEM;
    if (!vall || !vk)
        goto out;
    set_usable(r, N);
    if ((rc = pl_plan_vector(ch, N, vall, &nv, &sall)))
        goto out;
    size_t lo = *K ? *K : 1, hi = N;
    set_usable(r, lo);
    if ((rc = pl_plan_vector(ch, lo, vk, &nk, &sk)))
        goto out;
    if (nk == nv && enough(r, lo, sall - sk) && within(vk, vall, nv, r->c.o)) {
        *K = lo;
        goto out;
    }
    lo++;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        set_usable(r, mid);
        if ((rc = pl_plan_vector(ch, mid, vk, &nk, &sk)))
            goto out;
        if (nk == nv && enough(r, mid, sall - sk) && within(vk, vall, nv, r->c.o))
            hi = mid;
        else
            lo = mid + 1;
    }
    *K = hi;
out:
    free(vall);
    free(vk);
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
    r.saving = power_saving_applies(c);
    if ((rc = build_order(c, r.saving, r.order, &r.n_must, &r.n_on)) ||
        (rc = pl_packer_init(&r.k, c, r.order)))
        goto fail;
    struct pl_choice ch = {&r.k, r.excluded, r.usable, r.cpu, r.util};

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
    /* The mode: one packing tells whether every goal is reachable. */
    int goals_met = r.saving && pack_ok(&r, c->N, o->goal_utility, 1.0, &r.sol, &rc);
    if (rc)
        goto fail;

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
        /* Power saving is off: every node may take work; one that receives
         * none stays off. */
        K = c->N;
        set_usable(&r, K);
        if ((rc = pl_choose_contention(&ch, K, &r.sol, d, note, sizeof(note))))
            goto fail;
    } else {
        /* Power saving, but some workload misses its goal or work waits:
         * the nodes that are on, and as many more (in packing order) as it
         * takes for no workload to end up more than the hysteresis worse
         * off than with every node. Nothing is switched off. */
        K = r.n_on;
        if (K < c->N && (rc = nodes_needed(&r, &ch, &K)))
            goto fail;
        if (K > r.n_on)
            snprintf(note, sizeof(note),
                     "power saving: %zu more node(s) on, a workload would miss its goal on the "
                     "%zu that are on",
                     K - r.n_on, r.n_on);
        else if (K < c->N)
            snprintf(note, sizeof(note),
                     "power saving: %zu of %zu nodes on (more would bring no workload nearer "
                     "its goal)",
                     K, c->N);
        if (K == 0)
            K = c->N;
        double lv = level_at(&r, K, &r.sol, &rc);
        if (rc)
            goto fail;
        if (!isfinite(lv)) /* minimum instances need more nodes */
            K = c->N;
        set_usable(&r, K);
        if ((rc = pl_choose_contention(&ch, K, &r.sol, d, note, sizeof(note))))
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
            if ((rc = pl_exact_pays(&ch, &heur, &r.sol, &better))) {
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
    size_t nsorted = pl_sorted_utils(c, r.excluded, r.util, sorted_new);

    /* 4. Hysteresis against the current placement with CPU re-divided. */
    {
        int *on = calloc(N, sizeof(int));
        if (!on) {
            rc = -ENOMEM;
            goto fail;
        }
        for (size_t n = 0; n < c->N; n++)
            on[n] = p->nodes[n].powered_on;
        rc = pl_current_redivided(c, on, &r.cur);
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
        pl_sorted_utils(c, r.excluded, r.util, sorted_keep);
        gain = pl_lex_gain(sorted_new, sorted_keep, nsorted);
        free(sorted_keep);
        free(sorted_new);
    }
    int nchanges = 0;
    double cost = pl_change_cost(c, &r.cur, &r.sol, &nchanges);
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
