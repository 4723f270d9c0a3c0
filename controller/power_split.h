/* power_split.h - dividing a cluster power budget among nodes (pure). */
#ifndef WLM_CONTROLLER_POWER_SPLIT_H
#define WLM_CONTROLLER_POWER_SPLIT_H

#include <stddef.h>

/* Pure: split `total_w` among n nodes. idle/max per node; weight[i] = the
 * watts above idle its planned CPU needs; fixed[i] >= 0 = an override
 * (taken as is). Every node gets its idle power, then the power of its
 * planned CPU (all scaled alike when short), then what is left goes round
 * the nodes, busiest first, half a node's dynamic range at a time, each up
 * to its maximum. out[i] = budget. Returns 1
 * when the budget is below the nodes' idle power (every node then gets its
 * share of the total by idle power), else 0. */
int ctl_power_split_pure(double total_w, size_t n, const double *idle, const double *max,
                         const double *weight, const double *fixed, double *out);

#endif
