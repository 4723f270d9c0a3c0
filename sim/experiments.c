/*
 * experiments.c - the three evaluations of issue 9. Each replication uses the
 * same workload for every policy (common random numbers), so differences
 * between policies are not noise from different job sequences.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void sim_exp_defaults(struct sim_exp_opts *o)
{
    memset(o, 0, sizeof(*o));
    sim_config_defaults(&o->base);
    o->seed = 1;
    o->seeds = 10;
    o->njobs = 100;
    o->ia_lo_min = 8;
    o->ia_hi_min = 30;
    o->ia_step_min = 2;
    o->exp2_ia_min = 20;
    o->exp2_nodes = 8;
    o->exp2_policy = SIM_POLICY_APC;
    o->hosts = 16;
    o->vms = 64;
}

FILE *sim_exp_open_out(const struct sim_exp_opts *o, const char *suffix, struct wlm_error *err)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s%s", o->out_prefix, suffix);
    FILE *f = fopen(path, "w");
    if (!f)
        wlm_error_setf(err, errno, "out", "cannot write %s: %s", path, strerror(errno));
    return f;
}

int sim_exp_close_out(FILE *f, struct wlm_error *err)
{
    if (!f)
        return 0;
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return wlm_error_setf(err, WLM_EIO, "out", "write failed");
    return 0;
}

double sim_missed_pct(const struct sim_result *r)
{
    return 100.0 * (double)(r->missed + (r->jobs - r->done)) / (double)r->jobs;
}

void sim_exp_summary_row(FILE *sum, FILE *table, const char *key, const double *v, unsigned seeds,
                         const char *const *mname, int nm, int sum_prec,
                         const struct sim_exp_cell *cell)
{
    for (int m = 0; m < nm; m++) {
        double mu, h;
        sim_ci95(&v[(size_t)m * seeds], seeds, &mu, &h);
        if (sum)
            fprintf(sum, "%s,%s,%u,%.*f,%.*f\n", key, mname[m], seeds, sum_prec, mu, sum_prec, h);
        if (table)
            fprintf(table, " %*.*f +-%*.*f", cell[m].width, cell[m].prec, mu, cell[m].hwidth,
                    cell[m].hprec, h);
    }
    if (table)
        fprintf(table, "\n");
}

/* ---------------------------------------------------------------- exp 1 */

/* Experiment 1 on a job trace: every policy once on the same jobs. Nothing
 * is random, so there are no seeds and no confidence intervals; the summary
 * has one row per policy (missed % overall and per class). */
static int exp1_trace(const struct sim_exp_opts *o, struct wlm_error *err)
{
    enum { NP = SIM_POLICY_COUNT, NC = SIM_NCLASSES };
    const struct sim_trace *t = o->trace;
    struct row {
        struct sim_result r;
        unsigned rounds;
        double pct, cls_pct[NC], resp_h;
        size_t cls_n[NC];
    } rows[NP];
    double *arr = calloc(t->n, sizeof(double));
    FILE *runs = NULL, *sum = NULL;
    int rc = 0, nrun = 0;
    memset(rows, 0, sizeof(rows));
    if (!arr) {
        rc = wlm_error_set(err, ENOMEM, "out of memory");
        goto out;
    }
    /* all simulations first: a failure leaves no half-written files */
    for (int p = 0; p < NP; p++) {
        struct row *w = &rows[p];
        struct sim_config c = o->base;
        c.policy = p;
        c.power = SIM_POWER_ALWAYS_ON;
        c.web.peak_mhz = 0;
        if ((rc = sim_trace_run(&c, t, &w->r, &w->rounds, arr, err)))
            goto out;
        nrun++;
        size_t miss[NC] = {0}, ndone = 0;
        double resp = 0;
        for (size_t i = 0; i < t->n; i++) {
            const struct sim_job_spec *j = &t->jobs[i];
            double f = w->r.finish[i];
            int late = arr[i] < 0 || f < 0 || f > arr[i] + j->goal_factor * j->runtime_s + 1e-6;
            w->cls_n[j->svc_class]++;
            miss[j->svc_class] += late;
            if (f >= 0 && arr[i] >= 0) {
                resp += f - arr[i];
                ndone++;
            }
        }
        w->pct = 100.0 * (double)(w->r.missed + (w->r.jobs - w->r.done)) / (double)w->r.jobs;
        for (int k = 0; k < NC; k++)
            w->cls_pct[k] = w->cls_n[k] ? 100.0 * (double)miss[k] / (double)w->cls_n[k] : NAN;
        w->resp_h = ndone ? resp / (double)ndone / 3600 : NAN;
    }
    if (o->out_prefix) {
        rc = -WLM_EIO;
        if (!(runs = sim_exp_open_out(o, "-runs.csv", err)) ||
            !(sum = sim_exp_open_out(o, "-summary.csv", err)))
            goto out;
        fprintf(runs, "policy,trace,jobs,done,missed,unfinished,missed_pct");
        fprintf(sum, "policy,jobs,missed_pct");
        for (int k = 0; k < NC; k++) {
            fprintf(runs, ",missed_pct_%s", sim_class_name(k));
            fprintf(sum, ",missed_pct_%s", sim_class_name(k));
        }
        fprintf(runs, ",starts,suspends,resumes,migrations,moves,mean_response_h,end_h,"
                      "dep_rounds\n");
        fprintf(sum, ",suspends,migrations,moves,mean_response_h\n");
        for (int p = 0; p < NP; p++) {
            const struct row *w = &rows[p];
            fprintf(runs, "%s,%s,%zu,%zu,%zu,%zu,%.2f", sim_policy_name(p), t->name, w->r.jobs,
                    w->r.done, w->r.missed, w->r.unfinished, w->pct);
            fprintf(sum, "%s,%zu,%.3f", sim_policy_name(p), w->r.jobs, w->pct);
            for (int k = 0; k < NC; k++) {
                if (w->cls_n[k]) {
                    fprintf(runs, ",%.2f", w->cls_pct[k]);
                    fprintf(sum, ",%.3f", w->cls_pct[k]);
                } else {
                    fputs(",", runs);
                    fputs(",", sum);
                }
            }
            fprintf(runs, ",%u,%u,%u,%u,%u,%.3f,%.3f,%u\n", w->r.starts, w->r.suspends,
                    w->r.resumes, w->r.migrations, w->r.moves, w->resp_h, w->r.end_t / 3600,
                    w->rounds);
            fprintf(sum, ",%u,%u,%u,%.3f\n", w->r.suspends, w->r.migrations, w->r.moves, w->resp_h);
        }
    }
    if (o->table) {
        FILE *f = o->table;
        fprintf(f,
                "Experiment 1 on trace %s: %zu jobs, %zu nodes x %g cores\n"
                "  skipped: %zu wider than a node, %zu over node memory, %zu without run time, "
                "%zu without processors; %zu afterok dependencies (%zu on skipped jobs "
                "dropped)\n"
                "  one run per policy (a trace has nothing random: --seed/--seeds unused)\n",
                t->name, t->n, o->base.nodes, o->base.cores, t->skipped_wide, t->skipped_mem,
                t->skipped_noruntime, t->skipped_noprocs, t->deps, t->deps_dropped);
        fprintf(f, "%-12s %9s", "policy", "missed_%");
        for (int k = 0; k < NC; k++)
            fprintf(f, " %9s", sim_class_name(k));
        fprintf(f, " %10s %8s %10s %6s %7s\n", "unfinished", "suspends", "migrations", "moves",
                "resp_h");
        fprintf(f, "%-12s %9s", "(jobs)", "");
        for (int k = 0; k < NC; k++)
            fprintf(f, " %9zu", rows[0].cls_n[k]);
        fprintf(f, "\n");
        for (int p = 0; p < NP; p++) {
            const struct row *w = &rows[p];
            fprintf(f, "%-12s %9.1f", sim_policy_name(p), w->pct);
            for (int k = 0; k < NC; k++) {
                if (w->cls_n[k])
                    fprintf(f, " %9.1f", w->cls_pct[k]);
                else
                    fprintf(f, " %9s", "-");
            }
            fprintf(f, " %10zu %8u %10u %6u %7.2f\n", w->r.unfinished, w->r.suspends,
                    w->r.migrations, w->r.moves, w->resp_h);
        }
    }
    rc = 0;
out:
    if (sim_exp_close_out(runs, err) || sim_exp_close_out(sum, err))
        rc = rc ? rc : -WLM_EIO;
    for (int p = 0; p < nrun; p++)
        sim_result_fini(&rows[p].r);
    free(arr);
    return rc;
}

int sim_exp1(const struct sim_exp_opts *o, struct wlm_error *err)
{
    if (o->trace)
        return exp1_trace(o, err);
    if (!(o->ia_lo_min > 0) || o->ia_hi_min < o->ia_lo_min || !(o->ia_step_min > 0))
        return wlm_error_setf(err, WLM_EINVAL, "ia_min", "need 0 < ia_min <= ia_max, step > 0");
    if (o->seeds < 1)
        return wlm_error_setf(err, WLM_EINVAL, "seeds", "must be >= 1");
    size_t nia = (size_t)floor((o->ia_hi_min - o->ia_lo_min) / o->ia_step_min + 1e-9) + 1;
    enum { NP = SIM_POLICY_COUNT, NM = 4 }; /* metrics: missed %, suspends, migr, moves */
    double *x = calloc(nia, sizeof(double));
    double *v = calloc((size_t)NP * NM * nia * o->seeds, sizeof(double));
    double *mean = calloc((size_t)NP * NM * nia, sizeof(double));
    double *half = calloc((size_t)NP * NM * nia, sizeof(double));
    FILE *runs = NULL, *sum = NULL, *svg = NULL;
    int rc = -ENOMEM;
    if (!x || !v || !mean || !half) {
        wlm_error_set(err, ENOMEM, "out of memory");
        goto out;
    }
#define V(p, m, i, s) v[((((size_t)(p)*NM + (m)) * nia + (i)) * o->seeds) + (s)]
#define M(a, p, m, i) a[((size_t)(p)*NM + (m)) * nia + (i)]
    if (o->out_prefix) {
        rc = -WLM_EIO;
        if (!(runs = sim_exp_open_out(o, "-runs.csv", err)) ||
            !(sum = sim_exp_open_out(o, "-summary.csv", err)) ||
            !(svg = sim_exp_open_out(o, ".svg", err)))
            goto out;
        fprintf(runs, "policy,mean_ia_min,seed,jobs,done,missed,unfinished,missed_pct,starts,"
                      "suspends,resumes,migrations,moves,end_h\n");
    }
    for (size_t i = 0; i < nia; i++) {
        x[i] = o->ia_lo_min + o->ia_step_min * (double)i;
        for (unsigned k = 0; k < o->seeds; k++) {
            struct sim_job_spec *jobs = NULL;
            size_t nj = 0;
            uint64_t seed = o->seed + k;
            rc = sim_workload_mix(seed, x[i] * 60, o->njobs, 1024, &jobs, &nj, err);
            if (rc)
                goto out;
            for (int p = 0; p < NP; p++) {
                struct sim_config c = o->base;
                c.policy = p;
                c.power = SIM_POWER_ALWAYS_ON;
                c.web.peak_mhz = 0;
                struct sim_result r;
                rc = sim_run(&c, jobs, nj, &r, err);
                if (rc) {
                    free(jobs);
                    goto out;
                }
                double pct = sim_missed_pct(&r);
                V(p, 0, i, k) = pct;
                V(p, 1, i, k) = r.suspends;
                V(p, 2, i, k) = r.migrations;
                V(p, 3, i, k) = r.moves;
                if (runs)
                    fprintf(runs, "%s,%g,%llu,%zu,%zu,%zu,%zu,%.2f,%u,%u,%u,%u,%u,%.3f\n",
                            sim_policy_name(p), x[i], (unsigned long long)seed, r.jobs, r.done,
                            r.missed, r.unfinished, pct, r.starts, r.suspends, r.resumes,
                            r.migrations, r.moves, r.end_t / 3600);
                sim_result_fini(&r);
            }
            free(jobs);
        }
        for (int p = 0; p < NP; p++)
            for (int m = 0; m < NM; m++)
                sim_ci95(&V(p, m, i, 0), o->seeds, &M(mean, p, m, i), &M(half, p, m, i));
    }
    if (sum) {
        fprintf(sum, "policy,mean_ia_min,seeds,missed_pct_mean,missed_pct_ci95,suspends_mean,"
                     "suspends_ci95,migrations_mean,migrations_ci95,moves_mean,moves_ci95\n");
        for (int p = 0; p < NP; p++)
            for (size_t i = 0; i < nia; i++)
                fprintf(sum, "%s,%g,%u,%.3f,%.3f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f\n",
                        sim_policy_name(p), x[i], o->seeds, M(mean, p, 0, i), M(half, p, 0, i),
                        M(mean, p, 1, i), M(half, p, 1, i), M(mean, p, 2, i), M(half, p, 2, i),
                        M(mean, p, 3, i), M(half, p, 3, i));
    }
    if (svg) {
        struct sim_series s[NP];
        for (int p = 0; p < NP; p++)
            s[p] = (struct sim_series){sim_policy_name(p), x, &M(mean, p, 0, 0), &M(half, p, 0, 0),
                                       nia};
        char title[160];
        snprintf(title, sizeof(title),
                 "Jobs missing their goal (%zu nodes x %g cores, %u seeds, 95%% CI)", o->base.nodes,
                 o->base.cores, o->seeds);
        sim_svg_plot(svg, title, "mean inter-arrival time (min)", "% jobs missing goal", s, NP);
    }
    if (o->table) {
        FILE *t = o->table;
        fprintf(t,
                "Experiment 1: %% of %zu jobs missing their goal (mean +- 95%% CI over %u "
                "seeds), %zu nodes x %g cores\n",
                o->njobs, o->seeds, o->base.nodes, o->base.cores);
        fprintf(t, "%8s", "ia_min");
        for (int p = 0; p < NP; p++)
            fprintf(t, " %18s", sim_policy_name(p));
        fprintf(t, "\n");
        for (size_t i = 0; i < nia; i++) {
            fprintf(t, "%8g", x[i]);
            for (int p = 0; p < NP; p++)
                fprintf(t, " %10.1f +-%5.1f", M(mean, p, 0, i), M(half, p, 0, i));
            fprintf(t, "\n");
        }
        fprintf(t, "Actions per run (mean): suspends / migrations / resumed elsewhere\n%8s",
                "ia_min");
        for (int p = SIM_POLICY_APC; p < NP; p++)
            fprintf(t, " %24s", sim_policy_name(p));
        fprintf(t, "\n");
        for (size_t i = 0; i < nia; i++) {
            fprintf(t, "%8g", x[i]);
            for (int p = SIM_POLICY_APC; p < NP; p++)
                fprintf(t, "   %6.1f / %6.1f / %6.1f", M(mean, p, 1, i), M(mean, p, 2, i),
                        M(mean, p, 3, i));
            fprintf(t, "\n");
        }
    }
    rc = 0;
#undef V
#undef M
out:
    if (sim_exp_close_out(runs, err) || sim_exp_close_out(sum, err) || sim_exp_close_out(svg, err))
        rc = rc ? rc : -WLM_EIO;
    free(x);
    free(v);
    free(mean);
    free(half);
    return rc;
}

/* ---------------------------------------------------------------- exp 2 */

int sim_exp2_check(const struct sim_exp_opts *o, struct wlm_error *err)
{
    if (o->seeds < 1 || o->exp2_nodes < 1 || !(o->exp2_ia_min > 0))
        return wlm_error_setf(err, WLM_EINVAL, "seeds", "need seeds >= 1, nodes >= 1, ia > 0");
    if (o->exp2_policy == SIM_POLICY_FCFS || o->exp2_policy == SIM_POLICY_EDF)
        return wlm_error_setf(err, WLM_EINVAL, "exp2_policy",
                              "needs an apc policy (it places the web application too)");
    return 0;
}

size_t sim_exp2_day(const struct sim_exp_opts *o, struct sim_config *c)
{
    const double day = 86400;
    *c = o->base;
    c->nodes = o->exp2_nodes;
    c->policy = o->exp2_policy;
    c->horizon_s = day;
    double cluster = (double)c->nodes * c->cores * c->mhz;
    c->web.min_mhz = 0.05 * cluster;
    c->web.peak_mhz = 0.55 * cluster;
    c->web.period_s = day;
    size_t njobs = (size_t)(day / (o->exp2_ia_min * 60));
    return njobs < 1 ? 1 : njobs;
}

int sim_exp2(const struct sim_exp_opts *o, struct wlm_error *err)
{
    enum { NP = SIM_POWER_COUNT, NM = 5 }; /* kWh, missed %, web viol min, boots, migr+susp */
    static const char *const mname[NM] = {"energy_day_kwh", "jobs_missed_pct", "web_violation_min",
                                          "node_boots", "suspends_migrations"};
    int rc = sim_exp2_check(o, err);
    if (rc)
        return rc;
    double *v = calloc((size_t)NP * NM * o->seeds, sizeof(double));
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
        fprintf(runs, "power,seed,energy_day_kwh,energy_run_kwh,jobs,missed,missed_pct,web_"
                      "violation_min,node_boots,"
                      "node_shutdowns,suspends,migrations,moves,end_h\n");
    }
    struct sim_config c;
    size_t njobs = sim_exp2_day(o, &c);
    for (unsigned k = 0; k < o->seeds; k++) {
        struct sim_job_spec *jobs = NULL;
        size_t nj = 0;
        uint64_t seed = o->seed + k;
        rc = sim_workload_mix(seed, o->exp2_ia_min * 60, njobs, 1024, &jobs, &nj, err);
        if (rc)
            goto out;
        for (int p = 0; p < NP; p++) {
            c.power = p;
            struct sim_result r;
            rc = sim_run(&c, jobs, nj, &r, err);
            if (rc) {
                free(jobs);
                goto out;
            }
            double pct = sim_missed_pct(&r);
            double *row = &v[((size_t)p * NM) * o->seeds];
            row[0 * o->seeds + k] = r.energy_horizon_kwh;
            row[1 * o->seeds + k] = pct;
            row[2 * o->seeds + k] = r.web_violation_s / 60;
            row[3 * o->seeds + k] = r.node_boots;
            row[4 * o->seeds + k] = r.suspends + r.migrations;
            if (runs)
                fprintf(runs, "%s,%llu,%.3f,%.3f,%zu,%zu,%.2f,%.1f,%u,%u,%u,%u,%u,%.3f\n",
                        sim_power_name(p), (unsigned long long)seed, r.energy_horizon_kwh,
                        r.energy_kwh, r.jobs, r.missed, pct, r.web_violation_s / 60, r.node_boots,
                        r.node_shutdowns, r.suspends, r.migrations, r.moves, r.end_t / 3600);
            sim_result_fini(&r);
        }
        free(jobs);
    }
    if (sum)
        fprintf(sum, "power,metric,seeds,mean,ci95\n");
    if (o->table)
        fprintf(o->table,
                "Experiment 2: one day, %zu nodes x %g cores, web 5..55%% of the "
                "cluster, %zu jobs (mean ia %g min), placement %s, %u seeds (mean +- "
                "95%% CI)\n"
                "%-10s %20s %20s %20s %14s %18s\n",
                c.nodes, c.cores, njobs, o->exp2_ia_min, sim_policy_name(c.policy), o->seeds,
                "power", "energy_day_kWh", "jobs_missed_%", "web_violation_min", "node_boots",
                "suspends+migr");
    static const struct sim_exp_cell cell[NM] = {
        {12, 2, 5, 2}, {12, 2, 5, 2}, {12, 2, 5, 2}, {9, 1, 3, 1}, {9, 1, 3, 1}};
    for (int p = 0; p < NP; p++) {
        if (o->table)
            fprintf(o->table, "%-10s", sim_power_name(p));
        sim_exp_summary_row(sum, o->table, sim_power_name(p), &v[(size_t)p * NM * o->seeds],
                            o->seeds, mname, NM, 3, cell);
    }
    rc = 0;
out:
    if (sim_exp_close_out(runs, err) || sim_exp_close_out(sum, err))
        rc = rc ? rc : -WLM_EIO;
    free(v);
    return rc;
}

/* ---------------------------------------------------------------- exp 3 */

int sim_exp3(const struct sim_exp_opts *o, struct wlm_error *err)
{
    enum { NP = 2, NM = 3 };
    static const char *const pname[NP] = {"three-band", "wlm"};
    if (o->seeds < 1 || o->hosts < 2 || o->vms < 1)
        return wlm_error_setf(err, WLM_EINVAL, "hosts", "need seeds >= 1, hosts >= 2, vms >= 1");
    double *v = calloc((size_t)NP * NM * o->seeds, sizeof(double));
    double *load = calloc(o->vms, sizeof(double));
    int *h0 = calloc(o->vms, sizeof(int)), *h = calloc(o->vms, sizeof(int));
    FILE *runs = NULL, *sum = NULL;
    int rc = -ENOMEM;
    if (!v || !load || !h0 || !h) {
        wlm_error_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if (o->out_prefix) {
        rc = -WLM_EIO;
        if (!(runs = sim_exp_open_out(o, "-runs.csv", err)) ||
            !(sum = sim_exp_open_out(o, "-summary.csv", err)))
            goto out;
        fprintf(runs, "balancer,seed,hosts,vms,migrations,rounds,converged\n");
    }
    for (unsigned k = 0; k < o->seeds; k++) {
        struct sim_rng r;
        uint64_t seed = o->seed + k;
        sim_rng_seed(&r, seed);
        /* VM loads of 2..25 % of a host, placed on a host drawn with a
         * skew (u^2) when it still has room below 95 %, else on the next
         * host with room: the first hosts start full, the last ones nearly
         * empty, as after a burst of first-fit placements. */
        double *hl = calloc(o->hosts, sizeof(double));
        if (!hl) {
            wlm_error_set(err, ENOMEM, "out of memory");
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < o->vms; i++) {
            load[i] = 0.02 + 0.23 * sim_rng_uniform(&r);
            double u = sim_rng_uniform(&r);
            size_t hh = (size_t)(u * u * (double)o->hosts), tries = 0;
            while (hl[hh] + load[i] > 0.95 && tries++ < o->hosts)
                hh = (hh + 1) % o->hosts;
            h0[i] = (int)hh;
            hl[hh] += load[i];
        }
        free(hl);
        for (int p = 0; p < NP; p++) {
            struct sim_bal_result br;
            memcpy(h, h0, o->vms * sizeof(int));
            rc = p == 0 ? sim_balance_threeband(load, h, o->vms, o->hosts, 200, &br)
                        : sim_balance_wlm_core(load, h, o->vms, o->hosts, 200, &br);
            if (rc) {
                wlm_error_set(err, -rc, "balancer failed");
                goto out;
            }
            v[((size_t)p * NM + 0) * o->seeds + k] = br.migrations;
            v[((size_t)p * NM + 1) * o->seeds + k] = br.rounds;
            v[((size_t)p * NM + 2) * o->seeds + k] = br.converged;
            if (runs)
                fprintf(runs, "%s,%llu,%zu,%zu,%u,%u,%d\n", pname[p], (unsigned long long)seed,
                        o->hosts, o->vms, br.migrations, br.rounds, br.converged);
        }
    }
    if (sum)
        fprintf(sum, "balancer,seeds,migrations_mean,migrations_ci95,rounds_mean,rounds_ci95,"
                     "converged_frac\n");
    if (o->table)
        fprintf(o->table,
                "Experiment 3: %zu hosts, %zu VMs (load 2..25%% of a host, skewed first-fit "
                "start), %u seeds (mean +- 95%% CI)\n%-11s %18s %18s %10s\n",
                o->hosts, o->vms, o->seeds, "balancer", "migrations", "rounds", "converged");
    for (int p = 0; p < NP; p++) {
        double mm, mh, rm, rh, cm, ch;
        sim_ci95(&v[((size_t)p * NM + 0) * o->seeds], o->seeds, &mm, &mh);
        sim_ci95(&v[((size_t)p * NM + 1) * o->seeds], o->seeds, &rm, &rh);
        sim_ci95(&v[((size_t)p * NM + 2) * o->seeds], o->seeds, &cm, &ch);
        if (sum)
            fprintf(sum, "%s,%u,%.2f,%.2f,%.2f,%.2f,%.2f\n", pname[p], o->seeds, mm, mh, rm, rh,
                    cm);
        if (o->table)
            fprintf(o->table, "%-11s %10.1f +-%5.1f %10.1f +-%5.1f %9.0f%%\n", pname[p], mm, mh, rm,
                    rh, 100 * cm);
    }
    rc = 0;
out:
    if (sim_exp_close_out(runs, err) || sim_exp_close_out(sum, err))
        rc = rc ? rc : -WLM_EIO;
    free(v);
    free(load);
    free(h0);
    free(h);
    return rc;
}
