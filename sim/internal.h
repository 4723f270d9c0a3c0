/*
 * internal.h - private interface between the simulator and the decision code
 * it drives. Everything that calls into placement/ or jobsched/ goes through
 * apc_adapter.c, so swapping the decision core is a one-file change.
 */
#ifndef WLM_SIM_INTERNAL_H
#define WLM_SIM_INTERNAL_H

#include "sim.h"

/* A job as the placement controller sees it at one decision instant. */
struct sim_apc_job {
    double cap_mhz; /* threads x per-thread speed: the most it can use */
    double mem_mb;
    double work_rem; /* megacycles still to run */
    double deadline; /* absolute completion-time goal */
    double span;     /* goal span: deadline - submission */
    int cur_node;    /* node it occupies now, -1 when queued or suspended */
    int fixed;       /* in an action or not movable: stays at cur_node with fixed_mhz */
    int started;     /* has run before: a suspended job (restore) rather than queued */
    double cur_mhz;  /* current allocation when cur_node >= 0 */
    double fixed_mhz;
};

struct sim_apc_node {
    double cap_mhz, mem_mb;
    double cores, mhz; /* cap_mhz = cores * mhz */
    int off;           /* powered off (the core may power it on) */
    double budget_w;   /* power budget (0 = none): the core caps its CPU by the model */
};

/* The web application at one decision instant: demand lambda*c (MHz) and
 * the processor-sharing utility parameters. */
struct sim_apc_web {
    double demand_mhz, c_mcycles, tau_s, d0_s;
    double cur_mhz; /* its current allocation (over all nodes) */
};

struct sim_apc_decision {
    int *node;          /* per job: chosen node or -1 (queue / suspend) */
    double *alloc;      /* per job: MHz */
    double web_mhz;     /* CPU for the web application (total over nodes) */
    double min_utility; /* max-min utility reached (incl. estimates for waiting jobs) */
    int *node_on;       /* per node: the core's power state, or NULL (power is not ours) */
};

/* The decision made by the placement core
 * (placement_solve from placement/placement.h) with jobs' utility curves
 * from jobsched_utility_curve. knobs = 0 pins running jobs to their nodes and
 * makes suspending prohibitively expensive. cfg supplies action durations,
 * hysteresis and the solver. With d->node_on set, power saving is on (the
 * controller's default) and the core decides which nodes are on. */
int sim_apc_decide_core(const struct sim_apc_node *nodes, size_t nn, const struct sim_apc_job *jobs,
                        size_t nj, const struct sim_apc_web *web, double now, int knobs,
                        const struct sim_config *cfg, struct sim_apc_decision *d,
                        struct wlm_error *err);

/* Experiment 2's options checked (seeds, nodes, an APC policy), and its
 * day: the cluster, the web application's daily cycle; returns the number
 * of jobs (experiments.c). */
int sim_exp2_check(const struct sim_exp_opts *o, struct wlm_error *err);
size_t sim_exp2_day(const struct sim_exp_opts *o, struct sim_config *c);

/* Shared by the experiments (experiments.c, powercap.c). An output file
 * named out_prefix + suffix, or NULL with err set; closing reports a failed
 * write (NULL is fine). */
FILE *sim_exp_open_out(const struct sim_exp_opts *o, const char *suffix, struct wlm_error *err);
int sim_exp_close_out(FILE *f, struct wlm_error *err);
/* Per cent of a run's jobs that missed their goal or did not finish. */
double sim_missed_pct(const struct sim_result *r);
/* How a summary table prints one metric: " mean +-half" with these widths
 * and precisions. */
struct sim_exp_cell {
    int width, prec, hwidth, hprec;
};
/* One row of a summary over seeds: for each of nm metrics (v holds each
 * metric's value for all seeds, one metric after another) its mean and 95 %
 * CI half-width, as "key,metric,seeds,mean,ci95" in sum (sum_prec decimals)
 * and as a cell in table, which then ends the line. Either file may be NULL. */
void sim_exp_summary_row(FILE *sum, FILE *table, const char *key, const double *v, unsigned seeds,
                         const char *const *mname, int nm, int sum_prec,
                         const struct sim_exp_cell *cell);

#endif
