/*
 * store_mirror.c - every key under the store's etcd prefix, in memory, fed
 * by a watch (see store_mirror.h).
 *
 * A full read (paged ranges at one revision R) fills a sorted array; the
 * watch starts at R+1 and each put or delete it delivers is applied to the
 * array. Values that are JSON objects (every table row) are kept parsed, so
 * a scan costs no round trip and no parsing. When the watch's start revision
 * was compacted away, the copy is read whole again and the watch restarted
 * after it. The watch resumes by itself after a dropped connection; a
 * member that stopped answering without dropping it is noticed when another
 * read saw the store move on while the watch said nothing
 * (store_mirror_check).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"
#include "store_mirror.h"

#define COMP "store"
#define PAGE_TEXT "2000" /* keys per range request */
#define STUCK_S 3.0

struct entry {
    char *key;
    json_t *doc; /* a JSON object; NULL when the value is not one */
    char *raw;   /* the value when it is not a JSON object */
    int64_t mod_rev;
};

struct store_mirror {
    uv_loop_t *loop;
    struct wlm_etcd *etcd; /* the store's blocking client: full reads */
    char prefix[128];
    struct entry *v;
    size_t n, cap;
    int64_t rev; /* every change up to here is applied */
    struct wlm_etcd_watch *watch;
    void (*on_change)(void *ud);
    void *ud;
    uv_timer_t resync; /* after a compaction, or a failed full read */
    double behind_since;
    uint64_t applied, resyncs, stuck_restarts;
    /* Changes applied per table (PREFIX/TABLE/...), so a reader can tell
     * whether what it derived from a table is out of date. */
    struct {
        char name[48];
        uint64_t n;
    } tables[32];
    size_t ntables;
};

/* ---------------------------------------------------------------- the array */

static void entry_free(struct entry *e)
{
    free(e->key);
    json_decref(e->doc);
    free(e->raw);
}

static void entries_free(struct entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        entry_free(&v[i]);
    free(v);
}

/* The first index whose key is >= key. */
static size_t lower_bound(const struct entry *v, size_t n, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(v[mid].key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void entry_set_value(struct entry *e, const char *value, size_t vlen)
{
    json_decref(e->doc);
    free(e->raw);
    e->doc = NULL;
    e->raw = NULL;
    json_t *doc = vlen && value[0] == '{' ? json_loadb(value, vlen, 0, NULL) : NULL;
    if (json_is_object(doc)) {
        e->doc = doc;
    } else {
        json_decref(doc);
        e->raw = malloc(vlen + 1);
        if (e->raw) {
            memcpy(e->raw, value, vlen);
            e->raw[vlen] = 0;
        }
    }
}

static int apply_put(struct store_mirror *m, const char *key, const char *value, size_t vlen,
                     int64_t mod_rev)
{
    size_t i = lower_bound(m->v, m->n, key);
    if (i == m->n || strcmp(m->v[i].key, key) != 0) {
        if (m->n == m->cap) {
            size_t nc = m->cap ? m->cap * 2 : 1024;
            struct entry *nv = realloc(m->v, nc * sizeof(*nv));
            if (!nv)
                return -ENOMEM;
            m->v = nv;
            m->cap = nc;
        }
        memmove(&m->v[i + 1], &m->v[i], (m->n - i) * sizeof(*m->v));
        memset(&m->v[i], 0, sizeof(m->v[i]));
        m->v[i].key = wlm_strdup(key);
        m->n++;
    }
    entry_set_value(&m->v[i], value, vlen);
    m->v[i].mod_rev = mod_rev;
    return 0;
}

static void apply_del(struct store_mirror *m, const char *key)
{
    size_t i = lower_bound(m->v, m->n, key);
    if (i == m->n || strcmp(m->v[i].key, key) != 0)
        return;
    entry_free(&m->v[i]);
    memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(*m->v));
    m->n--;
}

/* ---------------------------------------------------------------- full read */

static int64_t jint(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

static json_t *b64j(const char *data, size_t len)
{
    char *s = wlm_base64_encode(data, len);
    json_t *v = json_string(s ? s : "");
    free(s);
    return v;
}

/* Read every key under the prefix at one revision into the array. */
static int full_read(struct store_mirror *m, struct wlm_error *err)
{
    size_t plen = strlen(m->prefix);
    char *end = wlm_strdup(m->prefix);
    end[plen - 1]++; /* the prefix ends in '/': the next byte bounds the range */
    struct store_mirror tmp = {0};
    int64_t rev = 0;
    char *from = wlm_strdup(m->prefix);
    size_t from_len = plen;
    int rc = 0;
    for (;;) {
        json_t *req = json_object();
        json_object_set_new(req, "key", b64j(from, from_len));
        json_object_set_new(req, "range_end", b64j(end, plen));
        json_object_set_new(req, "limit", json_string(PAGE_TEXT));
        if (rev) {
            char r[32];
            snprintf(r, sizeof(r), "%lld", (long long)rev);
            json_object_set_new(req, "revision", json_string(r));
        }
        json_t *resp = NULL;
        if ((rc = wlm_etcd_call(m->etcd, "/v3/kv/range", req, &resp, err)))
            break;
        if (!rev)
            rev = jint(json_object_get(resp, "header"), "revision");
        size_t i;
        json_t *kv;
        const char *last = NULL;
        json_array_foreach(json_object_get(resp, "kvs"), i, kv)
        {
            const char *k64 = json_string_value(json_object_get(kv, "key"));
            const char *v64 = json_string_value(json_object_get(kv, "value"));
            size_t vlen = 0;
            char *key = wlm_base64_decode(k64 ? k64 : "", NULL);
            char *val = wlm_base64_decode(v64 ? v64 : "", &vlen);
            if (key && val && apply_put(&tmp, key, val, vlen, jint(kv, "mod_revision")))
                rc = wlm_error_set(err, ENOMEM, "out of memory");
            free(val);
            if (key) {
                free(from);
                from = key; /* the next page starts after it */
                last = key;
            }
        }
        int more = json_is_true(json_object_get(resp, "more"));
        json_decref(resp);
        if (rc || !more || !last)
            break;
        /* The smallest key after `last`: last + "\0". */
        from_len = strlen(from) + 1;
        char *nf = malloc(from_len + 1);
        memcpy(nf, from, from_len - 1);
        nf[from_len - 1] = 0;
        nf[from_len] = 0;
        free(from);
        from = nf;
    }
    free(from);
    free(end);
    if (rc) {
        entries_free(tmp.v, tmp.n);
        return rc;
    }
    entries_free(m->v, m->n);
    m->v = tmp.v;
    m->n = tmp.n;
    m->cap = tmp.cap;
    m->rev = rev;
    return 0;
}

/* ---------------------------------------------------------------- the watch */

static void on_resync(uv_timer_t *t);

static void count_change(struct store_mirror *m, const char *key)
{
    size_t plen = strlen(m->prefix);
    if (strncmp(key, m->prefix, plen) != 0)
        return;
    const char *t = key + plen, *slash = strchr(t, '/');
    size_t tl = slash ? (size_t)(slash - t) : strlen(t);
    if (tl >= sizeof(m->tables[0].name))
        return;
    for (size_t i = 0; i < m->ntables; i++)
        if (strlen(m->tables[i].name) == tl && strncmp(m->tables[i].name, t, tl) == 0) {
            m->tables[i].n++;
            return;
        }
    if (m->ntables == sizeof(m->tables) / sizeof(m->tables[0]))
        return;
    memcpy(m->tables[m->ntables].name, t, tl);
    m->tables[m->ntables].name[tl] = 0;
    m->tables[m->ntables++].n = 1;
}

static void on_event(void *ud, const char *key, const char *value, size_t vlen, int64_t mod_rev)
{
    struct store_mirror *m = ud;
    if (mod_rev <= m->rev)
        return; /* applied already (the full read saw it) */
    count_change(m, key);
    if (!value)
        apply_del(m, key);
    else if (apply_put(m, key, value, vlen, mod_rev) && !uv_is_active((uv_handle_t *)&m->resync))
        uv_timer_start(&m->resync, on_resync, 1000, 0); /* out of memory: read it whole later */
    m->applied++;
}

static void on_batch(void *ud, int64_t rev)
{
    struct store_mirror *m = ud;
    if (rev > m->rev)
        m->rev = rev;
    m->behind_since = 0;
    if (m->on_change)
        m->on_change(m->ud);
}

static void on_state(void *ud, int connected, const char *why)
{
    struct store_mirror *m = ud;
    if (connected)
        wlm_info(COMP, "watching the store", "revision=%lld keys=%zu", (long long)m->rev, m->n);
    else
        wlm_warn(COMP, "store watch lost: resuming", "revision=%lld reason=\"%s\"",
                 (long long)m->rev, why ? why : "");
}

static void on_resync(uv_timer_t *t)
{
    struct store_mirror *m = t->data;
    struct wlm_error err = {0};
    double t0 = wlm_now_mono();
    if (full_read(m, &err)) {
        wlm_warn(COMP, "store copy: full read failed, retrying", "error=\"%s\"", err.msg);
        uv_timer_start(&m->resync, on_resync, 1000, 0);
        return;
    }
    m->resyncs++;
    for (size_t i = 0; i < m->ntables; i++)
        m->tables[i].n++; /* anything may have changed */
    wlm_info(COMP, "store copy read whole again", "revision=%lld keys=%zu ms=%.0f",
             (long long)m->rev, m->n, (wlm_now_mono() - t0) * 1000);
    wlm_etcd_watch_restart(m->watch, m->rev + 1, 0);
    if (m->on_change)
        m->on_change(m->ud);
}

static void on_compacted(void *ud, int64_t compact_rev)
{
    struct store_mirror *m = ud;
    wlm_warn(COMP, "store watch: changes since the copy were compacted away: reading it whole",
             "revision=%lld compacted=%lld", (long long)m->rev, (long long)compact_rev);
    uv_timer_start(&m->resync, on_resync, 0, 0);
}

/* ---------------------------------------------------------------- API */

static void on_resync_closed(uv_handle_t *h)
{
    struct store_mirror *m = h->data;
    entries_free(m->v, m->n);
    free(m);
}

int store_mirror_new(uv_loop_t *loop, struct wlm_etcd *e, const char *prefix,
                     void (*on_change)(void *ud), void *ud, struct store_mirror **out,
                     struct wlm_error *err)
{
    *out = NULL;
    struct store_mirror *m = calloc(1, sizeof(*m));
    if (!m)
        return wlm_error_set(err, ENOMEM, "out of memory");
    m->loop = loop;
    m->etcd = e;
    wlm_strlcpy(m->prefix, prefix, sizeof(m->prefix));
    m->on_change = on_change;
    m->ud = ud;
    int rc = full_read(m, err);
    if (rc) {
        free(m);
        return rc;
    }
    uv_timer_init(loop, &m->resync);
    m->resync.data = m;
    static const struct wlm_etcd_watch_cbs cbs = {on_event, on_batch, on_state, on_compacted};
    if ((rc = wlm_etcd_watch_new(loop, e, m->prefix, 1, m->rev + 1, &cbs, m, &m->watch, err))) {
        uv_close((uv_handle_t *)&m->resync, on_resync_closed); /* frees m */
        return rc;
    }
    *out = m;
    return 0;
}

void store_mirror_free(struct store_mirror *m)
{
    if (!m)
        return;
    wlm_etcd_watch_free(m->watch);
    m->watch = NULL;
    m->on_change = NULL;
    uv_timer_stop(&m->resync);
    uv_close((uv_handle_t *)&m->resync, on_resync_closed);
}

int store_mirror_scan(struct store_mirror *m, const char *pfx, wlm_store_row_fn fn, void *ud,
                      struct wlm_error *err)
{
    size_t plen = strlen(pfx);
    for (size_t i = lower_bound(m->v, m->n, pfx); i < m->n; i++) {
        if (strncmp(m->v[i].key, pfx, plen) != 0)
            break;
        if (!m->v[i].doc)
            return wlm_error_set(err, WLM_EIO, "store: %s holds no JSON object", m->v[i].key);
        int rc = fn(m->v[i].doc, ud);
        if (rc)
            return rc;
    }
    return 0;
}

const char *store_mirror_raw(const struct store_mirror *m, const char *key)
{
    size_t i = lower_bound(m->v, m->n, key);
    if (i == m->n || strcmp(m->v[i].key, key) != 0)
        return NULL;
    return m->v[i].raw ? m->v[i].raw : "";
}

void store_mirror_check(struct store_mirror *m, int64_t store_rev)
{
    struct wlm_etcd_watch_stats ws;
    wlm_etcd_watch_stats(m->watch, &ws);
    int64_t known = m->rev > ws.seen_rev ? m->rev : ws.seen_rev;
    double now = wlm_now_mono();
    if (store_rev <= known || !ws.connected) {
        m->behind_since = 0;
        return;
    }
    if (m->behind_since == 0) {
        m->behind_since = now;
        return;
    }
    /* The store moved on (maybe outside the prefix: another cluster sharing
     * etcd) and the member said nothing for a while: it may be stopped or
     * cut off without dropping the connection. Watching again costs little;
     * on a live member it only brings the "created" header's revision. */
    if (now - m->behind_since > STUCK_S && now - ws.last_data > STUCK_S) {
        wlm_warn(COMP, "store watch silent while the store moved on: watching on the next member",
                 "revision=%lld store_revision=%lld endpoint=%s", (long long)m->rev,
                 (long long)store_rev, ws.endpoint);
        m->stuck_restarts++;
        m->behind_since = 0;
        wlm_etcd_watch_restart(m->watch, m->rev + 1, 1);
    }
}

uint64_t store_mirror_changes(const struct store_mirror *m, const char *table)
{
    for (size_t i = 0; i < m->ntables; i++)
        if (strcmp(m->tables[i].name, table) == 0)
            return m->tables[i].n + m->resyncs;
    return m->resyncs;
}

void store_mirror_stats(const struct store_mirror *m, struct wlm_store_mirror_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!m)
        return;
    struct wlm_etcd_watch_stats ws;
    wlm_etcd_watch_stats(m->watch, &ws);
    out->rev = m->rev;
    out->keys = m->n;
    out->connected = ws.connected;
    out->applied = m->applied;
    out->resyncs = m->resyncs;
    out->drops = ws.drops;
    out->stuck_restarts = m->stuck_restarts;
}
