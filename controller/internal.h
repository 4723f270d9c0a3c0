/* internal.h - private to the controller library. */
#ifndef WLM_CONTROLLER_INTERNAL_H
#define WLM_CONTROLLER_INTERNAL_H

#include "controller.h"

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
    json_t *usage, *power; /* last reported, owned, may be NULL */
    enum controller_node_state state; /* as last logged by the sweep */
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
    void (*stop_done)(void *);
    void *stop_ud;
    int pending_closes;
};

/* nodes.c */
int ctl_nodes_load(struct controller *c, struct wlm_error *err);
void ctl_nodes_routes(struct controller *c);
void ctl_nodes_sweep(struct controller *c, double now);
void ctl_nodes_free(struct controller *c);

#endif
