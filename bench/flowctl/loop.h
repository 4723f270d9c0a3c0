/*
 * loop.h - a closed flow-control loop on real processes, shared by the
 * closed-loop test and bench-flowctl: wlm-router in front of two
 * wlm-sampleapp applications ("gold" with a tight response-time goal,
 * "bronze" with a lax one), open-loop Poisson load in phases, and every
 * cycle a limit policy reads the router's statistics and PUTs a new
 * configuration:
 *   FLOWCTL  - the web profiler + flowctl core (limit, weights, costs), with
 *              each app's allocation = the CPU share its worker obtained;
 *   GRADIENT - Envoy's adaptive-concurrency rule on the system-wide limit,
 *              limit' = limit·(minRTT·1.25)/sampleRTT + √limit, weights equal;
 *   STATIC   - the initial configuration, never changed.
 */
#ifndef WLM_BENCH_FLOWCTL_LOOP_H
#define WLM_BENCH_FLOWCTL_LOOP_H

#include <stddef.h>

enum loop_policy { LOOP_FLOWCTL, LOOP_GRADIENT, LOOP_STATIC };

#define LOOP_MAX_PHASES 8
#define LOOP_MAX_CYCLES 600

struct loop_phase {
    double seconds;
    double rate[2]; /* gold, bronze requests/s */
};

struct loop_params {
    const char *bindir; /* where wlm-router and wlm-sampleapp are */
    enum loop_policy policy;
    double cycle_s;       /* control period */
    double goal[2];       /* response-time goals, s */
    double cpu_ms[2];     /* CPU per request of each app */
    double delay_ms[2];   /* non-CPU delay of each app */
    unsigned limit0;      /* initial router limit */
    unsigned max_queue;   /* per-flow router queue */
    unsigned max_wait_ms; /* router queue timeout (503) */
    struct loop_phase phases[LOOP_MAX_PHASES];
    size_t nphases;
    int verbose; /* print one line per cycle to stderr */
    /* CPU as the node agent measures it (nodeagent_proc_session_usage:
     * /proc CPU time and schedstat run delay of each app process) instead of
     * the app's own counters: the profiler gets the measured CPU, flowctl the
     * measured CPU time and CPU wait per request, and each app's allocation
     * stays at the one core the placement would give it. */
    int measured_cpu;
    int hog_phase[LOOP_MAX_PHASES]; /* CPU hogs pinned beside gold in each phase */
};

struct loop_cycle {
    double t; /* seconds since the start of the first phase */
    size_t phase;
    unsigned limit;     /* limit in force during the cycle */
    double weight[2];   /* router weights in force */
    double rt[2];       /* mean response time of completed requests, s (NAN if none) */
    double svc[2];      /* router's mean time in the application (dispatch to response), s */
    double done[2];     /* completions */
    double rejected[2]; /* 503s: queue full or queue timeout */
    double cost_est[2]; /* profiler's CPU ms per request (NAN until known) */
    double omega[2];    /* CPU the app obtained while busy, MHz (1000 = a whole core) */
    double pred_rt[2];  /* flowctl's prediction for the next cycle (NAN otherwise) */
    /* measured_cpu: */
    double cpu_wait_ms[2]; /* measured CPU wait per completed request, ms */
    double cpu_share[2];   /* share of the CPU flowctl now assumes the app gets */
    double d0[2];          /* flowctl's non-CPU delay, s */
    double d0_blind[2];    /* the same without the CPU measurement (cpu_time/cpu_wait unknown) */
    double pred_blind[2];  /* and its prediction */
};

struct loop_result {
    struct loop_cycle cycles[LOOP_MAX_CYCLES];
    size_t ncycles;
    char error[8800];
};

/* Run the whole scenario. Returns 0 or -1 with result->error set. */
int loop_run(const struct loop_params *p, struct loop_result *r);

#endif
