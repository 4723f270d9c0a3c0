/*
 * curve.c - the placement curve of a web application: the utility of CPU
 * that the placement controller maximises, built from the queueing model.
 * The controller, `wlm plan` snapshots and wlm-sim all take an application's
 * curve from here, so they decide on the same numbers.
 */
#include <math.h>
#include <string.h>

#include "flowctl.h"

/* Sum of lambda x cost over the flows: the CPU the application consumes
 * at its current load (MHz); below it the queues grow without bound. */
static double cpu_demand(const struct flowctl_flow_model *flows, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        d += flows[i].lambda * flows[i].cost;
    return d;
}

void flowctl_indifferent_curve(struct flowctl_utility *out)
{
    /* Nothing learned yet: indifferent to CPU, so instances get a minimum
     * and nothing else is held back for it. */
    out->n = 2;
    out->pts[0] = (struct flowctl_point){0, 0.5};
    out->pts[1] = (struct flowctl_point){100, 1};
}

int flowctl_placement_curve(const struct flowctl_flow_model *flows, const double *importance,
                            size_t n, double omega_max, size_t npts, double util_floor,
                            struct flowctl_utility *out, struct wlm_error *err)
{
    struct flowctl_utility u;
    int rc = flowctl_app_utility(flows, importance, n, omega_max, npts, util_floor, &u, err);
    if (rc)
        return rc;
    double demand = cpu_demand(flows, n);
    if (u.n < 1 || u.pts[u.n - 1].y - u.pts[0].y < 1e-6) {
        /* A flat curve says CPU does not matter, which is only ever the
         * model being unsure (e.g. response time inflated by something it
         * does not see, so all of it was taken for non-CPU delay). Starving
         * the app on that basis would make it true; value its CPU demand
         * instead: at the goal when it runs at 80 % utilisation. */
        if (demand < 100)
            demand = 100;
        out->n = 3;
        out->pts[0] = (struct flowctl_point){0, util_floor};
        out->pts[1] = (struct flowctl_point){demand / 0.8, 0};
        out->pts[2] = (struct flowctl_point){demand * 2, 0.5};
        return 0;
    }
    /* The hull's straight line from (0, floor) to its tangent point flatters
     * the region where the app is short of CPU: half the CPU needed would
     * look half good, while really the queues grow without bound. Below the
     * tangent point the concave part's first slope is extended instead (still
     * concave, now steep), and at least steep enough to reach the floor at
     * the CPU demand: the cliff the optimiser must see. */
    size_t t = 0;
    if (u.n >= 3) {
        double s0 = (u.pts[1].y - u.pts[0].y) / (u.pts[1].x - u.pts[0].x + 1e-12);
        for (t = 1; t + 1 < u.n; t++) {
            double s = (u.pts[t + 1].y - u.pts[t].y) / (u.pts[t + 1].x - u.pts[t].x + 1e-12);
            if (fabs(s - s0) > 1e-6 * (fabs(s0) + 1e-9))
                break;
        }
        if (t + 1 >= u.n)
            t = 0; /* one straight line: nothing to correct */
    }
    size_t k = 0;
    if (t > 0) {
        double s1 = (u.pts[t + 1].y - u.pts[t].y) / (u.pts[t + 1].x - u.pts[t].x + 1e-12);
        if (demand > 0 && demand < u.pts[t].x) {
            double cliff = (u.pts[t].y - u.pts[0].y) / (u.pts[t].x - demand);
            if (cliff > s1)
                s1 = cliff;
        }
        out->pts[k++] = (struct flowctl_point){0, u.pts[t].y - s1 * u.pts[t].x};
    }
    for (size_t i = t; i < u.n && k < FLOWCTL_UTIL_MAX_POINTS; i++)
        out->pts[k++] = u.pts[i];
    out->n = k;
    return 0;
}
