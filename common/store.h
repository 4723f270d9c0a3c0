/*
 * store.h - the controller's persistent state as tables of documents, on
 * SQLite (one machine, the default) or on etcd (several controllers).
 *
 * A document is a flat JSON object: one row. On SQLite a table is a real
 * table whose columns are the document's members (created by the caller's
 * migrations); on etcd a document is the value of PREFIX/TABLE/KEY. Writes
 * between begin and commit are atomic on both (etcd: one transaction; only
 * when etcd refused one that large, --max-txn-ops or --max-request-bytes,
 * are commits of that size split in WLM_STORE_MAX_OPS pieces). On etcd every commit is fenced: it
 * carries a compare on the leader key's create revision, so a deposed leader
 * cannot write; that failure reads -WLM_EUNAVAIL "not the leader".
 */
#ifndef WLM_STORE_H
#define WLM_STORE_H

#include <stdint.h>

#include "common.h"

struct wlm_etcd;
struct wlm_store;

#define WLM_STORE_MAX_OPS 120 /* pieces of a split commit: etcd's default --max-txn-ops is 128 */

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
/* etcd: keep a copy of every key under the prefix in memory, fed by an etcd
 * watch on `loop` (an HA standby's warm cache). From then on scans read the
 * copy: no round trip, and the documents come parsed. on_change runs on the
 * loop after each batch of changes is applied (and after the copy was read
 * whole again). Reading the copy first blocks for its round trips. */
int wlm_store_mirror_start(struct wlm_store *st, uv_loop_t *loop, void (*on_change)(void *ud),
                           void *ud, struct wlm_error *err);
/* Back to reading etcd itself (a standby that is elected). */
void wlm_store_mirror_stop(struct wlm_store *st);
/* The value of one key of the copy that is not a JSON object, e.g.
 * PREFIX/leader (NULL: no such key, or no copy). */
const char *wlm_store_mirror_raw(const struct wlm_store *st, const char *full_key);
/* How many changes the copy applied to `table` so far (a copy read whole
 * again counts as a change of every table); 0 without a copy. */
uint64_t wlm_store_mirror_changes(const struct wlm_store *st, const char *table);
/* Another read saw the store at store_rev: a watch that stays silent past
 * it is restarted on the next member. */
void wlm_store_mirror_check(struct wlm_store *st, int64_t store_rev);
struct wlm_store_mirror_stats {
    int on, connected;
    int64_t rev; /* every change up to this revision is in the copy */
    size_t keys;
    uint64_t applied, resyncs, drops, stuck_restarts;
};
void wlm_store_mirror_stats(const struct wlm_store *st, struct wlm_store_mirror_stats *out);

/* etcd: the smallest commit (operations) etcd refused as too large, so
 * commits this large are split; 0 while every commit was one transaction. */
size_t wlm_store_split_at(const struct wlm_store *st);
/* Writes committed (for benchmarks: etcd writes per second). */
uint64_t wlm_store_writes(const struct wlm_store *st);

#endif
