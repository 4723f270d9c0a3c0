/*
 * store.c - the job store: the scheduler's writes and loads, on SQLite or
 * on etcd.
 *
 * SQLite: one row per job in `jobs` (immutable definition as JSON in `spec`,
 * mutable state in columns), the dependency edges in `job_deps`, every state
 * transition in `job_events`, and learned profiles in `job_profiles`.
 *
 * etcd (through common/store.c): one document per job in PREFIX/jobs/<id>
 * with the same members plus its dependency edges, events in
 * PREFIX/job_events/<id>/<term>-<seq>, profiles in PREFIX/job_profiles/<kind>.
 * A job's document is written once per transaction, at commit, from memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "store.h"

struct jobsched_store {
    sqlite3 *db;          /* SQLite backend */
    struct wlm_store *ws; /* etcd backend (borrowed) */
    struct jobsched *js;
    sqlite3_stmt *st_insert, *st_state, *st_event, *st_reason, *st_place, *st_usage, *st_dep,
        *st_profile, *st_by_submit, *st_work;
    /* etcd */
    int in_tx;
    json_t *dirty;  /* {"<id>": true}: job documents to write at commit */
    json_t *submit; /* {"submit_id": id} */
    int64_t max_id;
    int64_t term;
    unsigned long long seq;
};

static const char *const migrations[] = {
    /* 1: initial schema */
    "CREATE TABLE jobs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  submit_id TEXT UNIQUE,"
    "  spec TEXT NOT NULL,"
    "  work_mcycles REAL NOT NULL,"
    "  state TEXT NOT NULL,"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  state_time REAL NOT NULL,"
    "  end_time REAL NOT NULL DEFAULT 0,"
    "  node TEXT NOT NULL DEFAULT '',"
    "  alloc_mhz REAL NOT NULL DEFAULT 0,"
    "  done_mcycles REAL NOT NULL DEFAULT 0,"
    "  seen_threads REAL NOT NULL DEFAULT 0,"
    "  seen_speed_mhz REAL NOT NULL DEFAULT 0,"
    "  learned INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE job_deps ("
    "  job_id INTEGER NOT NULL REFERENCES jobs(id),"
    "  dep_id INTEGER NOT NULL REFERENCES jobs(id),"
    "  kind TEXT NOT NULL,"
    "  PRIMARY KEY (job_id, dep_id, kind));"
    "CREATE TABLE job_events ("
    "  id INTEGER PRIMARY KEY,"
    "  job_id INTEGER NOT NULL REFERENCES jobs(id),"
    "  t REAL NOT NULL,"
    "  from_state TEXT NOT NULL,"
    "  to_state TEXT NOT NULL,"
    "  reason TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX job_events_job ON job_events(job_id, id);"
    "CREATE TABLE job_profiles ("
    "  kind TEXT PRIMARY KEY,"
    "  samples INTEGER NOT NULL,"
    "  mcycles REAL NOT NULL,"
    "  threads REAL NOT NULL,"
    "  max_speed_mhz REAL NOT NULL,"
    "  updated REAL NOT NULL);",
};

int jobsched_store_open(const char *path, struct jobsched_store **out, struct wlm_error *err)
{
    *out = NULL;
    struct jobsched_store *st = calloc(1, sizeof(*st));
    if (!st)
        return wlm_error_set(err, ENOMEM, "out of memory");
    int rc = wlm_db_open(path, migrations, WLM_ARRAY_LEN(migrations), &st->db, err);
    if (rc) {
        free(st);
        return rc;
    }
    *out = st;
    return 0;
}

int jobsched_store_open_kv(struct wlm_store *ws, struct jobsched_store **out,
                           struct wlm_error *err)
{
    *out = NULL;
    if (!wlm_store_is_etcd(ws))
        return wlm_error_set(err, WLM_EINVAL, "jobsched_store_open_kv: not an etcd store");
    struct jobsched_store *st = calloc(1, sizeof(*st));
    if (!st)
        return wlm_error_set(err, ENOMEM, "out of memory");
    st->ws = ws;
    st->dirty = json_object();
    st->submit = json_object();
    st->term = (int64_t)(wlm_now_wall() * 1e6);
    *out = st;
    return 0;
}

static void finalize_all(struct jobsched_store *st)
{
    sqlite3_stmt *sts[] = {st->st_insert, st->st_state, st->st_event,     st->st_reason,
                           st->st_place,  st->st_usage, st->st_dep,       st->st_profile,
                           st->st_by_submit, st->st_work};
    for (size_t i = 0; i < WLM_ARRAY_LEN(sts); i++)
        sqlite3_finalize(sts[i]);
    st->st_insert = st->st_state = st->st_event = st->st_reason = st->st_place = NULL;
    st->st_usage = st->st_dep = st->st_profile = st->st_by_submit = st->st_work = NULL;
}

void jobsched_store_close(struct jobsched_store *st)
{
    if (!st)
        return;
    finalize_all(st);
    wlm_db_close(st->db);
    json_decref(st->dirty);
    json_decref(st->submit);
    free(st);
}

sqlite3 *jobsched_store_db(struct jobsched_store *st)
{
    return st ? st->db : NULL;
}

/* ---------------------------------------------------------------- SQLite helpers */

static int db_fail(struct jobsched_store *st, struct wlm_error *err, const char *what)
{
    return wlm_error_set(err, WLM_EIO, "job store: %s: %s", what, sqlite3_errmsg(st->db));
}

static int prep(struct jobsched_store *st, sqlite3_stmt **s, const char *sql,
                struct wlm_error *err)
{
    if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, s, NULL) != SQLITE_OK)
        return db_fail(st, err, "prepare");
    return 0;
}

static int step_done(struct jobsched_store *st, sqlite3_stmt *s, struct wlm_error *err,
                     const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE)
        return db_fail(st, err, what);
    return 0;
}

int jstore_bind(struct jobsched_store *st, struct jobsched *js, struct wlm_error *err)
{
    st->js = js;
    if (!st->db)
        return 0;
    finalize_all(st);
    int rc;
    if ((rc = prep(st, &st->st_insert,
                   "INSERT INTO jobs (submit_id, spec, work_mcycles, state, reason, state_time)"
                   " VALUES (?, ?, ?, ?, ?, ?)",
                   err)) ||
        (rc = prep(st, &st->st_state,
                   "UPDATE jobs SET state = ?, reason = ?, state_time = ?, end_time = ?"
                   " WHERE id = ?",
                   err)) ||
        (rc = prep(st, &st->st_event,
                   "INSERT INTO job_events (job_id, t, from_state, to_state, reason)"
                   " VALUES (?, ?, ?, ?, ?)",
                   err)) ||
        (rc = prep(st, &st->st_reason, "UPDATE jobs SET reason = ? WHERE id = ?", err)) ||
        (rc = prep(st, &st->st_place, "UPDATE jobs SET node = ?, alloc_mhz = ? WHERE id = ?",
                   err)) ||
        (rc = prep(st, &st->st_usage,
                   "UPDATE jobs SET done_mcycles = ?, seen_threads = ?, seen_speed_mhz = ?,"
                   " learned = ? WHERE id = ?",
                   err)) ||
        (rc = prep(st, &st->st_work, "UPDATE jobs SET work_mcycles = ? WHERE id = ?", err)) ||
        (rc = prep(st, &st->st_dep, "INSERT INTO job_deps (job_id, dep_id, kind) VALUES (?, ?, ?)",
                   err)) ||
        (rc = prep(st, &st->st_profile,
                   "INSERT INTO job_profiles (kind, samples, mcycles, threads, max_speed_mhz,"
                   " updated) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(kind) DO UPDATE SET"
                   " samples = excluded.samples, mcycles = excluded.mcycles,"
                   " threads = excluded.threads, max_speed_mhz = excluded.max_speed_mhz,"
                   " updated = excluded.updated",
                   err)) ||
        (rc = prep(st, &st->st_by_submit, "SELECT id FROM jobs WHERE submit_id = ?", err)))
        return rc;
    return 0;
}

void jstore_unbind(struct jobsched_store *st)
{
    finalize_all(st);
    st->js = NULL;
}

/* ---------------------------------------------------------------- transactions */

int jstore_begin(struct jobsched_store *st, struct wlm_error *err)
{
    if (st->db)
        return wlm_db_begin(st->db, err);
    json_object_clear(st->dirty);
    st->in_tx = 1;
    return wlm_store_begin(st->ws, err);
}

static int flush_dirty(struct jobsched_store *st, struct wlm_error *err)
{
    const char *k;
    json_t *v;
    int rc = 0;
    json_object_foreach(st->dirty, k, v)
    {
        json_t *doc = jobsched__job_doc(st->js, strtoll(k, NULL, 10));
        if (!doc)
            continue;
        rc = wlm_store_put(st->ws, "jobs", "id", doc, err);
        json_decref(doc);
        if (rc)
            break;
    }
    json_object_clear(st->dirty);
    return rc;
}

int jstore_commit(struct jobsched_store *st, struct wlm_error *err)
{
    if (st->db)
        return wlm_db_commit(st->db, err);
    st->in_tx = 0;
    int rc = flush_dirty(st, err);
    if (rc) {
        wlm_store_rollback(st->ws);
        return rc;
    }
    return wlm_store_commit(st->ws, err);
}

void jstore_rollback(struct jobsched_store *st)
{
    if (st->db) {
        wlm_db_rollback(st->db);
        return;
    }
    st->in_tx = 0;
    json_object_clear(st->dirty);
    wlm_store_rollback(st->ws);
}

/* etcd: remember the job for the commit (or write it now outside one). */
static int mark_dirty(struct jobsched_store *st, int64_t id, struct wlm_error *err)
{
    char k[32];
    snprintf(k, sizeof(k), "%lld", (long long)id);
    json_object_set_new(st->dirty, k, json_true());
    if (st->in_tx)
        return 0;
    int rc = flush_dirty(st, err);
    return rc;
}

/* ---------------------------------------------------------------- writes */

int jstore_insert(struct jobsched_store *st, const struct jobsched_job *j, const char *spec_text,
                  int64_t *id, struct wlm_error *err)
{
    if (!st->db) {
        *id = ++st->max_id;
        if (j->submit_id)
            json_object_set_new(st->submit, j->submit_id, json_integer(*id));
        return mark_dirty(st, *id, err);
    }
    if (j->submit_id)
        sqlite3_bind_text(st->st_insert, 1, j->submit_id, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st->st_insert, 1);
    sqlite3_bind_text(st->st_insert, 2, spec_text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st->st_insert, 3, j->work_mcycles);
    sqlite3_bind_text(st->st_insert, 4, jobsched_state_name(j->state), -1, SQLITE_STATIC);
    sqlite3_bind_text(st->st_insert, 5, j->reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st->st_insert, 6, j->state_time);
    int rc = step_done(st, st->st_insert, err, "insert job");
    if (rc == 0)
        *id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

int jstore_save(struct jobsched_store *st, const struct jobsched_job *j, unsigned what,
                struct wlm_error *err)
{
    if (!st->db)
        return mark_dirty(st, j->id, err);
    int rc = 0;
    if (what & JSTORE_STATE) {
        sqlite3_bind_text(st->st_state, 1, jobsched_state_name(j->state), -1, SQLITE_STATIC);
        sqlite3_bind_text(st->st_state, 2, j->reason, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(st->st_state, 3, j->state_time);
        sqlite3_bind_double(st->st_state, 4, j->end_time);
        sqlite3_bind_int64(st->st_state, 5, j->id);
        if ((rc = step_done(st, st->st_state, err, "update state")))
            return rc;
    }
    if (what & JSTORE_REASON) {
        sqlite3_bind_text(st->st_reason, 1, j->reason, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st->st_reason, 2, j->id);
        if ((rc = step_done(st, st->st_reason, err, "update reason")))
            return rc;
    }
    if (what & JSTORE_PLACE) {
        sqlite3_bind_text(st->st_place, 1, j->node, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(st->st_place, 2, j->alloc_mhz);
        sqlite3_bind_int64(st->st_place, 3, j->id);
        if ((rc = step_done(st, st->st_place, err, "save placement")))
            return rc;
    }
    if (what & JSTORE_USAGE) {
        sqlite3_bind_double(st->st_usage, 1, j->done_mcycles);
        sqlite3_bind_double(st->st_usage, 2, j->seen_threads);
        sqlite3_bind_double(st->st_usage, 3, j->seen_speed_mhz);
        sqlite3_bind_int(st->st_usage, 4, j->learned);
        sqlite3_bind_int64(st->st_usage, 5, j->id);
        if ((rc = step_done(st, st->st_usage, err, "save usage")))
            return rc;
    }
    if (what & JSTORE_WORK) {
        sqlite3_bind_double(st->st_work, 1, j->work_mcycles);
        sqlite3_bind_int64(st->st_work, 2, j->id);
        if ((rc = step_done(st, st->st_work, err, "save work")))
            return rc;
    }
    return 0;
}

int jstore_event(struct jobsched_store *st, int64_t id, double t, const char *from,
                 const char *to, const char *reason, struct wlm_error *err)
{
    if (!st->db) {
        char k[96];
        snprintf(k, sizeof(k), "%020lld/%020lld-%010llu", (long long)id, (long long)st->term,
                 ++st->seq);
        json_t *doc = json_pack("{s:s,s:I,s:f,s:s,s:s,s:s}", "k", k, "job_id", (json_int_t)id,
                                "t", t, "from_state", from, "to_state", to, "reason",
                                reason ? reason : "");
        int rc = wlm_store_put(st->ws, "job_events", "k", doc, err);
        json_decref(doc);
        return rc;
    }
    sqlite3_bind_int64(st->st_event, 1, id);
    sqlite3_bind_double(st->st_event, 2, t);
    sqlite3_bind_text(st->st_event, 3, from, -1, SQLITE_STATIC);
    sqlite3_bind_text(st->st_event, 4, to, -1, SQLITE_STATIC);
    sqlite3_bind_text(st->st_event, 5, reason ? reason : "", -1, SQLITE_TRANSIENT);
    return step_done(st, st->st_event, err, "record event");
}

int jstore_dep(struct jobsched_store *st, int64_t id, int64_t dep, const char *kind,
               struct wlm_error *err)
{
    if (!st->db)
        return mark_dirty(st, id, err);
    sqlite3_bind_int64(st->st_dep, 1, id);
    sqlite3_bind_int64(st->st_dep, 2, dep);
    sqlite3_bind_text(st->st_dep, 3, kind, -1, SQLITE_STATIC);
    return step_done(st, st->st_dep, err, "insert dependency");
}

int jstore_profile(struct jobsched_store *st, const struct jobsched_profile *p,
                   struct wlm_error *err)
{
    if (!st->db) {
        json_t *doc = json_pack("{s:s,s:I,s:f,s:f,s:f,s:f}", "kind", p->kind, "samples",
                                (json_int_t)p->samples, "mcycles", p->mcycles, "threads",
                                p->threads, "max_speed_mhz", p->max_speed_mhz, "updated",
                                p->updated);
        int rc = wlm_store_put(st->ws, "job_profiles", "kind", doc, err);
        json_decref(doc);
        return rc;
    }
    sqlite3_bind_text(st->st_profile, 1, p->kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st->st_profile, 2, p->samples);
    sqlite3_bind_double(st->st_profile, 3, p->mcycles);
    sqlite3_bind_double(st->st_profile, 4, p->threads);
    sqlite3_bind_double(st->st_profile, 5, p->max_speed_mhz);
    sqlite3_bind_double(st->st_profile, 6, p->updated);
    return step_done(st, st->st_profile, err, "save profile");
}

int64_t jstore_by_submit(struct jobsched_store *st, const char *sid, struct wlm_error *err)
{
    if (!st->db) {
        json_t *v = json_object_get(st->submit, sid);
        return v ? json_integer_value(v) : 0;
    }
    sqlite3_bind_text(st->st_by_submit, 1, sid, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st->st_by_submit);
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(st->st_by_submit, 0) : 0;
    sqlite3_reset(st->st_by_submit);
    sqlite3_clear_bindings(st->st_by_submit);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(st, err, "look up submit_id");
    return id;
}

/* ---------------------------------------------------------------- loading */

static double num(const json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void row_from_doc(const json_t *doc, struct jstore_row *r)
{
    r->id = json_integer_value(json_object_get(doc, "id"));
    r->submit_id = json_string_value(json_object_get(doc, "submit_id"));
    r->spec = str(doc, "spec");
    r->work_mcycles = num(doc, "work_mcycles");
    r->state = str(doc, "state");
    r->reason = str(doc, "reason");
    r->state_time = num(doc, "state_time");
    r->end_time = num(doc, "end_time");
    r->node = str(doc, "node");
    r->alloc_mhz = num(doc, "alloc_mhz");
    r->done_mcycles = num(doc, "done_mcycles");
    r->seen_threads = num(doc, "seen_threads");
    r->seen_speed_mhz = num(doc, "seen_speed_mhz");
    r->learned = (int)json_integer_value(json_object_get(doc, "learned"));
}

struct load_ctx {
    struct jobsched_store *st;
    const struct jstore_loader *ld;
    void *ud;
    json_t *deps; /* etcd: [[job, dep, kind], ...] applied after every job */
};

static int load_job_doc(const json_t *doc, void *ud)
{
    struct load_ctx *lc = ud;
    struct jstore_row r;
    row_from_doc(doc, &r);
    if (r.id > lc->st->max_id)
        lc->st->max_id = r.id;
    if (r.submit_id)
        json_object_set_new(lc->st->submit, r.submit_id, json_integer(r.id));
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(doc, "deps"), i, d)
        json_array_append_new(lc->deps, json_pack("[I,O,O]", (json_int_t)r.id,
                                                  json_array_get(d, 0), json_array_get(d, 1)));
    return lc->ld->job(&r, lc->ud);
}

static int load_profile_doc(const json_t *doc, void *ud)
{
    struct load_ctx *lc = ud;
    struct jobsched_profile p;
    memset(&p, 0, sizeof(p));
    wlm_strlcpy(p.kind, str(doc, "kind"), sizeof(p.kind));
    p.samples = json_integer_value(json_object_get(doc, "samples"));
    p.mcycles = num(doc, "mcycles");
    p.threads = num(doc, "threads");
    p.max_speed_mhz = num(doc, "max_speed_mhz");
    p.updated = num(doc, "updated");
    return lc->ld->profile(&p, lc->ud);
}

static int load_kv(struct jobsched_store *st, const struct jstore_loader *ld, void *ud,
                   struct wlm_error *err)
{
    struct load_ctx lc = {st, ld, ud, json_array()};
    st->max_id = 0;
    json_object_clear(st->submit);
    int rc = wlm_store_scan(st->ws, "jobs", NULL, load_job_doc, &lc, err);
    size_t i;
    json_t *d;
    json_array_foreach(lc.deps, i, d)
    {
        if (rc)
            break;
        rc = ld->dep(json_integer_value(json_array_get(d, 0)),
                     json_integer_value(json_array_get(d, 1)),
                     json_string_value(json_array_get(d, 2)), ud);
    }
    json_decref(lc.deps);
    if (rc == 0)
        rc = wlm_store_scan(st->ws, "job_profiles", NULL, load_profile_doc, &lc, err);
    if (rc > 0)
        rc = wlm_error_set(err, ENOMEM, "out of memory loading jobs");
    return rc;
}

int jstore_load(struct jobsched_store *st, const struct jstore_loader *ld, void *ud,
                struct wlm_error *err)
{
    if (!st->db)
        return load_kv(st, ld, ud, err);
    sqlite3_stmt *s = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT id, submit_id, spec, work_mcycles, state, reason, state_time,"
                           " end_time, node, alloc_mhz, done_mcycles, seen_threads,"
                           " seen_speed_mhz, learned FROM jobs ORDER BY id",
                           -1, &s, NULL) != SQLITE_OK)
        return db_fail(st, err, "load jobs");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct jstore_row r = {
            sqlite3_column_int64(s, 0),
            (const char *)sqlite3_column_text(s, 1),
            (const char *)sqlite3_column_text(s, 2),
            sqlite3_column_double(s, 3),
            (const char *)sqlite3_column_text(s, 4),
            (const char *)sqlite3_column_text(s, 5),
            sqlite3_column_double(s, 6),
            sqlite3_column_double(s, 7),
            (const char *)sqlite3_column_text(s, 8),
            sqlite3_column_double(s, 9),
            sqlite3_column_double(s, 10),
            sqlite3_column_double(s, 11),
            sqlite3_column_double(s, 12),
            sqlite3_column_int(s, 13),
        };
        int cb = ld->job(&r, ud);
        if (cb) {
            sqlite3_finalize(s);
            return cb < 0 ? cb : wlm_error_set(err, ENOMEM, "out of memory loading jobs");
        }
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return db_fail(st, err, "load jobs");

    if (sqlite3_prepare_v2(st->db, "SELECT job_id, dep_id, kind FROM job_deps ORDER BY rowid", -1,
                           &s, NULL) != SQLITE_OK)
        return db_fail(st, err, "load dependencies");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (ld->dep(sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
                    (const char *)sqlite3_column_text(s, 2), ud)) {
            sqlite3_finalize(s);
            return wlm_error_set(err, ENOMEM, "out of memory loading dependencies");
        }
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return db_fail(st, err, "load dependencies");

    if (sqlite3_prepare_v2(st->db,
                           "SELECT kind, samples, mcycles, threads, max_speed_mhz, updated"
                           " FROM job_profiles ORDER BY kind",
                           -1, &s, NULL) != SQLITE_OK)
        return db_fail(st, err, "load profiles");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct jobsched_profile p;
        memset(&p, 0, sizeof(p));
        wlm_strlcpy(p.kind, (const char *)sqlite3_column_text(s, 0), sizeof(p.kind));
        p.samples = sqlite3_column_int64(s, 1);
        p.mcycles = sqlite3_column_double(s, 2);
        p.threads = sqlite3_column_double(s, 3);
        p.max_speed_mhz = sqlite3_column_double(s, 4);
        p.updated = sqlite3_column_double(s, 5);
        if (ld->profile(&p, ud)) {
            sqlite3_finalize(s);
            return wlm_error_set(err, ENOMEM, "out of memory loading profiles");
        }
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return db_fail(st, err, "load profiles");
    return 0;
}

/* ---------------------------------------------------------------- history */

struct hist {
    struct jobsched_event *v;
    size_t n, cap;
};

static int hist_add(struct hist *h, double t, const char *from, const char *to,
                    const char *reason)
{
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 8;
        struct jobsched_event *nv = realloc(h->v, nc * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        h->v = nv;
        h->cap = nc;
    }
    struct jobsched_event *e = &h->v[h->n++];
    e->t = t;
    if (jobsched_state_parse(from ? from : "", &e->from))
        e->from = JOBSCHED_PENDING;
    if (jobsched_state_parse(to ? to : "", &e->to))
        e->to = JOBSCHED_PENDING;
    wlm_strlcpy(e->reason, reason ? reason : "", sizeof(e->reason));
    return 0;
}

static int hist_doc(const json_t *doc, void *ud)
{
    return hist_add(ud, num(doc, "t"), str(doc, "from_state"), str(doc, "to_state"),
                    str(doc, "reason"))
               ? 1
               : 0;
}

int jstore_history(struct jobsched_store *st, int64_t id, struct jobsched_event **out, size_t *n,
                   struct wlm_error *err)
{
    struct hist h = {0};
    *out = NULL;
    *n = 0;
    int rc = 0;
    if (!st->db) {
        char pfx[32];
        snprintf(pfx, sizeof(pfx), "%020lld/", (long long)id);
        rc = wlm_store_scan_prefix(st->ws, "job_events", pfx, hist_doc, &h, err);
        /* Keys are in order: one leader's sequence after its term (start time). */
        if (rc > 0)
            rc = wlm_error_set(err, ENOMEM, "out of memory");
    } else {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(st->db,
                               "SELECT t, from_state, to_state, reason FROM job_events"
                               " WHERE job_id = ? ORDER BY id",
                               -1, &s, NULL) != SQLITE_OK)
            return db_fail(st, err, "history");
        sqlite3_bind_int64(s, 1, id);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            if (hist_add(&h, sqlite3_column_double(s, 0), (const char *)sqlite3_column_text(s, 1),
                         (const char *)sqlite3_column_text(s, 2),
                         (const char *)sqlite3_column_text(s, 3))) {
                rc = -ENOMEM;
                break;
            }
        sqlite3_finalize(s);
        if (rc == -ENOMEM)
            rc = wlm_error_set(err, ENOMEM, "out of memory");
        else if (rc != SQLITE_DONE)
            rc = db_fail(st, err, "history");
        else
            rc = 0;
    }
    if (rc) {
        free(h.v);
        return rc;
    }
    *out = h.v;
    *n = h.n;
    return 0;
}
