/*
 * store.c - the job database: schema and open.
 *
 * One row per job in `jobs` (immutable definition as JSON in `spec`, mutable
 * state in columns), the dependency edges in `job_deps`, every state
 * transition in `job_events`, and learned profiles in `job_profiles`.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

struct jobsched_store {
    sqlite3 *db;
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

void jobsched_store_close(struct jobsched_store *st)
{
    if (!st)
        return;
    wlm_db_close(st->db);
    free(st);
}

sqlite3 *jobsched_store_db(struct jobsched_store *st)
{
    return st ? st->db : NULL;
}
