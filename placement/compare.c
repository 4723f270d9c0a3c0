/*
 * compare.c - comparing placements the way a decision must: on their sorted
 * utility vectors (leximin), each job charged the progress its actions cost
 * it, a change paying for itself by the hysteresis plus the utility cost of
 * its disruptive actions. Chooses among keeping running jobs in place,
 * moving them (suspend, resume elsewhere, migrate) and the current placement,
 * and judges the exact solver's placement against the heuristic's.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heuristic.h"

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
double pl_change_cost(const struct pl_ctx *c, const struct pl_sol *cur, const struct pl_sol *tgt,
                      int *nchanges)
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

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Utilities of the workloads in the optimisation, ascending. */
size_t pl_sorted_utils(const struct pl_ctx *c, const int *excluded, const double *util, double *out)
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
double pl_lex_gain(const double *a, const double *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i] - b[i]) > 1e-6)
            return a[i] - b[i];
    return 0;
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
    *n = pl_sorted_utils(c, excluded, util, out);
    return 0;
}

/* The sorted (stall-adjusted) utilities of the best plan on the first K
 * nodes of the packing order that keeps running jobs where they are, and
 * the CPU it gives waiting jobs (queued or suspended) to start them. */
int pl_plan_vector(const struct pl_choice *r, size_t K, double *out, size_t *n, double *started)
{
    const struct pl_ctx *c = r->k->c;
    struct pl_sol keep = {0};
    double lk;
    int rc = pl_leximin(r->k, K, r->excluded, PL_PACK_KEEP, r->usable, &keep, &lk);
    if (!rc)
        rc = adjusted_sorted(c, r->excluded, &keep, r->cpu, r->util, out, n);
    *started = 0;
    for (size_t i = 0; !rc && i < keep.n; i++) {
        const struct placement_workload *w = &c->p->workloads[keep.a[i].workload];
        if (w->kind == PLACEMENT_JOB &&
            (w->state == PLACEMENT_JOB_QUEUED || w->state == PLACEMENT_JOB_SUSPENDED))
            *started += keep.a[i].cpu_mhz;
    }
    pl_sol_fini(&keep);
    return rc;
}

/* The current placement with its CPU re-divided: whole jobs keep their cap
 * while their node has it (in the order they are listed; one that finds its
 * node full gets what is left), jobs in flight keep their CPU, the rest is
 * shared by progressive filling and any idle CPU handed out. Fills *s. */
int pl_current_redivided(const struct pl_ctx *c, const int *on, struct pl_sol *s)
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
 * disruptive actions. Leaves the chosen plan in *sol. */
int pl_choose_contention(const struct pl_choice *r, size_t K, struct pl_sol *sol,
                         struct placement_decision *d, char *note, size_t notesz)
{
    const struct pl_ctx *c = r->k->c;
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
    if ((rc = pl_leximin(r->k, K, r->excluded, PL_PACK_KEEP, r->usable, &keep, &lk)) ||
        (!o->no_moves &&
         (rc = pl_leximin(r->k, K, r->excluded, PL_PACK_STICKY, r->usable, &move, &lm))))
        goto out;
    for (size_t n = 0; n < c->N; n++)
        on[n] = c->p->nodes[n].powered_on;
    if ((rc = pl_current_redivided(c, on, &cur)))
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
    if (!isfinite(lk) || (cur_ok && pl_lex_gain(vc, vk, nv) > 1e-6)) {
        base = &cur;
        vb = vc;
        why = isfinite(lk) ? "current placement kept, its CPU re-divided and waiting work started "
                             "where it fits (better than any plan without moves)"
                           : "";
    }
    int nb = 0, nm = 0;
    double cb = pl_change_cost(c, &cur, base, &nb), cm = pl_change_cost(c, &cur, &move, &nm);
    double gain = pl_lex_gain(vm, vb, nv);
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
    pl_sol_fini(sol);
    *sol = *chosen;
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
int pl_exact_pays(const struct pl_choice *r, const struct pl_sol *hs, const struct pl_sol *ex,
                  int *better)
{
    const struct pl_ctx *c = r->k->c;
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
    double ch = pl_change_cost(c, &cur, hs, &nh), ce = pl_change_cost(c, &cur, ex, &ne);
    double gain = pl_lex_gain(ve, vh, nv);
    double need = ne > nh ? c->o->hysteresis + fmax(0, ce - ch) : -1e-9;
    *better = gain > need - 1e-12;
    rc = 0;
out:
    pl_sol_fini(&cur);
    free(vh);
    free(ve);
    return rc;
}
