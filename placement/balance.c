/*
 * balance.c - the band balancer: once every workload meets its goal, spread
 * the CPU load of the powered-on nodes so each lies in the moderate band
 * around the mean utilisation, mean +/- max(band, |mean - (min + max) / 2|).
 *
 * Balancing is triggered only when some node is a further 5 % outside the
 * band (demand noise must not cause a migration every cycle); once
 * triggered, one decision plans all the moves needed to bring every node
 * into the band, on predicted loads: each step takes the move that removes
 * the most out-of-band load (ties: the smaller sum of squared loads), an
 * instance moves at most once per decision, and a move carries its CPU
 * allocation, so no workload's utility changes. The moves then run in
 * parallel; there is no second round to wait for.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CAND 6 /* heaviest sources x lightest destinations tried per step */

struct bal {
    const struct pl_ctx *c;
    const int *on;
    double *u; /* utilisation per node (used / cap) */
};

static void band(const struct bal *b, double *lo, double *hi)
{
    double sum = 0, mn = INFINITY, mx = -INFINITY;
    size_t cnt = 0;
    for (size_t n = 0; n < b->c->N; n++) {
        if (!b->on[n] || b->c->cap[n] <= 0)
            continue;
        sum += b->u[n];
        mn = fmin(mn, b->u[n]);
        mx = fmax(mx, b->u[n]);
        cnt++;
    }
    double mean = cnt ? sum / (double)cnt : 0;
    double w = fmax(b->c->o->balance_band, fabs(mean - 0.5 * (mn + mx)));
    *lo = mean - w;
    *hi = mean + w;
}

static double out_of_band(const struct bal *b, double extra)
{
    double lo, hi, d = 0;
    band(b, &lo, &hi);
    lo -= extra;
    hi += extra;
    for (size_t n = 0; n < b->c->N; n++)
        if (b->on[n] && b->c->cap[n] > 0)
            d += b->u[n] > hi ? b->u[n] - hi : b->u[n] < lo ? lo - b->u[n] : 0;
    return d;
}

static double sumsq(const struct bal *b)
{
    double s = 0;
    for (size_t n = 0; n < b->c->N; n++)
        if (b->on[n])
            s += b->u[n] * b->u[n];
    return s;
}

/* The k most (dir = 1) or least (dir = -1) loaded powered-on nodes. */
static size_t extremes(const struct bal *b, int dir, size_t *out, size_t k)
{
    size_t m = 0;
    for (size_t n = 0; n < b->c->N; n++) {
        if (!b->on[n] || b->c->cap[n] <= 0)
            continue;
        size_t pos = m < k ? m++ : k;
        while (pos > 0 && dir * (b->u[n] - b->u[out[pos - 1]]) > 0) {
            if (pos < k)
                out[pos] = out[pos - 1];
            pos--;
        }
        if (pos < k)
            out[pos] = n;
    }
    return m;
}

int pl_balance(const struct pl_ctx *c, struct pl_sol *s, const int *node_on)
{
    const struct placement_problem *p = c->p;
    size_t N = c->N ? c->N : 1;
    double *u = calloc(N, sizeof(double)), *mused = calloc(N, sizeof(double));
    unsigned char *moved = calloc(s->n ? s->n : 1, 1);
    int moves = 0;
    if (!u || !mused || !moved)
        goto out;
    for (size_t i = 0; i < s->n; i++) {
        size_t n = s->a[i].node;
        u[n] += c->cap[n] > 0 ? s->a[i].cpu_mhz / c->cap[n] : 0;
        mused[n] += p->workloads[s->a[i].workload].memory_mb;
    }
    struct bal b = {c, node_on, u};
    /* Trigger: a real imbalance, not noise. */
    if (out_of_band(&b, 0.05) <= 1e-12)
        goto out;
    double cur = out_of_band(&b, 0);
    while (moves < c->o->max_balance_moves && cur > 1e-12) {
        size_t src[CAND], dst[CAND];
        size_t ns = extremes(&b, 1, src, CAND), nd = extremes(&b, -1, dst, CAND);
        if (ns > CAND)
            ns = CAND;
        if (nd > CAND)
            nd = CAND;
        size_t bi = PL_NONE, bd = PL_NONE;
        double bscore = cur, bvar = INFINITY;
        for (size_t i = 0; i < s->n; i++) {
            const struct placement_assign *x = &s->a[i];
            const struct placement_workload *wl = &p->workloads[x->workload];
            if (moved[i] || x->cpu_mhz <= 0 || c->busy[x->workload] ||
                (wl->kind == PLACEMENT_JOB && !wl->migratable))
                continue;
            size_t h = x->node, si;
            for (si = 0; si < ns && src[si] != h; si++)
                ;
            if (si == ns)
                continue; /* only the heaviest nodes give */
            for (size_t di = 0; di < nd; di++) {
                size_t l = dst[di];
                double fl = x->cpu_mhz / c->cap[l], fh = x->cpu_mhz / c->cap[h];
                if (l == h || u[l] + fl >= u[h] ||
                    u[l] * c->cap[l] + x->cpu_mhz > c->cap[l] + PL_EPS ||
                    mused[l] + wl->memory_mb > c->mem[l] + PL_EPS ||
                    !pl_eligible(c, x->workload, l))
                    continue;
                int dup = 0;
                for (size_t j = 0; j < s->n && !dup; j++)
                    dup = s->a[j].workload == x->workload && s->a[j].node == l;
                if (dup)
                    continue;
                u[h] -= fh;
                u[l] += fl;
                double sc = out_of_band(&b, 0), var = sumsq(&b);
                u[h] += fh;
                u[l] -= fl;
                if (sc < bscore - 1e-12 || (sc <= bscore + 1e-12 && bi != PL_NONE && var < bvar)) {
                    bscore = sc;
                    bvar = var;
                    bi = i;
                    bd = l;
                }
            }
        }
        if (bi == PL_NONE)
            break;
        struct placement_assign *x = &s->a[bi];
        double mem = p->workloads[x->workload].memory_mb;
        u[x->node] -= x->cpu_mhz / c->cap[x->node];
        mused[x->node] -= mem;
        u[bd] += x->cpu_mhz / c->cap[bd];
        mused[bd] += mem;
        x->node = bd;
        moved[bi] = 1;
        moves++;
        cur = bscore;
    }
out:
    free(u);
    free(mused);
    free(moved);
    return moves;
}
