/*
 * milp.c - the exact solver: GLPK MILP, two lexicographic stages.
 *
 * Variables: x[a,n] binary (an instance of a on n), w[a,n] >= 0 its CPU, t the
 * minimum utility, v[a] the utility of a (stage 2 only).
 *   node CPU     sum_a w[a,n] <= cap_n
 *   node memory  sum_a mem_a x[a,n] <= mem_n
 *   instance cap w[a,n] <= min(cap_a, cap_n) x[a,n]
 *   instances    min_a <= sum_n x[a,n] <= max_a   (jobs: <= 1)
 *   utility      t <= alpha_k + beta_k sum_n w[a,n]   for every segment k of u_a
 * Stage 1 maximises t (plus tiny terms that keep instances where they are).
 * Stage 2 fixes t >= t1 - tol and maximises sum_a v[a] minus the utility cost
 * of the changes it makes: capacity left over after the minimum goes where it
 * raises utility most, and a change happens only when it pays for itself.
 *
 * GLPK aborts the process on internal errors unless an error hook is
 * installed; ours longjmps back here, frees the (per-thread) GLPK environment
 * and reports failure, so a bad model degrades to the heuristic's answer.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glpk.h>

#include "internal.h"

#define EPS_KEEP 1e-7 /* stage-1 bonus for keeping an existing instance */
#define EPS_NEW 1e-8  /* stage-1 penalty for a new instance */
#define OBJ_SHIFT 2.0 /* keeps GLPK's relative gap meaningful around t = 0 */
/* The model works in GHz and GB: MHz, MB and utility slopes per MHz span
 * seven orders of magnitude, which is what makes GLPK's simplex crawl. */
#define CPU_U 1000.0
#define MEM_U 1024.0

struct hook_env {
    jmp_buf jb;
};

static void glpk_hook(void *info)
{
    struct hook_env *h = info;
    longjmp(h->jb, 1);
}

static int glpk_quiet_term(void *info, const char *s)
{
    (void)info;
    (void)s;
    return 1; /* swallow GLPK's terminal output */
}

struct pair {
    size_t a, n;
    int xcol, wcol;
    int current; /* instance exists today */
};

struct model {
    const struct pl_ctx *c;
    struct pair *pairs;
    size_t npairs;
    int tcol, *vcol; /* vcol per workload (0 when not in the model) */
    double *hint;    /* incumbent column values, 1-based */
    int hint_given;
    int ncols;
    int nv; /* W column of workload a is vcol[a] + nv */
};

static void heur_cb(glp_tree *tree, void *info)
{
    struct model *m = info;
    if (glp_ios_reason(tree) == GLP_IHEUR && !m->hint_given && m->hint) {
        m->hint_given = 1;
        glp_ios_heur_sol(tree, m->hint);
    }
}

/* Fill m->hint from a solution: x, w, t, v. */
static void set_hint(struct model *m, const struct pl_sol *s, const int *excluded, int with_v)
{
    const struct pl_ctx *c = m->c;
    for (int i = 0; i <= m->ncols; i++)
        m->hint[i] = 0;
    double *cpu = calloc(c->W ? c->W : 1, sizeof(double));
    if (!cpu)
        return;
    for (size_t k = 0; k < m->npairs; k++) {
        const struct pair *pr = &m->pairs[k];
        for (size_t i = 0; i < s->n; i++) {
            if (s->a[i].workload == pr->a && s->a[i].node == pr->n) {
                m->hint[pr->xcol] = 1;
                double cap = fmin(c->capi[pr->a], c->cap[pr->n]);
                double w = fmin(s->a[i].cpu_mhz, cap);
                m->hint[pr->wcol] = w / CPU_U;
                cpu[pr->a] += w;
            }
        }
    }
    double t = INFINITY;
    for (size_t a = 0; a < c->W; a++) {
        if (!m->vcol[a])
            continue;
        double u = placement_utility_eval(&c->p->workloads[a].utility, cpu[a]);
        if (u < t)
            t = u;
        if (with_v)
            m->hint[m->vcol[a]] = u;
        m->hint[m->vcol[a] + m->nv] = cpu[a] / CPU_U;
    }
    m->hint[m->tcol] = isfinite(t) ? t : 0;
    (void)excluded;
    free(cpu);
}

int pl_milp(const struct pl_ctx *c, const int *allowed, const int *excluded, struct pl_sol *s,
            double *bound, int *optimal, char *note, size_t notesz)
{
    const struct placement_problem *p = c->p;
    struct hook_env he;
    struct model m;
    memset(&m, 0, sizeof(m));
    m.c = c;
    /* Everything touched after setjmp lives in volatile storage or in
     * memory reached through pointers assigned before it. */
    glp_prob *volatile lp = NULL;
    int *volatile ia = NULL, *volatile ja = NULL;
    double *volatile ar = NULL;
    int rc = -WLM_EINTERNAL;
    *optimal = 0;
    note[0] = 0;

    /* Pairs: workload a may run on allowed node n. */
    size_t cap_pairs = 64;
    m.pairs = malloc(cap_pairs * sizeof(*m.pairs));
    m.vcol = calloc(c->W ? c->W : 1, sizeof(int));
    if (!m.pairs || !m.vcol)
        goto nomem;
    for (size_t a = 0; a < c->W; a++) {
        if (!c->placeable[a] || excluded[a])
            continue;
        for (size_t n = 0; n < c->N; n++) {
            if (!allowed[n] || !pl_eligible(c, a, n))
                continue;
            if (m.npairs == cap_pairs) {
                cap_pairs *= 2;
                struct pair *np = realloc(m.pairs, cap_pairs * sizeof(*np));
                if (!np)
                    goto nomem;
                m.pairs = np;
            }
            m.pairs[m.npairs++] = (struct pair){a, n, 0, 0, 0};
        }
    }
    for (size_t i = 0; i < p->ncurrent; i++)
        for (size_t k = 0; k < m.npairs; k++)
            if (m.pairs[k].a == p->current[i].workload && m.pairs[k].n == p->current[i].node)
                m.pairs[k].current = 1;

    glp_error_hook(glpk_hook, &he);
    if (setjmp(he.jb)) {
        /* GLPK hit an internal error: everything it allocated in this thread
         * is released with its environment. */
        glp_free_env();
        lp = NULL;
        snprintf(note, notesz, "GLPK internal error");
        rc = -WLM_EINTERNAL;
        goto out;
    }
    glp_term_hook(glpk_quiet_term, NULL);
    lp = glp_create_prob();
    glp_set_obj_dir(lp, GLP_MAX);

    int ncols = 1 + 2 * (int)m.npairs;
    int nv = 0;
    for (size_t a = 0; a < c->W; a++)
        if (c->placeable[a] && !excluded[a])
            m.vcol[a] = ncols + (++nv);
    m.nv = nv;
    ncols += 2 * nv; /* v[a], then W[a] = sum_n w[a,n] */
    m.ncols = ncols;
    glp_add_cols(lp, ncols);
    m.tcol = 1;
    double umin = INFINITY, umax = -INFINITY;
    for (size_t a = 0; a < c->W; a++) {
        if (!m.vcol[a])
            continue;
        umin = fmin(umin, p->workloads[a].utility.util[0]);
        umax = fmax(umax, c->umax[a]);
    }
    if (!isfinite(umin)) {
        snprintf(note, notesz, "nothing to place");
        goto out;
    }
    glp_set_col_bnds(lp, m.tcol, GLP_DB, umin - 1, umax);
    for (size_t k = 0; k < m.npairs; k++) {
        struct pair *pr = &m.pairs[k];
        pr->xcol = 2 + 2 * (int)k;
        pr->wcol = pr->xcol + 1;
        glp_set_col_kind(lp, pr->xcol, GLP_BV);
        glp_set_col_bnds(lp, pr->wcol, GLP_DB, 0, fmax(1e-9, fmin(c->capi[pr->a], c->cap[pr->n]) / CPU_U));
    }
    for (size_t a = 0; a < c->W; a++)
        if (m.vcol[a]) {
            glp_set_col_bnds(lp, m.vcol[a], GLP_UP, 0, c->umax[a]);
            glp_set_col_bnds(lp, m.vcol[a] + nv, GLP_LO, 0, 0);
        }

    /* Rows. Count nonzeros generously first. */
    size_t nnz_max = 6 * m.npairs + 16;
    for (size_t a = 0; a < c->W; a++)
        if (m.vcol[a])
            nnz_max += 1 + 4 * (p->workloads[a].utility.npoints + 1);
    ia = malloc((nnz_max + 1) * sizeof(int));
    ja = malloc((nnz_max + 1) * sizeof(int));
    ar = malloc((nnz_max + 1) * sizeof(double));
    if (!ia || !ja || !ar)
        goto nomem;
    size_t nz = 0;
#define NZ(r, col, v)                                                                              \
    do {                                                                                           \
        nz++;                                                                                      \
        ia[nz] = (r);                                                                              \
        ja[nz] = (col);                                                                            \
        ar[nz] = (v);                                                                              \
    } while (0)
    int row = 0;
    /* node CPU and memory */
    for (size_t n = 0; n < c->N; n++) {
        if (!allowed[n])
            continue;
        int rc_cpu = ++row, rc_mem = ++row;
        glp_add_rows(lp, 2);
        glp_set_row_bnds(lp, rc_cpu, GLP_UP, 0, c->cap[n] / CPU_U);
        glp_set_row_bnds(lp, rc_mem, GLP_UP, 0, c->mem[n] / MEM_U);
        for (size_t k = 0; k < m.npairs; k++) {
            if (m.pairs[k].n != n)
                continue;
            NZ(rc_cpu, m.pairs[k].wcol, 1.0);
            NZ(rc_mem, m.pairs[k].xcol, p->workloads[m.pairs[k].a].memory_mb / MEM_U);
        }
    }
    /* instance caps */
    for (size_t k = 0; k < m.npairs; k++) {
        glp_add_rows(lp, 1);
        ++row;
        glp_set_row_bnds(lp, row, GLP_UP, 0, 0);
        NZ(row, m.pairs[k].wcol, 1.0);
        NZ(row, m.pairs[k].xcol, -fmin(c->capi[m.pairs[k].a], c->cap[m.pairs[k].n]) / CPU_U);
    }
    /* instance counts, utility segments */
    for (size_t a = 0; a < c->W; a++) {
        if (!m.vcol[a])
            continue;
        glp_add_rows(lp, 1);
        ++row;
        int lo = c->mininst[a], hi = c->maxinst[a];
        if (lo == hi)
            glp_set_row_bnds(lp, row, GLP_FX, lo, hi);
        else
            glp_set_row_bnds(lp, row, GLP_DB, lo, hi);
        for (size_t k = 0; k < m.npairs; k++)
            if (m.pairs[k].a == a)
                NZ(row, m.pairs[k].xcol, 1.0);
        /* W[a] - sum_n w[a,n] = 0: utility rows then need two entries each */
        int wcol = m.vcol[a] + nv;
        glp_add_rows(lp, 1);
        ++row;
        glp_set_row_bnds(lp, row, GLP_FX, 0, 0);
        NZ(row, wcol, 1.0);
        for (size_t k = 0; k < m.npairs; k++)
            if (m.pairs[k].a == a)
                NZ(row, m.pairs[k].wcol, -1.0);
        const struct placement_utility *u = &p->workloads[a].utility;
        for (size_t s2 = 1; s2 <= u->npoints; s2++) {
            double slope, alpha;
            if (s2 == u->npoints) { /* flat tail */
                slope = 0;
                alpha = u->util[u->npoints - 1];
            } else {
                slope = (u->util[s2] - u->util[s2 - 1]) / (u->cpu_mhz[s2] - u->cpu_mhz[s2 - 1]);
                alpha = u->util[s2 - 1] - slope * u->cpu_mhz[s2 - 1];
            }
            /* t <= alpha + slope W   and   v <= alpha + slope W */
            for (int which = 0; which < 2; which++) {
                glp_add_rows(lp, 1);
                ++row;
                glp_set_row_bnds(lp, row, GLP_UP, 0, alpha);
                NZ(row, which == 0 ? m.tcol : m.vcol[a], 1.0);
                if (slope != 0)
                    NZ(row, wcol, -slope * CPU_U);
            }
        }
    }
#undef NZ
    if (nz > nnz_max) { /* cannot happen: the count above is an upper bound */
        snprintf(note, notesz, "internal: model size");
        goto out;
    }
    glp_load_matrix(lp, (int)nz, ia, ja, ar);

    /* Stage 1 objective: t, plus tiny stickiness. */
    glp_set_obj_coef(lp, 0, OBJ_SHIFT);
    glp_set_obj_coef(lp, m.tcol, 1.0);
    size_t nnew = 0;
    for (size_t k = 0; k < m.npairs; k++) {
        glp_set_obj_coef(lp, m.pairs[k].xcol, m.pairs[k].current ? EPS_KEEP : -EPS_NEW);
        nnew += !m.pairs[k].current;
    }

    glp_smcp sp;
    glp_init_smcp(&sp);
    sp.msg_lev = GLP_MSG_OFF;
    sp.presolve = GLP_ON;
    sp.tm_lim = (int)(c->o->time_limit_s * 1000 / 4) + 1;
    int r = glp_simplex(lp, &sp);
    if (r != 0 || glp_get_status(lp) != GLP_OPT) {
        snprintf(note, notesz, "LP relaxation not solved (simplex %d, status %d)", r,
                 glp_get_status(lp));
        goto out;
    }
    /* t* <= LP objective - shift - sum eps x <= LP objective - shift + nnew * EPS_NEW */
    *bound = glp_get_obj_val(lp) - OBJ_SHIFT + (double)nnew * EPS_NEW;

    m.hint = calloc((size_t)ncols + 1, sizeof(double));
    if (!m.hint)
        goto nomem;
    set_hint(&m, s, excluded, 1); /* v = u(W) satisfies the v rows too */

    glp_iocp ip;
    glp_init_iocp(&ip);
    ip.msg_lev = GLP_MSG_OFF;
    ip.presolve = GLP_OFF; /* heuristic solutions are given in the original columns */
    ip.mip_gap = c->o->mip_gap;
    ip.tm_lim = (int)(c->o->time_limit_s * 1000 / 2) + 1;
    ip.cb_func = heur_cb;
    ip.cb_info = &m;
    r = glp_intopt(lp, &ip);
    int st = glp_mip_status(lp);
    if (st != GLP_OPT && st != GLP_FEAS) {
        snprintf(note, notesz, "MILP found no solution (intopt %d, status %d)", r, st);
        goto out;
    }
    int opt1 = st == GLP_OPT && r == 0;
    double t1 = glp_mip_col_val(lp, m.tcol);

    /* Stage 2: keep the minimum, maximise the sum, pay for changes. */
    double tol = 1e-6; /* numerical slack only: t1 is attained by the incumbent */
    glp_set_col_bnds(lp, m.tcol, GLP_DB, t1 - tol, umax);
    glp_set_obj_coef(lp, 0, 0);
    glp_set_obj_coef(lp, m.tcol, 0);
    const struct placement_action_cost *ac = c->o->cost;
    for (size_t k = 0; k < m.npairs; k++) {
        const struct placement_workload *w = &p->workloads[m.pairs[k].a];
        double keep = w->kind == PLACEMENT_APP ? ac[PLACEMENT_ACT_STOP_INSTANCE].utility
                                               : ac[PLACEMENT_ACT_MIGRATE_JOB].utility;
        glp_set_obj_coef(lp, m.pairs[k].xcol, m.pairs[k].current ? keep + EPS_KEEP : -EPS_NEW);
    }
    for (size_t a = 0; a < c->W; a++)
        if (m.vcol[a])
            glp_set_obj_coef(lp, m.vcol[a], 1.0);
    /* stage-1 solution as the incumbent */
    for (int j = 1; j <= ncols; j++)
        m.hint[j] = glp_mip_col_val(lp, j);
    for (size_t a = 0; a < c->W; a++) {
        if (!m.vcol[a])
            continue;
        double wsum = 0;
        for (size_t k = 0; k < m.npairs; k++)
            if (m.pairs[k].a == a)
                wsum += m.hint[m.pairs[k].wcol] * CPU_U;
        m.hint[m.vcol[a]] = fmin(c->umax[a], placement_utility_eval(&p->workloads[a].utility, wsum));
    }
    m.hint_given = 0;
    struct pl_sol best = {0};
    double *val = m.hint;
    r = glp_simplex(lp, &sp);
    if (r == 0 && glp_get_status(lp) == GLP_OPT) {
        /* Stage 2 only refines: the minimum is already proven. A short
         * limit keeps small problems well under a second; the incumbent
         * (stage 1's placement) is always a valid answer. */
        ip.tm_lim = (int)fmin(c->o->time_limit_s * 1000 / 4, 250) + 1;
        ip.mip_gap = fmax(c->o->mip_gap, 1e-3);
        r = glp_intopt(lp, &ip);
            st = glp_mip_status(lp);
        if (st == GLP_OPT || st == GLP_FEAS) {
            for (int j = 1; j <= ncols; j++)
                val[j] = glp_mip_col_val(lp, j);
        }
    }
    for (size_t k = 0; k < m.npairs; k++) {
        if (val[m.pairs[k].xcol] > 0.5 &&
            pl_sol_push(&best, m.pairs[k].a, m.pairs[k].n, fmax(0, val[m.pairs[k].wcol] * CPU_U))) {
            pl_sol_fini(&best);
            goto nomem;
        }
    }
    pl_sol_fini(s);
    *s = best;
    *optimal = opt1;
    rc = 0;
    goto out;
nomem:
    rc = -ENOMEM;
    snprintf(note, notesz, "out of memory");
out:
    if (lp)
        glp_delete_prob(lp);
    glp_error_hook(NULL, NULL);
    glp_term_hook(NULL, NULL);
    glp_free_env();
    free(ia);
    free(ja);
    free(ar);
    free(m.pairs);
    free(m.vcol);
    free(m.hint);
    return rc;
}
