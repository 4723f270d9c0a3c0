/*
 * store_mirror.h - (internal to the store) a copy in memory of every key
 * under an etcd prefix, kept current by a watch (see store.h,
 * wlm_store_mirror_start).
 */
#ifndef WLM_STORE_MIRROR_H
#define WLM_STORE_MIRROR_H

#include "store.h"

struct wlm_etcd;
struct store_mirror;

int store_mirror_new(uv_loop_t *loop, struct wlm_etcd *e, const char *prefix,
                     void (*on_change)(void *ud), void *ud, struct store_mirror **out,
                     struct wlm_error *err);
void store_mirror_free(struct store_mirror *m);
/* Rows whose full key starts with `pfx`, in key order (as etcd's range). */
int store_mirror_scan(struct store_mirror *m, const char *pfx, wlm_store_row_fn fn, void *ud,
                      struct wlm_error *err);
/* The value of one key when it is not a JSON object (NULL: absent). */
const char *store_mirror_raw(const struct store_mirror *m, const char *key);
uint64_t store_mirror_changes(const struct store_mirror *m, const char *table);
void store_mirror_check(struct store_mirror *m, int64_t store_rev);
void store_mirror_stats(const struct store_mirror *m, struct wlm_store_mirror_stats *out);

#endif
