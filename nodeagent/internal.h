/* Private state of the node agent, shared by its sources. */
#ifndef WLM_NODEAGENT_INTERNAL_H
#define WLM_NODEAGENT_INTERNAL_H

#include <pthread.h>

#include "nodeagent.h"

#define NA_COMP "nodeagent"

/* Per-instance CPU sample, to turn cumulative CPU seconds into MHz. */
struct na_sample {
    char id[136]; /* "vm:<id>" or "proc:<id>" */
    double cpu_seconds;
    double t;
    double energy_j; /* cumulative energy attributed */
};

struct na_event {
    char id[128];
    int event, detail, stopped;
};

struct na_action;
struct na_warm;

struct nodeagent {
    uv_loop_t *loop;
    struct nodeagent_config cfg;
    json_t *labels;
    struct nodeagent_driver *vm;   /* libvirt, NULL when libvirt_uri is "none" */
    struct nodeagent_driver *proc; /* processes */
    struct nodeagent_node_info node;
    struct nodeagent_pool *pool;
    struct nodeagent_repo *repo;
    struct wlm_http_server *http;
    struct wlm_http_client *client;
    struct wlm_metrics *metrics;
    char agent_url[160];
    char initramfs[600];

    uv_timer_t hb_timer, reg_timer;
    uv_async_t ev_async;
    pthread_mutex_t ev_mu;
    struct na_event *evq;
    size_t nev, capev;

    int started, stopping;
    int registered, reg_inflight, hb_inflight, reg_failures;
    unsigned pending; /* open handles + queued work + requests in flight */
    void (*stop_done)(void *);
    void *stop_ud;

    struct na_sample *samples;
    size_t nsamples;
    double last_hb_t;
    double energy_j;
    double unattributed_j; /* energy of intervals where no workload used CPU */
    unsigned long long rapl_last_uj;
    int rapl_ok;
    double watts;
    int powered_on; /* simulated or hook-driven power state */

    struct na_action *actions; /* every action seen (idempotency) */
    char (*orphans)[128];
    size_t norphans;
    unsigned next_cfg_index; /* configuration pool cursor */
    struct na_warm *warm;    /* warm pool of parked VMs (real hypervisors) */
    unsigned long cold_starts, warm_starts;
    volatile long long placed_mem_mb; /* memory of jobs and instances, last heartbeat */
    struct na_budget *budget; /* power budget kept locally (budget.c) */
};

/* budget.c */
struct na_budget_item {
    const char *id;
    int is_vm, vcpus;
    double mhz;               /* used in the last interval */
    long long quota, period; /* cap in force (-1/0 = none) */
};
int na_budget_init(struct nodeagent *a);
void na_budget_free(struct nodeagent *a);
/* From the controller's answer to a heartbeat. */
void na_budget_set(struct nodeagent *a, double budget_w, json_t *order);
/* After each heartbeat's measurement: detect a violation and act. */
void na_budget_tick(struct nodeagent *a, double watts, const struct na_budget_item *items,
                    size_t n);
json_t *na_budget_json(struct nodeagent *a); /* "power.budget" of the heartbeat */
double na_budget_freq_frac(struct nodeagent *a);

/* warm.c */
struct na_warm_job {
    const char *job;
    int vcpus;
    long long memory_mb;
    const char *payload; /* newc cpio of /job */
    const char *console; /* the job's console log (the pool VM's log moves there) */
    const char *hostname, *ip;
};
struct na_warm_claim {
    char domain[160];
    char image[512];
    double handoff_seconds; /* resume + job sent */
    double start_seconds;   /* until the guest printed WLM-START */
    long long rss_kb;
    char why[200]; /* why no VM was taken */
};
int na_warm_start(struct nodeagent *a, struct wlm_error *err);
void na_warm_stop(struct nodeagent *a);
void na_warm_free(struct nodeagent *a);
void na_warm_kick(struct nodeagent *a);
/* 0: the job runs on a pool VM; 1: no parked VM of that shape (out->why);
 * <0: the pool VM failed (err; it was destroyed). */
int na_warm_claim(struct nodeagent *a, const struct na_warm_job *job, struct na_warm_claim *out,
                  struct wlm_error *err);
int na_warm_hint(struct nodeagent *a, json_t *shapes, struct wlm_error *err);
/* Destroy parked VMs until `need_mb` fits above the reserve; how many went. */
int na_warm_evict(struct nodeagent *a, long long need_mb);
json_t *na_warm_json(struct nodeagent *a); /* NULL without a warm pool */
long long na_mem_available_mb(void);
/* Wait until `marker` shows in the console log of domain `id`; on the
 * deadline, or when the domain stops first, destroy it and fail with the
 * cause, the driver and the domain's state. */
int na_wait_console(struct nodeagent *a, const char *id, const char *console, const char *marker,
                    double timeout_s, struct wlm_error *err);

/* actions.c, jobs.c */
void na_actions_routes(struct nodeagent *a);
void na_actions_free(struct nodeagent *a);
void na_handle_event(struct nodeagent *a, const struct na_event *ev);
int na_reconcile(struct nodeagent *a, struct wlm_error *err);
/* Append job/process usage to the heartbeat; `dt` seconds since the last. */
/* The token this agent's API requires and peer agents are called with. */
static inline const char *na_api_token(const struct nodeagent *a)
{
    const char *t = a->cfg.api_token[0] ? a->cfg.api_token : a->cfg.token;
    return t[0] ? t : NULL;
}
void na_pending_inc(struct nodeagent *a);
void na_pending_dec(struct nodeagent *a);
json_t *na_jobs_json(struct nodeagent *a);
void na_sim_tick(struct nodeagent *a, double dt);
void na_check_jobs(struct nodeagent *a, const struct nodeagent_wl_info *live, size_t n);
int na_job_busy(struct nodeagent *a, const char *job);
/* recover.c: instances and actions of the previous run (see there). */
void na_recover_instances(struct nodeagent *a);
void na_recover_actions_pre(struct nodeagent *a);
void na_recover_actions(struct nodeagent *a);

#endif
