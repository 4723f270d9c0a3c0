/*
 * test_store_etcd.c - the etcd store on the etcd at $WLM_TEST_ETCD
 * (HOST:PORT, started with --max-txn-ops raised; it_store_etcd starts it):
 * a standby's watched copy follows another store's writes, survives a
 * compaction of the changes it missed, and reads a copy larger than one
 * range page; a commit of hundreds of writes is one transaction (one
 * revision). On $WLM_TEST_ETCD_DEFAULT (etcd's default limits) the same
 * commit is refused whole once and then stored in pieces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "etcd.h"
#include "store.h"

static char url[128], url_default[128];

static struct wlm_store *open_store(const char *prefix)
{
    struct wlm_store *st = NULL;
    struct wlm_error err = {0};
    assert_int_equal(wlm_store_new_etcd(url, prefix, &st, &err), 0);
    return st;
}

/* The store's revision now (a read of any key reports it). */
static int64_t store_rev(struct wlm_store *st)
{
    struct wlm_etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t rev = 0;
    struct wlm_error err = {0};
    assert_int_equal(wlm_etcd_range(wlm_store_etcd(st), "/none", 0, &kvs, &n, &rev, &err), 0);
    wlm_etcd_kvs_free(kvs, n);
    return rev;
}

static void put(struct wlm_store *st, const char *table, const char *name, int v)
{
    struct wlm_error err = {0};
    json_t *doc = json_pack("{s:s,s:i}", "name", name, "v", v);
    assert_int_equal(wlm_store_put(st, table, "name", doc, &err), 0);
    json_decref(doc);
}

static int changes;
static void on_change(void *ud)
{
    (void)ud;
    changes++;
}

/* Run the loop until the copy reached rev (and, when resyncs > 0, was read
 * whole that many times); 0 when it did within 10 s. */
static int run_until(uv_loop_t *loop, struct wlm_store *st, int64_t rev, uint64_t resyncs)
{
    double end = wlm_now_mono() + 10;
    while (wlm_now_mono() < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        struct wlm_store_mirror_stats s;
        wlm_store_mirror_stats(st, &s);
        if (s.rev >= rev && s.resyncs >= resyncs)
            return 0;
        usleep(1000);
    }
    return -1;
}

struct rows {
    char text[4096];
    size_t n;
};

static int collect(const json_t *doc, void *ud)
{
    struct rows *r = ud;
    size_t l = strlen(r->text);
    snprintf(r->text + l, sizeof(r->text) - l, "%s=%lld ",
             json_string_value(json_object_get(doc, "name")),
             (long long)json_integer_value(json_object_get(doc, "v")));
    r->n++;
    return 0;
}

static void scan(struct wlm_store *st, const char *table, struct rows *r)
{
    struct wlm_error err = {0};
    memset(r, 0, sizeof(*r));
    assert_int_equal(wlm_store_scan(st, table, NULL, collect, r, &err), 0);
}

static void close_mirror(uv_loop_t *loop, struct wlm_store *st)
{
    wlm_store_mirror_stop(st);
    uv_run(loop, UV_RUN_DEFAULT); /* the watch's handles close */
    wlm_store_free(st);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Another store's puts, updates and deletes reach the copy; keys outside
 * the prefix do not; scans of the copy answer what etcd holds. */
static void test_copy_follows_writes(void **state)
{
    (void)state;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "/follow%d/", (int)getpid());
    struct wlm_store *w = open_store(prefix), *r = open_store(prefix);
    char other[80];
    snprintf(other, sizeof(other), "/follow%dx/", (int)getpid());
    struct wlm_store *o = open_store(other);
    put(w, "t", "a", 1);
    put(w, "t", "b", 2);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct wlm_error err = {0};
    changes = 0;
    assert_int_equal(wlm_store_mirror_start(r, &loop, on_change, NULL, &err), 0);
    struct rows rows;
    scan(r, "t", &rows);
    assert_string_equal(rows.text, "a=1 b=2 ");
    /* Changes after the copy was read. */
    put(w, "t", "c", 3);
    put(w, "t", "b", 20);
    assert_int_equal(wlm_store_del(w, "t", "name", "a", &err), 0);
    put(o, "t", "zz", 9); /* another prefix: not in the copy */
    put(w, "u", "x", 7);
    int64_t rev = store_rev(w);
    assert_int_equal(run_until(&loop, r, rev - 1, 0), 0);
    scan(r, "t", &rows);
    assert_string_equal(rows.text, "b=20 c=3 ");
    scan(r, "u", &rows);
    assert_string_equal(rows.text, "x=7 ");
    assert_true(changes >= 1);
    struct wlm_store_mirror_stats s;
    wlm_store_mirror_stats(r, &s);
    assert_true(s.on && s.connected);
    assert_int_equal(s.keys, 3);
    /* Changes counted per table (what a standby holds in memory is
     * rebuilt only when one of its tables changed). */
    assert_int_equal(wlm_store_mirror_changes(r, "t"), 3);
    assert_int_equal(wlm_store_mirror_changes(r, "u"), 1);
    assert_int_equal(wlm_store_mirror_changes(r, "none"), 0);
    /* The same answer as etcd itself once the copy is gone. */
    wlm_store_mirror_stop(r);
    scan(r, "t", &rows);
    assert_string_equal(rows.text, "b=20 c=3 ");
    assert_int_equal(wlm_store_del_all(w, "t", &err), 0);
    assert_int_equal(wlm_store_del_all(w, "u", &err), 0);
    assert_int_equal(wlm_store_del_all(o, "t", &err), 0);
    close_mirror(&loop, r);
    wlm_store_free(w);
    wlm_store_free(o);
}

/* The changes since the copy was read are compacted away before the watch
 * starts: the copy is read whole again and has them. */
static void test_copy_after_compaction(void **state)
{
    (void)state;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "/compact%d/", (int)getpid());
    struct wlm_store *w = open_store(prefix), *r = open_store(prefix);
    put(w, "t", "a", 1);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct wlm_error err = {0};
    assert_int_equal(wlm_store_mirror_start(r, &loop, on_change, NULL, &err), 0);
    /* The watch connects when the loop runs: before that, write and compact. */
    for (int i = 0; i < 5; i++)
        put(w, "t", "b", i);
    put(w, "t", "c", 3);
    int64_t rev = store_rev(w);
    char rv[32];
    snprintf(rv, sizeof(rv), "%lld", (long long)rev);
    json_t *resp = NULL;
    assert_int_equal(wlm_etcd_call(wlm_store_etcd(w), "/v3/kv/compaction",
                                   json_pack("{s:s,s:b}", "revision", rv, "physical", 1), &resp,
                                   &err),
                     0);
    json_decref(resp);
    assert_int_equal(run_until(&loop, r, rev, 1), 0);
    struct rows rows;
    scan(r, "t", &rows);
    assert_string_equal(rows.text, "a=1 b=4 c=3 ");
    /* And it keeps following afterwards. */
    put(w, "t", "d", 4);
    assert_int_equal(run_until(&loop, r, store_rev(w), 1), 0);
    scan(r, "t", &rows);
    assert_string_equal(rows.text, "a=1 b=4 c=3 d=4 ");
    assert_int_equal(wlm_store_del_all(w, "t", &err), 0);
    close_mirror(&loop, r);
    wlm_store_free(w);
}

/* A copy larger than one range page (2,000 keys) is read whole. */
static void test_copy_of_many_keys(void **state)
{
    (void)state;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "/many%d/", (int)getpid());
    struct wlm_store *w = open_store(prefix), *r = open_store(prefix);
    struct wlm_error err = {0};
    enum { N = 4500 };
    assert_int_equal(wlm_store_begin(w, &err), 0);
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof(name), "k%05d", i);
        put(w, "t", name, i);
    }
    assert_int_equal(wlm_store_commit(w, &err), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    assert_int_equal(wlm_store_mirror_start(r, &loop, on_change, NULL, &err), 0);
    struct wlm_store_mirror_stats s;
    wlm_store_mirror_stats(r, &s);
    assert_int_equal(s.keys, N);
    struct rows rows;
    scan(r, "t", &rows);
    assert_int_equal(rows.n, N);
    assert_int_equal(wlm_store_del_all(w, "t", &err), 0);
    assert_int_equal(run_until(&loop, r, store_rev(w), 0), 0);
    wlm_store_mirror_stats(r, &s);
    assert_int_equal(s.keys, 0);
    close_mirror(&loop, r);
    wlm_store_free(w);
}

/* 300 writes in one commit (one fenced by a leader key, as a leader's). */
static int64_t commit_300(struct wlm_store *w, int64_t *before)
{
    struct wlm_error err = {0};
    char lk[80];
    snprintf(lk, sizeof(lk), "%sleader", wlm_store_prefix(w));
    struct wlm_etcd_txn t;
    wlm_etcd_txn_init(&t);
    wlm_etcd_txn_put(&t, lk, "me", 2, 0);
    int ok = 0;
    int64_t rev = 0;
    assert_int_equal(wlm_etcd_txn_commit(wlm_store_etcd(w), &t, &ok, &rev, &err), 0);
    wlm_etcd_txn_fini(&t);
    assert_true(ok);
    wlm_store_set_fence(w, lk, rev);
    *before = store_rev(w);
    assert_int_equal(wlm_store_begin(w, &err), 0);
    for (int i = 0; i < 300; i++) {
        char name[16];
        snprintf(name, sizeof(name), "j%03d", i);
        put(w, "t", name, i);
    }
    int rc = wlm_store_commit(w, &err);
    if (rc)
        fprintf(stderr, "commit: %s\n", err.msg);
    assert_int_equal(rc, 0);
    return store_rev(w);
}

/* Raised --max-txn-ops: a commit of 300 writes is one transaction, so a
 * leader that dies during it leaves all of it or none. */
static void test_large_commit_is_one_transaction(void **state)
{
    (void)state;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "/atomic%d/", (int)getpid());
    struct wlm_store *w = open_store(prefix);
    int64_t before = 0, after = commit_300(w, &before);
    assert_int_equal(after - before, 1);
    assert_int_equal(wlm_store_split_at(w), 0);
    struct rows rows;
    scan(w, "t", &rows);
    assert_int_equal(rows.n, 300);
    struct wlm_error err = {0};
    assert_int_equal(wlm_store_del_all(w, "t", &err), 0);
    wlm_store_free(w);
}

/* etcd's default limits: the single transaction is refused (nothing
 * written), the commit goes through in pieces, and the store remembers. */
static void test_large_commit_split_on_default_etcd(void **state)
{
    (void)state;
    const char *ep = getenv("WLM_TEST_ETCD_DEFAULT");
    if (!ep || !ep[0]) {
        fprintf(stderr, "test_store_etcd: WLM_TEST_ETCD_DEFAULT is not set\n");
        fail();
    }
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "/split%d/", (int)getpid());
    struct wlm_store *w = NULL;
    struct wlm_error err = {0};
    assert_int_equal(wlm_store_new_etcd(url_default, prefix, &w, &err), 0);
    int64_t before = 0, after = commit_300(w, &before);
    assert_int_equal(after - before, 3); /* 120 + 120 + 60 */
    assert_int_equal(wlm_store_split_at(w), 300);
    struct rows rows;
    scan(w, "t", &rows);
    assert_int_equal(rows.n, 300);
    assert_int_equal(wlm_store_del_all(w, "t", &err), 0);
    wlm_store_free(w);
}

int main(void)
{
    const char *ep = getenv("WLM_TEST_ETCD");
    if (!ep || !ep[0]) {
        fprintf(stderr, "test_store_etcd: WLM_TEST_ETCD (HOST:PORT of an etcd) is not set\n");
        return 1;
    }
    snprintf(url, sizeof(url), "etcd://%s", ep);
    const char *dep = getenv("WLM_TEST_ETCD_DEFAULT");
    snprintf(url_default, sizeof(url_default), "etcd://%s", dep ? dep : "");
    wlm_log_set_level(WLM_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_follows_writes),
        cmocka_unit_test(test_copy_after_compaction),
        cmocka_unit_test(test_copy_of_many_keys),
        cmocka_unit_test(test_large_commit_is_one_transaction),
        cmocka_unit_test(test_large_commit_split_on_default_etcd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
