/*
 * router.h - the one public header of libwlm_router (wlm-router).
 *
 * Three layers, each usable alone:
 *   1. configuration: the routing/flow JSON (schema in router/README.md),
 *      parsed into struct router_config, and the pure classifier that maps a
 *      request (Host, path, headers) to a flow = (application, service class);
 *   2. the pure scheduler core: start-time fair queuing under a concurrency
 *      limit (SFQ(D)), one bounded FIFO per flow, time passed in by the caller;
 *   3. the gateway: listeners, HTTP/1.1 + h2c front end, upstream pools,
 *      admin API (struct router, router_new/router_run/router_stop).
 *
 * Public names start with router_. Functions return 0 or a negative WLM_E*
 * code and describe failures in struct wlm_error.
 */
#ifndef WLM_ROUTER_H
#define WLM_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- config */

enum router_match_kind {
    ROUTER_MATCH_NONE,   /* only reachable as the default class */
    ROUTER_MATCH_HEADER, /* "X-Class: gold": header present with this exact value */
    ROUTER_MATCH_COOKIE, /* "tier=gold": cookie present with this exact value */
    ROUTER_MATCH_PATH,   /* "/gold/": path starts with this prefix */
};

struct router_match {
    enum router_match_kind kind;
    char *name;  /* header or cookie name; path prefix for PATH */
    char *value; /* header/cookie value; NULL for PATH */
};

struct router_class {
    char *name;
    double weight;        /* > 0; share of the CPU among flows */
    double cost;          /* CPU cycles per request (any unit, same for all flows); 1 until known */
    unsigned max_queue;   /* bounded per-flow queue */
    unsigned max_wait_ms; /* queued longer -> 503 */
    struct router_match match;
    size_t flow; /* global flow index in the config */
};

struct router_instance_cfg {
    char *id;
    char *url;     /* "http://host:port" as given */
    char host[256];
    int port;
    double cpu_mhz;           /* CPU allocation, weights least-outstanding selection */
    unsigned max_concurrency; /* 0 = only the global limit applies */
};

struct router_app {
    char *name;
    char **hosts; /* lower case, no port; empty = any host */
    size_t nhosts;
    char *prefix; /* path prefix, default "/" */
    struct router_class *classes;
    size_t nclasses;
    size_t default_class;
    struct router_instance_cfg *instances;
    size_t ninstances;
    char *tls_cert, *tls_key; /* apps[].tls: certificate chain + key (PEM) served by SNI */
    unsigned max_tunnels;     /* open Upgrade tunnels at most (default 1000) */
    unsigned tunnel_idle_ms;  /* idle tunnels closed after (default 300000) */
};

/* A flow is named "app/class"; flows are numbered 0..nflows-1 in config order. */
struct router_flow_ref {
    size_t app, cls;
};

struct router_config {
    unsigned limit;               /* system-wide concurrency limit, >= 1 */
    unsigned upstream_timeout_ms; /* upstream response deadline -> 504 */
    unsigned retry_after_s;       /* Retry-After on 503 */
    struct router_app *apps;
    size_t napps;
    struct router_flow_ref *flows;
    size_t nflows;
};

/* Parse and validate a whole configuration. On failure nothing is returned
 * and err names the offending field ("apps[0].classes[1].weight"). The caller
 * owns *out (router_config_free). */
int router_config_parse(const char *json, size_t len, struct router_config **out,
                        struct wlm_error *err);
void router_config_free(struct router_config *cfg);
/* "app/class" of a flow into buf; returns buf. */
const char *router_flow_name(const struct router_config *cfg, size_t flow, char *buf, size_t size);
/* Index of a flow by "app/class", -1 when absent. */
long router_config_find_flow(const struct router_config *cfg, const char *name);

/* What the classifier looks at. Header names compare case-insensitively.
 * Strings are not NUL-terminated (lengths given). */
struct router_hdr {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
struct router_reqinfo {
    const char *host; /* Host header or :authority; may include ":port"; may be NULL */
    size_t host_len;
    const char *path; /* request target path (query allowed, ignored for matching) */
    size_t path_len;
    const struct router_hdr *headers;
    size_t nheaders;
};

/* Pure: the flow of a request. Application = the app whose hosts match and
 * whose prefix is the longest match of the path; class = first class whose
 * rule matches, else the app's default class. Returns the flow index or
 * -WLM_ENOTFOUND when no application matches. */
long router_classify(const struct router_config *cfg, const struct router_reqinfo *ri);

/* ---------------------------------------------------------------- scheduler */

/* One queued request. Owned by the caller, linked into the scheduler while
 * queued. */
struct router_sched_item {
    struct router_sched_item *prev, *next;
    size_t flow;
    double start, finish; /* SFQ tags */
    double enq_time;      /* caller's clock, seconds */
    int queued;
    void *ud;
};

struct router_sched_flow {
    struct router_sched_item *head, *tail;
    size_t len;
    double weight, cost;
    unsigned max_queue;
    double last_finish; /* finish tag of the flow's last arrival */
};

/* Start-time fair queuing with depth D (Jin, Chase, Kaur, SIGMETRICS 2004):
 * arrival: S = max(V, F_prev(flow)), F = S + cost/weight; dispatch the
 * eligible head with the least S; V = S of the last dispatched request.
 * Depth (the concurrency limit) is enforced by the caller, which calls
 * router_sched_pick only while a slot is free. Pure: no clock, no locks. */
struct router_sched {
    struct router_sched_flow *flows;
    size_t nflows;
    double vtime;
    size_t total;
};

struct router_sched *router_sched_new(size_t nflows);
void router_sched_free(struct router_sched *s); /* queued items are not freed */
void router_sched_set_flow(struct router_sched *s, size_t flow, double weight, double cost,
                           unsigned max_queue);
/* Queue `it` on `flow`; -WLM_ELIMIT when that flow's queue is full. */
int router_sched_enqueue(struct router_sched *s, struct router_sched_item *it, size_t flow,
                         double now);
/* Unlink a queued item (client went away). No-op when not queued. */
void router_sched_remove(struct router_sched *s, struct router_sched_item *it);
/* Pop the head with the smallest start tag among flows for which
 * eligible(flow, ud) is non-zero (NULL = all); NULL when none. */
struct router_sched_item *router_sched_pick(struct router_sched *s,
                                            int (*eligible)(size_t flow, void *ud), void *ud);
/* Pop one head that has waited longer than max_wait_s(flow) at `now`; NULL
 * when none. Call repeatedly to drain. */
struct router_sched_item *router_sched_expired(struct router_sched *s, double now,
                                               double (*max_wait_s)(size_t flow, void *ud),
                                               void *ud);
/* Move every queued item into `to` (a scheduler for a new config): item's
 * flow f goes to map[f] (or, when map[f] < 0, is handed to reject(it, ud)).
 * Arrival order inside each flow is kept; the virtual time carries over. */
void router_sched_migrate(struct router_sched *from, struct router_sched *to, const long *map,
                          void (*reject)(struct router_sched_item *it, void *ud), void *ud);

/* Jain's fairness index of x[0..n-1]: (sum x)^2 / (n * sum x^2), 1 = fair. */
double router_jain_index(const double *x, size_t n);

/* ---------------------------------------------------------------- HTTP/1 request parsing */

/* Incremental HTTP/1.1 request-head + body reader used by the front end and
 * the fuzz target (no sockets). */
struct router_h1req;

enum router_h1_event {
    ROUTER_H1_NEED_MORE = 0,
    ROUTER_H1_REQUEST = 1, /* a complete request is available */
    ROUTER_H1_ERROR = 2,   /* protocol error: respond with router_h1req_status and close */
    ROUTER_H1_HEAD = 3,    /* streaming mode: the head of a request with a body */
};

/* Streaming mode (router_h1req_set_sink): a request with a body is reported
 * as ROUTER_H1_HEAD once its head is complete (view valid, body empty); its
 * body bytes, chunked framing removed, then go to sink(ud, data, len) as they
 * are fed, and ROUTER_H1_REQUEST marks the end of the body. Bodies are still
 * limited to max_body_bytes (413). Without a sink, bodies are buffered whole. */
typedef void (*router_h1_sink)(void *ud, const char *data, size_t len);

struct router_h1req *router_h1req_new(size_t max_header_bytes, size_t max_body_bytes);
void router_h1req_free(struct router_h1req *r);
/* Feed bytes; *used tells how many were consumed (stops after one complete
 * request so pipelined requests are processed one by one). */
enum router_h1_event router_h1req_feed(struct router_h1req *r, const char *data, size_t len,
                                       size_t *used);
/* After ROUTER_H1_ERROR: 400, 413 or 431. */
int router_h1req_status(const struct router_h1req *r);
/* After ROUTER_H1_ERROR: a short reason for the error body ("missing Host header"). */
const char *router_h1req_reason(const struct router_h1req *r);
/* After ROUTER_H1_REQUEST: view of the request (valid until the next feed or reset). */
struct router_h1view {
    const char *method;
    const char *url;
    size_t url_len;
    const struct router_hdr *headers;
    size_t nheaders;
    const char *body;
    size_t body_len;
    int http_major, http_minor;
    int keep_alive;
    int upgrade_h2c; /* "Upgrade: h2c" with HTTP2-Settings */
    int upgrade;     /* HTTP/1.1 "Connection: upgrade" + "Upgrade: X" (not h2c): a tunnel */
    long long content_length; /* -1 when none */
    int chunked;              /* Transfer-Encoding: chunked */
};
void router_h1req_view(const struct router_h1req *r, struct router_h1view *v);
void router_h1req_set_sink(struct router_h1req *r, router_h1_sink sink, void *ud);
/* After ROUTER_H1_REQUEST: non-zero when its body went to the sink. */
int router_h1req_streamed(const struct router_h1req *r);
/* Forget the current request; ready for the next one on the same connection. */
void router_h1req_reset(struct router_h1req *r);
/* A Host / :authority value is syntactically a uri-host[:port] (may be empty). */
int router_host_valid(const char *v, size_t vl);
/* Header lookup in a header array (case-insensitive), NULL when absent. */
const struct router_hdr *router_hdr_find(const struct router_hdr *h, size_t n, const char *name);

/* ---------------------------------------------------------------- gateway */

struct router_opts {
    const char *listen_host; /* data port, default "0.0.0.0" */
    int listen_port;
    const char *admin_host; /* default "127.0.0.1" */
    int admin_port;         /* < 0: no admin listener */
    const char *token;      /* bearer token for the /admin/ endpoints; NULL or "" = auth off */
    unsigned workers;       /* event-loop threads, default 1 */
    size_t max_header_bytes;   /* default 16 KiB -> 431 */
    size_t max_body_bytes;     /* default 8 MiB -> 413 */
    size_t max_response_bytes; /* unused: responses stream (kept for source compatibility) */
    unsigned header_timeout_ms; /* default 10000 -> 408 */
    unsigned idle_timeout_ms;   /* default 60000 */
    unsigned eject_failures;    /* consecutive failures that eject an instance, default 3 */
    unsigned eject_ms;          /* ejection time, default 5000 */
    const char *config_json;    /* text of the initial config, for GET /admin/config (copied) */
    const char *config_path;    /* file re-read by router_reload (SIGHUP); NULL = none */
    const char *tls_listen_host; /* TLS data port; NULL = no TLS listener */
    int tls_listen_port;
    const char *tls_cert, *tls_key; /* default certificate chain and key (PEM files) */
    unsigned tls_handshake_timeout_ms; /* default 10000 */
    unsigned drain_timeout_ms;  /* router_drain: longest wait for in-flight work, default 10000 */
    const char *access_log;     /* JSON lines file; NULL = none */
    int admin_tls;              /* the admin port speaks HTTPS (default certificate) */
};

struct router;

/* Create a gateway with an initial configuration (ownership of cfg passes to
 * the router on success). Sockets are bound here so errors are reported
 * before router_run. */
int router_new(const struct router_opts *o, struct router_config *cfg, struct router **out,
               struct wlm_error *err);
/* Run the workers until router_stop; returns 0. */
int router_run(struct router *r);
/* Thread/async-signal-safe request to stop. */
void router_stop(struct router *r);
/* Thread/async-signal-safe graceful stop: listeners close, idle connections
 * close, requests in flight finish (h1: then Connection: close; h2: GOAWAY),
 * and the router stops when no client connection is left or after
 * drain_timeout_ms, whichever comes first. */
void router_drain(struct router *r);
void router_free(struct router *r);
int router_listen_port(const struct router *r);
int router_admin_port(const struct router *r);
int router_tls_port(const struct router *r); /* -1 without TLS listener */
/* Re-read config_path and the certificate files and swap them in (the old
 * ones stay on any error, which is logged naming the file). Async-signal-
 * safe: the work happens in worker 0's loop. */
void router_reload(struct router *r);
/* Swap the configuration atomically (ownership of cfg passes on success);
 * queued requests move to the flow of the same name, requests in flight
 * finish on their instance. With a TLS listener, the default and per-app
 * certificates are loaded from their files first: any that fails refuses
 * the whole swap (err names the file) and the old ones keep serving. */
int router_set_config(struct router *r, struct router_config *cfg, struct wlm_error *err);
/* Stats as JSON text (caller frees) / Prometheus text (caller frees). */
char *router_stats_json(struct router *r);
char *router_metrics_text(struct router *r);

#ifdef __cplusplus
}
#endif
#endif /* WLM_ROUTER_H */
