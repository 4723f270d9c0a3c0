/*
 * wlm-sim - discrete-event simulator for wlm's policies.
 *
 *   wlm-sim --experiment exp1 --seeds 10 --out results/exp1
 *   wlm-sim --experiment run --policy edf --mean-ia-min 12 --seed 3
 *   wlm-sim --experiment exp1 --trace jobs.swf --nodes 8 --cores 8 --out out/trace
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "sim.h"

struct opts {
    char experiment[16];
    char policy[32];
    char power[32];
    char solver[16];
    char exp2_policy[32];
    char out[512];
    long long seed, seeds, jobs, nodes, hosts, vms, exp2_nodes;
    double cores, mhz, mem_mb, idle_w, max_w, off_w;
    double boot_s, suspend_s, resume_s, migrate_s, node_boot_s, cycle_s;
    double ia_min, ia_max, ia_step, mean_ia_min, exp2_ia_min;
    double hysteresis, headroom;
    int no_action_costs;
    /* job traces (SWF) */
    char trace[512];
    char trace_classes[512];
};

#define F(name, type, field, def, lo, hi, help)                                                    \
    {                                                                                              \
        name, type, offsetof(struct opts, field), sizeof(((struct opts *)0)->field), NULL, def,    \
            lo, hi, help                                                                           \
    }
static const struct wlm_cfg_field fields[] = {
    F("experiment", WLM_CFG_STR, experiment, "run", 1, 0, "run | exp1 | exp2 | exp2cap (exp2 under a power cap) | exp3 | all"),
    F("policy", WLM_CFG_STR, policy, "apc", 1, 0, "run: fcfs | edf | apc | apc-noknobs"),
    F("solver", WLM_CFG_STR, solver, "heuristic", 1, 0,
      "production APC core solver: heuristic | exact (GLPK MILP) | auto"),
    F("power", WLM_CFG_STR, power, "always-on", 1, 0, "run: always-on | utilsum | wlm"),
    F("out", WLM_CFG_STR, out, "", 1, 0,
      "output prefix: PREFIX-runs.csv, PREFIX-summary.csv, PREFIX.svg (all: PREFIX-expN...)"),
    F("seed", WLM_CFG_INT, seed, "1", 0, 1e15, "random seed (replication k uses seed+k)"),
    F("seeds", WLM_CFG_INT, seeds, "10", 1, 1000, "replications per point"),
    F("jobs", WLM_CFG_INT, jobs, "100", 1, 100000, "jobs per run (100 = the design's mix)"),
    F("nodes", WLM_CFG_INT, nodes, "4", 1, 10000, "nodes (experiment 1 / run)"),
    F("cores", WLM_CFG_NUM, cores, "2", 1, 1024, "cores per node"),
    F("mhz", WLM_CFG_NUM, mhz, "3000", 1, 1e6, "MHz per core"),
    F("mem_mb", WLM_CFG_NUM, mem_mb, "4096", 1, 1e9, "memory per node (a job VM takes 1024)"),
    F("idle_w", WLM_CFG_NUM, idle_w, "150", 0, 1e5, "node power when idle"),
    F("max_w", WLM_CFG_NUM, max_w, "250", 0, 1e5, "node power at full CPU"),
    F("off_w", WLM_CFG_NUM, off_w, "5", 0, 1e5, "node power when off"),
    F("boot_s", WLM_CFG_NUM, boot_s, "35", 0, 1e6, "start a job VM (pre-created image)"),
    F("suspend_s", WLM_CFG_NUM, suspend_s, "20", 0, 1e6, "suspend a job VM to shared storage"),
    F("resume_s", WLM_CFG_NUM, resume_s, "25", 0, 1e6, "resume a job VM"),
    F("migrate_s", WLM_CFG_NUM, migrate_s, "60", 0, 1e6, "live-migrate a job VM"),
    F("node_boot_s", WLM_CFG_NUM, node_boot_s, "120", 0, 1e6, "power a node on until usable"),
    F("cycle_s", WLM_CFG_NUM, cycle_s, "300", 1, 1e6, "APC / power control period"),
    F("no_action_costs", WLM_CFG_BOOL, no_action_costs, "false", 1, 0,
      "all action durations 0 (the design description's cost-free simulation)"),
    F("ia_min", WLM_CFG_NUM, ia_min, "8", 0.01, 1e6, "exp1: smallest mean inter-arrival (min)"),
    F("ia_max", WLM_CFG_NUM, ia_max, "30", 0.01, 1e6, "exp1: largest mean inter-arrival (min)"),
    F("ia_step", WLM_CFG_NUM, ia_step, "2", 0.01, 1e6, "exp1: step (min)"),
    F("mean_ia_min", WLM_CFG_NUM, mean_ia_min, "15", 0.01, 1e6, "run: mean inter-arrival (min)"),
    F("exp2_ia_min", WLM_CFG_NUM, exp2_ia_min, "20", 0.01, 1e6, "exp2: mean job inter-arrival"),
    F("exp2_policy", WLM_CFG_STR, exp2_policy, "apc", 1, 0,
      "exp2: placement of jobs and web (apc | apc-noknobs)"),
    F("exp2_nodes", WLM_CFG_INT, exp2_nodes, "8", 1, 10000, "exp2: nodes"),
    F("hosts", WLM_CFG_INT, hosts, "16", 2, 100000, "exp3: hosts"),
    F("vms", WLM_CFG_INT, vms, "64", 1, 1000000, "exp3: VMs"),
    F("trace", WLM_CFG_STR, trace, "", 1, 0,
      "exp1 / run: jobs from this SWF trace instead of the generated mix (one run per "
      "policy; --nodes/--cores/--mem-mb size the cluster)"),
    F("trace_classes", WLM_CFG_STR, trace_classes, "", 1, 0,
      "trace queue (SWF field 15) -> class, e.g. 1=platinum,2=gold,*=silver; changes the "
      "default 1=platinum,2=gold,3=silver,4=bronze,*=silver"),
    F("hysteresis", WLM_CFG_NUM, hysteresis, "0.02", 0, 10,
      "APC: utility gain needed to suspend or migrate (the placement core's default)"),
    F("headroom", WLM_CFG_NUM, headroom, "0.25", 0, 100, "utilsum rule: nodes = ceil(U + h)"),
};

static int run_one(const struct opts *o, const struct sim_config *c, const struct sim_trace *trace,
                   struct wlm_error *err)
{
    struct sim_job_spec *jobs = NULL;
    size_t nj = 0;
    int rc;
    unsigned rounds = 1;
    struct sim_result r;
    if (trace) {
        /* the trace's jobs with the submit times the run gave them (a
         * dependent job is submitted after its predecessor finishes) */
        nj = trace->n;
        double *arr = calloc(nj, sizeof(double));
        if (!arr || !(jobs = malloc(nj * sizeof(*jobs)))) {
            free(arr);
            return wlm_error_set(err, ENOMEM, "out of memory");
        }
        memcpy(jobs, trace->jobs, nj * sizeof(*jobs));
        rc = sim_trace_run(c, trace, &r, &rounds, arr, err);
        for (size_t i = 0; i < nj && !rc; i++)
            jobs[i].arrival = arr[i];
        free(arr);
    } else {
        rc = sim_workload_mix((uint64_t)o->seed, o->mean_ia_min * 60, (size_t)o->jobs, 1024, &jobs,
                              &nj, err);
        if (rc)
            return rc;
        rc = sim_run(c, jobs, nj, &r, err);
    }
    if (rc) {
        free(jobs);
        return rc;
    }
    FILE *f = stdout;
    if (o->out[0]) {
        char path[600];
        snprintf(path, sizeof(path), "%s.csv", o->out);
        if (!(f = fopen(path, "w"))) {
            free(jobs);
            sim_result_fini(&r);
            return wlm_error_setf(err, WLM_EIO, "out", "cannot write %s", path);
        }
    }
    /* with a trace: the SWF job number last, to join with the trace */
    fprintf(f, "job,arrival_s,threads,runtime_s,class,deadline_s,finish_s,missed%s\n",
            trace ? ",swf_job" : "");
    for (size_t i = 0; i < nj; i++) {
        /* never submitted (predecessor never finished): arrival -1, missed */
        double dl = jobs[i].arrival + jobs[i].goal_factor * jobs[i].runtime_s;
        fprintf(f, "%zu,%.3f,%d,%.0f,%d,%.3f,%.3f,%d", i, jobs[i].arrival, jobs[i].threads,
                jobs[i].runtime_s, jobs[i].svc_class, dl, r.finish[i],
                r.finish[i] < 0 || r.finish[i] > dl + 1e-6);
        if (trace)
            fprintf(f, ",%lld", trace->number[i]);
        fputc('\n', f);
    }
    if (f != stdout)
        fclose(f);
    fprintf(o->out[0] ? stdout : stderr,
            "policy=%s power=%s jobs=%zu missed=%zu unfinished=%zu done=%zu starts=%u suspends=%u "
            "resumes=%u "
            "migrations=%u moves=%u energy_kwh=%.3f end_h=%.3f",
            sim_policy_name(c->policy), sim_power_name(c->power), r.jobs, r.missed, r.unfinished,
            r.done, r.starts, r.suspends, r.resumes, r.migrations, r.moves, r.energy_kwh,
            r.end_t / 3600);
    if (trace)
        fprintf(o->out[0] ? stdout : stderr, " dep_rounds=%u", rounds);
    fputc('\n', o->out[0] ? stdout : stderr);
    free(jobs);
    sim_result_fini(&r);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct wlm_error err = {0};
    memset(&o, 0, sizeof(o));
    int rc = wlm_daemon_args(argc, argv, "wlm-sim",
                             "Discrete-event simulator: wlm's policies against FCFS/EDF, "
                             "always-on and the three-band balancer.",
                             fields, WLM_ARRAY_LEN(fields), &o, &err);
    if (rc == 1)
        return 0;
    if (rc) {
        fprintf(stderr, "wlm-sim: %s\n", err.msg);
        return 2;
    }
    struct sim_exp_opts e;
    sim_exp_defaults(&e);
    struct sim_config *c = &e.base;
    c->nodes = (size_t)o.nodes;
    c->cores = o.cores;
    c->mhz = o.mhz;
    c->mem_mb = o.mem_mb;
    c->idle_w = o.idle_w;
    c->max_w = o.max_w;
    c->off_w = o.off_w;
    c->boot_s = o.boot_s;
    c->suspend_s = o.suspend_s;
    c->resume_s = o.resume_s;
    c->migrate_s = o.migrate_s;
    c->node_boot_s = o.node_boot_s;
    if (o.no_action_costs)
        c->boot_s = c->suspend_s = c->resume_s = c->migrate_s = c->node_boot_s = 0;
    c->cycle_s = o.cycle_s;
    c->apc_hysteresis = o.hysteresis;
    c->headroom = o.headroom;
    if (o.max_w < o.idle_w) {
        fprintf(stderr, "wlm-sim: --max-w must be >= --idle-w\n");
        return 2;
    }
    if ((c->policy = sim_policy_parse(o.policy)) < 0) {
        fprintf(stderr, "wlm-sim: --policy: unknown policy '%s' (fcfs, edf, apc, apc-noknobs)\n",
                o.policy);
        return 2;
    }
    if ((c->power = sim_power_parse(o.power)) < 0) {
        fprintf(stderr, "wlm-sim: --power: unknown rule '%s' (always-on, utilsum, wlm)\n", o.power);
        return 2;
    }
    if (!strcmp(o.solver, "auto"))
        c->solver = 0;
    else if (!strcmp(o.solver, "exact"))
        c->solver = 1;
    else if (!strcmp(o.solver, "heuristic"))
        c->solver = 2;
    else {
        fprintf(stderr, "wlm-sim: --solver: unknown '%s' (heuristic, exact, auto)\n", o.solver);
        return 2;
    }
    e.seed = (uint64_t)o.seed;
    e.seeds = (unsigned)o.seeds;
    e.njobs = (size_t)o.jobs;
    e.ia_lo_min = o.ia_min;
    e.ia_hi_min = o.ia_max;
    e.ia_step_min = o.ia_step;
    e.exp2_ia_min = o.exp2_ia_min;
    e.exp2_nodes = (size_t)o.exp2_nodes;
    if ((e.exp2_policy = sim_policy_parse(o.exp2_policy)) < 0) {
        fprintf(stderr, "wlm-sim: --exp2-policy: unknown policy '%s'\n", o.exp2_policy);
        return 2;
    }
    e.hosts = (size_t)o.hosts;
    e.vms = (size_t)o.vms;
    e.table = stdout;
    const char *x = o.experiment;
    struct sim_trace trace;
    memset(&trace, 0, sizeof(trace));
    if (o.trace_classes[0] && !o.trace[0]) {
        fprintf(stderr, "wlm-sim: --trace-classes needs --trace\n");
        return 2;
    }
    if (o.trace[0]) {
        if (strcmp(x, "exp1") && strcmp(x, "run")) {
            fprintf(stderr, "wlm-sim: --trace works with --experiment exp1 or run, not '%s'\n", x);
            return 2;
        }
        struct sim_trace_opts to;
        sim_trace_opts_default(&to);
        to.cores = c->cores;
        to.node_mem_mb = c->mem_mb;
        if (o.trace_classes[0] && sim_trace_classes_parse(o.trace_classes, &to.classes, &err)) {
            fprintf(stderr, "wlm-sim: --trace-classes: %s\n", err.msg);
            return 2;
        }
        if (sim_trace_load(o.trace, &to, &trace, &err)) {
            fprintf(stderr, "wlm-sim: %s\n", err.msg);
            return 1;
        }
        if (trace.skipped_wide || trace.skipped_mem || trace.skipped_noruntime ||
            trace.skipped_noprocs)
            fprintf(stderr,
                    "wlm-sim: %s: %zu of %zu jobs kept; skipped %zu wider than a node (%g "
                    "cores), %zu over node memory (%g MB), %zu without run time, %zu without "
                    "processors\n",
                    trace.name, trace.n, trace.lines, trace.skipped_wide, c->cores,
                    trace.skipped_mem, c->mem_mb, trace.skipped_noruntime, trace.skipped_noprocs);
        e.trace = &trace;
    }
    int all = !strcmp(x, "all");
    if (strcmp(x, "run") && strcmp(x, "exp1") && strcmp(x, "exp2") && strcmp(x, "exp3") &&
        strcmp(x, "exp2cap") && !all) {
        fprintf(stderr,
                "wlm-sim: --experiment: unknown '%s' (run, exp1, exp2, exp2cap, exp3, all)\n", x);
        return 2;
    }
    char prefix[600];
    if (!strcmp(x, "exp2cap")) {
        /* Experiment 2 under a cluster power cap (sim/powercap.c). */
        e.out_prefix = o.out[0] ? o.out : NULL;
        rc = sim_exp2_powercap(&e, &err);
    } else if (!strcmp(x, "run")) {
        rc = run_one(&o, c, e.trace, &err);
    } else {
        int (*fn[3])(const struct sim_exp_opts *, struct wlm_error *) = {sim_exp1, sim_exp2,
                                                                         sim_exp3};
        for (int k = 0; k < 3 && rc == 0; k++) {
            char name[8];
            snprintf(name, sizeof(name), "exp%d", k + 1);
            if (!all && strcmp(x, name))
                continue;
            if (o.out[0]) {
                if (all)
                    snprintf(prefix, sizeof(prefix), "%s-%s", o.out, name);
                else
                    snprintf(prefix, sizeof(prefix), "%s", o.out);
                e.out_prefix = prefix;
            }
            rc = fn[k](&e, &err);
            fflush(stdout);
        }
    }
    sim_trace_fini(&trace);
    if (rc) {
        fprintf(stderr, "wlm-sim: %s%s%s\n", err.field[0] ? err.field : "",
                err.field[0] ? ": " : "", err.msg);
        return 1;
    }
    return 0;
}
