/* power_split.c - how a cluster power budget is divided among nodes. Pure:
 * no controller state; wlm-sim compiles this same file for its power-cap
 * experiment. */
#include <stdlib.h>

#include "power_split.h"

int ctl_power_split_pure(double total_w, size_t n, const double *idle, const double *max,
                         const double *weight, const double *fixed, double *out)
{
    double rest = total_w, sum_idle = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = 0;
        if (fixed[i] >= 0) {
            out[i] = fixed[i];
            rest -= fixed[i];
        } else {
            sum_idle += idle[i];
        }
    }
    if (rest < 0)
        rest = 0;
    if (rest < sum_idle) {
        for (size_t i = 0; i < n; i++)
            if (fixed[i] < 0)
                out[i] = sum_idle > 0 ? rest * idle[i] / sum_idle : 0;
        return sum_idle > 0;
    }
    double dyn = rest - sum_idle, need = 0;
    for (size_t i = 0; i < n; i++)
        if (fixed[i] < 0) {
            out[i] = idle[i];
            double w = weight[i] > 0 ? weight[i] : 0;
            need += w < max[i] - idle[i] ? w : max[i] - idle[i];
        }
    /* 1. The power of the planned CPU (weight = watts it needs above idle),
     *    every node the same share of it when there is not enough. */
    double f = need > dyn ? dyn / need : 1;
    for (size_t i = 0; i < n && need > 0; i++)
        if (fixed[i] < 0) {
            double w = weight[i] > 0 ? weight[i] : 0;
            double give = f * (w < max[i] - idle[i] ? w : max[i] - idle[i]);
            out[i] += give;
            dyn -= give;
        }
    /* 2. What is left goes round the nodes, busiest first, half a node's
     *    dynamic range at a time: every node gets room to grow, and room in
     *    pieces big enough for whole jobs (smeared evenly over every node
     *    it might fit none). */
    for (int pass = 0; pass < 64 && dyn > 1e-9; pass++) {
        int gave = 0;
        char *done = calloc(n ? n : 1, 1);
        if (!done)
            break;
        for (;;) {
            long best = -1;
            for (size_t i = 0; i < n; i++)
                if (fixed[i] < 0 && !done[i] && out[i] < max[i] - 1e-9 &&
                    (best < 0 || weight[i] > weight[best]))
                    best = (long)i;
            if (best < 0 || dyn <= 1e-9)
                break;
            done[best] = 1;
            double give = 0.5 * (max[best] - idle[best]);
            if (give > max[best] - out[best])
                give = max[best] - out[best];
            if (give > dyn)
                give = dyn;
            out[best] += give;
            dyn -= give;
            gave = 1;
        }
        free(done);
        if (!gave)
            break;
    }
    return 0;
}
