/*
 * exact.c - the GLPK side of a decision: the upper bound reported with every
 * decision and, where the options ask for it, GLPK improving the heuristic's
 * placement. The heuristic's answer is the incumbent: whatever GLPK does, the
 * placement handed back is never worse than it.
 *
 *  1. Bound: the aggregated LP (lpbound.c), certified, bisected from the
 *     heuristic's level; its first probe says whether the heuristic is
 *     already optimal, and then nothing else runs.
 *  2. Improve: restricted MILPs (milp.c) around the workloads near the
 *     minimum, a large-neighbourhood search with GLPK as the inner solver:
 *     while the minimum rises, go again; when it does not, widen the
 *     neighbourhood (more workloads, more candidate nodes, nodes to
 *     repack). Small problems end with the full model, which proves
 *     optimality.
 *  3. Levels: the lowest level above the workloads already at their best and
 *     then the sum of utilities, with placement changes (the full model on
 *     small problems, neighbourhoods on large ones), kept only when
 *     lexicographically better; then LPs over the final placement
 *     (progressive filling, fill.c).
 *
 * One deadline (options.time_limit_s from the start of this stage) covers
 * all of it, but it is only the safety net: the work is bounded by counted
 * units (simplex iterations and branch-and-bound nodes weighted by model
 * size) from options.work_limit or time_limit_s, so a snapshot gives the same
 * decision run after run.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glpk_util.h"
#include "heuristic.h"
#include "export.h"
#include "lpbound.h"

#define BOUND_TOL 1e-6 /* precision of the bound; "at the bound" below this */
/* The full model (every pair) is built only up to this size whatever
 * exact_max_pairs says: beyond it building and factorising it alone would
 * outlast any sensible time limit. */
#define FULL_MAX_PAIRS 50000
#define LEX_SUM_WEIGHT 0.01 /* stage 2: the sum of utilities, after the level */

/* Utilities with whole jobs valued all or nothing: u(cap) when they have
 * their whole cap, else u(0). */
static void eval_whole(const struct pl_ctx *c, const struct pl_sol *s, double *cpu, double *util)
{
    pl_sol_eval(c, s, cpu, util, NULL, NULL);
    for (size_t a = 0; a < c->W; a++)
        if (pl_whole(c, a) && cpu[a] < c->capi[a] * (1 - 1e-6))
            util[a] = placement_utility_eval(&c->p->workloads[a].utility, 0);
}

static double min_util(const struct pl_ctx *c, const int *excluded, const struct pl_sol *s)
{
    size_t W = c->W ? c->W : 1;
    double *cpu = calloc(W, sizeof(double)), *util = calloc(W, sizeof(double));
    double m = INFINITY;
    if (cpu && util) {
        eval_whole(c, s, cpu, util);
        for (size_t a = 0; a < c->W; a++)
            if (pl_in(c, excluded, a) && util[a] < m)
                m = util[a];
    }
    free(cpu);
    free(util);
    return isfinite(m) ? m : 0;
}

/* Whole jobs holding less than their cap are worth u(0) and only take room:
 * the incumbent GLPK starts from leaves them out. */
static int drop_partial_whole(const struct pl_ctx *c, struct pl_sol *s)
{
    size_t W = c->W ? c->W : 1;
    double *cpu = calloc(W, sizeof(double));
    if (!cpu)
        return -ENOMEM;
    for (size_t i = 0; i < s->n; i++)
        cpu[s->a[i].workload] += s->a[i].cpu_mhz;
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        size_t a = s->a[i].workload;
        if (pl_whole(c, a) && cpu[a] < c->capi[a] * (1 - 1e-6))
            continue;
        s->a[k++] = s->a[i];
    }
    s->n = k;
    free(cpu);
    return 0;
}

/* Work budget (units of milp.c: about a simplex iteration on a small
 * model) from the options alone, so it is the same on every machine: about
 * 15,000 units per second of time limit, which a loaded 2-core machine
 * gets through in well under that second; the clock only catches the
 * pathological case. */
static long work_budget(const struct pl_ctx *c)
{
    if (c->o->work_limit > 0)
        return c->o->work_limit;
    return (long)fmin(15000.0 * c->o->time_limit_s, 1e7);
}

static void add_text(char *note, size_t notesz, const char *text)
{
    size_t l = strlen(note);
    if (l + 3 < notesz)
        snprintf(note + l, notesz - l, "%s%s", l ? "; " : "", text);
}

struct wu {
    double u;
    size_t a;
};

static int cmp_wu(const void *x, const void *y)
{
    const struct wu *p = x, *q = y;
    if (p->u != q->u)
        return p->u < q->u ? -1 : 1;
    return p->a < q->a ? -1 : (p->a > q->a);
}

/* Workloads at the minimum (within 1e-6). */
static size_t count_at_min(const struct pl_ctx *c, const int *excluded, const struct pl_sol *s)
{
    size_t W = c->W ? c->W : 1, n = 0;
    double *cpu = calloc(W, sizeof(double)), *u = calloc(W, sizeof(double));
    if (cpu && u) {
        eval_whole(c, s, cpu, u);
        double t = INFINITY;
        for (size_t a = 0; a < c->W; a++)
            if (pl_in(c, excluded, a))
                t = fmin(t, u[a]);
        for (size_t a = 0; a < c->W; a++)
            n += pl_in(c, excluded, a) && u[a] <= t + 1e-6;
    }
    free(cpu);
    free(u);
    return n;
}

/* Mark the `fmax` lowest workloads within `delta` of the minimum as free,
 * and every workload on the `qnodes` nodes with the most room for the lowest
 * one: packing problems (a whole job that fits nowhere as things stand) are
 * solved by repacking a few nodes, not by moving the job alone. */
static int pick_free(const struct pl_ctx *c, const int *excluded, const struct pl_sol *s,
                     double delta, size_t fmax, size_t qnodes, size_t rot, int *free_wl,
                     size_t *nfree)
{
    size_t W = c->W ? c->W : 1;
    double *cpu = calloc(W, sizeof(double)), *util = calloc(W, sizeof(double));
    struct wu *v = malloc(W * sizeof(*v));
    if (!cpu || !util || !v) {
        free(cpu);
        free(util);
        free(v);
        return -ENOMEM;
    }
    eval_whole(c, s, cpu, util);
    size_t n = 0;
    double t = INFINITY;
    for (size_t a = 0; a < c->W; a++) {
        free_wl[a] = 0;
        if (pl_in(c, excluded, a) && !c->busy[a]) {
            v[n++] = (struct wu){util[a], a};
            t = fmin(t, util[a]);
        }
    }
    qsort(v, n, sizeof(*v), cmp_wu);
    *nfree = 0;
    for (size_t i = 0; i < n && *nfree < fmax && v[i].u <= t + delta; i++) {
        free_wl[v[i].a] = 1;
        (*nfree)++;
    }
    if (qnodes && n && c->N) {
        /* the workloads at the minimum take turns (round `rot`), so the
         * rounds repack around different ones */
        size_t nlow = 0;
        while (nlow < n && v[nlow].u <= t + 1e-6)
            nlow++;
        size_t a0 = v[nlow ? rot % nlow : 0].a, N = c->N;
        double *fc = malloc(N * sizeof(double)), *fm = malloc(N * sizeof(double));
        struct wu *nv = malloc(N * sizeof(*nv));
        if (!fc || !fm || !nv) {
            free(fc);
            free(fm);
            free(nv);
            free(cpu);
            free(util);
            free(v);
            return -ENOMEM;
        }
        for (size_t k = 0; k < N; k++) {
            fc[k] = c->cap[k];
            fm[k] = c->mem[k];
        }
        for (size_t i = 0; i < s->n; i++) {
            fc[s->a[i].node] -= s->a[i].cpu_mhz;
            fm[s->a[i].node] -= c->p->workloads[s->a[i].workload].memory_mb;
        }
        size_t m = 0;
        for (size_t k = 0; k < N; k++)
            if (pl_eligible(c, a0, k)) /* most room first (negated for the ascending sort) */
                nv[m++] = (struct wu){-(fc[k] / c->capi[a0] + fm[k] / c->p->workloads[a0].memory_mb), k};
        qsort(nv, m, sizeof(*nv), cmp_wu);
        for (size_t i = 0; i < m && i < qnodes; i++)
            fc[nv[i].a] = -INFINITY; /* mark */
        for (size_t i = 0; i < s->n; i++) {
            size_t a = s->a[i].workload;
            if (isinf(fc[s->a[i].node]) && !free_wl[a] && pl_in(c, excluded, a) && !c->busy[a]) {
                free_wl[a] = 1;
                (*nfree)++;
            }
        }
        free(fc);
        free(fm);
        free(nv);
    }
    free(cpu);
    free(util);
    free(v);
    return 0;
}

static int cmp_dbl(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Lexicographic max-min comparison of two placements (whole jobs all or
 * nothing): > 0 when `x` is better, < 0 when worse, 0 when equal. */
static int lex_cmp(const struct pl_ctx *c, const int *excluded, const struct pl_sol *x,
                   const struct pl_sol *y, int *rc)
{
    size_t W = c->W ? c->W : 1;
    double *cpu = calloc(W, sizeof(double)), *u = calloc(W, sizeof(double));
    double *ux = calloc(W, sizeof(double)), *uy = calloc(W, sizeof(double));
    int r = 0;
    *rc = 0;
    if (!cpu || !u || !ux || !uy) {
        *rc = -ENOMEM;
    } else {
        size_t n = 0;
        eval_whole(c, x, cpu, u);
        for (size_t a = 0; a < c->W; a++)
            if (pl_in(c, excluded, a))
                ux[n++] = u[a];
        n = 0;
        eval_whole(c, y, cpu, u);
        for (size_t a = 0; a < c->W; a++)
            if (pl_in(c, excluded, a))
                uy[n++] = u[a];
        qsort(ux, n, sizeof(double), cmp_dbl);
        qsort(uy, n, sizeof(double), cmp_dbl);
        for (size_t i = 0; i < n && !r; i++)
            if (fabs(ux[i] - uy[i]) > 1e-6)
                r = ux[i] > uy[i] ? 1 : -1;
    }
    free(cpu);
    free(u);
    free(ux);
    free(uy);
    return r;
}

/* Stage 2 on small problems: every workload already at its best keeps its
 * level; the full model raises the lowest level of the others and, second,
 * the sum of their utilities, moving instances if that is what it takes
 * (e.g. a migration that makes room for a waiting job, or whole jobs placed
 * while some other job must wait anyway). The caller keeps the result only
 * if it is lexicographically better. */
static int next_level(const struct pl_ctx *c, const struct pl_exact_args *ea, struct pl_sol *sol,
                      int full, int ncand, int nempty, long share, double deadline, int *free_wl,
                      long *used, int *improved)
{
    size_t W = c->W ? c->W : 1;
    double *cpu = calloc(W, sizeof(double)), *u = calloc(W, sizeof(double));
    double *held = malloc(W * sizeof(double));
    int rc = 0;
    *improved = 0;
    if (!cpu || !u || !held) {
        rc = -ENOMEM;
        goto out;
    }
    eval_whole(c, sol, cpu, u);
    double t2 = INFINITY;
    for (size_t a = 0; a < c->W; a++) {
        held[a] = NAN;
        if (full)
            free_wl[a] = !c->busy[a];
        if (!pl_in(c, ea->excluded, a))
            continue;
        if (u[a] >= c->umax[a] - 1e-6)
            held[a] = u[a];
        else
            t2 = fmin(t2, u[a]);
    }
    if (!isfinite(t2))
        goto out; /* nothing above the minimum can still rise */
    struct pl_improve_args ia = {.usable = ea->usable, .excluded = ea->excluded,
                                 .free_wl = free_wl, .full = full, .ncand = ncand,
                                 .nempty = nempty, .t_floor = t2, .t_cap = INFINITY,
                                 .held = held, .sum_weight = LEX_SUM_WEIGHT,
                                 .work_budget = share,
                                 .deadline = deadline, .mip_gap = c->o->mip_gap};
    struct pl_improve_result ir;
    char mnote[128];
    struct pl_sol prev = {0};
    if ((rc = pl_sol_copy(&prev, sol)) || (rc = pl_improve(c, &ia, sol, &ir, mnote, sizeof(mnote)))) {
        pl_sol_fini(&prev);
        goto out;
    }
    *used += ir.work;
    if (ir.improved && lex_cmp(c, ea->excluded, sol, &prev, &rc) > 0) {
        *improved = 1;
    } else if (ir.improved) { /* not better: back to what stage 1 left */
        pl_sol_fini(sol);
        *sol = prev;
        prev = (struct pl_sol){0};
    }
    pl_sol_fini(&prev);
out:
    free(cpu);
    free(u);
    free(held);
    return rc;
}

int pl_exact_stage(const struct pl_ctx *c, const struct pl_exact_args *ea, struct pl_sol *sol,
                   struct placement_decision *d, char *note, size_t notesz)
{
    const struct placement_options *o = c->o;
    double deadline = pl_deadline_in(o->time_limit_s);
    long budget = work_budget(c);
    double t_h = min_util(c, ea->excluded, sol);
    d->heuristic_min_utility = t_h;
    double fluid = pl_fluid_bound(c, ea->excluded);

    /* 1. The bound: over every node (powered off ones too), so it holds
     * whatever node set the decision uses. */
    struct pl_bound_args ba = {ea->excluded, t_h, fluid, BOUND_TOL, deadline};
    struct pl_bound_result br;
    char bnote[96] = "";
    int rc = pl_lp_bound(c, &ba, &br, bnote, sizeof(bnote));
    if (rc) {
        glp_free_env();
        return rc;
    }
    double bound = fmin(br.bound, fluid);
    int lp_bound = br.lp_solved || br.bound < fluid;
    snprintf(d->bound_method, sizeof(d->bound_method), "%s", lp_bound ? "glpk-lp" : "fluid");
    if (bnote[0])
        add_text(note, notesz, bnote);
    d->upper_bound = bound;

    int want = o->solver == PLACEMENT_SOLVER_EXACT || o->solver == PLACEMENT_SOLVER_AUTO;
    if (!want || ea->consolidated) {
        glp_free_env();
        return 0;
    }

    /* 2. Improve the minimum. */
    size_t W = c->W ? c->W : 1, nin = 0, nusable = 0;
    for (size_t a = 0; a < c->W; a++)
        nin += pl_in(c, ea->excluded, a);
    for (size_t n = 0; n < c->N; n++)
        nusable += ea->usable[n] != 0;
    int *free_wl = calloc(W, sizeof(int));
    struct pl_sol heur = {0};
    if (!free_wl || pl_sol_copy(&heur, sol) || drop_partial_whole(c, sol)) {
        free(free_wl);
        pl_sol_fini(&heur);
        glp_free_env();
        return -ENOMEM;
    }
    /* Small problems may end with the full model, which proves optimality;
     * neighbourhoods come first because they find better placements far
     * more cheaply, and reaching the LP bound proves optimality too. */
    int can_full = nusable * nin <= o->exact_max_pairs && nusable * nin <= FULL_MAX_PAIRS;
    int full = 0;
    double t = t_h, delta = fmax(0.02, 0.25 * (bound - t_h));
    size_t fmax_n = o->solver == PLACEMENT_SOLVER_EXACT ? 60 : 40;
    int ncand = 3, nempty = 2, proven = 0, rounds = 0, stalls = 0;
    size_t qnodes = 2;
    long used = 0;
    char mnote[128] = "";
    for (int round = 0; round < 24; round++) {
        if (used >= budget || pl_past(deadline) || t >= bound - BOUND_TOL)
            break;
        size_t nfree = 0;
        if ((rc = pick_free(c, ea->excluded, sol, full ? INFINITY : delta,
                            full ? (size_t)-1 : fmax_n, full ? 0 : qnodes, (size_t)round,
                            free_wl, &nfree)))
            break;
        /* a neighbourhood gets at most a quarter of what is left */
        long share = full ? budget - used : (budget - used) / 4 + 1;
        struct pl_improve_args ia = {.usable = ea->usable, .excluded = ea->excluded,
                                     .free_wl = free_wl, .full = full, .ncand = ncand,
                                     .nempty = nempty, .t_floor = t, .t_cap = bound,
                                     .work_budget = share,
                                     .deadline = deadline, .mip_gap = o->mip_gap};
        struct pl_improve_result ir;
        if ((rc = pl_improve(c, &ia, sol, &ir, mnote, sizeof(mnote))))
            break;
        used += ir.work;
        rounds++;
        if (ir.status < 0)
            break; /* GLPK trouble: keep what we have */
        if (ir.improved) {
            double tn = min_util(c, ea->excluded, sol);
            if (tn > t)
                t = tn;
        }
        if (full) {
            proven = ir.status == 0 && ir.optimal;
            break;
        }
        if (!ir.improved) {
            if (can_full) {
                full = 1; /* what is left goes to the full model */
                continue;
            }
            /* widen the neighbourhood; give up after it stops helping, at
             * once when many workloads share the minimum (then it rises
             * only when all of them do: the levels' rounds below get there
             * one workload at a time) */
            if (++stalls > (count_at_min(c, ea->excluded, sol) > 4 ? 0 : 3) || nfree >= nin)
                break;
            delta *= 2;
            fmax_n = fmax_n * 3 / 2;
            ncand += 2;
            nempty += 2;
            qnodes += 2;
        }
    }
    if (t >= bound - BOUND_TOL)
        proven = 1; /* at the certified bound */
    /* 3. The next level: with placement changes on small problems, then
     * LPs over the final placement. */
    int lex2 = 0;
    if (t_h >= bound - BOUND_TOL) {
        /* Cheap when it cannot help: the heuristic's minimum is proven
         * optimal by the bound, and its own progressive filling already
         * set the levels above; the decision is exactly the heuristic's. */
    } else if (!rc && can_full && used < budget && !pl_past(deadline)) {
        rc = next_level(c, ea, sol, 1, 0, 0, budget - used, deadline, free_wl, &used, &lex2);
    } else if (!rc) {
        /* Neighbourhoods again, now for the levels above the minimum and
         * the number of workloads at it (e.g. fewer jobs left waiting). */
        size_t fm = fmax_n, q = 2;
        int nc = 3, ne = 2, st = 0;
        for (int round = 0; round < 64 && !rc; round++) {
            if (used >= budget || pl_past(deadline))
                break;
            size_t nfree = 0;
            if ((rc = pick_free(c, ea->excluded, sol, 0.02, fm, q, (size_t)round, free_wl,
                                &nfree)))
                break;
            int imp = 0;
            long share = budget / 8 + 1 < budget - used ? budget / 8 + 1 : budget - used;
            rc = next_level(c, ea, sol, 0, nc, ne, share, deadline, free_wl, &used, &imp);
            rounds++;
            lex2 |= imp;
            if (!imp) {
                if (++st > 6 || nfree >= nin)
                    break;
                fm = fm * 3 / 2;
                q += 2;
                nc += 2;
                ne += 2;
            }
        }
    }
    if (!rc && used < budget && !pl_past(deadline) && (t > t_h + 1e-9 || lex2))
        rc = pl_fill_levels(c, ea->excluded, sol, 8, budget - used, deadline);
    glp_free_env();
    int better = 0;
    if (!rc)
        better = lex_cmp(c, ea->excluded, sol, &heur, &rc);
    if (rc) {
        pl_sol_fini(&heur);
        free(free_wl);
        return rc;
    }
    double t_final = min_util(c, ea->excluded, sol);
    if (better <= 0 || t_final < t_h - 1e-9) {
        /* Not better: the heuristic's placement stands exactly as it was. */
        if (better < 0)
            snprintf(mnote, sizeof(mnote), "GLPK ended below the heuristic, heuristic kept");
        pl_sol_fini(sol);
        *sol = heur;
        heur = (struct pl_sol){0};
        t_final = t_h;
        better = 0;
    }
    d->glpk_rounds = rounds + (lex2 ? 1 : 0);
    char buf[160];
    if (better) {
        d->solver = PLACEMENT_SOLVER_EXACT;
        if (t_final > t_h + 1e-9)
            snprintf(buf, sizeof(buf), "GLPK raised the minimum from %.4f to %.4f (%d rounds)",
                     t_h, t_final, rounds);
        else
            snprintf(buf, sizeof(buf), "GLPK raised the levels above the minimum %.4f", t_final);
        add_text(note, notesz, buf);
    } else if (rounds && !proven) {
        snprintf(buf, sizeof(buf), "GLPK found nothing better than the heuristic (%d rounds%s%s)",
                 rounds, mnote[0] ? ": " : "", mnote);
        add_text(note, notesz, buf);
    }
    if (proven) {
        d->solver = PLACEMENT_SOLVER_EXACT;
        d->exact_optimal = 1;
        /* The full model covers the usable nodes: with every node usable
         * its optimum is the bound. */
        if (ea->all_nodes) {
            /* GLPK's gap is relative to the shifted objective t + 2. */
            double ub = t_final + o->mip_gap * (fabs(t_final + 2) + 1) + BOUND_TOL;
            if (ub < d->upper_bound) {
                d->upper_bound = ub;
                snprintf(d->bound_method, sizeof(d->bound_method), "glpk-milp");
            }
        }
    }
    pl_sol_fini(&heur);
    free(free_wl);
    return 0;
}

int placement_export_lp(const struct placement_problem *p, const char *path, struct wlm_error *err)
{
    int rc = placement_problem_check(p, err);
    if (rc)
        return rc;
    struct pl_ctx c;
    if (pl_ctx_init(&c, p))
        return wlm_error_set(err, ENOMEM, "out of memory");
    size_t N = c.N ? c.N : 1, W = c.W ? c.W : 1;
    int *usable = malloc(N * sizeof(int)), *excluded = calloc(W, sizeof(int));
    int *free_wl = malloc(W * sizeof(int));
    struct pl_sol none = {0};
    rc = -ENOMEM;
    if (usable && excluded && free_wl) {
        double lo = 0;
        for (size_t n = 0; n < c.N; n++)
            usable[n] = 1;
        for (size_t a = 0; a < c.W; a++) {
            free_wl[a] = !c.busy[a];
            lo = fmin(lo, placement_utility_eval(&p->workloads[a].utility, 0));
        }
        struct pl_improve_args ia = {.usable = usable, .excluded = excluded, .free_wl = free_wl,
                                     .full = 1, .t_floor = lo - 1, .t_cap = INFINITY,
                                     .deadline = pl_deadline_in(60), .mip_gap = p->opts.mip_gap,
                                     .export_path = path};
        struct pl_improve_result ir;
        char note[128] = "";
        rc = pl_improve(&c, &ia, &none, &ir, note, sizeof(note));
        glp_free_env();
        if (!rc && ir.status)
            rc = wlm_error_setf(err, WLM_EIO, path, "%s: %s", path,
                                note[0] ? note : "could not write the model");
    }
    if (rc == -ENOMEM)
        wlm_error_set(err, ENOMEM, "out of memory");
    free(usable);
    free(excluded);
    free(free_wl);
    pl_ctx_fini(&c);
    return rc;
}
