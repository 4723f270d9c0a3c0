/* Private state of the node agent, shared by agent.c and actions.c. */
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
    unsigned long long rapl_last_uj;
    int rapl_ok;
    double watts;
    int powered_on; /* simulated or hook-driven power state */

    struct na_action *actions; /* every action seen (idempotency) */
    char (*orphans)[128];
    size_t norphans;
    unsigned next_cfg_index;   /* configuration pool cursor */
};

/* actions.c */
void na_actions_routes(struct nodeagent *a);
void na_actions_free(struct nodeagent *a);
void na_handle_event(struct nodeagent *a, const struct na_event *ev);
int na_reconcile(struct nodeagent *a, struct wlm_error *err);
/* Append job/process usage to the heartbeat; `dt` seconds since the last. */
void na_pending_inc(struct nodeagent *a);
void na_pending_dec(struct nodeagent *a);
json_t *na_jobs_json(struct nodeagent *a);
void na_sim_tick(struct nodeagent *a, double dt);
void na_check_jobs(struct nodeagent *a, const struct nodeagent_wl_info *live, size_t n);
int na_job_busy(struct nodeagent *a, const char *job);

#endif
