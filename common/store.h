/*
 * store.h - the controller's persistent state as tables of documents, on
 * SQLite (one machine, the default) or on etcd (several controllers).
 *
 * A document is a flat JSON object: one row. On SQLite a table is a real
 * table whose columns are the document's members (created by the caller's
 * migrations); on etcd a document is the value of PREFIX/TABLE/KEY. Writes
 * between begin and commit are atomic on both (etcd: one transaction, split
 * past WLM_STORE_MAX_OPS operations). On etcd every commit is fenced: it
 * carries a compare on the leader key's create revision, so a deposed leader
 * cannot write; that failure reads -WLM_EUNAVAIL "not the leader".
 */
#ifndef WLM_STORE_H
#define WLM_STORE_H

#include <stdint.h>

#include "common.h"

struct wlm_etcd;
struct wlm_store;

#define WLM_STORE_MAX_OPS 120 /* etcd's default --max-txn-ops is 128 */

/* SQLite backend on an open database (borrowed: the caller closes it). */
int wlm_store_new_sqlite(sqlite3 *db, struct wlm_store **out, struct wlm_error *err);
/* etcd backend: url "etcd://HOST:PORT[,HOST:PORT...]", prefix like "/wlm/". */
int wlm_store_new_etcd(const char *url, const char *prefix, struct wlm_store **out,
                       struct wlm_error *err);
void wlm_store_free(struct wlm_store *st);

int wlm_store_is_etcd(const struct wlm_store *st);
sqlite3 *wlm_store_sqlite(struct wlm_store *st);
struct wlm_etcd *wlm_store_etcd(struct wlm_store *st);
const char *wlm_store_prefix(const struct wlm_store *st);
/* etcd: every later commit requires `key` to have this create revision
 * (key NULL: no fence). */
void wlm_store_set_fence(struct wlm_store *st, const char *key, int64_t rev);

int wlm_store_begin(struct wlm_store *st, struct wlm_error *err);
int wlm_store_commit(struct wlm_store *st, struct wlm_error *err);
void wlm_store_rollback(struct wlm_store *st);

/* Insert or update the row whose key_col equals doc[key_col]. Outside
 * begin/commit the write commits by itself. */
int wlm_store_put(struct wlm_store *st, const char *table, const char *key_col,
                  const json_t *doc, struct wlm_error *err);
int wlm_store_del(struct wlm_store *st, const char *table, const char *key_col, const char *key,
                  struct wlm_error *err);
int wlm_store_del_all(struct wlm_store *st, const char *table, struct wlm_error *err);
/* Every row (SQLite: in `order` when given, e.g. "created_at"; etcd: key
 * order). The callback returns non-zero to stop (that value is returned). */
typedef int (*wlm_store_row_fn)(const json_t *doc, void *ud);
int wlm_store_scan(struct wlm_store *st, const char *table, const char *order,
                   wlm_store_row_fn fn, void *ud, struct wlm_error *err);
/* etcd: rows whose key starts with key_prefix (PREFIX/TABLE/KEY_PREFIX). */
int wlm_store_scan_prefix(struct wlm_store *st, const char *table, const char *key_prefix,
                          wlm_store_row_fn fn, void *ud, struct wlm_error *err);

/* Refuse every write (-WLM_EUNAVAIL) while set: an HA standby's copy. */
void wlm_store_set_readonly(struct wlm_store *st, int on);
/* etcd: 1 once a commit was refused by the fence (leadership lost). */
int wlm_store_fenced_out(const struct wlm_store *st);
/* Writes committed (for benchmarks: etcd writes per second). */
uint64_t wlm_store_writes(const struct wlm_store *st);

#endif
