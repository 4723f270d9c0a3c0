/*
 * fill.c - leximin over a fixed placement: progressive filling with LPs.
 *
 * Once the placement is fixed (which instance runs where), dividing CPU is an
 * LP. Level by level: maximise t with t <= v_a <= u_a(W_a) for every workload
 * not yet frozen; the workloads whose "t <= v_a" rows carry a dual price are
 * the bottleneck and freeze at v_a >= t; the next LP raises the rest. A last
 * LP maximises the sum of utilities with every level held, so CPU nobody
 * needs for the minimum still goes where it buys utility. Whole jobs keep
 * exactly their cap; workloads outside the optimisation keep their CPU.
 *
 * The model has one column per instance and is solved only over the fixed
 * placement, so the max-min stage (milp.c) carries no rows for this.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glpk_util.h"
#include "lpbound.h"

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Sorted utilities of the workloads in the optimisation. */
static size_t sorted(const struct pl_ctx *c, const int *excluded, const struct pl_sol *s,
                     double *cpu, double *util, double *out)
{
    pl_sol_eval(c, s, cpu, util, NULL, NULL);
    size_t n = 0;
    for (size_t a = 0; a < c->W; a++)
        if (pl_in(c, excluded, a))
            out[n++] = util[a];
    qsort(out, n, sizeof(double), cmp_d);
    return n;
}

int pl_fill_levels(const struct pl_ctx *c, const int *excluded, struct pl_sol *s, int max_levels,
                   long it_budget, double deadline)
{
    const struct placement_problem *p = c->p;
    size_t N = c->N ? c->N : 1, W = c->W ? c->W : 1;
    int *col = calloc(s->n ? s->n : 1, sizeof(int));
    int *vcol = calloc(W, sizeof(int)), *trow = calloc(W, sizeof(int));
    int *frozen = calloc(W, sizeof(int));
    double *kcpu = calloc(N, sizeof(double)), *cpu = calloc(W, sizeof(double));
    double *util = calloc(W, sizeof(double));
    double *before = calloc(W, sizeof(double)), *after = calloc(W, sizeof(double));
    int *rowof = calloc(N, sizeof(int));
    int *volatile ia = NULL, *volatile ja = NULL;
    double *volatile ar = NULL;
    struct pl_sol out = {0};
    volatile int rc = -ENOMEM;
    struct pl_glpk_guard guard;
    glp_prob *volatile lp = NULL;
    if (!col || !vcol || !trow || !frozen || !kcpu || !cpu || !util || !before || !after || !rowof)
        goto out;

    /* Columns: t, one w per variable instance, one v per workload with one. */
    volatile int ncols = 1, nv = 0;
    for (size_t i = 0; i < s->n; i++) {
        size_t a = s->a[i].workload;
        if (pl_in(c, excluded, a) && !pl_whole(c, a) && !c->busy[a])
            col[i] = ++ncols;
        else
            kcpu[s->a[i].node] += s->a[i].cpu_mhz;
    }
    for (size_t i = 0; i < s->n; i++)
        if (col[i] && !vcol[s->a[i].workload]) {
            vcol[s->a[i].workload] = -1;
            nv++;
        }
    if (!nv) {
        rc = 0;
        goto out;
    }
    for (size_t a = 0; a < c->W; a++)
        if (vcol[a])
            vcol[a] = ++ncols;
    size_t nnz_max = 1 + s->n;
    for (size_t a = 0; a < c->W; a++)
        if (vcol[a])
            nnz_max += 2 + 2 * p->workloads[a].utility.npoints;
    for (size_t i = 0; i < s->n; i++)
        if (col[i])
            nnz_max += p->workloads[s->a[i].workload].utility.npoints;
    ia = malloc((nnz_max + 1) * sizeof(int));
    ja = malloc((nnz_max + 1) * sizeof(int));
    ar = malloc((nnz_max + 1) * sizeof(double));
    if (!ia || !ja || !ar)
        goto out;

    pl_glpk_guard_on(&guard);
    if (setjmp(guard.jb)) {
        glp_free_env();
        lp = NULL;
        rc = 0; /* s is left as it was */
        goto out;
    }
    lp = glp_create_prob();
    glp_set_obj_dir(lp, GLP_MAX);
    glp_add_cols(lp, ncols);
    glp_set_col_bnds(lp, 1, GLP_FR, 0, 0);
    for (size_t i = 0; i < s->n; i++)
        if (col[i])
            glp_set_col_bnds(lp, col[i], GLP_DB, 0,
                             fmax(1e-9, fmin(c->capi[s->a[i].workload], c->cap[s->a[i].node])) /
                                 PL_CPU_U);
    for (size_t a = 0; a < c->W; a++)
        if (vcol[a])
            glp_set_col_bnds(lp, vcol[a], GLP_UP, 0, c->umax[a]);
    size_t nz = 0;
    int row = 0;
#define NZ(r_, c_, v_)                                                                             \
    do {                                                                                           \
        nz++;                                                                                      \
        ia[nz] = (r_);                                                                             \
        ja[nz] = (c_);                                                                             \
        ar[nz] = (v_);                                                                             \
    } while (0)
    for (size_t i = 0; i < s->n; i++) {
        size_t n = s->a[i].node;
        if (!col[i])
            continue;
        if (!rowof[n]) {
            glp_add_rows(lp, 1);
            rowof[n] = ++row;
            glp_set_row_bnds(lp, row, GLP_UP, 0, fmax(0, c->cap[n] - kcpu[n]) / PL_CPU_U);
        }
        NZ(rowof[n], col[i], 1.0);
    }
    for (size_t a = 0; a < c->W; a++) {
        if (!vcol[a])
            continue;
        const struct placement_utility *u = &p->workloads[a].utility;
        glp_add_rows(lp, 1);
        trow[a] = ++row; /* t - v_a <= 0 while a is not frozen */
        glp_set_row_bnds(lp, row, GLP_UP, 0, 0);
        NZ(row, 1, 1.0);
        NZ(row, vcol[a], -1.0);
        for (size_t sg = 1; sg < u->npoints; sg++) {
            double slope = (u->util[sg] - u->util[sg - 1]) / (u->cpu_mhz[sg] - u->cpu_mhz[sg - 1]);
            double alpha = u->util[sg - 1] - slope * u->cpu_mhz[sg - 1];
            if (slope <= 0)
                continue;
            glp_add_rows(lp, 1); /* v_a <= alpha + slope W_a */
            glp_set_row_bnds(lp, ++row, GLP_UP, 0, alpha);
            NZ(row, vcol[a], 1.0);
            for (size_t i = 0; i < s->n; i++)
                if (col[i] && s->a[i].workload == a)
                    NZ(row, col[i], -slope * PL_CPU_U);
        }
    }
#undef NZ
    glp_load_matrix(lp, (int)nz, ia, ja, ar);
    glp_smcp sp;
    glp_init_smcp(&sp);
    sp.msg_lev = GLP_MSG_OFF;
    sp.presolve = GLP_OFF;
    long used = 0;
    int nfrozen = 0, ok = 1;
    glp_set_obj_coef(lp, 1, 1.0);
    for (int level = 0; level < max_levels && nfrozen < nv; level++) {
        sp.it_lim = (int)fmax(1, fmin(it_budget - used, 1e9));
        sp.tm_lim = pl_ms_left(deadline);
        int it0 = glp_get_it_cnt(lp);
        int r = glp_simplex(lp, &sp);
        used += glp_get_it_cnt(lp) - it0;
        if (r != 0 || glp_get_status(lp) != GLP_OPT) {
            ok = level > 0; /* the last completed level still holds */
            break;
        }
        double t = glp_get_col_prim(lp, 1);
        int froze = 0;
        for (size_t a = 0; a < c->W; a++) {
            if (!vcol[a] || frozen[a])
                continue;
            if (fabs(glp_get_row_dual(lp, trow[a])) > 1e-9 || t >= c->umax[a] - 1e-9) {
                frozen[a] = 1;
                froze++;
            }
        }
        if (!froze) /* degenerate: freeze everything at the level */
            for (size_t a = 0; a < c->W; a++)
                if (vcol[a] && !frozen[a] && glp_get_col_prim(lp, vcol[a]) <= t + 1e-7)
                    frozen[a] = 1, froze++;
        if (!froze)
            break;
        nfrozen += froze;
        for (size_t a = 0; a < c->W; a++) {
            if (frozen[a] != 1)
                continue;
            frozen[a] = 2;
            glp_set_row_bnds(lp, trow[a], GLP_FR, 0, 0);
            glp_set_col_bnds(lp, vcol[a], GLP_DB, fmin(t, c->umax[a]) - 1e-9, c->umax[a]);
        }
        if (used >= it_budget || pl_past(deadline))
            break;
    }
    if (ok) {
        /* Levels held: the rest of the CPU raises the sum of utilities. */
        glp_set_obj_coef(lp, 1, 0);
        for (size_t a = 0; a < c->W; a++) {
            if (!vcol[a])
                continue;
            glp_set_obj_coef(lp, vcol[a], 1.0);
            if (!frozen[a]) /* unfrozen ones stay at least at the last level */
                glp_set_row_bnds(lp, trow[a], GLP_UP, 0, 0);
        }
        glp_set_col_bnds(lp, 1, GLP_FX, glp_get_col_prim(lp, 1) - 1e-9, glp_get_col_prim(lp, 1) - 1e-9);
        sp.it_lim = (int)fmax(1, fmin(it_budget - used, 1e9));
        sp.tm_lim = pl_ms_left(deadline);
        int r = glp_simplex(lp, &sp);
        if (r != 0 || glp_get_status(lp) != GLP_OPT)
            ok = 0;
    }
    if (ok) {
        for (size_t i = 0; i < s->n; i++) {
            double v = col[i] ? fmax(0, glp_get_col_prim(lp, col[i]) * PL_CPU_U) : s->a[i].cpu_mhz;
            if (pl_sol_push(&out, s->a[i].workload, s->a[i].node, v))
                goto out;
        }
        /* Keep it only if the sorted utilities are not worse anywhere first. */
        size_t n = sorted(c, excluded, s, cpu, util, before);
        sorted(c, excluded, &out, cpu, util, after);
        int better = 1;
        for (size_t i = 0; i < n; i++) {
            if (fabs(after[i] - before[i]) <= 1e-7)
                continue;
            better = after[i] > before[i];
            break;
        }
        if (better) {
            pl_sol_fini(s);
            *s = out;
            out = (struct pl_sol){0};
        }
    }
    rc = 0;
out:
    if (lp) {
        glp_delete_prob(lp);
        lp = NULL;
    }
    pl_glpk_guard_off();
    pl_sol_fini(&out);
    free(col);
    free(vcol);
    free(trow);
    free(frozen);
    free(kcpu);
    free(cpu);
    free(util);
    free(before);
    free(after);
    free(rowof);
    free(ia);
    free(ja);
    free(ar);
    return rc;
}
