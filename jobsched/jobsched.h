/*
 * jobsched.h - the one public header of libwlm_jobsched.
 *
 * The job scheduler keeps long-running jobs safe and tells the placement
 * controller what it may place. It does NOT decide where or when a job runs:
 * it validates job specs, resolves dependencies (afterok / afterany /
 * afternotok), matches jobs to nodes, estimates job utility and records every
 * state transition durably in SQLite.
 *
 * Layers:
 *  - pure cores (no clock, file, socket): spec parsing, the state machine,
 *    dependency evaluation, matchmaking, the utility estimator and the
 *    profile update rule. Time is always the `now` argument.
 *  - struct jobsched: the in-memory job table kept equal to the database
 *    (every mutation is one transaction; on a database failure the table is
 *    reloaded from disk, so memory never holds what the disk does not).
 *  - the REST handlers (jobsched_api_register) and the CLI (cli/cmd_job.c).
 *
 * Units: CPU speed and allocation in MHz; work in megacycles (MHz x s);
 * times in seconds since the epoch; memory in MiB.
 */
#ifndef WLM_JOBSCHED_H
#define WLM_JOBSCHED_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- model */

enum jobsched_state {
    JOBSCHED_PENDING,   /* waiting on dependencies or a matching node (reason says which) */
    JOBSCHED_ELIGIBLE,  /* may be placed by the placement controller */
    JOBSCHED_STARTING,  /* placement decided, VM/process being started */
    JOBSCHED_RUNNING,
    JOBSCHED_PAUSED,    /* VM paused in memory */
    JOBSCHED_SUSPENDED, /* VM saved to disk */
    JOBSCHED_MIGRATING,
    JOBSCHED_COMPLETED,
    JOBSCHED_FAILED,
    JOBSCHED_CANCELLED,
    JOBSCHED_NSTATES
};

enum jobsched_class {
    JOBSCHED_PLATINUM,
    JOBSCHED_GOLD,
    JOBSCHED_SILVER,
    JOBSCHED_BRONZE,
    JOBSCHED_NCLASSES
};

enum jobsched_dep_kind { JOBSCHED_AFTEROK, JOBSCHED_AFTERANY, JOBSCHED_AFTERNOTOK };

/* Static names: "PENDING", "platinum", "afterok". Parsers are case-insensitive
 * and return 0 or -WLM_EINVAL. */
const char *jobsched_state_name(enum jobsched_state s);
int jobsched_state_parse(const char *s, enum jobsched_state *out);
const char *jobsched_class_name(enum jobsched_class c);
int jobsched_class_parse(const char *s, enum jobsched_class *out);
const char *jobsched_dep_kind_name(enum jobsched_dep_kind k);
int jobsched_dep_kind_parse(const char *s, enum jobsched_dep_kind *out);
/* COMPLETED, FAILED or CANCELLED. */
int jobsched_state_terminal(enum jobsched_state s);
/* Whether the state machine allows from -> to (see jobsched.c for the table). */
int jobsched_transition_allowed(enum jobsched_state from, enum jobsched_state to);

struct jobsched_dep {
    enum jobsched_dep_kind kind;
    int64_t job_id;
};

struct jobsched_label {
    char *key;
    char *value;
};

struct jobsched_requirements {
    struct jobsched_label *labels; /* node must carry every key=value */
    size_t nlabels;
    int min_cores;          /* 0 = any */
    long long min_memory_mb; /* 0 = any (the job's memory_mb is always required) */
    char *arch;              /* NULL = any */
};

/* Where the job's work estimate came from. */
enum jobsched_profile_source { JOBSCHED_PROF_USER, JOBSCHED_PROF_LEARNED, JOBSCHED_PROF_DEFAULT };

/* A job. Owned by struct jobsched; callers read it, never write it, and must
 * not keep the pointer across a call that mutates the scheduler. */
struct jobsched_job {
    int64_t id;
    char *name;      /* may be NULL */
    char *kind;      /* profiler key: spec "kind", else name, else command */
    char *command;   /* may be NULL */
    char **files;    /* files to copy into the job's VM */
    size_t nfiles;
    char *batch;     /* batch label given at submission, may be NULL */
    char *submit_id; /* client idempotency key, may be NULL */
    char *owner;     /* the principal that submitted it (token name), may be NULL */
    double work_mcycles;  /* total work estimate */
    double done_mcycles;  /* progress reported by node agents */
    int threads;
    double max_speed_mhz; /* per thread */
    long long memory_mb;
    enum jobsched_class cls;
    double deadline; /* explicit completion-time goal, 0 when derived from the class */
    double submit_time;
    double goal_time; /* deadline, or factor(class) x profiled run time after the
                       * submission or, later, the goals of the jobs it waits for */
    enum jobsched_profile_source profile_source;
    struct jobsched_dep *deps;
    size_t ndeps;
    struct jobsched_requirements req;

    enum jobsched_state state;
    char reason[256];  /* why it is in this state (PENDING/FAILED/...) */
    double state_time; /* when it entered this state */
    double end_time;   /* when it reached a terminal state, 0 before */
    char node[64];     /* node it is placed on, "" when none */
    double alloc_mhz;  /* CPU allocation decided by the placement controller */
    double seen_threads; /* most threads seen busy in usage reports */
    double seen_speed_mhz; /* highest per-thread speed seen */
    int learned;       /* the profiler has learned from this run */

    /* Derived, not stored: names of nodes that satisfy the requirements
     * (refreshed by jobsched_update / jobsched_set_nodes), and ids of jobs
     * that depend on this one. */
    const char **eligible_nodes; /* point into the scheduler's node copy */
    size_t neligible;
    int64_t *dependents;
    size_t ndependents, capdependents;
};

/* Largest CPU allocation a job can use: threads x max speed per thread. */
double jobsched_job_max_mhz(const struct jobsched_job *j);
/* Work still to do, never negative. */
double jobsched_job_remaining(const struct jobsched_job *j);

/* ---------------------------------------------------------------- config */

struct jobsched_config {
    double class_factor[JOBSCHED_NCLASSES]; /* goal = factor x profiled run time; 1.5/3/10/20 */
    double utility_min, utility_max;        /* utility is clamped to this range; -1 / 1 */
    double ref_mhz;                         /* reference speed for "work_seconds"; 1000 */
    double default_work_seconds;  /* when neither spec nor profile gives work; 3600 */
    double default_max_speed_mhz; /* per thread when unknown; ref_mhz */
    long long default_memory_mb;  /* 512 */
    double profile_alpha;         /* weight of a new sample in the learned profile; 0.3 */
    size_t max_batch;             /* jobs per POST; 10000 */
    int utility_points;           /* samples of the utility curve; 8 */
};
void jobsched_config_default(struct jobsched_config *c);

/* ---------------------------------------------------------------- spec parsing (pure) */

/* One job of a submission after validation. Dependencies that name another
 * job of the same batch have job_id 0 and batch_index set. */
struct jobsched_spec_dep {
    enum jobsched_dep_kind kind;
    int64_t job_id;  /* existing job, or 0 */
    int batch_index; /* index in the batch, or -1 */
};

struct jobsched_spec {
    char *name, *kind, *command;
    char **files;
    size_t nfiles;
    double work_mcycles; /* 0 = not given (profile or default fills it) */
    int threads;         /* 0 = not given */
    double max_speed_mhz; /* 0 = not given */
    long long memory_mb; /* 0 = not given */
    enum jobsched_class cls;
    double deadline; /* 0 = none */
    char *submit_id;
    char *owner; /* set by the API from the caller's identity, never by the client */
    struct jobsched_spec_dep *deps;
    size_t ndeps;
    struct jobsched_requirements req;
};

struct jobsched_batch {
    struct jobsched_spec *jobs;
    size_t njobs;
    char *batch; /* the batch's label, may be NULL */
    int is_batch; /* body was {"jobs": [...]} */
};

/* Lookup of existing jobs for validation: returns 1 when a job with this id
 * exists. */
typedef int (*jobsched_exists_fn)(int64_t id, void *ud);

/* Parse and validate a POST /v1/jobs body: one job object, or
 * {"jobs": [...], "batch": "label"}. Accepted job members: name, kind,
 * command, files, work_cycles | work_mcycles | work_seconds (+ ref_mhz),
 * threads, max_speed_mhz, memory_mb, class, deadline (epoch seconds or
 * RFC 3339), deadline_in (seconds from now), dependencies, requirements,
 * submit_id. Dependencies: [{"kind":"afterok","on": 12 | "name"}] or the
 * string form "afterok:12:prep,afterany:7". Errors name the field
 * (e.g. "jobs[2].dependencies[0].on"); a cycle among the batch's jobs is
 * reported with its path ("a -> b -> a"). `idem_key` (may be NULL) becomes
 * each job's submit_id ("key" or "key#i" in a batch) unless one is given.
 * On success *out is filled (free with jobsched_batch_fini). */
int jobsched_batch_parse(const json_t *body, double now, const char *idem_key,
                         const struct jobsched_config *cfg, jobsched_exists_fn exists,
                         void *exists_ud, struct jobsched_batch *out, struct wlm_error *err);
void jobsched_batch_fini(struct jobsched_batch *b);

/* ---------------------------------------------------------------- nodes and matchmaking (pure) */

/* Node attributes the controller provides. "labels" are key=value pairs. */
struct jobsched_node {
    const char *name;
    int cores;
    double mhz; /* per core */
    long long memory_mb;
    const char *arch;
    const struct jobsched_label *labels;
    size_t nlabels;
};

/* Does `node` satisfy the job's requirements (including its memory)? When
 * not, `why` (may be NULL) receives the first requirement that fails, like
 * "min_cores 8 > 4". */
int jobsched_node_matches(const struct jobsched_job *j, const struct jobsched_node *node,
                          char *why, size_t whysize);
/* Names the matching nodes' indexes into `match` (caller array of n) and
 * returns how many match. When none does, `why` gets
 * "no node matches: <requirement>" naming the requirement that rules out
 * the most nodes (or "no nodes registered"). */
size_t jobsched_match(const struct jobsched_job *j, const struct jobsched_node *nodes, size_t n,
                      size_t *match, char *why, size_t whysize);

/* ---------------------------------------------------------------- dependencies (pure) */

enum jobsched_dep_status { JOBSCHED_DEP_WAITING, JOBSCHED_DEP_SATISFIED, JOBSCHED_DEP_NEVER };
/* Status of one dependency given the state of the job it names. */
enum jobsched_dep_status jobsched_dep_eval(enum jobsched_dep_kind kind, enum jobsched_state dep);

/* ---------------------------------------------------------------- utility estimator (pure) */

/* A point of a piecewise-linear function: x = CPU (MHz), y = utility (or, for
 * the hypothetical utility, x = utility level and y = aggregate MHz). */
struct jobsched_point {
    double x, y;
};

/* Utility of finishing at time `t_complete`: 0 at the goal, linear in the
 * distance from it relative to the goal's span (goal - submit), positive when
 * early, clamped to [utility_min, utility_max]. */
double jobsched_completion_utility(const struct jobsched_job *j, double t_complete,
                                   const struct jobsched_config *cfg);
/* Predicted completion when the job gets `mhz` from `now` on (its allocation
 * is capped at jobsched_job_max_mhz). INFINITY for mhz <= 0 with work left. */
double jobsched_predict_completion(const struct jobsched_job *j, double mhz, double now);
/* Utility for a constant CPU allocation `mhz` from `now` on. */
double jobsched_utility(const struct jobsched_job *j, double mhz, double now,
                        const struct jobsched_config *cfg);
/* The job's utility as a concave, non-decreasing piecewise-linear function of
 * its CPU allocation (the upper concave hull of samples), x ascending from
 * 0 to jobsched_job_max_mhz. Writes at most `max` points (max >= 2) and
 * returns how many. */
size_t jobsched_utility_curve(const struct jobsched_job *j, double now,
                              const struct jobsched_config *cfg, struct jobsched_point *pts,
                              size_t max);
/* How the placement values a job (the same settings for the controller,
 * `wlm plan` snapshots and wlm-sim). */
struct jobsched_valuation {
    double horizon_s; /* an allocation decided now holds this long (>= the placement period) */
    double start_s;   /* a queued job makes no progress this long after it is started (boot) */
    double restore_s; /* a suspended job makes no progress this long after it is restored */
    double floor;     /* utility far below any goal (e.g. -100): late jobs keep a slope */
    double ceiling;   /* utility of finishing at once (1) */
    int points;       /* samples of the curve (>= 3) */
};
void jobsched_valuation_default(struct jobsched_valuation *v);
/* The valuation of a placement that decides every period_s seconds, whose
 * job starts and restores take start_s and restore_s: the horizon is five
 * periods, at least a minute (a decision is revisited each period, but work
 * postponed once tends to be postponed again while the load lasts). */
void jobsched_valuation_init(struct jobsched_valuation *v, double period_s, double start_s,
                             double restore_s);

/* The placement curve of a job: its utility as a function of the CPU it gets
 * for the next horizon_s seconds, after which it is assumed to run at full
 * speed (the decision is revisited every period, so that is what an
 * allocation buys). 0 MHz means "waits one horizon", not "never finishes", so
 * waiting costs a job horizon / span of utility: little for a job with slack,
 * much for one close to its goal. The delay of the action that starts it
 * (queued: start_s, suspended: restore_s, running: none) comes first. Not
 * clamped at the display range: a late job's curve keeps its slope down to
 * `floor`, so it is never starved for want of a gradient. Concave (upper
 * hull), x ascending from 0 to jobsched_job_max_mhz; returns the number of
 * points written (<= max, max >= 3). */
size_t jobsched_placement_curve(const struct jobsched_job *j, double now,
                                const struct jobsched_valuation *v, struct jobsched_point *pts,
                                size_t max);
/* Utility the job loses per second in which it makes no progress (1 / span):
 * what a suspend, restore or migration of that length costs it. */
double jobsched_stall_cost(const struct jobsched_job *j);

/* Hypothetical utility: for each utility level levels[i], the aggregate CPU
 * (MHz) that the given jobs together need so that every one completes with at
 * least that utility, assuming they are run earliest-goal-first on a pool of
 * that capacity (max over k of work of the first k / time to the k-th
 * deadline at that level). out[i] = {levels[i], mhz}; unreachable[i] (may be
 * NULL) counts jobs that cannot reach the level even at their full speed
 * (they are counted at their full speed). Jobs in terminal states are
 * ignored. */
void jobsched_hypothetical_utility(const struct jobsched_job *const *jobs, size_t n, double now,
                                   const struct jobsched_config *cfg, const double *levels,
                                   size_t nlevels, struct jobsched_point *out,
                                   size_t *unreachable);

/* ---------------------------------------------------------------- job profiler (pure rule) */

/* What has been learned about a kind of job. */
struct jobsched_profile {
    char kind[256];
    long long samples;
    double mcycles;       /* work to complete */
    double threads;       /* threads actually used */
    double max_speed_mhz; /* highest per-thread speed observed */
    double updated;
};
/* Fold a finished run into the profile: the first sample is taken as is,
 * later ones by exponential averaging with weight alpha (max speed keeps the
 * maximum seen). */
void jobsched_profile_learn(struct jobsched_profile *p, double mcycles, double threads,
                            double max_speed_mhz, double now, double alpha);

/* ---------------------------------------------------------------- store */

struct jobsched_store;
/* Open (creating) the job database at `path` (":memory:" works) with the
 * scheduler's migrations applied. */
int jobsched_store_open(const char *path, struct jobsched_store **out, struct wlm_error *err);
void jobsched_store_close(struct jobsched_store *st); /* NULL-safe */
sqlite3 *jobsched_store_db(struct jobsched_store *st); /* NULL on etcd */
/* The job store on a common etcd store (borrowed, see common/store.h):
 * PREFIX/jobs/<id>, PREFIX/job_events/<id>/..., PREFIX/job_profiles/<kind>. */
struct wlm_store;
int jobsched_store_open_kv(struct wlm_store *ws, struct jobsched_store **out,
                           struct wlm_error *err);

/* ---------------------------------------------------------------- the scheduler */

struct jobsched;

/* Create a scheduler over `store` (borrowed; it must outlive the scheduler)
 * and load every job and profile from it. cfg may be NULL (defaults). */
int jobsched_new(const struct jobsched_config *cfg, struct jobsched_store *store,
                 struct jobsched **out, struct wlm_error *err);
void jobsched_free(struct jobsched *js); /* NULL-safe */
/* Drop memory and load every job and profile from the store again (an HA
 * standby's refresh; memory equals the store afterwards). */
int jobsched_reload(struct jobsched *js, struct wlm_error *err);
/* 1 after a failed transaction could not be followed by a reload: memory may
 * differ from the store until a jobsched_reload succeeds. */
int jobsched_stale(const struct jobsched *js);
const struct jobsched_config *jobsched_config(const struct jobsched *js);

/* Replace the node set used for matchmaking (copied). Takes effect for
 * every job at the next jobsched_update, and immediately for eligible-node
 * lists. */
int jobsched_set_nodes(struct jobsched *js, const struct jobsched_node *nodes, size_t n);

/* Clock used by the HTTP handlers (the shell, not the core); default wall
 * clock. Tests set a fake one. */
void jobsched_set_clock(struct jobsched *js, double (*now)(void *ud), void *ud);

/* Submit a parsed-and-validated request body. Everything is committed in one
 * transaction before this returns 0; *resp gets {"jobs":[{id,name,state}...]}
 * (caller decrefs). When every job's submit_id already exists (a retried
 * submission), nothing is inserted, *resp describes the existing jobs and
 * *duplicate is set to 1. A partial overlap is -WLM_ECONFLICT. */
int jobsched_submit(struct jobsched *js, const json_t *body, const char *idem_key, double now,
                    json_t **resp, int *duplicate, struct wlm_error *err);

/* Group commit: several submissions (e.g. every POST that arrived in one
 * loop turn) in ONE transaction, so one disk flush acknowledges them all.
 * Each is validated on its own (a bad one gets its error, the others go
 * on); a database failure fails every one of them, and none is stored. */
struct jobsched_submission {
    const json_t *body;   /* in */
    const char *idem_key; /* in, may be NULL */
    json_t *resp;         /* out: as jobsched_submit; caller decrefs */
    int duplicate;        /* out */
    int rc;               /* out: 0 or negative code */
    struct wlm_error err; /* out when rc != 0 */
};
void jobsched_submit_many(struct jobsched *js, struct jobsched_submission *subs, size_t n,
                          double now);

/* Re-evaluate every non-terminal job: PENDING <-> ELIGIBLE from dependencies
 * and matchmaking, FAILED when a dependency can never be satisfied. Changes
 * are committed in one transaction. Returns the number of transitions or a
 * negative code. */
int jobsched_update(struct jobsched *js, double now, struct wlm_error *err);

/* Record a state transition (placement decisions, executor outcomes).
 * Illegal transitions are -WLM_ECONFLICT naming both states; an unknown id is
 * -WLM_ENOTFOUND. Reaching a terminal state resolves dependents at once. */
int jobsched_transition(struct jobsched *js, int64_t id, enum jobsched_state to, double now,
                        const char *reason, struct wlm_error *err);
/* Cancel (DELETE /v1/jobs/:id): any non-terminal job goes to CANCELLED; its
 * node field stays set so the controller knows to destroy the VM, then calls
 * jobsched_set_placement(js, id, NULL, 0, ...). */
int jobsched_cancel(struct jobsched *js, int64_t id, double now, const char *reason,
                    struct wlm_error *err);
/* Record where the job runs and its CPU allocation (node NULL = none). */
int jobsched_set_placement(struct jobsched *js, int64_t id, const char *node, double alloc_mhz,
                           double now, struct wlm_error *err);
/* A node agent's usage report: cumulative work done (megacycles), threads
 * actually busy, and per-thread speed observed. When the job is COMPLETED (now
 * or later), the profile of its kind learns the run. */
int jobsched_report_usage(struct jobsched *js, int64_t id, double done_mcycles,
                          double threads_used, double speed_mhz, double now,
                          struct wlm_error *err);

/* Read access. */
const struct jobsched_job *jobsched_get(const struct jobsched *js, int64_t id);
/* All jobs in id order; the array is owned by the scheduler. */
struct jobsched_job *const *jobsched_jobs(const struct jobsched *js, size_t *n);
/* Jobs the placement controller must consider: ELIGIBLE, STARTING,
 * RUNNING, PAUSED, SUSPENDED, MIGRATING. Fills up to max pointers, returns
 * the total count. */
size_t jobsched_placeable(const struct jobsched *js, const struct jobsched_job **out, size_t max);
/* Learned profile for a kind, or NULL. */
const struct jobsched_profile *jobsched_profile_get(const struct jobsched *js, const char *kind);

/* One recorded transition. */
struct jobsched_event {
    double t;
    enum jobsched_state from, to; /* from == to for the submission event */
    char reason[256];
};
/* Transition history of a job, oldest first (caller frees *out). */
int jobsched_history(struct jobsched *js, int64_t id, struct jobsched_event **out, size_t *n,
                     struct wlm_error *err);

/* JSON view of a job as served by GET /v1/jobs/:id (with_history adds the
 * transitions; `now` is used for the predicted completion and utility).
 * Caller decrefs. */
json_t *jobsched_job_json(struct jobsched *js, const struct jobsched_job *j, double now,
                          int with_history);

/* Set gauges wlm_jobs{state="..."} and wlm_job_profiles in `m` (call once
 * per control cycle; cheap). */
void jobsched_export_metrics(const struct jobsched *js, struct wlm_metrics *m);

/* ---------------------------------------------------------------- REST API */

/* Routes (all with auth = 1):
 *   POST   /v1/jobs                 one job or {"jobs": [...]}; 201 (200 on retry
 *                                    with the same Idempotency-Key / submit_id)
 *   GET    /v1/jobs                 ?state=&class=&limit=
 *   GET    /v1/jobs/:id             with history
 *   DELETE /v1/jobs/:id             cancel
 *   GET    /v1/jobs/:id/utility     utility curve at now
 *   GET    /v1/jobqueue/hypothetical  hypothetical utility of queued jobs
 *   POST   /v1/jobs/:id/usage       {"done_mcycles","threads","speed_mhz"}
 *   POST   /v1/jobs/:id/state       {"state","reason","node","alloc_mhz"} (executors)
 *   GET    /v1/jobprofiles          learned profiles */
int jobsched_api_register(struct wlm_http_server *srv, struct jobsched *js);
/* Optional, recommended: the loop the server runs on. With it, every POST
 * /v1/jobs that arrives in one loop turn is committed in one transaction
 * (group commit: one disk flush for all of them, each still answered only
 * after its commit). Without it each POST commits on its own. Free the
 * scheduler only after the loop has run to completion. */
void jobsched_api_set_loop(struct jobsched *js, uv_loop_t *loop);

#ifdef __cplusplus
}
#endif
#endif /* WLM_JOBSCHED_H */
