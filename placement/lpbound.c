/*
 * lpbound.c - the upper bound on the max-min level that every decision
 * reports, from an LP that stays small at any cluster size.
 *
 * The pair MILP (x[a,n] binary, w[a,n] CPU) relaxes to an LP whose size grows
 * with nodes x workloads. Three steps shrink it without weakening it much:
 *
 *  - x eliminated: in a relaxation an instance's memory can be charged in
 *    proportion to its CPU, so per node only CPU and instance counts remain;
 *  - identical nodes (same CPU, memory and labels) merge into classes: a
 *    class of m nodes is one node with m times the resources and room for at
 *    most m instances of each workload;
 *  - workloads of the same shape (memory, CPU cap, label requirements, whole)
 *    merge into groups: they use the classes at the same rates, so only their
 *    total demand matters.
 *
 * What remains for a given level t is a feasibility LP with (groups x classes)
 * x 2 columns: y[g,k] CPU and z[g,k] instances of group g on class k,
 *
 *   sum_k y[g,k] >= D_g(t)            demand of g at level t
 *   min_g <= sum_k z[g,k] <= max_g     instance counts
 *   y[g,k] <= cap[g,k] z[g,k]          an instance holds at most its cap
 *   sum_g y[g,k] <= m_k cpu_k          class CPU
 *   sum_g mem_g z[g,k] <= m_k mem_k    class memory
 *   z[g,k] <= m_k x (instances of g that fit one node of k)
 *   sum of z[g,k] over g taking over half a node's memory <= m_k (and the
 *   same for whole jobs taking over half its CPU): one such per node
 *
 * and the bound is found by bisection on t (D_g is increasing in t). Every
 * level reported as the bound is one at which this relaxation was shown
 * infeasible (or a bound known beforehand), so it is certified; the
 * heuristic's level is feasible, so the search starts there, and the first
 * probe just above it says at once whether the heuristic is already optimal.
 *
 * Whole jobs (all-or-nothing CPU): a placement whose minimum is t runs every
 * whole job with u(0) < t, and at its full cap, so at level t such a job
 * demands its whole cap (not the chord's fraction of it: with t fixed the
 * bisection need not be concave, only monotone). Only the packing of those
 * caps onto nodes stays relaxed (fractional within a class).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glpk_util.h"
#include "lpbound.h"

double pl_relaxed_demand(const struct pl_ctx *c, size_t a, double t)
{
    const struct placement_utility *u = &c->p->workloads[a].utility;
    double u0 = placement_utility_eval(u, 0);
    if (t <= u0)
        return 0;
    if (pl_whole(c, a)) {
        /* Any placement whose minimum is t > u(0) runs this job, and a
         * whole job runs at its cap: the demand at t is all of it. */
        double ucap = placement_utility_eval(u, c->capi[a]);
        if (t > ucap + PL_EPS || ucap <= u0)
            return INFINITY;
        return c->capi[a];
    }
    if (t > c->umax[a] + PL_EPS)
        return INFINITY;
    double d = placement_utility_inverse(u, t);
    double top = c->capi[a] * c->maxinst[a];
    return d > top ? top : d;
}

/* ------------------------------------------------------------ node classes */

struct node_key {
    const struct pl_ctx *c;
    size_t n;
};

static int cmp_node(const void *x, const void *y)
{
    const struct node_key *a = x, *b = y;
    const struct pl_ctx *c = a->c;
    if (c->cap[a->n] != c->cap[b->n])
        return c->cap[a->n] < c->cap[b->n] ? -1 : 1;
    if (c->mem[a->n] != c->mem[b->n])
        return c->mem[a->n] < c->mem[b->n] ? -1 : 1;
    int r = strcmp(c->p->nodes[a->n].labels, c->p->nodes[b->n].labels);
    if (r)
        return r;
    return a->n < b->n ? -1 : (a->n > b->n);
}

int pl_classes_build(const struct pl_ctx *c, struct pl_classes *cl)
{
    memset(cl, 0, sizeof(*cl));
    size_t N = c->N ? c->N : 1;
    struct node_key *k = malloc(N * sizeof(*k));
    cl->rep = malloc(N * sizeof(size_t));
    cl->count = calloc(N, sizeof(size_t));
    cl->of = malloc(N * sizeof(size_t));
    if (!k || !cl->rep || !cl->count || !cl->of) {
        free(k);
        pl_classes_fini(cl);
        return -ENOMEM;
    }
    for (size_t n = 0; n < c->N; n++)
        k[n] = (struct node_key){c, n};
    qsort(k, c->N, sizeof(*k), cmp_node);
    for (size_t i = 0; i < c->N; i++) {
        size_t n = k[i].n;
        if (i == 0 || c->cap[n] != c->cap[k[i - 1].n] || c->mem[n] != c->mem[k[i - 1].n] ||
            strcmp(c->p->nodes[n].labels, c->p->nodes[k[i - 1].n].labels))
            cl->rep[cl->K++] = n; /* the lowest-numbered node of its class */
        cl->count[cl->K - 1]++;
        cl->of[n] = cl->K - 1;
    }
    free(k);
    return 0;
}

void pl_classes_fini(struct pl_classes *cl)
{
    free(cl->rep);
    free(cl->count);
    free(cl->of);
    memset(cl, 0, sizeof(*cl));
}

/* -------------------------------------------------------- workload groups */

struct wl_key {
    const struct pl_ctx *c;
    size_t a;
};

static int cmp_wl(const void *x, const void *y)
{
    const struct wl_key *p = x, *q = y;
    const struct pl_ctx *c = p->c;
    const struct placement_workload *a = &c->p->workloads[p->a], *b = &c->p->workloads[q->a];
    if (a->memory_mb != b->memory_mb)
        return a->memory_mb < b->memory_mb ? -1 : 1;
    if (c->capi[p->a] != c->capi[q->a])
        return c->capi[p->a] < c->capi[q->a] ? -1 : 1;
    if (pl_whole(c, p->a) != pl_whole(c, q->a))
        return pl_whole(c, p->a) - pl_whole(c, q->a);
    int r = strcmp(a->requires, b->requires);
    if (r)
        return r;
    return p->a < q->a ? -1 : (p->a > q->a);
}

static int same_shape(const struct pl_ctx *c, size_t a, size_t b)
{
    const struct placement_workload *x = &c->p->workloads[a], *y = &c->p->workloads[b];
    return x->memory_mb == y->memory_mb && c->capi[a] == c->capi[b] &&
           pl_whole(c, a) == pl_whole(c, b) && !strcmp(x->requires, y->requires);
}

struct bmodel {
    size_t G;
    size_t *first, *len; /* members of group g: ws[first[g] .. first[g]+len[g]) */
    size_t *ws;
    int *drow;      /* demand row per group */
    double *dem;    /* D_g(t) scratch */
    glp_prob *lp;
    int rows, cols;
};

/* D_g(t) for every group; 0 when some workload cannot reach t at all. */
static int demands(const struct pl_ctx *c, const struct bmodel *m, double t)
{
    for (size_t g = 0; g < m->G; g++) {
        double s = 0;
        for (size_t i = 0; i < m->len[g]; i++) {
            double d = pl_relaxed_demand(c, m->ws[m->first[g] + i], t);
            if (!isfinite(d))
                return 0;
            s += d;
        }
        m->dem[g] = s;
    }
    return 1;
}

/* 1 feasible, 0 infeasible, -1 undecided (iteration limit or GLPK trouble). */
static int probe(const struct pl_ctx *c, struct bmodel *m, double t, const glp_smcp *sp,
                 long *iters)
{
    if (!demands(c, m, t))
        return 0;
    for (size_t g = 0; g < m->G; g++)
        glp_set_row_bnds(m->lp, m->drow[g], GLP_LO, m->dem[g] / PL_CPU_U, 0);
    int before = glp_get_it_cnt(m->lp);
    int r = glp_simplex(m->lp, sp);
    *iters += glp_get_it_cnt(m->lp) - before;
    if (r != 0) {
        if (r == GLP_ESING || r == GLP_ECOND || r == GLP_EBADB) {
            /* A lost basis: start over from the slack basis once. */
            glp_std_basis(m->lp);
            r = glp_simplex(m->lp, sp);
        }
        if (r != 0)
            return -1;
    }
    int st = glp_get_status(m->lp);
    if (st == GLP_OPT || st == GLP_FEAS)
        return 1;
    if (st == GLP_NOFEAS)
        return 0;
    return -1;
}

int pl_lp_bound(const struct pl_ctx *c, const struct pl_bound_args *ba, struct pl_bound_result *r,
                char *note, size_t notesz)
{
    memset(r, 0, sizeof(*r));
    r->bound = ba->known_bound;
    struct pl_classes cl = {0};
    struct bmodel m;
    memset(&m, 0, sizeof(m));
    struct wl_key *keys = NULL;
    int *volatile ia = NULL, *volatile ja = NULL;
    double *volatile ar = NULL;
    int rc = -ENOMEM;
    struct pl_glpk_guard guard;
    glp_prob *volatile lp = NULL;

    if (pl_classes_build(c, &cl))
        return -ENOMEM;
    size_t W = c->W ? c->W : 1;
    keys = malloc(W * sizeof(*keys));
    m.first = malloc(W * sizeof(size_t));
    m.len = calloc(W, sizeof(size_t));
    m.ws = malloc(W * sizeof(size_t));
    m.drow = calloc(W, sizeof(int));
    m.dem = calloc(W, sizeof(double));
    if (!keys || !m.first || !m.len || !m.ws || !m.drow || !m.dem)
        goto out;
    size_t nin = 0;
    for (size_t a = 0; a < c->W; a++)
        if (pl_in(c, ba->excluded, a))
            keys[nin++] = (struct wl_key){c, a};
    if (!nin || !(ba->known_bound > ba->known_feasible + ba->tol)) {
        rc = 0; /* nothing to place, or the known bound is already tight */
        goto out;
    }
    qsort(keys, nin, sizeof(*keys), cmp_wl);
    for (size_t i = 0; i < nin; i++) {
        if (i == 0 || !same_shape(c, keys[i].a, keys[i - 1].a)) {
            m.first[m.G] = i;
            m.G++;
        }
        m.len[m.G - 1]++;
        m.ws[i] = keys[i].a;
    }
    r->classes = (int)cl.K;
    r->groups = (int)m.G;

    /* Size the matrix: per eligible (g, k) pair 2 columns and up to 8 nonzeros. */
    volatile size_t npairs = 0;
    for (size_t g = 0; g < m.G; g++)
        for (size_t k = 0; k < cl.K; k++)
            npairs += pl_eligible(c, m.ws[m.first[g]], cl.rep[k]);
    size_t nnz_max = 8 * npairs + 1;
    ia = malloc((nnz_max + 1) * sizeof(int));
    ja = malloc((nnz_max + 1) * sizeof(int));
    ar = malloc((nnz_max + 1) * sizeof(double));
    if (!ia || !ja || !ar)
        goto out;

    pl_glpk_guard_on(&guard);
    if (setjmp(guard.jb)) {
        glp_free_env();
        lp = NULL;
        snprintf(note, notesz, "bound LP: GLPK internal error");
        rc = 0; /* the known bound stands */
        goto out;
    }
    lp = glp_create_prob();
    m.lp = lp;
    glp_set_obj_dir(lp, GLP_MIN);
    /* rows: per group demand + instances, per class cpu + memory, per pair
     * link, per class the "big" instances (over half a node's memory, or
     * whole jobs over half its CPU: at most one of each kind per node) */
    int nrows = (int)(2 * m.G + 2 * cl.K + npairs + 2 * cl.K);
    glp_add_rows(lp, nrows);
    glp_add_cols(lp, npairs > 0 ? (int)(2 * npairs) : 1);
    int row_inst0 = (int)m.G, row_cpu0 = (int)(2 * m.G), row_mem0 = row_cpu0 + (int)cl.K;
    int row_big0 = row_mem0 + (int)cl.K + (int)npairs; /* after the links */
    int row_link = row_mem0 + (int)cl.K;
    for (size_t g = 0; g < m.G; g++) {
        m.drow[g] = (int)g + 1;
        double lo = 0, hi = 0;
        for (size_t i = 0; i < m.len[g]; i++) {
            size_t a = m.ws[m.first[g] + i];
            lo += c->mininst[a];
            hi += c->maxinst[a];
        }
        glp_set_row_bnds(lp, row_inst0 + (int)g + 1, lo == hi ? GLP_FX : GLP_DB, lo, hi);
    }
    for (size_t k = 0; k < cl.K; k++) {
        double mk = (double)cl.count[k];
        glp_set_row_bnds(lp, row_cpu0 + (int)k + 1, GLP_UP, 0, mk * c->cap[cl.rep[k]] / PL_CPU_U);
        glp_set_row_bnds(lp, row_mem0 + (int)k + 1, GLP_UP, 0, mk * c->mem[cl.rep[k]] / PL_MEM_U);
        glp_set_row_bnds(lp, row_big0 + 2 * (int)k + 1, GLP_UP, 0, mk);
        glp_set_row_bnds(lp, row_big0 + 2 * (int)k + 2, GLP_UP, 0, mk);
    }
    size_t nz = 0;
    int col = 0;
#define NZ(r_, c_, v_)                                                                             \
    do {                                                                                           \
        nz++;                                                                                      \
        ia[nz] = (r_);                                                                             \
        ja[nz] = (c_);                                                                             \
        ar[nz] = (v_);                                                                             \
    } while (0)
    for (size_t g = 0; g < m.G; g++) {
        size_t a0 = m.ws[m.first[g]];
        int whole = pl_whole(c, a0);
        double memg = c->p->workloads[a0].memory_mb / PL_MEM_U;
        for (size_t k = 0; k < cl.K; k++) {
            size_t n = cl.rep[k];
            if (!pl_eligible(c, a0, n))
                continue;
            double capk = whole ? c->capi[a0] : fmin(c->capi[a0], c->cap[n]);
            if (whole && c->cap[n] < c->capi[a0] - PL_EPS)
                capk = 0; /* a whole job does not fit this class's CPU */
            double zub = 0;
            for (size_t i = 0; i < m.len[g]; i++) {
                size_t a = m.ws[m.first[g] + i];
                zub += fmin((double)cl.count[k], (double)c->maxinst[a]);
            }
            /* per node at most so many instances of this shape fit */
            double per = floor(c->mem[n] / c->p->workloads[a0].memory_mb + 1e-9);
            if (whole)
                per = fmin(per, floor(c->cap[n] / c->capi[a0] + 1e-9));
            zub = fmin(zub, per * (double)cl.count[k]);
            if (capk <= 0)
                zub = 0;
            int ycol = ++col, zcol = ++col, lrow = ++row_link;
            glp_set_col_bnds(lp, ycol, zub > 0 ? GLP_DB : GLP_FX, 0, capk * zub / PL_CPU_U);
            glp_set_col_bnds(lp, zcol, zub > 0 ? GLP_DB : GLP_FX, 0, zub);
            glp_set_row_bnds(lp, lrow, GLP_UP, 0, 0);
            NZ(m.drow[g], ycol, 1.0);
            NZ(row_inst0 + (int)g + 1, zcol, 1.0);
            NZ(row_cpu0 + (int)k + 1, ycol, 1.0);
            NZ(row_mem0 + (int)k + 1, zcol, memg);
            NZ(lrow, ycol, 1.0);
            NZ(lrow, zcol, -capk / PL_CPU_U);
            if (c->p->workloads[a0].memory_mb > 0.5 * c->mem[n] + PL_EPS)
                NZ(row_big0 + 2 * (int)k + 1, zcol, 1.0);
            if (whole && c->capi[a0] > 0.5 * c->cap[n] + PL_EPS)
                NZ(row_big0 + 2 * (int)k + 2, zcol, 1.0);
        }
    }
#undef NZ
    m.rows = nrows;
    m.cols = col;
    if (nz)
        glp_load_matrix(lp, (int)nz, ia, ja, ar);

    glp_smcp sp;
    glp_init_smcp(&sp);
    sp.msg_lev = GLP_MSG_OFF;
    sp.meth = GLP_PRIMAL;
    sp.presolve = GLP_OFF;
    sp.it_lim = 20 * (m.rows + m.cols) + 500; /* deterministic work per probe */
    sp.tm_lim = pl_ms_left(ba->deadline);

    /* The first probe just above the known feasible level decides whether
     * the heuristic is already optimal; then bisect. */
    double lo = ba->known_feasible, hi = ba->known_bound;
    int solved = 1;
    double t = lo + ba->tol;
    for (int step = 0; step < 64 && hi - lo > ba->tol; step++) {
        if (pl_past(ba->deadline)) {
            solved = 0;
            break;
        }
        sp.tm_lim = pl_ms_left(ba->deadline);
        r->lps++;
        int f = probe(c, &m, t, &sp, &r->iterations);
        if (f < 0) {
            solved = 0;
            break;
        }
        if (f)
            lo = t;
        else
            hi = t;
        t = 0.5 * (lo + hi);
    }
    r->bound = hi;
    r->lp_solved = solved;
    if (!solved)
        snprintf(note, notesz, "bound LP stopped after %d probes", r->lps);
    rc = 0;
out:
    if (lp) {
        glp_delete_prob(lp);
        lp = NULL;
    }
    pl_glpk_guard_off();
    free(ia);
    free(ja);
    free(ar);
    free(keys);
    free(m.first);
    free(m.len);
    free(m.ws);
    free(m.drow);
    free(m.dem);
    pl_classes_fini(&cl);
    return rc;
}
