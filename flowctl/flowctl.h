/*
 * flowctl.h - the flow controller: a queueing model of web applications behind
 * the router, the choice of the router's concurrency limit and per-flow weights,
 * and per-application utility functions of allocated CPU for the placement
 * controller.
 *
 * Everything here is a PURE decision core: no clock, files, sockets or threads.
 * Time is passed in as `now` (seconds, any monotonic origin). The controller
 * daemon gathers router statistics and profiler output, calls flowctl_cycle()
 * and pushes the resulting configuration to the router.
 *
 * Units: CPU allocation ω in MHz; per-request CPU cost c in megacycles
 * (MHz·s), so c/ω is a service time in seconds at allocation ω; times in
 * seconds; rates per second.
 *
 * The model (see flowctl_predict): each flow f of an application holds n_f of
 * the router's concurrency slots (the limit is Σ n_f, the weights are n_f / Σ
 * n). A request admitted to the application spends d0_f (non-CPU time: I/O,
 * database) plus its CPU demand c_f/ω stretched by processor sharing with the
 * other requests in the application, σ = 1/(1 − κU), where U is the CPU
 * utilisation and κ = (M−1)/M for M slots in total (κ = 1 without a limit,
 * which gives the exact multi-class processor-sharing result; κ = 0 with one
 * slot, which gives the exact M/M/1 result). Given σ, each flow is a
 * birth-death chain (λ_f arrivals, min(n, n_f)/T_f departures, optional
 * router queue bound), and U is the fixed point of utilisation = Σ X_f c_f/ω.
 */
#ifndef WLM_FLOWCTL_H
#define WLM_FLOWCTL_H

#include <stddef.h>

#include <jansson.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FLOWCTL_NAME_MAX 64
#define FLOWCTL_MAX_FLOWS 128
#define FLOWCTL_UTIL_MAX_POINTS 32

/* ---------------------------------------------------------------- utility */

/* One breakpoint of a piecewise-linear utility function: x = CPU (MHz),
 * y = utility. The placement engineer's struct has the same shape. */
struct flowctl_point {
    double x, y;
};

/* A concave, non-decreasing piecewise-linear function over [pts[0].x,
 * pts[n-1].x]; flat beyond the last point. */
struct flowctl_utility {
    size_t n;
    struct flowctl_point pts[FLOWCTL_UTIL_MAX_POINTS];
};

/* Value of a utility function at x (linear between points, clamped at ends). */
double flowctl_utility_eval(const struct flowctl_utility *u, double x);

/* ---------------------------------------------------------------- model */

/* The calibrated parameters of one flow, as the model sees them. */
struct flowctl_flow_model {
    double lambda;    /* arrival rate, requests/s (>= 0) */
    double cost;      /* CPU per request, megacycles (>= 0) */
    double d0;        /* non-CPU delay per request, s (>= 0) */
    double goal;      /* response-time goal τ, s (> 0) */
    double queue_cap; /* router queue bound for this flow; 0 = unbounded */
};

/* What the model predicts for one flow. */
struct flowctl_prediction {
    double rt;         /* mean response time of admitted requests, s (INFINITY when unstable) */
    double in_app;     /* mean time inside the application, s */
    double wait;       /* mean time queued in the router, s */
    double throughput; /* admitted requests/s */
    double drop_frac;  /* fraction rejected by the router (queue full) */
    double utility;    /* (τ − rt)/τ mixed with the floor for drops, clamped at the floor */
    double score;      /* utility extended below the floor for unstable flows (for ranking) */
};

/* Closed-form processor sharing: d0 + (c/ω)/(1 − λc/ω); INFINITY when λc >= ω. */
double flowctl_ps_rt(double omega, double lambda, double cost, double d0);

/* Predict every flow of ONE application with allocation omega (MHz > 0).
 * slots[i] is flow i's share of the concurrency limit (>= 1), or NULL / a value
 * <= 0 for "no limit". util_floor (< 0) is the lower clamp of utilities.
 * Returns 0 or -WLM_EINVAL (err names the field). out has n entries. */
int flowctl_predict(const struct flowctl_flow_model *flows, size_t n, double omega,
                    const double *slots, double util_floor, struct flowctl_prediction *out,
                    struct wlm_error *err);

/* Choose integer slots (>= 1 each, total <= max_total) for the flows of one
 * application that maximise the minimum flow utility (leximin: then the
 * second smallest, ...). Flows with lambda == 0 get one slot. The total is
 * also capped at four times the knee ω·(d0 + c/ω)/c (traffic-weighted c,
 * d0), past which slots buy little but in-app sharing. Writes slots[n]
 * and, if pred is not NULL, the predictions at that choice. */
int flowctl_optimize_slots(const struct flowctl_flow_model *flows, size_t n, double omega,
                           unsigned max_total, double util_floor, unsigned *slots,
                           struct flowctl_prediction *pred, struct wlm_error *err);

/* Utility of an application as a function of its CPU allocation, from the
 * unlimited processor-sharing model: per flow u_f(ω) = (τ − RT_f(ω))/τ clamped
 * at util_floor, averaged with weights importance_f · λ_f (importance alone
 * when all λ are 0), then replaced by its upper concave hull and sampled into
 * at most npts points (2..FLOWCTL_UTIL_MAX_POINTS) over [0, omega_max].
 * omega_max <= 0 picks a range where the utility is within 1 % of its supremum. */
int flowctl_app_utility(const struct flowctl_flow_model *flows, const double *importance, size_t n,
                        double omega_max, size_t npts, double util_floor,
                        struct flowctl_utility *out, struct wlm_error *err);

/* The placement curve of an application (curve.c): flowctl_app_utility made
 * steep below the application's CPU demand (sum of lambda x cost), where its
 * queues grow without bound, so an optimiser never mistakes half the CPU it
 * needs for half good; a flat curve (the model unsure) is replaced by one
 * that values the CPU demand. Concave, non-decreasing, from 0 MHz. The
 * controller, `wlm plan` snapshots and wlm-sim all use it. */
int flowctl_placement_curve(const struct flowctl_flow_model *flows, const double *importance,
                            size_t n, double omega_max, size_t npts, double util_floor,
                            struct flowctl_utility *out, struct wlm_error *err);
/* The curve of an application nothing is known about yet: indifferent to
 * CPU (0.5 at 0 MHz, 1 at 100 MHz). */
void flowctl_indifferent_curve(struct flowctl_utility *out);

/* ---------------------------------------------------------------- controller */

struct flowctl_config {
    double util_floor;  /* lower clamp of utilities, default -1 */
    unsigned max_limit; /* cap on the router's total concurrency limit, default 1000 */
    unsigned min_limit; /* floor of the total limit, default 1 */
    double gain; /* damping: fraction of the gap to the target moved per cycle, default 0.5 */
    double max_step_frac; /* max relative change of a flow's slots per cycle, default 0.5 */
    double deadband;      /* relative gap below which slots stay put, default 0.1 */
    double ewma;          /* weight of a new observation in calibration, default 0.3 */
    double queue_cap;     /* router queue bound per flow assumed by the model; 0 = unbounded */
    double default_d0;    /* d0 until calibrated, default 0 */
    double stale_after; /* seconds without observations before a flow counts as idle, default 30 */
};
/* Fill the defaults above. */
void flowctl_config_default(struct flowctl_config *cfg);

/* One flow's statistics over the last interval, as the router and the
 * profiler report them. Negative values mean "unknown". */
struct flowctl_obs {
    const char *app;
    const char *cls;
    double arrival_rate;    /* requests/s arriving at the router */
    double completion_rate; /* requests/s completed */
    double mean_rt;         /* mean response time at the router, s */
    double mean_service;    /* mean time from dispatch to response (in the app), s */
    double cost;            /* profiler's CPU per request, megacycles */
    /* Measured by the node agent over the same interval, per completed
     * request of the application (all its flows): seconds on a CPU and
     * seconds runnable but waiting for one (schedstat run delay). Unknown
     * unless cpu_time > 0 and cpu_wait >= 0 (so a zero-initialised
     * observation carries no measurement). With them, a CPU that is slower
     * than the allocation (a saturated machine) counts as CPU time, not as
     * the application's non-CPU delay d0. */
    double cpu_time;
    double cpu_wait;
};

/* Per-flow observations over an interval from two GET /admin/stats documents
 * of the router (router/README.md) taken dt seconds apart: arrival and
 * completion rates from the counter differences, mean response time from the
 * `response` histogram's count/sum_ms, mean time in the application from
 * service_time_ms_mean × service_count. prev may be NULL (first sample: rates
 * and means over the router's whole life are not an interval, so every value
 * is -1 "unknown"). A flow absent from prev (new, or the router restarted and
 * its counters went back) also gets -1s. cost is always -1 (the profiler's).
 * app/cls point into `cur` (valid while it lives). Writes at most max
 * entries and *n. Returns 0 or -WLM_EINVAL naming the field. */
int flowctl_obs_from_router_stats(const json_t *prev, const json_t *cur, double dt,
                                  struct flowctl_obs *out, size_t max, size_t *n,
                                  struct wlm_error *err);

struct flowctl;

/* Create a controller; cfg NULL = defaults. Returns NULL with err set on bad config. */
struct flowctl *flowctl_new(const struct flowctl_config *cfg, struct wlm_error *err);
void flowctl_free(struct flowctl *fc); /* NULL-safe */

/* Declare or update an application's current CPU allocation (MHz > 0). */
int flowctl_set_allocation(struct flowctl *fc, const char *app, double omega,
                           struct wlm_error *err);
/* The measured share of its CPU an app got while busy (1 when never
 * measured or unknown app); the model runs it at allocation * share. */
double flowctl_app_cpu_share(const struct flowctl *fc, const char *app);
/* Declare or update a flow's goal (τ s > 0) and importance (> 0) for the
 * application's utility mix. Creates the flow. */
int flowctl_set_goal(struct flowctl *fc, const char *app, const char *cls, double goal,
                     double importance, struct wlm_error *err);
/* Feed one flow's observation at time now (calibrates λ, c and d0 by EWMA).
 * An unknown flow is created with goal 1 s until flowctl_set_goal is called. */
int flowctl_observe(struct flowctl *fc, const struct flowctl_obs *obs, double now,
                    struct wlm_error *err);
/* Current calibrated model of a flow (ENOTFOUND if unknown). */
int flowctl_flow_get(const struct flowctl *fc, const char *app, const char *cls,
                     struct flowctl_flow_model *out, struct wlm_error *err);

/* The decision of one cycle. */
struct flowctl_flow_decision {
    char app[FLOWCTL_NAME_MAX];
    char cls[FLOWCTL_NAME_MAX];
    double slots;        /* damped share of the limit */
    double target_slots; /* undamped optimum */
    double weight;       /* router weight: share of CPU implied by the slots, sums to 1 */
    double cost;         /* megacycles per request */
    double pred_rt;      /* predicted mean RT at the damped choice, s */
    double in_app;       /* predicted mean time in the application, s */
    double utility;      /* predicted utility at the damped choice */
};
struct flowctl_decision {
    unsigned limit; /* total concurrency limit, Σ slots rounded */
    size_t nflows;
    struct flowctl_flow_decision flows[FLOWCTL_MAX_FLOWS];
};

/* Run one control cycle at time now: for each application with an allocation,
 * optimise slots for its flows, damp the change against the previous cycle
 * (moves a fraction `gain` of the gap, at most max_step_frac, nothing inside
 * the deadband, halving the gain whenever the direction reverses), and write
 * the decision. Applications without an allocation are skipped. */
int flowctl_cycle(struct flowctl *fc, double now, struct flowctl_decision *out,
                  struct wlm_error *err);

/* The router configuration fragment of a decision:
 * {"concurrency_limit": N, "flows": [{"app":..,"class":..,"weight":..,"cost":..}, ...]}
 * Weights are integers in 1..1000 proportional to slots. Caller decrefs. */
json_t *flowctl_decision_json(const struct flowctl_decision *d);

/* Write a decision into a whole router configuration (the JSON document of
 * router/README.md, as GET /admin/config returns it) in place: "limit", and
 * for every decided flow the "weight" (share × 1000, at least 0.001) and
 * "cost" (when known, > 0) of apps[].classes[] entry app/class, and each
 * application's slots as its instances' "max_concurrency" (split by
 * cpu_mhz; the global limit alone would let an overloaded application hold
 * every slot). An
 * application without a "classes" array gets one class "default" when the
 * decision names app/default. Flows of the decision missing from the
 * configuration are ignored (the router has not been told about them yet).
 * Returns 0 or -WLM_EINVAL when cfg is not a router configuration. */
int flowctl_router_config_apply(json_t *cfg, const struct flowctl_decision *d,
                                struct wlm_error *err);

/* Utility function of one application at its current calibration (see
 * flowctl_app_utility). */
int flowctl_utility_of(const struct flowctl *fc, const char *app, double omega_max, size_t npts,
                       struct flowctl_utility *out, struct wlm_error *err);
/* The placement curve (flowctl_placement_curve) of one application at its
 * current calibration; the indifferent curve when it has no flows yet. */
int flowctl_placement_curve_of(const struct flowctl *fc, const char *app, double omega_max,
                               size_t npts, struct flowctl_utility *out, struct wlm_error *err);

#ifdef __cplusplus
}
#endif
#endif /* WLM_FLOWCTL_H */
