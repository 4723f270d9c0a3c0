/*
 * profilers.h - workload profilers (pure estimators, time as a parameter).
 *
 * The web profiler learns the CPU cost of one request of each flow (an
 * application's service class) from what is cheap to observe: the CPU time
 * used by each application instance (node agent process stats) and the
 * number of requests of each flow that instance completed (router stats).
 * Several flows may share an instance, so the cost of a flow is not a simple
 * ratio: each sampling window of each instance gives one linear equation
 *     ΔCPU = Σ_f c_f · Δcompletions_f + b · Δt
 * (b = the instance's idle CPU rate), and recursive least squares with
 * exponential forgetting solves them as they arrive, so old windows fade out
 * (a sliding window of about 1/(1 − forgetting) windows) and the estimate
 * follows a change of cost.
 *
 * Units are the caller's: if CPU is given in CPU-seconds the costs are
 * CPU-seconds per request; multiply by the core speed for megacycles.
 */
#ifndef WLM_PROFILERS_H
#define WLM_PROFILERS_H

#include <stddef.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PROF_MAX_FLOWS 64
#define PROF_MAX_INSTANCES 256
#define PROF_NAME_MAX 128

struct prof_web_config {
    double window_s;   /* minimum length of one regression window, s (default 5) */
    double forgetting; /* RLS forgetting factor in (0, 1] (default 0.95) */
    double init_var;   /* prior variance of an unknown cost (default 1e4) */
    int baseline;      /* 1 = also estimate an idle CPU rate per instance-second (default 1) */
};
void prof_web_config_default(struct prof_web_config *cfg);

/* Cumulative completions of one flow on one instance (counters, not deltas). */
struct prof_flow_count {
    const char *flow; /* "app/class" */
    double completions;
};

struct prof_web;

/* cfg NULL = defaults. NULL with err set on bad config or no memory. */
struct prof_web *prof_web_new(const struct prof_web_config *cfg, struct wlm_error *err);
void prof_web_free(struct prof_web *p); /* NULL-safe */

/* Feed one sample of an instance at time `now`: its cumulative CPU used and the
 * cumulative completions of the flows it serves (a flow it does not list
 * completed nothing since its last sample). Once the instance's window has lasted window_s, the differences since
 * the window began become one regression row. A counter that goes backwards
 * (instance restart) restarts the window. Returns 0, or -WLM_EINVAL (err
 * names the field), or -WLM_ELIMIT (too many flows/instances). */
int prof_web_sample(struct prof_web *p, const char *instance, double now, double cpu_total,
                    const struct prof_flow_count *flows, size_t n, struct wlm_error *err);

/* The current cost estimate of a flow (>= 0) and its standard error (from
 * the RLS covariance scaled by the residual variance; INFINITY until there
 * are more rows than unknowns). -WLM_ENOTFOUND when the flow was never seen. */
int prof_web_cost(const struct prof_web *p, const char *flow, double *cost, double *stderr_out);
/* Idle CPU rate per instance (CPU units per second); 0 when not estimated. */
double prof_web_baseline(const struct prof_web *p);
/* Regression rows used so far. */
size_t prof_web_rows(const struct prof_web *p);

#ifdef __cplusplus
}
#endif
#endif /* WLM_PROFILERS_H */
