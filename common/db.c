/* db.c - SQLite with WAL, a busy timeout and numbered schema migrations. */
#include <string.h>

#include "common.h"

static int db_error(sqlite3 *db, struct wlm_error *err, const char *what)
{
    return wlm_error_set(err, WLM_EIO, "%s: %s", what, db ? sqlite3_errmsg(db) : "no database");
}

int wlm_db_exec(sqlite3 *db, const char *sql, struct wlm_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = wlm_error_set(err, WLM_EIO, "sqlite: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

int wlm_db_begin(sqlite3 *db, struct wlm_error *err) { return wlm_db_exec(db, "BEGIN IMMEDIATE", err); }
int wlm_db_commit(sqlite3 *db, struct wlm_error *err) { return wlm_db_exec(db, "COMMIT", err); }
void wlm_db_rollback(sqlite3 *db) { sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL); }

int wlm_db_schema_version(sqlite3 *db)
{
    sqlite3_stmt *st;
    int v = 0;
    if (sqlite3_prepare_v2(db, "SELECT MAX(version) FROM schema_version", -1, &st, NULL) !=
        SQLITE_OK)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

int wlm_db_open(const char *path, const char *const *migrations, size_t nmigrations,
                sqlite3 **out, struct wlm_error *err)
{
    sqlite3 *db = NULL;
    *out = NULL;
    if (sqlite3_open_v2(path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        int rc = wlm_error_set(err, WLM_EIO, "open database %s: %s", path,
                               db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, 5000);
    /* WAL keeps readers off the writer's back; synchronous=FULL makes every
     * commit durable before we acknowledge it (the cost is one fsync). */
    int rc = wlm_db_exec(db,
                         "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                         "PRAGMA foreign_keys=ON; "
                         "CREATE TABLE IF NOT EXISTS schema_version("
                         " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)",
                         err);
    if (rc)
        goto fail;
    for (size_t i = (size_t)wlm_db_schema_version(db); i < nmigrations; i++) {
        if ((rc = wlm_db_begin(db, err)))
            goto fail;
        if ((rc = wlm_db_exec(db, migrations[i], err))) {
            wlm_db_rollback(db);
            wlm_error_set(err, WLM_EIO, "%s: migration %zu failed: %s", path, i + 1,
                          err ? err->msg : "");
            goto fail;
        }
        char sql[160];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO schema_version(version, applied_at) VALUES (%zu, julianday('now'))",
                 i + 1);
        if ((rc = wlm_db_exec(db, sql, err)) || (rc = wlm_db_commit(db, err))) {
            wlm_db_rollback(db);
            goto fail;
        }
    }
    *out = db;
    return 0;
fail:
    if (!rc)
        rc = db_error(db, err, path);
    sqlite3_close(db);
    return rc;
}

void wlm_db_close(sqlite3 *db)
{
    if (db)
        sqlite3_close(db);
}
