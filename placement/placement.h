/*
 * placement.h - the placement controller (APC): where every web application
 * instance and every job VM runs, and how much CPU each one gets.
 *
 * The core is pure: a struct placement_problem in, a struct placement_decision
 * out. No I/O, no clock, no threads, no global state. Callers (controller,
 * wlm-sim, `wlm plan`, tests) measure time themselves.
 *
 * Objective (lexicographic max-min utility): maximise the minimum utility over
 * all placeable web applications and jobs; then let the remaining capacity
 * raise the next-lowest utilities; then prefer fewer and cheaper actions,
 * fewer powered-on nodes (consolidation, once every workload meets its goal)
 * and balanced load. A change must buy more utility than its actions cost
 * (hysteresis), so the controller does not thrash.
 *
 * Solvers: an exact GLPK MILP for small problems (time limit, MIP gap, an
 * error hook so a bad model never aborts the process) and a scalable heuristic
 * (bisection on the utility level, demand from the inverse utility, first-fit
 * decreasing packing that starts from the current placement). Every decision
 * carries an upper bound on the minimum utility and hence its optimality gap.
 *
 * Utilities are dimensionless: 0 means "exactly meets the goal", 1 is the best
 * a workload can get, negative values miss the goal (flowctl and the job
 * estimator clamp them below, e.g. at -1).
 */
#ifndef WLM_PLACEMENT_H
#define WLM_PLACEMENT_H

#include <stddef.h>

#include <jansson.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PLACEMENT_NAME_MAX 64
#define PLACEMENT_LABELS_MAX 128
#define PLACEMENT_UTILITY_MAX_POINTS 32

/* A concave, non-decreasing piecewise-linear utility of CPU (MHz), given by
 * breakpoints with ascending cpu. Below the first breakpoint the utility is
 * util[0]; beyond the last it stays at util[npoints-1]. Slopes must not
 * increase from one segment to the next (concavity is what makes max-min a
 * linear program). This is a plain struct so jobsched and flowctl can fill it
 * without depending on this library. */
struct placement_utility {
    size_t npoints; /* 1..PLACEMENT_UTILITY_MAX_POINTS */
    double cpu_mhz[PLACEMENT_UTILITY_MAX_POINTS];
    double util[PLACEMENT_UTILITY_MAX_POINTS];
};

/* Utility at cpu MHz. */
double placement_utility_eval(const struct placement_utility *u, double cpu_mhz);
/* Smallest CPU (MHz) that reaches utility `level`; +INFINITY when the level
 * is above the function's maximum. */
double placement_utility_inverse(const struct placement_utility *u, double level);
/* Replace u by its upper concave envelope starting at 0 MHz (for callers whose
 * sampled curves have a convex knee, e.g. a clamp at -1 near overload). The
 * envelope over-estimates utility only inside the knee. */
void placement_utility_make_concave(struct placement_utility *u);
/* 0 or -WLM_EINVAL with a message naming `what` (e.g. "apps[1].utility"). */
int placement_utility_check(const struct placement_utility *u, const char *what,
                            struct wlm_error *err);

struct placement_node {
    char name[PLACEMENT_NAME_MAX];
    int cores;
    double mhz_per_core; /* capacity = cores * mhz_per_core */
    double memory_mb;
    int powered_on;    /* current power state */
    int can_power_off; /* consolidation may switch it off */
    /* Linear power model: idle + (max - idle) * cpu_used / capacity. A budget
     * (> 0) caps the CPU that may be allocated on the node. */
    double power_idle_w, power_max_w, power_budget_w;
    char labels[PLACEMENT_LABELS_MAX]; /* comma-separated, e.g. "x86,ssd" */
};

enum placement_kind { PLACEMENT_APP, PLACEMENT_JOB };

/* Current state of a job; apps are simply "running where they have instances". */
enum placement_job_state {
    PLACEMENT_JOB_QUEUED,    /* never started, no memory anywhere */
    PLACEMENT_JOB_RUNNING,   /* on cur_node */
    PLACEMENT_JOB_PAUSED,    /* on cur_node, holds memory, gets no CPU */
    PLACEMENT_JOB_SUSPENDED, /* image on shared storage, no memory anywhere */
};

struct placement_workload {
    char name[PLACEMENT_NAME_MAX];
    enum placement_kind kind;
    double memory_mb;           /* per instance (> 0) */
    double max_cpu_per_instance; /* MHz cap of one instance; jobs: threads x max speed */
    int min_instances, max_instances; /* apps; jobs are always 0..1 */
    struct placement_utility utility; /* of the total CPU over all instances */
    char requires[PLACEMENT_LABELS_MAX]; /* labels a node must have (comma-separated) */
    int migratable; /* jobs: live migration possible (else suspend + restore) */
    /* Jobs: CPU is all or nothing: an instance gets exactly its cap
     * (max_cpu_per_instance, i.e. whole threads at full speed) or is not
     * placed. Time-sharing a core between jobs makes them late together;
     * whole threads run the most urgent ones at full speed. */
    int whole;
    /* Jobs: utility lost per second in which the job makes no progress
     * because of an action (suspend, restore, migrate, start). The cost of a
     * disruptive action is its duration times this (0: actions are free). */
    double stall_cost;
    /* Jobs: an action is in flight (starting, restoring, migrating): the job
     * stays on cur_node with the CPU the current placement gives it, whatever
     * the decision; it only takes capacity. */
    int busy;
    /* Jobs only: current state and node (index into nodes, -1 when none). */
    enum placement_job_state state;
    int cur_node;
};

/* One instance of a workload on a node with its CPU allocation. Used both for
 * the current placement (problem) and the target placement (decision). Apps
 * have at most one instance per node; jobs at most one instance. */
struct placement_assign {
    size_t workload;
    size_t node;
    double cpu_mhz;
};

enum placement_action_kind {
    PLACEMENT_ACT_POWER_ON,
    PLACEMENT_ACT_START_INSTANCE,
    PLACEMENT_ACT_STOP_INSTANCE,
    PLACEMENT_ACT_START_JOB,
    PLACEMENT_ACT_PAUSE_JOB,
    PLACEMENT_ACT_RESUME_JOB,
    PLACEMENT_ACT_SUSPEND_JOB,
    PLACEMENT_ACT_RESTORE_JOB,
    PLACEMENT_ACT_MIGRATE_JOB,
    PLACEMENT_ACT_RESIZE, /* change the CPU allocation of an instance or job */
    PLACEMENT_ACT_POWER_OFF,
    PLACEMENT_ACT__COUNT
};

/* "start_instance", ... Static string. */
const char *placement_action_name(enum placement_action_kind k);

/* What an action costs. `utility` is the minimum-utility gain the action must
 * buy before the controller takes it (hysteresis per action); duration and
 * CPU overhead are reported so executors and the simulator can account for
 * them. */
struct placement_action_cost {
    double duration_s;
    double cpu_mhz;
    double utility;
};

enum placement_solver { PLACEMENT_SOLVER_AUTO, PLACEMENT_SOLVER_EXACT, PLACEMENT_SOLVER_HEURISTIC };
const char *placement_solver_name(enum placement_solver s);

struct placement_options {
    enum placement_solver solver;
    size_t exact_max_pairs; /* AUTO uses the MILP up to this many node x workload pairs */
    double time_limit_s;    /* MILP time limit (each stage gets its share) */
    double mip_gap;         /* relative MIP gap for GLPK */
    double hysteresis;      /* min-utility gain needed to change the placement */
    double goal_utility;    /* "meets its goal" threshold for consolidation (0) */
    double headroom;        /* CPU fraction kept free on powered-on nodes */
    double power_off_margin; /* extra CPU fraction needed before a node powers off (anti-flap) */
    int power_saving;       /* consolidate and power nodes off */
    double balance_band;    /* minimum half-width of the utilisation band (0.10) */
    int max_balance_moves;  /* migrations per decision spent on balancing */
    int no_moves;           /* never suspend or move a running job (no preemption) */
    struct placement_action_cost cost[PLACEMENT_ACT__COUNT];
    /* GLPK work budget per decision, in units of about one simplex
     * iteration on a small model (an iteration costs 1 + rows/500, a
     * branch-and-bound node 1 + (rows + cols)/20): deterministic, so the same
     * snapshot gives the same decision on any machine. 0 = 15,000 per second
     * of time_limit_s; the time limit itself is only the safety net. */
    long work_limit;
};

/* Sensible defaults (documented in docs/snapshot.md). */
void placement_options_default(struct placement_options *o);

/* The problem. Arrays are owned by whoever built the struct; the core only
 * reads them. placement_problem_free() releases a problem built by the
 * snapshot loader (or any problem whose arrays come from malloc). */
struct placement_problem {
    struct placement_node *nodes;
    size_t nnodes;
    struct placement_workload *workloads;
    size_t nworkloads;
    struct placement_assign *current; /* current placement: app instances and running/paused jobs */
    size_t ncurrent;
    struct placement_options opts;
};

void placement_problem_free(struct placement_problem *p); /* frees arrays and p; NULL-safe */
/* Structural validation; errors name the field ("nodes[2].memory_mb: must be > 0"). */
int placement_problem_check(const struct placement_problem *p, struct wlm_error *err);

struct placement_action {
    enum placement_action_kind kind;
    size_t workload;  /* (size_t)-1 for power actions */
    int node;         /* destination / subject node */
    int from_node;    /* migrate source, -1 otherwise */
    double cpu_mhz;   /* allocation after the action */
    double memory_mb; /* memory taken (+) or released (-) on `node`; a migration
                       * takes it on `node` and releases it on `from_node` */
    double duration_s;
    size_t *deps; /* indices of earlier actions that must complete first */
    size_t ndeps;
};

enum placement_status {
    PLACEMENT_OK,      /* every placeable workload placed */
    PLACEMENT_PARTIAL, /* some workloads could not be placed (see unplaced) */
};

struct placement_decision {
    enum placement_status status;
    enum placement_solver solver; /* the solver whose placement was used */
    int exact_optimal;            /* MILP proved optimality within mip_gap */
    int kept_current;             /* hysteresis kept the current placement */
    int consolidated;             /* consolidation mode (all goals met) */

    struct placement_assign *assign; /* target placement */
    size_t nassign;
    double *utility; /* per workload */
    double *cpu_mhz; /* per workload, total over instances */
    int *node_on;    /* per node: target power state */

    size_t *unplaced; /* workloads that fit nowhere (or were left out), lowest utility */
    size_t nunplaced;

    double min_utility;      /* over all workloads, unplaced included */
    double min_utility_placeable; /* over workloads that can fit somewhere */
    double upper_bound;      /* proven upper bound on min_utility_placeable */
    double gap;              /* upper_bound - min_utility_placeable (utility units) */
    double current_min_utility; /* what the current placement would give */
    double power_w;          /* estimated power of the target */

    struct placement_action *actions; /* ordered: a valid execution order */
    size_t nactions;
    double plan_duration_s; /* critical path through the dependencies */
    char note[256];         /* why: hysteresis, consolidation, fallbacks */
    /* Where upper_bound comes from: "glpk-lp" (the aggregated LP relaxation
     * solved by GLPK) or "fluid" (total CPU and memory only). */
    char bound_method[16];
    double heuristic_min_utility; /* the heuristic's level before GLPK improved it */
    int glpk_rounds;              /* restricted MILPs solved to improve it */
};

/* Solve. On success *out is a new decision (free with placement_decision_free).
 * Returns 0, or -WLM_EINVAL with err naming the field of a bad problem, or
 * -WLM_EINTERNAL if a solver failed in a way the fallback could not cover.
 * GLPK note: the exact solver creates and frees GLPK's per-thread environment
 * (glp_free_env) around each solve; do not hold other GLPK objects in the
 * calling thread across this call. */
int placement_solve(const struct placement_problem *p, struct placement_decision **out,
                    struct wlm_error *err);
void placement_decision_free(struct placement_decision *d);

/* Plan the actions from the current placement to a given target (e.g. an
 * operator's manual placement). node_on may be NULL (keep power states; nodes
 * in the target are powered on). *out holds actions, assign and node_on only. */
int placement_plan_target(const struct placement_problem *p, const struct placement_assign *target,
                          size_t ntarget, const int *node_on, struct placement_decision **out,
                          struct wlm_error *err);

/* Upper bound on the max-min utility from an aggregate relaxation of the LP
 * (total CPU, total memory, per-workload caps). Cheap: O(workloads) per
 * bisection step. Used for the gap of large problems. */
double placement_fluid_bound(const struct placement_problem *p);

/* Check that executing d->actions in order never over-commits memory on any
 * node and ends in the target placement. 0 or -WLM_ECONFLICT with a message
 * naming the first bad step. Used by tests and by `wlm plan`. */
int placement_plan_verify(const struct placement_problem *p, const struct placement_decision *d,
                          struct wlm_error *err);

/* ---- snapshots (docs/snapshot.md) ---- */

/* Build a problem from a snapshot JSON object. Errors name the field, e.g.
 * "nodes[2].memory_mb: must be > 0". *out is freed with placement_problem_free. */
int placement_snapshot_parse(const json_t *root, struct placement_problem **out,
                             struct wlm_error *err);
/* The problem as a snapshot document (new reference): every field the core
 * reads, so parsing it back gives the same problem and the same decision
 * (apps are written before jobs: a problem whose apps come first keeps its
 * workload order). comment may be NULL. */
json_t *placement_problem_to_json(const struct placement_problem *p, const char *comment);
/* The decision as JSON (new reference). */
json_t *placement_decision_to_json(const struct placement_problem *p,
                                   const struct placement_decision *d);

#ifdef __cplusplus
}
#endif
#endif /* WLM_PLACEMENT_H */
