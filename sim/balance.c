/*
 * balance.c - experiment 3's baseline on abstract hosts: the central
 * three-band balancer (one migration per heavy/light pair per period). wlm's
 * own balancing is the placement core's (apc_adapter.c).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

void sim_band(const double *l, size_t n, double *lo, double *hi)
{
    double sum = 0, mn = INFINITY, mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        sum += l[i];
        mn = fmin(mn, l[i]);
        mx = fmax(mx, l[i]);
    }
    double mean = n ? sum / (double)n : 0;
    double w = fmax(0.10, fabs(mean - (mn + mx) / 2));
    *lo = mean - w;
    *hi = mean + w;
}

static void host_loads(const double *vm_load, const int *vm_host, size_t nvm, double *l, size_t nh)
{
    memset(l, 0, nh * sizeof(double));
    for (size_t i = 0; i < nvm; i++)
        l[vm_host[i]] += vm_load[i];
}

/* Total distance of the hosts outside their band (0 = balanced). */
static double out_of_band(const double *l, size_t nh)
{
    double lo, hi, d = 0;
    sim_band(l, nh, &lo, &hi);
    for (size_t h = 0; h < nh; h++)
        d += l[h] > hi ? l[h] - hi : l[h] < lo ? lo - l[h] : 0;
    return d;
}

static int check(size_t nvm, size_t nh, const int *vm_host)
{
    if (nh == 0)
        return -WLM_EINVAL;
    for (size_t i = 0; i < nvm; i++)
        if (vm_host[i] < 0 || (size_t)vm_host[i] >= nh)
            return -WLM_EINVAL;
    return 0;
}

int sim_balance_threeband(const double *vm_load, int *vm_host, size_t nvm, size_t nh,
                          unsigned max_rounds, struct sim_bal_result *out)
{
    memset(out, 0, sizeof(*out));
    if (check(nvm, nh, vm_host))
        return -WLM_EINVAL;
    double *l = calloc(nh, sizeof(double));
    int *ord = calloc(nh, sizeof(int));
    if (!l || !ord) {
        free(l);
        free(ord);
        return -ENOMEM;
    }
    for (;;) {
        host_loads(vm_load, vm_host, nvm, l, nh);
        if (out_of_band(l, nh) <= 1e-12) {
            out->converged = 1;
            break;
        }
        if (out->rounds >= max_rounds)
            break;
        out->rounds++;
        double lo, hi;
        sim_band(l, nh, &lo, &hi);
        /* hosts by load, heaviest first (index breaks ties) */
        for (size_t h = 0; h < nh; h++)
            ord[h] = (int)h;
        for (size_t a = 1; a < nh; a++) {
            int x = ord[a];
            size_t k = a;
            while (k > 0 && (l[ord[k - 1]] < l[x] || (l[ord[k - 1]] == l[x] && ord[k - 1] > x))) {
                ord[k] = ord[k - 1];
                k--;
            }
            ord[k] = x;
        }
        unsigned moved = 0;
        /* pair the k-th heaviest with the k-th lightest while either is out of band */
        for (size_t k = 0; k < nh / 2; k++) {
            int src = ord[k], dst = ord[nh - 1 - k];
            if (l[src] <= hi && l[dst] >= lo)
                break;
            double gap = (l[src] - l[dst]) / 2;
            int best = -1;
            for (size_t i = 0; i < nvm; i++) {
                if (vm_host[i] != src || vm_load[i] >= 2 * gap)
                    continue; /* moving it would not narrow the gap */
                if (best < 0 || fabs(vm_load[i] - gap) < fabs(vm_load[best] - gap))
                    best = (int)i;
            }
            if (best < 0)
                continue;
            vm_host[best] = dst;
            l[src] -= vm_load[best];
            l[dst] += vm_load[best];
            out->migrations++;
            moved++;
        }
        if (!moved)
            break; /* stuck: no VM can narrow any pair's gap */
    }
    free(l);
    free(ord);
    return 0;
}
