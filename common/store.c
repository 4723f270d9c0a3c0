/* store.c - tables of documents on SQLite or etcd (see store.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"
#include "store.h"
#include "store_mirror.h"

struct wlm_store {
    sqlite3 *db;
    struct wlm_etcd *etcd;
    char prefix[128];
    char fence_key[192];
    int64_t fence_rev;
    int in_tx;
    json_t *pending; /* etcd: {"full key": {"put": "value"} | {"del": true}} */
    uint64_t writes;
    int fenced_out;
    int readonly;
    /* etcd: the smallest commit (operations) etcd refused as too large
     * (--max-txn-ops, --max-request-bytes); 0 while none was. Commits at
     * least this large are split in WLM_STORE_MAX_OPS pieces. */
    size_t refused_ops;
    struct store_mirror *mirror; /* a standby's copy: scans read it */
};

int wlm_store_new_sqlite(sqlite3 *db, struct wlm_store **out, struct wlm_error *err)
{
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return wlm_error_set(err, ENOMEM, "out of memory");
    (*out)->db = db;
    return 0;
}

int wlm_store_new_etcd(const char *url, const char *prefix, struct wlm_store **out,
                       struct wlm_error *err)
{
    *out = NULL;
    if (strncmp(url, "etcd://", 7))
        return wlm_error_setf(err, WLM_EINVAL, "store",
                              "field 'store': '%s' is not etcd://HOST:PORT[,HOST:PORT...]", url);
    if (!prefix || prefix[0] != '/' || strlen(prefix) >= 100)
        return wlm_error_setf(err, WLM_EINVAL, "store_prefix",
                              "field 'store_prefix': '%s' must start with '/' (at most 99 bytes)",
                              prefix ? prefix : "");
    struct wlm_store *st = calloc(1, sizeof(*st));
    if (!st)
        return wlm_error_set(err, ENOMEM, "out of memory");
    int rc = wlm_etcd_open(url + 7, 2000, &st->etcd, err);
    if (rc) {
        free(st);
        return rc;
    }
    snprintf(st->prefix, sizeof(st->prefix), "%s%s", prefix,
             prefix[strlen(prefix) - 1] == '/' ? "" : "/");
    *out = st;
    return 0;
}

void wlm_store_free(struct wlm_store *st)
{
    if (!st)
        return;
    json_decref(st->pending);
    if (st->mirror)
        wlm_errorlog("store", "store freed with its copy still watching", NULL);
    wlm_etcd_close(st->etcd);
    free(st);
}

int wlm_store_mirror_start(struct wlm_store *st, uv_loop_t *loop, void (*on_change)(void *ud),
                           void *ud, struct wlm_error *err)
{
    if (!st->etcd)
        return wlm_error_set(err, WLM_EUNSUPPORTED, "a watched copy needs the etcd store");
    if (st->mirror)
        return 0;
    return store_mirror_new(loop, st->etcd, st->prefix, on_change, ud, &st->mirror, err);
}

void wlm_store_mirror_stop(struct wlm_store *st)
{
    store_mirror_free(st->mirror);
    st->mirror = NULL;
}

const char *wlm_store_mirror_raw(const struct wlm_store *st, const char *full_key)
{
    return st->mirror ? store_mirror_raw(st->mirror, full_key) : NULL;
}

uint64_t wlm_store_mirror_changes(const struct wlm_store *st, const char *table)
{
    return st->mirror ? store_mirror_changes(st->mirror, table) : 0;
}

void wlm_store_mirror_check(struct wlm_store *st, int64_t store_rev)
{
    if (st->mirror)
        store_mirror_check(st->mirror, store_rev);
}

void wlm_store_mirror_stats(const struct wlm_store *st, struct wlm_store_mirror_stats *out)
{
    store_mirror_stats(st->mirror, out);
    out->on = st->mirror != NULL;
}

int wlm_store_is_etcd(const struct wlm_store *st) { return st && st->etcd; }
sqlite3 *wlm_store_sqlite(struct wlm_store *st) { return st ? st->db : NULL; }
struct wlm_etcd *wlm_store_etcd(struct wlm_store *st) { return st ? st->etcd : NULL; }
const char *wlm_store_prefix(const struct wlm_store *st) { return st->prefix; }
uint64_t wlm_store_writes(const struct wlm_store *st) { return st->writes; }
size_t wlm_store_split_at(const struct wlm_store *st) { return st->refused_ops; }
int wlm_store_fenced_out(const struct wlm_store *st) { return st->fenced_out; }
void wlm_store_set_readonly(struct wlm_store *st, int on) { st->readonly = on; }

void wlm_store_set_fence(struct wlm_store *st, const char *key, int64_t rev)
{
    wlm_strlcpy(st->fence_key, key ? key : "", sizeof(st->fence_key));
    st->fence_rev = rev;
}

/* ---------------------------------------------------------------- transactions */

int wlm_store_begin(struct wlm_store *st, struct wlm_error *err)
{
    if (st->db) {
        int rc = wlm_db_begin(st->db, err);
        st->in_tx = rc == 0;
        return rc;
    }
    json_decref(st->pending);
    st->pending = json_object();
    st->in_tx = 1;
    return 0;
}

/* Commit the pending writes in transactions of at most `chunk` operations,
 * each carrying the fence. *too_big is set when etcd refused the first one
 * as too large (nothing was written). */
static int etcd_flush_chunks(struct wlm_store *st, size_t chunk, int *too_big,
                             struct wlm_error *err)
{
    struct wlm_etcd_txn t;
    wlm_etcd_txn_init(&t);
    const char *key;
    json_t *op;
    size_t left = json_object_size(st->pending);
    int rc = 0, first = 1;
    *too_big = 0;
    json_object_foreach(st->pending, key, op)
    {
        json_t *v = json_object_get(op, "put");
        if (v)
            wlm_etcd_txn_put(&t, key, json_string_value(v), json_string_length(v), 0);
        else
            wlm_etcd_txn_del(&t, key, 0);
        left--;
        if (t.nops < chunk && left > 0)
            continue;
        if (st->fence_key[0])
            wlm_etcd_txn_cmp_create(&t, st->fence_key, st->fence_rev);
        int ok = 0;
        size_t n = t.nops;
        if ((rc = wlm_etcd_txn_commit(st->etcd, &t, &ok, NULL, err))) {
            /* --max-txn-ops; --max-request-bytes (raft; or the gRPC limit
             * behind the gateway, 512 KiB above it) */
            *too_big = first && rc == -WLM_EIO &&
                       (strstr(err->msg, "too many operations") ||
                        strstr(err->msg, "request is too large") ||
                        strstr(err->msg, "larger than max"));
            break;
        }
        first = 0;
        if (!ok) {
            st->fenced_out = 1;
            rc = wlm_error_set(err, WLM_EUNAVAIL,
                               "not the leader: the store refused the write (leadership lost)");
            break;
        }
        st->writes += n;
    }
    wlm_etcd_txn_fini(&t);
    return rc;
}

/* One transaction for the whole commit (atomic, across a failover too)
 * unless etcd refused one this large before: then pieces of
 * WLM_STORE_MAX_OPS (under etcd's default --max-txn-ops, 128). */
static int etcd_flush(struct wlm_store *st, struct wlm_error *err)
{
    size_t n = json_object_size(st->pending);
    int too_big = 0, rc;
    if (n > WLM_STORE_MAX_OPS && (!st->refused_ops || n < st->refused_ops)) {
        rc = etcd_flush_chunks(st, n, &too_big, err);
        if (too_big) {
            st->refused_ops = n;
            wlm_warn("store",
                     "etcd refused a transaction this large: splitting large commits (they are "
                     "not atomic; raise etcd's --max-txn-ops / --max-request-bytes)",
                     "operations=%zu error=\"%s\"", n, err->msg);
            wlm_error_clear(err);
            rc = etcd_flush_chunks(st, WLM_STORE_MAX_OPS, &too_big, err);
        }
    } else {
        rc = etcd_flush_chunks(st, WLM_STORE_MAX_OPS, &too_big, err);
    }
    json_decref(st->pending);
    st->pending = NULL;
    return rc;
}

int wlm_store_commit(struct wlm_store *st, struct wlm_error *err)
{
    st->in_tx = 0;
    if (st->readonly) {
        wlm_store_rollback(st);
        return wlm_error_set(err, WLM_EUNAVAIL, "this controller is a standby: it does not write");
    }
    if (st->db) {
        int rc = wlm_db_commit(st->db, err);
        if (rc == 0)
            st->writes++;
        return rc;
    }
    return etcd_flush(st, err);
}

void wlm_store_rollback(struct wlm_store *st)
{
    if (st->db) {
        if (st->in_tx)
            wlm_db_rollback(st->db);
    } else {
        json_decref(st->pending);
        st->pending = NULL;
    }
    st->in_tx = 0;
}

/* ---------------------------------------------------------------- rows */

static int key_text(const json_t *v, char *buf, size_t n)
{
    if (json_is_string(v))
        return (size_t)snprintf(buf, n, "%s", json_string_value(v)) < n ? 0 : -1;
    if (json_is_integer(v))
        return snprintf(buf, n, "%020lld", (long long)json_integer_value(v)) < (int)n ? 0 : -1;
    return -1;
}

static int etcd_op(struct wlm_store *st, const char *table, const char *key, json_t *op,
                   struct wlm_error *err)
{
    if (st->readonly) {
        json_decref(op);
        return wlm_error_set(err, WLM_EUNAVAIL, "this controller is a standby: it does not write");
    }
    char full[512];
    if ((size_t)snprintf(full, sizeof(full), "%s%s/%s", st->prefix, table, key) >= sizeof(full)) {
        json_decref(op);
        return wlm_error_setf(err, WLM_EINVAL, "key", "store key '%s' is too long", key);
    }
    int own = !st->in_tx;
    if (own)
        wlm_store_begin(st, err);
    json_object_set_new(st->pending, full, op);
    return own ? wlm_store_commit(st, err) : 0;
}

static int sqlite_put(struct wlm_store *st, const char *table, const char *key_col,
                      const json_t *doc, struct wlm_error *err)
{
    char *cols = wlm_strdup(""), *qs = wlm_strdup(""), *upd = wlm_strdup("");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)doc, k, v)
    {
        char *a = wlm_asprintf("%s%s\"%s\"", cols, cols[0] ? "," : "", k);
        char *b = wlm_asprintf("%s%s?", qs, qs[0] ? "," : "");
        char *c = strcmp(k, key_col) ? wlm_asprintf("%s%s\"%s\"=excluded.\"%s\"", upd,
                                                    upd[0] ? "," : "", k, k)
                                     : wlm_strdup(upd);
        free(cols), free(qs), free(upd);
        cols = a, qs = b, upd = c;
    }
    char *sql = upd[0] ? wlm_asprintf("INSERT INTO \"%s\" (%s) VALUES (%s) ON CONFLICT(\"%s\")"
                                      " DO UPDATE SET %s",
                                      table, cols, qs, key_col, upd)
                       : wlm_asprintf("INSERT OR IGNORE INTO \"%s\" (%s) VALUES (%s)", table,
                                      cols, qs);
    free(cols), free(qs), free(upd);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    free(sql);
    if (rc != SQLITE_OK)
        return wlm_error_set(err, WLM_EIO, "store %s: %s", table, sqlite3_errmsg(st->db));
    int i = 1;
    json_object_foreach((json_t *)doc, k, v)
    {
        if (json_is_string(v))
            sqlite3_bind_text(s, i, json_string_value(v), (int)json_string_length(v),
                              SQLITE_TRANSIENT);
        else if (json_is_integer(v))
            sqlite3_bind_int64(s, i, json_integer_value(v));
        else if (json_is_real(v))
            sqlite3_bind_double(s, i, json_real_value(v));
        else if (json_is_boolean(v))
            sqlite3_bind_int(s, i, json_is_true(v));
        else if (json_is_null(v))
            sqlite3_bind_null(s, i);
        else {
            char *t = json_dumps(v, JSON_COMPACT);
            sqlite3_bind_text(s, i, t ? t : "null", -1, SQLITE_TRANSIENT);
            free(t);
        }
        i++;
    }
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return wlm_error_set(err, WLM_EIO, "store %s: %s", table, sqlite3_errmsg(st->db));
    if (!st->in_tx)
        st->writes++;
    return 0;
}

int wlm_store_put(struct wlm_store *st, const char *table, const char *key_col,
                  const json_t *doc, struct wlm_error *err)
{
    char key[256];
    if (key_text(json_object_get(doc, key_col), key, sizeof(key)))
        return wlm_error_setf(err, WLM_EINVAL, key_col, "store %s: field '%s' missing or too long",
                              table, key_col);
    if (st->db)
        return sqlite_put(st, table, key_col, doc, err);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return wlm_error_set(err, ENOMEM, "out of memory");
    json_t *op = json_pack("{s:s}", "put", text);
    free(text);
    return etcd_op(st, table, key, op, err);
}

int wlm_store_del(struct wlm_store *st, const char *table, const char *key_col, const char *key,
                  struct wlm_error *err)
{
    if (st->db) {
        char *sql = wlm_asprintf("DELETE FROM \"%s\" WHERE \"%s\" = ?", table, key_col);
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
        free(sql);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
            rc = sqlite3_step(s);
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE)
            return wlm_error_set(err, WLM_EIO, "store %s: %s", table, sqlite3_errmsg(st->db));
        return 0;
    }
    return etcd_op(st, table, key, json_pack("{s:b}", "del", 1), err);
}

int wlm_store_del_all(struct wlm_store *st, const char *table, struct wlm_error *err)
{
    if (st->db) {
        char *sql = wlm_asprintf("DELETE FROM \"%s\"", table);
        int rc = wlm_db_exec(st->db, sql, err);
        free(sql);
        return rc;
    }
    /* One delete per key, so puts of the same transaction replace them. */
    char pfx[256];
    snprintf(pfx, sizeof(pfx), "%s%s/", st->prefix, table);
    struct wlm_etcd_kv *kvs;
    size_t n;
    int rc = wlm_etcd_range(st->etcd, pfx, 1, &kvs, &n, NULL, err);
    if (rc)
        return rc;
    int own = !st->in_tx;
    if (own)
        wlm_store_begin(st, err);
    for (size_t i = 0; i < n; i++)
        json_object_set_new(st->pending, kvs[i].key, json_pack("{s:b}", "del", 1));
    wlm_etcd_kvs_free(kvs, n);
    return own ? wlm_store_commit(st, err) : 0;
}

static int etcd_scan(struct wlm_store *st, const char *table, const char *key_prefix,
                     wlm_store_row_fn fn, void *ud, struct wlm_error *err)
{
    char pfx[512];
    snprintf(pfx, sizeof(pfx), "%s%s/%s", st->prefix, table, key_prefix ? key_prefix : "");
    if (st->mirror)
        return store_mirror_scan(st->mirror, pfx, fn, ud, err);
    struct wlm_etcd_kv *kvs;
    size_t n;
    int rc = wlm_etcd_range(st->etcd, pfx, 1, &kvs, &n, NULL, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *doc = json_loadb(kvs[i].value, kvs[i].vlen, 0, NULL);
        if (!json_is_object(doc)) {
            rc = wlm_error_set(err, WLM_EIO, "store: %s holds no JSON object", kvs[i].key);
        } else {
            rc = fn(doc, ud);
        }
        json_decref(doc);
    }
    wlm_etcd_kvs_free(kvs, n);
    return rc;
}

int wlm_store_scan(struct wlm_store *st, const char *table, const char *order,
                   wlm_store_row_fn fn, void *ud, struct wlm_error *err)
{
    if (st->etcd)
        return etcd_scan(st, table, NULL, fn, ud, err);
    char *sql = order ? wlm_asprintf("SELECT * FROM \"%s\" ORDER BY %s", table, order)
                      : wlm_asprintf("SELECT * FROM \"%s\"", table);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    free(sql);
    if (rc != SQLITE_OK)
        return wlm_error_set(err, WLM_EIO, "load %s: %s", table, sqlite3_errmsg(st->db));
    int cb = 0;
    while (cb == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *doc = json_object();
        for (int i = 0; i < sqlite3_column_count(s); i++) {
            const char *name = sqlite3_column_name(s, i);
            switch (sqlite3_column_type(s, i)) {
            case SQLITE_INTEGER:
                json_object_set_new(doc, name, json_integer(sqlite3_column_int64(s, i)));
                break;
            case SQLITE_FLOAT:
                json_object_set_new(doc, name, json_real(sqlite3_column_double(s, i)));
                break;
            case SQLITE_NULL: json_object_set_new(doc, name, json_null()); break;
            default:
                json_object_set_new(doc, name,
                                    json_stringn((const char *)sqlite3_column_text(s, i),
                                                 (size_t)sqlite3_column_bytes(s, i)));
            }
        }
        cb = fn(doc, ud);
        json_decref(doc);
    }
    sqlite3_finalize(s);
    if (cb)
        return cb;
    if (rc != SQLITE_DONE)
        return wlm_error_set(err, WLM_EIO, "load %s: %s", table, sqlite3_errmsg(st->db));
    return 0;
}

int wlm_store_scan_prefix(struct wlm_store *st, const char *table, const char *key_prefix,
                          wlm_store_row_fn fn, void *ud, struct wlm_error *err)
{
    if (!st->etcd)
        return wlm_error_set(err, WLM_EUNSUPPORTED, "scan by key prefix needs the etcd store");
    return etcd_scan(st, table, key_prefix, fn, ud, err);
}
