/* internal.h - private to the controller library. */
#ifndef WLM_CONTROLLER_INTERNAL_H
#define WLM_CONTROLLER_INTERNAL_H

#include "controller.h"
#include "jobsched.h"

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
};

struct controller {
    uv_loop_t *loop;
    struct controller_config cfg;
    char token[256];
    sqlite3 *db;
    struct wlm_http_server *http;
    struct wlm_metrics *metrics;
    uv_timer_t sweep;
    int started;
    struct ctl_node *nodes;
    size_t nnodes, capnodes;
    struct jobsched_store *jstore;
    struct jobsched *js;
    struct ctl_app *apps;
    size_t napps;
    int apps_changed;
    void (*stop_done)(void *);
    void *stop_ud;
    int pending_closes;
};

/* nodes.c */
int ctl_nodes_load(struct controller *c, struct wlm_error *err);
void ctl_nodes_routes(struct controller *c);
void ctl_nodes_sweep(struct controller *c, double now);
void ctl_nodes_free(struct controller *c);

/* apps.c */
int ctl_app_parse(const json_t *body, struct ctl_app *a, struct wlm_error *err);
void ctl_app_fini(struct ctl_app *a);
struct ctl_app *ctl_app_find(struct controller *c, const char *name);
int ctl_apps_load(struct controller *c, struct wlm_error *err);
void ctl_apps_routes(struct controller *c);
void ctl_apps_free(struct controller *c);

#endif
