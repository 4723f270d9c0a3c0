/*
 * test_jobsched_etcd.c - the job scheduler's unit tests (tests/jobsched/
 * test_jobsched.c, unchanged) on the etcd backend: each test's database path
 * becomes a key prefix on the etcd at $WLM_TEST_ETCD (HOST:PORT), reopening
 * it reloads from etcd, and unlinking it deletes the prefix.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "etcd.h"
#include "jobsched.h"
#include "store.h"

#define HA_MAX_OPEN 16
static struct {
    struct jobsched_store *js;
    struct wlm_store *ws;
} ha_open[HA_MAX_OPEN];

static int ha_store_open(const char *path, struct jobsched_store **out, struct wlm_error *err)
{
    const char *ep = getenv("WLM_TEST_ETCD");
    if (!ep || !ep[0])
        return wlm_error_set(err, WLM_EINVAL, "WLM_TEST_ETCD is not set");
    char url[128], prefix[320];
    snprintf(url, sizeof(url), "etcd://%s", ep);
    snprintf(prefix, sizeof(prefix), "/t%s/", path);
    struct wlm_store *ws;
    int rc = wlm_store_new_etcd(url, prefix, &ws, err);
    if (rc)
        return rc;
    if ((rc = jobsched_store_open_kv(ws, out, err))) {
        wlm_store_free(ws);
        return rc;
    }
    for (int i = 0; i < HA_MAX_OPEN; i++)
        if (!ha_open[i].js) {
            ha_open[i].js = *out;
            ha_open[i].ws = ws;
            return 0;
        }
    abort();
}

static void ha_store_close(struct jobsched_store *st)
{
    for (int i = 0; i < HA_MAX_OPEN; i++)
        if (st && ha_open[i].js == st) {
            jobsched_store_close(st);
            wlm_store_free(ha_open[i].ws);
            ha_open[i].js = NULL;
            ha_open[i].ws = NULL;
        }
}

/* "Deleting the file": deleting its prefix. */
static int ha_unlink(const char *path)
{
    const char *ep = getenv("WLM_TEST_ETCD");
    struct wlm_etcd *e;
    struct wlm_error err = {0};
    if (ep && wlm_etcd_open(ep, 2000, &e, &err) == 0) {
        char prefix[320];
        snprintf(prefix, sizeof(prefix), "/t%s/", path);
        struct wlm_etcd_txn t;
        wlm_etcd_txn_init(&t);
        wlm_etcd_txn_del(&t, prefix, 1);
        int ok;
        wlm_etcd_txn_commit(e, &t, &ok, NULL, &err);
        wlm_etcd_txn_fini(&t);
        wlm_etcd_close(e);
    }
    return unlink(path);
}

#define jobsched_store_open ha_store_open
#define jobsched_store_close ha_store_close
#define unlink ha_unlink
#include "jobsched/test_jobsched.c"
