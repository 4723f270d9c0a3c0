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
    int whole;       /* no resource control: it runs at cap_mhz or not at all */
    int started;     /* has run before: a suspended job (restore) rather than queued */
    double cur_mhz;  /* current allocation when cur_node >= 0 */
    double fixed_mhz;
};

struct sim_apc_node {
    double cap_mhz, mem_mb;
    double cores, mhz; /* cap_mhz = cores * mhz */
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
};

/* The job utility estimator: 0 when the job would finish exactly at its goal,
 * linear in the distance from it relative to the goal span, positive when
 * early. `alloc` MHz from `now` on. */
double sim_job_utility(const struct sim_apc_job *j, double now, double alloc);
/* Utility at full speed (the best this job can still reach). */
double sim_job_umax(const struct sim_apc_job *j, double now);

/* APC: maximise the minimum utility over jobs (and the web application when
 * web != NULL) subject to node CPU and memory. knobs = 0 forbids suspending
 * or moving jobs that run (cur_node >= 0); CPU shares may still change.
 * hysteresis: a plan that suspends or migrates must beat the plan that keeps
 * every running job in place by this much utility. d->node/alloc must hold nj
 * entries. Pure: no clock, no I/O. */
int sim_apc_decide(const struct sim_apc_node *nodes, size_t nn, const struct sim_apc_job *jobs,
                   size_t nj, const struct sim_apc_web *web, double now, int knobs,
                   double hysteresis, double cycle_s, struct sim_apc_decision *d);

/* The same decision made by the production placement core
 * (placement_solve from placement/placement.h) with jobs' utility curves
 * from jobsched_utility_curve. knobs = 0 pins running jobs to their nodes and
 * makes suspending prohibitively expensive. cfg supplies action durations,
 * hysteresis and the solver. */
int sim_apc_decide_core(const struct sim_apc_node *nodes, size_t nn, const struct sim_apc_job *jobs,
                        size_t nj, const struct sim_apc_web *web, double now, int knobs,
                        const struct sim_config *cfg, struct sim_apc_decision *d,
                        struct wlm_error *err);

#endif
