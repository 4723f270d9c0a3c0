/*
 * controller.h - wlm-controller as a library: the REST API, the node
 * registry and (as they land) the control loops. main.c only wires it to a
 * libuv loop and signals, so tests can run several controllers in-process.
 */
#ifndef WLM_CONTROLLER_H
#define WLM_CONTROLLER_H

#include "common.h"

struct controller_config {
    char listen_host[64];
    long long listen_port;
    char db[512];         /* SQLite file */
    char token[256];      /* bearer token; generated into token_file when empty */
    char token_file[512]; /* where a generated token is written (0600) */
    long long node_lost_after_ms;
    char jobs_db[512]; /* job store; default: DB with "-jobs" before the extension */
    char router_url[256]; /* admin URL of wlm-router ("" = no router) */
    char router_token[256]; /* default: the controller's token */
    long long flow_period_ms;
    long long placement_period_ms;
    long long action_timeout_ms;
    long long app_port_base;
    int simulate_jobs; /* job progress from allocation (test-driver nodes run nothing) */
    int power_saving;
    double headroom;
    char solver[16]; /* auto, exact, heuristic */
    char tls_cert[512], tls_key[512]; /* HTTPS for the API when both are given */
    char ca[512];          /* CA file to verify agents and the router over https:// */
    char agent_token[256]; /* presented to node agents; default: the token */
    char store[512];        /* "" = SQLite (db, jobs_db); etcd://HOST:PORT[,HOST:PORT...] */
    char store_prefix[128]; /* key prefix on etcd, default /wlm/ */
    char advertise_url[256]; /* URL other controllers redirect to (default http://HOST:PORT) */
    long long lease_ttl_s;   /* leadership lease on etcd */
    double power_budget_w; /* cluster power budget (0 = none; wlm power set-budget changes it) */
    long long power_violation_k, power_violation_n; /* flag a node over budget k of n periods */
};

extern const struct wlm_cfg_field controller_cfg_fields[];
extern const size_t controller_cfg_nfields;

/* What the registry knows of one server. */
enum controller_node_state { CONTROLLER_NODE_READY, CONTROLLER_NODE_LOST };

struct controller;
struct wlm_store;

/* Open the database (creating it), load the registry and prepare the API.
 * Nothing listens until controller_start. On success *out owns the database. */
int controller_new(uv_loop_t *loop, const struct controller_config *cfg, struct controller **out,
                   struct wlm_error *err);
/* The same on a store opened by the caller (etcd, for HA: see ha.h); the
 * store is borrowed and must outlive the controller. */
int controller_new_on(uv_loop_t *loop, const struct controller_config *cfg,
                      struct wlm_store *store, struct controller **out, struct wlm_error *err);
/* HA standby: the same, loaded from the store, serving reads of stored
 * state and redirecting the rest to the leader (ha.h). It is only made to
 * listen (controller_listen_only; no control cycle) and is refreshed with
 * controller_reload. */
int controller_new_follower(uv_loop_t *loop, const struct controller_config *cfg,
                            struct wlm_store *store, struct controller **out,
                            struct wlm_error *err);
int controller_listen_only(struct controller *c, struct wlm_error *err);
/* 1 when memory may no longer match the store (a reload after a failed
 * transaction failed too): an HA leader then steps down. */
int controller_stale(struct controller *c);
/* Reload jobs, apps and instances from the store (a follower's refresh). */
int controller_reload(struct controller *c, struct wlm_error *err);
/* Listen and start the periodic timers. */
int controller_start(struct controller *c, struct wlm_error *err);
int controller_port(const struct controller *c);
/* The token in force (configured or generated); owned by the controller. */
const char *controller_token(const struct controller *c);
/* Stop listening and timers; `done` runs once every handle is closed. The
 * controller must then be released with controller_free. */
void controller_stop(struct controller *c, void (*done)(void *ud), void *ud);
void controller_free(struct controller *c);

/* The HTTP server, so other components can add their routes before start. */
struct wlm_http_server *controller_http(struct controller *c);
struct wlm_metrics *controller_metrics(struct controller *c);
sqlite3 *controller_db(struct controller *c); /* on etcd: local tables only (tokens, audit) */
struct wlm_store *controller_store(struct controller *c);

/* Node state given the last heartbeat (wall seconds) and now: pure. */
enum controller_node_state controller_node_state_at(double last_heartbeat, double now,
                                                    double lost_after_s);
const char *controller_node_state_name(enum controller_node_state s);

#endif
