/*
 * sim.h - wlm-sim: a discrete-event simulator that drives wlm's decision code
 * with simulated time and simulated nodes, to evaluate policies (APC against
 * FCFS/EDF, consolidation against always-on, wlm balancing against the
 * three-band balancer).
 *
 * Everything here is deterministic: the only source of randomness is a
 * seeded generator (struct sim_rng), events at equal times are ordered by kind
 * and then by insertion order, and no function reads a clock or the
 * environment. Two runs with the same inputs produce byte-identical output.
 *
 * Units: time in seconds of simulated time, CPU in MHz (a node has
 * cores x mhz), memory in MB, power in watts, energy in joules unless a name
 * says kWh. Public names start with sim_.
 */
#ifndef WLM_SIM_H
#define WLM_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sim_trace;

/* ---------------------------------------------------------------- random */

/* splitmix64: tiny, fast, and good enough for workload generation. Every
 * stream is fully determined by its seed. */
struct sim_rng {
    uint64_t s;
};

void sim_rng_seed(struct sim_rng *r, uint64_t seed);
uint64_t sim_rng_u64(struct sim_rng *r);
/* Uniform in [0, 1). */
double sim_rng_uniform(struct sim_rng *r);
/* Exponentially distributed with the given mean (> 0). */
double sim_rng_exp(struct sim_rng *r, double mean);

/* ---------------------------------------------------------------- events */

/* Kinds double as tie-break priority: at equal times a lower kind runs first,
 * so capacity freed by a finishing job is visible to an arrival at the same
 * instant, and the control cycle sees all of that instant's changes. */
enum sim_event_kind {
    SIM_EV_JOB_DONE = 0,
    SIM_EV_ACTION_DONE,
    SIM_EV_NODE_READY,
    SIM_EV_ARRIVAL,
    SIM_EV_CYCLE,
    SIM_EV_END,
};

struct sim_event {
    double t;
    int kind;     /* enum sim_event_kind */
    int a;        /* subject: job or node index */
    uint64_t gen; /* subject's generation when scheduled; stale events are skipped */
    uint64_t seq; /* insertion order, assigned by the queue */
};

/* Binary min-heap of events ordered by (t, kind, seq). */
struct sim_evq;

struct sim_evq *sim_evq_new(void);
void sim_evq_free(struct sim_evq *q);
/* Copies *ev (its seq is overwritten). 0 or -ENOMEM. */
int sim_evq_push(struct sim_evq *q, const struct sim_event *ev);
/* Removes the earliest event into *out; 0, or -WLM_ENOTFOUND when empty. */
int sim_evq_pop(struct sim_evq *q, struct sim_event *out);
size_t sim_evq_len(const struct sim_evq *q);

/* ---------------------------------------------------------------- nodes */

/* A simulated server with a linear power model: idle_w when on and idle,
 * max_w at full CPU, off_w when powered off (BMC, PSU losses). */
struct sim_node {
    double cores, mhz, mem_mb;
    double idle_w, max_w, off_w;
    int on;          /* powered (or booting) */
    int booting;     /* powered but not yet usable */
    double used_mhz; /* CPU actually consumed right now */
    double energy_j; /* accumulated */
    int budgeted;        /* under a power cap: at most budget_mhz is used */
    double budget_mhz;
};

double sim_node_capacity(const struct sim_node *n); /* cores * mhz */
/* Instantaneous power draw in watts for the node's current state. */
double sim_node_power(const struct sim_node *n);
/* Add dt seconds at the current power draw to energy_j. */
void sim_node_account(struct sim_node *n, double dt);

/* ---------------------------------------------------------------- jobs */

/* Same order and names as jobsched's classes; the goal factors are
 * jobsched's defaults (1.5/3/10/20, see sim_class_factor). The generated mix
 * uses the first three; bronze comes from traces. */
enum sim_class { SIM_PLATINUM = 0, SIM_GOLD, SIM_SILVER, SIM_BRONZE, SIM_NCLASSES };

/* A job as submitted: runtime_s is its execution time at full speed, i.e.
 * with `threads` threads each on a whole core of the node's MHz. */
struct sim_job_spec {
    double arrival;
    int threads;
    double runtime_s;
    int svc_class;      /* enum sim_class */
    double goal_factor; /* completion-time goal = arrival + factor * runtime */
    double mem_mb;
};

/* The design description's job mix (100 jobs: 25x 2-thread 32 min, 25x
 * 2-thread 23 min, 25x 1-thread 66 min, 15x 1-thread 45 min, 10x 1-thread
 * 127 min; 50/40/10 % platinum/gold/silver with goal factors 1.5/3/10) in a
 * seeded random order with exponential inter-arrival times of the given mean.
 * `njobs` scales the mix (100 = the original). *out is malloc'd; caller frees. */
int sim_workload_mix(uint64_t seed, double mean_ia_s, size_t njobs, double mem_mb,
                     struct sim_job_spec **out, size_t *n, struct wlm_error *err);

/* ---------------------------------------------------------------- policies */

enum sim_policy {
    SIM_POLICY_FCFS = 0,          /* list scheduling in arrival order */
    SIM_POLICY_EDF,               /* list scheduling by goal (deadline) */
    SIM_POLICY_APC,         /* the placement core (placement_solve) with suspend/resume/migrate */
    SIM_POLICY_APC_NOKNOBS, /* the same core with no_moves: a started job runs where it started */
    SIM_POLICY_COUNT
};

enum sim_power {
    SIM_POWER_ALWAYS_ON = 0,
    SIM_POWER_UTILSUM, /* power on ceil(sum U + headroom) nodes */
    SIM_POWER_WLM,     /* the placement core decides (power saving, as in the controller) */
    SIM_POWER_COUNT
};

const char *sim_policy_name(int p);
int sim_policy_parse(const char *s); /* -WLM_EINVAL when unknown */
const char *sim_power_name(int p);
int sim_power_parse(const char *s);

/* A day-shaped web application: CPU demand lambda*c follows
 * min_mhz + (peak_mhz - min_mhz) * (1 - cos(2 pi t / period_s)) / 2, and its
 * utility is the design's processor-sharing model u = (tau - RT)/tau with
 * RT = d0 + c / (omega - lambda*c). Disabled when peak_mhz <= 0. */
struct sim_web {
    double min_mhz, peak_mhz, period_s;
    double c_mcycles; /* CPU megacycles per request */
    double tau_s, d0_s;
};

double sim_web_demand(const struct sim_web *w, double t);
/* Utility of allocating omega MHz at time t (clamped to [-1, u_max]). */
double sim_web_utility(const struct sim_web *w, double t, double omega);

struct sim_config {
    size_t nodes;
    double cores, mhz, mem_mb;
    double idle_w, max_w, off_w;
    /* action durations, seconds */
    double boot_s;            /* start a job VM from a pre-created image */
    double suspend_s;         /* checkpoint to shared storage */
    double resume_s;          /* restore from checkpoint */
    double migrate_s;         /* live migration */
    double node_boot_s;       /* power a node on until usable */
    double cycle_s;           /* APC / power control period */
    int policy;               /* enum sim_policy */
    int solver;               /* production core: 0 auto, 1 exact (GLPK), 2 heuristic */
    int power;                /* enum sim_power */
    double headroom;          /* utilisation-sum rule: extra nodes' worth of headroom */
    double apc_hysteresis;    /* min utility gain that justifies suspend/migrate */
    struct sim_web web;
    double horizon_s; /* stop power/web accounting here (0 = when jobs drain) */
    /* Cluster power cap (0 = none) and how it is divided among nodes: the
     * controller's split by planned CPU (sim/powercap.c), or every node an
     * equal share. The core gets each node's budget. */
    double power_cap_w;
    int power_cap_equal;
};

/* Defaults: 4 nodes x 2 cores x 3000 MHz, 4096 MB, 150/250/5 W, action
 * durations from docs/sim.md, APC with knobs, always-on, no web load. */
void sim_config_defaults(struct sim_config *c);

struct sim_result {
    size_t jobs, done, missed; /* missed counts finished late; see unfinished */
    size_t unfinished;         /* never finished: starved until the safety limit */
    unsigned starts, suspends, resumes, migrations, moves; /* moves: resumed elsewhere */
    unsigned node_boots, node_shutdowns;
    unsigned decisions;
    double end_t;              /* time of the last event processed */
    double energy_kwh;         /* whole run */
    double energy_horizon_kwh; /* [0, horizon_s] when a horizon is set */
    double web_violation_s;    /* time with web utility < 0 */
    double *finish;            /* per job completion time (-1 if never), malloc'd */
    double min_utility_sum;    /* over APC decisions: their minimum utility */
    double min_utility_worst;
};

void sim_result_fini(struct sim_result *r);

/* Run one simulation of `jobs` (sorted by arrival or not; they are ordered
 * internally) under cfg. Fills *res (call sim_result_fini after). */
int sim_run(const struct sim_config *cfg, const struct sim_job_spec *jobs, size_t n,
            struct sim_result *res, struct wlm_error *err);

/* ---------------------------------------------------------------- balance */

/* Moderate band of the three-band balancer for host loads l[0..n):
 * mean +- max(0.10, |mean - (min+max)/2|). */
void sim_band(const double *l, size_t n, double *lo, double *hi);

struct sim_bal_result {
    unsigned migrations, rounds;
    int converged; /* every host inside the moderate band at the end */
};

/* vm_load[i] is VM i's CPU load (fraction of one host); vm_host[i] its host,
 * updated in place. At most max_rounds periods. */
int sim_balance_threeband(const double *vm_load, int *vm_host, size_t nvm, size_t nhosts,
                          unsigned max_rounds, struct sim_bal_result *out);
/* wlm: the placement core's balancer (placement_solve), one decision per
 * round. */
int sim_balance_wlm_core(const double *vm_load, int *vm_host, size_t nvm, size_t nhosts,
                         unsigned max_rounds, struct sim_bal_result *out);

/* ---------------------------------------------------------------- stats/out */

/* Mean and half-width of the 95 % confidence interval (Student t). */
void sim_ci95(const double *x, size_t n, double *mean, double *half);

/* One plotted series for sim_svg_plot. */
struct sim_series {
    const char *name;
    const double *x, *y, *err; /* err may be NULL */
    size_t n;
};

int sim_svg_plot(FILE *f, const char *title, const char *xlabel, const char *ylabel,
                 const struct sim_series *s, size_t ns);

/* ---------------------------------------------------------------- traces (SWF)
 *
 * Job traces in the Standard Workload Format v2.2 (the Parallel Workloads
 * Archive's format): ';' starts a header line, every other non-blank line
 * has 18 whitespace-separated numeric fields, -1 = unknown. sim/trace.c. */

/* Name ("platinum", ...) and completion-time goal factor (jobsched's default
 * class factors 1.5/3/10/20) of an enum sim_class; "?" and 0 when unknown. */
const char *sim_class_name(int cls);
double sim_class_factor(int cls);
/* enum sim_class from a name (case-insensitive), -WLM_EINVAL when unknown. */
int sim_class_parse(const char *s);

#define SIM_TRACE_MAXQ 64

/* SWF queue number (field 15) -> service class. Queues not listed, and an
 * unknown queue (-1), take `other`. */
struct sim_trace_classes {
    size_t n;
    long long queue[SIM_TRACE_MAXQ];
    int cls[SIM_TRACE_MAXQ];
    int other;
};

/* 1=platinum, 2=gold, 3=silver, 4=bronze, anything else silver (jobsched's
 * class for a job that names none). */
void sim_trace_classes_default(struct sim_trace_classes *m);
/* Apply "Q=CLASS[,Q=CLASS...]" on top of *m; Q is a queue number or '*'
 * (every other queue). On error *m is unchanged. */
int sim_trace_classes_parse(const char *s, struct sim_trace_classes *m, struct wlm_error *err);

struct sim_trace_opts {
    double cores;          /* per node: a job with more processors is skipped */
    double node_mem_mb;    /* per node: a job needing more memory is skipped */
    double default_mem_mb; /* a job's memory when field 10 is unknown */
    struct sim_trace_classes classes;
};

/* Cores, node memory and classes from the simulator's defaults; job memory
 * 1024 MB (the generated mix's). */
void sim_trace_opts_default(struct sim_trace_opts *o);

/* A trace as jobs. Job i is SWF job number[i]; after[i] is the index of the
 * job it waits for (SWF field 17, afterok: submitted think_s[i] seconds after
 * that job completes) or -1. jobs[i].arrival is the trace's submit time
 * relative to the earliest one; for a dependent job it is only the starting
 * guess (sim_trace_run replaces it). */
struct sim_trace {
    char name[256]; /* file name as given */
    struct sim_job_spec *jobs;
    long long *number;
    int *after;
    double *think_s;
    size_t n;
    size_t lines;            /* data lines read */
    size_t skipped_wide;     /* more processors than a node has cores */
    size_t skipped_mem;      /* more memory than a node has */
    size_t skipped_noruntime; /* run time unknown or 0 (e.g. cancelled before start) */
    size_t skipped_noprocs;  /* processors unknown */
    size_t deps;             /* jobs with a dependency */
    size_t deps_dropped;     /* dependency on a skipped job: submitted at its own time */
    size_t per_class[SIM_NCLASSES];
};

/* Read an SWF file. A malformed line fails the whole load with an error
 * naming the file, line and field; *t is then empty. Jobs that cannot run on
 * one node are skipped and counted. Call sim_trace_fini after success. */
int sim_trace_load(const char *path, const struct sim_trace_opts *o, struct sim_trace *t,
                   struct wlm_error *err);
/* The same from an open stream; `name` is used in messages. */
int sim_trace_read(FILE *f, const char *name, const struct sim_trace_opts *o,
                   struct sim_trace *t, struct wlm_error *err);
void sim_trace_fini(struct sim_trace *t);

/* Simulate the trace under cfg, dependencies included: a dependent job is
 * submitted think_s after its predecessor finishes in this very run, and its
 * goal counts from then. sim_run has no dependencies, so this runs it to a
 * fixed point: simulate, set every dependent job's arrival to its
 * predecessor's finish + think time, repeat until nothing changes (a job
 * whose predecessor never finishes is never submitted and counts as
 * unfinished). The simulation is causal, so the earliest wrong arrival never
 * moves earlier; more than 2 x t->deps + 2 rounds is an error (WLM_EINTERNAL).
 * *rounds (may be NULL) says how many runs it took, 1 for a trace without
 * dependencies. res->finish has t->n entries; res->jobs =
 * t->n. If `arrival` is not NULL it receives every job's final submit time
 * (t->n entries, -1 when never submitted). */
int sim_trace_run(const struct sim_config *cfg, const struct sim_trace *t,
                  struct sim_result *res, unsigned *rounds, double *arrival,
                  struct wlm_error *err);

/* ---------------------------------------------------------------- experiments */

struct sim_exp_opts {
    struct sim_config base; /* cluster, durations, power model, hysteresis */
    uint64_t seed;          /* seed of the first replication; k-th uses seed + k */
    unsigned seeds;         /* replications */
    size_t njobs;           /* experiment 1: jobs per run (100 = the design's mix) */
    double ia_lo_min, ia_hi_min, ia_step_min; /* experiment 1 sweep, minutes */
    double exp2_ia_min;                       /* experiment 2: mean job inter-arrival, minutes */
    size_t exp2_nodes;                        /* experiment 2 cluster size */
    int exp2_policy;   /* experiment 2 job/web placement policy (enum sim_policy) */
    size_t hosts, vms; /* experiment 3 */
    const char
        *out_prefix; /* writes PREFIX-runs.csv, PREFIX-summary.csv, PREFIX.svg; NULL = none */
    /* experiment 1 on this trace instead of the generated mix (NULL = mix):
     * every policy once, no sweep, nothing random (see sim_trace_run) */
    const struct sim_trace *trace;
    FILE *table;     /* human-readable table (NULL = none) */
};

void sim_exp_defaults(struct sim_exp_opts *o);
/* Experiment 1: % of jobs missing their goal vs mean inter-arrival time for
 * FCFS, EDF, APC and APC without knobs, plus suspend/migration counts. */
int sim_exp1(const struct sim_exp_opts *o, struct wlm_error *err);
/* Experiment 2: day-shaped web load plus jobs; energy and goal violations for
 * always-on, the utilisation-sum rule and wlm consolidation. */
int sim_exp2(const struct sim_exp_opts *o, struct wlm_error *err);
/* Experiment 2 under a cluster power cap (100 % -> 50 % of peak): minimum
 * utility and jobs missed, the controller's split by planned CPU against an
 * equal cap on every node (sim/powercap.c). */
int sim_exp2_powercap(const struct sim_exp_opts *o, struct wlm_error *err);
/* Each node's budget under cfg's cap: nodes[k].budget_w. planned[k] = CPU
 * (MHz) allocated on node k now. */
struct sim_apc_node;
void sim_powercap_budgets(const struct sim_config *cfg, struct sim_apc_node *nodes, size_t n,
                          const double *planned);
/* The split's nodes without a budget for their idle power go off (drain). */
void sim_powercap_power_off(const struct sim_config *cfg, const struct sim_apc_node *nodes,
                            size_t n, int *node_on);
/* Experiment 3: random VM loads; migrations and rounds to balance, three-band
 * balancer vs wlm balancing. */
int sim_exp3(const struct sim_exp_opts *o, struct wlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
