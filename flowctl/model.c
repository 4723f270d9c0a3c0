/*
 * model.c - the queueing model of the flow controller (see flowctl.h).
 *
 * Pure arithmetic: no allocation beyond the stack, no clock.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flowctl.h"
#include "flowctl_int.h"

int fc__err(struct wlm_error *err, int code, const char *field, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = -code;
        snprintf(err->field, sizeof err->field, "%s", field ? field : "");
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -code;
}

double flowctl_ps_rt(double omega, double lambda, double cost, double d0)
{
    if (omega <= 0)
        return INFINITY;
    double s = cost / omega, rho = lambda * s;
    if (rho >= 1)
        return INFINITY;
    return d0 + s / (1 - rho);
}

/* Above this the chain's weights are rescaled so that sums never overflow
 * (Poisson terms grow like a^n/n! before they shrink). */
#define FC_RESCALE 1e200

/* One flow as a birth-death chain: arrivals lambda, departures min(n, N)/T,
 * at most N + Q requests in the system (Q = 0: unbounded). N <= 0 means no
 * limit (an M/M/inf station). Fills rt, in_app, wait, throughput, drop_frac. */
static void fc_chain(double lambda, double T, double N, double Q, struct flowctl_prediction *p)
{
    memset(p, 0, sizeof *p);
    p->in_app = T;
    if (lambda <= 0) {
        p->rt = T;
        return;
    }
    if (!isfinite(T)) {
        p->rt = p->wait = INFINITY;
        return;
    }
    if (N <= 0 || T <= 0) {
        p->rt = T;
        p->throughput = lambda;
        return;
    }
    double a = lambda * T; /* offered load in "slots" */
    double nfl = floor(N);
    int bounded = Q > 0;
    double K = bounded ? floor(N + Q) : nfl;
    if (!bounded && a / N >= 1) {
        /* The router queue grows without bound: everything admitted waits forever. */
        p->rt = p->wait = INFINITY;
        p->throughput = N / T;
        return;
    }
    double pn = 1, s0 = 1, s1 = 0, sin = 0; /* Σp, Σ n p, Σ min(n,N) p */
    for (double n = 1; n <= K; n++) {
        pn *= a / (n <= nfl ? n : N);
        s0 += pn;
        s1 += n * pn;
        sin += fmin(n, N) * pn;
        if (pn > FC_RESCALE || s0 > FC_RESCALE) {
            pn /= FC_RESCALE;
            s0 /= FC_RESCALE;
            s1 /= FC_RESCALE;
            sin /= FC_RESCALE;
        }
    }
    double pk = 0;
    if (bounded) {
        pk = pn / s0;
    } else {
        /* Geometric tail beyond K = floor(N): p_{K+j} = p_K r^j. */
        double r = a / N;
        double t0 = pn * r / (1 - r);
        double t1 = pn * (K * r / (1 - r) + r / ((1 - r) * (1 - r)));
        s0 += t0;
        s1 += t1;
        sin += N * t0;
    }
    double en = s1 / s0;
    p->drop_frac = pk;
    p->throughput = lambda * (1 - pk);
    if (p->throughput <= 0) {
        p->rt = T;
        return;
    }
    p->rt = en / p->throughput;
    if (p->rt < T)
        p->rt = T; /* rounding */
    p->wait = p->rt - T;
}

static double fc_score(const struct flowctl_flow_model *f, struct flowctl_prediction *p,
                       double floor_u)
{
    if (f->lambda <= 0) {
        p->utility = isfinite(p->rt) ? fmax(floor_u, (f->goal - p->rt) / f->goal) : floor_u;
        return p->score = p->utility;
    }
    if (!isfinite(p->rt)) {
        p->utility = floor_u;
        double served = fmin(1, p->throughput / f->lambda);
        return p->score = floor_u - 1 + 0.5 * served;
    }
    double u = (f->goal - p->rt) / f->goal;
    double ueff = (1 - p->drop_frac) * fmax(u, floor_u) + p->drop_frac * floor_u;
    if (u < floor_u)
        ueff = (1 - p->drop_frac) * u + p->drop_frac * floor_u;
    p->utility = fmax(ueff, floor_u);
    if (ueff >= floor_u)
        return p->score = ueff;
    /* Below the floor: keep ranking so that the optimiser still sees progress
     * (more of the traffic served, a shorter response time; log scale so
     * that halving a 30 s queue still counts). Mixing utilities here would
     * make dropping requests look better than serving them slowly. */
    double served = fmin(1, p->throughput / f->lambda);
    return p->score = floor_u - 0.5 + 0.25 * served +
                      0.25 * (1 - tanh(log1p(p->rt / f->goal) / 10));
}

static int fc_check_flows(const struct flowctl_flow_model *flows, size_t n, struct wlm_error *err)
{
    if (n > FLOWCTL_MAX_FLOWS)
        return fc__err(err, WLM_ELIMIT, "flows", "at most %d flows per application",
                       FLOWCTL_MAX_FLOWS);
    for (size_t i = 0; i < n; i++) {
        const struct flowctl_flow_model *f = &flows[i];
        if (!(f->lambda >= 0) || !isfinite(f->lambda))
            return fc__err(err, WLM_EINVAL, "lambda", "flow %zu: lambda must be >= 0", i);
        if (!(f->cost >= 0) || !isfinite(f->cost))
            return fc__err(err, WLM_EINVAL, "cost", "flow %zu: cost must be >= 0", i);
        if (!(f->d0 >= 0) || !isfinite(f->d0))
            return fc__err(err, WLM_EINVAL, "d0", "flow %zu: d0 must be >= 0", i);
        if (!(f->goal > 0) || !isfinite(f->goal))
            return fc__err(err, WLM_EINVAL, "goal", "flow %zu: goal must be > 0", i);
        if (!(f->queue_cap >= 0))
            return fc__err(err, WLM_EINVAL, "queue_cap", "flow %zu: queue_cap must be >= 0", i);
    }
    return 0;
}

/* Evaluate the model; the inputs are already validated. */
static void fc_eval(const struct flowctl_flow_model *flows, size_t n, double omega,
                    const double *slots, double floor_u, struct flowctl_prediction *out)
{
    double M = 0;
    int unlimited = 0;
    for (size_t i = 0; i < n; i++) {
        if (!slots || slots[i] <= 0)
            unlimited = 1;
        else
            M += slots[i];
    }
    double kappa = unlimited ? 1 : (M - 1) / M;

    /* Bisection on U for U = Σ X_f(σ(U)) c_f / ω; the right-hand side falls
     * as U rises (more sharing, slower service, fewer completions). */
    double lo = 0, hi = 1, U = 0;
    struct flowctl_prediction tmp;
    for (int it = 0; it < 100; it++) {
        U = it == 0 ? 1 : (lo + hi) / 2;
        double den = 1 - kappa * U;
        double sigma = den > 0 ? 1 / den : INFINITY;
        double load = 0;
        for (size_t i = 0; i < n; i++) {
            double T = flows[i].d0 + (flows[i].cost > 0 ? flows[i].cost * sigma / omega : 0);
            fc_chain(flows[i].lambda, T, slots ? slots[i] : 0, flows[i].queue_cap, &tmp);
            load += tmp.throughput * flows[i].cost / omega;
        }
        if (it == 0) {
            if (load >= 1) /* CPU saturated even at full sharing (finite slots) */
                break;
            continue;
        }
        if (load > U)
            lo = U;
        else
            hi = U;
        if (hi - lo < 1e-12)
            break;
    }
    double den = 1 - kappa * U;
    double sigma = den > 0 ? 1 / den : INFINITY;
    int saturated = sigma > 1e7;
    for (size_t i = 0; i < n; i++) {
        double T = flows[i].d0 + (flows[i].cost > 0 ? flows[i].cost * sigma / omega : 0);
        if (saturated && flows[i].cost > 0)
            T = INFINITY;
        fc_chain(flows[i].lambda, T, slots ? slots[i] : 0, flows[i].queue_cap, &out[i]);
        if (saturated && flows[i].cost > 0 && flows[i].lambda > 0) {
            /* Open PS past saturation: served at the share of the CPU its
             * load would get, for ranking only. */
            double tot = 0;
            for (size_t j = 0; j < n; j++)
                tot += flows[j].lambda * flows[j].cost;
            out[i].throughput = flows[i].lambda * omega / tot;
        }
        fc_score(&flows[i], &out[i], floor_u);
    }
}

int flowctl_predict(const struct flowctl_flow_model *flows, size_t n, double omega,
                    const double *slots, double util_floor, struct flowctl_prediction *out,
                    struct wlm_error *err)
{
    if (!(omega > 0) || !isfinite(omega))
        return fc__err(err, WLM_EINVAL, "omega", "allocation must be > 0 MHz");
    if (!(util_floor < 0))
        return fc__err(err, WLM_EINVAL, "util_floor", "utility floor must be < 0");
    int rc = fc_check_flows(flows, n, err);
    if (rc)
        return rc;
    fc_eval(flows, n, omega, slots, util_floor, out);
    return 0;
}

static int fc_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Leximin comparison of two score vectors: 1 when `b` is better than `a` by
 * more than eps at the first position where they differ. */
#define FC_LEX_EPS 1e-4
static int fc_leximin_better(const double *a, const double *b, size_t n)
{
    double sa[FLOWCTL_MAX_FLOWS], sb[FLOWCTL_MAX_FLOWS];
    memcpy(sa, a, n * sizeof *a);
    memcpy(sb, b, n * sizeof *b);
    qsort(sa, n, sizeof *sa, fc_cmp_double);
    qsort(sb, n, sizeof *sb, fc_cmp_double);
    for (size_t i = 0; i < n; i++) {
        if (sb[i] > sa[i] + FC_LEX_EPS)
            return 1;
        if (sb[i] < sa[i] - FC_LEX_EPS)
            return 0;
    }
    return 0;
}

/* Apply delta to cur if the result is feasible and leximin-better; updates
 * scores, predictions and total. Returns 1 when the move was taken. */
static int fc_try(const struct flowctl_flow_model *flows, size_t n, double omega,
                  unsigned max_total, double floor_u, double *cur, const double *delta,
                  double *curscore, struct flowctl_prediction *p, double *total)
{
    double cand[FLOWCTL_MAX_FLOWS] = {0}, candscore[FLOWCTL_MAX_FLOWS];
    struct flowctl_prediction q[FLOWCTL_MAX_FLOWS];
    double t = 0;
    for (size_t i = 0; i < n; i++) {
        cand[i] = cur[i] + delta[i];
        if (cand[i] < 1)
            return 0;
        t += cand[i];
    }
    if (t > max_total)
        return 0;
    fc_eval(flows, n, omega, cand, floor_u, q);
    for (size_t j = 0; j < n; j++)
        candscore[j] = flows[j].lambda > 0 ? q[j].score : 1e9;
    if (!fc_leximin_better(curscore, candscore, n))
        return 0;
    memcpy(cur, cand, n * sizeof *cur);
    memcpy(curscore, candscore, n * sizeof *cur);
    memcpy(p, q, n * sizeof *p);
    *total = t;
    return 1;
}

int flowctl_optimize_slots(const struct flowctl_flow_model *flows, size_t n, double omega,
                           unsigned max_total, double util_floor, unsigned *slots,
                           struct flowctl_prediction *pred, struct wlm_error *err)
{
    if (!(omega > 0) || !isfinite(omega))
        return fc__err(err, WLM_EINVAL, "omega", "allocation must be > 0 MHz");
    if (!(util_floor < 0))
        return fc__err(err, WLM_EINVAL, "util_floor", "utility floor must be < 0");
    int rc = fc_check_flows(flows, n, err);
    if (rc)
        return rc;
    if (n == 0)
        return 0;
    /* The knee of the closed system, N* = (d0 + c/ω)/(c/ω): past it the
     * CPU is nearly always busy, so more slots add little throughput and
     * mostly in-app sharing. Four times the knee bounds the search so that a
     * flow that cannot be served anyway does not collect hundreds of slots
     * for crumbs (the brute-force test shows the optimum stays inside). */
    double lc = 0, ld0 = 0, lsum = 0;
    for (size_t i = 0; i < n; i++) {
        lc += flows[i].lambda * flows[i].cost;
        ld0 += flows[i].lambda * flows[i].d0;
        lsum += flows[i].lambda;
    }
    if (lsum > 0 && lc > 0) {
        double cbar = lc / lsum, d0bar = ld0 / lsum;
        double nsat = omega * (d0bar + cbar / omega) / cbar;
        double cap = ceil(4 * nsat) + (double)n;
        if (cap < max_total)
            max_total = (unsigned)cap;
    }
    double cur[FLOWCTL_MAX_FLOWS];
    double curscore[FLOWCTL_MAX_FLOWS];
    struct flowctl_prediction p[FLOWCTL_MAX_FLOWS];
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        cur[i] = 1;
        total += 1;
    }
    fc_eval(flows, n, omega, cur, util_floor, p);
    for (size_t i = 0; i < n; i++)
        curscore[i] = flows[i].lambda > 0 ? p[i].score : 1e9;

    /* Greedy: give slots to the least happy flow first; a move is taken only
     * if the sorted utility vector improves, so the search stops where more
     * concurrency buys nothing (or starts hurting the others). */
    for (int iter = 0; iter < 100000; iter++) {
        size_t order[FLOWCTL_MAX_FLOWS], m = 0;
        for (size_t i = 0; i < n; i++)
            if (flows[i].lambda > 0)
                order[m++] = i;
        for (size_t a = 1; a < m; a++) /* insertion sort by score, ascending */
            for (size_t b = a; b > 0 && curscore[order[b]] < curscore[order[b - 1]]; b--) {
                size_t t = order[b];
                order[b] = order[b - 1];
                order[b - 1] = t;
            }
        /* Moves, tried in order until one improves the sorted utilities:
         * grow one flow (least happy first, a big step then one slot); grow
         * the least happy together with another (overload is zero-sum: one
         * slot more for either alone may hurt the other); move a slot to the
         * least happy from another; shrink one flow. */
        int moved = 0;
        double delta[FLOWCTL_MAX_FLOWS];
        for (size_t k = 0; k < m && !moved; k++) {
            size_t i = order[k];
            double steps[2] = {floor(cur[i] / 8), 1};
            for (int s = 0; s < 2 && !moved; s++) {
                if (steps[s] < 1 || (s == 1 && steps[0] == 1))
                    continue;
                memset(delta, 0, n * sizeof *delta);
                delta[i] = steps[s];
                moved = fc_try(flows, n, omega, max_total, util_floor, cur, delta, curscore, p,
                               &total);
            }
        }
        size_t w = m ? order[0] : 0;
        for (int kind = 0; kind < 3 && m && !moved; kind++)
            for (size_t j = 0; j < n && !moved; j++) {
                if (j == w && kind < 2)
                    continue;
                memset(delta, 0, n * sizeof *delta);
                if (kind == 0) {
                    delta[w] = 1;
                    delta[j] = 1;
                } else if (kind == 1) {
                    delta[w] = 1;
                    delta[j] = -1;
                } else {
                    delta[j] = -1;
                }
                moved = fc_try(flows, n, omega, max_total, util_floor, cur, delta, curscore, p,
                               &total);
            }
        if (!moved)
            break;
    }
    for (size_t i = 0; i < n; i++)
        slots[i] = (unsigned)cur[i];
    if (pred)
        memcpy(pred, p, n * sizeof *p);
    return 0;
}

/* ---------------------------------------------------------------- utility */

double flowctl_utility_eval(const struct flowctl_utility *u, double x)
{
    if (!u || u->n == 0)
        return 0;
    if (x <= u->pts[0].x)
        return u->pts[0].y;
    for (size_t i = 1; i < u->n; i++) {
        if (x <= u->pts[i].x) {
            const struct flowctl_point *a = &u->pts[i - 1], *b = &u->pts[i];
            if (b->x <= a->x)
                return b->y;
            return a->y + (b->y - a->y) * (x - a->x) / (b->x - a->x);
        }
    }
    return u->pts[u->n - 1].y;
}

#define FC_UGRID 257

int flowctl_app_utility(const struct flowctl_flow_model *flows, const double *importance, size_t n,
                        double omega_max, size_t npts, double util_floor,
                        struct flowctl_utility *out, struct wlm_error *err)
{
    int rc = fc_check_flows(flows, n, err);
    if (rc)
        return rc;
    if (n == 0)
        return fc__err(err, WLM_EINVAL, "flows", "an application needs at least one flow");
    if (npts < 2 || npts > FLOWCTL_UTIL_MAX_POINTS)
        return fc__err(err, WLM_EINVAL, "npts", "points must be in 2..%d",
                       FLOWCTL_UTIL_MAX_POINTS);
    if (!(util_floor < 0))
        return fc__err(err, WLM_EINVAL, "util_floor", "utility floor must be < 0");
    double w[FLOWCTL_MAX_FLOWS], wsum = 0, lsum = 0;
    for (size_t i = 0; i < n; i++)
        lsum += flows[i].lambda;
    for (size_t i = 0; i < n; i++) {
        double imp = importance ? importance[i] : 1;
        if (!(imp > 0))
            return fc__err(err, WLM_EINVAL, "importance", "flow %zu: importance must be > 0", i);
        w[i] = imp * (lsum > 0 ? flows[i].lambda : 1);
        wsum += w[i];
    }
    double Lc = 0; /* CPU demand of the whole application, MHz */
    for (size_t i = 0; i < n; i++)
        Lc += flows[i].lambda * flows[i].cost;
    if (!(omega_max > 0)) {
        omega_max = Lc;
        for (size_t i = 0; i < n; i++)
            if (flows[i].cost > 0)
                omega_max = fmax(omega_max, Lc + 100 * flows[i].cost / flows[i].goal);
        if (omega_max <= 0)
            omega_max = 1;
    }
    /* Fine grid (denser just above the saturation point Lc, where the curve
     * bends), values clamped at the floor, then the upper concave hull. */
    struct flowctl_point g[FC_UGRID + 1];
    size_t ng = 0;
    g[ng++] = (struct flowctl_point){0, util_floor};
    double start = fmin(Lc, omega_max);
    for (int k = 1; k < FC_UGRID; k++) {
        double t = (double)k / (FC_UGRID - 1);
        double x = start + (omega_max - start) * t * t;
        double y = 0;
        for (size_t i = 0; i < n; i++) {
            double u;
            if (x <= Lc && Lc > 0)
                u = util_floor;
            else
                u = (flows[i].goal - (flows[i].d0 + (flows[i].cost > 0 ? flows[i].cost / (x - Lc) : 0))) /
                    flows[i].goal;
            y += w[i] * fmax(u, util_floor);
        }
        y /= wsum;
        if (x <= g[ng - 1].x) {
            g[ng - 1].y = fmax(g[ng - 1].y, y);
            continue;
        }
        g[ng++] = (struct flowctl_point){x, y};
    }
    /* Upper hull (monotone chain): drop points on or under the chord. */
    struct flowctl_point h[FC_UGRID + 1];
    size_t nh = 0;
    for (size_t i = 0; i < ng; i++) {
        while (nh >= 2) {
            struct flowctl_point a = h[nh - 2], b = h[nh - 1], c = g[i];
            double cross = (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x);
            if (cross >= 0)
                nh--;
            else
                break;
        }
        h[nh++] = g[i];
    }
    /* Thin to npts: repeatedly drop the interior vertex whose removal moves the
     * curve least; the chord lies under a concave curve, so concavity holds. */
    while (nh > npts) {
        size_t best = 1;
        double bestd = INFINITY;
        for (size_t i = 1; i + 1 < nh; i++) {
            struct flowctl_point a = h[i - 1], b = h[i], c = h[i + 1];
            double yl = a.y + (c.y - a.y) * (b.x - a.x) / (c.x - a.x);
            double d = b.y - yl;
            if (d < bestd) {
                bestd = d;
                best = i;
            }
        }
        memmove(&h[best], &h[best + 1], (nh - best - 1) * sizeof *h);
        nh--;
    }
    out->n = nh;
    memcpy(out->pts, h, nh * sizeof *h);
    return 0;
}
