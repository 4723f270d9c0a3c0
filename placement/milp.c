/*
 * milp.c - GLPK improves a placement: a restricted MILP around the workloads
 * that set the minimum.
 *
 * The full pair MILP (binary x and CPU w for every node x workload pair) is
 * too large to even relax at cluster sizes. Only the workloads near the
 * minimum decide it, so the model frees just those ("free" workloads: binary
 * x[a,n] on a few candidate nodes each, their CPU w[a,n]) and keeps every
 * other instance where the incumbent has it. Kept instances on the nodes the
 * model touches still have continuous CPU, so they can give CPU down to the
 * new minimum; kept instances elsewhere are constants, and a kept workload
 * with no instance on a touched node only caps t at its current utility.
 *
 *   node CPU     sum w (+ cap_a x for whole jobs) <= cpu_n - constants
 *   node memory  sum mem_a x[a,n] <= mem_n - memory of kept instances
 *   instance cap w[a,n] <= min(cap_a, cpu_n) x[a,n]
 *   instances    min_a <= sum_n x[a,n] <= max_a
 *   utility      t <= alpha_k + beta_k (sum w + constants)  per segment k
 *                whole jobs: t <= u(0) + (u(cap) - u(0)) sum_n x[a,n]
 *   symmetry     identical empty nodes are used in order of memory load
 *   max          t (+ tiny terms that keep instances where they are today)
 *
 * The incumbent is handed to GLPK as its first integer solution and t is
 * bounded below by its level, so branch-and-bound only searches for better.
 * Work is bounded by simplex iterations and branch-and-bound nodes, both
 * deterministic; GLPK's tm_lim is the wall-clock safety net.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glpk_util.h"
#include "lpbound.h"

#define HELD(a) (ia->held && !isnan(ia->held[a]))
#define EPS_KEEP 1e-7 /* bonus for keeping an instance where it runs today */
#define EPS_NEW 1e-8  /* penalty for an instance where none runs today */
#define OBJ_SHIFT 2.0 /* keeps GLPK's relative gap meaningful around t = 0 */

struct fpair { /* a free workload on a candidate node */
    size_t a, n;
    int xcol, wcol; /* wcol 0 for whole jobs (their CPU is cap_a x) */
    int current;
};

struct kcol { /* a kept instance with continuous CPU on a touched node */
    size_t inst;
    int col;
};

struct mdl {
    const struct pl_ctx *c;
    const struct pl_improve_args *ia;
    const struct pl_sol *s;
    int *isfree;
    int *inM;         /* per node: row index base (0 = not in the model) */
    double *fmem;     /* per node: memory of kept instances */
    double *kcpu;     /* per node: CPU of kept instances that are constants */
    int *hasfixed;    /* per node: kept instances there */
    int *curfree;     /* per node: a free workload runs there today */
    double *offcpu;   /* per workload: CPU of kept instances off the model's nodes */
    int *touch;       /* per workload: kept, with a CPU column in the model */
    size_t *perm;     /* per node: where the incumbent's instances go (symmetry) */
    struct fpair *fp;
    size_t nfp, fpcap;
    /* lists that keep model building linear: instances of the incumbent and
     * of today per workload, pairs per workload (contiguous) and per node,
     * kept columns per workload */
    size_t *shead, *snext, *chead, *cnext, *pfirst, *pcnt, *nhead, *nnext, *khead, *knext;
    int *vcol; /* lexicographic stage: utility column per workload (0 = none) */
    struct kcol *kc;
    size_t nkc;
    double t_ub;
    int tcol, ncols;
    double *hint;
    int hint_given;
    long it0;
    double it_cost, node_cost, budget; /* work units */
    long nodes;
};

static void cb(glp_tree *tree, void *info)
{
    struct mdl *m = info;
    int reason = glp_ios_reason(tree);
    if (reason == GLP_IHEUR && !m->hint_given && m->hint) {
        m->hint_given = 1;
        glp_ios_heur_sol(tree, m->hint);
    }
    int a_cnt, n_cnt, t_cnt;
    glp_ios_tree_size(tree, &a_cnt, &n_cnt, &t_cnt);
    m->nodes = t_cnt;
    long its = glp_get_it_cnt(glp_ios_get_prob(tree)) - m->it0;
    if ((double)its * m->it_cost + (double)t_cnt * m->node_cost > m->budget)
        glp_ios_terminate(tree);
}

static int push_pair(struct mdl *m, size_t a, size_t n, int current)
{
    if (m->nfp == m->fpcap) {
        size_t nc = m->fpcap ? 2 * m->fpcap : 64;
        struct fpair *np = realloc(m->fp, nc * sizeof(*np));
        if (!np)
            return -ENOMEM;
        m->fp = np;
        m->fpcap = nc;
    }
    m->fp[m->nfp++] = (struct fpair){a, n, 0, 0, current};
    return 0;
}

static int can_host(const struct pl_ctx *c, size_t a, size_t n)
{
    if (!pl_eligible(c, a, n))
        return 0;
    if (pl_whole(c, a) && c->cap[n] < c->capi[a] - PL_EPS)
        return 0;
    return 1;
}

struct cand {
    double key;
    size_t n;
};

static int cmp_cand(const void *x, const void *y)
{
    const struct cand *a = x, *b = y;
    if (a->key != b->key)
        return a->key > b->key ? -1 : 1;
    return a->n < b->n ? -1 : (a->n > b->n);
}

/* Choose the candidate nodes of every free workload and the model's nodes. */
static int choose(struct mdl *m, const struct pl_classes *cl, size_t **empties, size_t *nempties)
{
    const struct pl_ctx *c = m->c;
    const struct pl_improve_args *ia = m->ia;
    const struct pl_sol *s = m->s;
    size_t N = c->N ? c->N : 1;
    unsigned char *mark = calloc(N, 1);
    unsigned char *isempty = calloc(N, 1);
    struct cand *top = malloc(((size_t)ia->ncand + 1) * sizeof(*top));
    if (!mark || !isempty || !top) {
        free(mark);
        free(isempty);
        free(top);
        return -ENOMEM;
    }
    /* Empty nodes (nothing kept, no free workload there today) of one class
     * are interchangeable: the first `nempty` of each class are offered to
     * every free workload, which makes the symmetry rows valid. */
    for (size_t k = 0; k < cl->K; k++)
        nempties[k] = 0;
    for (size_t n = 0; n < c->N; n++) {
        if (!ia->usable[n] || m->hasfixed[n] || m->curfree[n])
            continue;
        size_t k = cl->of[n];
        if (ia->full || nempties[k] < (size_t)ia->nempty) {
            empties[k][nempties[k]++] = n;
            isempty[n] = 1;
        }
    }
    int rc = 0;
    for (size_t a = 0; a < c->W && !rc; a++) {
        if (!m->isfree[a])
            continue;
        if (pl_past(ia->deadline)) {
            rc = 1; /* the deadline covers model building too */
            break;
        }
        /* own nodes: the incumbent's and today's */
        for (size_t i = m->shead[a]; i != PL_NONE; i = m->snext[i])
            if (ia->usable[s->a[i].node] && can_host(c, a, s->a[i].node))
                mark[s->a[i].node] = 1;
        for (size_t i = m->chead[a]; i != PL_NONE; i = m->cnext[i]) {
            size_t n = c->p->current[i].node;
            if (ia->usable[n] && can_host(c, a, n))
                mark[n] = 1;
        }
        size_t ntop = 0;
        const double mem_a = c->p->workloads[a].memory_mb;
        for (size_t n = 0; n < c->N; n++) {
            if (!ia->usable[n] || mark[n] || !can_host(c, a, n))
                continue;
            if (isempty[n] || ia->full) {
                mark[n] = 1;
                continue;
            }
            if (!m->hasfixed[n] && !m->curfree[n])
                continue; /* empty nodes are offered per class (above) */
            if (c->mem[n] - m->fmem[n] < mem_a - PL_EPS)
                continue; /* the kept instances leave no room */
            if (ia->ncand <= 0)
                continue;
            /* best few by free CPU (kept CPU counted at the incumbent's value) */
            struct cand cd = {c->cap[n] - m->kcpu[n], n};
            if (ntop < (size_t)ia->ncand) {
                top[ntop++] = cd;
                qsort(top, ntop, sizeof(*top), cmp_cand);
            } else if (cmp_cand(&cd, &top[ntop - 1]) < 0) {
                top[ntop - 1] = cd;
                qsort(top, ntop, sizeof(*top), cmp_cand);
            }
        }
        for (size_t i = 0; i < ntop; i++)
            mark[top[i].n] = 1;
        for (size_t i = m->chead[a]; i != PL_NONE; i = m->cnext[i])
            if (mark[c->p->current[i].node])
                mark[c->p->current[i].node] = 2; /* runs there today */
        m->pfirst[a] = m->nfp;
        for (size_t n = 0; n < c->N && !rc; n++) {
            if (!mark[n])
                continue;
            rc = push_pair(m, a, n, mark[n] == 2);
            mark[n] = 0;
            m->inM[n] = 1;
        }
        m->pcnt[a] = m->nfp - m->pfirst[a];
    }
    free(mark);
    free(isempty);
    free(top);
    return rc;
}

static int cmp_load(const void *x, const void *y)
{
    const struct cand *a = x, *b = y;
    return cmp_cand(a, b); /* heavier first, then node order */
}

int pl_improve(const struct pl_ctx *c, const struct pl_improve_args *ia, struct pl_sol *s,
               struct pl_improve_result *r, char *note, size_t notesz)
{
    const struct placement_problem *p = c->p;
    memset(r, 0, sizeof(*r));
    r->t = ia->t_floor;
    note[0] = 0;
    struct mdl m;
    memset(&m, 0, sizeof(m));
    m.c = c;
    m.ia = ia;
    m.s = s;
    struct pl_classes cl = {0};
    size_t **volatile empties = NULL, *volatile nempties = NULL;
    int *volatile ia_ = NULL, *volatile ja_ = NULL;
    double *volatile ar_ = NULL;
    struct pl_sol out = {0};
    volatile int rc = -ENOMEM;
    struct pl_glpk_guard guard;
    glp_prob *volatile lp = NULL;
    size_t N = c->N ? c->N : 1, W = c->W ? c->W : 1;

    m.isfree = calloc(W, sizeof(int));
    m.inM = calloc(N, sizeof(int));
    m.fmem = calloc(N, sizeof(double));
    m.kcpu = calloc(N, sizeof(double));
    m.hasfixed = calloc(N, sizeof(int));
    m.curfree = calloc(N, sizeof(int));
    m.offcpu = calloc(W, sizeof(double));
    m.touch = calloc(W, sizeof(int));
    m.perm = malloc(N * sizeof(size_t));
    m.kc = malloc((s->n ? s->n : 1) * sizeof(*m.kc));
    m.vcol = calloc(W, sizeof(int));
    size_t S = s->n ? s->n : 1, C = p->ncurrent ? p->ncurrent : 1;
    m.shead = malloc(W * sizeof(size_t));
    m.snext = malloc(S * sizeof(size_t));
    m.chead = malloc(W * sizeof(size_t));
    m.cnext = malloc(C * sizeof(size_t));
    m.pfirst = calloc(W, sizeof(size_t));
    m.pcnt = calloc(W, sizeof(size_t));
    m.khead = malloc(W * sizeof(size_t));
    m.knext = malloc(S * sizeof(size_t));
    m.nhead = malloc(N * sizeof(size_t));
    if (!m.isfree || !m.inM || !m.fmem || !m.kcpu || !m.hasfixed || !m.curfree || !m.offcpu ||
        !m.touch || !m.perm || !m.kc || !m.shead || !m.snext || !m.chead || !m.cnext ||
        !m.pfirst || !m.pcnt || !m.khead || !m.knext || !m.nhead || !m.vcol ||
        pl_classes_build(c, &cl))
        goto out;
    for (size_t a = 0; a < c->W; a++)
        m.shead[a] = m.chead[a] = m.khead[a] = PL_NONE;
    for (size_t i = s->n; i-- > 0;) {
        m.snext[i] = m.shead[s->a[i].workload];
        m.shead[s->a[i].workload] = i;
    }
    for (size_t i = p->ncurrent; i-- > 0;) {
        m.cnext[i] = m.chead[p->current[i].workload];
        m.chead[p->current[i].workload] = i;
    }
    empties = calloc(cl.K ? cl.K : 1, sizeof(size_t *));
    nempties = calloc(cl.K ? cl.K : 1, sizeof(size_t));
    if (!empties || !nempties)
        goto out;
    for (size_t k = 0; k < cl.K; k++)
        if (!(empties[k] = malloc(cl.count[k] * sizeof(size_t))))
            goto out;
    for (size_t n = 0; n < c->N; n++)
        m.perm[n] = n;
    size_t nfree = 0;
    for (size_t a = 0; a < c->W; a++) {
        /* a job with an action in flight stays exactly as it is */
        m.isfree[a] = pl_in(c, ia->excluded, a) && ia->free_wl[a] && !c->busy[a];
        nfree += m.isfree[a];
    }
    for (size_t i = 0; i < s->n; i++) {
        size_t a = s->a[i].workload, n = s->a[i].node;
        if (m.isfree[a])
            continue;
        m.fmem[n] += p->workloads[a].memory_mb;
        m.kcpu[n] += s->a[i].cpu_mhz;
        m.hasfixed[n] = 1;
    }
    for (size_t i = 0; i < p->ncurrent; i++)
        if (m.isfree[p->current[i].workload])
            m.curfree[p->current[i].node] = 1;
    if ((rc = choose(&m, &cl, empties, nempties))) {
        if (rc > 0) {
            r->status = 2;
            snprintf(note, notesz, "deadline reached while building the model");
            rc = 0;
        }
        goto out;
    }
    rc = -ENOMEM;
    m.nnext = malloc((m.nfp ? m.nfp : 1) * sizeof(size_t));
    if (!m.nnext)
        goto out;
    for (size_t n = 0; n < c->N; n++)
        m.nhead[n] = PL_NONE;
    for (size_t k = m.nfp; k-- > 0;) {
        m.nnext[k] = m.nhead[m.fp[k].n];
        m.nhead[m.fp[k].n] = k;
    }
    if (!nfree || !m.nfp) {
        r->status = 1;
        snprintf(note, notesz, "nothing to improve");
        rc = 0;
        goto out;
    }

    /* Kept instances: a CPU column on the model's nodes (whole jobs and
     * workloads outside the optimisation stay constants), else constants. */
    for (size_t n = 0; n < c->N; n++)
        m.kcpu[n] = 0;
    m.t_ub = INFINITY;
    for (size_t i = 0; i < s->n; i++) {
        size_t a = s->a[i].workload, n = s->a[i].node;
        if (m.isfree[a])
            continue;
        if (m.inM[n] && pl_in(c, ia->excluded, a) && !pl_whole(c, a) && !c->busy[a]) {
            m.kc[m.nkc++] = (struct kcol){i, 0};
            m.touch[a] = 1;
        } else if (m.inM[n]) {
            m.kcpu[n] += s->a[i].cpu_mhz;
            m.offcpu[a] += s->a[i].cpu_mhz;
        } else {
            m.offcpu[a] += s->a[i].cpu_mhz;
        }
    }
    for (size_t k = m.nkc; k-- > 0;) {
        size_t a = s->a[m.kc[k].inst].workload;
        m.knext[k] = m.khead[a];
        m.khead[a] = k;
    }
    /* Kept workloads whose CPU cannot change cap t at their utility. */
    for (size_t a = 0; a < c->W; a++) {
        if (!pl_in(c, ia->excluded, a) || m.isfree[a] || m.touch[a] || HELD(a))
            continue;
        double u = placement_utility_eval(&p->workloads[a].utility, m.offcpu[a]);
        if (u < m.t_ub)
            m.t_ub = u;
    }
    for (size_t a = 0; a < c->W; a++)
        if ((m.isfree[a] || m.touch[a]) && !HELD(a))
            m.t_ub = fmin(m.t_ub, c->umax[a]);
    if (!isfinite(m.t_ub))
        m.t_ub = 1e6;
    if (m.t_ub < ia->t_floor - 1e-9) {
        r->status = 1;
        snprintf(note, notesz, "restricted model infeasible (kept workloads below the floor)");
        rc = 0;
        goto out;
    }

    /* Columns: t, per pair x (and w), per kept instance w. */
    int ncols = 1;
    for (size_t k = 0; k < m.nfp; k++) {
        m.fp[k].xcol = ++ncols;
        if (!pl_whole(c, m.fp[k].a))
            m.fp[k].wcol = ++ncols;
    }
    for (size_t k = 0; k < m.nkc; k++)
        m.kc[k].col = ++ncols;
    if (ia->sum_weight > 0)
        for (size_t a = 0; a < c->W; a++)
            if ((m.isfree[a] || m.touch[a]) && !HELD(a))
                m.vcol[a] = ++ncols;
    m.ncols = ncols;
    m.tcol = 1;
    /* Nonzero count: pairs 2 (node rows) + 2 (link) + 1 (count) + segments;
     * kept columns 1 + segments; symmetry 2 per pair. */
    volatile size_t nnz_max = 1;
    for (size_t k = 0; k < m.nfp; k++)
        nnz_max += 7 + p->workloads[m.fp[k].a].utility.npoints + 1;
    for (size_t k = 0; k < m.nkc; k++)
        nnz_max += 2 + p->workloads[s->a[m.kc[k].inst].workload].utility.npoints + 1;
    for (size_t a = 0; a < c->W; a++)
        if (m.isfree[a] || m.touch[a])
            nnz_max += p->workloads[a].utility.npoints + 2;
    if (ia->sum_weight > 0) /* every utility row twice */
        nnz_max *= 2;
    ia_ = malloc((nnz_max + 1) * sizeof(int));
    ja_ = malloc((nnz_max + 1) * sizeof(int));
    ar_ = malloc((nnz_max + 1) * sizeof(double));
    m.hint = calloc((size_t)ncols + 1, sizeof(double));
    if (!ia_ || !ja_ || !ar_ || !m.hint)
        goto out;

    pl_glpk_guard_on(&guard);
    if (setjmp(guard.jb)) {
        glp_free_env();
        lp = NULL;
        snprintf(note, notesz, "GLPK internal error");
        r->status = -1;
        rc = 0;
        goto out;
    }
    lp = glp_create_prob();
    glp_set_prob_name(lp, "wlm_placement_restricted");
    glp_set_obj_dir(lp, GLP_MAX);
    glp_add_cols(lp, ncols);
    glp_set_col_name(lp, m.tcol, "t");
    /* t between the incumbent's level and the certified bound: GLPK
     * searches only for better, and stops when it reaches the bound. */
    double t_hi = fmin(m.t_ub, ia->t_cap + 1e-7);
    glp_set_col_bnds(lp, m.tcol, GLP_DB, ia->t_floor - 1e-7, fmax(t_hi, ia->t_floor));
    char name[64];
    for (size_t k = 0; k < m.nfp; k++) {
        const struct fpair *f = &m.fp[k];
        glp_set_col_kind(lp, f->xcol, GLP_BV);
        snprintf(name, sizeof(name), "x_%zu_%zu", f->a, f->n);
        glp_set_col_name(lp, f->xcol, name);
        if (f->wcol) {
            snprintf(name, sizeof(name), "w_%zu_%zu", f->a, f->n);
            glp_set_col_name(lp, f->wcol, name);
            glp_set_col_bnds(lp, f->wcol, GLP_DB, 0,
                             fmax(1e-9, fmin(c->capi[f->a], c->cap[f->n]) / PL_CPU_U));
        }
    }
    for (size_t k = 0; k < m.nkc; k++) {
        const struct placement_assign *x = &s->a[m.kc[k].inst];
        snprintf(name, sizeof(name), "k_%zu_%zu", x->workload, x->node);
        glp_set_col_name(lp, m.kc[k].col, name);
        glp_set_col_bnds(lp, m.kc[k].col, GLP_DB, 0,
                         fmax(1e-9, fmin(c->capi[x->workload], c->cap[x->node]) / PL_CPU_U));
    }
    for (size_t a = 0; a < c->W; a++) {
        if (!m.vcol[a])
            continue;
        snprintf(name, sizeof(name), "v_%zu", a);
        glp_set_col_name(lp, m.vcol[a], name);
        glp_set_col_bnds(lp, m.vcol[a], GLP_DB, -1e3, c->umax[a]);
    }
    size_t nz = 0;
    int row = 0, overflow = 0;
#define NZ(r_, c_, v_)                                                                             \
    do {                                                                                           \
        if (nz < nnz_max) {                                                                        \
            nz++;                                                                                  \
            ia_[nz] = (r_);                                                                        \
            ja_[nz] = (c_);                                                                        \
            ar_[nz] = (v_);                                                                        \
        } else {                                                                                   \
            overflow = 1;                                                                          \
        }                                                                                          \
    } while (0)
    /* node rows: CPU then memory, for the model's nodes */
    for (size_t n = 0; n < c->N; n++) {
        if (!m.inM[n])
            continue;
        glp_add_rows(lp, 2);
        int rcpu = ++row, rmem = ++row;
        m.inM[n] = rcpu;
        snprintf(name, sizeof(name), "cpu_%zu", n);
        glp_set_row_name(lp, rcpu, name);
        snprintf(name, sizeof(name), "mem_%zu", n);
        glp_set_row_name(lp, rmem, name);
        glp_set_row_bnds(lp, rcpu, GLP_UP, 0, (c->cap[n] - m.kcpu[n]) / PL_CPU_U);
        glp_set_row_bnds(lp, rmem, GLP_UP, 0, (c->mem[n] - m.fmem[n]) / PL_MEM_U);
    }
    for (size_t k = 0; k < m.nfp; k++) {
        const struct fpair *f = &m.fp[k];
        int rcpu = m.inM[f->n];
        if (f->wcol)
            NZ(rcpu, f->wcol, 1.0);
        else
            NZ(rcpu, f->xcol, c->capi[f->a] / PL_CPU_U);
        NZ(rcpu + 1, f->xcol, p->workloads[f->a].memory_mb / PL_MEM_U);
        if (f->wcol) { /* w <= cap x */
            glp_add_rows(lp, 1);
            ++row;
            glp_set_row_bnds(lp, row, GLP_UP, 0, 0);
            NZ(row, f->wcol, 1.0);
            NZ(row, f->xcol, -fmin(c->capi[f->a], c->cap[f->n]) / PL_CPU_U);
        }
    }
    for (size_t k = 0; k < m.nkc; k++)
        NZ(m.inM[s->a[m.kc[k].inst].node], m.kc[k].col, 1.0);
    /* per workload: instance counts and utility segments */
    for (size_t a = 0; a < c->W; a++) {
        if (!m.isfree[a] && !m.touch[a])
            continue;
        const struct placement_utility *u = &p->workloads[a].utility;
        if (m.isfree[a]) {
            glp_add_rows(lp, 1);
            ++row;
            snprintf(name, sizeof(name), "inst_%zu", a);
            glp_set_row_name(lp, row, name);
            int lo = c->mininst[a], hi = c->maxinst[a];
            glp_set_row_bnds(lp, row, lo == hi ? GLP_FX : GLP_DB, lo, hi);
            for (size_t k = m.pfirst[a]; k < m.pfirst[a] + m.pcnt[a]; k++)
                NZ(row, m.fp[k].xcol, 1.0);
        }
        if (HELD(a)) {
            /* keeps at least its level: CPU >= u^-1(level) (whole: placed) */
            double need;
            if (pl_whole(c, a))
                need = ia->held[a] > placement_utility_eval(u, 0) + 1e-9 ? 1 : 0;
            else
                need = (placement_utility_inverse(u, ia->held[a]) - m.offcpu[a]) / PL_CPU_U;
            need = need * (1 - 1e-9) - 1e-9; /* the incumbent meets it exactly */
            if (need <= 0)
                continue;
            glp_add_rows(lp, 1);
            ++row;
            snprintf(name, sizeof(name), "keep_%zu", a);
            glp_set_row_name(lp, row, name);
            glp_set_row_bnds(lp, row, GLP_LO, need, 0);
            for (size_t k = m.pfirst[a]; k < m.pfirst[a] + m.pcnt[a]; k++)
                NZ(row, m.fp[k].wcol ? m.fp[k].wcol : m.fp[k].xcol, 1.0);
            for (size_t k = m.khead[a]; k != PL_NONE; k = m.knext[k])
                NZ(row, m.kc[k].col, 1.0);
            continue;
        }
        /* the rows bound t and, in the lexicographic stage, v_a as well */
        for (int which = 0; which < (m.vcol[a] ? 2 : 1); which++) {
            int tc = which ? m.vcol[a] : m.tcol;
            const char *pre = which ? "v" : "u";
            if (m.isfree[a] && pl_whole(c, a)) {
                /* exact for a 0/1 count: u(0) or u(cap) */
                double u0 = placement_utility_eval(u, 0), uc = placement_utility_eval(u, c->capi[a]);
                glp_add_rows(lp, 1);
                ++row;
                snprintf(name, sizeof(name), "%s_%zu", pre, a);
                glp_set_row_name(lp, row, name);
                glp_set_row_bnds(lp, row, GLP_UP, 0, u0);
                NZ(row, tc, 1.0);
                for (size_t k = m.pfirst[a]; k < m.pfirst[a] + m.pcnt[a]; k++)
                    if (uc != u0)
                        NZ(row, m.fp[k].xcol, -(uc - u0));
                continue;
            }
            for (size_t sg = 1; sg < u->npoints; sg++) {
                double slope = (u->util[sg] - u->util[sg - 1]) / (u->cpu_mhz[sg] - u->cpu_mhz[sg - 1]);
                double alpha = u->util[sg - 1] - slope * u->cpu_mhz[sg - 1];
                if (slope <= 0)
                    continue; /* flat pieces are covered by the column's upper bound */
                glp_add_rows(lp, 1);
                ++row;
                snprintf(name, sizeof(name), "%s_%zu_%zu", pre, a, sg);
                glp_set_row_name(lp, row, name);
                glp_set_row_bnds(lp, row, GLP_UP, 0, alpha + slope * m.offcpu[a]);
                NZ(row, tc, 1.0);
                for (size_t k = m.pfirst[a]; k < m.pfirst[a] + m.pcnt[a]; k++)
                    if (m.fp[k].wcol)
                        NZ(row, m.fp[k].wcol, -slope * PL_CPU_U);
                for (size_t k = m.khead[a]; k != PL_NONE; k = m.knext[k])
                    NZ(row, m.kc[k].col, -slope * PL_CPU_U);
            }
        }
        /* below the first breakpoint the utility is flat at util[0]:
         * t <= u(0) + (slope of the first piece) W covers it when
         * cpu_mhz[0] == 0; a later start is flat there (checked concave). */
    }
    /* Symmetry: identical empty nodes hold memory in non-increasing order.
     * The incumbent is permuted the same way below so it stays feasible. */
    for (size_t k = 0; k < cl.K; k++) {
        for (size_t i = 0; i + 1 < nempties[k]; i++) {
            size_t n1 = empties[k][i], n2 = empties[k][i + 1];
            if (!m.inM[n1] || !m.inM[n2])
                continue;
            glp_add_rows(lp, 1);
            ++row;
            snprintf(name, sizeof(name), "sym_%zu_%zu", n1, n2);
            glp_set_row_name(lp, row, name);
            glp_set_row_bnds(lp, row, GLP_LO, 0, 0);
            for (size_t q = m.nhead[n1]; q != PL_NONE; q = m.nnext[q])
                NZ(row, m.fp[q].xcol, p->workloads[m.fp[q].a].memory_mb / PL_MEM_U);
            for (size_t q = m.nhead[n2]; q != PL_NONE; q = m.nnext[q])
                NZ(row, m.fp[q].xcol, -p->workloads[m.fp[q].a].memory_mb / PL_MEM_U);
        }
    }
#undef NZ
    if (overflow) { /* cannot happen: nnz_max counts every entry written */
        snprintf(note, notesz, "internal: model size");
        r->status = -1;
        rc = 0;
        goto out;
    }
    if (pl_past(ia->deadline) && !ia->export_path) {
        snprintf(note, notesz, "deadline reached while building the model");
        r->status = 2;
        rc = 0;
        goto out;
    }
    glp_load_matrix(lp, (int)nz, ia_, ja_, ar_);
    r->nrows = row;
    r->ncols = ncols;
    r->nbin = (int)m.nfp;

    glp_set_obj_coef(lp, 0, OBJ_SHIFT);
    glp_set_obj_coef(lp, m.tcol, 1.0);
    for (size_t k = 0; k < m.nfp; k++)
        glp_set_obj_coef(lp, m.fp[k].xcol, m.fp[k].current ? EPS_KEEP : -EPS_NEW);
    for (size_t a = 0; a < c->W; a++)
        if (m.vcol[a])
            glp_set_obj_coef(lp, m.vcol[a], ia->sum_weight);

    if (ia->export_path) {
        r->status = glp_write_lp(lp, NULL, ia->export_path) ? -1 : 0;
        if (r->status)
            snprintf(note, notesz, "could not write %s", ia->export_path);
        rc = 0;
        goto out;
    }

    /* The incumbent, with identical empty nodes renumbered by load. */
    {
        struct cand *ld = malloc(((c->N ? c->N : 1)) * sizeof(*ld));
        double *load = calloc(N, sizeof(double));
        if (!ld || !load) {
            free(ld);
            free(load);
            goto out;
        }
        for (size_t i = 0; i < s->n; i++)
            if (m.isfree[s->a[i].workload])
                load[s->a[i].node] += p->workloads[s->a[i].workload].memory_mb;
        for (size_t k = 0; k < cl.K; k++) {
            size_t ne = 0;
            for (size_t i = 0; i < nempties[k]; i++)
                if (m.inM[empties[k][i]]) {
                    ld[ne].key = load[empties[k][i]];
                    ld[ne++].n = empties[k][i];
                }
            qsort(ld, ne, sizeof(*ld), cmp_load);
            size_t j = 0;
            for (size_t i = 0; i < nempties[k]; i++)
                if (m.inM[empties[k][i]])
                    m.perm[ld[j++].n] = empties[k][i];
        }
        free(ld);
        free(load);
    }
    {
        double *cpu = calloc(W, sizeof(double));
        if (!cpu)
            goto out;
        for (size_t i = 0; i < s->n; i++) {
            size_t a = s->a[i].workload, n = m.perm[s->a[i].node];
            if (!m.isfree[a])
                continue;
            for (size_t k = m.pfirst[a]; k < m.pfirst[a] + m.pcnt[a]; k++) {
                if (m.fp[k].n != n)
                    continue;
                m.hint[m.fp[k].xcol] = 1;
                double w = pl_whole(c, a) ? c->capi[a] : fmin(s->a[i].cpu_mhz, fmin(c->capi[a], c->cap[n]));
                if (m.fp[k].wcol)
                    m.hint[m.fp[k].wcol] = w / PL_CPU_U;
                cpu[a] += w;
            }
        }
        for (size_t k = 0; k < m.nkc; k++) {
            const struct placement_assign *x = &s->a[m.kc[k].inst];
            double w = fmin(x->cpu_mhz, fmin(c->capi[x->workload], c->cap[x->node]));
            m.hint[m.kc[k].col] = w / PL_CPU_U;
            cpu[x->workload] += w;
        }
        double t = m.t_ub;
        for (size_t a = 0; a < c->W; a++) {
            if ((m.isfree[a] || m.touch[a]) && !HELD(a)) {
                double ua = placement_utility_eval(&p->workloads[a].utility, cpu[a] + m.offcpu[a]);
                if (pl_whole(c, a) && cpu[a] < c->capi[a] * (1 - 1e-6))
                    ua = placement_utility_eval(&p->workloads[a].utility, 0);
                t = fmin(t, ua);
                if (m.vcol[a])
                    m.hint[m.vcol[a]] = fmin(ua, c->umax[a]);
            }
        }
        m.hint[m.tcol] = fmax(t, ia->t_floor - 1e-7);
        free(cpu);
    }

    glp_smcp sp;
    glp_init_smcp(&sp);
    sp.msg_lev = GLP_MSG_OFF;
    sp.presolve = GLP_OFF;
    /* Work units: what an iteration and a node cost grows with the model,
     * so one budget means about the same time whatever the model's size. */
    m.it_cost = 1 + row / 500.0;
    m.node_cost = 1 + (row + ncols) / 20.0;
    sp.it_lim = (int)fmax(1, fmin(ia->work_budget / m.it_cost, 1e9));
    sp.tm_lim = pl_ms_left(ia->deadline);
    int it0 = glp_get_it_cnt(lp);
    int sr = glp_simplex(lp, &sp);
    r->iterations = glp_get_it_cnt(lp) - it0;
    r->work = (long)(r->iterations * m.it_cost);
    if (sr != 0 || glp_get_status(lp) != GLP_OPT) {
        int st = glp_get_status(lp);
        r->status = st == GLP_NOFEAS ? 1 : 2;
        snprintf(note, notesz, "%s (simplex %d, status %d)",
                 st == GLP_NOFEAS ? "restricted model infeasible" : "restricted LP not solved", sr,
                 st);
        rc = 0;
        goto out;
    }
    glp_iocp ip;
    glp_init_iocp(&ip);
    ip.msg_lev = GLP_MSG_OFF;
    ip.presolve = GLP_OFF; /* the incumbent is given in the original columns */
    ip.mip_gap = ia->mip_gap;
    ip.tm_lim = pl_ms_left(ia->deadline);
    ip.cb_func = cb;
    ip.cb_info = &m;
    m.it0 = glp_get_it_cnt(lp);
    m.budget = ia->work_budget - r->iterations * m.it_cost;
    int ir = glp_intopt(lp, &ip);
    r->iterations += glp_get_it_cnt(lp) - m.it0;
    r->work = (long)(r->iterations * m.it_cost + m.nodes * m.node_cost);
    r->nodes = m.nodes;
    int st = glp_mip_status(lp);
    if (st != GLP_OPT && st != GLP_FEAS) {
        r->status = st == GLP_NOFEAS ? 1 : 2;
        snprintf(note, notesz, "restricted MILP: no solution (intopt %d, status %d)", ir, st);
        rc = 0;
        goto out;
    }
    r->optimal = st == GLP_OPT && ir == 0;
    double t_new = glp_mip_col_val(lp, m.tcol);
    r->t = t_new;
    /* The lexicographic stage hands back whatever it found: the caller
     * compares the sorted utilities. */
    if (t_new > ia->t_floor + 1e-7 || ia->sum_weight > 0) {
        /* Kept instances first (in the incumbent's order), then the free ones. */
        size_t kq = 0;
        for (size_t i = 0; i < s->n; i++) {
            const struct placement_assign *x = &s->a[i];
            if (m.isfree[x->workload])
                continue;
            double cpu = x->cpu_mhz;
            if (kq < m.nkc && m.kc[kq].inst == i)
                cpu = fmax(0, glp_mip_col_val(lp, m.kc[kq++].col) * PL_CPU_U);
            if (pl_sol_push(&out, x->workload, x->node, cpu))
                goto out;
        }
        for (size_t k = 0; k < m.nfp; k++) {
            const struct fpair *f = &m.fp[k];
            if (glp_mip_col_val(lp, f->xcol) < 0.5)
                continue;
            double cpu = f->wcol ? fmax(0, glp_mip_col_val(lp, f->wcol) * PL_CPU_U) : c->capi[f->a];
            if (pl_sol_push(&out, f->a, f->n, cpu))
                goto out;
        }
        pl_sol_fini(s);
        *s = out;
        out = (struct pl_sol){0};
        r->improved = 1;
    }
    r->status = 0;
    rc = 0;
out:
    if (rc == -ENOMEM)
        snprintf(note, notesz, "out of memory");
    if (lp) {
        glp_delete_prob(lp);
        lp = NULL;
    }
    pl_glpk_guard_off();
    pl_sol_fini(&out);
    free(ia_);
    free(ja_);
    free(ar_);
    free(m.isfree);
    free(m.inM);
    free(m.fmem);
    free(m.kcpu);
    free(m.hasfixed);
    free(m.curfree);
    free(m.offcpu);
    free(m.touch);
    free(m.perm);
    free(m.fp);
    free(m.kc);
    free(m.shead);
    free(m.snext);
    free(m.chead);
    free(m.cnext);
    free(m.pfirst);
    free(m.pcnt);
    free(m.khead);
    free(m.knext);
    free(m.nhead);
    free(m.nnext);
    free(m.vcol);
    free(m.hint);
    if (empties)
        for (size_t k = 0; k < cl.K; k++)
            free(empties[k]);
    free(empties);
    free(nempties);
    pl_classes_fini(&cl);
    return rc;
}
