/* internal.h - private to the controller library. */
#ifndef WLM_CONTROLLER_INTERNAL_H
#define WLM_CONTROLLER_INTERNAL_H

#include "controller.h"
#include "flowctl.h"
#include "jobsched.h"
#include "placement.h"
#include "profilers.h"
#include "store.h"

struct ctl_node {
    char name[64];
    long long cores;
    double mhz;
    long long memory_mb;
    char arch[32];
    json_t *labels; /* object of strings, owned */
    char agent_url[256];
    double registered_at;
    double last_heartbeat; /* wall seconds; 0 = none since controller start */
    json_t *report; /* last heartbeat body (usage, power, ...), owned, may be NULL */
    enum controller_node_state state; /* as last logged by the sweep */
    int said_driver; /* the driver note was logged */
};

#define CTL_APP_MAX_CLASSES 8

struct ctl_app_class {
    char name[32];
    double goal_ms; /* response-time goal */
    double weight;  /* importance when the app's classes are combined */
    long long max_queue, max_wait_ms;
};

struct ctl_app {
    char name[64];
    double memory_mb;
    long long min_instances, max_instances;
    double max_cpu_mhz; /* per instance; 0 = a whole node */
    struct ctl_app_class classes[CTL_APP_MAX_CLASSES];
    size_t nclasses, default_class;
    json_t *spec;      /* the validated spec as deployed, owned */
    size_t ninstances; /* running now */
    /* DELETE /v1/apps/NAME: out of the router and the placement at once; the
     * entry goes when its last instance has been stopped (apps.c). */
    int deleting;
    double deleting_since; /* monotonic */
    /* Crash-loop backoff (apps.c): instances that died soon after start. */
    int crashes;           /* in a row, reset by an instance that stays up */
    double restart_after;  /* wall time before which no instance is started */
    json_t *last_exit;     /* {"instance","node","status","stderr","at"} of the last exit, owned */
};

/* An instance of a web application on a node. */
enum ctl_inst_state { CTL_INST_STARTING, CTL_INST_RUNNING, CTL_INST_STOPPING };
struct ctl_instance {
    char id[96]; /* "<app>-<n>", unique while the controller runs */
    char app[64];
    char node[64];
    char host[64]; /* where the node's agent (and so the instance) listens */
    int port;
    double cpu_mhz;
    enum ctl_inst_state state;
    int unconfirmed; /* loaded after a restart; its agent has not reported it yet */
    /* The agent's measured, cumulative CPU and CPU wait of the instance at
     * its last report (cpu_seen = 0 until the first). */
    double cpu_s_seen, wait_s_seen;
    int cpu_seen;
    double started_at; /* wall time its start was confirmed, 0 before */
};

/* One step of the plan being carried out. */
enum ctl_act_state { CTL_ACT_WAITING, CTL_ACT_SENT, CTL_ACT_DONE, CTL_ACT_FAILED };
struct ctl_action {
    char id[64];
    enum placement_action_kind kind;
    char node[64];      /* the agent that carries it out */
    char from_node[64]; /* migrate: source */
    char dest_node[64]; /* migrate/restore: destination */
    int is_job;
    int64_t job;
    char app[64];
    char instance[96];
    double cpu_mhz, memory_mb;
    size_t *deps; /* plan indices that must be done first (owned; ctl_plan_free) */
    size_t ndeps;
    enum ctl_act_state st;
    double sent_at, done_at;
    char error[256];
    char error_name[32]; /* the agent's error code name ("limit_exceeded", ...) */
};

/* A point of the utility history. */
#define CTL_HISTORY 900
struct ctl_util_point {
    double t;
    json_t *workloads; /* {"name": utility}, owned */
    char min_name[96];
    double min;
};

/* Router flow statistics between two polls. */
struct ctl_flowstat {
    char app[64], cls[32];
    double arrivals, completed, rejected, resp_count, resp_sum_ms; /* cumulative */
    double svc_count, svc_sum_ms;
    double rate, rt_ms, reject_rate;                              /* last interval */
};

struct controller {
    uv_loop_t *loop;
    struct controller_config cfg;
    char token[256];
    sqlite3 *db;             /* SQLite file (on etcd: only tables not behind `store`) */
    struct wlm_store *store; /* every table of the controller goes through it */
    int own_store;
    struct wlm_http_server *http;
    struct wlm_metrics *metrics;
    uv_timer_t sweep;
    int started;
    struct ctl_node *nodes;
    size_t nnodes, capnodes;
    /* Node name -> index + 1 in `nodes` (open addressing; instances.c), so a
     * heartbeat finds its node without a scan of thousands. */
    size_t *node_idx, node_idx_cap, node_idx_n;
    struct jobsched_store *jstore;
    struct jobsched *js;
    struct ctl_app *apps;
    size_t napps;
    int apps_changed;
    double started_at; /* wall time of this controller's start */
    /* control cycle (cycle.c, flows.c) */
    struct flowctl *fc;
    struct flowctl_decision fd; /* last flow-controller decision */
    int have_fd;
    struct prof_web *prof;
    struct wlm_http_client *client;
    uv_timer_t flow_timer, place_timer;
    struct ctl_instance *insts;
    size_t ninsts;
    unsigned inst_seq;
    int next_port;
    struct ctl_action *plan;
    size_t nplan;
    unsigned plan_seq;
    int solving;
    double last_place, last_progress;
    json_t *last_decision; /* summary of the last placement decision */
    json_t *last_problem;  /* the snapshot it was decided on, with the decision under "decision" */
    json_t *pool_hints;    /* {"node": last warm-pool hint sent (JSON text)} */
    struct ctl_util_point history[CTL_HISTORY];
    size_t hist_head, hist_len;
    struct ctl_flowstat *fstats;
    size_t nfstats;
    double fstats_at;
    char *router_pushed; /* last configuration PUT to the router */
    char *router_acked;  /* last configuration the router accepted */
    char router_error[256]; /* why the last push or stats poll failed, "" when fine */
    double router_error_since; /* wall time, 0 when fine */
    json_t *job_backoff; /* {"<job id>": {"node","until","n","why"}} after capacity failures */
    size_t jobs_without_slot; /* queued jobs no node has a free VM slot for (problem.c) */
    json_t *unsupported; /* {"<node>": {"<action kind>": "detail"}} the agent cannot do */
    unsigned router_pushes;
    int router_busy, stats_busy;
    struct wlm_http_req **sse;
    size_t nsse;
    json_t *app_cpu_mcycles; /* {"app": cumulative megacycles} for the profiler */
    /* {"app": [cpu_s, wait_s]}: measured CPU seconds and seconds waiting for
     * a CPU of its instances, cumulative; {"app": [cpu_s, wait_s,
     * completed]} as of the last flow period. */
    json_t *app_cpu_meas, *app_cpu_prev;
    json_t *saved_jobs;      /* {"<job id>": true} for jobs with a save file */
    json_t *inst_saved;      /* {"<instance id>": doc} as last written to the store */
    void (*stop_done)(void *);
    void *stop_ud;
    int pending_closes;
    /* Actions that were in flight when a previous controller stopped
     * (settle.c): settled from the agents' reports after a restart. */
    struct ctl_action *settle;
    size_t nsettle;
    int audit_inserts; /* audit.c: trims the log now and then */
    unsigned audit_seq;
    json_t *audit_q;        /* entries not yet written */
    uv_timer_t audit_timer; /* writes them AUDIT_FLUSH_MS after the first */
    int audit_timer_on;     /* the timer handle is initialised */
    int audit_closed;       /* stopping: entries are written at once */
    struct ctl_energy *energy; /* energy accounting and power budgets (power.h) */
};

/* The token presented to node agents (their --api-token). */
static inline const char *ctl_agent_token(const struct controller *c)
{
    return c->cfg.agent_token[0] ? c->cfg.agent_token : c->token;
}

/* nodes.c */
int ctl_nodes_load(struct controller *c, struct wlm_error *err);
void ctl_nodes_routes(struct controller *c);
void ctl_nodes_sweep(struct controller *c, double now);
void ctl_nodes_free(struct controller *c);

/* cycle.c */
int ctl_cycle_init(struct controller *c, struct wlm_error *err);
void ctl_cycle_start(struct controller *c);
void ctl_cycle_stop(struct controller *c); /* closes the timers (counted in pending_closes) */
void ctl_cycle_free(struct controller *c);
void ctl_cycle_routes(struct controller *c);
void ctl_cycle_heartbeat(struct controller *c, struct ctl_node *n, double now, double dt);
/* Load the instances recorded before a restart (unconfirmed until their
 * agents report them). */
int ctl_instances_load(struct controller *c, struct wlm_error *err);
/* Drop and load them again, counting each app's (a follower's refresh). */
int ctl_instances_reload(struct controller *c, struct wlm_error *err);
struct ctl_node *ctl_node_find(struct controller *c, const char *name);
/* After nodes were removed or reordered: the name index is rebuilt. */
void ctl_nodes_reindex(struct controller *c);
/* A node stopped heartbeating: replace its app instances, move its jobs. */
void ctl_cycle_node_lost(struct controller *c, struct ctl_node *n);
double ctl_app_allocation(const struct controller *c, const char *app);
/* The placement options this controller decides with. */
void ctl_placement_options(const struct controller *c, struct placement_options *o);
/* The placement curve of a job (jobsched_placement_curve with this
 * controller's valuation settings). */
void ctl_job_curve(const struct controller *c, const struct jobsched_job *job, double now,
                   struct placement_utility *u);

/* flows.c */
void ctl_flows_tick(struct controller *c, double now);
void ctl_flows_routes(struct controller *c);
void ctl_router_push(struct controller *c, int force);
/* The configuration ctl_router_push sends (caller decrefs). */
json_t *ctl_router_config_json(struct controller *c);
void ctl_router_failed(struct controller *c, const struct wlm_http_response *resp,
                       const struct wlm_error *err, const char *what);
void ctl_router_ok(struct controller *c);
int ctl_app_utility(struct controller *c, const struct ctl_app *a, struct placement_utility *out);
void ctl_events_broadcast(struct controller *c, const char *event, json_t *data);
void ctl_flows_free(struct controller *c);

/* apps.c */
int ctl_app_parse(const json_t *body, struct ctl_app *a, struct wlm_error *err);
void ctl_app_fini(struct ctl_app *a);
struct ctl_app *ctl_app_find(struct controller *c, const char *name);
int ctl_apps_load(struct controller *c, struct wlm_error *err);
void ctl_apps_routes(struct controller *c);
void ctl_apps_free(struct controller *c);
/* Stop the instances of deleted apps (after the router has stopped using
 * them) when no plan runs; drop deleted apps whose instances are all gone. */
void ctl_apps_reap(struct controller *c);
/* Two or more instances in a row ended soon after their start. */
int ctl_app_crash_looping(const struct ctl_app *a);
/* Why an app has no running instance, or "" (written to out). */
void ctl_app_reason(struct controller *c, const struct ctl_app *a, char *out, size_t size);
/* An instance of the app ended: record its exit and back off restarts. */
void ctl_app_instance_exited(struct controller *c, const char *app, const char *instance,
                             const char *node, json_t *proc);

#endif
