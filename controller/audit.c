/*
 * audit.c - the audit log: who did what, when, with what result.
 *
 * One row per control action on the API (every request that changes
 * something: POST, PUT, DELETE, except the agents' periodic heartbeats) and
 * per refusal (401, 403) of any request, reads included. The row holds the
 * principal (token name, role, node), the peer address, method, path, the
 * HTTP status and the time. Written in the same SQLite file as the rest of
 * the controller's state; the oldest rows beyond AUDIT_KEEP are trimmed.
 * Read with GET /v1/audit (admin only), newest first.
 *
 * On the etcd store (several controllers) the rows go through the store
 * interface, keyed by time, so every controller's entries land in one log;
 * there they are not trimmed.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "internal.h"

#define AUDIT_KEEP 200000

static const char audit_schema[] =
    "CREATE TABLE IF NOT EXISTS audit_log ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, t REAL NOT NULL, principal TEXT NOT NULL,"
    " role TEXT NOT NULL, node TEXT NOT NULL, peer TEXT NOT NULL, method TEXT NOT NULL,"
    " path TEXT NOT NULL, status INTEGER NOT NULL, detail TEXT NOT NULL)";

int ctl_audit_init(struct controller *c, struct wlm_error *err)
{
    return wlm_store_is_etcd(c->store) ? 0
                                       : wlm_db_exec(wlm_store_sqlite(c->store), audit_schema, err);
}

/* Entries wait here (as documents) for at most AUDIT_FLUSH_MS and are
 * written together in one transaction: one more commit (fsync) per request
 * would halve the rate of small durable writes such as job submissions. A
 * crash loses at most the entries of the last AUDIT_FLUSH_MS. */
#define AUDIT_FLUSH_MS 20

static int audit_write_sqlite(struct controller *c, const json_t *e)
{
    sqlite3 *db = wlm_store_sqlite(c->store);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO audit_log (t, principal, role, node, peer, method, path,"
                           " status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    static const char *const cols[] = {"principal", "role", "node", "peer", "method", "path"};
    sqlite3_bind_double(st, 1, json_number_value(json_object_get(e, "t")));
    for (int k = 0; k < 6; k++)
        sqlite3_bind_text(st, 2 + k, json_string_value(json_object_get(e, cols[k])), -1,
                          SQLITE_STATIC);
    sqlite3_bind_int(st, 8, (int)json_integer_value(json_object_get(e, "status")));
    sqlite3_bind_text(st, 9, json_string_value(json_object_get(e, "detail")), -1,
                      SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    sqlite3_finalize(st);
    return rc;
}

void ctl_audit_flush(struct controller *c)
{
    size_t n = json_array_size(c->audit_q);
    if (!n)
        return;
    struct wlm_error err = {0};
    int etcd = wlm_store_is_etcd(c->store), rc;
    sqlite3 *db = etcd ? NULL : wlm_store_sqlite(c->store);
    rc = etcd ? wlm_store_begin(c->store, &err) : wlm_db_begin(db, &err);
    for (size_t i = 0; !rc && i < n; i++) {
        json_t *e = json_array_get(c->audit_q, i);
        if (etcd)
            rc = wlm_store_put(c->store, "audit_log", "id", e, &err);
        else if (audit_write_sqlite(c, e))
            rc = wlm_error_set(&err, WLM_EIO, "%s", sqlite3_errmsg(db));
    }
    if (!rc)
        rc = etcd ? wlm_store_commit(c->store, &err) : wlm_db_commit(db, &err);
    else if (etcd)
        wlm_store_rollback(c->store);
    else
        wlm_db_rollback(db);
    if (rc)
        wlm_warn("controller", "audit log write failed", "entries=%zu error=\"%s\"", n,
                 err.msg);
    json_array_clear(c->audit_q);
    c->audit_inserts += (int)n;
    if (!etcd && c->audit_inserts >= 1000) {
        c->audit_inserts = 0;
        char sql[160];
        snprintf(sql, sizeof sql,
                 "DELETE FROM audit_log WHERE id <= (SELECT MAX(id) FROM audit_log) - %d",
                 AUDIT_KEEP);
        wlm_db_exec(db, sql, NULL);
    }
}

static void on_flush(uv_timer_t *t)
{
    ctl_audit_flush(t->data);
}

int ctl_audit_close(struct controller *c, uv_close_cb cb)
{
    ctl_audit_flush(c);
    c->audit_closed = 1;
    if (!c->audit_timer_on)
        return 0;
    c->audit_timer_on = 0;
    uv_timer_stop(&c->audit_timer);
    uv_close((uv_handle_t *)&c->audit_timer, cb);
    return 1;
}

void ctl_audit_free(struct controller *c)
{
    ctl_audit_flush(c);
    json_decref(c->audit_q);
    c->audit_q = NULL;
}

void ctl_audit_record(struct controller *c, const struct wlm_principal *p, const char *peer,
                      const char *method, const char *path, int status, const char *detail)
{
    double t = wlm_now_wall();
    size_t plen = strcspn(path, "?"); /* the path alone: a query string may carry anything */
    char *pth = strndup(path, plen > 1024 ? 1024 : plen);
    json_t *doc = json_pack("{s:f,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s}", "t", t, "principal",
                            p ? p->name : "", "role", p ? p->role : "", "node", p ? p->node : "",
                            "peer", peer ? peer : "", "method", method, "path", pth ? pth : "",
                            "status", status, "detail", detail ? detail : "");
    free(pth);
    if (!doc)
        return;
    if (wlm_store_is_etcd(c->store)) {
        /* Keyed by time, so every controller's entries sort into one log. */
        char key[48];
        unsigned r = (unsigned)(c->audit_seq++ * 2654435761u) ^ (unsigned)getpid();
        snprintf(key, sizeof key, "%017.6f-%08x", t, r);
        json_object_set_new(doc, "id", json_string(key));
    }
    if (!c->audit_q)
        c->audit_q = json_array();
    json_array_append_new(c->audit_q, doc);
    if (c->audit_closed) { /* stopping: no new handles on the loop */
        ctl_audit_flush(c);
        return;
    }
    if (!c->audit_timer_on) {
        uv_timer_init(c->loop, &c->audit_timer);
        c->audit_timer.data = c;
        c->audit_timer_on = 1;
    }
    if (!uv_is_active((uv_handle_t *)&c->audit_timer))
        uv_timer_start(&c->audit_timer, on_flush, AUDIT_FLUSH_MS, 0);
}

static const char *result_name(int status)
{
    return status < 400    ? "ok"
           : status == 401 ? "unauthenticated"
           : status == 403 ? "forbidden"
                           : "error";
}

struct audit_scan {
    json_t *arr;
    const char *who;
};

static int audit_collect(const json_t *doc, void *ud)
{
    struct audit_scan *a = ud;
    const char *p = json_string_value(json_object_get(doc, "principal"));
    if (!a->who || (p && !strcmp(p, a->who)))
        json_array_append(a->arr, (json_t *)doc);
    return 0;
}

/* etcd: the rows come in key (time) order; the newest `limit`, newest first. */
static void audit_list_etcd(struct controller *c, struct wlm_http_req *req, const char *who,
                            long long limit)
{
    struct audit_scan a = {json_array(), who};
    struct wlm_error err = {0};
    if (wlm_store_scan(c->store, "audit_log", NULL, audit_collect, &a, &err)) {
        json_decref(a.arr);
        wlm_http_respond_error(req, 500, "io_error", "audit log: %s", err.msg);
        return;
    }
    json_t *out = json_array();
    for (size_t n = json_array_size(a.arr); n > 0 && (long long)json_array_size(out) < limit; n--) {
        json_t *o = json_deep_copy(json_array_get(a.arr, n - 1));
        char ts[40];
        int status = (int)json_integer_value(json_object_get(o, "status"));
        json_object_set_new(o, "time",
                            json_string(wlm_time_format(json_number_value(json_object_get(o, "t")),
                                                        ts, sizeof ts)));
        json_object_set_new(o, "result", json_string(result_name(status)));
        const char *node = json_string_value(json_object_get(o, "node"));
        if (!node || !node[0])
            json_object_set_new(o, "node", json_null());
        json_array_append_new(out, o);
    }
    json_decref(a.arr);
    wlm_http_respond_json(req, 200, json_pack("{s:o}", "entries", out));
}

/* GET /v1/audit?limit=N&principal=NAME&before=ID - newest first. */
static void handle_audit(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    ctl_audit_flush(c); /* read your own writes */
    char *lim = wlm_http_req_query(req, "limit");
    char *who = wlm_http_req_query(req, "principal");
    char *before = wlm_http_req_query(req, "before");
    long long limit = 100, bid = 0;
    char *end;
    if (lim && (limit = strtoll(lim, &end, 10), *end || limit < 1 || limit > 10000)) {
        wlm_http_respond_error(req, 400, "invalid", "query 'limit': must be 1..10000");
        goto out;
    }
    if (before && (bid = strtoll(before, &end, 10), *end || bid < 1)) {
        wlm_http_respond_error(req, 400, "invalid", "query 'before': must be an entry id >= 1");
        goto out;
    }
    if (wlm_store_is_etcd(c->store)) {
        audit_list_etcd(c, req, who, limit);
        goto out;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(wlm_store_sqlite(c->store),
                           "SELECT id, t, principal, role, node, peer, method, path, status,"
                           " detail FROM audit_log WHERE (?1 IS NULL OR principal = ?1)"
                           " AND (?2 = 0 OR id < ?2) ORDER BY id DESC LIMIT ?3",
                           -1, &st, NULL) != SQLITE_OK) {
        wlm_http_respond_error(req, 500, "io_error", "audit log: %s",
                               sqlite3_errmsg(wlm_store_sqlite(c->store)));
        goto out;
    }
    if (who)
        sqlite3_bind_text(st, 1, who, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 1);
    sqlite3_bind_int64(st, 2, bid);
    sqlite3_bind_int64(st, 3, limit);
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        char ts[40];
        double t = sqlite3_column_double(st, 1);
        json_t *o = json_pack(
            "{s:I,s:f,s:s,s:s,s:s,s:s,s:s,s:s,s:i}", "id", (json_int_t)sqlite3_column_int64(st, 0),
            "t", t, "time", wlm_time_format(t, ts, sizeof ts), "principal",
            sqlite3_column_text(st, 2), "role", sqlite3_column_text(st, 3), "peer",
            sqlite3_column_text(st, 5), "method", sqlite3_column_text(st, 6), "path",
            sqlite3_column_text(st, 7), "status", sqlite3_column_int(st, 8));
        const char *node = (const char *)sqlite3_column_text(st, 4);
        const char *detail = (const char *)sqlite3_column_text(st, 9);
        json_object_set_new(o, "node", node && node[0] ? json_string(node) : json_null());
        if (detail && detail[0])
            json_object_set_new(o, "detail", json_string(detail));
        json_object_set_new(o, "result",
                            json_string(sqlite3_column_int(st, 8) < 400    ? "ok"
                                        : sqlite3_column_int(st, 8) == 401 ? "unauthenticated"
                                        : sqlite3_column_int(st, 8) == 403 ? "forbidden"
                                                                           : "error"));
        json_array_append_new(arr, o);
    }
    sqlite3_finalize(st);
    wlm_http_respond_json(req, 200, json_pack("{s:o}", "entries", arr));
out:
    free(lim);
    free(who);
    free(before);
}

void ctl_audit_routes(struct controller *c)
{
    wlm_http_server_route(c->http, "GET", "/v1/audit", 1, handle_audit, c);
}
