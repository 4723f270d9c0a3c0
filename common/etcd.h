/*
 * etcd.h - a small blocking client of etcd's v3 JSON gateway (HTTP/1.1).
 *
 * etcd 3.4 answers its gRPC API as JSON at /v3/... (keys and values base64).
 * The controller's store is synchronous (a job is acknowledged after its
 * write is durable, exactly like the SQLite store), so this client blocks the
 * caller for one round trip; it keeps one keep-alive connection and moves to
 * the next endpoint of the list when one fails.
 */
#ifndef WLM_ETCD_H
#define WLM_ETCD_H

#include <stdint.h>

#include "common.h"

struct wlm_etcd;

/* endpoints: "host:port[,host:port...]" (an "http://" before each is
 * accepted). timeout_ms bounds each request (per endpoint tried). */
int wlm_etcd_open(const char *endpoints, unsigned timeout_ms, struct wlm_etcd **out,
                  struct wlm_error *err);
void wlm_etcd_close(struct wlm_etcd *e);
/* "host:port" of the endpoint in use. */
const char *wlm_etcd_endpoint(const struct wlm_etcd *e);
/* The endpoint list: how many, and each one's host and port. */
size_t wlm_etcd_nendpoints(const struct wlm_etcd *e);
const char *wlm_etcd_endpoint_host(const struct wlm_etcd *e, size_t i, int *port);

/* POST `path` (e.g. "/v3/kv/range") with `req` (reference stolen); *resp
 * gets the decoded JSON answer. Errors: -WLM_EUNAVAIL when no endpoint
 * answered (or etcd has no quorum), -WLM_EIO for an error answer. */
int wlm_etcd_call(struct wlm_etcd *e, const char *path, json_t *req, json_t **resp,
                  struct wlm_error *err);

struct wlm_etcd_kv {
    char *key;   /* NUL-terminated */
    char *value; /* NUL-terminated; may hold NULs (vlen) */
    size_t vlen;
    int64_t create_rev, mod_rev, lease;
};
/* Keys equal to `key`, or starting with it when prefix is set, in key
 * order. *rev gets the store revision of the read (may be NULL). */
int wlm_etcd_range(struct wlm_etcd *e, const char *key, int prefix, struct wlm_etcd_kv **kvs,
                   size_t *n, int64_t *rev, struct wlm_error *err);
void wlm_etcd_kvs_free(struct wlm_etcd_kv *kvs, size_t n);

/* A transaction: compares, then the operations run when all hold. */
struct wlm_etcd_txn {
    json_t *compare, *success;
    size_t nops;
};
void wlm_etcd_txn_init(struct wlm_etcd_txn *t);
void wlm_etcd_txn_fini(struct wlm_etcd_txn *t);
void wlm_etcd_txn_put(struct wlm_etcd_txn *t, const char *key, const void *value, size_t len,
                      int64_t lease);
void wlm_etcd_txn_del(struct wlm_etcd_txn *t, const char *key, int prefix);
/* The key's create revision must equal rev (0: the key must not exist). */
void wlm_etcd_txn_cmp_create(struct wlm_etcd_txn *t, const char *key, int64_t rev);
/* Run it (the txn is emptied). *ok = 1 when the compares held and the
 * operations ran; *rev = the revision after it. */
int wlm_etcd_txn_commit(struct wlm_etcd *e, struct wlm_etcd_txn *t, int *ok, int64_t *rev,
                        struct wlm_error *err);

int wlm_etcd_lease_grant(struct wlm_etcd *e, int ttl_s, int64_t *id, struct wlm_error *err);
/* *ttl = seconds left, 0 when the lease is gone. */
int wlm_etcd_lease_keepalive(struct wlm_etcd *e, int64_t id, int64_t *ttl, struct wlm_error *err);
int wlm_etcd_lease_revoke(struct wlm_etcd *e, int64_t id, struct wlm_error *err);

/* ---------------------------------------------------------------- watch
 *
 * A streaming watch (POST /v3/watch: one chunked HTTP response carrying a
 * JSON result per line) on a libuv loop, never blocking it. It resumes after
 * a disconnect on the next endpoint from the revision after the last event
 * it delivered; when that revision was compacted it says so (on_compacted)
 * and waits for wlm_etcd_watch_restart. Everything runs on the loop. */
struct wlm_etcd_watch;
struct wlm_etcd_watch_cbs {
    /* One changed key; value is NULL for a delete. */
    void (*on_event)(void *ud, const char *key, const char *value, size_t vlen, int64_t mod_rev);
    /* After the events of one response: everything up to rev is delivered. */
    void (*on_batch)(void *ud, int64_t rev);
    /* The watch was created on a member (connected) or lost (why). */
    void (*on_state)(void *ud, int connected, const char *why);
    /* start revision compacted: the caller reloads and restarts the watch. */
    void (*on_compacted)(void *ud, int64_t compact_rev);
};
/* Watch `key` (and every key under it when prefix is set) from start_rev
 * on, over the endpoints of `e` (only its list is used). */
int wlm_etcd_watch_new(uv_loop_t *loop, const struct wlm_etcd *e, const char *key, int prefix,
                       int64_t start_rev, const struct wlm_etcd_watch_cbs *cbs, void *ud,
                       struct wlm_etcd_watch **out, struct wlm_error *err);
/* Drop the connection and watch again from start_rev (on the next endpoint
 * when next_endpoint is set: the one in use looks stuck). */
void wlm_etcd_watch_restart(struct wlm_etcd_watch *w, int64_t start_rev, int next_endpoint);
/* Stop; the memory goes when libuv has closed the handles. */
void wlm_etcd_watch_free(struct wlm_etcd_watch *w);
struct wlm_etcd_watch_stats {
    int connected;
    int64_t next_rev;        /* the revision it resumes from */
    int64_t seen_rev;        /* the highest header revision a member reported */
    double last_data;        /* monotonic time of the last bytes received */
    uint64_t events, connects, drops;
    char endpoint[80];
};
void wlm_etcd_watch_stats(const struct wlm_etcd_watch *w, struct wlm_etcd_watch_stats *out);

/* base64 (standard alphabet, padded). Caller frees. */
char *wlm_base64_encode(const void *data, size_t len);
/* Returns NULL on bad input; *len gets the decoded length (NUL added). */
char *wlm_base64_decode(const char *text, size_t *len);

#endif
