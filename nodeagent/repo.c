/* VM-ID repository: which job runs in which domain, on which image, saved
 * where. One SQLite file per agent; the agent writes it from its loop thread
 * only, so statements need no extra locking. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nodeagent.h"

struct nodeagent_repo {
    sqlite3 *db;
};

static const char *const migrations[] = {
    "CREATE TABLE vms (job TEXT PRIMARY KEY, domain TEXT NOT NULL, uuid TEXT NOT NULL DEFAULT '',"
    " image TEXT NOT NULL DEFAULT '', save_path TEXT NOT NULL DEFAULT '',"
    " state TEXT NOT NULL, command TEXT NOT NULL DEFAULT '', exit_status INTEGER NOT NULL DEFAULT "
    "-1,"
    " hostname TEXT NOT NULL DEFAULT '', mac TEXT NOT NULL DEFAULT '', ip TEXT NOT NULL DEFAULT '',"
    " updated REAL NOT NULL DEFAULT 0)",
    "ALTER TABLE vms ADD COLUMN sim_remaining REAL NOT NULL DEFAULT -1;"
    "ALTER TABLE vms ADD COLUMN sim_total REAL NOT NULL DEFAULT -1",
    /* Actions survive a restart: a retried id gets its recorded outcome. */
    "CREATE TABLE actions (id TEXT PRIMARY KEY, kind TEXT NOT NULL, target TEXT NOT NULL,"
    " status TEXT NOT NULL, params TEXT NOT NULL DEFAULT '{}', doc TEXT NOT NULL DEFAULT '',"
    " seq INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE instances (id TEXT PRIMARY KEY, pid INTEGER NOT NULL, start_ticks INTEGER NOT "
    "NULL,"
    " command TEXT NOT NULL, port INTEGER NOT NULL DEFAULT 0, user TEXT NOT NULL DEFAULT '',"
    " cap_mhz REAL NOT NULL DEFAULT 0)",
};

int nodeagent_repo_open(const char *path, struct nodeagent_repo **out, struct wlm_error *err)
{
    struct nodeagent_repo *r = calloc(1, sizeof(*r));
    if (!r)
        return wlm_error_set(err, ENOMEM, "out of memory");
    int rc = wlm_db_open(path, migrations, WLM_ARRAY_LEN(migrations), &r->db, err);
    if (rc < 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void nodeagent_repo_close(struct nodeagent_repo *r)
{
    if (!r)
        return;
    wlm_db_close(r->db);
    free(r);
}

static int db_fail(struct nodeagent_repo *r, struct wlm_error *err, const char *what)
{
    return wlm_error_set(err, WLM_EIO, "VM repository %s: %s", what, sqlite3_errmsg(r->db));
}

int nodeagent_repo_put(struct nodeagent_repo *r, const struct nodeagent_vm_rec *v,
                       struct wlm_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "INSERT OR REPLACE INTO vms (job, domain, uuid, image, save_path, state,"
                           " command, exit_status, hostname, mac, ip, updated, sim_remaining,"
                           " sim_total) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "put");
    const char *txt[] = {v->job, v->domain, v->uuid, v->image, v->save_path, v->state, v->command};
    for (int i = 0; i < 7; i++)
        sqlite3_bind_text(st, i + 1, txt[i], -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 8, v->exit_status);
    sqlite3_bind_text(st, 9, v->hostname, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 10, v->mac, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 11, v->ip, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 12, wlm_now_wall());
    sqlite3_bind_double(st, 13, v->sim_remaining);
    sqlite3_bind_double(st, 14, v->sim_total);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(r, err, "put");
    sqlite3_finalize(st);
    return rc;
}

static void row_to_rec(sqlite3_stmt *st, struct nodeagent_vm_rec *v)
{
    memset(v, 0, sizeof(*v));
#define COL(i, f) wlm_strlcpy(v->f, (const char *)sqlite3_column_text(st, i) ?: "", sizeof(v->f))
    COL(0, job);
    COL(1, domain);
    COL(2, uuid);
    COL(3, image);
    COL(4, save_path);
    COL(5, state);
    COL(6, command);
    v->exit_status = sqlite3_column_int(st, 7);
    COL(8, hostname);
    COL(9, mac);
    COL(10, ip);
#undef COL
    v->sim_remaining = sqlite3_column_double(st, 11);
    v->sim_total = sqlite3_column_double(st, 12);
}

#define SELECT_COLS                                                                                \
    "SELECT job, domain, uuid, image, save_path, state, command, exit_status, hostname, mac, ip, " \
    "sim_remaining, sim_total FROM vms"

int nodeagent_repo_get(struct nodeagent_repo *r, const char *job, struct nodeagent_vm_rec *out,
                       struct wlm_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db, SELECT_COLS " WHERE job = ?", -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "get");
    sqlite3_bind_text(st, 1, job, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        row_to_rec(st, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = wlm_error_set(err, WLM_ENOTFOUND, "unknown job '%s'", job);
    } else {
        rc = db_fail(r, err, "get");
    }
    sqlite3_finalize(st);
    return rc;
}

int nodeagent_repo_delete(struct nodeagent_repo *r, const char *job, struct wlm_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db, "DELETE FROM vms WHERE job = ?", -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "delete");
    sqlite3_bind_text(st, 1, job, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(r, err, "delete");
    sqlite3_finalize(st);
    return rc;
}

int nodeagent_repo_list(struct nodeagent_repo *r, struct nodeagent_vm_rec **out, size_t *n,
                        struct wlm_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db, SELECT_COLS " ORDER BY job", -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "list");
    struct nodeagent_vm_rec *arr = NULL;
    size_t k = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct nodeagent_vm_rec *na = realloc(arr, (k + 1) * sizeof(*arr));
        if (!na) {
            free(arr);
            sqlite3_finalize(st);
            return wlm_error_set(err, ENOMEM, "out of memory");
        }
        arr = na;
        row_to_rec(st, &arr[k++]);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(arr);
        return db_fail(r, err, "list");
    }
    *out = arr;
    *n = k;
    return 0;
}

int nodeagent_reconcile_compute(const struct nodeagent_vm_rec *recs, size_t nrecs,
                                const struct nodeagent_wl_info *live, size_t nlive,
                                struct nodeagent_reconcile *out)
{
    memset(out, 0, sizeof(*out));
    out->verdict = calloc(nrecs + 1, sizeof(*out->verdict));
    out->live_state = calloc(nrecs + 1, sizeof(*out->live_state));
    out->orphans = calloc(nlive + 1, sizeof(*out->orphans));
    if (!out->verdict || !out->live_state || !out->orphans) {
        nodeagent_reconcile_fini(out);
        return -ENOMEM;
    }
    for (size_t i = 0; i < nrecs; i++) {
        const struct nodeagent_wl_info *l = NULL;
        for (size_t j = 0; j < nlive; j++)
            if (!strcmp(live[j].id, recs[i].job))
                l = &live[j];
        out->live_state[i] = l ? l->state : NODEAGENT_WL_NONE;
        if (l && l->state != NODEAGENT_WL_SHUTOFF)
            out->verdict[i] = NODEAGENT_ADOPT;
        else if (!strcmp(recs[i].state, "running") || !strcmp(recs[i].state, "paused") ||
                 !strcmp(recs[i].state, "starting"))
            out->verdict[i] = NODEAGENT_LOST;
        else if (!strcmp(recs[i].state, "suspended"))
            out->verdict[i] = NODEAGENT_SUSPENDED;
        else
            out->verdict[i] = NODEAGENT_KEEP;
    }
    for (size_t j = 0; j < nlive; j++) {
        int owned = 0;
        for (size_t i = 0; i < nrecs && !owned; i++)
            owned = !strcmp(live[j].id, recs[i].job);
        if (!owned)
            wlm_strlcpy(out->orphans[out->norphans++], live[j].id, sizeof(out->orphans[0]));
    }
    return 0;
}

void nodeagent_reconcile_fini(struct nodeagent_reconcile *r)
{
    if (!r)
        return;
    free(r->verdict);
    free(r->live_state);
    free(r->orphans);
    memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------- actions */

int nodeagent_repo_action_put(struct nodeagent_repo *r, const struct nodeagent_action_rec *a,
                              struct wlm_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "INSERT OR REPLACE INTO actions (id, kind, target, status, params, doc,"
                           " seq) VALUES (?,?,?,?,?,?, COALESCE((SELECT seq FROM actions WHERE id"
                           " = ?1), (SELECT COALESCE(MAX(seq), 0) + 1 FROM actions)))",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "action put");
    sqlite3_bind_text(st, 1, a->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, a->kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, a->target, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, a->status, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, a->params ? a->params : "{}", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, a->doc ? a->doc : "", -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(r, err, "action put");
    sqlite3_finalize(st);
    /* Keep the newest 4096 (the in-memory table keeps as many). */
    if (!rc)
        sqlite3_exec(r->db,
                     "DELETE FROM actions WHERE status != 'running' AND seq <= (SELECT MAX(seq) -"
                     " 4096 FROM actions)",
                     NULL, NULL, NULL);
    return rc;
}

static void row_to_action(sqlite3_stmt *st, struct nodeagent_action_rec *a)
{
    memset(a, 0, sizeof(*a));
    wlm_strlcpy(a->id, (const char *)sqlite3_column_text(st, 0) ?: "", sizeof(a->id));
    wlm_strlcpy(a->kind, (const char *)sqlite3_column_text(st, 1) ?: "", sizeof(a->kind));
    wlm_strlcpy(a->target, (const char *)sqlite3_column_text(st, 2) ?: "", sizeof(a->target));
    wlm_strlcpy(a->status, (const char *)sqlite3_column_text(st, 3) ?: "", sizeof(a->status));
    a->params = wlm_strdup((const char *)sqlite3_column_text(st, 4) ?: "{}");
    a->doc = wlm_strdup((const char *)sqlite3_column_text(st, 5) ?: "");
}

void nodeagent_action_rec_fini(struct nodeagent_action_rec *a)
{
    if (!a)
        return;
    free(a->params);
    free(a->doc);
    a->params = a->doc = NULL;
}

int nodeagent_repo_action_get(struct nodeagent_repo *r, const char *id,
                              struct nodeagent_action_rec *out, struct wlm_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT id, kind, target, status, params, doc FROM actions WHERE id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "action get");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        row_to_action(st, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = wlm_error_set(err, WLM_ENOTFOUND, "unknown action '%s'", id);
    } else {
        rc = db_fail(r, err, "action get");
    }
    sqlite3_finalize(st);
    return rc;
}

int nodeagent_repo_action_running(struct nodeagent_repo *r, struct nodeagent_action_rec **out,
                                  size_t *n, struct wlm_error *err)
{
    sqlite3_stmt *st;
    *out = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT id, kind, target, status, params, doc FROM actions WHERE status"
                           " = 'running' ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "action list");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct nodeagent_action_rec *na = realloc(*out, (*n + 1) * sizeof(**out));
        if (!na)
            break;
        *out = na;
        row_to_action(st, &na[(*n)++]);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_fail(r, err, "action list");
}

/* ---------------------------------------------------------------- instances */

int nodeagent_repo_inst_put(struct nodeagent_repo *r, const struct nodeagent_inst_rec *in,
                            struct wlm_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "INSERT OR REPLACE INTO instances (id, pid, start_ticks, command, port,"
                           " user, cap_mhz) VALUES (?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "instance put");
    sqlite3_bind_text(st, 1, in->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, in->pid);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)in->start_ticks);
    sqlite3_bind_text(st, 4, in->command, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 5, in->port);
    sqlite3_bind_text(st, 6, in->user, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 7, in->cap_mhz);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(r, err, "instance put");
    sqlite3_finalize(st);
    return rc;
}

int nodeagent_repo_inst_delete(struct nodeagent_repo *r, const char *id, struct wlm_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db, "DELETE FROM instances WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "instance delete");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(r, err, "instance delete");
    sqlite3_finalize(st);
    return rc;
}

int nodeagent_repo_inst_list(struct nodeagent_repo *r, struct nodeagent_inst_rec **out, size_t *n,
                             struct wlm_error *err)
{
    sqlite3_stmt *st;
    *out = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT id, pid, start_ticks, command, port, user, cap_mhz FROM"
                           " instances ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "instance list");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct nodeagent_inst_rec *na = realloc(*out, (*n + 1) * sizeof(**out));
        if (!na)
            break;
        *out = na;
        struct nodeagent_inst_rec *in = &na[(*n)++];
        memset(in, 0, sizeof(*in));
        wlm_strlcpy(in->id, (const char *)sqlite3_column_text(st, 0) ?: "", sizeof(in->id));
        in->pid = (long)sqlite3_column_int64(st, 1);
        in->start_ticks = (unsigned long long)sqlite3_column_int64(st, 2);
        wlm_strlcpy(in->command, (const char *)sqlite3_column_text(st, 3) ?: "",
                    sizeof(in->command));
        in->port = sqlite3_column_int(st, 4);
        wlm_strlcpy(in->user, (const char *)sqlite3_column_text(st, 5) ?: "", sizeof(in->user));
        in->cap_mhz = sqlite3_column_double(st, 6);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_fail(r, err, "instance list");
}
