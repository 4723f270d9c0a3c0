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

/* base64 (standard alphabet, padded). Caller frees. */
char *wlm_base64_encode(const void *data, size_t len);
/* Returns NULL on bad input; *len gets the decoded length (NUL added). */
char *wlm_base64_decode(const char *text, size_t *len);

#endif
