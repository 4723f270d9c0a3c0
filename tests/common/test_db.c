/* SQLite helper: WAL, migrations applied once, data survives reopen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"

static const char *const v1[] = {"CREATE TABLE t(a INTEGER)"};
static const char *const v2[] = {"CREATE TABLE t(a INTEGER)", "ALTER TABLE t ADD COLUMN b TEXT"};
static const char *const bad[] = {"CREATE TABLE t(a INTEGER)", "ALTER TABLE t ADD COLUMN b TEXT",
                                  "CREATE TABLE broken("};

static void test_migrations(void **state)
{
    char dir[] = "/tmp/wlm-test-db-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/x.db", dir);
    sqlite3 *db;
    struct wlm_error err = {0};
    assert_int_equal(wlm_db_open(path, v1, 1, &db, &err), 0);
    assert_int_equal(wlm_db_schema_version(db), 1);
    assert_int_equal(wlm_db_exec(db, "INSERT INTO t(a) VALUES (42)", &err), 0);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    wlm_db_close(db);

    /* Reopen with one more migration: only the new one runs, data kept. */
    assert_int_equal(wlm_db_open(path, v2, 2, &db, &err), 0);
    assert_int_equal(wlm_db_schema_version(db), 2);
    sqlite3_prepare_v2(db, "SELECT a, b FROM t", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 42);
    sqlite3_finalize(st);
    wlm_db_close(db);

    /* A broken migration fails with its number and leaves version 2. */
    assert_int_not_equal(wlm_db_open(path, bad, 3, &db, &err), 0);
    assert_non_null(strstr(err.msg, "migration 3"));
    assert_int_equal(wlm_db_open(path, v2, 2, &db, &err), 0);
    assert_int_equal(wlm_db_schema_version(db), 2);
    assert_int_not_equal(wlm_db_exec(db, "SELEC 1", &err), 0);
    assert_non_null(strstr(err.msg, "syntax error"));
    wlm_db_close(db);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_open_error(void **state)
{
    sqlite3 *db;
    struct wlm_error err = {0};
    assert_int_equal(wlm_db_open("/nonexistent/dir/x.db", v1, 1, &db, &err), -WLM_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/dir/x.db"));
    assert_null(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_migrations),
                                       cmocka_unit_test(test_open_error)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
