/* powercap.c - experiment 2 under a cluster power cap: the same day of web
 * load and jobs as experiment 2, with the cluster's power capped at 100 %
 * down to 50 % of its peak (every node at full load). Two ways to keep the
 * cap:
 *   wlm    the controller's split (controller/power_split.c, the same file):
 *          every powered-on node its idle power, then the power of the CPU
 *          planned on it, then the rest to the busiest nodes first; the
 *          placement core gets each node's budget and gives it no more CPU
 *          than the power model allows;
 *   equal  every node the same share of the cap (cap / nodes), whatever
 *          runs where.
 * Reported: the minimum utility of the decisions (mean and worst), jobs
 * that missed their goal, web minutes below its goal, energy. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../controller/power_split.h"
#include "internal.h"

void sim_powercap_budgets(const struct sim_config *cfg, struct sim_apc_node *nodes, size_t n,
                          const double *planned)
{
    if (!(cfg->power_cap_w > 0)) {
        for (size_t k = 0; k < n; k++)
            nodes[k].budget_w = 0;
        return;
    }
    if (cfg->power_cap_equal) {
        double share = cfg->power_cap_w / (double)(cfg->nodes ? cfg->nodes : 1);
        for (size_t k = 0; k < n; k++)
            nodes[k].budget_w = share;
        return;
    }
    double *idle = calloc(n + 1, sizeof(double)), *max = calloc(n + 1, sizeof(double));
    double *w = calloc(n + 1, sizeof(double)), *fixed = calloc(n + 1, sizeof(double));
    double *out = calloc(n + 1, sizeof(double));
    size_t *on = calloc(n + 1, sizeof(size_t));
    if (idle && max && w && fixed && out && on) {
        /* Every node takes part, on or off: a node the core may switch on
         * must not come on without a budget. One that is off draws off_w,
         * less than it is given: the cap is kept. */
        size_t m = 0, noff = 0;
        for (size_t k = 0; k < n; k++) {
            on[m] = k;
            idle[m] = cfg->idle_w;
            max[m] = cfg->max_w;
            w[m] = nodes[k].cap_mhz > 0 ? (cfg->max_w - cfg->idle_w) * planned[k] / nodes[k].cap_mhz
                                        : 0;
            fixed[m] = -1;
            m++;
        }
        /* When the cap cannot power every node on with room to work (idle +
         * half its dynamic range), the least busy are given nothing and
         * switched off (sim_powercap_power_off). */
        double total = cfg->power_cap_w;
        double per = cfg->idle_w + 0.5 * (cfg->max_w - cfg->idle_w);
        while (m > 1 && (double)m * per > total + 1e-9) {
            size_t low = 0;
            for (size_t i = 1; i < m; i++)
                if (w[i] < w[low] || (w[i] == w[low] && on[i] > on[low]))
                    low = i;
            /* No CPU there (its budget is below idle power); until it is
             * off it still draws its idle power, which stays reserved. */
            nodes[on[low]].budget_w = 0.999 * cfg->idle_w;
            total -= nodes[on[low]].off ? cfg->off_w : cfg->idle_w;
            on[low] = on[m - 1];
            w[low] = w[m - 1];
            m--;
        }
        ctl_power_split_pure(total > 0 ? total : 0, m, idle, max, w, fixed, out);
        double used = 0;
        for (size_t i = 0; i < m; i++) {
            nodes[on[i]].budget_w = out[i] > 0 ? out[i] : 1e-3;
            used += out[i];
        }
        (void)noff;
        (void)used;
    }
    free(idle);
    free(max);
    free(w);
    free(fixed);
    free(out);
    free(on);
}

void sim_powercap_power_off(const struct sim_config *cfg, const struct sim_apc_node *nodes,
                            size_t n, int *node_on)
{
    if (!(cfg->power_cap_w > 0) || cfg->power_cap_equal)
        return;
    for (size_t k = 0; k < n; k++)
        if (nodes[k].budget_w > 0 && nodes[k].budget_w < cfg->idle_w)
            node_on[k] = 0;
}

int sim_exp2_powercap(const struct sim_exp_opts *o, struct wlm_error *err)
{
    static const double caps[] = {1.0, 0.9, 0.8, 0.7, 0.6, 0.5};
    enum { NC = sizeof(caps) / sizeof(caps[0]), NS = 2, NM = 5 };
    static const char *const split_name[NS] = {"wlm", "equal"};
    static const char *const mname[NM] = {"min_utility_mean", "min_utility_worst",
                                          "jobs_missed_pct", "web_violation_min", "energy_day_kwh"};
    int rc = sim_exp2_check(o, err);
    if (rc)
        return rc;
    double *v = calloc((size_t)NC * NS * NM * o->seeds, sizeof(double));
    FILE *runs = NULL, *sum = NULL;
    rc = -ENOMEM;
    if (!v) {
        wlm_error_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if (o->out_prefix) {
        rc = -WLM_EIO;
        if (!(runs = sim_exp_open_out(o, "-runs.csv", err)) ||
            !(sum = sim_exp_open_out(o, "-summary.csv", err)))
            goto out;
        fprintf(runs, "cap_pct,cap_w,split,seed,min_utility_mean,min_utility_worst,jobs,missed,"
                      "unfinished,missed_pct,web_violation_min,energy_day_kwh,decisions\n");
    }
    /* Experiment 2's day (sim_exp2), with the core's power saving. */
    struct sim_config c;
    size_t njobs = sim_exp2_day(o, &c);
    c.power = SIM_POWER_WLM;
    double peak_w = (double)c.nodes * c.max_w;
    for (unsigned k = 0; k < o->seeds; k++) {
        struct sim_job_spec *jobs = NULL;
        size_t nj = 0;
        uint64_t seed = o->seed + k;
        rc = sim_workload_mix(seed, o->exp2_ia_min * 60, njobs, 1024, &jobs, &nj, err);
        if (rc)
            goto out;
        for (int ci = 0; ci < NC; ci++) {
            for (int si = 0; si < NS; si++) {
                /* At 100 % the split cannot matter: one run, both rows. */
                c.power_cap_w = caps[ci] * peak_w;
                c.power_cap_equal = si == 1;
                struct sim_result r;
                rc = sim_run(&c, jobs, nj, &r, err);
                if (rc) {
                    free(jobs);
                    goto out;
                }
                double pct = sim_missed_pct(&r);
                double mean = r.decisions ? r.min_utility_sum / r.decisions : 0;
                double m[NM] = {mean, r.min_utility_worst, pct, r.web_violation_s / 60,
                                r.energy_horizon_kwh};
                for (int q = 0; q < NM; q++)
                    v[(((size_t)ci * NS + (size_t)si) * NM + (size_t)q) * o->seeds + k] = m[q];
                if (runs)
                    fprintf(runs, "%.0f,%.0f,%s,%llu,%.4f,%.4f,%zu,%zu,%zu,%.2f,%.1f,%.3f,%u\n",
                            100 * caps[ci], c.power_cap_w, split_name[si], (unsigned long long)seed,
                            mean, r.min_utility_worst, r.jobs, r.missed, r.jobs - r.done, pct,
                            r.web_violation_s / 60, r.energy_horizon_kwh, r.decisions);
                sim_result_fini(&r);
            }
        }
        free(jobs);
    }
    if (sum)
        fprintf(sum, "cap_pct,split,metric,seeds,mean,ci95\n");
    if (o->table)
        fprintf(o->table,
                "Experiment 2 under a power cap: one day, %zu nodes (peak %.0f W), web 5..55%% "
                "of the cluster, %zu jobs (mean ia %g min), placement %s with power saving, %u "
                "seeds (mean +- 95%% CI)\n"
                "%-5s %-6s %17s %17s %16s %16s %14s\n",
                c.nodes, peak_w, njobs, o->exp2_ia_min, sim_policy_name(c.policy), o->seeds, "cap",
                "split", "min_util_mean", "min_util_worst", "jobs_missed_%", "web_viol_min",
                "energy_kWh");
    static const struct sim_exp_cell cell[NM] = {
        {8, 3, 6, 3}, {8, 3, 6, 3}, {9, 2, 5, 2}, {9, 2, 5, 2}, {9, 2, 5, 2}};
    for (int ci = 0; ci < NC; ci++)
        for (int si = 0; si < NS; si++) {
            if (o->table)
                fprintf(o->table, "%3.0f%%  %-6s", 100 * caps[ci], split_name[si]);
            char key[64];
            snprintf(key, sizeof(key), "%.0f,%s", 100 * caps[ci], split_name[si]);
            sim_exp_summary_row(sum, o->table, key,
                                &v[((size_t)ci * NS + (size_t)si) * NM * o->seeds], o->seeds, mname,
                                NM, 4, cell);
        }
    rc = 0;
out:
    if (sim_exp_close_out(runs, err) || sim_exp_close_out(sum, err))
        rc = rc ? rc : -WLM_EIO;
    free(v);
    return rc;
}
