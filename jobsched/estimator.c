/*
 * estimator.c - job utility estimator. Pure: time is always a parameter.
 *
 * A job's utility is a function of when it completes: u(T) = (G - T) / S with
 * G its completion-time goal and S = G - submit the goal's span, so 0 means
 * "exactly on time", 0.5 "finished with half the span to spare" and -1 "late
 * by a whole span". With a constant allocation w from now on,
 * T(w) = now + R / w (R = remaining work), so u(w) = (G - now - R/w) / S,
 * which is concave and increasing in w: its piecewise-linear samples feed the
 * placement controller's max-min formulation directly.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jobsched.h"

static double clampd(double v, double lo, double hi)
{
    if (v < lo)
        return lo;
    if (v > hi)
        return hi;
    return v;
}

/* The goal's span; a goal at or before submission would make utility
 * undefined, so it gets a one-second span (any lateness is then a full
 * "span late" almost at once, which is what such a goal means). */
static double goal_span(const struct jobsched_job *j)
{
    double s = j->goal_time - j->submit_time;
    return s > 1.0 ? s : 1.0;
}

double jobsched_completion_utility(const struct jobsched_job *j, double t_complete,
                                   const struct jobsched_config *cfg)
{
    if (isinf(t_complete))
        return cfg->utility_min;
    return clampd((j->goal_time - t_complete) / goal_span(j), cfg->utility_min, cfg->utility_max);
}

double jobsched_predict_completion(const struct jobsched_job *j, double mhz, double now)
{
    double rem = jobsched_job_remaining(j);
    if (rem <= 0)
        return now;
    double cap = jobsched_job_max_mhz(j);
    if (mhz > cap)
        mhz = cap;
    if (mhz <= 0)
        return INFINITY;
    return now + rem / mhz;
}

double jobsched_utility(const struct jobsched_job *j, double mhz, double now,
                        const struct jobsched_config *cfg)
{
    return jobsched_completion_utility(j, jobsched_predict_completion(j, mhz, now), cfg);
}

/* Upper concave hull of points sorted by x, in place; returns the count. */
static size_t upper_hull(struct jobsched_point *p, size_t n)
{
    size_t h = 0;
    for (size_t i = 0; i < n; i++) {
        /* Same x: keep the higher y only. */
        if (h > 0 && fabs(p[i].x - p[h - 1].x) < 1e-9) {
            if (p[i].y > p[h - 1].y)
                p[h - 1].y = p[i].y;
            continue;
        }
        while (h >= 2) {
            struct jobsched_point a = p[h - 2], b = p[h - 1], c = p[i];
            double cross = (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x);
            if (cross < -1e-12)
                break; /* b is strictly above ac: keep it */
            h--;
        }
        p[h++] = p[i];
    }
    return h;
}

size_t jobsched_utility_curve(const struct jobsched_job *j, double now,
                              const struct jobsched_config *cfg, struct jobsched_point *pts,
                              size_t max)
{
    double wmax = jobsched_job_max_mhz(j);
    double rem = jobsched_job_remaining(j);
    double umin = cfg->utility_min, umax = cfg->utility_max;
    if (max < 2)
        return 0;
    if (wmax <= 0) {
        pts[0] = (struct jobsched_point){0, umin};
        return 1;
    }
    if (rem <= 0) {
        /* Nothing left to do: the allocation no longer matters. */
        double u = jobsched_completion_utility(j, now, cfg);
        pts[0] = (struct jobsched_point){0, u};
        pts[1] = (struct jobsched_point){wmax, u};
        return 2;
    }
    double span = goal_span(j);
    double uhi = jobsched_utility(j, wmax, now, cfg);
    if (uhi <= umin) {
        /* Even full speed cannot lift it off the floor. */
        pts[0] = (struct jobsched_point){0, umin};
        pts[1] = (struct jobsched_point){wmax, umin};
        return 2;
    }
    size_t k = (size_t)(cfg->utility_points > 2 ? cfg->utility_points : 2);
    if (k > max - 2)
        k = max - 2;
    if (k < 1)
        k = 1;
    size_t n = 0;
    pts[n++] = (struct jobsched_point){0, umin};
    /* Sample evenly in utility between the floor and what full speed gives;
     * w(v) = R / (G - now - v S) inverts u(w). */
    for (size_t i = 0; i < k; i++) {
        double v = k == 1 ? uhi : umin + (uhi - umin) * (double)i / (double)(k - 1);
        double denom = j->goal_time - now - v * span;
        double w = denom > 0 ? rem / denom : wmax;
        if (w > wmax)
            w = wmax;
        pts[n++] = (struct jobsched_point){w, v};
    }
    /* When the ceiling clamps the utility before full speed, the curve is flat
     * from there to wmax. */
    if (pts[n - 1].x < wmax - 1e-9)
        pts[n++] = (struct jobsched_point){wmax, uhi > umax ? umax : uhi};
    return upper_hull(pts, n);
}

void jobsched_valuation_default(struct jobsched_valuation *v)
{
    v->horizon_s = 300;
    v->start_s = 0;
    v->restore_s = 0;
    v->floor = -100;
    v->ceiling = 1;
    v->points = 12;
}

void jobsched_valuation_init(struct jobsched_valuation *v, double period_s, double start_s,
                             double restore_s)
{
    jobsched_valuation_default(v);
    v->horizon_s = 5 * period_s > 60 ? 5 * period_s : 60;
    v->start_s = start_s > 0 ? start_s : 0;
    v->restore_s = restore_s > 0 ? restore_s : 0;
}

double jobsched_stall_cost(const struct jobsched_job *j)
{
    return 1.0 / goal_span(j);
}

size_t jobsched_placement_curve(const struct jobsched_job *j, double now,
                                const struct jobsched_valuation *v, struct jobsched_point *pts,
                                size_t max)
{
    struct jobsched_config cfg;
    jobsched_config_default(&cfg);
    cfg.utility_min = v->floor;
    cfg.utility_max = v->ceiling;
    double vmax = jobsched_job_max_mhz(j);
    double rem = jobsched_job_remaining(j);
    double h = v->horizon_s > 1 ? v->horizon_s : 1;
    double delay = 0;
    if (j->state == JOBSCHED_SUSPENDED)
        delay = v->restore_s;
    else if (j->state == JOBSCHED_ELIGIBLE || j->state == JOBSCHED_PENDING)
        delay = v->start_s;
    if (vmax <= 0)
        vmax = 1;
    if (max < 3)
        return 0;
    size_t n = (size_t)(v->points >= 3 ? v->points : 3);
    if (n > max)
        n = max;
    double start = now + delay;
    for (size_t i = 0; i < n; i++) {
        double w = vmax * (double)i / (double)(n - 1), t;
        if (rem <= 0)
            t = start;
        else if (w * h >= rem)
            t = start + rem / w;
        else
            t = start + h + (rem - w * h) / vmax;
        pts[i] = (struct jobsched_point){w, jobsched_completion_utility(j, t, &cfg)};
    }
    /* The curve has a convex kink where the work fits in the horizon; the
     * hull over-estimates only inside it, and its ends are exact. */
    n = upper_hull(pts, n);
    if (n == 1) { /* flat (clamped at the ceiling): keep two points */
        pts[1] = (struct jobsched_point){vmax, pts[0].y};
        n = 2;
    }
    return n;
}

struct hyp_item {
    double deadline;
    double rem;
};

static int cmp_deadline(const void *a, const void *b)
{
    const struct hyp_item *x = a, *y = b;
    return (x->deadline > y->deadline) - (x->deadline < y->deadline);
}

void jobsched_hypothetical_utility(const struct jobsched_job *const *jobs, size_t n, double now,
                                   const struct jobsched_config *cfg, const double *levels,
                                   size_t nlevels, struct jobsched_point *out,
                                   size_t *unreachable)
{
    struct hyp_item *items = calloc(n ? n : 1, sizeof(*items));
    for (size_t l = 0; l < nlevels; l++) {
        double v = levels[l];
        size_t m = 0, bad = 0;
        for (size_t i = 0; items && i < n; i++) {
            const struct jobsched_job *j = jobs[i];
            double rem = jobsched_job_remaining(j);
            double wmax = jobsched_job_max_mhz(j);
            if (jobsched_state_terminal(j->state) || rem <= 0)
                continue;
            /* Completion time that gives utility exactly v. */
            double t = j->goal_time - v * goal_span(j);
            double earliest = wmax > 0 ? now + rem / wmax : INFINITY;
            if (t < earliest) {
                /* Cannot reach v even alone at full speed: count it at full
                 * speed so it still weighs on the aggregate. */
                bad++;
                t = earliest;
            }
            if (isinf(t))
                continue;
            items[m].deadline = t;
            items[m].rem = rem;
            m++;
        }
        /* Earliest-goal-first on a pool of capacity C finishes job k at
         * now + (work of jobs 1..k) / C, so the smallest C meeting every
         * deadline is the max of those ratios. */
        qsort(items, m, sizeof(*items), cmp_deadline);
        double need = 0, cum = 0;
        for (size_t i = 0; i < m; i++) {
            cum += items[i].rem;
            double dt = items[i].deadline - now;
            double c = dt > 1e-9 ? cum / dt : INFINITY;
            if (c > need)
                need = c;
        }
        out[l].x = v;
        out[l].y = need;
        if (unreachable)
            unreachable[l] = bad;
    }
    free(items);
}
